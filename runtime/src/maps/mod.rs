//! Userspace maps with kernel semantics.
//!
//! Programs see maps through [`MapHandle`]s: ld_imm64 of a map loads the handle's address, and
//! helpers turn that address back into the handle. Library users and the datapath use the
//! [`Map`] trait's "user" methods, which follow the bpf() syscall conventions (per-CPU values
//! concatenated, each rounded up to 8 bytes).

mod array;
pub mod devmap_hash;
pub mod dump;
pub mod epoch;
mod hash;
pub mod lpm;
pub mod of_maps;
mod prog_array;
pub mod queue;
pub mod ringbuf;
mod spin;
mod target;
pub mod typed;

use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

pub use array::{is_frozen, ArrayMap, PerCpuArrayMap, BPF_F_RDONLY_PROG};
pub use hash::HashMap;
pub use prog_array::ProgArrayMap;
pub use target::{PerfEventArrayMap, PerfReader, TargetArrayMap, PERF_READER_CAPACITY};

use crate::object::spec::MapSpec;
use crate::vm::memory::{Region, RegionKind};

/// Kernel map type numbers (`enum bpf_map_type`).
pub mod types {
    /// BPF_MAP_TYPE_HASH
    pub const HASH: u32 = 1;
    /// BPF_MAP_TYPE_ARRAY
    pub const ARRAY: u32 = 2;
    /// BPF_MAP_TYPE_PROG_ARRAY
    pub const PROG_ARRAY: u32 = 3;
    /// BPF_MAP_TYPE_PERF_EVENT_ARRAY
    pub const PERF_EVENT_ARRAY: u32 = 4;
    /// BPF_MAP_TYPE_PERCPU_HASH
    pub const PERCPU_HASH: u32 = 5;
    /// BPF_MAP_TYPE_PERCPU_ARRAY
    pub const PERCPU_ARRAY: u32 = 6;
    /// BPF_MAP_TYPE_LRU_HASH
    pub const LRU_HASH: u32 = 9;
    /// BPF_MAP_TYPE_LRU_PERCPU_HASH
    pub const LRU_PERCPU_HASH: u32 = 10;
    /// BPF_MAP_TYPE_LPM_TRIE
    pub const LPM_TRIE: u32 = 11;
    /// BPF_MAP_TYPE_ARRAY_OF_MAPS
    pub const ARRAY_OF_MAPS: u32 = 12;
    /// BPF_MAP_TYPE_HASH_OF_MAPS
    pub const HASH_OF_MAPS: u32 = 13;
    /// BPF_MAP_TYPE_DEVMAP
    pub const DEVMAP: u32 = 14;
    /// BPF_MAP_TYPE_CPUMAP
    pub const CPUMAP: u32 = 16;
    /// BPF_MAP_TYPE_XSKMAP
    pub const XSKMAP: u32 = 17;
    /// BPF_MAP_TYPE_DEVMAP_HASH
    pub const DEVMAP_HASH: u32 = 25;
    /// BPF_MAP_TYPE_QUEUE
    pub const QUEUE: u32 = 22;
    /// BPF_MAP_TYPE_STACK
    pub const STACK: u32 = 23;
    /// BPF_MAP_TYPE_RINGBUF
    pub const RINGBUF: u32 = 27;

    /// The kernel's name of a map type, for error messages.
    pub fn name(t: u32) -> &'static str {
        match t {
            HASH => "hash",
            ARRAY => "array",
            PROG_ARRAY => "prog_array",
            PERF_EVENT_ARRAY => "perf_event_array",
            PERCPU_HASH => "percpu_hash",
            PERCPU_ARRAY => "percpu_array",
            LRU_HASH => "lru_hash",
            LRU_PERCPU_HASH => "lru_percpu_hash",
            LPM_TRIE => "lpm_trie",
            ARRAY_OF_MAPS => "array_of_maps",
            HASH_OF_MAPS => "hash_of_maps",
            DEVMAP => "devmap",
            CPUMAP => "cpumap",
            XSKMAP => "xskmap",
            DEVMAP_HASH => "devmap_hash",
            QUEUE => "queue",
            STACK => "stack",
            RINGBUF => "ringbuf",
            _ => "unknown",
        }
    }
}

