//! `bpf_perf_event_output` (25): records to PERF_EVENT_ARRAY readers.

use crate::vm::env::RunEnv;
use crate::vm::memory::Access;

/// `long bpf_perf_event_output(ctx, map, flags, data, size)` (XDP flavour: the upper 32 bits
/// of `flags` ask for that many packet bytes to follow `data` in the record).
pub(super) unsafe extern "C" fn perf_event_output(
    ctx: u64,
    map: u64,
    flags: u64,
    data: u64,
    size: u64,
    env: *mut RunEnv,
) -> u64 {
    const INDEX_MASK: u64 = 0xffff_ffff;
    const CURRENT_CPU: u64 = INDEX_MASK;
    let errno = |e: i32| (-(e as i64)) as u64;
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: map argument proven by the verifier or checked.
    let Some(h) = (unsafe { env.map_arg("perf_event_output", map) }) else {
        return 0;
    };
    let Some(perf) = h
        .map
        .as_any()
        .downcast_ref::<crate::maps::PerfEventArrayMap>()
    else {
        env.raise("perf_event_output", "map is not a perf_event_array");
        return 0;
    };
    if !env.check_helper_mem("perf_event_output", data, size, Access::Read) {
        return 0;
    }
    let index = match flags & INDEX_MASK {
        CURRENT_CPU => env.cpu as u64,
        i => i,
    };
    if index >= h.max_entries as u64 {
        return errno(libc::E2BIG);
    }
    let ctx_len = (flags >> 32) as usize;
    // SAFETY: checked above or proven by the verifier.
    let mut record =
        unsafe { std::slice::from_raw_parts(data as *const u8, size as usize) }.to_vec();
    if ctx_len > 0 && ctx == env.ctx as u64 {
        // SAFETY: ctx is this run's XDP context (checked just above).
        let md = unsafe { (*(ctx as *const crate::context::XdpContext)).md };
        let pkt_len = (md.data_end - md.data) as usize;
        if ctx_len > pkt_len {
            return errno(libc::EFAULT);
        }
        // SAFETY: [data, data + ctx_len) lies inside the packet.
        record.extend_from_slice(unsafe {
            std::slice::from_raw_parts(md.data as usize as *const u8, ctx_len)
        });
    }
    match perf.output(index as u32, record) {
        Ok(()) => 0,
        Err(e) => e.errno() as u64,
    }
}
