//! Register values known at decoding: accesses through constant addresses proven against
//! memory that lives as long as the program, and the folding of constant data
//! ([`super::fold`]).
//!
//! Global data (`.data`, `.bss`, `.rodata`) and direct array values are reached through an
//! `ld_imm64` of an absolute address (relocated by the loader). Within a straight-line run the
//! register keeps that value until it is written, so the address of a load or store through it
//! is known before the program runs. When that address lies inside a fixed region (array map
//! storage, registered for every checked run of the program) with the right permission, the
//! access is checked once here instead of on every execution: it becomes a `*_FIXED` op that
//! reads or writes the address directly. Everything else keeps its run-time check.
//!
//! The same walk folds what constant regions (frozen `.rodata`) make known: a load from one
//! yields a known value, register operands of known value become immediates, and jumps on
//! known values are decided ([`super::fold`]). A `ja` to a tail that only puts a value known
//! there in r0 and exits (a verdict loaded from `.rodata`, a `mov r0, k`) becomes that exit
//! ([`code::EXIT_CONST`]), as tail duplication would make it.
//!
//! The same walk tracks which registers still hold the pointer the run started with in r1
//! (the context): a load through one at a non-negative offset becomes an `LDX_CTX` op. The
//! loop reads those directly only when the run started at slot 0 with r1 and the furthest
//! byte any of them reads inside the run's context region (checked at the start and after
//! every helper call), and checks them as any load otherwise; so the decoder's part is only
//! that the register holds that r1, which the rules below for known values give.
//!
//! Soundness rests on three facts. The value is exact: only `ld_imm64`, `mov64 k`, `mov64 x`
//! of a known register, `add64 k` on one (or `add64 x` of a known register, made an
//! immediate) and a load from a constant region make a register known, every other write
//! forgets it, and knowledge reaches a slot only along its one way in: falling through from
//! the slot before, or a forward jump that is the only way to it (jumps write no register, so
//! the state is the one the jump saw). Slots reached several ways, function entries, return
//! addresses and backward-jump targets start with nothing known. A way is dropped only when
//! it is never taken: the side of a decided jump it does not take, the target of a `ja` that
//! became an exit, and the ways out of a slot left with no way in (entries are never
//! dropped, so such a slot is dead). The region outlives the program: the maps whose storage
//! the regions are own the program's relocated addresses too (the JIT embeds the same
//! addresses), and a program only ever runs with its own maps. And a constant region never
//! changes: a frozen map refuses every user write, and its region is not writable by
//! programs (loads, stores and helpers all check the permission).

use super::decode::code;
use super::decode::Op;
use super::fold;
use crate::vm::insn::*;
use crate::vm::memory::{Access, Region};

/// One way control reaches a slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    /// Falling through from the slot before (or the `ld_imm64` before).
    FallThrough,
    /// The jump at this slot, which lies before it (a forward jump, so its state is known when
    /// the target is reached in program order).
    Jump(usize),
    /// From where the state is unknown: function entries, the slot after a call (the return
    /// address), the target of a backward jump.
    Entry,
    /// The start of a run at slot 0, where only r1 is known: the run's initial r1 (see
    /// [`prove`]). A call to slot 0, as a function, is an [`Way::Entry`] besides.
    Start,
}

/// The slot control goes to from `op` at `pc` when it does not jump, if it can.
pub(super) fn fall_through(op: &Op, pc: usize) -> Option<usize> {
    let is_jump_class = matches!(op.code & 0x07, BPF_JMP | BPF_JMP32);
    let ends =
        (is_jump_class && matches!(op.code & 0xf0, BPF_EXIT | BPF_JA)) || op.code == code::FAULT;
    (!ends).then(|| next_slot(op, pc))
}

/// The slot after `op` at `pc` in program order (past both slots of an `ld_imm64`).
fn next_slot(op: &Op, pc: usize) -> usize {
    pc + if op.code == BPF_LD | BPF_IMM | BPF_DW {
        2
    } else {
        1
    }
}

/// Whether `op` is a local or helper call (control comes back to the slot after it).
pub(super) fn is_call(op: &Op) -> bool {
    matches!(op.code, code::LOCAL_CALL | code::CALL_LOOKUP)
        || (matches!(op.code & 0x07, BPF_JMP | BPF_JMP32) && op.code & 0xf0 == BPF_CALL)
}

