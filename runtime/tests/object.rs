//! Loader tests: C objects compiled at test time (when clang exists), the Debian xdp-tools
//! objects (when installed), malformed variants of both, and a no-panic sweep.

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{Rng, SeedableRng};
use userxdp_runtime::object::{
    self, AttachPoint, MapRefKind, ObjectError, ObjectSpec, ParseOptions, Pinning, ProgramSpec,
    ProgramType,
};
use userxdp_runtime::vm::insn::{DecodeError, Insn, PSEUDO_FUNC};

/// Compiles `tests/data/<name>.c` for BPF; `None` (with the reason printed) without clang.
fn compile(name: &str) -> Option<Vec<u8>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}.c"));
    // Tests run in parallel and compile the same sources: one output file per thread.
    let thread =
        format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_alphanumeric(), "");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{thread}.o"));
    let status = Command::new("clang")
        .args(["-target", "bpf", "-O2", "-g", "-mcpu=v3"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => Some(std::fs::read(&out).expect("read compiled object")),
        Ok(s) => panic!("clang failed on {}: {s}", src.display()),
        Err(e) => {
            eprintln!("skipping: clang not available ({e})");
            None
        }
    }
}

/// `(name, file offset, size)` of every section, read by hand so tests can patch bytes.
fn sections(b: &[u8]) -> Vec<(String, usize, usize)> {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let hdr = |i: usize| shoff + i * shentsize;
    let stroff = u64_at(hdr(shstrndx) + 0x18);
    (0..shnum)
        .map(|i| {
            let h = hdr(i);
            let name_off = stroff + u32_at(h);
            let end = b[name_off..].iter().position(|&c| c == 0).unwrap();
            let name = String::from_utf8_lossy(&b[name_off..name_off + end]).into_owned();
            (name, u64_at(h + 0x18), u64_at(h + 0x20))
        })
        .collect()
}

fn section(b: &[u8], name: &str) -> (usize, usize) {
    sections(b)
        .into_iter()
        .find(|s| s.0 == name)
        .map(|s| (s.1, s.2))
        .unwrap_or_else(|| panic!("no section {name}"))
}

fn insn_at(b: &[u8], off: usize) -> Insn {
    Insn::from_bytes(b[off..off + 8].try_into().unwrap())
}

fn prog<'a>(spec: &'a ObjectSpec, name: &str) -> &'a ProgramSpec {
    spec.programs
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no program {name}"))
}

/// Map names and reference kinds of a program's map relocations, each checked to sit on an
/// ld_imm64.
fn refs(spec: &ObjectSpec, p: &ProgramSpec) -> Vec<(String, MapRefKind)> {
    p.map_relocs
        .iter()
        .map(|r| {
            assert!(
                p.insns[r.insn].is_ld_imm64(),
                "{}: reloc on {:?}",
                p.name,
                r
            );
            (spec.maps[r.map].name.clone(), r.kind)
        })
        .collect()
}

/// Where every local call and callback reference of `p` lands: `(insn, target)`.
fn local_targets(p: &ProgramSpec) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pc = 0;
    while pc < p.insns.len() {
        let i = p.insns[pc];
        if (i.op == 0x85 && i.src == 1) || (i.is_ld_imm64() && i.src == PSEUDO_FUNC) {
            out.push((pc, (pc as i64 + 1 + i.imm as i64) as usize));
        }
        pc += if i.is_ld_imm64() { 2 } else { 1 };
    }
    out
}

fn entry(p: &ProgramSpec, name: &str) -> usize {
    p.subprograms
        .iter()
        .find(|s| s.1 == name)
        .unwrap_or_else(|| panic!("{} has no subprogram {name}: {:?}", p.name, p.subprograms))
        .0
}

