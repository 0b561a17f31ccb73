//! ARRAY_OF_MAPS and HASH_OF_MAPS (`kernel/bpf/arraymap.c` fd arrays, `hashtab.c` htab of
//! maps): slots holding inner maps compatible with the declaration's inner-map template.
//!
//! A program lookup returns the inner map's [`MapHandle`] address, which is exactly what the
//! map helpers take as their map argument, so `bpf_map_lookup_elem(inner, key)` on the result
//! works (through the helper; the JIT's inline array lookup reads the handle at run time, so
//! it is correct for inner arrays too). Userspace fills slots with [`MapOfMaps::set`]; the
//! syscall-style [`Map::read`] returns the inner map's id as the kernel does.

use std::any::Any;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::epoch::retire;
use super::{flags, types, CreateError, Map, MapError, MapHandle};
use crate::object::spec::MapSpec;

/// `BPF_F_INNER_MAP`: inner arrays of any `max_entries` are compatible.
pub const BPF_F_INNER_MAP: u32 = 1 << 12;

/// Ids given to inner maps as they are stored (the kernel reports map ids, not fds).
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

#[derive(Debug)]
struct Slot {
    handle: Box<MapHandle>,
    id: u32,
}

/// An ARRAY_OF_MAPS or HASH_OF_MAPS map.
#[derive(Debug)]
pub struct MapOfMaps {
    spec: MapSpec,
    inner_spec: MapSpec,
    ncpus: u32,
    /// Array slots are keyed by their 4 key bytes too, so both kinds share one store.
    slots: Mutex<BTreeMap<Vec<u8>, Slot>>,
}

/// Whether `map_type` is ARRAY_OF_MAPS or HASH_OF_MAPS.
pub fn is_map_of_maps(map_type: u32) -> bool {
    matches!(map_type, types::ARRAY_OF_MAPS | types::HASH_OF_MAPS)
}

impl MapOfMaps {
    /// Validates the declaration (value size 4, array key size 4, an inner template that is
    /// not itself a map of maps) and creates empty slots.
    pub fn new(spec: MapSpec, ncpus: u32) -> Result<MapOfMaps, String> {
        let inner = spec
            .inner
            .as_deref()
            .cloned()
            .ok_or("map-in-map declaration has no inner map template")?;
        if spec.value_size != 4 {
            return Err("map-in-map value size must be 4".into());
        }
        if spec.map_type == types::ARRAY_OF_MAPS && spec.key_size != 4 {
            return Err("array_of_maps key size must be 4".into());
        }
        if spec.key_size == 0 {
            return Err("hash_of_maps key size is 0".into());
        }
        if is_map_of_maps(inner.map_type) || inner.map_type == types::PROG_ARRAY {
            return Err(format!(
                "inner map type {} cannot be stored in a map of maps",
                types::name(inner.map_type)
            ));
        }
        Ok(MapOfMaps {
            spec,
            inner_spec: inner,
            ncpus,
            slots: Mutex::new(BTreeMap::new()),
        })
    }

    /// The inner-map template every stored map must match.
    pub fn inner_spec(&self) -> &MapSpec {
        &self.inner_spec
    }

    /// A new, empty map made from the inner template (named `name`), ready for
    /// [`MapOfMaps::set`].
    pub fn create_inner(&self, name: &str) -> Result<Arc<dyn Map>, CreateError> {
        let mut s = self.inner_spec.clone();
        s.name = name.to_string();
        super::create(&s, self.ncpus)
    }

    /// `bpf_map_meta_equal` (plus the arrays' `max_entries` rule).
    fn compatible(&self, m: &MapSpec) -> bool {
        let t = &self.inner_spec;
        let same = t.map_type == m.map_type
            && t.key_size == m.key_size
            && t.value_size == m.value_size
            && t.flags == m.flags;
        let arrays = matches!(t.map_type, types::ARRAY | types::PERCPU_ARRAY);
        same && (!arrays || t.flags & BPF_F_INNER_MAP != 0 || t.max_entries == m.max_entries)
    }

    fn check_key(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let ks = self.spec.key_size as usize;
        let k = key
            .get(..ks)
            .ok_or_else(|| MapError::Invalid(format!("key must be {ks} bytes")))?;
        if self.spec.map_type == types::ARRAY_OF_MAPS {
            let i = u32::from_ne_bytes([k[0], k[1], k[2], k[3]]);
            if i >= self.spec.max_entries {
                return Err(MapError::TooBig);
            }
        }
        Ok(k.to_vec())
    }

