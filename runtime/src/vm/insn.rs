//! The eBPF instruction set: one opcode table and one decoder.
//!
//! Every consumer — interpreter, JIT, loader, disassembler — works on the [`Insn`] values decoded
//! here, so "what does opcode 0xdb mean" is answered in exactly one file. Encodings follow the
//! Linux kernel (`include/uapi/linux/bpf.h`, `Documentation/bpf/standardization/`), including
//! the cpu-v4 additions (MEMSX, MOVSX, SDIV/SMOD, BSWAP, JA32).

use std::fmt;

/// Size of one encoded instruction in bytes.
pub const INSN_SIZE: usize = 8;

// ---- instruction classes (low 3 bits) ----
/// Class: load from immediate (only `ld_imm64` survives in eBPF).
pub const BPF_LD: u8 = 0x00;
/// Class: load into register from memory.
pub const BPF_LDX: u8 = 0x01;
/// Class: store immediate to memory.
pub const BPF_ST: u8 = 0x02;
/// Class: store register to memory (and atomics).
pub const BPF_STX: u8 = 0x03;
/// Class: 32-bit arithmetic.
pub const BPF_ALU: u8 = 0x04;
/// Class: 64-bit jumps, calls and exit.
pub const BPF_JMP: u8 = 0x05;
/// Class: 32-bit compare-and-jump (and `gotol`, JA32).
pub const BPF_JMP32: u8 = 0x06;
/// Class: 64-bit arithmetic.
pub const BPF_ALU64: u8 = 0x07;

// ---- size (bits 3-4) of memory instructions ----
/// 32-bit word.
pub const BPF_W: u8 = 0x00;
/// 16-bit half word.
pub const BPF_H: u8 = 0x08;
/// 8-bit byte.
pub const BPF_B: u8 = 0x10;
/// 64-bit double word.
pub const BPF_DW: u8 = 0x18;

// ---- mode (bits 5-7) of memory instructions ----
/// Immediate (ld_imm64).
pub const BPF_IMM: u8 = 0x00;
/// Legacy packet access, absolute (cBPF compatibility; rejected for XDP by the kernel).
pub const BPF_ABS: u8 = 0x20;
/// Legacy packet access, indirect.
pub const BPF_IND: u8 = 0x40;
/// Regular memory access.
pub const BPF_MEM: u8 = 0x60;
/// Sign-extending load (cpu v4).
pub const BPF_MEMSX: u8 = 0x80;
/// Atomic operation.
pub const BPF_ATOMIC: u8 = 0xc0;

// ---- source bit (bit 3) of ALU/JMP ----
/// Operand is the immediate.
pub const BPF_K: u8 = 0x00;
/// Operand is the source register.
pub const BPF_X: u8 = 0x08;

// ---- ALU operations (bits 4-7) ----
/// dst += src
pub const BPF_ADD: u8 = 0x00;
/// dst -= src
pub const BPF_SUB: u8 = 0x10;
/// dst *= src
pub const BPF_MUL: u8 = 0x20;
/// dst /= src (unsigned; signed when `off == 1`)
pub const BPF_DIV: u8 = 0x30;
/// dst |= src
pub const BPF_OR: u8 = 0x40;
/// dst &= src
pub const BPF_AND: u8 = 0x50;
/// dst <<= src
pub const BPF_LSH: u8 = 0x60;
/// dst >>= src (logical)
pub const BPF_RSH: u8 = 0x70;
/// dst = -dst
pub const BPF_NEG: u8 = 0x80;
/// dst %= src (unsigned; signed when `off == 1`)
pub const BPF_MOD: u8 = 0x90;
/// dst ^= src
pub const BPF_XOR: u8 = 0xa0;
/// dst = src (sign-extending from `off` bits when `off` is 8/16/32)
pub const BPF_MOV: u8 = 0xb0;
/// dst >>= src (arithmetic)
pub const BPF_ARSH: u8 = 0xc0;
/// byte swap / endianness conversion
pub const BPF_END: u8 = 0xd0;

/// BPF_END source bit: convert to little endian (class ALU) — `le16/le32/le64`.
pub const BPF_TO_LE: u8 = 0x00;
/// BPF_END source bit: convert to big endian (class ALU) — `be16/be32/be64`.
pub const BPF_TO_BE: u8 = 0x08;

