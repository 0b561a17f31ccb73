//! Elements of the hash maps: one allocation per element, a small header followed by the key
//! and the value, so that a lookup touches one cache line for short keys.
//!
//! ```text
//! +---------+---------+----------+---------------------+-----------------------------+
//! | next    | hash    | stamp    | key (padded to 8)   | value (stride * ncpus)      |
//! +---------+---------+----------+---------------------+-----------------------------+
//! 0         8         16         24                    24 + key_pad
//! ```
//!
//! The key and hash never change after the node is published; the value is program memory
//! (written through raw pointers by programs, copied by user calls). Nodes are only ever freed
//! through [`NodeLayout::free`], after an epoch grace period (see `maps::epoch`).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU64};

/// The fixed part of an element. The key and value follow it in the same allocation.
#[repr(C)]
pub(super) struct Node {
    /// Next element of the bucket chain (null at the end). Written under the bucket lock,
    /// read by lock-free lookups: Release on store, Acquire on load.
    pub next: AtomicPtr<Node>,
    /// Full hash of the key (compared before the key).
    pub hash: u64,
    /// LRU maps: the map's tick at the last use by a program (larger is more recent).
    pub stamp: AtomicU64,
}

/// Offset of the key from the start of a node.
const KEY_OFFSET: usize = std::mem::size_of::<Node>();

/// The size of every node of one map.
#[derive(Debug, Clone, Copy)]
pub(super) struct NodeLayout {
    /// Key size in bytes.
    pub key_size: usize,
    /// Offset of the value from the start of the node (8-aligned).
    value_offset: usize,
    /// Bytes of value storage (all CPUs' slots for per-CPU maps).
    pub value_len: usize,
    layout: Layout,
}

impl NodeLayout {
    /// The layout for `key_size`-byte keys and `value_len` bytes of value storage.
    pub fn new(key_size: usize, value_len: usize) -> NodeLayout {
        let value_offset = KEY_OFFSET + key_size.div_ceil(8) * 8;
        let size = value_offset + value_len;
        // Sizes come from u32 key/value sizes times a CPU count, far below isize::MAX; align 8
        // is a power of two. A failure here would be an arithmetic bug of ours.
        let layout = Layout::from_size_align(size, 8).unwrap_or_else(|_| Layout::new::<Node>());
        NodeLayout {
            key_size,
            value_offset,
            value_len,
            layout,
        }
    }

    /// Allocates a node for `key` (exactly `key_size` bytes) with a zeroed value. The node is
    /// private to the caller until linked into a bucket.
    pub fn alloc(&self, key: &[u8], hash: u64, stamp: u64) -> NonNull<Node> {
        // SAFETY: the layout has a non-zero size (the header alone is 24 bytes).
        let raw = unsafe { std::alloc::alloc_zeroed(self.layout) };
        let Some(p) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(self.layout)
        };
        let node = p.cast::<Node>();
        // SAFETY: `node` is a fresh, suitably aligned allocation large enough for the header,
        // the key and the value.
        unsafe {
            node.as_ptr().write(Node {
                next: AtomicPtr::new(std::ptr::null_mut()),
                hash,
                stamp: AtomicU64::new(stamp),
            });
            std::ptr::copy_nonoverlapping(
                key.as_ptr(),
                raw.add(KEY_OFFSET),
                key.len().min(self.key_size),
            );
        }
        node
    }

    /// Frees a node.
    ///
    /// # Safety
    /// `node` came from [`NodeLayout::alloc`] of an identical layout, is no longer reachable
    /// from any bucket, and no thread that could have seen it is still pinned.
    pub unsafe fn free(&self, node: *mut Node) {
        // SAFETY: caller's contract; the header has no destructor to run.
        unsafe { std::alloc::dealloc(node.cast(), self.layout) }
    }

    /// The key bytes of a node.
    ///
    /// # Safety
    /// `node` is a live node of this layout.
    #[inline]
    pub unsafe fn key<'a>(&self, node: *const Node) -> &'a [u8] {
        // SAFETY: caller's contract; the key is immutable once the node is published.
        unsafe { std::slice::from_raw_parts(node.cast::<u8>().add(KEY_OFFSET), self.key_size) }
    }

    /// Whether a node holds `key` (exactly `key_size` bytes).
    ///
    /// # Safety
    /// `node` is a live node of this layout.
    #[inline]
    pub unsafe fn key_eq(&self, node: *const Node, key: &[u8]) -> bool {
        // SAFETY: caller's contract.
        let stored = unsafe { node.cast::<u8>().add(KEY_OFFSET) };
        // Common key sizes compare as integers instead of calling memcmp.
        // SAFETY: `stored` holds `key_size` == key.len() bytes, `key` as many.
        unsafe {
            match key.len() {
                4 => {
                    stored.cast::<u32>().read_unaligned()
                        == key.as_ptr().cast::<u32>().read_unaligned()
                }
                8 => {
                    stored.cast::<u64>().read_unaligned()
                        == key.as_ptr().cast::<u64>().read_unaligned()
                }
                16 => {
                    stored.cast::<u128>().read_unaligned()
                        == key.as_ptr().cast::<u128>().read_unaligned()
                }
                n => std::slice::from_raw_parts(stored, n) == key,
            }
        }
    }

    /// The start of a node's value storage (8-aligned, `value_len` bytes).
    ///
    /// # Safety
    /// `node` is a live node of this layout.
    #[inline]
    pub unsafe fn value(&self, node: *const Node) -> *mut u8 {
        // SAFETY: caller's contract; the value lies inside the node's allocation.
        unsafe { node.cast::<u8>().add(self.value_offset).cast_mut() }
    }
}

