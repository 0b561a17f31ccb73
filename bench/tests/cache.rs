//! `programs/cache.bpf.c` end to end on single packets: the kernel (`BPF_PROG_TEST_RUN`) and
//! our VM (interpreter and JIT) run the same scenario — misses, fills from egress replies,
//! hits answered with XDP_TX (exact bytes, valid checksums), multi-key gets, invalidation by
//! writes and flush_all, the GET/SET race, oversize keys and values, malformed packets, VLAN.
//!
//! Needs root for the kernel half (skips with the reason otherwise); the userspace half needs
//! the spin lock helpers (93/94) and skips with the reason while they are missing.

use userxdp_runtime::context::XdpFrame;
use userxdp_runtime::kernel::{self, Oracle};
use userxdp_runtime::object;
use userxdp_runtime::skb::{SkbFrame, SkbInput};
use userxdp_runtime::vm::instance::{Engine, Runner, SafetyPolicy, Vm, VmOptions};

const XDP_ABORTED: u32 = 0;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_ACT_OK: u32 = 0;

const CLIENT: [u8; 4] = [198, 18, 0, 1];
const CLIENT2: [u8; 4] = [198, 18, 0, 3];
const SERVER: [u8; 4] = [198, 18, 0, 2];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const MC: u16 = 11211;

/// Something that runs the cache's ingress and egress programs on one packet.
trait CacheRun {
    /// Ingress: (XDP verdict, packet after the run).
    fn xdp(&mut self, pkt: &[u8]) -> (u32, Vec<u8>);
    /// Egress: TC verdict.
    fn tc(&mut self, pkt: &[u8]) -> u32;
}

struct KernelRun(Oracle);

impl CacheRun for KernelRun {
    fn xdp(&mut self, pkt: &[u8]) -> (u32, Vec<u8>) {
        let r = self
            .0
            .test_run("cache_ingress", pkt, 1)
            .expect("kernel xdp run");
        (r.retval, r.data)
    }
    fn tc(&mut self, pkt: &[u8]) -> u32 {
        self.0
            .test_run_skb("cache_egress", pkt)
            .expect("kernel tc run")
            .retval
    }
}

struct UserRun {
    ingress: Runner,
    egress: Runner,
    frame: XdpFrame,
    skb: SkbFrame,
}

impl CacheRun for UserRun {
    fn xdp(&mut self, pkt: &[u8]) -> (u32, Vec<u8>) {
        self.frame.load(pkt).expect("load frame");
        let r = self
            .ingress
            .run_xdp(&mut self.frame)
            .expect("userspace xdp run");
        (r.retval as u32, self.frame.meta_and_packet().to_vec())
    }
    fn tc(&mut self, pkt: &[u8]) -> u32 {
        self.skb.load(pkt, SkbInput::default()).expect("load skb");
        self.egress
            .run_skb(&mut self.skb)
            .expect("userspace tc run") as u32
    }
}

/// One's-complement checksum over `b` (odd length padded with zero).
fn csum(b: &[u8], seed: u32) -> u16 {
    let mut sum: u32 = seed;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP datagram with the memcached frame header (request `req`, sequence 0, 1 datagram).
#[derive(Clone)]
struct Dgram {
    src: ([u8; 6], [u8; 4], u16),
    dst: ([u8; 6], [u8; 4], u16),
    req: u16,
    vlan: Option<u16>,
    payload: Vec<u8>,
}

impl Dgram {
    fn request(client: [u8; 4], port: u16, req: u16, payload: &[u8]) -> Dgram {
        Dgram {
            src: (CLIENT_MAC, client, port),
            dst: (SERVER_MAC, SERVER, MC),
            req,
            vlan: None,
            payload: payload.to_vec(),
        }
    }

    fn reply(client: [u8; 4], port: u16, req: u16, payload: &[u8]) -> Dgram {
        Dgram {
            src: (SERVER_MAC, SERVER, MC),
            dst: (CLIENT_MAC, client, port),
            req,
            vlan: None,
            payload: payload.to_vec(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&self.dst.0);
        p.extend_from_slice(&self.src.0);
        if let Some(tci) = self.vlan {
            p.extend_from_slice(&[0x81, 0x00]);
            p.extend_from_slice(&tci.to_be_bytes());
        }
        p.extend_from_slice(&[0x08, 0x00]);
        let udp_len = 8 + 8 + self.payload.len();
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        ip.extend_from_slice(&self.src.1);
        ip.extend_from_slice(&self.dst.1);
        let c = csum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&ip);
        let mut udp = Vec::new();
        udp.extend_from_slice(&self.src.2.to_be_bytes());
        udp.extend_from_slice(&self.dst.2.to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&self.req.to_be_bytes());
        udp.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
        udp.extend_from_slice(&self.payload);
        let mut pseudo = 0u32;
        for w in [&self.src.1[..], &self.dst.1[..]] {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
            pseudo += u32::from(u16::from_be_bytes([w[2], w[3]]));
        }
        pseudo += 17 + udp_len as u32;
        let mut c = csum(&udp, pseudo);
        if c == 0 {
            c = 0xffff;
        }
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&udp);
        p
    }

    /// The reply the cache must send for this request: everything swapped, `payload` inside.
    fn answer(&self, payload: &[u8]) -> Vec<u8> {
        Dgram {
            src: self.dst,
            dst: self.src,
            req: self.req,
            vlan: self.vlan,
            payload: payload.to_vec(),
        }
        .bytes()
    }
}

