//! The worker loop: one per queue, pinned to its own core, no locks on the fast path.
//!
//! Each turn: let the port do its housekeeping (completions, fill ring, wakeups), take a batch
//! of received frames, run the ingress program on each in place, act on the verdicts
//! ([`crate::verdict`]), send the TX batch, then serve the side path — frames the kernel sent
//! out through the TAP run the egress (TC) program and leave on this queue. Counters are
//! published once per batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use userxdp_runtime::context::XdpAction;
use userxdp_runtime::skb::{SkbFrame, SkbInput};
use userxdp_runtime::vm::instance::Runner;

use crate::area::Desc;
use crate::device::{Port, Sink, Source};
use crate::slot::{ProgramPair, ProgramSlot};
use crate::stats::{Counters, SharedCounters};
use crate::trace::{TraceRecord, Tracer};
use crate::verdict::{Disposition, Verdicts};

/// TC verdicts that let a frame continue (`TC_ACT_UNSPEC`, `OK`, `RECLASSIFY`, `PIPE`); every
/// other value (SHOT, STOLEN, QUEUED, REDIRECT, TRAP) keeps it from leaving on the device.
fn tc_lets_through(r0: u64) -> bool {
    matches!(r0 as i32, -1 | 0 | 1 | 3)
}

/// Empty turns a worker spins before it sleeps in `poll` (unless told to spin): long enough
/// to ride out gaps inside a burst, short enough not to burn a core on an idle queue.
const IDLE_SPIN_TURNS: u32 = 256;

/// Longest sleep of an idle worker, so that stop requests and reloads are seen promptly.
const IDLE_POLL_MS: i32 = 5;

/// The egress side path: frames from the kernel (TAP) through the egress program (if the
/// program pair has one) onto the device.
pub struct Egress {
    /// Where the kernel's output frames come from.
    pub source: Box<dyn Source>,
}

/// A worker's runners for one generation of the program pair.
struct Running {
    generation: u64,
    ingress: Runner,
    egress: Option<Runner>,
    verdicts: Verdicts,
}

/// Everything one worker owns. It is built on the launching thread and moved to the worker's
/// thread, which makes its runners there (a runner belongs to one thread).
pub struct Worker {
    /// The queue it serves.
    pub port: Box<dyn Port>,
    /// The programs to run (swappable while running).
    pub programs: Arc<ProgramSlot>,
    /// This worker's CPU slot in per-CPU maps.
    pub cpu: u32,
    /// Index of the TAP, a redirect target that means "to the kernel".
    pub tap_ifindex: Option<u32>,
    /// XDP_PASS goes here (the TAP, a capture, or nowhere).
    pub pass: Box<dyn Sink>,
    /// Redirects out of the datapath go here.
    pub redirect_out: Box<dyn Sink>,
    /// The side path from the kernel, if there is a TAP.
    pub egress: Option<Egress>,
    /// Frames per RX batch.
    pub batch: usize,
    /// Published counters.
    pub shared: Arc<SharedCounters>,
    /// Packet trace, if asked for.
    pub tracer: Option<Tracer>,
    /// Never sleep when idle.
    pub spin: bool,
}

/// How a worker ended.
#[derive(Debug)]
pub struct WorkerReport {
    /// Final counters.
    pub counters: Counters,
    /// The last engine error seen, if any (frames it hit are counted in `errors`).
    pub last_error: Option<String>,
    /// An I/O error that stopped the worker, if any.
    pub fatal: Option<String>,
}