#[test]
fn btf_maps_and_global_data() {
    let Some(bytes) = compile("obj_maps") else {
        return;
    };
    let spec = object::parse(&bytes).unwrap();
    assert_eq!(spec.license, "GPL");
    let hash = spec.map("hash_map").unwrap();
    assert_eq!(
        (
            hash.map_type,
            hash.key_size,
            hash.value_size,
            hash.max_entries,
            hash.flags
        ),
        (1, 8, 24, 1024, 1)
    );
    assert_eq!(hash.pinning, Pinning::ByName);
    assert!(hash.btf_key_type_id != 0 && hash.btf_value_type_id != 0);
    let arr = spec.map("array_map").unwrap();
    assert_eq!(
        (arr.map_type, arr.key_size, arr.value_size, arr.max_entries),
        (2, 4, 8, 16)
    );
    assert_eq!(arr.pinning, Pinning::None);
    let outer = spec.map("outer_map").unwrap();
    assert_eq!(
        (
            outer.map_type,
            outer.key_size,
            outer.value_size,
            outer.max_entries
        ),
        (12, 4, 4, 8)
    );
    let inner = outer.inner.as_deref().expect("inner template");
    assert_eq!(
        (
            inner.map_type,
            inner.key_size,
            inner.value_size,
            inner.max_entries
        ),
        (2, 4, 4, 4)
    );
    assert_eq!(inner.name, "outer_map.inner");

    let ro = spec.map(".rodata").unwrap();
    assert_eq!(
        (ro.map_type, ro.key_size, ro.value_size, ro.max_entries),
        (2, 4, 16, 1)
    );
    assert_eq!(ro.flags, (1 << 7) | (1 << 10));
    assert!(ro.global_data);
    let ro_data = ro.data.as_ref().unwrap();
    let data = spec.map(".data").unwrap();
    assert_eq!(data.flags, 1 << 10);
    let bss = spec.map(".bss").unwrap();
    assert_eq!(bss.data.as_deref(), Some(&[0u8; 16][..]));
    assert!(data.btf_value_type_id != 0);

    let p = prog(&spec, "use_maps");
    assert_eq!(
        (p.prog_type, p.attach, p.xdp_frags),
        (ProgramType::Xdp, AttachPoint::Any, false)
    );
    let r = refs(&spec, p);
    for m in ["hash_map", "array_map", "outer_map"] {
        assert!(r.contains(&(m.to_string(), MapRefKind::Map)), "{m}: {r:?}");
    }
    // ro_a = 7 and ro_b = 9 sit at the offsets the relocations point to.
    let mut ro_offsets: Vec<u32> = r
        .iter()
        .filter(|(n, _)| n == ".rodata")
        .map(|(_, k)| match k {
            MapRefKind::Value { offset } => *offset,
            MapRefKind::Map => panic!("map ref to .rodata"),
        })
        .collect();
    ro_offsets.sort();
    ro_offsets.dedup();
    let vals: Vec<u8> = ro_offsets.iter().map(|&o| ro_data[o as usize]).collect();
    assert_eq!(
        vals.iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [7, 9].into()
    );
    for sec in [".data", ".bss"] {
        let mut offs: Vec<_> = r
            .iter()
            .filter(|(n, _)| n == sec)
            .map(|(_, k)| *k)
            .collect();
        offs.sort_by_key(|k| format!("{k:?}"));
        offs.dedup();
        assert_eq!(
            offs,
            vec![
                MapRefKind::Value { offset: 0 },
                MapRefKind::Value { offset: 8 }
            ],
            "{sec}"
        );
    }
}

#[test]
fn legacy_maps_20_bytes() {
    let Some(bytes) = compile("obj_legacy20") else {
        return;
    };
    let spec = object::parse(&bytes).unwrap();
    let a = spec.map("legacy_a").unwrap();
    assert_eq!(
        (a.map_type, a.key_size, a.value_size, a.max_entries, a.flags),
        (2, 4, 8, 4, 0)
    );
    let b = spec.map("legacy_b").unwrap();
    assert_eq!(
        (b.map_type, b.key_size, b.value_size, b.max_entries, b.flags),
        (1, 8, 16, 100, 1)
    );
    let r = refs(&spec, prog(&spec, "legacy"));
    assert!(r.contains(&("legacy_a".into(), MapRefKind::Map)));
    assert!(r.contains(&("legacy_b".into(), MapRefKind::Map)));
}

