//! Concurrency stress of the hash maps: threads update, delete, look up and iterate the same
//! HASH / LRU_HASH map at once, and readers check every value they see through a lookup
//! pointer, before and after other threads replaced or deleted the element. A value is written
//! with a checksum pattern, so a torn, recycled or freed value shows up as a bad checksum.
//!
//! Bounded: each map type runs for `RUN_FOR`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use userxdp_runtime::maps::{self, epoch, flags, types, Map, MapError};
use userxdp_runtime::object::spec::{MapSpec, Pinning};

const RUN_FOR: Duration = Duration::from_millis(1200);
const VALUE_WORDS: usize = 4;
const MAGIC: u64 = 0x5eed_c0de_f00d_cafe;

fn spec(map_type: u32, max_entries: u32) -> MapSpec {
    MapSpec {
        name: "stress".into(),
        map_type,
        key_size: 8,
        value_size: (VALUE_WORDS * 8) as u32,
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
    }
}

/// The value written for `key` by write number `seq`.
fn value(key: u64, seq: u64) -> [u8; VALUE_WORDS * 8] {
    let w1 = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key;
    let words = [seq, w1, !w1, seq ^ w1 ^ !w1 ^ MAGIC];
    let mut out = [0u8; VALUE_WORDS * 8];
    for (i, w) in words.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Checks a value read through a lookup pointer; returns the write number.
fn check(key: u64, words: [u64; VALUE_WORDS], max_seq: u64) -> u64 {
    let [seq, w1, w2, w3] = words;
    assert!(
        seq < max_seq
            && w1 == seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key
            && w2 == !w1
            && w3 == seq ^ w1 ^ w2 ^ MAGIC,
        "key {key}: value {words:x?} was never written (freed or torn memory)"
    );
    seq
}

/// Reads the value behind a lookup pointer as a program would (plain loads).
///
/// # Safety
/// `p` came from a lookup of the map by this thread, which has stayed pinned since.
unsafe fn read_value(p: std::ptr::NonNull<u8>) -> [u64; VALUE_WORDS] {
    let mut w = [0u64; VALUE_WORDS];
    for (i, slot) in w.iter_mut().enumerate() {
        // SAFETY: caller's contract: the value (32 bytes, 8-aligned) is not freed while pinned.
        *slot = unsafe { std::ptr::read_volatile(p.as_ptr().cast::<u64>().add(i)) };
    }
    w
}

struct Counters {
    lookups_hit: AtomicU64,
    updates: AtomicU64,
    deletes: AtomicU64,
    full: AtomicU64,
    held_checks: AtomicU64,
}

fn stress(map_type: u32, max_entries: u32, keys: u64) {
    let map: Arc<dyn Map> = maps::create(&spec(map_type, max_entries), 2).expect("create");
    // Write numbers handed out so far: any value seen must have a smaller one.
    let seq = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Counters {
        lookups_hit: AtomicU64::new(0),
        updates: AtomicU64::new(0),
        deletes: AtomicU64::new(0),
        full: AtomicU64::new(0),
        held_checks: AtomicU64::new(0),
    });
    const WRITERS: usize = 2;
    const READERS: usize = 2;
    let barrier = Arc::new(Barrier::new(WRITERS + READERS + 1));
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let (map, seq, stop, c, barrier) = (
            map.clone(),
            seq.clone(),
            stop.clone(),
            c.clone(),
            barrier.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = 0x1234_5678u64 + w as u64;
            barrier.wait();
            while !stop.load(Ordering::Relaxed) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let key = rng % keys;
                if rng >> 60 < 3 {
                    match map.delete(&key.to_le_bytes()) {
                        Ok(()) => c.deletes.fetch_add(1, Ordering::Relaxed),
                        Err(MapError::NotFound) => 0,
                        Err(e) => panic!("delete: {e}"),
                    };
                } else {
                    let s = seq.fetch_add(1, Ordering::Relaxed);
                    let f = [flags::BPF_ANY, flags::BPF_NOEXIST, flags::BPF_EXIST]
                        [(rng >> 40) as usize % 3];
                    // Program-side update (worker w's CPU) and user-side write alternate.
                    let r = if rng & 1 == 0 {
                        map.update(&key.to_le_bytes(), &value(key, s), f, w as u32)
                    } else {
                        map.write(&key.to_le_bytes(), &value(key, s), f)
                    };
                    match r {
                        Ok(()) => c.updates.fetch_add(1, Ordering::Relaxed),
                        Err(MapError::TooBig) => c.full.fetch_add(1, Ordering::Relaxed),
                        Err(MapError::Exists | MapError::NotFound) => 0,
                        Err(e) => panic!("update: {e}"),
                    };
                }
            }
        }));
    }
    for r in 0..READERS {
        let (map, seq, stop, c, barrier) = (
            map.clone(),
            seq.clone(),
            stop.clone(),
            c.clone(),
            barrier.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = 0xdead_beefu64 + r as u64;
            barrier.wait();
            while !stop.load(Ordering::Relaxed) {
                // One "batch": pinned once, many lookups, pointers kept until the end.
                let pin = epoch::pin();
                let mut held = Vec::new();
                for _ in 0..64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let key = rng % keys;
                    if let Some(p) = map.lookup(&key.to_le_bytes(), r as u32) {
                        // SAFETY: pinned since the lookup.
                        let words = unsafe { read_value(p) };
                        check(key, words, seq.load(Ordering::Relaxed));
                        c.lookups_hit.fetch_add(1, Ordering::Relaxed);
                        held.push((key, p, words));
                    }
                }
                // Other threads have replaced and deleted meanwhile: the pointers from the
                // start of the batch must still show exactly what they showed then (a
                // replaced element is never written again).
                for (key, p, words) in held {
                    // SAFETY: still pinned.
                    let again = unsafe { read_value(p) };
                    assert_eq!(
                        words, again,
                        "key {key}: value changed under a held pointer"
                    );
                    c.held_checks.fetch_add(1, Ordering::Relaxed);
                }
                drop(pin);
                // Control-plane style reads and iteration.
                let key = rng % keys;
                match map.read(&key.to_le_bytes()) {
                    Ok(v) => {
                        let mut w = [0u64; VALUE_WORDS];
                        for (i, slot) in w.iter_mut().enumerate() {
                            *slot = u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
                        }
                        check(key, w, seq.load(Ordering::Relaxed));
                    }
                    Err(MapError::NotFound) => {}
                    Err(e) => panic!("read: {e}"),
                }
                let mut cur: Option<Vec<u8>> = None;
                for _ in 0..keys * 2 {
                    match map.next_key(cur.as_deref()).expect("next_key") {
                        Some(k) => {
                            assert!(u64::from_le_bytes(k[..8].try_into().unwrap()) < keys);
                            cur = Some(k);
                        }
                        None => break,
                    }
                }
            }
        }));
    }
    barrier.wait();
    let start = Instant::now();
    while start.elapsed() < RUN_FOR {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("stress thread panicked");
    }
    // The map is still consistent: every key iterates once, every value checks out.
    let mut n = 0;
    let mut cur: Option<Vec<u8>> = None;
    while let Some(k) = map.next_key(cur.as_deref()).unwrap() {
        let key = u64::from_le_bytes(k[..8].try_into().unwrap());
        let v = map.read(&k).unwrap();
        let w: Vec<u64> = v
            .chunks(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        check(key, [w[0], w[1], w[2], w[3]], seq.load(Ordering::Relaxed));
        n += 1;
        cur = Some(k);
    }
    assert!(
        n <= max_entries as usize,
        "{n} elements in a map of {max_entries}"
    );
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "{}: {} hits, {} held-pointer checks, {} updates, {} deletes, {} E2BIG, {n} left",
        types::name(map_type),
        get(&c.lookups_hit),
        get(&c.held_checks),
        get(&c.updates),
        get(&c.deletes),
        get(&c.full),
    );
    assert!(get(&c.lookups_hit) > 1000 && get(&c.updates) > 1000);
    if map_type == types::LRU_HASH {
        assert_eq!(get(&c.full), 0, "a full LRU map refused inserts");
    } else {
        assert!(get(&c.full) > 0, "the key range should overflow the map");
    }
}

#[test]
fn hash_survives_concurrent_updates_deletes_and_lookups() {
    stress(types::HASH, 64, 128);
}

#[test]
fn lru_hash_survives_concurrent_updates_deletes_and_lookups() {
    stress(types::LRU_HASH, 64, 256);
}
