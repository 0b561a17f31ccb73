//! LPM_TRIE, QUEUE, STACK, RINGBUF, DEVMAP_HASH and the map-in-map types against kernel maps of
//! the same type: the same (pseudo-random, seeded) script of syscall-style operations runs on
//! both, and every result — value, key walk order or errno — must agree.
//!
//!
//! Root only (skips with the reason otherwise).

use std::os::raw::c_void;
use std::sync::Arc;

use libbpf_rs::libbpf_sys;
use userxdp_runtime::kernel;
use userxdp_runtime::maps::of_maps::MapOfMaps;
use userxdp_runtime::maps::queue::QueueMap;
use userxdp_runtime::maps::ringbuf::RingBufMap;
use userxdp_runtime::maps::{self, types, Map, MapError};
use userxdp_runtime::object::spec::{MapSpec, Pinning};

const BPF_F_NO_PREALLOC: u32 = 1;

fn skip() -> bool {
    match kernel::probe() {
        Ok(()) => false,
        Err(e) => {
            eprintln!("skipping: {e}");
            true
        }
    }
}

/// Tiny deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A result both sides can report: a value (or none), or an errno.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok(Option<Vec<u8>>),
    Errno(i32),
}

fn ours_errno(e: &MapError) -> i32 {
    -e.errno() as i32
}

fn ours<T>(r: Result<T, MapError>, f: impl FnOnce(T) -> Option<Vec<u8>>) -> Outcome {
    match r {
        Ok(v) => Outcome::Ok(f(v)),
        Err(e) => Outcome::Errno(ours_errno(&e)),
    }
}

/// Asserts that the same operation had the same outcome (value or errno) on both sides.
fn agree(what: &str, ours: &Outcome, kernel: &Outcome) {
    assert!(ours == kernel, "{what}: ours {ours:?}, kernel {kernel:?}");
}

fn spec(map_type: u32, key_size: u32, value_size: u32, max_entries: u32, flags: u32) -> MapSpec {
    MapSpec {
        name: "sem".into(),
        map_type,
        key_size,
        value_size,
        max_entries,
        flags,
        inner: None,
        data: None,
        pinning: Pinning::None,
        global_data: false,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        spin_lock_offset: None,
        initial_slots: Vec::new(),
    }
}

/// A kernel map driven through raw libbpf calls, so that every errno is exact.
struct KMap {
    fd: i32,
    key_size: usize,
    value_size: usize,
}

impl Drop for KMap {
    fn drop(&mut self) {
        // SAFETY: our own descriptor.
        unsafe { libc::close(self.fd) };
    }
}

/// Creates a kernel map; `Err(errno)` when the kernel refuses.
fn kcreate(s: &MapSpec, inner_fd: Option<i32>) -> Result<KMap, i32> {
    // SAFETY: plain data; zero means "no option" once `sz` is set.
    let mut opts: libbpf_sys::bpf_map_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    opts.map_flags = s.flags;
    if let Some(fd) = inner_fd {
        opts.inner_map_fd = fd as u32;
    }
    // SAFETY: valid name and options.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            s.map_type,
            c"sem".as_ptr(),
            s.key_size,
            s.value_size,
            s.max_entries,
            &opts,
        )
    };
    if fd < 0 {
        return Err(-fd);
    }
    Ok(KMap {
        fd,
        key_size: s.key_size as usize,
        value_size: s.value_size as usize,
    })
}

fn key_ptr(key: &[u8]) -> *const c_void {
    if key.is_empty() {
        std::ptr::null()
    } else {
        key.as_ptr().cast()
    }
}