/// Checks IPv4 and UDP checksums of `pkt` with etherparse.
fn assert_checksums(pkt: &[u8]) {
    let sliced = etherparse::SlicedPacket::from_ethernet(pkt).expect("reply parses");
    let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
        panic!("reply is not IPv4");
    };
    let header = ip.header().to_header();
    assert_eq!(
        header.header_checksum,
        header.calc_header_checksum(),
        "IPv4 checksum"
    );
    let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
        panic!("reply is not UDP");
    };
    let expected = udp
        .to_header()
        .calc_checksum_ipv4(&header, udp.payload())
        .expect("udp checksum");
    assert_eq!(udp.checksum(), expected, "UDP checksum");
}

/// Binary request header (magic 0x80) with `key` and `extras`.
fn bin_request(opcode: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let mut h = vec![0x80, opcode];
    h.extend_from_slice(&(key.len() as u16).to_be_bytes());
    h.push(extras.len() as u8);
    h.extend_from_slice(&[0, 0, 0]);
    let body = (extras.len() + key.len() + value.len()) as u32;
    h.extend_from_slice(&body.to_be_bytes());
    h.extend_from_slice(&opaque.to_be_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(extras);
    h.extend_from_slice(key);
    h.extend_from_slice(value);
    h
}

/// Binary GET/GETK response with flags extras.
fn bin_response(
    opcode: u8,
    key: &[u8],
    flags: u32,
    value: &[u8],
    opaque: u32,
    cas: u64,
) -> Vec<u8> {
    let mut h = vec![0x81, opcode];
    h.extend_from_slice(&(key.len() as u16).to_be_bytes());
    h.extend_from_slice(&[4, 0, 0, 0]);
    let body = (4 + key.len() + value.len()) as u32;
    h.extend_from_slice(&body.to_be_bytes());
    h.extend_from_slice(&opaque.to_be_bytes());
    h.extend_from_slice(&cas.to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(key);
    h.extend_from_slice(value);
    h
}

fn get(e: &mut dyn CacheRun, req: &Dgram) -> (u32, Vec<u8>) {
    e.xdp(&req.bytes())
}

/// Misses `key` (ASCII) from CLIENT:`port` with request `req`, then fills it from the reply.
fn miss_and_fill(e: &mut dyn CacheRun, key: &str, flags: u32, value: &[u8], req: u16) {
    let q = Dgram::request(CLIENT, 40000, req, format!("get {key}\r\n").as_bytes());
    let (v, out) = get(e, &q);
    assert_eq!(v, XDP_PASS, "first get {key} misses");
    assert_eq!(out, q.bytes(), "a miss leaves the packet alone");
    let mut body = format!("VALUE {key} {flags} {}\r\n", value.len()).into_bytes();
    body.extend_from_slice(value);
    body.extend_from_slice(b"\r\nEND\r\n");
    let r = Dgram::reply(CLIENT, 40000, req, &body);
    assert_eq!(e.tc(&r.bytes()), TC_ACT_OK);
}

fn block(key: &str, flags: u32, value: &[u8]) -> Vec<u8> {
    let mut b = format!("VALUE {key} {flags} {}\r\n", value.len()).into_bytes();
    b.extend_from_slice(value);
    b.extend_from_slice(b"\r\n");
    b
}

fn expect_hit(e: &mut dyn CacheRun, q: &Dgram, payload: &[u8]) {
    let (v, out) = get(e, q);
    assert_eq!(
        v,
        XDP_TX,
        "expected a hit for {:?}",
        String::from_utf8_lossy(&q.payload)
    );
    assert_checksums(&out);
    assert_eq!(out, q.answer(payload), "reply bytes");
}

fn expect_pass(e: &mut dyn CacheRun, q: &Dgram, what: &str) {
    let (v, out) = get(e, q);
    assert_eq!(v, XDP_PASS, "{what}: expected PASS");
    assert_eq!(out, q.bytes(), "{what}: packet changed on PASS");
}

/// The whole scenario, in order (each step depends on the cache state the previous left).
fn scenario(e: &mut dyn CacheRun) {
    // ASCII miss, fill, hit.
    miss_and_fill(e, "foo", 5, b"bar", 0x1234);
    let q = Dgram::request(CLIENT2, 40001, 0x2222, b"get foo\r\n");
    let mut want = block("foo", 5, b"bar");
    want.extend_from_slice(b"END\r\n");
    expect_hit(e, &q, &want);

    // Multi-key: every key must hit.
    miss_and_fill(e, "k2", 0, b"second value", 0x1300);
    let q = Dgram::request(CLIENT, 40002, 0x2223, b"get foo k2\r\n");
    let mut want = block("foo", 5, b"bar");
    want.extend_from_slice(&block("k2", 0, b"second value"));
    want.extend_from_slice(b"END\r\n");
    expect_hit(e, &q, &want);
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40002, 0x2224, b"get foo nothere\r\n"),
        "multi-key with a miss",
    );

    // A multi-key miss is filled from memcached's multi-block reply.
    let q = Dgram::request(CLIENT, 40020, 0x2300, b"get m1 m2\r\n");
    expect_pass(e, &q, "multi-key miss");
    let mut body = block("m1", 1, b"one");
    body.extend_from_slice(&block("m2", 2, b"two"));
    body.extend_from_slice(b"END\r\n");
    let r = Dgram::reply(CLIENT, 40020, 0x2300, &body);
    assert_eq!(e.tc(&r.bytes()), TC_ACT_OK);
    let q = Dgram::request(CLIENT2, 40021, 0x2301, b"get m2 m1\r\n");
    let mut want = block("m2", 2, b"two");
    want.extend_from_slice(&block("m1", 1, b"one"));
    want.extend_from_slice(b"END\r\n");
    expect_hit(e, &q, &want);

    // VLAN-tagged request hits too, and the reply keeps the tag.
    let mut q = Dgram::request(CLIENT, 40003, 0x2225, b"get foo\r\n");
    q.vlan = Some(42);
    let mut want = block("foo", 5, b"bar");
    want.extend_from_slice(b"END\r\n");
    expect_hit(e, &q, &want);

    // Binary GET miss: PASS, rewritten to GETK with a valid UDP checksum.
    let q = Dgram::request(
        CLIENT,
        40004,
        0x3000,
        &bin_request(0x00, b"bk", &[], &[], 77),
    );
    let (v, out) = get(e, &q);
    assert_eq!(v, XDP_PASS);
    let mut rewritten = q.clone();
    rewritten.payload[1] = 0x0c;
    assert_eq!(out, rewritten.bytes(), "GET rewritten to GETK");
    assert_checksums(&out);
    // memcached answers the GETK; the egress fills.
    let r = Dgram::reply(
        CLIENT,
        40004,
        0x3000,
        &bin_response(0x0c, b"bk", 9, b"hello", 77, 7),
    );
    assert_eq!(e.tc(&r.bytes()), TC_ACT_OK);
    // Binary GET and GETK hit, with flags, CAS and (GETK) the key.
    let q = Dgram::request(
        CLIENT,
        40005,
        0x3001,
        &bin_request(0x00, b"bk", &[], &[], 78),
    );
    expect_hit(e, &q, &bin_response(0x00, b"", 9, b"hello", 78, 7));
    let q = Dgram::request(
        CLIENT,
        40005,
        0x3002,
        &bin_request(0x0c, b"bk", &[], &[], 79),
    );
    expect_hit(e, &q, &bin_response(0x0c, b"bk", 9, b"hello", 79, 7));
    // ASCII get of a binary-filled item: memcached's ASCII form.
    let q = Dgram::request(CLIENT, 40005, 0x3003, b"get bk\r\n");
    let mut want = block("bk", 9, b"hello");
    want.extend_from_slice(b"END\r\n");
    expect_hit(e, &q, &want);
    // Binary get of an ASCII-filled item: no CAS known, so memcached must answer.
    let q = Dgram::request(
        CLIENT,
        40005,
        0x3004,
        &bin_request(0x0c, b"foo", &[], &[], 80),
    );
    expect_pass(e, &q, "binary get of an ASCII fill");

    // SET invalidates; a stale reply to an older GET cannot refill.
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40006, 0x4000, b"set foo 0 0 3\r\nxyz\r\n"),
        "set",
    );
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40006, 0x4001, b"get foo\r\n"),
        "get after set",
    );
    let mut stale = block("foo", 5, b"bar");
    stale.extend_from_slice(b"END\r\n");
    // The reply to the very first get (0x1234) crosses the set.
    assert_eq!(
        e.tc(&Dgram::reply(CLIENT, 40000, 0x1234, &stale).bytes()),
        TC_ACT_OK
    );
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40006, 0x4002, b"get foo\r\n"),
        "stale fill refused",
    );

    // The race across the acknowledgement: a miss registered while a SET is in flight must
    // not be filled by a reply memcached may have produced before the SET.
    let q = Dgram::request(CLIENT, 40007, 0x5000, b"set k2 0 0 1\r\nz\r\n");
    expect_pass(e, &q, "set k2");
    let q = Dgram::request(CLIENT2, 40008, 0x5001, b"get k2\r\n");
    expect_pass(e, &q, "get k2 while the set is in flight");
    let ack = Dgram::reply(CLIENT, 40007, 0x5000, b"STORED\r\n");
    assert_eq!(e.tc(&ack.bytes()), TC_ACT_OK);
    let mut old = block("k2", 0, b"second value");
    old.extend_from_slice(b"END\r\n");
    assert_eq!(
        e.tc(&Dgram::reply(CLIENT2, 40008, 0x5001, &old).bytes()),
        TC_ACT_OK
    );
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40009, 0x5002, b"get k2\r\n"),
        "in-flight fill refused",
    );
    // A miss after the acknowledgement fills again.
    miss_and_fill(e, "k2", 0, b"z", 0x5003);
    let mut want = block("k2", 0, b"z");
    want.extend_from_slice(b"END\r\n");
    expect_hit(
        e,
        &Dgram::request(CLIENT, 40009, 0x5004, b"get k2\r\n"),
        &want,
    );

    // DELETE (ASCII) and binary SET invalidate.
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40010, 0x6000, b"delete k2\r\n"),
        "delete",
    );
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40010, 0x6001, b"get k2\r\n"),
        "get after delete",
    );
    let q = Dgram::request(
        CLIENT,
        40011,
        0x6002,
        &bin_request(0x01, b"bk", &[0; 8], b"new", 5),
    );
    expect_pass(e, &q, "binary set");
    let q = Dgram::request(
        CLIENT,
        40011,
        0x6003,
        &bin_request(0x0c, b"bk", &[], &[], 6),
    );
    let (v, _) = get(e, &q);
    assert_eq!(v, XDP_PASS, "binary get after binary set");

    // FLUSH_ALL invalidates everything.
    miss_and_fill(e, "fl", 1, b"x", 0x7000);
    let mut want = block("fl", 1, b"x");
    want.extend_from_slice(b"END\r\n");
    expect_hit(
        e,
        &Dgram::request(CLIENT, 40012, 0x7001, b"get fl\r\n"),
        &want,
    );
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40012, 0x7002, b"flush_all\r\n"),
        "flush_all",
    );
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40012, 0x7003, b"get fl\r\n"),
        "get after flush",
    );

    // Oversize key and value: passed, never cached.
    let long = "k".repeat(251);
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40013, 0x8000, format!("get {long}\r\n").as_bytes()),
        "251-byte key",
    );
    miss_and_fill(e, "big", 0, &[b'v'; 1001], 0x8001);
    expect_pass(
        e,
        &Dgram::request(CLIENT, 40013, 0x8002, b"get big\r\n"),
        "1001-byte value",
    );
    // 250-byte key and 1000-byte value are fine.
    let key250 = "q".repeat(250);
    miss_and_fill(e, &key250, 3, &[b'w'; 1000], 0x8003);
    let q = Dgram::request(
        CLIENT,
        40013,
        0x8004,
        format!("get {key250}\r\n").as_bytes(),
    );
    let mut want = block(&key250, 3, &[b'w'; 1000]);
    want.extend_from_slice(b"END\r\n");
    expect_hit(e, &q, &want);

    // Malformed and truncated packets: PASS, never ABORTED.
    let good = Dgram::request(CLIENT, 40014, 0x9000, b"get fl\r\n").bytes();
    for n in 14..good.len() {
        let (v, _) = e.xdp(&good[..n]);
        assert_ne!(v, XDP_ABORTED, "truncated to {n}");
        assert_eq!(v, XDP_PASS, "truncated to {n}");
    }
    let mut frag = good.clone();
    frag[20] = 0x20; // more fragments
    assert_eq!(e.xdp(&frag).0, XDP_PASS, "fragment");
    let mut seq = Dgram::request(CLIENT, 40014, 0x9001, b"get k2\r\n").bytes();
    seq[14 + 20 + 10] = 1; // sequence 1
    assert_eq!(e.xdp(&seq).0, XDP_PASS, "sequence != 0");
    for junk in [
        &b"get \r\n"[..],
        b"get",
        b"get k2",
        b"get  k2\r\n",
        b"\x80\x00",
        b"gets k2\r\n",
    ] {
        let q = Dgram::request(CLIENT, 40014, 0x9002, junk);
        assert_eq!(
            e.xdp(&q.bytes()).0,
            XDP_PASS,
            "{:?}",
            String::from_utf8_lossy(junk)
        );
    }
    // Malformed replies are ignored by the egress.
    for junk in [
        &b"VALUE"[..],
        b"VALUE k2 x 1\r\nz\r\n",
        b"VALUE k2 0 5\r\nz\r\n",
        b"\x81\x0c",
    ] {
        assert_eq!(
            e.tc(&Dgram::reply(CLIENT, 40014, 0x9003, junk).bytes()),
            TC_ACT_OK
        );
    }
}

