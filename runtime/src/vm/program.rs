//! A program ready for an engine: relocated instructions, function table, helpers resolved.

use std::sync::Arc;

use super::insn::{self, Insn, BPF_CALL, BPF_JMP, CALL_HELPER, CALL_KFUNC, CALL_LOCAL};
use super::interp::Decoded;
use super::memory::fixed_regions;
use crate::helpers;
use crate::maps::Map;
use crate::object::spec::ProgramType;

/// Why a program cannot be prepared for execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// The instruction stream is malformed.
    #[error("program {program}: {source}")]
    Decode {
        /// Program name.
        program: String,
        /// What is malformed.
        #[source]
        source: insn::DecodeError,
    },
    /// A call to a helper the runtime does not implement.
    #[error("program {program}: insn {insn}: unknown helper {id}{}", helpers::kernel_name(*id).map(|n| format!(" ({n})")).unwrap_or_default())]
    UnknownHelper {
        /// Program name.
        program: String,
        /// Instruction index.
        insn: usize,
        /// Helper ID.
        id: i32,
    },
    /// A kfunc call (kernel functions cannot run in userspace).
    #[error("program {program}: insn {insn}: kfunc calls are not supported in userspace")]
    Kfunc {
        /// Program name.
        program: String,
        /// Instruction index.
        insn: usize,
    },
}

/// An engine-ready program.
///
/// Invariants the engines rely on: `insns` passed [`insn::validate`]; every ld_imm64 that
/// referred to a map now has `src == 0` and the final address as its 64-bit immediate (only
/// `PSEUDO_FUNC` remains pseudo); every helper call names a helper in [`helpers::get`];
/// `functions[0] == 0` and `functions` lists every local-call target, sorted.
#[derive(Debug, Clone)]
pub struct PreparedProgram {
    /// Program name (for errors and traces).
    pub name: String,
    /// Program type: decides the context layout.
    pub prog_type: ProgramType,
    /// Relocated instructions.
    pub insns: Vec<Insn>,
    /// Entry instruction of every function: the program (0) and its subprograms.
    pub functions: Vec<usize>,
    /// The interpreter's form of `insns`, decoded once here (changing `insns` afterwards does
    /// not change what the interpreter runs).
    pub(crate) decoded: Arc<Decoded>,
}

impl PreparedProgram {
    /// Validates relocated instructions, resolves helpers and finds function entries.
    pub fn new(
        name: impl Into<String>,
        prog_type: ProgramType,
        insns: Vec<Insn>,
    ) -> Result<Self, PrepareError> {
        let name = name.into();
        insn::validate(&insns).map_err(|source| PrepareError::Decode {
            program: name.clone(),
            source,
        })?;
        let mut functions = vec![0usize];
        let mut pc = 0;
        while pc < insns.len() {
            let i = insns[pc];
            if i.op == BPF_JMP | BPF_CALL {
                match i.src {
                    CALL_HELPER if helpers::get(i.imm).is_none() => {
                        return Err(PrepareError::UnknownHelper {
                            program: name,
                            insn: pc,
                            id: i.imm,
                        });
                    }
                    CALL_LOCAL => {
                        functions.push((pc as i64 + 1 + i.imm as i64) as usize);
                    }
                    CALL_KFUNC => {
                        return Err(PrepareError::Kfunc {
                            program: name,
                            insn: pc,
                        })
                    }
                    _ => {}
                }
            }
            if i.is_ld_imm64() && i.src == insn::PSEUDO_FUNC {
                functions.push((pc as i64 + 1 + i.imm as i64) as usize);
            }
            pc += if i.is_ld_imm64() { 2 } else { 1 };
        }
        functions.sort_unstable();
        functions.dedup();
        let decoded = Arc::new(Decoded::new(&insns));
        Ok(PreparedProgram {
            name,
            prog_type,
            insns,
            functions,
            decoded,
        })
    }

    /// Decodes the interpreter's form again with loads and stores through constant addresses
    /// (global data, direct array values) into the storage of `maps` proven once, here,
    /// instead of on every run. The decoded form holds the maps, so that storage outlives it
    /// wherever the program is run.
    pub(crate) fn prove_fixed_accesses(&mut self, maps: &[Arc<dyn Map>]) {
        let fixed = fixed_regions(maps);
        // SAFETY: the regions are the storage of `maps` (valid for each map's whole life,
        // `Map::fixed_regions`), which the decoded form keeps.
        let decoded =
            unsafe { Decoded::with_fixed(&self.insns, &self.functions, &fixed, maps.into()) };
        self.decoded = Arc::new(decoded);
    }

    /// The function (index into `functions`) that contains instruction `pc`.
    pub fn function_of(&self, pc: usize) -> usize {
        match self.functions.binary_search(&pc) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    /// Instruction range `[start, end)` of function `f`.
    pub fn function_range(&self, f: usize) -> std::ops::Range<usize> {
        let start = self.functions[f];
        let end = self
            .functions
            .get(f + 1)
            .copied()
            .unwrap_or(self.insns.len());
        start..end
    }
}
