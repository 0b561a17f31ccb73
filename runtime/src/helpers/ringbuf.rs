//! RINGBUF helpers: `ringbuf_output` (130), `ringbuf_reserve` (131), `ringbuf_submit` (132),
//! `ringbuf_discard` (133), `ringbuf_query` (134).

use crate::maps::ringbuf::{RingBufMap, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use crate::vm::env::RunEnv;
use crate::vm::memory::{Access, Region, RegionKind};

fn errno(e: i32) -> u64 {
    (-(e as i64)) as u64
}

/// The ring buffer behind a helper's map argument; raises a fault (checked runs) when the
/// argument is not one.
///
/// # Safety
/// `env` is the engine's live environment; in trusted runs the verifier proved `map`.
unsafe fn ring_arg<'a>(
    env: *mut RunEnv,
    helper: &'static str,
    map: u64,
) -> Option<(&'a mut RunEnv, &'a RingBufMap)> {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: map pointer from a verified program, or checked (checked runs).
    let h = unsafe { env.map_arg(helper, map) }?;
    match h.map.as_any().downcast_ref::<RingBufMap>() {
        Some(rb) => Some((env, rb)),
        None => {
            env.raise(helper, "map is not a ringbuf");
            None
        }
    }
}

/// `long bpf_ringbuf_output(ringbuf, data, size, flags)`: 0, -EINVAL for unknown flags,
/// -EAGAIN when the ring is full.
pub(super) unsafe extern "C" fn ringbuf_output(
    map: u64,
    data: u64,
    size: u64,
    flags: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    let Some((env, rb)) = (unsafe { ring_arg(env, "ringbuf_output", map) }) else {
        return 0;
    };
    if !env.check_helper_mem("ringbuf_output", data, size, Access::Read) {
        return 0;
    }
    if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
        return errno(libc::EINVAL);
    }
    let bytes: &[u8] = if size == 0 {
        &[]
    } else {
        // SAFETY: checked above (checked runs) or proven readable by the verifier.
        unsafe { std::slice::from_raw_parts(data as *const u8, size as usize) }
    };
    if rb.output(bytes) {
        0
    } else {
        errno(libc::EAGAIN)
    }
}

/// `void *bpf_ringbuf_reserve(ringbuf, size, flags)`: a record the program fills and then
/// submits or discards; NULL when flags are set or the ring is full.
pub(super) unsafe extern "C" fn ringbuf_reserve(
    map: u64,
    size: u64,
    flags: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    let Some((env, rb)) = (unsafe { ring_arg(env, "ringbuf_reserve", map) }) else {
        return 0;
    };
    if flags != 0 {
        return 0;
    }
    let Some(rec) = rb.reserve(size) else {
        return 0;
    };
    if env.checked {
        env.memory.add(Region {
            start: rec.as_ptr() as u64,
            len: size,
            writable: true,
            kind: RegionKind::MapValue,
        });
    }
    rec.as_ptr() as u64
}

/// Submit or discard: in checked runs the pointer must be a live record of some ring.
///
/// # Safety
/// As the helpers: in trusted runs the verifier proved `sample` a reserved record.
unsafe fn commit(env: *mut RunEnv, helper: &'static str, sample: u64, discard: bool) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    if env.checked && !RingBufMap::is_live_record(sample) {
        env.raise(
            helper,
            format!("{sample:#x} is not a reserved ringbuf record"),
        );
        return 0;
    }
    // SAFETY: a live record (checked above, or proven by the verifier).
    unsafe { RingBufMap::commit_raw(sample, discard) };
    0
}

/// `void bpf_ringbuf_submit(data, flags)`.
pub(super) unsafe extern "C" fn ringbuf_submit(
    sample: u64,
    _flags: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    unsafe { commit(env, "ringbuf_submit", sample, false) }
}

/// `void bpf_ringbuf_discard(data, flags)`.
pub(super) unsafe extern "C" fn ringbuf_discard(
    sample: u64,
    _flags: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    unsafe { commit(env, "ringbuf_discard", sample, true) }
}

/// `u64 bpf_ringbuf_query(ringbuf, flags)`.
pub(super) unsafe extern "C" fn ringbuf_query(
    map: u64,
    flags: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    let Some((_, rb)) = (unsafe { ring_arg(env, "ringbuf_query", map) }) else {
        return 0;
    };
    rb.query(flags)
}
