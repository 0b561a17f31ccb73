//! The Cranelift JIT: every function of a [`PreparedProgram`] becomes one native function.
//!
//! # Shape
//!
//! - A CFG pre-pass ([`cfg`]) finds, per eBPF function, every instruction that starts a basic
//!   block (function entry, jump targets, fall-through after a branch or exit) and the
//!   [`translator::Translator`] makes one Cranelift block for each.
//! - eBPF registers r0–r10 are Cranelift `Variable`s, so they live in SSA values and machine
//!   registers, never in memory. r6–r9 are local to each native function, so bpf-to-bpf calls
//!   preserve them for free.
//! - Every eBPF function has the native signature
//!   `(r1, r2, r3, r4, r5: i64, env: *mut RunEnv, fp: i64) -> i64` in the platform C calling
//!   convention ([`JitFn`]). `fp` is the function's frame pointer (its r10).
//!
//! # Stack
//!
//! One buffer of `MAX_CALL_FRAMES * STACK_SIZE` bytes lives in [`JitProgram::run`]'s own native
//! frame (uninitialised: the verifier forbids reading stack bytes that were not written). Frames
//! grow downward: `main` gets `fp = buffer end`, a callee gets `fp = caller fp - 512`, a
//! callback started by a helper (`bpf_loop`) gets the frame below the function that called the
//! helper. Trusted code therefore pays one register for r10 and nothing else. Checked runs
//! (guarded code, or any code with `env.checked` set) add the whole buffer to `env.memory` as one
//! `Stack` region for the duration of the run, so helpers and bounds checks accept stack
//! pointers; the region is removed again before `run` returns (the buffer dies with its frame).
//!
//! Trusted code that calls no callback helper, in an unchecked environment, takes a fast path
//! that sets up nothing but the stack and the two flags (about 5 ns per run on the dev box).
//!
//! # Faults and unwinding
//!
//! Generated code never panics or traps. After every helper call and every bpf-to-bpf call it
//! reads `env.fault_flag` and `env.tail_call_pending` (one 8-byte load when they are adjacent)
//! and returns at once when either is set, so the unwinding reaches [`JitProgram::run`], which
//! turns a fault into `Err` and leaves a pending tail call to the caller (the dispatcher). A
//! helper fault is attributed to the calling instruction by [`rt`] before returning.
//!
//! # Guarded mode
//!
//! With [`JitOptions::guarded`], every load, store and atomic is checked before it happens
//! ([`bounds`]): r10-relative accesses inside the current frame are proven at compile time, all
//! others call [`rt`]'s `check_access`, which consults `env.memory` and records
//! `VmError::OutOfBounds` with the instruction index. bpf-to-bpf calls check the frame budget
//! (`CallDepthExceeded`). Trusted mode emits raw accesses: the kernel verifier's proof is the
//! safety argument.
//!
//! # Invariants
//!
//! - Code memory is written once in [`JitProgram::compile`] and never mutated afterwards, which
//!   is why a [`JitProgram`] is `Send + Sync` and may run on several threads at once.
//! - `run` owns all per-run state (stack buffer, [`rt::RunState`]); nothing is shared between
//!   concurrent runs except the immutable code.
//! - Source locations of Cranelift instructions are eBPF instruction indices.

mod bounds;
mod cfg;
mod rt;
mod translate_alu;
mod translate_call;
mod translate_jmp;
mod translate_mem;
mod translator;

use std::ffi::c_void;
use std::mem::{ManuallyDrop, MaybeUninit};

use cranelift_codegen::ir::{types, AbiParam, Signature};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};

use super::env::RunEnv;
use super::error::VmError;
use super::insn::{BPF_CALL, BPF_JMP, CALL_HELPER, MAX_CALL_FRAMES, STACK_SIZE};
use super::memory::{Region, RegionKind};
use super::program::PreparedProgram;

/// How the JIT treats memory accesses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitOptions {
    /// Bounds-check every load, store and helper memory argument against `RunEnv::memory`
    /// (`--verifier guarded`); otherwise trust the kernel verifier's proof.
    pub guarded: bool,
}

/// Why a program could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JitError {
    /// Cranelift rejected the generated function.
    #[error("program {program}: function {function}: code generation failed: {reason}")]
    Codegen {
        /// Program name.
        program: String,
        /// Function index.
        function: usize,
        /// Cranelift's message.
        reason: String,
    },
    /// An instruction the JIT does not translate.
    #[error("program {program}: insn {insn}: {what} is not supported by the JIT")]
    Unsupported {
        /// Program name.
        program: String,
        /// Instruction index.
        insn: usize,
        /// What is unsupported.
        what: String,
    },
}

/// Native signature of every compiled eBPF function: r1..r5, the environment, the frame pointer.
pub(crate) type JitFn = unsafe extern "C" fn(u64, u64, u64, u64, u64, *mut RunEnv, u64) -> u64;

