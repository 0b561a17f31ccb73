//! Benchmark and comparison support: packet corpora and kernel-vs-userspace measurement.
#![warn(missing_docs)]

pub mod packets;
pub mod stats;
