//! Putting a datapath together and running it: the program instance, one port and one worker
//! per queue (each on its own pinned thread), the kernel-side steering, the TAP, the trace,
//! periodic statistics, and an orderly stop (signal, time limit, or finite input exhausted).

pub mod args;
pub mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use userxdp_runtime::object::spec::ProgramType;
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

use crate::cli::objects::{self, ProgRef};
use crate::control::{Control, ControlState};
use crate::device::afxdp::{XskOptions, XskPort};
use crate::device::memory::MemoryPort;
use crate::device::pcap::PcapPort;
use crate::device::{Discard, PcapSink, Port, Sink};
use crate::slot::{ProgramPair, ProgramSlot};
use crate::stats::{Counters, SharedCounters};
use crate::steer::Steering;
use crate::tap::Tap;
use crate::trace::TraceFile;
use crate::worker::{Egress, Worker, WorkerReport};

use report::{Reporter, StatsFormat};

/// Where frames come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// AF_XDP sockets on queues of a NIC.
    Interface {
        /// Interface name.
        name: String,
        /// Queues, one worker each.
        queues: Vec<u32>,
        /// Socket options.
        xsk: XskOptions,
    },
    /// A capture, on one worker; outputs written to `out_dir`.
    Pcap {
        /// The capture.
        path: PathBuf,
        /// Where tx.pcap, pass.pcap and redirect.pcap go.
        out_dir: PathBuf,
    },
    /// Generated frames: `count` per queue, cycling through `templates`.
    Generator {
        /// Packets to cycle through.
        templates: Vec<Vec<u8>>,
        /// Frames per queue.
        count: u64,
        /// Number of queues (workers).
        queues: u32,
    },
}

/// Everything `run-datapath` was asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// Frame source.
    pub input: Input,
    /// The ingress XDP program.
    pub prog: ProgRef,
    /// The egress TC program for frames from the TAP; from the same object it shares maps.
    pub egress: Option<ProgRef>,
    /// Engine.
    pub engine: Engine,
    /// Safety policy for the JIT.
    pub safety: SafetyPolicy,
    /// Cores for the workers, one per queue; `None` spreads them over the available cores.
    pub cores: Option<Vec<usize>>,
    /// TAP device for XDP_PASS and the kernel's output.
    pub tap: Option<String>,
    /// Frames per RX batch.
    pub batch: usize,
    /// Print statistics this often.
    pub stats: Option<Duration>,
    /// Text or JSON statistics.
    pub format: StatsFormat,
    /// Packet trace file.
    pub trace: Option<PathBuf>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Never sleep when idle (spin, for the lowest latency and for benchmarks).
    pub spin: bool,
    /// Control socket path (line-delimited JSON; see [`crate::control`]).
    pub control: Option<PathBuf>,
    /// Map contents to load before the first frame.
    pub maps_init: Option<PathBuf>,
}

/// What a finished run did.
#[derive(Debug)]
pub struct RunReport {
    /// Per worker, in queue order: queue number and counters.
    pub queues: Vec<(u32, Counters)>,
    /// Sum over the workers.
    pub total: Counters,
    /// Wall time the workers ran.
    pub elapsed: Duration,
    /// Errors workers saw (engine faults, fatal I/O), one line each.
    pub problems: Vec<String>,
}

struct Programs {
    ingress: Vm,
    egress: Option<Vm>,
}

fn load_programs(config: &Config, workers: u32) -> Result<Programs> {
    let options = VmOptions {
        engine: config.engine,
        safety: config.safety,
        ncpus: workers.max(1),
        ..VmOptions::default()
    };
    let (bytes, spec) = objects::open(&config.prog.path, None)?;
    let name = match &config.prog.program {
        Some(p) => p.clone(),
        None => objects::default_program(&spec, |t| t == ProgramType::Xdp)
            .with_context(|| format!("{}: no XDP program", config.prog.path.display()))?,
    };
    let ingress = Vm::new(spec, Some(&bytes), Some(&name), options.clone())
        .with_context(|| format!("{}: program {name}", config.prog.path.display()))?;
    if ingress.program().prog_type != ProgramType::Xdp {
        bail!(
            "{}: program {name} is not an XDP program",
            config.prog.path.display()
        );
    }
    let egress = match &config.egress {
        None => None,
        Some(e) => {
            let same = e.path.canonicalize().ok() == config.prog.path.canonicalize().ok();
            let vm = if same {
                let spec = ingress.spec();
                let name = egress_name(spec, e.program.as_deref(), &e.path)?;
                ingress
                    .sibling(&name)
                    .with_context(|| format!("{}: program {name}", e.path.display()))?
            } else {
                let (bytes, spec) = objects::open(&e.path, None)?;
                let name = egress_name(&spec, e.program.as_deref(), &e.path)?;
                Vm::new(spec, Some(&bytes), Some(&name), options)
                    .with_context(|| format!("{}: program {name}", e.path.display()))?
            };
            Some(vm)
        }
    };
    if let Some(path) = &config.maps_init {
        let init = crate::cli::maps_init::plan(path, ingress.spec(), workers.max(1))?;
        init.apply_user(&ingress)?;
    }
    Ok(Programs { ingress, egress })
}

