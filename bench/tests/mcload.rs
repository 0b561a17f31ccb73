//! The memcached load generator and checker (`userxdp_bench::memcache`) against a real
//! memcached on loopback (skipped with the reason when the `memcached` binary is missing), and
//! against small fake servers on loopback that misbehave on purpose (stale values, values of
//! other keys, garbage), to show the checker notices.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use userxdp_bench::memcache::proto::{self, AsciiReply, FrameHeader};
use userxdp_bench::memcache::{self, Client, LoadConfig, LoadReport, Protocol, Stop};

/// A memcached child process on 127.0.0.1, killed on drop (also when a test panics).
struct Memcached {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (memcached listens on both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Starts memcached, or returns None (after printing why) when it is not installed.
fn memcached() -> Option<Memcached> {
    let Ok(bin) = which("memcached") else {
        eprintln!("skipped: no memcached binary in PATH (apt-get install memcached)");
        return None;
    };
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new(&bin)
            .args([
                "-U",
                &port.to_string(),
                "-p",
                &port.to_string(),
                "-l",
                "127.0.0.1",
            ])
            .args(["-u", "nobody", "-t", "1", "-m", "64"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn memcached");
        let mut mc = Memcached {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        // Bounded wait until it answers over UDP.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut client = Client::connect(mc.addr, Protocol::Ascii, Duration::from_millis(50))
            .expect("client socket");
        while Instant::now() < deadline {
            if let Ok(Some(_)) = mc.child.try_wait() {
                break; // lost the port race: try another
            }
            if client.set(b"ready", 0, b"1").unwrap_or(false) {
                return Some(mc);
            }
        }
        let _ = mc.child.kill();
    }
    panic!("memcached did not come up on loopback");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

fn config(addr: SocketAddr, protocol: Protocol) -> LoadConfig {
    let mut c = LoadConfig::new(addr);
    c.protocol = protocol;
    c.threads = 2;
    c.keys = 2000;
    c.stop = Stop::Duration(Duration::from_millis(1000));
    c.preload = true;
    c.check_stale = true;
    c.get_ratio = 0.8;
    c
}

fn assert_clean(r: &LoadReport) {
    print!("{}", r.table());
    assert!(r.consistent(), "inconsistent: {r:#?}");
    assert_eq!(r.preload_failures, 0);
    assert!(r.counts.replies > 100, "too few replies");
    assert!(r.counts.hits > 0);
    assert!(r.counts.stored > 0);
    assert_eq!(r.counts.server_errors, 0);
    assert_eq!(r.counts.io_errors, 0);
    // Loopback loses nothing in practice; allow a few for a loaded machine.
    assert!(r.counts.timeouts * 100 <= r.counts.requests, "timeouts");
}

#[test]
fn ascii_load_against_memcached() {
    let Some(mc) = memcached() else { return };
    let r = memcache::run(&config(mc.addr, Protocol::Ascii)).expect("run");
    assert_clean(&r);
    // After preload every key exists: every get hits.
    assert_eq!(r.counts.misses, 0);
    assert_eq!(r.preload_stored, 2000);
}

#[test]
fn binary_load_against_memcached() {
    let Some(mc) = memcached() else { return };
    for getk in [false, true] {
        let mut c = config(mc.addr, Protocol::Binary);
        c.binary_getk = getk;
        c.stop = Stop::Duration(Duration::from_millis(500));
        let r = memcache::run(&c).expect("run");
        assert_clean(&r);
        assert_eq!(r.counts.misses, 0);
    }
}

#[test]
fn multiget_and_large_values_against_memcached() {
    let Some(mc) = memcached() else { return };
    // memcached 1.6 answers `get a b c` with one message per VALUE and END on its own.
    let mut c = config(mc.addr, Protocol::Ascii);
    c.multiget = 4;
    c.stop = Stop::Duration(Duration::from_millis(500));
    let r = memcache::run(&c).expect("run");
    assert_clean(&r);
    assert!(r.counts.get_keys > r.counts.gets);
    // Values above one datagram (~1400 bytes) come back in several.
    for protocol in [Protocol::Ascii, Protocol::Binary] {
        let mut c = config(mc.addr, protocol);
        c.keys = 50;
        c.value_size = 3000;
        c.stop = Stop::Requests(400);
        let r = memcache::run(&c).expect("run");
        assert_clean(&r);
        assert!(r.counts.multi_datagram > 0, "no multi-datagram reply");
        assert_eq!(r.counts.requests, 400);
    }
}

/// Pipelined GETs (several in flight per thread, batched system calls) get every reply
/// checked as in the closed loop, and account for every request.
#[test]
fn pipelined_gets_against_memcached() {
    let Some(mc) = memcached() else { return };
    for protocol in [Protocol::Ascii, Protocol::Binary] {
        let mut c = config(mc.addr, protocol);
        c.check_stale = false;
        c.get_ratio = 1.0;
        c.pipeline = 16;
        c.stop = Stop::Duration(Duration::from_millis(500));
        let r = memcache::run(&c).expect("run");
        print!("{}", r.table());
        assert!(r.consistent(), "inconsistent: {r:#?}");
        assert_eq!(r.preload_failures, 0);
        assert!(r.counts.replies > 100, "too few replies");
        assert_eq!((r.counts.misses, r.counts.malformed), (0, 0));
        assert_eq!(r.counts.hits, r.counts.replies);
        assert_eq!(r.counts.io_errors, 0);
        assert!(r.counts.timeouts * 100 <= r.counts.requests, "timeouts");
        // Every request is answered or timed out by the end (the run drains).
        assert_eq!(r.counts.requests, r.counts.replies + r.counts.timeouts);
    }
    // A request quota is met exactly.
    let mut c = config(mc.addr, Protocol::Ascii);
    c.check_stale = false;
    c.get_ratio = 1.0;
    c.pipeline = 8;
    c.preload = false;
    c.stop = Stop::Requests(1000);
    let r = memcache::run(&c).expect("run");
    assert_eq!(r.counts.requests, 1000);
}

#[test]
fn second_run_sees_first_runs_values_without_errors() {
    let Some(mc) = memcached() else { return };
    let mut c = config(mc.addr, Protocol::Ascii);
    c.keys = 100;
    c.stop = Stop::Requests(300);
    assert_clean(&memcache::run(&c).expect("first run"));
    c.preload = false;
    c.run_id = c.run_id.wrapping_add(1);
    let r = memcache::run(&c).expect("second run");
    assert_clean(&r);
    assert!(r.counts.foreign_values > 0);
}

#[test]
fn client_against_memcached() {
    let Some(mc) = memcached() else { return };
    for protocol in [Protocol::Ascii, Protocol::Binary] {
        let mut cl = Client::connect(mc.addr, protocol, Duration::from_millis(500)).unwrap();
        let key = format!("client:{protocol:?}");
        assert_eq!(cl.get(key.as_bytes()).unwrap(), None);
        assert!(cl.set(key.as_bytes(), 77, b"hello\r\nworld").unwrap());
        assert_eq!(
            cl.get(key.as_bytes()).unwrap(),
            Some((77, b"hello\r\nworld".to_vec()))
        );
        assert!(cl.delete(key.as_bytes()).unwrap());
        assert!(!cl.delete(key.as_bytes()).unwrap());
        assert_eq!(cl.get(key.as_bytes()).unwrap(), None);
    }
}

/// How a fake server misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Keeps the first value stored per key forever (acknowledges later SETs): stale reads.
    Sticky,
    /// Answers a get of key n with the value of key n + 1.
    OtherKey,
    /// Answers gets with bytes that are not a reply.
    Garbage,
}

/// An ASCII memcached imitation on loopback, one request per datagram, until dropped.
struct FakeServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fake_server(fault: Fault) -> FakeServer {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut store: std::collections::HashMap<Vec<u8>, (u32, Vec<u8>)> = Default::default();
        let mut buf = vec![0u8; 65536];
        while !flag.load(Ordering::Relaxed) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok((h, req)) = FrameHeader::parse(&buf[..n]) else {
                continue;
            };
            let mut out = Vec::new();
            FrameHeader::request(h.request_id).emit(&mut out);
            let line_end = req
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(req.len());
            let words: Vec<&[u8]> = req[..line_end].split(|&b| b == b' ').collect();
            match words.first().copied() {
                Some(b"set") if words.len() == 5 => {
                    let flags = std::str::from_utf8(words[2]).unwrap().parse().unwrap();
                    let len: usize = std::str::from_utf8(words[4]).unwrap().parse().unwrap();
                    let data = req[line_end + 2..line_end + 2 + len].to_vec();
                    let sticky = matches!(fault, Fault::Sticky);
                    if !(sticky && store.contains_key(words[1])) {
                        store.insert(words[1].to_vec(), (flags, data));
                    }
                    out.extend_from_slice(b"STORED\r\n");
                }
                Some(b"get") if words.len() == 2 => {
                    let key = match fault {
                        Fault::OtherKey => {
                            let n: u64 = std::str::from_utf8(&words[1][4..])
                                .unwrap()
                                .parse()
                                .unwrap();
                            format!("key:{}", n + 1).into_bytes()
                        }
                        _ => words[1].to_vec(),
                    };
                    if let Fault::Garbage = fault {
                        out.extend_from_slice(b"VALUE \xff\xfe garbage\r\n");
                    } else if let Some((flags, data)) = store.get(&key) {
                        out.extend_from_slice(
                            format!(
                                "VALUE {} {flags} {}\r\n",
                                String::from_utf8_lossy(words[1]),
                                data.len()
                            )
                            .as_bytes(),
                        );
                        out.extend_from_slice(data);
                        out.extend_from_slice(b"\r\nEND\r\n");
                    } else {
                        out.extend_from_slice(b"END\r\n");
                    }
                }
                _ => out.extend_from_slice(b"ERROR\r\n"),
            }
            let _ = sock.send_to(&out, peer);
        }
    });
    FakeServer {
        addr,
        stop,
        thread: Some(thread),
    }
}

fn fake_config(addr: SocketAddr) -> LoadConfig {
    let mut c = config(addr, Protocol::Ascii);
    c.keys = 20;
    c.get_ratio = 0.5;
    c.stop = Stop::Requests(2000);
    c
}

#[test]
fn checker_catches_stale_reads() {
    let fake = fake_server(Fault::Sticky);
    let r = memcache::run(&fake_config(fake.addr)).expect("run");
    print!("{}", r.table());
    assert!(r.counts.stale_reads > 0, "stale reads not detected");
    assert!(!r.stale_examples.is_empty());
    let s = &r.stale_examples[0];
    assert!(s.got < s.acked);
    assert_eq!((r.counts.wrong_key, r.counts.malformed), (0, 0));
    assert!(!r.consistent());
    // The same server is "consistent" for a checker that does not look.
    let mut c = fake_config(fake.addr);
    c.check_stale = false;
    assert!(memcache::run(&c).expect("run").consistent());
}

#[test]
fn checker_catches_wrong_keys_and_garbage() {
    let fake = fake_server(Fault::OtherKey);
    let r = memcache::run(&fake_config(fake.addr)).expect("run");
    assert!(r.counts.wrong_key > 0, "{r:#?}");
    assert!(!r.consistent());
    let fake = fake_server(Fault::Garbage);
    let r = memcache::run(&fake_config(fake.addr)).expect("run");
    assert!(r.counts.malformed > 0, "{r:#?}");
    assert_eq!(r.counts.hits, 0);
    // The pipelined loop checks replies the same way.
    let fake = fake_server(Fault::OtherKey);
    let mut c = fake_config(fake.addr);
    (c.get_ratio, c.check_stale, c.pipeline) = (1.0, false, 4);
    let r = memcache::run(&c).expect("run");
    assert!(r.counts.wrong_key > 0, "{r:#?}");
}

#[test]
fn timeouts_are_bounded() {
    // A bound socket that never answers: every request times out, and the run stops on time.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = LoadConfig::new(silent.local_addr().unwrap());
    c.timeout = Duration::from_millis(10);
    c.stop = Stop::Duration(Duration::from_millis(200));
    let t0 = Instant::now();
    let r = memcache::run(&c).expect("run");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(r.counts.replies, 0);
    assert!(r.counts.timeouts > 0 && r.counts.timeouts == r.counts.requests);
    // Also with requests pipelined.
    (c.get_ratio, c.pipeline) = (1.0, 8);
    let t0 = Instant::now();
    let r = memcache::run(&c).expect("run");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(r.counts.replies, 0);
    assert!(r.counts.timeouts >= 8 && r.counts.timeouts == r.counts.requests);
}

#[test]
fn bad_configs_are_refused() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let cases: [fn(&mut LoadConfig); 8] = [
        |c| c.threads = 0,
        |c| c.keys = 0,
        |c| c.zipf_s = f64::NAN,
        |c| c.get_ratio = 1.5,
        |c| c.timeout = Duration::ZERO,
        |c| (c.get_ratio, c.pipeline) = (1.0, 3),
        |c| (c.get_ratio, c.pipeline) = (1.0, 2048),
        |c| (c.get_ratio, c.pipeline) = (0.9, 8),
    ];
    for f in cases {
        let mut c = LoadConfig::new(addr);
        f(&mut c);
        assert!(matches!(
            memcache::run(&c),
            Err(memcache::LoadError::Config { .. })
        ));
    }
}

