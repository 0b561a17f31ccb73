//! `cache.o` (programs/cache.bpf.c) end to end in front of a real memcached (root only), in
//! two modes with the same checks:
//!
//! - userspace: `run-datapath` runs the object on AF_XDP (2 queues, TAP exception path, the
//!   egress program on what the kernel sends back through the TAP);
//! - kernel: `userxdp attach` attaches the same object natively to the server's veth (XDP
//!   link + tcx egress link), with an XDP_PASS program on the client's veth end so that
//!   kernel XDP_TX frames reach the client at once (see scripts/testbed.sh).
//!
//! Checks: SET/GET/DELETE (ASCII) and SET/GET/GETK (binary) through a memcached UDP client;
//! cached GETs are answered by the datapath (memcached's own `get_hits`, read over TCP inside
//! the server namespace, which never crosses the XDP path, does not grow while
//! `cache_stats.hits` does); and the
//! no-stale-value invariant under concurrent clients: a GET sent after a SET was acknowledged
//! never returns an older value. The concurrent check uses `mcload --check-stale` too when
//! that binary has been built next to this test.
//!
//! Every test tears its namespaces down, also when it fails; child processes are killed (by
//! process group) on drop; pinned maps die with the `userxdp attach` process.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use support::{Options, Testbed};

/// The TAP the userspace datapath creates in the server namespace.
const TAP: &str = "uxtap0";
/// Names of the five per-CPU counters of `cache_stats`, in order.
const COUNTERS: [&str; 5] = ["hits", "misses", "invalidations", "fills", "passes"];
/// How long a single request waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);

fn obj(name: &str) -> PathBuf {
    userxdp_programs::path(name).expect("program built")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Where the cache runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Userspace,
    Kernel,
}

