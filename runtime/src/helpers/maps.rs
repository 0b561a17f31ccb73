//! Map helpers: lookup (1), update (2), delete (3).

use crate::maps::MapHandle;
use crate::vm::env::RunEnv;
use crate::vm::memory::Access;

/// Reads `len` bytes at `addr` after a checked-run bounds check.
///
/// # Safety
/// In trusted runs the verifier proved `[addr, addr+len)` readable.
unsafe fn arg_bytes<'a>(
    env: &mut RunEnv,
    helper: &'static str,
    addr: u64,
    len: u32,
) -> Option<&'a [u8]> {
    if !env.check_helper_mem(helper, addr, len as u64, Access::Read) {
        return None;
    }
    // SAFETY: checked above (checked runs) or proven by the verifier (trusted runs).
    Some(unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) })
}

/// The map and key arguments every map helper takes: the map checked to be this program's (in
/// checked runs) and the key read for the map's key size.
///
/// # Safety
/// `env` is the engine's live environment; in trusted runs the verifier proved both arguments.
unsafe fn map_and_key<'a>(
    env: *mut RunEnv,
    helper: &'static str,
    map: u64,
    key: u64,
) -> Option<(&'a mut RunEnv, &'a MapHandle, &'a [u8])> {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: map pointer from a verified program, or checked (checked runs).
    let h = unsafe { env.map_arg(helper, map) }?;
    // SAFETY: as above, for the key.
    let key = unsafe { arg_bytes(env, helper, key, h.key_size) }?;
    Some((env, h, key))
}

/// `void *bpf_map_lookup_elem(map, key)`.
pub(super) unsafe extern "C" fn map_lookup_elem(
    map: u64,
    key: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    let Some((env, h, key)) = (unsafe { map_and_key(env, "map_lookup_elem", map, key) }) else {
        return 0;
    };
    match h.map.lookup(key, env.cpu) {
        Some(p) if env.checked && crate::maps::of_maps::is_map_of_maps(h.map_type) => {
            // An inner map's handle: a map argument for later helper calls, never memory the
            // program may touch.
            let addr = p.as_ptr() as u64;
            if let Err(i) = env.inner_handles.binary_search(&addr) {
                env.inner_handles.insert(i, addr);
            }
            addr
        }
        Some(p) => {
            if env.checked {
                env.memory.add(h.value_region(p.as_ptr() as u64));
            }
            p.as_ptr() as u64
        }
        None => 0,
    }
}

/// `long bpf_map_update_elem(map, key, value, flags)`.
pub(super) unsafe extern "C" fn map_update_elem(
    map: u64,
    key: u64,
    value: u64,
    flags: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    let Some((env, h, key)) = (unsafe { map_and_key(env, "map_update_elem", map, key) }) else {
        return 0;
    };
    // SAFETY: as above.
    let Some(value) = (unsafe { arg_bytes(env, "map_update_elem", value, h.value_size) }) else {
        return 0;
    };
    match h.map.update(key, value, flags, env.cpu) {
        Ok(()) => 0,
        Err(e) => e.errno() as u64,
    }
}

/// `long bpf_map_delete_elem(map, key)`.
pub(super) unsafe extern "C" fn map_delete_elem(
    map: u64,
    key: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    let Some((_, h, key)) = (unsafe { map_and_key(env, "map_delete_elem", map, key) }) else {
        return 0;
    };
    match h.map.delete(key) {
        Ok(()) => 0,
        Err(e) => e.errno() as u64,
    }
}
