//! A small text assembler and disassembler for eBPF, used by tests and `userxdp exec`.
//!
//! Syntax (rbpf/ubpf style, extended to the whole Linux 6.x ISA). One instruction per line;
//! `;`, `//` and `#` start comments; `name:` defines a label (alone or before an instruction)
//! that jumps, `gotol`, `call` and `ldfunc` may name instead of a relative offset. Labels
//! count instruction slots (`lddw` takes two). Registers are `r0`..`r10`; numbers are decimal
//! or `0x` hex with an optional sign; a relative offset is written `+N` / `-N`. Mnemonics
//! without a width suffix mean the 64-bit form.
//!
//! | form | meaning |
//! |---|---|
//! | `add64 r0, r1` / `add32 r0, 5` | ALU: `add sub mul div sdiv mod smod or and lsh rsh arsh xor mov` |
//! | `neg64 r0` / `neg32 r0` | negate |
//! | `movsx64 r0, r1, 8` / `movsx32 r0, r1, 16` | sign-extending move (8/16/32; 8/16 for 32) |
//! | `le16 r0`, `be32 r0`, `bswap64 r0` | endianness conversion (ALU class) / byte swap (ALU64) |
//! | `lddw r1, 0x1122334455667788` | ld_imm64 constant |
//! | `ldfunc r2, label` | ld_imm64 with `PSEUDO_FUNC` (callback address) |
//! | `ldxw r0, [r1+4]` | load `b h w dw`; `ldxsb ldxsh ldxsw` sign-extend (MEMSX) |
//! | `stxdw [r10-8], r1` / `stb [r10-1], 5` | store register / immediate |
//! | `atomic_add64 [r1+0], r2` (alias `xadd64`) | atomics `add or and xor`, 32/64 |
//! | `atomic_fetch_or32 [r1+0], r2` | with `BPF_FETCH` (old value into `r2`) |
//! | `xchg64 [r1+0], r2`, `cmpxchg32 [r1+0], r2` | exchange; compare with / old value to r0 |
//! | `ja +2`, `gotol label` | jump (16-bit `off`) / JA32 (32-bit `imm`) |
//! | `jeq r1, 5, label`, `jslt32 r1, r2, +3` | `eq gt ge set ne sgt sge lt le slt sle`; `32` = JMP32 |
//! | `call 1` | helper by ID |
//! | `call label` / `call +5` | bpf-to-bpf call (a signed number is relative) |
//! | `exit` | return r0 |
//! | `raw 0x85, 0, 2, 0, 123` | any slot verbatim: opcode, dst, src, off, imm |
//!
//! [`disassemble`] prints one line per instruction in the same syntax, with relative offsets
//! instead of labels, and falls back to `raw` for any slot the mnemonics cannot express
//! exactly, so that `assemble(&disassemble(p)) == p` for every program.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::insn::*;

/// Why a text program does not assemble.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AsmError {
    /// 1-based line number in the source text.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One parsed source line that produces instructions.
struct Stmt<'a> {
    line: usize,
    mnemonic: String,
    operands: Vec<&'a str>,
    /// Index of the first slot this statement fills.
    pc: usize,
}

