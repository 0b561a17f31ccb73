//! `run-datapath` without a NIC: the pcap and generator backends through the real worker loop,
//! checked frame by frame against the runtime run directly, and clear errors for bad input.
//! (The AF_XDP backend is tested on a veth testbed in `datapath_e2e.rs`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use userxdp_datapath::capture::{self, PcapOut};
use userxdp_runtime::context::{XdpAction, XdpFrame};
use userxdp_runtime::object;
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

fn run_datapath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_run-datapath"))
        .args(args)
        .output()
        .expect("spawn run-datapath")
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("userxdp-dp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn obj(name: &str) -> String {
    userxdp_programs::path(name)
        .expect("program built")
        .display()
        .to_string()
}

/// UDP to the echo port (xdp_parse reflects it), TCP to the discard port (dropped), other
/// UDP/TCP/ICMP, ARP, VLAN-tagged and truncated frames.
fn corpus(n: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let builder = etherparse::PacketBuilder::ethernet2(
                [2, 0, 0, 0, 0, 1],
                [2, 0, 0, 0, 0, 2],
            )
            .ipv4([198, 18, 0, 1], [198, 18, 0, rng.random_range(2..4)], 64);
            let payload: Vec<u8> = (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect();
            let mut out = Vec::new();
            match i % 5 {
                0 => builder
                    .udp(rng.random(), 7)
                    .write(&mut out, &payload)
                    .unwrap(),
                1 => builder
                    .tcp(rng.random(), 9, rng.random(), 1024)
                    .syn()
                    .write(&mut out, &payload)
                    .unwrap(),
                2 => builder
                    .udp(rng.random(), rng.random())
                    .write(&mut out, &payload)
                    .unwrap(),
                3 => builder
                    .icmpv4_echo_request(1, i as u16)
                    .write(&mut out, &payload)
                    .unwrap(),
                _ => {
                    builder
                        .tcp(rng.random(), rng.random(), 0, 512)
                        .write(&mut out, &payload)
                        .unwrap();
                    let keep = rng.random_range(14..out.len());
                    out.truncate(keep);
                }
            }
            out
        })
        .collect()
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = PcapOut::create(path).unwrap();
    for (i, f) in frames.iter().enumerate() {
        out.write(Duration::from_micros(i as u64), f).unwrap();
    }
    out.finish().unwrap();
}

/// Output frames per verdict, from the runtime run directly (interpreter).
fn reference(name: &str, frames: &[Vec<u8>]) -> [Vec<Vec<u8>>; 3] {
    let bytes = userxdp_programs::bytes(name).unwrap();
    let spec = object::parse(&bytes).unwrap();
    let vm = Vm::new(
        spec,
        Some(&bytes),
        None,
        VmOptions {
            engine: Engine::Interpreter,
            safety: SafetyPolicy::Guarded,
            ncpus: 1,
            ..VmOptions::default()
        },
    )
    .unwrap();
    let mut runner = vm.runner(0);
    let mut frame = XdpFrame::new().unwrap();
    let mut out: [Vec<Vec<u8>>; 3] = Default::default();
    for f in frames {
        frame.load(f).unwrap();
        let run = runner.run_xdp(&mut frame).unwrap();
        let slot = match run.action {
            XdpAction::Tx => 0,
            XdpAction::Pass => 1,
            XdpAction::Redirect => 2,
            _ => continue,
        };
        out[slot].push(frame.packet().to_vec());
    }
    out
}

