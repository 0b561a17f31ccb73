//! The checked interpreter. (API pinned; implementation in progress.)

use super::env::RunEnv;
use super::error::VmError;
use super::insn::{MAX_CALL_FRAMES, STACK_SIZE};
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

impl Interpreter {
    /// An interpreter that stops a run after `budget` instructions.
    pub fn new(budget: u64) -> Self {
        Interpreter {
            stack: vec![0u8; STACK_SIZE * MAX_CALL_FRAMES].into_boxed_slice(),
            budget,
        }
    }

    /// Runs `prog` with `r1`, `r2` as arguments. Every access is checked against
    /// `env.memory` (to which the interpreter adds its stack for the duration of the run).
    pub fn run(
        &mut self,
        _prog: &PreparedProgram,
        _env: &mut RunEnv,
        _r1: u64,
        _r2: u64,
    ) -> Result<u64, VmError> {
        let _ = (&self.stack, self.budget);
        Err(VmError::Unsupported {
            insn: 0,
            what: "interpreter not built yet".into(),
        })
    }
}
