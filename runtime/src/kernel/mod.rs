//! The kernel side: the only place that makes bpf() syscalls.
//!
//! - [`probe`] tells whether this process may use bpf() at all, and why not.
//! - [`test_run_insns`] loads raw instructions and runs them with `BPF_PROG_TEST_RUN` (the
//!   oracle for single programs without maps).
//! - [`verify`] has the kernel verifier accept or reject one program of an object, with every
//!   ordinary map shrunk to one entry (see DESIGN.md, "Kernel verification of big maps").
//! - [`Oracle`] keeps a whole object loaded at full size for differential tests: run programs,
//!   read and write maps, wire tail calls.
//!
//! Raw syscalls live in `sys`; libbpf object handling (message capture, map shrinking,
//! pinning) in `load`.

mod load;
mod oracle;
mod sys;
mod verify;

use std::sync::OnceLock;

use crate::object::spec::ProgramType;
use crate::vm::insn::Insn;

pub use oracle::{MapEntries, Oracle, SkbContext};
pub use verify::verify;

/// Size of the verifier log buffer. The kernel keeps the tail of a longer log (rotating
/// mode), which is where the reason for a rejection is.
pub(crate) const LOG_BUF_SIZE: usize = 4 << 20;

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
        /// The full verifier log (its tail, if the kernel had to truncate it).
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
    /// libbpf refused the object outside the verifier: bad ELF, unsupported section (legacy
    /// `maps`), map creation failure, ...
    #[error("libbpf could not {action}: {detail}")]
    Libbpf {
        /// What was being done ("open object", "load object").
        action: &'static str,
        /// libbpf's first warning, or the error itself when libbpf printed nothing.
        detail: String,
        /// Everything libbpf printed meanwhile.
        messages: String,
        /// The libbpf-rs error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The object has no program or map of that name.
    #[error("object has no {kind} named {name:?}")]
    NotFound {
        /// "program" or "map".
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A key or value buffer does not have the size the map declares.
    #[error("map {map}: {what} is {got} bytes, the map wants {expected}")]
    SizeMismatch {
        /// Map name.
        map: String,
        /// "key" or "value".
        what: &'static str,
        /// Size the map declares (for per-CPU values: all CPUs, 8-byte strides).
        expected: usize,
        /// Size given.
        got: usize,
    },
}

impl KernelError {
    /// The verifier's summary when it refused the program only because this kernel offers
    /// the program's type no helper it calls ("program of this type cannot use helper
    /// bpf_xdp_adjust_meta#54"): a limit of the running kernel (its version or its build),
    /// not a fault in the program, which another kernel accepts.
    pub fn missing_helper(&self) -> Option<&str> {
        match self {
            KernelError::Rejected { summary, .. }
                if summary.contains("program of this type cannot use helper") =>
            {
                Some(summary)
            }
            _ => None,
        }
    }
}

/// Result of one `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunResult {
    /// The program's return value (32 bits, as the kernel reports it).
    pub retval: u32,
    /// Packet bytes after the run. For XDP this is `data_meta..data_end`: metadata the program
    /// reserved with `bpf_xdp_adjust_meta` comes first, as the kernel copies it out.
    pub data: Vec<u8>,
    /// Mean duration per repetition in nanoseconds, as the kernel measured it.
    pub duration_ns: u32,
}

/// `mov r0, XDP_PASS; exit`: the probe program and the empty-program baseline every engine's
/// measurements subtract.
pub fn return_pass_insns() -> [Insn; 2] {
    use crate::vm::insn::{BPF_ALU64, BPF_EXIT, BPF_JMP, BPF_K, BPF_MOV};
    [
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 2),
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

/// Whether this process may load and run BPF programs; the error says why not. The answer is
/// computed once per process.
pub fn probe() -> Result<(), KernelError> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(probe_uncached)
        .clone()
        .map_err(|reason| KernelError::Unsupported { reason })
}

