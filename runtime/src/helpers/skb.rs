//! `__sk_buff` packet helpers of TC programs: byte access (9, 26), checksum fix-ups (10, 11)
//! and tail resizing (38), with `net/core/filter.c`'s checks and return codes.
//!
//! Frames are linear and writable (as in `BPF_PROG_TEST_RUN`), so the kernel's
//! `bpf_try_make_writable(skb, n)` reduces to `n <= skb->len`. `ip_summed` is `CHECKSUM_NONE`
//! there, which makes the `skb->csum` bookkeeping of the checksum helpers a no-op.

use crate::skb::{SkbContext, SK_BUFF_SIZE};
use crate::vm::env::RunEnv;
use crate::vm::memory::{Access, Region, RegionKind};

const EINVAL: u64 = (-(libc::EINVAL as i64)) as u64;
const EFAULT: u64 = (-(libc::EFAULT as i64)) as u64;

/// `bpf_skb_store_bytes` flags.
const BPF_F_RECOMPUTE_CSUM: u64 = 1 << 0;
const BPF_F_INVALIDATE_HASH: u64 = 1 << 1;
/// `bpf_l3/l4_csum_replace` flags: the field size (0, 2 or 4) in the low bits.
const BPF_F_HDR_FIELD_MASK: u64 = 0xf;
const BPF_F_PSEUDO_HDR: u64 = 1 << 4;
const BPF_F_MARK_MANGLED_0: u64 = 1 << 5;
const BPF_F_MARK_ENFORCE: u64 = 1 << 6;
/// `BPF_F_IPV6` (Linux 6.16+): only changes `CHECKSUM_COMPLETE` bookkeeping.
const BPF_F_IPV6: u64 = 1 << 7;
/// What `BPF_F_MARK_MANGLED_0` writes instead of a zero UDP checksum.
const CSUM_MANGLED_0: u16 = 0xffff;

/// Resolves the context argument; in checked runs it must be this run's `__sk_buff`.
///
/// # Safety
/// `env` is live; in trusted runs `ctx` is the run's [`SkbContext`] (verifier: PTR_TO_CTX of
/// a TC program, whose runs always use an `SkbFrame`).
unsafe fn skb_ctx<'a>(
    env: &mut RunEnv,
    helper: &'static str,
    ctx: u64,
) -> Option<&'a mut SkbContext> {
    if env.checked {
        let is_skb = ctx == env.ctx as u64
            && env.memory.regions().iter().any(|r| {
                r.kind == RegionKind::Context && r.start == ctx && r.len == SK_BUFF_SIZE as u64
            });
        if !is_skb {
            env.raise(helper, format!("{ctx:#x} is not the program's __sk_buff"));
            return None;
        }
    }
    // SAFETY: checked to be the run's skb context, or proven by the verifier.
    Some(unsafe { &mut *(ctx as *mut SkbContext) })
}

/// Whether `[offset, offset + len)` lies inside the packet (`pskb_may_pull` on a linear skb).
fn in_packet(c: &SkbContext, offset: u64, len: u64) -> bool {
    offset
        .checked_add(len)
        .is_some_and(|end| end <= c.packet_len() as u64)
}

/// `long bpf_skb_store_bytes(skb, offset, from, len, flags)`.
pub(super) unsafe extern "C" fn skb_store_bytes(
    ctx: u64,
    offset: u64,
    from: u64,
    len: u64,
    flags: u64,
    env: *mut RunEnv,
) -> u64 {
    const HELPER: &str = "skb_store_bytes";
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see skb_ctx.
    let Some(c) = (unsafe { skb_ctx(env, HELPER, ctx) }) else {
        return 0;
    };
    let (offset, len) = (offset as u32 as u64, len as u32 as u64);
    if flags & !(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH) != 0 {
        return EINVAL;
    }
    // The kernel adds the two as u32: a wrapped sum fails the length check too.
    if offset > i32::MAX as u64 || !in_packet(c, offset, len) {
        return EFAULT;
    }
    if !env.check_helper_mem(HELPER, from, len, Access::Read) {
        return 0;
    }
    // SAFETY: the destination lies inside the packet (checked above); the source was checked
    // (checked runs) or proven readable by the verifier. `copy` allows overlap.
    unsafe {
        std::ptr::copy(
            from as *const u8,
            (c.skb.data as u64 + offset) as usize as *mut u8,
            len as usize,
        )
    };
    // BPF_F_RECOMPUTE_CSUM only matters for CHECKSUM_COMPLETE skbs, which test runs never are.
    if flags & BPF_F_INVALIDATE_HASH != 0 {
        c.skb.hash = 0;
    }
    0
}

