//! Kernel verification of one program of an object, without the object's memory cost.

use super::load::{load_object, LoadOptions};
use super::KernelError;
use crate::object::spec::ProgramType;

/// Has the kernel verifier check `program` of the ELF object `object_bytes`, then unloads it.
///
/// Ordinary maps are created with `max_entries` 1 (global-data maps and inner-map templates
/// keep their size), pinning is ignored, and only `program` is loaded, optionally as
/// `prog_type` instead of the type its section implies. Shrinking maps can only make the
/// verifier stricter, so an accepted program is accepted at full size too.
///
/// Errors: [`KernelError::Rejected`] with the verifier log when the verifier says no,
/// [`KernelError::NotFound`] for an unknown program, [`KernelError::Libbpf`] when libbpf
/// refuses the object itself (e.g. legacy `maps` sections), [`KernelError::Unsupported`]
/// without BPF privileges.
pub fn verify(
    object_bytes: &[u8],
    program: &str,
    prog_type: Option<ProgramType>,
) -> Result<(), KernelError> {
    super::probe()?;
    let loaded = load_object(
        object_bytes,
        LoadOptions {
            only: Some(program),
            prog_type,
            shrink_maps: true,
        },
    )?;
    drop(loaded);
    Ok(())
}
