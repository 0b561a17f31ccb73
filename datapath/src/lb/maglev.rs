//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4), with weights.
//!
//! Each backend gets a permutation of the table slots from two hashes of its identity
//! (`offset = h1 % M`, `skip = h2 % (M - 1) + 1`, slot `j` = `(offset + j * skip) % M`, a full
//! permutation because `M` is prime). Backends then take turns claiming their next free
//! preferred slot until the table is full. Weights set how many turns a backend takes per round,
//! as a credit scheme: every round each backend earns `weight` credits and takes one turn per
//! `max_weight` credits, so the heaviest backends take one turn per round and the others a
//! proportional fraction (fine interleaving even for large weights).
//!
//! Because permutations depend only on the backend's identity, adding a backend moves about
//! `1/N` of the slots and removing one moves only its own slots plus a little churn.

/// One backend for the table builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevBackend<'a> {
    /// Identity the permutation is derived from (e.g. the 16-byte address).
    pub id: &'a [u8],
    /// Relative weight; 0 takes no slots.
    pub weight: u32,
}

/// FNV-1a, 64 bits, over `seed` then `bytes`: two seeds give the two independent hashes.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser: FNV's low bits are weak, and `% M` uses all of them.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Builds a Maglev table of `size` slots (`size` should be prime) over `backends`; each slot
/// holds the position of a backend in `backends`. Returns `None` when no backend has a
/// positive weight or `size` < 2 (nothing to fill).
pub fn build(backends: &[MaglevBackend<'_>], size: usize) -> Option<Vec<usize>> {
    let max_weight = backends.iter().map(|b| b.weight).max().unwrap_or(0);
    if max_weight == 0 || size < 2 {
        return None;
    }
    let m = size as u64;
    // (offset, skip) per backend.
    let perm: Vec<(u64, u64)> = backends
        .iter()
        .map(|b| (fnv1a(1, b.id) % m, fnv1a(2, b.id) % (m - 1) + 1))
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut credit = vec![0u64; backends.len()];
    let mut table = vec![usize::MAX; size];
    let mut filled = 0usize;
    'rounds: loop {
        for (i, b) in backends.iter().enumerate() {
            credit[i] += u64::from(b.weight);
            while credit[i] >= u64::from(max_weight) {
                credit[i] -= u64::from(max_weight);
                let (offset, skip) = perm[i];
                // Next preferred slot that is still free; terminates because the table has
                // a free slot and the permutation visits every slot.
                let slot = loop {
                    let c = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if table[c] == usize::MAX {
                        break c;
                    }
                };
                table[slot] = i;
                filled += 1;
                if filled == size {
                    break 'rounds;
                }
            }
        }
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_table_is_full_and_balanced() {
        let ids: Vec<[u8; 4]> = (0..3u32).map(|i| i.to_be_bytes()).collect();
        let b: Vec<_> = ids
            .iter()
            .map(|id| MaglevBackend { id, weight: 1 })
            .collect();
        let t = build(&b, 13).unwrap();
        assert!(t.iter().all(|&s| s < 3));
        for i in 0..3 {
            let n = t.iter().filter(|&&s| s == i).count();
            assert!((4..=5).contains(&n), "backend {i} has {n} slots");
        }
        assert!(build(&[], 13).is_none());
        assert!(build(
            &[MaglevBackend {
                id: b"x",
                weight: 0
            }],
            13
        )
        .is_none());
    }
}
