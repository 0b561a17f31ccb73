//! DEVMAP_HASH (`kernel/bpf/devmap.c`, the `dev_map_hash_*` functions): redirect targets
//! keyed by any u32 (usually an ifindex), for `bpf_redirect_map`.
//!
//! Values are `struct bpf_devmap_val` cut to `value_size` (4: ifindex; 8: ifindex + program).
//! Buckets and their order are the kernel's (`idx & (n_buckets - 1)`, newest first in a
//! bucket), so get_next_key walks in the same order. As in the kernel, `BPF_EXIST` on a missing
//! key adds it (the kernel only checks `BPF_NOEXIST`), and the ifindex must name an existing
//! interface. Attached devmap programs are not supported: a value naming a program fd is
//! refused.

use std::any::Any;
use std::ptr::NonNull;

use parking_lot::Mutex;

use super::{flags, Map, MapError};
use crate::object::spec::MapSpec;

/// Flags a devmap may be created with (`DEV_CREATE_FLAG_MASK`: NUMA_NODE, RDONLY, WRONLY).
const CREATE_FLAG_MASK: u32 = (1 << 2) | (1 << 3) | (1 << 4);

#[derive(Debug)]
struct Inner {
    /// Per bucket: `(key, value)`, most recently inserted first.
    buckets: Vec<Vec<(u32, Box<[u64]>)>>,
    items: u32,
}

/// A DEVMAP_HASH map.
#[derive(Debug)]
pub struct DevMapHash {
    spec: MapSpec,
    inner: Mutex<Inner>,
}

fn key_u32(key: &[u8]) -> Result<u32, MapError> {
    key.get(..4)
        .and_then(|k| k.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or_else(|| MapError::Invalid("key must be 4 bytes".into()))
}

/// Frees `v` once no pinned thread (no program run) can still hold a pointer into it.
fn retire<T: Send + 'static>(v: T) {
    super::epoch::pin().defer(move || drop(v));
}

/// Whether the host has an interface `ifindex` (the kernel's `dev_get_by_index`, in the
/// caller's network namespace).
fn ifindex_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has IF_NAMESIZE bytes, as if_indextoname requires.
    ifindex != 0 && !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}

impl DevMapHash {
    /// Validates the declaration as `dev_map_init_map` does.
    pub fn new(spec: MapSpec) -> Result<DevMapHash, String> {
        if spec.key_size != 4 {
            return Err("devmap_hash key size must be 4".into());
        }
        if spec.value_size != 4 && spec.value_size != 8 {
            return Err("devmap_hash value size must be 4 or 8".into());
        }
        if spec.flags & !CREATE_FLAG_MASK != 0 {
            return Err(format!("devmap_hash flags {:#x} not allowed", spec.flags));
        }
        let n = spec
            .max_entries
            .checked_next_power_of_two()
            .ok_or("devmap_hash max_entries too large")?;
        let mut buckets = Vec::new();
        buckets.resize_with(n as usize, Vec::new);
        Ok(DevMapHash {
            spec,
            inner: Mutex::new(Inner { buckets, items: 0 }),
        })
    }

    fn bucket(inner: &Inner, key: u32) -> usize {
        key as usize & (inner.buckets.len() - 1)
    }

    /// The value of `key` (the ifindex, then the program id when value_size is 8), if set.
    pub fn target(&self, key: u32) -> Option<Vec<u8>> {
        self.read(&key.to_ne_bytes()).ok()
    }

    fn value_bytes(&self, v: &[u64]) -> Vec<u8> {
        // SAFETY: `v` holds at least value_size (<= 8) bytes.
        unsafe {
            std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), self.spec.value_size as usize)
        }
        .to_vec()
    }
}

impl Map for DevMapHash {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        let k = key_u32(key).ok()?;
        let inner = self.inner.lock();
        let b = Self::bucket(&inner, k);
        inner.buckets[b]
            .iter()
            .find(|(kk, _)| *kk == k)
            .and_then(|(_, v)| NonNull::new(v.as_ptr() as *mut u8))
    }

    fn update(&self, _: &[u8], _: &[u8], _: u64, _: u32) -> Result<(), MapError> {
        // The verifier does not let programs update devmaps.
        Err(MapError::Unsupported("devmap_hash"))
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let k = key_u32(key)?;
        let mut inner = self.inner.lock();
        let b = Self::bucket(&inner, k);
        let pos = inner.buckets[b]
            .iter()
            .position(|(kk, _)| *kk == k)
            .ok_or(MapError::NotFound)?;
        let (_, old) = inner.buckets[b].remove(pos);
        inner.items -= 1;
        retire(old);
        Ok(())
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let inner = self.inner.lock();
        let mut start = 0;
        if let Some(k) = key.map(key_u32).transpose()? {
            let b = Self::bucket(&inner, k);
            if let Some(pos) = inner.buckets[b].iter().position(|(kk, _)| *kk == k) {
                if let Some((next, _)) = inner.buckets[b].get(pos + 1) {
                    return Ok(Some(next.to_ne_bytes().to_vec()));
                }
                start = b + 1;
            }
        }
        Ok(inner.buckets[start.min(inner.buckets.len())..]
            .iter()
            .find_map(|b| b.first())
            .map(|(k, _)| k.to_ne_bytes().to_vec()))
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let k = key_u32(key)?;
        let inner = self.inner.lock();
        let b = Self::bucket(&inner, k);
        inner.buckets[b]
            .iter()
            .find(|(kk, _)| *kk == k)
            .map(|(_, v)| self.value_bytes(v))
            .ok_or(MapError::NotFound)
    }

    fn write(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags > flags::BPF_EXIST {
            return Err(MapError::Invalid(format!("flags {flags:#x}")));
        }
        let k = key_u32(key)?;
        if value.len() != self.spec.value_size as usize {
            return Err(MapError::Invalid(format!(
                "value must be {} bytes",
                self.spec.value_size
            )));
        }
        let ifindex = u32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
        if value.len() == 8 {
            let fd = i32::from_ne_bytes([value[4], value[5], value[6], value[7]]);
            if fd > 0 {
                return Err(MapError::Invalid(
                    "devmap programs are not supported in userspace".into(),
                ));
            }
        }
        // Stored as the kernel reports it back: ifindex, then program id 0 (no program).
        let stored: Box<[u64]> = Box::new([ifindex as u64]);
        let mut inner = self.inner.lock();
        let b = Self::bucket(&inner, k);
        let pos = inner.buckets[b].iter().position(|(kk, _)| *kk == k);
        if pos.is_some() && flags & flags::BPF_NOEXIST != 0 {
            return Err(MapError::Exists);
        }
        if !ifindex_exists(ifindex) {
            // `__dev_map_alloc_node`: dev_get_by_index fails.
            return Err(MapError::Invalid(format!(
                "no interface with ifindex {ifindex}"
            )));
        }
        match pos {
            Some(p) => {
                let (_, old) = inner.buckets[b].remove(p);
                retire(old);
            }
            None => {
                if inner.items >= self.spec.max_entries {
                    return Err(MapError::TooBig);
                }
                inner.items += 1;
            }
        }
        inner.buckets[b].insert(0, (k, stored));
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