    /// Stores `inner` at `key` (the syscall update with an inner map fd). Arrays take
    /// `BPF_ANY` only; hashes `BPF_ANY`/`BPF_NOEXIST`/`BPF_EXIST`. EINVAL when `inner` does
    /// not match the template.
    pub fn set(&self, key: &[u8], inner: Arc<dyn Map>, flags: u64) -> Result<(), MapError> {
        let incompatible = || {
            MapError::Invalid(format!(
                "map {} does not match the inner map template",
                inner.spec().name
            ))
        };
        let mut slots;
        if self.spec.map_type == types::ARRAY_OF_MAPS {
            // `bpf_fd_array_map_update_elem`: flags (BPF_ANY only), index, then the map.
            if flags != flags::BPF_ANY {
                return Err(MapError::Invalid(format!("flags {flags:#x}")));
            }
            let k = self.check_key(key)?;
            if !self.compatible(inner.spec()) {
                return Err(incompatible());
            }
            slots = self.slots.lock();
            return self.store(&mut slots, k, inner);
        }
        // `bpf_fd_htab_map_update_elem`: the map first, then the hash table's flag rules.
        let k = self.check_key(key)?;
        if !self.compatible(inner.spec()) {
            return Err(incompatible());
        }
        slots = self.slots.lock();
        let exists = slots.contains_key(&k);
        match flags {
            flags::BPF_ANY => {}
            flags::BPF_NOEXIST if exists => return Err(MapError::Exists),
            flags::BPF_EXIST if !exists => return Err(MapError::NotFound),
            flags::BPF_NOEXIST | flags::BPF_EXIST => {}
            f => return Err(MapError::Invalid(format!("flags {f:#x}"))),
        }
        if !exists && slots.len() >= self.spec.max_entries as usize {
            return Err(MapError::TooBig);
        }
        self.store(&mut slots, k, inner)
    }

    fn store(
        &self,
        slots: &mut BTreeMap<Vec<u8>, Slot>,
        k: Vec<u8>,
        inner: Arc<dyn Map>,
    ) -> Result<(), MapError> {
        // JIT code indexes an inner PERCPU_ARRAY by the runner's CPU without a bounds check:
        // the inner map needs a slot for every CPU the outer map's programs run on.
        if let Some(p) = inner.as_any().downcast_ref::<super::PerCpuArrayMap>() {
            if p.ncpus() < self.ncpus {
                return Err(MapError::Invalid(format!(
                    "inner map {} has {} per-CPU slots, programs run on {}",
                    inner.spec().name,
                    p.ncpus(),
                    self.ncpus
                )));
            }
        }
        let slot = Slot {
            handle: MapHandle::new(inner),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        if let Some(old) = slots.insert(k, slot) {
            retire(old.handle);
        }
        Ok(())
    }

    /// The inner map at `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Arc<dyn Map>> {
        let k = self.check_key(key).ok()?;
        self.slots.lock().get(&k).map(|s| s.handle.map.clone())
    }
}

impl Map for MapOfMaps {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        let k = self.check_key(key).ok()?;
        let slots = self.slots.lock();
        slots
            .get(&k)
            .and_then(|s| NonNull::new(s.handle.addr() as *mut u8))
    }

    fn update(&self, _: &[u8], _: &[u8], _: u64, _: u32) -> Result<(), MapError> {
        // Programs cannot store maps (the verifier refuses the update helper here).
        Err(MapError::Unsupported(types::name(self.spec.map_type)))
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let k = self.check_key(key)?;
        let old = self.slots.lock().remove(&k).ok_or(MapError::NotFound)?;
        retire(old.handle);
        Ok(())
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        if self.spec.map_type == types::ARRAY_OF_MAPS {
            // Arrays walk every index, filled or not, as `array_map_get_next_key`.
            let next = match key.and_then(|k| k.get(..4)) {
                Some(k) => {
                    let i = u32::from_ne_bytes([k[0], k[1], k[2], k[3]]);
                    if i >= self.spec.max_entries {
                        0
                    } else {
                        i + 1
                    }
                }
                None => 0,
            };
            return Ok((next < self.spec.max_entries).then(|| next.to_ne_bytes().to_vec()));
        }
        let slots = self.slots.lock();
        let next = match key {
            Some(k) if slots.contains_key(k) => slots
                .range::<[u8], _>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                .next(),
            // Like the hash maps: an unknown key restarts the walk.
            _ => slots.iter().next(),
        };
        Ok(next.map(|(k, _)| k.clone()))
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        // An index past the end simply is not there (`array_of_map_lookup_elem`).
        let k = self.check_key(key).map_err(|e| match e {
            MapError::TooBig => MapError::NotFound,
            e => e,
        })?;
        self.slots
            .lock()
            .get(&k)
            .map(|s| s.id.to_ne_bytes().to_vec())
            .ok_or(MapError::NotFound)
    }

    fn write(&self, _: &[u8], _: &[u8], _: u64) -> Result<(), MapError> {
        Err(MapError::Unsupported(
            "map-of-maps by fd (use MapOfMaps::set with the inner map)",
        ))
    }

    fn quiesce(&self) {
        for s in self.slots.lock().values() {
            s.handle.map.quiesce();
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
