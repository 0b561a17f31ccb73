//! Test support: the two-namespace veth testbed of `scripts/testbed.sh`, for integration tests.
//!
//! Include it with `mod support;` and start one testbed per test:
//!
//! ```ignore
//! let Some(tb) = support::Testbed::up("uxdp", 2, true) else { return }; // skipped, reason printed
//! assert!(tb.ping(&tb.cli_ns, &tb.srv_ip4.to_string(), 3));
//! ```
//!
//! Every external command is bounded in time. The testbed is torn down when the `Testbed` is
//! dropped, including while a failing test unwinds. Traffic stays inside the two namespaces
//! (198.18.0.0/15 only).
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Exit status by which `testbed.sh` says "this host cannot run the testbed" (skip, not fail).
const SKIP_STATUS: i32 = 77;
/// Upper bound for `testbed.sh up`/`down` (memcached start included).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one command run by [`Testbed::exec_in`].
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Testbed::memcached_udp`] waits for the reply datagram.
const UDP_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Distinguishes the testbeds of one test process.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);
/// Memcached UDP frame-header request ids.
static NEXT_REQUEST: AtomicU16 = AtomicU16::new(1);

/// Path of the testbed script in this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh")
}

/// What to bring up besides the two namespaces and the veth pair.
#[derive(Debug, Clone)]
pub struct Options {
    /// RX and TX queues on each veth end (1..=64).
    pub queues: u32,
    /// Start memcached (UDP and TCP port 11211) in the server namespace.
    pub memcached: bool,
    /// Enable IPv6 (2001:2::1 and 2001:2::2); off by default so that no RS/MLD frames appear.
    pub ipv6: bool,
    /// XDP object (section `xdp`, normally an XDP_PASS program) to attach natively to the client
    /// veth end: needed for kernel XDP_TX/XDP_REDIRECT frames from the server side to reach
    /// the client at once (see `scripts/testbed.sh`).
    pub cli_xdp: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queues: 2,
            memcached: false,
            ipv6: false,
            cli_xdp: None,
        }
    }
}

/// A running testbed: namespaces `<prefix>-cli` and `<prefix>-srv` joined by the veth pair
/// `veth-cli` <-> `veth-srv`. Fields come from the script's `KEY=value` output.
#[derive(Debug)]
pub struct Testbed {
    /// Unique name prefix (`<name_prefix>-<pid>-<n>`), the script's `--name`.
    pub prefix: String,
    /// Client namespace (`<prefix>-cli`).
    pub cli_ns: String,
    /// Server namespace (`<prefix>-srv`).
    pub srv_ns: String,
    /// Client veth end, inside `cli_ns`.
    pub cli_if: String,
    /// Server veth end, inside `srv_ns`.
    pub srv_if: String,
    /// MAC address of `cli_if`.
    pub cli_mac: [u8; 6],
    /// MAC address of `srv_if`.
    pub srv_mac: [u8; 6],
    /// IPv4 address of `cli_if`.
    pub cli_ip4: Ipv4Addr,
    /// IPv4 address of `srv_if`.
    pub srv_ip4: Ipv4Addr,
    /// IPv6 address of `cli_if` (None: IPv6 disabled in the namespaces).
    pub cli_ip6: Option<Ipv6Addr>,
    /// IPv6 address of `srv_if`.
    pub srv_ip6: Option<Ipv6Addr>,
    /// RX and TX queues on each veth end.
    pub queues: u32,
    /// memcached UDP/TCP port on `srv_ip4` (None: no memcached).
    pub memcached_port: Option<u16>,
    /// memcached daemon pid.
    pub memcached_pid: Option<u32>,
    /// Every `KEY=value` line the script printed.
    pub keys: HashMap<String, String>,
    torn_down: bool,
}

impl Testbed {
    /// Brings up a fresh testbed named `<name_prefix>-<pid>-<n>` with `queues` RX/TX queues per
    /// veth end, and memcached in the server namespace when `memcached`. Returns None, after
    /// printing why, when this host cannot run it (not root, a tool missing). Panics when the
    /// script fails for another reason (after tearing down what it made).
    pub fn up(name_prefix: &str, queues: u32, memcached: bool) -> Option<Testbed> {
        let opts = Options {
            queues,
            memcached,
            ..Options::default()
        };
        Self::up_with(name_prefix, &opts)
    }

    /// [`Testbed::up`] with every option of `testbed.sh up`.
    pub fn up_with(name_prefix: &str, opts: &Options) -> Option<Testbed> {
        if let Some(tool) = ["bash", "ip", "ping"].into_iter().find(|t| !on_path(t)) {
            let pkg = match tool {
                "ping" => "iputils-ping",
                "ip" => "iproute2",
                _ => tool,
            };
            eprintln!("skipped: '{tool}' not found (Debian package {pkg}; scripts/setup.sh)");
            return None;
        }
        let prefix = format!(
            "{name_prefix}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let mut args = vec![
            "up".to_string(),
            "--name".into(),
            prefix.clone(),
            "--queues".into(),
            opts.queues.to_string(),
        ];
        if opts.memcached {
            args.push("--memcached".into());
        }
        if opts.ipv6 {
            args.push("--ipv6".into());
        }
        if let Some(obj) = &opts.cli_xdp {
            args.push("--cli-xdp".into());
            args.push(obj.display().to_string());
        }
        let out = run_script(&args);
        match out.status.code() {
            Some(0) => {}
            Some(SKIP_STATUS) => {
                eprintln!("skipped: {}", String::from_utf8_lossy(&out.stderr).trim());
                return None;
            }
            _ => {
                // The script tears down after its own failures; this also covers a timeout.
                let down = run_script(&["down".into(), "--name".into(), prefix.clone()]);
                panic!(
                    "testbed.sh up --name {prefix} failed ({}):\n{}\n(down: {})",
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                    down.status
                );
            }
        }
        eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim_end());
        let keys = parse_keys(&String::from_utf8_lossy(&out.stdout));
        // Construct first so that Drop tears down even if a field fails to parse below.
        let mut tb = Testbed {
            prefix,
            cli_ns: String::new(),
            srv_ns: String::new(),
            cli_if: String::new(),
            srv_if: String::new(),
            cli_mac: [0; 6],
            srv_mac: [0; 6],
            cli_ip4: Ipv4Addr::UNSPECIFIED,
            srv_ip4: Ipv4Addr::UNSPECIFIED,
            cli_ip6: None,
            srv_ip6: None,
            queues: 0,
            memcached_port: None,
            memcached_pid: None,
            keys,
            torn_down: false,
        };
        tb.cli_ns = tb.key("CLI_NS").to_string();
        tb.srv_ns = tb.key("SRV_NS").to_string();
        tb.cli_if = tb.key("CLI_IF").to_string();
        tb.srv_if = tb.key("SRV_IF").to_string();
        tb.cli_mac = parse_mac(tb.key("CLI_MAC"));
        tb.srv_mac = parse_mac(tb.key("SRV_MAC"));
        tb.cli_ip4 = tb.parsed("CLI_IP4");
        tb.srv_ip4 = tb.parsed("SRV_IP4");
        tb.cli_ip6 = tb.parsed_opt("CLI_IP6");
        tb.srv_ip6 = tb.parsed_opt("SRV_IP6");
        tb.queues = tb.parsed("QUEUES");
        tb.memcached_port = tb.parsed_opt("MEMCACHED_PORT");
        tb.memcached_pid = tb.parsed_opt("MEMCACHED_PID");
        Some(tb)
    }

    /// Tears the testbed down now; Err carries the script's stderr.
    pub fn down(mut self) -> Result<(), String> {
        self.teardown()
    }

    /// Runs `cmd` (program and arguments) inside namespace `ns` with `ip netns exec`, killed
    /// after [`EXEC_TIMEOUT`].
    pub fn exec_in(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(cmd);
        run_bounded(&mut c, EXEC_TIMEOUT)
            .unwrap_or_else(|e| panic!("ip netns exec {ns} {cmd:?}: {e}"))
    }

    /// Pings `addr` (IPv4 or IPv6) from namespace `from_ns`; true when all `count` echoes are
    /// answered. Bounded by a deadline of `count` + 2 seconds.
    pub fn ping(&self, from_ns: &str, addr: &str, count: u32) -> bool {
        let count_s = count.to_string();
        let deadline = (count + 2).to_string();
        let out = self.exec_in(
            from_ns,
            &[
                "ping", "-n", "-q", "-c", &count_s, "-i", "0.2", "-W", "1", "-w", &deadline, addr,
            ],
        );
        if !out.status.success() {
            eprintln!(
                "ping {addr} from {from_ns} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    /// Runs `f` on a thread that has entered namespace `ns` (network namespace only: the mount
    /// namespace, and so the host's /sys and bpffs, stay the host's). `f` must bound itself.
    pub fn in_netns<R: Send>(&self, ns: &str, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        let file = File::open(Path::new("/run/netns").join(ns))?;
        thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns only reads the descriptor, which `file` keeps open; it changes
                // the namespace of this thread alone (a scoped thread that ends after `f`).
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other(format!("thread in namespace {ns} panicked")))?
        })
    }

    /// Whether an XDP program is attached to the server's veth end.
    pub fn srv_xdp_attached(&self) -> bool {
        let o = self.exec_in(&self.srv_ns, &["ip", "link", "show", "dev", &self.srv_if]);
        String::from_utf8_lossy(&o.stdout).contains("prog/xdp")
    }

    /// Whether the server namespace has a link called `name` (the datapath's TAP).
    pub fn srv_has_link(&self, name: &str) -> bool {
        self.exec_in(&self.srv_ns, &["ip", "link", "show", name])
            .status
            .success()
    }

    /// Moves the server's IPv4 address from its veth end to `dev` (the datapath's TAP), so
    /// that the kernel's replies leave through the datapath.
    pub fn move_srv_address_to(&self, dev: &str) {
        let cidr = format!("{}/24", self.srv_ip4);
        for cmd in [
            &["ip", "addr", "del", &cidr, "dev", &self.srv_if][..],
            &["ip", "addr", "add", &cidr, "dev", dev][..],
        ] {
            let o = self.exec_in(&self.srv_ns, cmd);
            assert!(
                o.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    /// Sends one memcached UDP request (ASCII command bytes, without the 8-byte frame header)
    /// from the client namespace to the server's memcached and returns the reply payload
    /// (single-datagram replies only). Waits at most 2 s for the reply.
    pub fn memcached_udp(&self, request: &[u8]) -> io::Result<Vec<u8>> {
        let port = self
            .memcached_port
            .ok_or_else(|| io::Error::other("testbed was started without memcached"))?;
        let server = SocketAddr::from((self.srv_ip4, port));
        let local = SocketAddr::from((self.cli_ip4, 0));
        let id = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
        self.in_netns(&self.cli_ns, move || {
            let sock = UdpSocket::bind(local)?;
            sock.connect(server)?;
            sock.set_read_timeout(Some(UDP_REPLY_TIMEOUT))?;
            // Frame header: request id, sequence number, datagram count, reserved.
            let mut msg = [id.to_be_bytes(), [0, 0], [0, 1], [0, 0]].concat();
            msg.extend_from_slice(request);
            sock.send(&msg)?;
            let deadline = Instant::now() + UDP_REPLY_TIMEOUT;
            let mut buf = vec![0u8; 65536];
            loop {
                let n = sock.recv(&mut buf)?;
                // A reply to an earlier, timed-out request could arrive late: skip it.
                if n >= 8 && buf[..2] == id.to_be_bytes() {
                    return Ok(buf[8..n].to_vec());
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no matching reply"));
                }
            }
        })?
    }

    fn key(&self, k: &str) -> &str {
        self.keys
            .get(k)
            .unwrap_or_else(|| panic!("testbed.sh printed no {k}= line"))
    }

    fn parsed<T: std::str::FromStr>(&self, k: &str) -> T {
        let v = self.key(k);
        v.parse()
            .unwrap_or_else(|_| panic!("testbed.sh printed a bad {k}={v}"))
    }

    fn parsed_opt<T: std::str::FromStr>(&self, k: &str) -> Option<T> {
        match self.key(k) {
            "" => None,
            _ => Some(self.parsed(k)),
        }
    }

    fn teardown(&mut self) -> Result<(), String> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let out = run_script(&["down".into(), "--name".into(), self.prefix.clone()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "testbed.sh down --name {} failed ({}): {}",
                self.prefix,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        if let Err(e) = self.teardown() {
            eprintln!("{e}");
        }
    }
}

/// Runs `testbed.sh ARGS`, bounded by [`SCRIPT_TIMEOUT`]. A spawn failure becomes a failed
/// `Output` (bash was checked before), never a panic, so Drop can use it.
fn run_script(args: &[String]) -> Output {
    let mut c = Command::new("bash");
    c.arg(script()).args(args);
    run_bounded(&mut c, SCRIPT_TIMEOUT).unwrap_or_else(|e| Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
        stdout: Vec::new(),
        stderr: format!("cannot run {}: {e}", script().display()).into_bytes(),
    })
}

/// Runs `cmd` with stdout/stderr captured; after `timeout` its whole process group is killed
/// (SIGKILL) and the output so far is returned with the killed status.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so a timeout kills grandchildren (ip netns exec's child) too.
        .process_group(0);
    let mut child = cmd.spawn()?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            kill_group(&child);
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let mut stderr = stderr.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n(killed after {timeout:?})\n").as_bytes());
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            // A read error only truncates diagnostics.
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

fn kill_group(child: &Child) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; -pgid names the process group this
    // function's caller created for its own child (process_group(0)), nothing else.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(tool).is_file())
}

/// `KEY=value` lines into a map; other lines are ignored.
fn parse_keys(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Parses `aa:bb:cc:dd:ee:ff`; panics (test support) on anything else.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    assert_eq!(parts.len(), 6, "bad MAC address {s:?}");
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC address {s:?}"));
    }
    mac
}

/// Formats a MAC address as the kernel does (`aa:bb:cc:dd:ee:ff`).
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