#[test]
fn legacy_maps_28_bytes_with_inner() {
    let Some(bytes) = compile("obj_legacy28") else {
        return;
    };
    let spec = object::parse(&bytes).unwrap();
    let outer = spec.map("outer").unwrap();
    assert_eq!(outer.map_type, 12);
    let inner = outer.inner.as_deref().unwrap();
    assert_eq!(
        (inner.name.as_str(), inner.map_type, inner.value_size),
        ("inner_tmpl", 2, 4)
    );
    let r = refs(&spec, prog(&spec, "legacy28"));
    assert_eq!(r, vec![("outer".to_string(), MapRefKind::Map)]);
}

#[test]
fn programs_subprograms_and_section_names() {
    let Some(bytes) = compile("obj_calls") else {
        return;
    };
    let spec = object::parse(&bytes).unwrap();
    assert_eq!(spec.license, "Dual BSD/GPL");
    let names: Vec<_> = spec
        .programs
        .iter()
        .map(|p| (p.section.as_str(), p.name.as_str()))
        .collect();
    assert_eq!(&names[..2], &[("xdp", "first"), ("xdp", "second")]);

    // first -> middle (global, relocated call) -> leaf (static, unrelocated call).
    let first = prog(&spec, "first");
    let subs: Vec<_> = first.subprograms.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(subs, ["middle", "leaf"]);
    let (middle, leaf) = (entry(first, "middle"), entry(first, "leaf"));
    let t = local_targets(first);
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[0].1, middle);
    assert_eq!(t[1].1, leaf);
    assert!(
        t[1].0 > middle && t[1].0 < leaf,
        "nested call sits in middle"
    );
    // Map references of the appended code travel with it.
    let r: Vec<_> = first
        .map_relocs
        .iter()
        .map(|r| (spec.maps[r.map].name.as_str(), r.insn))
        .collect();
    assert!(r.iter().any(|&(n, i)| n == "counter" && i > leaf), "{r:?}");
    assert!(
        r.iter()
            .any(|&(n, i)| n == ".bss" && i > middle && i < leaf),
        "{r:?}"
    );
    refs(&spec, first);

    // second -> leaf directly, and loop_cb as a bpf_loop callback.
    let second = prog(&spec, "second");
    let subs: Vec<_> = second.subprograms.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(subs.len(), 2);
    assert!(
        subs.contains(&"leaf") && subs.contains(&"loop_cb"),
        "{subs:?}"
    );
    let targets: Vec<_> = local_targets(second).into_iter().map(|t| t.1).collect();
    assert!(targets.contains(&entry(second, "leaf")));
    assert!(targets.contains(&entry(second, "loop_cb")));
    let cb = local_targets(second)
        .into_iter()
        .find(|t| t.1 == entry(second, "loop_cb"))
        .unwrap();
    assert!(second.insns[cb.0].is_ld_imm64() && second.insns[cb.0].src == PSEUDO_FUNC);
    refs(&spec, second);
    for p in &spec.programs {
        userxdp_runtime::vm::insn::validate(&p.insns).unwrap();
    }

    let egress = prog(&spec, "egress");
    assert_eq!(egress.subprograms.len(), 2);
    let kinds = |n: &str| {
        let p = prog(&spec, n);
        (p.prog_type, p.attach, p.xdp_frags)
    };
    assert_eq!(kinds("frags"), (ProgramType::Xdp, AttachPoint::Any, true));
    assert_eq!(
        kinds("devmap"),
        (ProgramType::Xdp, AttachPoint::XdpDevmap, false)
    );
    assert_eq!(
        kinds("cpumap"),
        (ProgramType::Xdp, AttachPoint::XdpCpumap, true)
    );
    assert_eq!(
        kinds("egress"),
        (ProgramType::SchedCls, AttachPoint::TcEgress, false)
    );
    assert_eq!(
        kinds("cls"),
        (ProgramType::SchedCls, AttachPoint::TcIngress, false)
    );
    assert_eq!(
        kinds("tc_any"),
        (ProgramType::SchedCls, AttachPoint::TcIngress, false)
    );
    assert_eq!(
        kinds("act"),
        (ProgramType::SchedAct, AttachPoint::Any, false)
    );
    assert_eq!(
        kinds("sock"),
        (ProgramType::SocketFilter, AttachPoint::Any, false)
    );
    assert_eq!(
        kinds("weird"),
        (ProgramType::Other(0), AttachPoint::Any, false)
    );
    assert_eq!(spec.program("tc/egress").unwrap().name, "egress");

    let forced = object::parse_with(
        &bytes,
        &ParseOptions {
            prog_type_override: Some(ProgramType::SchedCls),
        },
    )
    .unwrap();
    assert!(forced
        .programs
        .iter()
        .all(|p| p.prog_type == ProgramType::SchedCls));
    assert!(forced.program("frags").unwrap().xdp_frags);

    // A misaligned copy parses the same.
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&bytes);
    assert_eq!(object::parse(&shifted[1..]).unwrap(), spec);
}

