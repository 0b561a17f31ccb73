//! The checked interpreter.
//!
//! Invariants:
//! - Programs run from their pre-decoded form ([`Decoded`], built once by
//!   [`PreparedProgram::new`]): absolute jump targets, resolved helpers, faults decided ahead.
//! - Every load, store and atomic is checked against the regions of `env.memory` (through
//!   copies of the regions that last allowed an access, forgotten after every helper call)
//!   before a raw pointer is formed, so a program — verified or not — can only touch the
//!   regions its caller registered (plus the interpreter's own stack). Two kinds of access
//!   are proven at decoding instead: through r10, inside the frame, in a program that never
//!   writes r10; and through a constant address inside the storage of an array map the
//!   decoded program itself holds (`fixed`: global data, direct array values). A run of byte
//!   moves fused into one op (`shuffle`) checks the whole span it touches through its base
//!   register at once, and runs its slots one by one, each checked, when that check fails.
//!   The caller guarantees that every registered region is live, mapped memory for the
//!   whole run.
//! - Arithmetic follows the kernel: wrapping, `x / 0 = 0`, `x % 0 = x`, shifts masked, 32-bit
//!   results zero-extended, ALU64 immediates sign-extended.
//! - bpf-to-bpf calls get a fresh 512-byte frame carved out of one fixed stack of
//!   `MAX_CALL_FRAMES` frames, top down: frame `d` ends at `stack_top - d * STACK_SIZE`, so the
//!   main function's r10 is the very end of the stack and `[r10 + 0]` is out of bounds.
//! - The stack is registered as ONE region covering all frames: a callee may write through a
//!   pointer into its caller's frame (as the kernel allows), and a stray access into an unused
//!   deeper frame stays inside interpreter-owned memory.
//! - Callbacks (`bpf_loop`, `for_each_map_elem`) re-enter the dispatch loop through
//!   [`RunEnv::callback`]; nested frames count against `MAX_CALL_FRAMES` and share the budget.

mod decode;
mod exec;
mod fixed;
mod fold;
mod inline;
mod live;
mod mem;
mod shuffle;

pub(crate) use decode::Decoded;

use std::ffi::c_void;

use super::env::RunEnv;
use super::error::VmError;
use super::insn::{MAX_CALL_FRAMES, STACK_SIZE};
use super::memory::{Region, RegionKind};
use super::program::PreparedProgram;

/// Default instruction budget per run.
pub const DEFAULT_BUDGET: u64 = 1 << 26;

/// An interpreter with its own stack memory, reusable across runs.
pub struct Interpreter {
    stack: Box<[u8]>,
    budget: u64,
}

impl Default for Interpreter {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

/// State shared between the dispatch loop and re-entrant callback invocations.
///
/// Reached only through a raw pointer while a run is in progress (the dispatch loop and a
/// callback started by a helper both use it), so nobody holds a `&mut Machine` across a helper
/// call.
struct Machine<'p> {
    /// The program being run.
    prog: &'p PreparedProgram,
    /// One past the last byte of the interpreter stack.
    stack_top: u64,
    /// Frames in use by the (suspended) caller when a helper runs; written before every helper
    /// call so that a callback knows where its frame goes.
    depth: usize,
    /// Instruction index of the helper call in progress (for callback errors).
    call_pc: usize,
    /// Instructions left before the budget is exhausted; synchronised around helper calls.
    remaining: u64,
    /// The budget this run started with (reported by `BudgetExhausted`).
    budget: u64,
}

impl Interpreter {
    /// An interpreter that stops a run after `budget` instructions.
    pub fn new(budget: u64) -> Self {
        Interpreter {
            stack: vec![0u8; STACK_SIZE * MAX_CALL_FRAMES].into_boxed_slice(),
            budget,
        }
    }

