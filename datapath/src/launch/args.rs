//! `run-datapath`'s command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy};

use super::report::StatsFormat;
use super::{Config, Input};
use crate::cli::objects::ProgRef;
use crate::device::afxdp::{BusyPoll, XskMode, XskOptions};

/// Runs an XDP object on AF_XDP queues (or a capture, or generated frames) in userspace.
#[derive(Debug, Parser)]
#[command(name = "run-datapath", version)]
pub struct DatapathArgs {
    /// Network interface whose queues the datapath takes over.
    #[arg(long, value_name = "IF", conflicts_with_all = ["pcap_input", "generate"])]
    pub iface: Option<String>,
    /// Queues, as a list and ranges: `0-3`, `0,2`, `1`.
    #[arg(long, default_value = "0", value_parser = parse_list)]
    pub queues: NumberList,
    /// Ingress XDP object and optional program: `cache.o` or `cache.o:PROGRAM`.
    #[arg(long, value_name = "OBJ[:PROGRAM]")]
    pub prog: ProgRef,
    /// Program (function or section name) of --prog, when not given after a colon.
    #[arg(long, value_name = "NAME")]
    pub section: Option<String>,
    /// Egress TC program for frames the kernel sends out through the TAP; from the same
    /// object as --prog it shares its maps.
    #[arg(long, value_name = "OBJ[:SECTION]", requires = "tap")]
    pub egress_prog: Option<ProgRef>,
    /// Cores for the workers, one per queue (list and ranges) [default: spread over the
    /// available cores].
    #[arg(long, value_parser = parse_list)]
    pub cores: Option<NumberList>,
    /// TAP device for XDP_PASS frames and the kernel's replies (created if absent).
    #[arg(long, value_name = "NAME")]
    pub tap: Option<String>,
    /// Frames per RX batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,
    /// Frames of packet memory per queue (rounded up to a power of two).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(64..=262_144))]
    pub umem_frames: u32,
    /// AF_XDP mode.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeArg,
    /// Preferred busy polling: the workers drive their queues' NAPI (also never sleep).
    #[arg(long)]
    pub busy_poll: bool,
    /// Engine.
    #[arg(long, value_enum, default_value = "jit")]
    pub engine: EngineArg,
    /// What proves JIT code safe [default: kernel when permitted, else guarded].
    #[arg(long, value_enum)]
    pub verifier: Option<VerifierArg>,
    /// Print statistics this often: `1s`, `500ms`.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration)]
    pub stats: Option<Duration>,
    /// Statistics as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Write a packet trace (pcapng, one comment per frame with queue and verdict).
    #[arg(long, value_name = "FILE.pcapng")]
    pub trace: Option<PathBuf>,
    /// Read frames from this capture instead of an interface (one worker).
    #[arg(long = "pcap", value_name = "IN.pcap", requires = "out_dir")]
    pub pcap_input: Option<PathBuf>,
    /// With --pcap: where tx.pcap, pass.pcap and redirect.pcap are written.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Generate COUNT frames per queue in memory (templates from --pcap-templates, or one
    /// 64-byte UDP frame).
    #[arg(long, value_name = "COUNT")]
    pub generate: Option<u64>,
    /// Template frames for --generate.
    #[arg(long, value_name = "FILE.pcap", requires = "generate")]
    pub pcap_templates: Option<PathBuf>,
    /// Stop after this long: `10s`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Spin when idle instead of napping (lowest latency; burns the cores).
    #[arg(long)]
    pub spin: bool,
    /// Fill the maps from this file (the `--dump-maps` / `snapshot_save` format) before the
    /// first frame: a warm start from a snapshot, or a prepared configuration.
    #[arg(long, value_name = "FILE.json")]
    pub maps_init: Option<PathBuf>,
    /// Listen for control requests (stats, maps, reload, snapshots) on this Unix socket;
    /// `userxdp ctl --control PATH ...` talks to it.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

/// AF_XDP mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Copy mode (any driver).
    Copy,
    /// Zero-copy (fails where the driver lacks it).
    Zerocopy,
    /// Zero-copy where possible.
    Auto,
}

/// Engine on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The checked interpreter.
    Interp,
    /// The Cranelift JIT.
    Jit,
}

/// Safety policy on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifierArg {
    /// The kernel verifier.
    Kernel,
    /// A bounds check per memory access.
    Guarded,
    /// Nothing: only for code proven safe elsewhere.
    None,
}

/// A parsed list of numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberList(pub Vec<u32>);

