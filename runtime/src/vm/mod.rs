//! The virtual machine: one instruction table, two engines, and the program instance API.

pub mod asm;
pub mod env;
pub mod error;
pub mod insn;
pub mod instance;
pub mod interp;
pub mod jit;
pub mod memory;
pub mod program;
pub mod raw;
