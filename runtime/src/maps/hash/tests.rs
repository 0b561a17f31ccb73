//! Single-threaded semantics of the hash family (concurrency: `tests/hash_stress.rs`; the
//! kernel comparison: `tests/hash_semantics.rs`).

use super::*;
use crate::maps::flags::{BPF_ANY, BPF_EXIST, BPF_NOEXIST};

fn spec(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> MapSpec {
    MapSpec {
        name: "t".into(),
        map_type,
        key_size,
        value_size,
        max_entries,
        flags: 0,
        inner: None,
        data: None,
        pinning: crate::object::spec::Pinning::None,
        global_data: false,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        spin_lock_offset: None,
        initial_slots: Vec::new(),
    }
}

fn k(i: u32) -> [u8; 4] {
    i.to_le_bytes()
}

fn v(i: u64) -> [u8; 8] {
    i.to_le_bytes()
}

#[test]
fn flags_and_errors() {
    let m = HashMap::new(spec(types::HASH, 4, 8, 2), 1);
    assert_eq!(m.write(&k(1), &v(1), BPF_EXIST), Err(MapError::NotFound));
    m.write(&k(1), &v(1), BPF_NOEXIST).unwrap();
    assert_eq!(m.write(&k(1), &v(2), BPF_NOEXIST), Err(MapError::Exists));
    m.write(&k(1), &v(3), BPF_EXIST).unwrap();
    assert_eq!(m.read(&k(1)).unwrap(), v(3));
    m.write(&k(2), &v(2), BPF_ANY).unwrap();
    assert_eq!(m.write(&k(3), &v(3), BPF_ANY), Err(MapError::TooBig));
    // Replacing an element of a full map works.
    m.write(&k(2), &v(4), BPF_ANY).unwrap();
    assert!(matches!(
        m.write(&k(2), &v(4), 3),
        Err(MapError::Invalid(_))
    ));
    assert_eq!(m.delete(&k(9)), Err(MapError::NotFound));
    m.delete(&k(1)).unwrap();
    assert_eq!(m.read(&k(1)), Err(MapError::NotFound));
    m.write(&k(3), &v(3), BPF_ANY).unwrap();
    assert_eq!(m.len(), 2);
}

#[test]
fn replace_keeps_old_pointer_and_atomic_ops_hit_live_element() {
    let m = HashMap::new(spec(types::HASH, 4, 8, 4), 1);
    m.write(&k(1), &v(10), BPF_ANY).unwrap();
    let _pin = epoch::pin();
    let old = m.lookup(&k(1), 0).unwrap();
    m.update(&k(1), &v(20), BPF_ANY, 0).unwrap();
    // SAFETY: pinned since the lookup: the replaced element is not freed yet.
    assert_eq!(unsafe { old.as_ptr().cast::<u64>().read() }, 10);
    let live = m.lookup(&k(1), 0).unwrap();
    // SAFETY: as above; a program's atomic add on the live element.
    unsafe {
        (*live.as_ptr().cast::<std::sync::atomic::AtomicU64>())
            .fetch_add(5, std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(m.read(&k(1)).unwrap(), v(25));
}

#[test]
fn percpu_updates_in_place_per_cpu() {
    let m = HashMap::new(spec(types::PERCPU_HASH, 4, 4, 4), 3);
    m.update(&k(1), &7u32.to_le_bytes(), BPF_ANY, 1).unwrap();
    let all = m.read(&k(1)).unwrap();
    assert_eq!(all.len(), 24);
    assert_eq!(&all[8..12], &7u32.to_le_bytes());
    assert!(all[..8].iter().chain(&all[16..]).all(|&b| b == 0));
    let _pin = epoch::pin();
    let p = m.lookup(&k(1), 1).unwrap();
    m.update(&k(1), &9u32.to_le_bytes(), BPF_EXIST, 1).unwrap();
    // SAFETY: pinned; per-CPU updates are in place, so the pointer sees the new value.
    assert_eq!(unsafe { p.as_ptr().cast::<u32>().read() }, 9);
    assert_eq!(m.write(&k(1), &[0; 12], BPF_ANY).map_err(|_| ()), Err(()));
    m.write(&k(1), &[1; 24], BPF_ANY).unwrap();
    assert_eq!(m.read(&k(1)).unwrap(), vec![1; 24]);
}

#[test]
fn lru_accepts_inserts_when_full_and_keeps_recent() {
    let m = HashMap::new(spec(types::LRU_HASH, 4, 8, 64), 1);
    for i in 0..64 {
        m.update(&k(i), &v(i as u64), BPF_NOEXIST, 0).unwrap();
    }
    // Keep 0..8 hot.
    for round in 0..200u32 {
        for i in 0..8 {
            assert!(
                m.lookup(&k(i), 0).is_some(),
                "hot key {i} evicted in round {round}"
            );
        }
        m.update(&k(1000 + round), &v(0), BPF_ANY, 0).unwrap();
        assert!(m.len() <= 64);
        assert!(m.read(&k(1000 + round)).is_ok(), "newest key missing");
    }
}

#[test]
fn next_key_iterates_every_key_once_and_restarts_on_missing() {
    let m = HashMap::new(spec(types::HASH, 4, 8, 100), 1);
    for i in 0..100 {
        m.write(&k(i), &v(0), BPF_ANY).unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cur: Option<Vec<u8>> = None;
    while let Some(n) = m.next_key(cur.as_deref()).unwrap() {
        assert!(seen.insert(n.clone()), "key repeated");
        cur = Some(n);
    }
    assert_eq!(seen.len(), 100);
    let first = m.next_key(None).unwrap();
    assert_eq!(m.next_key(Some(&k(5000))).unwrap(), first);
    // Replacing values does not disturb iteration order.
    let second = m.next_key(first.as_deref()).unwrap();
    m.write(first.as_deref().unwrap(), &v(1), BPF_ANY).unwrap();
    assert_eq!(m.next_key(first.as_deref()).unwrap(), second);
}
