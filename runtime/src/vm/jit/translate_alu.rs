//! ALU and ALU64: arithmetic, shifts, moves, byte swaps.
//!
//! Kernel semantics that differ from Cranelift's instructions: division by zero gives 0 and
//! modulo by zero leaves dst (Cranelift's `udiv`/`sdiv` trap), signed `INT_MIN / -1` is INT_MIN
//! and `INT_MIN % -1` is 0 (Cranelift traps), 32-bit results are zero-extended to 64 bits.
//! Shift amounts are masked to the operand width, which Cranelift's shifts already do.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};

use super::translator::Translator;
use super::JitError;
use crate::vm::insn::{
    Insn, BPF_ADD, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_DIV, BPF_END, BPF_LSH, BPF_MOD, BPF_MOV,
    BPF_MUL, BPF_NEG, BPF_OR, BPF_RSH, BPF_SUB, BPF_TO_BE, BPF_X, BPF_XOR,
};

impl Translator<'_> {
    /// Translates an ALU or ALU64 instruction.
    pub(super) fn translate_alu(&mut self, pc: usize, insn: Insn) -> Result<(), JitError> {
        let is64 = insn.class() == BPF_ALU64;
        let op = insn.op & 0xf0;
        let from_reg = insn.op & BPF_X != 0;
        match op {
            BPF_END => return self.translate_end(pc, insn, is64),
            BPF_MOV => return self.translate_mov(pc, insn, is64),
            _ => {}
        }
        let ty = if is64 { types::I64 } else { types::I32 };
        let dst = self.operand(insn.dst, ty);
        // The immediate: sign-extended for ALU64, its 32 bits for ALU.
        let imm = if is64 {
            insn.imm as i64
        } else {
            insn.imm as u32 as i64
        };
        let src = if op == BPF_NEG {
            if from_reg {
                // The kernel rejects NEG with BPF_X as a reserved encoding.
                return Err(self.unsupported(pc, "neg with a register operand"));
            }
            dst
        } else if from_reg {
            self.operand(insn.src, ty)
        } else {
            self.builder.ins().iconst(ty, imm)
        };
        let ins = self.builder.ins();
        let r = match op {
            BPF_ADD => ins.iadd(dst, src),
            BPF_SUB => ins.isub(dst, src),
            BPF_MUL => ins.imul(dst, src),
            BPF_OR => ins.bor(dst, src),
            BPF_AND => ins.band(dst, src),
            BPF_XOR => ins.bxor(dst, src),
            BPF_LSH => ins.ishl(dst, src),
            BPF_RSH => ins.ushr(dst, src),
            BPF_ARSH => ins.sshr(dst, src),
            BPF_NEG => ins.ineg(dst),
            BPF_DIV | BPF_MOD => {
                // Signed view of the immediate, for both widths.
                let known = (!from_reg).then_some(insn.imm as i64);
                let signed = match insn.off {
                    0 => false,
                    1 => true,
                    _ => return Err(self.unsupported(pc, "a division with offset not 0 or 1")),
                };
                self.divide(ty, op == BPF_MOD, signed, dst, src, known)
            }
            _ => return Err(self.unsupported(pc, format!("ALU operation {op:#04x}"))),
        };
        self.set_result(insn.dst, r, ty);
        Ok(())
    }

    /// Register `r` as a value of type `ty` (I64 or its low 32 bits).
    pub(super) fn operand(&mut self, r: u8, ty: Type) -> Value {
        let v = self.reg(r);
        if ty == types::I64 {
            v
        } else {
            self.builder.ins().ireduce(ty, v)
        }
    }

    /// Writes `v` of type `ty` to register `r`, zero-extending 32-bit results.
    fn set_result(&mut self, r: u8, v: Value, ty: Type) {
        let v = if ty == types::I64 {
            v
        } else {
            self.builder.ins().uextend(types::I64, v)
        };
        self.set_reg(r, v);
    }

    /// Division or modulo with kernel semantics. `known` is the divisor when it is an
    /// immediate (sign-extended, so -1 is recognised for 32-bit signed ops too).
    fn divide(
        &mut self,
        ty: Type,
        modulo: bool,
        signed: bool,
        dst: Value,
        src: Value,
        known: Option<i64>,
    ) -> Value {
        let b = &mut self.builder;
        match known {
            Some(0) => {
                return if modulo { dst } else { b.ins().iconst(ty, 0) };
            }
            Some(-1) if signed => {
                return if modulo {
                    b.ins().iconst(ty, 0)
                } else {
                    b.ins().ineg(dst)
                };
            }
            Some(_) => {
                return match (signed, modulo) {
                    (false, false) => b.ins().udiv(dst, src),
                    (false, true) => b.ins().urem(dst, src),
                    (true, false) => b.ins().sdiv(dst, src),
                    (true, true) => b.ins().srem(dst, src),
                };
            }
            None => {}
        }
        let one = b.ins().iconst(ty, 1);
        let zero = b.ins().iconst(ty, 0);
        let is_zero = b.ins().icmp_imm(IntCC::Equal, src, 0);
        if !signed {
            let safe = b.ins().select(is_zero, one, src);
            return if modulo {
                let r = b.ins().urem(dst, safe);
                b.ins().select(is_zero, dst, r)
            } else {
                let q = b.ins().udiv(dst, safe);
                b.ins().select(is_zero, zero, q)
            };
        }
        // Divisor -1 would trap on INT_MIN: compute it as negation / zero instead.
        let minus_one = b.ins().iconst(ty, mask(ty));
        let is_m1 = b.ins().icmp(IntCC::Equal, src, minus_one);
        let bad = b.ins().bor(is_zero, is_m1);
        let safe = b.ins().select(bad, one, src);
        if modulo {
            let r = b.ins().srem(dst, safe);
            let r = b.ins().select(is_zero, dst, r);
            b.ins().select(is_m1, zero, r)
        } else {
            let q = b.ins().sdiv(dst, safe);
            let q = b.ins().select(is_zero, zero, q);
            let neg = b.ins().ineg(dst);
            b.ins().select(is_m1, neg, q)
        }
    }

    /// MOV and MOVSX (`off` = 8/16/32 sign-extends from that many bits).
    fn translate_mov(&mut self, pc: usize, insn: Insn, is64: bool) -> Result<(), JitError> {
        let v = if insn.op & BPF_X == 0 {
            let imm = if is64 {
                insn.imm as i64
            } else {
                insn.imm as u32 as i64
            };
            self.builder.ins().iconst(types::I64, imm)
        } else {
            let src = self.reg(insn.src);
            let narrow = match insn.off {
                0 => None,
                8 => Some(types::I8),
                16 => Some(types::I16),
                32 if is64 => Some(types::I32),
                _ => return Err(self.unsupported(pc, format!("movsx from {} bits", insn.off))),
            };
            let b = &mut self.builder;
            match (narrow, is64) {
                (None, true) => src,
                (None, false) => {
                    let low = b.ins().ireduce(types::I32, src);
                    b.ins().uextend(types::I64, low)
                }
                (Some(n), true) => {
                    let low = b.ins().ireduce(n, src);
                    b.ins().sextend(types::I64, low)
                }
                (Some(n), false) => {
                    let low = b.ins().ireduce(n, src);
                    let wide = b.ins().sextend(types::I32, low);
                    b.ins().uextend(types::I64, wide)
                }
            }
        };
        self.set_reg(insn.dst, v);
        Ok(())
    }

    /// END (to-le / to-be) and ALU64 BSWAP.
    fn translate_end(&mut self, pc: usize, insn: Insn, is64: bool) -> Result<(), JitError> {
        let width = match insn.imm {
            16 => types::I16,
            32 => types::I32,
            64 => types::I64,
            _ => return Err(self.unsupported(pc, format!("byte swap of {} bits", insn.imm))),
        };
        // ALU64 END is an unconditional swap; ALU END swaps when the requested order differs
        // from the host's.
        let to_be = insn.op & BPF_TO_BE != 0;
        let swap = is64 || to_be == cfg!(target_endian = "little");
        let dst = self.reg(insn.dst);
        let b = &mut self.builder;
        let low = if width == types::I64 {
            dst
        } else {
            b.ins().ireduce(width, dst)
        };
        let low = if swap { b.ins().bswap(low) } else { low };
        let v = if width == types::I64 {
            low
        } else {
            b.ins().uextend(types::I64, low)
        };
        self.set_reg(insn.dst, v);
        Ok(())
    }
}

/// All-ones mask of `ty`'s width (immediates of narrow `iconst`s must be zero-extended).
fn mask(ty: Type) -> i64 {
    if ty == types::I64 {
        -1
    } else {
        (1i64 << ty.bits()) - 1
    }
}
