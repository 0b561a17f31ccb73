//! Code: functions, instruction relocations and bpf-to-bpf linking, as libbpf's
//! `bpf_object__reloc_code` does it.
//!
//! Every executable section is split into functions by its `STT_FUNC` symbols. Global functions
//! outside `.text` are programs; everything else is a subprogram. Linking a program copies its
//! instructions, then walks them: each local call (`call` with src 1) or callback reference
//! (ld_imm64 with src `BPF_PSEUDO_FUNC`) names a function, which is appended once (transitively,
//! the appended code is walked too), and the call's `imm` is rewritten to the new relative
//! offset. Relocations of appended code move with it, so a `.text` function used by two programs
//! carries its map references into both.

use std::collections::HashMap;

use crate::vm::insn::{
    self, DecodeError, Insn, BPF_CALL, BPF_JMP, CALL_HELPER, CALL_LOCAL, PSEUDO_FUNC,
};

use super::elf::{Elf, Reloc, STB_LOCAL, STT_FUNC};
use super::error::ObjectError;
use super::maps::Maps;
use super::spec::{MapRefKind, MapReloc};

/// `R_BPF_NONE`.
const R_BPF_NONE: u32 = 0;
/// `R_BPF_64_64`: ld_imm64 against a map, global data or a function.
const R_BPF_64_64: u32 = 1;
/// `R_BPF_64_32`: a bpf-to-bpf call.
const R_BPF_64_32: u32 = 10;

/// A function: a contiguous range of one executable section.
#[derive(Debug, Clone)]
pub struct Func {
    /// Section index.
    pub section: usize,
    /// First instruction (slot index in the section).
    pub start: usize,
    /// Number of slots.
    pub len: usize,
    /// Symbol name.
    pub name: String,
    /// Whether this is a program (a global function outside `.text`).
    pub program: bool,
}

/// All code of an object, ready for linking.
pub struct Code<'e> {
    elf: &'e Elf<'e>,
    /// Every function, programs in section then address order.
    pub funcs: Vec<Func>,
    /// Decoded instruction slots of each executable section.
    insns: HashMap<usize, Vec<Insn>>,
    /// `(section, slot)` → relocation of that instruction.
    relocs: HashMap<(usize, usize), Reloc>,
}

/// A program after linking.
pub struct Linked {
    /// Instructions: the program then its subprograms.
    pub insns: Vec<Insn>,
    /// Map references.
    pub map_relocs: Vec<MapReloc>,
    /// Appended subprograms: entry index and name.
    pub subprograms: Vec<(usize, String)>,
}

/// One function placed into a linked program.
#[derive(Clone, Copy)]
struct Segment {
    base: usize,
    func: usize,
}