/// `long bpf_skb_load_bytes(skb, offset, to, len)`: on failure `to` is zeroed, as the kernel.
pub(super) unsafe extern "C" fn skb_load_bytes(
    ctx: u64,
    offset: u64,
    to: u64,
    len: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    const HELPER: &str = "skb_load_bytes";
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see skb_ctx.
    let Some(c) = (unsafe { skb_ctx(env, HELPER, ctx) }) else {
        return 0;
    };
    let (offset, len) = (offset as u32 as u64, len as u32 as u64);
    if !env.check_helper_mem(HELPER, to, len, Access::Write) {
        return 0;
    }
    if offset > i32::MAX as u64 || !in_packet(c, offset, len) {
        // SAFETY: `to` checked writable for `len` bytes (or proven by the verifier).
        unsafe { std::ptr::write_bytes(to as *mut u8, 0, len as usize) };
        return EFAULT;
    }
    // SAFETY: the source lies inside the packet; `to` checked or proven writable.
    unsafe {
        std::ptr::copy(
            (c.skb.data as u64 + offset) as usize as *const u8,
            to as *mut u8,
            len as usize,
        )
    };
    0
}

/// `long bpf_skb_change_tail(skb, len, flags)`: trims or grows (zero-filled) the packet.
/// `data`/`data_end` change; the verifier makes programs re-read them.
pub(super) unsafe extern "C" fn skb_change_tail(
    ctx: u64,
    new_len: u64,
    flags: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    const HELPER: &str = "skb_change_tail";
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see skb_ctx.
    let Some(c) = (unsafe { skb_ctx(env, HELPER, ctx) }) else {
        return 0;
    };
    if flags != 0 || !c.change_tail(new_len as u32) {
        return EINVAL;
    }
    if env.checked {
        env.memory.replace(
            RegionKind::Packet,
            Region {
                start: c.skb.data as u64,
                len: c.packet_len() as u64,
                writable: true,
                kind: RegionKind::Packet,
            },
        );
    }
    0
}

/// The 16-bit checksum field at `offset` for the two replace helpers: the kernel's offset
/// checks (`> 0xffff` or odd: -EFAULT; past the packet: -EFAULT).
fn csum_field(c: &SkbContext, offset: u64) -> Result<*mut u16, u64> {
    let offset = offset as u32 as u64;
    if offset > 0xffff || offset & 1 != 0 || !in_packet(c, offset, 2) {
        return Err(EFAULT);
    }
    Ok((c.skb.data as u64 + offset) as usize as *mut u16)
}

/// `long bpf_l3_csum_replace(skb, offset, from, to, flags)`.
pub(super) unsafe extern "C" fn l3_csum_replace(
    ctx: u64,
    offset: u64,
    from: u64,
    to: u64,
    flags: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see skb_ctx.
    let Some(c) = (unsafe { skb_ctx(env, "l3_csum_replace", ctx) }) else {
        return 0;
    };
    if flags & !BPF_F_HDR_FIELD_MASK != 0 {
        return EINVAL;
    }
    let ptr = match csum_field(c, offset) {
        Ok(p) => p,
        Err(e) => return e,
    };
    // SAFETY: `ptr` addresses two bytes inside the packet (csum_field).
    let sum = unsafe { ptr.read_unaligned() };
    let new = match flags & BPF_F_HDR_FIELD_MASK {
        0 if from != 0 => return EINVAL,
        0 => csum::replace_by_diff(sum, to as u32),
        2 => csum::replace2(sum, from as u16, to as u16),
        4 => csum::replace4(sum, from as u32, to as u32),
        _ => return EINVAL,
    };
    // SAFETY: as above.
    unsafe { ptr.write_unaligned(new) };
    0
}

