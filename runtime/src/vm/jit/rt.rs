//! Runtime support that generated code calls: bounds-check slow path, fault attribution, the
//! per-run state and the callback trampoline helpers use (`bpf_loop`, `for_each_map_elem`).
//!
//! Every `extern "C"` function here is called from JIT code, where unwinding is impossible:
//! none of them may panic.

use std::mem::offset_of;

use super::JitProgram;
use crate::vm::env::RunEnv;
use crate::vm::error::VmError;
use crate::vm::insn::{MAX_CALL_FRAMES, STACK_SIZE};
use crate::vm::memory::Access;

/// State of one [`JitProgram::run`], reached from generated code and helpers through
/// `RunEnv::callback_data`.
#[repr(C)]
pub(super) struct RunState {
    /// The program being run (for the callback trampoline).
    pub(super) prog: *const JitProgram,
    /// Lowest address of the stack buffer: no frame may start below it.
    pub(super) stack_lo: u64,
    /// r10 of the function that last called a helper which may call back; the callback's
    /// frame goes right below that function's frame.
    pub(super) cb_sp: u64,
    /// Instruction index of that helper call (for errors).
    pub(super) cb_insn: u64,
}

/// Offset of [`RunState::stack_lo`] (read by guarded bpf-to-bpf calls).
pub(super) const STACK_LO_OFFSET: i32 = offset_of!(RunState, stack_lo) as i32;
/// Offset of [`RunState::cb_sp`] (written before helpers that take callbacks).
pub(super) const CB_SP_OFFSET: i32 = offset_of!(RunState, cb_sp) as i32;
/// Offset of [`RunState::cb_insn`].
pub(super) const CB_INSN_OFFSET: i32 = offset_of!(RunState, cb_insn) as i32;
/// Offset of `RunEnv::callback_data`, which points to the [`RunState`] during a run.
pub(super) const CALLBACK_DATA_OFFSET: i32 = offset_of!(RunEnv, callback_data) as i32;

/// Tag bit of `check_access`'s last argument: the access is a write.
pub(super) const TAG_WRITE: u64 = 1;

/// Guarded-mode slow path: is `[addr, addr + len)` accessible? Returns 0 if so; otherwise
/// records `OutOfBounds` at instruction `tag >> 1` and returns 1 (the caller then returns).
///
/// # Safety
/// `env` must be the valid, exclusively used environment of the current run.
pub(super) unsafe extern "C" fn check_access(
    env: *mut RunEnv,
    addr: u64,
    len: u64,
    tag: u64,
) -> u32 {
    // SAFETY: caller's contract; generated code passes its `env` argument through.
    let env = unsafe { &mut *env };
    let access = if tag & TAG_WRITE != 0 {
        Access::Write
    } else {
        Access::Read
    };
    if env.memory.allows(addr, len, access) {
        return 0;
    }
    env.fault = Some(VmError::OutOfBounds {
        insn: (tag >> 1) as usize,
        addr,
        len: len as usize,
        access,
    });
    env.fault_flag = 1;
    1
}

/// Called when a helper left `fault_flag` or `tail_call_pending` set: attributes a helper fault
/// to instruction `insn` (the call) and leaves the flag set so every frame unwinds.
///
/// # Safety
/// As [`check_access`].
pub(super) unsafe extern "C" fn helper_exit(env: *mut RunEnv, insn: u64) {
    // SAFETY: caller's contract.
    let env = unsafe { &mut *env };
    if env.fault_flag != 0 {
        let fault = env.take_fault(insn as usize);
        env.fault = Some(fault);
        env.fault_flag = 1;
    }
}