fn egress_name(
    spec: &userxdp_runtime::object::spec::ObjectSpec,
    wanted: Option<&str>,
    path: &std::path::Path,
) -> Result<String> {
    let p = match wanted {
        Some(w) => spec.program(w),
        None => objects::default_program(spec, |t| {
            matches!(t, ProgramType::SchedCls | ProgramType::SchedAct)
        })
        .and_then(|n| spec.program(&n)),
    }
    .with_context(|| {
        format!(
            "{}: no such TC program; the object has: {}",
            path.display(),
            spec.programs
                .iter()
                .map(|p| format!("{} (section {})", p.name, p.section))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if !matches!(p.prog_type, ProgramType::SchedCls | ProgramType::SchedAct) {
        bail!(
            "{}: program {} (section {}) is not a TC program",
            path.display(),
            p.name,
            p.section
        );
    }
    Ok(p.name.clone())
}

/// Cores for `n` workers: the ones asked for (checked to exist), or the available cores in
/// turn.
fn worker_cores(asked: Option<&[usize]>, n: usize) -> Result<Vec<usize>> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    match asked {
        Some(cores) => {
            if cores.len() != n {
                bail!(
                    "--cores lists {} core(s) for {n} queue(s): give one core per queue",
                    cores.len()
                );
            }
            if let Some(c) = cores.iter().find(|c| !available.contains(c)) {
                bail!("--cores: core {c} does not exist or is not allowed here (available: {available:?})");
            }
            Ok(cores.to_vec())
        }
        None if available.is_empty() => Ok(vec![0; n]),
        None => Ok((0..n).map(|i| available[i % available.len()]).collect()),
    }
}

/// A running datapath's pieces that must outlive the workers.
struct Plumbing {
    steering: Option<Steering>,
    tap: Option<Tap>,
    trace: Option<TraceFile>,
}

fn build_ports(config: &Config) -> Result<(Vec<Box<dyn Port>>, Plumbing)> {
    let mut plumbing = Plumbing {
        steering: None,
        tap: None,
        trace: None,
    };
    let ports: Vec<Box<dyn Port>> = match &config.input {
        Input::Interface { name, queues, xsk } => {
            let ifindex = crate::netdev::ifindex(name)?;
            let have = crate::netdev::rx_queues(name).unwrap_or(u32::MAX);
            if let Some(q) = queues.iter().find(|q| **q >= have) {
                bail!(
                    "{name} has {have} RX queue(s) (0-{}); there is no queue {q}",
                    have.saturating_sub(1)
                );
            }
            // Sockets first, then their XSKMAP slots, then the program: frames are steered
            // only once every queue has its socket.
            let mut steering = Steering::load(name, ifindex)?;
            let mut ports: Vec<Box<dyn Port>> = Vec::new();
            for &q in queues {
                let port = XskPort::open(name, ifindex, q, *xsk)?;
                steering.register(q, port.fd())?;
                ports.push(Box::new(port));
            }
            steering.attach()?;
            plumbing.steering = Some(steering);
            ports
        }
        Input::Pcap { path, out_dir } => {
            std::fs::create_dir_all(out_dir)
                .with_context(|| format!("--out-dir {}", out_dir.display()))?;
            let frames = crate::capture::read_frames(path)?;
            let n = (frames.len() as u32).clamp(64, 4096);
            vec![Box::new(PcapPort::new(
                frames,
                &out_dir.join("tx.pcap"),
                n,
                1,
                0,
            )?)]
        }
        Input::Generator {
            templates,
            count,
            queues,
        } => (0..*queues)
            .map(|q| {
                MemoryPort::new(templates.clone(), *count, 1024, 1, q)
                    .map(|p| Box::new(p) as Box<dyn Port>)
            })
            .collect::<std::io::Result<_>>()?,
    };
    Ok((ports, plumbing))
}

/// Runs the datapath until `stop` is set, the time limit passes, or finite input is done.
pub fn run(config: &Config, stop: Arc<AtomicBool>) -> Result<RunReport> {
    let n = match &config.input {
        Input::Interface { queues, .. } => queues.len(),
        Input::Pcap { .. } => 1,
        Input::Generator { queues, .. } => *queues as usize,
    };
    // Programs and cores are checked before anything is attached to an interface.
    let programs = load_programs(config, n as u32)?;
    let cores = worker_cores(config.cores.as_deref(), n)?;
    let (ports, mut plumbing) = build_ports(config)?;

    if let Some(name) = &config.tap {
        let Input::Interface { name: nic, .. } = &config.input else {
            bail!("--tap needs --iface (the pcap and generator backends have no kernel side)");
        };
        let mac = crate::netdev::mac(nic)?;
        let mtu = crate::netdev::mtu(nic)?;
        plumbing.tap = Some(Tap::open(name, n, mac, mtu)?);
    }
    if let Some(path) = &config.trace {
        plumbing.trace = Some(TraceFile::create(path).map_err(anyhow::Error::msg)?);
    }
    let tap_ifindex = plumbing.tap.as_ref().map(|t| t.ifindex());
    let slot = Arc::new(ProgramSlot::new(ProgramPair {
        ingress: programs.ingress,
        egress: programs.egress,
    }));

    let mut shared = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    let mut queue_ids = Vec::with_capacity(n);
    let start = Instant::now();
    for (i, port) in ports.into_iter().enumerate() {
        let (pass, redirect_out, egress): (Box<dyn Sink>, Box<dyn Sink>, Option<Egress>) =
            match (&config.input, &plumbing.tap) {
                (Input::Pcap { out_dir, .. }, _) => (
                    Box::new(PcapSink::create(&out_dir.join("pass.pcap"))?),
                    Box::new(PcapSink::create(&out_dir.join("redirect.pcap"))?),
                    None,
                ),
                (_, Some(tap)) => {
                    let q = tap.queue(i)?;
                    let source = q.try_clone()?;
                    (
                        Box::new(q),
                        Box::new(Discard),
                        Some(Egress {
                            source: Box::new(source),
                        }),
                    )
                }
                _ => (Box::new(Discard), Box::new(Discard), None),
            };
        let counters = Arc::new(SharedCounters::default());
        shared.push(counters.clone());
        queue_ids.push(port.queue());
        let worker = Worker {
            programs: slot.clone(),
            cpu: i as u32,
            tap_ifindex,
            port,
            pass,
            redirect_out,
            egress,
            batch: config.batch,
            shared: counters,
            tracer: plumbing.trace.as_ref().and_then(|t| t.tracer()),
            spin: config.spin,
        };
        let stop = stop.clone();
        let core = cores[i];
        let handle = std::thread::Builder::new()
            .name(format!("worker-q{}", queue_ids[i]))
            .spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                worker.run(&stop)
            })
            .context("spawning a worker thread")?;
        handles.push(handle);
    }

    let _control = match &config.control {
        Some(path) => Some(Control::start(
            path,
            Arc::new(ControlState {
                programs: slot.clone(),
                counters: queue_ids
                    .iter()
                    .copied()
                    .zip(shared.iter().cloned())
                    .collect(),
            }),
        )?),
        None => None,
    };
    let mut reporter = Reporter::new(config.format, queue_ids.clone());
    let tick = Duration::from_millis(20);
    let mut next_stats = config.stats.map(|s| start + s);
    loop {
        std::thread::sleep(tick);
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        if config.duration.is_some_and(|d| start.elapsed() >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let (Some(at), Some(every)) = (next_stats, config.stats) {
            if Instant::now() >= at {
                let now: Vec<Counters> = shared.iter().map(|s| s.read()).collect();
                reporter.interval(start.elapsed(), &now);
                next_stats = Some(at + every);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut reports: Vec<WorkerReport> = Vec::with_capacity(n);
    let mut problems = Vec::new();
    for (h, q) in handles.into_iter().zip(&queue_ids) {
        match h.join() {
            Ok(r) => reports.push(r),
            Err(_) => {
                problems.push(format!("queue {q}: worker panicked"));
                reports.push(WorkerReport {
                    counters: shared[reports.len()].read(),
                    last_error: None,
                    fatal: None,
                });
            }
        }
    }
    let elapsed = start.elapsed();
    if let Some(mut s) = plumbing.steering.take() {
        s.detach().context("detaching the steering program")?;
    }
    if let Some(t) = plumbing.trace.take() {
        let (written, lost) = t.finish().map_err(anyhow::Error::msg)?;
        if lost > 0 {
            problems.push(format!(
                "trace: {written} frames written, {lost} records lost (writer behind)"
            ));
        }
    }
    for (r, q) in reports.iter().zip(&queue_ids) {
        if let Some(e) = &r.fatal {
            problems.push(e.clone());
        }
        if let Some(e) = &r.last_error {
            problems.push(format!("queue {q}: last engine error: {e}"));
        }
    }
    let queues: Vec<(u32, Counters)> = queue_ids
        .iter()
        .copied()
        .zip(reports.iter().map(|r| r.counters))
        .collect();
    let total = queues
        .iter()
        .fold(Counters::default(), |acc, (_, c)| acc + *c);
    Ok(RunReport {
        queues,
        total,
        elapsed,
        problems,
    })
}
