//! The Cranelift JIT. (API pinned; implementation in progress.)

use super::env::RunEnv;
use super::error::VmError;
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

/// A compiled program: native code for every function of a [`PreparedProgram`].
pub struct JitProgram {
    _private: (),
}

impl JitProgram {
    /// Compiles every function of `prog`.
    pub fn compile(prog: &PreparedProgram, _opts: &JitOptions) -> Result<JitProgram, JitError> {
        Err(JitError::Unsupported {
            program: prog.name.clone(),
            insn: 0,
            what: "everything (JIT not built yet)".into(),
        })
    }

    /// Runs the program with `r1`, `r2` as arguments and `env` as the helper environment.
    ///
    /// # Safety
    /// Unless compiled with `guarded`, the program must have been proven safe (kernel verifier)
    /// for the memory described by `env`.
    pub unsafe fn run(&self, _env: &mut RunEnv, _r1: u64, _r2: u64) -> Result<u64, VmError> {
        Err(VmError::Unsupported {
            insn: 0,
            what: "JIT not built yet".into(),
        })
    }
}
