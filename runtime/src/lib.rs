//! userxdp runtime: run unmodified XDP and TC eBPF objects in userspace.
//!
//! - [`object`] parses ELF objects into [`object::ObjectSpec`]s (pure, no syscalls).
//! - [`vm`] holds the instruction table, the checked interpreter and the Cranelift JIT, and
//!   [`vm::Vm`], which instantiates a program with its maps and runs it on packets.
//! - [`maps`] and [`helpers`] implement kernel maps and helpers with kernel semantics.
//! - [`context`] lays out `xdp_md` / `__sk_buff` and packet memory below 4 GiB.
//! - [`kernel`] is the only module that makes bpf() syscalls: verification and the
//!   `BPF_PROG_TEST_RUN` oracle.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod context;
pub mod helpers;
pub mod kernel;
pub mod maps;
pub mod object;
pub mod skb;
pub mod vm;
