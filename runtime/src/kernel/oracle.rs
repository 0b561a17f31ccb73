//! A whole object loaded into the kernel at full size: the reference the userspace engines are
//! compared with (same bytes in, same verdict, bytes and map contents out).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use libbpf_rs::{libbpf_sys, Map, MapCore, MapHandle, MapType, Program};
use parking_lot::Mutex;

use super::load::{load_object, LoadOptions, Loaded};
use super::{sys, KernelError, TestRunResult};
use crate::object::spec::{MapSpec, ProgramType};

/// A map's contents as (key, value) byte pairs, in the kernel's iteration order.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// `struct __sk_buff` fields a test run may set (the kernel rejects any other non-zero field
/// of the input context).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkbContext {
    /// `skb->mark`.
    pub mark: u32,
    /// `skb->priority`.
    pub priority: u32,
}

impl SkbContext {
    /// Offset of `mark` in `struct __sk_buff` (after `len`, `pkt_type`).
    const MARK: usize = 8;
    /// Offset of `priority` (after `queue_mapping`, `protocol`, `vlan_*`).
    const PRIORITY: usize = 32;
    /// Bytes passed: through `priority`; the kernel zero-fills the rest.
    const LEN: usize = 36;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[Self::MARK..Self::MARK + 4].copy_from_slice(&self.mark.to_ne_bytes());
        b[Self::PRIORITY..Self::PRIORITY + 4].copy_from_slice(&self.priority.to_ne_bytes());
        b
    }
}

/// An object loaded into the kernel with every program and every map at full size. Maps are
/// private to this oracle (pinning is ignored); everything is unloaded on drop.
///
/// Global-data maps are named by libbpf as `<object prefix>.data` etc.; the map methods accept
/// the bare section name (`".bss"`) when exactly one map ends with it.
pub struct Oracle {
    loaded: Loaded,
    /// Maps made after loading ([`Oracle::create_map`]): inner maps for map-in-map slots.
    extra: Mutex<Vec<Arc<MapHandle>>>,
}

impl std::fmt::Debug for Oracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oracle")
            .field("programs", &self.program_names())
            .field("maps", &self.map_names())
            .finish()
    }
}

impl Oracle {
    /// Loads every program and map of `object_bytes`, optionally forcing every program to
    /// `prog_type_override`. A verifier rejection names the program.
    pub fn load(
        object_bytes: &[u8],
        prog_type_override: Option<ProgramType>,
    ) -> Result<Oracle, KernelError> {
        super::probe()?;
        let loaded = load_object(
            object_bytes,
            LoadOptions {
                only: None,
                prog_type: prog_type_override,
                shrink_maps: false,
            },
        )?;
        Ok(Oracle {
            loaded,
            extra: Mutex::new(Vec::new()),
        })
    }

    /// Names of the loaded programs (function names).
    pub fn program_names(&self) -> Vec<String> {
        self.loaded
            .object
            .progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect()
    }

    /// Names of the maps, global-data maps included, as libbpf named them.
    pub fn map_names(&self) -> Vec<String> {
        self.loaded
            .object
            .maps()
            .map(|m| m.name().to_string_lossy().into_owned())
            .collect()
    }

    /// Runs `program` `repeat` times (0 = once) on `data` with `BPF_PROG_TEST_RUN`; `data`
    /// needs at least 14 bytes. Map side effects persist in this oracle.
    pub fn test_run(
        &self,
        program: &str,
        data: &[u8],
        repeat: u32,
    ) -> Result<TestRunResult, KernelError> {
        self.run(program, data, None, repeat)
    }

    /// Runs a TC (`__sk_buff`) program once on `data` (an Ethernet frame) with a default
    /// context: the kernel sets `len`, `protocol` (from the ethertype) and `data`/`data_end`.
    pub fn test_run_skb(&self, program: &str, data: &[u8]) -> Result<TestRunResult, KernelError> {
        self.test_run_skb_ctx(program, data, SkbContext::default())
    }

    /// [`Oracle::test_run_skb`] with `mark` and `priority` set in the context.
    pub fn test_run_skb_ctx(
        &self,
        program: &str,
        data: &[u8],
        ctx: SkbContext,
    ) -> Result<TestRunResult, KernelError> {
        self.run(program, data, Some(&ctx.to_bytes()), 1)
    }

