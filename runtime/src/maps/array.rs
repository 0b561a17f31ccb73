//! ARRAY and PERCPU_ARRAY: fixed, zero-initialised storage indexed by a u32 key.

use std::alloc::{self, Layout};
use std::any::Any;
use std::ptr::NonNull;

use super::{flags, round_up8, spin, Map, MapError};
use crate::object::spec::MapSpec;

/// Zeroed, 8-byte aligned memory that never moves (values keep stable addresses).
#[derive(Debug)]
struct Storage {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: Storage is plain memory; concurrent access discipline is that of kernel maps
// (programs write values in place, racing writers see torn values exactly as in the kernel).
unsafe impl Send for Storage {}
// SAFETY: as above.
unsafe impl Sync for Storage {}

impl Storage {
    fn zeroed(len: u64) -> Result<Storage, String> {
        let len = usize::try_from(len.max(8)).map_err(|_| "map too large".to_string())?;
        let layout = Layout::from_size_align(len, 8).map_err(|e| e.to_string())?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| format!("cannot allocate {len} bytes"))?;
        Ok(Storage { ptr, layout })
    }

    fn at(&self, offset: u64) -> *mut u8 {
        // SAFETY: callers pass offsets inside the allocation (index checked against max_entries).
        unsafe { self.ptr.as_ptr().add(offset as usize) }
    }

