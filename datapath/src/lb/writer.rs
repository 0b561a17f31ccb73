//! Writing a [`Plan`] into maps: one small trait so that the same configuration reaches the
//! userspace VM's maps and a kernel-loaded copy of the object.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use userxdp_runtime::kernel::Oracle;
use userxdp_runtime::maps::{flags::BPF_ANY, Map};
use userxdp_runtime::vm::instance::Vm;

use super::config::{ConfigError, LbConfig};
use super::plan::{decode_real, real_def, Plan};
use super::{MAX_REALS, RING_SIZE};

/// Why the maps could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A map operation failed.
    #[error("lb map {map}: {op} failed: {reason}")]
    Map {
        /// Map name.
        map: String,
        /// `update`, `delete` or `keys`.
        op: &'static str,
        /// The underlying error, as text (the backends' error types differ).
        reason: String,
    },
}

impl ApplyError {
    pub(crate) fn map(map: &str, op: &'static str, reason: impl std::fmt::Display) -> ApplyError {
        ApplyError::Map {
            map: map.to_string(),
            op,
            reason: reason.to_string(),
        }
    }
}

/// Somewhere the load balancer's maps live, addressed by map name with raw key/value bytes
/// (the bpf() syscall layout).
pub trait MapWriter {
    /// Creates or replaces one element (`BPF_ANY`).
    fn update(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<(), ApplyError>;
    /// Deletes one element; absent keys are not an error.
    fn delete(&mut self, map: &str, key: &[u8]) -> Result<(), ApplyError>;
    /// Every key of a hash map.
    fn keys(&mut self, map: &str) -> Result<Vec<Vec<u8>>, ApplyError>;
    /// One element's value, `None` when absent.
    fn lookup(&mut self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError>;
}

/// The kernel-loaded copy (oracle) of `lb.bpf.o`.
impl MapWriter for Oracle {
    fn update(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        self.map_update(map, key, value, BPF_ANY)
            .map_err(|e| ApplyError::map(map, "update", e))
    }

    fn delete(&mut self, map: &str, key: &[u8]) -> Result<(), ApplyError> {
        match self.map_lookup(map, key) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => self
                .map_delete(map, key)
                .map_err(|e| ApplyError::map(map, "delete", e)),
            Err(e) => Err(ApplyError::map(map, "delete", e)),
        }
    }

    fn keys(&mut self, map: &str) -> Result<Vec<Vec<u8>>, ApplyError> {
        let entries = self
            .map_dump(map)
            .map_err(|e| ApplyError::map(map, "keys", e))?;
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }

    fn lookup(&mut self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        self.map_lookup(map, key)
            .map_err(|e| ApplyError::map(map, "lookup", e))
    }
}

/// Userspace maps by name (a [`Vm`]'s, or a datapath's shared ones).
#[derive(Debug, Clone, Default)]
pub struct VmMaps {
    maps: HashMap<String, Arc<dyn Map>>,
}

impl VmMaps {
    /// Collects `(name, map)` pairs.
    pub fn new<'a>(maps: impl IntoIterator<Item = (&'a str, Arc<dyn Map>)>) -> VmMaps {
        VmMaps {
            maps: maps.into_iter().map(|(n, m)| (n.to_string(), m)).collect(),
        }
    }

    /// Every map of a loaded VM (the maps are shared, not copied).
    pub fn from_vm(vm: &Vm) -> VmMaps {
        VmMaps::new(vm.maps().map(|(n, m)| (n, m.clone())))
    }

    fn get(&self, map: &str, op: &'static str) -> Result<&Arc<dyn Map>, ApplyError> {
        self.maps
            .get(map)
            .ok_or_else(|| ApplyError::map(map, op, "no such map"))
    }
}

impl MapWriter for VmMaps {
    fn update(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        self.get(map, "update")?
            .write(key, value, BPF_ANY)
            .map_err(|e| ApplyError::map(map, "update", e))
    }

    fn delete(&mut self, map: &str, key: &[u8]) -> Result<(), ApplyError> {
        match self.get(map, "delete")?.delete(key) {
            Ok(()) | Err(userxdp_runtime::maps::MapError::NotFound) => Ok(()),
            Err(e) => Err(ApplyError::map(map, "delete", e)),
        }
    }

    fn keys(&mut self, map: &str) -> Result<Vec<Vec<u8>>, ApplyError> {
        let m = self.get(map, "keys")?;
        let mut out = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        while let Some(next) = m
            .next_key(key.as_deref())
            .map_err(|e| ApplyError::map(map, "keys", e))?
        {
            out.push(next.clone());
            key = Some(next);
        }
        Ok(out)
    }

    fn lookup(&mut self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        match self.get(map, "lookup")?.read(key) {
            Ok(v) => Ok(Some(v)),
            Err(userxdp_runtime::maps::MapError::NotFound) => Ok(None),
            Err(e) => Err(ApplyError::map(map, "lookup", e)),
        }
    }
}

/// The (index, address) pairs currently in `reals`.
pub fn read_reals(w: &mut (impl MapWriter + ?Sized)) -> Result<Vec<(u32, IpAddr)>, ApplyError> {
    let mut out = Vec::new();
    for idx in 1..MAX_REALS as u32 {
        if let Some(addr) = w
            .lookup("reals", &idx.to_ne_bytes())?
            .and_then(|v| decode_real(&v))
        {
            out.push((idx, addr));
        }
    }
    Ok(out)
}

/// Validates `config`, computes its [`Plan`] (keeping the real indices already in the maps,
/// so established flows keep their backends) and writes it with [`apply_plan`].
pub fn apply(config: &LbConfig, w: &mut (impl MapWriter + ?Sized)) -> Result<Plan, ApplyError> {
    let existing = read_reals(w)?;
    let plan = Plan::build_with(config, &existing)?;
    apply_plan(&plan, w)?;
    Ok(plan)
}

/// Writes a plan. Order matters for a live program: reals, rings and `lb_config` first, VIPs
/// last, so that a VIP becomes visible only with its ring filled; then VIPs no longer
/// configured are removed. `lru_conns` is left alone: established flows keep their real
/// (real indices are kept across reconfiguration, see [`Plan::build_with`]).
pub fn apply_plan(plan: &Plan, w: &mut (impl MapWriter + ?Sized)) -> Result<(), ApplyError> {
    for (i, addr) in plan.reals.iter().enumerate() {
        if let Some(addr) = addr {
            w.update("reals", &(i as u32 + 1).to_ne_bytes(), &real_def(*addr))?;
        }
    }
    for vip in &plan.vips {
        let base = vip.vip_num * RING_SIZE as u32;
        for (slot, real) in vip.ring.iter().enumerate() {
            w.update(
                "ch_rings",
                &(base + slot as u32).to_ne_bytes(),
                &real.to_ne_bytes(),
            )?;
        }
    }
    w.update("lb_config", &0u32.to_ne_bytes(), &plan.config_value)?;
    for vip in &plan.vips {
        w.update("vip_map", &vip.key, &vip.meta)?;
    }
    for key in w.keys("vip_map")? {
        if !plan.vips.iter().any(|v| v.key[..] == key[..]) {
            w.delete("vip_map", &key)?;
        }
    }
    Ok(())
}
