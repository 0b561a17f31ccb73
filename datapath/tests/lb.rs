//! The load balancer (`programs/lb.bpf.c`) and its control plane (`userxdp_datapath::lb`).
//!
//! Maglev tests are pure. Program tests run the same configuration and the same packets in the
//! kernel (`BPF_PROG_TEST_RUN`), our interpreter and our JIT: every verdict and every output
//! byte must agree, and every encapsulated packet must go to the backend the Rust side
//! predicts. Program tests need root; without it they print why they skip.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, Ipv4HeaderSlice, Ipv6HeaderSlice, PacketBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use userxdp_datapath::lb::maglev::{self, MaglevBackend};
use userxdp_datapath::lb::{
    self, BackendConfig, Flow, LbConfig, LbStats, MapWriter, Plan, Proto, VipConfig, VmMaps,
    GLOBAL_STATS, RING_SIZE,
};
use userxdp_runtime::context::XdpFrame;
use userxdp_runtime::kernel::{self, Oracle};
use userxdp_runtime::object;
use userxdp_runtime::vm::instance::{Engine, Runner, SafetyPolicy, Vm, VmOptions};

const PROG: &str = "xdp_lb";
const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x1b];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const MIXED4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
const MIXED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20);

fn b4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 1, last))
}

fn b6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, last))
}

fn backends(list: &[(IpAddr, u32)]) -> Vec<BackendConfig> {
    list.iter()
        .map(|&(addr, weight)| BackendConfig { addr, weight })
        .collect()
}

/// Four services: TCP/80 and any-port UDP on VIP4, TCP/443 and UDP/53 on VIP6. With
/// `extra`, VIP 0 and VIP 2 get one more backend (appended, so real indices stay).
fn config(extra: bool) -> LbConfig {
    let mut tcp4 = vec![(b4(1), 1), (b4(2), 1), (b4(3), 2)];
    let mut tcp6 = vec![(b6(1), 1), (b6(2), 1), (b6(3), 1)];
    if extra {
        tcp4.push((b4(4), 1));
        tcp6.push((b6(4), 1));
    }
    let vip = |addr, port, proto, hash_no_src_port, b: &[(IpAddr, u32)]| VipConfig {
        addr,
        port,
        proto,
        hash_no_src_port,
        backends: backends(b),
    };
    LbConfig {
        router_mac: "02:00:00:00:00:ee".into(),
        src4_prefix: Ipv4Addr::new(198, 19, 0, 0),
        src6_prefix: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0),
        vips: vec![
            vip(IpAddr::V4(VIP4), 80, Proto::Tcp, false, &tcp4),
            vip(
                IpAddr::V4(VIP4),
                0,
                Proto::Udp,
                true,
                &[(b4(1), 1), (b4(2), 1)],
            ),
            vip(IpAddr::V6(VIP6), 443, Proto::Tcp, false, &tcp6),
            vip(
                IpAddr::V6(VIP6),
                53,
                Proto::Udp,
                false,
                &[(b6(1), 1), (b6(2), 3)],
            ),
            // Mixed families: IPv4 in IPv6 and IPv6 in IPv4.
            vip(
                IpAddr::V4(MIXED4),
                80,
                Proto::Tcp,
                false,
                &[(b6(5), 1), (b6(6), 1)],
            ),
            vip(
                IpAddr::V6(MIXED6),
                0,
                Proto::Udp,
                false,
                &[(b4(5), 1), (b4(6), 1)],
            ),
        ],
    }
}