/// `long bpf_l4_csum_replace(skb, offset, from, to, flags)`. With `ip_summed` not
/// `CHECKSUM_PARTIAL`, `inet_proto_csum_replace*` update the field whatever
/// `BPF_F_PSEUDO_HDR` says; `BPF_F_MARK_MANGLED_0` leaves a zero (disabled) UDP checksum alone
/// and turns a computed zero into `CSUM_MANGLED_0`.
pub(super) unsafe extern "C" fn l4_csum_replace(
    ctx: u64,
    offset: u64,
    from: u64,
    to: u64,
    flags: u64,
    env: *mut RunEnv,
) -> u64 {
    const KNOWN: u64 = BPF_F_MARK_MANGLED_0
        | BPF_F_MARK_ENFORCE
        | BPF_F_PSEUDO_HDR
        | BPF_F_HDR_FIELD_MASK
        | BPF_F_IPV6;
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    // SAFETY: see skb_ctx.
    let Some(c) = (unsafe { skb_ctx(env, "l4_csum_replace", ctx) }) else {
        return 0;
    };
    if flags & !KNOWN != 0 {
        return EINVAL;
    }
    let ptr = match csum_field(c, offset) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mangled0 = flags & BPF_F_MARK_MANGLED_0 != 0;
    // SAFETY: `ptr` addresses two bytes inside the packet (csum_field).
    let sum = unsafe { ptr.read_unaligned() };
    if mangled0 && flags & BPF_F_MARK_ENFORCE == 0 && sum == 0 {
        return 0;
    }
    let mut new = match flags & BPF_F_HDR_FIELD_MASK {
        0 if from != 0 => return EINVAL,
        0 => csum::replace_by_diff(sum, to as u32),
        // inet_proto_csum_replace2 widens the 16-bit values and calls replace4.
        2 => csum::replace4(sum, from as u16 as u32, to as u16 as u32),
        4 => csum::replace4(sum, from as u32, to as u32),
        _ => return EINVAL,
    };
    if mangled0 && new == 0 {
        new = CSUM_MANGLED_0;
    }
    // SAFETY: as above.
    unsafe { ptr.write_unaligned(new) };
    0
}

/// The kernel's one's-complement primitives (`include/net/checksum.h`), on raw memory-order
/// values: the arithmetic is byte-order independent as long as it is consistent.
mod csum {
    /// `csum_add`: 32-bit add with end-around carry.
    fn add(a: u32, b: u32) -> u32 {
        let (s, c) = a.overflowing_add(b);
        s.wrapping_add(c as u32)
    }

    /// `csum_fold`: 32 bits to a complemented 16-bit checksum.
    pub(super) fn fold(sum: u32) -> u16 {
        let s = (sum & 0xffff) + (sum >> 16);
        let s = (s & 0xffff) + (s >> 16);
        !(s as u16)
    }

    /// `csum_replace_by_diff`: `*sum = csum_fold(csum_add(diff, ~csum_unfold(*sum)))`.
    pub(super) fn replace_by_diff(sum: u16, diff: u32) -> u16 {
        fold(add(diff, !(sum as u32)))
    }

    /// `csum_replace4`.
    pub(super) fn replace4(sum: u16, from: u32, to: u32) -> u16 {
        let tmp = add(!(sum as u32), !from);
        fold(add(tmp, to))
    }

    /// `csum16_add`.
    fn add16(a: u16, b: u16) -> u16 {
        let (s, c) = a.overflowing_add(b);
        s.wrapping_add(c as u16)
    }

    /// `csum_replace2`: `*sum = ~csum16_add(csum16_sub(~(*sum), old), new)`.
    pub(super) fn replace2(sum: u16, from: u16, to: u16) -> u16 {
        !add16(add16(!sum, !from), to)
    }
}

#[cfg(test)]
mod tests {
    use super::csum;

    /// RFC 1071 checksum of big-endian 16-bit words.
    fn checksum(words: &[u16]) -> u16 {
        let mut s: u32 = words.iter().map(|&w| w as u32).sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn replace_keeps_checksums_valid() {
        let mut hdr = [
            0x4500u16, 0x0054, 0x1c46, 0x4000, 0x4001, 0, 0xac10, 0x0a63, 0xac10, 0x0a0c,
        ];
        hdr[5] = checksum(&hdr);
        // Change one 16-bit word.
        let old = hdr[1];
        hdr[1] = 0x0100;
        let r2 = csum::replace2(hdr[5], old, hdr[1]);
        let mut check = hdr;
        check[5] = 0;
        assert_eq!(r2, checksum(&check));
        // Change a 32-bit pair of words: the halves of a u32 sum like two words.
        let from = ((hdr[6] as u32) << 16) | hdr[7] as u32;
        let to = 0x0a00_0001u32;
        hdr[6] = (to >> 16) as u16;
        hdr[7] = to as u16;
        let r4 = csum::replace4(r2, from, to);
        check = hdr;
        check[5] = 0;
        assert_eq!(r4, checksum(&check));
        // By diff: the csum_diff of the same change.
        let diff = (!from)
            .wrapping_add(to)
            .wrapping_add(((!from).checked_add(to).is_none()) as u32);
        assert_eq!(csum::replace_by_diff(r2, diff), r4);
    }
}
