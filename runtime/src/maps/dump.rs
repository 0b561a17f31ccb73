//! Map contents as JSON: what `userxdp run --dump-maps` prints and `--maps-init` reads.
//!
//! Keys and values are lowercase hex strings of the raw bytes, in the byte order the map holds
//! them (per-CPU values: every CPU's value, each padded to 8 bytes, concatenated — the bpf()
//! syscall layout). Entries are sorted by key so that dumps of the kernel's and our maps compare
//! equal whatever each one's iteration order.
//!
//! The reading side ([`parse_init`], [`plan`], [`load`]) takes the same JSON back: a map name
//! → [`MapInit`] object whose `type`/`key_size`/`value_size`/`max_entries` may be left out
//! (when present they must match the object) and whose entries are checked against the map's
//! declaration before anything is written. Two value forms go beyond hex bytes, because the
//! bytes (program and map ids) mean nothing outside one process: PROG_ARRAY values name a
//! program of the object, and ARRAY_OF_MAPS / HASH_OF_MAPS values name a map of the object (or
//! give its index in declaration order as a decimal number). A per-CPU value may also be given
//! as a single `value_size` value, which every CPU gets.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{is_frozen, round_up8, types, Map, MapError};
use crate::object::spec::MapSpec;

/// One map's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapDump {
    /// Map type name (`hash`, `array`, ...).
    #[serde(rename = "type")]
    pub map_type: String,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum entries.
    pub max_entries: u32,
    /// Entries sorted by key.
    pub entries: Vec<Entry>,
}

/// One key/value pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Key bytes as hex.
    pub key: String,
    /// Value bytes as hex.
    pub value: String,
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string (whitespace ignored); `None` if it is not hex.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len() / 2);
    let mut high: Option<u8> = None;
    for c in s.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let n = nibble(c)?;
        match high.take() {
            Some(h) => out.push(h << 4 | n),
            None => high = Some(n),
        }
    }
    high.is_none().then_some(out)
}

impl MapDump {
    /// Builds a dump from raw entries (sorting them).
    pub fn from_entries(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> MapDump {
        let mut entries: Vec<Entry> = entries
            .into_iter()
            .map(|(k, v)| Entry {
                key: to_hex(&k),
                value: to_hex(&v),
            })
            .collect();
        entries.sort();
        MapDump {
            map_type: types::name(map_type).to_string(),
            key_size,
            value_size,
            max_entries,
            entries,
        }
    }
}

impl MapDump {
    /// Replaces PROG_ARRAY values (program ids, which differ between processes and between
    /// the kernel and us) by program names where `name_of(id)` knows them, so that a dump
    /// can be fed back through [`plan`] and compares equal across engines.
    pub fn name_programs(&mut self, name_of: impl Fn(u32) -> Option<String>) {
        if self.map_type != types::name(types::PROG_ARRAY) {
            return;
        }
        for e in &mut self.entries {
            let id = from_hex(&e.value)
                .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
                .map(u32::from_ne_bytes);
            if let Some(name) = id.and_then(&name_of) {
                e.value = name;
            }
        }
        self.entries.sort();
    }
}

/// Dumps every element of a map (arrays: every index).
pub fn dump(map: &dyn Map) -> Result<MapDump, MapError> {
    let spec = map.spec();
    let mut entries = Vec::new();
    let mut key = map.next_key(None)?;
    // Bounded by max_entries + 1 so that a map mutated concurrently cannot loop forever.
    let mut budget = spec.max_entries as u64 + 1;
    while let Some(k) = key {
        if budget == 0 {
            break;
        }
        budget -= 1;
        match map.read(&k) {
            Ok(v) => entries.push((k.clone(), v)),
            Err(MapError::NotFound) => {}
            Err(e) => return Err(e),
        }
        key = map.next_key(Some(&k))?;
    }
    Ok(MapDump::from_entries(
        spec.map_type,
        spec.key_size,
        spec.value_size,
        spec.max_entries,
        entries,
    ))
}

/// What a `--maps-init` file holds: map name → contents.
pub type InitFile = BTreeMap<String, MapInit>;

/// One map's contents as read back: a [`MapDump`] whose header fields are optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapInit {
    /// Map type name; must match the object's map when given.
    #[serde(rename = "type", default)]
    pub map_type: Option<String>,
    /// Key size; must match when given.
    #[serde(default)]
    pub key_size: Option<u32>,
    /// Value size; must match when given.
    #[serde(default)]
    pub value_size: Option<u32>,
    /// Maximum entries; must match when given.
    #[serde(default)]
    pub max_entries: Option<u32>,
    /// Entries to write, in file order.
    pub entries: Vec<Entry>,
}