/// Update flags (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
pub mod flags {
    /// Create or update.
    pub const BPF_ANY: u64 = 0;
    /// Create only.
    pub const BPF_NOEXIST: u64 = 1;
    /// Update only.
    pub const BPF_EXIST: u64 = 2;
    /// Update under the value's spin lock.
    pub const BPF_F_LOCK: u64 = 4;
}

/// Map operation errors, with the errno the kernel would return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// ENOENT: no such key.
    #[error("no such key")]
    NotFound,
    /// EEXIST: key exists and BPF_NOEXIST was given.
    #[error("key already exists")]
    Exists,
    /// E2BIG: the map is full, or an array index is out of range.
    #[error("map is full or index out of range")]
    TooBig,
    /// ENOSPC: no room for a new element (a full LPM trie).
    #[error("no space left in the map")]
    NoSpace,
    /// EINVAL: wrong sizes or flags.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// EOPNOTSUPP / unsupported operation for this map type.
    #[error("operation not supported by {0} maps")]
    Unsupported(&'static str),
    /// EPERM: a change to a frozen map (`.rodata`, which libbpf freezes at load: its values
    /// are the program's constants).
    #[error("the map is frozen (read-only data); its values cannot be changed")]
    Frozen,
}

impl MapError {
    /// The negative errno a helper returns for this error.
    pub fn errno(&self) -> i64 {
        -(match self {
            MapError::NotFound => libc::ENOENT,
            MapError::Exists => libc::EEXIST,
            MapError::TooBig => libc::E2BIG,
            MapError::NoSpace => libc::ENOSPC,
            MapError::Invalid(_) => libc::EINVAL,
            MapError::Unsupported(_) => libc::EOPNOTSUPP,
            MapError::Frozen => libc::EPERM,
        }) as i64
    }
}

/// A map instance. Program-side methods take the caller's CPU (worker index); user-side
/// methods follow the bpf() syscall conventions.
pub trait Map: Send + Sync + std::fmt::Debug {
    /// The declaration the map was created from.
    fn spec(&self) -> &MapSpec;

