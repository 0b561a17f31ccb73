//! The kernel module against the real kernel: raw test runs, verification of every object in
//! `programs/`, and the oracle. Every test skips (printing why) when this process cannot use
//! bpf().

use userxdp_runtime::context::XdpFrame;
use userxdp_runtime::kernel::{self, KernelError, Oracle, SkbContext};
use userxdp_runtime::object::spec::ProgramType;
use userxdp_runtime::vm::insn::Insn;
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// Every program of every object that must pass the verifier.
const PROGRAMS: &[(&str, &[&str])] = &[
    ("redirect", &["xdp_redirect_xsk"]),
    ("xdp_pass", &["xdp_pass"]),
    ("xdp_drop", &["xdp_drop"]),
    ("xdp_tx", &["xdp_tx"]),
    ("xdp_parse", &["xdp_parse"]),
    ("xdp_redirect_dev", &["xdp_redirect_dev"]),
    ("xdp_decap", &["xdp_decap"]),
    ("xdp_gen", &["xdp_gen"]),
    ("xdp_maps", &["xdp_flow_account"]),
    ("xdp_globals", &["xdp_globals"]),
    ("xdp_calls", &["xdp_calls_a", "xdp_calls_b"]),
    (
        "xdp_tailcall",
        &["xdp_tail_entry", "xdp_tail_parse", "xdp_tail_verdict"],
    ),
    ("xdp_adjust", &["xdp_adjust"]),
    ("xdp_atomics", &["xdp_atomics"]),
    ("tc_egress", &["tc_egress"]),
    ("xdp_csum", &["xdp_csum"]),
    ("xdp_bytes", &["xdp_bytes"]),
    ("xdp_tail_subprog", &["xdp_tail_subprog", "tail_target"]),
    ("xdp_spin_lock", &["xdp_spin_lock"]),
    ("xdp_for_each", &["xdp_for_each"]),
    ("tc_skb_helpers", &["tc_skb_helpers"]),
    ("lb", &["xdp_lb"]),
    // Multi-GB and pinned maps: only verifiable because verify() shrinks and unpins them.
    ("big_maps", &["big_maps"]),
    // Statically initialized prog arrays: verify() loads their targets with each program.
    (
        "cache",
        &[
            "cache_ingress",
            "cache_hash_keys",
            "cache_lookup",
            "cache_reply",
            "cache_invalidate",
            "cache_egress",
            "cache_fill",
        ],
    ),
    // The same source with a 64-entry table (for the differential tests).
    ("cache_small", &["cache_ingress", "cache_egress"]),
    ("xdp_lpm", &["xdp_lpm"]),
    ("xdp_queue", &["xdp_queue"]),
    ("xdp_ringbuf", &["xdp_ringbuf"]),
    ("xdp_map_in_map", &["xdp_map_in_map"]),
    ("xdp_devmap_hash", &["xdp_devmap_hash"]),
];

/// Returns true (after saying why) when the kernel cannot be used.
fn skip() -> bool {
    match kernel::probe() {
        Ok(()) => false,
        Err(e) => {
            eprintln!("skipping: {e}");
            true
        }
    }
}

fn object(name: &str) -> Vec<u8> {
    userxdp_programs::bytes(name).unwrap_or_else(|| panic!("{name}.o was not built"))
}

fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        op,
        dst,
        src,
        off,
        imm,
    }
}