impl Worker {
    /// Runs until `stop` is set or the port is finished and idle.
    pub fn run(mut self, stop: &AtomicBool) -> WorkerReport {
        let (pair, generation) = self.programs.get();
        let mut running = self.runners(pair, generation);
        let mut c = Counters::default();
        let mut rx: Vec<Desc> = Vec::with_capacity(self.batch);
        let mut tx: Vec<(Desc, bool)> = Vec::with_capacity(self.batch);
        let mut tx_descs: Vec<Desc> = Vec::with_capacity(self.batch);
        let mut skb = SkbFrame::new().ok();
        let mut side_buf = vec![0u8; userxdp_runtime::context::FRAME_SIZE];
        let mut last_error = None;
        let mut fatal = None;
        let mut idle_turns: u32 = 0;
        let mut published_egress_rx = 0;
        while !stop.load(Ordering::Relaxed) {
            if self.programs.generation() != running.generation {
                // A reload: switch between batches, nothing in flight is lost.
                let (pair, generation) = self.programs.get();
                running = self.runners(pair, generation);
            }
            if let Err(e) = self.port.service() {
                fatal = Some(format!("queue {}: {e}", self.port.queue()));
                break;
            }
            rx.clear();
            if let Err(e) = self.port.receive(&mut rx, self.batch) {
                fatal = Some(format!("queue {}: receive: {e}", self.port.queue()));
                break;
            }
            if !rx.is_empty() {
                c.batches += 1;
                idle_turns = 0;
                // One epoch pin per batch: map values the program looks up stay valid for
                // the whole batch, and nothing is pinned per packet.
                running.ingress.begin_batch();
                self.ingress(&mut running, &rx, &mut tx, &mut c, &mut last_error);
                running.ingress.end_batch();
                tx_descs.clear();
                tx_descs.extend(tx.iter().map(|(d, _)| *d));
                match self.port.transmit(&tx_descs) {
                    Ok(sent) => {
                        for (d, redirected) in &tx[sent..] {
                            // Sent nothing of these: they become errors, not tx/redirect.
                            if *redirected {
                                c.redirect -= 1;
                            } else {
                                c.tx -= 1;
                            }
                            c.errors += 1;
                            c.tx_full += 1;
                            self.port.release(d.addr);
                        }
                    }
                    Err(e) => {
                        fatal = Some(format!("queue {}: transmit: {e}", self.port.queue()));
                        break;
                    }
                }
                tx.clear();
            } else {
                idle_turns = idle_turns.saturating_add(1);
            }
            // The side path is rare; look at it every turn the RX side is idle and every
            // 8th busy turn, so that a flood on RX cannot starve the kernel's replies.
            if idle_turns > 0 || c.batches % 8 == 0 {
                if let Some(frame) = skb.as_mut() {
                    self.egress_turn(
                        running.egress.as_mut(),
                        frame,
                        &mut side_buf,
                        &mut c,
                        &mut last_error,
                    );
                }
            }
            // Publish only what moved: an idle spinning worker would otherwise keep writing
            // the shared counters' cache lines that readers poll.
            if !rx.is_empty() || c.egress_rx != published_egress_rx {
                self.shared.publish(&c);
                published_egress_rx = c.egress_rx;
            }
            if rx.is_empty() && self.port.finished() {
                break;
            }
            if idle_turns > IDLE_SPIN_TURNS && !self.spin && self.port.can_sleep() {
                self.wait_idle();
            }
        }
        let flush = [
            self.port.flush(),
            self.pass.flush(),
            self.redirect_out.flush(),
        ];
        if let Some(Err(e)) = flush.into_iter().find(|r| r.is_err()) {
            fatal.get_or_insert(format!("queue {}: flush: {e}", self.port.queue()));
        }
        self.shared.publish(&c);
        WorkerReport {
            counters: c,
            last_error,
            fatal,
        }
    }

