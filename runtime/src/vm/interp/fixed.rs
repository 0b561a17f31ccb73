//! Accesses through constant addresses, proven at decoding against memory that lives as long
//! as the program.
//!
//! Global data (`.data`, `.bss`, `.rodata`) and direct array values are reached through an
//! `ld_imm64` of an absolute address (relocated by the loader). Within a straight-line run the
//! register keeps that value until it is written, so the address of a load or store through it
//! is known before the program runs. When that address lies inside a fixed region (array map
//! storage, registered for every checked run of the program) with the right permission, the
//! access is checked once here instead of on every execution: it becomes a `*_FIXED` op that
//! reads or writes the address directly. Everything else keeps its run-time check.
//!
//! Soundness rests on two facts. The constant is exact: only `ld_imm64`, `mov64 k`, `mov64 x`
//! of a known register and `add64 k` on one make a register known, every other write forgets
//! it, and knowledge reaches a slot only along its one way in: falling through from the slot
//! before, or a forward jump that is the only way to it (jumps write no register, so the
//! state is the one the jump saw). Slots reached several ways, function entries, return
//! addresses and backward-jump targets start with nothing known. And the region outlives the
//! program: the maps whose storage the regions are own the program's relocated addresses too
//! (the JIT embeds the same addresses), and a program only ever runs with its own maps.

use super::decode::code;
use super::decode::Op;
use super::fold;
use crate::vm::insn::*;
use crate::vm::memory::{Access, Region};

/// How control reaches a slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Not at all (dead code, or the second slot of an `ld_imm64`).
    None,
    /// Only by falling through from the slot before (or the `ld_imm64` before).
    FallThrough,
    /// Only by the jump at this slot, which lies before it (a forward jump, so its state is
    /// known when the target is reached in program order).
    Jump(usize),
    /// Several ways, or from where the state is unknown: slot 0, function entries, the slot
    /// after a call (the return address), a backward jump.
    Unknown,
}

/// How control reaches each slot (see [`Way`]).
fn ways_in(ops: &[Op], functions: &[usize]) -> Vec<Way> {
    let mut ways = vec![Way::None; ops.len()];
    let add = |ways: &mut Vec<Way>, at: usize, way: Way| {
        if let Some(w) = ways.get_mut(at) {
            *w = if *w == Way::None { way } else { Way::Unknown };
        }
    };
    add(&mut ways, 0, Way::Unknown);
    for &f in functions {
        add(&mut ways, f, Way::Unknown);
    }
    let mut pc = 0;
    while pc < ops.len() {
        let op = ops[pc];
        let class = op.code & 0x07;
        if op.code == BPF_LD | BPF_IMM | BPF_DW {
            add(&mut ways, pc + 2, Way::FallThrough);
            pc += 2;
            continue;
        }
        let is_jump_class = matches!(class, BPF_JMP | BPF_JMP32);
        let is_call = matches!(op.code, code::LOCAL_CALL | code::CALL_LOOKUP)
            || (is_jump_class && op.code & 0xf0 == BPF_CALL);
        let is_exit = is_jump_class && op.code & 0xf0 == BPF_EXIT;
        if is_call {
            // Returns arrive here from the callee or the helper.
            add(&mut ways, pc + 1, Way::Unknown);
            if op.code == code::LOCAL_CALL {
                if let Ok(t) = usize::try_from(op.off) {
                    add(&mut ways, t, Way::Unknown);
                }
            }
        } else if is_jump_class && !is_exit {
            let target = usize::try_from(op.off).unwrap_or(usize::MAX);
            add(
                &mut ways,
                target,
                if target > pc {
                    Way::Jump(pc)
                } else {
                    Way::Unknown
                },
            );
            if op.code != BPF_JMP | BPF_JA {
                add(&mut ways, pc + 1, Way::FallThrough);
            }
        } else if !is_exit && op.code != code::FAULT {
            add(&mut ways, pc + 1, Way::FallThrough);
        }
        pc += 1;
    }
    ways
}

/// Whether a fixed region allows `access` to all of `[addr, addr + len)`.
pub(super) fn allows(regions: &[Region], addr: u64, len: u64, access: Access) -> bool {
    regions.iter().any(|r| r.contains(addr, len, access))
}