impl KMap {
    fn rc(r: i32, v: Option<Vec<u8>>) -> Outcome {
        if r < 0 {
            Outcome::Errno(-r)
        } else {
            Outcome::Ok(v)
        }
    }
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Outcome {
        // SAFETY: buffers of the map's sizes.
        let r = unsafe {
            libbpf_sys::bpf_map_update_elem(self.fd, key_ptr(key), value.as_ptr().cast(), flags)
        };
        Self::rc(r, None)
    }
    fn lookup(&self, key: &[u8]) -> Outcome {
        let mut v = vec![0u8; self.value_size];
        // SAFETY: as above.
        let r = unsafe {
            libbpf_sys::bpf_map_lookup_elem(self.fd, key_ptr(key), v.as_mut_ptr().cast())
        };
        if r == -libc::ENOENT {
            return Outcome::Ok(None);
        }
        Self::rc(r, Some(v))
    }
    fn pop(&self) -> Outcome {
        let mut v = vec![0u8; self.value_size];
        // SAFETY: as above.
        let r = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_elem(
                self.fd,
                std::ptr::null(),
                v.as_mut_ptr().cast(),
            )
        };
        Self::rc(r, Some(v))
    }
    fn delete(&self, key: &[u8]) -> Outcome {
        // SAFETY: as above.
        let r = unsafe { libbpf_sys::bpf_map_delete_elem(self.fd, key_ptr(key)) };
        Self::rc(r, None)
    }
    fn next_key(&self, key: Option<&[u8]>) -> Outcome {
        let mut next = vec![0u8; self.key_size.max(1)];
        let k = key.map_or(std::ptr::null(), key_ptr);
        // SAFETY: as above.
        let r = unsafe { libbpf_sys::bpf_map_get_next_key(self.fd, k, next.as_mut_ptr().cast()) };
        if r == -libc::ENOENT {
            return Outcome::Ok(None);
        }
        next.truncate(self.key_size);
        Self::rc(r, Some(next))
    }
    /// Every key in get_next_key order.
    fn walk(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut k: Option<Vec<u8>> = None;
        while let Outcome::Ok(Some(n)) = self.next_key(k.as_deref()) {
            out.push(n.clone());
            k = Some(n);
            assert!(out.len() < 10_000, "kernel walk does not end");
        }
        out
    }
}

fn walk_ours(m: &dyn Map) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut k: Option<Vec<u8>> = None;
    while let Ok(Some(n)) = m.next_key(k.as_deref()) {
        out.push(n.clone());
        k = Some(n);
        assert!(out.len() < 10_000, "our walk does not end");
    }
    out
}

fn lookup_ours(m: &dyn Map, key: &[u8]) -> Outcome {
    match m.read(key) {
        Err(MapError::NotFound) => Outcome::Ok(None),
        r => ours(r, Some),
    }
}

fn next_ours(m: &dyn Map, key: Option<&[u8]>) -> Outcome {
    ours(m.next_key(key), |k| k)
}

/// Creation must be refused by both or accepted by both.
fn same_creation(s: &MapSpec) {
    let k = kcreate(s, None).map(|_| ());
    let o = maps::create(s, 1).map(|_| ());
    assert_eq!(
        k.is_ok(),
        o.is_ok(),
        "create {} key {} value {} max {} flags {:#x}: kernel {k:?}, ours {o:?}",
        types::name(s.map_type),
        s.key_size,
        s.value_size,
        s.max_entries,
        s.flags
    );
}

fn lpm_key(rng: &mut Rng, data: usize) -> Vec<u8> {
    // Prefixes from a small universe so that they nest and collide; junk past the prefix.
    let plen = match rng.below(8) {
        0 => 0,
        1 => 8,
        2 => 16,
        3 => 24,
        4 => (data * 8) as u64,
        5 => (data * 8) as u64 + 1 + rng.below(3), // invalid
        _ => rng.below(data as u64 * 8 + 1),
    } as u32;
    let mut k = plen.to_ne_bytes().to_vec();
    for _ in 0..data {
        // Two bits of entropy per byte keep the tree small and overlapping.
        k.push([0x00, 0x80, 0xc0, 0x0a][rng.below(4) as usize] | (rng.below(2) as u8));
    }
    k
}