/// A checked entry, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitEntry {
    /// Position in the file's `entries` (0-based), for errors.
    pub entry: usize,
    /// Key bytes.
    pub key: Vec<u8>,
    /// What to store.
    pub value: InitValue,
}

/// A value to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitValue {
    /// Value bytes in the bpf() syscall layout (per-CPU values for every CPU).
    Bytes(Vec<u8>),
    /// PROG_ARRAY: the program of the object with this name.
    Program(String),
    /// ARRAY_OF_MAPS / HASH_OF_MAPS: the map of the object with this name.
    InnerMap(String),
}

/// Why a `--maps-init` file cannot be applied. Every variant names the map and, where there
/// is one, the entry (0-based position in the map's `entries`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// Not JSON, or not the dump's shape.
    #[error("malformed JSON at line {line}, column {column}: {reason}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        reason: String,
    },
    /// The file names a map the object does not have.
    #[error("no map named {map:?} in the object (it has: {available})")]
    UnknownMap {
        /// Name in the file.
        map: String,
        /// Names the object declares.
        available: String,
    },
    /// A header field that does not match the object's declaration.
    #[error("map {map}: {field} is {file} in the file but {object} in the object")]
    Header {
        /// Map name.
        map: String,
        /// `type`, `key_size`, `value_size` or `max_entries`.
        field: &'static str,
        /// Value in the file.
        file: String,
        /// Value in the object.
        object: String,
    },
    /// A key or value that is not hex.
    #[error("map {map}: entry {entry}: {what} {text:?} is not hex bytes")]
    BadHex {
        /// Map name.
        map: String,
        /// Entry position.
        entry: usize,
        /// `key` or `value`.
        what: &'static str,
        /// The text.
        text: String,
    },
    /// A key or value of the wrong length.
    #[error("map {map}: entry {entry}: {what} has {got} bytes, expected {expected}")]
    WrongSize {
        /// Map name.
        map: String,
        /// Entry position.
        entry: usize,
        /// `key` or `value`.
        what: &'static str,
        /// Expected length(s) in bytes.
        expected: String,
        /// Length given.
        got: usize,
    },
    /// More entries than the map can hold.
    #[error("map {map}: {entries} entries, but max_entries is {max_entries}")]
    TooMany {
        /// Map name.
        map: String,
        /// Distinct entries in the file.
        entries: usize,
        /// The map's capacity.
        max_entries: u32,
    },
    /// An array index at or beyond max_entries.
    #[error("map {map}: entry {entry}: index {index} is out of range (max_entries {max_entries})")]
    IndexOutOfRange {
        /// Map name.
        map: String,
        /// Entry position.
        entry: usize,
        /// The index.
        index: u32,
        /// The map's capacity.
        max_entries: u32,
    },
    /// The same key twice.
    #[error("map {map}: entry {entry}: key {key} appears more than once")]
    DuplicateKey {
        /// Map name.
        map: String,
        /// Entry position (the second occurrence).
        entry: usize,
        /// Key as hex.
        key: String,
    },
    /// A PROG_ARRAY value that names no program.
    #[error("map {map}: entry {entry}: no program named {name:?} (the object has: {available})")]
    NoSuchProgram {
        /// Map name.
        map: String,
        /// Entry position.
        entry: usize,
        /// Name in the file.
        name: String,
        /// Program names of the object.
        available: String,
    },
    /// A map-in-map value that names no suitable map.
    #[error("map {map}: entry {entry}: {reason}")]
    BadInnerMap {
        /// Map name.
        map: String,
        /// Entry position.
        entry: usize,
        /// What is wrong.
        reason: String,
    },
    /// A change to a map the program may only read (`.rodata`, frozen at load by libbpf).
    #[error("map {map}: entry {entry}: the map is read-only (frozen at load); only its current contents may be given")]
    ReadOnly {
        /// Map name.
        map: String,
        /// Entry position.
        entry: usize,
    },
    /// Maps of this type cannot be filled from a file (yet).
    #[error("map {map}: {what}")]
    Unsupported {
        /// Map name.
        map: String,
        /// What cannot be done.
        what: String,
    },
    /// The map refused the write.
    #[error("map {map}: entry {entry}: {reason}")]
    Write {
        /// Map name.
        map: String,
        /// Entry position.
        entry: usize,
        /// The map's (or kernel's) error.
        reason: String,
    },
}

