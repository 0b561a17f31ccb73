//! Values the program cannot change, used at decoding: a load from frozen read-only data
//! becomes a move of the value it reads, a register operand of known value becomes an
//! immediate, and a conditional jump whose outcome is then known becomes a `ja` (always taken)
//! or a no-op (never taken).
//!
//! The kernel does the same with the same data: its verifier treats a load from a frozen
//! `BPF_F_RDONLY_PROG` map as a known scalar (`bpf_map_direct_read`) and hard-wires the
//! branches that depend only on such values (`opt_hard_wire_dead_code_branches`). Register
//! values come from the walk of [`super::fixed::prove`]: where it knows one, the value is exact
//! on every path to that slot, and frozen memory never changes after the map is created
//! (users may not write it, and programs may not either: the region is not writable).

use super::decode::Op;
use crate::vm::insn::*;
use crate::vm::memory::{Region, RegionKind};

/// The `len`-byte value (1, 2, 4 or 8, zero-extended) at `addr` when a constant region holds
/// all of it.
///
/// # Safety
/// Every region in `regions` is memory valid for reads (the contract of
/// [`super::decode::Decoded::with_fixed`]).
pub(super) unsafe fn constant_load(regions: &[Region], addr: u64, len: u64) -> Option<u64> {
    let constant = regions.iter().any(|r| {
        r.kind == RegionKind::Constant && r.contains(addr, len, crate::vm::memory::Access::Read)
    });
    if !constant {
        return None;
    }
    let p = addr as usize;
    // SAFETY: `[addr, addr + len)` lies inside a region valid for reads (contract); reads
    // are unaligned-safe.
    let value = unsafe {
        match len {
            1 => u64::from(std::ptr::read_unaligned(p as *const u8)),
            2 => u64::from(std::ptr::read_unaligned(p as *const u16)),
            4 => u64::from(std::ptr::read_unaligned(p as *const u32)),
            8 => std::ptr::read_unaligned(p as *const u64),
            _ => return None,
        }
    };
    Some(value)
}

/// The value `op` writes if it is a `mov d, k` of either width (a `mov32` zero-extends its
/// immediate's low half); `None` for any other op.
pub(super) fn moved_constant(op: &Op) -> Option<u64> {
    match op.code {
        c if c == BPF_ALU64 | BPF_MOV | BPF_K => Some(op.imm),
        c if c == BPF_ALU | BPF_MOV | BPF_K => Some(u64::from(op.imm as u32)),
        _ => None,
    }
}

/// Whether `v` is the sign extension of a 32-bit immediate: the form decoding gives every
/// immediate but `ld_imm64`'s, which the fused ops that copy an immediate rely on.
pub(super) fn fits_immediate(v: u64) -> bool {
    v == v as i32 as i64 as u64
}

/// Rewrites `op` (a plain ALU or conditional-jump op of register source) to take `value`, the
/// source register's known value, as its immediate; only where the immediate form computes
/// the same thing and the value fits it. Other ops are left as they are.
pub(super) fn immediate_source(op: &mut Op, value: u64) {
    let class = op.code & 0x07;
    if op.code & BPF_X == 0 {
        return;
    }
    let eligible = match class {
        // Not `neg` or `end` (no register form), nor the decoder's internal operations;
        // `mov` only without a sign-extension width.
        BPF_ALU | BPF_ALU64 => match op.code & 0xf0 {
            BPF_MOV => op.off == 0,
            BPF_ADD | BPF_SUB | BPF_MUL | BPF_DIV | BPF_OR | BPF_AND | BPF_LSH | BPF_RSH
            | BPF_MOD | BPF_XOR | BPF_ARSH => true,
            _ => false,
        },
        BPF_JMP | BPF_JMP32 => is_conditional(op.code),
        _ => false,
    };
    // 32-bit operations read the immediate's low half; 64-bit ones all of it, which must then
    // be a sign-extended 32-bit value as decoding makes every other immediate.
    let imm = if matches!(class, BPF_ALU | BPF_JMP32) {
        value as u32 as i32 as i64 as u64
    } else if fits_immediate(value) {
        value
    } else {
        return;
    };
    if eligible {
        op.code &= !BPF_X;
        op.src = 0;
        op.imm = imm;
    }
}

/// The op that replaces `op`, a conditional jump of immediate source at slot `at` whose
/// destination register holds `a`: a `ja` to its target when it is always taken, a
/// [`no_op`] when never; `None` for any other op.
pub(super) fn decided_jump(op: &Op, at: usize, a: u64) -> Option<Op> {
    if !is_conditional(op.code) || op.code & BPF_X != 0 {
        return None;
    }
    Some(if taken(op, a) {
        Op {
            code: BPF_JMP | BPF_JA,
            dst: 0,
            src: 0,
            imm: 0,
            ..*op
        }
    } else {
        no_op(at)
    })
}

/// Whether `code` is a real conditional jump (of either width).
pub(super) fn is_conditional(code: u8) -> bool {
    matches!(code & 0x07, BPF_JMP | BPF_JMP32)
        && matches!(
            code & 0xf0,
            BPF_JEQ
                | BPF_JGT
                | BPF_JGE
                | BPF_JSET
                | BPF_JNE
                | BPF_JSGT
                | BPF_JSGE
                | BPF_JLT
                | BPF_JLE
                | BPF_JSLT
                | BPF_JSLE
        )
}

/// Whether the conditional jump `op` of immediate source is taken when its destination
/// register holds `a`.
fn taken(op: &Op, a: u64) -> bool {
    let b = op.imm;
    let (ua, ub, sa, sb) = if op.code & 0x07 == BPF_JMP32 {
        let (a, b) = (a as u32, b as u32);
        (
            u64::from(a),
            u64::from(b),
            i64::from(a as i32),
            i64::from(b as i32),
        )
    } else {
        (a, b, a as i64, b as i64)
    };
    match op.code & 0xf0 {
        BPF_JEQ => ua == ub,
        BPF_JGT => ua > ub,
        BPF_JGE => ua >= ub,
        BPF_JSET => ua & ub != 0,
        BPF_JNE => ua != ub,
        BPF_JSGT => sa > sb,
        BPF_JSGE => sa >= sb,
        BPF_JLT => ua < ub,
        BPF_JLE => ua <= ub,
        BPF_JSLT => sa < sb,
        _ => sa <= sb,
    }
}

/// A jump that is never taken, at slot `at`: `if r0 & 0 goto +0`. Like the jump it replaces it
/// does nothing when not taken, and a jump that falls through charges nothing (a `ja` would
/// end the straight-line run and charge the budget earlier than the program does).
pub(super) fn no_op(at: usize) -> Op {
    Op {
        code: BPF_JMP | BPF_JSET | BPF_K,
        dst: 0,
        src: 0,
        off: (at + 1) as i32,
        imm: 0,
        aux: 0,
    }
}

/// Whether `op`, at slot `at`, is a [`no_op`] (or the same `jset` written by the program,
/// which skipping is as exact for).
pub(super) fn is_no_op(op: &Op, at: usize) -> bool {
    *op == no_op(at)
}
