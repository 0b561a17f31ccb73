//! Typed faults raised while running a program.

use super::memory::Access;

/// A fault that stops a program run. Every variant names the instruction where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    /// A load, store or helper argument outside every region the program may touch.
    #[error("insn {insn}: out-of-bounds {access} of {len} bytes at {addr:#x}")]
    OutOfBounds {
        /// Instruction index (in the linked program).
        insn: usize,
        /// Address that was accessed.
        addr: u64,
        /// Access width in bytes.
        len: usize,
        /// Read or write.
        access: Access,
    },
    /// A helper ID the runtime does not implement.
    #[error("insn {insn}: unknown helper {id}")]
    UnknownHelper {
        /// Instruction index.
        insn: usize,
        /// Kernel helper ID.
        id: i32,
    },
    /// A helper refused its arguments.
    #[error("insn {insn}: helper {helper} failed: {reason}")]
    HelperFault {
        /// Instruction index.
        insn: usize,
        /// Helper name.
        helper: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The instruction budget ran out (an unbounded loop under `--verifier none`).
    #[error("instruction budget of {insns} exhausted")]
    BudgetExhausted {
        /// The budget that was exhausted.
        insns: u64,
    },
    /// bpf-to-bpf calls nested deeper than the kernel allows.
    #[error("insn {insn}: call depth exceeds {max} frames")]
    CallDepthExceeded {
        /// Instruction index.
        insn: usize,
        /// The frame limit.
        max: usize,
    },
    /// An instruction the engine cannot execute (kfunc call, BTF-id load, ...).
    #[error("insn {insn}: unsupported instruction: {what}")]
    Unsupported {
        /// Instruction index.
        insn: usize,
        /// What is unsupported.
        what: String,
    },
}
