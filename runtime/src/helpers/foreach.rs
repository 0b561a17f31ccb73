//! `bpf_for_each_map_elem` (164) over ARRAY, PERCPU_ARRAY and the HASH family, as the
//! kernel's `bpf_for_each_array_elem` / `bpf_for_each_hash_elem`.
//!
//! The callback is `long cb(map, const key *, value *, ctx)`; it runs through the engine's
//! [`RunEnv::callback`] hook, as `bpf_loop`'s does. Every element visited counts, including
//! the one whose callback returned non-zero and stopped the walk; the count is the result.
//! Per-CPU maps show the calling CPU's value. Hash maps are walked over a snapshot of their
//! keys, so elements the callback deletes before they are reached are skipped and elements
//! it inserts are not visited (the kernel may or may not visit those, depending on buckets).

use crate::maps::{types, MapHandle};
use crate::vm::env::RunEnv;
use crate::vm::memory::{MemoryMap, Region, RegionKind};

const EINVAL: u64 = (-(libc::EINVAL as i64)) as u64;
const HELPER: &str = "for_each_map_elem";

/// `long bpf_for_each_map_elem(map, callback_fn, callback_ctx, flags)`.
pub(super) unsafe extern "C" fn for_each_map_elem(
    map: u64,
    callback: u64,
    cb_ctx: u64,
    flags: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live RunEnv; the borrow ends before any callback runs.
    let e = unsafe { &mut *env };
    // SAFETY: map argument proven by the verifier or checked.
    let Some(h) = (unsafe { e.map_arg(HELPER, map) }) else {
        return 0;
    };
    let is_array = matches!(h.map_type, types::ARRAY | types::PERCPU_ARRAY);
    let is_hash = matches!(
        h.map_type,
        types::HASH | types::PERCPU_HASH | types::LRU_HASH | types::LRU_PERCPU_HASH
    );
    if !is_array && !is_hash {
        e.raise(
            HELPER,
            format!("map type {} has no for_each", types::name(h.map_type)),
        );
        return 0;
    }
    if flags != 0 {
        return EINVAL;
    }
    let Some(hook) = e.callback else {
        e.raise(HELPER, "engine provides no callback hook");
        return 0;
    };
    let mut walk = Walk {
        env,
        hook,
        handle: h,
        callback,
        cb_ctx,
        saved: e.checked.then(|| e.memory.clone()),
        visited: 0,
    };
    if is_array {
        for i in 0..h.max_entries {
            if !walk.visit(&i.to_ne_bytes()) {
                break;
            }
        }
    } else {
        for key in hash_keys(h) {
            if !walk.visit(&key) {
                break;
            }
        }
    }
    walk.finish()
}

/// Every key of a hash map, in its iteration order, taken before the walk starts.
fn hash_keys(h: &MapHandle) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    while let Ok(Some(next)) = h.map.next_key(cur.as_deref()) {
        keys.push(next.clone());
        cur = Some(next);
        if keys.len() > h.max_entries as usize {
            // Defensive: a map never holds more than max_entries keys.
            break;
        }
    }
    keys
}

/// One walk over a map's elements.
struct Walk<'a> {
    env: *mut RunEnv,
    hook: crate::vm::env::CallbackFn,
    handle: &'a MapHandle,
    callback: u64,
    cb_ctx: u64,
    /// The caller's regions (checked runs): each callback starts from them plus its key and
    /// value, so regions do not pile up over a long walk.
    saved: Option<MemoryMap>,
    visited: u64,
}

impl Walk<'_> {
    /// Calls the callback for `key` if it is still in the map; false when the walk must stop
    /// (the callback returned non-zero, or faulted).
    fn visit(&mut self, key: &[u8]) -> bool {
        // SAFETY: the engine's RunEnv outlives the helper call; no other borrow is live.
        let cpu = unsafe { (*self.env).cpu };
        let Some(value) = self.handle.map.lookup(key, cpu) else {
            return true;
        };
        if let Some(base) = &self.saved {
            // SAFETY: as above.
            let memory = unsafe { &mut (*self.env).memory };
            memory.clone_from(base);
            memory.add(Region {
                start: key.as_ptr() as u64,
                len: key.len() as u64,
                writable: false,
                kind: RegionKind::ReadOnly,
            });
            memory.add(self.handle.value_region(value.as_ptr() as u64));
        }
        self.visited += 1;
        let args = [
            self.handle.addr(),
            key.as_ptr() as u64,
            value.as_ptr() as u64,
            self.cb_ctx,
            0,
        ];
        // SAFETY: the engine installed `hook` for this run and `env` stays live; `key` and
        // `value` stay valid during the call (key: borrowed here; value: retired values live
        // until quiesce, which never runs during a run).
        match unsafe { (self.hook)(self.env, self.callback, args) } {
            Ok(0) => true,
            Ok(_) => false,
            Err(fault) => {
                // SAFETY: the callback has returned; nothing else borrows env.
                let e = unsafe { &mut *self.env };
                e.fault = Some(fault);
                e.fault_flag = 1;
                false
            }
        }
    }

    /// Restores the caller's regions and returns the helper's result.
    fn finish(self) -> u64 {
        // SAFETY: as in `visit`.
        let e = unsafe { &mut *self.env };
        if let Some(base) = self.saved {
            e.memory = base;
        }
        if e.fault_flag != 0 {
            0
        } else {
            self.visited
        }
    }
}