/// A client packet of `flow` (TCP: SYN or ACK) with a small payload.
fn packet(flow: &Flow, syn: bool) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let payload = [0x5au8; 20];
    let mut out = Vec::new();
    macro_rules! l4 {
        ($l3:expr) => {
            if flow.proto == 6 {
                let t = $l3.tcp(flow.sport, flow.dport, 1000, 512);
                if syn {
                    t.syn().write(&mut out, &payload)
                } else {
                    t.ack(77).write(&mut out, &payload)
                }
            } else {
                $l3.udp(flow.sport, flow.dport).write(&mut out, &payload)
            }
        };
    }
    let r = match (flow.src, flow.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => l4!(eth.ipv4(s.octets(), d.octets(), 64)),
        (IpAddr::V6(s), IpAddr::V6(d)) => l4!(eth.ipv6(s.octets(), d.octets(), 64)),
        _ => panic!("mixed families"),
    };
    r.expect("build packet");
    out
}

fn client4(rng: &mut StdRng) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, rng.random(), rng.random()))
}

fn client6(rng: &mut StdRng) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        2,
        0,
        rng.random(),
        rng.random(),
        rng.random(),
        rng.random(),
    ))
}

fn random_flow(rng: &mut StdRng, v6: bool, proto: u8) -> Flow {
    let (src, dst) = if v6 {
        (client6(rng), IpAddr::V6(VIP6))
    } else {
        (client4(rng), IpAddr::V4(VIP4))
    };
    let dport = match (v6, proto) {
        (false, 6) => 80,
        (false, _) => rng.random(),
        (true, 6) => 443,
        (true, _) => 53,
    };
    Flow {
        src,
        dst,
        sport: rng.random_range(1024..65535),
        dport,
        proto,
    }
}

// ---------------------------------------------------------------- Maglev (pure)

#[test]
fn maglev_fills_every_slot() {
    let ids: Vec<[u8; 16]> = (1..=7u8).map(|i| [i; 16]).collect();
    let weights = [1, 1, 2, 3, 1, 5, 1];
    let b: Vec<_> = ids
        .iter()
        .zip(weights)
        .map(|(id, weight)| MaglevBackend { id, weight })
        .collect();
    let table = maglev::build(&b, RING_SIZE).expect("table");
    assert_eq!(table.len(), RING_SIZE);
    assert!(table.iter().all(|&s| s < b.len()));
    // Every backend with weight owns slots; a zero-weight one owns none.
    let mut b0 = b.clone();
    b0[0].weight = 0;
    let t0 = maglev::build(&b0, RING_SIZE).expect("table");
    assert!(!t0.contains(&0));
    for i in 1..b.len() {
        assert!(t0.contains(&i));
    }
}

#[test]
fn maglev_respects_weights_over_random_flows() {
    let weights = [1u32, 2, 3, 4];
    let mut cfg = config(false);
    cfg.vips[0].backends = backends(
        &weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (b4(i as u8 + 1), w))
            .collect::<Vec<_>>(),
    );
    let plan = Plan::build(&cfg).expect("plan");
    let mut rng = StdRng::seed_from_u64(1);
    let mut counts = [0usize; 4];
    const FLOWS: usize = 10_000;
    for _ in 0..FLOWS {
        let f = random_flow(&mut rng, false, 6);
        let addr = plan.predict(&f).expect("backend");
        let i = (1..=4).position(|n| b4(n) == addr).expect("known backend");
        counts[i] += 1;
    }
    let total: u32 = weights.iter().sum();
    for (i, &w) in weights.iter().enumerate() {
        let expect = FLOWS as f64 * f64::from(w) / f64::from(total);
        let got = counts[i] as f64;
        assert!(
            (got - expect).abs() <= 0.1 * expect,
            "backend {i} (weight {w}): {got} flows, expected {expect:.0} ± 10% ({counts:?})"
        );
    }
}

