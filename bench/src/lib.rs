//! Benchmark and comparison support: packet corpora and kernel-vs-userspace measurement.
#![warn(missing_docs)]

pub mod baseline;
pub mod memcache;
pub mod packets;
pub mod stats;

pub use baseline::{empty_vm, pin_current_thread, run_batched};

/// Ends a tool's `main`: on error, one line `tool: error: cause: ...` on stderr (the cause
/// chain, never a backtrace, whatever `RUST_BACKTRACE` says) and exit status 1.
pub fn exit_status(tool: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
