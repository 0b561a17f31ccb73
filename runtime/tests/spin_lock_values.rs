//! Values holding a `struct bpf_spin_lock`, from the user side, against the kernel: updates
//! never write the lock word, reads show it as 0, `BPF_F_LOCK` updates work where the value
//! has a lock and are EINVAL where it has none (as root; skipped otherwise).

use userxdp_runtime::kernel::{self, KernelError, Oracle};
use userxdp_runtime::maps::flags::{BPF_ANY, BPF_F_LOCK};
use userxdp_runtime::object;
use userxdp_runtime::vm::instance::{Engine, Vm, VmOptions};

fn both(name: &str) -> Option<(Oracle, Vm)> {
    if let Err(e) = kernel::probe() {
        eprintln!("skipping: {e}");
        return None;
    }
    let bytes = userxdp_programs::bytes(name).expect("built");
    let oracle = Oracle::load(&bytes, None).unwrap();
    let vm = Vm::new(
        object::parse(&bytes).unwrap(),
        Some(&bytes),
        None,
        VmOptions {
            engine: Engine::Interpreter,
            ..VmOptions::default()
        },
    )
    .unwrap();
    Some((oracle, vm))
}

fn errno(e: &KernelError) -> Option<i32> {
    match e {
        KernelError::Syscall { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

#[test]
fn lock_words_are_never_written_and_read_as_zero() {
    let Some((oracle, vm)) = both("xdp_spin_lock") else {
        return;
    };
    // struct slot { lock @0; u32 last_len @4; u64 packets @8; u64 bytes @16 } (ARRAY)
    // struct proto_stat { u64 count @0; lock @8; u32 max_len @12 } (HASH)
    for (map, key, lock_at, size) in [
        ("lock_slots", 3u32, 0usize, 24usize),
        ("lock_protos", 17, 8, 16),
    ] {
        let ours = vm.map(map).unwrap();
        let key = key.to_ne_bytes();
        let mut value: Vec<u8> = (1..=size as u8).collect();
        // A "held" lock word in the value the user writes: never copied in.
        value[lock_at..lock_at + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        for flags in [BPF_ANY, BPF_F_LOCK] {
            oracle.map_update(map, &key, &value, flags).unwrap();
            ours.write(&key, &value, flags).unwrap();
            let k = oracle.map_lookup(map, &key).unwrap().unwrap();
            let u = ours.read(&key).unwrap();
            assert_eq!(u, k, "{map} flags {flags}: ours vs kernel");
            assert_eq!(
                &u[lock_at..lock_at + 4],
                &[0; 4],
                "{map}: lock word reads as 0"
            );
            let mut expected = value.clone();
            expected[lock_at..lock_at + 4].fill(0);
            assert_eq!(u, expected, "{map}: payload written around the lock");
        }
        // The element's real lock word stayed free: a program can still take it.
        let p = ours.lookup(&key, 0).unwrap();
        // SAFETY: the pointer is the live element's value of `size` bytes.
        let word = unsafe { std::ptr::read(p.as_ptr().add(lock_at) as *const u32) };
        assert_eq!(word, 0, "{map}: no update wrote the lock word");
    }
}

#[test]
fn f_lock_without_a_lock_in_the_value_is_einval_on_both_sides() {
    let Some((oracle, vm)) = both("xdp_maps") else {
        return;
    };
    let mut checked = 0;
    for (name, m) in vm.maps() {
        let spec = m.spec();
        if spec.global_data || !matches!(spec.map_type, 1 | 2 | 9) {
            continue;
        }
        let key = vec![0u8; spec.key_size as usize];
        let value = vec![0u8; spec.value_size as usize];
        let k = oracle
            .map_update(name, &key, &value, BPF_F_LOCK)
            .unwrap_err();
        assert_eq!(errno(&k), Some(libc::EINVAL), "{name}: kernel {k}");
        let u = m.write(&key, &value, BPF_F_LOCK).unwrap_err();
        assert_eq!(-u.errno() as i32, libc::EINVAL, "{name}: ours {u}");
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} maps checked");
}
