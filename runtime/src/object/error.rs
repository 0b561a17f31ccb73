//! Why an object file cannot be turned into an [`ObjectSpec`](super::ObjectSpec).
//!
//! Every variant says where: the section, the symbol (program or map name), and the instruction
//! index or byte offset. Instruction indices (`insn`) count 8-byte slots from the start of the
//! ELF section, as `llvm-objdump -d` numbers them.

use std::path::PathBuf;

use crate::vm::insn::DecodeError;

/// An object file that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The file could not be read.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an ELF file at all.
    #[error("not an ELF file: {reason}")]
    NotElf {
        /// What is wrong with the identification.
        reason: &'static str,
    },
    /// An ELF file, but not a 64-bit little-endian eBPF object (`EM_BPF`).
    #[error("not a 64-bit little-endian eBPF object (e_machine {machine}): {reason}")]
    WrongMachine {
        /// `e_machine` of the file.
        machine: u16,
        /// What does not match.
        reason: &'static str,
    },
    /// A header, table or section extends past the end of the file.
    #[error("{section}: truncated or out of file bounds")]
    Truncated {
        /// The section (or header table) that does not fit.
        section: String,
    },
    /// A section whose contents make no sense for its role.
    #[error("section {section}: {reason}")]
    BadSection {
        /// The section.
        section: String,
        /// What is wrong.
        reason: String,
    },
    /// A symbol that points outside its section or is otherwise unusable.
    #[error("section {section}, symbol {symbol}: {reason}")]
    BadSymbol {
        /// The section the symbol belongs to.
        section: String,
        /// The symbol.
        symbol: String,
        /// What is wrong.
        reason: String,
    },
    /// A relocation that cannot be applied.
    #[error("section {section}, byte offset {offset}, symbol {symbol}: bad relocation: {reason}")]
    BadRelocation {
        /// The section the relocation applies to.
        section: String,
        /// Byte offset of the relocated instruction in that section.
        offset: u64,
        /// The symbol the relocation refers to (`#n` when the index is invalid).
        symbol: String,
        /// What is wrong.
        reason: String,
    },
    /// Malformed `.BTF` data.
    #[error("section .BTF, byte offset {offset}: {reason}")]
    Btf {
        /// Byte offset inside the `.BTF` section.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A map type the kernel does not define.
    #[error("map {map}: unknown map type {map_type}")]
    UnknownMapType {
        /// The map.
        map: String,
        /// The type number.
        map_type: u32,
    },
    /// A map definition that cannot be decoded.
    #[error("map {map}: bad definition: {reason}")]
    BadMapDefinition {
        /// The map.
        map: String,
        /// What is wrong.
        reason: String,
    },
    /// A linked program fails structural validation.
    #[error("section {section}, symbol {symbol}, insn {insn}: invalid instruction")]
    Instruction {
        /// The section holding the bad instruction.
        section: String,
        /// The function (program or subprogram) holding it.
        symbol: String,
        /// Instruction index in the section.
        insn: usize,
        /// The decoder's verdict (its own index counts in the linked program).
        #[source]
        source: DecodeError,
    },
    /// A call to a helper ID that is not a kernel helper.
    #[error("section {section}, symbol {symbol}, insn {insn}: call to unknown helper {id}")]
    UnknownHelper {
        /// The section holding the call.
        section: String,
        /// The function holding the call.
        symbol: String,
        /// Instruction index in the section.
        insn: usize,
        /// The helper ID.
        id: i32,
    },
    /// A bpf-to-bpf call (or callback reference) to code that is no function of the object.
    #[error(
        "section {section}, symbol {symbol}, insn {insn}: call to missing function (target {target})"
    )]
    MissingFunction {
        /// The section holding the call.
        section: String,
        /// The function holding the call.
        symbol: String,
        /// Instruction index in the section.
        insn: usize,
        /// Target instruction index in the target section (as encoded, may be out of range).
        target: i64,
    },
    /// The object has no program section.
    #[error("object has no programs")]
    NoPrograms,
}