    fn run(
        &self,
        program: &str,
        data: &[u8],
        ctx: Option<&[u8]>,
        repeat: u32,
    ) -> Result<TestRunResult, KernelError> {
        let prog = self.program(program)?;
        let out = sys::prog_test_run(prog.as_fd(), data, ctx, repeat).map_err(|source| {
            KernelError::Syscall {
                call: "BPF_PROG_TEST_RUN",
                source,
            }
        })?;
        Ok(TestRunResult {
            retval: out.retval,
            data: out.data,
            duration_ns: out.duration_ns,
        })
    }

    /// Every (key, value) of `map`, in the kernel's iteration order. Per-CPU values are the
    /// values of all possible CPUs concatenated, each padded to 8 bytes, as the syscall
    /// returns them. Empty PROG_ARRAY slots are skipped; filled ones read as program ids.
    pub fn map_dump(&self, map: &str) -> Result<MapEntries, KernelError> {
        let m = self.map(map)?;
        let fd = m.fd();
        let value_len = value_len(&m)?;
        let mut out = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        loop {
            let mut next = vec![0u8; m.key_size() as usize];
            let more = sys::map_next_key(fd, key.as_deref(), &mut next).map_err(|source| {
                KernelError::Syscall {
                    call: "BPF_MAP_GET_NEXT_KEY",
                    source,
                }
            })?;
            if !more {
                break;
            }
            let mut value = vec![0u8; value_len];
            // A key deleted between the two calls simply reads as absent.
            if sys::map_lookup(fd, &next, &mut value).map_err(|source| KernelError::Syscall {
                call: "BPF_MAP_LOOKUP_ELEM",
                source,
            })? {
                out.push((next.clone(), value));
            }
            key = Some(next);
        }
        Ok(out)
    }

    /// Value of `key` in `map` (per-CPU layout as in [`Oracle::map_dump`]), `None` if absent.
    pub fn map_lookup(&self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, KernelError> {
        let m = self.map(map)?;
        check_len(&m, "key", m.key_size() as usize, key.len())?;
        let mut value = vec![0u8; value_len(&m)?];
        let found =
            sys::map_lookup(m.fd(), key, &mut value).map_err(|source| KernelError::Syscall {
                call: "BPF_MAP_LOOKUP_ELEM",
                source,
            })?;
        Ok(found.then_some(value))
    }

    /// `BPF_MAP_UPDATE_ELEM` with the kernel's `flags` (`BPF_ANY` 0, `BPF_NOEXIST` 1,
    /// `BPF_EXIST` 2). Per-CPU maps take the all-CPUs layout of [`Oracle::map_dump`].
    pub fn map_update(
        &self,
        map: &str,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), KernelError> {
        let m = self.map(map)?;
        check_len(&m, "key", m.key_size() as usize, key.len())?;
        check_len(&m, "value", value_len(&m)?, value.len())?;
        sys::map_update(m.fd(), key, value, flags).map_err(|source| KernelError::Syscall {
            call: "BPF_MAP_UPDATE_ELEM",
            source,
        })
    }

    /// `BPF_MAP_DELETE_ELEM`.
    pub fn map_delete(&self, map: &str, key: &[u8]) -> Result<(), KernelError> {
        let m = self.map(map)?;
        check_len(&m, "key", m.key_size() as usize, key.len())?;
        sys::map_delete(m.fd(), key).map_err(|source| KernelError::Syscall {
            call: "BPF_MAP_DELETE_ELEM",
            source,
        })
    }

    /// Puts `program` into slot `index` of the PROG_ARRAY `prog_array_map`, so that
    /// `bpf_tail_call(ctx, &map, index)` jumps to it.
    pub fn set_tail_call(
        &self,
        prog_array_map: &str,
        index: u32,
        program: &str,
    ) -> Result<(), KernelError> {
        let fd = self.program(program)?.as_fd().as_raw_fd();
        let fd = u32::try_from(fd).map_err(|_| KernelError::NotFound {
            kind: "program",
            name: program.to_string(),
        })?;
        self.map_update(prog_array_map, &index.to_ne_bytes(), &fd.to_ne_bytes(), 0)
    }

    /// Mean kernel duration (ns) of a `return XDP_PASS` program over `repeat` runs on a
    /// 64-byte frame: the fixed cost of `BPF_PROG_TEST_RUN` itself, to subtract or compare
    /// against in benchmarks.
    pub fn empty_program_duration(repeat: u32) -> Result<u32, KernelError> {
        let r = super::test_run_insns(
            &super::return_pass_insns(),
            ProgramType::Xdp,
            &[0u8; 64],
            repeat,
        )?;
        Ok(r.duration_ns)
    }

    fn program(&self, name: &str) -> Result<Program<'_>, KernelError> {
        self.loaded
            .object
            .progs()
            .find(|p| p.name().to_str() == Some(name))
            .ok_or_else(|| KernelError::NotFound {
                kind: "program",
                name: name.to_string(),
            })
    }

