//! Map operation costs, per map type: HASH, LRU_HASH, ARRAY, PERCPU_ARRAY.
//!
//! Legs, each per operation (lookup hit, lookup miss, update, delete + re-insert):
//! - `1thread` / `2threads`: the `Map` trait called from Rust (what helpers do, minus the call
//!   from program code), alone or while a second thread runs the same operation on the same map
//!   (`2threads` is the measuring thread's time per operation under that contention);
//! - `hashbrown`: `hashbrown::HashMap<u32, u64>` on one thread, the floor for a hash table;
//! - `jit`: an XDP program doing `LOOKUPS` lookups, run by our JIT inside a batch (pinned once, as
//!   a worker runs), net of the empty program, per lookup;
//! - `kernel`: the same instructions loaded into the kernel against a kernel map of the same
//!   type, run with `BPF_PROG_TEST_RUN` repeat, net of the kernel's empty program, per lookup
//!   (root only).
//!
//! Maps hold `ENTRIES` u32 keys (0..ENTRIES) with u64 values; misses use keys above them.
//! `cargo bench -p userxdp-bench --bench maps -- --warm-up-time 1 --measurement-time 2`.
//! The measuring thread runs on CPU 0, the second thread on CPU 1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use userxdp_bench::{empty_vm, pin_current_thread};
use userxdp_runtime::context::XdpFrame;
use userxdp_runtime::kernel::{self, RawProgram};
use userxdp_runtime::maps::{self, epoch, flags, types, Map};
use userxdp_runtime::object::spec::{
    AttachPoint, MapRefKind, MapReloc, MapSpec, ObjectSpec, Pinning, ProgramSpec, ProgramType,
};
use userxdp_runtime::vm::asm;
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

/// Elements in every map (all present for the hit legs).
const ENTRIES: u32 = 1024;
/// Lookups per program run in the `jit` and `kernel` legs.
const LOOKUPS: u32 = 32;
/// Runs per `BPF_PROG_TEST_RUN` call.
const KERNEL_REPEAT: u32 = 1000;
/// Per-CPU slots (workers) of per-CPU maps.
const NCPUS: u32 = 2;

const TYPES: [(u32, &str); 4] = [
    (types::HASH, "hash"),
    (types::LRU_HASH, "lru_hash"),
    (types::ARRAY, "array"),
    (types::PERCPU_ARRAY, "percpu_array"),
];

fn spec(map_type: u32) -> MapSpec {
    MapSpec {
        name: "m".into(),
        map_type,
        key_size: 4,
        value_size: 8,
        max_entries: ENTRIES,
        flags: 0,
        inner: None,
        data: None,
        pinning: Pinning::None,
        global_data: false,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        spin_lock_offset: None,
        initial_slots: Vec::new(),
    }
}

fn is_array(map_type: u32) -> bool {
    matches!(map_type, types::ARRAY | types::PERCPU_ARRAY)
}

/// User value for `v` (per-CPU maps: every CPU's slot).
fn user_value(map_type: u32, v: u64, ncpus: u32) -> Vec<u8> {
    let n = if map_type == types::PERCPU_ARRAY {
        ncpus
    } else {
        1
    };
    (0..n).flat_map(|_| v.to_le_bytes()).collect()
}

fn fill(map: &dyn Map, map_type: u32) {
    for k in 0..ENTRIES {
        map.write(&k.to_le_bytes(), &user_value(map_type, k as u64, NCPUS), 0)
            .expect("fill");
    }
}

