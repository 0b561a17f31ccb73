//! `userxdp run`: run an XDP program over every frame of a capture, like `bpftool prog run`
//! for whole captures, in the interpreter, the JIT or the kernel (`BPF_PROG_TEST_RUN`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use userxdp_runtime::context::{XdpAction, XdpFrame};
use userxdp_runtime::kernel::{self, Oracle};
use userxdp_runtime::maps::dump::{self, MapDump};
use userxdp_runtime::object::spec::{ObjectSpec, ProgramType};
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

use super::objects::{self, ProgRef};
use crate::capture::{self, PcapOut};

/// Which engine runs the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The checked interpreter.
    Interp,
    /// The Cranelift JIT.
    Jit,
    /// The kernel, through BPF_PROG_TEST_RUN.
    Kernel,
}

/// What proves JIT code safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifierArg {
    /// The kernel verifier (default when this process may load BPF programs).
    Kernel,
    /// Bounds checks on every memory access.
    Guarded,
    /// No checks at all: only for code proven safe elsewhere.
    None,
}

/// Arguments of `userxdp run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Object and optional program: `prog.o` or `prog.o:function_or_section`.
    #[arg(long, value_name = "OBJ[:PROGRAM]")]
    pub prog: ProgRef,
    /// Input capture (pcap or pcapng, Ethernet).
    #[arg(long, value_name = "IN.pcap")]
    pub pcap: PathBuf,
    /// Engine.
    #[arg(long, value_enum, default_value = "jit")]
    pub engine: EngineArg,
    /// Safety policy for the JIT [default: kernel if permitted, else guarded].
    #[arg(long, value_enum)]
    pub verifier: Option<VerifierArg>,
    /// Program type override (xdp is the only type `run` executes).
    #[arg(long = "type", value_parser = objects::parse_prog_type)]
    pub prog_type: Option<ProgramType>,
    /// Write output frames (after the program's changes) here; ABORTED/DROP frames are left out.
    #[arg(long, value_name = "OUT.pcap")]
    pub out: Option<PathBuf>,
    /// Run each frame this many times (maps accumulate; the last run's frame is reported, as
    /// the kernel's test run does).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub repeat: u32,
    /// Print machine-readable JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// After the run, print every map's contents as JSON.
    #[arg(long)]
    pub dump_maps: bool,
}

/// The result for one frame.
#[derive(Debug, Clone, Serialize)]
struct FrameResult {
    frame: usize,
    verdict: &'static str,
    retval: u64,
    len_in: usize,
    len_out: usize,
    #[serde(skip)]
    data_out: Vec<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trace: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    summary: bool,
    engine: &'a str,
    program: &'a str,
    frames: usize,
    verdicts: BTreeMap<&'static str, u64>,
    mean_ns_per_run: f64,
}

/// Runs the command; output goes to stdout, errors to the caller.
pub fn main(args: RunArgs) -> Result<()> {
    let (bytes, spec) = objects::open(&args.prog.path, args.prog_type)?;
    let frames = capture::read_frames(&args.pcap)?;
    let program = select_program(&spec, args.prog.program.as_deref())?;
    if spec
        .program(&program)
        .is_some_and(|p| p.prog_type != ProgramType::Xdp)
    {
        bail!(
            "program {program} is not an XDP program (use --type xdp to override the section's type)"
        );
    }
    // Per-CPU values are laid out for every possible CPU, and runs happen on CPU 0, so that
    // map dumps from every engine have the same shape.
    let ncpus = kernel::possible_cpus();
    super::pin_current_thread(0);

    let (results, maps, elapsed, engine_name) = match args.engine {
        EngineArg::Kernel => run_kernel(&bytes, &spec, &program, &frames, &args)?,
        EngineArg::Interp | EngineArg::Jit => {
            run_user(&bytes, spec.clone(), &program, &frames, &args, ncpus)?
        }
    };

    if let Some(out) = &args.out {
        let mut w = PcapOut::create(out)?;
        for (r, f) in results.iter().zip(&frames) {
            if !matches!(r.verdict, "XDP_DROP" | "XDP_ABORTED") {
                w.write(f.timestamp, &r.data_out)?;
            }
        }
    }

    let mut verdicts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in &results {
        *verdicts.entry(r.verdict).or_default() += 1;
        if args.json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!(
                "frame {}: {} (retval {}) len {} -> {}",
                r.frame, r.verdict, r.retval, r.len_in, r.len_out
            );
            for line in &r.trace {
                println!("  trace: {line}");
            }
        }
    }
    let runs = (frames.len() as u64 * args.repeat as u64).max(1);
    let summary = Summary {
        summary: true,
        engine: engine_name,
        program: &program,
        frames: frames.len(),
        verdicts,
        mean_ns_per_run: elapsed.as_nanos() as f64 / runs as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let v: Vec<String> = summary
            .verdicts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!(
            "{} frames, engine {}, program {}: {} ({:.0} ns/run)",
            summary.frames,
            engine_name,
            program,
            v.join(", "),
            summary.mean_ns_per_run
        );
    }
    if args.dump_maps {
        println!("{}", serde_json::to_string_pretty(&maps)?);
    }
    Ok(())
}