/// `.rodata` as libbpf leaves it after load: an mmapable array the program may only read,
/// holding the section's bytes, then frozen. User updates and deletes must be refused with
/// the kernel's errno (EPERM, before any other check) and reads must see the values; `.data`,
/// which is not frozen, still takes updates.
#[test]
fn frozen_read_only_data_matches_the_kernel() {
    if skip() {
        return;
    }
    const BPF_F_MMAPABLE: u32 = 1 << 10;
    let data: Vec<u8> = (1..=12).collect();
    for (name, flags, frozen) in [
        (".rodata", maps::BPF_F_RDONLY_PROG | BPF_F_MMAPABLE, true),
        (".data", BPF_F_MMAPABLE, false),
    ] {
        let mut s = spec(types::ARRAY, 4, data.len() as u32, 1, flags);
        s.name = name.into();
        s.global_data = true;
        s.data = Some(data.clone());
        let km = kcreate(&s, None).expect("kernel array");
        // libbpf writes the section's bytes, then freezes the read-only one.
        agree(
            name,
            &Outcome::Ok(None),
            &km.update(&0u32.to_ne_bytes(), &data, 0),
        );
        if frozen {
            // SAFETY: our own descriptor.
            assert_eq!(unsafe { libbpf_sys::bpf_map_freeze(km.fd) }, 0, "freeze");
        }
        let mine = maps::create(&s, 1).expect("our array");
        let other = vec![0xeeu8; data.len()];
        for key in [0u32, 1] {
            let k = key.to_ne_bytes();
            let what = |op: &str| format!("{name} {op} key {key}");
            for flags in [0, 1, 2, 4, 8] {
                agree(
                    &what(&format!("update {flags}")),
                    &ours(mine.write(&k, &other, flags), |()| None),
                    &km.update(&k, &other, flags),
                );
            }
            agree(
                &what("delete"),
                &ours(mine.delete(&k), |()| None),
                &km.delete(&k),
            );
            agree(&what("lookup"), &lookup_ours(&*mine, &k), &km.lookup(&k));
        }
    }
}

#[test]
fn lpm_trie_matches_the_kernel() {
    if skip() {
        return;
    }
    // Creation rules: NO_PREALLOC required, key 4 + 1..=256, value non-zero.
    for (k, v, f) in [
        (8, 4, 0),
        (8, 4, BPF_F_NO_PREALLOC),
        (4, 4, BPF_F_NO_PREALLOC),
        (4 + 256, 4, BPF_F_NO_PREALLOC),
        (4 + 257, 4, BPF_F_NO_PREALLOC),
        (8, 0, BPF_F_NO_PREALLOC),
        (8, 4, BPF_F_NO_PREALLOC | 0x40),
    ] {
        same_creation(&spec(types::LPM_TRIE, k, v, 16, f));
    }
    for data in [4usize, 2] {
        let s = spec(types::LPM_TRIE, 4 + data as u32, 4, 12, BPF_F_NO_PREALLOC);
        let km = kcreate(&s, None).expect("kernel lpm");
        let om = maps::create(&s, 1).expect("our lpm");
        let mut rng = Rng(0x1f2e3d4c5b6a7988 ^ data as u64);
        for step in 0..4000 {
            let key = lpm_key(&mut rng, data);
            let what = format!("lpm{data} step {step} key {key:02x?}");
            match rng.below(10) {
                0..=3 => {
                    let flags = [0, 0, 1, 2, 3][rng.below(5) as usize];
                    let value = (step as u32).to_ne_bytes();
                    let o = ours(om.write(&key, &value, flags), |_| None);
                    agree(
                        &format!("{what} update {flags}"),
                        &o,
                        &km.update(&key, &value, flags),
                    );
                }
                4..=5 => agree(
                    &format!("{what} delete"),
                    &ours(om.delete(&key), |_| None),
                    &km.delete(&key),
                ),
                6..=8 => agree(
                    &format!("{what} lookup"),
                    &lookup_ours(om.as_ref(), &key),
                    &km.lookup(&key),
                ),
                _ => agree(
                    &format!("{what} next_key"),
                    &next_ours(om.as_ref(), Some(&key)),
                    &km.next_key(Some(&key)),
                ),
            }
            if step % 50 == 0 {
                assert_eq!(walk_ours(om.as_ref()), km.walk(), "{what}: walk order");
            }
        }
        assert_eq!(walk_ours(om.as_ref()), km.walk(), "lpm{data}: final walk");
        // The kernel's NULL-key start.
        agree(
            "first key",
            &next_ours(om.as_ref(), None),
            &km.next_key(None),
        );
    }
}

