//! Checked memory access for the interpreter: every access is validated against the run's
//! [`MemoryMap`](crate::vm::memory::MemoryMap) before any pointer is formed.
//!
//! A full check scans the run's regions. Programs touch few regions over and over (the packet,
//! a map value, global data, the stack through pointers), so the loop keeps the last two regions
//! that allowed a read, the last two that allowed a write and the stack in [`Windows`], and
//! scans only on a miss. The windows are
//! copies of regions of the map, so they are exactly as permissive as the map was when they
//! were taken; the map changes only inside helpers (a new map value, a moved packet end), and
//! the loop forgets every window after each helper call.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::vm::env::RunEnv;
use crate::vm::error::VmError;
use crate::vm::memory::{Access, Region, RegionKind};

/// A plain value that can be loaded from or stored to program memory.
pub(super) trait Scalar: Copy {
    /// Width in bytes.
    const SIZE: u64;
}

impl Scalar for u8 {
    const SIZE: u64 = 1;
}
impl Scalar for u16 {
    const SIZE: u64 = 2;
}
impl Scalar for u32 {
    const SIZE: u64 = 4;
}
impl Scalar for u64 {
    const SIZE: u64 = 8;
}

/// An address range `[start, start + span)` known to allow one kind of access.
#[derive(Clone, Copy, Default)]
struct Window {
    start: u64,
    /// Zero for an empty window: it covers nothing.
    span: u64,
}

impl Window {
    /// Whether `[addr, addr + len)` lies inside (one subtraction and two compares, no
    /// overflow: `d < span` bounds `d`, and `span - d` cannot wrap).
    #[inline(always)]
    fn covers(self, addr: u64, len: u64) -> bool {
        let d = addr.wrapping_sub(self.start);
        d < self.span && self.span - d >= len
    }
}

impl From<&Region> for Window {
    fn from(r: &Region) -> Window {
        Window {
            start: r.start,
            span: r.len,
        }
    }
}

/// Windows kept per kind of access besides the stack's.
const WAYS: usize = 2;

/// The regions that most recently allowed reads and writes (newest taken first; a hit does
/// not reorder them), and the interpreter's stack, which is always both and never leaves.
#[derive(Clone, Copy, Default)]
pub(super) struct Windows {
    read: [Window; WAYS],
    write: [Window; WAYS],
    stack: Window,
    /// The run's context region as of the last [`Windows::new`] or [`Windows::clear`] (the
    /// latest one registered), kept apart from `read`, whose misses replace windows.
    context: Window,
}

/// Makes `w` the most recent window of `set`.
#[inline(always)]
fn push_front(set: &mut [Window; WAYS], w: Window) {
    set.copy_within(0..WAYS - 1, 1);
    set[0] = w;
}

impl Windows {
    /// Windows for a run whose stack is `[stack_start, stack_start + stack_len)`, starting
    /// with its packet and context (the first things a program reads).
    ///
    /// # Safety
    /// `env` must be live and not mutably borrowed elsewhere, and the stack must be memory the
    /// run owns for its whole duration.
    pub(super) unsafe fn new(env: *const RunEnv, stack_start: u64, stack_len: u64) -> Windows {
        let mut w = Windows {
            stack: Window {
                start: stack_start,
                span: stack_len,
            },
            ..Windows::default()
        };
        // SAFETY: forwarded contract.
        unsafe { w.seed(env) };
        w
    }

    /// Forgets every window but the stack's (after anything that may have changed the run's
    /// regions) and starts again from the packet and context.
    ///
    /// # Safety
    /// As [`Windows::new`].
    #[inline(always)]
    pub(super) unsafe fn clear(&mut self, env: *const RunEnv) {
        self.read = Default::default();
        self.write = Default::default();
        self.context = Window::default();
        // SAFETY: forwarded contract.
        unsafe { self.seed(env) };
    }

    /// Takes the latest packet and context regions as the first windows.
    ///
    /// # Safety
    /// As [`Windows::new`].
    unsafe fn seed(&mut self, env: *const RunEnv) {
        // SAFETY: `env` is live and only read here (caller's contract).
        let regions = unsafe { (*env).memory.regions() };
        let latest = |kind: RegionKind| regions.iter().rev().find(|r| r.kind == kind);
        if let Some(packet) = latest(RegionKind::Packet) {
            self.read[0] = Window::from(packet);
            if packet.writable {
                self.write[0] = Window::from(packet);
            }
        }
        if let Some(ctx) = latest(RegionKind::Context) {
            self.read[1] = Window::from(ctx);
            self.context = Window::from(ctx);
        }
    }

    /// Whether `[addr, addr + len)` lies inside the run's context region as it was at the last
    /// [`Windows::new`] or [`Windows::clear`] (readable: context regions always are).
    #[inline(always)]
    pub(super) fn context_covers(&self, addr: u64, len: u64) -> bool {
        self.context.covers(addr, len)
    }