/// What one iteration does.
#[derive(Clone, Copy)]
enum Op {
    Hit,
    Miss,
    Update,
    DeleteInsert,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Hit => "lookup_hit",
            Op::Miss => "lookup_miss",
            Op::Update => "update",
            Op::DeleteInsert => "delete_insert",
        }
    }

    /// Runs the operation on key number `i`.
    #[inline]
    fn run(self, map: &dyn Map, i: u32, cpu: u32) {
        let k = i % ENTRIES;
        match self {
            Op::Hit => {
                std::hint::black_box(map.lookup(&k.to_le_bytes(), cpu));
            }
            Op::Miss => {
                std::hint::black_box(map.lookup(&(k + ENTRIES).to_le_bytes(), cpu));
            }
            Op::Update => {
                let _ = map.update(&k.to_le_bytes(), &(i as u64).to_le_bytes(), 0, cpu);
            }
            Op::DeleteInsert => {
                let _ = map.delete(&k.to_le_bytes());
                let _ = map.update(
                    &k.to_le_bytes(),
                    &(i as u64).to_le_bytes(),
                    flags::BPF_NOEXIST,
                    cpu,
                );
            }
        }
    }
}

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// The `Map` trait legs, on 1 and 2 threads.
fn bench_direct(group: &mut Group<'_>, map_type: u32, op: Op) {
    if is_array(map_type) && matches!(op, Op::DeleteInsert) {
        return; // arrays cannot delete
    }
    let map = maps::create(&spec(map_type), NCPUS).expect("create");
    fill(map.as_ref(), map_type);
    for threads in [1usize, 2] {
        let stop = Arc::new(AtomicBool::new(false));
        let helper = (threads == 2).then(|| {
            let (map, stop) = (map.clone(), stop.clone());
            std::thread::spawn(move || {
                pin_current_thread(1);
                let mut i = 7u32;
                let mut pin = epoch::pin();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        op.run(map.as_ref(), i >> 8, 1);
                    }
                    // A worker unpins between batches.
                    pin.repin();
                }
            })
        });
        group.bench_function(format!("{}/{threads}thread", op.name()), |b| {
            let mut i = 0u32;
            b.iter_custom(|iters| {
                let mut pin = epoch::pin();
                let start = Instant::now();
                for n in 0..iters {
                    i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    op.run(map.as_ref(), i >> 8, 0);
                    if n % 64 == 63 {
                        pin.repin();
                    }
                }
                start.elapsed()
            })
        });
        stop.store(true, Ordering::Relaxed);
        if let Some(h) = helper {
            h.join().expect("helper thread");
        }
    }
}

/// `hashbrown::HashMap<u32, u64>`: the single-threaded floor.
fn bench_hashbrown(group: &mut Group<'_>, op: Op) {
    let mut m: hashbrown::HashMap<u32, u64> = (0..ENTRIES).map(|k| (k, k as u64)).collect();
    group.bench_function(format!("{}/hashbrown", op.name()), |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let k = (i >> 8) % ENTRIES;
            match op {
                Op::Hit => {
                    std::hint::black_box(m.get(&k));
                }
                Op::Miss => {
                    std::hint::black_box(m.get(&(k + ENTRIES)));
                }
                Op::Update => {
                    m.insert(k, i as u64);
                }
                Op::DeleteInsert => {
                    m.remove(&k);
                    m.insert(k, i as u64);
                }
            }
        })
    });
}

/// `LOOKUPS` lookups of keys `first..first+LOOKUPS`, summing the values found; XDP_PASS.
/// Returns the instructions and the index of every map ld_imm64.
fn lookup_program(first: u32) -> (Vec<userxdp_runtime::vm::insn::Insn>, Vec<usize>) {
    let mut text = String::from("mov64 r6, 0\n");
    for i in 0..LOOKUPS {
        text.push_str(&format!(
            "stw [r10-4], {}\nlddw r1, 0\nmov64 r2, r10\nadd64 r2, -4\ncall 1\n\
             jeq r0, 0, +2\nldxdw r1, [r0+0]\nadd64 r6, r1\n",
            first + i * 7 % ENTRIES
        ));
    }
    text.push_str("mov64 r0, 2\nexit\n");
    let insns = asm::assemble(&text).expect("assemble");
    let lddw = insns
        .iter()
        .enumerate()
        .filter(|(_, i)| i.is_ld_imm64())
        .map(|(n, _)| n)
        .collect();
    (insns, lddw)
}

/// The packet every program run gets (XDP test runs want at least an Ethernet header).
fn packet() -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[12] = 0x08;
    p
}

