//! The concurrent table under every hash map type: buckets of atomic pointers to immutable-key
//! nodes, lock-free readers, writers serialized per bucket (striped locks), and epoch-deferred
//! frees.
//!
//! Invariants:
//! - A bucket chain is only modified under its stripe lock. Readers walk it without a lock:
//!   every link is published with Release and read with Acquire, and a node unlinked from a
//!   chain keeps its `next` pointer, so a reader standing on it still reaches the rest of the
//!   chain.
//! - An unlinked node is freed only through `Guard::defer_unchecked` of a pinned guard taken
//!   after it was unlinked, so it outlives every reader that was pinned when it could be seen.
//! - `count` is the number of linked nodes plus reservations of inserts in flight; it never
//!   exceeds `max`.
//! - Lock order: at most one stripe lock is held at a time (eviction runs before the inserter
//!   takes its own bucket's lock).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crossbeam_epoch::Guard;
use parking_lot::{Mutex, MutexGuard};

use super::node::{hash_key, Node, NodeLayout};
use crate::maps::MapError;

/// Number of writer lock stripes (a power of two).
const STRIPES: usize = 256;
/// Upper bound on buckets: beyond it chains grow instead (the table is never resized).
const MAX_BUCKETS: usize = 1 << 24;
/// Buckets an evictor examines per window of the clock hand.
const EVICT_WINDOW: usize = 16;
/// Candidates an evictor compares before choosing the least recently used (large tables).
const EVICT_SAMPLES: usize = 8;
/// Tables with at most this many buckets evict the exact least recently used element (a full
/// scan, about a microsecond): for the small LRU maps programs declare, this matches the
/// kernel's choice of victim on single-CPU runs, which the differential tests check.
const EXACT_EVICT_BUCKETS: usize = 1024;
/// Full passes of eviction that found nothing before an insert gives up with E2BIG (only
/// possible when every entry is an insert in flight on another thread).
const EVICT_ATTEMPTS: usize = 64;

/// A writer lock on its own cache line, so that writers to neighbouring stripes do not share
/// one.
#[repr(align(64))]
struct Stripe(Mutex<()>);

/// Where an update's value bytes go, and whether the update may keep the old element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replace {
    /// Allocate a new element for every update (plain maps: a reader holding the old value
    /// keeps seeing it, as the kernel's HASH update does).
    Always,
    /// Update an existing element in place (per-CPU maps, as the kernel's).
    InPlace,
}

/// Kernel update mode, already validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// BPF_ANY
    Any,
    /// BPF_NOEXIST
    NoExist,
    /// BPF_EXIST
    Exist,
}

/// The LRU state: a tick that orders uses, and a clock hand for eviction scans.
#[derive(Debug, Default)]
struct Lru {
    /// Advanced by every insert, and by every lookup of an element that is not the most
    /// recently used one; the element then takes the new value as its stamp.
    tick: AtomicU64,
    /// Next bucket an evictor scans.
    hand: AtomicUsize,
}

/// A fixed-size concurrent hash table of byte keys to fixed-size values.
pub(super) struct Table {
    buckets: Box<[AtomicPtr<Node>]>,
    mask: usize,
    stripes: Box<[Stripe]>,
    count: AtomicUsize,
    max: usize,
    seed: u64,
    layout: NodeLayout,
    lru: Option<Lru>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("buckets", &self.buckets.len())
            .field("count", &self.count.load(Ordering::Relaxed))
            .field("max", &self.max)
            .field("lru", &self.lru.is_some())
            .finish()
    }
}

/// Zeroed bucket array without touching its pages (large maps cost nothing until used).
fn zeroed_buckets(n: usize) -> Box<[AtomicPtr<Node>]> {
    let layout = match std::alloc::Layout::array::<AtomicPtr<Node>>(n) {
        Ok(l) => l,
        Err(_) => return Box::new([]),
    };
    // SAFETY: n >= 1, so the layout is non-zero.
    let raw = unsafe { std::alloc::alloc_zeroed(layout) };
    if raw.is_null() {
        std::alloc::handle_alloc_error(layout)
    }
    // SAFETY: a null AtomicPtr is all-zero bits; the allocation has exactly the layout
    // `Box<[AtomicPtr<Node>]>` of length n deallocates with.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw.cast(), n)) }
}

/// A per-map hash seed: different in every map and every process.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.finish()
}

