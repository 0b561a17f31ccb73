//! Guarded-mode bounds checks in front of every memory access.
//!
//! Fast path at compile time: r10 is immutable and always the current frame's top, so an
//! access `[r10 + off, r10 + off + len)` with `-512 <= off` and `off + len <= 0` is inside the
//! current frame and needs no code. Everything else calls `rt::check_access`, which consults
//! `env.memory` (where `run` registered the stack buffer) and records `OutOfBounds` with the
//! instruction index; the generated code then returns through the shared fault exit.
//!
//! Atomics are also checked for natural alignment.
//!
//! The stack region is the whole buffer, not just the frames in use: guarded mode guarantees
//! memory safety, not the verifier's exact per-frame discipline.

use cranelift_codegen::ir::{types, InstBuilder, Value};

use super::rt;
use super::translator::Translator;
use crate::vm::insn::{FRAME_REG, STACK_SIZE};

impl Translator<'_> {
    /// Emits the check of a `len`-byte access at `base + off` (base is register `base_reg`),
    /// if this is a guarded compilation.
    pub(super) fn check_access(
        &mut self,
        pc: usize,
        base_reg: u8,
        base: Value,
        off: i16,
        len: usize,
        write: bool,
    ) {
        if !self.unit.guarded {
            return;
        }
        let (off, len) = (i64::from(off), len as i64);
        if base_reg == FRAME_REG && off >= -(STACK_SIZE as i64) && off + len <= 0 {
            return;
        }
        let addr = self.builder.ins().iadd_imm(base, off);
        let len = self.builder.ins().iconst(types::I64, len);
        let tag = ((pc as u64) << 1) | if write { rt::TAG_WRITE } else { 0 };
        let tag = self.builder.ins().iconst(types::I64, tag as i64);
        let env = self.env;
        let call = self.call_rt(
            self.sigs.check,
            rt::check_access as *const () as usize,
            &[env, addr, len, tag],
        );
        let failed = self.builder.inst_results(call)[0];
        let exit = self.fault_return;
        self.branch_to_cold(failed, exit);
    }

    /// Emits the natural-alignment check of an atomic access (the kernel verifier rejects
    /// misaligned atomics; the interpreter reports them as unsupported, and so do we).
    pub(super) fn check_atomic_alignment(&mut self, pc: usize, addr: Value, len: usize) {
        let low = self.builder.ins().band_imm(addr, len as i64 - 1);
        let (env, sig) = (self.env, self.sigs.check);
        self.branch_cold_with(low, |t| {
            let len = t.builder.ins().iconst(types::I64, len as i64);
            let insn = t.builder.ins().iconst(types::I64, pc as i64);
            t.call_rt(
                sig,
                rt::misaligned_atomic as *const () as usize,
                &[env, addr, len, insn],
            );
            let zero = t.builder.ins().iconst(types::I64, 0);
            t.builder.ins().return_(&[zero]);
        });
    }
}