/// Bytes of the per-run stack buffer: one 512-byte frame per allowed call level.
const STACK_BYTES: usize = STACK_SIZE * MAX_CALL_FRAMES;

/// Owns the JIT module and its code memory; frees the memory on drop (also when compilation
/// fails half-way, so a rejected program leaks nothing).
struct CodeMemory(ManuallyDrop<JITModule>);

// SAFETY: after `finalize_definitions` the module is never used again except to free its memory
// in `Drop` (which needs `&mut self`, so no other reference exists). The code it owns is
// immutable and position-fixed, so sharing pointers into it between threads is sound.
unsafe impl Send for CodeMemory {}
// SAFETY: as above; no method reads the module through a shared reference.
unsafe impl Sync for CodeMemory {}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: `self.0` is not used after this. Every `JitFn` pointing into this memory
        // belongs to the `JitProgram` being dropped (or to a failed compilation that never
        // returned one), and `run` borrows the program, so no code runs in it any more.
        unsafe { ManuallyDrop::take(&mut self.0).free_memory() };
    }
}

/// A compiled program: native code for every function of a [`PreparedProgram`].
pub struct JitProgram {
    /// Entry instruction of every function (sorted, as `PreparedProgram::functions`).
    entries: Vec<usize>,
    /// Native code of every function, parallel to `entries`.
    code: Vec<JitFn>,
    /// Whether the code checks memory accesses.
    guarded: bool,
    /// Whether generated code reads the [`rt::RunState`] (guarded calls, callback helpers);
    /// when not, `run` skips setting it up.
    needs_state: bool,
    /// Keeps `code` alive.
    _memory: CodeMemory,
}

impl std::fmt::Debug for JitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitProgram")
            .field("functions", &self.entries)
            .field("guarded", &self.guarded)
            .finish()
    }
}

impl JitProgram {
    /// Compiles every function of `prog`.
    pub fn compile(prog: &PreparedProgram, opts: &JitOptions) -> Result<JitProgram, JitError> {
        let codegen = |function: usize, reason: String| JitError::Codegen {
            program: prog.name.clone(),
            function,
            reason,
        };
        if let Some(&bad) = prog.functions.iter().find(|&&e| e >= prog.insns.len()) {
            return Err(JitError::Unsupported {
                program: prog.name.clone(),
                insn: bad,
                what: "a function entry outside the program".into(),
            });
        }

        let mut flags = settings::builder();
        for (name, value) in [
            ("opt_level", "speed"),
            ("is_pic", "false"),
            ("use_colocated_libcalls", "false"),
        ] {
            flags
                .set(name, value)
                .map_err(|e| codegen(0, format!("setting {name}: {e}")))?;
        }
        let isa = cranelift_native::builder()
            .map_err(|e| codegen(0, format!("host not supported: {e}")))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| codegen(0, e.to_string()))?;
        let mut memory = CodeMemory(ManuallyDrop::new(JITModule::new(JITBuilder::with_isa(
            isa,
            cranelift_module::default_libcall_names(),
        ))));
        let module: &mut JITModule = &mut memory.0;

