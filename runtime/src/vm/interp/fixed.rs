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
//! it, and all knowledge is dropped at every slot where control can arrive from elsewhere
//! (jump targets, function entries, the slot after a `ja`, `exit` or call). The slot after a
//! conditional jump that is no target is reached only by falling through, with the state the
//! jump left (it writes no register), so knowledge flows on. And the region outlives the
//! program: the maps whose storage the regions are own the program's relocated addresses too
//! (the JIT embeds the same addresses), and a program only ever runs with its own maps.

use super::decode::code;
use super::decode::Op;
use crate::vm::insn::*;
use crate::vm::memory::{Access, Region};

/// Slots where control may arrive other than from the slot before: slot 0, function entries,
/// jump and call targets, and the slot after an unconditional jump, a call or an exit (a
/// return address, or code only a jump reaches).
fn leaders(ops: &[Op], functions: &[usize]) -> Vec<bool> {
    let mut lead = vec![false; ops.len()];
    lead[0] = true;
    for &f in functions {
        if let Some(l) = lead.get_mut(f) {
            *l = true;
        }
    }
    for (pc, op) in ops.iter().enumerate() {
        let class = op.code & 0x07;
        let is_control = matches!(class, BPF_JMP | BPF_JMP32)
            || matches!(op.code, code::LOCAL_CALL | code::CALL_LOOKUP);
        if !is_control {
            continue;
        }
        let is_jump =
            matches!(class, BPF_JMP | BPF_JMP32) && !matches!(op.code & 0xf0, BPF_CALL | BPF_EXIT);
        let conditional = is_jump && op.code != BPF_JMP | BPF_JA;
        if !conditional {
            if let Some(next) = lead.get_mut(pc + 1) {
                *next = true;
            }
        }
        if is_jump || op.code == code::LOCAL_CALL {
            if let Some(t) = usize::try_from(op.off).ok().and_then(|t| lead.get_mut(t)) {
                *t = true;
            }
        }
    }
    lead
}

/// The fixed region that allows `access` to all of `[addr, addr + len)`, if any.
fn allows(regions: &[Region], addr: u64, len: u64, access: Access) -> bool {
    regions.iter().any(|r| r.contains(addr, len, access))
}

/// Rewrites loads and stores through registers of known value into `*_FIXED` ops where
/// `regions` allow them. Runs on freshly decoded ops (before superinstructions are fused):
/// real BPF codes plus the decoder's own (`*_STACK`, calls, faults).
pub(super) fn prove(ops: &mut [Op], functions: &[usize], regions: &[Region]) {
    if regions.is_empty() || ops.is_empty() {
        return;
    }
    let lead = leaders(ops, functions);
    let mut known: [Option<u64>; 16] = [None; 16];
    let mut pc = 0;
    while pc < ops.len() {
        if lead[pc] {
            known = [None; 16];
        }
        let op = ops[pc];
        let (dst, src) = (usize::from(op.dst & 0x0f), usize::from(op.src & 0x0f));
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
                if let Some(addr) = proven(known[src], Access::Read) {
                    ops[pc].code = code::LDX_FIXED | (op.code & 0x18);
                    ops[pc].imm = addr;
                }
                known[dst] = None;
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
            // Conditional jumps, `ja` and `exit` write nothing (the state flows on to a
            // conditional jump's fall-through; the slot after the others is a leader).
            _ if matches!(class, BPF_JMP | BPF_JMP32) && op.code & 0xf0 != BPF_CALL => {}
            // Everything else (calls, `movsx`, faults) may write r0..r5 or its destination:
            // forget all of it.
            _ => known = [None; 16],
        }
        pc += 1;
    }
}