/// A child process in its own process group; SIGKILLed (group) on drop.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        Proc {
            child: cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}")),
            name,
        }
    }

    /// Panics with its output if it has exited.
    fn check_alive(&mut self, waiting_for: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let (out, err) = self.output();
            panic!(
                "{} exited ({status}) while waiting for {waiting_for}:\n{out}\n{err}",
                self.name
            );
        }
    }

    fn output(&mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut out).ok();
        }
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).ok();
        }
        (out, err)
    }

    /// SIGTERM, then waits (at most 10 s) and returns stdout and stderr.
    fn stop(mut self) -> (String, String) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.output()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: as in stop().
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Waits until `ready` holds, at most 20 s, failing early if `p` exits.
fn wait_for(p: &mut Proc, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        p.check_alive(what);
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The cache running in one of the two modes, with a way to read its counters.
struct Cache {
    mode: Mode,
    proc: Option<Proc>,
    /// Userspace: the control socket.
    control: PathBuf,
    /// Kernel: the bpffs directory holding the pinned maps.
    pin_dir: PathBuf,
}

impl Cache {
    fn start(tb: &Testbed, mode: Mode) -> Cache {
        let cache = obj("cache").display().to_string();
        let tag = format!("{}-{}", std::process::id(), tb.prefix);
        let control = std::env::temp_dir().join(format!("uxcache-{tag}.sock"));
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/uxcache-{tag}"));
        let mut c = Cache {
            mode,
            proc: None,
            control,
            pin_dir,
        };
        match mode {
            Mode::Userspace => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &tb.srv_ns])
                    .arg(env!("CARGO_BIN_EXE_run-datapath"))
                    .args(["--iface", &tb.srv_if, "--queues", "0-1"])
                    .args(["--prog", &cache, "--egress-prog", &cache, "--tap", TAP])
                    .arg("--control")
                    .arg(&c.control)
                    // Bounded even if the test never stops it.
                    .args(["--duration", "90", "--json"]);
                let p = c.proc.insert(Proc::spawn("run-datapath", &mut cmd));
                wait_for(p, "the steering program", || tb.srv_xdp_attached());
                wait_for(p, "the TAP", || tb.srv_has_link(TAP));
                // The kernel's replies must leave through the TAP (and the egress program).
                tb.move_srv_address_to(TAP);
                let control = c.control.clone();
                wait_for(p, "the control socket", || control.exists());
            }
            Mode::Kernel => {
                // Only the network namespace: the maps are pinned in the host's bpffs, where
                // this test reads them.
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{}", tb.srv_ns))
                    .arg(env!("CARGO_BIN_EXE_userxdp"))
                    .args(["attach", "--iface", &tb.srv_if, "--prog", &cache])
                    .args(["--egress", "cache_egress", "--duration", "90"])
                    .arg("--pin-maps")
                    .arg(&c.pin_dir);
                let p = c.proc.insert(Proc::spawn("userxdp attach", &mut cmd));
                let stats = c.pin_dir.join("cache_stats");
                wait_for(p, "the pinned maps", || stats.exists());
                wait_for(p, "the XDP link", || tb.srv_xdp_attached());
                // The tcx egress link comes right after the XDP link.
                std::thread::sleep(Duration::from_millis(300));
                p.check_alive("the egress link");
            }
        }
        c
    }

    /// Sums of the per-CPU `cache_stats` counters.
    fn stats(&self) -> HashMap<&'static str, u64> {
        let per_cpu: Vec<Vec<u8>> = match self.mode {
            Mode::Userspace => {
                let out = Command::new(env!("CARGO_BIN_EXE_userxdp"))
                    .arg("ctl")
                    .arg("--control")
                    .arg(&self.control)
                    .args(["dump", "cache_stats"])
                    .output()
                    .expect("run userxdp ctl");
                assert!(
                    out.status.success(),
                    "userxdp ctl dump cache_stats: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let v: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("ctl prints JSON");
                let hex = v["dump"]["entries"][0]["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no cache_stats value in {v}"));
                let bytes = decode_hex(hex);
                bytes.chunks(40).map(<[u8]>::to_vec).collect()
            }
            Mode::Kernel => {
                let map = MapHandle::from_pinned_path(self.pin_dir.join("cache_stats"))
                    .expect("open pinned cache_stats");
                map.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
                    .expect("lookup cache_stats")
                    .expect("cache_stats[0] exists")
            }
        };
        let mut sums = HashMap::new();
        for cpu in per_cpu {
            assert!(cpu.len() >= 40, "cache_stats value of {} bytes", cpu.len());
            for (i, name) in COUNTERS.iter().enumerate() {
                let v = u64::from_ne_bytes(cpu[i * 8..i * 8 + 8].try_into().unwrap());
                *sums.entry(*name).or_insert(0) += v;
            }
        }
        sums
    }

    fn stop(mut self) -> String {
        let (out, err) = self.proc.take().map(Proc::stop).unwrap_or_default();
        format!("{out}\n{err}")
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // Kill first: the attach process unpins its maps; what a SIGKILL left is removed here.
        drop(self.proc.take());
        if self.mode == Mode::Kernel && self.pin_dir.exists() {
            if let Ok(entries) = std::fs::read_dir(&self.pin_dir) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let _ = std::fs::remove_dir(&self.pin_dir);
        }
        let _ = std::fs::remove_file(&self.control);
    }
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// memcached's own `get_hits`, asked over TCP from inside the server namespace (loopback
/// routing: never through the veth, the XDP program or the datapath).
fn memcached_get_hits(tb: &Testbed) -> u64 {
    let server = SocketAddr::from((tb.srv_ip4, tb.memcached_port.expect("memcached")));
    tb.in_netns(&tb.srv_ns, move || {
        let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"stats\r\n")?;
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while !text.ends_with(b"END\r\n") {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("STAT get_hits "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no get_hits in {text:?}")))
    })
    .expect("enter the server namespace")
    .expect("memcached stats over TCP")
}

/// A memcached ASCII client over UDP (one socket, bounded waits, late replies skipped).
struct McClient {
    sock: UdpSocket,
    next_id: u16,
}

impl McClient {
    /// Must be called on a thread inside the client namespace.
    fn connect(tb_server: SocketAddr, local: SocketAddr, first_id: u16) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(local)?;
        sock.connect(tb_server)?;
        sock.set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(McClient {
            sock,
            next_id: first_id,
        })
    }

    /// Sends `cmd` and returns the reply payload, or None on timeout.
    fn request(&mut self, cmd: &[u8]) -> Option<Vec<u8>> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut msg = [id.to_be_bytes(), [0, 0], [0, 1], [0, 0]].concat();
        msg.extend_from_slice(cmd);
        self.sock.send(&msg).ok()?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let n = self.sock.recv(&mut buf).ok()?;
            if n >= 8 && buf[..2] == id.to_be_bytes() {
                return Some(buf[8..n].to_vec());
            }
        }
        None
    }

    fn set(&mut self, key: &str, flags: u32, value: &[u8]) -> Option<bool> {
        let mut cmd = format!("set {key} {flags} 0 {}\r\n", value.len()).into_bytes();
        cmd.extend_from_slice(value);
        cmd.extend_from_slice(b"\r\n");
        let r = self.request(&cmd)?;
        Some(r == b"STORED\r\n")
    }

    /// `Some(None)`: a miss; `Some(Some((flags, value)))`: a hit; `None`: no (valid) reply.
    fn get(&mut self, key: &str) -> Option<Option<(u32, Vec<u8>)>> {
        let r = self.request(format!("get {key}\r\n").as_bytes())?;
        if r == b"END\r\n" {
            return Some(None);
        }
        let text_end = r.windows(2).position(|w| w == b"\r\n")?;
        let head = std::str::from_utf8(&r[..text_end]).ok()?;
        let mut f = head.split(' ');
        let (Some("VALUE"), Some(k), Some(flags), Some(len), None) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return None;
        };
        let len: usize = len.parse().ok()?;
        let data = r.get(text_end + 2..text_end + 2 + len)?.to_vec();
        if k != key || r.get(text_end + 2 + len..)? != b"\r\nEND\r\n" {
            return None;
        }
        Some(Some((flags.parse().ok()?, data)))
    }

    fn delete(&mut self, key: &str) -> Option<Vec<u8>> {
        self.request(format!("delete {key}\r\n").as_bytes())
    }

    /// A binary-protocol request; returns (opcode, status, extras, key, value) of the reply.
    fn binary(&mut self, op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Option<BinReply> {
        let body = (extras.len() + key.len() + value.len()) as u32;
        let mut req = vec![0x80, op];
        req.extend_from_slice(&(key.len() as u16).to_be_bytes());
        req.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
        req.extend_from_slice(&body.to_be_bytes());
        req.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // opaque
        req.extend_from_slice(&[0; 8]); // cas
        req.extend_from_slice(extras);
        req.extend_from_slice(key);
        req.extend_from_slice(value);
        let r = self.request(&req)?;
        if r.len() < 24 || r[0] != 0x81 || r[12..16] != 0x1234_5678u32.to_be_bytes() {
            return None;
        }
        let klen = u16::from_be_bytes([r[2], r[3]]) as usize;
        let elen = r[4] as usize;
        let body = u32::from_be_bytes(r[8..12].try_into().ok()?) as usize;
        let rest = r.get(24..24 + body)?;
        Some(BinReply {
            opcode: r[1],
            status: u16::from_be_bytes([r[6], r[7]]),
            extras: rest.get(..elen)?.to_vec(),
            key: rest.get(elen..elen + klen)?.to_vec(),
            value: rest.get(elen + klen..)?.to_vec(),
        })
    }
}