impl Table {
    /// An empty table for `max` elements of `layout`; `lru` tables evict instead of failing
    /// when full.
    pub fn new(layout: NodeLayout, max: usize, lru: bool) -> Table {
        let n = max.clamp(1, MAX_BUCKETS).next_power_of_two();
        Table {
            buckets: zeroed_buckets(n),
            mask: n - 1,
            stripes: (0..STRIPES.min(n))
                .map(|_| Stripe(Mutex::new(())))
                .collect(),
            count: AtomicUsize::new(0),
            max,
            seed: random_seed(),
            layout,
            lru: lru.then(Lru::default),
        }
    }

    /// The node layout.
    pub fn layout(&self) -> &NodeLayout {
        &self.layout
    }

    /// Number of elements (including inserts in flight).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        hash_key(self.seed, key)
    }

    #[inline]
    fn bucket_of(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    fn lock(&self, bucket: usize) -> MutexGuard<'_, ()> {
        self.stripes[bucket & (self.stripes.len() - 1)].0.lock()
    }

    /// Searches bucket `b` for `key` without locking.
    ///
    /// # Safety
    /// The caller is pinned (or holds the bucket's lock); the result is valid while it is.
    #[inline]
    unsafe fn find_in(&self, b: usize, key: &[u8], hash: u64) -> Option<NonNull<Node>> {
        // Acquire: pairs with the Release store that linked each node, so its header and key
        // are visible.
        let mut p = self.buckets[b].load(Ordering::Acquire);
        while let Some(n) = NonNull::new(p) {
            // SAFETY: reachable from a bucket while we are pinned: not freed (module invariant).
            let node = unsafe { n.as_ref() };
            // SAFETY: as above.
            if node.hash == hash && unsafe { self.layout.key_eq(p, key) } {
                return Some(n);
            }
            p = node.next.load(Ordering::Acquire);
        }
        None
    }

    /// Program lookup: the element of `key`, marking it used for LRU eviction.
    ///
    /// # Safety
    /// The caller is pinned; the element stays valid (though perhaps unlinked) until it unpins.
    #[inline]
    pub unsafe fn lookup(&self, key: &[u8]) -> Option<NonNull<Node>> {
        let h = self.hash(key);
        // SAFETY: caller's contract.
        let n = unsafe { self.find_in(self.bucket_of(h), key, h) }?;
        if let Some(lru) = &self.lru {
            // Exact recency order: the element takes a fresh tick, unless it already holds
            // the latest one (a hot element looked up again and again then writes nothing, as
            // the kernel sets its ref bit only when clear). The tick is one shared counter:
            // lookups of many different elements from several workers contend on it.
            let now = lru.tick.load(Ordering::Relaxed);
            // SAFETY: as in find_in.
            let stamp = unsafe { &n.as_ref().stamp };
            if stamp.load(Ordering::Relaxed) != now {
                let fresh = lru.tick.fetch_add(1, Ordering::Relaxed) + 1;
                stamp.store(fresh, Ordering::Relaxed);
            }
        }
        Some(n)
    }

    /// User lookup: the element of `key`, without marking it used (as the kernel's syscall
    /// lookup of LRU maps).
    ///
    /// # Safety
    /// As [`Table::lookup`].
    pub unsafe fn peek(&self, key: &[u8]) -> Option<NonNull<Node>> {
        let h = self.hash(key);
        // SAFETY: caller's contract.
        unsafe { self.find_in(self.bucket_of(h), key, h) }
    }

    /// Retires an unlinked node: freed once no pinned thread can still see it.
    fn retire(&self, guard: &Guard, node: *mut Node) {
        let layout = self.layout;
        // SAFETY: the node was just unlinked under its bucket lock, so only threads pinned now
        // can reach it; the guard defers the free past all of them. The closure only needs
        // the (Copy) layout, not the table, which may be gone by then.
        unsafe { guard.defer_unchecked(move || layout.free(node)) };
    }

    /// Takes one unit of `count` for a new element, evicting (LRU) or failing (E2BIG) when full.
    fn reserve(&self, guard: &Guard) -> Result<(), MapError> {
        let mut failed = 0;
        loop {
            let c = self.count.load(Ordering::Relaxed);
            if c < self.max {
                if self
                    .count
                    .compare_exchange_weak(c, c + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(());
                }
                continue;
            }
            if self.lru.is_none() {
                return Err(MapError::TooBig);
            }
            if !self.evict_one(guard) {
                failed += 1;
                if failed >= EVICT_ATTEMPTS {
                    return Err(MapError::TooBig);
                }
                std::thread::yield_now();
            }
        }
    }

    fn unreserve(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Inserts or updates `key` with the kernel's flag semantics. `write` fills the value
    /// storage of the element that will hold the new value: a fresh zeroed one, or the live
    /// one for [`Replace::InPlace`] updates of an existing key.
    pub fn upsert(
        &self,
        key: &[u8],
        mode: Mode,
        replace: Replace,
        write: impl FnOnce(*mut u8),
    ) -> Result<(), MapError> {
        let guard = crossbeam_epoch::pin();
        let h = self.hash(key);
        let b = self.bucket_of(h);
        // LRU maps take their element before looking (the kernel's prealloc_lru_pop), so an
        // update of a full LRU map may evict even when the key exists.
        let mut reserved = false;
        if self.lru.is_some() && mode != Mode::Exist {
            self.reserve(&guard)?;
            reserved = true;
        }
        let result = self.upsert_locked(key, h, b, mode, replace, write, &guard, &mut reserved);
        if reserved {
            self.unreserve();
        }
        result
    }

    /// The locked part of [`Table::upsert`]. On return `reserved` says whether a reservation is
    /// still unused (the caller releases it).
    #[allow(clippy::too_many_arguments)]
    fn upsert_locked(
        &self,
        key: &[u8],
        h: u64,
        b: usize,
        mode: Mode,
        replace: Replace,
        write: impl FnOnce(*mut u8),
        guard: &Guard,
        reserved: &mut bool,
    ) -> Result<(), MapError> {
        let _lock = self.lock(b);
        // Find the old element and the link that points at it.
        let mut link = &self.buckets[b];
        let mut old = None;
        loop {
            let p = link.load(Ordering::Acquire);
            let Some(n) = NonNull::new(p) else { break };
            // SAFETY: linked nodes are live while we hold the bucket lock.
            let node = unsafe { n.as_ref() };
            // SAFETY: as above.
            if node.hash == h && unsafe { self.layout.key_eq(p, key) } {
                old = Some(n);
                break;
            }
            link = &node.next;
        }
        match (mode, old) {
            (Mode::NoExist, Some(_)) => return Err(MapError::Exists),
            (Mode::Exist, None) => return Err(MapError::NotFound),
            _ => {}
        }
        if let (Replace::InPlace, Some(n)) = (replace, old) {
            // SAFETY: live under the lock.
            write(unsafe { self.layout.value(n.as_ptr()) });
            return Ok(());
        }
        if old.is_none() && !*reserved {
            self.reserve(guard)?;
            *reserved = true;
        }
        let stamp = self
            .lru
            .as_ref()
            .map_or(0, |l| l.tick.fetch_add(1, Ordering::Relaxed) + 1);
        let fresh = self.layout.alloc(key, h, stamp);
        // SAFETY: `fresh` is ours until linked.
        write(unsafe { self.layout.value(fresh.as_ptr()) });
        match old {
            Some(o) => {
                // Replace in the same chain position, so that iteration order is stable. The
                // old node keeps its `next` for readers standing on it.
                // SAFETY: live under the lock.
                let next = unsafe { o.as_ref() }.next.load(Ordering::Relaxed);
                // SAFETY: `fresh` is still private.
                unsafe { fresh.as_ref() }
                    .next
                    .store(next, Ordering::Relaxed);
                // Release: publishes the fresh node's header, key and value.
                link.store(fresh.as_ptr(), Ordering::Release);
                self.retire(guard, o.as_ptr());
                // The element count is unchanged; a reservation made up front is not needed.
            }
            None => {
                let head = self.buckets[b].load(Ordering::Relaxed);
                // SAFETY: `fresh` is still private.
                unsafe { fresh.as_ref() }
                    .next
                    .store(head, Ordering::Relaxed);
                // Release: as above.
                self.buckets[b].store(fresh.as_ptr(), Ordering::Release);
                *reserved = false;
            }
        }
        Ok(())
    }

    /// Unlinks `target` from bucket `b` (the node holding `key` when `target` is None).
    /// Returns whether a node was removed.
    fn unlink(&self, b: usize, target: Unlink<'_>, guard: &Guard) -> bool {
        let _lock = self.lock(b);
        let mut link = &self.buckets[b];
        loop {
            let p = link.load(Ordering::Acquire);
            let Some(n) = NonNull::new(p) else {
                return false;
            };
            // SAFETY: linked nodes are live while we hold the bucket lock.
            let node = unsafe { n.as_ref() };
            let hit = match target {
                Unlink::Node(t) => p == t,
                // SAFETY: as above.
                Unlink::Key(key, h) => node.hash == h && unsafe { self.layout.key_eq(p, key) },
            };
            if hit {
                link.store(node.next.load(Ordering::Relaxed), Ordering::Release);
                self.count.fetch_sub(1, Ordering::Relaxed);
                self.retire(guard, p);
                return true;
            }
            link = &node.next;
        }
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let guard = crossbeam_epoch::pin();
        let h = self.hash(key);
        if self.unlink(self.bucket_of(h), Unlink::Key(key, h), &guard) {
            Ok(())
        } else {
            Err(MapError::NotFound)
        }
    }

    /// Evicts the least recently used element: of the whole table when it is small
    /// ([`EXACT_EVICT_BUCKETS`]), else of a few elements at the clock hand (approximate LRU,
    /// like the kernel's on large maps). Returns false when it found nothing to evict.
    fn evict_one(&self, guard: &Guard) -> bool {
        let Some(lru) = &self.lru else { return false };
        let n = self.buckets.len();
        let windows = n.div_ceil(EVICT_WINDOW);
        let exact = n <= EXACT_EVICT_BUCKETS;
        let mut best: Option<(u64, usize, *mut Node)> = None;
        let mut seen = 0;
        for _ in 0..windows {
            let start = lru.hand.fetch_add(EVICT_WINDOW, Ordering::Relaxed);
            for i in 0..EVICT_WINDOW.min(n) {
                let b = start.wrapping_add(i) & self.mask;
                let mut p = self.buckets[b].load(Ordering::Acquire);
                while let Some(node) = NonNull::new(p) {
                    // SAFETY: we are pinned (guard); reachable nodes are not freed.
                    let node = unsafe { node.as_ref() };
                    let stamp = node.stamp.load(Ordering::Relaxed);
                    if best.is_none_or(|(s, _, _)| stamp < s) {
                        best = Some((stamp, b, p));
                    }
                    seen += 1;
                    p = node.next.load(Ordering::Acquire);
                }
            }
            if seen >= EVICT_SAMPLES && !exact {
                break;
            }
        }
        // The victim may have been deleted or replaced meanwhile: then nothing is removed and
        // the caller tries again.
        best.is_some_and(|(_, b, p)| self.unlink(b, Unlink::Node(p), guard))
    }

    /// The key after `key` in bucket order (the first key when `key` is None or absent, as the
    /// kernel's get_next_key).
    pub fn next_key(&self, key: Option<&[u8]>) -> Option<Vec<u8>> {
        let _guard = crossbeam_epoch::pin();
        let mut from = 0;
        if let Some(key) = key {
            let h = self.hash(key);
            let b = self.bucket_of(h);
            // SAFETY: pinned.
            if let Some(n) = unsafe { self.find_in(b, key, h) } {
                // SAFETY: pinned; `n` and its successors are not freed.
                let next = unsafe { n.as_ref() }.next.load(Ordering::Acquire);
                if !next.is_null() {
                    // SAFETY: as above.
                    return Some(unsafe { self.layout.key(next) }.to_vec());
                }
                from = b + 1;
            }
        }
        for b in from..self.buckets.len() {
            let p = self.buckets[b].load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: pinned.
                return Some(unsafe { self.layout.key(p) }.to_vec());
            }
        }
        None
    }
}

/// What [`Table::unlink`] removes.
#[derive(Clone, Copy)]
enum Unlink<'k> {
    /// This exact node (eviction).
    Node(*mut Node),
    /// The node holding this key, with its hash.
    Key(&'k [u8], u64),
}

impl Drop for Table {
    fn drop(&mut self) {
        // No reader can exist (we are borrowed mutably), and nodes retired earlier were
        // unlinked already: free what is still linked.
        for bucket in self.buckets.iter() {
            let mut p = bucket.load(Ordering::Relaxed);
            while !p.is_null() {
                // SAFETY: linked, live, and unreachable after this drop.
                let next = unsafe { &*p }.next.load(Ordering::Relaxed);
                // SAFETY: as above; each node is freed once.
                unsafe { self.layout.free(p) };
                p = next;
            }
        }
    }
}
