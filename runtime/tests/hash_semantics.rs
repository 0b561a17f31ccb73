//! The hash map family against kernel maps of the same type, created with libbpf-rs: the same
//! script of user operations runs on both and every result (value or errno) must agree; then
//! full maps (E2BIG for HASH / PERCPU_HASH, eviction for the LRU types) and iteration.
//!
//! Root only (skips with the reason otherwise).

use std::collections::BTreeSet;
use std::sync::Arc;

use libbpf_rs::{ErrorKind, MapCore, MapFlags, MapHandle, MapType};
use userxdp_runtime::kernel;
use userxdp_runtime::maps::{self, flags, types, Map, MapError};
use userxdp_runtime::object::spec::{MapSpec, Pinning};

const VALUE_SIZE: u32 = 8;

fn skip() -> bool {
    match kernel::probe() {
        Ok(()) => false,
        Err(e) => {
            eprintln!("skipping: {e}");
            true
        }
    }
}

/// A result both sides can report: Ok with the value read, or the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok(Option<Vec<u8>>),
    Errno(&'static str),
}

fn ours_err(e: MapError) -> Outcome {
    Outcome::Errno(match e {
        MapError::NotFound => "ENOENT",
        MapError::Exists => "EEXIST",
        MapError::TooBig => "E2BIG",
        MapError::Invalid(_) => "EINVAL",
        MapError::Unsupported(_) => "EOPNOTSUPP",
        _ => "other",
    })
}

fn kernel_err(e: libbpf_rs::Error) -> Outcome {
    Outcome::Errno(match e.kind() {
        ErrorKind::NotFound => "ENOENT",
        ErrorKind::AlreadyExists => "EEXIST",
        ErrorKind::TooBig => "E2BIG",
        ErrorKind::InvalidInput => "EINVAL",
        _ => "other",
    })
}

/// One map type on both sides.
struct Pair {
    map_type: u32,
    percpu: bool,
    ncpus: usize,
    ours: Arc<dyn Map>,
    kernel: MapHandle,
}

impl Pair {
    fn new(map_type: u32, max_entries: u32) -> Pair {
        let kernel_type = match map_type {
            types::HASH => MapType::Hash,
            types::PERCPU_HASH => MapType::PercpuHash,
            types::LRU_HASH => MapType::LruHash,
            _ => MapType::LruPercpuHash,
        };
        // SAFETY: bpf_map_create_opts is plain data; zero is "no options" once `sz` is set.
        let mut opts: libbpf_rs::libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of_val(&opts) as _;
        let kernel = MapHandle::create(
            kernel_type,
            Some("hash_sem"),
            4,
            VALUE_SIZE,
            max_entries,
            &opts,
        )
        .expect("kernel map");
        // Per-CPU user values are laid out for every possible CPU, as the kernel's.
        let ncpus = kernel::possible_cpus();
        let spec = MapSpec {
            name: "hash_sem".into(),
            map_type,
            key_size: 4,
            value_size: VALUE_SIZE,
            max_entries,
            flags: 0,
            inner: None,
            data: None,
            pinning: Pinning::None,
            global_data: false,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            spin_lock_offset: None,
            initial_slots: Vec::new(),
        };
        Pair {
            map_type,
            percpu: matches!(map_type, types::PERCPU_HASH | types::LRU_PERCPU_HASH),
            ncpus: ncpus as usize,
            ours: maps::create(&spec, ncpus).expect("our map"),
            kernel,
        }
    }

    /// The user value for `v`: per-CPU maps get `v + cpu` in each CPU's slot.
    fn value(&self, v: u64) -> Vec<u8> {
        if self.percpu {
            (0..self.ncpus as u64)
                .flat_map(|c| (v + c).to_le_bytes())
                .collect()
        } else {
            v.to_le_bytes().to_vec()
        }
    }

    fn update(&self, key: u32, v: u64, f: u64) -> (Outcome, Outcome) {
        let value = self.value(v);
        let ours = match self.ours.write(&key.to_le_bytes(), &value, f) {
            Ok(()) => Outcome::Ok(None),
            Err(e) => ours_err(e),
        };
        let kf = MapFlags::from_bits_retain(f);
        let k = if self.percpu {
            let per: Vec<Vec<u8>> = value.chunks(8).map(|c| c.to_vec()).collect();
            self.kernel.update_percpu(&key.to_le_bytes(), &per, kf)
        } else {
            self.kernel.update(&key.to_le_bytes(), &value, kf)
        };
        (ours, k.map_or_else(kernel_err, |()| Outcome::Ok(None)))
    }

    fn read(&self, key: u32) -> (Outcome, Outcome) {
        let ours = match self.ours.read(&key.to_le_bytes()) {
            Ok(v) => Outcome::Ok(Some(v)),
            Err(MapError::NotFound) => Outcome::Ok(None),
            Err(e) => ours_err(e),
        };
        let k = if self.percpu {
            self.kernel
                .lookup_percpu(&key.to_le_bytes(), MapFlags::ANY)
                .map(|v| v.map(|per| per.concat()))
        } else {
            self.kernel.lookup(&key.to_le_bytes(), MapFlags::ANY)
        };
        (ours, k.map_or_else(kernel_err, Outcome::Ok))
    }

    fn delete(&self, key: u32) -> (Outcome, Outcome) {
        let ours = match self.ours.delete(&key.to_le_bytes()) {
            Ok(()) => Outcome::Ok(None),
            Err(e) => ours_err(e),
        };
        let k = self.kernel.delete(&key.to_le_bytes());
        (ours, k.map_or_else(kernel_err, |()| Outcome::Ok(None)))
    }

