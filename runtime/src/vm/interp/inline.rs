//! Helpers the interpreter runs inline instead of calling, as the JIT does: `map_lookup_elem`
//! on ARRAY and PERCPU_ARRAY maps is an index computation, on the hash family a direct call of
//! the table's lookup, and the generic helper path (handle search, key copy, a virtual call,
//! an epoch guard) costs several times the lookup itself.
//!
//! The inline path must be indistinguishable from the helper: same pointer, same region added
//! to the run's memory, same result for an index out of range. Whenever it could differ (an
//! unknown handle, a key the program may not read, any other map type) it declines and the
//! loop calls the helper, which raises the helper's own faults.

use super::mem::Windows;
use crate::maps::MapHandle;
use crate::vm::env::RunEnv;
use crate::vm::memory::Access;

/// Kernel ID of `bpf_map_lookup_elem`.
pub(super) const MAP_LOOKUP_ELEM: i32 = 1;

/// A handle already proven to be one of the run's maps, so that a loop looking up the same
/// map repeatedly searches the handle list once.
#[derive(Default)]
pub(super) struct KnownHandle(Option<u64>);

/// `bpf_map_lookup_elem(map, key)` for array and hash maps: `Some(r0)`, or `None` when the
/// helper must run instead.
///
/// # Safety
/// `env` is the live environment of the run in progress, not borrowed elsewhere, and
/// `windows` holds only regions of `env.memory` taken since its last change. The thread is
/// pinned for the run ([`crate::maps::epoch`]), as `Runner` does whenever a hash map is
/// reachable.
#[inline]
pub(super) unsafe fn map_lookup(
    env: *mut RunEnv,
    windows: &mut Windows,
    known: &mut KnownHandle,
    map: u64,
    key: u64,
) -> Option<u64> {
    // SAFETY: `env` is live and exclusively ours for this call (contract).
    let env = unsafe { &mut *env };
    if known.0 != Some(map) {
        // Handles only join the lists during a run (inner maps), never leave them before it
        // ends.
        if !env.is_map_handle(map) {
            return None;
        }
        known.0 = Some(map);
    }
    // SAFETY: `map` is one of the program's handles (searched above, now or earlier in this
    // run), which live as long as the program.
    let h = unsafe { &*(map as *const MapHandle) };
    let (base, slot) = if !h.array_base.is_null() {
        (h.array_base, 0)
    } else if !h.percpu_base.is_null() {
        (h.percpu_base, u64::from(env.cpu % h.ncpus.max(1)))
    } else if !h.hash.is_null() {
        // SAFETY: as above; the thread is pinned (contract).
        return unsafe { hash_lookup(env, windows, h, key) };
    } else {
        return None;
    };
    // SAFETY: `env` is live; the check only reads its regions.
    if h.key_size != 4 || !unsafe { windows.allows(env, key, 4, Access::Read) } {
        return None;
    }
    // SAFETY: the 4 key bytes lie in a readable region of this run (checked just above).
    let index = unsafe { std::ptr::read_unaligned(key as usize as *const u32) };
    if index >= h.max_entries {
        return Some(0);
    }
    let element = if h.percpu_base.is_null() {
        u64::from(index)
    } else {
        u64::from(index) * u64::from(h.ncpus) + slot
    };
    let value = base as u64 + element * h.value_stride;
    register_value(env, windows, h, value);
    Some(value)
}

/// Makes the value at `value` of `h` memory the rest of the run may touch, as the helper
/// does, and a window of it.
fn register_value(env: &mut RunEnv, windows: &mut Windows, h: &MapHandle, value: u64) {
    let region = h.value_region(value);
    env.memory.add(region);
    windows.note(&region);
}

/// The hash family's part of [`map_lookup`]: the helper's checks (the key readable for
/// `key_size` bytes) and its region bookkeeping, around a direct call of the table.
///
/// # Safety
/// As [`map_lookup`]; `h` is one of the run's handles and `h.hash` is set.
#[inline]
unsafe fn hash_lookup(
    env: &mut RunEnv,
    windows: &mut Windows,
    h: &MapHandle,
    key: u64,
) -> Option<u64> {
    // SAFETY: `env` is live; the check only reads its regions.
    if !unsafe { windows.allows(env, key, u64::from(h.key_size), Access::Read) } {
        return None;
    }
    // SAFETY: `h.hash` is the handle's live map; the key's `key_size` bytes are readable
    // (checked just above); the run is pinned (contract).
    let value = unsafe { (*h.hash).lookup_pinned(key as usize as *const u8, env.cpu) } as u64;
    if value != 0 {
        register_value(env, windows, h, value);
    }
    Some(value)
}
