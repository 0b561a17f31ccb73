//! Runs one built-in program (or `empty`, the program every figure is net of) on a fixed
//! corpus in one engine, for counting the instructions a run executes under
//! `valgrind --tool=callgrind`: a count does not wander with this VM's clock, so it shows
//! what a change to the interpreter does where timings cannot.
//!
//! ```sh
//! cargo build --release -p userxdp-bench --example icount
//! for n in 100 200; do valgrind --tool=callgrind --callgrind-out-file=cg.$n \
//!     target/release/examples/icount xdp_globals interp $n; done
//! ```
//!
//! The difference between the two totals over 64 × 100 runs is the instructions per run;
//! the same for `empty` gives the run entry to subtract. The program's own budgets (the
//! 1000 frames of `xdp_globals`) are spent before the counted runs, as in `compare`.

use anyhow::{bail, Context, Result};
use userxdp_bench::{empty_vm, packets, run_batched};
use userxdp_runtime::context::XdpFrame;
use userxdp_runtime::object;
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

/// Runs per packet before the counted ones.
const WARM_UP: u64 = 2000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, engine, runs] = args.as_slice() else {
        bail!("usage: icount PROGRAM|empty interp|jit RUNS_PER_PACKET");
    };
    let engine = match engine.as_str() {
        "interp" => Engine::Interpreter,
        "jit" => Engine::Jit,
        other => bail!("unknown engine {other:?} (interp or jit)"),
    };
    let runs: u64 = runs.parse().context("RUNS_PER_PACKET")?;
    let vm = if name == "empty" {
        empty_vm(engine)?
    } else {
        let bytes = userxdp_programs::bytes(name)
            .with_context(|| format!("no built-in program {name:?}"))?;
        let spec = object::parse(&bytes)?;
        let program = spec.programs[0].name.clone();
        Vm::new(
            spec,
            Some(&bytes),
            Some(&program),
            VmOptions {
                engine,
                // As `compare` runs as root: the kernel's verifier as the safety proof.
                safety: SafetyPolicy::Kernel,
                ..VmOptions::default()
            },
        )?
    };
    let mut runner = vm.runner(0);
    let corpus = packets::corpus(0xc0de, 64);
    let mut frame = XdpFrame::new()?;
    for runs in [WARM_UP, runs] {
        for p in &corpus {
            frame.load(p)?;
            run_batched(&mut runner, &mut frame, runs)?;
        }
    }
    Ok(())
}
