//! `userxdp lb`: configure the load balancer (`lb.o`) from a JSON file — VIPs, backends,
//! weights — in a running datapath or in a kernel-attached copy with pinned maps. Maglev
//! tables are rebuilt; established flows keep their backends (the connection table is left
//! alone and backend indices are kept).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::lb::targets::{ControlMaps, PinnedMaps};
use crate::lb::{self, LbConfig, MapWriter};

/// Arguments of `userxdp lb`.
#[derive(Debug, Args)]
pub struct LbArgs {
    /// The configuration (JSON: router_mac, src4_prefix, vips with backends and weights).
    #[arg(long, value_name = "FILE.json")]
    pub config: PathBuf,
    /// A running `run-datapath --prog lb.o --control PATH`.
    #[arg(long, value_name = "PATH", conflicts_with = "pinned")]
    pub control: Option<PathBuf>,
    /// A bpffs directory holding the kernel copy's pinned maps (`DIR/vip_map`, ...).
    #[arg(long, value_name = "DIR")]
    pub pinned: Option<PathBuf>,
}

/// Applies the configuration and prints what was written.
pub fn main(args: LbArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("--config {}", args.config.display()))?;
    let config = LbConfig::from_json(&text)
        .with_context(|| format!("--config {}", args.config.display()))?;
    let plan = match (&args.control, &args.pinned) {
        (Some(path), None) => {
            let mut maps = ControlMaps::connect(path)?;
            let plan = apply(&config, &mut maps)?;
            maps.flush()?;
            plan
        }
        (None, Some(dir)) => apply(&config, &mut PinnedMaps::new(dir))?,
        _ => bail!("say where the load balancer runs: --control PATH or --pinned DIR"),
    };
    for (vip, v) in config.vips.iter().zip(&plan.vips) {
        let mut slots = std::collections::BTreeMap::<u32, usize>::new();
        for r in &v.ring {
            *slots.entry(*r).or_default() += 1;
        }
        let shares: Vec<String> = slots
            .iter()
            .map(|(real, n)| match plan.real_addr(*real) {
                Some(addr) => format!("{addr}: {n} slots"),
                None => format!("(none): {n} slots"),
            })
            .collect();
        println!(
            "VIP #{} {}:{} {:?}: {}",
            v.vip_num,
            vip.addr,
            vip.port,
            vip.proto,
            shares.join(", ")
        );
    }
    let reals = plan.reals.iter().flatten().count();
    println!("{} VIP(s), {reals} backend(s) configured", plan.vips.len());
    Ok(())
}

fn apply(config: &LbConfig, w: &mut (impl MapWriter + ?Sized)) -> Result<lb::Plan> {
    Ok(lb::apply(config, w)?)
}
