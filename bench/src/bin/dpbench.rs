//! `dpbench`: the AF_XDP datapath benchmark of issue 5, on the veth testbed (root only).
//!
//! ```text
//! cargo build --release -p userxdp-bench --bin dpbench
//! sudo target/release/dpbench [--seconds 2] [--rounds 5] [--name dpb] [--legs LIST]
//!                             [--no-busy-poll] [--json]
//! ```
//!
//! Legs (each one measured once per round; rounds alternate the order, A B C ... then ... C B A):
//!
//! | leg | receiver | queues | cores |
//! |---|---|---|---|
//! | `us-drop`    | `launch::run` with `xdp_drop` (JIT)        | 0   | generator 0, worker 1 |
//! | `raw-drop`   | raw AF_XDP receive-and-release loop, no VM | 0   | generator 0, loop 1 |
//! | `us-drop-2q` | `launch::run` with `xdp_drop`              | 0,1 | generators 0,1; workers q0→0, q1→1 |
//! | `kern-drop`  | `xdp_drop.o` attached natively to veth-srv | 0   | generator 0, threaded NAPI pinned to 1 |
//! | `us-tx`      | `launch::run` with `xdp_tx`                | 0   | generator 0, worker 1 |
//! | `raw-tx`     | raw AF_XDP loop sending every frame back, no VM | 0 | generator 0, loop 1 |
//! | `kern-tx`    | `xdp_tx.o` attached natively               | 0   | generator 0, threaded NAPI pinned to 1 |
//! | `us-lb`      | `launch::run` with `lb.o`, one VIP hit     | 0   | generator 0, worker 1 |
//! | `kern-lb`    | `lb.o` attached natively, same VIP         | 0   | generator 0, threaded NAPI pinned to 1 |
//!
//! Traffic: `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` of `xdp_gen.o` on one 64-byte
//! UDP frame, `ingress_ifindex` = veth-cli, run from inside the client namespace: every run is an
//! XDP_TX out of veth-cli, i.e. a frame on veth-srv's RX queue `cpu % queues` (veth picks the
//! peer queue by the transmitting CPU), so one generator thread pinned per fed queue's CPU.
//!
//! Measured per leg: frames the measured program ran on per second of generator activity
//! (userspace: the workers' `rx`; raw loop: its count; kernel: veth-srv's `xdp_packets`),
//! offered load, CPU time of the receiver side (the datapath process from `/proc/self/stat`, or
//! the threaded NAPI kthreads from `/proc/PID/stat`), of the generator threads
//! (`getrusage(RUSAGE_THREAD)`), and each CPU's user/system/softirq share from `/proc/stat` over
//! the generator window. With tick accounting, softirq work done inside a task's system call
//! may be booked to that task as system time rather than softirq: read the columns together.
//!
//! Structure: the parent (host namespace) brings the testbed up and tears it down (also on
//! error, panic, SIGINT and SIGTERM), and for every leg re-executes itself as `rx` inside the
//! server namespace and `gen` inside the client namespace; children talk JSON on stdout.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::MapCore;
use serde::{Deserialize, Serialize};
use userxdp_bench::pin_current_thread;
use userxdp_bench::stats::Spread;
use userxdp_datapath::cli::objects::ProgRef;
use userxdp_datapath::device::afxdp::{BusyPoll, XskMode, XskOptions, XskPort};
use userxdp_datapath::device::Port;
use userxdp_datapath::launch::report::StatsFormat;
use userxdp_datapath::launch::{self, Config, Input};
use userxdp_datapath::lb::targets::ControlMaps;
use userxdp_datapath::lb::{self, LbConfig};
use userxdp_datapath::steer::{attached_program, Steering};
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy};