/// Rewrites loads and stores through registers of known value into `*_FIXED` ops where
/// `regions` allow them, and folds what constant regions make known ([`super::fold`]). Runs on
/// freshly decoded ops (before superinstructions are fused): real BPF codes plus the decoder's
/// own (`*_STACK`, calls, faults).
///
/// # Safety
/// Every region in `regions` is memory valid for reads (constant ones are read here).
pub(super) unsafe fn prove(ops: &mut [Op], functions: &[usize], regions: &[Region]) {
    if regions.is_empty() || ops.is_empty() {
        return;
    }
    let ways = ways_in(ops, functions);
    // The state each forward jump leaves for a target it alone reaches.
    let mut at_jump: std::collections::HashMap<usize, [Option<u64>; 16]> = Default::default();
    let mut known: [Option<u64>; 16] = [None; 16];
    let mut pc = 0;
    while pc < ops.len() {
        match ways[pc] {
            Way::FallThrough => {}
            Way::Jump(from) => known = at_jump.remove(&from).unwrap_or([None; 16]),
            Way::None | Way::Unknown => known = [None; 16],
        }
        let (dst, src) = (
            usize::from(ops[pc].dst & 0x0f),
            usize::from(ops[pc].src & 0x0f),
        );
        // A register source of known value becomes an immediate; a conditional jump on known
        // values becomes a `ja` or a no-op.
        if let Some(v) = known[src] {
            fold::immediate_source(&mut ops[pc], v);
        }
        if let Some(a) = known[dst].filter(|_| fold::is_conditional(ops[pc].code)) {
            if ops[pc].code & BPF_X == 0 {
                ops[pc] = if fold::taken(&ops[pc], a) {
                    Op {
                        code: BPF_JMP | BPF_JA,
                        src: 0,
                        dst: 0,
                        imm: 0,
                        ..ops[pc]
                    }
                } else {
                    fold::no_op(pc)
                };
            }
        }
        let op = ops[pc];
        let class = op.code & 0x07;
        let mode = op.code & 0xe0;
        let len = mem_width(op.code) as u64;
        // The address of this op's access through a base of known value, when a fixed region
        // allows the access there.
        let proven = |base: Option<u64>, access| {
            base.map(|b| b.wrapping_add(op.off as i64 as u64))
                .filter(|&addr| allows(regions, addr, len, access))
        };
        match op.code {
            c if c == BPF_LD | BPF_IMM | BPF_DW => {
                known[dst] = Some(op.imm);
                // The second slot is a fault op; nothing falls into it.
                pc += 2;
                continue;
            }
            c if c == BPF_ALU64 | BPF_MOV | BPF_K => known[dst] = Some(op.imm),
            c if c == BPF_ALU64 | BPF_MOV | BPF_X => known[dst] = known[src],
            c if c == BPF_ALU64 | BPF_ADD | BPF_K => {
                known[dst] = known[dst].map(|v| v.wrapping_add(op.imm))
            }
            _ if class == BPF_LDX && mode == BPF_MEM => {
                let addr = proven(known[src], Access::Read);
                if let Some(addr) = addr {
                    ops[pc].code = code::LDX_FIXED | (op.code & 0x18);
                    ops[pc].imm = addr;
                }
                // SAFETY: the regions are readable memory (contract).
                known[dst] = addr.and_then(|a| unsafe { fold::constant_load(regions, a, len) });
                if let Some(v) = known[dst].filter(|&v| fold::fits_immediate(v)) {
                    // A load of a constant: the move of its value (zero-extended, as loaded).
                    ops[pc] = Op {
                        code: BPF_ALU64 | BPF_MOV | BPF_K,
                        src: 0,
                        off: 0,
                        imm: v,
                        ..op
                    };
                }
            }
            _ if class == BPF_STX && mode == BPF_MEM => {
                if let Some(addr) = proven(known[dst], Access::Write) {
                    ops[pc].code = code::STX_FIXED | (op.code & 0x18);
                    ops[pc].imm = addr;
                }
            }
            _ if class == BPF_ST && mode == BPF_MEM => {
                if let Some(addr) = proven(known[dst], Access::Write) {
                    // The stored immediate moves to `off` (it is 32 bits, sign-extended).
                    ops[pc].code = code::ST_FIXED | (op.code & 0x18);
                    ops[pc].off = op.imm as i32;
                    ops[pc].imm = addr;
                }
            }
            // Stores (checked, to the stack, atomics without fetch) write no register, but an
            // atomic may write `src` or r0: forget both rather than decode the operation.
            _ if class == BPF_STX && mode == BPF_ATOMIC => {
                known[src] = None;
                known[0] = None;
            }
            _ if matches!(class, BPF_ST | BPF_STX) => {}
            // The decoder's stack stores write no register; its stack loads, ALU ops and
            // other loads write their destination only.
            c if class == BPF_LD && matches!(c & 0xe0, code::STX_STACK | code::ST_STACK) => {}
            c if (class == BPF_LD && c & 0xe0 == code::LDX_STACK)
                || matches!(class, BPF_ALU | BPF_ALU64 | BPF_LDX) =>
            {
                known[dst] = None
            }
            // Conditional jumps, `ja` and `exit` write nothing: the state flows on to the
            // fall-through and, kept here, to a target that only this jump reaches.
            _ if matches!(class, BPF_JMP | BPF_JMP32) && op.code & 0xf0 != BPF_CALL => {
                let target = usize::try_from(op.off).unwrap_or(usize::MAX);
                if ways.get(target) == Some(&Way::Jump(pc)) {
                    at_jump.insert(pc, known);
                }
            }
            // Everything else (calls, `movsx`, faults) may write r0..r5 or its destination:
            // forget all of it.
            _ => known = [None; 16],
        }
        pc += 1;
    }
}