/// Parses a `--maps-init` file. Any JSON that is not a map name → [`MapInit`] object is
/// [`InitError::Json`] with the position.
pub fn parse_init(text: &str) -> Result<InitFile, InitError> {
    serde_json::from_str(text).map_err(|e| InitError::Json {
        line: e.line(),
        column: e.column(),
        reason: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or("")
            .to_string(),
    })
}

/// Checks one map's entries against its declaration and turns them into bytes (or program /
/// map names). `ncpus` is the number of per-CPU slots the target has; `programs` and `maps`
/// are the object's program names and maps (in declaration order), for PROG_ARRAY and
/// map-in-map values. Nothing is written.
pub fn plan(
    name: &str,
    init: &MapInit,
    spec: &MapSpec,
    ncpus: u32,
    programs: &[String],
    maps: &[MapSpec],
) -> Result<Vec<InitEntry>, InitError> {
    check_header(name, init, spec)?;
    let map = || name.to_string();
    let percpu = matches!(
        spec.map_type,
        types::PERCPU_ARRAY | types::PERCPU_HASH | types::LRU_PERCPU_HASH
    );
    let is_array = matches!(
        spec.map_type,
        types::ARRAY
            | types::PERCPU_ARRAY
            | types::PROG_ARRAY
            | types::ARRAY_OF_MAPS
            | types::DEVMAP
            | types::CPUMAP
            | types::XSKMAP
    );
    let mut seen = HashSet::with_capacity(init.entries.len());
    let mut out = Vec::with_capacity(init.entries.len());
    for (entry, e) in init.entries.iter().enumerate() {
        let key = from_hex(&e.key).ok_or_else(|| InitError::BadHex {
            map: map(),
            entry,
            what: "key",
            text: e.key.clone(),
        })?;
        if key.len() != spec.key_size as usize {
            return Err(InitError::WrongSize {
                map: map(),
                entry,
                what: "key",
                expected: spec.key_size.to_string(),
                got: key.len(),
            });
        }
        if is_array {
            let index = u32::from_ne_bytes(key[..4].try_into().unwrap_or([0; 4]));
            if index >= spec.max_entries {
                return Err(InitError::IndexOutOfRange {
                    map: map(),
                    entry,
                    index,
                    max_entries: spec.max_entries,
                });
            }
        }
        if !seen.insert(key.clone()) {
            return Err(InitError::DuplicateKey {
                map: map(),
                entry,
                key: to_hex(&key),
            });
        }
        let value = match spec.map_type {
            types::PROG_ARRAY => program_value(name, entry, &e.value, programs)?,
            types::ARRAY_OF_MAPS | types::HASH_OF_MAPS => {
                inner_map_value(name, entry, &e.value, spec, maps)?
            }
            _ => InitValue::Bytes(bytes_value(name, entry, &e.value, spec, percpu, ncpus)?),
        };
        out.push(InitEntry { entry, key, value });
    }
    if out.len() > spec.max_entries as usize {
        return Err(InitError::TooMany {
            map: map(),
            entries: out.len(),
            max_entries: spec.max_entries,
        });
    }
    Ok(out)
}

fn check_header(name: &str, init: &MapInit, spec: &MapSpec) -> Result<(), InitError> {
    let mismatch = |field, file: String, object: String| InitError::Header {
        map: name.to_string(),
        field,
        file,
        object,
    };
    let type_name = types::name(spec.map_type);
    if let Some(t) = &init.map_type {
        if t != type_name {
            return Err(mismatch("type", t.clone(), type_name.to_string()));
        }
    }
    for (field, file, object) in [
        ("key_size", init.key_size, spec.key_size),
        ("value_size", init.value_size, spec.value_size),
        ("max_entries", init.max_entries, spec.max_entries),
    ] {
        if let Some(f) = file {
            if f != object {
                return Err(mismatch(field, f.to_string(), object.to_string()));
            }
        }
    }
    Ok(())
}

