//! userxdp datapath: devices, workers, verdict handling and the command-line tools.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod area;
pub mod capture;
pub mod cli;
pub mod control;
pub mod device;
pub mod kattach;
pub mod launch;
pub mod lb;
pub mod netdev;
pub mod slot;
pub mod stats;
pub mod steer;
pub mod tap;
pub mod trace;
pub mod verdict;
pub mod worker;