#[test]
fn maglev_adding_a_backend_moves_about_one_nth() {
    let mut cfg = config(false);
    cfg.vips[0].backends = backends(&(1..=5).map(|n| (b4(n), 1)).collect::<Vec<_>>());
    let before = Plan::build(&cfg).expect("plan");
    cfg.vips[0].backends.push(BackendConfig {
        addr: b4(6),
        weight: 1,
    });
    let after = Plan::build(&cfg).expect("plan");
    let mut rng = StdRng::seed_from_u64(2);
    let (mut moved, mut moved_elsewhere) = (0usize, 0usize);
    const FLOWS: usize = 10_000;
    for _ in 0..FLOWS {
        let f = random_flow(&mut rng, false, 6);
        let (a, b) = (before.predict(&f), after.predict(&f));
        if a != b {
            moved += 1;
            if b != Some(b4(6)) {
                moved_elsewhere += 1;
            }
        }
    }
    let frac = moved as f64 / FLOWS as f64;
    assert!(
        (0.12..=0.22).contains(&frac),
        "{moved} of {FLOWS} flows moved (expected about 1/6)"
    );
    // Maglev's disruption beyond the new backend's share is small.
    assert!(
        moved_elsewhere * 50 < FLOWS,
        "{moved_elsewhere} flows moved between old backends"
    );
}

#[test]
fn config_parses_from_json_and_rejects_bad_input() {
    let text = r#"{
        "router_mac": "02:00:00:00:00:01",
        "vips": [
            { "addr": "198.18.0.10", "port": 80, "proto": "tcp",
              "backends": [ { "addr": "198.18.1.1", "weight": 1 }, { "addr": "198.18.1.2" } ] },
            { "addr": "2001:db8::10", "proto": "udp", "hash_no_src_port": true,
              "backends": [ { "addr": "2001:db8:1::1" } ] }
        ]
    }"#;
    let cfg = LbConfig::from_json(text).expect("parse");
    assert_eq!(cfg.vips.len(), 2);
    assert_eq!(cfg.vips[1].port, 0);
    assert_eq!(cfg.vips[0].backends[1].weight, 1);
    assert_eq!(cfg.src4_prefix, Ipv4Addr::new(198, 19, 0, 0));
    assert_eq!(cfg.real_addrs().len(), 3);
    let bad_mac = text.replace("02:00:00:00:00:01", "02:00:00:00:01");
    assert!(matches!(
        LbConfig::from_json(&bad_mac),
        Err(lb::ConfigError::BadMac { .. })
    ));
    let mut dup = cfg.clone();
    dup.vips.push(dup.vips[0].clone());
    assert!(matches!(
        dup.validate(),
        Err(lb::ConfigError::DuplicateVip { index: 2, .. })
    ));
    let mut many = cfg;
    many.vips = (0..17)
        .map(|p| VipConfig {
            port: p,
            ..many.vips[0].clone()
        })
        .collect();
    assert!(matches!(
        many.validate(),
        Err(lb::ConfigError::TooManyVips { .. })
    ));
}

// ---------------------------------------------------------------- the program, every engine

/// One place the program runs, with its maps.
trait LbEngine {
    fn name(&self) -> &'static str;
    fn run(&mut self, pkt: &[u8]) -> (u32, Vec<u8>);
    fn apply(&mut self, cfg: &LbConfig) -> Plan;
    fn global_stats(&mut self) -> LbStats;
}

struct Kernel(Oracle);

impl LbEngine for Kernel {
    fn name(&self) -> &'static str {
        "kernel"
    }
    fn run(&mut self, pkt: &[u8]) -> (u32, Vec<u8>) {
        let r = self.0.test_run(PROG, pkt, 1).expect("test run");
        (r.retval, r.data)
    }
    fn apply(&mut self, cfg: &LbConfig) -> Plan {
        lb::apply(cfg, &mut self.0).expect("apply to kernel maps")
    }
    fn global_stats(&mut self) -> LbStats {
        let v = self
            .0
            .map_lookup("lb_stats", &GLOBAL_STATS.to_ne_bytes())
            .expect("lookup")
            .expect("stats slot");
        LbStats::sum_percpu(&v)
    }
}

struct User {
    name: &'static str,
    runner: Runner,
    maps: VmMaps,
    frame: XdpFrame,
}