#[test]
fn queue_and_stack_match_the_kernel() {
    if skip() {
        return;
    }
    for t in [types::QUEUE, types::STACK] {
        for (k, v, f) in [(0, 4, 0), (4, 4, 0), (0, 0, 0), (0, 4, BPF_F_NO_PREALLOC)] {
            same_creation(&spec(t, k, v, 4, f));
        }
        let s = spec(t, 0, 4, 5, 0);
        let km = kcreate(&s, None).expect("kernel queue");
        let om = maps::create(&s, 1).expect("our queue");
        let q = om.as_any().downcast_ref::<QueueMap>().expect("a QueueMap");
        let mut rng = Rng(0x5eed ^ t as u64);
        for step in 0..3000u32 {
            let what = format!("{} step {step}", types::name(t));
            match rng.below(9) {
                0..=3 => {
                    let flags = [0, 0, 2, 2, 1, 3][rng.below(6) as usize];
                    let v = step.to_ne_bytes();
                    agree(
                        &format!("{what} push {flags}"),
                        &ours(om.write(&[], &v, flags), |_| None),
                        &km.update(&[], &v, flags),
                    );
                }
                4..=5 => agree(&format!("{what} pop"), &ours(q.pop(), Some), &km.pop()),
                6 => agree(
                    &format!("{what} peek"),
                    &lookup_ours(om.as_ref(), &[]),
                    &km.lookup(&[]),
                ),
                7 => agree(
                    &format!("{what} delete"),
                    &ours(om.delete(&[]), |_| None),
                    &km.delete(&[]),
                ),
                _ => agree(
                    &format!("{what} next_key"),
                    &next_ours(om.as_ref(), None),
                    &km.next_key(None),
                ),
            }
        }
    }
}

#[test]
fn ringbuf_creation_and_consumer() {
    if skip() {
        return;
    }
    for (k, v, max) in [
        (0, 0, 4096),
        (0, 0, 8192),
        (0, 0, 4096 * 3),
        (0, 0, 2048),
        (4, 0, 4096),
        (0, 4, 4096),
    ] {
        same_creation(&spec(types::RINGBUF, k, v, max, 0));
    }
    // A consumer on another thread while two producers write through `Arc<dyn Map>`.
    let m: Arc<dyn Map> = maps::create(&spec(types::RINGBUF, 0, 0, 16384, 0), 2).unwrap();
    let producers: Vec<_> = (0..2u32)
        .map(|p| {
            let m = m.clone();
            std::thread::spawn(move || {
                let rb = m.as_any().downcast_ref::<RingBufMap>().unwrap();
                let mut i = 0u32;
                while i < 50_000 {
                    if rb.output(&[p.to_ne_bytes(), i.to_ne_bytes()].concat()) {
                        i += 1;
                    }
                }
            })
        })
        .collect();
    let rb = m.as_any().downcast_ref::<RingBufMap>().unwrap();
    let mut next = [0u32; 2];
    while next != [50_000; 2] {
        rb.consume(|r| {
            let p = u32::from_ne_bytes(r[..4].try_into().unwrap()) as usize;
            let i = u32::from_ne_bytes(r[4..8].try_into().unwrap());
            assert_eq!(i, next[p], "producer {p} out of order");
            next[p] += 1;
        });
    }
    for p in producers {
        p.join().unwrap();
    }
}

