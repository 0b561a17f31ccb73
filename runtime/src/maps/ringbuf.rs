//! RINGBUF (`kernel/bpf/ringbuf.c`): a multi-producer, single-consumer byte ring shared by
//! every worker, drained by a userspace reader with [`RingBufMap::consume`].
//!
//! Layout and protocol are the kernel's: records are `{ u32 len; u32 pg_off; data }` padded to
//! 8 bytes; `len` carries BUSY (reserved, not yet submitted) and DISCARD bits; producers take a
//! spinlock to reserve (advance `producer_pos`), then submit without it by clearing BUSY with
//! a release store; the consumer reads headers with acquire loads and advances
//! `consumer_pos`. The data pages are mapped twice back to back (as the kernel does) so that a
//! record that wraps is still contiguous for the program writing it.
//!
//! A record only finds its ring through `pg_off`: the page distance from the ring's first page,
//! which holds a magic number and a pointer back to the ring state.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::{Map, MapError};
use crate::object::spec::MapSpec;

/// Record header bit: reserved, not yet submitted or discarded.
pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
/// Record header bit: discarded, the consumer skips it.
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// Record header size.
pub const BPF_RINGBUF_HDR_SZ: u32 = 8;
/// `bpf_ringbuf_output`/`submit` flag: do not wake the consumer.
pub const BPF_RB_NO_WAKEUP: u64 = 1;
/// `bpf_ringbuf_output`/`submit` flag: always wake the consumer.
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// `bpf_ringbuf_query`: bytes produced but not consumed.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
/// `bpf_ringbuf_query`: size of the data area.
pub const BPF_RB_RING_SIZE: u64 = 1;
/// `bpf_ringbuf_query`: consumer position.
pub const BPF_RB_CONS_POS: u64 = 2;
/// `bpf_ringbuf_query`: producer position.
pub const BPF_RB_PROD_POS: u64 = 3;

/// Largest record the kernel reserves (`RINGBUF_MAX_RECORD_SZ`).
const MAX_RECORD_SZ: u64 = (u32::MAX / 4) as u64;
/// `BPF_F_NUMA_NODE`, the only flag a ring buffer may be created with.
const BPF_F_NUMA_NODE: u32 = 1 << 2;
/// Identifies our first page when a helper walks back from a record.
const MAGIC: u64 = 0x7573_7278_6470_7262; // "usrxdprb"
const PAGE: usize = 4096;

/// The shared state, at a stable address (boxed) that the first page points back to.
#[derive(Debug)]
struct Ring {
    /// Start of the mapping: one header page, then the data pages twice.
    base: *mut u8,
    /// Data size (a power of two), `mask + 1`.
    size: u64,
    mask: u64,
    consumer_pos: AtomicU64,
    producer_pos: AtomicU64,
    /// Oldest record not yet submitted; only touched under `producer_lock`.
    pending_pos: AtomicU64,
    /// Serializes producers, as the kernel's `rb->spinlock`.
    producer_lock: Mutex<()>,
    /// Serializes consumers (the protocol has one consumer).
    consumer_lock: Mutex<()>,
}

// SAFETY: `base` is a private mapping owned by the ring and only accessed through atomics or
// under the protocol's reserve/submit ownership rules.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

/// Data ranges of live rings, `(start, end, ring)`: how checked runs vet a record pointer a
/// program passes to submit/discard before trusting its header.
static RINGS: RwLock<Vec<(u64, u64, usize)>> = RwLock::new(Vec::new());

impl Ring {
    fn data(&self) -> *mut u8 {
        // SAFETY: the mapping is PAGE + 2 * size bytes long.
        unsafe { self.base.add(PAGE) }
    }

    /// The header word `len` of the record at position `pos`.
    fn len_word(&self, pos: u64) -> &AtomicU32 {
        // SAFETY: `pos & mask` is inside the data area, 8-aligned (records are multiples of 8),
        // and the mapping lives as long as `self`.
        unsafe { &*(self.data().add((pos & self.mask) as usize) as *const AtomicU32) }
    }

