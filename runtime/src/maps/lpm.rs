//! LPM_TRIE: longest-prefix match over `struct bpf_lpm_trie_key { u32 prefixlen; u8 data[]; }`.
//!
//! Semantics follow `kernel/bpf/lpm_trie.c`:
//! - lookup (program and syscall) returns the entry with the longest prefix `p <= key.prefixlen`
//!   whose first `p` bits equal the key's; bits past an entry's prefix never matter;
//! - update and delete match exactly (same prefix length, same prefix bits); an update stores
//!   the key's whole data as given (the kernel keeps the node's raw bytes, and get_next_key
//!   returns them);
//! - get_next_key walks the kernel trie in post-order: more specific prefixes before the
//!   prefixes that contain them, the 0 branch before the 1 branch. An unknown (or absent) key
//!   restarts at the first entry.
//!
//! Instead of the kernel's path-compressed trie this keeps one ordered map whose order *is*
//! that post-order, and looks up by probing only the prefix lengths present (few in practice).

use std::any::Any;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use parking_lot::RwLock;

use super::{flags, Map, MapError};
use crate::object::spec::MapSpec;

/// `BPF_F_NO_PREALLOC`: the kernel refuses LPM tries without it.
pub const BPF_F_NO_PREALLOC: u32 = 1;
/// Flags an LPM trie may be created with (`LPM_CREATE_FLAG_MASK`: NO_PREALLOC, NUMA_NODE and
/// the access flags).
const LPM_CREATE_FLAG_MASK: u32 =
    BPF_F_NO_PREALLOC | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 8);
/// Largest data part of a key (`LPM_DATA_SIZE_MAX`).
const LPM_DATA_SIZE_MAX: u32 = 256;

/// A prefix as an ordering key: `data` is zero past `prefixlen` bits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix {
    prefixlen: u32,
    data: Box<[u8]>,
}

/// Frees `v` once no pinned thread (no program run) can still hold a pointer into it.
fn retire<T: Send + 'static>(v: T) {
    super::epoch::pin().defer(move || drop(v));
}

