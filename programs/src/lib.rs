//! The project's eBPF programs, compiled by `build.rs` with
//! `clang -target bpf -O2 -g -mcpu=v3` into this crate's `OUT_DIR`.
//!
//! Every `programs/*.bpf.c` and `programs/test/*.bpf.c` becomes one object named after its file
//! (`xdp_parse.bpf.c` -> `"xdp_parse"`). Tests and benchmarks load them by name with [`path`] or
//! [`bytes`] and loop over [`NAMES`].

use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/names.rs"));

/// Objects the kernel (through libbpf) refuses to load, on purpose or by libbpf policy. Our
/// loader must still parse them; kernel-verification tests skip them.
pub const KERNEL_REJECTS: &[&str] = &[
    // Legacy `SEC("maps") struct bpf_map_def` maps: libbpf >= 1.0 refuses the `maps` section
    // ("legacy map definitions in 'maps' section are not supported by libbpf v1.0+").
    "xdp_legacy_maps",
    // Reads the packet past `data_end` without a bounds check: the verifier must reject it.
    "bad_oob",
];

/// Objects whose maps are far too big to create at full size (multi-GB ARRAY, pinned HASH,
/// map-in-map): verify them (the kernel verifier sees shrunken maps), never load them whole
/// (e.g. as a kernel oracle) on a small machine.
pub const HUGE_MAPS: &[&str] = &["big_maps"];

/// `redirect.o`, the kernel half of the AF_XDP datapath, built into the binary so that
/// `run-datapath` needs no file next to it.
pub const REDIRECT_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/redirect.o"));

/// The directory holding every built object (`OUT_DIR` of this crate's build script).
pub fn dir() -> PathBuf {
    PathBuf::from(env!("OUT_DIR"))
}

/// Path of the object built from `<name>.bpf.c` (`name` without `.o`, e.g. `"xdp_parse"`), or
/// `None` if no such program was built.
pub fn path(name: &str) -> Option<PathBuf> {
    if !NAMES.contains(&name) {
        return None;
    }
    let p = dir().join(format!("{name}.o"));
    p.is_file().then_some(p)
}

/// Contents of the object built from `<name>.bpf.c`, or `None` if it was not built or cannot
/// be read.
pub fn bytes(name: &str) -> Option<Vec<u8>> {
    std::fs::read(path(name)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_an_object() {
        assert!(!NAMES.is_empty());
        for name in NAMES {
            let b = bytes(name).unwrap_or_else(|| panic!("{name}.o missing"));
            assert_eq!(&b[..4], b"\x7fELF", "{name}.o is not ELF");
        }
        assert!(path("no_such_program").is_none());
    }

    #[test]
    fn listed_objects_are_built() {
        for name in KERNEL_REJECTS.iter().chain(HUGE_MAPS) {
            assert!(
                NAMES.contains(name),
                "{name} listed in KERNEL_REJECTS but not built"
            );
        }
    }
}