/// Our JIT running the lookup program inside a batch, net of the empty program, per lookup.
fn bench_jit(group: &mut Group<'_>, map_type: u32, hit: bool) {
    let (insns, lddw) = lookup_program(if hit { 0 } else { ENTRIES });
    let program = ProgramSpec {
        name: "lookups".into(),
        section: "xdp".into(),
        prog_type: ProgramType::Xdp,
        attach: AttachPoint::Any,
        xdp_frags: false,
        insns,
        map_relocs: lddw
            .iter()
            .map(|&insn| MapReloc {
                insn,
                map: 0,
                kind: MapRefKind::Map,
            })
            .collect(),
        subprograms: Vec::new(),
    };
    let object = ObjectSpec {
        license: "GPL".into(),
        maps: vec![spec(map_type)],
        programs: vec![program],
    };
    // Our own hand-written program: nothing for the kernel verifier to add (the kernel leg
    // below verifies the same instructions).
    let vm = Vm::new(
        object,
        None,
        None,
        VmOptions {
            engine: Engine::Jit,
            safety: SafetyPolicy::None,
            ncpus: NCPUS,
            ..VmOptions::default()
        },
    )
    .expect("load");
    fill(vm.map("m").expect("map").as_ref(), map_type);
    let mut runner = vm.runner(0);
    let mut empty = empty_vm(Engine::Jit).expect("empty").runner(0);
    let mut frame = XdpFrame::new().expect("frame");
    frame.load(&packet()).expect("packet");
    let name = if hit {
        "lookup_hit/jit"
    } else {
        "lookup_miss/jit"
    };
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let runs = (iters / LOOKUPS as u64).max(1);
            // Batches of 64 runs, pinned once each, as a worker does.
            let batch = |r: &mut userxdp_runtime::vm::instance::Runner, frame: &mut XdpFrame| {
                let start = Instant::now();
                let mut left = runs;
                while left > 0 {
                    r.begin_batch();
                    for _ in 0..left.min(64) {
                        std::hint::black_box(r.run_xdp(frame).expect("run"));
                    }
                    r.end_batch();
                    left = left.saturating_sub(64);
                }
                start.elapsed().as_nanos() as f64
            };
            let base = batch(&mut empty, &mut frame);
            let net = batch(&mut runner, &mut frame) - base;
            let per_lookup = net.max(0.0) / (runs * LOOKUPS as u64) as f64;
            Duration::from_nanos((per_lookup * iters as f64) as u64)
        })
    });
}

/// The kernel: the same instructions against a kernel map, per lookup.
fn bench_kernel(group: &mut Group<'_>, map_type: u32, hit: bool) {
    let kernel_type = match map_type {
        types::HASH => MapType::Hash,
        types::LRU_HASH => MapType::LruHash,
        types::ARRAY => MapType::Array,
        _ => MapType::PercpuArray,
    };
    // SAFETY: plain data; zero means no options once `sz` is set.
    let mut opts: libbpf_rs::libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    let map = MapHandle::create(kernel_type, Some("m"), 4, 8, ENTRIES, &opts).expect("kernel map");
    let ncpus = kernel::possible_cpus() as usize;
    for k in 0..ENTRIES {
        let v = (k as u64).to_le_bytes();
        if map_type == types::PERCPU_ARRAY {
            map.update_percpu(&k.to_le_bytes(), &vec![v.to_vec(); ncpus], MapFlags::ANY)
        } else {
            map.update(&k.to_le_bytes(), &v, MapFlags::ANY)
        }
        .expect("kernel fill");
    }
    let (mut insns, lddw) = lookup_program(if hit { 0 } else { ENTRIES });
    let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&map));
    for i in lddw {
        insns[i].src = 1; // BPF_PSEUDO_MAP_FD
        insns[i].imm = fd;
    }
    let prog = RawProgram::load(&insns, ProgramType::Xdp).expect("kernel load");
    let empty = RawProgram::empty_xdp().expect("empty");
    let data = packet();
    let name = if hit {
        "lookup_hit/kernel"
    } else {
        "lookup_miss/kernel"
    };
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let calls = (iters / (KERNEL_REPEAT as u64 * LOOKUPS as u64)).max(1);
            let mut net = 0f64;
            for _ in 0..calls {
                let e = empty.test_run(&data, KERNEL_REPEAT).expect("empty run");
                let r = prog.test_run(&data, KERNEL_REPEAT).expect("run");
                net += r.duration_ns as f64 - e.duration_ns as f64;
            }
            let per_lookup = net.max(0.0) / calls as f64 / LOOKUPS as f64;
            Duration::from_nanos((per_lookup * iters as f64) as u64)
        })
    });
    drop(map);
}

fn bench_maps(c: &mut Criterion) {
    pin_current_thread(0);
    let kernel_ok = kernel::probe().is_ok();
    if let Err(e) = kernel::probe() {
        eprintln!("kernel legs skipped: {e}");
    }
    for (map_type, name) in TYPES {
        let mut group = c.benchmark_group(format!("maps/{name}"));
        group.throughput(criterion::Throughput::Elements(1));
        for op in [Op::Hit, Op::Miss, Op::Update, Op::DeleteInsert] {
            bench_direct(&mut group, map_type, op);
        }
        for hit in [true, false] {
            bench_jit(&mut group, map_type, hit);
            if kernel_ok {
                bench_kernel(&mut group, map_type, hit);
            }
        }
        group.finish();
    }
    let mut group = c.benchmark_group("maps/hashbrown");
    for op in [Op::Hit, Op::Miss, Op::Update, Op::DeleteInsert] {
        bench_hashbrown(&mut group, op);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_maps
}
criterion_main!(benches);
