//! PROG_ARRAY: slots of programs for `bpf_tail_call`.

use std::any::Any;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Map, MapError};
use crate::object::spec::MapSpec;

/// A tail-call target as stored in a PROG_ARRAY: an engine-level program kept alive by the
/// array, with the program id users see in dumps.
pub type TailTarget = Arc<dyn Any + Send + Sync>;

/// BPF_MAP_TYPE_PROG_ARRAY.
#[derive(Debug)]
pub struct ProgArrayMap {
    spec: MapSpec,
    /// Fast path read by `bpf_tail_call`: an opaque program pointer per slot, or null.
    slots: Vec<AtomicPtr<c_void>>,
    /// Owners of the pointers above, with each slot's program id.
    owners: Mutex<Vec<Option<(u32, TailTarget)>>>,
}

impl ProgArrayMap {
    /// An array with every slot empty.
    pub fn new(spec: MapSpec) -> ProgArrayMap {
        let n = spec.max_entries as usize;
        ProgArrayMap {
            spec,
            slots: (0..n)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            owners: Mutex::new(vec![None; n]),
        }
    }

    /// Installs (or with `None` clears) the program at `index`. `ptr` is the engine's pointer
    /// to the program, owned by `target`.
    pub fn set(
        &self,
        index: u32,
        entry: Option<(u32, TailTarget, *const c_void)>,
    ) -> Result<(), MapError> {
        let i = index as usize;
        let slot = self.slots.get(i).ok_or(MapError::TooBig)?;
        let mut owners = self.owners.lock();
        match entry {
            Some((id, target, ptr)) => {
                // Release: the program behind `ptr` is fully built before it is visible.
                slot.store(ptr as *mut c_void, Ordering::Release);
                owners[i] = Some((id, target));
            }
            None => {
                slot.store(std::ptr::null_mut(), Ordering::Release);
                owners[i] = None;
            }
        }
        Ok(())
    }

    /// The program pointer at `index`, or null (tail call falls through).
    pub fn get(&self, index: u32) -> *const c_void {
        self.slots
            .get(index as usize)
            // Acquire: pairs with the Release in `set`.
            .map_or(std::ptr::null(), |s| s.load(Ordering::Acquire))
    }
}

impl Map for ProgArrayMap {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        // Programs cannot look up PROG_ARRAY elements (the verifier refuses it).
        None
    }

    fn update(&self, _: &[u8], _: &[u8], _: u64, _: u32) -> Result<(), MapError> {
        Err(MapError::Unsupported("prog_array"))
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let idx = u32::from_ne_bytes(
            key.get(..4)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| MapError::Invalid("key must be 4 bytes".into()))?,
        );
        if self.get(idx).is_null() {
            return Err(MapError::NotFound);
        }
        self.set(idx, None)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let next = key
            .and_then(|k| k.get(..4))
            .and_then(|k| k.try_into().ok())
            .map(u32::from_ne_bytes)
            .filter(|&i| i < self.spec.max_entries)
            .map_or(0, |i| i + 1);
        Ok((next < self.spec.max_entries).then(|| next.to_ne_bytes().to_vec()))
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let idx = key
            .get(..4)
            .and_then(|k| k.try_into().ok())
            .map(u32::from_ne_bytes)
            .ok_or_else(|| MapError::Invalid("key must be 4 bytes".into()))?;
        let owners = self.owners.lock();
        match owners.get(idx as usize) {
            Some(Some((id, _))) => Ok(id.to_ne_bytes().to_vec()),
            Some(None) => Err(MapError::NotFound),
            None => Err(MapError::TooBig),
        }
    }

    fn write(&self, _: &[u8], _: &[u8], _: u64) -> Result<(), MapError> {
        // Writing a program id needs the program registry, which lives in `vm::Vm`.
        Err(MapError::Unsupported("prog_array (use Vm::set_tail_call)"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
