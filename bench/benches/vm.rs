//! Per-packet execution time of the same programs on the same packets, in every engine:
//! our interpreter and JIT, rbpf's interpreter and JIT (where rbpf can run the program: no
//! maps, helpers or bpf-to-bpf calls), and the kernel JIT (`BPF_PROG_TEST_RUN` durations minus
//! those of an empty program measured in the same iteration).
//!
//! Every leg but rbpf's is net of its engine's own empty program (`r0 = XDP_PASS`) run on the
//! same packet just before, as in `compare`; rbpf legs are gross.
//!
//! `cargo bench -p userxdp-bench --bench vm` (root for the kernel leg). Everything runs on
//! CPU 0. The `compare` tool gives the same figures as ratios taken in one run.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use userxdp_bench::{empty_vm, packets, pin_current_thread, run_batched};
use userxdp_runtime::context::{LowMemory, XdpFrame};
use userxdp_runtime::kernel::{self, Oracle, RawProgram};
use userxdp_runtime::object;
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

/// Programs measured: parser-style, map-heavy, calls, and the trivial floor.
const PROGRAMS: &[&str] = &["xdp_pass", "xdp_tx", "xdp_parse", "xdp_maps", "xdp_calls"];
/// Packets cycled through per program.
const PACKETS: usize = 64;
/// Runs per `BPF_PROG_TEST_RUN` call: enough that the kernel's timer and a cold first run
/// do not dominate the mean.
const KERNEL_REPEAT: u32 = 100;

fn bench_engines(c: &mut Criterion) {
    pin_current_thread(0);
    let corpus = packets::corpus(0xbe7c, PACKETS);
    let kernel_ok = kernel::probe().is_ok();
    if !kernel_ok {
        eprintln!("kernel leg skipped: {}", kernel::probe().unwrap_err());
    }
    for name in PROGRAMS {
        let Some(bytes) = userxdp_programs::bytes(name) else {
            continue;
        };
        let spec = object::parse(&bytes).expect("parse");
        let program = spec.programs[0].name.clone();
        let mut group = c.benchmark_group(format!("xdp/{name}"));
        group.throughput(criterion::Throughput::Elements(1));

        for (label, engine) in [
            ("userxdp_interp", Engine::Interpreter),
            ("userxdp_jit", Engine::Jit),
        ] {
            let safety = if kernel_ok {
                SafetyPolicy::Kernel
            } else {
                SafetyPolicy::Guarded
            };
            let vm = Vm::new(
                spec.clone(),
                Some(&bytes),
                Some(&program),
                VmOptions {
                    engine,
                    safety,
                    ..VmOptions::default()
                },
            )
            .expect("load");
            let mut runner = vm.runner(0);
            let mut empty = empty_vm(engine).expect("empty program").runner(0);
            let mut frame = XdpFrame::new().expect("frame");
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                // Like the kernel's `repeat`: each packet runs `repeat` times in one timed
                // block (per-run clock reads would cost as much as a run), right after the
                // empty program on the same packet, whose time is subtracted; batched as in
                // run-datapath (one epoch pin per 64 runs).
                b.iter_custom(|iters| {
                    let repeat = (iters / PACKETS as u64).max(1);
                    let mut net = 0f64;
                    for p in &corpus {
                        frame.load(p).expect("load");
                        let start = Instant::now();
                        run_batched(&mut empty, &mut frame, repeat).expect("run");
                        let base = start.elapsed().as_nanos() as f64;
                        let start = Instant::now();
                        run_batched(&mut runner, &mut frame, repeat).expect("run");
                        net += start.elapsed().as_nanos() as f64 - base;
                    }
                    let runs = (repeat * PACKETS as u64) as f64;
                    net_total(net / runs, iters)
                })
            });
        }

        bench_rbpf(
            &mut group,
            &spec.programs[0].insns,
            &corpus,
            !spec.maps.is_empty(),
        );

        if kernel_ok {
            let oracle = Oracle::load(&bytes, None).expect("kernel load");
            let empty = RawProgram::empty_xdp().expect("empty program");
            group.bench_function(BenchmarkId::from_parameter("kernel_jit"), |b| {
                b.iter_custom(|iters| {
                    // The kernel reports the mean of `KERNEL_REPEAT` runs per call; each packet
                    // runs after the empty program on the same packet, whose time is
                    // subtracted. The per-run mean is scaled to criterion's iteration count.
                    let mut net = 0f64;
                    for p in &corpus {
                        let e = empty.test_run(p, KERNEL_REPEAT).expect("empty run");
                        let r = oracle
                            .test_run(&program, p, KERNEL_REPEAT)
                            .expect("test run");
                        net += r.duration_ns as f64 - e.duration_ns as f64;
                    }
                    net_total(net / PACKETS as f64, iters)
                })
            });
        }
        group.finish();
    }
}

