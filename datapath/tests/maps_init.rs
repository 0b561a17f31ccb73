//! `userxdp run --maps-init`: dump → init → dump round-trips in every engine (kernel included
//! as root), initial map state that changes verdicts, and clear errors for bad files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use userxdp_datapath::capture::PcapOut;

fn userxdp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_userxdp"))
        .args(args)
        .output()
        .expect("spawn userxdp")
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("userxdp-init-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn obj(name: &str) -> String {
    userxdp_programs::path(name)
        .expect("program built")
        .display()
        .to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Two UDP/IPv4 flows and an ARP frame.
fn write_capture(path: &Path) {
    let udp = |sport: u8| -> Vec<u8> {
        [
            &[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00][..],
            &[
                0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
            ],
            &[0x30, sport, 0, 53, 0, 12, 0, 0, b'p', b'i', b'n', b'g'],
        ]
        .concat()
    };
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let mut out = PcapOut::create(path).unwrap();
    for (i, f) in [udp(1), udp(2), udp(1), arp].iter().enumerate() {
        out.write(Duration::from_micros(i as u64), f).unwrap();
    }
}

fn write_empty_capture(path: &Path) {
    PcapOut::create(path).unwrap().finish().unwrap();
}

fn engines() -> Vec<&'static str> {
    let mut e = vec!["interp", "jit"];
    match userxdp_runtime::kernel::probe() {
        Ok(()) => e.push("kernel"),
        Err(err) => eprintln!("skipping the kernel engine: {err}"),
    }
    e
}

