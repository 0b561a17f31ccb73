//! Where `userxdp lb` writes a configuration: a running datapath (through its control
//! socket) or a kernel-attached copy whose maps are pinned in bpffs.

use std::path::{Path, PathBuf};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use serde_json::{json, Value};
use userxdp_runtime::maps::dump;

use super::writer::{ApplyError, MapWriter};
use crate::control::ControlClient;

/// Updates buffered per map before one `map_update_batch` request (a Maglev ring is 65,537
/// entries: one round trip each would take seconds).
const BATCH: usize = 4096;

/// The maps of a running `run-datapath`, through its control socket. Updates are sent in
/// batches, in order; any other request flushes them first, so ordering is kept.
pub struct ControlMaps {
    client: ControlClient,
    pending: Option<(String, Vec<Value>)>,
}

impl ControlMaps {
    /// Connects to the datapath's control socket.
    pub fn connect(path: &Path) -> anyhow::Result<ControlMaps> {
        Ok(ControlMaps {
            client: ControlClient::connect(path)?,
            pending: None,
        })
    }

    /// Sends buffered updates.
    pub fn flush(&mut self) -> Result<(), ApplyError> {
        if let Some((map, entries)) = self.pending.take() {
            self.client
                .request(&json!({"cmd": "map_update_batch", "map": map, "entries": entries}))
                .map_err(|e| ApplyError::map(&map, "update", e))?;
        }
        Ok(())
    }

    fn request(&mut self, map: &str, op: &'static str, r: Value) -> Result<Value, ApplyError> {
        self.flush()?;
        self.client
            .request(&r)
            .map_err(|e| ApplyError::map(map, op, e))
    }
}

impl MapWriter for ControlMaps {
    fn update(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        if self.pending.as_ref().is_some_and(|(m, _)| m != map) {
            self.flush()?;
        }
        let (_, entries) = self
            .pending
            .get_or_insert_with(|| (map.to_string(), Vec::new()));
        entries.push(json!([dump::to_hex(key), dump::to_hex(value)]));
        if entries.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn delete(&mut self, map: &str, key: &[u8]) -> Result<(), ApplyError> {
        let r = json!({"cmd": "map_delete", "map": map, "key": dump::to_hex(key)});
        match self.request(map, "delete", r) {
            Ok(_) => Ok(()),
            // Absent keys are not an error for the writer contract.
            Err(e) if e.to_string().contains("no such key") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn keys(&mut self, map: &str) -> Result<Vec<Vec<u8>>, ApplyError> {
        let r = self.request(map, "keys", json!({"cmd": "map_dump", "map": map}))?;
        Ok(r["dump"]["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["key"].as_str().and_then(dump::from_hex))
            .collect())
    }

    fn lookup(&mut self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        self.flush()?;
        let r = json!({"cmd": "map_get", "map": map, "key": dump::to_hex(key)});
        match self.client.request(&r) {
            Ok(v) => Ok(v["value"].as_str().and_then(dump::from_hex)),
            Err(e) if e.to_string().contains("no such key") => Ok(None),
            Err(e) => Err(ApplyError::map(map, "lookup", e)),
        }
    }
}

/// Maps pinned in a bpffs directory (`DIR/<map name>`), e.g. by
/// `bpftool prog load lb.o /sys/fs/bpf/lb pinmaps DIR`, for a kernel-attached `lb.o`.
pub struct PinnedMaps {
    dir: PathBuf,
}

impl PinnedMaps {
    /// Maps under `dir`.
    pub fn new(dir: &Path) -> PinnedMaps {
        PinnedMaps {
            dir: dir.to_path_buf(),
        }
    }

    fn open(&self, map: &str, op: &'static str) -> Result<MapHandle, ApplyError> {
        let path = self.dir.join(map);
        MapHandle::from_pinned_path(&path)
            .map_err(|e| ApplyError::map(map, op, format!("{}: {e}", path.display())))
    }
}

impl MapWriter for PinnedMaps {
    fn update(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        self.open(map, "update")?
            .update(key, value, MapFlags::ANY)
            .map_err(|e| ApplyError::map(map, "update", e))
    }

    fn delete(&mut self, map: &str, key: &[u8]) -> Result<(), ApplyError> {
        let m = self.open(map, "delete")?;
        match m.lookup(key, MapFlags::ANY) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => m.delete(key).map_err(|e| ApplyError::map(map, "delete", e)),
            Err(e) => Err(ApplyError::map(map, "delete", e)),
        }
    }

    fn keys(&mut self, map: &str) -> Result<Vec<Vec<u8>>, ApplyError> {
        Ok(self.open(map, "keys")?.keys().collect())
    }

    fn lookup(&mut self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        self.open(map, "lookup")?
            .lookup(key, MapFlags::ANY)
            .map_err(|e| ApplyError::map(map, "lookup", e))
    }
}