    /// Makes `region`, just added to the run's regions, the most recent window of each kind of
    /// access it allows (a looked-up value is usually touched right away).
    #[inline(always)]
    pub(super) fn note(&mut self, region: &Region) {
        push_front(&mut self.read, Window::from(region));
        if region.writable {
            push_front(&mut self.write, Window::from(region));
        }
    }

    /// Whether an `access` of `[addr, addr + len)` is allowed, without raising a fault.
    ///
    /// # Safety
    /// As [`Windows::check`].
    #[inline(always)]
    pub(super) unsafe fn allows(
        &mut self,
        env: *const RunEnv,
        addr: u64,
        len: u64,
        access: Access,
    ) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.check(env, 0, addr, len, access) }.is_ok()
    }

    /// Checks an access: a window hit, else a scan of the run's regions, which on success
    /// becomes the most recent window.
    ///
    /// # Safety
    /// `env` must be live and not mutably borrowed elsewhere.
    #[inline(always)]
    unsafe fn check(
        &mut self,
        env: *const RunEnv,
        pc: usize,
        addr: u64,
        len: u64,
        access: Access,
    ) -> Result<(), VmError> {
        let set = match access {
            Access::Read => &mut self.read,
            Access::Write => &mut self.write,
        };
        if set[0].covers(addr, len) {
            return Ok(());
        }
        // No reordering on a hit in the second way: swapping the two windows costs more than
        // it saves (the copy back reads what was just stored as halves, a store-forwarding
        // stall), and a program alternating between two regions would swap on every access.
        if set[1].covers(addr, len) {
            return Ok(());
        }
        if self.stack.covers(addr, len) {
            return Ok(());
        }
        // SAFETY: forwarded contract.
        unsafe { miss(set, env, pc, addr, len, access) }
    }
}

/// The slow path of [`Windows::check`].
///
/// # Safety
/// As [`Windows::check`].
#[cold]
#[inline(never)]
unsafe fn miss(
    set: &mut [Window; WAYS],
    env: *const RunEnv,
    pc: usize,
    addr: u64,
    len: u64,
    access: Access,
) -> Result<(), VmError> {
    // SAFETY: `env` is live and only read here (caller's contract).
    let memory = unsafe { &(*env).memory };
    match memory.find(addr, len, access) {
        Some(region) => {
            push_front(set, Window::from(region));
            Ok(())
        }
        None => Err(VmError::OutOfBounds {
            insn: pc,
            addr,
            len: len as usize,
            access,
        }),
    }
}

/// Loads a `T` from `addr` after checking the read.
///
/// # Safety
/// `env` must be live and not mutably borrowed elsewhere; every region in `env.memory` must be
/// mapped memory (the run's contract), and `windows` must hold only regions of `env.memory`
/// taken since its last change.
#[inline(always)]
pub(super) unsafe fn load<T: Scalar>(
    windows: &mut Windows,
    env: *const RunEnv,
    pc: usize,
    addr: u64,
) -> Result<T, VmError> {
    // SAFETY: forwarded contract.
    unsafe { windows.check(env, pc, addr, T::SIZE, Access::Read) }?;
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
    windows: &mut Windows,
    env: *const RunEnv,
    pc: usize,
    addr: u64,
    value: T,
) -> Result<(), VmError> {
    // SAFETY: forwarded contract.
    unsafe { windows.check(env, pc, addr, T::SIZE, Access::Write) }?;
    // SAFETY: the check proved `[addr, addr + SIZE)` lies inside a registered writable region.
    unsafe { std::ptr::write_unaligned(addr as usize as *mut T, value) };
    Ok(())
}

/// The fault for an atomic at an address that is not naturally aligned (the kernel verifier
/// refuses those; a hardware atomic cannot do them).
#[cold]
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
    windows: &mut Windows,
    env: *const RunEnv,
    pc: usize,
    addr: u64,
) -> Result<&'a AtomicU64, VmError> {
    // SAFETY: forwarded contract.
    unsafe { windows.check(env, pc, addr, 8, Access::Write) }?;
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
    windows: &mut Windows,
    env: *const RunEnv,
    pc: usize,
    addr: u64,
) -> Result<&'a AtomicU32, VmError> {
    // SAFETY: forwarded contract.
    unsafe { windows.check(env, pc, addr, 4, Access::Write) }?;
    if addr & 3 != 0 {
        return Err(misaligned(pc, addr, 4));
    }
    // SAFETY: in bounds of a writable region (checked), 4-byte aligned (checked).
    Ok(unsafe { AtomicU32::from_ptr(addr as usize as *mut u32) })
}

/// Ordering of every BPF atomic: the kernel's atomics are fully ordered.
pub(super) const ORDER: Ordering = Ordering::SeqCst;
