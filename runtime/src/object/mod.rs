//! Object files: ELF parsing into specs. Pure: no syscalls, no `unsafe`.
//!
//! [`parse`] turns the bytes of a clang `-target bpf` object into an [`ObjectSpec`], doing what
//! libbpf does before it talks to the kernel:
//!
//! - every executable section except `.text` is a program section; each global `STT_FUNC`
//!   symbol in it is one program (a section may hold several); the section name gives the
//!   program type as libbpf 1.x matches it (`xdp`, `xdp.frags`, `xdp/devmap`, `tc/egress`,
//!   `classifier`, `socket`, ...). Names libbpf does not know give `ProgramType::Other(0)`
//!   unless [`ParseOptions::prog_type_override`] says otherwise;
//! - `.text` functions (and static functions) reached by bpf-to-bpf calls or callback references
//!   (`BPF_PSEUDO_FUNC`) are appended to each program that uses them, once, with call offsets
//!   rewritten ([`spec::ProgramSpec::subprograms`]);
//! - maps come from BTF-defined `.maps` (with map-in-map inner templates), legacy `maps`
//!   sections (`struct bpf_map_def`, 20 or 28 bytes) and global data (`.data*`, `.rodata*`,
//!   `.bss*` as single-entry ARRAYs); ld_imm64 relocations against them become
//!   [`MapReloc`]s, the instructions themselves are left as clang wrote them;
//! - every linked program passes [`crate::vm::insn::validate`] and calls only kernel helpers.
//!
//! Not handled: CO-RE relocations (`.BTF.ext` is ignored), externs (`.kconfig`, `.ksyms`,
//! kfuncs: an error), initial slots of map-in-map `values` (`.rel.maps`, ignored). Initial slots
//! of prog arrays are read into [`MapSpec::initial_slots`].
//!
//! No input panics: every offset is checked, and errors name the section, symbol and
//! instruction ([`ObjectError`]).
#![forbid(unsafe_code)]

mod btf;
mod elf;
mod error;
mod link;
mod maps;
mod section;
pub mod spec;

use std::path::Path;

pub use error::ObjectError;
pub use section::{classify, SectionKind};
pub use spec::{
    AttachPoint, MapRefKind, MapReloc, MapSpec, ObjectSpec, Pinning, ProgramSpec, ProgramType,
};

use btf::Btf;
use elf::{Aligned, Elf};

/// Options for [`parse_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Program type for every program, instead of the one the section name implies.
    pub prog_type_override: Option<ProgramType>,
}

/// Parses an object file with default options.
pub fn parse(bytes: &[u8]) -> Result<ObjectSpec, ObjectError> {
    parse_with(bytes, &ParseOptions::default())
}

/// Reads and parses the object file at `path`.
pub fn open(path: &Path) -> Result<ObjectSpec, ObjectError> {
    let bytes = std::fs::read(path).map_err(|source| ObjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes)
}

/// Parses an object file.
pub fn parse_with(bytes: &[u8], opts: &ParseOptions) -> Result<ObjectSpec, ObjectError> {
    if elf::is_aligned(bytes) {
        parse_aligned(bytes, opts)
    } else {
        parse_aligned(Aligned::new(bytes).bytes(), opts)
    }
}

fn parse_aligned(bytes: &[u8], opts: &ParseOptions) -> Result<ObjectSpec, ObjectError> {
    let elf = Elf::parse(bytes)?;
    let btf = match elf.section_by_name(".BTF") {
        Some(i) => Some(Btf::parse(elf.sections[i].data)?),
        None => None,
    };
    let maps = maps::collect(&elf, btf.as_ref())?;
    let code = link::Code::new(&elf)?;
    let mut programs = Vec::new();
    for (index, func) in code.funcs.iter().enumerate() {
        if !func.program {
            continue;
        }
        let linked = code.link(index, &maps)?;
        let section = elf.section_name(func.section);
        let kind = section::classify(&section);
        programs.push(ProgramSpec {
            name: func.name.clone(),
            prog_type: opts.prog_type_override.unwrap_or(kind.prog_type),
            attach: kind.attach,
            xdp_frags: kind.xdp_frags,
            section,
            insns: linked.insns,
            map_relocs: linked.map_relocs,
            subprograms: linked.subprograms,
        });
    }
    if programs.is_empty() {
        return Err(ObjectError::NoPrograms);
    }
    let license = elf
        .section_by_name("license")
        .map(|i| {
            let d = elf.sections[i].data;
            let end = d.iter().position(|&c| c == 0).unwrap_or(d.len());
            String::from_utf8_lossy(&d[..end]).into_owned()
        })
        .unwrap_or_default();
    Ok(ObjectSpec {
        license,
        maps: maps.specs,
        programs,
    })
}
