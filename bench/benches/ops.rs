//! Time per eBPF instruction of our interpreter on straight-line micro-programs, each shaped
//! to isolate one cost: dispatch alone (independent moves), the eBPF registers living in
//! memory (a chain of adds, each waiting for the one before), stack traffic, bpf-to-bpf calls
//! and jumps that fall through.
//!
//! Every figure is net of the interpreter's empty program (`r0 = 2; exit`) timed just before,
//! divided by the instructions the shape runs, so that it can be set against the per-op budget
//! a ratio target implies (see the README's Performance section). There is no JIT leg: on
//! these shapes the JIT's net time is zero or below what the method resolves (Cranelift keeps
//! the registers in machine registers and drops moves nobody reads); `compare` gives the two
//! engines' ratio on whole programs.
//!
//! `cargo bench -p userxdp-bench --bench ops`. Everything runs on CPU 0.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use userxdp_bench::pin_current_thread;
use userxdp_runtime::object::spec::ProgramType;
use userxdp_runtime::vm::asm::assemble;
use userxdp_runtime::vm::instance::{Engine, Runner, SafetyPolicy, Vm, VmOptions};

/// Repetitions of each shape's unit in its program.
const UNITS: usize = 40;
/// Runs per timed block (a clock read per run would cost as much as a run).
const BLOCK: u64 = 1000;

/// A shape: its name, its program text and the instructions one run executes beyond the
/// empty program's two.
struct Shape {
    name: &'static str,
    text: String,
    insns: usize,
}

/// The shapes measured.
fn shapes() -> Vec<Shape> {
    let unit = |f: &dyn Fn(usize) -> String| (0..UNITS).map(f).collect::<String>();
    let calls = UNITS / 2;
    vec![
        Shape {
            name: "mov_independent",
            text: unit(&|i| format!("mov64 r{}, {i}\n", 2 + i % 6)) + "mov64 r0, 2\nexit",
            insns: UNITS,
        },
        Shape {
            name: "add_dependent",
            text: unit(&|_| "add64 r1, 3\n".into()) + "mov64 r0, r1\nexit",
            insns: UNITS,
        },
        Shape {
            name: "add_registers",
            text: unit(&|i| format!("add64 r{}, r{}\n", 2 + i % 4, 1 + i % 4))
                + "mov64 r0, r2\nexit",
            insns: UNITS,
        },
        Shape {
            name: "stack_store_load",
            text: unit(&|i| {
                format!(
                    "stxdw [r10-{}], r1\nldxdw r{}, [r10-{}]\n",
                    8 + 8 * (i % 8),
                    2 + i % 4,
                    8 + 8 * ((i + 3) % 8)
                )
            }) + "mov64 r0, r2\nexit",
            insns: 2 * UNITS,
        },
        Shape {
            name: "jump_not_taken",
            text: unit(&|i| format!("jeq r1, 1000000, l{i}\nl{i}:\n")) + "mov64 r0, 2\nexit",
            insns: UNITS,
        },
        Shape {
            // A call, the callee's add and its exit: three instructions per call.
            name: "local_call",
            text: "mov64 r6, 0\n".to_string()
                + &"call f\n".repeat(calls)
                + "mov64 r0, r6\nexit\nf:\nadd64 r6, 1\nexit\n",
            insns: 1 + 3 * calls,
        },
    ]
}

/// A runner of `text` in the interpreter.
fn runner(text: &str) -> Runner {
    let insns = assemble(text).expect("the shapes assemble");
    let options = VmOptions {
        engine: Engine::Interpreter,
        safety: SafetyPolicy::Guarded,
        ..VmOptions::default()
    };
    Vm::from_insns(insns, ProgramType::Xdp, options)
        .expect("the shapes load")
        .runner(0)
}

/// Nanoseconds for `BLOCK` runs of `runner` on `mem`.
fn block(runner: &mut Runner, mem: &mut [u8]) -> f64 {
    let start = Instant::now();
    for _ in 0..BLOCK {
        std::hint::black_box(runner.run_raw(mem).expect("the shapes run"));
    }
    start.elapsed().as_nanos() as f64
}

fn bench_ops(c: &mut Criterion) {
    pin_current_thread(0);
    let mut mem = [0u8; 64];
    for shape in shapes() {
        let mut group = c.benchmark_group(format!("op/{}", shape.name));
        group.throughput(criterion::Throughput::Elements(1));
        let mut program = runner(&shape.text);
        let mut empty = runner("mov64 r0, 2\nexit");
        group.bench_function(BenchmarkId::from_parameter("userxdp_interp"), |b| {
            // One criterion iteration is one instruction: blocks of the empty program and
            // the shape alternate, and the difference is spread over the shape's
            // instructions.
            b.iter_custom(|iters| {
                let blocks = (iters / (BLOCK * shape.insns as u64)).max(1);
                let mut net = 0f64;
                for _ in 0..blocks {
                    let base = block(&mut empty, &mut mem);
                    net += block(&mut program, &mut mem) - base;
                }
                let ops = (blocks * BLOCK * shape.insns as u64) as f64;
                Duration::from_nanos((net.max(0.0) * iters as f64 / ops) as u64)
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = bench_ops
}
criterion_main!(benches);
