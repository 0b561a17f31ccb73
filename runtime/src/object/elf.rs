//! The ELF layer: sections, symbols and relocations of a 64-bit little-endian BPF object, copied
//! out of the `object` crate's raw structures into plain values the rest of the loader uses.
//!
//! Everything here is bounds-checked by `object`; nothing is trusted further than that: section
//! indices in symbols and relocations are checked by the consumers.

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, Rel as _, SectionHeader as _, Sym as _};
use object::LittleEndian;

use super::error::ObjectError;

/// `e_machine` of eBPF objects.
pub const EM_BPF: u16 = 247;

/// One section header with its data.
#[derive(Debug, Clone)]
pub struct Section<'a> {
    /// Section name (lossy UTF-8).
    pub name: String,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_size` (also for `SHT_NOBITS`, whose `data` is empty).
    pub size: u64,
    /// File contents; empty for `SHT_NOBITS`.
    pub data: &'a [u8],
}

impl Section<'_> {
    /// Whether the section holds code (`SHF_EXECINSTR`).
    pub fn is_exec(&self) -> bool {
        self.flags & elf::SHF_EXECINSTR.0 != 0
    }
}

/// One symbol table entry.
#[derive(Debug, Clone)]
pub struct Symbol {
    /// Symbol name (lossy UTF-8; section symbols are named after their section).
    pub name: String,
    /// `st_value`: byte offset inside the section for relocatable objects.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
    /// Defining section, `None` for undefined, absolute and common symbols.
    pub section: Option<usize>,
    /// `STT_*`.
    pub kind: u8,
    /// `STB_*`.
    pub bind: u8,
}

/// `STT_FUNC`.
pub const STT_FUNC: u8 = 2;
/// `STT_SECTION`.
pub const STT_SECTION: u8 = 3;
/// `SHT_PROGBITS`.
pub const SHT_PROGBITS: u32 = 1;
/// `SHT_NOBITS`.
pub const SHT_NOBITS: u32 = 8;
/// `STB_LOCAL`.
pub const STB_LOCAL: u8 = 0;

/// One `Elf64_Rel` entry.
#[derive(Debug, Clone, Copy)]
pub struct Reloc {
    /// Byte offset of the relocated field inside the target section.
    pub offset: u64,
    /// Symbol index.
    pub symbol: usize,
    /// `R_BPF_*`.
    pub kind: u32,
}

/// A relocation section and what it applies to.
#[derive(Debug, Clone)]
pub struct RelocSection {
    /// Index of the section the relocations apply to.
    pub target: usize,
    /// The entries.
    pub relocs: Vec<Reloc>,
}

/// The parts of an ELF file the loader needs.
#[derive(Debug, Clone)]
pub struct Elf<'a> {
    /// Every section, indexed by section number (index 0 is the null section).
    pub sections: Vec<Section<'a>>,
    /// Every symbol, indexed by symbol number (index 0 is the null symbol).
    pub symbols: Vec<Symbol>,
    /// Every `SHT_REL` section.
    pub reloc_sections: Vec<RelocSection>,
}

impl<'a> Elf<'a> {
    /// Parses the section table, the symbol table and the relocation sections.
    ///
    /// `bytes` must be 8-byte aligned (the `object` crate reads headers in place); see
    /// [`Aligned`].
    pub fn parse(bytes: &'a [u8]) -> Result<Elf<'a>, ObjectError> {
        check_ident(bytes)?;
        let header =
            FileHeader64::<LittleEndian>::parse(bytes).map_err(|e| ObjectError::Truncated {
                section: format!("ELF header ({e})"),
            })?;
        let endian = header.endian().map_err(|_| ObjectError::WrongMachine {
            machine: 0,
            reason: "not little endian",
        })?;
        let machine = header.e_machine(endian).0;
        if machine != EM_BPF {
            return Err(ObjectError::WrongMachine {
                machine,
                reason: "e_machine is not EM_BPF (247)",
            });
        }
        let table = header
            .sections(endian, bytes)
            .map_err(|e| ObjectError::Truncated {
                section: format!("section header table ({e})"),
            })?;
        let mut sections = Vec::with_capacity(table.len());
        for (index, sh) in table.enumerate() {
            let name = table
                .section_name(endian, sh)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .map_err(|_| ObjectError::BadSection {
                    section: format!("#{}", index.0),
                    reason: "name outside the section name table".into(),
                })?;
            let sh_type = sh.sh_type(endian).0;
            let data = if sh_type == elf::SHT_NOBITS.0 {
                &[][..]
            } else {
                sh.data(endian, bytes).map_err(|_| ObjectError::Truncated {
                    section: name.clone(),
                })?
            };
            sections.push(Section {
                name,
                sh_type,
                flags: sh.sh_flags(endian).0,
                size: sh.sh_size(endian),
                data,
            });
        }
        let symtab =
            table
                .symbols(endian, bytes, elf::SHT_SYMTAB)
                .map_err(|e| ObjectError::Truncated {
                    section: format!(".symtab ({e})"),
                })?;
        let mut symbols = Vec::with_capacity(symtab.len());
        for (index, sym) in symtab.enumerate() {
            let section = symtab
                .symbol_section(endian, sym, index)
                .ok()
                .flatten()
                .map(|s| s.0);
            let kind = sym.st_type().0;
            let mut name = symtab
                .symbol_name(endian, sym)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .map_err(|_| ObjectError::BadSymbol {
                    section: ".symtab".into(),
                    symbol: format!("#{}", index.0),
                    reason: "name outside the string table".into(),
                })?;
            if kind == STT_SECTION && name.is_empty() {
                if let Some(s) = section.and_then(|s| sections.get(s)) {
                    name.clone_from(&s.name);
                }
            }
            symbols.push(Symbol {
                name,
                value: sym.st_value(endian),
                size: sym.st_size(endian),
                section,
                kind,
                bind: sym.st_bind().0,
            });
        }
        let mut reloc_sections = Vec::new();
        for (index, sh) in table.enumerate() {
            let name = &sections[index.0].name;
            if let Some((rels, _link)) =
                sh.rel(endian, bytes).map_err(|_| ObjectError::Truncated {
                    section: name.clone(),
                })?
            {
                let relocs = rels
                    .iter()
                    .map(|r| Reloc {
                        offset: r.r_offset(endian),
                        symbol: r.r_sym(endian) as usize,
                        kind: r.r_type(endian).0,
                    })
                    .collect();
                reloc_sections.push(RelocSection {
                    target: sh.sh_info(endian) as usize,
                    relocs,
                });
            }
        }
        Ok(Elf {
            sections,
            symbols,
            reloc_sections,
        })
    }

    /// The name of section `index`, or `#index` when there is no such section.
    pub fn section_name(&self, index: usize) -> String {
        self.sections
            .get(index)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("#{index}"))
    }

    /// Index of the first section called `name`.
    pub fn section_by_name(&self, name: &str) -> Option<usize> {
        self.sections.iter().position(|s| s.name == name)
    }
}

