//! HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH, safe to share between workers and the
//! control plane.
//!
//! Lookups are lock-free (see [`table`] for the structure and its invariants). Updates follow
//! the kernel: a plain map's update allocates a new element, so a program still holding the old
//! value pointer keeps seeing the old value; per-CPU maps update in place. Deleted and replaced
//! elements are freed after an epoch grace period ([`crate::maps::epoch`]): a pointer returned
//! by [`Map::lookup`] stays valid while the thread that looked it up stays pinned, which
//! `Runner` guarantees for the whole program run.
//!
//! LRU maps never refuse an insert for lack of room: they evict the least recently used of a
//! few elements sampled at a clock hand (approximate, as the kernel's LRU is).

mod node;
mod table;

use std::any::Any;
use std::ptr::NonNull;

use super::{epoch, flags, round_up8, spin, types, Map, MapError};
use crate::object::spec::MapSpec;
use node::NodeLayout;
use table::{Mode, Replace, Table};

/// The hash map family (plain, per-CPU, LRU, LRU per-CPU).
#[derive(Debug)]
pub struct HashMap {
    spec: MapSpec,
    /// Value size rounded up to 8: the distance between per-CPU slots.
    stride: usize,
    /// Per-CPU slots per element (1 for shared maps).
    ncpus: u32,
    percpu: bool,
    table: Table,
}

impl HashMap {
    /// Creates an empty map; per-CPU variants keep `ncpus` values (one per worker) per key.
    pub fn new(spec: MapSpec, ncpus: u32) -> HashMap {
        let percpu = matches!(spec.map_type, types::PERCPU_HASH | types::LRU_PERCPU_HASH);
        let lru = matches!(spec.map_type, types::LRU_HASH | types::LRU_PERCPU_HASH);
        let ncpus = if percpu { ncpus.max(1) } else { 1 };
        let stride = round_up8(spec.value_size as u64) as usize;
        let layout = NodeLayout::new(spec.key_size as usize, stride * ncpus as usize);
        HashMap {
            table: Table::new(layout, spec.max_entries as usize, lru),
            stride,
            ncpus,
            percpu,
            spec,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key<'k>(&self, key: &'k [u8]) -> Result<&'k [u8], MapError> {
        key.get(..self.spec.key_size as usize)
            .ok_or_else(|| MapError::Invalid(format!("key must be {} bytes", self.spec.key_size)))
    }

    /// The kernel's flag check. `BPF_F_LOCK` needs a `bpf_spin_lock` in the value, which only
    /// BTF can declare: without one (and in per-CPU maps) it is EINVAL, as in the kernel.
    fn mode(&self, f: u64) -> Result<Mode, MapError> {
        if f & flags::BPF_F_LOCK != 0 && (self.percpu || self.spec.spin_lock_offset.is_none()) {
            return Err(MapError::Invalid(
                "BPF_F_LOCK on a map without a bpf_spin_lock in its value".into(),
            ));
        }
        match f & !flags::BPF_F_LOCK {
            flags::BPF_ANY => Ok(Mode::Any),
            flags::BPF_NOEXIST => Ok(Mode::NoExist),
            flags::BPF_EXIST => Ok(Mode::Exist),
            _ => Err(MapError::Invalid(format!("flags {f:#x}"))),
        }
    }

    /// How an update reaches an existing element: per-CPU values and `BPF_F_LOCK` updates
    /// (`copy_map_value_locked`) write in place; others replace the element.
    fn replace(&self, f: u64) -> Replace {
        if self.percpu || f & flags::BPF_F_LOCK != 0 {
            Replace::InPlace
        } else {
            Replace::Always
        }
    }

    /// Writes `value` into an element's value storage at `dst`, never over its spin lock
    /// word, and under that lock for `BPF_F_LOCK`.
    ///
    /// # Safety
    /// `dst` must be valid for `value.len()` bytes of writes.
    unsafe fn put(&self, dst: *mut u8, value: &[u8], f: u64) {
        let lock = self.spec.spin_lock_offset;
        // SAFETY: caller's contract; BTF places the lock word inside the value, aligned.
        unsafe {
            match lock {
                Some(l) if f & flags::BPF_F_LOCK != 0 => spin::copy_locked(dst, value, l),
                _ => spin::copy_around(dst, value, lock),
            }
        }
    }

