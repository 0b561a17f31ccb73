//! JMP and JMP32: unconditional and conditional jumps, exit; calls go to `translate_call`.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder};

use super::translator::Translator;
use super::JitError;
use crate::vm::insn::{
    jump_target, Insn, BPF_CALL, BPF_EXIT, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JLE, BPF_JLT,
    BPF_JMP, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT, BPF_X,
};

impl Translator<'_> {
    /// Translates a JMP/JMP32 instruction; returns whether it ended the block.
    pub(super) fn translate_jmp(&mut self, pc: usize, insn: Insn) -> Result<bool, JitError> {
        let op = insn.op & 0xf0;
        match op {
            BPF_CALL => return self.translate_call(pc, insn).map(|()| false),
            BPF_EXIT => {
                let r0 = self.reg(0);
                self.builder.ins().return_(&[r0]);
                return Ok(true);
            }
            _ => {}
        }
        let target = jump_target(pc, insn)
            .and_then(|t| usize::try_from(t).ok())
            .ok_or_else(|| self.unsupported(pc, "a jump without target"))?;
        let target = self.block_at(target)?;
        if op == BPF_JA {
            self.builder.ins().jump(target, &[]);
            return Ok(true);
        }

        let ty = if insn.class() == BPF_JMP {
            types::I64
        } else {
            types::I32
        };
        let a = self.operand(insn.dst, ty);
        let b = if insn.op & BPF_X != 0 {
            self.operand(insn.src, ty)
        } else if ty == types::I64 {
            self.builder.ins().iconst(ty, insn.imm as i64)
        } else {
            self.builder.ins().iconst(ty, insn.imm as u32 as i64)
        };
        let cc = match op {
            BPF_JEQ => IntCC::Equal,
            BPF_JNE => IntCC::NotEqual,
            BPF_JGT => IntCC::UnsignedGreaterThan,
            BPF_JGE => IntCC::UnsignedGreaterThanOrEqual,
            BPF_JLT => IntCC::UnsignedLessThan,
            BPF_JLE => IntCC::UnsignedLessThanOrEqual,
            BPF_JSGT => IntCC::SignedGreaterThan,
            BPF_JSGE => IntCC::SignedGreaterThanOrEqual,
            BPF_JSLT => IntCC::SignedLessThan,
            BPF_JSLE => IntCC::SignedLessThanOrEqual,
            BPF_JSET => {
                let bits = self.builder.ins().band(a, b);
                let cond = self.builder.ins().icmp_imm(IntCC::NotEqual, bits, 0);
                return self.branch(pc, cond, target);
            }
            _ => return Err(self.unsupported(pc, format!("jump operation {op:#04x}"))),
        };
        let cond = self.builder.ins().icmp(cc, a, b);
        self.branch(pc, cond, target)
    }

    /// `brif cond, target, next-instruction`.
    fn branch(
        &mut self,
        pc: usize,
        cond: cranelift_codegen::ir::Value,
        target: cranelift_codegen::ir::Block,
    ) -> Result<bool, JitError> {
        let next = self.block_at(pc + 1)?;
        self.builder.ins().brif(cond, target, &[], next, &[]);
        Ok(true)
    }
}
