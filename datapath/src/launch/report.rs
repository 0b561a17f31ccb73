//! Statistics output, like testpmd's: once per interval, per queue and in total, the packets
//! and rates of every verdict path; as aligned text or as one JSON object per line.

use std::time::Duration;

use serde::Serialize;

use crate::stats::Counters;

/// Text or JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsFormat {
    /// Aligned columns for people.
    Text,
    /// One JSON object per line for programs.
    Json,
}

/// Prints interval statistics; remembers the previous sample to compute rates.
#[derive(Debug)]
pub struct Reporter {
    format: StatsFormat,
    queues: Vec<u32>,
    last: Option<(Duration, Vec<Counters>)>,
}

#[derive(Serialize)]
struct QueueLine<'a> {
    queue: Option<u32>,
    rx_pps: f64,
    tx_pps: f64,
    #[serde(flatten)]
    counters: &'a Counters,
}

#[derive(Serialize)]
struct IntervalLine<'a> {
    elapsed_s: f64,
    queues: Vec<QueueLine<'a>>,
    total: QueueLine<'a>,
}

impl Reporter {
    /// A reporter for workers serving `queues` (in worker order).
    pub fn new(format: StatsFormat, queues: Vec<u32>) -> Reporter {
        Reporter {
            format,
            queues,
            last: None,
        }
    }

    /// Prints one interval given every worker's counters now.
    pub fn interval(&mut self, elapsed: Duration, now: &[Counters]) {
        let (prev_t, prev) = self
            .last
            .take()
            .unwrap_or((Duration::ZERO, vec![Counters::default(); now.len()]));
        let dt = (elapsed - prev_t).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        let total = now.iter().fold(Counters::default(), |a, c| a + *c);
        let prev_total = prev.iter().fold(Counters::default(), |a, c| a + *c);
        let lines: Vec<QueueLine> = now
            .iter()
            .zip(&prev)
            .zip(&self.queues)
            .map(|((c, p), q)| QueueLine {
                queue: Some(*q),
                rx_pps: rate(c.rx, p.rx),
                tx_pps: rate(c.tx + c.egress_tx, p.tx + p.egress_tx),
                counters: c,
            })
            .collect();
        let total_line = QueueLine {
            queue: None,
            rx_pps: rate(total.rx, prev_total.rx),
            tx_pps: rate(
                total.tx + total.egress_tx,
                prev_total.tx + prev_total.egress_tx,
            ),
            counters: &total,
        };
        match self.format {
            StatsFormat::Json => {
                let line = IntervalLine {
                    elapsed_s: elapsed.as_secs_f64(),
                    queues: lines,
                    total: total_line,
                };
                if let Ok(s) = serde_json::to_string(&line) {
                    println!("{s}");
                }
            }
            StatsFormat::Text => {
                println!("---- {:>7.1} s ----", elapsed.as_secs_f64());
                println!("{}", header());
                for l in lines.iter().chain(std::iter::once(&total_line)) {
                    println!("{}", row(l));
                }
            }
        }
        self.last = Some((elapsed, now.to_vec()));
    }
}

fn header() -> String {
    format!(
        "{:>6} {:>11} {:>11} {:>12} {:>12} {:>10} {:>10} {:>10} {:>8} {:>8} {:>10}",
        "queue",
        "rx-pps",
        "tx-pps",
        "rx",
        "tx",
        "drop",
        "pass",
        "redirect",
        "aborted",
        "errors",
        "egress-tx"
    )
}

fn row(l: &QueueLine) -> String {
    let c = l.counters;
    format!(
        "{:>6} {:>11.0} {:>11.0} {:>12} {:>12} {:>10} {:>10} {:>10} {:>8} {:>8} {:>10}",
        l.queue.map_or("total".to_string(), |q| q.to_string()),
        l.rx_pps,
        l.tx_pps,
        c.rx,
        c.tx,
        c.drop,
        c.pass,
        c.redirect,
        c.aborted,
        c.errors,
        c.egress_tx
    )
}

/// Prints the final summary of a run.
pub fn summary(format: StatsFormat, report: &super::RunReport) {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    match format {
        StatsFormat::Json => {
            #[derive(Serialize)]
            struct Final<'a> {
                summary: bool,
                elapsed_s: f64,
                rx_pps: f64,
                queues: Vec<QueueLine<'a>>,
                total: &'a Counters,
                problems: &'a [String],
            }
            let f = Final {
                summary: true,
                elapsed_s: secs,
                rx_pps: report.total.rx as f64 / secs,
                queues: report
                    .queues
                    .iter()
                    .map(|(q, c)| QueueLine {
                        queue: Some(*q),
                        rx_pps: c.rx as f64 / secs,
                        tx_pps: (c.tx + c.egress_tx) as f64 / secs,
                        counters: c,
                    })
                    .collect(),
                total: &report.total,
                problems: &report.problems,
            };
            if let Ok(s) = serde_json::to_string(&f) {
                println!("{s}");
            }
        }
        StatsFormat::Text => {
            println!("==== summary after {secs:.1} s ====");
            println!("{}", header());
            for (q, c) in &report.queues {
                println!(
                    "{}",
                    row(&QueueLine {
                        queue: Some(*q),
                        rx_pps: c.rx as f64 / secs,
                        tx_pps: (c.tx + c.egress_tx) as f64 / secs,
                        counters: c,
                    })
                );
            }
            let t = &report.total;
            println!(
                "{}",
                row(&QueueLine {
                    queue: None,
                    rx_pps: t.rx as f64 / secs,
                    tx_pps: (t.tx + t.egress_tx) as f64 / secs,
                    counters: t,
                })
            );
            println!(
                "egress: {} from the kernel, {} sent, {} dropped by the program, {} lost",
                t.egress_rx, t.egress_tx, t.egress_drop, t.egress_errors
            );
            for p in &report.problems {
                println!("note: {p}");
            }
        }
    }
}
