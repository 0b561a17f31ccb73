//! userxdp datapath: devices, workers, verdict handling and the command-line tools.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod capture;
pub mod cli;
