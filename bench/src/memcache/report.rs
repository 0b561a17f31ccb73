//! What a load run reports: counters, latency summary, examples of failures; as a table or
//! (serde) JSON.

use serde::Serialize;

use super::proto::Protocol;

/// A GET that returned an older version than one acknowledged before it was sent.
#[derive(Debug, Clone, Serialize)]
pub struct StaleRead {
    /// The key.
    pub key: u64,
    /// Version returned.
    pub got: u64,
    /// Highest acknowledged version when the GET was sent.
    pub acked: u64,
}

/// Latency summary in microseconds (replies only; timeouts excluded).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

/// Counters of one run (also used per thread, then added up).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Requests sent.
    pub requests: u64,
    /// Replies received (complete, for the request in flight).
    pub replies: u64,
    /// Requests without a reply in time.
    pub timeouts: u64,
    /// GET requests sent.
    pub gets: u64,
    /// Keys asked for by GETs (more than `gets` with multi-key gets).
    pub get_keys: u64,
    /// Keys answered with a value.
    pub hits: u64,
    /// Keys answered without a value.
    pub misses: u64,
    /// SET requests sent.
    pub sets: u64,
    /// SETs acknowledged as stored.
    pub stored: u64,
    /// SETs answered with anything but stored.
    pub set_failures: u64,
    /// SETs that timed out (their write may still land later).
    pub set_timeouts: u64,
    /// SETs turned into GETs because a write to the key was in flight (checker on).
    pub write_conflicts: u64,
    /// Values older than an acknowledged write (checker on).
    pub stale_reads: u64,
    /// Values (or reply keys) that belong to another key than asked for.
    pub wrong_key: u64,
    /// Replies or values that do not parse or do not answer the request.
    pub malformed: u64,
    /// ERROR / CLIENT_ERROR / SERVER_ERROR replies, binary error statuses.
    pub server_errors: u64,
    /// Datagrams for earlier, timed-out requests.
    pub late_replies: u64,
    /// Reply messages reassembled from several datagrams.
    pub multi_datagram: u64,
    /// Bare frame headers (total 0) skipped: memcached 1.6 sends one for a leading miss.
    pub empty_datagrams: u64,
    /// Socket errors (e.g. connection refused).
    pub io_errors: u64,
    /// Hits on values written by another run (`run_id`) of the load generator.
    pub foreign_values: u64,
}

impl Counts {
    /// Adds `o` to these counters.
    pub fn add(&mut self, o: &Counts) {
        let pairs: [(&mut u64, u64); 21] = [
            (&mut self.empty_datagrams, o.empty_datagrams),
            (&mut self.foreign_values, o.foreign_values),
            (&mut self.requests, o.requests),
            (&mut self.replies, o.replies),
            (&mut self.timeouts, o.timeouts),
            (&mut self.gets, o.gets),
            (&mut self.get_keys, o.get_keys),
            (&mut self.hits, o.hits),
            (&mut self.misses, o.misses),
            (&mut self.sets, o.sets),
            (&mut self.stored, o.stored),
            (&mut self.set_failures, o.set_failures),
            (&mut self.set_timeouts, o.set_timeouts),
            (&mut self.write_conflicts, o.write_conflicts),
            (&mut self.stale_reads, o.stale_reads),
            (&mut self.wrong_key, o.wrong_key),
            (&mut self.malformed, o.malformed),
            (&mut self.server_errors, o.server_errors),
            (&mut self.late_replies, o.late_replies),
            (&mut self.multi_datagram, o.multi_datagram),
            (&mut self.io_errors, o.io_errors),
        ];
        for (a, b) in pairs {
            *a += b;
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Server measured.
    pub server: String,
    /// Protocol used.
    pub protocol: Protocol,
    /// Threads.
    pub threads: usize,
    /// GETs in flight per thread (1: closed loop).
    pub pipeline: usize,
    /// Keys.
    pub keys: u64,
    /// Measured time in seconds.
    pub elapsed_s: f64,
    /// Replies per second over the measured time.
    pub throughput_rps: f64,
    /// hits / (hits + misses).
    pub hit_ratio: f64,
    /// Counters of the measured phase.
    pub counts: Counts,
    /// Latency of the replies.
    pub latency: Latency,
    /// SETs acknowledged during preload.
    pub preload_stored: u64,
    /// Keys preload could not store.
    pub preload_failures: u64,
    /// The first stale reads seen.
    pub stale_examples: Vec<StaleRead>,
    /// The first malformed or wrong-key replies, described.
    pub error_examples: Vec<String>,
}

impl LoadReport {
    /// True when nothing wrong was seen: no stale, wrong-key or malformed replies.
    pub fn consistent(&self) -> bool {
        self.counts.stale_reads == 0 && self.counts.wrong_key == 0 && self.counts.malformed == 0
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let c = &self.counts;
        let l = &self.latency;
        let mut s = format!(
            "memcached load: {} ({:?}), {} thread(s) x {} in flight, {} keys, {:.2} s\n",
            self.server, self.protocol, self.threads, self.pipeline, self.keys, self.elapsed_s
        );
        let rows: [(&str, String); 21] = [
            (
                "throughput",
                format!("{:.0} replies/s", self.throughput_rps),
            ),
            ("requests", c.requests.to_string()),
            ("replies", c.replies.to_string()),
            ("timeouts", c.timeouts.to_string()),
            ("gets", format!("{} ({} keys)", c.gets, c.get_keys)),
            (
                "hits / misses",
                format!(
                    "{} / {} (hit ratio {:.3})",
                    c.hits, c.misses, self.hit_ratio
                ),
            ),
            (
                "sets",
                format!(
                    "{} ({} stored, {} failed, {} timed out)",
                    c.sets, c.stored, c.set_failures, c.set_timeouts
                ),
            ),
            ("write conflicts", c.write_conflicts.to_string()),
            ("latency p50", format!("{:.1} us", l.p50_us)),
            ("latency p90", format!("{:.1} us", l.p90_us)),
            ("latency p99", format!("{:.1} us", l.p99_us)),
            ("latency max", format!("{:.1} us", l.max_us)),
            ("latency mean", format!("{:.1} us", l.mean_us)),
            ("stale reads", c.stale_reads.to_string()),
            ("wrong-key values", c.wrong_key.to_string()),
            ("malformed replies", c.malformed.to_string()),
            ("server errors", c.server_errors.to_string()),
            (
                "late/multi/empty",
                format!(
                    "{} late, {} multi-datagram, {} empty",
                    c.late_replies, c.multi_datagram, c.empty_datagrams
                ),
            ),
            ("io errors", c.io_errors.to_string()),
            ("other runs' values", c.foreign_values.to_string()),
            (
                "preload",
                format!(
                    "{} stored, {} failed",
                    self.preload_stored, self.preload_failures
                ),
            ),
        ];
        for (k, v) in rows {
            s.push_str(&format!("  {k:<20} {v}\n"));
        }
        for e in &self.stale_examples {
            s.push_str(&format!(
                "  stale: key:{} got v{} after v{} was acked\n",
                e.key, e.got, e.acked
            ));
        }
        for e in &self.error_examples {
            s.push_str(&format!("  error: {e}\n"));
        }
        s
    }
}
