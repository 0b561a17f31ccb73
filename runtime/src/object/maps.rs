//! Map declarations: BTF-defined `.maps`, legacy `maps` / `maps/*` (`struct bpf_map_def`), and
//! global data (`.data*`, `.rodata*`, `.bss*`) as single-entry ARRAY maps, as libbpf creates them.

use std::collections::HashMap;

use super::btf::{Btf, Kind, Member};
use super::elf::{Elf, Section, SHT_NOBITS, SHT_PROGBITS, STT_FUNC, STT_SECTION};
use super::error::ObjectError;
use super::spec::{MapSpec, Pinning};

/// `BPF_MAP_TYPE_ARRAY`.
const ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_PROG_ARRAY`.
const PROG_ARRAY: u32 = 3;
/// `BPF_MAP_TYPE_ARRAY_OF_MAPS`.
const ARRAY_OF_MAPS: u32 = 12;
/// `BPF_MAP_TYPE_HASH_OF_MAPS`.
const HASH_OF_MAPS: u32 = 13;
/// Highest map type number the kernel defines (`BPF_MAP_TYPE_ARENA`, Linux 6.9+).
const MAX_MAP_TYPE: u32 = 33;
/// `BPF_F_RDONLY_PROG`.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_MMAPABLE`.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// The kernel refuses ARRAY values above `KMALLOC_MAX_SIZE` (4 MiB on x86-64); a global-data
/// section bigger than that cannot load, and refusing it early bounds our allocation.
const MAX_GLOBAL_DATA: u64 = 1 << 22;
/// Size of libbpf's legacy `struct bpf_map_def`.
const LEGACY_DEF_SIZE: usize = 20;
/// Size of samples/bpf's `struct bpf_map_def` with `inner_map_idx` and `numa_node`.
const LEGACY_DEF_SIZE_INNER: usize = 28;

/// The maps of an object and how relocations find them.
#[derive(Debug, Default)]
pub struct Maps {
    /// Maps in declaration order: legacy, BTF-defined, global data.
    pub specs: Vec<MapSpec>,
    /// `(section, byte offset)` of each BTF or legacy map definition → index in `specs`.
    pub by_offset: HashMap<(usize, u64), usize>,
    /// Section index of each map definition section (`.maps`, `maps*`).
    pub def_sections: Vec<usize>,
    /// Global-data section index → index in `specs`.
    pub data: HashMap<usize, usize>,
}

/// Collects every map the object declares.
pub fn collect(elf: &Elf, btf: Option<&Btf>) -> Result<Maps, ObjectError> {
    let mut maps = Maps::default();
    for (index, sec) in elf.sections.iter().enumerate() {
        if sec.name == "maps" || sec.name.starts_with("maps/") {
            legacy(elf, index, sec, &mut maps)?;
        }
    }
    if let Some(index) = elf.section_by_name(".maps") {
        btf_maps(elf, index, btf, &mut maps)?;
    }
    for (index, sec) in elf.sections.iter().enumerate() {
        if let Some(spec) = global_data(sec, btf)? {
            maps.data.insert(index, maps.specs.len());
            maps.specs.push(spec);
        }
    }
    Ok(maps)
}

fn check_type(spec: &MapSpec) -> Result<(), ObjectError> {
    if spec.map_type == 0 || spec.map_type > MAX_MAP_TYPE {
        return Err(ObjectError::UnknownMapType {
            map: spec.name.clone(),
            map_type: spec.map_type,
        });
    }
    if let Some(inner) = &spec.inner {
        check_type(inner)?;
    }
    Ok(())
}

fn bad_def(map: &str, reason: impl Into<String>) -> ObjectError {
    ObjectError::BadMapDefinition {
        map: map.to_string(),
        reason: reason.into(),
    }
}

