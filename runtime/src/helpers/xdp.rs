//! XDP packet helpers: head/meta/tail adjustment (44, 54, 65), byte access (189, 190) and
//! redirects (23, 51), with the kernel's bounds and return codes.

use crate::context::{XdpContext, ETH_HLEN, XDP_FRAME_STRUCT_SIZE};
use crate::vm::env::{Redirect, RunEnv};
use crate::vm::memory::{Access, Region, RegionKind};

const EINVAL: u64 = (-(libc::EINVAL as i64)) as u64;
const EACCES: u64 = (-(libc::EACCES as i64)) as u64;
const XDP_ABORTED: u64 = 0;
const XDP_REDIRECT: u64 = 4;

/// Resolves the context argument; in checked runs it must be this run's context.
///
/// # Safety
/// `env` is live; in trusted runs `ctx` is the run's `XdpContext` (verifier: PTR_TO_CTX).
unsafe fn xdp_ctx<'a>(
    env: &mut RunEnv,
    helper: &'static str,
    ctx: u64,
) -> Option<&'a mut XdpContext> {
    if env.checked && ctx != env.ctx as u64 {
        env.raise(helper, format!("{ctx:#x} is not the program context"));
        return None;
    }
    // SAFETY: checked to be the run's context, or proven by the verifier.
    Some(unsafe { &mut *(ctx as *mut XdpContext) })
}

/// Keeps the checked-run packet region equal to `[data_meta, data_end)`.
fn refresh_packet_region(env: &mut RunEnv, ctx: &XdpContext) {
    if env.checked {
        env.memory.replace(
            RegionKind::Packet,
            Region {
                start: ctx.md.data_meta as u64,
                len: (ctx.md.data_end - ctx.md.data_meta) as u64,
                writable: true,
                kind: RegionKind::Packet,
            },
        );
    }
}

/// `long bpf_xdp_adjust_head(ctx, delta)`.
pub(super) unsafe extern "C" fn xdp_adjust_head(
    ctx: u64,
    delta: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see xdp_ctx.
    let Some(c) = (unsafe { xdp_ctx(env, "xdp_adjust_head", ctx) }) else {
        return 0;
    };
    let offset = delta as i32 as i64;
    let metalen = (c.md.data - c.md.data_meta) as i64;
    let data_start = (c.frame_start + XDP_FRAME_STRUCT_SIZE as u64) as i64 + metalen;
    let data = c.md.data as i64 + offset;
    if data < data_start || data > c.md.data_end as i64 - ETH_HLEN as i64 {
        return EINVAL;
    }
    if metalen > 0 {
        // SAFETY: both ranges lie inside the frame (data_start bound above).
        unsafe {
            std::ptr::copy(
                c.md.data_meta as usize as *const u8,
                (c.md.data_meta as i64 + offset) as usize as *mut u8,
                metalen as usize,
            )
        };
    }
    c.md.data_meta = (c.md.data_meta as i64 + offset) as u32;
    c.md.data = data as u32;
    refresh_packet_region(env, c);
    0
}

/// `long bpf_xdp_adjust_meta(ctx, delta)`.
pub(super) unsafe extern "C" fn xdp_adjust_meta(
    ctx: u64,
    delta: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see xdp_ctx.
    let Some(c) = (unsafe { xdp_ctx(env, "xdp_adjust_meta", ctx) }) else {
        return 0;
    };
    let meta = c.md.data_meta as i64 + delta as i32 as i64;
    let frame_end = (c.frame_start + XDP_FRAME_STRUCT_SIZE as u64) as i64;
    if meta < frame_end || meta > c.md.data as i64 {
        return EINVAL;
    }
    let metalen = c.md.data as i64 - meta;
    if metalen % 4 != 0 || metalen > 32 {
        return EACCES;
    }
    c.md.data_meta = meta as u32;
    refresh_packet_region(env, c);
    0
}

/// `long bpf_xdp_adjust_tail(ctx, delta)`.
pub(super) unsafe extern "C" fn xdp_adjust_tail(
    ctx: u64,
    delta: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see xdp_ctx.
    let Some(c) = (unsafe { xdp_ctx(env, "xdp_adjust_tail", ctx) }) else {
        return 0;
    };
    let offset = delta as i32 as i64;
    let data_end = c.md.data_end as i64 + offset;
    if data_end > c.hard_end() as i64 || data_end < c.md.data as i64 + ETH_HLEN as i64 {
        return EINVAL;
    }
    if offset > 0 {
        // SAFETY: [data_end, data_end + offset) lies below hard_end, inside the frame.
        unsafe { std::ptr::write_bytes(c.md.data_end as usize as *mut u8, 0, offset as usize) };
    }
    c.md.data_end = data_end as u32;
    refresh_packet_region(env, c);
    0
}

