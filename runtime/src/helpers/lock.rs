//! `bpf_spin_lock` (93) and `bpf_spin_unlock` (94): a real spin lock on the 4-byte
//! `struct bpf_spin_lock` inside a map value, shared by every worker (and by the kernel's
//! `BPF_F_LOCK` user operations on the same memory, were a map shared with it).
//!
//! The lock word is 0 when free and 1 when held. The verifier guarantees a program releases
//! every lock it takes before it exits, so between runs all lock words are 0 and map dumps
//! show 0 there, as the kernel's `copy_map_value` (which skips the lock) does.
//!
//! Checked runs also guard against what the verifier would have rejected: a pointer outside
//! writable map values, a misaligned lock, taking a second lock while holding one (which would
//! deadlock on the same lock), and unlocking a lock this thread does not hold.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::vm::env::RunEnv;
use crate::vm::memory::{Access, RegionKind};

thread_local! {
    /// Address of the lock the current thread holds (checked runs only), 0 for none. Runs
    /// are sequential on a thread, so this is also "the lock the current run holds".
    static HELD: Cell<u64> = const { Cell::new(0) };
}

/// In checked runs, whether `addr` may be a `bpf_spin_lock`: 4 aligned bytes inside a
/// writable map value. Raises a fault naming `helper` otherwise.
fn check_lock(env: &mut RunEnv, helper: &'static str, addr: u64) -> bool {
    if !env.checked {
        return true;
    }
    let in_value = env
        .memory
        .regions()
        .iter()
        .any(|r| r.kind == RegionKind::MapValue && r.contains(addr, 4, Access::Write));
    if !in_value {
        env.raise(
            helper,
            format!("{addr:#x} is not a bpf_spin_lock in a writable map value"),
        );
        return false;
    }
    if !addr.is_multiple_of(4) {
        env.raise(helper, format!("lock at {addr:#x} is not 4-byte aligned"));
        return false;
    }
    true
}

/// The lock word at `addr`.
///
/// # Safety
/// `addr` is 4-byte aligned and points to 4 writable bytes that live for `'a` (a map value:
/// checked, or proven by the verifier).
unsafe fn word<'a>(addr: u64) -> &'a AtomicU32 {
    // SAFETY: caller's contract; AtomicU32 has the size and alignment of u32.
    unsafe { &*(addr as *const AtomicU32) }
}

/// `long bpf_spin_lock(struct bpf_spin_lock *lock)`.
pub(super) unsafe extern "C" fn spin_lock(
    lock: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    if !check_lock(env, "spin_lock", lock) {
        return 0;
    }
    if env.checked {
        let held = HELD.with(Cell::get);
        if held != 0 {
            // Either a nested lock (the verifier allows one at a time) or a lock left held by
            // a run that faulted. Release it so that no worker spins on it forever.
            // SAFETY: `held` passed check_lock when it was taken; map values outlive runs
            // until quiesce, and lock words are never freed while the map exists.
            unsafe { word(held) }.store(0, Ordering::Release);
            HELD.with(|h| h.set(0));
            env.raise(
                "spin_lock",
                format!("lock at {lock:#x} taken while holding the lock at {held:#x}"),
            );
            return 0;
        }
    }
    // SAFETY: checked above, or proven a map value's bpf_spin_lock by the verifier.
    let w = unsafe { word(lock) };
    // Acquire pairs with the Release of the unlock: the critical section sees every write
    // the previous holder made.
    while w
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // Spin on a plain load so the cache line stays shared until the holder releases it.
        while w.load(Ordering::Relaxed) != 0 {
            std::hint::spin_loop();
        }
    }
    if env.checked {
        HELD.with(|h| h.set(lock));
    }
    0
}

/// `long bpf_spin_unlock(struct bpf_spin_lock *lock)`.
pub(super) unsafe extern "C" fn spin_unlock(
    lock: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    if !check_lock(env, "spin_unlock", lock) {
        return 0;
    }
    if env.checked {
        if HELD.with(Cell::get) != lock {
            env.raise(
                "spin_unlock",
                format!("lock at {lock:#x} is not held by this program"),
            );
            return 0;
        }
        HELD.with(|h| h.set(0));
    }
    // SAFETY: checked above, or proven a held bpf_spin_lock by the verifier.
    let w = unsafe { word(lock) };
    // Release: the critical section's writes are visible to the next Acquire of the lock.
    w.store(0, Ordering::Release);
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::memory::Region;

    fn env_with(value: &mut [u64]) -> RunEnv {
        let mut env = RunEnv::default();
        env.memory.add(Region {
            start: value.as_ptr() as u64,
            len: value.len() as u64 * 8,
            writable: true,
            kind: RegionKind::MapValue,
        });
        env
    }

    #[test]
    fn lock_unlock_in_checked_runs() {
        let mut value = [0u64; 2];
        let mut env = env_with(&mut value);
        let lock = value.as_ptr() as u64;
        // SAFETY: env is live and the lock lies in `value`.
        unsafe {
            assert_eq!(spin_lock(lock, 0, 0, 0, 0, &mut env), 0);
            assert_eq!(env.fault_flag, 0);
            assert_eq!(value[0] as u32, 1);
            assert_eq!(spin_unlock(lock, 0, 0, 0, 0, &mut env), 0);
        }
        assert_eq!((env.fault_flag, value[0]), (0, 0));
    }

    #[test]
    fn checked_runs_reject_bad_locks() {
        let mut value = [0u64; 1];
        let mut env = env_with(&mut value);
        let stack = [0u32; 1];
        // SAFETY: the helpers check the pointer before touching it.
        unsafe { spin_lock(stack.as_ptr() as u64, 0, 0, 0, 0, &mut env) };
        let err = env.take_fault(3).to_string();
        assert!(
            err.contains("spin_lock") && err.contains("map value"),
            "{err}"
        );
        let lock = value.as_ptr() as u64;
        // SAFETY: as above.
        unsafe { spin_unlock(lock, 0, 0, 0, 0, &mut env) };
        assert!(env.take_fault(4).to_string().contains("not held"));
        // SAFETY: as above.
        unsafe {
            spin_lock(lock, 0, 0, 0, 0, &mut env);
            spin_lock(lock + 4, 0, 0, 0, 0, &mut env);
        }
        assert!(env.take_fault(5).to_string().contains("while holding"));
        assert_eq!(value[0], 0, "the first lock was released");
    }

    #[test]
    fn lock_excludes_other_threads() {
        // Raw memory, written by both threads only under the lock.
        let value = Box::into_raw(Box::new([0u64; 2]));
        let addr = value as u64;
        let threads: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut env = RunEnv {
                        checked: false,
                        ..RunEnv::default()
                    };
                    for _ in 0..10_000 {
                        // SAFETY: `value` is freed only after the threads are joined; the
                        // counter is only touched under the lock.
                        unsafe {
                            spin_lock(addr, 0, 0, 0, 0, &mut env);
                            let c = (addr + 8) as *mut u64;
                            c.write_volatile(c.read_volatile() + 1);
                            spin_unlock(addr, 0, 0, 0, 0, &mut env);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: both threads are joined; `value` came from Box::into_raw above.
        let value = unsafe { Box::from_raw(value) };
        assert_eq!(value[1], 20_000);
        assert_eq!(value[0], 0);
    }
}