#[test]
fn devmap_hash_matches_the_kernel() {
    if skip() {
        return;
    }
    for (k, v, f) in [
        (4, 4, 0),
        (4, 8, 0),
        (8, 4, 0),
        (4, 12, 0),
        (4, 4, BPF_F_NO_PREALLOC),
    ] {
        same_creation(&spec(types::DEVMAP_HASH, k, v, 8, f));
    }
    let s = spec(types::DEVMAP_HASH, 4, 8, 6, 0);
    let km = kcreate(&s, None).expect("kernel devmap_hash");
    let om = maps::create(&s, 1).expect("our devmap_hash");
    let mut rng = Rng(0xdead_beef);
    let lo: u32 = 1; // loopback: the kernel checks that the ifindex exists.
    for step in 0..3000 {
        // Keys collide in the 8 buckets (6 entries round up to 8).
        let key = ((rng.below(12) as u32) * 5).to_ne_bytes();
        let what = format!("devmap_hash step {step} key {}", u32::from_ne_bytes(key));
        match rng.below(8) {
            0..=2 => {
                let flags = [0, 1, 2, 3][rng.below(4) as usize];
                // Mostly loopback; sometimes an ifindex no interface has (EINVAL in both).
                let ifindex = if rng.below(6) == 0 { 0x7fff_0000 } else { lo };
                let value = [ifindex.to_ne_bytes(), (-1i32).to_ne_bytes()].concat();
                agree(
                    &format!("{what} update {flags}"),
                    &ours(om.write(&key, &value, flags), |_| None),
                    &km.update(&key, &value, flags),
                );
            }
            3..=4 => agree(
                &format!("{what} delete"),
                &ours(om.delete(&key), |_| None),
                &km.delete(&key),
            ),
            5..=6 => agree(
                &format!("{what} lookup"),
                &lookup_ours(om.as_ref(), &key),
                &km.lookup(&key),
            ),
            _ => agree(
                &format!("{what} next_key"),
                &next_ours(om.as_ref(), Some(&key)),
                &km.next_key(Some(&key)),
            ),
        }
        if step % 25 == 0 {
            assert_eq!(walk_ours(om.as_ref()), km.walk(), "{what}: walk order");
        }
    }
}

#[test]
fn maps_of_maps_match_the_kernel() {
    if skip() {
        return;
    }
    let inner = spec(types::ARRAY, 4, 8, 4, 0);
    let kinner = kcreate(&inner, None).expect("kernel inner");
    let other = spec(types::ARRAY, 4, 8, 5, 0);
    let kother = kcreate(&other, None).expect("kernel other inner");
    for outer_type in [types::ARRAY_OF_MAPS, types::HASH_OF_MAPS] {
        let mut s = spec(outer_type, 4, 4, 3, 0);
        s.inner = Some(Box::new(inner.clone()));
        let km = kcreate(&s, Some(kinner.fd)).expect("kernel outer");
        let om = maps::create(&s, 1).expect("our outer");
        let mom = om.as_any().downcast_ref::<MapOfMaps>().expect("MapOfMaps");
        let name = types::name(outer_type);
        let mut rng = Rng(0xabc ^ outer_type as u64);
        for step in 0..600 {
            let key = (rng.below(5) as u32).to_ne_bytes();
            let what = format!("{name} step {step} key {}", u32::from_ne_bytes(key));
            match rng.below(6) {
                0..=2 => {
                    let flags = [0, 0, 1, 2, 3][rng.below(5) as usize];
                    let compatible = rng.below(4) != 0;
                    let (kfd, ospec) = if compatible {
                        (kinner.fd, &inner)
                    } else {
                        (kother.fd, &other)
                    };
                    let o = ours(
                        mom.set(&key, maps::create(ospec, 1).unwrap(), flags),
                        |_| None,
                    );
                    agree(
                        &format!("{what} set {flags} compatible {compatible}"),
                        &o,
                        &km.update(&key, &kfd.to_ne_bytes(), flags),
                    );
                }
                3 => agree(
                    &format!("{what} delete"),
                    &ours(om.delete(&key), |_| None),
                    &km.delete(&key),
                ),
                _ => {
                    // Values are map ids: compare presence only.
                    let present = |o: Outcome| match o {
                        Outcome::Ok(v) => Outcome::Ok(v.map(|_| Vec::new())),
                        e => e,
                    };
                    agree(
                        &format!("{what} lookup"),
                        &present(lookup_ours(om.as_ref(), &key)),
                        &present(km.lookup(&key)),
                    );
                }
            }
        }
        let mut ow = walk_ours(om.as_ref());
        let mut kw = km.walk();
        // Hash-of-maps order depends on the kernel's random hash seed: compare as sets.
        ow.sort();
        kw.sort();
        assert_eq!(ow, kw, "{name}: keys");
    }
}

