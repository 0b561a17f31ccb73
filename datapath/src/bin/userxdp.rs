//! `userxdp`: run eBPF objects on captures and (later) talk to a running datapath.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::main(args),
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