/// Assembles `text` into instruction slots.
pub fn assemble(text: &str) -> Result<Vec<Insn>, AsmError> {
    let mut labels: HashMap<&str, usize> = HashMap::new();
    let mut stmts = Vec::new();
    let mut pc = 0usize;
    for (idx, raw_line) in text.lines().enumerate() {
        let line = idx + 1;
        let mut rest = strip_comment(raw_line).trim();
        // Any number of leading `label:` definitions.
        while let Some(colon) = rest.find(':') {
            let name = rest[..colon].trim();
            if !is_ident(name) {
                break;
            }
            if labels.insert(name, pc).is_some() {
                return Err(err(line, format!("label `{name}` defined twice")));
            }
            rest = rest[colon + 1..].trim();
        }
        if rest.is_empty() {
            continue;
        }
        let (mnemonic, ops) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        let operands: Vec<&str> = if ops.is_empty() {
            Vec::new()
        } else {
            ops.split(',').map(str::trim).collect()
        };
        let mnemonic = mnemonic.to_ascii_lowercase();
        let slots = if mnemonic == "lddw" || mnemonic == "ldfunc" {
            2
        } else {
            1
        };
        stmts.push(Stmt {
            line,
            mnemonic,
            operands,
            pc,
        });
        pc += slots;
    }
    let mut out = Vec::with_capacity(pc);
    for stmt in &stmts {
        encode(stmt, &labels, &mut out)?;
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    let mut end = line.len();
    for pat in [";", "//", "#"] {
        if let Some(i) = line.find(pat) {
            end = end.min(i);
        }
    }
    &line[..end]
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

fn err(line: usize, message: impl Into<String>) -> AsmError {
    AsmError {
        line,
        message: message.into(),
    }
}

/// ALU operation codes by mnemonic stem: (op, off).
fn alu_op(stem: &str) -> Option<(u8, i16)> {
    Some(match stem {
        "add" => (BPF_ADD, 0),
        "sub" => (BPF_SUB, 0),
        "mul" => (BPF_MUL, 0),
        "div" => (BPF_DIV, 0),
        "sdiv" => (BPF_DIV, 1),
        "or" => (BPF_OR, 0),
        "and" => (BPF_AND, 0),
        "lsh" => (BPF_LSH, 0),
        "rsh" => (BPF_RSH, 0),
        "mod" => (BPF_MOD, 0),
        "smod" => (BPF_MOD, 1),
        "xor" => (BPF_XOR, 0),
        "mov" => (BPF_MOV, 0),
        "arsh" => (BPF_ARSH, 0),
        _ => return None,
    })
}

/// Jump condition codes by mnemonic stem (without the leading `j`).
const JUMPS: [(&str, u8); 11] = [
    ("eq", BPF_JEQ),
    ("gt", BPF_JGT),
    ("ge", BPF_JGE),
    ("set", BPF_JSET),
    ("ne", BPF_JNE),
    ("sgt", BPF_JSGT),
    ("sge", BPF_JSGE),
    ("lt", BPF_JLT),
    ("le", BPF_JLE),
    ("slt", BPF_JSLT),
    ("sle", BPF_JSLE),
];

/// Atomic operations by mnemonic stem.
const ATOMICS: [(&str, i32); 10] = [
    ("atomic_add", BPF_ADD as i32),
    ("atomic_or", BPF_OR as i32),
    ("atomic_and", BPF_AND as i32),
    ("atomic_xor", BPF_XOR as i32),
    ("atomic_fetch_add", BPF_ADD as i32 | BPF_FETCH),
    ("atomic_fetch_or", BPF_OR as i32 | BPF_FETCH),
    ("atomic_fetch_and", BPF_AND as i32 | BPF_FETCH),
    ("atomic_fetch_xor", BPF_XOR as i32 | BPF_FETCH),
    ("xchg", BPF_XCHG),
    ("cmpxchg", BPF_CMPXCHG),
];

/// Memory sizes by mnemonic suffix.
fn size_code(suffix: &str) -> Option<u8> {
    Some(match suffix {
        "b" => BPF_B,
        "h" => BPF_H,
        "w" => BPF_W,
        "dw" => BPF_DW,
        _ => return None,
    })
}

/// Splits a trailing `32`/`64` width off a mnemonic: (stem, is64). No suffix means 64 bits.
fn split_width(m: &str) -> (&str, bool) {
    if let Some(s) = m.strip_suffix("64") {
        (s, true)
    } else if let Some(s) = m.strip_suffix("32") {
        (s, false)
    } else {
        (m, true)
    }
}

/// Operand parsing for one statement.
struct Ops<'s, 'a> {
    stmt: &'s Stmt<'a>,
    labels: &'s HashMap<&'a str, usize>,
}

impl Ops<'_, '_> {
    fn expect(&self, n: usize) -> Result<(), AsmError> {
        if self.stmt.operands.len() != n {
            return Err(err(
                self.stmt.line,
                format!(
                    "`{}` takes {n} operand(s), found {}",
                    self.stmt.mnemonic,
                    self.stmt.operands.len()
                ),
            ));
        }
        Ok(())
    }

    fn get(&self, i: usize) -> &str {
        self.stmt.operands.get(i).copied().unwrap_or("")
    }

    fn reg(&self, i: usize) -> Result<u8, AsmError> {
        parse_reg(self.get(i)).ok_or_else(|| {
            err(
                self.stmt.line,
                format!("expected a register, found `{}`", self.get(i)),
            )
        })
    }

    fn is_reg(&self, i: usize) -> bool {
        parse_reg(self.get(i)).is_some()
    }

    fn num(&self, i: usize) -> Result<i128, AsmError> {
        parse_num(self.get(i)).ok_or_else(|| {
            err(
                self.stmt.line,
                format!("expected a number, found `{}`", self.get(i)),
            )
        })
    }

    /// A 32-bit immediate: anything in i32 or u32 range.
    fn imm32(&self, i: usize) -> Result<i32, AsmError> {
        let v = self.num(i)?;
        to_imm32(v).ok_or_else(|| {
            err(
                self.stmt.line,
                format!("immediate {v} does not fit in 32 bits"),
            )
        })
    }

    /// A jump target: label or `+N`/`-N`, relative to the next slot.
    fn target(&self, i: usize) -> Result<i64, AsmError> {
        let s = self.get(i);
        if let Some(&t) = self.labels.get(s) {
            return Ok(t as i64 - self.stmt.pc as i64 - 1);
        }
        if s.starts_with('+') || s.starts_with('-') {
            if let Some(v) = parse_num(s) {
                return i64::try_from(v).map_err(|_| err(self.stmt.line, "offset out of range"));
            }
        }
        Err(err(
            self.stmt.line,
            format!("expected a label or +/- offset, found `{s}`"),
        ))
    }

    fn off16(&self, i: usize) -> Result<i16, AsmError> {
        let v = self.target(i)?;
        i16::try_from(v).map_err(|_| {
            err(
                self.stmt.line,
                format!("jump offset {v} does not fit in 16 bits (use gotol)"),
            )
        })
    }

    fn off32(&self, i: usize) -> Result<i32, AsmError> {
        let v = self.target(i)?;
        i32::try_from(v).map_err(|_| {
            err(
                self.stmt.line,
                format!("offset {v} does not fit in 32 bits"),
            )
        })
    }

    /// A memory operand `[rN]`, `[rN+off]` or `[rN-off]`.
    fn mem(&self, i: usize) -> Result<(u8, i16), AsmError> {
        let s = self.get(i);
        let bad = || {
            err(
                self.stmt.line,
                format!("expected a memory operand like [r1+8], found `{s}`"),
            )
        };
        let inner = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .ok_or_else(bad)?;
        let inner: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
        let split = inner.find(['+', '-']).unwrap_or(inner.len());
        let reg = parse_reg(&inner[..split]).ok_or_else(bad)?;
        let off = if split == inner.len() {
            0
        } else {
            let v = parse_num(&inner[split..]).ok_or_else(bad)?;
            i16::try_from(v).map_err(|_| {
                err(
                    self.stmt.line,
                    format!("offset {v} does not fit in 16 bits"),
                )
            })?
        };
        Ok((reg, off))
    }
}

fn parse_reg(s: &str) -> Option<u8> {
    let n: u8 = s.strip_prefix('r')?.parse().ok()?;
    (n <= 10).then_some(n)
}

fn parse_num(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body.trim();
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i128::from_str_radix(&hex.replace('_', ""), 16).ok()?
    } else {
        body.replace('_', "").parse::<i128>().ok()?
    };
    Some(if neg { -v } else { v })
}

fn to_imm32(v: i128) -> Option<i32> {
    if let Ok(x) = i32::try_from(v) {
        Some(x)
    } else {
        u32::try_from(v).ok().map(|x| x as i32)
    }
}

/// Encodes one statement, appending its slots.
fn encode(
    stmt: &Stmt<'_>,
    labels: &HashMap<&str, usize>,
    out: &mut Vec<Insn>,
) -> Result<(), AsmError> {
    let o = Ops { stmt, labels };
    let m = stmt.mnemonic.as_str();
    let line = stmt.line;
    let unknown = || err(line, format!("unknown mnemonic `{m}`"));

    match m {
        "exit" => {
            o.expect(0)?;
            out.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
            return Ok(());
        }
        "ja" => {
            o.expect(1)?;
            out.push(Insn::new(BPF_JMP | BPF_JA, 0, 0, o.off16(0)?, 0));
            return Ok(());
        }
        "gotol" => {
            o.expect(1)?;
            out.push(Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, o.off32(0)?));
            return Ok(());
        }
        "call" => {
            o.expect(1)?;
            let s = o.get(0);
            let insn = if labels.contains_key(s) || s.starts_with('+') || s.starts_with('-') {
                Insn::new(BPF_JMP | BPF_CALL, 0, CALL_LOCAL, 0, o.off32(0)?)
            } else {
                Insn::new(BPF_JMP | BPF_CALL, 0, CALL_HELPER, 0, o.imm32(0)?)
            };
            out.push(insn);
            return Ok(());
        }
        "lddw" => {
            o.expect(2)?;
            let dst = o.reg(0)?;
            let v = o.num(1)?;
            let v = if let Ok(x) = i64::try_from(v) {
                x as u64
            } else {
                u64::try_from(v)
                    .map_err(|_| err(line, format!("immediate {v} does not fit in 64 bits")))?
            };
            out.push(Insn::new(LD_DW, dst, PSEUDO_NONE, 0, v as u32 as i32));
            out.push(Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32));
            return Ok(());
        }
        "ldfunc" => {
            o.expect(2)?;
            let dst = o.reg(0)?;
            out.push(Insn::new(LD_DW, dst, PSEUDO_FUNC, 0, o.off32(1)?));
            out.push(Insn::new(0, 0, 0, 0, 0));
            return Ok(());
        }
        "raw" => {
            o.expect(5)?;
            let field = |i: usize, max: i128| -> Result<i128, AsmError> {
                let v = o.num(i)?;
                if v < 0 || v > max {
                    return Err(err(line, format!("raw field {} = {v} out of range", i + 1)));
                }
                Ok(v)
            };
            let op = field(0, 0xff)? as u8;
            let dst = field(1, 0xf)? as u8;
            let src = field(2, 0xf)? as u8;
            let off = o.num(3)?;
            let off = i16::try_from(off)
                .ok()
                .or_else(|| u16::try_from(off).ok().map(|x| x as i16))
                .ok_or_else(|| err(line, format!("raw offset {off} out of range")))?;
            out.push(Insn::new(op, dst, src, off, o.imm32(4)?));
            return Ok(());
        }
        _ => {}
    }

    // Endianness: le16/le32/le64, be16.., bswap16..
    for (prefix, op) in [
        ("le", BPF_ALU | BPF_END | BPF_TO_LE),
        ("be", BPF_ALU | BPF_END | BPF_TO_BE),
        ("bswap", BPF_ALU64 | BPF_END),
    ] {
        if let Some(width) = m.strip_prefix(prefix) {
            if let Ok(w @ (16 | 32 | 64)) = width.parse::<i32>() {
                o.expect(1)?;
                out.push(Insn::new(op, o.reg(0)?, 0, 0, w));
                return Ok(());
            }
        }
    }

    // Jumps: j<cond>[32]
    if let Some(rest) = m.strip_prefix('j') {
        let (stem, is64) = if let Some(s) = rest.strip_suffix("32") {
            (s, false)
        } else {
            (rest, true)
        };
        if let Some(&(_, code)) = JUMPS.iter().find(|(n, _)| *n == stem) {
            o.expect(3)?;
            let class = if is64 { BPF_JMP } else { BPF_JMP32 };
            let dst = o.reg(0)?;
            let off = o.off16(2)?;
            let insn = if o.is_reg(1) {
                Insn::new(class | code | BPF_X, dst, o.reg(1)?, off, 0)
            } else {
                Insn::new(class | code | BPF_K, dst, 0, off, o.imm32(1)?)
            };
            out.push(insn);
            return Ok(());
        }
    }

    // Loads and stores.
    if let Some(sz) = m.strip_prefix("ldxs").and_then(size_code) {
        if sz == BPF_DW {
            return Err(unknown());
        }
        o.expect(2)?;
        let (src, off) = o.mem(1)?;
        out.push(Insn::new(BPF_LDX | BPF_MEMSX | sz, o.reg(0)?, src, off, 0));
        return Ok(());
    }
    if let Some(sz) = m.strip_prefix("ldx").and_then(size_code) {
        o.expect(2)?;
        let (src, off) = o.mem(1)?;
        out.push(Insn::new(BPF_LDX | BPF_MEM | sz, o.reg(0)?, src, off, 0));
        return Ok(());
    }
    if let Some(sz) = m.strip_prefix("stx").and_then(size_code) {
        o.expect(2)?;
        let (dst, off) = o.mem(0)?;
        out.push(Insn::new(BPF_STX | BPF_MEM | sz, dst, o.reg(1)?, off, 0));
        return Ok(());
    }
    if let Some(sz) = m.strip_prefix("st").and_then(size_code) {
        o.expect(2)?;
        let (dst, off) = o.mem(0)?;
        out.push(Insn::new(BPF_ST | BPF_MEM | sz, dst, 0, off, o.imm32(1)?));
        return Ok(());
    }

    let (stem, is64) = split_width(m);
    let stem = if stem == "xadd" { "atomic_add" } else { stem };
    if let Some(&(_, aop)) = ATOMICS.iter().find(|(n, _)| *n == stem) {
        o.expect(2)?;
        let (dst, off) = o.mem(0)?;
        let sz = if is64 { BPF_DW } else { BPF_W };
        out.push(Insn::new(
            BPF_STX | BPF_ATOMIC | sz,
            dst,
            o.reg(1)?,
            off,
            aop,
        ));
        return Ok(());
    }

    let class = if is64 { BPF_ALU64 } else { BPF_ALU };
    if stem == "neg" {
        o.expect(1)?;
        out.push(Insn::new(class | BPF_NEG, o.reg(0)?, 0, 0, 0));
        return Ok(());
    }
    if stem == "movsx" {
        o.expect(3)?;
        let bits = o.num(2)?;
        let ok = matches!(bits, 8 | 16) || (bits == 32 && is64);
        if !ok {
            return Err(err(
                line,
                format!(
                    "movsx width must be 8, 16{}",
                    if is64 { " or 32" } else { "" }
                ),
            ));
        }
        out.push(Insn::new(
            class | BPF_MOV | BPF_X,
            o.reg(0)?,
            o.reg(1)?,
            bits as i16,
            0,
        ));
        return Ok(());
    }
    if let Some((op, off)) = alu_op(stem) {
        o.expect(2)?;
        let dst = o.reg(0)?;
        let insn = if o.is_reg(1) {
            Insn::new(class | op | BPF_X, dst, o.reg(1)?, off, 0)
        } else {
            Insn::new(class | op | BPF_K, dst, 0, off, o.imm32(1)?)
        };
        out.push(insn);
        return Ok(());
    }
    Err(unknown())
}