#[test]
fn parsers_reject_garbage() {
    for bad in [
        &b"garbage"[..],
        b"VALUE k\r\n",
        b"END\r\nEND\r\n",
        b"\x81\x00",
        b"STORED",
    ] {
        assert!(proto::parse_ascii_reply(bad).is_err(), "{bad:?}");
        assert!(proto::parse_binary_response(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        proto::parse_ascii_reply(b"END\r\n"),
        Ok(AsciiReply::Values(vec![]))
    );
    assert!(FrameHeader::parse(b"\0\0\0\0\0\0\0").is_err());
}

#[test]
fn mcload_binary_prints_json() {
    let Some(mc) = memcached() else { return };
    let out = Command::new(env!("CARGO_BIN_EXE_mcload"))
        .args([
            "--server",
            &mc.addr.to_string(),
            "--requests",
            "300",
            "--keys",
            "50",
        ])
        .args([
            "--preload",
            "--check-stale",
            "--json",
            "--timeout-ms",
            "200",
        ])
        .output()
        .expect("run mcload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["counts"]["requests"], 300);
    assert_eq!(v["counts"]["stale_reads"], 0);
    assert_eq!(v["preload_stored"], 50);
    // Bad usage exits 2.
    let bad = Command::new(env!("CARGO_BIN_EXE_mcload"))
        .args(["--server", "not-an-address"])
        .output()
        .expect("run mcload");
    assert_eq!(bad.status.code(), Some(2));
}