impl Ord for Prefix {
    /// The kernel trie's post-order: at the first differing bit 0 sorts first; when one prefix
    /// contains the other, the longer (more specific) one sorts first.
    fn cmp(&self, other: &Self) -> Ordering {
        let common = self.prefixlen.min(other.prefixlen) as usize;
        for i in 0..common.div_ceil(8) {
            let bits = (common - i * 8).min(8);
            // `bits` is 1..=8: shift in u16 so that 8 does not overflow.
            let mask = !(0xffu16 >> bits) as u8;
            let (a, b) = (self.data[i] & mask, other.data[i] & mask);
            if a != b {
                // The highest differing bit decides; whoever has a 0 there is first.
                let bit = 0x80u8 >> (a ^ b).leading_zeros();
                return if a & bit == 0 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
        }
        other.prefixlen.cmp(&self.prefixlen)
    }
}

impl PartialOrd for Prefix {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Zeroes every bit of `data` from bit `prefixlen` on.
fn mask_to(data: &mut [u8], prefixlen: u32) {
    let full = prefixlen as usize / 8;
    let rest = prefixlen % 8;
    let mut start = full;
    if rest != 0 {
        data[full] &= !(0xffu8 >> rest);
        start += 1;
    }
    for b in data.iter_mut().skip(start) {
        *b = 0;
    }
}

#[derive(Debug)]
struct Entry {
    /// The key's data bytes as last written (unmasked, as the kernel node keeps them).
    raw: Box<[u8]>,
    /// The value, 8-byte aligned; boxed so pointers given to programs stay put.
    value: Box<[u64]>,
}

#[derive(Debug, Default)]
struct Trie {
    entries: BTreeMap<Prefix, Entry>,
    /// Number of entries of each prefix length (index = prefixlen).
    per_len: Vec<u32>,
}

/// An LPM_TRIE map.
#[derive(Debug)]
pub struct LpmTrieMap {
    spec: MapSpec,
    data_size: usize,
    max_prefixlen: u32,
    trie: RwLock<Trie>,
}

impl LpmTrieMap {
    /// Validates the declaration as `trie_alloc` does and creates an empty trie.
    pub fn new(spec: MapSpec) -> Result<LpmTrieMap, String> {
        if spec.flags & BPF_F_NO_PREALLOC == 0 {
            return Err("lpm_trie requires BPF_F_NO_PREALLOC".into());
        }
        if spec.flags & !LPM_CREATE_FLAG_MASK != 0 {
            return Err(format!("lpm_trie flags {:#x} not allowed", spec.flags));
        }
        if spec.key_size < 5 || spec.key_size > 4 + LPM_DATA_SIZE_MAX {
            return Err(format!(
                "lpm_trie key size {} is not 4 + 1..=256",
                spec.key_size
            ));
        }
        if spec.value_size == 0 {
            return Err("lpm_trie value size is 0".into());
        }
        let data_size = spec.key_size as usize - 4;
        let max_prefixlen = data_size as u32 * 8;
        Ok(LpmTrieMap {
            spec,
            data_size,
            max_prefixlen,
            trie: RwLock::new(Trie {
                entries: BTreeMap::new(),
                per_len: vec![0; max_prefixlen as usize + 1],
            }),
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.trie.read().entries.len()
    }

    /// Whether the trie is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits a key into (prefixlen, data), checking its size.
    fn split<'k>(&self, key: &'k [u8]) -> Result<(u32, &'k [u8]), MapError> {
        if key.len() < self.spec.key_size as usize {
            return Err(MapError::Invalid(format!(
                "key must be {} bytes",
                self.spec.key_size
            )));
        }
        let plen = u32::from_ne_bytes([key[0], key[1], key[2], key[3]]);
        Ok((plen, &key[4..4 + self.data_size]))
    }

    fn prefix(plen: u32, data: &[u8]) -> Prefix {
        let mut d: Box<[u8]> = data.into();
        mask_to(&mut d, plen);
        Prefix {
            prefixlen: plen,
            data: d,
        }
    }

    /// The longest-prefix match for `key`, run under the read lock.
    fn longest<R>(&self, key: &[u8], f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let (plen, data) = self.split(key).ok()?;
        // `trie_lookup_elem` refuses over-long prefixes outright.
        if plen > self.max_prefixlen {
            return None;
        }
        let trie = self.trie.read();
        if trie.entries.is_empty() {
            return None;
        }
        let top = plen;
        let mut probe = Self::prefix(top, data);
        for p in (0..=top).rev() {
            if trie.per_len[p as usize] == 0 {
                continue;
            }
            // Masking is monotone: clearing from a shorter length only clears more bits.
            mask_to(&mut probe.data, p);
            probe.prefixlen = p;
            if let Some(e) = trie.entries.get(&probe) {
                return Some(f(e));
            }
        }
        None
    }

    fn insert(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags > flags::BPF_EXIST {
            return Err(MapError::Invalid(format!("flags {flags:#x}")));
        }
        let (plen, data) = self.split(key)?;
        if plen > self.max_prefixlen {
            return Err(MapError::Invalid(format!(
                "prefixlen {plen} > {}",
                self.max_prefixlen
            )));
        }
        if value.len() < self.spec.value_size as usize {
            return Err(MapError::Invalid(format!(
                "value must be {} bytes",
                self.spec.value_size
            )));
        }
        let vs = self.spec.value_size as usize;
        let mut words = vec![0u64; vs.div_ceil(8)].into_boxed_slice();
        // SAFETY: `words` holds at least `vs` bytes; the source has `vs` bytes (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(value.as_ptr(), words.as_mut_ptr().cast::<u8>(), vs)
        };
        let prefix = Self::prefix(plen, data);
        let mut trie = self.trie.write();
        match trie.entries.get_mut(&prefix) {
            Some(e) => {
                if flags == flags::BPF_NOEXIST {
                    return Err(MapError::Exists);
                }
                // The kernel swaps in a new node: new raw key bytes, new value memory.
                e.raw = data.into();
                let old = std::mem::replace(&mut e.value, words);
                retire(old);
            }
            None => {
                // `trie_check_add_elem`: BPF_EXIST is checked before fullness.
                if flags == flags::BPF_EXIST {
                    return Err(MapError::NotFound);
                }
                if trie.entries.len() >= self.spec.max_entries as usize {
                    // `trie_update_elem`: a full trie is ENOSPC, not E2BIG.
                    return Err(MapError::NoSpace);
                }
                trie.per_len[plen as usize] += 1;
                trie.entries.insert(
                    prefix,
                    Entry {
                        raw: data.into(),
                        value: words,
                    },
                );
            }
        }
        Ok(())
    }

