//! Kernel helpers, by kernel ID, in one table.
//!
//! Every helper has the signature [`HelperFn`]: five eBPF argument registers and the run
//! environment. The interpreter and the JIT call the same functions. A helper that rejects its
//! arguments (checked runs only) calls [`RunEnv::raise`] and returns 0; the engine then stops.

mod names;

use crate::vm::env::RunEnv;

pub use names::kernel_name;

/// The calling convention of a helper: r1..r5 and the environment; the result goes to r0.
pub type HelperFn =
    unsafe extern "C" fn(r1: u64, r2: u64, r3: u64, r4: u64, r5: u64, env: *mut RunEnv) -> u64;

/// One helper implementation.
#[derive(Debug)]
pub struct Helper {
    /// Kernel helper ID (`BPF_FUNC_*`).
    pub id: i32,
    /// Kernel name without the `bpf_` prefix.
    pub name: &'static str,
    /// The implementation.
    pub func: HelperFn,
}

/// The helper with kernel ID `id`, if the runtime implements it.
pub fn get(id: i32) -> Option<&'static Helper> {
    TABLE.iter().find(|h| h.id == id)
}

/// Every implemented helper.
pub fn all() -> &'static [Helper] {
    TABLE
}

static TABLE: &[Helper] = &[];
