//! Redirect-target arrays: DEVMAP, XSKMAP and CPUMAP, and PERF_EVENT_ARRAY.
//!
//! Each slot is empty or holds a value (an ifindex, socket id, queue size, or a reader). From
//! a program, a lookup returns the slot's value when set, which is what `bpf_redirect_map`
//! and null checks need; the datapath resolves the targets.

use std::any::Any;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Map, MapError};
use crate::object::spec::MapSpec;

fn index_of(spec: &MapSpec, key: &[u8]) -> Result<usize, MapError> {
    let k: [u8; 4] = key
        .get(..4)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| MapError::Invalid("key must be 4 bytes".into()))?;
    let i = u32::from_ne_bytes(k);
    if i >= spec.max_entries {
        return Err(MapError::TooBig);
    }
    Ok(i as usize)
}

fn next_set(slots: usize, key: Option<&[u8]>, is_set: impl Fn(usize) -> bool) -> Option<Vec<u8>> {
    let start = key
        .and_then(|k| k.get(..4))
        .and_then(|k| k.try_into().ok())
        .map(u32::from_ne_bytes)
        .filter(|&i| (i as usize) < slots)
        .map_or(0, |i| i as usize + 1);
    (start..slots)
        .find(|&i| is_set(i))
        .map(|i| (i as u32).to_ne_bytes().to_vec())
}

/// DEVMAP, XSKMAP and CPUMAP: fixed slots of redirect targets.
#[derive(Debug)]
pub struct TargetArrayMap {
    spec: MapSpec,
    /// Boxed so that a pointer returned to a program stays valid after the slot is replaced
    /// or deleted, until every run pinned at that moment is over (`maps::epoch`).
    slots: Mutex<Vec<Option<Box<[u64]>>>>,
}

impl TargetArrayMap {
    /// All slots empty.
    pub fn new(spec: MapSpec) -> TargetArrayMap {
        let n = spec.max_entries as usize;
        TargetArrayMap {
            spec,
            slots: Mutex::new(vec![None; n]),
        }
    }

    /// The value in slot `index` (e.g. the ifindex or socket id), if set.
    pub fn target(&self, index: u32) -> Option<Vec<u8>> {
        self.read(&index.to_ne_bytes()).ok()
    }
}

impl Map for TargetArrayMap {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        let i = index_of(&self.spec, key).ok()?;
        let mut slots = self.slots.lock();
        slots[i]
            .as_mut()
            .and_then(|v| NonNull::new(v.as_mut_ptr().cast::<u8>()))
    }

    fn update(&self, _: &[u8], _: &[u8], _: u64, _: u32) -> Result<(), MapError> {
        // The kernel does not let programs update these maps.
        Err(MapError::Unsupported(super::types::name(
            self.spec.map_type,
        )))
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let i = index_of(&self.spec, key)?;
        let old = self.slots.lock()[i].take().ok_or(MapError::NotFound)?;
        super::epoch::retire(old);
        Ok(())
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let slots = self.slots.lock();
        Ok(next_set(slots.len(), key, |i| slots[i].is_some()))
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let i = index_of(&self.spec, key)?;
        let slots = self.slots.lock();
        let v = slots[i].as_ref().ok_or(MapError::NotFound)?;
        // SAFETY: the box holds at least value_size bytes (sized at write time).
        let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 8) };
        Ok(bytes[..self.spec.value_size as usize].to_vec())
    }

    fn write(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let i = index_of(&self.spec, key)?;
        if value.len() != self.spec.value_size as usize {
            return Err(MapError::Invalid(format!(
                "value must be {} bytes",
                self.spec.value_size
            )));
        }
        let mut slots = self.slots.lock();
        match flags {
            super::flags::BPF_NOEXIST if slots[i].is_some() => return Err(MapError::Exists),
            super::flags::BPF_EXIST if slots[i].is_none() => return Err(MapError::NotFound),
            f if f > super::flags::BPF_EXIST => {
                return Err(MapError::Invalid(format!("flags {f:#x}")))
            }
            _ => {}
        }
        let mut words = vec![0u64; value.len().div_ceil(8)].into_boxed_slice();
        // SAFETY: `words` has at least value.len() bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                value.as_ptr(),
                words.as_mut_ptr().cast::<u8>(),
                value.len(),
            )
        };
        if let Some(old) = slots[i].replace(words) {
            super::epoch::retire(old);
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Where `bpf_perf_event_output` records go: a bounded queue a reader drains.
pub type PerfReader = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// Records kept per reader before the oldest are dropped (a full perf ring loses samples too).
pub const PERF_READER_CAPACITY: usize = 4096;

/// PERF_EVENT_ARRAY: per-CPU slots of readers. With no reader attached, output fails with
/// ENOENT exactly as in the kernel when no perf event is installed.
#[derive(Debug)]
pub struct PerfEventArrayMap {
    spec: MapSpec,
    readers: Mutex<Vec<Option<PerfReader>>>,
}

impl PerfEventArrayMap {
    /// No readers attached.
    pub fn new(spec: MapSpec) -> PerfEventArrayMap {
        let n = spec.max_entries as usize;
        PerfEventArrayMap {
            spec,
            readers: Mutex::new(vec![None; n]),
        }
    }

    /// Attaches a reader to slot `index` (normally one per CPU) and returns it.
    pub fn attach(&self, index: u32) -> Result<PerfReader, MapError> {
        let mut r = self.readers.lock();
        let slot = r.get_mut(index as usize).ok_or(MapError::TooBig)?;
        Ok(slot.get_or_insert_with(Default::default).clone())
    }

    /// Appends a record to slot `index`: `Err(NotFound)` without a reader, `TooBig` past the end.
    pub fn output(&self, index: u32, record: Vec<u8>) -> Result<(), MapError> {
        let r = self.readers.lock();
        let reader = r
            .get(index as usize)
            .ok_or(MapError::TooBig)?
            .as_ref()
            .ok_or(MapError::NotFound)?;
        let mut q = reader.lock();
        if q.len() >= PERF_READER_CAPACITY {
            q.pop_front();
        }
        q.push_back(record);
        Ok(())
    }
}

impl Map for PerfEventArrayMap {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, _: &[u8], _: u32) -> Option<NonNull<u8>> {
        None
    }

    fn update(&self, _: &[u8], _: &[u8], _: u64, _: u32) -> Result<(), MapError> {
        Err(MapError::Unsupported("perf_event_array"))
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let i = index_of(&self.spec, key)?;
        self.readers.lock()[i]
            .take()
            .map(|_| ())
            .ok_or(MapError::NotFound)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let r = self.readers.lock();
        Ok(next_set(r.len(), key, |i| r[i].is_some()))
    }

    fn read(&self, _: &[u8]) -> Result<Vec<u8>, MapError> {
        // The kernel's syscall lookup on perf event arrays fails too (no fd to return).
        Err(MapError::Unsupported("perf_event_array"))
    }

    fn write(&self, _: &[u8], _: &[u8], _: u64) -> Result<(), MapError> {
        Err(MapError::Unsupported(
            "perf_event_array (use PerfEventArrayMap::attach)",
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
