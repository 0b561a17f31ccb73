//! `userxdp`: run eBPF objects on captures, run bare bytecode, talk to a running datapath,
//! configure the load balancer.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use userxdp_datapath::cli::attach::{self, AttachArgs};
use userxdp_datapath::cli::ctl::{self, CtlArgs};
use userxdp_datapath::cli::exec::{self, ExecArgs};
use userxdp_datapath::cli::lb::{self, LbArgs};
use userxdp_datapath::cli::run::{self, RunArgs};

#[derive(Debug, Parser)]
#[command(
    name = "userxdp",
    version,
    about = "Userspace eBPF runtime for XDP and TC objects"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an XDP program over every frame of a capture (interpreter, JIT or kernel).
    Run(RunArgs),
    /// Run bare bytecode (base16 on stdin or --program) with r1/r2 = memory; print r0.
    Exec(ExecArgs),
    /// Talk to a running run-datapath: stats, maps, reload, snapshots.
    Ctl(CtlArgs),
    /// Configure the load balancer (lb.o): VIPs, backends, Maglev tables.
    Lb(LbArgs),
    /// Attach an object in the kernel (XDP + TC egress) while this runs: the kernel leg.
    Attach(AttachArgs),
}

fn main() -> ExitCode {
    // Whatever goes wrong, callers (test harnesses) get one line on stderr and a failure
    // status, never a multi-line backtrace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("userxdp: internal error: {}{at}", what.replace('\n', " "));
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::main(args),
        Command::Exec(args) => exec::main(args).map_err(|e| e.context("exec")),
        Command::Ctl(args) => ctl::main(args).map_err(|e| e.context("ctl")),
        Command::Lb(args) => lb::main(args).map_err(|e| e.context("lb")),
        Command::Attach(args) => attach::main(args).map_err(|e| e.context("attach")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line per cause, outermost first: "what failed: because ...".
            eprintln!("userxdp: {e:#}");
            ExitCode::FAILURE
        }
    }
}