    fn reserve(&self, size: u64) -> Option<NonNull<u8>> {
        if size > MAX_RECORD_SZ {
            return None;
        }
        let len = (size + BPF_RINGBUF_HDR_SZ as u64 + 7) & !7;
        if len > self.size {
            return None;
        }
        let _guard = self.producer_lock.lock();
        // Acquire: pairs with the consumer's release of the space it freed.
        let cons_pos = self.consumer_pos.load(Ordering::Acquire);
        let prod_pos = self.producer_pos.load(Ordering::Relaxed);
        let new_prod_pos = prod_pos + len;
        // As the kernel (6.10+): records still BUSY pin their space even if the consumer
        // position were moved past them.
        let mut pend_pos = self.pending_pos.load(Ordering::Relaxed);
        while pend_pos < prod_pos {
            let hdr_len = self.len_word(pend_pos).load(Ordering::Acquire);
            if hdr_len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let l = (hdr_len & !BPF_RINGBUF_DISCARD_BIT) as u64 + BPF_RINGBUF_HDR_SZ as u64;
            pend_pos += (l + 7) & !7;
        }
        self.pending_pos.store(pend_pos, Ordering::Relaxed);
        if new_prod_pos - cons_pos > self.mask || new_prod_pos - pend_pos > self.mask {
            return None;
        }
        let off = (prod_pos & self.mask) as usize;
        // SAFETY: the header lies inside the data area (8 bytes at an 8-aligned offset).
        let hdr = unsafe { self.data().add(off) };
        let pg_off = ((PAGE + off) / PAGE) as u32;
        // SAFETY: as above; pg_off is a plain store before the release below publishes it.
        unsafe { (hdr.add(4) as *mut u32).write(pg_off) };
        self.len_word(prod_pos)
            .store(size as u32 | BPF_RINGBUF_BUSY_BIT, Ordering::Relaxed);
        // Release: the consumer sees the BUSY header before it sees the new producer position.
        self.producer_pos.store(new_prod_pos, Ordering::Release);
        // SAFETY: the record's data follows its header, inside the doubled mapping.
        NonNull::new(unsafe { hdr.add(BPF_RINGBUF_HDR_SZ as usize) })
    }

    /// Submits or discards the record whose data starts at `sample`.
    ///
    /// # Safety
    /// `sample` was returned by [`Ring::reserve`] of this ring and not yet committed.
    unsafe fn commit(sample: *mut u8, discard: bool) {
        // SAFETY: the header is 8 bytes before the data (caller's contract).
        let hdr = unsafe { sample.sub(BPF_RINGBUF_HDR_SZ as usize) };
        // SAFETY: header word of a live record, 4-aligned.
        let len = unsafe { &*(hdr as *const AtomicU32) };
        let mut new_len = len.load(Ordering::Relaxed) & !BPF_RINGBUF_BUSY_BIT;
        if discard {
            new_len |= BPF_RINGBUF_DISCARD_BIT;
        }
        // SeqCst swap, as the kernel's xchg: the data written before is visible to a consumer
        // that sees the header without BUSY.
        len.swap(new_len, Ordering::SeqCst);
    }

    /// The ring a record belongs to, from its header's `pg_off`.
    ///
    /// # Safety
    /// `sample` was returned by [`Ring::reserve`] of a live ring.
    unsafe fn of_sample<'a>(sample: *mut u8) -> Option<&'a Ring> {
        // SAFETY: caller's contract: a live record, header 8 bytes before it.
        let hdr = unsafe { sample.sub(BPF_RINGBUF_HDR_SZ as usize) };
        // SAFETY: as above.
        let pg_off = unsafe { (hdr.add(4) as *const u32).read() } as usize;
        let page = (hdr as usize) & !(PAGE - 1);
        // Headers always sit in the first copy of the data (positions are masked), so the
        // page distance leads back to the header page.
        let base = page.checked_sub(pg_off * PAGE)? as *const u64;
        // SAFETY: base is the ring's first page, which starts with MAGIC and the ring pointer.
        unsafe {
            if base.read() != MAGIC {
                return None;
            }
            Some(&*(base.add(1).read() as *const Ring))
        }
    }
}