/// A binary-protocol reply.
#[derive(Debug, PartialEq, Eq)]
struct BinReply {
    opcode: u8,
    status: u16,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// Runs `f` with a client in the client namespace.
fn with_client<R: Send>(tb: &Testbed, f: impl FnOnce(&mut McClient) -> R + Send) -> R {
    let server = SocketAddr::from((tb.srv_ip4, tb.memcached_port.expect("memcached")));
    let local = SocketAddr::from((tb.cli_ip4, 0));
    tb.in_netns(&tb.cli_ns, move || {
        let mut c = McClient::connect(server, local, 1).expect("client socket");
        f(&mut c)
    })
    .expect("enter the client namespace")
}

/// SET/GET/DELETE; cached GETs never reach memcached.
fn basic_checks(tb: &Testbed, cache: &Cache) {
    let hits0 = memcached_get_hits(tb);
    let stats0 = cache.stats();
    let key = "e2e:basic";
    let results = with_client(tb, |c| {
        let mut r = Vec::new();
        r.push(format!("{:?}", c.set(key, 7, b"first value")));
        // Miss: memcached answers, the reply fills the cache on its way out.
        r.push(format!("{:?}", c.get(key)));
        // Hits: answered by the datapath.
        for _ in 0..3 {
            r.push(format!("{:?}", c.get(key)));
        }
        r
    });
    let want_hit = format!("{:?}", Some(Some((7u32, b"first value".to_vec()))));
    assert_eq!(results[0], "Some(true)", "SET stored");
    for (i, got) in results[1..].iter().enumerate() {
        assert_eq!(got, &want_hit, "GET #{i}");
    }
    let hits1 = memcached_get_hits(tb);
    let stats1 = cache.stats();
    assert_eq!(
        hits1 - hits0,
        1,
        "memcached served only the first GET (stats {stats0:?} -> {stats1:?})"
    );
    assert_eq!(stats1["hits"] - stats0["hits"], 3, "{stats1:?}");
    assert_eq!(stats1["fills"] - stats0["fills"], 1, "{stats1:?}");
    assert!(stats1["misses"] > stats0["misses"], "{stats1:?}");

    // A write invalidates: the next GET sees the new value, then it is cached again.
    let (stored, after_set, cached) =
        with_client(tb, |c| (c.set(key, 9, b"second"), c.get(key), c.get(key)));
    assert_eq!(stored, Some(true));
    assert_eq!(
        after_set,
        Some(Some((9, b"second".to_vec()))),
        "no stale value"
    );
    assert_eq!(cached, Some(Some((9, b"second".to_vec()))));
    let stats2 = cache.stats();
    assert!(
        stats2["invalidations"] > stats1["invalidations"],
        "{stats2:?}"
    );
    assert_eq!(stats2["hits"] - stats1["hits"], 1, "{stats2:?}");
    assert_eq!(
        memcached_get_hits(tb) - hits1,
        1,
        "only the GET after the SET"
    );

    // DELETE: gone from memcached and from the cache.
    let (deleted, after_delete) = with_client(tb, |c| (c.delete(key), c.get(key)));
    assert_eq!(deleted.as_deref(), Some(&b"DELETED\r\n"[..]));
    assert_eq!(after_delete, Some(None), "a deleted key is a miss");
    let stats3 = cache.stats();
    assert_eq!(stats3["hits"], stats2["hits"], "{stats3:?}");

    // Binary protocol: SET, then GETK (miss, filled from memcached's GETK reply), then GET and
    // GETK hits answered by the datapath with flags, key (GETK only) and value.
    let hits3 = memcached_get_hits(tb);
    let bkey = b"e2e:binary";
    let replies = with_client(tb, |c| {
        let set = c.binary(0x01, bkey, &[0, 0, 0, 5, 0, 0, 0, 0], b"binary value");
        let gets: Vec<_> = [0x0c, 0x00, 0x0c]
            .into_iter()
            .map(|op| c.binary(op, bkey, &[], &[]))
            .collect();
        (set, gets)
    });
    let (set, gets) = replies;
    assert_eq!(set.map(|r| r.status), Some(0), "binary SET");
    for (i, (g, op)) in gets.iter().zip([0x0c, 0x00, 0x0c]).enumerate() {
        let g = g
            .as_ref()
            .unwrap_or_else(|| panic!("binary get #{i}: no valid reply"));
        assert_eq!(g.opcode, op, "binary get #{i}");
        assert_eq!(g.status, 0, "binary get #{i}");
        assert_eq!(g.extras, [0, 0, 0, 5], "binary get #{i}: flags");
        assert_eq!(g.value, b"binary value", "binary get #{i}");
        let want_key: &[u8] = if op == 0x0c { bkey } else { b"" };
        assert_eq!(g.key, want_key, "binary get #{i}: key");
    }
    let stats4 = cache.stats();
    assert_eq!(
        memcached_get_hits(tb) - hits3,
        1,
        "memcached saw only the first binary get"
    );
    assert_eq!(stats4["hits"] - stats3["hits"], 2, "{stats4:?}");
}

/// Outcome of the concurrent SET/GET run.
#[derive(Debug, Default)]
struct StaleReport {
    sets_acked: u64,
    gets: u64,
    hits: u64,
    stale: Vec<String>,
    timeouts: u64,
}

/// Several client threads SET and GET the same few keys for `secs`. Writes to one key are
/// serialised (a per-key lock held from sending the SET to its acknowledgement), so the
/// acknowledged versions of a key only grow; a GET records the key's acknowledged version
/// before it is sent and must never return an older one.
fn concurrent_stale_check(tb: &Testbed, threads: usize, keys: usize, secs: f64) -> StaleReport {
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..keys).map(|_| AtomicU64::new(0)).collect());
    let write_locks: Arc<Vec<Mutex<u64>>> = Arc::new((0..keys).map(|_| Mutex::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(Mutex::new(StaleReport::default()));
    let server = SocketAddr::from((tb.srv_ip4, tb.memcached_port.expect("memcached")));
    let local = SocketAddr::from((tb.cli_ip4, 0));
    let run = (0..threads)
        .map(|t| {
            let (acked, locks, stop, report) = (
                acked.clone(),
                write_locks.clone(),
                stop.clone(),
                report.clone(),
            );
            move || {
                let mut c = McClient::connect(server, local, (t as u16) << 12).expect("socket");
                let mut rng = 0x9e37_79b9_u64.wrapping_mul(t as u64 + 1) | 1;
                let mut mine = StaleReport::default();
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let k = (rng % keys as u64) as usize;
                    let key = format!("e2e:stale:{k}");
                    if rng % 100 < 30 {
                        let mut next = locks[k].lock().unwrap();
                        *next += 1;
                        let v = *next;
                        match c.set(&key, 0, format!("v{v:012}").as_bytes()) {
                            Some(true) => {
                                acked[k].store(v, Ordering::SeqCst);
                                mine.sets_acked += 1;
                            }
                            _ => mine.timeouts += 1,
                        }
                    } else {
                        let floor = acked[k].load(Ordering::SeqCst);
                        mine.gets += 1;
                        match c.get(&key) {
                            Some(Some((_, value))) => {
                                mine.hits += 1;
                                let got = std::str::from_utf8(&value)
                                    .ok()
                                    .and_then(|s| s.strip_prefix('v'))
                                    .and_then(|s| s.parse::<u64>().ok());
                                match got {
                                    Some(g) if g >= floor => {}
                                    _ => mine.stale.push(format!(
                                        "{key}: got {:?}, acknowledged v{floor} before the GET",
                                        String::from_utf8_lossy(&value)
                                    )),
                                }
                            }
                            Some(None) if floor > 0 => mine
                                .stale
                                .push(format!("{key}: miss after v{floor} was acknowledged")),
                            Some(None) => {}
                            None => mine.timeouts += 1,
                        }
                    }
                }
                let mut r = report.lock().unwrap();
                r.sets_acked += mine.sets_acked;
                r.gets += mine.gets;
                r.hits += mine.hits;
                r.timeouts += mine.timeouts;
                r.stale.extend(mine.stale);
            }
        })
        .collect::<Vec<_>>();
    std::thread::scope(|s| {
        let handles: Vec<_> = run
            .into_iter()
            .map(|f| s.spawn(move || tb.in_netns(&tb.cli_ns, f).expect("client namespace")))
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().expect("client thread");
        }
    });
    Arc::try_unwrap(report)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

