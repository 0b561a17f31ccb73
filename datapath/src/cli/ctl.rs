//! `userxdp ctl`: talk to a running `run-datapath` through its control socket.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::control::ControlClient;

/// Arguments of `userxdp ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The datapath's control socket (`run-datapath --control PATH`).
    #[arg(long, value_name = "PATH")]
    pub control: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: CtlAction,
}

/// One control request.
#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Per-queue and total counters.
    Stats,
    /// Every map: name, type, sizes.
    Maps,
    /// One map's contents, in the `--dump-maps` format.
    Dump {
        /// Map name.
        map: String,
    },
    /// One element's value (hex).
    Get {
        /// Map name.
        map: String,
        /// Key as hex bytes.
        key: String,
    },
    /// Creates or replaces one element.
    Update {
        /// Map name.
        map: String,
        /// Key as hex bytes.
        key: String,
        /// Value as hex bytes.
        value: String,
        /// BPF_ANY (0), BPF_NOEXIST (1), BPF_EXIST (2).
        #[arg(long, default_value_t = 0)]
        flags: u64,
    },
    /// Deletes one element.
    Delete {
        /// Map name.
        map: String,
        /// Key as hex bytes.
        key: String,
    },
    /// Drains a RINGBUF map: prints the records produced since the last read (hex).
    Ringbuf {
        /// Map name.
        map: String,
        /// Most records to print.
        #[arg(long, default_value_t = 1024)]
        max: u64,
    },
    /// Replaces the running program by one from OBJ, keeping the maps (no frame dropped).
    Reload {
        /// The new object.
        object: PathBuf,
        /// Its XDP program [default: same name as now, else the first XDP program].
        #[arg(long)]
        program: Option<String>,
        /// Its egress TC program [default: same name as now].
        #[arg(long)]
        egress: Option<String>,
    },
    /// Writes every map to FILE (a `--maps-init` file).
    Save {
        /// Snapshot file.
        file: PathBuf,
    },
    /// Fills the maps from FILE.
    Restore {
        /// Snapshot file.
        file: PathBuf,
    },
}

fn absolute(p: &std::path::Path) -> Result<String> {
    Ok(std::path::absolute(p)?.display().to_string())
}

/// Runs the command: prints the response as pretty JSON.
pub fn main(args: CtlArgs) -> Result<()> {
    let request: Value = match &args.action {
        CtlAction::Stats => json!({"cmd": "stats"}),
        CtlAction::Maps => json!({"cmd": "maps"}),
        CtlAction::Dump { map } => json!({"cmd": "map_dump", "map": map}),
        CtlAction::Get { map, key } => json!({"cmd": "map_get", "map": map, "key": key}),
        CtlAction::Update {
            map,
            key,
            value,
            flags,
        } => {
            json!({"cmd": "map_update", "map": map, "key": key, "value": value, "flags": flags})
        }
        CtlAction::Delete { map, key } => json!({"cmd": "map_delete", "map": map, "key": key}),
        CtlAction::Ringbuf { map, max } => json!({"cmd": "ringbuf_read", "map": map, "max": max}),
        CtlAction::Reload {
            object,
            program,
            egress,
        } => {
            // The datapath may run in another directory: send an absolute path.
            let mut r = json!({"cmd": "prog_reload", "path": absolute(object)?});
            if let Some(p) = program {
                r["program"] = json!(p);
            }
            if let Some(e) = egress {
                r["egress"] = json!(e);
            }
            r
        }
        CtlAction::Save { file } => json!({"cmd": "snapshot_save", "path": absolute(file)?}),
        CtlAction::Restore { file } => {
            json!({"cmd": "snapshot_restore", "path": absolute(file)?})
        }
    };
    let mut client = ControlClient::connect(&args.control)?;
    let mut response = client.request(&request)?;
    if let Some(o) = response.as_object_mut() {
        o.remove("ok");
    }
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}