/// Creates a one-entry ARRAY map and loads a two-instruction XDP program.
fn probe_uncached() -> Result<(), String> {
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    let explain = |what: &str, e: std::io::Error| -> String {
        let euid = sys::euid();
        let who = if euid == 0 {
            "running as root".to_string()
        } else {
            format!("not running as root (euid {euid})")
        };
        let sysctl = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
            .map(|s| format!(", kernel.unprivileged_bpf_disabled={}", s.trim()))
            .unwrap_or_default();
        match e.raw_os_error() {
            Some(libc::EPERM) => {
                format!("{what}: bpf() returned EPERM ({who}{sysctl}; needs CAP_BPF)")
            }
            Some(libc::ENOSYS) => format!(
                "{what}: bpf() not available (ENOSYS: kernel built without CONFIG_BPF_SYSCALL?)"
            ),
            _ => format!("{what}: bpf() failed: {e} ({who})"),
        }
    };
    sys::map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1).map_err(|e| explain("creating a map", e))?;
    let mut log = Vec::new();
    sys::prog_load(
        ProgramType::Xdp.kernel_id(),
        "probe",
        &return_pass_insns(),
        &mut log,
    )
    .map_err(|e| explain("loading an XDP program", e))?;
    Ok(())
}

/// Loads raw instructions (no maps) as a program of `prog_type`, runs it `repeat` times on
/// `data` with `BPF_PROG_TEST_RUN`, and unloads it.
///
/// The kernel wants at least an Ethernet header (14 bytes) of `data` for XDP and TC programs
/// and fails the run with EINVAL otherwise. A verifier rejection is
/// [`KernelError::Rejected`] with program name `"insns"`.
pub fn test_run_insns(
    insns: &[Insn],
    prog_type: ProgramType,
    data: &[u8],
    repeat: u32,
) -> Result<TestRunResult, KernelError> {
    RawProgram::load(insns, prog_type)?.test_run(data, repeat)
}

/// Number of possible CPUs, as the kernel lays out per-CPU map values (libbpf's count, the
/// same the oracle uses for its dumps); 1 if it cannot be read.
pub fn possible_cpus() -> u32 {
    sys::possible_cpus().map_or(1, |n| n as u32)
}

/// Raw instructions (no maps) loaded into the kernel once and run many times; unloaded on drop.
#[derive(Debug)]
pub struct RawProgram {
    fd: std::os::fd::OwnedFd,
}

impl RawProgram {
    /// Loads `insns` as a program of `prog_type` (license GPL); a verifier rejection comes back
    /// as [`KernelError::Rejected`] with the log.
    pub fn load(insns: &[Insn], prog_type: ProgramType) -> Result<RawProgram, KernelError> {
        probe()?;
        let mut log = Vec::new();
        let fd = sys::prog_load(prog_type.kernel_id(), "insns", insns, &mut log).map_err(|e| {
            if log.is_empty() {
                KernelError::Syscall {
                    call: "BPF_PROG_LOAD",
                    source: e,
                }
            } else {
                let log = String::from_utf8_lossy(&log).into_owned();
                KernelError::Rejected {
                    program: "insns".into(),
                    summary: summarize_log(&log),
                    log,
                }
            }
        })?;
        Ok(RawProgram { fd })
    }

    /// The empty XDP program `r0 = XDP_PASS; exit`: the fixed cost of a test run.
    pub fn empty_xdp() -> Result<RawProgram, KernelError> {
        RawProgram::load(&return_pass_insns(), ProgramType::Xdp)
    }

    /// Runs the program `repeat` times on `data` with `BPF_PROG_TEST_RUN`.
    pub fn test_run(&self, data: &[u8], repeat: u32) -> Result<TestRunResult, KernelError> {
        let out = sys::prog_test_run(std::os::fd::AsFd::as_fd(&self.fd), data, None, repeat)
            .map_err(|source| KernelError::Syscall {
                call: "BPF_PROG_TEST_RUN",
                source,
            })?;
        Ok(TestRunResult {
            retval: out.retval,
            data: out.data,
            duration_ns: out.duration_ns,
        })
    }
}

/// The line of a verifier log that says why it failed: the last non-empty line that is not
/// part of the statistics trailer the kernel prints after every run.
pub(crate) fn summarize_log(log: &str) -> String {
    const TRAILERS: &[&str] = &[
        "processed ",
        "verification time",
        "stack depth",
        "-- END PROG LOAD LOG --",
        "max_states_per_insn",
    ];
    log.lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .find(|l| !TRAILERS.iter().any(|t| l.starts_with(t)))
        .unwrap_or("the verifier left no log")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_skips_statistics() {
        let log = "0: R1=ctx() R10=fp0\n0: (bf) r0 = r2\nR2 !read_ok\nprocessed 1 insns (limit \
                   1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n\n";
        assert_eq!(summarize_log(log), "R2 !read_ok");
        assert_eq!(summarize_log(""), "the verifier left no log");
    }
}