/// Which way `bpf_xdp_load_bytes` / `bpf_xdp_store_bytes` copy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Copy {
    /// Packet to buffer (`load_bytes`): the buffer is written.
    FromPacket,
    /// Buffer to packet (`store_bytes`): the buffer is read.
    ToPacket,
}

/// Both byte-copy helpers: `[offset, offset+len)` must lie inside the packet (else -EINVAL, as
/// the kernel's linear-buffer path) and `buf` inside the program's memory (checked runs).
///
/// # Safety
/// `env` is live and exclusively borrowed; in trusted runs `ctx` and `buf` are as the verifier
/// proved them.
unsafe fn xdp_copy(
    helper: &'static str,
    dir: Copy,
    ctx: u64,
    offset: u64,
    buf: u64,
    len: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see xdp_ctx.
    let Some(c) = (unsafe { xdp_ctx(env, helper, ctx) }) else {
        return 0;
    };
    let (offset, len) = (offset as u32 as u64, len as u32 as u64);
    let pkt_len = (c.md.data_end - c.md.data) as u64;
    if len == 0 || offset + len > pkt_len {
        return EINVAL;
    }
    let buf_access = match dir {
        Copy::FromPacket => Access::Write,
        Copy::ToPacket => Access::Read,
    };
    if !env.check_helper_mem(helper, buf, len, buf_access) {
        return 0;
    }
    let pkt = c.md.data as u64 + offset;
    let (src, dst) = match dir {
        Copy::FromPacket => (pkt, buf),
        Copy::ToPacket => (buf, pkt),
    };
    // SAFETY: both ranges validated above (packet bounds, and buf checked or verified).
    unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, len as usize) };
    0
}

/// `long bpf_xdp_load_bytes(ctx, offset, buf, len)`.
pub(super) unsafe extern "C" fn xdp_load_bytes(
    ctx: u64,
    offset: u64,
    buf: u64,
    len: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    unsafe {
        xdp_copy(
            "xdp_load_bytes",
            Copy::FromPacket,
            ctx,
            offset,
            buf,
            len,
            env,
        )
    }
}

/// `long bpf_xdp_store_bytes(ctx, offset, buf, len)`.
pub(super) unsafe extern "C" fn xdp_store_bytes(
    ctx: u64,
    offset: u64,
    buf: u64,
    len: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: forwarded helper contract.
    unsafe {
        xdp_copy(
            "xdp_store_bytes",
            Copy::ToPacket,
            ctx,
            offset,
            buf,
            len,
            env,
        )
    }
}

/// `long bpf_redirect(ifindex, flags)` (XDP flavour).
pub(super) unsafe extern "C" fn redirect(
    ifindex: u64,
    flags: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    if flags != 0 {
        return XDP_ABORTED;
    }
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    unsafe {
        (*env).redirect = Redirect::Ifindex {
            ifindex: ifindex as u32,
            flags,
        }
    };
    XDP_REDIRECT
}

/// `long bpf_redirect_map(map, key, flags)`: the low two flag bits are the verdict when the
/// key has no target, as in the kernel.
pub(super) unsafe extern "C" fn redirect_map(
    map: u64,
    key: u64,
    flags: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    const ACTION_MASK: u64 = 3;
    const BROADCAST_FLAGS: u64 = 8 | 16;
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: map argument proven by the verifier or checked.
    let Some(h) = (unsafe { env.map_arg("redirect_map", map) }) else {
        return 0;
    };
    if flags & !(ACTION_MASK | BROADCAST_FLAGS) != 0 {
        return XDP_ABORTED;
    }
    let key32 = key as u32;
    if h.map.lookup(&key32.to_ne_bytes(), env.cpu).is_none() {
        env.redirect = Redirect::None;
        return flags & ACTION_MASK;
    }
    env.redirect = Redirect::Map {
        map,
        key: key32,
        flags,
    };
    XDP_REDIRECT
}