fn engines() -> Vec<userxdp_runtime::vm::instance::VmOptions> {
    use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, VmOptions};
    [
        (Engine::Interpreter, SafetyPolicy::Kernel),
        (Engine::Jit, SafetyPolicy::Kernel),
        (Engine::Jit, SafetyPolicy::Guarded),
    ]
    .into_iter()
    .map(|(engine, safety)| VmOptions {
        engine,
        safety,
        ncpus: 2,
        ..VmOptions::default()
    })
    .collect()
}

fn load(
    name: &str,
    opts: userxdp_runtime::vm::instance::VmOptions,
) -> userxdp_runtime::vm::instance::Vm {
    let bytes = userxdp_programs::bytes(name).expect("program built");
    let spec = userxdp_runtime::object::parse(&bytes).expect("parse");
    userxdp_runtime::vm::instance::Vm::new(spec, Some(&bytes), Some(name), opts).expect("load")
}

/// A 60-byte frame starting with bytes `a`, `b`.
fn packet(a: u8, b: u8) -> Vec<u8> {
    let mut p = vec![0u8; 60];
    p[0] = a;
    p[1] = b;
    p
}

/// Inner maps set from userspace are reached through the outer map's lookup result, in every
/// engine (the JIT's inline array lookup reads the inner handle; checked runs accept it).
#[test]
fn program_reaches_inner_maps() {
    use userxdp_runtime::context::XdpFrame;
    if skip() {
        return;
    }
    for opts in engines() {
        let what = format!("{:?}/{:?}", opts.engine, opts.safety);
        let vm = load("xdp_map_in_map", opts);
        let outer_a = vm.map("outer_array").unwrap().clone();
        let outer_h = vm.map("outer_hash").unwrap().clone();
        let oa = outer_a.as_any().downcast_ref::<MapOfMaps>().unwrap();
        let oh = outer_h.as_any().downcast_ref::<MapOfMaps>().unwrap();
        let inner_a = oa.create_inner("inner_a").unwrap();
        let inner_h = oh.create_inner("inner_h").unwrap();
        oa.set(&0u32.to_ne_bytes(), inner_a.clone(), 0).unwrap();
        oh.set(&0u32.to_ne_bytes(), inner_h.clone(), 0).unwrap();
        let mut runner = vm.runner(0);
        let mut frame = XdpFrame::new().unwrap();
        let mut verdicts = Vec::new();
        for _ in 0..3 {
            frame.load(&packet(0, 2)).unwrap();
            verdicts.push(runner.run_xdp(&mut frame).expect(&what).retval);
        }
        // Slot 1 is empty: the program passes.
        frame.load(&packet(1, 2)).unwrap();
        verdicts.push(runner.run_xdp(&mut frame).expect(&what).retval);
        assert_eq!(verdicts, vec![1, 3, 1, 2], "{what}: verdicts");
        assert_eq!(
            inner_a.read(&2u32.to_ne_bytes()).unwrap(),
            3u64.to_ne_bytes(),
            "{what}"
        );
        assert_eq!(
            inner_h.read(&2u32.to_ne_bytes()).unwrap(),
            21u64.to_ne_bytes(),
            "{what}"
        );
        // Replacing the inner map redirects later runs.
        let fresh = oa.create_inner("inner_b").unwrap();
        oa.set(&0u32.to_ne_bytes(), fresh.clone(), 0).unwrap();
        frame.load(&packet(0, 2)).unwrap();
        runner.run_xdp(&mut frame).expect(&what);
        assert_eq!(
            fresh.read(&2u32.to_ne_bytes()).unwrap(),
            1u64.to_ne_bytes(),
            "{what}"
        );
        assert_eq!(
            inner_a.read(&2u32.to_ne_bytes()).unwrap(),
            3u64.to_ne_bytes(),
            "{what}"
        );
    }
}