    fn len(&self) -> u64 {
        self.layout.size() as u64
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

fn index(spec: &MapSpec, key: &[u8]) -> Option<u64> {
    let idx = u32::from_ne_bytes(key.get(..4)?.try_into().ok()?);
    (idx < spec.max_entries).then_some(idx as u64)
}

/// The element an update with flags `f` writes, checked in the kernel's order
/// (`array_map_update_elem`): unknown flags (EINVAL), then the index (E2BIG), then
/// `BPF_NOEXIST` (EEXIST: array elements always exist). `BPF_F_LOCK` is the caller's to
/// check and strip: it is not a flag of per-CPU arrays.
fn update_index(spec: &MapSpec, key: &[u8], f: u64) -> Result<u64, MapError> {
    if f > flags::BPF_EXIST {
        return Err(MapError::Invalid(format!("flags {f:#x}")));
    }
    let i = index(spec, key).ok_or(MapError::TooBig)?;
    if f == flags::BPF_NOEXIST {
        return Err(MapError::Exists);
    }
    Ok(i)
}

fn next_index(spec: &MapSpec, key: Option<&[u8]>) -> Option<Vec<u8>> {
    // Kernel: an invalid or absent key restarts at 0.
    let next = match key.and_then(|k| index(spec, k)) {
        Some(i) => i + 1,
        None => 0,
    };
    (next < spec.max_entries as u64).then(|| (next as u32).to_ne_bytes().to_vec())
}

/// BPF_MAP_TYPE_ARRAY.
#[derive(Debug)]
pub struct ArrayMap {
    spec: MapSpec,
    stride: u64,
    storage: Storage,
}

impl ArrayMap {
    /// Creates a zeroed array; a global-data map starts with its section's bytes.
    pub fn new(spec: MapSpec) -> Result<ArrayMap, String> {
        let stride = round_up8(spec.value_size as u64);
        let storage = Storage::zeroed(stride * spec.max_entries as u64)?;
        let map = ArrayMap {
            spec,
            stride,
            storage,
        };
        if let Some(data) = &map.spec.data {
            let n = data.len().min(map.spec.value_size as usize);
            // SAFETY: element 0 has value_size >= n bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), map.storage.at(0), n) };
        }
        Ok(map)
    }

    /// Address of element 0 (elements are `round_up8(value_size)` apart). Never write through
    /// it to a frozen map ([`is_frozen`]): the interpreter folds such contents into programs.
    pub fn base_ptr(&self) -> *mut u8 {
        self.storage.at(0)
    }
}

impl Map for ArrayMap {
    // Elements are never freed or moved while the map lives.
    fn needs_epoch(&self) -> bool {
        false
    }

    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        index(&self.spec, key).and_then(|i| NonNull::new(self.storage.at(i * self.stride)))
    }

    fn update(&self, key: &[u8], value: &[u8], f: u64, _cpu: u32) -> Result<(), MapError> {
        self.write(key, value, f)
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        if is_frozen(&self.spec) {
            return Err(MapError::Frozen);
        }
        Err(MapError::Invalid("array elements cannot be deleted".into()))
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        Ok(next_index(&self.spec, key))
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let i = index(&self.spec, key).ok_or(MapError::NotFound)?;
        let mut out = vec![0u8; self.spec.value_size as usize];
        // SAFETY: element i lies inside storage and holds value_size bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.storage.at(i * self.stride),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        spin::hide(&mut out, self.spec.spin_lock_offset);
        Ok(out)
    }

    fn write(&self, key: &[u8], value: &[u8], f: u64) -> Result<(), MapError> {
        // The kernel checks the permission before anything else.
        if is_frozen(&self.spec) {
            return Err(MapError::Frozen);
        }
        // Then, as the syscall does, a lock asked for on a value without one.
        let lock = self.spec.spin_lock_offset;
        if f & flags::BPF_F_LOCK != 0 && lock.is_none() {
            return Err(MapError::Invalid(
                "BPF_F_LOCK on a map without a bpf_spin_lock in its value".into(),
            ));
        }
        let i = update_index(&self.spec, key, f & !flags::BPF_F_LOCK)?;
        let n = (self.spec.value_size as usize).min(value.len());
        let dst = self.storage.at(i * self.stride);
        // SAFETY: element i lies inside storage and holds value_size >= n bytes; BTF places
        // the lock word inside the value, 4-byte aligned.
        unsafe {
            match lock {
                Some(l) if f & flags::BPF_F_LOCK != 0 => spin::copy_locked(dst, &value[..n], l),
                _ => spin::copy_around(dst, &value[..n], lock),
            }
        };
        Ok(())
    }

    fn fixed_regions(&self) -> Vec<(u64, u64, bool)> {
        let writable = self.spec.flags & BPF_F_RDONLY_PROG == 0;
        vec![(self.storage.at(0) as u64, self.storage.len(), writable)]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `BPF_F_RDONLY_PROG`: the program may only read the map (set on `.rodata`).
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;

/// Whether the program may only read the map and user writes are refused after load:
/// `.rodata`, which libbpf freezes (user space may read it, not change it).
pub fn is_frozen(spec: &MapSpec) -> bool {
    spec.global_data && spec.flags & BPF_F_RDONLY_PROG != 0
}

/// BPF_MAP_TYPE_PERCPU_ARRAY: one value per CPU (worker) per index.
#[derive(Debug)]
pub struct PerCpuArrayMap {
    spec: MapSpec,
    stride: u64,
    ncpus: u32,
    storage: Storage,
}

impl PerCpuArrayMap {
    /// Creates a zeroed per-CPU array with `ncpus` copies of every element.
    pub fn new(spec: MapSpec, ncpus: u32) -> Result<PerCpuArrayMap, String> {
        let ncpus = ncpus.max(1);
        let stride = round_up8(spec.value_size as u64);
        let storage = Storage::zeroed(stride * spec.max_entries as u64 * ncpus as u64)?;
        Ok(PerCpuArrayMap {
            spec,
            stride,
            ncpus,
            storage,
        })
    }

    /// Address of element 0 of CPU 0 (see [`crate::maps::MapHandle::percpu_base`]).
    pub fn base_ptr(&self) -> *mut u8 {
        self.storage.at(0)
    }

    /// Number of per-CPU copies of each element.
    pub fn ncpus(&self) -> u32 {
        self.ncpus
    }

    fn slot(&self, i: u64, cpu: u32) -> *mut u8 {
        self.storage
            .at((i * self.ncpus as u64 + cpu as u64) * self.stride)
    }
}

impl Map for PerCpuArrayMap {
    // Elements are never freed or moved while the map lives.
    fn needs_epoch(&self) -> bool {
        false
    }

    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        let cpu = cpu % self.ncpus;
        index(&self.spec, key).and_then(|i| NonNull::new(self.slot(i, cpu)))
    }

    fn update(&self, key: &[u8], value: &[u8], f: u64, cpu: u32) -> Result<(), MapError> {
        let i = update_index(&self.spec, key, f)?;
        let n = (self.spec.value_size as usize).min(value.len());
        // SAFETY: slot lies inside storage and holds value_size >= n bytes.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), self.slot(i, cpu % self.ncpus), n) };
        Ok(())
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::Invalid("array elements cannot be deleted".into()))
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        Ok(next_index(&self.spec, key))
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let i = index(&self.spec, key).ok_or(MapError::NotFound)?;
        let mut out = vec![0u8; (self.stride * self.ncpus as u64) as usize];
        for cpu in 0..self.ncpus {
            let dst =
                &mut out[(cpu as u64 * self.stride) as usize..][..self.spec.value_size as usize];
            // SAFETY: the slot holds value_size bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(self.slot(i, cpu), dst.as_mut_ptr(), dst.len())
            };
        }
        Ok(out)
    }

    fn write(&self, key: &[u8], value: &[u8], f: u64) -> Result<(), MapError> {
        let i = update_index(&self.spec, key, f)?;
        if value.len() as u64 != self.stride * self.ncpus as u64 {
            return Err(MapError::Invalid(format!(
                "per-cpu value must be {} bytes ({} cpus x {})",
                self.stride * self.ncpus as u64,
                self.ncpus,
                self.stride
            )));
        }
        for cpu in 0..self.ncpus {
            let src =
                &value[(cpu as u64 * self.stride) as usize..][..self.spec.value_size as usize];
            // SAFETY: the slot holds value_size bytes.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.slot(i, cpu), src.len()) };
        }
        Ok(())
    }

    fn fixed_regions(&self) -> Vec<(u64, u64, bool)> {
        vec![(self.storage.at(0) as u64, self.storage.len(), true)]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