impl User {
    fn new(engine: Engine) -> User {
        let bytes = userxdp_programs::bytes("lb").expect("lb.o built");
        let spec = object::parse(&bytes).expect("parse lb.o");
        let opts = VmOptions {
            engine,
            safety: SafetyPolicy::Kernel,
            ncpus: kernel::possible_cpus(),
            ..VmOptions::default()
        };
        let vm = Vm::new(spec, Some(&bytes), Some(PROG), opts).expect("load lb.o");
        User {
            name: match engine {
                Engine::Interpreter => "interpreter",
                _ => "jit",
            },
            maps: VmMaps::from_vm(&vm),
            runner: vm.runner(0),
            frame: XdpFrame::new().expect("frame"),
        }
    }
}

impl LbEngine for User {
    fn name(&self) -> &'static str {
        self.name
    }
    fn run(&mut self, pkt: &[u8]) -> (u32, Vec<u8>) {
        self.frame.load(pkt).expect("load frame");
        let r = self
            .runner
            .run_xdp(&mut self.frame)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        (r.retval as u32, self.frame.packet().to_vec())
    }
    fn apply(&mut self, cfg: &LbConfig) -> Plan {
        lb::apply(cfg, &mut self.maps).expect("apply to userspace maps")
    }
    fn global_stats(&mut self) -> LbStats {
        self.runner.quiesce();
        let v = self
            .runner
            .vm()
            .map("lb_stats")
            .expect("lb_stats")
            .read(&GLOBAL_STATS.to_ne_bytes())
            .expect("stats slot");
        LbStats::sum_percpu(&v)
    }
}

/// Checks one output frame: XDP_TX, MACs rewritten, outer header to `backend` with a valid
/// checksum, inner packet untouched.
fn check_encap(engine: &str, input: &[u8], (ret, out): &(u32, Vec<u8>), backend: IpAddr) {
    assert_eq!(*ret, XDP_TX, "{engine}: verdict");
    assert_eq!(out[..6], ROUTER_MAC, "{engine}: destination MAC");
    assert_eq!(out[6..12], LB_MAC, "{engine}: source MAC");
    let inner_v6 = input[12..14] == [0x86, 0xdd];
    let inner = &input[14..];
    match backend {
        IpAddr::V4(dst) => {
            assert_eq!(out[12..14], [0x08, 0x00], "{engine}: ethertype");
            let h = Ipv4HeaderSlice::from_slice(&out[14..]).expect("outer IPv4");
            assert_eq!(h.destination_addr(), dst, "{engine}: outer destination");
            assert_eq!(h.source()[..2], [198, 19], "{engine}: outer source prefix");
            let proto = if inner_v6 { IpNumber(41) } else { IpNumber(4) };
            assert_eq!(h.protocol(), proto, "{engine}: outer protocol");
            assert_eq!(
                h.to_header().calc_header_checksum(),
                h.header_checksum(),
                "{engine}: outer IPv4 checksum"
            );
            assert_eq!(usize::from(h.total_len()), 20 + inner.len());
            assert_eq!(&out[34..], inner, "{engine}: inner packet changed");
        }
        IpAddr::V6(dst) => {
            assert_eq!(out[12..14], [0x86, 0xdd], "{engine}: ethertype");
            let h = Ipv6HeaderSlice::from_slice(&out[14..]).expect("outer IPv6");
            assert_eq!(h.destination_addr(), dst, "{engine}: outer destination");
            assert_eq!(h.source()[..6], [0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff]);
            let proto = if inner_v6 { IpNumber(41) } else { IpNumber(4) };
            assert_eq!(h.next_header(), proto, "{engine}: outer next header");
            assert_eq!(usize::from(h.payload_length()), inner.len());
            assert_eq!(&out[54..], inner, "{engine}: inner packet changed");
        }
    }
}