/// After `bpf_tail_call` at `insn` in a subprogram set a flag: a fault is attributed and
/// unwinds (returns 0); a pending tail call runs the target in place of the subprogram
/// through `env.tail_hook` and returns its r0, which the subprogram returns to its caller.
///
/// # Safety
/// As [`check_access`].
pub(super) unsafe extern "C" fn tail_in_place(env: *mut RunEnv, insn: u64) -> u64 {
    // SAFETY: caller's contract.
    let e = unsafe { &mut *env };
    if e.fault_flag != 0 {
        let fault = e.take_fault(insn as usize);
        e.fault = Some(fault);
        e.fault_flag = 1;
        return 0;
    }
    let Some(hook) = e.tail_hook else {
        // No dispatcher hook (a bare JitProgram::run): unwind like a main-level tail call.
        return 0;
    };
    // SAFETY: the hook was installed by the dispatcher of this run for this environment.
    match unsafe { hook(env) } {
        Ok(r0) => r0,
        Err(fault) => {
            // SAFETY: as above; the hook has returned, nothing else borrows env.
            let e = unsafe { &mut *env };
            e.fault = Some(fault);
            e.fault_flag = 1;
            0
        }
    }
}

/// Guarded bpf-to-bpf call at `insn` would exceed the frame budget: records the fault.
///
/// # Safety
/// As [`check_access`].
pub(super) unsafe extern "C" fn depth_fault(env: *mut RunEnv, insn: u64) {
    // SAFETY: caller's contract.
    let env = unsafe { &mut *env };
    env.fault = Some(VmError::CallDepthExceeded {
        insn: insn as usize,
        max: MAX_CALL_FRAMES,
    });
    env.fault_flag = 1;
}

/// Guarded atomic at `insn` on a misaligned address: records the fault the interpreter reports
/// for it. Returns 1 (same signature as [`check_access`]).
///
/// # Safety
/// As [`check_access`].
pub(super) unsafe extern "C" fn misaligned_atomic(
    env: *mut RunEnv,
    addr: u64,
    len: u64,
    insn: u64,
) -> u32 {
    // SAFETY: caller's contract.
    let env = unsafe { &mut *env };
    env.fault = Some(VmError::Unsupported {
        insn: insn as usize,
        what: format!("misaligned {len}-byte atomic access at {addr:#x}"),
    });
    env.fault_flag = 1;
    1
}

/// Takes the fault that stopped a run and clears the flag.
pub(super) fn take_fault(env: &mut RunEnv) -> VmError {
    env.fault_flag = 0;
    env.fault.take().unwrap_or(VmError::HelperFault {
        insn: 0,
        helper: "unknown",
        reason: "fault flag set without a fault".into(),
    })
}

/// The [`crate::vm::env::CallbackFn`] installed while a JIT program runs: calls the compiled
/// function whose entry is instruction `func` with `args`, on the frame below the function that
/// called the helper.
///
/// # Safety
/// `env` must be the environment of a running [`JitProgram::run`] (whose `callback_data` is
/// its [`RunState`]), called from inside a helper of that run.
pub(super) unsafe fn callback(env: *mut RunEnv, func: u64, args: [u64; 5]) -> Result<u64, VmError> {
    // SAFETY: caller's contract: `callback_data` is the live `RunState` of this run. Only raw
    // reads and writes are used, as generated code writes the same fields.
    let (state, prog, sp, insn, lo) = unsafe {
        let state = (*env).callback_data.cast::<RunState>();
        (
            state,
            &*(*state).prog,
            (*state).cb_sp,
            (*state).cb_insn,
            (*state).stack_lo,
        )
    };
    let code = usize::try_from(func)
        .ok()
        .and_then(|f| prog.function_at(f))
        .ok_or_else(|| VmError::Unsupported {
            insn: insn as usize,
            what: format!("callback {func} is not a function of this program"),
        })?;
    let frame = STACK_SIZE as u64;
    if sp < lo + 2 * frame {
        return Err(VmError::CallDepthExceeded {
            insn: insn as usize,
            max: MAX_CALL_FRAMES,
        });
    }
    let fp = sp - frame;
    // SAFETY: `code` has the `JitFn` signature; `fp` leaves a whole frame inside the stack
    // buffer (checked above); `env` is valid per the caller's contract.
    let r0 = unsafe { code(args[0], args[1], args[2], args[3], args[4], env, fp) };
    // SAFETY: as above. Nested callbacks overwrote these fields: restore them so the next
    // iteration of the calling helper uses this frame level again.
    let env = unsafe {
        (*state).cb_sp = sp;
        (*state).cb_insn = insn;
        &mut *env
    };
    if env.fault_flag != 0 {
        return Err(take_fault(env));
    }
    Ok(r0)
}