    /// Finds a map by exact name (object maps first, then maps made with
    /// [`Oracle::create_map`]), or a global-data map by its section suffix.
    fn map(&self, name: &str) -> Result<MapRef<'_>, KernelError> {
        let object = &self.loaded.object;
        if let Some(m) = object.maps().find(|m| m.name().to_str() == Some(name)) {
            return Ok(MapRef::Object(m));
        }
        if name.starts_with('.') {
            let mut hits = object
                .maps()
                .filter(|m| m.name().to_str().is_some_and(|n| n.ends_with(name)));
            if let (Some(m), None) = (hits.next(), hits.next()) {
                return Ok(MapRef::Object(m));
            }
        }
        if let Some(m) = self
            .extra
            .lock()
            .iter()
            .find(|m| m.name().to_str() == Some(name))
        {
            return Ok(MapRef::Extra(m.clone()));
        }
        Err(KernelError::NotFound {
            kind: "map",
            name: name.to_string(),
        })
    }

    /// Creates a kernel map from `spec` (an inner-map template under a new name), owned by
    /// this oracle and reachable by name like the object's maps.
    pub fn create_map(&self, spec: &MapSpec) -> Result<(), KernelError> {
        // SAFETY: bpf_map_create_opts is plain data for which all zeroes is "no options".
        let mut opts: libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _;
        opts.map_flags = spec.flags;
        let m = MapHandle::create(
            MapType::from(spec.map_type),
            Some(&spec.name),
            spec.key_size,
            spec.value_size,
            spec.max_entries,
            &opts,
        )
        .map_err(|e| KernelError::Syscall {
            call: "BPF_MAP_CREATE",
            source: std::io::Error::other(format!("map {}: {e}", spec.name)),
        })?;
        self.extra.lock().push(Arc::new(m));
        Ok(())
    }

    /// Puts map `inner` (an object map or one made with [`Oracle::create_map`]) into slot
    /// `key` of the map-in-map `outer`, as writing its fd there does.
    pub fn set_inner_map(&self, outer: &str, key: &[u8], inner: &str) -> Result<(), KernelError> {
        let fd = self.map(inner)?.fd().as_raw_fd();
        let fd = u32::try_from(fd).map_err(|_| KernelError::NotFound {
            kind: "map",
            name: inner.to_string(),
        })?;
        self.map_update(outer, key, &fd.to_ne_bytes(), 0)
    }
}

/// A map of the loaded object or one the oracle made later.
enum MapRef<'a> {
    Object(Map<'a>),
    Extra(Arc<MapHandle>),
}

impl MapRef<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            MapRef::Object(m) => m.as_fd(),
            MapRef::Extra(m) => m.as_fd(),
        }
    }

    fn key_size(&self) -> u32 {
        match self {
            MapRef::Object(m) => m.key_size(),
            MapRef::Extra(m) => m.key_size(),
        }
    }

    fn value_size(&self) -> u32 {
        match self {
            MapRef::Object(m) => m.value_size(),
            MapRef::Extra(m) => m.value_size(),
        }
    }

    fn map_type(&self) -> MapType {
        match self {
            MapRef::Object(m) => m.map_type(),
            MapRef::Extra(m) => m.map_type(),
        }
    }

    fn name(&self) -> String {
        match self {
            MapRef::Object(m) => m.name().to_string_lossy().into_owned(),
            MapRef::Extra(m) => m.name().to_string_lossy().into_owned(),
        }
    }
}

/// Bytes one lookup returns for `m`: the value size, or for per-CPU maps the 8-byte-rounded
/// value size times the possible-CPU count.
fn value_len(m: &MapRef<'_>) -> Result<usize, KernelError> {
    let size = m.value_size() as usize;
    if m.map_type().is_percpu() {
        let cpus = sys::possible_cpus().map_err(|source| KernelError::Syscall {
            call: "libbpf_num_possible_cpus",
            source,
        })?;
        Ok(size.div_ceil(8) * 8 * cpus)
    } else {
        Ok(size)
    }
}

fn check_len(
    m: &MapRef<'_>,
    what: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), KernelError> {
    if expected == got {
        return Ok(());
    }
    Err(KernelError::SizeMismatch {
        map: m.name(),
        what,
        expected,
        got,
    })
}