/// The slot `op` jumps to, if it is a jump (conditional or `ja`; not a call or exit).
pub(super) fn jump_target(op: &Op) -> Option<usize> {
    let is_jump_class = matches!(op.code & 0x07, BPF_JMP | BPF_JMP32);
    (is_jump_class && !is_call(op) && op.code & 0xf0 != BPF_EXIT)
        .then(|| usize::try_from(op.off).unwrap_or(usize::MAX))
}

/// Every way into each slot (see [`Way`]); the second slot of an `ld_imm64` has none.
fn ways_in(ops: &[Op], functions: &[usize]) -> Vec<Vec<Way>> {
    let mut ways = vec![Vec::new(); ops.len()];
    let add = |ways: &mut Vec<Vec<Way>>, at: usize, way: Way| {
        if let Some(w) = ways.get_mut(at) {
            w.push(way);
        }
    };
    add(&mut ways, 0, Way::Start);
    // `functions` lists slot 0 as the main function; calls to it are added below.
    for &f in functions.iter().filter(|&&f| f != 0) {
        add(&mut ways, f, Way::Entry);
    }
    let mut pc = 0;
    while pc < ops.len() {
        let op = &ops[pc];
        if is_call(op) {
            // Returns arrive here from the callee or the helper.
            add(&mut ways, pc + 1, Way::Entry);
            if op.code == code::LOCAL_CALL {
                if let Ok(t) = usize::try_from(op.off) {
                    add(&mut ways, t, Way::Entry);
                }
            }
        } else if let Some(f) = fall_through(op, pc) {
            add(&mut ways, f, Way::FallThrough);
        }
        if let Some(target) = jump_target(op) {
            let way = if target > pc {
                Way::Jump(pc)
            } else {
                Way::Entry
            };
            add(&mut ways, target, way);
        }
        pc = next_slot(op, pc);
    }
    ways
}

