//! `run-datapath` on AF_XDP, end to end on the veth testbed (root only): traffic from the
//! client namespace through the datapath in the server namespace, for every verdict path.
//! Every test tears its namespaces down, also when it fails, and ends with nothing attached.

mod support;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::Testbed;

/// The TAP the datapath creates in the server namespace.
const TAP: &str = "uxtap0";

fn obj(name: &str) -> String {
    userxdp_programs::path(name)
        .expect("program built")
        .display()
        .to_string()
}

/// A `run-datapath` child in the server namespace; SIGKILLed on drop.
struct Datapath {
    child: Option<Child>,
}

impl Datapath {
    fn start(tb: &Testbed, args: &[&str]) -> Datapath {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &tb.srv_ns])
            .arg(env!("CARGO_BIN_EXE_run-datapath"))
            .args(["--iface", &tb.srv_if])
            .args(args)
            // Bounded even if the test forgets it.
            .args(["--duration", "60", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        Datapath {
            child: Some(cmd.spawn().expect("spawn run-datapath")),
        }
    }

    /// Waits until `ready` holds (or the child exits), at most 20 s.
    fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if ready() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let (out, err) = self.output();
                panic!("run-datapath exited ({status}) before {what}:\n{out}\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    /// Stops it with SIGTERM and returns the final JSON summary.
    fn stop(mut self) -> serde_json::Value {
        let child = self.child.as_mut().unwrap();
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's group.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (out, err) = self.output();
        let line = out
            .lines()
            .rev()
            .find(|l| l.contains("\"summary\""))
            .unwrap_or_else(|| panic!("no summary:\n{out}\n{err}"));
        serde_json::from_str(line).unwrap()
    }

    fn output(&mut self) -> (String, String) {
        let child = self.child.as_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let mut out = String::new();
        let mut err = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).ok();
        child.stderr.take().unwrap().read_to_string(&mut err).ok();
        (out, err)
    }

    /// Kills it with SIGKILL: no chance to clean up.
    fn kill_hard(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: as in stop().
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // SAFETY: as in stop().
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

fn steering_attached(tb: &Testbed, dp: &mut Datapath) {
    dp.wait_for("the steering program", || tb.srv_xdp_attached());
}

/// Moves the server's address from the veth to the TAP, so that the kernel's replies go out
/// through the datapath.
fn address_on_tap(tb: &Testbed, dp: &mut Datapath) {
    dp.wait_for("the TAP", || tb.srv_has_link(TAP));
    tb.move_srv_address_to(TAP);
}

/// Sends `count` UDP datagrams from the client namespace to `port` on the server and returns
/// the replies received (each within 1 s).
fn udp_exchange(tb: &Testbed, port: u16, count: usize) -> Vec<Vec<u8>> {
    let server = SocketAddr::from((tb.srv_ip4, port));
    let local = SocketAddr::from((tb.cli_ip4, 0));
    tb.in_netns(&tb.cli_ns, move || {
        let sock = UdpSocket::bind(local).unwrap();
        sock.connect(server).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut replies = Vec::new();
        let mut buf = [0u8; 2048];
        for i in 0..count {
            sock.send(format!("hello {i}").as_bytes()).unwrap();
            if let Ok(n) = sock.recv(&mut buf) {
                replies.push(buf[..n].to_vec());
            }
        }
        replies
    })
    .unwrap()
}

#[test]
fn pass_reaches_the_kernel_through_the_tap_and_replies_come_back() {
    let Some(tb) = Testbed::up("uxdpe", 2, false) else {
        return;
    };
    let mut dp = Datapath::start(
        &tb,
        &["--queues", "0-1", "--prog", &obj("xdp_pass"), "--tap", TAP],
    );
    steering_attached(&tb, &mut dp);
    address_on_tap(&tb, &mut dp);
    assert!(
        tb.ping(&tb.cli_ns, &tb.srv_ip4.to_string(), 3),
        "ping through the datapath"
    );

    // A UDP socket in the server's kernel stack answers through the TAP and the datapath.
    let srv = SocketAddr::from((tb.srv_ip4, 5555));
    let echo = std::thread::scope(|s| {
        let server = s.spawn(|| {
            tb.in_netns(&tb.srv_ns, move || {
                let sock = UdpSocket::bind(srv).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 2048];
                for _ in 0..3 {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        break;
                    };
                    sock.send_to(&buf[..n], from).unwrap();
                }
            })
            .unwrap()
        });
        std::thread::sleep(Duration::from_millis(300));
        let replies = udp_exchange(&tb, 5555, 3);
        server.join().unwrap();
        replies
    });
    assert_eq!(echo.len(), 3, "UDP echoes through the kernel socket");
    assert_eq!(echo[0], b"hello 0");

    let s = dp.stop();
    let t = &s["total"];
    assert!(t["pass"].as_u64().unwrap() >= 6, "{s}");
    assert!(t["egress_tx"].as_u64().unwrap() >= 6, "{s}");
    assert_eq!(t["errors"], 0, "{s}");
    assert!(!tb.srv_xdp_attached(), "steering detached on SIGTERM");
}

