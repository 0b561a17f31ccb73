//! Checked memory access for the interpreter: every access is validated against the run's
//! [`MemoryMap`](crate::vm::memory::MemoryMap) before any pointer is formed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::vm::env::RunEnv;
use crate::vm::error::VmError;
use crate::vm::memory::Access;

/// A plain value that can be loaded from or stored to program memory.
pub(super) trait Scalar: Copy {
    /// Width in bytes.
    const SIZE: usize;
}

impl Scalar for u8 {
    const SIZE: usize = 1;
}
impl Scalar for u16 {
    const SIZE: usize = 2;
}
impl Scalar for u32 {
    const SIZE: usize = 4;
}
impl Scalar for u64 {
    const SIZE: usize = 8;
}

/// Loads a `T` from `addr` after checking the read.
///
/// # Safety
/// `env` must be live and not mutably borrowed elsewhere; every region in `env.memory` must be
/// mapped memory (the run's contract).
#[inline(always)]
pub(super) unsafe fn load<T: Scalar>(
    env: *const RunEnv,
    pc: usize,
    addr: u64,
) -> Result<T, VmError> {
    // SAFETY: `env` is live and only read here (caller's contract).
    unsafe { &(*env).memory }.check(pc, addr, T::SIZE, Access::Read)?;
    // SAFETY: the check proved `[addr, addr + SIZE)` lies inside a registered readable region,
    // which is mapped memory; no alignment is required by `read_unaligned`.
    Ok(unsafe { std::ptr::read_unaligned(addr as usize as *const T) })
}

/// Stores `value` at `addr` after checking the write.
///
/// # Safety
/// As [`load`].
#[inline(always)]
pub(super) unsafe fn store<T: Scalar>(
    env: *const RunEnv,
    pc: usize,
    addr: u64,
    value: T,
) -> Result<(), VmError> {
    // SAFETY: `env` is live and only read here (caller's contract).
    unsafe { &(*env).memory }.check(pc, addr, T::SIZE, Access::Write)?;
    // SAFETY: the check proved `[addr, addr + SIZE)` lies inside a registered writable region.
    unsafe { std::ptr::write_unaligned(addr as usize as *mut T, value) };
    Ok(())
}

/// The fault for an atomic at an address that is not naturally aligned (the kernel verifier
/// refuses those; a hardware atomic cannot do them).
fn misaligned(pc: usize, addr: u64, len: usize) -> VmError {
    VmError::Unsupported {
        insn: pc,
        what: format!("misaligned {len}-byte atomic access at {addr:#x}"),
    }
}

/// The 64-bit atomic cell at `addr`, after checking a write and its alignment.
///
/// # Safety
/// As [`load`]; the returned reference must not outlive the run.
#[inline(always)]
pub(super) unsafe fn atomic64<'a>(
    env: *const RunEnv,
    pc: usize,
    addr: u64,
) -> Result<&'a AtomicU64, VmError> {
    // SAFETY: `env` is live and only read here (caller's contract).
    unsafe { &(*env).memory }.check(pc, addr, 8, Access::Write)?;
    if addr & 7 != 0 {
        return Err(misaligned(pc, addr, 8));
    }
    // SAFETY: in bounds of a writable region (checked), 8-byte aligned (checked); all accesses
    // the program makes to shared memory race only with other atomics or plain accesses the
    // kernel would race too.
    Ok(unsafe { AtomicU64::from_ptr(addr as usize as *mut u64) })
}

/// The 32-bit atomic cell at `addr`, after checking a write and its alignment.
///
/// # Safety
/// As [`atomic64`].
#[inline(always)]
pub(super) unsafe fn atomic32<'a>(
    env: *const RunEnv,
    pc: usize,
    addr: u64,
) -> Result<&'a AtomicU32, VmError> {
    // SAFETY: `env` is live and only read here (caller's contract).
    unsafe { &(*env).memory }.check(pc, addr, 4, Access::Write)?;
    if addr & 3 != 0 {
        return Err(misaligned(pc, addr, 4));
    }
    // SAFETY: in bounds of a writable region (checked), 4-byte aligned (checked).
    Ok(unsafe { AtomicU32::from_ptr(addr as usize as *mut u32) })
}

/// Ordering of every BPF atomic: the kernel's atomics are fully ordered.
pub(super) const ORDER: Ordering = Ordering::SeqCst;
