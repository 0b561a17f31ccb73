//! HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH.
//!
//! Elements live in slots whose values are separately boxed, so a pointer handed to a program
//! stays valid while the element exists. Deleted and evicted values are retired, not freed,
//! until [`Map::quiesce`] says no program run can still hold them (the kernel's RCU grace
//! period, in miniature). Iteration follows slot order, which is stable between updates.

use std::any::Any;
use std::ptr::NonNull;

use parking_lot::Mutex;

use super::{flags, round_up8, types, Map, MapError};
use crate::object::spec::MapSpec;

#[derive(Debug)]
struct Slot {
    key: Box<[u8]>,
    /// Values (one per CPU for per-CPU maps), `stride` bytes apart, 8-byte aligned.
    value: Box<[u64]>,
    /// LRU clock at the last lookup or update.
    last_used: u64,
}

#[derive(Debug, Default)]
struct Table {
    index: hashbrown::HashMap<Box<[u8]>, usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    retired: Vec<Box<[u64]>>,
    clock: u64,
}

/// The hash map family (plain, per-CPU, LRU, LRU per-CPU).
#[derive(Debug)]
pub struct HashMap {
    spec: MapSpec,
    stride: u64,
    ncpus: u32,
    percpu: bool,
    lru: bool,
    table: Mutex<Table>,
}

impl HashMap {
    /// Creates an empty map; per-CPU variants keep `ncpus` values per key.
    pub fn new(spec: MapSpec, ncpus: u32) -> HashMap {
        let percpu = matches!(spec.map_type, types::PERCPU_HASH | types::LRU_PERCPU_HASH);
        let lru = matches!(spec.map_type, types::LRU_HASH | types::LRU_PERCPU_HASH);
        HashMap {
            stride: round_up8(spec.value_size as u64),
            ncpus: if percpu { ncpus.max(1) } else { 1 },
            percpu,
            lru,
            spec,
            table: Mutex::new(Table::default()),
        }
    }

    fn words(&self) -> usize {
        (self.stride as usize / 8) * self.ncpus as usize
    }

    fn key<'k>(&self, key: &'k [u8]) -> Result<&'k [u8], MapError> {
        key.get(..self.spec.key_size as usize)
            .ok_or_else(|| MapError::Invalid(format!("key must be {} bytes", self.spec.key_size)))
    }

    /// Inserts or updates; `fill` writes the new value words (fresh values start zeroed).
    fn upsert(&self, key: &[u8], f: u64, fill: impl FnOnce(&mut [u8])) -> Result<(), MapError> {
        let key = self.key(key)?;
        let mode = f & !flags::BPF_F_LOCK;
        if mode > flags::BPF_EXIST {
            return Err(MapError::Invalid(format!("flags {f:#x}")));
        }
        let mut t = self.table.lock();
        t.clock += 1;
        let clock = t.clock;
        if let Some(&i) = t.index.get(key) {
            if mode == flags::BPF_NOEXIST {
                return Err(MapError::Exists);
            }
            // The kernel replaces the element with a fresh one (old readers keep the old value).
            let mut fresh = t.slots[i]
                .as_ref()
                .map(|s| s.value.clone())
                .unwrap_or_default();
            fill(as_bytes_mut(&mut fresh));
            let slot = t.slots[i].as_mut().ok_or(MapError::NotFound)?;
            let old = std::mem::replace(&mut slot.value, fresh);
            slot.last_used = clock;
            t.retired.push(old);
            return Ok(());
        }
        if mode == flags::BPF_EXIST {
            return Err(MapError::NotFound);
        }
        if t.index.len() >= self.spec.max_entries as usize {
            if !self.lru {
                return Err(MapError::TooBig);
            }
            self.evict_oldest(&mut t);
        }
        let mut value = vec![0u64; self.words()].into_boxed_slice();
        fill(as_bytes_mut(&mut value));
        let slot = Slot {
            key: key.into(),
            value,
            last_used: clock,
        };
        let i = match t.free.pop() {
            Some(i) => {
                t.slots[i] = Some(slot);
                i
            }
            None => {
                t.slots.push(Some(slot));
                t.slots.len() - 1
            }
        };
        t.index.insert(key.into(), i);
        Ok(())
    }

    fn evict_oldest(&self, t: &mut Table) {
        let victim = t
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (s.last_used, i)))
            .min();
        if let Some((_, i)) = victim {
            Self::remove_slot(t, i);
        }
    }

    fn remove_slot(t: &mut Table, i: usize) {
        if let Some(slot) = t.slots[i].take() {
            t.index.remove(&slot.key);
            t.retired.push(slot.value);
            t.free.push(i);
        }
    }
}

fn as_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no padding or invalid bit patterns; the byte view covers the same memory.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) }
}

fn as_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: as in `as_bytes_mut`.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}

impl Map for HashMap {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        let key = self.key(key).ok()?;
        let mut t = self.table.lock();
        t.clock += 1;
        let clock = t.clock;
        let &i = t.index.get(key)?;
        let slot = t.slots[i].as_mut()?;
        slot.last_used = clock;
        let offset = (cpu % self.ncpus) as usize * self.stride as usize;
        NonNull::new(as_bytes_mut(&mut slot.value)[offset..].as_mut_ptr())
    }

    fn update(&self, key: &[u8], value: &[u8], f: u64, cpu: u32) -> Result<(), MapError> {
        let n = (self.spec.value_size as usize).min(value.len());
        let offset = (cpu % self.ncpus) as usize * self.stride as usize;
        self.upsert(key, f, |dst| {
            dst[offset..offset + n].copy_from_slice(&value[..n])
        })
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let key = self.key(key)?;
        let mut t = self.table.lock();
        let i = *t.index.get(key).ok_or(MapError::NotFound)?;
        Self::remove_slot(&mut t, i);
        Ok(())
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let t = self.table.lock();
        // Kernel: a missing key restarts iteration at the first element.
        let start = key
            .and_then(|k| self.key(k).ok())
            .and_then(|k| t.index.get(k))
            .map_or(0, |&i| i + 1);
        Ok(t.slots[start.min(t.slots.len())..]
            .iter()
            .flatten()
            .next()
            .map(|s| s.key.to_vec()))
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let key = self.key(key)?;
        let t = self.table.lock();
        let &i = t.index.get(key).ok_or(MapError::NotFound)?;
        let slot = t.slots[i].as_ref().ok_or(MapError::NotFound)?;
        let bytes = as_bytes(&slot.value);
        Ok(if self.percpu {
            bytes.to_vec()
        } else {
            bytes[..self.spec.value_size as usize].to_vec()
        })
    }

    fn write(&self, key: &[u8], value: &[u8], f: u64) -> Result<(), MapError> {
        let want = if self.percpu {
            self.stride as usize * self.ncpus as usize
        } else {
            self.spec.value_size as usize
        };
        if value.len() != want {
            return Err(MapError::Invalid(format!("value must be {want} bytes")));
        }
        self.upsert(key, f, |dst| dst[..want].copy_from_slice(value))
    }

    fn quiesce(&self) {
        self.table.lock().retired.clear();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