/// Parses `0-3`, `0,2,5-6`: ascending or not, no duplicates, at most 1024 entries.
pub fn parse_list(s: &str) -> Result<NumberList, String> {
    let mut out: Vec<u32> = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("{t:?} in {s:?} is not a number (expected e.g. 0-3 or 0,2)"))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b {
            return Err(format!("range {part:?} runs backwards"));
        }
        if b - a >= 1024 || out.len() + (b - a) as usize >= 1024 {
            return Err(format!("{s:?} lists more than 1024 entries"));
        }
        for n in a..=b {
            if out.contains(&n) {
                return Err(format!("{n} appears twice in {s:?}"));
            }
            out.push(n);
        }
    }
    Ok(NumberList(out))
}

/// Parses `1s`, `500ms`, `2.5s`, `100us`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (expected e.g. 1s, 500ms)"))?;
    if !(v.is_finite() && v > 0.0 && v * scale < 1e7) {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// A 64-byte UDP frame 198.18.0.1:1024 -> 198.18.0.2:9 for the generator.
fn default_template() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ]);
    let sum = ipv4_header_sum(&f[14..34]);
    f[24..26].copy_from_slice(&(!sum).to_be_bytes());
    f[34..42].copy_from_slice(&[0x04, 0x00, 0x00, 0x09, 0x00, 26, 0, 0]);
    f
}

/// One's-complement sum of a header's big-endian 16-bit words (RFC 1071), folded.
fn ipv4_header_sum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

impl DatapathArgs {
    /// Turns the arguments into a run configuration, checking what clap cannot.
    pub fn into_config(self) -> Result<Config> {
        let mut prog = self.prog;
        if let Some(s) = self.section {
            if prog.program.is_some() {
                bail!(
                    "give the program either after a colon in --prog or with --section, not both"
                );
            }
            prog.program = Some(s);
        }
        let queues = self.queues.0;
        let input = match (self.iface, self.pcap_input, self.generate) {
            (Some(name), None, None) => Input::Interface {
                name,
                queues: queues.clone(),
                xsk: XskOptions {
                    frames: self.umem_frames,
                    mode: match self.mode {
                        ModeArg::Copy => XskMode::Copy,
                        ModeArg::Zerocopy => XskMode::ZeroCopy,
                        ModeArg::Auto => XskMode::Auto,
                    },
                    need_wakeup: true,
                    busy_poll: self.busy_poll.then_some(BusyPoll {
                        usecs: 20,
                        budget: self.batch,
                    }),
                },
            },
            (None, Some(path), None) => Input::Pcap {
                path,
                out_dir: self.out_dir.unwrap_or_else(|| PathBuf::from(".")),
            },
            (None, None, Some(count)) => Input::Generator {
                templates: match &self.pcap_templates {
                    Some(p) => crate::capture::read_frames(p)?
                        .into_iter()
                        .map(|f| f.data)
                        .collect(),
                    None => vec![default_template()],
                },
                count,
                queues: queues.len() as u32,
            },
            (None, None, None) => {
                bail!("say where frames come from: --iface IF, --pcap IN.pcap or --generate COUNT")
            }
            _ => bail!("--iface, --pcap and --generate exclude each other"),
        };
        let engine = match self.engine {
            EngineArg::Interp => Engine::Interpreter,
            EngineArg::Jit => Engine::Jit,
        };
        let safety = match self.verifier {
            Some(VerifierArg::Kernel) => SafetyPolicy::Kernel,
            Some(VerifierArg::Guarded) => SafetyPolicy::Guarded,
            Some(VerifierArg::None) => SafetyPolicy::None,
            None => match userxdp_runtime::kernel::probe() {
                Ok(()) => SafetyPolicy::Kernel,
                Err(_) => SafetyPolicy::Guarded,
            },
        };
        Ok(Config {
            input,
            prog,
            egress: self.egress_prog,
            engine,
            safety,
            cores: self
                .cores
                .map(|c| c.0.into_iter().map(|x| x as usize).collect()),
            tap: self.tap,
            batch: self.batch as usize,
            stats: self.stats,
            format: if self.json {
                StatsFormat::Json
            } else {
                StatsFormat::Text
            },
            trace: self.trace,
            duration: self.duration,
            spin: self.spin || self.busy_poll,
            control: self.control,
            maps_init: self.maps_init,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse_list("0-3").unwrap().0, vec![0, 1, 2, 3]);
        assert_eq!(parse_list("0,2,5-6").unwrap().0, vec![0, 2, 5, 6]);
        assert_eq!(parse_list("1").unwrap().0, vec![1]);
        for bad in ["", "a", "3-1", "0,0", "0-5000", "-1", "1-"] {
            assert!(parse_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        for bad in ["", "x", "-1s", "0", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn default_template_is_valid_udp() {
        let f = default_template();
        assert_eq!(f.len(), 60);
        assert_eq!(
            ipv4_header_sum(&f[14..34]),
            0xffff,
            "header checksum verifies"
        );
        assert_eq!(&f[26..34], &[198, 18, 0, 1, 198, 18, 0, 2]);
    }
}