const LD_DW: u8 = BPF_LD | BPF_IMM | BPF_DW;

/// Disassembles `insns`, one line per instruction (`lddw`/`ldfunc` print once for their two
/// slots). The output assembles back to exactly `insns`.
pub fn disassemble(insns: &[Insn]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while pc < insns.len() {
        let insn = insns[pc];
        if insn.is_ld_imm64() {
            if let Some(&next) = insns.get(pc + 1) {
                let text = match insn.src {
                    PSEUDO_NONE => Some(format!("lddw r{}, {:#x}", insn.dst, insn.imm64(next))),
                    PSEUDO_FUNC => Some(format!("ldfunc r{}, {}", insn.dst, rel(insn.imm as i64))),
                    _ => None,
                };
                if let Some(text) = text.filter(|t| roundtrips(t, &insns[pc..pc + 2])) {
                    let _ = writeln!(out, "{text}");
                    pc += 2;
                    continue;
                }
            }
        }
        let text = render(insn)
            .filter(|t| roundtrips(t, &insns[pc..pc + 1]))
            .unwrap_or_else(|| raw(insn));
        let _ = writeln!(out, "{text}");
        pc += 1;
    }
    out
}

/// Disassembles one instruction slot (an `lddw` first slot prints as `raw`; use
/// [`disassemble`] for whole programs).
pub fn disassemble_one(insn: Insn) -> String {
    render(insn)
        .filter(|t| roundtrips(t, &[insn]))
        .unwrap_or_else(|| raw(insn))
}

