//! `corpus`: write the deterministic test/benchmark packet corpus as a pcap file, so that
//! `userxdp run --pcap` and tcpdump/Wireshark see exactly what the tests and `compare` use.

use std::fs::File;
use std::io::BufWriter;
use std::time::Duration;

use anyhow::{Context, Result};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use userxdp_bench::packets;

fn main() -> std::process::ExitCode {
    userxdp_bench::exit_status("corpus", run())
}

fn run() -> Result<()> {
    let mut out = None;
    let (mut n, mut seed) = (1000usize, 0x5eedu64);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(val()?),
            "--packets" => n = val()?.parse().context("--packets: not a number")?,
            "--seed" => seed = val()?.parse().context("--seed: not a number")?,
            _ => anyhow::bail!("usage: corpus --out FILE.pcap [--packets N] [--seed S]"),
        }
    }
    let out = out.context("usage: corpus --out FILE.pcap [--packets N] [--seed S]")?;
    let file = File::create(&out).with_context(|| format!("cannot create {out}"))?;
    let mut w = PcapWriter::new(BufWriter::new(file))?;
    for (i, p) in packets::corpus(seed, n).iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(i as u64),
            p.len() as u32,
            p,
        ))?;
    }
    eprintln!("wrote {n} frames to {out}");
    Ok(())
}
