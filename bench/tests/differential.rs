//! Differential tests: the kernel is the oracle.
//!
//! Every XDP program of every object in `programs/` and of Debian's xdp-tools runs over the
//! same 10,000 packets (crafted + random) in our interpreter, our JIT (kernel-verified) and the
//! kernel (`BPF_PROG_TEST_RUN`). Verdicts, return values and output bytes must agree packet by
//! packet, and every map's contents must agree at the end. Objects the kernel refuses must be
//! refused by us too, for the same reason.
//!
//! Needs root; without it each test prints why it skips.

use std::path::{Path, PathBuf};

use userxdp_bench::{packets, pin_current_thread};
use userxdp_runtime::context::XdpFrame;
use userxdp_runtime::kernel::{self, KernelError, Oracle};
use userxdp_runtime::maps::dump::{self, MapDump};
use userxdp_runtime::object::{self, spec::ProgramType};
use userxdp_runtime::skb::{SkbFrame, SkbInput};
use userxdp_runtime::vm::instance::{Engine, LoadError, Runner, SafetyPolicy, Vm, VmOptions};

const PACKETS: usize = 10_000;
/// Map types whose elements the kernel will not return through the bpf() syscall
/// (XSKMAP: EOPNOTSUPP; PERF_EVENT_ARRAY and RINGBUF: ENOTSUPP; QUEUE and STACK have no keys
/// to walk: EINVAL), so there is nothing to compare. Programs using them record what they
/// saw in ordinary maps, which are compared.
const NOT_DUMPABLE: [u32; 5] = [17, 4, 27, 22, 23];
const XDP_TOOLS_DIR: &str = "/usr/lib/x86_64-linux-gnu/bpf";

fn kernel_or_skip() -> bool {
    match kernel::probe() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping differential test: {e}");
            false
        }
    }
}

/// Value bytes that legitimately differ between engines: (object, map, byte range). Only
/// wall-clock timestamps belong here.
const TIME_FIELDS: &[(&str, &str, std::ops::Range<usize>)] = &[
    // csum_stats.last_ns = bpf_ktime_get_ns() of the last frame.
    ("xdp_csum", "csum_stats", 24..32),
    // conn_val.atime = bpf_ktime_get_ns() of the flow's last UDP packet.
    ("lb", "lru_conns", 8..16),
];

/// Maps that only the setup writes and the program only reads, too big to compare cheaply:
/// (object, map). lb's `ch_rings` has 16 x 65537 entries; dumping it from three engines takes
/// tens of seconds and checks nothing but the setup.
const SETUP_ONLY_MAPS: &[(&str, &str)] = &[("lb", "ch_rings")];

/// Zeroes the value bytes listed in [`TIME_FIELDS`] for this object and map.
fn mask_time(object: &str, map: &str, mut d: MapDump) -> MapDump {
    if d.map_type == "prog_array" {
        // Values are program ids, global to the kernel: compare which slots are filled.
        for e in &mut d.entries {
            e.value.clear();
        }
    }
    for (o, m, range) in TIME_FIELDS {
        if *o == object && *m == map {
            for e in &mut d.entries {
                let hex = (range.start * 2)..(range.end * 2).min(e.value.len());
                e.value.replace_range(hex.clone(), &"0".repeat(hex.len()));
            }
        }
    }
    d
}

/// Program-array slots an object needs before it runs: (map, index, program).
fn tail_calls(object: &str) -> &'static [(&'static str, u32, &'static str)] {
    match object {
        "xdp_tailcall" => &[
            ("jmp_table", 0, "xdp_tail_parse"),
            ("jmp_table", 1, "xdp_tail_verdict"),
        ],
        "xdp_tail_subprog" => &[("tail_jmp", 0, "tail_target")],
        _ => &[],
    }
}

/// Map entries an object needs before it runs, derived from the corpus it will see:
/// (map, key, value).
fn map_setup(object: &str, corpus: &[Vec<u8>]) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    match object {
        "lb" => lb_setup(corpus),
        _ => Vec::new(),
    }
}

