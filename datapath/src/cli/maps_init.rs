//! `userxdp run --maps-init FILE.json`: fill an object's maps before the first frame, from a
//! file in the format `--dump-maps` prints (see `userxdp_runtime::maps::dump`), in whichever
//! engine runs: the userspace instance's maps, or the kernel's maps before
//! `BPF_PROG_TEST_RUN`.
//!
//! The whole file is checked against the object ([`plan`]) before anything is written, so a
//! bad file fails the same way in every engine and leaves nothing half-filled.
//!
//! Map-in-map (userspace engines): an ARRAY_OF_MAPS / HASH_OF_MAPS entry's value names the
//! inner map — a map of the object (by name, or by its index in declaration order), or a new
//! map made from the outer map's inner template, whose contents the file may give under that
//! name at top level. [`dump_user`] prints them the same way, so such dumps round-trip. The
//! kernel engine refuses map-in-map values: the oracle does not expose map file descriptors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use userxdp_runtime::kernel::Oracle;
use userxdp_runtime::maps::dump::{self, InitEntry, InitError, InitValue, MapDump};
use userxdp_runtime::maps::of_maps::{is_map_of_maps, MapOfMaps};
use userxdp_runtime::maps::{self, flags, types, Map};
use userxdp_runtime::object::spec::{MapSpec, ObjectSpec};
use userxdp_runtime::vm::instance::Vm;

/// A checked file: per map (by name, in file order), the entries to write.
#[derive(Debug, Clone, Default)]
pub struct MapsInit {
    maps: Vec<(String, Vec<InitEntry>)>,
    /// Inner maps the file creates (not in the object), from their outer map's template.
    fresh: Vec<MapSpec>,
}

/// Kernel program ids of the programs placed in PROG_ARRAY slots, by id: what turns the
/// kernel's dump of a PROG_ARRAY back into program names.
pub type ProgramIds = BTreeMap<u32, String>;

/// Reads `path` and checks it against `spec`: unknown maps, header mismatches, sizes, hex,
/// duplicate keys, too many entries, unknown programs and inner maps are all errors here.
/// `ncpus` is the per-CPU slot count values are laid out for.
pub fn plan(path: &Path, spec: &ObjectSpec, ncpus: u32) -> Result<MapsInit> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--maps-init: cannot read {}", path.display()))?;
    plan_text(&text, spec, ncpus).with_context(|| format!("--maps-init {}", path.display()))
}