fn roundtrips(text: &str, slots: &[Insn]) -> bool {
    assemble(text).is_ok_and(|v| v == slots)
}

fn raw(i: Insn) -> String {
    format!(
        "raw {:#04x}, {}, {}, {}, {}",
        i.op, i.dst, i.src, i.off, i.imm
    )
}

fn rel(v: i64) -> String {
    if v < 0 {
        format!("{v}")
    } else {
        format!("+{v}")
    }
}

fn mem(reg: u8, off: i16) -> String {
    if off < 0 {
        format!("[r{reg}{off}]")
    } else {
        format!("[r{reg}+{off}]")
    }
}

fn size_name(op: u8) -> &'static str {
    match op & 0x18 {
        BPF_W => "w",
        BPF_H => "h",
        BPF_B => "b",
        _ => "dw",
    }
}

/// Best-effort rendering; [`disassemble`] checks it round-trips and falls back to `raw`.
fn render(i: Insn) -> Option<String> {
    let class = i.class();
    let (d, s) = (i.dst, i.src);
    match class {
        BPF_ALU | BPF_ALU64 => {
            let w = if class == BPF_ALU64 { "64" } else { "32" };
            let op = i.op & 0xf0;
            let x = i.op & BPF_X != 0;
            let operand = if x {
                format!("r{s}")
            } else {
                format!("{}", i.imm)
            };
            let name = match op {
                BPF_NEG => return Some(format!("neg{w} r{d}")),
                BPF_END => {
                    let prefix = match (class, x) {
                        (BPF_ALU64, _) => "bswap",
                        (_, true) => "be",
                        _ => "le",
                    };
                    return Some(format!("{prefix}{} r{d}", i.imm));
                }
                BPF_MOV if x && i.off != 0 => {
                    return Some(format!("movsx{w} r{d}, r{s}, {}", i.off))
                }
                BPF_DIV if i.off == 1 => "sdiv",
                BPF_MOD if i.off == 1 => "smod",
                _ => [
                    "add", "sub", "mul", "div", "or", "and", "lsh", "rsh", "", "mod", "xor", "mov",
                    "arsh",
                ]
                .get(usize::from(op >> 4))
                .copied()
                .filter(|n| !n.is_empty())?,
            };
            Some(format!("{name}{w} r{d}, {operand}"))
        }
        BPF_JMP | BPF_JMP32 => {
            let op = i.op & 0xf0;
            match op {
                BPF_EXIT => Some("exit".into()),
                BPF_JA if class == BPF_JMP32 => Some(format!("gotol {}", rel(i.imm as i64))),
                BPF_JA => Some(format!("ja {}", rel(i.off as i64))),
                BPF_CALL if s == CALL_LOCAL => Some(format!("call {}", rel(i.imm as i64))),
                BPF_CALL => Some(format!("call {}", i.imm)),
                _ => {
                    let (name, _) = JUMPS.iter().find(|(_, c)| *c == op)?;
                    let w = if class == BPF_JMP32 { "32" } else { "" };
                    let operand = if i.op & BPF_X != 0 {
                        format!("r{s}")
                    } else {
                        format!("{}", i.imm)
                    };
                    Some(format!("j{name}{w} r{d}, {operand}, {}", rel(i.off as i64)))
                }
            }
        }
        BPF_LDX => {
            let sx = if i.op & 0xe0 == BPF_MEMSX { "s" } else { "" };
            Some(format!(
                "ldx{sx}{} r{d}, {}",
                size_name(i.op),
                mem(s, i.off)
            ))
        }
        BPF_ST => Some(format!(
            "st{} {}, {}",
            size_name(i.op),
            mem(d, i.off),
            i.imm
        )),
        BPF_STX if i.op & 0xe0 == BPF_ATOMIC => {
            let (name, _) = ATOMICS.iter().find(|(_, c)| *c == i.imm)?;
            let w = if i.op & 0x18 == BPF_DW { "64" } else { "32" };
            Some(format!("{name}{w} {}, r{s}", mem(d, i.off)))
        }
        BPF_STX => Some(format!("stx{} {}, r{s}", size_name(i.op), mem(d, i.off))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_comments() {
        let p = assemble(
            "
            ; comment
            start: mov64 r0, 1   // trailing
            jeq r0, 1, done
            lddw r1, 0x1122334455667788
        done:
            exit
            ",
        )
        .unwrap();
        assert_eq!(p.len(), 5);
        assert_eq!(p[1], Insn::new(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2, 1));
        assert_eq!(p[2].imm64(p[3]), 0x1122_3344_5566_7788);
    }

    #[test]
    fn errors_name_line() {
        let e = assemble("mov64 r0, 1\nfrob r1\nexit").unwrap_err();
        assert_eq!(e.line, 2);
        let e = assemble("ja nowhere\nexit").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(assemble("mov64 r11, 1").is_err());
        assert!(assemble("ldxw r0, [r1+70000]").is_err());
        assert!(assemble("movsx32 r0, r1, 32").is_err());
        assert!(assemble("x: mov64 r0, 0\nx: exit").is_err());
    }

    #[test]
    fn roundtrip_every_form() {
        let text = "
            add64 r1, r2
            sub32 r1, -5
            sdiv64 r1, 3
            smod32 r1, r2
            movsx64 r1, r2, 32
            movsx32 r1, r2, 8
            neg32 r3
            le16 r1
            be64 r2
            bswap32 r3
            lddw r1, -1
            ldfunc r2, +1
            ldxsh r0, [r1-2]
            ldxdw r0, [r10-8]
            stb [r10-1], 5
            stxw [r1+4], r2
            atomic_fetch_xor32 [r1+0], r2
            cmpxchg64 [r1+8], r3
            xchg32 [r1+0], r4
            jsle32 r1, r2, -3
            jset r1, 0x10, +0
            gotol -20
            call 7
            call -21
            raw 0xff, 1, 2, -3, 4
            exit
        ";
        let p = assemble(text).unwrap();
        let d = disassemble(&p);
        assert_eq!(assemble(&d).unwrap(), p, "{d}");
        assert!(d.contains("raw 0xff"));
        assert!(d.contains("call -21"));
    }

    #[test]
    fn unusual_fields_fall_back_to_raw() {
        // add64 with a stray off field: not expressible as mnemonic.
        let odd = Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 1, 0, 7, 3);
        let d = disassemble(&[odd]);
        assert!(d.starts_with("raw"), "{d}");
        assert_eq!(assemble(&d).unwrap(), vec![odd]);
    }
}
