//! `struct bpf_spin_lock` inside map values, as the kernel's `copy_map_value` and
//! `copy_map_value_locked` treat it: updates never overwrite the lock word, user reads show it
//! as 0, and `BPF_F_LOCK` updates copy the value while holding the lock — the same lock
//! protocol as `bpf_spin_lock`/`bpf_spin_unlock` (0 free, non-zero held).

use std::sync::atomic::{AtomicU32, Ordering};

/// Size of `struct bpf_spin_lock`.
const LOCK_SIZE: usize = 4;

/// Copies `src` to `dst`, except the 4 bytes at `lock` (when there is a lock word).
///
/// # Safety
/// `dst` must be valid for writes of `src.len()` bytes.
pub(crate) unsafe fn copy_around(dst: *mut u8, src: &[u8], lock: Option<u32>) {
    match lock
        .map(|l| l as usize)
        .filter(|&l| l + LOCK_SIZE <= src.len())
    {
        None => {
            // SAFETY: caller's contract.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
        }
        Some(l) => {
            // SAFETY: both ranges lie inside [dst, dst + src.len()) (l + 4 <= len).
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), dst, l);
                std::ptr::copy_nonoverlapping(
                    src.as_ptr().add(l + LOCK_SIZE),
                    dst.add(l + LOCK_SIZE),
                    src.len() - l - LOCK_SIZE,
                );
            }
        }
    }
}

/// [`copy_around`] while holding the value's own spin lock (`BPF_F_LOCK`).
///
/// # Safety
/// As [`copy_around`]; `dst + lock` must be 4-byte aligned (BTF places the lock so).
pub(crate) unsafe fn copy_locked(dst: *mut u8, src: &[u8], lock: u32) {
    // SAFETY: the lock word lies inside the value and is aligned (caller's contract);
    // AtomicU32 has the layout of u32.
    let word = unsafe { &*(dst.add(lock as usize) as *const AtomicU32) };
    while word
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        while word.load(Ordering::Relaxed) != 0 {
            std::hint::spin_loop();
        }
    }
    // SAFETY: caller's contract.
    unsafe { copy_around(dst, src, Some(lock)) };
    word.store(0, Ordering::Release);
}

/// Shows the lock word of a value copied out for the user as 0.
pub(crate) fn hide(value: &mut [u8], lock: Option<u32>) {
    if let Some(w) = lock.and_then(|l| value.get_mut(l as usize..l as usize + LOCK_SIZE)) {
        w.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_skip_the_lock_word_and_reads_hide_it() {
        let mut dst = [0xaau8; 12];
        dst[4..8].copy_from_slice(&1u32.to_ne_bytes());
        // SAFETY: dst has 12 bytes.
        unsafe { copy_around(dst.as_mut_ptr(), &[7u8; 12], Some(4)) };
        assert_eq!(&dst[..4], &[7; 4]);
        assert_eq!(&dst[4..8], &1u32.to_ne_bytes(), "lock word untouched");
        assert_eq!(&dst[8..], &[7; 4]);
        hide(&mut dst, Some(4));
        assert_eq!(&dst[4..8], &[0; 4]);
        let mut free = [0u32; 3];
        // SAFETY: 12 aligned bytes; the lock at offset 4 is free.
        unsafe { copy_locked(free.as_mut_ptr().cast(), &[9u8; 12], 4) };
        assert_eq!(
            free,
            [u32::from_ne_bytes([9; 4]), 0, u32::from_ne_bytes([9; 4])]
        );
    }
}