    /// Program lookup (`bpf_map_lookup_elem`): a pointer to the value for `cpu`, valid for the
    /// rest of the program run. Writable only where the program may write the map: never for
    /// a frozen one ([`is_frozen`]), whose contents decoded programs hold as constants.
    fn lookup(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>>;

    /// Program update (`bpf_map_update_elem`): per-CPU maps update `cpu`'s value only.
    fn update(&self, key: &[u8], value: &[u8], flags: u64, cpu: u32) -> Result<(), MapError>;

    /// Delete (`bpf_map_delete_elem`, program or user).
    fn delete(&self, key: &[u8]) -> Result<(), MapError>;

    /// The key after `key` (the first key when `None`), or `None` at the end.
    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError>;

    /// User lookup: the value (per-CPU maps: all CPUs' values, each padded to 8 bytes).
    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError>;

    /// User update with the same value layout as [`Map::read`].
    fn write(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError>;

    /// Value memory that is valid for the map's whole life (array storage), as
    /// `(address, length, writable)`: registered as fixed regions for checked runs.
    fn fixed_regions(&self) -> Vec<(u64, u64, bool)> {
        Vec::new()
    }

    /// Called between program runs, when no run can hold a pointer into the map: frees values
    /// that were deleted or replaced while programs may have been using them.
    fn quiesce(&self) {}

    /// Whether pointers the map hands to programs stay valid only while the run is pinned to
    /// an epoch ([`epoch`]): memory it frees, values it replaces, maps or programs it holds.
    /// Maps whose values live as long as the map answer false, and a run of a program using
    /// only such maps skips the pin.
    fn needs_epoch(&self) -> bool {
        true
    }

    /// Downcasting, for map types with operations of their own (PROG_ARRAY, XSKMAP, ...).
    fn as_any(&self) -> &dyn Any;
}

/// What a program's ld_imm64 points at: a stable, `#[repr(C)]` header in front of the map, so
/// that JIT code can inline array lookups without a virtual call.
#[repr(C)]
#[derive(Debug)]
pub struct MapHandle {
    /// Kernel map type.
    pub map_type: u32,
    /// Key size.
    pub key_size: u32,
    /// Value size.
    pub value_size: u32,
    /// Maximum entries.
    pub max_entries: u32,
    /// For ARRAY maps: address of element 0 (elements are `value_stride` apart); else null.
    pub array_base: *mut u8,
    /// Distance between array elements (value size rounded up to 8).
    pub value_stride: u64,
    /// For PERCPU_ARRAY maps: address of element 0 of CPU 0; element `i` of CPU `c` is at
    /// `(i * ncpus + c) * value_stride` from it. Null for other maps.
    pub percpu_base: *mut u8,
    /// Number of per-CPU slots of a PERCPU_ARRAY (0 for other maps).
    pub ncpus: u32,
    /// For the hash family (HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH): the map itself,
    /// for JIT code that calls [`hash_lookup_trusted`] directly instead of the generic
    /// helper, as the kernel's `htab_map_gen_lookup` does. Null for other maps.
    pub hash: *const HashMap,
    /// Whether programs may write the map's values (not `BPF_F_RDONLY_PROG`), cached so that
    /// a lookup's region costs no virtual call.
    pub value_writable: bool,
    /// The map itself.
    pub map: Arc<dyn Map>,
}

/// `bpf_map_lookup_elem` on a hash-family map, for trusted JIT code: no argument checks, no
/// dynamic dispatch and no epoch guard of its own. Returns the value's address or 0.
///
/// # Safety
/// `map` is the `hash` of a live [`MapHandle`]; `key` is readable for the map's `key_size`
/// bytes (the verifier proves it for trusted code); the calling thread is pinned for the
/// whole run (`Runner` pins it), which keeps the result valid as long as the program uses it.
pub unsafe extern "C" fn hash_lookup_trusted(map: *const HashMap, key: u64, cpu: u32) -> u64 {
    // SAFETY: caller's contract.
    unsafe { (*map).lookup_pinned(key as usize as *const u8, cpu) as u64 }
}

// SAFETY: `array_base`, `percpu_base` and `hash` point into `map`, which is Send + Sync; the
// handle is only a cached view of it.
unsafe impl Send for MapHandle {}
// SAFETY: as above; the pointer is never used to mutate the handle itself.
unsafe impl Sync for MapHandle {}

impl MapHandle {
    /// The region a program may touch through a value pointer `value` this map handed out:
    /// `value_size` bytes, writable unless the map is read-only for programs.
    pub fn value_region(&self, value: u64) -> Region {
        Region {
            start: value,
            len: u64::from(self.value_size),
            writable: self.value_writable,
            kind: RegionKind::MapValue,
        }
    }

    /// Wraps a map, caching what JIT code needs.
    pub fn new(map: Arc<dyn Map>) -> Box<MapHandle> {
        let spec = map.spec();
        let array_base = map
            .as_any()
            .downcast_ref::<ArrayMap>()
            .map(|a| a.base_ptr())
            .unwrap_or(std::ptr::null_mut());
        let percpu = map.as_any().downcast_ref::<PerCpuArrayMap>();
        Box::new(MapHandle {
            percpu_base: percpu.map_or(std::ptr::null_mut(), |p| p.base_ptr()),
            ncpus: percpu.map_or(0, |p| p.ncpus()),
            map_type: spec.map_type,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            array_base,
            value_stride: round_up8(spec.value_size as u64),
            value_writable: spec.flags & BPF_F_RDONLY_PROG == 0,
            hash: map
                .as_any()
                .downcast_ref::<HashMap>()
                .map_or(std::ptr::null(), |h| h as *const HashMap),
            map: map.clone(),
        })
    }

    /// The address programs see for this handle.
    pub fn addr(&self) -> u64 {
        self as *const MapHandle as u64
    }
}

/// Rounds up to a multiple of 8 (kernel value alignment).
pub fn round_up8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Why a map cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// A map type this runtime does not implement (yet).
    #[error("map {name}: map type {map_type} ({}) is not supported", types::name(*map_type))]
    UnsupportedType {
        /// Map name.
        name: String,
        /// Kernel type number.
        map_type: u32,
    },
    /// Sizes the kernel would refuse.
    #[error("map {name}: {reason}")]
    Invalid {
        /// Map name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Creates a map from its declaration. `ncpus` is the number of per-CPU slots (workers).
pub fn create(spec: &MapSpec, ncpus: u32) -> Result<Arc<dyn Map>, CreateError> {
    let invalid = |reason: &str| CreateError::Invalid {
        name: spec.name.clone(),
        reason: reason.to_string(),
    };
    if spec.max_entries == 0 && spec.map_type != types::RINGBUF {
        return Err(invalid("max_entries is 0"));
    }
    Ok(match spec.map_type {
        types::ARRAY => {
            if spec.key_size != 4 {
                return Err(invalid("array key size must be 4"));
            }
            Arc::new(ArrayMap::new(spec.clone()).map_err(|e| invalid(&e))?)
        }
        types::PERCPU_ARRAY => {
            if spec.key_size != 4 {
                return Err(invalid("array key size must be 4"));
            }
            Arc::new(PerCpuArrayMap::new(spec.clone(), ncpus).map_err(|e| invalid(&e))?)
        }
        types::HASH | types::PERCPU_HASH | types::LRU_HASH | types::LRU_PERCPU_HASH => {
            if spec.key_size == 0 || spec.value_size == 0 {
                return Err(invalid("hash key and value sizes must be non-zero"));
            }
            Arc::new(HashMap::new(spec.clone(), ncpus))
        }
        types::PROG_ARRAY => {
            if spec.key_size != 4 || spec.value_size != 4 {
                return Err(invalid("prog_array key and value sizes must be 4"));
            }
            Arc::new(ProgArrayMap::new(spec.clone()))
        }
        types::DEVMAP | types::XSKMAP | types::CPUMAP => {
            if spec.key_size != 4 {
                return Err(invalid("key size must be 4"));
            }
            Arc::new(TargetArrayMap::new(spec.clone()))
        }
        types::PERF_EVENT_ARRAY => Arc::new(PerfEventArrayMap::new(spec.clone())),
        types::LPM_TRIE => Arc::new(lpm::LpmTrieMap::new(spec.clone()).map_err(|e| invalid(&e))?),
        types::QUEUE | types::STACK => {
            Arc::new(queue::QueueMap::new(spec.clone()).map_err(|e| invalid(&e))?)
        }
        types::RINGBUF => {
            Arc::new(ringbuf::RingBufMap::new(spec.clone()).map_err(|e| invalid(&e))?)
        }
        types::DEVMAP_HASH => {
            Arc::new(devmap_hash::DevMapHash::new(spec.clone()).map_err(|e| invalid(&e))?)
        }
        types::ARRAY_OF_MAPS | types::HASH_OF_MAPS => {
            Arc::new(of_maps::MapOfMaps::new(spec.clone(), ncpus).map_err(|e| invalid(&e))?)
        }
        other => {
            return Err(CreateError::UnsupportedType {
                name: spec.name.clone(),
                map_type: other,
            })
        }
    })
}
