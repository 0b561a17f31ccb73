//! The load generator and its consistency checker.
//!
//! Each thread owns one [`Conn`]: in the closed loop it sends one request, waits for its reply
//! or the timeout, and checks what came back; with `pipeline > 1` it keeps that many GETs in
//! flight instead ([`super::pipeline`]). Keys `key:<n>` are drawn from a Zipf distribution
//! over `keys` keys (key 0 the hottest). Every value names its key and its write (see [`super::value`]); write
//! versions come from one global counter per key shared by all threads.
//!
//! Stale reads: after a SET of version `v` is acknowledged, `acked[key]` becomes at least `v`.
//! A GET reads `acked[key]` when it is sent; a returned version below that is stale. For this to
//! hold under concurrency, writes to one key are serialised across threads while the checker is
//! on (a thread that finds a write to its key in flight sends a GET instead and counts a
//! `write_conflict`): so versions reach the server in version order. A SET that timed out may
//! still arrive later and be reported stale; `set_timeouts` says whether that can have happened.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use thiserror::Error;

use super::check::{note, Asked, Checker, EXAMPLES};
use super::conn::{Conn, WaitError};
use super::hist::Histogram;
use super::proto::{self, opcode, status, AsciiReply, Protocol};
use super::report::{Counts, Latency, LoadReport, StaleRead};
use super::value;

/// Attempts per key during preload.
const PRELOAD_TRIES: usize = 3;

/// When the measurement ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long.
    Duration(Duration),
    /// After this many requests in total (split across threads).
    Requests(u64),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The memcached (or cache) address; nothing is sent anywhere else.
    pub server: SocketAddr,
    /// Threads, each with its own socket.
    pub threads: usize,
    /// When to stop.
    pub stop: Stop,
    /// Number of keys (`key:0` .. `key:<keys-1>`).
    pub keys: u64,
    /// Zipf exponent (0 = uniform).
    pub zipf_s: f64,
    /// Fraction of requests that are GETs.
    pub get_ratio: f64,
    /// Value size in bytes (at least the `key:<n>|v<version>|` prefix).
    pub value_size: usize,
    /// ASCII or binary requests.
    pub protocol: Protocol,
    /// Binary gets use GETK instead of GET.
    pub binary_getk: bool,
    /// Keys per ASCII get (`get a b c`); binary gets always carry one key.
    pub multiget: usize,
    /// SET every key once before measuring.
    pub preload: bool,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// Check for stale reads (and serialise writes per key).
    pub check_stale: bool,
    /// Seed of the per-thread random generators.
    pub seed: u64,
    /// Written into every value: values of other runs (left in the server) are told apart.
    pub run_id: u32,
    /// GETs kept in flight per thread (1: the closed loop; more: [`super::pipeline`], GETs
    /// only, a power of two).
    pub pipeline: usize,
}

