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
use userxdp_runtime::maps::dump::MapDump;
use userxdp_runtime::object::spec::{ObjectSpec, ProgramType};
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

use super::maps_init::{self, MapsInit};
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
    /// Write the `--dump-maps` JSON to this file instead of standard output.
    #[arg(long, value_name = "FILE.json")]
    pub dump_maps_to: Option<PathBuf>,
    /// Before the first frame, fill maps from this file (the format `--dump-maps` prints;
    /// PROG_ARRAY values are program names).
    #[arg(long, value_name = "FILE.json")]
    pub maps_init: Option<PathBuf>,
}

impl RunArgs {
    /// Whether map contents are printed or written after the run.
    fn wants_dump(&self) -> bool {
        self.dump_maps || self.dump_maps_to.is_some()
    }
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
    // Checked against the object before any engine starts, so a bad file fails alike in all.
    let init = match &args.maps_init {
        Some(path) => maps_init::plan(path, &spec, ncpus)?,
        None => MapsInit::default(),
    };

    let (results, maps, elapsed, engine_name) = match args.engine {
        EngineArg::Kernel => run_kernel(&bytes, &spec, &program, &frames, &args, &init)?,
        EngineArg::Interp | EngineArg::Jit => {
            run_user(&bytes, spec.clone(), &program, &frames, &args, ncpus, &init)?
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
    if let Some(path) = &args.dump_maps_to {
        std::fs::write(path, serde_json::to_string_pretty(&maps)? + "\n")
            .with_context(|| format!("--dump-maps-to: cannot write {}", path.display()))?;
    } else if args.dump_maps {
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
    init: &MapsInit,
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
    init.apply_user(&vm)?;
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
    // Only when asked: dumping reads every element (a Maglev ring has a million).
    let maps = if args.wants_dump() {
        maps_init::dump_user(&vm)?
    } else {
        BTreeMap::new()
    };
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
    init: &MapsInit,
) -> Result<RunOutput> {
    kernel::probe()?;
    let oracle = Oracle::load(bytes, args.prog_type)?;
    let program_ids = init.apply_kernel(&oracle, spec)?;
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
    for m in spec.maps.iter().filter(|_| args.wants_dump()) {
        let entries = oracle.map_dump(&m.name)?;
        let mut d =
            MapDump::from_entries(m.map_type, m.key_size, m.value_size, m.max_entries, entries);
        d.name_programs(|id| program_ids.get(&id).cloned());
        maps.insert(m.name.clone(), d);
    }
    Ok((results, maps, elapsed, "kernel"))
}