fn bytes_value(
    name: &str,
    entry: usize,
    text: &str,
    spec: &MapSpec,
    percpu: bool,
    ncpus: u32,
) -> Result<Vec<u8>, InitError> {
    let value = from_hex(text).ok_or_else(|| InitError::BadHex {
        map: name.to_string(),
        entry,
        what: "value",
        text: text.to_string(),
    })?;
    let size = spec.value_size as usize;
    if !percpu {
        if value.len() != size {
            return Err(InitError::WrongSize {
                map: name.to_string(),
                entry,
                what: "value",
                expected: size.to_string(),
                got: value.len(),
            });
        }
        return Ok(value);
    }
    let stride = round_up8(size as u64) as usize;
    let all = stride * ncpus.max(1) as usize;
    if value.len() == all {
        Ok(value)
    } else if value.len() == size {
        // One value for every CPU, each padded to 8 bytes as the syscall layout wants.
        let mut out = Vec::with_capacity(all);
        for _ in 0..ncpus.max(1) {
            out.extend_from_slice(&value);
            out.resize(out.len() + stride - size, 0);
        }
        Ok(out)
    } else {
        Err(InitError::WrongSize {
            map: name.to_string(),
            entry,
            what: "value",
            expected: format!(
                "{all} ({ncpus} CPUs x {stride}) or {size} (one value for every CPU)"
            ),
            got: value.len(),
        })
    }
}

fn program_value(
    name: &str,
    entry: usize,
    text: &str,
    programs: &[String],
) -> Result<InitValue, InitError> {
    if programs.iter().any(|p| p == text) {
        return Ok(InitValue::Program(text.to_string()));
    }
    Err(InitError::NoSuchProgram {
        map: name.to_string(),
        entry,
        name: text.to_string(),
        available: programs.join(", "),
    })
}