/// The whole scenario on one engine; returns every (verdict, output) in order so engines can
/// be compared byte for byte.
fn scenario(e: &mut dyn LbEngine) -> Vec<(u32, Vec<u8>)> {
    let name = e.name();
    let mut log = Vec::new();
    let plan = e.apply(&config(false));
    let mut rng = StdRng::seed_from_u64(42);

    // Balanced traffic: TCP and UDP, v4 and v6, to the predicted backend.
    let mut established = Vec::new();
    for (v6, proto) in [(false, 6), (false, 17), (true, 6), (true, 17)] {
        for i in 0..40 {
            let f = random_flow(&mut rng, v6, proto);
            let pkt = packet(&f, i % 2 == 0);
            let r = e.run(&pkt);
            let backend = plan.predict(&f).expect("prediction");
            check_encap(name, &pkt, &r, backend);
            log.push(r);
            established.push((f, backend));
        }
    }

    // Mixed families: 4in6 and 6in4.
    for v6 in [false, true] {
        for _ in 0..20 {
            let f = random_flow(&mut rng, v6, if v6 { 17 } else { 6 });
            let f = Flow {
                dst: if v6 {
                    IpAddr::V6(MIXED6)
                } else {
                    IpAddr::V4(MIXED4)
                },
                ..f
            };
            let pkt = packet(&f, false);
            let r = e.run(&pkt);
            let backend = plan.predict(&f).expect("prediction");
            assert_eq!(backend.is_ipv4(), v6, "mixed-family VIP");
            check_encap(name, &pkt, &r, backend);
            log.push(r);
        }
    }

    // Not for a VIP: untouched and passed.
    let mut others = vec![
        // TCP to VIP4 on a port without a VIP (only UDP is port-agnostic there).
        packet(
            &Flow {
                dport: 81,
                ..random_flow(&mut rng, false, 6)
            },
            false,
        ),
        // UDP to VIP6 on a port without a VIP.
        packet(
            &Flow {
                dport: 54,
                ..random_flow(&mut rng, true, 17)
            },
            false,
        ),
        // Another address.
        packet(
            &Flow {
                dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)),
                ..random_flow(&mut rng, false, 6)
            },
            true,
        ),
    ];
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4([198, 19, 0, 1], VIP4.octets(), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, &[0u8; 8])
        .expect("icmp");
    others.push(icmp);
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    others.push(arp);
    for pkt in &others {
        let r = e.run(pkt);
        assert_eq!(r.0, XDP_PASS, "{name}: non-VIP packet verdict");
        assert_eq!(&r.1, pkt, "{name}: non-VIP packet changed");
        log.push(r);
    }

    // Truncated VIP packets: never ABORTED (PASS when the headers are cut).
    for (f, _) in established.iter().step_by(37) {
        let pkt = packet(f, false);
        for len in 14..pkt.len() {
            let r = e.run(&pkt[..len]);
            assert!(
                matches!(r.0, XDP_PASS | XDP_TX | XDP_DROP),
                "{name}: truncated to {len}: verdict {}",
                r.0
            );
            assert_ne!(r.0, XDP_ABORTED);
            log.push(r);
        }
    }

    // A backend is added: established flows (not SYN) stay; SYNs and new flows follow the
    // new ring.
    let new_plan = e.apply(&config(true));
    let mut stayed = 0;
    for (f, old) in &established {
        let new = new_plan.predict(f).expect("prediction");
        if new == *old {
            continue;
        }
        stayed += 1;
        let pkt = packet(f, false);
        let r = e.run(&pkt);
        check_encap(name, &pkt, &r, *old);
        log.push(r);
        if f.proto == 6 {
            let syn = packet(f, true);
            let r = e.run(&syn);
            check_encap(name, &syn, &r, new);
            log.push(r);
        }
    }
    assert!(stayed > 0, "{name}: no established flow would have moved");
    for (v6, proto) in [(false, 6), (true, 6)] {
        for _ in 0..20 {
            let f = random_flow(&mut rng, v6, proto);
            let pkt = packet(&f, false);
            let r = e.run(&pkt);
            check_encap(name, &pkt, &r, new_plan.predict(&f).expect("prediction"));
            log.push(r);
        }
    }

    let gs = e.global_stats();
    assert_eq!(
        gs.packets as usize,
        log.len(),
        "{name}: global packet count"
    );
    assert!(gs.lru_hits > 0 && gs.lru_misses > 0, "{name}: {gs:?}");
    assert_eq!(gs.icmp, 1, "{name}: {gs:?}");
    assert_eq!(gs.encap_fail, 0, "{name}: {gs:?}");
    log
}

