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
/// (XSKMAP: EOPNOTSUPP; PERF_EVENT_ARRAY: ENOTSUPP), so there is nothing to compare.
const NOT_DUMPABLE: [u32; 2] = [17, 4];
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
];

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

struct Engines {
    interp: Runner,
    jit: Runner,
    oracle: Oracle,
}

fn dumps_of(vm: &Vm) -> Vec<(String, MapDump)> {
    vm.maps()
        .map(|(n, m)| (n.to_string(), dump::dump(m.as_ref()).expect("dump")))
        .collect()
}

/// Runs `program` of `path` over the corpus in every engine and asserts agreement.
fn differential(name: &str, path: &Path, program: &str) -> Result<usize, String> {
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
    let corpus = packets::corpus(0xd1ff ^ name.len() as u64, PACKETS);
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
    let (di, dj) = (dumps_of(&vm_i), dumps_of(&vm_j));
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
    Ok(corpus.len())
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

#[test]
fn project_programs_agree_with_the_kernel() {
    if !kernel_or_skip() {
        return;
    }
    assert!(pin_current_thread(0), "cannot pin to CPU 0");
    let mut checked = 0;
    for name in userxdp_programs::NAMES {
        if userxdp_programs::KERNEL_REJECTS.contains(name)
            || userxdp_programs::HUGE_MAPS.contains(name)
        {
            continue;
        }
        let path = userxdp_programs::path(name).expect("built");
        for program in xdp_programs(&path) {
            match differential(name, &path, &program) {
                Ok(n) => {
                    eprintln!("{name}:{program}: {n} packets agree in interpreter, JIT and kernel");
                    checked += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(checked >= 8, "only {checked} programs checked");
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
    for path in &paths {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        for program in xdp_programs(path) {
            match differential(&name, path, &program) {
                Ok(n) => {
                    eprintln!("{name}:{program}: {n} packets agree");
                    agreed += 1;
                }
                Err(reason) => eprintln!("{name}:{program}: {reason}"),
            }
        }
    }
    assert!(agreed > 0, "no xdp-tools program could be compared");
}
