//! The Cranelift JIT.