fn inner_map_value(
    name: &str,
    entry: usize,
    text: &str,
    spec: &MapSpec,
    maps: &[MapSpec],
) -> Result<InitValue, InitError> {
    let bad = |reason: String| InitError::BadInnerMap {
        map: name.to_string(),
        entry,
        reason,
    };
    let inner = match maps.iter().find(|m| m.name == text) {
        Some(m) => m,
        None => match text.parse::<usize>() {
            Ok(i) => maps.get(i).ok_or_else(|| {
                bad(format!(
                    "map index {i} out of range (the object has {} maps)",
                    maps.len()
                ))
            })?,
            Err(_) => {
                return Err(bad(format!(
                    "no map named {text:?} (give a map name or its index; the object has: {})",
                    maps.iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        },
    };
    if inner.name == name {
        return Err(bad("a map cannot contain itself".into()));
    }
    if let Some(t) = &spec.inner {
        if (t.map_type, t.key_size, t.value_size)
            != (inner.map_type, inner.key_size, inner.value_size)
        {
            return Err(bad(format!(
                "map {} ({}, key {} value {}) does not match the inner map template ({}, key {} value {})",
                inner.name,
                types::name(inner.map_type),
                inner.key_size,
                inner.value_size,
                types::name(t.map_type),
                t.key_size,
                t.value_size
            )));
        }
    }
    Ok(InitValue::InnerMap(inner.name.clone()))
}

/// Writes planned byte values into a userspace map (`BPF_ANY`). Frozen maps accept only their
/// current contents. Program and inner-map values need the instance and are refused here.
pub fn load(name: &str, map: &dyn Map, entries: &[InitEntry]) -> Result<(), InitError> {
    let frozen = is_frozen(map.spec());
    for e in entries {
        let InitValue::Bytes(value) = &e.value else {
            return Err(InitError::Unsupported {
                map: name.to_string(),
                what: "program and inner-map values are set through the instance".into(),
            });
        };
        if frozen {
            if map.read(&e.key).ok().as_ref() != Some(value) {
                return Err(InitError::ReadOnly {
                    map: name.to_string(),
                    entry: e.entry,
                });
            }
            continue;
        }
        map.write(&e.key, value, super::flags::BPF_ANY)
            .map_err(|err| InitError::Write {
                map: name.to_string(),
                entry: e.entry,
                reason: err.to_string(),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::spec::Pinning;

    fn spec(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec {
            name: "m".into(),
            map_type,
            key_size,
            value_size,
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

    fn init(entries: &[(&str, &str)]) -> MapInit {
        MapInit {
            map_type: None,
            key_size: None,
            value_size: None,
            max_entries: None,
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn dump_parses_back_and_loads() {
        let s = spec(types::HASH, 4, 2, 4);
        let m = super::super::create(&s, 1).unwrap();
        m.write(&[1, 0, 0, 0], &[0xaa, 0xbb], 0).unwrap();
        let d = dump(m.as_ref()).unwrap();
        let text = serde_json::to_string(&BTreeMap::from([("m".to_string(), d.clone())])).unwrap();
        let file = parse_init(&text).unwrap();
        let planned = plan("m", &file["m"], &s, 1, &[], &[]).unwrap();
        let fresh = super::super::create(&s, 1).unwrap();
        load("m", fresh.as_ref(), &planned).unwrap();
        assert_eq!(dump(fresh.as_ref()).unwrap(), d);
    }

    #[test]
    fn errors_name_map_and_entry() {
        let s = spec(types::HASH, 4, 2, 2);
        let p = |i: MapInit| plan("m", &i, &s, 1, &[], &[]).unwrap_err();
        assert!(matches!(
            p(init(&[("0100", "aabb")])),
            InitError::WrongSize {
                what: "key",
                entry: 0,
                ..
            }
        ));
        assert!(matches!(
            p(init(&[("01000000", "aa")])),
            InitError::WrongSize { what: "value", .. }
        ));
        assert!(matches!(
            p(init(&[("01000000", "zz")])),
            InitError::BadHex { what: "value", .. }
        ));
        assert!(matches!(
            p(init(&[("01000000", "aabb"), ("01000000", "aabb")])),
            InitError::DuplicateKey { entry: 1, .. }
        ));
        assert!(matches!(
            p(init(&[
                ("01000000", "aabb"),
                ("02000000", "aabb"),
                ("03000000", "aabb")
            ])),
            InitError::TooMany { entries: 3, .. }
        ));
        let mut wrong = init(&[]);
        wrong.key_size = Some(8);
        assert!(matches!(
            p(wrong),
            InitError::Header {
                field: "key_size",
                ..
            }
        ));
        let a = spec(types::ARRAY, 4, 4, 2);
        assert!(matches!(
            plan("m", &init(&[("02000000", "00000000")]), &a, 1, &[], &[]),
            Err(InitError::IndexOutOfRange { index: 2, .. })
        ));
        let e = parse_init("{\"m\": {\"entries\": [}").unwrap_err();
        assert!(matches!(e, InitError::Json { line: 1, .. }), "{e}");
        assert!(parse_init("{\"m\": {\"entrys\": []}}").is_err());
    }

    #[test]
    fn percpu_values_broadcast_and_programs_resolve() {
        let s = spec(types::PERCPU_ARRAY, 4, 4, 1);
        let planned = plan("m", &init(&[("00000000", "01020304")]), &s, 2, &[], &[]).unwrap();
        assert_eq!(
            planned[0].value,
            InitValue::Bytes(vec![1, 2, 3, 4, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0])
        );
        let pa = spec(types::PROG_ARRAY, 4, 4, 2);
        let progs = ["a".to_string(), "b".to_string()];
        let planned = plan("m", &init(&[("01000000", "b")]), &pa, 1, &progs, &[]).unwrap();
        assert_eq!(planned[0].value, InitValue::Program("b".into()));
        assert!(matches!(
            plan("m", &init(&[("01000000", "c")]), &pa, 1, &progs, &[]),
            Err(InitError::NoSuchProgram { .. })
        ));
    }

    #[test]
    fn hex_roundtrip() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(from_hex("00ab10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
    }
}