    /// Runs `prog` with `r1`, `r2` as arguments. Every access is checked against
    /// `env.memory` (to which the interpreter adds its stack for the duration of the run),
    /// except those proven at decoding (see the module's invariants).
    ///
    /// The caller has called [`RunEnv::begin_run`] and registered the context and packet
    /// regions; those regions must stay valid memory for the whole run. When any map other
    /// than an array is reachable, the thread must be pinned ([`crate::maps::epoch::pin`]) for
    /// the run, as `Runner` does: hash lookups take no guard of their own. When a helper requests
    /// a tail call (`env.tail_call_pending`), `run` returns `Ok(r0)` at once and the dispatcher
    /// continues with the target.
    pub fn run(
        &mut self,
        prog: &PreparedProgram,
        env: &mut RunEnv,
        r1: u64,
        r2: u64,
    ) -> Result<u64, VmError> {
        // Integer addresses are what the program computes with; `as` exposes the provenance
        // so that the address-to-pointer casts in `mem` may use it.
        let stack_start = self.stack.as_mut_ptr() as u64;
        let stack = Region {
            start: stack_start,
            len: self.stack.len() as u64,
            writable: true,
            kind: RegionKind::Stack,
        };
        // Registered for this run only: an interpreter made for one tail-call target frees
        // its stack when dropped, and a pointer into it that outlived the run must then fault
        // rather than reach freed memory.
        env.memory.add(stack);
        let mut machine = Machine {
            prog,
            stack_top: stack_start + self.stack.len() as u64,
            depth: 0,
            call_pc: 0,
            remaining: self.budget,
            budget: self.budget,
        };
        let saved_checked = env.checked;
        let saved_callback = env.callback;
        let saved_data = env.callback_data;
        env.checked = true;
        env.callback = Some(run_callback);
        let machine_ptr: *mut Machine<'_> = &mut machine;
        env.callback_data = machine_ptr.cast::<c_void>();
        let env_ptr: *mut RunEnv = env;
        // SAFETY: `machine_ptr` and `env_ptr` point to live locals/borrows that outlive the
        // call, and neither `machine` nor `env` is used through another path until it returns.
        // The stack region registered above is `self.stack`, which is borrowed mutably for the
        // whole call and therefore neither freed nor moved.
        let result = unsafe { exec::execute(machine_ptr, env_ptr, 0, [r1, r2, 0, 0, 0], 0) };
        env.checked = saved_checked;
        env.callback = saved_callback;
        env.callback_data = saved_data;
        env.memory.remove(&stack);
        // Unboxed here, in the return expression, so that the 48-byte result is written once,
        // straight into the caller's slot (see `exec::dispatch`).
        result.map_err(|e| *e)
    }
}

/// The [`RunEnv::callback`] hook: runs function `func` (an instruction index, as produced by an
/// `ld_imm64` with `PSEUDO_FUNC`) with `args` in r1..r5 and returns its r0.
///
/// # Safety
/// `env` must be the environment of a run in progress of [`Interpreter::run`], which set
/// `callback_data` to its `Machine`, and the call must come from a helper invoked by that run.
unsafe fn run_callback(env: *mut RunEnv, func: u64, args: [u64; 5]) -> Result<u64, VmError> {
    // SAFETY: per the contract, `env` is live and `callback_data` is the `Machine` of the run
    // that is currently suspended in a helper call; that run holds no reference to either.
    let machine = unsafe { (*env).callback_data }.cast::<Machine<'_>>();
    if machine.is_null() {
        return Err(VmError::Unsupported {
            insn: 0,
            what: "callback invoked outside an interpreter run".into(),
        });
    }
    // SAFETY: see above; reads of plain fields through the raw pointer, no reference kept.
    let (prog, depth, call_pc) = unsafe { ((*machine).prog, (*machine).depth, (*machine).call_pc) };
    let entry = usize::try_from(func).unwrap_or(usize::MAX);
    if prog.functions.binary_search(&entry).is_err() {
        return Err(VmError::Unsupported {
            insn: call_pc,
            what: format!("callback target {func} is not a function entry"),
        });
    }
    if depth >= MAX_CALL_FRAMES {
        return Err(VmError::CallDepthExceeded {
            insn: call_pc,
            max: MAX_CALL_FRAMES,
        });
    }
    // SAFETY: same run, same contract; the nested loop restores nothing the outer loop keeps
    // in locals except `remaining`, which the outer loop reloads after the helper returns.
    let result = unsafe { exec::execute(machine, env, entry, args, depth) };
    // SAFETY: as above.
    unsafe {
        (*machine).depth = depth;
        (*machine).call_pc = call_pc;
    }
    result.map_err(|e| *e)
}

#[cfg(test)]
mod tests;