    /// A program's lookup from inside a run: [`Map::lookup`] without the key-size check and
    /// without taking an epoch guard of its own (the run's pin covers both the search and
    /// the result). Null when `key` is absent.
    ///
    /// # Safety
    /// The calling thread is pinned ([`epoch::pin`]) for as long as it uses the result, and
    /// `key` is readable for `key_size` bytes.
    #[inline]
    pub unsafe fn lookup_pinned(&self, key: *const u8, cpu: u32) -> *mut u8 {
        debug_assert!(
            epoch::is_pinned(),
            "a program's hash lookup outside a pinned run"
        );
        // SAFETY: caller's contract: `key_size` readable bytes.
        let key = unsafe { std::slice::from_raw_parts(key, self.spec.key_size as usize) };
        // SAFETY: caller's contract: pinned for the search and the result's use.
        match unsafe { self.table.lookup(key) } {
            // SAFETY: the node is live while pinned; the offset is inside its value storage.
            Some(node) => unsafe {
                self.table
                    .layout()
                    .value(node.as_ptr())
                    .add(self.cpu_offset(cpu))
            },
            None => std::ptr::null_mut(),
        }
    }

    /// Byte offset of `cpu`'s slot in an element's value storage.
    #[inline]
    fn cpu_offset(&self, cpu: u32) -> usize {
        if self.percpu {
            (cpu % self.ncpus) as usize * self.stride
        } else {
            0
        }
    }
}

impl Map for HashMap {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    /// Lock-free. The pointer stays valid while the calling thread stays pinned
    /// ([`epoch::pin`]); the guard taken here only protects the search.
    #[inline]
    fn lookup(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        let key = self.key(key).ok()?;
        let _guard = epoch::pin();
        // SAFETY: pinned for the search; the caller's own pin covers the result (Map
        // contract); `key` holds `key_size` bytes (checked just above).
        NonNull::new(unsafe { self.lookup_pinned(key.as_ptr(), cpu) })
    }

    fn update(&self, key: &[u8], value: &[u8], f: u64, cpu: u32) -> Result<(), MapError> {
        let key = self.key(key)?;
        let mode = self.mode(f)?;
        let n = (self.spec.value_size as usize).min(value.len());
        let offset = self.cpu_offset(cpu);
        self.table.upsert(key, mode, self.replace(f), |dst| {
            // SAFETY: `dst` is the element's value storage (stride * ncpus bytes); the slot at
            // `offset` has `stride >= n` bytes. Concurrent program access to a live per-CPU
            // slot races as it does in the kernel.
            unsafe { self.put(dst.add(offset), &value[..n], f) }
        })
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let key = self.key(key)?;
        self.table.delete(key)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        // A key of the wrong size is "not found": iteration restarts, as in the kernel.
        let key = key.and_then(|k| self.key(k).ok());
        Ok(self.table.next_key(key))
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let key = self.key(key)?;
        let _guard = epoch::pin();
        // SAFETY: pinned until the copy below is done.
        let node = unsafe { self.table.peek(key) }.ok_or(MapError::NotFound)?;
        let len = if self.percpu {
            self.table.layout().value_len
        } else {
            self.spec.value_size as usize
        };
        let mut out = vec![0u8; len];
        // SAFETY: the node is live while pinned and holds `value_len >= len` bytes of value.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.table.layout().value(node.as_ptr()),
                out.as_mut_ptr(),
                len,
            )
        };
        spin::hide(&mut out, self.spec.spin_lock_offset);
        Ok(out)
    }

    fn write(&self, key: &[u8], value: &[u8], f: u64) -> Result<(), MapError> {
        let key = self.key(key)?;
        let mode = self.mode(f)?;
        let want = if self.percpu {
            self.table.layout().value_len
        } else {
            self.spec.value_size as usize
        };
        if value.len() != want {
            return Err(MapError::Invalid(format!("value must be {want} bytes")));
        }
        self.table.upsert(key, mode, self.replace(f), |dst| {
            // SAFETY: `dst` has `value_len >= want` bytes.
            unsafe { self.put(dst, value, f) }
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests;
