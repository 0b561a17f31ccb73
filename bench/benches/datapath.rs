//! Per-packet cost of the datapath's worker loop without a NIC: `launch::run` on the in-memory
//! generator backend (`Input::Generator`, one queue, one 64-byte UDP frame over and over) with
//! `xdp_drop` and `xdp_parse` (JIT), and, as the floor, a raw loop over the same `MemoryPort`
//! (receive a batch, release every frame) with no program and no VM.
//!
//! `cargo bench -p userxdp-bench --bench datapath`. Workers and the raw loop run on CPU 1
//! (CPU 0 on a one-CPU machine). Each iteration is one whole run of `FRAMES` frames; its time
//! is the run's own `elapsed` (program loading and JIT excluded), which `launch::run` samples
//! on a 20 ms tick: with `FRAMES` chosen so that a run takes a few hundred ms that is a few
//! per cent, and the same for every leg.
//!
//! After criterion, the ratios "program / raw floor" are measured once more with legs
//! alternated (A B A B, `ROUNDS` rounds) and printed as median (min–max).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use userxdp_bench::pin_current_thread;
use userxdp_bench::stats::Spread;
use userxdp_datapath::cli::objects::ProgRef;
use userxdp_datapath::device::memory::MemoryPort;
use userxdp_datapath::device::Port;
use userxdp_datapath::launch::report::StatsFormat;
use userxdp_datapath::launch::{self, Config, Input};
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy};

/// Programs run by the worker loop.
const PROGRAMS: &[&str] = &["xdp_drop", "xdp_parse"];
/// Frames per measured run.
const FRAMES: u64 = 8_000_000;
/// Frames per RX batch (run-datapath's default).
const BATCH: usize = 64;
/// Alternated rounds for the printed ratios.
const ROUNDS: usize = 5;

/// A 64-byte Ethernet/IPv4/UDP frame, 198.18.0.1 -> 198.18.0.2 port 9.
fn frame() -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    etherparse::PacketBuilder::ethernet2([2, 0, 0xc6, 0x12, 0, 1], [2, 0, 0xc6, 0x12, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(9, 9)
        .write(&mut out, &[0u8; 22])
        .expect("writing a UDP frame into a Vec");
    out
}

/// CPU 1 if the machine has two CPUs or more. Online CPUs, not this thread's affinity mask
/// (which the raw loop narrows by pinning the calling thread).
fn core() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::from(n > 1)
}

fn safety() -> SafetyPolicy {
    match userxdp_runtime::kernel::probe() {
        Ok(()) => SafetyPolicy::Kernel,
        Err(_) => SafetyPolicy::Guarded,
    }
}

/// One run of the worker loop over `FRAMES` generated frames; the workers' wall time.
fn run_program(name: &str, safety: SafetyPolicy) -> Duration {
    let path = userxdp_programs::path(name).expect("program built");
    let config = Config {
        input: Input::Generator {
            templates: vec![frame()],
            count: FRAMES,
            queues: 1,
        },
        prog: ProgRef {
            path,
            program: None,
        },
        egress: None,
        engine: Engine::Jit,
        safety,
        cores: Some(vec![core()]),
        tap: None,
        batch: BATCH,
        stats: None,
        format: StatsFormat::Text,
        trace: None,
        duration: Some(Duration::from_secs(60)),
        spin: true,
        control: None,
        maps_init: None,
    };
    let report = launch::run(&config, Arc::new(AtomicBool::new(false))).expect("launch::run");
    assert_eq!(report.total.rx, FRAMES, "{name}: every frame received");
    assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
    report.elapsed
}

/// The floor: the same port, receive and release, no program.
fn run_raw() -> Duration {
    pin_current_thread(core());
    let mut port = MemoryPort::new(vec![frame()], FRAMES, 1024, 1, 0).expect("MemoryPort");
    let mut descs = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    let t0 = Instant::now();
    while !port.finished() {
        descs.clear();
        port.receive(&mut descs, BATCH).expect("receive");
        for d in &descs {
            port.release(d.addr);
        }
        n += descs.len() as u64;
    }
    let elapsed = t0.elapsed();
    assert_eq!(n, FRAMES);
    std::hint::black_box(n);
    elapsed
}

fn bench(c: &mut Criterion, safety: SafetyPolicy) {
    let mut group = c.benchmark_group("datapath/generator");
    group.throughput(Throughput::Elements(FRAMES));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("raw_memoryport_floor", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_raw()).sum())
    });
    for name in PROGRAMS {
        group.bench_with_input(BenchmarkId::new("launch_run_jit", name), name, |b, name| {
            b.iter_custom(|iters| (0..iters).map(|_| run_program(name, safety)).sum())
        });
    }
    group.finish();
}

fn ratios(safety: SafetyPolicy) {
    println!(
        "\nWorker loop vs raw MemoryPort floor, {FRAMES} frames per run, {ROUNDS} alternated rounds, CPU {}:",
        core()
    );
    println!("| leg | ns/frame median (min–max) | Mpps median | throughput leg / raw floor, per round, median (min–max) |");
    println!("|---|---|---|---|");
    let ns = |d: Duration| d.as_secs_f64() * 1e9 / FRAMES as f64;
    let mut raw = Vec::new();
    let mut legs: Vec<Vec<f64>> = vec![Vec::new(); PROGRAMS.len()];
    for _ in 0..ROUNDS {
        raw.push(ns(run_raw()));
        for (i, name) in PROGRAMS.iter().enumerate() {
            legs[i].push(ns(run_program(name, safety)));
        }
    }
    let show = |v: &[f64]| {
        let s = Spread::of(v).expect("samples");
        (
            format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
            1e3 / s.median,
        )
    };
    let (r, mpps) = show(&raw);
    println!("| raw MemoryPort loop | {r} | {mpps:.1} | 1 |");
    for (i, name) in PROGRAMS.iter().enumerate() {
        let (r, mpps) = show(&legs[i]);
        let per_round: Vec<f64> = raw.iter().zip(&legs[i]).map(|(a, b)| a / b).collect();
        let q = Spread::of(&per_round).expect("samples");
        println!(
            "| launch::run JIT {name} | {r} | {mpps:.1} | {:.2} ({:.2}–{:.2}) |",
            q.median, q.min, q.max
        );
    }
}

fn main() {
    let safety = safety();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, safety);
    c.final_summary();
    // `cargo bench -- --list` and filtered runs should not pay for the ratio rounds.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    ratios(safety);
}
