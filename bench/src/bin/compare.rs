//! `compare`: the same XDP object in the kernel and in userspace, side by side.
//!
//! Runs one program over a deterministic packet corpus in the kernel (`BPF_PROG_TEST_RUN`,
//! kernel JIT), our JIT and our interpreter; checks that verdicts and output bytes agree; and
//! times each engine in alternating rounds (K J I K J I ...), reporting per-packet medians with
//! min–max and the ratios JIT/kernel and interpreter/JIT. Kernel times are the kernel's own
//! per-run durations minus those of an empty program measured in the same round.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use userxdp_bench::stats::Spread;
use userxdp_bench::{empty_vm, packets, pin_current_thread, run_batched};
use userxdp_runtime::context::{XdpAction, XdpFrame};
use userxdp_runtime::kernel::{self, Oracle, RawProgram};
use userxdp_runtime::object;
use userxdp_runtime::vm::instance::{Engine, Runner, SafetyPolicy, Vm, VmOptions};

struct Args {
    objects: Vec<(String, Option<String>)>,
    packets: usize,
    rounds: usize,
    repeat: u32,
    /// Leave out the kernel's timing and agreement legs (`--no-kernel`): our two engines only,
    /// in seconds instead of minutes, for working on them.
    no_kernel: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: compare [--packets N] [--rounds R] [--repeat K] [--no-kernel] OBJ[:PROGRAM]...\n\
         OBJ is a path or the name of a built-in program (xdp_parse, xdp_maps, ...)\n\
         --no-kernel: JIT and interpreter only (they must agree with each other), no kernel leg"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        objects: Vec::new(),
        packets: 1000,
        rounds: 5,
        repeat: 50,
        no_kernel: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .unwrap_or_else(|| {
                    eprintln!("compare: {name} needs a positive number");
                    usage()
                })
        };
        match arg.as_str() {
            "--packets" => a.packets = num("--packets"),
            "--rounds" => a.rounds = num("--rounds"),
            "--repeat" => a.repeat = num("--repeat") as u32,
            "--no-kernel" => a.no_kernel = true,
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => {
                eprintln!("compare: unknown option {s}");
                usage()
            }
            s => {
                let (obj, prog) = match s.split_once(':') {
                    Some((o, p)) => (o.to_string(), Some(p.to_string())),
                    None => (s.to_string(), None),
                };
                a.objects.push((obj, prog));
            }
        }
    }
    if a.objects.is_empty() {
        usage()
    }
    a
}

fn resolve(obj: &str) -> Result<std::path::PathBuf> {
    let p = std::path::Path::new(obj);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    userxdp_programs::path(obj.trim_end_matches(".o"))
        .with_context(|| format!("{obj}: no such file or built-in program"))
}

/// Mean ns per run of `runner`, net of `empty`'s cost, over the corpus: for every packet the
/// empty program and the program each run `repeat` times back to back, so that drift between
/// the two measurements (frequency, cache, noise on the other core) cancels out. Runs are
/// batched as in `run-datapath` (one epoch pin per 64 runs).
/// Returns (net, empty).
fn time_user(
    runner: &mut Runner,
    empty: &mut Runner,
    frame: &mut XdpFrame,
    corpus: &[Vec<u8>],
    repeat: u32,
) -> Result<(f64, f64)> {
    let (mut prog_ns, mut empty_ns) = (0u128, 0u128);
    for p in corpus {
        frame.load(p)?;
        let start = Instant::now();
        run_batched(empty, frame, u64::from(repeat))?;
        empty_ns += start.elapsed().as_nanos();
        let start = Instant::now();
        run_batched(runner, frame, u64::from(repeat))?;
        prog_ns += start.elapsed().as_nanos();
    }
    let runs = corpus.len() as f64 * repeat as f64;
    Ok((
        (prog_ns as f64 - empty_ns as f64) / runs,
        empty_ns as f64 / runs,
    ))
}

/// As [`time_user`] for the kernel: `BPF_PROG_TEST_RUN` durations of the empty program and
/// the program, interleaved per packet. Returns (net, empty).
fn time_kernel(
    oracle: &Oracle,
    empty: &RawProgram,
    program: &str,
    corpus: &[Vec<u8>],
    repeat: u32,
) -> Result<(f64, f64)> {
    let (mut prog_ns, mut empty_ns) = (0f64, 0f64);
    for p in corpus {
        empty_ns += empty.test_run(p, repeat)?.duration_ns as f64;
        prog_ns += oracle.test_run(program, p, repeat)?.duration_ns as f64;
    }
    let n = corpus.len() as f64;
    Ok(((prog_ns - empty_ns) / n, empty_ns / n))
}

fn main() -> std::process::ExitCode {
    userxdp_bench::exit_status("compare", run())
}