    fn value_bytes(&self, e: &Entry) -> Vec<u8> {
        // SAFETY: the box holds at least value_size bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(e.value.as_ptr().cast::<u8>(), self.spec.value_size as usize)
        };
        bytes.to_vec()
    }
}

impl Map for LpmTrieMap {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        self.longest(key, |e| NonNull::new(e.value.as_ptr() as *mut u8))
            .flatten()
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64, _cpu: u32) -> Result<(), MapError> {
        self.insert(key, value, flags)
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let (plen, data) = self.split(key)?;
        if plen > self.max_prefixlen {
            return Err(MapError::Invalid(format!(
                "prefixlen {plen} > {}",
                self.max_prefixlen
            )));
        }
        let prefix = Self::prefix(plen, data);
        let mut trie = self.trie.write();
        let e = trie.entries.remove(&prefix).ok_or(MapError::NotFound)?;
        trie.per_len[plen as usize] -= 1;
        retire(e.value);
        Ok(())
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let trie = self.trie.read();
        let emit = |(p, e): (&Prefix, &Entry)| {
            let mut k = p.prefixlen.to_ne_bytes().to_vec();
            k.extend_from_slice(&e.raw);
            k
        };
        let found = match key {
            Some(k) => match self.split(k) {
                Ok((plen, data)) if plen <= self.max_prefixlen => {
                    let prefix = Self::prefix(plen, data);
                    trie.entries.contains_key(&prefix).then_some(prefix)
                }
                _ => None,
            },
            None => None,
        };
        Ok(match found {
            // Post-order successor of an existing key.
            Some(p) => trie
                .entries
                .range((std::ops::Bound::Excluded(p), std::ops::Bound::Unbounded))
                .next()
                .map(emit),
            // No key, or one not in the trie: the first key (the kernel's "leftmost").
            None => trie.entries.iter().next().map(emit),
        })
    }

    fn read(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.split(key)?;
        self.longest(key, |e| self.value_bytes(e))
            .ok_or(MapError::NotFound)
    }

    fn write(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if value.len() != self.spec.value_size as usize {
            return Err(MapError::Invalid(format!(
                "value must be {} bytes",
                self.spec.value_size
            )));
        }
        self.insert(key, value, flags)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(data: u32, max: u32) -> MapSpec {
        MapSpec {
            name: "lpm".into(),
            map_type: super::super::types::LPM_TRIE,
            key_size: 4 + data,
            value_size: 4,
            max_entries: max,
            flags: BPF_F_NO_PREALLOC,
            inner: None,
            data: None,
            pinning: Default::default(),
            global_data: false,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            spin_lock_offset: None,
            initial_slots: Vec::new(),
        }
    }

    fn key(plen: u32, ip: [u8; 4]) -> Vec<u8> {
        let mut k = plen.to_ne_bytes().to_vec();
        k.extend_from_slice(&ip);
        k
    }

    #[test]
    fn longest_match_and_postorder() {
        let m = LpmTrieMap::new(spec(4, 16)).unwrap();
        for (i, (p, ip)) in [
            (16, [192, 168, 0, 0]),
            (24, [192, 168, 0, 0]),
            (24, [192, 168, 1, 0]),
            (24, [192, 168, 128, 0]),
        ]
        .into_iter()
        .enumerate()
        {
            m.write(&key(p, ip), &(i as u32).to_ne_bytes(), 0).unwrap();
        }
        assert_eq!(
            m.read(&key(32, [192, 168, 1, 7])).unwrap(),
            2u32.to_ne_bytes()
        );
        assert_eq!(
            m.read(&key(32, [192, 168, 2, 7])).unwrap(),
            0u32.to_ne_bytes()
        );
        assert_eq!(
            m.read(&key(20, [192, 168, 1, 7])).unwrap(),
            0u32.to_ne_bytes()
        );
        assert_eq!(m.read(&key(32, [10, 0, 0, 1])), Err(MapError::NotFound));
        let mut order = Vec::new();
        let mut k = m.next_key(None).unwrap();
        while let Some(kk) = k {
            order.push(kk.clone());
            k = m.next_key(Some(&kk)).unwrap();
        }
        assert_eq!(
            order,
            vec![
                key(24, [192, 168, 0, 0]),
                key(24, [192, 168, 1, 0]),
                key(24, [192, 168, 128, 0]),
                key(16, [192, 168, 0, 0]),
            ]
        );
    }

    #[test]
    fn refuses_prealloc() {
        let mut s = spec(4, 1);
        s.flags = 0;
        assert!(LpmTrieMap::new(s).is_err());
    }
}
