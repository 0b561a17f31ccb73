//! `run-datapath`: AF_XDP queues (or a capture, or generated frames) feeding pinned workers
//! that run an XDP program in userspace. Stops on SIGINT/SIGTERM, at `--duration`, or when
//! finite input is done; detaches everything it attached on the way out.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use userxdp_datapath::launch::args::DatapathArgs;
use userxdp_datapath::launch::{self, report};

fn main() -> ExitCode {
    let args = DatapathArgs::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("run-datapath: cannot handle signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = args
        .into_config()
        .and_then(|config| Ok((launch::run(&config, stop)?, config.format)));
    match result {
        Ok((report, format)) => {
            report::summary(format, &report);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("run-datapath: {e:#}");
            ExitCode::FAILURE
        }
    }
}
