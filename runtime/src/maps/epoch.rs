//! Epoch-based reclamation for map memory that programs hold pointers into.
//!
//! A value pointer returned by a map lookup must stay valid for the rest of the program run,
//! even when another worker or the control plane deletes or replaces the element meanwhile (the
//! kernel gets this from RCU). Maps that free memory while programs may run (the HASH family)
//! unlink the element at once and hand its memory to [`crossbeam_epoch`], which frees it only
//! after every thread that was pinned at that moment has unpinned.
//!
//! The contract, for whoever runs programs:
//!
//! - **A thread that runs programs is pinned for the whole run.** A datapath worker calls
//!   [`pin`] once per batch of packets (`Runner::begin_batch` / `Runner::end_batch`), not once
//!   per packet, and unpins between batches so that memory can be reclaimed. A run that is not
//!   inside a batch pins for itself (`Runner` does this), so library users calling `run_xdp`
//!   directly stay safe.
//! - **Pointers from [`crate::maps::Map::lookup`] are valid only while the caller is pinned.**
//!   Lookups pin internally too (a nested pin costs a thread-local counter increment), but that
//!   guard only protects the search itself: the returned pointer outlives it only because the
//!   caller's own pin is still held. Programs' hash lookups in both engines
//!   ([`crate::maps::HashMap::lookup_pinned`]) take no guard at all: the run's pin covers the
//!   search too.
//! - **Do not stay pinned forever.** A worker that never unpins stops reclamation for everyone
//!   (memory grows, nothing breaks). Unpin between batches, or call [`Guard::repin`].

pub use crossbeam_epoch::Guard;

/// Pins the current thread: memory retired from now on is not freed until this guard (and
/// every other guard pinned before the retirement) is dropped. Pinning an already pinned
/// thread is cheap and nests.
#[inline]
pub fn pin() -> Guard {
    crossbeam_epoch::pin()
}

/// Whether the current thread is pinned.
#[inline]
pub fn is_pinned() -> bool {
    crossbeam_epoch::is_pinned()
}

/// Moves this thread's retired-but-not-yet-freed memory to the global queue and frees what can
/// be freed. Threads that delete a lot and rarely pin (a control plane) may call it now and
/// then; nothing depends on it.
pub fn flush() {
    pin().flush();
}

/// Frees `value` once no thread that was pinned when it was retired (no program run that
/// could hold a pointer into it) is still pinned. For map memory other than hash elements:
/// redirect-target slots, inner maps of a map-of-maps.
pub fn retire<T: Send + 'static>(value: T) {
    pin().defer(move || drop(value));
}