// ---- jump operations (bits 4-7) ----
/// pc += off (JMP) or pc += imm (JMP32, `gotol`)
pub const BPF_JA: u8 = 0x00;
/// jump if ==
pub const BPF_JEQ: u8 = 0x10;
/// jump if > (unsigned)
pub const BPF_JGT: u8 = 0x20;
/// jump if >= (unsigned)
pub const BPF_JGE: u8 = 0x30;
/// jump if dst & src
pub const BPF_JSET: u8 = 0x40;
/// jump if !=
pub const BPF_JNE: u8 = 0x50;
/// jump if > (signed)
pub const BPF_JSGT: u8 = 0x60;
/// jump if >= (signed)
pub const BPF_JSGE: u8 = 0x70;
/// call helper (src 0), local function (src 1) or kfunc (src 2)
pub const BPF_CALL: u8 = 0x80;
/// return r0 from the current function
pub const BPF_EXIT: u8 = 0x90;
/// jump if < (unsigned)
pub const BPF_JLT: u8 = 0xa0;
/// jump if <= (unsigned)
pub const BPF_JLE: u8 = 0xb0;
/// jump if < (signed)
pub const BPF_JSLT: u8 = 0xc0;
/// jump if <= (signed)
pub const BPF_JSLE: u8 = 0xd0;

// ---- atomic operations (imm field of BPF_ATOMIC) ----
/// Flag: the old value is returned in `src` (or r0 for cmpxchg).
pub const BPF_FETCH: i32 = 0x01;
/// atomic xchg (always fetches)
pub const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
/// atomic compare-and-exchange with r0 (always fetches into r0)
pub const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;

// ---- src_reg values of ld_imm64 (pseudo loads resolved by the loader) ----
/// imm64 is a plain constant.
pub const PSEUDO_NONE: u8 = 0;
/// imm is a map file descriptor / map index: the value is the map handle.
pub const PSEUDO_MAP_FD: u8 = 1;
/// imm is a map, next imm an offset into its (single) value: the value is a data pointer.
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// imm is a BTF id of a kernel variable (unsupported in userspace).
pub const PSEUDO_BTF_ID: u8 = 3;
/// imm is a function: the value is a callback pointer (bpf_loop, for_each_map_elem).
pub const PSEUDO_FUNC: u8 = 4;
/// imm is a map index (libbpf fd_array form).
pub const PSEUDO_MAP_IDX: u8 = 5;
/// imm is a map index with a value offset (fd_array form).
pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;

/// src_reg of BPF_CALL: helper by ID.
pub const CALL_HELPER: u8 = 0;
/// src_reg of BPF_CALL: bpf-to-bpf call, `imm` is the relative instruction offset.
pub const CALL_LOCAL: u8 = 1;
/// src_reg of BPF_CALL: kfunc by BTF id (unsupported in userspace).
pub const CALL_KFUNC: u8 = 2;

/// Number of general purpose registers (r0..r10).
pub const NUM_REGS: usize = 11;
/// The read-only frame pointer register.
pub const FRAME_REG: u8 = 10;
/// Stack space of one function frame, as in the kernel.
pub const STACK_SIZE: usize = 512;
/// Maximum call depth of bpf-to-bpf calls, as in the kernel (`MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: usize = 8;

/// One decoded instruction slot.
///
/// `ld_imm64` occupies two slots; the first holds the low 32 bits in `imm`, the second (opcode 0)
/// the high 32 bits in its `imm`. [`Insn::imm64`] joins them.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Insn {
    /// Full opcode byte: class | size/mode | source | operation.
    pub op: u8,
    /// Destination register (0..=10).
    pub dst: u8,
    /// Source register (0..=10), or a pseudo selector for calls and ld_imm64.
    pub src: u8,
    /// Signed 16-bit offset: jump distance, memory displacement, or a cpu-v4 modifier.
    pub off: i16,
    /// Signed 32-bit immediate.
    pub imm: i32,
}