/// A consumer thread drains the ring while the program produces, in every engine.
#[test]
fn program_ringbuf_records_reach_a_consumer() {
    use userxdp_runtime::context::XdpFrame;
    if skip() {
        return;
    }
    for opts in engines() {
        let what = format!("{:?}/{:?}", opts.engine, opts.safety);
        let vm = load("xdp_ringbuf", opts);
        let map = vm.map("events").unwrap().clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let consumer = {
            let (map, stop) = (map.clone(), stop.clone());
            std::thread::spawn(move || {
                let rb = map.as_any().downcast_ref::<RingBufMap>().unwrap();
                let mut got: Vec<Vec<u8>> = Vec::new();
                loop {
                    let done = stop.load(std::sync::atomic::Ordering::Acquire);
                    rb.consume(|r| got.push(r.to_vec()));
                    if done {
                        return got;
                    }
                }
            })
        };
        let mut runner = vm.runner(0);
        let mut frame = XdpFrame::new().unwrap();
        let mut placed = Vec::new();
        for i in 0..5000u32 {
            // Byte 0: 0 = reserve+submit, 1 = reserve+discard, 2 = output.
            let op = [0u8, 1, 2][i as usize % 3];
            let mut pkt = vec![op; 60];
            pkt[4..8].copy_from_slice(&i.to_ne_bytes());
            // A full ring fails the run's reserve/output (verdict DROP or TX): retry until the
            // consumer has made room, which it must.
            let mut tries = 0u32;
            loop {
                frame.load(&pkt).unwrap();
                if runner.run_xdp(&mut frame).expect(&what).retval == 2 {
                    break;
                }
                tries += 1;
                assert!(tries < 10_000_000, "{what}: the consumer never made room");
                std::thread::yield_now();
            }
            if op != 1 {
                placed.push(pkt);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        let got = consumer.join().unwrap();
        assert_eq!(got.len(), placed.len(), "{what}: records consumed");
        for (rec, pkt) in got.iter().zip(&placed) {
            // struct event { u32 len; u8 head[16]; }
            assert_eq!(rec.len(), 20, "{what}");
            assert_eq!(&rec[..4], &60u32.to_ne_bytes(), "{what}");
            assert_eq!(&rec[4..20], &pkt[..16], "{what}");
        }
    }
}

/// `bpf_redirect_map` on a DEVMAP_HASH filled the same way on both sides: the same verdicts
/// packet by packet, and the redirect target recorded for the datapath.
#[test]
fn redirect_map_on_devmap_hash_matches_the_kernel() {
    use userxdp_runtime::context::XdpFrame;
    use userxdp_runtime::vm::env::Redirect;
    if skip() {
        return;
    }
    let bytes = userxdp_programs::bytes("xdp_devmap_hash").expect("built");
    let oracle = kernel::Oracle::load(&bytes, None).expect("kernel load");
    let keys = [3u32, 7, 12];
    for k in keys {
        oracle
            .map_update("devs", &k.to_ne_bytes(), &1u32.to_ne_bytes(), 0)
            .expect("kernel devmap update");
    }
    for opts in engines() {
        let what = format!("{:?}/{:?}", opts.engine, opts.safety);
        let vm = load("xdp_devmap_hash", opts);
        let devs = vm.map("devs").unwrap().clone();
        for k in keys {
            devs.write(&k.to_ne_bytes(), &1u32.to_ne_bytes(), 0)
                .unwrap();
        }
        let mut runner = vm.runner(0);
        let mut frame = XdpFrame::new().unwrap();
        for a in 0..16u8 {
            for b in 0..3u8 {
                let pkt = packet(a, b);
                let k = oracle.test_run("xdp_devmap_hash", &pkt, 1).unwrap();
                frame.load(&pkt).unwrap();
                let r = runner.run_xdp(&mut frame).expect(&what);
                assert_eq!(r.retval as u32, k.retval, "{what}: key {a} fallback {b}");
                if keys.contains(&(a as u32)) {
                    assert!(
                        matches!(r.redirect, Redirect::Map { key, .. } if key == a as u32),
                        "{what}: redirect {:?}",
                        r.redirect
                    );
                }
            }
        }
    }
}
