//! `userxdp run` end to end: outputs, engine agreement, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use userxdp_datapath::capture::{self, PcapOut};

fn userxdp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_userxdp"))
        .args(args)
        .output()
        .expect("spawn userxdp")
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("userxdp-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A UDP echo request (reflected by xdp_parse), a TCP packet to port 9 (dropped) and an ARP
/// frame (passed).
fn write_capture(path: &Path) {
    let udp_echo: Vec<u8> = [
        &[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00][..],
        &[
            0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0xee, 0xa4, 198, 18, 0, 1, 198, 18, 0, 2,
        ],
        &[0x30, 0x39, 0, 7, 0, 12, 0, 0, b'p', b'i', b'n', b'g'],
    ]
    .concat();
    let tcp_discard: Vec<u8> = [
        &[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00][..],
        &[
            0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ],
        &[
            0x30, 0x39, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x10, 0, 0, 0, 0, 0,
        ],
    ]
    .concat();
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let mut out = PcapOut::create(path).unwrap();
    for (i, p) in [udp_echo, tcp_discard, arp].iter().enumerate() {
        out.write(Duration::from_micros(i as u64), p).unwrap();
    }
}

fn obj(name: &str) -> String {
    userxdp_programs::path(name)
        .expect("program built")
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_reports_verdicts_writes_frames_and_dumps_maps() {
    let dir = tempdir("run");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap);
    let out_pcap = dir.join("out.pcap");
    let o = userxdp(&[
        "run",
        "--prog",
        &obj("xdp_parse"),
        "--pcap",
        pcap.to_str().unwrap(),
        "--engine",
        "interp",
        "--out",
        out_pcap.to_str().unwrap(),
        "--dump-maps",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("frame 1: XDP_TX (retval 3)"), "{text}");
    assert!(text.contains("frame 2: XDP_DROP (retval 1)"), "{text}");
    assert!(text.contains("frame 3: XDP_PASS (retval 2)"), "{text}");
    assert!(text.contains("\"proto_count\""), "maps dumped: {text}");
    // DROP frames are not written; TX and PASS are, TX with addresses swapped.
    let frames = capture::read_frames(&out_pcap).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(&frames[0].data[26..30], &[198, 18, 0, 2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_output_is_one_object_per_frame_plus_summary() {
    let dir = tempdir("json");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap);
    let o = userxdp(&[
        "run",
        "--prog",
        &obj("xdp_parse"),
        "--pcap",
        pcap.to_str().unwrap(),
        "--engine",
        "jit",
        "--verifier",
        "guarded",
        "--json",
        "--repeat",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 4);
    // Repeats run on the same frame, as the kernel's: the first run reflects the echo
    // request, the second sees the reply (source port 7) and passes it; the last is reported.
    assert_eq!(lines[0]["verdict"], "XDP_PASS");
    assert_eq!(lines[3]["summary"], true);
    assert_eq!(lines[3]["verdicts"]["XDP_DROP"], 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn engines_print_identical_results() {
    if userxdp_runtime::kernel::probe().is_err() {
        eprintln!("skipping kernel engine: not permitted to use bpf()");
        return;
    }
    let dir = tempdir("engines");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap);
    let run = |engine: &str| {
        let o = userxdp(&[
            "run",
            "--prog",
            &obj("xdp_maps"),
            "--pcap",
            pcap.to_str().unwrap(),
            "--engine",
            engine,
            "--dump-maps",
            "--repeat",
            "5",
        ]);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        // Everything but the timing line.
        stdout(&o)
            .lines()
            .filter(|l| !l.contains("ns/run"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let kernel = run("kernel");
    assert_eq!(run("interp"), kernel);
    assert_eq!(run("jit"), kernel);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_gets_a_clear_error_and_no_panic() {
    let dir = tempdir("errors");
    let pcap = dir.join("in.pcap");
    write_capture(&pcap);
    let p = pcap.to_str().unwrap();
    let garbage = dir.join("garbage.o");
    std::fs::write(&garbage, b"\x7fELF this is not an object").unwrap();
    let not_pcap = dir.join("not.pcap");
    std::fs::write(&not_pcap, b"hello").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--prog".into(),
                "/nonexistent/x.o".into(),
                "--pcap".into(),
                p.into(),
            ],
            "/nonexistent/x.o",
        ),
        (
            vec![
                "--prog".into(),
                garbage.display().to_string(),
                "--pcap".into(),
                p.into(),
            ],
            "garbage.o",
        ),
        (
            vec![
                "--prog".into(),
                format!("{}:no_such_prog", obj("xdp_parse")),
                "--pcap".into(),
                p.into(),
            ],
            "no_such_prog",
        ),
        (
            vec![
                "--prog".into(),
                obj("xdp_parse"),
                "--pcap".into(),
                not_pcap.display().to_string(),
            ],
            "not.pcap",
        ),
        (
            vec!["--prog".into(), obj("tc_egress"), "--pcap".into(), p.into()],
            "not an XDP program",
        ),
        (
            vec![
                "--prog".into(),
                obj("xdp_parse"),
                "--pcap".into(),
                p.into(),
                "--engine".into(),
                "warp".into(),
            ],
            "warp",
        ),
        (
            vec![
                "--prog".into(),
                obj("xdp_parse"),
                "--pcap".into(),
                p.into(),
                "--repeat".into(),
                "0".into(),
            ],
            "repeat",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["run".to_string()];
        full.extend(args);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let o = userxdp(&refs);
        let err = stderr(&o);
        assert!(!o.status.success(), "{refs:?} should fail");
        assert!(
            err.contains(needle),
            "{refs:?}: error should mention {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{refs:?} panicked: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