impl Insn {
    /// Decodes one little-endian 8-byte instruction.
    pub fn from_bytes(b: [u8; 8]) -> Insn {
        Insn {
            op: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes the instruction back into its 8 bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.op;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    /// Builds an instruction from its fields (for assemblers and tests).
    pub const fn new(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            op,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The instruction class (low three bits of the opcode).
    pub const fn class(self) -> u8 {
        self.op & 0x07
    }

    /// Whether this is the first slot of a two-slot `ld_imm64`.
    pub const fn is_ld_imm64(self) -> bool {
        self.op == BPF_LD | BPF_IMM | BPF_DW
    }

    /// The 64-bit immediate of an `ld_imm64` whose second slot is `next`.
    pub const fn imm64(self, next: Insn) -> u64 {
        (self.imm as u32 as u64) | ((next.imm as u32 as u64) << 32)
    }

    /// Memory access width in bytes for LDX/ST/STX classes.
    pub const fn mem_size(self) -> usize {
        mem_width(self.op)
    }
}

/// Width in bytes of the access an LDX/ST/STX opcode (or an interpreter code that keeps its
/// `BPF_SIZE` field) makes.
pub const fn mem_width(op: u8) -> usize {
    match op & 0x18 {
        BPF_W => 4,
        BPF_H => 2,
        BPF_B => 1,
        _ => 8,
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ op: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {} }}",
            self.op, self.dst, self.src, self.off, self.imm
        )
    }
}

/// Why a byte string is not a well-formed instruction stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The byte length is not a multiple of eight.
    #[error("program length {len} is not a multiple of 8 bytes")]
    BadLength {
        /// Length in bytes.
        len: usize,
    },
    /// An opcode the kernel does not define.
    #[error("insn {insn}: unknown opcode {op:#04x}")]
    UnknownOpcode {
        /// Instruction index.
        insn: usize,
        /// The opcode byte.
        op: u8,
    },
    /// A register number above r10, or a write to r10.
    #[error("insn {insn}: invalid register r{reg}")]
    BadRegister {
        /// Instruction index.
        insn: usize,
        /// The register number.
        reg: u8,
    },
    /// A jump or local call whose target is outside the program or inside an ld_imm64.
    #[error("insn {insn}: jump target {target} out of range (program has {len} insns)")]
    JumpOutOfRange {
        /// Instruction index.
        insn: usize,
        /// The computed target index.
        target: i64,
        /// Program length in slots.
        len: usize,
    },
    /// An `ld_imm64` without its second slot, or with a malformed second slot.
    #[error("insn {insn}: incomplete ld_imm64")]
    IncompleteLdImm64 {
        /// Instruction index.
        insn: usize,
    },
    /// A field combination the kernel rejects (reserved bits, bad atomic op, bad MOVSX width).
    #[error("insn {insn}: invalid {what}")]
    Invalid {
        /// Instruction index.
        insn: usize,
        /// What is invalid.
        what: &'static str,
    },
    /// The program does not end with exit or an unconditional jump.
    #[error("program falls off its end")]
    FallsOffEnd,
}

