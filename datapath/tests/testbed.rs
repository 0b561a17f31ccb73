//! The namespace testbed itself (`scripts/testbed.sh` through `support::Testbed`): links,
//! addresses, queues and offloads as documented, memcached answering over UDP, and a `down` that
//! leaves nothing behind. Each test skips (printing why) when not root or a tool is missing.

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{format_mac, Options, Testbed};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ping_both_ways_with_the_documented_layout() {
    let Some(tb) = Testbed::up("uxdp", 2, false) else {
        return;
    };
    assert_eq!(tb.cli_ns, format!("{}-cli", tb.prefix));
    assert_eq!(tb.srv_ns, format!("{}-srv", tb.prefix));
    assert_eq!(tb.cli_ip4.octets()[..2], [198, 18]);
    assert_eq!(tb.srv_ip4.octets()[..2], [198, 18]);
    assert!(tb.ping(&tb.cli_ns, &tb.srv_ip4.to_string(), 3));
    assert!(tb.ping(&tb.srv_ns, &tb.cli_ip4.to_string(), 1));

    for (ns, dev, mac) in [
        (&tb.cli_ns, &tb.cli_if, &tb.cli_mac),
        (&tb.srv_ns, &tb.srv_if, &tb.srv_mac),
    ] {
        let sys = format!("/sys/class/net/{dev}");
        let addr = tb.exec_in(ns, &["cat", &format!("{sys}/address")]);
        assert_eq!(stdout(&addr).trim(), format_mac(mac), "{dev} MAC");
        let queues = stdout(&tb.exec_in(ns, &["ls", &format!("{sys}/queues")]));
        let mut queues: Vec<&str> = queues.split_whitespace().collect();
        queues.sort();
        assert_eq!(queues, ["rx-0", "rx-1", "tx-0", "tx-1"], "{dev} queues");
        let features = stdout(&tb.exec_in(ns, &["ethtool", "-k", dev]));
        for off in ["rx-checksumming: off", "tx-checksumming: off"] {
            assert!(features.contains(off), "{dev}: want {off}:\n{features}");
        }
    }
    let defer = tb.exec_in(
        &tb.srv_ns,
        &[
            "cat",
            &format!("/sys/class/net/{}/napi_defer_hard_irqs", tb.srv_if),
        ],
    );
    assert_eq!(stdout(&defer).trim(), "2");
}

#[test]
fn ipv6_when_asked() {
    let opts = Options {
        ipv6: true,
        ..Options::default()
    };
    let Some(tb) = Testbed::up_with("uxdp", &opts) else {
        return;
    };
    let srv6 = tb.srv_ip6.expect("server IPv6 address");
    assert_eq!(srv6.segments()[..2], [0x2001, 0x0002], "benchmarking range");
    assert!(tb.ping(&tb.cli_ns, &srv6.to_string(), 2));
}

/// Reads a `/sys/class/net/IF/statistics/` counter inside `ns`.
fn counter(tb: &Testbed, ns: &str, dev: &str, name: &str) -> u64 {
    let out = tb.exec_in(
        ns,
        &["cat", &format!("/sys/class/net/{dev}/statistics/{name}")],
    );
    stdout(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{dev} {name}: {out:?}"))
}

/// Kernel XDP_TX on the server end reaches the client when the client end has an XDP program
/// (`--cli-xdp`); the path kernel baselines of cache/lb hits take.
#[test]
fn kernel_xdp_tx_reaches_the_client_with_cli_xdp() {
    let pass = userxdp_programs::path("xdp_pass").expect("xdp_pass.o built");
    let tx = userxdp_programs::path("xdp_tx").expect("xdp_tx.o built");
    let opts = Options {
        queues: 1,
        cli_xdp: Some(pass),
        ..Options::default()
    };
    let Some(tb) = Testbed::up_with("uxdp", &opts) else {
        return;
    };
    let tx = tx.to_str().expect("utf-8 path");
    let attach = tb.exec_in(
        &tb.srv_ns,
        &[
            "ip", "link", "set", "dev", &tb.srv_if, "xdpdrv", "obj", tx, "sec", "xdp",
        ],
    );
    assert!(attach.status.success(), "attach xdp_tx: {attach:?}");

    let before = counter(&tb, &tb.cli_ns, &tb.cli_if, "rx_packets");
    let (local, server) = ((tb.cli_ip4, 0), (tb.srv_ip4, 9));
    tb.in_netns(&tb.cli_ns, move || -> std::io::Result<()> {
        let sock = UdpSocket::bind(local)?;
        for _ in 0..5 {
            sock.send_to(b"reflect me", server)?;
        }
        Ok(())
    })
    .expect("enter client namespace")
    .expect("send 5 datagrams");
    // xdp_tx swaps the MACs and sends each datagram straight back to the client.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = counter(&tb, &tb.cli_ns, &tb.cli_if, "rx_packets") - before;
        if got >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "client got {got} of 5 reflected frames"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn memcached_answers_udp_set_and_get() {
    let Some(tb) = Testbed::up("uxdp", 1, true) else {
        return;
    };
    assert!(tb.memcached_pid.is_some());
    let stored = tb
        .memcached_udp(b"set testbed 0 0 5\r\nhello\r\n")
        .expect("memcached UDP set");
    assert_eq!(String::from_utf8_lossy(&stored), "STORED\r\n");
    let got = tb
        .memcached_udp(b"get testbed\r\n")
        .expect("memcached UDP get");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "VALUE testbed 0 5\r\nhello\r\nEND\r\n"
    );
}

#[test]
fn down_leaves_nothing_and_is_idempotent() {
    let Some(tb) = Testbed::up("uxdp", 2, true) else {
        return;
    };
    let prefix = tb.prefix.clone();
    let namespaces = [tb.cli_ns.clone(), tb.srv_ns.clone()];
    let pid = tb.memcached_pid.expect("memcached pid");
    tb.down().expect("down");

    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = stdout(&list);
    for ns in &namespaces {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "{ns} still listed:\n{list}"
        );
    }
    // A killed daemon may linger as a zombie until its parent (init) reaps it: that is dead.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
    assert!(
        matches!(state, None | Some("Z")),
        "memcached pid {pid} still running: {stat}"
    );
    assert!(!std::path::Path::new("/run/userxdp").join(&prefix).exists());

    // The veth ends only ever lived inside the namespaces: nothing may appear on the host.
    let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
    let links = stdout(&links);
    assert!(
        !links.contains("veth-cli") && !links.contains("veth-srv"),
        "{links}"
    );

    // A second down is a quiet no-op.
    let again = Command::new("bash")
        .arg(support::script())
        .args(["down", "--name", &prefix])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
}

#[test]
fn bad_arguments_create_nothing() {
    for args in [
        &["up", "--queues", "0"][..],
        &["up", "--name", "bad/name"],
        &["up", "--bogus"],
        &["frobnicate"],
    ] {
        let out = Command::new("bash")
            .arg(support::script())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?} printed keys");
    }
}