/// A RINGBUF map.
#[derive(Debug)]
pub struct RingBufMap {
    spec: MapSpec,
    ring: Box<Ring>,
}

impl RingBufMap {
    /// Validates the declaration as `ringbuf_map_alloc` does and maps the ring.
    pub fn new(spec: MapSpec) -> Result<RingBufMap, String> {
        if spec.key_size != 0 || spec.value_size != 0 {
            return Err("ringbuf key and value sizes must be 0".into());
        }
        if spec.flags & !BPF_F_NUMA_NODE != 0 {
            return Err(format!("ringbuf flags {:#x} not allowed", spec.flags));
        }
        let size = spec.max_entries as usize;
        if !size.is_power_of_two() || !size.is_multiple_of(PAGE) {
            return Err(format!(
                "ringbuf max_entries {size} is not a power-of-2 multiple of the page size"
            ));
        }
        let base = map_doubled(size).map_err(|e| format!("ringbuf mapping: {e}"))?;
        let ring = Box::new(Ring {
            base,
            size: size as u64,
            mask: size as u64 - 1,
            consumer_pos: AtomicU64::new(0),
            producer_pos: AtomicU64::new(0),
            pending_pos: AtomicU64::new(0),
            producer_lock: Mutex::new(()),
            consumer_lock: Mutex::new(()),
        });
        // SAFETY: the first page is ours and writable; 16 bytes fit.
        unsafe {
            (base as *mut u64).write(MAGIC);
            (base as *mut u64)
                .add(1)
                .write(&*ring as *const Ring as u64);
        }
        let start = ring.data() as u64;
        RINGS.write().push((
            start,
            start + 2 * size as u64,
            &*ring as *const Ring as usize,
        ));
        Ok(RingBufMap { spec, ring })
    }

    /// Size of the data area in bytes.
    pub fn size(&self) -> u64 {
        self.ring.size
    }

    /// Reserves a record of `size` bytes (`bpf_ringbuf_reserve`): `None` when the ring lacks
    /// space. The record must be passed to [`RingBufMap::submit`] or
    /// [`RingBufMap::discard`].
    pub fn reserve(&self, size: u64) -> Option<NonNull<u8>> {
        self.ring.reserve(size)
    }

    /// Makes a reserved record visible to the consumer (`bpf_ringbuf_submit`).
    ///
    /// # Safety
    /// `sample` came from [`RingBufMap::reserve`] (or the helper) and is not yet committed.
    pub unsafe fn submit(sample: NonNull<u8>) {
        // SAFETY: forwarded contract.
        unsafe { Ring::commit(sample.as_ptr(), false) }
    }

    /// Drops a reserved record (`bpf_ringbuf_discard`); its space is freed when consumed.
    ///
    /// # Safety
    /// As [`RingBufMap::submit`].
    pub unsafe fn discard(sample: NonNull<u8>) {
        // SAFETY: forwarded contract.
        unsafe { Ring::commit(sample.as_ptr(), true) }
    }