#[test]
fn xdp_tools_objects() {
    let dir = Path::new("/usr/lib/x86_64-linux-gnu/bpf");
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!(
            "skipping: {} not present (xdp-tools not installed)",
            dir.display()
        );
        return;
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    paths.sort();
    for path in paths {
        let spec = object::open(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let progs: Vec<_> = spec
            .programs
            .iter()
            .map(|p| {
                format!(
                    "{}:{}({:?}, {} insns, {} subprogs)",
                    p.section,
                    p.name,
                    p.prog_type,
                    p.insns.len(),
                    p.subprograms.len()
                )
            })
            .collect();
        let maps: Vec<_> = spec
            .maps
            .iter()
            .map(|m| format!("{}(type {})", m.name, m.map_type))
            .collect();
        println!(
            "{}: {} | maps: {}",
            path.file_name().unwrap().to_string_lossy(),
            progs.join(", "),
            maps.join(", ")
        );
    }
}

#[test]
fn open_names_the_path() {
    let err = object::open(Path::new("/nonexistent/x.o")).unwrap_err();
    assert!(matches!(err, ObjectError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/x.o"), "{err}");
}

/// Feeds prefixes and random corruptions of real objects to the parser: it must return.
#[test]
fn corrupted_inputs_never_panic() {
    let mut inputs: Vec<Vec<u8>> = ["obj_calls", "obj_maps", "obj_legacy28"]
        .iter()
        .filter_map(|n| compile(n))
        .collect();
    if let Ok(b) = std::fs::read("/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o") {
        inputs.push(b);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let (mut ok, mut err) = (0, 0);
    for bytes in &inputs {
        let step = (bytes.len() / 400).max(1);
        for len in (0..bytes.len()).step_by(step) {
            match object::parse(&bytes[..len]) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
        for _ in 0..1500 {
            let mut b = bytes.clone();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            match object::parse(&b) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
    }
    println!("corrupted inputs: {ok} parsed, {err} rejected");
}

fn expect_err(bytes: &[u8]) -> ObjectError {
    let e = object::parse(bytes).expect_err("malformed object parsed");
    println!("{e}");
    e
}

#[test]
fn malformed_truncated_and_wrong_machine() {
    let Some(bytes) = compile("obj_calls") else {
        return;
    };
    let e = expect_err(&bytes[..bytes.len() / 2]);
    assert!(matches!(e, ObjectError::Truncated { .. }), "{e:?}");
    assert!(e.to_string().contains("section header table"), "{e}");
    let e = expect_err(&bytes[..10]);
    assert!(matches!(e, ObjectError::NotElf { .. }), "{e:?}");

    // A section whose data runs past the end of the file.
    let index = sections(&bytes).iter().position(|s| s.0 == "xdp").unwrap();
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let size_at = shoff + index * 64 + 0x20;
    let mut b = bytes.clone();
    b[size_at..size_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = expect_err(&b);
    assert!(
        matches!(&e, ObjectError::Truncated { section } if section == "xdp"),
        "{e:?}"
    );

    let mut b = bytes.clone();
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    let e = expect_err(&b);
    assert!(
        matches!(e, ObjectError::WrongMachine { machine: 62, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("e_machine 62"), "{e}");
}

#[test]
fn malformed_relocations() {
    let Some(bytes) = compile("obj_calls") else {
        return;
    };
    let (rel, _) = section(&bytes, ".relxdp");
    // Entry 0 is the call to `middle` at byte 8 of section xdp.
    let patch = |offset: Option<u64>, info: Option<u64>| {
        let mut b = bytes.clone();
        if let Some(o) = offset {
            b[rel..rel + 8].copy_from_slice(&o.to_le_bytes());
        }
        if let Some(i) = info {
            b[rel + 8..rel + 16].copy_from_slice(&i.to_le_bytes());
        }
        expect_err(&b)
    };
    let e = patch(Some(0x10000), None);
    assert!(
        matches!(&e, ObjectError::BadRelocation { section, offset: 0x10000, symbol, .. } if section == "xdp" && symbol == "middle"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("section xdp, byte offset 65536, symbol middle"),
        "{e}"
    );

    let e = patch(None, Some((9999u64 << 32) | 10));
    assert!(
        matches!(&e, ObjectError::BadRelocation { section, offset: 8, symbol, .. } if section == "xdp" && symbol == "#9999"),
        "{e:?}"
    );
    assert!(e.to_string().contains("out of range"), "{e}");

    // Byte 0 of `first` is a load, not an ld_imm64 or call.
    let e = patch(Some(0), None);
    assert!(
        matches!(&e, ObjectError::BadRelocation { offset: 0, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("opcode 0x61"), "{e}");
}

#[test]
fn malformed_unknown_map_type() {
    let Some(bytes) = compile("obj_legacy20") else {
        return;
    };
    let (maps, _) = section(&bytes, "maps");
    let mut b = bytes.clone();
    // legacy_a is the first definition; its type is the first word.
    b[maps..maps + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = expect_err(&b);
    assert!(
        matches!(&e, ObjectError::UnknownMapType { map, map_type: 99 } if map == "legacy_a"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "map legacy_a: unknown map type 99");

    // A section size that does not divide by the number of map symbols: patch sh_size.
    let index = sections(&bytes).iter().position(|s| s.0 == "maps").unwrap();
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let size_at = shoff + index * 64 + 0x20;
    let mut b = bytes.clone();
    b[size_at..size_at + 8].copy_from_slice(&39u64.to_le_bytes());
    let e = expect_err(&b);
    assert!(
        matches!(&e, ObjectError::BadSection { section, .. } if section == "maps"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("size 39 is not a multiple of its 2 map symbols"),
        "{e}"
    );
}

/// Patches the instruction at `slot` of section `sec` and expects an error.
fn patch_insn(bytes: &[u8], sec: &str, f: impl Fn(usize, &mut Insn) -> bool) -> ObjectError {
    let (off, size) = section(bytes, sec);
    let mut b = bytes.to_vec();
    for slot in 0..size / 8 {
        let mut i = insn_at(&b, off + slot * 8);
        if f(slot, &mut i) {
            b[off + slot * 8..off + slot * 8 + 8].copy_from_slice(&i.to_bytes());
            return expect_err(&b);
        }
    }
    panic!("no instruction to patch in {sec}");
}

#[test]
fn malformed_instructions() {
    let Some(bytes) = compile("obj_calls") else {
        return;
    };
    // Unknown opcode at insn 0 of `first`.
    let e = patch_insn(&bytes, "xdp", |slot, i| {
        i.op = 0xff;
        slot == 0
    });
    assert!(
        matches!(&e, ObjectError::Instruction { section, symbol, insn: 0, source: DecodeError::UnknownOpcode { .. } } if section == "xdp" && symbol == "first"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("section xdp, symbol first, insn 0"),
        "{e}"
    );

    // Unknown helper: the bpf_loop call of `second` becomes call 99999.
    let helper_slot = |i: &Insn| i.op == 0x85 && i.src == 0;
    let e = patch_insn(&bytes, "xdp", |_, i| {
        let hit = helper_slot(i);
        i.imm = 99999;
        hit
    });
    let ObjectError::UnknownHelper {
        section,
        symbol,
        insn,
        id,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(
        (section.as_str(), symbol.as_str(), *id),
        ("xdp", "second", 99999)
    );
    assert!(
        e.to_string()
            .contains(&format!("insn {insn}: call to unknown helper 99999")),
        "{e}"
    );

    // Missing function: that call becomes a local call far outside the section.
    let e = patch_insn(&bytes, "xdp", |_, i| {
        let hit = helper_slot(i);
        i.src = 1;
        i.imm = 5000;
        hit
    });
    assert!(
        matches!(&e, ObjectError::MissingFunction { section, symbol, .. } if section == "xdp" && symbol == "second"),
        "{e:?}"
    );

    // Jump out of range: the first conditional jump in .text (inside `leaf`).
    let e = patch_insn(&bytes, ".text", |_, i| {
        let hit = i.op & 0x07 == 0x05 && !matches!(i.op & 0xf0, 0x80 | 0x90) && i.op != 0x05;
        i.off = 0x7fff;
        hit
    });
    assert!(
        matches!(&e, ObjectError::Instruction { section, symbol, source: DecodeError::JumpOutOfRange { .. }, .. } if section == ".text" && symbol == "leaf"),
        "{e:?}"
    );
}

/// Every object of the `programs/` crate parses.
#[test]
fn project_programs() {
    for name in userxdp_programs::NAMES {
        let Some(bytes) = userxdp_programs::bytes(name) else {
            panic!("{name}.o missing");
        };
        let spec = object::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e} ({e:?})"));
        let progs: Vec<_> = spec
            .programs
            .iter()
            .map(|p| {
                format!(
                    "{}:{}({} insns, {} subprogs)",
                    p.section,
                    p.name,
                    p.insns.len(),
                    p.subprograms.len()
                )
            })
            .collect();
        let maps: Vec<_> = spec.maps.iter().map(|m| m.name.as_str()).collect();
        println!("{name}: {} | maps: {}", progs.join(", "), maps.join(", "));
    }
}

/// Prog arrays initialized statically in C (`.values = { [i] = &prog }`): the slots come out of
/// `.rel.maps` as `initial_slots`, and `Vm::new` fills them without loader code.
#[test]
fn static_prog_array_slots() {
    use userxdp_runtime::context::XdpFrame;
    use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

    let Some(bytes) = compile("obj_prog_array") else {
        return;
    };
    let spec = object::parse(&bytes).unwrap();
    let slots = |m: &str| spec.map(m).unwrap().initial_slots.clone();
    assert_eq!(
        slots("jumps"),
        vec![(0, "slot_zero".to_string()), (2, "slot_two".to_string())]
    );
    assert!(slots("before").is_empty());
    assert!(slots("empty_jumps").is_empty());
    assert_eq!(spec.map("jumps").unwrap().value_size, 4);

    // The project's cache wires its chain the same way.
    let cache = object::parse(&userxdp_programs::bytes("cache").expect("cache.o")).unwrap();
    let names = |m: &str| -> Vec<(u32, String)> { cache.map(m).unwrap().initial_slots.clone() };
    assert_eq!(
        names("cache_xdp_progs"),
        vec![
            (0, "cache_hash_keys".to_string()),
            (1, "cache_lookup".to_string()),
            (2, "cache_reply".to_string()),
            (3, "cache_invalidate".to_string()),
        ]
    );
    assert_eq!(names("cache_tc_progs"), vec![(0, "cache_fill".to_string())]);

    // entry -> jumps[2] = slot_two -> empty_jumps[0] (empty: falls through) -> XDP_TX.
    let opts = VmOptions {
        engine: Engine::Interpreter,
        safety: SafetyPolicy::Guarded,
        ncpus: 1,
        ..VmOptions::default()
    };
    let vm = Vm::new(spec, Some(&bytes), Some("entry"), opts).unwrap();
    let mut frame = XdpFrame::new().unwrap();
    frame.load(&[0u8; 64]).unwrap();
    let r = vm.runner(0).run_xdp(&mut frame).unwrap();
    assert_eq!(r.retval, 3, "the static slot was filled at load");
}
