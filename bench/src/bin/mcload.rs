//! `mcload`: a closed-loop memcached UDP load generator with a stale-read checker.
//!
//! ```text
//! mcload --server IP:PORT [--threads N] [--pipeline D] [--duration SECS | --requests N] [--keys K]
//!        [--zipf S] [--get-ratio R] [--value-size B] [--binary [--getk]] [--multiget N]
//!        [--preload] [--timeout-ms T] [--seed N] [--json] [--check-stale]
//! ```
//!
//! Sends only to `--server`. Exits 1 when a stale, wrong-key or malformed reply was seen (so
//! scripts can use it as a checker), 2 on bad usage.

use std::net::SocketAddr;
use std::time::Duration;

use userxdp_bench::memcache::{self, LoadConfig, Protocol, Stop};

const USAGE: &str = "usage: mcload --server IP:PORT [--threads N] [--pipeline D (1; GETs only)]
              [--duration SECS | --requests N]
              [--keys K] [--zipf S (0.99)] [--get-ratio R (0.9)] [--value-size B (64)]
              [--binary [--getk]] [--multiget N (ASCII)] [--preload] [--timeout-ms T (100)]
              [--seed N] [--json] [--check-stale]";

fn usage(msg: &str) -> ! {
    eprintln!("mcload: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn value<T: std::str::FromStr>(it: &mut impl Iterator<Item = String>, name: &str) -> T {
    let Some(v) = it.next() else {
        usage(&format!("{name} needs a value"))
    };
    v.parse()
        .unwrap_or_else(|_| usage(&format!("{name}: cannot parse {v:?}")))
}

fn parse_args() -> (LoadConfig, bool) {
    let mut server: Option<SocketAddr> = None;
    let mut cfg = LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], 11211)));
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--server" => server = Some(value(&mut it, "--server")),
            "--threads" => cfg.threads = value(&mut it, "--threads"),
            "--pipeline" => cfg.pipeline = value(&mut it, "--pipeline"),
            "--duration" => {
                let secs: f64 = value(&mut it, "--duration");
                if !(secs > 0.0 && secs <= 86_400.0) {
                    usage("--duration must be in (0, 86400]");
                }
                cfg.stop = Stop::Duration(Duration::from_secs_f64(secs));
            }
            "--requests" => cfg.stop = Stop::Requests(value(&mut it, "--requests")),
            "--keys" => cfg.keys = value(&mut it, "--keys"),
            "--zipf" => cfg.zipf_s = value(&mut it, "--zipf"),
            "--get-ratio" => cfg.get_ratio = value(&mut it, "--get-ratio"),
            "--value-size" => cfg.value_size = value(&mut it, "--value-size"),
            "--binary" => cfg.protocol = Protocol::Binary,
            "--getk" => cfg.binary_getk = true,
            "--multiget" => cfg.multiget = value(&mut it, "--multiget"),
            "--preload" => cfg.preload = true,
            "--timeout-ms" => cfg.timeout = Duration::from_millis(value(&mut it, "--timeout-ms")),
            "--seed" => cfg.seed = value(&mut it, "--seed"),
            "--json" => json = true,
            "--check-stale" => cfg.check_stale = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    cfg.server = server.unwrap_or_else(|| usage("--server is required"));
    (cfg, json)
}

fn main() {
    let (cfg, json) = parse_args();
    let report = match memcache::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            let mut msg = format!("mcload: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            std::process::exit(2)
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("mcload: cannot encode the report: {e}");
                std::process::exit(2)
            }
        }
    } else {
        print!("{}", report.table());
    }
    if !report.consistent() {
        std::process::exit(1)
    }
}