/// The interfaces `scripts/testbed.sh` creates (fixed names inside the namespaces).
const CLI_IF: &str = "veth-cli";
const SRV_IF: &str = "veth-srv";
const CLI_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x01];
const SRV_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x02];
/// The measured core; the generator of single-queue legs runs on the other one.
const MEASURED_CPU: usize = 1;
const GEN_CPU: usize = 0;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`.
const LIVE_FRAMES: u32 = 1 << 1;
/// Frames per RX batch, UMEM frames per queue, as `run-datapath`'s defaults.
const BATCH: usize = 64;
const UMEM_FRAMES: u32 = 4096;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

// ---------------------------------------------------------------------------------------------
// Legs

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Leg {
    UsDrop,
    RawDrop,
    UsDrop2q,
    KernDrop,
    UsTx,
    RawTx,
    KernTx,
    UsLb,
    KernLb,
}

const ALL_LEGS: &[Leg] = &[
    Leg::UsDrop,
    Leg::RawDrop,
    Leg::UsDrop2q,
    Leg::KernDrop,
    Leg::UsTx,
    Leg::RawTx,
    Leg::KernTx,
    Leg::UsLb,
    Leg::KernLb,
];

impl Leg {
    fn name(self) -> &'static str {
        match self {
            Leg::UsDrop => "us-drop",
            Leg::RawDrop => "raw-drop",
            Leg::UsDrop2q => "us-drop-2q",
            Leg::KernDrop => "kern-drop",
            Leg::UsTx => "us-tx",
            Leg::RawTx => "raw-tx",
            Leg::KernTx => "kern-tx",
            Leg::UsLb => "us-lb",
            Leg::KernLb => "kern-lb",
        }
    }

    fn parse(s: &str) -> Option<Leg> {
        ALL_LEGS.iter().copied().find(|l| l.name() == s)
    }

    /// CPUs of the generator threads (one per fed queue).
    fn gen_cpus(self) -> Vec<usize> {
        match self {
            Leg::UsDrop2q => vec![GEN_CPU, MEASURED_CPU],
            _ => vec![GEN_CPU],
        }
    }

    fn queues(self) -> Vec<u32> {
        match self {
            Leg::UsDrop2q => vec![0, 1],
            _ => vec![0],
        }
    }

    /// Worker cores, one per queue: queue q's worker beside the generator feeding queue q
    /// (whose softirq would otherwise run that queue's NAPI) on 2 queues.
    fn cores(self) -> Vec<usize> {
        match self {
            Leg::UsDrop2q => vec![GEN_CPU, MEASURED_CPU],
            _ => vec![MEASURED_CPU],
        }
    }

    fn program(self) -> &'static str {
        match self {
            Leg::UsTx | Leg::RawTx | Leg::KernTx => "xdp_tx",
            Leg::UsLb | Leg::KernLb => "lb",
            _ => "xdp_drop",
        }
    }

    fn kernel(self) -> bool {
        matches!(self, Leg::KernDrop | Leg::KernTx | Leg::KernLb)
    }

    fn what(self) -> &'static str {
        match self {
            Leg::UsDrop => "userspace xdp_drop, 1 queue: gen CPU0, worker CPU1",
            Leg::RawDrop => "raw AF_XDP drop loop, no VM, 1 queue: gen CPU0, loop CPU1",
            Leg::UsDrop2q => "userspace xdp_drop, 2 queues: gen CPU0+CPU1, workers CPU0+CPU1",
            Leg::KernDrop => "kernel xdp_drop native: gen CPU0, threaded NAPI CPU1",
            Leg::UsTx => "userspace xdp_tx, 1 queue: gen CPU0, worker CPU1",
            Leg::RawTx => "raw AF_XDP send-back loop, no VM, 1 queue: gen CPU0, loop CPU1",
            Leg::KernTx => "kernel xdp_tx native: gen CPU0, threaded NAPI CPU1",
            Leg::UsLb => "userspace lb.o (VIP hit, IPIP, XDP_TX), 1 queue: gen CPU0, worker CPU1",
            Leg::KernLb => "kernel lb.o native (VIP hit, IPIP, XDP_TX): gen CPU0, NAPI CPU1",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages between the parent and its children

/// What the `gen` child measured.
#[derive(Debug, Serialize, Deserialize)]
struct GenResult {
    /// Frames offered (test runs completed).
    sent: u64,
    /// Wall time from the common start to the last thread's end.
    seconds: f64,
    /// CPU seconds of the generator threads.
    cpu_s: f64,
    /// Per CPU (index = CPU), time in each state over the same window.
    cpus: Vec<CpuTimes>,
}

/// What the `rx` child measured between READY and stop.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RxResult {
    /// Frames the measured program ran on (userspace legs; 0 for kernel legs).
    rx: u64,
    /// Frames sent back (XDP_TX).
    tx: u64,
    /// Frames lost other than by verdict.
    errors: u64,
    /// CPU seconds of the receiver side (process, or NAPI kthreads for kernel legs).
    cpu_s: f64,
    /// Wall time READY→stop.
    seconds: f64,
    /// Problems the datapath reported.
    problems: Vec<String>,
}

/// Seconds a CPU spent in each state (from `/proc/stat`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct CpuTimes {
    user: f64,
    system: f64,
    softirq: f64,
    irq: f64,
    idle: f64,
}

impl CpuTimes {
    fn minus(self, o: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user - o.user,
            system: self.system - o.system,
            softirq: self.softirq - o.softirq,
            irq: self.irq - o.irq,
            idle: self.idle - o.idle,
        }
    }

    fn total(&self) -> f64 {
        self.user + self.system + self.softirq + self.irq + self.idle
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Every CPU's times, from `/proc/stat` (index = CPU number).
fn proc_stat() -> Result<Vec<CpuTimes>> {
    let hz = clock_ticks();
    let text = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(n) = name
            .strip_prefix("cpu")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let v: Vec<f64> = f.map(|x| x.parse::<f64>().unwrap_or(0.0) / hz).collect();
        if v.len() < 7 {
            bail!("/proc/stat: short line for cpu{n}");
        }
        if out.len() <= n {
            out.resize(n + 1, CpuTimes::default());
        }
        // user nice system idle iowait irq softirq
        out[n] = CpuTimes {
            user: v[0] + v[1],
            system: v[2],
            idle: v[3] + v[4],
            irq: v[5],
            softirq: v[6],
        };
    }
    Ok(out)
}

/// utime + stime of a process or thread, in seconds, from a `/proc/.../stat` file.
fn stat_cpu(path: &str) -> Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| path.to_string())?;
    let after = text
        .rfind(')')
        .map(|i| &text[i + 2..])
        .ok_or_else(|| anyhow!("{path}: no comm"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / clock_ticks())
}

/// CPU seconds of the calling thread.
fn thread_cpu() -> f64 {
    // SAFETY: rusage is plain data; getrusage writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// The generator child (client namespace)

/// One 64-byte Ethernet/IPv4/UDP frame from the client to the server (no FCS).
fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&SRV_MAC);
    f[6..12].copy_from_slice(&CLI_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&50u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
    let sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let csum = !(((folded & 0xffff) + (folded >> 16)) as u16);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f[34..36].copy_from_slice(&9u16.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&30u16.to_be_bytes());
    f
}

fn load_object(name: &str) -> Result<libbpf_rs::Object> {
    let path = userxdp_programs::path(name).with_context(|| format!("{name}.o was not built"))?;
    libbpf_rs::ObjectBuilder::default()
        .open_file(&path)
        .and_then(|o| o.load())
        .with_context(|| format!("loading {}", path.display()))
}

fn find_prog<'a>(obj: &'a mut libbpf_rs::Object, name: &str) -> Result<libbpf_rs::ProgramMut<'a>> {
    obj.progs_mut()
        .find(|p| p.name().to_str() == Some(name))
        .with_context(|| format!("no program {name}"))
}

/// One generator thread: live-frame XDP_TX runs pinned on `cpu` for `seconds`.
fn gen_thread(
    cpu: usize,
    ifindex: u32,
    seconds: f64,
    start: Arc<Barrier>,
) -> Result<(u64, f64, f64)> {
    // Every thread reaches the barrier, whether its setup worked or not (no deadlock).
    let setup = (|| -> Result<libbpf_rs::Object> {
        if !pin_current_thread(cpu) {
            bail!("cannot pin the generator to CPU {cpu}");
        }
        let mut obj = load_object("xdp_gen")?;
        find_prog(&mut obj, "xdp_gen")?;
        // The template is rewritten into the frame on every run (see xdp_gen.bpf.c).
        let data = frame();
        let mut value = (data.len() as u32).to_ne_bytes().to_vec();
        value.extend_from_slice(&data);
        obj.maps()
            .find(|m| m.name().to_str() == Some("gen_template"))
            .context("xdp_gen.o has no gen_template map")?
            .update(&0u32.to_ne_bytes(), &value, libbpf_rs::MapFlags::ANY)
            .context("filling gen_template")?;
        Ok(obj)
    })();
    start.wait();
    let mut obj = setup?;
    let prog = find_prog(&mut obj, "xdp_gen")?;
    let data = frame();
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    let md: [u32; 6] = [0, data.len() as u32, 0, ifindex, 0, 0];
    let mut ctx: Vec<u8> = md.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    let deadline = Duration::from_secs_f64(seconds);
    let mut repeat: u32 = 20_000;
    let mut sent = 0u64;
    while t0.elapsed() < deadline && !INTERRUPTED.load(Ordering::Relaxed) {
        let t = Instant::now();
        let input = libbpf_rs::ProgramInput {
            context_in: Some(&mut ctx),
            data_in: Some(&data),
            flags: LIVE_FRAMES,
            repeat,
            ..Default::default()
        };
        let out = prog
            .test_run(input)
            .with_context(|| format!("BPF_PROG_TEST_RUN live frames on CPU {cpu}"))?;
        sent += u64::from(repeat);
        // Each call swaps the XDP dispatcher in and out (an RCU grace period, tens of ms on a
        // loaded machine, no traffic meanwhile): make calls long, ~0.5 s of generating
        // (the kernel's own per-run time), and never overshoot the deadline by much.
        let per = out
            .duration
            .as_secs_f64()
            .max(t.elapsed().as_secs_f64() / f64::from(repeat) / 4.0)
            .max(1e-9);
        let left = (deadline.as_secs_f64() - t0.elapsed().as_secs_f64()).max(0.0);
        let want = (0.5f64.min(left) / per).clamp(1_000.0, 50_000_000.0);
        repeat = want as u32;
    }
    Ok((sent, t0.elapsed().as_secs_f64(), thread_cpu() - cpu0))
}

fn gen_main(cpus: &[usize], seconds: f64, nice: i32) -> Result<()> {
    renice(0, nice)?;
    let ifindex = userxdp_datapath::netdev::ifindex(CLI_IF).context(CLI_IF)?;
    let start = Arc::new(Barrier::new(cpus.len() + 1));
    let handles: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            let start = start.clone();
            std::thread::spawn(move || gen_thread(cpu, ifindex, seconds, start))
        })
        .collect();
    start.wait();
    let before = proc_stat()?;
    let t0 = Instant::now();
    let mut result = GenResult {
        sent: 0,
        seconds: 0.0,
        cpu_s: 0.0,
        cpus: Vec::new(),
    };
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.join().map_err(|_| anyhow!("generator thread panicked"))?);
    }
    let wall = t0.elapsed().as_secs_f64();
    let after = proc_stat()?;
    for o in outcomes {
        let (sent, secs, cpu) = o?;
        result.sent += sent;
        result.seconds = result.seconds.max(secs);
        result.cpu_s += cpu;
    }
    if result.seconds == 0.0 {
        result.seconds = wall;
    }
    result.cpus = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.minus(*b))
        .collect();
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The receiver child (server namespace)

/// Sets `/sys/class/net/veth-srv/threaded`; dropping the guard puts 0 back.
struct Threaded;

impl Threaded {
    /// Switches threaded NAPI on (an error if that fails) or off (best effort: without an
    /// XDP program veth has no NAPI and the kernel answers EOPNOTSUPP).
    fn set(on: bool) -> Result<Threaded> {
        let path = format!("/sys/class/net/{SRV_IF}/threaded");
        let r = std::fs::write(&path, if on { "1" } else { "0" });
        if on {
            r.with_context(|| path.clone())?;
        }
        Ok(Threaded)
    }
}

impl Drop for Threaded {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("/sys/class/net/{SRV_IF}/threaded"), "0");
    }
}

/// PIDs of the threaded-NAPI kthreads of any interface named veth-srv.
fn napi_threads() -> Vec<u32> {
    let prefix = format!("napi/{SRV_IF}");
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                if comm.trim_end().starts_with(&prefix) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// Sets the nice value of a process or thread (0 = this one); threads created afterwards
/// inherit it.
fn renice(pid: u32, nice: i32) -> Result<()> {
    // SAFETY: setpriority has no memory preconditions.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, nice) };
    if r != 0 {
        bail!(
            "setpriority({pid}, {nice}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn pin_pid(pid: u32, cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Says READY to the parent and waits for its "stop" line (or EOF), at most `limit`.
/// Returns the wall time waited.
fn ready_then_wait(limit: Duration) -> Result<f64> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(());
    });
    println!("READY");
    std::io::stdout().flush()?;
    let t0 = Instant::now();
    let _ = rx.recv_timeout(limit);
    Ok(t0.elapsed().as_secs_f64())
}

fn self_cpu() -> f64 {
    stat_cpu("/proc/self/stat").unwrap_or(0.0)
}

fn xsk_options(busy_poll: bool) -> XskOptions {
    XskOptions {
        frames: UMEM_FRAMES,
        mode: XskMode::Copy,
        need_wakeup: true,
        busy_poll: busy_poll.then_some(BusyPoll {
            usecs: 20,
            budget: BATCH as u32,
        }),
    }
}

/// The load balancer's configuration for the LB legs: one UDP VIP on the generator's
/// destination (198.18.0.2:9), one backend, the client as the next hop.
fn lb_config() -> LbConfig {
    let mac = CLI_MAC
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    LbConfig::from_json(&format!(
        r#"{{"router_mac": "{mac}", "vips": [{{"addr": "198.18.0.2", "port": 9, "proto": "udp",
            "backends": [{{"addr": "198.18.7.1"}}]}}]}}"#
    ))
    .expect("static LB configuration")
}

/// A kernel-loaded object's maps by name, for `lb::apply`.
struct ObjectMaps<'a>(&'a libbpf_rs::Object);

impl ObjectMaps<'_> {
    fn map(&self, name: &str) -> std::result::Result<libbpf_rs::Map<'_>, ApplyErrorText> {
        self.0
            .maps()
            .find(|m| m.name().to_str() == Some(name))
            .ok_or_else(|| ApplyErrorText(format!("no map {name}")))
    }
}

/// Errors of [`ObjectMaps`], turned into the writer's error type by message.
struct ApplyErrorText(String);

impl From<ApplyErrorText> for userxdp_datapath::lb::ApplyError {
    fn from(e: ApplyErrorText) -> Self {
        userxdp_datapath::lb::ApplyError::Map {
            map: String::new(),
            op: "dpbench",
            reason: e.0,
        }
    }
}

impl userxdp_datapath::lb::MapWriter for ObjectMaps<'_> {
    fn update(
        &mut self,
        map: &str,
        key: &[u8],
        value: &[u8],
    ) -> std::result::Result<(), userxdp_datapath::lb::ApplyError> {
        self.map(map)?
            .update(key, value, libbpf_rs::MapFlags::ANY)
            .map_err(|e| ApplyErrorText(format!("{map}: {e}")).into())
    }

    fn delete(
        &mut self,
        map: &str,
        key: &[u8],
    ) -> std::result::Result<(), userxdp_datapath::lb::ApplyError> {
        let _ = self.map(map)?.delete(key);
        Ok(())
    }

    fn keys(
        &mut self,
        map: &str,
    ) -> std::result::Result<Vec<Vec<u8>>, userxdp_datapath::lb::ApplyError> {
        Ok(self.map(map)?.keys().collect())
    }

    fn lookup(
        &mut self,
        map: &str,
        key: &[u8],
    ) -> std::result::Result<Option<Vec<u8>>, userxdp_datapath::lb::ApplyError> {
        self.map(map)?
            .lookup(key, libbpf_rs::MapFlags::ANY)
            .map_err(|e| ApplyErrorText(format!("{map}: {e}")).into())
    }
}

fn rx_datapath(leg: Leg, busy_poll: bool, limit: Duration, ifindex: u32) -> Result<RxResult> {
    let path = userxdp_programs::path(leg.program())
        .with_context(|| format!("{}.o was not built", leg.program()))?;
    let config = Config {
        input: Input::Interface {
            name: SRV_IF.to_string(),
            queues: leg.queues(),
            xsk: xsk_options(busy_poll),
        },
        prog: ProgRef {
            path,
            program: None,
        },
        egress: None,
        engine: Engine::Jit,
        safety: SafetyPolicy::Kernel,
        cores: Some(leg.cores()),
        tap: None,
        batch: BATCH,
        stats: None,
        format: StatsFormat::Text,
        trace: None,
        duration: Some(limit),
        spin: true,
        control: matches!(leg, Leg::UsLb)
            .then(|| std::env::temp_dir().join(format!("dpbench-{}.sock", std::process::id()))),
        maps_init: None,
    };
    let control = config.control.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let run_stop = stop.clone();
    let handle = std::thread::spawn(move || launch::run(&config, run_stop));
    let t0 = Instant::now();
    while attached_program(ifindex).is_none() {
        if handle.is_finished() || t0.elapsed() > Duration::from_secs(30) {
            stop.store(true, Ordering::Relaxed);
            let r = handle.join().map_err(|_| anyhow!("datapath panicked"))?;
            r?;
            bail!("the datapath never attached its steering program");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(sock) = &control {
        while !sock.exists() && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut maps = ControlMaps::connect(sock)?;
        lb::apply(&lb_config(), &mut maps)?;
        maps.flush()?;
    }
    // NAPI in softirq (or driven by busy polling), never threaded, for AF_XDP.
    let _threaded = Threaded::set(false)?;
    std::thread::sleep(Duration::from_millis(50));
    let cpu0 = self_cpu();
    let seconds = ready_then_wait(limit)?;
    let cpu = self_cpu() - cpu0;
    stop.store(true, Ordering::Relaxed);
    let report = handle.join().map_err(|_| anyhow!("datapath panicked"))??;
    Ok(RxResult {
        rx: report.total.rx,
        tx: report.total.tx,
        errors: report.total.errors,
        cpu_s: cpu,
        seconds,
        problems: report.problems,
    })
}

/// The AF_XDP floor without a VM: receive and release every frame, or (`send_back`) send
/// every frame back out of the queue it came from, as XDP_TX does.
fn rx_raw(send_back: bool, busy_poll: bool, limit: Duration, ifindex: u32) -> Result<RxResult> {
    let mut steering = Steering::load(SRV_IF, ifindex)?;
    let mut port = XskPort::open(SRV_IF, ifindex, 0, xsk_options(busy_poll))?;
    steering.register(0, port.fd())?;
    steering.attach()?;
    let _threaded = Threaded::set(false)?;
    let stop = Arc::new(AtomicBool::new(false));
    let loop_stop = stop.clone();
    let handle = std::thread::Builder::new().name("raw-q0".into()).spawn(
        move || -> Result<(u64, u64)> {
            if !pin_current_thread(MEASURED_CPU) {
                bail!("cannot pin the raw loop to CPU {MEASURED_CPU}");
            }
            let mut descs = Vec::with_capacity(BATCH);
            let (mut n, mut sent) = (0u64, 0u64);
            while !loop_stop.load(Ordering::Relaxed) {
                port.service()?;
                descs.clear();
                port.receive(&mut descs, BATCH)?;
                let out = if send_back { port.transmit(&descs)? } else { 0 };
                for d in &descs[out..] {
                    port.release(d.addr);
                }
                n += descs.len() as u64;
                sent += out as u64;
            }
            Ok((n, sent))
        },
    )?;
    std::thread::sleep(Duration::from_millis(50));
    let cpu0 = self_cpu();
    let seconds = ready_then_wait(limit)?;
    let cpu = self_cpu() - cpu0;
    stop.store(true, Ordering::Relaxed);
    let (rx, tx) = handle.join().map_err(|_| anyhow!("raw loop panicked"))??;
    steering.detach()?;
    Ok(RxResult {
        rx,
        tx,
        cpu_s: cpu,
        seconds,
        ..RxResult::default()
    })
}

fn rx_kernel(leg: Leg, limit: Duration, ifindex: u32, nice: i32) -> Result<RxResult> {
    if let Some(id) = attached_program(ifindex) {
        bail!("{SRV_IF} already has XDP program id {id}");
    }
    let mut obj = load_object(leg.program())?;
    if leg == Leg::KernLb {
        lb::apply(&lb_config(), &mut ObjectMaps(&obj))?;
    }
    let prog_name = if leg == Leg::KernLb {
        "xdp_lb"
    } else {
        leg.program()
    };
    let prog = find_prog(&mut obj, prog_name)?;
    let link = prog
        .attach_xdp(ifindex as i32)
        .with_context(|| format!("attaching {} to {SRV_IF}", leg.program()))?;
    // NAPI exists once XDP is on; switching to threaded then creates the kthreads.
    let old = napi_threads();
    let threaded = Threaded::set(true)?;
    std::thread::sleep(Duration::from_millis(50));
    let ours: Vec<u32> = napi_threads()
        .into_iter()
        .filter(|p| !old.contains(p))
        .collect();
    if ours.is_empty() {
        bail!("no threaded NAPI kthread appeared for {SRV_IF}");
    }
    for &pid in &ours {
        if !pin_pid(pid, MEASURED_CPU) {
            bail!("cannot pin NAPI kthread {pid} to CPU {MEASURED_CPU}");
        }
        // The kernel's receiver gets the same priority as the userspace workers.
        renice(pid, nice)?;
    }
    let napi_cpu = || -> f64 {
        ours.iter()
            .map(|p| stat_cpu(&format!("/proc/{p}/stat")).unwrap_or(0.0))
            .sum()
    };
    let cpu0 = napi_cpu();
    let seconds = ready_then_wait(limit)?;
    let cpu = napi_cpu() - cpu0;
    drop(threaded);
    if leg == Leg::KernLb {
        // What lb.o did with the frames (global counters, summed over CPUs).
        if let Ok(Some(v)) = ObjectMaps(&obj)
            .map("lb_stats")
            .map_err(|e| anyhow!(e.0))?
            .lookup_percpu(&(lb::GLOBAL_STATS).to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        {
            let s: Vec<lb::LbStats> = v.iter().map(|c| lb::LbStats::sum_percpu(c)).collect();
            eprintln!("kern-lb global stats per CPU: {s:?}");
        }
    }
    link.detach().context("detaching")?;
    Ok(RxResult {
        cpu_s: cpu,
        seconds,
        ..RxResult::default()
    })
}

fn rx_main(leg: Leg, busy_poll: bool, limit: Duration, nice: i32) -> Result<()> {
    renice(0, nice)?;
    let ifindex = userxdp_datapath::netdev::ifindex(SRV_IF).context(SRV_IF)?;
    let result = match leg {
        Leg::RawDrop => rx_raw(false, busy_poll, limit, ifindex)?,
        Leg::RawTx => rx_raw(true, busy_poll, limit, ifindex)?,
        l if l.kernel() => rx_kernel(l, limit, ifindex, nice)?,
        l => rx_datapath(l, busy_poll, limit, ifindex)?,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The parent

/// The testbed, torn down on drop.
struct Testbed {
    script: PathBuf,
    name: String,
}

impl Testbed {
    fn up(script: PathBuf, name: &str, cli_xdp: &std::path::Path) -> Result<Testbed> {
        // The guard exists before `up` runs: a half-built testbed is torn down too.
        let tb = Testbed {
            script,
            name: name.to_string(),
        };
        let out = Command::new(&tb.script)
            .args(["up", "--name", name, "--queues", "2", "--cli-xdp"])
            .arg(cli_xdp)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", tb.script.display()))?;
        if !out.status.success() {
            bail!("testbed up failed ({})", out.status);
        }
        Ok(tb)
    }

    fn ns(&self, side: &str) -> String {
        format!("{}-{side}", self.name)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .args(["down", "--name", &self.name])
            .stdout(Stdio::null())
            .status();
    }
}

/// A child process, killed and reaped on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Sums of veth-srv's per-queue ethtool counters, by suffix (`xdp_packets`, `xdp_tx`, ...).
fn ethtool_srv(tb: &Testbed) -> Result<BTreeMap<String, u64>> {
    let out = Command::new("ip")
        .args(["netns", "exec", &tb.ns("srv"), "ethtool", "-S", SRV_IF])
        .output()
        .context("ethtool -S")?;
    let mut sums = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(rest) = k.strip_prefix("rx_queue_") else {
            continue;
        };
        let Some((_, stat)) = rest.split_once('_') else {
            continue;
        };
        *sums.entry(stat.to_string()).or_insert(0) += v.trim().parse::<u64>().unwrap_or(0);
    }
    Ok(sums)
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>, k: &str) -> u64 {
    after
        .get(k)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(k).copied().unwrap_or(0))
}

/// One leg's measurement in one round.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    leg: &'static str,
    round: usize,
    /// Frames the measured program processed, Mpps over the generator window.
    mpps: f64,
    /// Frames offered, Mpps.
    offered_mpps: f64,
    /// XDP_TX frames out, Mpps (tx legs).
    tx_mpps: f64,
    /// Receiver-side CPU, cores (CPU seconds per wall second of its window).
    rx_cores: f64,
    /// Generator CPU, cores.
    gen_cores: f64,
    /// Per CPU: (user, system, softirq) busy fractions over the generator window.
    cpu_split: Vec<(f64, f64, f64)>,
    /// Busy cores over the generator window, all CPUs, everyone (ours and other processes).
    busy_cores: f64,
    /// veth-srv xdp_packets over the window, for cross-checking userspace counts.
    srv_xdp_packets: u64,
    problems: Vec<String>,
}

/// The child's next stdout line, waiting at most `timeout`, and failing early if it exits.
fn read_line(
    rx: &Receiver<String>,
    child: &mut ChildGuard,
    timeout: Duration,
    what: &str,
) -> Result<String> {
    let t0 = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => return Ok(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("{what}: the child exited"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = child.0.try_wait()? {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                return Ok(l);
            }
            bail!("{what}: the child exited ({status})");
        }
        if t0.elapsed() > timeout {
            bail!("{what}: no answer within {timeout:?}");
        }
    }
}

fn run_leg(
    tb: &Testbed,
    exe: &std::path::Path,
    opts: &Opts,
    leg: Leg,
    round: usize,
) -> Result<Sample> {
    let limit = opts.seconds * 4.0 + 30.0;
    let mut rx_child = ChildGuard(
        Command::new("ip")
            .args(["netns", "exec", &tb.ns("srv")])
            .arg(exe)
            .args(["rx", "--leg", leg.name(), "--limit", &format!("{limit}")])
            .args(["--nice", &opts.nice.to_string()])
            .args(if opts.busy_poll {
                &[][..]
            } else {
                &["--no-busy-poll"][..]
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the receiver")?,
    );
    let stdin: ChildStdin = rx_child.0.stdin.take().context("receiver stdin")?;
    let stdout = rx_child.0.stdout.take().context("receiver stdout")?;
    let (line_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send(l).is_err() {
                break;
            }
        }
    });
    let ready = read_line(
        &lines,
        &mut rx_child,
        Duration::from_secs(40),
        "receiver READY",
    )?;
    if ready != "READY" {
        bail!("receiver said {ready:?} instead of READY");
    }
    let before = ethtool_srv(tb)?;
    let gen = {
        let child = Command::new("ip")
            .args(["netns", "exec", &tb.ns("cli")])
            .arg(exe)
            .arg("gen")
            .arg("--cpus")
            .arg(
                leg.gen_cpus()
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .args(["--seconds", &format!("{}", opts.seconds)])
            .args(["--nice", &opts.nice.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the generator")?;
        let mut g = ChildGuard(child);
        let t0 = Instant::now();
        loop {
            if g.0.try_wait()?.is_some() {
                break;
            }
            if t0.elapsed().as_secs_f64() > opts.seconds + 30.0 {
                bail!("generator did not finish");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut text = String::new();
        if let Some(mut out) = g.0.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut text)?;
        }
        let status = g.0.wait()?;
        if !status.success() {
            bail!("generator failed ({status})");
        }
        serde_json::from_str::<GenResult>(text.trim()).context("generator output")?
    };
    let after = ethtool_srv(tb)?;
    let mut stdin = stdin;
    let _ = writeln!(stdin, "stop");
    drop(stdin);
    let json = read_line(
        &lines,
        &mut rx_child,
        Duration::from_secs(40),
        "receiver result",
    )?;
    let rx: RxResult = serde_json::from_str(&json).context("receiver output")?;
    let status = rx_child.0.wait()?;
    if !status.success() {
        bail!("receiver failed ({status})");
    }
    let secs = gen.seconds.max(1e-6);
    let srv_xdp_packets = delta(&after, &before, "xdp_packets");
    let (processed, tx) = if leg.kernel() {
        (srv_xdp_packets, delta(&after, &before, "xdp_tx"))
    } else {
        (rx.rx, rx.tx)
    };
    Ok(Sample {
        leg: leg.name(),
        round,
        mpps: processed as f64 / secs / 1e6,
        offered_mpps: gen.sent as f64 / secs / 1e6,
        tx_mpps: tx as f64 / secs / 1e6,
        rx_cores: rx.cpu_s / rx.seconds.max(1e-6),
        gen_cores: gen.cpu_s / secs,
        cpu_split: gen
            .cpus
            .iter()
            .map(|c| {
                let t = c.total().max(1e-9);
                (c.user / t, c.system / t, (c.softirq + c.irq) / t)
            })
            .collect(),
        busy_cores: gen
            .cpus
            .iter()
            .map(|c| 1.0 - c.idle / c.total().max(1e-9))
            .sum(),
        srv_xdp_packets,
        problems: rx.problems,
    })
}

struct Opts {
    seconds: f64,
    rounds: usize,
    name: String,
    legs: Vec<Leg>,
    busy_poll: bool,
    json: bool,
    testbed: PathBuf,
    nice: i32,
}

fn spread(v: &[f64]) -> String {
    match Spread::of(v) {
        Some(s) if s.median < 10.0 => {
            format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
        }
        Some(s) => s.to_string(),
        None => "-".to_string(),
    }
}

fn median(v: &[f64]) -> f64 {
    Spread::of(v).map(|s| s.median).unwrap_or(f64::NAN)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn print_tables(opts: &Opts, samples: &[Sample], load: (&str, &str)) {
    let of =
        |leg: Leg| -> Vec<&Sample> { samples.iter().filter(|s| s.leg == leg.name()).collect() };
    println!(
        "\n{} rounds × {} s per leg, legs alternated (order reversed every other round); \
         64-byte frames; busy poll {}; generator, receiver and NAPI kthreads at nice {}; \
         load average before {} / after {}.\n",
        opts.rounds,
        opts.seconds,
        if opts.busy_poll {
            "on (20 µs, budget 64)"
        } else {
            "off"
        },
        opts.nice,
        load.0,
        load.1,
    );
    println!("| leg | what runs where | Mpps processed | offered Mpps | XDP_TX out Mpps | receiver CPU (cores) | generator CPU (cores) | all CPUs busy (cores) | CPU0 usr/sys/si % | CPU1 usr/sys/si % |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &leg in &opts.legs {
        let s = of(leg);
        if s.is_empty() {
            continue;
        }
        let col = |f: &dyn Fn(&Sample) -> f64| spread(&s.iter().map(|x| f(x)).collect::<Vec<_>>());
        let split = |cpu: usize| -> String {
            let get = |k: usize| {
                median(
                    &s.iter()
                        .filter_map(|x| x.cpu_split.get(cpu))
                        .map(|t| [t.0, t.1, t.2][k] * 100.0)
                        .collect::<Vec<_>>(),
                )
            };
            format!("{:.0}/{:.0}/{:.0}", get(0), get(1), get(2))
        };
        println!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            leg.name(),
            leg.what(),
            col(&|x| x.mpps),
            col(&|x| x.offered_mpps),
            if matches!(
                leg,
                Leg::UsTx | Leg::RawTx | Leg::KernTx | Leg::UsLb | Leg::KernLb
            ) {
                col(&|x| x.tx_mpps)
            } else {
                "-".into()
            },
            col(&|x| x.rx_cores),
            col(&|x| x.gen_cores),
            col(&|x| x.busy_cores),
            split(0),
            split(1),
        );
    }
    let ratio = |a: Leg, b: Leg| -> Vec<f64> {
        (0..opts.rounds)
            .filter_map(|r| {
                let x = samples.iter().find(|s| s.leg == a.name() && s.round == r)?;
                let y = samples.iter().find(|s| s.leg == b.name() && s.round == r)?;
                (y.mpps > 0.0).then(|| x.mpps / y.mpps)
            })
            .collect()
    };
    println!("\nRatios (per round, same round's legs; median (min–max)):\n");
    println!("| comparison | ratio | target |");
    println!("|---|---|---|");
    for (a, b, label, target) in [
        (
            Leg::UsDrop,
            Leg::RawDrop,
            "userspace xdp_drop / raw AF_XDP loop",
            "≥ 0.9",
        ),
        (
            Leg::UsDrop2q,
            Leg::UsDrop,
            "2 queues on 2 cores / 1 queue on 1 core",
            "≥ 1.7",
        ),
        (
            Leg::UsDrop,
            Leg::KernDrop,
            "userspace / kernel, xdp_drop",
            "report",
        ),
        (
            Leg::UsTx,
            Leg::KernTx,
            "userspace / kernel, xdp_tx",
            "report",
        ),
        (
            Leg::UsTx,
            Leg::RawTx,
            "userspace xdp_tx / raw AF_XDP send-back loop",
            "report",
        ),
        (
            Leg::RawTx,
            Leg::KernTx,
            "raw AF_XDP send-back loop (no VM) / kernel xdp_tx: the bound of any AF_XDP XDP_TX",
            "report",
        ),
        (
            Leg::UsLb,
            Leg::KernLb,
            "userspace / kernel, lb.o (issue 6)",
            "≥ 1.0",
        ),
    ] {
        let r = ratio(a, b);
        if !r.is_empty() {
            println!("| {label} | {} | {target} |", spread(&r));
        }
    }
    let problems: Vec<String> = samples
        .iter()
        .flat_map(|s| {
            s.problems
                .iter()
                .map(move |p| format!("{} round {}: {p}", s.leg, s.round))
        })
        .collect();
    if !problems.is_empty() {
        println!("\nProblems reported by the datapath:");
        for p in problems.iter().take(20) {
            println!("- {p}");
        }
    }
    println!(
        "\nCPU time: receiver = the datapath process's utime+stime (/proc/self/stat) or the \
         threaded NAPI kthreads' (/proc/PID/stat), per second of its window; generator = \
         getrusage(RUSAGE_THREAD) of the live-frames threads; per-CPU split from /proc/stat \
         over the generator window (tick-based: softirq run inside a system call may be \
         booked as system time)."
    );
}

fn bench_main(opts: Opts) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("dpbench: skipped: needs root (namespaces, XDP, BPF_PROG_TEST_RUN)");
        return Ok(());
    }
    let ncpu = proc_stat()?.len();
    if ncpu < 2 {
        bail!("needs at least 2 CPUs (found {ncpu})");
    }
    install_signal_handlers();
    let exe = std::env::current_exe().context("own executable")?;
    let cli_xdp = userxdp_programs::path("xdp_drop").context("xdp_drop.o was not built")?;
    let load_before = loadavg();
    let tb = Testbed::up(opts.testbed.clone(), &opts.name, &cli_xdp)?;
    let mut samples = Vec::new();
    for round in 0..opts.rounds {
        let mut order = opts.legs.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for leg in order {
            if INTERRUPTED.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let s = run_leg(&tb, &exe, &opts, leg, round)
                .with_context(|| format!("leg {} round {round}", leg.name()))?;
            eprintln!(
                "[dpbench] round {round} {:<11} {:6.3} Mpps (offered {:.3}, srv xdp_packets {:.3} M, rx cores {:.2}, gen cores {:.2}, busy {:.2})",
                s.leg,
                s.mpps,
                s.offered_mpps,
                s.srv_xdp_packets as f64 / 1e6,
                s.rx_cores,
                s.gen_cores,
                s.busy_cores
            );
            samples.push(s);
        }
    }
    drop(tb);
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&samples)?);
    }
    print_tables(&opts, &samples, (&load_before, &loadavg()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE: &str = "usage: dpbench [--seconds S] [--rounds N] [--name PREFIX] [--legs a,b,...] \
                     [--no-busy-poll] [--nice N] [--json] [--testbed PATH]\n\
                     legs: us-drop raw-drop us-drop-2q kern-drop us-tx raw-tx kern-tx us-lb kern-lb";

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str> {
    *i += 1;
    args.get(*i)
        .map(|s| s.as_str())
        .with_context(|| format!("{flag} needs a value\n{USAGE}"))
}

fn main() -> std::process::ExitCode {
    userxdp_bench::exit_status("dpbench", run())
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Opts {
        seconds: 2.0,
        rounds: 5,
        name: "dpb".into(),
        legs: ALL_LEGS.to_vec(),
        busy_poll: true,
        json: false,
        testbed: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/testbed.sh"
        )),
        nice: -10,
    };
    let mut mode = "bench";
    let mut leg = None;
    let mut cpus = Vec::new();
    let mut limit = 60.0;
    let mut i = 0;
    if let Some(m) = args.first().filter(|a| *a == "gen" || *a == "rx") {
        mode = if m == "gen" { "gen" } else { "rx" };
        i = 1;
    }
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "--seconds" => opts.seconds = value(&args, &mut i, a)?.parse().context("--seconds")?,
            "--rounds" => opts.rounds = value(&args, &mut i, a)?.parse().context("--rounds")?,
            "--name" => opts.name = value(&args, &mut i, a)?.to_string(),
            "--testbed" => opts.testbed = PathBuf::from(value(&args, &mut i, a)?),
            "--legs" => {
                opts.legs = value(&args, &mut i, a)?
                    .split(',')
                    .map(|l| Leg::parse(l).with_context(|| format!("unknown leg {l}\n{USAGE}")))
                    .collect::<Result<_>>()?
            }
            "--leg" => {
                let l = value(&args, &mut i, a)?;
                leg = Some(Leg::parse(l).with_context(|| format!("unknown leg {l}"))?);
            }
            "--cpus" => {
                cpus = value(&args, &mut i, a)?
                    .split(',')
                    .map(|c| c.parse::<usize>().context("--cpus"))
                    .collect::<Result<_>>()?
            }
            "--limit" => limit = value(&args, &mut i, a)?.parse().context("--limit")?,
            "--nice" => opts.nice = value(&args, &mut i, a)?.parse().context("--nice")?,
            "--no-busy-poll" => opts.busy_poll = false,
            "--json" => opts.json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument {a}\n{USAGE}"),
        }
        i += 1;
    }
    if !(opts.seconds > 0.0 && opts.seconds <= 60.0) || opts.rounds == 0 || opts.rounds > 50 {
        bail!("--seconds must be in (0, 60] and --rounds in 1..=50");
    }
    match mode {
        "gen" => {
            if cpus.is_empty() {
                bail!("gen needs --cpus");
            }
            gen_main(&cpus, opts.seconds, opts.nice)
        }
        "rx" => rx_main(
            leg.context("rx needs --leg")?,
            opts.busy_poll,
            Duration::from_secs_f64(limit),
            opts.nice,
        ),
        _ => bench_main(opts),
    }
}