/// One's-complement checksum over `b`.
fn csum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 (valid checksum) + UDP/TCP header + `payload` bytes of 0xab.
fn ipv4(proto: u8, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let l4_len = if proto == 6 { 20 } else { 8 };
    let mut p = vec![
        0x02, 0, 0, 0, 0, 0x02, // dst mac
        0x02, 0, 0, 0, 0, 0x01, // src mac
        0x08, 0x00,
    ];
    let total = (20 + l4_len + payload) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 17 {
        l4[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    } else {
        l4[12] = 0x50;
    }
    p.extend_from_slice(&l4);
    p.resize(p.len() + payload, 0xab);
    p
}

/// An ARP-ish frame: not IPv4, not IPv6.
fn arp() -> Vec<u8> {
    let mut p = vec![0xff; 6];
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    p.extend_from_slice(&[0u8; 28]);
    p
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

#[test]
fn raw_insns_run_and_leave_packet_alone() {
    if skip() {
        return;
    }
    let prog = [insn(0xb7, 0, 0, 0, 2), insn(0x95, 0, 0, 0, 0)];
    let data = ipv4(17, 1, 2, 10);
    let r = kernel::test_run_insns(&prog, ProgramType::Xdp, &data, 1).unwrap();
    assert_eq!(r.retval, 2);
    assert_eq!(r.data, data);

    // Repeat is honoured and a duration comes back.
    let r = kernel::test_run_insns(&prog, ProgramType::Xdp, &data, 100).unwrap();
    assert_eq!(r.retval, 2);
    assert!(Oracle::empty_program_duration(100).is_ok());
}

#[test]
fn raw_insns_rejected_with_summary() {
    if skip() {
        return;
    }
    // mov r0, r2 ; exit  -- r2 is never initialised.
    let prog = [insn(0xbf, 0, 2, 0, 0), insn(0x95, 0, 0, 0, 0)];
    match kernel::test_run_insns(&prog, ProgramType::Xdp, &[0u8; 64], 1) {
        Err(KernelError::Rejected {
            program,
            summary,
            log,
        }) => {
            assert_eq!(program, "insns");
            assert!(
                summary.contains("R2 !read_ok"),
                "summary: {summary}\nlog:\n{log}"
            );
            assert!(log.contains("processed"), "log: {log}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn every_object_verifies() {
    if skip() {
        return;
    }
    for (obj, progs) in PROGRAMS {
        assert!(
            userxdp_programs::NAMES.contains(obj)
                && !userxdp_programs::KERNEL_REJECTS.contains(obj),
            "{obj} table entry is stale"
        );
        let bytes = object(obj);
        for prog in *progs {
            if let Err(e) = kernel::verify(&bytes, prog, None) {
                if let Some(why) = e.missing_helper() {
                    // A limit of this kernel, not of the program (see `missing_helper`).
                    eprintln!("{obj}/{prog}: skipped: this kernel refuses it: {why}");
                    continue;
                }
                let log = match &e {
                    KernelError::Rejected { log, .. } => log.clone(),
                    _ => String::new(),
                };
                panic!("{obj}/{prog}: {e}\n{log}");
            }
        }
    }
    // Every built object is either in the table or expected to be rejected.
    for name in userxdp_programs::NAMES {
        assert!(
            PROGRAMS.iter().any(|(o, _)| o == name)
                || userxdp_programs::KERNEL_REJECTS.contains(name),
            "{name} is neither verified nor listed in KERNEL_REJECTS"
        );
    }
}

#[test]
fn verify_rejects_and_explains() {
    if skip() {
        return;
    }
    match kernel::verify(&object("bad_oob"), "bad_oob", None) {
        Err(KernelError::Rejected {
            program,
            summary,
            log,
        }) => {
            assert_eq!(program, "bad_oob");
            // The kernel's last word is its hint ("R1 offset is outside of the packet"); the
            // line before it names the access.
            assert!(summary.contains("packet"), "summary: {summary}");
            assert!(log.contains("invalid access to packet"), "log: {log}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // libbpf >= 1.0 refuses legacy `maps` sections before anything reaches the kernel.
    match kernel::verify(&object("xdp_legacy_maps"), "xdp_legacy", None) {
        Err(KernelError::Libbpf { detail, .. }) => {
            assert!(detail.contains("legacy map"), "detail: {detail}")
        }
        other => panic!("expected libbpf to refuse legacy maps, got {other:?}"),
    }
    assert!(matches!(
        kernel::verify(&object("xdp_pass"), "no_such_prog", None),
        Err(KernelError::NotFound {
            kind: "program",
            ..
        })
    ));
    // A TC program is not a valid XDP program: ctx field offsets differ.
    assert!(kernel::verify(&object("tc_egress"), "tc_egress", Some(ProgramType::Xdp)).is_err());
    // An XDP program that only returns a constant is a fine socket filter.
    kernel::verify(&object("xdp_pass"), "xdp_pass", Some(ProgramType::SchedCls)).unwrap();
}

#[test]
fn oracle_reports_rejected_program() {
    if skip() {
        return;
    }
    match Oracle::load(&object("bad_oob"), None) {
        Err(KernelError::Rejected { program, .. }) => assert_eq!(program, "bad_oob"),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn oracle_flow_accounting_maps() {
    if skip() {
        return;
    }
    let o = Oracle::load(&object("xdp_maps"), None).unwrap();
    let mut names = o.map_names();
    names.sort();
    assert_eq!(names, ["blocked", "config_map", "flow_stats", "flow_table"]);

    let pkt = ipv4(17, 1000, 53, 22);
    for _ in 0..3 {
        let r = o.test_run("xdp_flow_account", &pkt, 1).unwrap();
        assert_eq!(r.retval, XDP_PASS);
        assert_eq!(r.data, pkt);
    }
    let stats = o.map_dump("flow_stats").unwrap();
    assert_eq!(stats.len(), 1);
    let (key, value) = &stats[0];
    // struct flow_key: saddr, daddr, sport, dport, proto, pad[3]
    assert_eq!(key.len(), 16);
    assert_eq!(&key[0..4], &[198, 18, 0, 1]);
    assert_eq!(&key[8..10], &1000u16.to_be_bytes());
    assert_eq!(key[12], 17);
    assert_eq!(u64_at(value, 0), 3, "packets");
    assert_eq!(u64_at(value, 8), 3 * pkt.len() as u64, "bytes");

    let table = o.map_dump("flow_table").unwrap();
    assert_eq!(table.len(), 1);
    assert_eq!(
        u32_at(&table[0].1, 12),
        3,
        "hits, the first sighting included"
    );

    // Verdicts follow map content: a limit of 3 packets drops the 4th.
    let mut cfg = vec![0u8; 16];
    cfg[4..8].copy_from_slice(&3u32.to_ne_bytes());
    o.map_update("config_map", &0u32.to_ne_bytes(), &cfg, 0)
        .unwrap();
    assert_eq!(
        o.test_run("xdp_flow_account", &pkt, 1).unwrap().retval,
        XDP_DROP
    );
    // A blocked flow is dropped before accounting; unblocking restores it.
    let other = ipv4(6, 4000, 80, 0);
    o.map_update("blocked", &key_of(&other), &[1], 0).unwrap();
    assert_eq!(
        o.test_run("xdp_flow_account", &other, 1).unwrap().retval,
        XDP_DROP
    );
    o.map_delete("blocked", &key_of(&other)).unwrap();
    assert_eq!(
        o.test_run("xdp_flow_account", &other, 1).unwrap().retval,
        XDP_PASS
    );
    assert_eq!(o.map_dump("flow_stats").unwrap().len(), 2);

    // Wrong sizes are refused before reaching the kernel.
    assert!(matches!(
        o.map_update("blocked", &[0u8; 3], &[1], 0),
        Err(KernelError::SizeMismatch { what: "key", .. })
    ));
    assert!(matches!(
        o.map_dump("nope"),
        Err(KernelError::NotFound { kind: "map", .. })
    ));
}

/// The flow_key the program builds for an IPv4 frame from [`ipv4`].
fn key_of(pkt: &[u8]) -> Vec<u8> {
    let mut k = Vec::new();
    k.extend_from_slice(&pkt[26..34]); // saddr, daddr
    k.extend_from_slice(&pkt[34..38]); // sport, dport
    k.push(pkt[23]);
    k.extend_from_slice(&[0, 0, 0]);
    k
}

#[test]
fn oracle_tail_calls() {
    if skip() {
        return;
    }
    let o = Oracle::load(&object("xdp_tailcall"), None).unwrap();
    let trace = |o: &Oracle| {
        let v = o
            .map_lookup("tail_trace", &0u32.to_ne_bytes())
            .unwrap()
            .unwrap();
        o.map_update("tail_trace", &0u32.to_ne_bytes(), &0u32.to_ne_bytes(), 0)
            .unwrap();
        u32_at(&v, 0)
    };
    let pkt = ipv4(17, 1, 2, 0);
    // Empty slot 0: the tail call falls through.
    assert_eq!(
        o.test_run("xdp_tail_entry", &pkt, 1).unwrap().retval,
        XDP_ABORTED
    );
    assert_eq!(trace(&o), 1);

    o.set_tail_call("jmp_table", 0, "xdp_tail_parse").unwrap();
    o.set_tail_call("jmp_table", 1, "xdp_tail_verdict").unwrap();
    assert_eq!(o.map_dump("jmp_table").unwrap().len(), 2);

    let r = o.test_run("xdp_tail_entry", &pkt, 1).unwrap();
    assert_eq!(r.retval, XDP_TX);
    assert_eq!(
        &r.data[0..6],
        &pkt[6..12],
        "MACs swapped by the last program"
    );
    assert_eq!(trace(&o), 1 | 2 | 4);

    // Not IPv4: slot 2 is empty, parse falls through to XDP_PASS.
    assert_eq!(
        o.test_run("xdp_tail_entry", &arp(), 1).unwrap().retval,
        XDP_PASS
    );
    assert_eq!(trace(&o), 1 | 2 | 8);

    o.map_delete("jmp_table", &0u32.to_ne_bytes()).unwrap();
    assert_eq!(
        o.test_run("xdp_tail_entry", &pkt, 1).unwrap().retval,
        XDP_ABORTED
    );
}

#[test]
fn oracle_parser_reflects_and_counts() {
    if skip() {
        return;
    }
    let o = Oracle::load(&object("xdp_parse"), None).unwrap();
    let echo = ipv4(17, 5555, 7, 8);
    let r = o.test_run("xdp_parse", &echo, 1).unwrap();
    assert_eq!(r.retval, XDP_TX);
    assert_eq!(&r.data[0..6], &echo[6..12]);
    assert_eq!(&r.data[26..30], &echo[30..34], "addresses swapped");
    assert_eq!(&r.data[34..36], &7u16.to_be_bytes(), "ports swapped");
    assert_eq!(csum(&r.data[14..34]), 0, "IPv4 checksum still valid");

    assert_eq!(
        o.test_run("xdp_parse", &ipv4(6, 1, 9, 0), 1)
            .unwrap()
            .retval,
        XDP_DROP
    );
    assert_eq!(
        o.test_run("xdp_parse", &ipv4(6, 1, 80, 0), 1)
            .unwrap()
            .retval,
        XDP_PASS
    );
    assert_eq!(o.test_run("xdp_parse", &arp(), 1).unwrap().retval, XDP_PASS);

    // Two VLAN tags, then IPv6 UDP to port 7: reflected with addresses and ports swapped.
    let mut v6 = echo[..12].to_vec();
    v6.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x86, 0xdd]);
    let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    ip6.extend((0u8..16).map(|i| 0x20 + i)); // saddr
    ip6.extend((0u8..16).map(|i| 0x40 + i)); // daddr
    v6.extend_from_slice(&ip6);
    v6.extend_from_slice(&[0x15, 0xb3, 0x00, 0x07, 0x00, 0x08, 0x00, 0x00]);
    let r = o.test_run("xdp_parse", &v6, 1).unwrap();
    assert_eq!(r.retval, XDP_TX);
    let ip6_at = 14 + 8;
    assert_eq!(
        &r.data[ip6_at + 8..ip6_at + 24],
        &v6[ip6_at + 24..ip6_at + 40]
    );
    assert_eq!(&r.data[ip6_at + 40..ip6_at + 44], &[0x00, 0x07, 0x15, 0xb3]);

    // Per-CPU values: one 8-byte slot per possible CPU; the sum is what was counted.
    let dump = o.map_dump("proto_count").unwrap();
    assert_eq!(dump.len(), 9);
    let total = |slot: u32| -> u64 {
        let v = &dump[slot as usize].1;
        v.chunks(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .sum()
    };
    assert_eq!(total(1), 3, "ipv4");
    assert_eq!(total(3), 2, "tcp");
    assert_eq!(total(2), 1, "ipv6");
    assert_eq!(total(4), 2, "udp");
    assert_eq!(total(7), 2, "vlan tags");
    assert_eq!(total(0), 1, "other l2");
}

#[test]
fn oracle_runs_tc_programs() {
    if skip() {
        return;
    }
    let o = Oracle::load(&object("tc_egress"), None).unwrap();
    let ok = ipv4(17, 1, 53, 10);
    assert_eq!(o.test_run_skb("tc_egress", &ok).unwrap().retval, 0);
    assert_eq!(
        o.test_run_skb("tc_egress", &ipv4(17, 1, 9, 10))
            .unwrap()
            .retval,
        2
    );
    let marked = SkbContext {
        mark: 0xdead,
        priority: 0,
    };
    assert_eq!(
        o.test_run_skb_ctx("tc_egress", &ok, marked).unwrap().retval,
        2
    );
    let counters = o.map_dump("tc_counters").unwrap();
    assert_eq!(u64_at(&counters[0].1, 0), 3, "seen");
    assert_eq!(u64_at(&counters[6].1, 0), 2, "dropped");
}

#[test]
fn oracle_globals_and_adjust() {
    if skip() {
        return;
    }
    let o = Oracle::load(&object("xdp_globals"), None).unwrap();
    let pkt = ipv4(17, 1, 2, 0);
    let verdicts: Vec<u32> = (0..4)
        .map(|_| o.test_run("xdp_globals", &pkt, 1).unwrap().retval)
        .collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_PASS, XDP_TX]);
    let bss = o.map_dump(".bss").unwrap();
    assert_eq!(u64_at(&bss[0].1, 0), 4, "frames");
    let data = o.map_dump(".data").unwrap();
    assert_eq!(u64_at(&data[0].1, 8), 997, "budget");

    // XDP test runs return data_meta..data_end: the program's 8 metadata bytes come first.
    // Some kernels offer XDP programs no bpf_xdp_adjust_meta (the verifier says "program of
    // this type cannot use helper"); our engines then answer the same questions alone.
    match Oracle::load(&object("xdp_adjust"), None) {
        Ok(o) => check_adjust(|p| {
            let r = o.test_run("xdp_adjust", p, 1).unwrap();
            (r.retval, r.data)
        }),
        Err(e) => match e.missing_helper() {
            Some(why) => eprintln!("xdp_adjust: kernel leg skipped: this kernel refuses it: {why}"),
            None => panic!("xdp_adjust: {e}"),
        },
    }
    let bytes = object("xdp_adjust");
    let spec = userxdp_runtime::object::parse(&bytes).unwrap();
    for engine in [Engine::Interpreter, Engine::Jit] {
        let opts = VmOptions {
            engine,
            safety: SafetyPolicy::Guarded,
            ..VmOptions::default()
        };
        let vm = Vm::new(spec.clone(), Some(&bytes), Some("xdp_adjust"), opts).unwrap();
        let mut runner = vm.runner(0);
        let mut frame = XdpFrame::new().unwrap();
        check_adjust(|p| {
            frame.load(p).unwrap();
            let run = runner.run_xdp(&mut frame).unwrap();
            (run.retval as u32, frame.meta_and_packet().to_vec())
        });
    }
}

/// xdp_adjust's effects, through `run` (packet in; verdict and `data_meta..data_end` out):
/// metadata cookie 0xc0ffee42 and original length, a 4-byte shim pushed and popped, short
/// frames grown to 64 zero-filled bytes, long ones trimmed to 256.
fn check_adjust(mut run: impl FnMut(&[u8]) -> (u32, Vec<u8>)) {
    let ip = ipv4(17, 1, 2, 30);
    let (verdict, data) = run(&ip);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(u32_at(&data, 0), 0xc0ffee42, "metadata cookie");
    assert_eq!(u32_at(&data, 4), ip.len() as u32, "metadata length");
    let frame = &data[8..];
    assert_eq!(frame.len(), ip.len() + 4, "shim pushed");
    assert_eq!(&frame[12..14], &[0x88, 0xb5]);
    let (verdict, back) = run(frame);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(&back[8..], &ip[..], "shim popped");
    let (_, short) = run(&arp());
    assert_eq!(short.len(), 8 + 64, "grown to 64");
    assert!(
        short[8 + arp().len()..].iter().all(|&b| b == 0),
        "zero-filled tail"
    );
    let (_, long) = run(&ipv4(17, 1, 2, 400));
    assert_eq!(long.len(), 8 + 256, "trimmed to 256");
}

#[test]
fn oracle_runs_the_rest() {
    if skip() {
        return;
    }
    let pkt = ipv4(17, 1, 2, 10);
    let o = Oracle::load(&object("xdp_calls"), None).unwrap();
    let a = o.test_run("xdp_calls_a", &pkt, 1).unwrap().retval;
    assert!(a == XDP_PASS || a == XDP_DROP);
    assert_eq!(o.test_run("xdp_calls_b", &pkt, 1).unwrap().retval, XDP_TX);
    assert_eq!(
        o.test_run("xdp_calls_b", &arp(), 1).unwrap().retval,
        XDP_PASS
    );

    let o = Oracle::load(&object("xdp_csum"), None).unwrap();
    let r = o.test_run("xdp_csum", &pkt, 1).unwrap();
    assert_eq!(r.retval, XDP_TX);
    assert_eq!(r.data[22], 63, "ttl decremented");
    assert_eq!(csum(&r.data[14..34]), 0, "checksum recomputed");
    let mut bad = pkt.clone();
    bad[24] ^= 1;
    assert_eq!(o.test_run("xdp_csum", &bad, 1).unwrap().retval, XDP_DROP);

    let o = Oracle::load(&object("xdp_atomics"), None).unwrap();
    assert_eq!(o.test_run("xdp_atomics", &pkt, 1).unwrap().retval, XDP_PASS);
    assert_eq!(
        o.test_run("xdp_atomics", &arp(), 1).unwrap().retval,
        XDP_DROP
    );
    let c = o.map_dump("atomic_counters").unwrap();
    assert_eq!(
        u64_at(&c[0].1, 0),
        (pkt.len() + arp().len()) as u64,
        "add64"
    );
    let r = o.map_dump("atomic_results").unwrap();
    assert_eq!(
        u64_at(&r[0].1, 0),
        pkt.len() as u64,
        "fetch_add64 returned the old value"
    );

    let o = Oracle::load(&object("redirect"), None).unwrap();
    // No socket in the XSKMAP: the flags' lower bits (XDP_PASS) are the verdict.
    assert_eq!(
        o.test_run("xdp_redirect_xsk", &pkt, 1).unwrap().retval,
        XDP_PASS
    );
}