/// `lb`: port-agnostic VIPs (layouts in `userxdp_datapath::lb`) on the destinations of the
/// first 16 TCP/UDP frames of the corpus, whose addresses are random, so that some traffic is
/// balanced. Rings alternate over two IPv4 reals and one IPv6 real (IPIP, IP6IP6, 4in6, 6in4);
/// every fourth VIP has an empty ring (XDP_DROP); odd VIPs hash without the source port.
fn lb_setup(corpus: &[Vec<u8>]) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    const RING: u32 = 65537;
    let mut out = Vec::new();
    let mut vips: Vec<([u8; 16], u8)> = Vec::new();
    for p in corpus {
        let (dst, proto) = match (p.get(12..14), p.len()) {
            (Some([0x08, 0x00]), 38..) => {
                let mut a = [0u8; 16];
                a[10] = 0xff;
                a[11] = 0xff;
                a[12..].copy_from_slice(&p[30..34]);
                (a, p[23])
            }
            (Some([0x86, 0xdd]), 58..) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&p[38..54]);
                (a, p[20])
            }
            _ => continue,
        };
        if matches!(proto, 6 | 17) && !vips.contains(&(dst, proto)) && vips.len() < 16 {
            vips.push((dst, proto));
        }
    }
    let real = |addr: &[u8], v6: bool| {
        let mut v = vec![0u8; 20];
        v[..addr.len()].copy_from_slice(addr);
        v[16..].copy_from_slice(&u32::from(v6).to_ne_bytes());
        v
    };
    out.push((
        "reals",
        1u32.to_ne_bytes().to_vec(),
        real(&[198, 18, 200, 1], false),
    ));
    out.push((
        "reals",
        2u32.to_ne_bytes().to_vec(),
        real(&[198, 18, 200, 2], false),
    ));
    let v6 = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    out.push(("reals", 3u32.to_ne_bytes().to_vec(), real(&v6, true)));
    let mut cfg = vec![0x02, 0, 0, 0, 0, 0xee, 0, 0, 198, 19, 0, 0];
    cfg.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff]);
    cfg.resize(28, 0);
    out.push(("lb_config", 0u32.to_ne_bytes().to_vec(), cfg));
    for (n, (addr, proto)) in vips.iter().enumerate() {
        let n = n as u32;
        if n % 4 != 3 {
            for slot in 0..RING {
                let real = 1 + (slot + n) % 3;
                out.push((
                    "ch_rings",
                    (n * RING + slot).to_ne_bytes().to_vec(),
                    real.to_ne_bytes().to_vec(),
                ));
            }
        }
        let mut key = addr.to_vec();
        key.extend_from_slice(&[0, 0, *proto, 0]);
        let mut meta = n.to_ne_bytes().to_vec();
        meta.extend_from_slice(&(n % 2).to_ne_bytes());
        out.push(("vip_map", key, meta));
    }
    out
}

struct Engines {
    interp: Runner,
    jit: Runner,
    oracle: Oracle,
}

/// Every dumpable map of `vm` (of object `object`) but its [`SETUP_ONLY_MAPS`].
fn dumps_of(object: &str, vm: &Vm) -> Vec<(String, MapDump)> {
    vm.maps()
        .filter(|(_, m)| !NOT_DUMPABLE.contains(&m.spec().map_type))
        .filter(|(n, _)| !SETUP_ONLY_MAPS.contains(&(object, *n)))
        .map(|(n, m)| (n.to_string(), dump::dump(m.as_ref()).expect("dump")))
        .collect()
}

