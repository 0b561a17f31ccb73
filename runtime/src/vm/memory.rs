//! The regions a program may touch, and the check every guarded access goes through.
//!
//! The interpreter checks every load and store against a [`MemoryMap`]; the JIT does the same in
//! `--verifier guarded` mode. Regions are half-open `[start, start + len)` address ranges.

use std::fmt;

use super::error::VmError;

/// Direction of a memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store or atomic read-modify-write.
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// What a region holds (for error messages and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// A function frame's 512-byte stack.
    Stack,
    /// The program context (`xdp_md`, `__sk_buff`, or raw memory for `exec`).
    Context,
    /// Packet bytes between `data_meta` and `data_end`.
    Packet,
    /// A map value returned by a lookup or referenced by ld_imm64.
    MapValue,
    /// Read-only data.
    ReadOnly,
    /// Read-only data whose contents never change: frozen `.rodata` (see
    /// [`crate::maps::is_frozen`]). Loads from it may be folded into constants at decoding, as
    /// the kernel's verifier treats them as known values.
    Constant,
}

/// One accessible address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Whether stores are allowed.
    pub writable: bool,
    /// What the region holds.
    pub kind: RegionKind,
}

impl Region {
    /// Whether `[addr, addr + len)` lies inside this region and `access` is permitted.
    #[inline]
    pub fn contains(&self, addr: u64, len: u64, access: Access) -> bool {
        addr >= self.start
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= self.start + self.len)
            && (access == Access::Read || self.writable)
    }
}

/// The set of regions of one run. Small and linear on purpose: a run has a handful of regions
/// (stack, context, packet, a few map values), and the most recently added are checked first.
#[derive(Debug, Default, Clone)]
pub struct MemoryMap {
    regions: Vec<Region>,
    /// Number of regions that persist across runs (global data, array map values).
    fixed: usize,
}

impl MemoryMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a region that stays for every run (global data, array values).
    pub fn add_fixed(&mut self, region: Region) {
        self.regions.insert(self.fixed, region);
        self.fixed += 1;
    }

    /// Adds a region valid until [`MemoryMap::reset_dynamic`] (stack, packet, looked-up values).
    pub fn add(&mut self, region: Region) {
        self.regions.push(region);
    }

    /// Replaces the per-run regions of `kind` with `region` (packet bounds after a head or tail
    /// adjustment).
    pub fn replace(&mut self, kind: RegionKind, region: Region) {
        let fixed = self.fixed;
        let mut i = fixed;
        while i < self.regions.len() {
            if self.regions[i].kind == kind {
                self.regions.remove(i);
            } else {
                i += 1;
            }
        }
        self.regions.push(region);
    }

    /// Removes the most recently added per-run region equal to `region`, if any (memory that
    /// stops being valid before the run's regions are reset).
    pub fn remove(&mut self, region: &Region) {
        let fixed = self.fixed;
        if let Some(i) = self.regions[fixed..].iter().rposition(|r| r == region) {
            self.regions.remove(fixed + i);
        }
    }

    /// Drops the per-run regions, keeping the fixed ones.
    pub fn reset_dynamic(&mut self) {
        self.regions.truncate(self.fixed);
    }

    /// Whether the access is allowed.
    #[inline]
    pub fn allows(&self, addr: u64, len: u64, access: Access) -> bool {
        self.find(addr, len, access).is_some()
    }

    /// The region that allows the access, most recently added first.
    #[inline]
    pub fn find(&self, addr: u64, len: u64, access: Access) -> Option<&Region> {
        self.regions
            .iter()
            .rev()
            .find(|r| r.contains(addr, len, access))
    }

    /// Checks an access, producing the fault the engine reports at `insn`.
    #[inline]
    pub fn check(&self, insn: usize, addr: u64, len: usize, access: Access) -> Result<(), VmError> {
        if self.allows(addr, len as u64, access) {
            Ok(())
        } else {
            Err(VmError::OutOfBounds {
                insn,
                addr,
                len,
                access,
            })
        }
    }

    /// All regions, fixed first.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
}

/// The memory of `maps` that stays put for each map's whole life (array storage), readable,
/// and writable unless the program may only read it; constant when the map is frozen.
pub(crate) fn fixed_regions(maps: &[std::sync::Arc<dyn crate::maps::Map>]) -> Vec<Region> {
    maps.iter()
        .flat_map(|m| {
            let frozen = crate::maps::is_frozen(m.spec());
            m.fixed_regions()
                .into_iter()
                .map(move |(start, len, writable)| Region {
                    start,
                    len,
                    writable,
                    kind: match (writable, frozen) {
                        (true, _) => RegionKind::MapValue,
                        (false, true) => RegionKind::Constant,
                        (false, false) => RegionKind::ReadOnly,
                    },
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{ArrayMap, Map, BPF_F_RDONLY_PROG};
    use crate::object::spec::MapSpec;
    use std::sync::Arc;

    /// Only frozen maps (read-only global data) are constant: a map the program may only read
    /// but user space may update stays merely read-only, and the others are map values.
    #[test]
    fn only_frozen_maps_give_constant_regions() {
        let array = |flags: u32, global_data: bool| -> Arc<dyn Map> {
            Arc::new(
                ArrayMap::new(MapSpec {
                    name: "m".into(),
                    map_type: crate::maps::types::ARRAY,
                    key_size: 4,
                    value_size: 8,
                    max_entries: 1,
                    flags,
                    global_data,
                    ..MapSpec::default()
                })
                .unwrap(),
            )
        };
        let maps = [
            array(BPF_F_RDONLY_PROG, true),
            array(BPF_F_RDONLY_PROG, false),
            array(0, true),
        ];
        let kinds: Vec<_> = fixed_regions(&maps).iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                RegionKind::Constant,
                RegionKind::ReadOnly,
                RegionKind::MapValue
            ]
        );
    }
}