/// Removes one `way` into slot `at`, if it is there: a way that folding proved never taken.
fn remove_way(ways: &mut [Vec<Way>], at: usize, way: Way) {
    if let Some(w) = ways.get_mut(at) {
        if let Some(i) = w.iter().position(|&x| x == way) {
            w.swap_remove(i);
        }
    }
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
///
/// Loads through the pointer the run starts with in r1 (the context), at a non-negative
/// offset, become [`code::LDX_CTX`] ops; the result is how far from that pointer they read
/// (0 when there are none). `ctx` tracks the registers known to hold it, as `known` tracks
/// values: set at slot 0 when that is its only way in (the run's start), copied by `mov64 x`,
/// forgotten by every other write.
pub(super) unsafe fn prove(ops: &mut [Op], functions: &[usize], regions: &[Region]) -> u64 {
    if ops.is_empty() {
        return 0;
    }
    let mut ways = ways_in(ops, functions);
    // The state each forward jump leaves for its target.
    let mut at_jump: std::collections::HashMap<usize, ([Option<u64>; 16], u16)> =
        Default::default();
    let mut known: [Option<u64>; 16] = [None; 16];
    // Bit `r`: register `r` holds the run's initial r1.
    let mut ctx: u16 = 0;
    let mut ctx_extent = 0u64;
    let mut pc = 0;
    while pc < ops.len() {
        (known, ctx) = match ways[pc].as_slice() {
            [Way::FallThrough] => (known, ctx),
            [Way::Jump(from)] => at_jump.remove(from).unwrap_or(([None; 16], 0)),
            [Way::Start] => ([None; 16], 1 << 1),
            _ => ([None; 16], 0),
        };
        if ways[pc].is_empty() {
            // Dead code (or the program's decisions made it so): its ways out are not ways
            // in for the slots they reach.
            if let Some(f) = fall_through(&ops[pc], pc) {
                remove_way(&mut ways, f, Way::FallThrough);
            }
            if let Some(t) = jump_target(&ops[pc]) {
                remove_way(&mut ways, t, Way::Jump(pc));
            }
            pc = next_slot(&ops[pc], pc);
            continue;
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
        if let Some(decided) = known[dst].and_then(|a| fold::decided_jump(&ops[pc], pc, a)) {
            // The way the jump no longer takes is gone.
            let target = jump_target(&ops[pc]).unwrap_or(usize::MAX);
            if fold::is_no_op(&decided, pc) {
                remove_way(&mut ways, target, Way::Jump(pc));
            } else {
                remove_way(&mut ways, pc + 1, Way::FallThrough);
            }
            ops[pc] = decided;
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
        let dst_bit = 1u16 << dst;
        match op.code {
            c if c == BPF_LD | BPF_IMM | BPF_DW => {
                known[dst] = Some(op.imm);
                ctx &= !dst_bit;
                // The second slot is a fault op; nothing falls into it.
                pc += 2;
                continue;
            }
            c if c == BPF_ALU64 | BPF_MOV | BPF_K => {
                known[dst] = Some(op.imm);
                ctx &= !dst_bit;
            }
            c if c == BPF_ALU64 | BPF_MOV | BPF_X => {
                known[dst] = known[src];
                ctx = ctx & !dst_bit | u16::from(ctx & 1 << src != 0) << dst;
            }
            c if c == BPF_ALU64 | BPF_ADD | BPF_K => {
                known[dst] = known[dst].map(|v| v.wrapping_add(op.imm));
                ctx &= !dst_bit;
            }
            _ if class == BPF_LDX && mode == BPF_MEM && ctx & 1 << src != 0 && op.off >= 0 => {
                ops[pc].code = code::LDX_CTX | (op.code & 0x18);
                ctx_extent = ctx_extent.max(op.off as u64 + len);
                known[dst] = None;
                ctx &= !dst_bit;
            }
            _ if class == BPF_LDX && mode == BPF_MEM => {
                ctx &= !dst_bit;
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
                ctx &= !(1 << src | 1);
            }
            _ if matches!(class, BPF_ST | BPF_STX) => {}
            // The decoder's stack stores write no register; its stack loads, ALU ops and
            // other loads write their destination only.
            c if class == BPF_LD && matches!(c & 0xe0, code::STX_STACK | code::ST_STACK) => {}
            c if (class == BPF_LD && c & 0xe0 == code::LDX_STACK)
                || matches!(class, BPF_ALU | BPF_ALU64 | BPF_LDX) =>
            {
                known[dst] = None;
                ctx &= !dst_bit;
            }
            // Conditional jumps, `ja` and `exit` write nothing: the state flows on to the
            // fall-through and, kept here, to a target that only this jump reaches. A `ja`
            // to a tail that puts a known value in r0 and exits is that exit: the tail no
            // longer comes in this way.
            _ if matches!(class, BPF_JMP | BPF_JMP32) && op.code & 0xf0 != BPF_CALL => {
                // SAFETY: the regions are readable memory (contract).
                if let Some(value) = unsafe { constant_exit(&op, ops, &known, regions) } {
                    ops[pc] = Op {
                        code: code::EXIT_CONST,
                        dst: 0,
                        src: 0,
                        off: 0,
                        imm: value,
                        // The tail's two slots.
                        aux: 2,
                    };
                    remove_way(&mut ways, op.off as usize, Way::Jump(pc));
                } else if jump_target(&op).is_some_and(|t| t > pc) {
                    at_jump.insert(pc, (known, ctx));
                }
            }
            // Everything else (calls, `movsx`, faults) may write r0..r5 or its destination:
            // forget all of it.
            _ => {
                known = [None; 16];
                ctx = 0;
            }
        }
        pc += 1;
    }
    ctx_extent
}

/// The value r0 holds at the `exit` of the tail a `ja` (`op`) goes to, when the tail only
/// writes r0 with a value known from `known` (the state at the jump) and exits: `mov r0, k`
/// (either width), or a load into r0 from constant memory through a register of known value
/// (or proven there already). `None` for any other op or tail.
///
/// # Safety
/// Every region in `regions` is memory valid for reads.
unsafe fn constant_exit(
    op: &Op,
    ops: &[Op],
    known: &[Option<u64>; 16],
    regions: &[Region],
) -> Option<u64> {
    if op.code != BPF_JMP | BPF_JA {
        return None;
    }
    let target = usize::try_from(op.off).ok()?;
    let (set, exit) = (ops.get(target)?, ops.get(target + 1)?);
    // A real `exit` (the fused forms come later).
    if exit.code != BPF_JMP | BPF_EXIT || set.dst & 0x0f != 0 {
        return None;
    }
    if let Some(value) = fold::moved_constant(set) {
        return Some(value);
    }
    let len = mem_width(set.code) as u64;
    let address = match set.code {
        c if c & !0x18 == BPF_LDX | BPF_MEM => {
            known[usize::from(set.src & 0x0f)]?.wrapping_add(set.off as i64 as u64)
        }
        c if c & !0x18 == code::LDX_FIXED => set.imm,
        _ => return None,
    };
    // SAFETY: forwarded contract; `constant_load` reads only inside a constant region.
    unsafe { fold::constant_load(regions, address, len) }
}
