//! `bpf_csum_diff` (28), bit-exact with x86-64's `csum_partial`.

use crate::vm::env::RunEnv;
use crate::vm::memory::Access;

const EINVAL: u64 = (-(libc::EINVAL as i64)) as u64;

fn add64_with_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + c as u64
}

/// x86-64 `csum_partial`: 64-bit one's-complement sum of little-endian words, folded to 32.
pub fn csum_partial(buf: &[u8], seed: u32) -> u32 {
    let mut sum = seed as u64;
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        sum = add64_with_carry(sum, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        sum = add64_with_carry(sum, u64::from_le_bytes(tail));
    }
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// `s64 bpf_csum_diff(from, from_size, to, to_size, seed)`.
pub(super) unsafe extern "C" fn csum_diff(
    from: u64,
    from_size: u64,
    to: u64,
    to_size: u64,
    seed: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    let (from_size, to_size) = (from_size as u32 as usize, to_size as u32 as usize);
    if from_size % 4 != 0 || to_size % 4 != 0 || from_size + to_size > 512 {
        return EINVAL;
    }
    if !env.check_helper_mem("csum_diff", from, from_size as u64, Access::Read)
        || !env.check_helper_mem("csum_diff", to, to_size as u64, Access::Read)
    {
        return 0;
    }
    let mut diff = [0u8; 512];
    // A zero size may come with a NULL pointer (the kernel ABI allows it): no slice then.
    let bytes = |addr: u64, len: usize| -> &[u8] {
        if len == 0 {
            &[]
        } else {
            // SAFETY: range checked above (checked runs) or proven by the verifier.
            unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
        }
    };
    let (f, t) = (bytes(from, from_size), bytes(to, to_size));
    for (d, s) in diff.iter_mut().zip(f) {
        *d = !s;
    }
    diff[from_size..from_size + to_size].copy_from_slice(t);
    csum_partial(&diff[..from_size + to_size], seed as u32) as u64
}
