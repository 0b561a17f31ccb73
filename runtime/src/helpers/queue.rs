//! QUEUE/STACK helpers: `map_push_elem` (87), `map_pop_elem` (88), `map_peek_elem` (89).

use crate::maps::queue::QueueMap;
use crate::maps::MapHandle;
use crate::vm::env::RunEnv;
use crate::vm::memory::Access;

/// The queue or stack behind a helper's map argument, plus its value size; raises a fault
/// (checked runs) when the argument is not one.
///
/// # Safety
/// `env` is the engine's live environment; in trusted runs the verifier proved `map`.
unsafe fn queue_arg<'a>(
    env: *mut RunEnv,
    helper: &'static str,
    map: u64,
) -> Option<(&'a mut RunEnv, &'a MapHandle, &'a QueueMap)> {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: map pointer from a verified program, or checked (checked runs).
    let h: &MapHandle = unsafe { env.map_arg(helper, map) }?;
    match h.map.as_any().downcast_ref::<QueueMap>() {
        Some(q) => Some((env, h, q)),
        None => {
            env.raise(helper, "map is not a queue or stack");
            None
        }
    }
}

/// `long bpf_map_push_elem(map, value, flags)`.
pub(super) unsafe extern "C" fn map_push_elem(
    map: u64,
    value: u64,
    flags: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    let Some((env, h, q)) = (unsafe { queue_arg(env, "map_push_elem", map) }) else {
        return 0;
    };
    let len = h.value_size as u64;
    if !env.check_helper_mem("map_push_elem", value, len, Access::Read) {
        return 0;
    }
    // SAFETY: checked above (checked runs) or proven by the verifier (trusted runs).
    let v = unsafe { std::slice::from_raw_parts(value as *const u8, len as usize) };
    match q.push(v, flags) {
        Ok(()) => 0,
        Err(e) => e.errno() as u64,
    }
}

/// Pop (`remove`) or peek into the program's `value` buffer.
///
/// # Safety
/// As the helpers.
unsafe fn take(env: *mut RunEnv, helper: &'static str, map: u64, value: u64, remove: bool) -> u64 {
    // SAFETY: forwarded helper contract.
    let Some((env, h, q)) = (unsafe { queue_arg(env, helper, map) }) else {
        return 0;
    };
    let len = h.value_size as u64;
    if !env.check_helper_mem(helper, value, len, Access::Write) {
        return 0;
    }
    // SAFETY: checked above (checked runs) or proven writable by the verifier.
    let out = unsafe { std::slice::from_raw_parts_mut(value as *mut u8, len as usize) };
    match q.take_into(out, remove) {
        Ok(()) => 0,
        Err(e) => e.errno() as u64,
    }
}

/// `long bpf_map_pop_elem(map, value)`.
pub(super) unsafe extern "C" fn map_pop_elem(
    map: u64,
    value: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    unsafe { take(env, "map_pop_elem", map, value, true) }
}

/// `long bpf_map_peek_elem(map, value)`.
pub(super) unsafe extern "C" fn map_peek_elem(
    map: u64,
    value: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    unsafe { take(env, "map_peek_elem", map, value, false) }
}