/// Checks `e_ident` by hand, so that the common failures get precise errors before `object`
/// sees the file.
fn check_ident(bytes: &[u8]) -> Result<(), ObjectError> {
    let ident = bytes.get(..16).ok_or(ObjectError::NotElf {
        reason: "shorter than an ELF identification",
    })?;
    if ident[..4] != *b"\x7fELF" {
        return Err(ObjectError::NotElf {
            reason: "bad magic",
        });
    }
    if ident[4] != elf::ELFCLASS64.0 {
        return Err(ObjectError::WrongMachine {
            machine: machine_of(bytes),
            reason: "not a 64-bit ELF file",
        });
    }
    if ident[5] != elf::ELFDATA2LSB.0 {
        return Err(ObjectError::WrongMachine {
            machine: machine_of(bytes),
            reason: "not little endian",
        });
    }
    Ok(())
}

fn machine_of(bytes: &[u8]) -> u16 {
    bytes
        .get(18..20)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .unwrap_or(0)
}

/// An 8-byte aligned copy of the object bytes: `object` reads headers in place and refuses
/// misaligned ones, so a misaligned input (a sub-slice of a bigger buffer) is copied once.
pub struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    /// Copies `bytes` to an 8-aligned place.
    pub fn new(bytes: &[u8]) -> Aligned {
        let mut buf = vec![0u8; bytes.len() + 8];
        // The allocator's alignment of a byte vector is not promised; find the aligned start.
        let start = (8 - (buf.as_ptr() as usize) % 8) % 8;
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        Aligned {
            buf,
            start,
            len: bytes.len(),
        }
    }

    /// The aligned bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

/// Whether `bytes` starts at an 8-byte aligned address.
pub fn is_aligned(bytes: &[u8]) -> bool {
    (bytes.as_ptr() as usize).is_multiple_of(8)
}