/// What criterion is told `iters` runs took, from the net time of one run (`per_run_ns`, a
/// program's time less its engine's empty program's). A program as cheap as the empty one
/// nets zero or, by noise, less; criterion rejects a zero measurement and drops the whole
/// leg, so the total is held at 1 ns or more: such a leg reports about 0 ns per run instead
/// of nothing.
fn net_total(per_run_ns: f64, iters: u64) -> Duration {
    Duration::from_nanos((per_run_ns * iters as f64).round().max(1.0) as u64)
}

/// rbpf's interpreter and JIT, on programs it can run (no maps, helpers or local calls).
fn bench_rbpf(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    insns: &[userxdp_runtime::vm::insn::Insn],
    corpus: &[Vec<u8>],
    has_maps: bool,
) {
    if has_maps {
        return;
    }
    let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let Ok(mut vm) = rbpf::EbpfVmMbuff::new(Some(&code)) else {
        return;
    };
    // rbpf reads `xdp_md.data`/`data_end` from the metadata buffer; 32-bit addresses work when
    // the packet is below 4 GiB, as ours is.
    let mut mem = LowMemory::new(4096).expect("low memory");
    let mut mbuff = [0u8; 24];
    let set = |mem: &mut LowMemory, mbuff: &mut [u8; 24], p: &[u8]| {
        mem.as_mut_slice()[..p.len()].copy_from_slice(p);
        let start = mem.as_ptr() as u64 as u32;
        mbuff[0..4].copy_from_slice(&start.to_le_bytes());
        mbuff[4..8].copy_from_slice(&(start + p.len() as u32).to_le_bytes());
        mbuff[8..12].copy_from_slice(&start.to_le_bytes());
        p.len()
    };
    let n = set(&mut mem, &mut mbuff, &corpus[0]);
    if vm.execute_program(&mem.as_slice()[..n], &mbuff).is_err() {
        eprintln!("rbpf cannot run this program; rbpf legs skipped");
        return;
    }
    group.bench_function(BenchmarkId::from_parameter("rbpf_interp"), |b| {
        let mut i = 0;
        b.iter(|| {
            let n = set(&mut mem, &mut mbuff, &corpus[i % PACKETS]);
            i += 1;
            vm.execute_program(&mem.as_slice()[..n], &mbuff).ok()
        })
    });
    if vm.jit_compile().is_ok() {
        group.bench_function(BenchmarkId::from_parameter("rbpf_jit"), |b| {
            let mut i = 0;
            b.iter(|| {
                let n = set(&mut mem, &mut mbuff, &corpus[i % PACKETS]);
                i += 1;
                // SAFETY: rbpf's JIT reads only the packet and mbuff we built (the program was
                // verified by rbpf and accesses only `data..data_end`).
                unsafe {
                    vm.execute_program_jit(&mut mem.as_mut_slice()[..n], &mut mbuff)
                        .ok()
                }
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_engines
}
criterion_main!(benches);