fn summary(o: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("\"summary\""))
        .unwrap_or_else(|| panic!("no summary in {text}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn pcap_backend_matches_the_runtime_frame_by_frame() {
    let dir = tempdir("pcap");
    let frames = corpus(2000);
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames);
    let expected = reference("xdp_parse", &frames);
    for engine in ["interp", "jit"] {
        let out_dir = dir.join(engine);
        let o = run_datapath(&[
            "--prog",
            &obj("xdp_parse"),
            "--pcap",
            input.to_str().unwrap(),
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--engine",
            engine,
            "--verifier",
            "guarded",
            "--batch",
            "32",
            "--json",
        ]);
        assert!(
            o.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for (slot, file) in ["tx.pcap", "pass.pcap", "redirect.pcap"].iter().enumerate() {
            let got: Vec<Vec<u8>> = capture::read_frames(&out_dir.join(file))
                .unwrap()
                .into_iter()
                .map(|f| f.data)
                .collect();
            assert_eq!(got.len(), expected[slot].len(), "{engine} {file}: count");
            assert!(got == expected[slot], "{engine} {file}: bytes differ");
        }
        let s = summary(&o);
        let total = &s["total"];
        assert_eq!(total["rx"], frames.len() as u64);
        assert_eq!(total["tx"], expected[0].len() as u64);
        assert_eq!(total["pass"], expected[1].len() as u64);
        let handled: u64 = ["tx", "drop", "pass", "redirect", "aborted", "errors"]
            .iter()
            .map(|k| total[k].as_u64().unwrap())
            .sum();
        assert_eq!(handled, frames.len() as u64, "every frame accounted for");
        assert!(expected[0].len() > 100 && total["drop"].as_u64().unwrap() > 100);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trace_is_a_pcapng_with_verdict_comments() {
    let dir = tempdir("trace");
    let frames = corpus(50);
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames);
    let trace = dir.join("trace.pcapng");
    let o = run_datapath(&[
        "--prog",
        &obj("xdp_parse"),
        "--pcap",
        input.to_str().unwrap(),
        "--out-dir",
        dir.to_str().unwrap(),
        "--verifier",
        "guarded",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&trace).unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
    let (mut inputs, mut comments) = (0, Vec::new());
    while let Some(block) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.unwrap() {
            for opt in &p.options {
                if let pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Comment(
                    c,
                ) = opt
                {
                    inputs += c.ends_with(" in") as usize;
                    comments.push(c.to_string());
                }
            }
        }
    }
    assert_eq!(inputs, frames.len(), "one input record per frame");
    assert!(
        comments.iter().any(|c| c == "q0 XDP_TX out"),
        "{comments:?}"
    );
    assert!(
        comments.iter().any(|c| c == "q0 XDP_DROP in"),
        "{comments:?}"
    );
    assert!(!comments.iter().any(|c| c == "q0 XDP_DROP out"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generator_backend_runs_every_frame_on_every_queue() {
    let o = run_datapath(&[
        "--prog",
        &obj("xdp_drop"),
        "--generate",
        "5000",
        "--queues",
        "0-1",
        "--verifier",
        "guarded",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&o);
    assert_eq!(s["total"]["rx"], 10_000);
    assert_eq!(s["total"]["drop"], 10_000);
    assert_eq!(s["queues"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_gets_a_clear_error_and_no_panic() {
    let dir = tempdir("errors");
    let garbage = dir.join("garbage.o");
    std::fs::write(&garbage, b"not an elf").unwrap();
    let frames = corpus(3);
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--iface".into(),
                "nosuchif0".into(),
                "--prog".into(),
                obj("xdp_pass"),
            ],
            "nosuchif0",
        ),
        (vec!["--prog".into(), obj("xdp_pass")], "--iface"),
        (
            vec![
                "--prog".into(),
                garbage.display().to_string(),
                "--generate".into(),
                "1".into(),
            ],
            "garbage.o",
        ),
        (
            vec![
                "--prog".into(),
                obj("tc_egress"),
                "--generate".into(),
                "1".into(),
                "--verifier".into(),
                "guarded".into(),
            ],
            "XDP",
        ),
        (
            vec![
                "--prog".into(),
                obj("xdp_pass"),
                "--generate".into(),
                "1".into(),
                "--queues".into(),
                "3-1".into(),
            ],
            "backwards",
        ),
        (
            vec![
                "--prog".into(),
                obj("xdp_pass"),
                "--generate".into(),
                "1".into(),
                "--cores".into(),
                "4000".into(),
            ],
            "core 4000",
        ),
        (
            vec![
                "--prog".into(),
                format!("{}:no_such_prog", obj("xdp_pass")),
                "--generate".into(),
                "1".into(),
            ],
            "no_such_prog",
        ),
        (
            vec![
                "--prog".into(),
                obj("xdp_pass"),
                "--pcap".into(),
                dir.join("missing.pcap").display().to_string(),
                "--out-dir".into(),
                dir.display().to_string(),
            ],
            "missing.pcap",
        ),
        (
            vec![
                "--prog".into(),
                obj("xdp_pass"),
                "--pcap".into(),
                input.display().to_string(),
                "--out-dir".into(),
                dir.display().to_string(),
                "--tap".into(),
                "uxt0".into(),
            ],
            "--tap needs --iface",
        ),
        (
            vec![
                "--prog".into(),
                obj("xdp_pass"),
                "--generate".into(),
                "1".into(),
                "--batch".into(),
                "0".into(),
            ],
            "--batch",
        ),
        (
            // Rejected by the kernel verifier as root; unprivileged, the kernel cannot be
            // asked, which is an error too when the policy is named.
            vec![
                "--prog".into(),
                obj("bad_oob"),
                "--generate".into(),
                "1".into(),
                "--verifier".into(),
                "kernel".into(),
            ],
            "bad_oob",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_datapath(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sends one request line to the control socket and returns the response.
fn control(path: &Path, request: serde_json::Value) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).expect("connect control");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    writeln!(stream, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Starts `run-datapath` on generated frames for `prog` (guarded JIT, at most `duration`
/// seconds, `extra` arguments) with its control socket at `sock`, and waits up to `wait` for
/// the socket to appear.
fn start_generating(
    prog: &str,
    extra: &[&str],
    duration: &str,
    sock: &Path,
    stdout: std::process::Stdio,
    wait: Duration,
) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_run-datapath"))
        .args(["--prog", &obj(prog), "--generate", "1000000000"])
        .args(["--verifier", "guarded", "--duration", duration])
        .args(extra)
        .args(["--control", sock.to_str().unwrap()])
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + wait;
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Sum over CPUs of slot `slot` of `proto_count` (per-CPU u64 values) from a map_dump.
fn proto_total(dump: &serde_json::Value, slot: usize) -> u64 {
    let entry = &dump["dump"]["entries"][slot];
    let hex = entry["value"].as_str().unwrap_or_else(|| panic!("{dump}"));
    let bytes = userxdp_runtime::maps::dump::from_hex(hex).unwrap();
    bytes
        .chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .sum()
}

#[test]
fn control_socket_reloads_without_losing_map_state_or_frames() {
    let dir = tempdir("control");
    let sock = dir.join("ctl.sock");
    let child = start_generating(
        "xdp_parse",
        &["--queues", "0-1", "--json"],
        "30",
        &sock,
        std::process::Stdio::piped(),
        Duration::from_secs(20),
    );
    let stats = control(&sock, serde_json::json!({"cmd": "stats"}));
    assert_eq!(stats["ok"], true, "{stats}");
    assert_eq!(stats["queues"].as_array().unwrap().len(), 2);
    let maps = control(&sock, serde_json::json!({"cmd": "maps"}));
    assert!(maps["maps"].to_string().contains("proto_count"), "{maps}");

    // The generator's frames are UDP: count them before and after a reload of the same
    // object; the per-CPU counters keep growing from where they were.
    let dump = serde_json::json!({"cmd": "map_dump", "map": "proto_count"});
    let before = control(&sock, dump.clone());
    let slots = before["dump"]["entries"].as_array().unwrap().len();
    let busiest = (0..slots).max_by_key(|&s| proto_total(&before, s)).unwrap();
    let counted_before = proto_total(&before, busiest);
    assert!(counted_before > 0, "{before}");
    let snapshot = dir.join("snap.json");
    let saved = control(
        &sock,
        serde_json::json!({"cmd": "snapshot_save", "path": snapshot}),
    );
    assert_eq!(saved["ok"], true, "{saved}");
    let reload = control(
        &sock,
        serde_json::json!({"cmd": "prog_reload", "path": obj("xdp_parse")}),
    );
    assert_eq!(reload["generation"], 1, "{reload}");
    std::thread::sleep(Duration::from_millis(300));
    let after = control(&sock, dump.clone());
    assert!(
        proto_total(&after, busiest) > counted_before,
        "state carried over and keeps counting: {before} -> {after}"
    );

    // Restoring the snapshot puts the counters back to the saved values (plus what ran
    // since the restore), well below the live values.
    let live = proto_total(&control(&sock, dump.clone()), busiest);
    let restored = control(
        &sock,
        serde_json::json!({"cmd": "snapshot_restore", "path": snapshot}),
    );
    assert_eq!(restored["ok"], true, "{restored}");
    let now = proto_total(&control(&sock, dump.clone()), busiest);
    assert!(
        now < live,
        "restore took effect: live {live}, after restore {now}"
    );

    // A reload to another object (no maps in common) switches the verdicts.
    let reload = control(
        &sock,
        serde_json::json!({"cmd": "prog_reload", "path": obj("xdp_drop")}),
    );
    assert_eq!(reload["generation"], 2, "{reload}");
    std::thread::sleep(Duration::from_millis(300));
    let s1 = control(&sock, serde_json::json!({"cmd": "stats"}));
    std::thread::sleep(Duration::from_millis(200));
    let s2 = control(&sock, serde_json::json!({"cmd": "stats"}));
    assert!(
        s2["total"]["drop"].as_u64() > s1["total"]["drop"].as_u64(),
        "{s1} {s2}"
    );

    // Bad requests get an error, not a dead socket.
    for bad in [
        serde_json::json!({"cmd": "nope"}),
        serde_json::json!({"cmd": "map_dump", "map": "no_such_map"}),
        serde_json::json!({"cmd": "map_get", "map": "proto_count", "key": "zz"}),
        serde_json::json!({"cmd": "prog_reload", "path": "/nonexistent.o"}),
    ] {
        let r = control(&sock, bad.clone());
        assert_eq!(r["ok"], false, "{bad}: {r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    // SAFETY: kill has no memory-safety preconditions; the pid is our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    let total = &s["total"];
    let handled: u64 = ["tx", "drop", "pass", "redirect", "aborted", "errors"]
        .iter()
        .map(|k| total[k].as_u64().unwrap())
        .sum();
    assert_eq!(handled, total["rx"].as_u64().unwrap(), "no frame lost: {s}");
    assert_eq!(total["errors"], 0, "{s}");
    assert!(!sock.exists(), "socket removed on exit");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn udp_to(port: u16) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(40000, port)
        .write(&mut out, &port.to_be_bytes())
        .unwrap();
    out
}

#[test]
fn redirect_targets_resolve_to_tx_pass_and_the_redirect_sink() {
    let dir = tempdir("redirect");
    let frames: Vec<Vec<u8>> = [1000, 2000, 3000, 4000, 5000].map(udp_to).to_vec();
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames);
    let count = |out_dir: &Path, file: &str| -> Vec<u16> {
        capture::read_frames(&out_dir.join(file))
            .unwrap()
            .iter()
            .map(|f| u16::from_be_bytes([f.data[36], f.data[37]]))
            .collect()
    };
    let run = |tag: &str, init: Option<&Path>| -> (PathBuf, serde_json::Value) {
        let out_dir = dir.join(tag);
        let mut args = vec![
            "--prog".to_string(),
            obj("xdp_redirect_dev"),
            "--pcap".into(),
            input.display().to_string(),
            "--out-dir".into(),
            out_dir.display().to_string(),
            "--verifier".into(),
            "guarded".into(),
            "--json".into(),
        ];
        if let Some(p) = init {
            args.extend(["--maps-init".into(), p.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_datapath(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (out_dir, summary(&o))
    };

    // Empty slots: the fallback verdicts.
    let (out, s) = run("empty", None);
    assert_eq!(
        count(&out, "tx.pcap"),
        vec![4000],
        "bpf_redirect to our own ifindex"
    );
    assert_eq!(count(&out, "pass.pcap"), vec![2000, 3000, 5000]);
    assert_eq!(s["total"]["drop"], 1);

    // Slots filled: DEVMAP to our ifindex transmits, CPUMAP goes to the kernel, XSKMAP to
    // the redirect sink.
    let init = dir.join("init.json");
    std::fs::write(
        &init,
        r#"{
  "tx_ports": {"entries": [{"key": "00000000", "value": "01000000"}]},
  "cpus": {"entries": [{"key": "00000000", "value": "00010000"}]},
  "xsks": {"entries": [{"key": "00000000", "value": "07000000"}]}
}"#,
    )
    .unwrap();
    let (out, s) = run("filled", Some(&init));
    assert_eq!(count(&out, "tx.pcap"), vec![1000, 4000]);
    assert_eq!(count(&out, "pass.pcap"), vec![2000, 5000]);
    assert_eq!(count(&out, "redirect.pcap"), vec![3000]);
    assert_eq!(s["total"]["redirect"], 4, "{s}");
    assert_eq!(s["total"]["pass"], 1, "{s}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn userxdp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_userxdp"))
        .args(args)
        .output()
        .expect("spawn userxdp")
}

#[test]
fn userxdp_lb_and_ctl_configure_a_running_datapath() {
    let dir = tempdir("lbctl");
    let sock = dir.join("ctl.sock");
    let config = dir.join("lb.json");
    let config_text = r#"{
        "router_mac": "02:00:00:00:00:01",
        "vips": [
            { "addr": "198.18.0.10", "port": 80, "proto": "tcp",
              "backends": [ { "addr": "198.18.1.1", "weight": 1 }, { "addr": "198.18.1.2", "weight": 3 } ] },
            { "addr": "198.18.0.11", "proto": "udp",
              "backends": [ { "addr": "198.18.1.3" } ] }
        ]
    }"#;
    std::fs::write(&config, config_text).unwrap();
    let mut child = start_generating(
        "lb",
        &[],
        "60",
        &sock,
        std::process::Stdio::null(),
        Duration::from_secs(30),
    );
    let s = sock.to_str().unwrap();
    let o = userxdp(&["lb", "--config", config.to_str().unwrap(), "--control", s]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("2 VIP(s), 3 backend(s)"), "{text}");
    assert!(text.contains("198.18.1.2: "), "{text}");

    // What landed in the running datapath equals the same configuration applied in-process.
    let o = userxdp(&["ctl", "--control", s, "dump", "vip_map"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let remote: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let bytes = userxdp_programs::bytes("lb").unwrap();
    let vm = Vm::new(
        object::parse(&bytes).unwrap(),
        Some(&bytes),
        None,
        VmOptions {
            engine: Engine::Interpreter,
            ncpus: 1,
            ..VmOptions::default()
        },
    )
    .unwrap();
    let cfg = userxdp_datapath::lb::LbConfig::from_json(config_text).unwrap();
    userxdp_datapath::lb::apply(&cfg, &mut userxdp_datapath::lb::VmMaps::from_vm(&vm)).unwrap();
    let local = userxdp_runtime::maps::dump::dump(vm.map("vip_map").unwrap().as_ref()).unwrap();
    assert_eq!(
        remote["dump"]["entries"],
        serde_json::to_value(&local.entries).unwrap()
    );
    let o = userxdp(&["ctl", "--control", s, "get", "reals", "02000000"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("c6120102"),
        "real 2 is 198.18.1.2: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    for args in [
        &["stats"][..],
        &["maps"],
        &["save", dir.join("s.json").to_str().unwrap()],
    ] {
        let mut full = vec!["ctl", "--control", s];
        full.extend_from_slice(args);
        let o = userxdp(&full);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = userxdp(&["ctl", "--control", s, "get", "no_such_map", "00"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no_such_map"));

    // SAFETY: kill has no memory-safety preconditions; the pid is our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let o = userxdp(&["ctl", "--control", s, "stats"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is run-datapath running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ringbuf_records_are_read_through_the_control_socket() {
    let dir = tempdir("ringbuf");
    let sock = dir.join("ctl.sock");
    let mut child = start_generating(
        "xdp_ringbuf",
        &[],
        "30",
        &sock,
        std::process::Stdio::null(),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(200));
    let r = control(
        &sock,
        serde_json::json!({"cmd": "ringbuf_read", "map": "events", "max": 10}),
    );
    assert_eq!(r["ok"], true, "{r}");
    let records = r["records"].as_array().unwrap();
    assert_eq!(records.len(), 10, "the generator keeps the ring busy: {r}");
    assert!(records
        .iter()
        .all(|x| x.as_str().is_some_and(|h| !h.is_empty())));
    let not_a_ring = control(
        &sock,
        serde_json::json!({"cmd": "ringbuf_read", "map": "rb_stats"}),
    );
    assert_eq!(not_a_ring["ok"], false);
    // SAFETY: kill has no memory-safety preconditions; the pid is our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
