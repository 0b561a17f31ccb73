//! The kernel side: the only place that makes bpf() syscalls (verification and the oracle).
//! (API pinned; implementation in progress.)

use crate::object::spec::ProgramType;
use crate::vm::insn::Insn;

/// Kernel-side failures.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// This process cannot use bpf() (not root, no CAP_BPF, or BPF disabled).
    #[error("kernel BPF unavailable: {reason}")]
    Unsupported {
        /// Why.
        reason: String,
    },
    /// The verifier rejected the program.
    #[error("kernel verifier rejected program {program}: {summary}")]
    Rejected {
        /// Program name.
        program: String,
        /// Last meaningful line of the verifier log.
        summary: String,
        /// The full verifier log.
        log: String,
    },
    /// A bpf() call failed.
    #[error("{call} failed: {source}")]
    Syscall {
        /// Which call.
        call: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result of one `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunResult {
    /// The program's return value (32 bits, as the kernel reports it).
    pub retval: u32,
    /// Packet bytes after the run.
    pub data: Vec<u8>,
    /// Mean duration per repetition in nanoseconds, as the kernel measured it.
    pub duration_ns: u32,
}

/// Whether this process may load and run BPF programs; the error says why not.
pub fn probe() -> Result<(), KernelError> {
    Err(KernelError::Unsupported {
        reason: "kernel module not built yet".into(),
    })
}

/// Loads raw instructions (no maps) as a program of `prog_type`, runs it `repeat` times on
/// `data` with `BPF_PROG_TEST_RUN`, and unloads it.
pub fn test_run_insns(
    _insns: &[Insn],
    _prog_type: ProgramType,
    _data: &[u8],
    _repeat: u32,
) -> Result<TestRunResult, KernelError> {
    probe().map(|_| unreachable!())
}
