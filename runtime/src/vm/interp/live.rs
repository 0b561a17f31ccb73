//! Register liveness over the decoded slots: which registers some path from a slot may still
//! read before writing them. Used to fuse away writes that nothing reads.
//!
//! Conservative by construction: an op whose reads are not modelled here reads every register
//! and writes none, and so keeps everything before it live. Faults and budget exhaustion end a
//! run without showing its registers, so they read nothing. An `exit` of the main function
//! shows r0 only; one of a subprogram shows r0..r5 to its caller, which gets its own r6..r9
//! back from the frame (a verified caller reads only r0, but the interpreter runs programs
//! no verifier saw exactly as their plain form does). A local call may read every register
//! (a callee no verifier saw can read the caller's r6..r9).

use super::decode::code;
use super::decode::Op;
use super::fixed::{fall_through, is_call, jump_target};
use crate::vm::insn::*;

/// Every register.
const ALL: u16 = 0xffff;
/// r1..r5, the arguments of a call.
const ARGS: u16 = 0b11_1110;
/// r0..r5: what a subprogram's `exit` leaves its caller.
const RETURNED: u16 = 0b11_1111;

/// The registers `op` reads and the ones it writes (before fusion: BPF codes and the
/// decoder's stack, fixed, context and call codes); `in_main` says whether it lies in a main
/// function that no local call enters.
fn effect(op: &Op, in_main: bool) -> (u16, u16) {
    let d = 1u16 << (op.dst & 0x0f);
    let s = 1u16 << (op.src & 0x0f);
    let fp = 1u16 << 10;
    let class = op.code & 0x07;
    let operation = op.code & 0xf0;
    let register_source = op.code & BPF_X != 0;
    match class {
        _ if op.code == BPF_LD | BPF_IMM | BPF_DW => (0, d),
        BPF_ALU | BPF_ALU64 => match operation {
            BPF_MOV if register_source => (s, d),
            BPF_MOV => (0, d),
            BPF_NEG | BPF_END => (d, d),
            BPF_ADD | BPF_SUB | BPF_MUL | BPF_DIV | BPF_OR | BPF_AND | BPF_LSH | BPF_RSH
            | BPF_MOD | BPF_XOR | BPF_ARSH => (d | if register_source { s } else { 0 }, d),
            _ => (ALL, 0),
        },
        BPF_JMP | BPF_JMP32 => match op.code {
            c if c == BPF_JMP | BPF_JA => (0, 0),
            c if c == BPF_JMP | BPF_EXIT => (if in_main { 1 } else { RETURNED }, 0),
            // It writes r0 itself.
            c if c == code::EXIT_CONST => (if in_main { 0 } else { ARGS }, 1),
            c if c == BPF_JMP | BPF_CALL || c == code::CALL_LOOKUP => (ARGS, 1),
            c if c == code::LOCAL_CALL => (ALL, 1),
            _ => match operation {
                BPF_JEQ | BPF_JGT | BPF_JGE | BPF_JSET | BPF_JNE | BPF_JSGT | BPF_JSGE
                | BPF_JLT | BPF_JLE | BPF_JSLT | BPF_JSLE => {
                    (d | if register_source { s } else { 0 }, 0)
                }
                _ => (ALL, 0),
            },
        },
        BPF_LDX => match op.code & 0xe0 {
            BPF_MEM | BPF_MEMSX => (s, d),
            m if m == code::LDX_CTX & 0xe0 => (s, d),
            m if m == code::LDX_FIXED & 0xe0 => (0, d),
            _ => (ALL, 0),
        },
        BPF_STX => match op.code & 0xe0 {
            BPF_MEM => (d | s, 0),
            m if m == code::STX_FIXED & 0xe0 => (s, 0),
            _ => (ALL, 0),
        },
        BPF_ST => match op.code & 0xe0 {
            BPF_MEM => (d, 0),
            m if m == code::ST_FIXED & 0xe0 => (0, 0),
            _ => (ALL, 0),
        },
        BPF_LD => match op.code & 0xe0 {
            code::LDX_STACK => (fp, d),
            code::STX_STACK => (fp | s, 0),
            code::ST_STACK => (fp, 0),
            // The second slot of an ld_imm64 and the fault ops: nothing falls into or runs on
            // from them that this run shows.
            _ if op.code == code::FAULT => (0, 0),
            _ => (ALL, 0),
        },
        _ => (ALL, 0),
    }
}

/// For each slot, the registers live on entry to it: read on some path from there before
/// being written. `ops` are the decoded slots before fusion, `functions` the sorted entries
/// of the program's functions (slot 0 first).
pub(super) fn live_in(ops: &[Op], functions: &[usize]) -> Vec<u16> {
    // The main function ends where the next one starts; a local call to slot 0 makes it a
    // subprogram too.
    let main_end = functions
        .iter()
        .copied()
        .find(|&f| f > 0)
        .unwrap_or(ops.len());
    let main_is_called = ops
        .iter()
        .any(|op| op.code == code::LOCAL_CALL && op.off == 0);
    let effects: Vec<(u16, u16)> = ops
        .iter()
        .enumerate()
        .map(|(pc, op)| effect(op, pc < main_end && !main_is_called))
        .collect();
    let mut live = vec![0u16; ops.len()];
    // Backward passes until nothing changes: each pass can only add registers, so this ends
    // (at most 16 additions per slot).
    loop {
        let mut changed = false;
        for pc in (0..ops.len()).rev() {
            let op = &ops[pc];
            let at = |slot: usize| live.get(slot).copied().unwrap_or(0);
            let mut out = 0;
            if is_call(op) {
                out |= at(pc + 1);
            } else if let Some(next) = fall_through(op, pc) {
                out |= at(next);
            }
            if let Some(target) = jump_target(op) {
                out |= at(target);
            }
            let (uses, defs) = effects[pc];
            let new = uses | (out & !defs);
            if new != live[pc] {
                live[pc] = new;
                changed = true;
            }
        }
        if !changed {
            return live;
        }
    }
}