    /// Copies `data` into a new record and submits it (`bpf_ringbuf_output`); `false` when
    /// the ring lacks space.
    pub fn output(&self, data: &[u8]) -> bool {
        let Some(rec) = self.ring.reserve(data.len() as u64) else {
            return false;
        };
        // SAFETY: the record holds data.len() writable bytes; it is then committed once.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), rec.as_ptr(), data.len());
            Ring::commit(rec.as_ptr(), false);
        }
        true
    }

    /// `bpf_ringbuf_query(flags)`: available data, ring size, consumer or producer position.
    pub fn query(&self, flags: u64) -> u64 {
        let r = &self.ring;
        match flags {
            BPF_RB_AVAIL_DATA => {
                let prod = r.producer_pos.load(Ordering::Acquire);
                let cons = r.consumer_pos.load(Ordering::Acquire);
                prod.wrapping_sub(cons)
            }
            BPF_RB_RING_SIZE => r.size,
            BPF_RB_CONS_POS => r.consumer_pos.load(Ordering::Acquire),
            BPF_RB_PROD_POS => r.producer_pos.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// Hands every submitted record to `f` in order, skipping discarded ones, and frees their
    /// space; stops at the first record still being written. Returns the number of records
    /// given to `f`. Safe to call from any thread while workers produce.
    pub fn consume(&self, mut f: impl FnMut(&[u8])) -> usize {
        let r = &self.ring;
        let _guard = r.consumer_lock.lock();
        let mut count = 0;
        let mut cons = r.consumer_pos.load(Ordering::Relaxed);
        loop {
            // Acquire: pairs with the producers' release of producer_pos.
            let prod = r.producer_pos.load(Ordering::Acquire);
            if cons >= prod {
                return count;
            }
            while cons < prod {
                // Acquire: pairs with the commit's swap, making the record's data visible.
                let len = r.len_word(cons).load(Ordering::Acquire);
                if len & BPF_RINGBUF_BUSY_BIT != 0 {
                    return count;
                }
                let data_len = (len & !BPF_RINGBUF_DISCARD_BIT) as usize;
                if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                    let off = (cons & r.mask) as usize + BPF_RINGBUF_HDR_SZ as usize;
                    // SAFETY: the record's data lies in the doubled mapping and is complete
                    // (BUSY clear); no producer touches it until consumer_pos passes it.
                    let rec = unsafe { std::slice::from_raw_parts(r.data().add(off), data_len) };
                    f(rec);
                    count += 1;
                }
                cons += (data_len as u64 + BPF_RINGBUF_HDR_SZ as u64 + 7) & !7;
                // Release: the producers may reuse the space once they see this.
                r.consumer_pos.store(cons, Ordering::Release);
            }
        }
    }

    /// The ring map a record pointer from `bpf_ringbuf_reserve` belongs to, checked against
    /// every live ring (for checked runs, where the pointer comes from untrusted code).
    /// Returns whether the record is live (BUSY) in a known ring.
    pub fn is_live_record(sample: u64) -> bool {
        let Some(hdr) = sample.checked_sub(BPF_RINGBUF_HDR_SZ as u64) else {
            return false;
        };
        let rings = RINGS.read();
        let Some(&(_, _, ring)) = rings.iter().find(|(s, e, _)| {
            hdr >= *s && hdr + BPF_RINGBUF_HDR_SZ as u64 <= *e && hdr.is_multiple_of(8)
        }) else {
            return false;
        };
        // SAFETY: `ring` is registered, hence alive (unregistered before it is freed), and
        // RINGS stays read-locked while we use it.
        let ring = unsafe { &*(ring as *const Ring) };
        let pos = hdr - ring.data() as u64;
        ring.len_word(pos).load(Ordering::Acquire) & BPF_RINGBUF_BUSY_BIT != 0
    }

    /// Submits or discards a record given by a program (helpers 132, 133).
    ///
    /// # Safety
    /// `sample` is a live record of a live ring (proven by the verifier, or checked with
    /// [`RingBufMap::is_live_record`]).
    pub unsafe fn commit_raw(sample: u64, discard: bool) {
        // SAFETY: forwarded contract.
        unsafe {
            if Ring::of_sample(sample as *mut u8).is_some() {
                Ring::commit(sample as *mut u8, discard);
            }
        }
    }
}

impl Drop for RingBufMap {
    fn drop(&mut self) {
        let ring = &*self.ring as *const Ring as usize;
        RINGS.write().retain(|&(_, _, r)| r != ring);
        // SAFETY: the mapping was created by map_doubled with this length and nothing else
        // refers to it any more.
        unsafe {
            libc::munmap(self.ring.base.cast(), PAGE + 2 * self.ring.size as usize);
        }
    }
}

