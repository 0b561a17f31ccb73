//! LDX, ST, STX (including atomics) and ld_imm64.

use cranelift_codegen::ir::{types, AtomicRmwOp, InstBuilder, MemFlags, Type, Value};

use super::translator::Translator;
use super::JitError;
use crate::vm::insn::{
    Insn, BPF_ADD, BPF_AND, BPF_ATOMIC, BPF_CMPXCHG, BPF_FETCH, BPF_MEM, BPF_MEMSX, BPF_OR, BPF_ST,
    BPF_XCHG, BPF_XOR, PSEUDO_FUNC, PSEUDO_NONE,
};

impl Translator<'_> {
    /// LDX (zero-extending) and LDX MEMSX (sign-extending).
    pub(super) fn translate_load(&mut self, pc: usize, insn: Insn) -> Result<(), JitError> {
        let size = insn.mem_size();
        let base = self.reg(insn.src);
        self.check_access(pc, insn.src, base, insn.off, size, false);
        let flags = Self::mem_flags();
        let off = i32::from(insn.off);
        let ins = self.builder.ins();
        let v = match (insn.op & 0xe0, size) {
            (BPF_MEM, 1) => ins.uload8(types::I64, flags, base, off),
            (BPF_MEM, 2) => ins.uload16(types::I64, flags, base, off),
            (BPF_MEM, 4) => ins.uload32(flags, base, off),
            (BPF_MEM, 8) => ins.load(types::I64, flags, base, off),
            (BPF_MEMSX, 1) => ins.sload8(types::I64, flags, base, off),
            (BPF_MEMSX, 2) => ins.sload16(types::I64, flags, base, off),
            (BPF_MEMSX, 4) => ins.sload32(flags, base, off),
            _ => return Err(self.unsupported(pc, format!("load opcode {:#04x}", insn.op))),
        };
        self.set_reg(insn.dst, v);
        Ok(())
    }

    /// ST (immediate), STX (register) and STX ATOMIC.
    pub(super) fn translate_store(&mut self, pc: usize, insn: Insn) -> Result<(), JitError> {
        match insn.op & 0xe0 {
            BPF_MEM => {}
            BPF_ATOMIC if insn.class() != BPF_ST => return self.translate_atomic(pc, insn),
            _ => return Err(self.unsupported(pc, format!("store opcode {:#04x}", insn.op))),
        }
        let size = insn.mem_size();
        let base = self.reg(insn.dst);
        self.check_access(pc, insn.dst, base, insn.off, size, true);
        let v = if insn.class() == BPF_ST {
            self.builder.ins().iconst(types::I64, insn.imm as i64)
        } else {
            self.reg(insn.src)
        };
        let flags = Self::mem_flags();
        let off = i32::from(insn.off);
        let ins = self.builder.ins();
        match size {
            1 => ins.istore8(flags, v, base, off),
            2 => ins.istore16(flags, v, base, off),
            4 => ins.istore32(flags, v, base, off),
            _ => ins.store(flags, v, base, off),
        };
        Ok(())
    }

    /// Atomic read-modify-write, xchg and cmpxchg on 32 or 64 bits.
    fn translate_atomic(&mut self, pc: usize, insn: Insn) -> Result<(), JitError> {
        let ty = match insn.mem_size() {
            4 => types::I32,
            8 => types::I64,
            n => return Err(self.unsupported(pc, format!("a {n}-byte atomic"))),
        };
        let base = self.reg(insn.dst);
        self.check_access(pc, insn.dst, base, insn.off, insn.mem_size(), true);
        let addr = self.builder.ins().iadd_imm(base, i64::from(insn.off));
        if self.unit.guarded {
            self.check_atomic_alignment(pc, addr, insn.mem_size());
        }
        let src = self.operand(insn.src, ty);
        // Atomics must not be split; the verifier requires natural alignment.
        let flags = MemFlags::trusted();
        if insn.imm == BPF_CMPXCHG {
            let expected = self.operand(0, ty);
            let old = self.builder.ins().atomic_cas(flags, addr, expected, src);
            let old = self.widen(old, ty);
            self.set_reg(0, old);
            return Ok(());
        }
        let op = match insn.imm & !BPF_FETCH {
            x if x == BPF_ADD as i32 => AtomicRmwOp::Add,
            x if x == BPF_OR as i32 => AtomicRmwOp::Or,
            x if x == BPF_AND as i32 => AtomicRmwOp::And,
            x if x == BPF_XOR as i32 => AtomicRmwOp::Xor,
            x if x == BPF_XCHG & !BPF_FETCH => AtomicRmwOp::Xchg,
            _ => return Err(self.unsupported(pc, format!("atomic operation {:#x}", insn.imm))),
        };
        let old = self.builder.ins().atomic_rmw(ty, flags, op, addr, src);
        if insn.imm & BPF_FETCH != 0 {
            let old = self.widen(old, ty);
            self.set_reg(insn.src, old);
        }
        Ok(())
    }

    /// Zero-extends a 32-bit value to 64 bits.
    fn widen(&mut self, v: Value, ty: Type) -> Value {
        if ty == types::I64 {
            v
        } else {
            self.builder.ins().uextend(types::I64, v)
        }
    }

    /// ld_imm64: a constant, or (PSEUDO_FUNC) the absolute instruction index of a callback.
    pub(super) fn translate_ld_imm64(&mut self, pc: usize, insn: Insn) -> Result<(), JitError> {
        if !insn.is_ld_imm64() {
            return Err(self.unsupported(pc, format!("opcode {:#04x}", insn.op)));
        }
        let value = match insn.src {
            PSEUDO_NONE => insn.imm64(self.unit.prog.insns[pc + 1]) as i64,
            PSEUDO_FUNC => {
                let entry = pc as i64 + 1 + i64::from(insn.imm);
                if usize::try_from(entry)
                    .ok()
                    .and_then(|e| self.unit.prog.functions.binary_search(&e).ok())
                    .is_none()
                {
                    return Err(self.unsupported(pc, "a callback that is not a function"));
                }
                entry
            }
            src => return Err(self.unsupported(pc, format!("ld_imm64 with pseudo source {src}"))),
        };
        let v = self.builder.ins().iconst(types::I64, value);
        self.set_reg(insn.dst, v);
        Ok(())
    }
}