/// Reads 1 to 7 bytes as an integer without a variable-length copy (whose store-forwarding
/// stall cost more than the rest of a lookup). Bytes may be read twice; the key length is mixed
/// into the hash separately, so that is harmless.
#[inline]
fn load_rest(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        (lo as u64) | ((hi as u64) << 32)
    } else {
        (b[0] as u64) | ((b[n / 2] as u64) << 8) | ((b[n - 1] as u64) << 16)
    }
}

/// The 8 bytes of `b` at `at` as a little-endian integer (`at + 8 <= b.len()`).
#[inline(always)]
fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Multiplies and folds the 128-bit product: the mixing step of wyhash/foldhash.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A seeded hash of a key, fast for the short keys maps use (4 to 64 bytes). Seeded per map so
/// that crafted keys cannot be aimed at one bucket of every instance.
#[inline]
pub(super) fn hash_key(seed: u64, key: &[u8]) -> u64 {
    const K0: u64 = 0x243f_6a88_85a3_08d3;
    const K1: u64 = 0x1319_8a2e_0370_7344;
    let len = key.len();
    if len <= 16 {
        // Two words that together hold every byte of the key (overlapping when it is shorter
        // than 16 bytes; the length is mixed in, so keys of different lengths that read the
        // same words still differ), mixed by one multiplication of both: no loop, and two
        // dependent multiplications in all instead of one per word plus the final one.
        let (a, b) = match len {
            8..=16 => (read_u64(key, 0), read_u64(key, len - 8)),
            1..=7 => (load_rest(key), 0),
            _ => (0, 0),
        };
        // The seed enters both factors: a factor an attacker could zero without knowing the
        // seed would send every key with that word to one bucket of every map.
        let h = fold_mul(
            a ^ seed ^ K0,
            b ^ seed.rotate_left(32) ^ K1 ^ (len as u64).wrapping_mul(K0),
        );
        return fold_mul(h ^ seed.rotate_left(32), K0);
    }
    let mut h = seed ^ (len as u64).wrapping_mul(K0);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = read_u64(c, 0);
        h = fold_mul(h ^ w, K1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = fold_mul(h ^ load_rest(rest), K1);
    }
    fold_mul(h ^ seed.rotate_left(32), K0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_aligns_value_and_compares_keys() {
        for ks in [1usize, 4, 5, 8, 13, 16, 40] {
            let l = NodeLayout::new(ks, 24);
            let key: Vec<u8> = (0..ks as u8).collect();
            let n = l.alloc(&key, 7, 0).as_ptr();
            // SAFETY: `n` is a live node of `l`, freed once at the end.
            unsafe {
                assert_eq!(l.value(n) as usize % 8, 0);
                assert_eq!(l.key(n), &key[..]);
                assert!(l.key_eq(n, &key));
                let mut other = key.clone();
                other[ks - 1] ^= 1;
                assert!(!l.key_eq(n, &other));
                assert!(std::slice::from_raw_parts(l.value(n), 24)
                    .iter()
                    .all(|&b| b == 0));
                l.free(n);
            }
        }
    }

    #[test]
    fn hash_depends_on_seed_length_and_every_byte() {
        // Every length of both paths (two words up to 16 bytes, the loop beyond).
        let bytes: Vec<u8> = (1..=40).collect();
        for len in 0..=bytes.len() {
            let k = &bytes[..len];
            assert_ne!(hash_key(1, k), hash_key(2, k), "len {len}");
            if len > 0 {
                // A zero byte appended: the same words for short keys, another length.
                let mut longer = k.to_vec();
                longer.push(0);
                assert_ne!(hash_key(1, k), hash_key(1, &longer), "len {len}");
            }
            for i in 0..len {
                let mut o = k.to_vec();
                o[i] ^= 0x10;
                assert_ne!(hash_key(1, k), hash_key(1, &o), "len {len}, byte {i}");
            }
        }
    }

    /// No word of a short key zeroes a factor whatever the seed (review finding: the second
    /// factor once held no seed, so keys ending in one constant collided in every map).
    #[test]
    fn no_seed_independent_multicollision() {
        const K0: u64 = 0x243f_6a88_85a3_08d3;
        const K1: u64 = 0x1319_8a2e_0370_7344;
        let tail = (K1 ^ 16u64.wrapping_mul(K0)).to_le_bytes();
        let key = |head: u64| {
            let mut k = head.to_le_bytes().to_vec();
            k.extend_from_slice(&tail);
            k
        };
        for seed in [1u64, 0x5eed, 0xdead_beef_cafe_f00d] {
            assert_ne!(
                hash_key(seed, &key(1)),
                hash_key(seed, &key(2)),
                "seed {seed:#x}"
            );
        }
    }

    /// Keys that differ in few bits (sequential indices, flows from one subnet) spread over
    /// the buckets: no bucket of 1024 holds more than a few of 4096 keys.
    #[test]
    fn similar_keys_spread_over_buckets() {
        let worst = |keys: &mut dyn Iterator<Item = Vec<u8>>| {
            let mut load = [0u32; 1024];
            for k in keys {
                load[(hash_key(0x5eed, &k) & 1023) as usize] += 1;
            }
            load.into_iter().max().unwrap()
        };
        let mut indices = (0u32..4096).map(|i| i.to_le_bytes().to_vec());
        assert!(worst(&mut indices) <= 14);
        let mut flows = (0u32..4096).map(|i| {
            let mut k = vec![198, 18, 0, 1, 198, 18, (i >> 8) as u8, i as u8];
            k.extend_from_slice(&[0x1f, 0x90, (i >> 4) as u8, 0x35, 17, 0, 0, 0]);
            k
        });
        assert!(worst(&mut flows) <= 14);
    }
}