#[test]
fn xdp_tx_reflects_and_the_egress_program_sees_the_kernels_replies() {
    let Some(tb) = Testbed::up("uxdpt", 2, false) else {
        return;
    };
    // xdp_parse reflects UDP to port 7 (addresses and ports swapped) with XDP_TX, drops TCP
    // to port 9, passes the rest; tc_egress counts what the kernel sends.
    let mut dp = Datapath::start(
        &tb,
        &[
            "--queues",
            "0-1",
            "--prog",
            &obj("xdp_parse"),
            "--tap",
            TAP,
            "--egress-prog",
            &obj("tc_egress"),
        ],
    );
    steering_attached(&tb, &mut dp);
    address_on_tap(&tb, &mut dp);
    let replies = udp_exchange(&tb, 7, 20);
    assert_eq!(replies.len(), 20, "every datagram reflected by XDP_TX");
    assert_eq!(replies[3], b"hello 3");
    assert!(
        tb.ping(&tb.cli_ns, &tb.srv_ip4.to_string(), 2),
        "ICMP passed to the kernel"
    );
    let s = dp.stop();
    let t = &s["total"];
    assert!(t["tx"].as_u64().unwrap() >= 20, "{s}");
    assert!(t["egress_rx"].as_u64().unwrap() >= 2, "{s}");
    assert!(!tb.srv_xdp_attached());
}

#[test]
fn xdp_drop_drops_and_counts_and_sigkill_leaves_nothing_attached() {
    let Some(tb) = Testbed::up("uxdpd", 2, false) else {
        return;
    };
    let mut dp = Datapath::start(&tb, &["--queues", "0-1", "--prog", &obj("xdp_drop")]);
    steering_attached(&tb, &mut dp);
    assert!(!tb.ping(&tb.cli_ns, &tb.srv_ip4.to_string(), 2), "dropped");
    // A second datapath on the same interface is refused, naming the program in the way.
    let second = tb.exec_in(
        &tb.srv_ns,
        &[
            env!("CARGO_BIN_EXE_run-datapath"),
            "--iface",
            &tb.srv_if,
            "--prog",
            &obj("xdp_pass"),
            "--duration",
            "5",
        ],
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(err.contains("already attached"), "{err}");
    assert!(tb.srv_xdp_attached(), "the first datapath is untouched");
    let before = Instant::now();
    dp.kill_hard();
    // The bpf_link dies with the process: nothing stays attached.
    while tb.srv_xdp_attached() && before.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !tb.srv_xdp_attached(),
        "steering left attached after SIGKILL"
    );
    // And the interface works again without the datapath.
    assert!(tb.ping(&tb.cli_ns, &tb.srv_ip4.to_string(), 2));
}

#[test]
fn drop_counters_match_what_was_sent_with_busy_polling() {
    let Some(tb) = Testbed::up("uxdpc", 1, false) else {
        return;
    };
    // Preferred busy polling: the worker drives the queue itself.
    let mut dp = Datapath::start(&tb, &["--prog", &obj("xdp_drop"), "--busy-poll"]);
    steering_attached(&tb, &mut dp);
    // Static neighbour entry: no ARP needed for datagrams that will all be dropped.
    let mac = support::format_mac(&tb.srv_mac);
    let ip = tb.srv_ip4.to_string();
    let o = tb.exec_in(
        &tb.cli_ns,
        &[
            "ip",
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "dev",
            &tb.cli_if,
            "nud",
            "permanent",
        ],
    );
    assert!(o.status.success());
    let sent = 500;
    let server = SocketAddr::from((tb.srv_ip4, 9999));
    let local = SocketAddr::from((tb.cli_ip4, 0));
    tb.in_netns(&tb.cli_ns, move || {
        let sock = UdpSocket::bind(local).unwrap();
        for i in 0..sent {
            sock.send_to(&(i as u32).to_be_bytes(), server).unwrap();
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let s = dp.stop();
    let t = &s["total"];
    assert_eq!(t["rx"], sent, "{s}");
    assert_eq!(t["drop"], sent, "{s}");
}
