//! Benchmark and comparison support: packet corpora and kernel-vs-userspace measurement.
#![warn(missing_docs)]

pub mod baseline;
pub mod memcache;
pub mod packets;
pub mod stats;

pub use baseline::{empty_vm, pin_current_thread};