fn select_program(spec: &ObjectSpec, wanted: Option<&str>) -> Result<String> {
    match wanted {
        Some(w) => spec.program(w).map(|p| p.name.clone()).with_context(|| {
            format!(
                "no program {w:?}; the object has: {}",
                spec.programs
                    .iter()
                    .map(|p| format!("{} (section {})", p.name, p.section))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
        None => spec
            .programs
            .first()
            .map(|p| p.name.clone())
            .context("the object has no programs"),
    }
}

type RunOutput = (
    Vec<FrameResult>,
    BTreeMap<String, MapDump>,
    Duration,
    &'static str,
);

fn run_user(
    bytes: &[u8],
    spec: ObjectSpec,
    program: &str,
    frames: &[capture::CapturedFrame],
    args: &RunArgs,
    ncpus: u32,
) -> Result<RunOutput> {
    let engine = match args.engine {
        EngineArg::Interp => Engine::Interpreter,
        _ => Engine::Jit,
    };
    let safety = match args.verifier {
        Some(VerifierArg::Kernel) => SafetyPolicy::Kernel,
        Some(VerifierArg::Guarded) => SafetyPolicy::Guarded,
        Some(VerifierArg::None) => SafetyPolicy::None,
        None => match kernel::probe() {
            Ok(()) => SafetyPolicy::Kernel,
            Err(e) => {
                if engine == Engine::Jit {
                    eprintln!("note: {e}; using --verifier guarded");
                }
                SafetyPolicy::Guarded
            }
        },
    };
    let vm = Vm::new(
        spec,
        Some(bytes),
        Some(program),
        VmOptions {
            engine,
            safety,
            ncpus,
            ..VmOptions::default()
        },
    )?;
    let mut runner = vm.runner(0);
    let mut frame = XdpFrame::new()?;
    let mut results = Vec::with_capacity(frames.len());
    let mut elapsed = Duration::ZERO;
    for (i, f) in frames.iter().enumerate() {
        frame
            .load(&f.data)
            .with_context(|| format!("frame {}", i + 1))?;
        let start = Instant::now();
        let mut last = None;
        for _ in 0..args.repeat {
            last = Some(
                runner
                    .run_xdp(&mut frame)
                    .with_context(|| format!("frame {}", i + 1))?,
            );
        }
        elapsed += start.elapsed();
        let run = last.context("no run")?;
        let data_out = frame.meta_and_packet().to_vec();
        results.push(FrameResult {
            frame: i + 1,
            verdict: run.action.name(),
            retval: run.retval,
            len_in: f.data.len(),
            len_out: data_out.len(),
            data_out,
            trace: runner.take_trace(),
        });
    }
    runner.quiesce();
    let mut maps = BTreeMap::new();
    for (name, m) in vm.maps() {
        maps.insert(name.to_string(), dump::dump(m.as_ref())?);
    }
    let name = match engine {
        Engine::Interpreter => "interp",
        Engine::Jit => "jit",
    };
    Ok((results, maps, elapsed, name))
}

fn run_kernel(
    bytes: &[u8],
    spec: &ObjectSpec,
    program: &str,
    frames: &[capture::CapturedFrame],
    args: &RunArgs,
) -> Result<RunOutput> {
    kernel::probe()?;
    let oracle = Oracle::load(bytes, args.prog_type)?;
    let mut results = Vec::with_capacity(frames.len());
    let mut elapsed = Duration::ZERO;
    for (i, f) in frames.iter().enumerate() {
        let r = oracle
            .test_run(program, &f.data, args.repeat)
            .with_context(|| format!("frame {}", i + 1))?;
        elapsed += Duration::from_nanos(r.duration_ns as u64 * args.repeat as u64);
        results.push(FrameResult {
            frame: i + 1,
            verdict: XdpAction::from_retval(r.retval as u64).name(),
            retval: r.retval as u64,
            len_in: f.data.len(),
            len_out: r.data.len(),
            data_out: r.data,
            trace: Vec::new(),
        });
    }
    let mut maps = BTreeMap::new();
    for m in &spec.maps {
        let entries = oracle.map_dump(&m.name)?;
        maps.insert(
            m.name.clone(),
            MapDump::from_entries(m.map_type, m.key_size, m.value_size, m.max_entries, entries),
        );
    }
    Ok((results, maps, elapsed, "kernel"))
}