/// Runs `program` of `path` over the corpus in every engine and asserts agreement. Returns the
/// packets compared, or `None` when this kernel cannot run the program at all (it offers no
/// helper the program calls: [`KernelError::missing_helper`]) and we refuse it too.
fn differential(name: &str, path: &Path, program: &str) -> Result<Option<usize>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = object::parse(&bytes).map_err(|e| format!("{name}: parse: {e}"))?;
    let ncpus = kernel::possible_cpus();
    let opts = |engine| VmOptions {
        engine,
        safety: SafetyPolicy::Kernel,
        ncpus,
        ..VmOptions::default()
    };
    let oracle = match Oracle::load(&bytes, None) {
        Ok(o) => o,
        Err(kernel_err) => {
            // The kernel refuses the object: so must we, through the kernel verifier policy.
            let ours = Vm::new(spec, Some(&bytes), Some(program), opts(Engine::Jit));
            return match ours {
                Err(LoadError::Kernel(_)) if kernel_err.missing_helper().is_some() => {
                    eprintln!(
                        "{name}:{program}: kernel comparison skipped: this kernel refuses it \
                         ({kernel_err}), and so do we under the kernel policy"
                    );
                    Ok(None)
                }
                Err(LoadError::Kernel(_)) => Err(format!(
                    "kernel rejects {name} ({kernel_err}); we reject it too"
                )),
                Err(e) => Err(format!(
                    "kernel rejects {name} ({kernel_err}); we reject it differently: {e}"
                )),
                Ok(_) => panic!("{name}: the kernel rejects it ({kernel_err}) but we accepted it"),
            };
        }
    };
    let vm_i = Vm::new(
        spec.clone(),
        Some(&bytes),
        Some(program),
        opts(Engine::Interpreter),
    )
    .map_err(|e| format!("{name}:{program}: interpreter load: {e}"))?;
    let vm_j = Vm::new(spec.clone(), Some(&bytes), Some(program), opts(Engine::Jit))
        .map_err(|e| format!("{name}:{program}: jit load: {e}"))?;
    let corpus = packets::corpus(0xd1ff ^ name.len() as u64, PACKETS);
    for (map, key, value) in map_setup(name, &corpus) {
        oracle
            .map_update(map, &key, &value, 0)
            .expect("kernel map setup");
        for vm in [&vm_i, &vm_j] {
            vm.map(map)
                .expect("map in object")
                .write(&key, &value, 0)
                .expect("map setup");
        }
    }
    for (map, index, target) in tail_calls(name) {
        oracle
            .set_tail_call(map, *index, target)
            .expect("kernel tail call slot");
        vm_i.set_tail_call(map, *index, target)
            .expect("interp tail call slot");
        vm_j.set_tail_call(map, *index, target)
            .expect("jit tail call slot");
    }
    let mut e = Engines {
        interp: vm_i.runner(0),
        jit: vm_j.runner(0),
        oracle,
    };
    let mut frame = XdpFrame::new().expect("frame");
    let mut skb = SkbFrame::new().expect("skb frame");
    let is_tc = spec
        .program(program)
        .is_some_and(|p| p.prog_type.uses_skb());
    let mut mismatches = Vec::new();
    let mut refused = 0usize;
    for (i, p) in corpus.iter().enumerate() {
        if is_tc {
            // The kernel's skb test run refuses some inputs (e.g. an IPv6 ethertype with a
            // truncated header: EINVAL) before the program runs; those say nothing about
            // the program, so they are counted and skipped.
            let k = match e.oracle.test_run_skb(program, p) {
                Ok(k) => k,
                Err(KernelError::Syscall { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) =>
                {
                    refused += 1;
                    continue;
                }
                Err(err) => return Err(format!("{name}: kernel run {i}: {err}")),
            };
            let mut ours = Vec::new();
            for runner in [&mut e.interp, &mut e.jit] {
                skb.load(p, SkbInput::default()).expect("load");
                let r = runner
                    .run_skb(&mut skb)
                    .map_err(|err| format!("{name}: packet {i}: {err}"))?;
                ours.push((r as u32, skb.packet().to_vec()));
            }
            if ours.iter().any(|(r, d)| *r != k.retval || *d != k.data) {
                mismatches.push(format!(
                    "packet {i}: kernel retval {} len {}, ours (interp, jit) {:?}",
                    k.retval,
                    k.data.len(),
                    ours.iter().map(|o| (o.0, o.1.len())).collect::<Vec<_>>()
                ));
            }
            continue;
        }
        let k = e
            .oracle
            .test_run(program, p, 1)
            .map_err(|err| format!("{name}: kernel run {i}: {err}"))?;
        frame.load(p).expect("load");
        let ri = e
            .interp
            .run_xdp(&mut frame)
            .map_err(|err| format!("{name}: packet {i}: interpreter: {err}"))?;
        let di = frame.meta_and_packet().to_vec();
        frame.load(p).expect("load");
        let rj = e
            .jit
            .run_xdp(&mut frame)
            .map_err(|err| format!("{name}: packet {i}: jit: {err}"))?;
        let dj = frame.meta_and_packet().to_vec();
        let kr = k.retval as u64;
        if ri.retval as u32 as u64 != kr
            || rj.retval as u32 as u64 != kr
            || di != k.data
            || dj != k.data
        {
            mismatches.push(format!(
                "packet {i} ({} bytes): kernel retval {kr} len {}, interp {} len {}, jit {} len {}; first bytes {:02x?}",
                p.len(),
                k.data.len(),
                ri.retval,
                di.len(),
                rj.retval,
                dj.len(),
                &p[..p.len().min(48)]
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name}:{program}: {} of {} packets disagree; first: \n{}",
        mismatches.len(),
        corpus.len(),
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        refused * 20 < corpus.len(),
        "{name}: the kernel refused {refused} of {} inputs",
        corpus.len()
    );
    e.interp.quiesce();
    e.jit.quiesce();
    let (di, dj) = (dumps_of(name, &vm_i), dumps_of(name, &vm_j));
    for ((mname, mi), (_, mj)) in di.iter().zip(&dj) {
        let spec_map = spec.map(mname).expect("map in spec");
        if NOT_DUMPABLE.contains(&spec_map.map_type) {
            continue;
        }
        let kernel_entries = e
            .oracle
            .map_dump(mname)
            .map_err(|err| format!("{name}: dump {mname}: {err}"))?;
        let mk = MapDump::from_entries(
            spec_map.map_type,
            spec_map.key_size,
            spec_map.value_size,
            spec_map.max_entries,
            kernel_entries,
        );
        let mk = mask_time(name, mname, mk);
        let (mi, mj) = (
            mask_time(name, mname, mi.clone()),
            mask_time(name, mname, mj.clone()),
        );
        assert_eq!(
            mi, mk,
            "{name}: map {mname}: interpreter and kernel contents differ"
        );
        assert_eq!(
            mj, mk,
            "{name}: map {mname}: jit and kernel contents differ"
        );
    }
    Ok(Some(corpus.len()))
}

fn xdp_programs(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    match object::parse(&bytes) {
        Ok(spec) => spec
            .programs
            .iter()
            .filter(|p| p.prog_type == ProgramType::Xdp || p.prog_type.uses_skb())
            .map(|p| p.name.clone())
            .collect(),
        Err(e) => panic!("{}: our loader fails: {e}", path.display()),
    }
}

/// Objects whose code is checked here under another name, because their own maps make the
/// end-of-run dumps too slow: `cache` (a 65536-entry, 106 MB table: ~70 s per program) is
/// `cache_small` (the same source with 64 entries). `bench/tests/cache.rs` runs the full-size
/// `cache` in the kernel, the interpreter and the JIT.
const SLOW_DUPLICATES: &[&str] = &["cache"];

#[test]
fn project_programs_agree_with_the_kernel() {
    if !kernel_or_skip() {
        return;
    }
    assert!(pin_current_thread(0), "cannot pin to CPU 0");
    let mut checked = 0;
    // USERXDP_DIFF_ONLY=a,b limits the run to those objects (for iterating on one program).
    let only = std::env::var("USERXDP_DIFF_ONLY").ok();
    let only: Option<Vec<&str>> = only.as_deref().map(|s| s.split(',').collect());
    for name in userxdp_programs::NAMES {
        if userxdp_programs::KERNEL_REJECTS.contains(name)
            || userxdp_programs::HUGE_MAPS.contains(name)
            || SLOW_DUPLICATES.contains(name)
            || only.as_ref().is_some_and(|o| !o.contains(name))
        {
            continue;
        }
        let path = userxdp_programs::path(name).expect("built");
        for program in xdp_programs(&path) {
            match differential(name, &path, &program) {
                Ok(Some(n)) => {
                    eprintln!("{name}:{program}: {n} packets agree in interpreter, JIT and kernel");
                    checked += 1;
                }
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(
        checked >= 8 || only.is_some(),
        "only {checked} programs checked"
    );
}

#[test]
fn kernel_rejected_programs_are_rejected_with_the_reason() {
    if !kernel_or_skip() {
        return;
    }
    let path = userxdp_programs::path("bad_oob").expect("bad_oob built");
    let bytes = std::fs::read(&path).unwrap();
    let spec = object::parse(&bytes).unwrap();
    let err =
        Vm::new(spec, Some(&bytes), None, VmOptions::default()).expect_err("must be rejected");
    match err {
        LoadError::Kernel(KernelError::Rejected { summary, log, .. }) => {
            assert!(!summary.is_empty() && !log.is_empty());
            eprintln!("bad_oob rejected: {summary}");
        }
        other => panic!("bad_oob: expected a verifier rejection, got {other}"),
    }
}

#[test]
fn xdp_tools_objects_agree_with_the_kernel() {
    if !kernel_or_skip() {
        return;
    }
    assert!(pin_current_thread(0), "cannot pin to CPU 0");
    let Ok(dir) = std::fs::read_dir(XDP_TOOLS_DIR) else {
        eprintln!("skipping: {XDP_TOOLS_DIR} missing (install xdp-tools: scripts/setup.sh does)");
        return;
    };
    let mut paths: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "o"))
        .collect();
    paths.sort();
    let mut agreed = 0;
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        for program in xdp_programs(path) {
            match differential(&name, path, &program) {
                Ok(Some(n)) => {
                    eprintln!("{name}:{program}: {n} packets agree");
                    agreed += 1;
                }
                Ok(None) => {}
                Err(reason) => failures.push(format!("{name}:{program}: {reason}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements:\n{}",
        failures.join("\n")
    );
    assert!(agreed > 0, "no xdp-tools program could be compared");
}