/// [`plan`] for the file's contents.
pub fn plan_text(text: &str, spec: &ObjectSpec, ncpus: u32) -> Result<MapsInit> {
    let file = dump::parse_init(text)?;
    let programs: Vec<String> = spec.programs.iter().map(|p| p.name.clone()).collect();
    // Inner maps named by map-in-map entries that are neither object maps nor indices are
    // made from the outer map's template; object maps keep their indices at the front.
    let mut fresh: Vec<MapSpec> = Vec::new();
    for (name, init) in &file {
        let Some(outer) = spec.map(name).filter(|m| is_map_of_maps(m.map_type)) else {
            continue;
        };
        let Some(template) = outer.inner.as_deref() else {
            continue;
        };
        for e in &init.entries {
            let v = e.value.as_str();
            let known = spec.map(v).is_some() || fresh.iter().any(|m| m.name == v);
            // Eight hex digits are a map id from a kernel dump, not a name: left for the
            // planner to reject with the list of names.
            let looks_like_id = v.len() == 8 && v.bytes().all(|b| b.is_ascii_hexdigit());
            if !known && !looks_like_id && v.parse::<usize>().is_err() && !v.is_empty() {
                let mut inner = template.clone();
                inner.name = v.to_string();
                inner.initial_slots.clear();
                fresh.push(inner);
            }
        }
    }
    let all: Vec<MapSpec> = spec.maps.iter().chain(&fresh).cloned().collect();
    let mut maps = Vec::with_capacity(file.len());
    for (name, init) in &file {
        let map_spec = all.iter().find(|m| &m.name == name);
        let map_spec = map_spec.ok_or_else(|| InitError::UnknownMap {
            map: name.clone(),
            available: spec
                .maps
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let entries = dump::plan(name, init, map_spec, ncpus, &programs, &all)?;
        maps.push((name.clone(), entries));
    }
    Ok(MapsInit { maps, fresh })
}

impl MapsInit {
    /// Fills a userspace instance's maps; PROG_ARRAY slots get the named programs (compiled
    /// for the instance's engine), map-in-map slots the named inner maps.
    pub fn apply_user(&self, vm: &Vm) -> Result<()> {
        let ncpus = vm.options().ncpus;
        let mut fresh: HashMap<&str, Arc<dyn Map>> = HashMap::new();
        for s in &self.fresh {
            let m = maps::create(s, ncpus)
                .with_context(|| format!("--maps-init: inner map {}", s.name))?;
            fresh.insert(s.name.as_str(), m);
        }
        let find = |name: &str| vm.map(name).or_else(|| fresh.get(name)).cloned();
        for (name, entries) in &self.maps {
            let map = find(name)
                .ok_or_else(|| anyhow!("--maps-init: map {name}: not in the instance"))?;
            let mut bytes = Vec::new();
            for e in entries {
                let at = || format!("--maps-init: map {name}: entry {}", e.entry);
                match &e.value {
                    InitValue::Bytes(_) => bytes.push(e.clone()),
                    InitValue::Program(program) => {
                        vm.set_tail_call(name, slot(e), program).with_context(at)?
                    }
                    InitValue::InnerMap(inner) => {
                        let outer = map
                            .as_any()
                            .downcast_ref::<MapOfMaps>()
                            .ok_or_else(|| anyhow!("{}: not a map of maps", at()))?;
                        let inner_map =
                            find(inner).ok_or_else(|| anyhow!("{}: no map {inner}", at()))?;
                        outer
                            .set(&e.key, inner_map, flags::BPF_ANY)
                            .map_err(|err| anyhow!("{}: map {inner}: {err}", at()))?;
                    }
                }
            }
            dump::load(name, map.as_ref(), &bytes).context("--maps-init")?;
        }
        Ok(())
    }

    /// Fills the kernel's maps of a loaded oracle. Returns the ids of the programs now in
    /// PROG_ARRAY slots (including slots the object initialises statically), for dumps.
    pub fn apply_kernel(&self, oracle: &Oracle, spec: &ObjectSpec) -> Result<ProgramIds> {
        for m in &self.fresh {
            oracle
                .create_map(m)
                .with_context(|| format!("--maps-init: inner map {}", m.name))?;
        }
        for (name, entries) in &self.maps {
            let frozen = spec.map(name).is_some_and(maps::is_frozen);
            for e in entries {
                let at = || format!("--maps-init: map {name}: entry {}", e.entry);
                match &e.value {
                    InitValue::Bytes(v) if frozen => {
                        let current = oracle.map_lookup(name, &e.key).with_context(at)?;
                        if current.as_ref() != Some(v) {
                            return Err(InitError::ReadOnly {
                                map: name.clone(),
                                entry: e.entry,
                            })
                            .context("--maps-init");
                        }
                    }
                    InitValue::Bytes(v) => {
                        oracle.map_update(name, &e.key, v, 0).with_context(at)?;
                    }
                    InitValue::Program(program) => {
                        oracle
                            .set_tail_call(name, slot(e), program)
                            .with_context(at)?;
                    }
                    InitValue::InnerMap(inner) => {
                        oracle.set_inner_map(name, &e.key, inner).with_context(at)?;
                    }
                }
            }
        }
        kernel_program_ids(oracle, spec, self)
    }
}

/// Program ids the kernel reports for every PROG_ARRAY slot whose program we know: slots the
/// object fills statically and slots the file filled.
pub fn kernel_program_ids(
    oracle: &Oracle,
    spec: &ObjectSpec,
    init: &MapsInit,
) -> Result<ProgramIds> {
    let mut known: Vec<(String, u32, String)> = Vec::new();
    for m in spec.maps.iter().filter(|m| m.map_type == types::PROG_ARRAY) {
        for (slot, program) in &m.initial_slots {
            known.push((m.name.clone(), *slot, program.clone()));
        }
    }
    for (name, entries) in &init.maps {
        for e in entries {
            if let InitValue::Program(p) = &e.value {
                known.push((name.clone(), slot(e), p.clone()));
            }
        }
    }
    let mut ids = ProgramIds::new();
    for (map, index, program) in known {
        let value = oracle
            .map_lookup(&map, &index.to_ne_bytes())
            .with_context(|| format!("reading back prog_array {map}[{index}]"))?;
        if let Some(id) = value.and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok()) {
            ids.insert(u32::from_ne_bytes(id), program);
        }
    }
    Ok(ids)
}

/// Every map of a userspace instance as `--dump-maps` prints it: PROG_ARRAY values as program
/// names, map-in-map values as inner map names, and inner maps that are not maps of the object
/// under their own names (so that the dump can be fed back to [`plan`]).
pub fn dump_user(vm: &Vm) -> Result<BTreeMap<String, MapDump>> {
    // PROG_ARRAY slots hold the instance's program ids: position in the object, plus one.
    let program_name = |id: u32| {
        let index = (id as usize).checked_sub(1)?;
        vm.spec().programs.get(index).map(|p| p.name.clone())
    };
    let mut out = BTreeMap::new();
    let mut inner_maps: Vec<Arc<dyn Map>> = Vec::new();
    for (name, m) in vm.maps() {
        let mut d = dump::dump(m.as_ref())?;
        d.name_programs(program_name);
        if let Some(outer) = m.as_any().downcast_ref::<MapOfMaps>() {
            for e in &mut d.entries {
                let inner = dump::from_hex(&e.key).and_then(|k| outer.get(&k));
                if let Some(inner) = inner {
                    e.value = inner.spec().name.clone();
                    inner_maps.push(inner);
                }
            }
            d.entries.sort();
        }
        out.insert(name.to_string(), d);
    }
    for inner in inner_maps {
        let name = inner.spec().name.clone();
        if vm.map(&name).is_none() && !out.contains_key(&name) {
            out.insert(name, dump::dump(inner.as_ref())?);
        }
    }
    Ok(out)
}

/// The array index of a checked PROG_ARRAY entry (its key is 4 bytes: [`dump::plan`] saw to it).
fn slot(e: &InitEntry) -> u32 {
    u32::from_ne_bytes(
        e.key
            .get(..4)
            .and_then(|k| k.try_into().ok())
            .unwrap_or([0; 4]),
    )
}