        let ptr = module.target_config().pointer_type();
        let mut sig = Signature::new(module.target_config().default_call_conv);
        sig.params.extend([AbiParam::new(types::I64); 5]);
        sig.params.push(AbiParam::new(ptr));
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I64));

        let ids = (0..prog.functions.len())
            .map(|f| {
                module
                    .declare_function(&format!("bpf_f{f}"), Linkage::Local, &sig)
                    .map_err(|e| codegen(f, e.to_string()))
            })
            .collect::<Result<Vec<FuncId>, _>>()?;

        let mut ctx = module.make_context();
        let mut fctx = FunctionBuilderContext::new();
        let unit = translator::Unit {
            prog,
            guarded: opts.guarded,
            ptr,
            call_conv: sig.call_conv,
        };
        for (f, &id) in ids.iter().enumerate() {
            ctx.func.signature = sig.clone();
            let callees = ids
                .iter()
                .map(|&callee| module.declare_func_in_func(callee, &mut ctx.func))
                .collect::<Vec<_>>();
            translator::translate_function(&unit, f, &callees, &mut ctx.func, &mut fctx)?;
            module
                .define_function(id, &mut ctx)
                .map_err(|e| codegen(f, format!("{e:?}")))?;
            module.clear_context(&mut ctx);
        }
        module
            .finalize_definitions()
            .map_err(|e| codegen(0, e.to_string()))?;

        let code = ids
            .iter()
            .map(|&id| {
                let p = module.get_finalized_function(id);
                // SAFETY: `p` is the finalized code of a function declared with `sig`, which is
                // the C calling convention of `JitFn` (five i64, a pointer, an i64 -> i64).
                unsafe { std::mem::transmute::<*const u8, JitFn>(p) }
            })
            .collect();
        let calls_back = prog.insns.iter().any(|i| {
            i.op == BPF_JMP | BPF_CALL
                && i.src == CALL_HELPER
                && translate_call::CALLBACK_HELPERS.contains(&i.imm)
        });
        Ok(JitProgram {
            entries: prog.functions.clone(),
            code,
            guarded: opts.guarded,
            needs_state: opts.guarded || calls_back,
            _memory: memory,
        })
    }

    /// The native code of the function whose entry is instruction `entry`.
    fn function_at(&self, entry: usize) -> Option<JitFn> {
        self.entries
            .binary_search(&entry)
            .ok()
            .map(|i| self.code[i])
    }

    /// Runs the program with `r1`, `r2` as arguments and `env` as the helper environment.
    ///
    /// Returns r0. A pending tail call is left in `env` (`tail_call_pending`,
    /// `tail_call_target`) for the caller to dispatch; the value returned then is meaningless.
    ///
    /// # Safety
    /// Unless compiled with `guarded`, the program must have been proven safe (kernel verifier)
    /// for the memory described by `env`.
    pub unsafe fn run(&self, env: &mut RunEnv, r1: u64, r2: u64) -> Result<u64, VmError> {
        if !self.needs_state && !env.checked {
            // SAFETY: same contract as this function.
            return unsafe { self.run_trusted(env, r1, r2) };
        }
        let mut stack = MaybeUninit::<[u64; STACK_BYTES / 8]>::uninit();
        let stack_lo = stack.as_mut_ptr() as u64;
        let stack_hi = stack_lo + STACK_BYTES as u64;
        let mut state = rt::RunState {
            prog: self,
            stack_lo,
            cb_sp: stack_hi,
            cb_insn: 0,
        };
        let saved = (env.callback, env.callback_data, env.checked);
        env.callback = Some(rt::callback);
        env.callback_data = (&mut state as *mut rt::RunState).cast::<c_void>();
        // Generated code unwinds as soon as either flag is set, so both must start clear.
        env.fault_flag = 0;
        env.tail_call_pending = 0;
        let stack_region = Region {
            start: stack_lo,
            len: STACK_BYTES as u64,
            writable: true,
            kind: RegionKind::Stack,
        };
        // Helpers check pointer arguments against `env.memory` in checked runs (always for
        // guarded code; trusted code may run in a checked environment too): they must see the
        // stack as a valid region.
        let add_stack = self.guarded || env.checked;
        if add_stack {
            env.checked = true;
            env.memory.add(stack_region);
        }

        let main = self.code[0];
        // SAFETY: `main` was compiled with the `JitFn` signature; the stack buffer outlives the
        // call; `env` is a valid exclusive pointer for its duration. Memory safety of the code
        // itself is the caller's contract (verified program) or enforced by guarded checks.
        let r0 = unsafe { main(r1, r2, 0, 0, 0, env as *mut RunEnv, stack_hi) };

        (env.callback, env.callback_data, env.checked) = saved;
        if add_stack {
            remove_region(env, stack_region);
        }
        if env.fault_flag != 0 {
            return Err(rt::take_fault(env));
        }
        Ok(r0)
    }
}

impl JitProgram {
    /// The fast path of [`JitProgram::run`] for trusted code that never reads the run state,
    /// in a trusted environment (helpers do not check pointers): only the stack buffer and
    /// the flags.
    ///
    /// # Safety
    /// As [`JitProgram::run`].
    #[inline]
    unsafe fn run_trusted(&self, env: &mut RunEnv, r1: u64, r2: u64) -> Result<u64, VmError> {
        let mut stack = MaybeUninit::<[u64; STACK_BYTES / 8]>::uninit();
        let stack_hi = stack.as_mut_ptr() as u64 + STACK_BYTES as u64;
        // Generated code unwinds as soon as either flag is set, so both must start clear.
        env.fault_flag = 0;
        env.tail_call_pending = 0;
        let main = self.code[0];
        // SAFETY: as in `run`; no code of this program reads `callback_data`.
        let r0 = unsafe { main(r1, r2, 0, 0, 0, env as *mut RunEnv, stack_hi) };
        if env.fault_flag != 0 {
            return Err(rt::take_fault(env));
        }
        Ok(r0)
    }
}

/// Removes a dynamic region added for this run (the stack buffer dies with `run`'s frame),
/// keeping every other region, including map values helpers added during the run.
fn remove_region(env: &mut RunEnv, region: Region) {
    let all = env.memory.regions().to_vec();
    env.memory.reset_dynamic();
    let fixed = env.memory.regions().len();
    let mut removed = false;
    for r in &all[fixed..] {
        if !removed && *r == region {
            removed = true;
        } else {
            env.memory.add(*r);
        }
    }
}