fn run() -> Result<()> {
    let args = parse_args();
    kernel::probe().context("compare needs the kernel as the reference (run as root)")?;
    // Everything on one core, the same for every engine; say which.
    pin_current_thread(0);
    let corpus = packets::corpus(0x5eed, args.packets);
    println!(
        "# {} packets, {} rounds alternating {}, {} runs per packet per round, all on CPU 0",
        corpus.len(),
        args.rounds,
        if args.no_kernel {
            "jit/interp (no kernel leg: agreement is JIT with interpreter)"
        } else {
            "kernel/jit/interp"
        },
        args.repeat
    );
    let mut overhead = (Vec::new(), Vec::new(), Vec::new());
    println!("| program | agree | kernel ns/pkt | jit ns/pkt | interp ns/pkt | jit/kernel | interp/jit |");
    println!("|---|---|---|---|---|---|---|");
    for (obj, prog) in &args.objects {
        let path = resolve(obj)?;
        let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
        let spec = object::parse(&bytes).with_context(|| path.display().to_string())?;
        let program = match prog {
            Some(p) => p.clone(),
            None => spec.programs.first().context("no programs")?.name.clone(),
        };
        let opts = |engine| VmOptions {
            engine,
            safety: SafetyPolicy::Kernel,
            ncpus: 1,
            ..VmOptions::default()
        };
        let jit = Vm::new(
            spec.clone(),
            Some(&bytes),
            Some(&program),
            opts(Engine::Jit),
        )?;
        let interp = Vm::new(
            spec.clone(),
            Some(&bytes),
            Some(&program),
            opts(Engine::Interpreter),
        )?;
        let oracle = if args.no_kernel {
            None
        } else {
            Some(Oracle::load(&bytes, None)?)
        };
        let (mut jr, mut ir) = (jit.runner(0), interp.runner(0));
        let mut frame = XdpFrame::new()?;

        // Agreement on the first run of every packet (fresh instances, so maps start equal).
        let mut disagree = 0usize;
        {
            let fresh = Vm::new(
                spec.clone(),
                Some(&bytes),
                Some(&program),
                opts(Engine::Jit),
            )?;
            let fresh_i = Vm::new(
                spec.clone(),
                Some(&bytes),
                Some(&program),
                opts(Engine::Interpreter),
            )?;
            let fresh_k = match oracle {
                Some(_) => Some(Oracle::load(&bytes, None)?),
                None => None,
            };
            let (mut a, mut b) = (fresh.runner(0), fresh_i.runner(0));
            for p in &corpus {
                frame.load(p)?;
                let ja = a.run_xdp(&mut frame)?;
                let jd = frame.meta_and_packet().to_vec();
                frame.load(p)?;
                let ia = b.run_xdp(&mut frame)?;
                let id = frame.meta_and_packet().to_vec();
                // The reference: the kernel, or without it the JIT.
                let (ra, rd) = match &fresh_k {
                    Some(k) => {
                        let k = k.test_run(&program, p, 1)?;
                        (XdpAction::from_retval(k.retval as u64), k.data)
                    }
                    None => (ja.action, jd.clone()),
                };
                if ja.action != ra || ia.action != ra || jd != rd || id != rd {
                    disagree += 1;
                }
            }
        }

        let (mut ej, mut ei) = (
            empty_vm(Engine::Jit)?.runner(0),
            empty_vm(Engine::Interpreter)?.runner(0),
        );
        let (mut ks, mut js, mut is) = (Vec::new(), Vec::new(), Vec::new());
        let empty_k = RawProgram::empty_xdp()?;
        for _ in 0..args.rounds {
            // Net figures can come out at or below zero for programs that cost no more than
            // the empty one; they are floored at 0.1 ns so that ratios stay defined.
            if let Some(oracle) = &oracle {
                let (net, empty) = time_kernel(oracle, &empty_k, &program, &corpus, args.repeat)?;
                ks.push(net.max(0.1));
                overhead.0.push(empty);
            }
            let (net, empty) = time_user(&mut jr, &mut ej, &mut frame, &corpus, args.repeat)?;
            js.push(net.max(0.1));
            overhead.1.push(empty);
            let (net, empty) = time_user(&mut ir, &mut ei, &mut frame, &corpus, args.repeat)?;
            is.push(net.max(0.1));
            overhead.2.push(empty);
        }
        let ratio =
            |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
        let (j, i, ij) = (
            Spread::of(&js),
            Spread::of(&is),
            Spread::of(&ratio(&is, &js)),
        );
        let (Some(j), Some(i), Some(ij)) = (j, i, ij) else {
            bail!("no measurements");
        };
        // Without the kernel leg its two columns say so.
        let (k, jk) = match (Spread::of(&ks), Spread::of(&ratio(&js, &ks))) {
            (Some(k), Some(jk)) => (
                k.to_string(),
                format!("{:.2} ({:.2}-{:.2})", jk.median, jk.min, jk.max),
            ),
            _ => ("–".to_string(), "–".to_string()),
        };
        println!(
            "| {}:{} | {}/{} | {k} | {j} | {i} | {jk} | {:.1} ({:.1}-{:.1}) |",
            path.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default(),
            program,
            corpus.len() - disagree,
            corpus.len(),
            ij.median,
            ij.min,
            ij.max
        );
    }
    if let (Some(j), Some(i)) = (Spread::of(&overhead.1), Spread::of(&overhead.2)) {
        let kernel = Spread::of(&overhead.0)
            .map(|k| format!("kernel test-run loop {k} ns, "))
            .unwrap_or_default();
        println!(
            "\nEach column is net of that engine's own empty-program run (`r0 = XDP_PASS`), \
             interleaved packet by packet: {kernel}our JIT run entry {j} ns, \
             interpreter run entry {i} ns."
        );
    }
    Ok(())
}