#[test]
fn kernel_cache_scenario() {
    if let Err(e) = kernel::probe() {
        eprintln!("skipping: {e}");
        return;
    }
    let bytes = userxdp_programs::bytes("cache").expect("cache.o built");
    let oracle = Oracle::load(&bytes, None).expect("kernel loads cache.o");
    let mut run = KernelRun(oracle);
    scenario(&mut run);
    // Counters: per-CPU struct of five u64s; the scenario hit, missed, filled and invalidated.
    let stats = run
        .0
        .map_lookup("cache_stats", &0u32.to_ne_bytes())
        .unwrap()
        .unwrap();
    let mut sums = [0u64; 5];
    for cpu in stats.chunks(40) {
        for (i, s) in sums.iter_mut().enumerate() {
            *s += u64::from_ne_bytes(cpu[i * 8..i * 8 + 8].try_into().unwrap());
        }
    }
    let [hits, misses, invalidations, fills, passes] = sums;
    assert!(hits >= 9, "hits {hits}");
    assert!(misses >= 8, "misses {misses}");
    assert!(invalidations >= 5, "invalidations {invalidations}");
    assert!(fills >= 6, "fills {fills}");
    assert!(passes >= misses, "passes {passes}");
}

fn user_scenario(engine: Engine) {
    if userxdp_runtime::helpers::get(93).is_none() || userxdp_runtime::helpers::get(94).is_none() {
        eprintln!("skipping: bpf_spin_lock/unlock (helpers 93/94) not implemented yet");
        return;
    }
    let safety = if engine == Engine::Jit {
        if let Err(e) = kernel::probe() {
            eprintln!("skipping: the JIT needs the kernel verifier: {e}");
            return;
        }
        SafetyPolicy::Kernel
    } else {
        SafetyPolicy::Kernel
    };
    let bytes = userxdp_programs::bytes("cache").expect("cache.o built");
    let spec = object::parse(&bytes).expect("parse cache.o");
    let opts = VmOptions {
        engine,
        safety,
        ncpus: 1,
        ..VmOptions::default()
    };
    let vm = Vm::new(spec, Some(&bytes), Some("cache_ingress"), opts).expect("load ingress");
    let egress = vm.sibling("cache_egress").expect("load egress");
    let mut run = UserRun {
        ingress: vm.runner(0),
        egress: egress.runner(0),
        frame: XdpFrame::new().expect("frame"),
        skb: SkbFrame::new().expect("skb"),
    };
    scenario(&mut run);
}

#[test]
fn interpreter_cache_scenario() {
    user_scenario(Engine::Interpreter);
}

#[test]
fn jit_cache_scenario() {
    user_scenario(Engine::Jit);
}