impl<'e> Code<'e> {
    /// Splits the executable sections into functions and records their relocations.
    pub fn new(elf: &'e Elf<'e>) -> Result<Code<'e>, ObjectError> {
        let mut code = Code {
            elf,
            funcs: Vec::new(),
            insns: HashMap::new(),
            relocs: HashMap::new(),
        };
        for (index, sec) in elf.sections.iter().enumerate() {
            if !sec.is_exec() || sec.data.is_empty() {
                continue;
            }
            let insns = insn::decode_raw(sec.data).map_err(|_| ObjectError::BadSection {
                section: sec.name.clone(),
                reason: format!("code size {} is not a multiple of 8", sec.data.len()),
            })?;
            code.split(index, insns.len())?;
            code.insns.insert(index, insns);
        }
        for rs in &elf.reloc_sections {
            if let Some(insns) = code.insns.get(&rs.target) {
                let tails = ld_imm64_tails(insns);
                for r in &rs.relocs {
                    code.record(rs.target, &tails, *r)?;
                }
            }
        }
        Ok(code)
    }

    /// Adds the functions of section `index` (`n` slots).
    fn split(&mut self, index: usize, n: usize) -> Result<(), ObjectError> {
        let sec = &self.elf.sections[index];
        let is_text = sec.name == ".text";
        let mut syms: Vec<_> = self
            .elf
            .symbols
            .iter()
            .filter(|s| s.section == Some(index) && s.kind == STT_FUNC)
            .collect();
        // Globals first among aliases at one address, so the program name wins.
        syms.sort_by_key(|s| (s.value, s.bind == STB_LOCAL));
        syms.dedup_by_key(|s| s.value);
        if syms.is_empty() && !is_text {
            // No symbols (hand-written or stripped object): the section is one program.
            self.funcs.push(Func {
                section: index,
                start: 0,
                len: n,
                name: sec.name.clone(),
                program: true,
            });
            return Ok(());
        }
        for (i, sym) in syms.iter().enumerate() {
            let bad = |reason: &str| ObjectError::BadSymbol {
                section: sec.name.clone(),
                symbol: sym.name.clone(),
                reason: reason.to_string(),
            };
            if !sym.value.is_multiple_of(8) || !sym.size.is_multiple_of(8) {
                return Err(bad("function not aligned to instructions"));
            }
            let start = usize::try_from(sym.value / 8).unwrap_or(usize::MAX);
            if start >= n {
                return Err(bad("function starts outside its section"));
            }
            let len = if sym.size > 0 {
                usize::try_from(sym.size / 8).unwrap_or(usize::MAX)
            } else {
                let next = syms.get(i + 1).map(|s| (s.value / 8) as usize);
                next.unwrap_or(n) - start
            };
            if start.checked_add(len).is_none_or(|end| end > n) {
                return Err(bad("function extends past its section"));
            }
            self.funcs.push(Func {
                section: index,
                start,
                len,
                name: sym.name.clone(),
                program: !is_text && sym.bind != STB_LOCAL,
            });
        }
        Ok(())
    }

    /// Checks one relocation of a code section and stores it by instruction.
    fn record(&mut self, section: usize, tails: &[bool], r: Reloc) -> Result<(), ObjectError> {
        let sec = &self.elf.sections[section];
        let symbol = self
            .elf
            .symbols
            .get(r.symbol)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("#{}", r.symbol));
        let bad = |reason: String| ObjectError::BadRelocation {
            section: sec.name.clone(),
            offset: r.offset,
            symbol: symbol.clone(),
            reason,
        };
        if r.kind == R_BPF_NONE {
            return Ok(());
        }
        if r.symbol >= self.elf.symbols.len() {
            return Err(bad(format!(
                "symbol index {} out of range ({} symbols)",
                r.symbol,
                self.elf.symbols.len()
            )));
        }
        let insns = &self.insns[&section];
        let slot = usize::try_from(r.offset / 8).unwrap_or(usize::MAX);
        if !r.offset.is_multiple_of(8) || slot >= insns.len() {
            return Err(bad(format!(
                "offset outside the section's {} instructions or not aligned",
                insns.len()
            )));
        }
        if r.kind != R_BPF_64_64 && r.kind != R_BPF_64_32 {
            return Err(bad(format!("relocation type {} on an instruction", r.kind)));
        }
        if tails[slot] {
            return Err(bad("relocation on the second slot of an ld_imm64".into()));
        }
        let i = insns[slot];
        if !i.is_ld_imm64() && i.op != BPF_JMP | BPF_CALL {
            return Err(bad(format!(
                "relocation on instruction with opcode {:#04x} (not ld_imm64 or call)",
                i.op
            )));
        }
        self.relocs.insert((section, slot), r);
        Ok(())
    }

    /// Links function `func` (a program) with every function it reaches.
    pub fn link(&self, func: usize, maps: &Maps) -> Result<Linked, ObjectError> {
        let f = &self.funcs[func];
        let mut out = Linked {
            insns: self.insns[&f.section][f.start..f.start + f.len].to_vec(),
            map_relocs: Vec::new(),
            subprograms: Vec::new(),
        };
        let mut segments = vec![Segment { base: 0, func }];
        let mut placed = HashMap::from([(func, 0usize)]);
        let mut s = 0;
        while s < segments.len() {
            let seg = segments[s];
            let f = &self.funcs[seg.func];
            let mut k = 0;
            while k < f.len {
                let pos = seg.base + k;
                let slot = f.start + k;
                let i = out.insns[pos];
                k += if i.is_ld_imm64() { 2 } else { 1 };
                let is_call = i.op == BPF_JMP | BPF_CALL;
                let reloc = self.relocs.get(&(f.section, slot));
                // Where a local call or callback reference goes: (section, slot).
                let target = match reloc {
                    Some(r) => match self.apply(f, slot, i, r, maps)? {
                        Applied::Map(kind, map) => {
                            out.map_relocs.push(MapReloc {
                                insn: pos,
                                map,
                                kind,
                            });
                            continue;
                        }
                        Applied::Code(sec, t) => (sec, t),
                    },
                    None if (is_call && i.src == CALL_LOCAL)
                        || (i.is_ld_imm64() && i.src == PSEUDO_FUNC) =>
                    {
                        // No relocation: a static function of the same section, imm relative.
                        (f.section, slot as i64 + 1 + i64::from(i.imm))
                    }
                    None => continue,
                };
                let missing = || ObjectError::MissingFunction {
                    section: self.elf.section_name(f.section),
                    symbol: f.name.clone(),
                    insn: slot,
                    target: target.1,
                };
                let callee = self.func_at(target.0, target.1).ok_or_else(missing)?;
                let base = match placed.get(&callee) {
                    Some(&b) => b,
                    None => {
                        let c = &self.funcs[callee];
                        let b = out.insns.len();
                        out.insns
                            .extend_from_slice(&self.insns[&c.section][c.start..c.start + c.len]);
                        out.subprograms.push((b, c.name.clone()));
                        segments.push(Segment {
                            base: b,
                            func: callee,
                        });
                        placed.insert(callee, b);
                        b
                    }
                };
                let c = &self.funcs[callee];
                let dest = (base + (target.1 as usize - c.start)) as i64;
                let imm = i32::try_from(dest - pos as i64 - 1).map_err(|_| missing())?;
                out.insns[pos].imm = imm;
                if i.is_ld_imm64() {
                    out.insns[pos].src = PSEUDO_FUNC;
                }
            }
            s += 1;
        }
        self.check(&segments, &out.insns)?;
        Ok(out)
    }

    /// The function of section `section` containing slot `slot`.
    fn func_at(&self, section: usize, slot: i64) -> Option<usize> {
        let slot = usize::try_from(slot).ok()?;
        self.funcs
            .iter()
            .position(|f| f.section == section && slot >= f.start && slot < f.start + f.len)
    }

    /// Resolves one recorded relocation at `slot` of function `f`.
    fn apply(
        &self,
        f: &Func,
        slot: usize,
        i: Insn,
        r: &Reloc,
        maps: &Maps,
    ) -> Result<Applied, ObjectError> {
        let sym = &self.elf.symbols[r.symbol];
        let bad = |reason: String| ObjectError::BadRelocation {
            section: self.elf.section_name(f.section),
            offset: slot as u64 * 8,
            symbol: sym.name.clone(),
            reason,
        };
        let Some(sec) = sym.section else {
            return Err(bad(
                "undefined (extern) symbol: kfuncs, .kconfig and .ksyms are not supported".into(),
            ));
        };
        let in_code = self.elf.sections.get(sec).is_some_and(|s| s.is_exec());
        let value = i64::try_from(sym.value).map_err(|_| bad("symbol value too large".into()))?;
        if i.op == BPF_JMP | BPF_CALL {
            if i.src != CALL_LOCAL {
                return Err(bad(format!(
                    "relocation on a call with src {} (not a bpf-to-bpf call)",
                    i.src
                )));
            }
            if !in_code || value % 8 != 0 {
                return Err(bad(
                    "call target is not an instruction in a code section".into()
                ));
            }
            return Ok(Applied::Code(sec, value / 8 + i64::from(i.imm) + 1));
        }
        // Callback address. clang 14 leaves src 0 on these (newer clang writes
        // BPF_PSEUDO_FUNC); the symbol's section says what it is either way.
        if i.src == PSEUDO_FUNC || in_code {
            let bytes = value + i64::from(i.imm);
            if !in_code || bytes % 8 != 0 {
                return Err(bad(
                    "callback target is not an instruction in a code section".into(),
                ));
            }
            return Ok(Applied::Code(sec, bytes / 8));
        }
        if maps.def_sections.contains(&sec) {
            let map = maps
                .by_offset
                .get(&(sec, sym.value))
                .ok_or_else(|| bad(format!("no map defined at byte {}", sym.value)))?;
            return Ok(Applied::Map(MapRefKind::Map, *map));
        }
        if let Some(&map) = maps.data.get(&sec) {
            let size = maps.specs[map].value_size;
            let offset = value + i64::from(i.imm);
            let offset = u32::try_from(offset)
                .ok()
                .filter(|&o| o <= size)
                .ok_or_else(|| bad(format!("offset {offset} outside {size}-byte global data")))?;
            return Ok(Applied::Map(MapRefKind::Value { offset }, map));
        }
        Err(bad(format!(
            "symbol in section {} is neither a map nor global data",
            self.elf.section_name(sec)
        )))
    }

    /// Structural validation and helper IDs of a linked program; errors point back into the
    /// ELF sections.
    fn check(&self, segments: &[Segment], insns: &[Insn]) -> Result<(), ObjectError> {
        let locate = |pos: usize| {
            let seg = segments
                .iter()
                .rev()
                .find(|s| s.base <= pos)
                .copied()
                .unwrap_or(segments[0]);
            let f = &self.funcs[seg.func];
            (
                self.elf.section_name(f.section),
                f.name.clone(),
                f.start + (pos - seg.base),
            )
        };
        if let Err(source) = insn::validate(insns) {
            let pos = match source {
                DecodeError::UnknownOpcode { insn, .. }
                | DecodeError::BadRegister { insn, .. }
                | DecodeError::JumpOutOfRange { insn, .. }
                | DecodeError::IncompleteLdImm64 { insn }
                | DecodeError::Invalid { insn, .. } => insn,
                DecodeError::BadLength { .. } | DecodeError::FallsOffEnd => {
                    insns.len().saturating_sub(1)
                }
            };
            let (section, symbol, insn) = locate(pos);
            return Err(ObjectError::Instruction {
                section,
                symbol,
                insn,
                source,
            });
        }
        let mut pos = 0;
        while pos < insns.len() {
            let i = insns[pos];
            if i.op == BPF_JMP | BPF_CALL
                && i.src == CALL_HELPER
                && crate::helpers::kernel_name(i.imm).is_none()
            {
                let (section, symbol, insn) = locate(pos);
                return Err(ObjectError::UnknownHelper {
                    section,
                    symbol,
                    insn,
                    id: i.imm,
                });
            }
            pos += if i.is_ld_imm64() { 2 } else { 1 };
        }
        Ok(())
    }
}

/// What a relocation resolved to.
enum Applied {
    /// A map reference.
    Map(MapRefKind, usize),
    /// A code target: section and slot.
    Code(usize, i64),
}

/// Marks the second slots of ld_imm64 instructions, scanning the section from its start (every
/// function starts on an instruction boundary, so the scan agrees with any function's view).
fn ld_imm64_tails(insns: &[Insn]) -> Vec<bool> {
    let mut tails = vec![false; insns.len()];
    let mut pc = 0;
    while pc < insns.len() {
        if insns[pc].is_ld_imm64() {
            if let Some(t) = tails.get_mut(pc + 1) {
                *t = true;
            }
            pc += 2;
        } else {
            pc += 1;
        }
    }
    tails
}
