//! The load balancer end to end (root): `lb.o` in `run-datapath` on the server side of the
//! veth testbed, three backends in namespaces of their own that decapsulate IPIP and answer
//! the client directly (direct server return), and the client namespace as the router
//! between them. Flows land on the backend Maglev predicts, keep it after a backend is added,
//! and spread as the weights say. Traffic stays in 198.18.0.0/15 and our namespaces.

mod support;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Testbed;
use userxdp_datapath::lb::{BackendConfig, Flow, LbConfig, Plan, Proto, VipConfig};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 100);
const VIP_PORT: u16 = 5000;

fn backend_addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 10 + i, 2)
}

fn obj(name: &str) -> String {
    userxdp_programs::path(name)
        .expect("program built")
        .display()
        .to_string()
}

fn ip(args: &[&str]) {
    let o = support::run_bounded(Command::new("ip").args(args), Duration::from_secs(10))
        .expect("run ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Backend namespaces, deleted on drop (also when the test fails).
struct Backends {
    names: Vec<String>,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Backend `i`: namespace `<prefix>-b<i>`, veth `bk<i>` (router side, in the client
/// namespace) <-> `eth0`, 198.18.(10+i).1/.2, IPIP decapsulation on `eth0`, the VIP on lo,
/// and a default route back through the client namespace.
fn add_backend(tb: &Testbed, backends: &mut Backends, i: u8) {
    let ns = format!("{}-b{i}", tb.prefix);
    ip(&["netns", "add", &ns]);
    backends.names.push(ns.clone());
    let bk = format!("bk{i}");
    let router = format!("198.18.{}.1/24", 10 + i);
    let me = format!("{}/24", backend_addr(i));
    ip(&[
        "-n", &tb.cli_ns, "link", "add", &bk, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ]);
    ip(&["-n", &tb.cli_ns, "addr", "add", &router, "dev", &bk]);
    ip(&["-n", &tb.cli_ns, "link", "set", &bk, "up"]);
    ip(&["-n", &ns, "addr", "add", &me, "dev", "eth0"]);
    ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&["-n", &ns, "addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    ip(&[
        "-n",
        &ns,
        "route",
        "add",
        "default",
        "via",
        &format!("198.18.{}.1", 10 + i),
    ]);
    // This kernel has no ipip device (CONFIG_NET_IPIP unset): an XDP program on the backend's
    // interface strips the outer header instead, as XDP-based backends do.
    ip(&[
        "-n",
        &ns,
        "link",
        "set",
        "dev",
        "eth0",
        "xdp",
        "obj",
        &obj("xdp_decap"),
        "sec",
        "xdp",
    ]);
    for conf in ["all", "default", "eth0"] {
        sysctl(&ns, &format!("net.ipv4.conf.{conf}.rp_filter"), "0");
    }
}

fn sysctl(ns: &str, key: &str, value: &str) {
    ip(&[
        "netns",
        "exec",
        ns,
        "sysctl",
        "-q",
        "-w",
        &format!("{key}={value}"),
    ]);
}

/// Runs `f` on a thread inside network namespace `ns` (it must bound itself).
fn spawn_in(ns: &str, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
    std::thread::spawn(move || {
        // SAFETY: setns only reads the descriptor; it changes this thread's namespace alone.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        f()
    })
}

/// A UDP echo on VIP:5000 in backend `i` that appends its number to every reply.
fn echo_server(ns: &str, i: u8, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    spawn_in(ns, move || {
        let sock = UdpSocket::bind(SocketAddr::from((VIP, VIP_PORT))).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                buf[n] = i;
                let _ = sock.send_to(&buf[..n + 1], from);
            }
        }
    })
}

/// Sends one datagram per source port from the client and returns which backend answered
/// (None: no answer within 500 ms).
fn probe(tb: &Testbed, ports: Vec<u16>) -> Vec<Option<u8>> {
    let client = tb.cli_ip4;
    tb.in_netns(&tb.cli_ns, move || {
        ports
            .iter()
            .map(|&port| {
                let sock = UdpSocket::bind(SocketAddr::from((client, port))).ok()?;
                sock.connect(SocketAddr::from((VIP, VIP_PORT))).ok()?;
                sock.set_read_timeout(Some(Duration::from_millis(500)))
                    .ok()?;
                let mut buf = [0u8; 64];
                for _ in 0..2 {
                    sock.send(&port.to_be_bytes()).ok()?;
                    if let Ok(n) = sock.recv(&mut buf) {
                        if n == 3 && buf[..2] == port.to_be_bytes() {
                            return Some(buf[2]);
                        }
                    }
                }
                None
            })
            .collect()
    })
    .unwrap()
}

fn config(tb: &Testbed, backends: &[(u8, u32)]) -> LbConfig {
    let mac = support::format_mac(&tb.cli_mac);
    LbConfig {
        vips: vec![VipConfig {
            addr: IpAddr::V4(VIP),
            port: VIP_PORT,
            proto: Proto::Udp,
            hash_no_src_port: false,
            backends: backends
                .iter()
                .map(|&(i, weight)| BackendConfig {
                    addr: IpAddr::V4(backend_addr(i)),
                    weight,
                })
                .collect(),
        }],
        ..LbConfig::from_json(&format!(r#"{{"router_mac": "{mac}", "vips": []}}"#)).unwrap()
    }
}

/// Where the balancer runs and how `userxdp lb` reaches its maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `run-datapath`, configured through its control socket.
    Userspace,
    /// `userxdp attach` (native XDP), configured through maps pinned in a private bpffs.
    Kernel,
}

fn apply(mode: Mode, target: &std::path::Path, dir: &std::path::Path, cfg: &LbConfig) {
    let file = dir.join("lb.json");
    std::fs::write(&file, serde_json::to_string(cfg).unwrap()).unwrap();
    let how = match mode {
        Mode::Userspace => "--control",
        Mode::Kernel => "--pinned",
    };
    let o = Command::new(env!("CARGO_BIN_EXE_userxdp"))
        .args([
            "lb",
            "--config",
            file.to_str().unwrap(),
            how,
            target.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "userxdp lb: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A private bpffs mount (visible inside `ip netns exec`, which remounts only /sys),
/// unmounted and removed on drop.
struct BpfFs(std::path::PathBuf);

impl BpfFs {
    fn mount(path: std::path::PathBuf) -> BpfFs {
        std::fs::create_dir_all(&path).unwrap();
        let o = Command::new("mount")
            .args(["-t", "bpf", "bpf", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mount bpffs: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        BpfFs(path)
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn backend_of(addr: Option<IpAddr>) -> Option<u8> {
    match addr? {
        IpAddr::V4(a) => Some(a.octets()[2] - 10),
        IpAddr::V6(_) => None,
    }
}

struct Datapath(Child);

impl Drop for Datapath {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        if !err.is_empty() {
            eprintln!("run-datapath: {err}");
        }
    }
}

#[test]
fn lb_in_run_datapath_sends_flows_where_maglev_says_and_keeps_them() {
    lb_end_to_end(Mode::Userspace);
}

#[test]
fn lb_attached_in_the_kernel_does_the_same() {
    lb_end_to_end(Mode::Kernel);
}

fn lb_end_to_end(mode: Mode) {
    let opts = support::Options {
        queues: 1,
        // Kernel XDP_TX on veth reaches the peer only when the peer runs XDP too.
        cli_xdp: (mode == Mode::Kernel).then(|| obj("xdp_pass").into()),
        ..support::Options::default()
    };
    let Some(tb) = Testbed::up_with("uxlb", &opts) else {
        return;
    };
    let mut backends = Backends { names: Vec::new() };
    for i in 1..=3 {
        add_backend(&tb, &mut backends, i);
    }
    sysctl(&tb.cli_ns, "net.ipv4.ip_forward", "1");
    for conf in ["all", "default", tb.cli_if.as_str()] {
        sysctl(&tb.cli_ns, &format!("net.ipv4.conf.{conf}.rp_filter"), "0");
    }
    // The client reaches the VIP through the balancer's side of the testbed.
    ip(&[
        "-n",
        &tb.cli_ns,
        "route",
        "add",
        &format!("{VIP}/32"),
        "via",
        &tb.srv_ip4.to_string(),
    ]);

    let dir = std::env::temp_dir().join(format!("{}-work", tb.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    // The balancer in the server namespace: run-datapath with a control socket, or lb.o
    // attached in the kernel with its maps pinned in a private bpffs.
    let spawn = |program: &str, args: &[&str]| {
        Datapath(
            Command::new("ip")
                .args(["netns", "exec", &tb.srv_ns, program])
                .args(args)
                .args([
                    "--iface",
                    &tb.srv_if,
                    "--prog",
                    &obj("lb"),
                    "--duration",
                    "120",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let (bpffs, target, dp) = match mode {
        Mode::Userspace => {
            let sock = dir.join("ctl.sock");
            let dp = spawn(
                env!("CARGO_BIN_EXE_run-datapath"),
                &["--control", sock.to_str().unwrap()],
            );
            (None, sock, dp)
        }
        Mode::Kernel => {
            let fs = BpfFs::mount(dir.join("bpffs"));
            let pins = fs.0.join("lb");
            let dp = spawn(
                env!("CARGO_BIN_EXE_userxdp"),
                &["attach", "--pin-maps", pins.to_str().unwrap()],
            );
            (Some(fs), pins, dp)
        }
    };
    let ready = match mode {
        Mode::Userspace => target.clone(),
        Mode::Kernel => target.join("vip_map"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready.exists(), "{mode:?}: the balancer did not come up");

    let stop = Arc::new(AtomicBool::new(false));
    let servers: Vec<_> = (1..=3u8)
        .map(|i| echo_server(&backends.names[i as usize - 1], i, stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    // Weights 1:2:3 over backends 1..3 (backend 3 is added later, first 1:2).
    let first = config(&tb, &[(1, 1), (2, 2)]);
    apply(mode, &target, &dir, &first);
    let plan1 = Plan::build(&first).unwrap();
    let flow = |port: u16| Flow {
        src: IpAddr::V4(tb.cli_ip4),
        dst: IpAddr::V4(VIP),
        sport: port,
        dport: VIP_PORT,
        proto: 17,
    };
    let ports: Vec<u16> = (20_000..20_300).collect();
    let got = probe(&tb, ports.clone());
    let answered = got.iter().filter(|g| g.is_some()).count();
    assert!(answered >= 295, "only {answered} of 300 flows answered");
    for (port, g) in ports.iter().zip(&got) {
        if let Some(b) = g {
            assert_eq!(
                Some(*b),
                backend_of(plan1.predict(&flow(*port))),
                "flow from port {port} landed on backend {b}"
            );
        }
    }

    // A third backend: established flows stay where they are (connection table), new
    // flows follow the new Maglev table.
    let second = config(&tb, &[(1, 1), (2, 2), (3, 3)]);
    apply(mode, &target, &dir, &second);
    let again = probe(&tb, ports.clone());
    let kept = got
        .iter()
        .zip(&again)
        .filter(|(a, b)| a.is_some() && a == b)
        .count();
    assert!(
        kept >= answered - 3,
        "{kept} of {answered} established flows kept their backend"
    );
    let plan2 = Plan::build_with(
        &second,
        &[
            (1, IpAddr::V4(backend_addr(1))),
            (2, IpAddr::V4(backend_addr(2))),
        ],
    )
    .unwrap();
    let new_ports: Vec<u16> = (30_000..40_000).collect();
    let fresh = probe(&tb, new_ports.clone());
    let mut per_backend = [0usize; 4];
    let mut mispredicted = 0;
    for (port, g) in new_ports.iter().zip(&fresh) {
        if let Some(b) = g {
            per_backend[*b as usize] += 1;
            if Some(*b) != backend_of(plan2.predict(&flow(*port))) {
                mispredicted += 1;
            }
        }
    }
    let total: usize = per_backend.iter().sum();
    assert!(total >= 9_900, "{total} of 10,000 new flows answered");
    assert_eq!(mispredicted, 0, "new flows follow the new Maglev table");
    for (b, weight) in [(1usize, 1.0), (2, 2.0), (3, 3.0)] {
        let share = per_backend[b] as f64 / total as f64;
        let want = weight / 6.0;
        assert!(
            (share - want).abs() <= want * 0.10,
            "backend {b}: {share:.3} of flows, weight share {want:.3}: {per_backend:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap();
    }
    drop(dp);
    drop(bpffs);
    let _ = std::fs::remove_dir_all(&dir);
}