    /// Runs the ingress program on a batch and acts on each verdict; TX frames are collected
    /// in `tx` (with whether they were redirected) for one transmit call.
    /// Sleeps until a frame arrives on the port or the TAP (poll), or briefly when the port
    /// cannot be waited for. Bounded, so that a stop request is seen within milliseconds.
    fn wait_idle(&self) {
        let mut fds: Vec<libc::pollfd> = [
            self.port.wait_fd(),
            self.egress.as_ref().and_then(|e| e.source.wait_fd()),
        ]
        .into_iter()
        .flatten()
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
        if fds.is_empty() {
            std::thread::sleep(Duration::from_micros(50));
            return;
        }
        // SAFETY: `fds` is a valid array of pollfd structs of the given length, and the
        // descriptors stay open for the call (owned by the port and the TAP queue).
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, IDLE_POLL_MS) };
    }

    /// Runners for this worker's CPU slot, and redirect resolution, for `pair`.
    fn runners(&self, pair: ProgramPair, generation: u64) -> Running {
        Running {
            generation,
            verdicts: Verdicts::new(&pair.ingress, self.port.ifindex(), self.tap_ifindex),
            ingress: pair.ingress.runner(self.cpu),
            egress: pair.egress.as_ref().map(|vm| vm.runner(self.cpu)),
        }
    }

    fn ingress(
        &mut self,
        running: &mut Running,
        rx: &[Desc],
        tx: &mut Vec<(Desc, bool)>,
        c: &mut Counters,
        last_error: &mut Option<String>,
    ) {
        let (ifindex, queue) = (self.port.ifindex(), self.port.queue());
        for &desc in rx {
            c.rx += 1;
            c.rx_bytes += desc.len as u64;
            if !self.port.area().holds(desc) {
                c.errors += 1;
                c.bad_desc += 1;
                self.port.release(desc.addr);
                continue;
            }
            let mut ctx = self.port.area().context(desc, ifindex, queue);
            let traced_in = self
                .tracer
                .as_ref()
                .map(|_| self.port.area().bytes(desc).to_vec());
            // SAFETY: `ctx` describes a frame of this port's area that the port handed to us
            // (it belongs to the worker until transmitted or released); the area is below
            // 4 GiB and `holds` checked the packet lies inside one frame.
            let outcome = unsafe { running.ingress.run_xdp_in_place(&mut ctx) };
            let run = match outcome {
                Ok(run) => run,
                Err(e) => {
                    c.errors += 1;
                    c.faults += 1;
                    *last_error = Some(e.to_string());
                    if let (Some(t), Some(bytes)) = (&self.tracer, traced_in) {
                        t.record(TraceRecord::new(queue, "ERROR", bytes, None));
                    }
                    self.port.release(desc.addr);
                    continue;
                }
            };
            let out = self.port.area().desc_of(&ctx);
            let disposition = running.verdicts.dispose(&run);
            if let (Some(t), Some(bytes)) = (&self.tracer, traced_in) {
                let after = (!matches!(run.action, XdpAction::Drop | XdpAction::Aborted))
                    .then(|| self.port.area().bytes(out).to_vec());
                t.record(TraceRecord::new(queue, run.action.name(), bytes, after));
            }
            match disposition {
                Disposition::Drop => {
                    c.drop += 1;
                    self.port.release(desc.addr);
                }
                Disposition::Aborted => {
                    c.aborted += 1;
                    self.port.release(desc.addr);
                }
                Disposition::Tx => {
                    c.tx += 1;
                    tx.push((out, false));
                }
                Disposition::RedirectTx => {
                    c.redirect += 1;
                    tx.push((out, true));
                }
                Disposition::Pass | Disposition::RedirectPass => {
                    let delivered = self.pass.deliver(self.port.area().bytes(out));
                    match (delivered, disposition) {
                        (false, _) => {
                            c.errors += 1;
                            c.pass_lost += 1;
                        }
                        (true, Disposition::Pass) => c.pass += 1,
                        (true, _) => c.redirect += 1,
                    }
                    self.port.release(desc.addr);
                }
                Disposition::RedirectOut => {
                    if self.redirect_out.deliver(self.port.area().bytes(out)) {
                        c.redirect += 1;
                    } else {
                        c.errors += 1;
                        c.redirect_lost += 1;
                    }
                    self.port.release(desc.addr);
                }
                Disposition::RedirectFailed => {
                    c.errors += 1;
                    c.redirect_lost += 1;
                    self.port.release(desc.addr);
                }
            }
        }
    }

    /// Moves up to one batch of the kernel's output frames through the egress program and
    /// out on the device.
    fn egress_turn(
        &mut self,
        mut runner: Option<&mut Runner>,
        skb: &mut SkbFrame,
        buf: &mut [u8],
        c: &mut Counters,
        last_error: &mut Option<String>,
    ) {
        let Some(egress) = self.egress.as_mut() else {
            return;
        };
        let mut out: Vec<Desc> = Vec::new();
        for _ in 0..self.batch {
            let Some(len) = egress.source.read(buf) else {
                break;
            };
            c.egress_rx += 1;
            let packet: &[u8] = match runner.as_deref_mut() {
                None => &buf[..len],
                Some(runner) => {
                    if skb.load(&buf[..len], SkbInput::default()).is_err() {
                        c.egress_errors += 1;
                        continue;
                    }
                    runner.begin_batch();
                    let outcome = runner.run_skb(skb);
                    runner.end_batch();
                    match outcome {
                        Ok(r0) if tc_lets_through(r0) => skb.packet(),
                        Ok(_) => {
                            c.egress_drop += 1;
                            continue;
                        }
                        Err(e) => {
                            *last_error = Some(format!("egress: {e}"));
                            c.egress_errors += 1;
                            continue;
                        }
                    }
                }
            };
            let Some(frame) = self.port.alloc() else {
                c.egress_errors += 1;
                continue;
            };
            match self.port.area_mut().write(frame, packet) {
                Some(d) => out.push(d),
                None => {
                    self.port.release(frame);
                    c.egress_errors += 1;
                }
            }
        }
        if out.is_empty() {
            return;
        }
        let sent = self.port.transmit(&out).unwrap_or(0);
        c.egress_tx += sent as u64;
        for d in &out[sent..] {
            c.egress_errors += 1;
            self.port.release(d.addr);
        }
    }
}