/// Runs `userxdp run` and returns (stdout, the dump written to a file).
fn run(prog: &str, pcap: &Path, engine: &str, init: Option<&Path>, dump: &Path) -> String {
    let mut args = vec![
        "run",
        "--prog",
        prog,
        "--pcap",
        p(pcap),
        "--engine",
        engine,
        "--dump-maps-to",
        p(dump),
    ];
    if let Some(i) = init {
        args.extend(["--maps-init", p(i)]);
    }
    let o = userxdp(&args);
    assert!(
        o.status.success(),
        "{prog} {engine}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Verdict lines (`frame N: VERDICT (retval R) ...`) of a run's output.
fn verdicts(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("frame "))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

#[test]
fn dump_init_dump_round_trips_in_every_engine() {
    let dir = tempdir("roundtrip");
    let pcap = dir.join("in.pcap");
    let empty = dir.join("empty.pcap");
    write_capture(&pcap);
    write_empty_capture(&empty);
    // The tail-call object needs its PROG_ARRAY filled to do anything: by name.
    let slots = dir.join("slots.json");
    std::fs::write(
        &slots,
        json!({"jmp_table": {"entries": [
            {"key": "00000000", "value": "xdp_tail_parse"},
            {"key": "01000000", "value": "xdp_tail_verdict"},
        ]}})
        .to_string(),
    )
    .unwrap();
    for object in ["xdp_maps", "xdp_globals", "xdp_tailcall", "xdp_atomics"] {
        let prog = obj(object);
        let init = (object == "xdp_tailcall").then_some(slots.as_path());
        let mut first: Option<(String, Value)> = None;
        for engine in engines() {
            let d1 = dir.join(format!("{object}-{engine}-1.json"));
            let d2 = dir.join(format!("{object}-{engine}-2.json"));
            run(&prog, &pcap, engine, init, &d1);
            // Fed back before any frame, the dump must come out unchanged.
            run(&prog, &empty, engine, Some(&d1), &d2);
            let (a, b) = (read_json(&d1), read_json(&d2));
            assert_eq!(a, b, "{object} {engine}: dump -> init -> dump differs");
            assert!(
                a.as_object().is_some_and(|m| !m.is_empty()),
                "{object}: no maps dumped"
            );
            // Every engine dumps the same state (PROG_ARRAY slots as program names).
            match &first {
                None => first = Some((engine.to_string(), a)),
                Some((e0, v0)) => assert_eq!(&a, v0, "{object}: {engine} and {e0} differ"),
            }
        }
        // And a dump from one engine initialises every other one.
        let (e0, v0) = first.expect("an engine ran");
        let d1 = dir.join(format!("{object}-{e0}-1.json"));
        for engine in engines() {
            let d3 = dir.join(format!("{object}-{engine}-cross.json"));
            run(&prog, &empty, engine, Some(&d1), &d3);
            assert_eq!(read_json(&d3), v0, "{object}: {e0} dump into {engine}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn initial_state_decides_verdicts() {
    let dir = tempdir("verdicts");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap);
    let dump = dir.join("dump.json");
    // xdp_maps: config.default_verdict = XDP_DROP; header fields may be left out.
    let drop_all = dir.join("drop.json");
    std::fs::write(
        &drop_all,
        json!({"config_map": {"entries": [
            {"key": "00000000", "value": "01000000000000000000000000000000"}
        ]}})
        .to_string(),
    )
    .unwrap();
    // xdp_tailcall: slots by program name.
    let slots = dir.join("slots.json");
    std::fs::write(
        &slots,
        json!({"jmp_table": {"type": "prog_array", "key_size": 4, "value_size": 4,
            "max_entries": 4, "entries": [
            {"key": "00000000", "value": "xdp_tail_parse"},
            {"key": "01000000", "value": "xdp_tail_verdict"},
        ]}})
        .to_string(),
    )
    .unwrap();
    for engine in engines() {
        let out = run(&obj("xdp_maps"), &pcap, engine, None, &dump);
        assert_eq!(verdicts(&out), ["XDP_PASS"; 4], "{engine}: {out}");
        let out = run(&obj("xdp_maps"), &pcap, engine, Some(&drop_all), &dump);
        assert_eq!(verdicts(&out), ["XDP_DROP"; 4], "{engine}: {out}");

        let out = run(&obj("xdp_tailcall"), &pcap, engine, None, &dump);
        assert_eq!(verdicts(&out), ["XDP_ABORTED"; 4], "{engine}: {out}");
        let out = run(&obj("xdp_tailcall"), &pcap, engine, Some(&slots), &dump);
        assert_eq!(
            verdicts(&out),
            ["XDP_TX", "XDP_TX", "XDP_TX", "XDP_PASS"],
            "{engine}: {out}"
        );
        let d = read_json(&dump);
        assert_eq!(
            d["jmp_table"]["entries"],
            json!([
                {"key": "00000000", "value": "xdp_tail_parse"},
                {"key": "01000000", "value": "xdp_tail_verdict"},
            ]),
            "{engine}"
        );
        // entry, parse, verdict ran (IPv4), and parse fell through on the empty slot (ARP):
        // 1 | 2 | 4 | 8.
        assert_eq!(
            d["tail_trace"]["entries"][0]["value"], "0f000000",
            "{engine}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_files_fail_with_one_clear_line_in_every_engine() {
    let dir = tempdir("errors");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap);
    let key = |i: u32| {
        // flow_key: 16 bytes
        let mut k = i.to_le_bytes().to_vec();
        k.resize(16, 0);
        k.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let too_many: Vec<Value> = (0..65)
        .map(|i| json!({"key": key(i), "value": "01"}))
        .collect();
    let cases: Vec<(&str, &str, String, Vec<&str>)> = vec![
        (
            "malformed",
            "xdp_maps",
            "{\"config_map\": {\"entries\": [".into(),
            vec!["malformed JSON", "line 1"],
        ),
        (
            "not_a_dump",
            "xdp_maps",
            json!({"config_map": {"entrys": []}}).to_string(),
            vec!["malformed JSON", "entrys"],
        ),
        (
            "unknown_map",
            "xdp_maps",
            json!({"no_such": {"entries": []}}).to_string(),
            vec!["no map named \"no_such\"", "config_map"],
        ),
        (
            "key_size",
            "xdp_maps",
            json!({"blocked": {"entries": [{"key": "0102", "value": "01"}]}}).to_string(),
            vec!["map blocked", "entry 0", "key has 2 bytes, expected 16"],
        ),
        (
            "value_size",
            "xdp_maps",
            json!({"config_map": {"entries": [{"key": "00000000", "value": "01"}]}}).to_string(),
            vec![
                "map config_map",
                "entry 0",
                "value has 1 bytes, expected 16",
            ],
        ),
        (
            "header_mismatch",
            "xdp_maps",
            json!({"blocked": {"type": "hash", "value_size": 4, "entries": []}}).to_string(),
            vec![
                "map blocked",
                "value_size is 4 in the file but 1 in the object",
            ],
        ),
        (
            "too_many",
            "xdp_maps",
            json!({"blocked": {"entries": too_many}}).to_string(),
            vec!["map blocked", "65 entries", "max_entries is 64"],
        ),
        (
            "index_out_of_range",
            "xdp_maps",
            json!({"config_map": {"entries": [
                {"key": "01000000", "value": "00000000000000000000000000000000"}
            ]}})
            .to_string(),
            vec!["map config_map", "index 1 is out of range"],
        ),
        (
            "not_hex",
            "xdp_maps",
            json!({"blocked": {"entries": [{"key": key(1), "value": "xy"}]}}).to_string(),
            vec!["map blocked", "value \"xy\" is not hex"],
        ),
        (
            "duplicate",
            "xdp_maps",
            json!({"blocked": {"entries": [
                {"key": key(1), "value": "01"}, {"key": key(1), "value": "02"}
            ]}})
            .to_string(),
            vec!["map blocked", "entry 1", "more than once"],
        ),
        (
            "unknown_program",
            "xdp_tailcall",
            json!({"jmp_table": {"entries": [{"key": "00000000", "value": "nope"}]}}).to_string(),
            vec![
                "map jmp_table",
                "no program named \"nope\"",
                "xdp_tail_parse",
            ],
        ),
        (
            "rodata_is_frozen",
            "xdp_globals",
            json!({".rodata": {"entries": [{"key": "00000000",
                "value": "000000000000000000000000"}]}})
            .to_string(),
            vec!["map .rodata", "read-only"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, object, text, needles) in &cases {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, text).unwrap();
        for engine in engines() {
            let o = userxdp(&[
                "run",
                "--prog",
                &obj(object),
                "--pcap",
                p(&pcap),
                "--engine",
                engine,
                "--maps-init",
                p(&file),
            ]);
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            let mut problems: Vec<String> = needles
                .iter()
                .filter(|n| !err.contains(*n))
                .map(|n| format!("missing {n:?}"))
                .collect();
            if o.status.success() {
                problems.push("exit status 0".into());
            }
            if err.lines().count() != 1 {
                problems.push("not one line".into());
            }
            if !o.stdout.is_empty() {
                problems.push("frames were run".into());
            }
            if !problems.is_empty() {
                failures.push(format!("{name} {engine}: {problems:?}: {err}"));
            }
        }
    }
    let missing = userxdp(&[
        "run",
        "--prog",
        &obj("xdp_maps"),
        "--pcap",
        p(&pcap),
        "--maps-init",
        "/nonexistent/init.json",
    ]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && err.contains("/nonexistent/init.json"),
        "{err}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The load balancer (`programs/lb.bpf.c`) with two VIPs configured from a `--maps-init` file:
/// 198.18.0.10 any TCP port -> IPv4 real 198.18.1.1 (IPIP), 198.18.0.10 UDP 53 -> IPv6 real
/// 2001:db8::2 (IPv4-in-IPv6). Every engine must give the same verdicts and the same
/// encapsulated bytes.
#[test]
fn load_balancer_with_configured_vips_encapsulates_alike_in_every_engine() {
    const RING: u32 = 65537;
    let Some(lb) = userxdp_programs::path("lb") else {
        eprintln!("skipping: lb.bpf.c is not built");
        return;
    };
    let dir = tempdir("lb");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let vip = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 10];
    let vip_key = |port: u16, proto: u8| {
        let mut k = vip.to_vec();
        k.extend_from_slice(&port.to_be_bytes());
        k.extend_from_slice(&[proto, 0]);
        hex(&k)
    };
    let vip_meta = |num: u32| hex(&[num.to_ne_bytes(), 0u32.to_ne_bytes()].concat());
    let real = |addr: &[u8], flags: u32| {
        let mut v = addr.to_vec();
        v.resize(16, 0);
        v.extend_from_slice(&flags.to_ne_bytes());
        hex(&v)
    };
    let v6_real = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let router_mac = [0x02, 0xaa, 0, 0, 0, 1];
    let mut cfg = router_mac.to_vec();
    cfg.extend_from_slice(&[0, 0, 198, 19, 0, 0]);
    cfg.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Every ring slot of VIP 0 picks real 1, of VIP 1 real 2.
    let rings: Vec<Value> = (0..2 * RING)
        .map(|i| json!({"key": hex(&i.to_ne_bytes()), "value": hex(&(1 + i / RING).to_ne_bytes())}))
        .collect();
    let init = json!({
        "vip_map": {"entries": [
            {"key": vip_key(0, 6), "value": vip_meta(0)},
            {"key": vip_key(53, 17), "value": vip_meta(1)},
        ]},
        "reals": {"entries": [
            {"key": "01000000", "value": real(&[198, 18, 1, 1], 0)},
            {"key": "02000000", "value": real(&v6_real, 1)},
        ]},
        "lb_config": {"entries": [{"key": "00000000", "value": hex(&cfg)}]},
        "ch_rings": {"entries": rings},
    });
    let init_path = dir.join("lb.json");
    std::fs::write(&init_path, init.to_string()).unwrap();

    let ipv4 = |proto: u8, dst: [u8; 4], l4: &[u8]| -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let tot = (20 + l4.len()) as u16;
        f.extend_from_slice(&[
            0x45,
            0,
            (tot >> 8) as u8,
            tot as u8,
            0,
            1,
            0,
            0,
            64,
            proto,
            0,
            0,
        ]);
        f.extend_from_slice(&[198, 18, 0, 1]);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
        f
    };
    let tcp = |sport: u16, flags: u8| {
        let mut t = sport.to_be_bytes().to_vec();
        t.extend_from_slice(&[
            0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0x10, 0, 0, 0, 0, 0,
        ]);
        t
    };
    let udp = [0x0f, 0xa0, 0, 53, 0, 12, 0, 0, b'q', b'u', b'r', b'y'];
    let frames = [
        ipv4(17, [198, 18, 0, 10], &udp),            // VIP 1 -> IPv6 real
        ipv4(6, [198, 18, 0, 10], &tcp(5000, 2)),    // SYN to VIP 0 -> IPv4 real
        ipv4(6, [198, 18, 0, 10], &tcp(5000, 0x10)), // same flow, ACK: LRU hit
        ipv4(17, [198, 18, 0, 99], &udp),            // no VIP -> PASS
    ];
    let pcap = dir.join("in.pcap");
    let mut w = PcapOut::create(&pcap).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(Duration::from_micros(i as u64), f).unwrap();
    }
    w.finish().unwrap();

    let mut first: Option<(String, Vec<Vec<u8>>)> = None;
    for engine in engines() {
        let out = dir.join(format!("out-{engine}.pcap"));
        let o = userxdp(&[
            "run",
            "--prog",
            p(&lb),
            "--pcap",
            p(&pcap),
            "--engine",
            engine,
            "--maps-init",
            p(&init_path),
            "--out",
            p(&out),
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            verdicts(&stdout),
            ["XDP_TX", "XDP_TX", "XDP_TX", "XDP_PASS"],
            "{engine}: {stdout}"
        );
        let got: Vec<Vec<u8>> = userxdp_datapath::capture::read_frames(&out)
            .unwrap()
            .into_iter()
            .map(|f| f.data)
            .collect();
        // IPv4 in IPv6: next header 4, destination the IPv6 real, router MAC.
        let f = &got[0];
        assert_eq!(&f[..6], &router_mac, "{engine}");
        assert_eq!(&f[12..14], &[0x86, 0xdd], "{engine}");
        assert_eq!(f[14 + 6], 4, "{engine}: next header");
        assert_eq!(&f[14 + 24..14 + 40], &v6_real, "{engine}");
        assert_eq!(&f[54..], &frames[0][14..], "{engine}: inner packet intact");
        // IPIP: protocol 4, destination 198.18.1.1, source in 198.19.0.0/16.
        for (f, inner) in got[1..3].iter().zip(&frames[1..3]) {
            assert_eq!(&f[12..14], &[0x08, 0x00], "{engine}");
            assert_eq!(f[14 + 9], 4, "{engine}: protocol");
            assert_eq!(&f[14 + 12..14 + 14], &[198, 19], "{engine}");
            assert_eq!(&f[14 + 16..14 + 20], &[198, 18, 1, 1], "{engine}");
            assert_eq!(&f[34..], &inner[14..], "{engine}: inner packet intact");
        }
        assert_eq!(
            got[1][..34],
            got[2][..34],
            "{engine}: one flow, one outer header"
        );
        match &first {
            None => first = Some((engine.to_string(), got)),
            Some((e0, g0)) => assert_eq!(&got, g0, "{engine} and {e0} output differs"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

mod map_in_map {
    //! Map-in-map through the library entry points (no object in the corpus has an
    //! ARRAY_OF_MAPS small enough to load whole): an object spec built by hand with an outer
    //! ARRAY_OF_MAPS, its inner template, and an object map that fits the template.

    use userxdp_datapath::cli::maps_init::{dump_user, plan_text};
    use userxdp_runtime::maps::types;
    use userxdp_runtime::object::spec::{
        AttachPoint, MapRefKind, MapReloc, MapSpec, ObjectSpec, Pinning, ProgramSpec, ProgramType,
    };
    use userxdp_runtime::vm::asm::assemble;
    use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

    fn array(name: &str, map_type: u32, inner: Option<MapSpec>) -> MapSpec {
        MapSpec {
            name: name.into(),
            map_type,
            key_size: 4,
            value_size: 4,
            max_entries: 4,
            flags: 0,
            inner: inner.map(Box::new),
            data: None,
            pinning: Pinning::None,
            global_data: false,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            spin_lock_offset: None,
            initial_slots: Vec::new(),
        }
    }

    /// r0 = inner[1] where inner = outer[1]; 99 when a lookup misses.
    fn object() -> ObjectSpec {
        let insns = assemble(
            "stw [r10-4], 1\nlddw r1, 0\nmov r2, r10\nadd r2, -4\ncall 1\njeq r0, 0, miss\n\
             mov r1, r0\nmov r2, r10\nadd r2, -4\ncall 1\njeq r0, 0, miss\nldxw r0, [r0+0]\n\
             exit\nmiss:\nmov r0, 99\nexit",
        )
        .expect("assemble");
        let template = array("inner_template", types::ARRAY, None);
        ObjectSpec {
            license: "GPL".into(),
            maps: vec![
                array("outer", types::ARRAY_OF_MAPS, Some(template)),
                array("obj_inner", types::ARRAY, None),
                MapSpec {
                    map_type: types::HASH,
                    ..array("a_hash", types::HASH, None)
                },
            ],
            programs: vec![ProgramSpec {
                name: "mim".into(),
                section: "xdp".into(),
                prog_type: ProgramType::Xdp,
                attach: AttachPoint::Any,
                xdp_frags: false,
                insns,
                map_relocs: vec![MapReloc {
                    insn: 1,
                    map: 0,
                    kind: MapRefKind::Map,
                }],
                subprograms: Vec::new(),
            }],
        }
    }

    fn vm(engine: Engine) -> Vm {
        let opts = VmOptions {
            engine,
            safety: SafetyPolicy::Guarded,
            ..VmOptions::default()
        };
        Vm::new(object(), None, None, opts).expect("instantiate")
    }

    fn r0(vm: &Vm) -> u64 {
        vm.runner(0).run_raw(&mut [0u8; 16]).expect("run")
    }

    #[test]
    fn inner_maps_by_new_name_object_name_and_index_round_trip() {
        for engine in [Engine::Interpreter, Engine::Jit] {
            let spec = object();
            let cases = [
                // A new inner map from the template, filled from its own top-level entry.
                (
                    r#"{"outer": {"entries": [{"key": "01000000", "value": "fresh"}]},
                        "fresh": {"entries": [{"key": "01000000", "value": "2a000000"}]}}"#,
                    42,
                ),
                // An object map by name ...
                (
                    r#"{"outer": {"entries": [{"key": "01000000", "value": "obj_inner"}]},
                        "obj_inner": {"entries": [{"key": "01000000", "value": "07000000"}]}}"#,
                    7,
                ),
                // ... and by its index in declaration order.
                (
                    r#"{"outer": {"entries": [{"key": "01000000", "value": "1"}]},
                        "obj_inner": {"entries": [{"key": "01000000", "value": "08000000"}]}}"#,
                    8,
                ),
            ];
            for (text, want) in cases {
                let v = vm(engine);
                assert_eq!(r0(&v), 99, "{engine:?}: empty outer misses");
                plan_text(text, &spec, 1)
                    .and_then(|p| p.apply_user(&v))
                    .unwrap_or_else(|e| panic!("{engine:?} {text}: {e:#}"));
                assert_eq!(r0(&v), want, "{engine:?} {text}");
                // The dump names the inner map and carries a new one's contents; fed back
                // into a fresh instance it gives the same dump and the same result.
                let d1 = dump_user(&v).unwrap();
                assert_eq!(d1["outer"].entries[0].key, "01000000");
                let text2 = serde_json::to_string(&d1).unwrap();
                let v2 = vm(engine);
                plan_text(&text2, &spec, 1)
                    .and_then(|p| p.apply_user(&v2))
                    .unwrap_or_else(|e| panic!("{engine:?} round trip: {e:#}"));
                assert_eq!(dump_user(&v2).unwrap(), d1, "{engine:?} {text}");
                assert_eq!(r0(&v2), want, "{engine:?} {text}");
            }
        }
    }

    #[test]
    fn bad_inner_maps_are_clear_errors() {
        let spec = object();
        let cases = [
            (
                r#"{"outer": {"entries": [{"key": "01000000", "value": "9"}]}}"#,
                "map index 9 out of range",
            ),
            (
                r#"{"outer": {"entries": [{"key": "01000000", "value": "a_hash"}]}}"#,
                "does not match the inner map template",
            ),
            (
                r#"{"outer": {"entries": [{"key": "01000000", "value": "outer"}]}}"#,
                "cannot contain itself",
            ),
            (
                r#"{"outer": {"entries": [{"key": "01000000", "value": "0a000000"}]}}"#,
                "no map named \"0a000000\"",
            ),
            (
                r#"{"outer": {"entries": [{"key": "04000000", "value": "obj_inner"}]}}"#,
                "index 4 is out of range",
            ),
        ];
        for (text, needle) in cases {
            let err = match plan_text(text, &spec, 1) {
                Ok(_) => panic!("{text}: accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.contains("map outer"), "{text}: {err}");
        }
    }
}

/// Map-in-map slots filled from the file in every engine, the kernel included: the outer
/// ARRAY_OF_MAPS and HASH_OF_MAPS get new inner maps made from their templates, with the
/// contents the file gives them; the verdicts (which depend on the inner counters) agree.
#[test]
fn map_in_map_slots_are_filled_in_every_engine() {
    let dir = tempdir("mim");
    let pcap = dir.join("in.pcap");
    let mut out = PcapOut::create(&pcap).unwrap();
    for i in 0..64u8 {
        // Byte 0 picks the outer slot, byte 1 the inner key.
        let mut f = vec![i % 2, i / 2 % 4, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0u8; 46]);
        out.write(Duration::from_micros(i as u64), &f).unwrap();
    }
    out.finish().unwrap();
    let init = dir.join("init.json");
    std::fs::write(
        &init,
        json!({
            "outer_array": {"entries": [
                {"key": "00000000", "value": "counters_a"},
                {"key": "01000000", "value": "counters_b"}
            ]},
            "counters_a": {"entries": [
                {"key": "00000000", "value": "0100000000000000"},
                {"key": "02000000", "value": "0200000000000000"}
            ]},
            "counters_b": {"entries": [
                {"key": "01000000", "value": "0500000000000000"}
            ]},
            "outer_hash": {"entries": [{"key": "00000000", "value": "seen"}]},
            "seen": {"entries": [{"key": "03000000", "value": "0700000000000000"}]}
        })
        .to_string(),
    )
    .unwrap();
    let mut verdicts: Vec<(String, String)> = Vec::new();
    for engine in engines() {
        let o = userxdp(&[
            "run",
            "--prog",
            &obj("xdp_map_in_map"),
            "--pcap",
            p(&pcap),
            "--engine",
            engine,
            "--maps-init",
            p(&init),
        ]);
        assert!(
            o.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("frame")).collect();
        assert_eq!(lines.len(), 64, "{engine}: {text}");
        verdicts.push((engine.to_string(), lines.join("\n")));
    }
    let (first_engine, first) = &verdicts[0];
    // The inner counters decide TX/DROP, so a slot that was not filled would show as PASS.
    assert!(
        first.contains("XDP_TX") && first.contains("XDP_DROP"),
        "{first}"
    );
    for (engine, v) in &verdicts[1..] {
        assert_eq!(v, first, "{engine} differs from {first_engine}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