    fn our_keys(&self) -> BTreeSet<u32> {
        let mut keys = BTreeSet::new();
        let mut cur: Option<Vec<u8>> = None;
        while let Some(k) = self.ours.next_key(cur.as_deref()).unwrap() {
            assert!(
                keys.insert(u32::from_le_bytes(k[..4].try_into().unwrap())),
                "iteration repeated a key"
            );
            cur = Some(k);
        }
        keys
    }

    fn kernel_keys(&self) -> BTreeSet<u32> {
        self.kernel
            .keys()
            .map(|k| u32::from_le_bytes(k[..4].try_into().unwrap()))
            .collect()
    }

    fn agree(&self, what: &str, (ours, kernel): (Outcome, Outcome)) {
        assert_eq!(
            ours,
            kernel,
            "{}: {what}: ours vs kernel",
            types::name(self.map_type)
        );
    }
}

const ALL: [u32; 4] = [
    types::HASH,
    types::PERCPU_HASH,
    types::LRU_HASH,
    types::LRU_PERCPU_HASH,
];

#[test]
fn flags_and_errors_match_the_kernel() {
    if skip() {
        return;
    }
    for t in ALL {
        let p = Pair::new(t, 16);
        p.agree("exist on missing", p.update(1, 10, flags::BPF_EXIST));
        p.agree("read missing", p.read(1));
        p.agree("noexist on missing", p.update(1, 11, flags::BPF_NOEXIST));
        p.agree("read", p.read(1));
        p.agree("noexist on present", p.update(1, 12, flags::BPF_NOEXIST));
        p.agree("exist on present", p.update(1, 13, flags::BPF_EXIST));
        p.agree("read after exist", p.read(1));
        p.agree("any on present", p.update(1, 14, flags::BPF_ANY));
        p.agree("any on missing", p.update(2, 20, flags::BPF_ANY));
        p.agree("read 2", p.read(2));
        p.agree("bad flags", p.update(3, 30, 3));
        p.agree(
            "F_LOCK without a spin lock",
            p.update(3, 30, flags::BPF_F_LOCK),
        );
        p.agree("delete missing", p.delete(7));
        p.agree("delete", p.delete(1));
        p.agree("delete again", p.delete(1));
        p.agree("read deleted", p.read(1));
        p.agree("reinsert", p.update(1, 15, flags::BPF_NOEXIST));
        p.agree("read reinserted", p.read(1));
        assert_eq!(p.our_keys(), p.kernel_keys());
    }
}

#[test]
fn full_maps_refuse_or_evict_like_the_kernel() {
    if skip() {
        return;
    }
    const MAX: u32 = 64;
    for t in ALL {
        let p = Pair::new(t, MAX);
        let lru = matches!(t, types::LRU_HASH | types::LRU_PERCPU_HASH);
        if !lru {
            for k in 0..MAX {
                p.agree("fill", p.update(k, k as u64, flags::BPF_NOEXIST));
            }
            p.agree("insert into full map", p.update(MAX, 0, flags::BPF_ANY));
            p.agree(
                "noexist into full map",
                p.update(MAX, 0, flags::BPF_NOEXIST),
            );
            p.agree("replace in full map", p.update(3, 33, flags::BPF_ANY));
            p.agree("exist in full map", p.update(4, 44, flags::BPF_EXIST));
            p.agree("read replaced", p.read(3));
            p.agree("delete from full map", p.delete(5));
            p.agree("insert after delete", p.update(MAX, 1, flags::BPF_NOEXIST));
            assert_eq!(p.our_keys(), p.kernel_keys());
            continue;
        }
        // LRU: every insert succeeds, the map never holds more than max_entries, and the
        // newest element survives. Which older ones are evicted is approximate on both sides.
        for k in 0..3 * MAX {
            p.agree("insert into LRU", p.update(k, k as u64, flags::BPF_NOEXIST));
            p.agree("newest element present", p.read(k));
        }
        let (ours, kernel) = (p.our_keys(), p.kernel_keys());
        eprintln!(
            "{}: {} of {} inserted keys kept (kernel {})",
            types::name(t),
            ours.len(),
            3 * MAX,
            kernel.len()
        );
        assert!(ours.len() <= MAX as usize && kernel.len() <= MAX as usize);
        assert!(ours.contains(&(3 * MAX - 1)) && kernel.contains(&(3 * MAX - 1)));
        // Mostly recent keys survive (the kernel keeps at least half the map in practice).
        let recent = ours.iter().filter(|&&k| k >= 2 * MAX).count();
        assert!(
            recent * 2 >= ours.len(),
            "ours kept mostly old keys: {ours:?}"
        );
    }
}

#[test]
fn next_key_of_a_missing_key_restarts_like_the_kernel() {
    if skip() {
        return;
    }
    for t in ALL {
        let p = Pair::new(t, 32);
        assert_eq!(p.ours.next_key(None).unwrap(), None);
        for k in [5u32, 9, 200, 7] {
            p.update(k, 1, flags::BPF_ANY);
        }
        let first = p.ours.next_key(None).unwrap();
        assert!(first.is_some());
        assert_eq!(p.ours.next_key(Some(&999u32.to_le_bytes())).unwrap(), first);
        // Kernel: the same rule (its order is its own).
        let mut next = [0u8; 4];
        let kfirst = p.kernel.keys().next();
        // SAFETY: key and next_key buffers are 4 bytes, the map's key size.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_map_get_next_key(
                std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&p.kernel)),
                999u32.to_le_bytes().as_ptr().cast(),
                next.as_mut_ptr().cast(),
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(Some(next.to_vec()), kfirst);
        assert_eq!(p.our_keys(), p.kernel_keys());
    }
}
