//! Control-flow helpers: tail calls (12) and bpf_loop (181).

use crate::maps::ProgArrayMap;
use crate::vm::env::RunEnv;

/// Most tail calls in one chain, as the kernel (`MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALLS: u32 = 33;
const ENOENT: u64 = (-(libc::ENOENT as i64)) as u64;
const EINVAL: u64 = (-(libc::EINVAL as i64)) as u64;
const E2BIG: u64 = (-(libc::E2BIG as i64)) as u64;

/// `long bpf_tail_call(ctx, prog_array, index)`: on success the engine unwinds to the
/// dispatcher, which continues with the target; on failure the program goes on.
pub(super) unsafe extern "C" fn tail_call(
    _ctx: u64,
    map: u64,
    index: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: map argument proven by the verifier or checked.
    let Some(h) = (unsafe { env.map_arg("tail_call", map) }) else {
        return 0;
    };
    let Some(array) = h.map.as_any().downcast_ref::<ProgArrayMap>() else {
        env.raise("tail_call", "map is not a prog_array");
        return 0;
    };
    let target = array.get(index as u32);
    if target.is_null() || env.tail_call_count >= MAX_TAIL_CALLS {
        return ENOENT;
    }
    env.tail_call_count += 1;
    env.tail_call_target = target;
    env.tail_call_pending = 1;
    0
}

/// `long bpf_loop(nr_loops, callback_fn, callback_ctx, flags)`.
pub(super) unsafe extern "C" fn bpf_loop(
    nr: u64,
    callback: u64,
    cb_ctx: u64,
    flags: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    const MAX_LOOPS: u64 = 1 << 23;
    // SAFETY: engines pass their live RunEnv.
    let (hook, nr) = unsafe { ((*env).callback, nr as u32 as u64) };
    if flags != 0 {
        return EINVAL;
    }
    if nr > MAX_LOOPS {
        return E2BIG;
    }
    let Some(hook) = hook else {
        // SAFETY: as above.
        unsafe { (*env).raise("loop", "engine provides no callback hook") };
        return 0;
    };
    for i in 0..nr {
        // SAFETY: the engine installed `hook` for this run and `env` stays live.
        match unsafe { hook(env, callback, [i, cb_ctx, 0, 0, 0]) } {
            Ok(1) => return i + 1,
            Ok(_) => {}
            Err(e) => {
                // SAFETY: as above.
                let env = unsafe { &mut *env };
                env.fault = Some(e);
                env.fault_flag = 1;
                return 0;
            }
        }
    }
    nr
}