/// `mcload`, if it was built in this target directory (the bench crate's binary).
fn mcload() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/cache_e2e-<hash> -> target/<profile>/mcload
    let bin = exe.parent()?.parent()?.join("mcload");
    bin.exists().then_some(bin)
}

/// The same invariant checked by the load generator's own checker.
fn mcload_stale_check(tb: &Testbed) {
    let Some(bin) = mcload() else {
        eprintln!(
            "mcload not built (cargo build -p userxdp-bench --bin mcload): its check skipped"
        );
        return;
    };
    let server = format!("{}:{}", tb.srv_ip4, tb.memcached_port.expect("memcached"));
    let o = tb.exec_in(
        &tb.cli_ns,
        &[
            &bin.display().to_string(),
            "--server",
            &server,
            "--threads",
            "4",
            "--duration",
            "2",
            "--keys",
            "16",
            "--get-ratio",
            "0.7",
            "--value-size",
            "64",
            "--check-stale",
            "--json",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() != Some(1),
        "mcload --check-stale saw stale or wrong replies:\n{out}\n{err}"
    );
    if !o.status.success() {
        // Usage/setup errors of a tool still being written are not the cache's failure.
        eprintln!("mcload did not run ({}): {err}", o.status);
        return;
    }
    let v: serde_json::Value = serde_json::from_str(&out).expect("mcload --json");
    eprintln!(
        "mcload: {} req/s, counts {}",
        v["throughput_rps"], v["counts"]
    );
    assert_eq!(v["counts"]["stale_reads"], 0, "{out}");
}

fn cache_end_to_end(mode: Mode) {
    if !is_root() {
        eprintln!("skipped: needs root (namespaces, XDP, AF_XDP)");
        return;
    }
    let opts = Options {
        queues: 2,
        memcached: true,
        cli_xdp: (mode == Mode::Kernel).then(|| obj("xdp_pass")),
        ..Options::default()
    };
    let name = match mode {
        Mode::Userspace => "uxcu",
        Mode::Kernel => "uxck",
    };
    let Some(tb) = Testbed::up_with(name, &opts) else {
        return;
    };
    let cache = Cache::start(&tb, mode);

    basic_checks(&tb, &cache);

    let before = cache.stats();
    let mc_before = memcached_get_hits(&tb);
    let r = concurrent_stale_check(&tb, 4, 8, 2.0);
    let after = cache.stats();
    eprintln!(
        "{mode:?}: concurrent run {r:?}; cache {before:?} -> {after:?}; memcached get_hits +{}",
        memcached_get_hits(&tb) - mc_before
    );
    assert!(r.stale.is_empty(), "stale values served: {:#?}", r.stale);
    assert!(
        r.sets_acked > 50 && r.gets > 100,
        "too little traffic: {r:?}"
    );
    assert!(
        r.timeouts * 20 < r.gets + r.sets_acked,
        "too many lost replies: {r:?}"
    );
    assert!(after["hits"] > before["hits"], "the datapath served hits");
    assert!(after["invalidations"] > before["invalidations"]);

    mcload_stale_check(&tb);

    let out = cache.stop();
    if mode == Mode::Userspace {
        let summary = out
            .lines()
            .rev()
            .find(|l| l.contains("\"summary\""))
            .unwrap_or_else(|| panic!("no run-datapath summary:\n{out}"));
        let s: serde_json::Value = serde_json::from_str(summary).unwrap();
        assert!(s["total"]["tx"].as_u64().unwrap() > 0, "{s}");
        eprintln!(
            "run-datapath totals: {} problems: {}",
            s["total"], s["problems"]
        );
        // Every frame of the run went where its verdict said (a TX ring that took fewer
        // descriptors than it had room for once lost replies here).
        assert_eq!(s["total"]["errors"], 0, "{s}");
        assert_eq!(s["total"]["egress_errors"], 0, "{s}");
    }
    assert!(!tb.srv_xdp_attached(), "nothing left attached");
}

#[test]
fn cache_in_run_datapath_serves_hits_and_never_stale_values() {
    cache_end_to_end(Mode::Userspace);
}

#[test]
fn cache_attached_in_the_kernel_serves_hits_and_never_stale_values() {
    cache_end_to_end(Mode::Kernel);
}