fn empty_spec(name: String) -> MapSpec {
    MapSpec {
        name,
        map_type: 0,
        key_size: 0,
        value_size: 0,
        max_entries: 0,
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

/// Legacy `struct bpf_map_def` maps: one definition per symbol, all of the same size
/// (section size / number of symbols, as libbpf computes it).
fn legacy(elf: &Elf, index: usize, sec: &Section, maps: &mut Maps) -> Result<(), ObjectError> {
    let mut syms: Vec<_> = elf
        .symbols
        .iter()
        .filter(|s| s.section == Some(index) && s.kind != STT_SECTION && !s.name.is_empty())
        .collect();
    if syms.is_empty() {
        return Ok(());
    }
    syms.sort_by_key(|s| s.value);
    let size = usize::try_from(sec.size).unwrap_or(usize::MAX);
    let bad = |reason: String| ObjectError::BadSection {
        section: sec.name.clone(),
        reason,
    };
    if size == 0 || size % syms.len() != 0 {
        return Err(bad(format!(
            "size {size} is not a multiple of its {} map symbols",
            syms.len()
        )));
    }
    let def_size = size / syms.len();
    if def_size < LEGACY_DEF_SIZE {
        return Err(bad(format!(
            "map definitions of {def_size} bytes are shorter than struct bpf_map_def (20)"
        )));
    }
    let first = maps.specs.len();
    let mut inner_idx = Vec::new();
    for sym in &syms {
        let def = usize::try_from(sym.value)
            .ok()
            .and_then(|start| sec.data.get(start..start.checked_add(def_size)?))
            .ok_or_else(|| {
                bad_def(
                    &sym.name,
                    format!(
                        "definition at byte {} outside section {}",
                        sym.value, sec.name
                    ),
                )
            })?;
        let word = |i: usize| u32::from_le_bytes([def[i], def[i + 1], def[i + 2], def[i + 3]]);
        let mut spec = empty_spec(sym.name.clone());
        spec.map_type = word(0);
        spec.key_size = word(4);
        spec.value_size = word(8);
        spec.max_entries = word(12);
        spec.flags = word(16);
        if def_size >= LEGACY_DEF_SIZE_INNER
            && matches!(spec.map_type, ARRAY_OF_MAPS | HASH_OF_MAPS)
        {
            inner_idx.push((maps.specs.len(), word(20) as usize));
        }
        maps.by_offset.insert((index, sym.value), maps.specs.len());
        maps.specs.push(spec);
    }
    // samples/bpf numbers inner templates by position in the section.
    for (outer, idx) in inner_idx {
        let inner = first
            .checked_add(idx)
            .filter(|&i| i < maps.specs.len() && i != outer)
            .map(|i| maps.specs[i].clone())
            .ok_or_else(|| {
                bad_def(
                    &maps.specs[outer].name,
                    format!("inner_map_idx {idx} names no map of section {}", sec.name),
                )
            })?;
        maps.specs[outer].inner = Some(Box::new(inner));
    }
    for spec in &maps.specs[first..] {
        check_type(spec)?;
    }
    maps.def_sections.push(index);
    Ok(())
}

/// BTF-defined maps: the VARs of the `.maps` DATASEC.
fn btf_maps(
    elf: &Elf,
    index: usize,
    btf: Option<&Btf>,
    maps: &mut Maps,
) -> Result<(), ObjectError> {
    let sec = &elf.sections[index];
    maps.def_sections.push(index);
    let Some(btf) = btf else {
        if sec.size == 0 {
            return Ok(());
        }
        return Err(ObjectError::BadSection {
            section: sec.name.clone(),
            reason: "BTF-defined maps need a .BTF section".into(),
        });
    };
    let Some((_, datasec)) = btf.datasec(".maps") else {
        return Ok(());
    };
    let Kind::Datasec { vars, .. } = &datasec.kind else {
        return Ok(());
    };
    // (definition offset, offset of `values` inside it, index in `specs`) of prog arrays.
    let mut prog_arrays = Vec::new();
    for vsi in vars {
        let var = btf.get(vsi.type_id)?;
        let Kind::Var { target } = var.kind else {
            return Err(ObjectError::Btf {
                offset: var.offset,
                reason: format!(".maps entry type {} is not a VAR", vsi.type_id),
            });
        };
        let name = var.name.clone();
        let (_, def) = btf.skip_mods(target)?;
        let Kind::Composite { members, .. } = &def.kind else {
            return Err(bad_def(&name, "not a struct"));
        };
        let spec = btf_def(btf, &name, members, false)?;
        check_type(&spec)?;
        // Relocations name the map by its ELF symbol; clang's DATASEC offsets are reliable, but
        // the symbol table is what relocations use, so prefer it.
        let offset = elf
            .symbols
            .iter()
            .find(|s| s.section == Some(index) && s.name == name)
            .map(|s| s.value)
            .unwrap_or(u64::from(vsi.offset));
        if spec.map_type == PROG_ARRAY {
            if let Some(pos) = members.iter().position(|m| m.name == "values") {
                if pos + 1 != members.len() {
                    return Err(bad_def(&name, "values must be the last field"));
                }
                // Every field of a BTF map definition is a pointer (8 bytes), so the flexible
                // `values` array starts right after the others.
                prog_arrays.push((offset, 8 * pos as u64, maps.specs.len()));
            }
        }
        maps.by_offset.insert((index, offset), maps.specs.len());
        maps.specs.push(spec);
    }
    prog_array_slots(elf, index, &prog_arrays, maps)
}

/// Static PROG_ARRAY contents: `.rel.maps` entries pointing into a prog array's `values` name
/// the program of each slot, as libbpf's `bpf_object__collect_map_relos` reads them.
/// Relocations into map-in-map `values` are left alone (not supported yet).
fn prog_array_slots(
    elf: &Elf,
    index: usize,
    prog_arrays: &[(u64, u64, usize)],
    maps: &mut Maps,
) -> Result<(), ObjectError> {
    let section = &elf.sections[index].name;
    for rs in elf.reloc_sections.iter().filter(|rs| rs.target == index) {
        for r in &rs.relocs {
            let sym = elf.symbols.get(r.symbol);
            let bad = |reason: String| ObjectError::BadRelocation {
                section: section.clone(),
                offset: r.offset,
                symbol: sym.map_or_else(|| format!("#{}", r.symbol), |s| s.name.clone()),
                reason,
            };
            // The definition holding the relocated field: the last one starting at or before it.
            let Some(&(start, values_off, map)) = prog_arrays
                .iter()
                .filter(|(start, _, _)| *start <= r.offset)
                .max_by_key(|(start, _, _)| *start)
            else {
                continue;
            };
            let next_def = maps
                .by_offset
                .keys()
                .filter(|(sec, off)| *sec == index && *off > start)
                .map(|(_, off)| *off)
                .min();
            if next_def.is_some_and(|next| r.offset >= next) {
                continue; // belongs to a later, non-prog-array map
            }
            let spec = &maps.specs[map];
            let moff = r
                .offset
                .checked_sub(start + values_off)
                .ok_or_else(|| bad(format!("points into map {} before its values", spec.name)))?;
            if moff % 8 != 0 {
                return Err(bad(format!(
                    "misaligned slot in values of map {}",
                    spec.name
                )));
            }
            let slot = moff / 8;
            if slot >= u64::from(spec.max_entries) {
                return Err(bad(format!(
                    "slot {slot} beyond max_entries {} of map {}",
                    spec.max_entries, spec.name
                )));
            }
            let Some(sym) = sym.filter(|s| s.kind == STT_FUNC && s.section.is_some()) else {
                return Err(bad(format!(
                    "slot {slot} of prog array {} does not name a program",
                    spec.name
                )));
            };
            let name = sym.name.clone();
            let slots = &mut maps.specs[map].initial_slots;
            slots.retain(|(s, _)| u64::from(*s) != slot);
            slots.push((slot as u32, name));
            slots.sort();
        }
    }
    Ok(())
}

/// An `__uint(name, N)` member: `int (*name)[N]`.
fn btf_int(btf: &Btf, map: &str, m: &Member) -> Result<u32, ObjectError> {
    let (_, t) = btf.skip_mods(m.type_id)?;
    let Kind::Ptr { target } = t.kind else {
        return Err(bad_def(map, format!("field {} is not a pointer", m.name)));
    };
    let (_, arr) = btf.skip_mods(target)?;
    match arr.kind {
        Kind::Array { nelems, .. } => Ok(nelems),
        _ => Err(bad_def(
            map,
            format!("field {} does not point to an array", m.name),
        )),
    }
}

/// A `__type(name, T)` member: `T *name`; returns T's id and size.
fn btf_type(btf: &Btf, map: &str, m: &Member) -> Result<(u32, u32), ObjectError> {
    let (_, t) = btf.skip_mods(m.type_id)?;
    let Kind::Ptr { target } = t.kind else {
        return Err(bad_def(map, format!("field {} is not a pointer", m.name)));
    };
    let size = btf.resolve_size(target)?;
    let size = u32::try_from(size)
        .map_err(|_| bad_def(map, format!("{} type is {size} bytes", m.name)))?;
    Ok((target, size))
}

/// Sets a size from an explicit `key_size` and a `key` type, which must agree.
fn set_size(map: &str, what: &str, slot: &mut u32, size: u32) -> Result<(), ObjectError> {
    if *slot != 0 && *slot != size {
        return Err(bad_def(
            map,
            format!("conflicting {what} sizes {} and {size}", *slot),
        ));
    }
    *slot = size;
    Ok(())
}

/// Decodes one BTF map definition struct, as libbpf's `parse_btf_map_def`.
fn btf_def(
    btf: &Btf,
    name: &str,
    members: &[Member],
    is_inner: bool,
) -> Result<MapSpec, ObjectError> {
    let mut spec = empty_spec(name.to_string());
    let mut has_values = false;
    for m in members {
        match m.name.as_str() {
            "type" => spec.map_type = btf_int(btf, name, m)?,
            "max_entries" => spec.max_entries = btf_int(btf, name, m)?,
            "map_flags" => spec.flags = btf_int(btf, name, m)?,
            "numa_node" | "map_extra" => {
                btf_int(btf, name, m)?;
            }
            "key_size" => {
                let v = btf_int(btf, name, m)?;
                set_size(name, "key", &mut spec.key_size, v)?;
            }
            "value_size" => {
                let v = btf_int(btf, name, m)?;
                set_size(name, "value", &mut spec.value_size, v)?;
            }
            "key" => {
                let (id, size) = btf_type(btf, name, m)?;
                set_size(name, "key", &mut spec.key_size, size)?;
                spec.btf_key_type_id = id;
            }
            "value" => {
                let (id, size) = btf_type(btf, name, m)?;
                set_size(name, "value", &mut spec.value_size, size)?;
                spec.btf_value_type_id = id;
                spec.spin_lock_offset = btf.spin_lock_offset(id);
            }
            "pinning" => {
                spec.pinning = match btf_int(btf, name, m)? {
                    0 => Pinning::None,
                    1 => Pinning::ByName,
                    v => return Err(bad_def(name, format!("unknown pinning {v}"))),
                }
            }
            "values" => {
                if is_inner {
                    return Err(bad_def(name, "inner map template with its own values"));
                }
                has_values = true;
                spec.inner = values(btf, name, m)?;
            }
            other => return Err(bad_def(name, format!("unknown field {other}"))),
        }
    }
    if has_values {
        // Outer maps and prog arrays hold 4-byte ids (libbpf forces value_size = 4).
        if spec.value_size != 0 && spec.value_size != 4 {
            return Err(bad_def(
                name,
                format!("value size {} with values (must be 4)", spec.value_size),
            ));
        }
        spec.value_size = 4;
        spec.btf_value_type_id = 0;
        let is_outer = matches!(spec.map_type, ARRAY_OF_MAPS | HASH_OF_MAPS);
        if is_outer != spec.inner.is_some() && spec.map_type != PROG_ARRAY {
            return Err(bad_def(
                name,
                "values needs a map-in-map type with a struct template",
            ));
        }
    }
    Ok(spec)
}

/// The `values` member: `struct inner *values[]` (map-in-map template) or `int (*values[])()`
/// (prog array).
fn values(btf: &Btf, name: &str, m: &Member) -> Result<Option<Box<MapSpec>>, ObjectError> {
    let (_, arr) = btf.skip_mods(m.type_id)?;
    let Kind::Array { elem, .. } = arr.kind else {
        return Err(bad_def(name, "values is not an array"));
    };
    let (_, ptr) = btf.skip_mods(elem)?;
    let Kind::Ptr { target } = ptr.kind else {
        return Err(bad_def(name, "values is not an array of pointers"));
    };
    let (_, t) = btf.skip_mods(target)?;
    match &t.kind {
        Kind::Composite { members, .. } => {
            let inner = btf_def(btf, &format!("{name}.inner"), members, true)?;
            Ok(Some(Box::new(inner)))
        }
        Kind::FuncProto => Ok(None),
        _ => Err(bad_def(
            name,
            "values points to neither a struct nor a function",
        )),
    }
}

/// Whether a section name is a global-data section libbpf turns into a map.
pub fn is_global_data(name: &str) -> bool {
    [".data", ".rodata", ".bss"]
        .iter()
        .any(|p| name == *p || name.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
}

/// A `.data*`, `.rodata*` or `.bss*` section as a one-element ARRAY.
fn global_data(sec: &Section, btf: Option<&Btf>) -> Result<Option<MapSpec>, ObjectError> {
    let kind_ok = sec.sh_type == SHT_PROGBITS || sec.sh_type == SHT_NOBITS;
    if !is_global_data(&sec.name) || !kind_ok || sec.size == 0 {
        return Ok(None);
    }
    if sec.size > MAX_GLOBAL_DATA {
        return Err(ObjectError::BadSection {
            section: sec.name.clone(),
            reason: format!(
                "{} bytes of global data exceed the kernel's {MAX_GLOBAL_DATA}-byte value limit",
                sec.size
            ),
        });
    }
    let size = sec.size as usize;
    let data = if sec.data.is_empty() {
        vec![0; size]
    } else {
        sec.data.to_vec()
    };
    let rodata = sec.name.starts_with(".rodata");
    let mut spec = empty_spec(sec.name.clone());
    spec.map_type = ARRAY;
    spec.key_size = 4;
    spec.value_size = size as u32;
    spec.max_entries = 1;
    spec.flags = BPF_F_MMAPABLE | if rodata { BPF_F_RDONLY_PROG } else { 0 };
    spec.data = Some(data);
    spec.global_data = true;
    spec.btf_value_type_id = btf
        .and_then(|b| b.datasec(&sec.name))
        .map(|(id, _)| id)
        .unwrap_or(0);
    Ok(Some(spec))
}