fn kernel_or_skip() -> bool {
    match kernel::probe() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

#[test]
fn kernel_interpreter_and_jit_balance_identically() {
    if !kernel_or_skip() {
        return;
    }
    let bytes = userxdp_programs::bytes("lb").expect("lb.o built");
    let mut kernel = Kernel(Oracle::load(&bytes, None).expect("kernel load"));
    let k = scenario(&mut kernel);
    for engine in [Engine::Interpreter, Engine::Jit] {
        let mut user = User::new(engine);
        let u = scenario(&mut user);
        assert_eq!(k.len(), u.len());
        for (i, (a, b)) in k.iter().zip(&u).enumerate() {
            assert_eq!(a, b, "packet {i}: kernel and {} differ", user.name());
        }
    }
}

#[test]
fn empty_vip_drops_and_reconfiguration_removes_vips() {
    if !kernel_or_skip() {
        return;
    }
    let bytes = userxdp_programs::bytes("lb").expect("lb.o built");
    let mut kernel = Kernel(Oracle::load(&bytes, None).expect("kernel load"));
    let mut cfg = config(false);
    cfg.vips[0].backends.iter_mut().for_each(|b| b.weight = 0);
    kernel.apply(&cfg);
    let mut rng = StdRng::seed_from_u64(7);
    let f = random_flow(&mut rng, false, 6);
    assert_eq!(kernel.run(&packet(&f, true)).0, XDP_DROP);
    assert_eq!(kernel.global_stats().no_real, 1);
    // Dropping the VIP from the configuration deletes its vip_map entry: traffic passes.
    cfg.vips.remove(0);
    let mut w = kernel.0;
    lb::apply(&cfg, &mut w).expect("apply");
    assert_eq!(w.keys("vip_map").expect("keys").len(), cfg.vips.len());
    let pkt = packet(&f, true);
    let r = w.test_run(PROG, &pkt, 1).expect("run");
    assert_eq!((r.retval, r.data), (XDP_PASS, pkt));
}

#[test]
fn real_indices_survive_reconfiguration() {
    let a = Plan::build(&config(false)).expect("plan");
    let existing: Vec<(u32, IpAddr)> = a
        .reals
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i as u32 + 1, r)))
        .collect();
    let b = Plan::build_with(&config(true), &existing).expect("plan");
    for &(idx, addr) in &existing {
        assert_eq!(b.real_addr(idx), Some(addr), "real {idx} moved");
    }
    // The two new backends took fresh indices after the old ones.
    assert_eq!(b.reals.len(), existing.len() + 2);
    // A removed backend keeps its slot (draining) until a new one needs it.
    let mut c = config(false);
    c.vips[0].backends.remove(2); // b4(3), real 3, in no other VIP
    let plan_c = Plan::build_with(&c, &existing).expect("plan");
    assert_eq!(plan_c.real_addr(3), None);
    assert!(plan_c.vips[0].ring.iter().all(|&r| r != 3));
    assert_eq!(plan_c.real_addr(4), Some(b6(1)));
    // Encodings round-trip.
    for addr in [b4(9), b6(9)] {
        assert_eq!(lb::decode_real(&lb::real_def(addr)), Some(addr));
    }
}