/// Maps one header page followed by `size` data bytes twice (the same file pages), like the
/// kernel's `bpf_ringbuf_area_alloc`.
fn map_doubled(size: usize) -> std::io::Result<*mut u8> {
    let err = std::io::Error::last_os_error;
    // SAFETY: plain syscalls; every result is checked and the fd closed before returning.
    unsafe {
        let fd = libc::memfd_create(c"userxdp-ringbuf".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(err());
        }
        let close = |e: std::io::Error| {
            libc::close(fd);
            e
        };
        if libc::ftruncate(fd, (PAGE + size) as libc::off_t) != 0 {
            return Err(close(err()));
        }
        let total = PAGE + 2 * size;
        let base = libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return Err(close(err()));
        }
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let fixed = libc::MAP_SHARED | libc::MAP_FIXED;
        let first = libc::mmap(base, PAGE + size, rw, fixed, fd, 0);
        let second = libc::mmap(
            base.cast::<u8>().add(PAGE + size).cast(),
            size,
            rw,
            fixed,
            fd,
            PAGE as libc::off_t,
        );
        if first == libc::MAP_FAILED || second == libc::MAP_FAILED {
            let e = err();
            libc::munmap(base, total);
            return Err(close(e));
        }
        libc::close(fd);
        Ok(base.cast())
    }
}

impl Map for RingBufMap {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn lookup(&self, _: &[u8], _: u32) -> Option<NonNull<u8>> {
        None
    }

    fn update(&self, _: &[u8], _: &[u8], _: u64, _: u32) -> Result<(), MapError> {
        Err(MapError::Unsupported("ringbuf"))
    }

    fn delete(&self, _: &[u8]) -> Result<(), MapError> {
        Err(MapError::Unsupported("ringbuf"))
    }

    fn next_key(&self, _: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        Err(MapError::Unsupported("ringbuf"))
    }

    fn read(&self, _: &[u8]) -> Result<Vec<u8>, MapError> {
        Err(MapError::Unsupported("ringbuf (use RingBufMap::consume)"))
    }

    fn write(&self, _: &[u8], _: &[u8], _: u64) -> Result<(), MapError> {
        Err(MapError::Unsupported("ringbuf"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(size: u32) -> RingBufMap {
        RingBufMap::new(MapSpec {
            name: "rb".into(),
            map_type: super::super::types::RINGBUF,
            key_size: 0,
            value_size: 0,
            max_entries: size,
            flags: 0,
            inner: None,
            data: None,
            pinning: Default::default(),
            global_data: false,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            spin_lock_offset: None,
            initial_slots: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn wraps_contiguously_and_accounts_space() {
        let rb = ring(4096);
        let mut got = Vec::new();
        for round in 0..100u32 {
            let rec = rb.reserve(100).expect("space");
            // SAFETY: 100 writable bytes, then submitted once (or discarded).
            unsafe {
                std::ptr::write_bytes(rec.as_ptr(), round as u8, 100);
                if round % 3 == 0 {
                    RingBufMap::discard(rec);
                } else {
                    RingBufMap::submit(rec);
                }
            }
            rb.consume(|r| got.push((r.len(), r[0], r[99])));
        }
        assert_eq!(got.len(), 66);
        assert!(got.iter().all(|&(l, a, b)| l == 100 && a == b));
        assert_eq!(rb.query(BPF_RB_AVAIL_DATA), 0);
        // 4096-byte ring: at most mask (4095) bytes outstanding, 112 bytes per record.
        let mut n = 0;
        while rb.output(&[1; 100]) {
            n += 1;
        }
        assert_eq!(n, 4095 / 112);
        rb.consume(|_| {});
        let rec = rb.reserve(0).expect("space");
        assert!(RingBufMap::is_live_record(rec.as_ptr() as u64));
        // SAFETY: reserved above, committed once.
        unsafe { RingBufMap::submit(rec) };
        assert!(!RingBufMap::is_live_record(rec.as_ptr() as u64));
    }

    #[test]
    fn consumer_thread_sees_every_record() {
        let rb = std::sync::Arc::new(ring(8192));
        let producer = {
            let rb = rb.clone();
            std::thread::spawn(move || {
                let mut i = 0u32;
                while i < 20_000 {
                    if rb.output(&i.to_ne_bytes()) {
                        i += 1;
                    }
                }
            })
        };
        let mut next = 0u32;
        while next < 20_000 {
            rb.consume(|r| {
                assert_eq!(u32::from_ne_bytes(r.try_into().unwrap()), next);
                next += 1;
            });
        }
        producer.join().unwrap();
    }
}
