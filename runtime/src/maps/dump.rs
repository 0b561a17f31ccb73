//! Map contents as JSON: what `userxdp run --dump-maps` prints and `--maps-init` reads.
//!
//! Keys and values are lowercase hex strings of the raw bytes, in the byte order the map holds
//! them (per-CPU values: every CPU's value, each padded to 8 bytes, concatenated — the bpf()
//! syscall layout). Entries are sorted by key so that dumps of the kernel's and our maps compare
//! equal whatever each one's iteration order.

use serde::{Deserialize, Serialize};

use super::{types, Map, MapError};

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
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(from_hex("00ab10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
    }
}