impl LoadConfig {
    /// Defaults: 1 thread, 1 s, 10,000 keys, Zipf 0.99, 90 % gets, 64-byte values, ASCII,
    /// single-key gets, no preload, 100 ms timeout, checker off.
    pub fn new(server: SocketAddr) -> Self {
        LoadConfig {
            server,
            threads: 1,
            stop: Stop::Duration(Duration::from_secs(1)),
            keys: 10_000,
            zipf_s: 0.99,
            get_ratio: 0.9,
            value_size: 64,
            protocol: Protocol::Ascii,
            binary_getk: false,
            multiget: 1,
            preload: false,
            timeout: Duration::from_millis(100),
            check_stale: false,
            seed: 0x6d63_6c6f_6164,
            run_id: fresh_run_id(),
            pipeline: 1,
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |field, reason: &str| {
            Err(LoadError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        if self.threads == 0 || self.threads > 1024 {
            return bad("threads", "must be in 1..=1024");
        }
        // 17 bytes of shared state per key.
        if self.keys == 0 || self.keys > 100_000_000 {
            return bad("keys", "must be in 1..=100000000");
        }
        if !(self.zipf_s >= 0.0 && self.zipf_s.is_finite()) {
            return bad("zipf", "must be a finite number >= 0");
        }
        if !(0.0..=1.0).contains(&self.get_ratio) {
            return bad("get_ratio", "must be in 0..=1");
        }
        if self.multiget == 0 || self.multiget > 100 {
            return bad("multiget", "must be in 1..=100");
        }
        if self.value_size > 60_000 {
            return bad("value_size", "must be at most 60000 (one request datagram)");
        }
        if !self.pipeline.is_power_of_two() || self.pipeline > super::pipeline::MAX_DEPTH {
            return bad("pipeline", "must be a power of two in 1..=1024");
        }
        if self.pipeline > 1 && (self.get_ratio < 1.0 || self.check_stale || self.multiget > 1) {
            return bad(
                "pipeline",
                "pipelining sends single-key GETs only: needs --get-ratio 1, no --check-stale, no --multiget",
            );
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return bad("timeout", "must be in (0, 60 s]");
        }
        if let Stop::Duration(d) = self.stop {
            if d > Duration::from_secs(24 * 3600) {
                return bad("duration", "must be at most a day");
            }
        }
        Ok(())
    }
}

/// A run id that differs between runs: time and process id mixed.
fn fresh_run_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed =
        (nanos ^ u64::from(std::process::id()).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 32) as u32
}

/// Why a load run could not be done (replies that are wrong are counted, not errors).
#[derive(Debug, Error)]
pub enum LoadError {
    /// A configuration value is out of range.
    #[error("bad {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A socket could not be set up.
    #[error("{call} for thread {thread} failed")]
    Socket {
        /// The call.
        call: &'static str,
        /// The thread.
        thread: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread panicked.
    #[error("worker thread {thread} panicked")]
    Worker {
        /// The thread.
        thread: usize,
    },
}

/// Per-key state shared by all threads.
pub(super) struct Keyspace {
    /// Last version handed out per key (versions start at 1).
    pub(super) versions: Vec<AtomicU64>,
    /// Highest acknowledged version per key.
    pub(super) acked: Vec<AtomicU64>,
    /// A write to the key is in flight (used only with the checker on).
    writing: Vec<AtomicBool>,
}

impl Keyspace {
    fn new(keys: u64) -> Self {
        let n = keys as usize; // validated: <= 10^8
        Keyspace {
            versions: (0..n).map(|_| AtomicU64::new(0)).collect(),
            acked: (0..n).map(|_| AtomicU64::new(0)).collect(),
            writing: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

/// Runs the load described by `cfg` and returns the merged report.
pub fn run(cfg: &LoadConfig) -> Result<LoadReport, LoadError> {
    cfg.validate()?;
    let space = Arc::new(Keyspace::new(cfg.keys));
    let barrier = Arc::new(Barrier::new(cfg.threads + 1));
    let zipf = Zipf::new(cfg.keys as f64, cfg.zipf_s).map_err(|e| LoadError::Config {
        field: "zipf",
        reason: e.to_string(),
    })?;
    // Every fallible step before the first spawn: a started worker waits on the barrier.
    let conns = (0..cfg.threads)
        .map(|t| {
            Conn::connect(cfg.server, cfg.timeout, (t as u16).wrapping_mul(4099)).map_err(
                |source| LoadError::Socket {
                    call: "bind/connect",
                    thread: t,
                    source,
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut workers = Vec::with_capacity(cfg.threads);
    for (t, conn) in conns.into_iter().enumerate() {
        let mut w = Worker {
            cfg: cfg.clone(),
            space: space.clone(),
            conn,
            rng: SmallRng::seed_from_u64(cfg.seed ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            zipf,
            opaque: 0,
            c: Counts::default(),
            hist: Histogram::default(),
            stale: Vec::new(),
            errors: Vec::new(),
            value: Vec::with_capacity(cfg.value_size + 64),
            keybufs: vec![Vec::with_capacity(24); cfg.multiget],
        };
        let barrier = barrier.clone();
        let quota = match cfg.stop {
            Stop::Requests(n) => {
                let (per, extra) = (n / cfg.threads as u64, n % cfg.threads as u64);
                Some(per + u64::from((t as u64) < extra))
            }
            Stop::Duration(_) => None,
        };
        let (threads, duration) = (cfg.threads as u64, cfg.stop);
        workers.push(std::thread::spawn(move || {
            // The barrier is always reached, so a failing worker cannot hang the others.
            let preload = if w.cfg.preload {
                w.preload(t as u64, threads)
            } else {
                (0, 0)
            };
            barrier.wait();
            let end = match duration {
                Stop::Duration(d) => Some(Instant::now() + d),
                Stop::Requests(_) => None,
            };
            if w.cfg.pipeline > 1 {
                w.measure_pipelined(end, quota);
            } else {
                w.measure(end, quota);
            }
            (w.c, w.hist, w.stale, w.errors, preload)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut counts = Counts::default();
    let mut hist = Histogram::default();
    let (mut stale_examples, mut error_examples) = (Vec::new(), Vec::new());
    let (mut preload_stored, mut preload_failures) = (0, 0);
    let mut panicked = None;
    for (thread, h) in workers.into_iter().enumerate() {
        match h.join() {
            Ok((c, hi, st, er, (ok, failed))) => {
                counts.add(&c);
                hist.merge(&hi);
                stale_examples.extend(st);
                error_examples.extend(er);
                preload_stored += ok;
                preload_failures += failed;
            }
            Err(_) => panicked = panicked.or(Some(thread)),
        }
    }
    if let Some(thread) = panicked {
        return Err(LoadError::Worker { thread });
    }
    let elapsed = start.elapsed().as_secs_f64();
    stale_examples.truncate(EXAMPLES);
    error_examples.truncate(EXAMPLES);
    let us = |ns: u64| ns as f64 / 1000.0;
    let answered = counts.hits + counts.misses;
    Ok(LoadReport {
        server: cfg.server.to_string(),
        protocol: cfg.protocol,
        threads: cfg.threads,
        pipeline: cfg.pipeline,
        keys: cfg.keys,
        elapsed_s: elapsed,
        throughput_rps: if elapsed > 0.0 {
            counts.replies as f64 / elapsed
        } else {
            0.0
        },
        hit_ratio: if answered > 0 {
            counts.hits as f64 / answered as f64
        } else {
            0.0
        },
        latency: Latency {
            p50_us: us(hist.quantile(0.5)),
            p90_us: us(hist.quantile(0.9)),
            p99_us: us(hist.quantile(0.99)),
            max_us: us(hist.max()),
            mean_us: hist.mean() / 1000.0,
        },
        counts,
        preload_stored,
        preload_failures,
        stale_examples,
        error_examples,
    })
}

/// One load thread's state.
pub(super) struct Worker {
    pub(super) cfg: LoadConfig,
    pub(super) space: Arc<Keyspace>,
    pub(super) conn: Conn,
    rng: SmallRng,
    zipf: Zipf<f64>,
    opaque: u32,
    pub(super) c: Counts,
    pub(super) hist: Histogram,
    pub(super) stale: Vec<StaleRead>,
    pub(super) errors: Vec<String>,
    value: Vec<u8>,
    keybufs: Vec<Vec<u8>>,
}

/// What a SET came back with.
enum SetResult {
    Stored,
    Failed,
    Timeout,
}

impl Worker {
    pub(super) fn sample_key(&mut self) -> u64 {
        let x = self.zipf.sample(&mut self.rng);
        // Zipf samples 1..=n as a float; rank 1 is key 0.
        (x as u64).saturating_sub(1).min(self.cfg.keys - 1)
    }

    /// Stores every key `k` with `k % threads == t` once; returns (stored, failed).
    fn preload(&mut self, t: u64, threads: u64) -> (u64, u64) {
        let (mut ok, mut failed) = (0, 0);
        let mut k = t;
        while k < self.cfg.keys {
            let stored = (0..PRELOAD_TRIES).any(|_| matches!(self.set(k), Some(SetResult::Stored)));
            if stored {
                ok += 1;
            } else {
                failed += 1;
            }
            k += threads;
        }
        // Preload traffic is not part of the measurement.
        self.c = Counts::default();
        self.hist = Histogram::default();
        self.errors.clear();
        (ok, failed)
    }

    fn measure(&mut self, end: Option<Instant>, quota: Option<u64>) {
        let late0 = self.conn.late_replies();
        let multi0 = self.conn.multi_datagram_replies();
        let empty0 = self.conn.empty_datagrams();
        loop {
            if quota.is_some_and(|q| self.c.requests >= q) {
                break;
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                break;
            }
            let key = self.sample_key();
            let is_get = self.rng.random::<f64>() < self.cfg.get_ratio;
            if is_get || self.set(key).is_none() {
                self.get(key);
            }
        }
        self.c.late_replies = self.conn.late_replies() - late0;
        self.c.multi_datagram = self.conn.multi_datagram_replies() - multi0;
        self.c.empty_datagrams = self.conn.empty_datagrams() - empty0;
    }

    /// Sends one SET of a new version of `key`; `None` when a write to it is in flight.
    fn set(&mut self, key: u64) -> Option<SetResult> {
        let space = self.space.clone();
        let k = key as usize;
        if self.cfg.check_stale
            && space.writing[k]
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            self.c.write_conflicts += 1;
            return None;
        }
        let version = space.versions[k].fetch_add(1, Ordering::AcqRel) + 1;
        let result = self.set_version(key, version);
        if let SetResult::Stored = result {
            // Release: a GET that reads this (Acquire) was sent after the acknowledgement.
            space.acked[k].fetch_max(version, Ordering::AcqRel);
        }
        if self.cfg.check_stale {
            space.writing[k].store(false, Ordering::Release);
        }
        Some(result)
    }

    fn set_version(&mut self, key: u64, version: u64) -> SetResult {
        let mut kb = std::mem::take(&mut self.keybufs[0]);
        kb.clear();
        value::write_key(key, &mut kb);
        self.value.clear();
        let tag = value::ValueTag {
            key,
            version,
            run: self.cfg.run_id,
        };
        value::encode_value(tag, self.cfg.value_size, &mut self.value);
        let flags = version as u32; // cross-checked on reads
        let opaque = self.next_opaque();
        let (protocol, val) = (self.cfg.protocol, &self.value);
        self.c.requests += 1;
        self.c.sets += 1;
        let t0 = Instant::now();
        let sent = self.conn.send_with(|id, out| match protocol {
            Protocol::Ascii => proto::ascii_set(id, &kb, flags, 0, val, out),
            Protocol::Binary => proto::binary_set(id, &kb, flags, 0, val, opaque, out),
        });
        self.keybufs[0] = kb;
        let reply = sent.and_then(|id| self.conn.wait(id, protocol));
        let p = match reply {
            Err(e) => {
                self.c.set_timeouts += u64::from(matches!(e, WaitError::Timeout { .. }));
                record_wait_error(&mut self.c, &mut self.errors, &e, self.cfg.timeout);
                return SetResult::Timeout;
            }
            Ok(p) => p,
        };
        self.hist.record(t0.elapsed().as_nanos() as u64);
        self.c.replies += 1;
        match classify_set(protocol, &p, opaque) {
            SetReply::Stored => {
                self.c.stored += 1;
                return SetResult::Stored;
            }
            SetReply::NotStored => {}
            SetReply::ServerError => self.c.server_errors += 1,
            SetReply::Malformed(what) => {
                self.c.malformed += 1;
                note(&mut self.errors, format!("set key:{key}: {what}"));
            }
        }
        self.c.set_failures += 1;
        SetResult::Failed
    }

    pub(super) fn next_opaque(&mut self) -> u32 {
        self.opaque = self.opaque.wrapping_add(1);
        self.opaque
    }

    /// Sends one GET for `first` (plus distinct extra keys for ASCII multi-gets) and checks
    /// every value returned.
    fn get(&mut self, first: u64) {
        let n = if self.cfg.protocol == Protocol::Ascii {
            self.cfg.multiget
        } else {
            1
        };
        let mut asked: Vec<Asked> = Vec::with_capacity(n);
        asked.push(Asked {
            key: first,
            acked: 0,
            answered: false,
        });
        for _ in 1..n {
            let k = self.sample_key();
            // Duplicates are skipped, not redrawn: a hot key set may be smaller than n.
            if !asked.iter().any(|a| a.key == k) {
                asked.push(Asked {
                    key: k,
                    acked: 0,
                    answered: false,
                });
            }
        }
        let mut kbs = std::mem::take(&mut self.keybufs);
        for (a, kb) in asked.iter_mut().zip(kbs.iter_mut()) {
            kb.clear();
            value::write_key(a.key, kb);
            // Acquire: pairs with the fetch_max after the SET's acknowledgement.
            a.acked = self.space.acked[a.key as usize].load(Ordering::Acquire);
        }
        let (protocol, getk, opaque) =
            (self.cfg.protocol, self.cfg.binary_getk, self.next_opaque());
        self.c.requests += 1;
        self.c.gets += 1;
        self.c.get_keys += asked.len() as u64;
        let t0 = Instant::now();
        let sent = self.conn.send_with(|id, out| match protocol {
            Protocol::Ascii => {
                let keys: Vec<&[u8]> = kbs[..asked.len()].iter().map(Vec::as_slice).collect();
                proto::ascii_get(id, &keys, out)
            }
            Protocol::Binary => proto::binary_get(id, getk, &kbs[0], opaque, out),
        });
        let reply = match sent.and_then(|id| self.conn.wait(id, protocol)) {
            Err(e) => {
                record_wait_error(&mut self.c, &mut self.errors, &e, self.cfg.timeout);
                self.keybufs = kbs;
                return;
            }
            Ok(p) => p,
        };
        self.hist.record(t0.elapsed().as_nanos() as u64);
        self.c.replies += 1;
        let mut ck = Checker::new(
            &mut self.c,
            &mut self.stale,
            &mut self.errors,
            &self.space,
            &self.cfg,
            self.cfg.check_stale,
        );
        match protocol {
            Protocol::Ascii => ck.ascii_get(&reply, &mut asked, &kbs),
            Protocol::Binary => ck.binary_get(&reply, asked[0], &kbs[0], opaque),
        }
        drop(reply);
        self.keybufs = kbs;
    }
}

/// What a SET reply says.
enum SetReply {
    Stored,
    /// NOT_STORED / EXISTS: a refusal, not an error.
    NotStored,
    ServerError,
    Malformed(String),
}

fn classify_set(protocol: Protocol, p: &[u8], opaque: u32) -> SetReply {
    match protocol {
        Protocol::Ascii => match proto::parse_ascii_reply(p) {
            Ok(AsciiReply::Stored) => SetReply::Stored,
            Ok(AsciiReply::NotStored | AsciiReply::Exists) => SetReply::NotStored,
            Ok(AsciiReply::Error | AsciiReply::ClientError(_) | AsciiReply::ServerError(_)) => {
                SetReply::ServerError
            }
            Ok(other) => SetReply::Malformed(format!("unexpected {other:?}")),
            Err(e) => SetReply::Malformed(e.to_string()),
        },
        Protocol::Binary => match proto::parse_binary_response(p) {
            Ok(r) if r.opcode != opcode::SET || r.opaque != opaque => SetReply::Malformed(format!(
                "opcode {:#x} opaque {} (sent {opaque})",
                r.opcode, r.opaque
            )),
            Ok(r) => match r.status {
                status::NO_ERROR => SetReply::Stored,
                status::NOT_STORED | status::KEY_EXISTS => SetReply::NotStored,
                _ => SetReply::ServerError,
            },
            Err(e) => SetReply::Malformed(e.to_string()),
        },
    }
}

fn record_wait_error(c: &mut Counts, errors: &mut Vec<String>, e: &WaitError, timeout: Duration) {
    match e {
        WaitError::Timeout { .. } => c.timeouts += 1,
        WaitError::Io { source, .. } => {
            c.io_errors += 1;
            note(errors, format!("socket: {source}"));
            // Wait as for a lost reply: a refused port must not turn the loop into a flood.
            std::thread::sleep(timeout);
        }
        WaitError::Malformed(p) => {
            c.malformed += 1;
            note(errors, format!("datagram: {p}"));
        }
        WaitError::Encode(p) => note(errors, format!("encode: {p}")),
    }
}