/// Splits raw bytes into instruction slots without validating semantics.
pub fn decode_raw(bytes: &[u8]) -> Result<Vec<Insn>, DecodeError> {
    if !bytes.len().is_multiple_of(INSN_SIZE) {
        return Err(DecodeError::BadLength { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(INSN_SIZE)
        .map(|c| Insn::from_bytes(c.try_into().expect("chunk of 8")))
        .collect())
}

/// Decodes and validates a program: every opcode known, registers in range, jump targets inside
/// the program and never into the second slot of an `ld_imm64`.
///
/// Validation here is structural; data-flow safety is the verifier's job (see `SafetyPolicy`).
pub fn decode(bytes: &[u8]) -> Result<Vec<Insn>, DecodeError> {
    let insns = decode_raw(bytes)?;
    validate(&insns)?;
    Ok(insns)
}

/// Structural validation of an already split instruction stream (see [`decode`]).
pub fn validate(insns: &[Insn]) -> Result<(), DecodeError> {
    let len = insns.len();
    // Slots that are the second half of an ld_imm64: not valid jump targets.
    let mut is_imm_tail = vec![false; len];
    let mut pc = 0;
    while pc < len {
        let insn = insns[pc];
        if insn.is_ld_imm64() {
            if pc + 1 >= len {
                return Err(DecodeError::IncompleteLdImm64 { insn: pc });
            }
            let next = insns[pc + 1];
            if next.op != 0 || next.dst != 0 || next.src != 0 || next.off != 0 {
                return Err(DecodeError::IncompleteLdImm64 { insn: pc });
            }
            is_imm_tail[pc + 1] = true;
            pc += 2;
        } else {
            pc += 1;
        }
    }
    let mut pc = 0;
    while pc < len {
        let insn = insns[pc];
        check_fields(pc, insn)?;
        if let Some(target) = jump_target(pc, insn) {
            if target < 0 || target as usize >= len || is_imm_tail[target as usize] {
                return Err(DecodeError::JumpOutOfRange {
                    insn: pc,
                    target,
                    len,
                });
            }
        }
        pc += if insn.is_ld_imm64() { 2 } else { 1 };
    }
    match insns.last() {
        None => Err(DecodeError::FallsOffEnd),
        Some(last)
            if last.op == BPF_JMP | BPF_EXIT
                || last.op == BPF_JMP | BPF_JA
                || last.op == BPF_JMP32 | BPF_JA =>
        {
            Ok(())
        }
        Some(_) => Err(DecodeError::FallsOffEnd),
    }
}

/// The instruction index a jump or local call at `pc` transfers to, if it is one.
pub fn jump_target(pc: usize, insn: Insn) -> Option<i64> {
    let class = insn.class();
    if class != BPF_JMP && class != BPF_JMP32 {
        return None;
    }
    let op = insn.op & 0xf0;
    match op {
        BPF_EXIT => None,
        BPF_CALL if insn.src == CALL_LOCAL => Some(pc as i64 + 1 + insn.imm as i64),
        BPF_CALL => None,
        BPF_JA if class == BPF_JMP32 => Some(pc as i64 + 1 + insn.imm as i64),
        _ => Some(pc as i64 + 1 + insn.off as i64),
    }
}

fn check_reg(pc: usize, reg: u8) -> Result<(), DecodeError> {
    if reg as usize >= NUM_REGS {
        Err(DecodeError::BadRegister { insn: pc, reg })
    } else {
        Ok(())
    }
}

/// Checks that the fields of one instruction form something the kernel defines.
fn check_fields(pc: usize, insn: Insn) -> Result<(), DecodeError> {
    let unknown = || DecodeError::UnknownOpcode {
        insn: pc,
        op: insn.op,
    };
    let invalid = |what| DecodeError::Invalid { insn: pc, what };
    check_reg(pc, insn.dst)?;
    let class = insn.class();
    match class {
        BPF_ALU | BPF_ALU64 => {
            let op = insn.op & 0xf0;
            if insn.op & BPF_X != 0 && op != BPF_END {
                check_reg(pc, insn.src)?;
            }
            if insn.dst == FRAME_REG {
                return Err(DecodeError::BadRegister {
                    insn: pc,
                    reg: insn.dst,
                });
            }
            match op {
                BPF_ADD | BPF_SUB | BPF_MUL | BPF_OR | BPF_AND | BPF_LSH | BPF_RSH | BPF_XOR
                | BPF_ARSH => Ok(()),
                // The kernel: NEG takes no source (`BPF_K`, src_reg 0).
                BPF_NEG if insn.op & BPF_X == 0 && insn.src == 0 => Ok(()),
                BPF_NEG => Err(invalid("neg with a source operand")),
                BPF_DIV | BPF_MOD => match insn.off {
                    0 | 1 => Ok(()),
                    _ => Err(invalid("division offset (must be 0 or 1)")),
                },
                BPF_MOV => match (insn.op & BPF_X != 0, insn.off) {
                    (_, 0) => Ok(()),
                    (true, 8 | 16) => Ok(()),
                    (true, 32) if class == BPF_ALU64 => Ok(()),
                    _ => Err(invalid("movsx width")),
                },
                BPF_END => match insn.imm {
                    16 | 32 | 64 => {
                        if class == BPF_ALU64 && insn.op & BPF_X != 0 {
                            Err(unknown())
                        } else {
                            Ok(())
                        }
                    }
                    _ => Err(invalid("byte swap width")),
                },
                _ => Err(unknown()),
            }
        }
        BPF_JMP | BPF_JMP32 => {
            let op = insn.op & 0xf0;
            // ja, call and exit have no register source form (the kernel rejects BPF_X).
            if matches!(op, BPF_JA | BPF_CALL | BPF_EXIT) && insn.op & BPF_X != 0 {
                return Err(unknown());
            }
            match op {
                BPF_EXIT => {
                    if class == BPF_JMP32 {
                        Err(unknown())
                    } else {
                        Ok(())
                    }
                }
                BPF_CALL => {
                    if class == BPF_JMP32 {
                        return Err(unknown());
                    }
                    match insn.src {
                        CALL_HELPER | CALL_LOCAL | CALL_KFUNC => Ok(()),
                        _ => Err(invalid("call kind")),
                    }
                }
                BPF_JA => Ok(()),
                BPF_JEQ | BPF_JGT | BPF_JGE | BPF_JSET | BPF_JNE | BPF_JSGT | BPF_JSGE
                | BPF_JLT | BPF_JLE | BPF_JSLT | BPF_JSLE => {
                    if insn.op & BPF_X != 0 {
                        check_reg(pc, insn.src)?;
                    }
                    Ok(())
                }
                _ => Err(unknown()),
            }
        }
        BPF_LDX => {
            check_reg(pc, insn.src)?;
            if insn.dst == FRAME_REG {
                return Err(DecodeError::BadRegister {
                    insn: pc,
                    reg: insn.dst,
                });
            }
            match insn.op & 0xe0 {
                BPF_MEM => Ok(()),
                BPF_MEMSX if insn.op & 0x18 != BPF_DW => Ok(()),
                _ => Err(unknown()),
            }
        }
        BPF_ST => match insn.op & 0xe0 {
            BPF_MEM => Ok(()),
            _ => Err(unknown()),
        },
        BPF_STX => {
            check_reg(pc, insn.src)?;
            match insn.op & 0xe0 {
                BPF_MEM => Ok(()),
                BPF_ATOMIC => {
                    if insn.op & 0x18 != BPF_W && insn.op & 0x18 != BPF_DW {
                        return Err(invalid("atomic width (must be 32 or 64 bits)"));
                    }
                    match insn.imm {
                        x if x == BPF_ADD as i32
                            || x == BPF_OR as i32
                            || x == BPF_AND as i32
                            || x == BPF_XOR as i32 =>
                        {
                            Ok(())
                        }
                        x if x == BPF_ADD as i32 | BPF_FETCH
                            || x == BPF_OR as i32 | BPF_FETCH
                            || x == BPF_AND as i32 | BPF_FETCH
                            || x == BPF_XOR as i32 | BPF_FETCH =>
                        {
                            Ok(())
                        }
                        BPF_XCHG | BPF_CMPXCHG => Ok(()),
                        _ => Err(invalid("atomic operation")),
                    }
                }
                _ => Err(unknown()),
            }
        }
        BPF_LD => {
            if insn.is_ld_imm64() {
                match insn.src {
                    PSEUDO_NONE | PSEUDO_MAP_FD | PSEUDO_MAP_VALUE | PSEUDO_BTF_ID
                    | PSEUDO_FUNC | PSEUDO_MAP_IDX | PSEUDO_MAP_IDX_VALUE => Ok(()),
                    _ => Err(invalid("ld_imm64 pseudo source")),
                }
            } else if insn.op == 0 {
                // Second slot of ld_imm64 reached here only when not preceded by one.
                Err(DecodeError::IncompleteLdImm64 { insn: pc })
            } else {
                // BPF_ABS / BPF_IND are cBPF leftovers the kernel refuses for XDP and TC direct
                // packet access programs; we do not run them.
                Err(unknown())
            }
        }
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_bytes() {
        let i = Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 3, 7, -5, -100);
        assert_eq!(Insn::from_bytes(i.to_bytes()), i);
    }

    #[test]
    fn rejects_jump_into_ld_imm64_tail() {
        let prog = [
            Insn::new(BPF_JMP | BPF_JA, 0, 0, 1, 0),
            Insn::new(BPF_LD | BPF_IMM | BPF_DW, 0, 0, 0, 1),
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        ];
        assert!(matches!(
            validate(&prog),
            Err(DecodeError::JumpOutOfRange { insn: 0, .. })
        ));
    }

    #[test]
    fn rejects_forms_the_kernel_rejects() {
        let exit = Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
        for bad in [
            Insn::new(BPF_ALU64 | BPF_NEG | BPF_X, 0, 1, 0, 0),
            Insn::new(BPF_JMP | BPF_JA | BPF_X, 0, 0, 0, 0),
            Insn::new(BPF_JMP | BPF_CALL | BPF_X, 0, 0, 0, 1),
            Insn::new(BPF_JMP | BPF_EXIT | BPF_X, 0, 0, 0, 0),
        ] {
            assert!(validate(&[bad, exit]).is_err(), "{bad:?} accepted");
        }
        assert!(validate(&[Insn::new(BPF_ALU64 | BPF_NEG, 0, 0, 0, 0), exit]).is_ok());
    }

    #[test]
    fn rejects_unknown_opcode_and_bad_length() {
        assert_eq!(
            decode(&[0xff, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::UnknownOpcode { insn: 0, op: 0xff })
        );
        assert_eq!(decode(&[0; 7]), Err(DecodeError::BadLength { len: 7 }));
    }
}
