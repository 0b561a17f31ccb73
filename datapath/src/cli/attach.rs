//! `userxdp attach`: the kernel side of a side-by-side comparison — load an object into the
//! kernel and attach its XDP program (and its TC egress program) to an interface, for as long
//! as this command runs. Links die with the process: nothing outlives it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use userxdp_runtime::object::spec::ProgramType;

use super::objects::{self, ProgRef};
use crate::kattach::KernelAttachment;

/// Arguments of `userxdp attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Interface to attach to.
    #[arg(long, value_name = "IF")]
    pub iface: String,
    /// Object and optional XDP program: `cache.o` or `cache.o:cache_ingress`.
    #[arg(long, value_name = "OBJ[:PROGRAM]")]
    pub prog: ProgRef,
    /// TC program of the same object to attach on egress (tcx).
    #[arg(long, value_name = "PROGRAM")]
    pub egress: Option<String>,
    /// Pin every map under this bpffs directory (removed on exit), as `DIR/<map name>` with
    /// dots replaced by underscores (bpffs refuses dots: `cache.rodata` -> `cache_rodata`).
    #[arg(long, value_name = "DIR")]
    pub pin_maps: Option<PathBuf>,
    /// Detach after this many seconds (default: on SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// Attaches, waits, detaches.
pub fn main(args: AttachArgs) -> Result<()> {
    let (_, spec) = objects::open(&args.prog.path, None)?;
    let xdp = match &args.prog.program {
        Some(p) => spec
            .program(p)
            .map(|p| p.name.clone())
            .with_context(|| format!("{}: no program {p}", args.prog.path.display()))?,
        None => objects::default_program(&spec, |t| t == ProgramType::Xdp)
            .with_context(|| format!("{}: no XDP program", args.prog.path.display()))?,
    };
    if let Some(e) = &args.egress {
        match spec.program(e) {
            Some(p) if matches!(p.prog_type, ProgramType::SchedCls | ProgramType::SchedAct) => {}
            Some(p) => bail!("--egress {e}: section {} is not a TC program", p.section),
            None => bail!(
                "--egress {e}: no such program in {}",
                args.prog.path.display()
            ),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let attached = KernelAttachment::attach(
        &args.prog.path,
        &args.iface,
        &xdp,
        args.egress.as_deref(),
        args.pin_maps.as_deref(),
    )?;
    println!(
        "attached {xdp}{} to {} (kernel); Ctrl-C detaches",
        args.egress
            .as_ref()
            .map(|e| format!(" and {e} (egress)"))
            .unwrap_or_default(),
        args.iface
    );
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed)
        && args
            .duration
            .is_none_or(|d| start.elapsed() < Duration::from_secs_f64(d))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(attached);
    println!("detached from {}", args.iface);
    Ok(())
}
