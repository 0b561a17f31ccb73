//! Object files: ELF parsing into specs. Pure: no syscalls, no `unsafe`.
#![forbid(unsafe_code)]

pub mod spec;
