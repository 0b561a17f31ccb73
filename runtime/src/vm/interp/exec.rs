//! The dispatch loop: one `match` on the (pre-decoded) opcode byte per instruction.

use std::mem::MaybeUninit;

use super::decode::code::*;
use super::decode::{flag, set_constant, Op};
use super::inline::{self, KnownHandle};
use super::mem::{self, Windows, ORDER};
use super::Machine;
use crate::vm::env::RunEnv;
use crate::vm::error::VmError;
use crate::vm::insn::*;

/// The codes the loop has no arm for, as a pattern. Decoding never lets one through: it makes
/// each a fault ([`is_hole`]). With them the loop's `match` covers every byte value without
/// a default arm, which the compiler checks (there is no `_`): a code is an arm or listed
/// here. (A default arm costs a test and a branch on every dispatch: LLVM keeps a flag for
/// it.) A code both listed and given an arm would only be faulted by decoding, never reach
/// the unreachable arm.
macro_rules! holes {
    () => {
        0x01..=0x03 | 0x06 | 0x09..=0x0b | 0x0d | 0x11..=0x13 | 0x19..=0x1b |
        0x22..=0x23 | 0x2a..=0x2b | 0x32..=0x33 | 0x3a..=0x3b | 0x42..=0x43 | 0x49..=0x4b |
        0x51..=0x53 | 0x59..=0x5b | 0x82..=0x83 | 0x86 | 0x8a..=0x8b | 0x8d..=0x8f | 0x92..=0x93 |
        0x99..=0x9b | 0xc1..=0xc2 | 0xc9..=0xcb | 0xd1..=0xd3 | 0xd9..=0xda |
        0xdf | 0xea | 0xf2
    };
}

/// Whether the loop has no arm for `code` (see [`holes`]).
pub(super) fn is_hole(code: u8) -> bool {
    matches!(code, holes!())
}

/// Declares opcode constants usable as `match` patterns.
macro_rules! opcodes {
    ($($name:ident = $value:expr;)*) => { $(const $name: u8 = $value;)* };
}

opcodes! {
    ADD64_K = BPF_ALU64 | BPF_ADD | BPF_K;   ADD64_X = BPF_ALU64 | BPF_ADD | BPF_X;
    SUB64_K = BPF_ALU64 | BPF_SUB | BPF_K;   SUB64_X = BPF_ALU64 | BPF_SUB | BPF_X;
    MUL64_K = BPF_ALU64 | BPF_MUL | BPF_K;   MUL64_X = BPF_ALU64 | BPF_MUL | BPF_X;
    DIV64_K = BPF_ALU64 | BPF_DIV | BPF_K;   DIV64_X = BPF_ALU64 | BPF_DIV | BPF_X;
    OR64_K = BPF_ALU64 | BPF_OR | BPF_K;     OR64_X = BPF_ALU64 | BPF_OR | BPF_X;
    AND64_K = BPF_ALU64 | BPF_AND | BPF_K;   AND64_X = BPF_ALU64 | BPF_AND | BPF_X;
    LSH64_K = BPF_ALU64 | BPF_LSH | BPF_K;   LSH64_X = BPF_ALU64 | BPF_LSH | BPF_X;
    RSH64_K = BPF_ALU64 | BPF_RSH | BPF_K;   RSH64_X = BPF_ALU64 | BPF_RSH | BPF_X;
    NEG64 = BPF_ALU64 | BPF_NEG | BPF_K;
    MOD64_K = BPF_ALU64 | BPF_MOD | BPF_K;   MOD64_X = BPF_ALU64 | BPF_MOD | BPF_X;
    XOR64_K = BPF_ALU64 | BPF_XOR | BPF_K;   XOR64_X = BPF_ALU64 | BPF_XOR | BPF_X;
    MOV64_K = BPF_ALU64 | BPF_MOV | BPF_K;   MOV64_X = BPF_ALU64 | BPF_MOV | BPF_X;
    ARSH64_K = BPF_ALU64 | BPF_ARSH | BPF_K; ARSH64_X = BPF_ALU64 | BPF_ARSH | BPF_X;
    BSWAP = BPF_ALU64 | BPF_END;

    ADD32_K = BPF_ALU | BPF_ADD | BPF_K;     ADD32_X = BPF_ALU | BPF_ADD | BPF_X;
    SUB32_K = BPF_ALU | BPF_SUB | BPF_K;     SUB32_X = BPF_ALU | BPF_SUB | BPF_X;
    MUL32_K = BPF_ALU | BPF_MUL | BPF_K;     MUL32_X = BPF_ALU | BPF_MUL | BPF_X;
    DIV32_K = BPF_ALU | BPF_DIV | BPF_K;     DIV32_X = BPF_ALU | BPF_DIV | BPF_X;
    OR32_K = BPF_ALU | BPF_OR | BPF_K;       OR32_X = BPF_ALU | BPF_OR | BPF_X;
    AND32_K = BPF_ALU | BPF_AND | BPF_K;     AND32_X = BPF_ALU | BPF_AND | BPF_X;
    LSH32_K = BPF_ALU | BPF_LSH | BPF_K;     LSH32_X = BPF_ALU | BPF_LSH | BPF_X;
    RSH32_K = BPF_ALU | BPF_RSH | BPF_K;     RSH32_X = BPF_ALU | BPF_RSH | BPF_X;
    NEG32 = BPF_ALU | BPF_NEG | BPF_K;
    MOD32_K = BPF_ALU | BPF_MOD | BPF_K;     MOD32_X = BPF_ALU | BPF_MOD | BPF_X;
    XOR32_K = BPF_ALU | BPF_XOR | BPF_K;     XOR32_X = BPF_ALU | BPF_XOR | BPF_X;
    MOV32_K = BPF_ALU | BPF_MOV | BPF_K;     MOV32_X = BPF_ALU | BPF_MOV | BPF_X;
    ARSH32_K = BPF_ALU | BPF_ARSH | BPF_K;   ARSH32_X = BPF_ALU | BPF_ARSH | BPF_X;
    END_LE = BPF_ALU | BPF_END | BPF_TO_LE;  END_BE = BPF_ALU | BPF_END | BPF_TO_BE;

    JA = BPF_JMP | BPF_JA;
    JEQ_K = BPF_JMP | BPF_JEQ | BPF_K;       JEQ_X = BPF_JMP | BPF_JEQ | BPF_X;
    JGT_K = BPF_JMP | BPF_JGT | BPF_K;       JGT_X = BPF_JMP | BPF_JGT | BPF_X;
    JGE_K = BPF_JMP | BPF_JGE | BPF_K;       JGE_X = BPF_JMP | BPF_JGE | BPF_X;
    JSET_K = BPF_JMP | BPF_JSET | BPF_K;     JSET_X = BPF_JMP | BPF_JSET | BPF_X;
    JNE_K = BPF_JMP | BPF_JNE | BPF_K;       JNE_X = BPF_JMP | BPF_JNE | BPF_X;
    JSGT_K = BPF_JMP | BPF_JSGT | BPF_K;     JSGT_X = BPF_JMP | BPF_JSGT | BPF_X;
    JSGE_K = BPF_JMP | BPF_JSGE | BPF_K;     JSGE_X = BPF_JMP | BPF_JSGE | BPF_X;
    JLT_K = BPF_JMP | BPF_JLT | BPF_K;       JLT_X = BPF_JMP | BPF_JLT | BPF_X;
    JLE_K = BPF_JMP | BPF_JLE | BPF_K;       JLE_X = BPF_JMP | BPF_JLE | BPF_X;
    JSLT_K = BPF_JMP | BPF_JSLT | BPF_K;     JSLT_X = BPF_JMP | BPF_JSLT | BPF_X;
    JSLE_K = BPF_JMP | BPF_JSLE | BPF_K;     JSLE_X = BPF_JMP | BPF_JSLE | BPF_X;
    CALL = BPF_JMP | BPF_CALL;               EXIT = BPF_JMP | BPF_EXIT;

    JEQ32_K = BPF_JMP32 | BPF_JEQ | BPF_K;   JEQ32_X = BPF_JMP32 | BPF_JEQ | BPF_X;
    JGT32_K = BPF_JMP32 | BPF_JGT | BPF_K;   JGT32_X = BPF_JMP32 | BPF_JGT | BPF_X;
    JGE32_K = BPF_JMP32 | BPF_JGE | BPF_K;   JGE32_X = BPF_JMP32 | BPF_JGE | BPF_X;
    JSET32_K = BPF_JMP32 | BPF_JSET | BPF_K; JSET32_X = BPF_JMP32 | BPF_JSET | BPF_X;
    JNE32_K = BPF_JMP32 | BPF_JNE | BPF_K;   JNE32_X = BPF_JMP32 | BPF_JNE | BPF_X;
    JSGT32_K = BPF_JMP32 | BPF_JSGT | BPF_K; JSGT32_X = BPF_JMP32 | BPF_JSGT | BPF_X;
    JSGE32_K = BPF_JMP32 | BPF_JSGE | BPF_K; JSGE32_X = BPF_JMP32 | BPF_JSGE | BPF_X;
    JLT32_K = BPF_JMP32 | BPF_JLT | BPF_K;   JLT32_X = BPF_JMP32 | BPF_JLT | BPF_X;
    JLE32_K = BPF_JMP32 | BPF_JLE | BPF_K;   JLE32_X = BPF_JMP32 | BPF_JLE | BPF_X;
    JSLT32_K = BPF_JMP32 | BPF_JSLT | BPF_K; JSLT32_X = BPF_JMP32 | BPF_JSLT | BPF_X;
    JSLE32_K = BPF_JMP32 | BPF_JSLE | BPF_K; JSLE32_X = BPF_JMP32 | BPF_JSLE | BPF_X;

    LD_IMM64 = BPF_LD | BPF_IMM | BPF_DW;
    LDX_B = BPF_LDX | BPF_MEM | BPF_B;       LDX_H = BPF_LDX | BPF_MEM | BPF_H;
    LDX_W = BPF_LDX | BPF_MEM | BPF_W;       LDX_DW = BPF_LDX | BPF_MEM | BPF_DW;
    LDSX_B = BPF_LDX | BPF_MEMSX | BPF_B;    LDSX_H = BPF_LDX | BPF_MEMSX | BPF_H;
    LDSX_W = BPF_LDX | BPF_MEMSX | BPF_W;
    ST_B = BPF_ST | BPF_MEM | BPF_B;         ST_H = BPF_ST | BPF_MEM | BPF_H;
    ST_W = BPF_ST | BPF_MEM | BPF_W;         ST_DW = BPF_ST | BPF_MEM | BPF_DW;
    STX_B = BPF_STX | BPF_MEM | BPF_B;       STX_H = BPF_STX | BPF_MEM | BPF_H;
    STX_W = BPF_STX | BPF_MEM | BPF_W;       STX_DW = BPF_STX | BPF_MEM | BPF_DW;
    ATOMIC_W = BPF_STX | BPF_ATOMIC | BPF_W; ATOMIC_DW = BPF_STX | BPF_ATOMIC | BPF_DW;

    LDX_FIXED_B = LDX_FIXED | BPF_B;         LDX_FIXED_H = LDX_FIXED | BPF_H;
    LDX_FIXED_W = LDX_FIXED | BPF_W;         LDX_FIXED_DW = LDX_FIXED | BPF_DW;
    STX_FIXED_B = STX_FIXED | BPF_B;         STX_FIXED_H = STX_FIXED | BPF_H;
    STX_FIXED_W = STX_FIXED | BPF_W;         STX_FIXED_DW = STX_FIXED | BPF_DW;
    ST_FIXED_B = ST_FIXED | BPF_B;           ST_FIXED_H = ST_FIXED | BPF_H;
    ST_FIXED_W = ST_FIXED | BPF_W;           ST_FIXED_DW = ST_FIXED | BPF_DW;
    LDX_ABS_FIXED_B = LDX_ABS_FIXED | BPF_B; LDX_ABS_FIXED_H = LDX_ABS_FIXED | BPF_H;
    LDX_ABS_FIXED_W = LDX_ABS_FIXED | BPF_W; LDX_ABS_FIXED_DW = LDX_ABS_FIXED | BPF_DW;
    STX_ABS_FIXED_B = STX_ABS_FIXED | BPF_B; STX_ABS_FIXED_H = STX_ABS_FIXED | BPF_H;
    STX_ABS_FIXED_W = STX_ABS_FIXED | BPF_W; STX_ABS_FIXED_DW = STX_ABS_FIXED | BPF_DW;
    INC_FIXED_W = INC_FIXED | BPF_W;         INC_FIXED_DW = INC_FIXED | BPF_DW;
    COPY_W = COPY_MEM | BPF_W;               COPY_H = COPY_MEM | BPF_H;
    COPY_B = COPY_MEM | BPF_B;               COPY_DW = COPY_MEM | BPF_DW;
    LDX_CTX_B = LDX_CTX | BPF_B;             LDX_CTX_H = LDX_CTX | BPF_H;
    LDX_CTX_W = LDX_CTX | BPF_W;             LDX_CTX_DW = LDX_CTX | BPF_DW;
}

// Atomic operation selectors (the `imm` of BPF_ATOMIC).
const AT_ADD: i32 = BPF_ADD as i32;
const AT_OR: i32 = BPF_OR as i32;
const AT_AND: i32 = BPF_AND as i32;
const AT_XOR: i32 = BPF_XOR as i32;
const AT_FETCH_ADD: i32 = AT_ADD | BPF_FETCH;
const AT_FETCH_OR: i32 = AT_OR | BPF_FETCH;
const AT_FETCH_AND: i32 = AT_AND | BPF_FETCH;
const AT_FETCH_XOR: i32 = AT_XOR | BPF_FETCH;

/// What a bpf-to-bpf call saves and an `exit` of the callee restores.
#[derive(Clone, Copy, Default)]
struct Frame {
    /// Instruction to continue at in the caller.
    ret: usize,
    /// Caller's r6..r9.
    saved: [u64; 4],
    /// Caller's r10.
    fp: u64,
}

/// The r10 of frame `d` (0 = outermost).
#[inline(always)]
fn frame_top(stack_top: u64, d: usize) -> u64 {
    stack_top - (d * STACK_SIZE) as u64
}

#[inline(always)]
fn udiv64(a: u64, b: u64) -> u64 {
    a.checked_div(b).unwrap_or(0)
}
#[inline(always)]
fn umod64(a: u64, b: u64) -> u64 {
    a.checked_rem(b).unwrap_or(a)
}
#[inline(always)]
fn sdiv64(a: u64, b: u64) -> u64 {
    // wrapping_div: INT_MIN / -1 = INT_MIN, as the kernel (which rewrites it to a negation).
    if b == 0 {
        0
    } else {
        (a as i64).wrapping_div(b as i64) as u64
    }
}
#[inline(always)]
fn smod64(a: u64, b: u64) -> u64 {
    // wrapping_rem: INT_MIN % -1 = 0, as the kernel.
    if b == 0 {
        a
    } else {
        (a as i64).wrapping_rem(b as i64) as u64
    }
}
#[inline(always)]
fn udiv32(a: u32, b: u32) -> u32 {
    a.checked_div(b).unwrap_or(0)
}
#[inline(always)]
fn umod32(a: u32, b: u32) -> u32 {
    a.checked_rem(b).unwrap_or(a)
}
#[inline(always)]
fn sdiv32(a: u32, b: u32) -> u32 {
    if b == 0 {
        0
    } else {
        (a as i32).wrapping_div(b as i32) as u32
    }
}
#[inline(always)]
fn smod32(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        (a as i32).wrapping_rem(b as i32) as u32
    }
}

/// Runs the function at `entry` in frame `depth` with r1..r5 = `args` until it returns. The
/// error is boxed (see [`dispatch`]); callers unbox it in their own return expression.
///
/// # Safety
/// `m` and `env` point to the live `Machine` and `RunEnv` of a run in progress; nothing else
/// holds a reference to either while this runs (helpers receive `env` as a raw pointer). Every
/// region in `env.memory` is mapped memory for the whole run.
pub(super) unsafe fn execute(
    m: *mut Machine<'_>,
    env: *mut RunEnv,
    entry: usize,
    args: [u64; 5],
    depth: usize,
) -> Result<u64, Box<VmError>> {
    // SAFETY: `m` is live (contract); plain reads.
    let mut remaining = unsafe { (*m).remaining };
    // SAFETY: forwarded contract.
    let result = unsafe { dispatch(m, env, entry, args, depth, &mut remaining) };
    // SAFETY: `m` is live (contract); the budget is shared with the caller of a callback.
    unsafe { (*m).remaining = remaining };
    result
}

/// The fault of a run that starts outside the program.
#[cold]
fn bad_entry(entry: usize) -> VmError {
    VmError::Unsupported {
        insn: entry,
        what: "execution left the program".into(),
    }
}

/// The interpreter loop proper (see [`execute`]). The error is boxed so that the result
/// comes back in two registers: a 48-byte `Result` would be written to memory field by field
/// and read back as vectors by the caller, a store-forwarding stall on every run.
///
/// # Safety
/// As [`execute`].
#[allow(clippy::too_many_lines)]
unsafe fn dispatch(
    m: *mut Machine<'_>,
    env: *mut RunEnv,
    entry: usize,
    args: [u64; 5],
    depth: usize,
    remaining: &mut u64,
) -> Result<u64, Box<VmError>> {
    // SAFETY: `m` is live (contract); `prog` is a shared borrow that outlives the run.
    let (prog, stack_top, budget) = unsafe { ((*m).prog, (*m).stack_top, (*m).budget) };
    let decoded = &*prog.decoded;
    let ops = &*decoded.ops;
    // Every later pc is a decoded jump target, a return address or the op after a
    // non-terminal one, all within `ops` (whose last op is the fault sentinel); only the
    // entry comes from outside.
    if entry >= ops.len() {
        return Err(Box::new(bad_entry(entry)));
    }
    // Sixteen slots so that the 4-bit register fields index without a bounds check or panic,
    // whatever the decoder let through; r11..r15 are never read by valid code.
    let mut reg = [0u64; 16];
    // One register at a time, not one vector copy: the caller has just stored `args` word by
    // word, and a wide load spanning two of those stores cannot be forwarded from them (a
    // stall of a dozen cycles on every run).
    for (r, a) in reg[1..6].iter_mut().zip(args.iter()) {
        // SAFETY: `a` points into `args`, a live local; volatile only keeps the loads apart.
        *r = unsafe { std::ptr::read_volatile(a) };
    }
    reg[10] = frame_top(stack_top, depth);
    // Written by every call before the matching exit reads it (slots below `nframes`), so
    // there is nothing to zero: a run that makes no calls never touches them.
    let mut frames = [MaybeUninit::<Frame>::uninit(); MAX_CALL_FRAMES];
    let mut nframes = 0usize;
    // SAFETY: `env` is live (contract); the stack is the interpreter's, live for the run.
    let mut windows = unsafe {
        Windows::new(
            env,
            stack_top - (MAX_CALL_FRAMES * STACK_SIZE) as u64,
            (MAX_CALL_FRAMES * STACK_SIZE) as u64,
        )
    };
    // Whether the `LDX_CTX` ops may read directly: this run started at slot 0 (where the
    // decoder's knowledge of r1 begins) with r1 and the extent they read inside the context
    // region. Taken again whenever the windows are (after helper calls).
    let ctx_covered = |windows: &Windows| {
        entry == 0 && decoded.ctx_extent != 0 && windows.context_covers(args[0], decoded.ctx_extent)
    };
    let mut ctx_ok = ctx_covered(&windows);
    // Forgets every window (after anything that may have changed the run's regions) and
    // takes `ctx_ok` again with them.
    macro_rules! clear_windows {
        () => {{
            // Also expanded inside `unsafe` blocks.
            #[allow(unused_unsafe)]
            // SAFETY: `env` is live, and nothing that may change its regions is running.
            unsafe {
                windows.clear(env)
            };
            ctx_ok = ctx_covered(&windows);
        }};
    }
    let mut known = KnownHandle::default();
    // The op to run next, as a pointer rather than a slot number: the fetch is then one load
    // (a slot number costs a shift and an add on every dispatch, ops being 16 bytes). Slot
    // numbers (`cur`, jump targets, `block`) are computed where a transfer or a fault needs
    // them.
    let base = ops.as_ptr();
    // SAFETY: `entry < ops.len()` (checked above).
    let mut ip = unsafe { base.add(entry) };
    // First slot of the straight-line run being executed. The budget is charged at every
    // taken jump, call and exit, for the slots since this one (all run exactly once in
    // between; a jump that falls through continues the run, and every loop takes a jump):
    // no per-instruction counting, and a run stops at the first control transfer past its
    // budget (at most one straight-line run late).
    let mut block = entry;

    loop {
        // SAFETY: `ip` points into `ops`: the entry was checked above, and every op leaves
        // `ip` at a decoded jump target, a return address (a call's slot + 1) or the slot
        // after itself (ld_imm64 after its second slot, a superinstruction after the last slot
        // of its sequence, up to + 15: never past the end, the slots exist), all at most
        // `ops.len() - 1`, the sentinel, which returns.
        let op: &Op = unsafe { &*ip };
        let here = ip;
        // SAFETY: as above; at worst one past the sentinel, which is never read.
        ip = unsafe { ip.add(1) };
        // This op's slot number, computed only where a transfer or a fault uses it (bound
        // once here, the compiler would compute it on every dispatch).
        macro_rules! cur {
            () => {{
                // Also expanded inside `unsafe` blocks.
                #[allow(unused_unsafe)]
                // SAFETY: `here` and `base` point into the same slice.
                let slot = unsafe { here.offset_from(base) } as usize;
                slot
            }};
        }
        // Continues at the slot `$n` after this op's own (a superinstruction's successor).
        macro_rules! resume {
            ($n:expr) => {{
                let n: usize = $n;
                // SAFETY: the decoder fused only sequences whose slots all exist, and the
                // slot after the last is at most the sentinel's (see the fetch above).
                ip = unsafe { here.add(n) };
            }};
        }
        // Operand fields are read where an arm uses them, not up front: read here, every
        // dispatch would load and mask all of them (most ops need two or three).
        macro_rules! dst {
            () => {
                usize::from(op.dst & 0x0f)
            };
        }
        macro_rules! src {
            () => {
                usize::from(op.src & 0x0f)
            };
        }
        macro_rules! k64 {
            () => {
                op.imm
            };
        }
        macro_rules! k32 {
            () => {
                op.imm as u32
            };
        }
        macro_rules! signed {
            () => {
                op.off == 1
            };
        }
        // Charges the run from `block` to slot `last`.
        macro_rules! charge {
            ($last:expr) => {{
                let used = ($last + 1 - block) as u64;
                if *remaining < used {
                    return Err(Box::new(VmError::BudgetExhausted { insns: budget }));
                }
                *remaining -= used;
            }};
        }
        // Charges the run up to `last` and starts a new one at `next`.
        macro_rules! transfer {
            ($last:expr, $next:expr) => {{
                charge!($last);
                let next: usize = $next;
                // SAFETY: every transfer's target is a decoded jump target or return address,
                // inside `ops` (see the loop's fetch).
                ip = unsafe { base.add(next) };
                block = next;
            }};
        }
        // Effective address of a memory access based on `base`.
        let ea = |base: u64| base.wrapping_add(op.off as i64 as u64);

        macro_rules! alu64 {
            ($b:expr, |$x:ident, $y:ident| $e:expr) => {{
                let $x = reg[dst!()];
                let $y: u64 = $b;
                reg[dst!()] = $e;
            }};
        }
        macro_rules! alu32 {
            ($b:expr, |$x:ident, $y:ident| $e:expr) => {{
                let $x = reg[dst!()] as u32;
                let $y: u32 = $b;
                reg[dst!()] = u64::from($e);
            }};
        }
        // A conditional jump. Only a taken jump ends the straight-line run: one that falls
        // through continues it, and the next transfer charges both parts together. Keeping
        // the taken path's work apart also makes the compiler branch instead of selecting the
        // next pc with a `cmov`, which would make the next op's load wait for this compare
        // (every op after a jump would then pay the whole dependency chain, unpredicted).
        macro_rules! jump {
            ($cond:expr) => {
                if $cond {
                    transfer!(cur!(), op.off as usize)
                }
            };
        }
        // A checked load; a fault names slot `at` (a superinstruction's memory slot).
        macro_rules! load_at {
            ($t:ty, $addr:expr, $at:expr) => {{
                // SAFETY: `env` is live and not borrowed elsewhere (contract of `dispatch`);
                // `windows` holds regions of this run taken since the last helper call;
                // `mem::load` checks the address before reading.
                unsafe { mem::load::<$t>(&mut windows, env, $at, $addr) }?
            }};
        }
        macro_rules! store_at {
            ($t:ty, $addr:expr, $v:expr, $at:expr) => {{
                // SAFETY: as in `load_at!`; `mem::store` checks the address before writing.
                unsafe { mem::store::<$t>(&mut windows, env, $at, $addr, $v) }?
            }};
        }
        macro_rules! load {
            ($t:ty, $addr:expr) => {
                load_at!($t, $addr, cur!())
            };
        }
        macro_rules! store {
            ($t:ty, $addr:expr, $v:expr) => {
                store_at!($t, $addr, $v, cur!())
            };
        }
        macro_rules! load_stack {
            ($t:ty) => {{
                // SAFETY: the decoder proved `off` and the width keep the access inside
                // `[r10 - STACK_SIZE, r10)`, and that no instruction writes r10, so r10 is a
                // frame top this loop set: inside the interpreter's stack, which holds
                // `MAX_CALL_FRAMES` frames and is live for the whole run.
                unsafe { std::ptr::read_unaligned(ea(reg[10]) as usize as *const $t) }
            }};
        }
        // A load through the run's initial r1 that decoding proved inside `ctx_extent`
        // (`LDX_CTX`), at `$off` from `$base`; checked when `ctx_ok` does not hold.
        macro_rules! load_ctx {
            ($t:ty, $base:expr, $off:expr, $at:expr) => {{
                let addr = $base.wrapping_add($off as i64 as u64);
                if ctx_ok {
                    // SAFETY: decoding proved that `$base` holds the run's initial r1 and that
                    // `[$off, $off + size)` lies inside `[0, ctx_extent)`; `ctx_ok` says that
                    // `[r1, r1 + ctx_extent)` lies inside the context region, which stays
                    // mapped for the whole run.
                    unsafe { std::ptr::read_unaligned(addr as usize as *const $t) }
                } else {
                    load_at!($t, addr, $at)
                }
            }};
        }
        // `x` shifted left when `left`, else logically right, by `n` masked to the width (as
        // the shift instructions do).
        macro_rules! shifted {
            ($x:expr, $left:expr, $n:expr) => {
                if $left {
                    $x.wrapping_shl($n)
                } else {
                    $x.wrapping_shr($n)
                }
            };
        }
        // A local call from slot `at` to `op.off`, returning to the slot after `at`.
        macro_rules! call {
            ($at:expr) => {{
                if depth + nframes + 1 >= MAX_CALL_FRAMES {
                    return Err(Box::new(VmError::CallDepthExceeded {
                        insn: $at,
                        max: MAX_CALL_FRAMES,
                    }));
                }
                frames[nframes] = MaybeUninit::new(Frame {
                    ret: $at + 1,
                    saved: [reg[6], reg[7], reg[8], reg[9]],
                    fp: reg[10],
                });
                nframes += 1;
                reg[10] = frame_top(stack_top, depth + nframes);
                transfer!($at, op.off as usize);
            }};
        }
        // The work of a `SET_STORE_FIXED` op (also of `SET_STORE_EXIT`).
        macro_rules! set_store_fixed {
            () => {{
                reg[usize::from(op.aux & 0x0f)] = k64!();
                let v = set_constant(op);
                reg[dst!()] = v;
                match (op.aux >> flag::STORE_SIZE_SHIFT) & 3 {
                    0 => store_fixed!(u32, k64!(), v as u32),
                    1 => store_fixed!(u16, k64!(), v as u16),
                    2 => store_fixed!(u8, k64!(), v as u8),
                    _ => store_fixed!(u64, k64!(), v),
                }
            }};
        }
        // Returns from the current function, the run charged up to slot `last`.
        macro_rules! exit {
            ($last:expr) => {{
                let last: usize = $last;
                if nframes == 0 {
                    charge!(last);
                    return Ok(reg[0]);
                }
                let ret = pop_frame!();
                transfer!(last, ret);
            }};
        }
        // The return from the innermost local call (`nframes > 0`): restores the caller's
        // r6..r10 and yields its return address.
        macro_rules! pop_frame {
            () => {{
                nframes -= 1;
                // Also expanded inside the helper-call path's `unsafe` block.
                #[allow(unused_unsafe)]
                // SAFETY: the slots below the old `nframes` were written by their calls.
                let f = unsafe { frames[nframes].assume_init() };
                reg[6..10].copy_from_slice(&f.saved);
                reg[10] = f.fp;
                f.ret
            }};
        }
        // The INC_MEM `$inc` at slot `$at`: `*(size *)(inc.src + inc.off) += inc.imm`, the sum
        // left in `inc.dst` (three slots; faults name the load's and the store's own slots).
        // `$inc` is not always `op`: a LOOKUP_BRANCH runs the INC_MEM four slots on.
        macro_rules! inc_mem {
            ($inc:expr, $at:expr) => {{
                let inc = $inc;
                let addr = reg[usize::from(inc.src & 0x0f)].wrapping_add(inc.off as i64 as u64);
                let v = if inc.aux & 1 == 0 {
                    let v = load_at!(u64, addr, $at).wrapping_add(inc.imm);
                    store_at!(u64, addr, v, $at + 2);
                    v
                } else {
                    let old = u64::from(load_at!(u32, addr, $at));
                    let v = if inc.aux & 2 == 0 {
                        old.wrapping_add(inc.imm)
                    } else {
                        u64::from((old as u32).wrapping_add(inc.imm as u32))
                    };
                    store_at!(u32, addr, v as u32, $at + 2);
                    v
                };
                reg[usize::from(inc.dst & 0x0f)] = v;
            }};
        }
        // An access through an address proven at decoding (`fixed`).
        macro_rules! load_fixed {
            ($t:ty, $addr:expr) => {{
                // SAFETY: decoding proved `[addr, addr + size)` inside a readable fixed region
                // (array map storage), which lives as long as the program (see `fixed`).
                unsafe { std::ptr::read_unaligned($addr as usize as *const $t) }
            }};
        }
        macro_rules! store_fixed {
            ($t:ty, $addr:expr, $v:expr) => {{
                // SAFETY: as in `load_fixed!`, for a writable fixed region.
                unsafe { std::ptr::write_unaligned($addr as usize as *mut $t, $v) }
            }};
        }
        macro_rules! store_stack {
            ($t:ty, $v:expr) => {{
                // SAFETY: as in `load_stack!`; the stack is writable interpreter memory.
                unsafe { std::ptr::write_unaligned(ea(reg[10]) as usize as *mut $t, $v) }
            }};
        }
        // 32-bit and 64-bit views of the compared operands.
        macro_rules! a64 {
            () => {
                reg[dst!()]
            };
        }
        macro_rules! x64 {
            () => {
                reg[src!()]
            };
        }
        macro_rules! a32 {
            () => {
                reg[dst!()] as u32
            };
        }
        macro_rules! x32 {
            () => {
                reg[src!()] as u32
            };
        }

        // An `ld_imm64` and the access through it proven at decoding (three slots):
        // `aux = imm`, then `$access` at `imm + off`. `src` of a load is the address register
        // and `dst` its destination; of a store `dst` is the address register, `src` the value.
        macro_rules! abs_fixed {
            (|$addr:ident| $access:expr) => {{
                reg[usize::from(op.aux & 0x0f)] = k64!();
                let $addr = ea(k64!());
                $access;
                resume!(3);
            }};
        }
        match op.code {
            // ---- ALU64 ----
            ADD64_K => alu64!(k64!(), |a, b| a.wrapping_add(b)),
            ADD64_X => alu64!(x64!(), |a, b| a.wrapping_add(b)),
            SUB64_K => alu64!(k64!(), |a, b| a.wrapping_sub(b)),
            SUB64_X => alu64!(x64!(), |a, b| a.wrapping_sub(b)),
            MUL64_K => alu64!(k64!(), |a, b| a.wrapping_mul(b)),
            MUL64_X => alu64!(x64!(), |a, b| a.wrapping_mul(b)),
            DIV64_K => alu64!(k64!(), |a, b| if signed!() {
                sdiv64(a, b)
            } else {
                udiv64(a, b)
            }),
            DIV64_X => alu64!(x64!(), |a, b| if signed!() {
                sdiv64(a, b)
            } else {
                udiv64(a, b)
            }),
            MOD64_K => alu64!(k64!(), |a, b| if signed!() {
                smod64(a, b)
            } else {
                umod64(a, b)
            }),
            MOD64_X => alu64!(x64!(), |a, b| if signed!() {
                smod64(a, b)
            } else {
                umod64(a, b)
            }),
            OR64_K => alu64!(k64!(), |a, b| a | b),
            OR64_X => alu64!(x64!(), |a, b| a | b),
            AND64_K => alu64!(k64!(), |a, b| a & b),
            AND64_X => alu64!(x64!(), |a, b| a & b),
            XOR64_K => alu64!(k64!(), |a, b| a ^ b),
            XOR64_X => alu64!(x64!(), |a, b| a ^ b),
            // wrapping_shl/shr mask the count to the width (& 63), as the kernel.
            LSH64_K => alu64!(k64!(), |a, b| a.wrapping_shl(b as u32)),
            LSH64_X => alu64!(x64!(), |a, b| a.wrapping_shl(b as u32)),
            RSH64_K => alu64!(k64!(), |a, b| a.wrapping_shr(b as u32)),
            RSH64_X => alu64!(x64!(), |a, b| a.wrapping_shr(b as u32)),
            ARSH64_K => alu64!(k64!(), |a, b| (a as i64).wrapping_shr(b as u32) as u64),
            ARSH64_X => alu64!(x64!(), |a, b| (a as i64).wrapping_shr(b as u32) as u64),
            NEG64 => reg[dst!()] = a64!().wrapping_neg(),
            MOV64_K => reg[dst!()] = k64!(),
            MOV64_X => reg[dst!()] = x64!(),
            MOVSX64 => {
                let x = x64!();
                reg[dst!()] = match op.off {
                    8 => x as i8 as i64 as u64,
                    16 => x as i16 as i64 as u64,
                    _ => x as i32 as i64 as u64,
                }
            }
            // The decoder turned every other width into a fault.
            BSWAP => {
                let a = a64!();
                reg[dst!()] = match k32!() {
                    16 => u64::from((a as u16).swap_bytes()),
                    32 => u64::from((a as u32).swap_bytes()),
                    _ => a.swap_bytes(),
                }
            }

            // ---- ALU (32-bit, result zero-extended) ----
            ADD32_K => alu32!(k32!(), |a, b| a.wrapping_add(b)),
            ADD32_X => alu32!(x32!(), |a, b| a.wrapping_add(b)),
            SUB32_K => alu32!(k32!(), |a, b| a.wrapping_sub(b)),
            SUB32_X => alu32!(x32!(), |a, b| a.wrapping_sub(b)),
            MUL32_K => alu32!(k32!(), |a, b| a.wrapping_mul(b)),
            MUL32_X => alu32!(x32!(), |a, b| a.wrapping_mul(b)),
            DIV32_K => alu32!(k32!(), |a, b| if signed!() {
                sdiv32(a, b)
            } else {
                udiv32(a, b)
            }),
            DIV32_X => alu32!(x32!(), |a, b| if signed!() {
                sdiv32(a, b)
            } else {
                udiv32(a, b)
            }),
            MOD32_K => alu32!(k32!(), |a, b| if signed!() {
                smod32(a, b)
            } else {
                umod32(a, b)
            }),
            MOD32_X => alu32!(x32!(), |a, b| if signed!() {
                smod32(a, b)
            } else {
                umod32(a, b)
            }),
            OR32_K => alu32!(k32!(), |a, b| a | b),
            OR32_X => alu32!(x32!(), |a, b| a | b),
            AND32_K => alu32!(k32!(), |a, b| a & b),
            AND32_X => alu32!(x32!(), |a, b| a & b),
            XOR32_K => alu32!(k32!(), |a, b| a ^ b),
            XOR32_X => alu32!(x32!(), |a, b| a ^ b),
            LSH32_K => alu32!(k32!(), |a, b| a.wrapping_shl(b)),
            LSH32_X => alu32!(x32!(), |a, b| a.wrapping_shl(b)),
            RSH32_K => alu32!(k32!(), |a, b| a.wrapping_shr(b)),
            RSH32_X => alu32!(x32!(), |a, b| a.wrapping_shr(b)),
            ARSH32_K => alu32!(k32!(), |a, b| (a as i32).wrapping_shr(b) as u32),
            ARSH32_X => alu32!(x32!(), |a, b| (a as i32).wrapping_shr(b) as u32),
            NEG32 => reg[dst!()] = u64::from(a32!().wrapping_neg()),
            MOV32_K => reg[dst!()] = u64::from(k32!()),
            MOV32_X => reg[dst!()] = u64::from(x32!()),
            MOVSX32 => {
                let x = x64!();
                reg[dst!()] = u64::from(match op.off {
                    8 => x as i8 as i32 as u32,
                    _ => x as i16 as i32 as u32,
                })
            }
            END_LE => {
                let a = a64!();
                reg[dst!()] = match k32!() {
                    16 => u64::from((a as u16).to_le()),
                    32 => u64::from((a as u32).to_le()),
                    _ => a.to_le(),
                }
            }
            END_BE => {
                let a = a64!();
                reg[dst!()] = match k32!() {
                    16 => u64::from((a as u16).to_be()),
                    32 => u64::from((a as u32).to_be()),
                    _ => a.to_be(),
                }
            }

            // ---- JMP (`off` is the absolute target; JA32 was decoded to JA) ----
            JA => transfer!(cur!(), op.off as usize),
            JEQ_K => jump!(a64!() == k64!()),
            JEQ_X => jump!(a64!() == x64!()),
            JGT_K => jump!(a64!() > k64!()),
            JGT_X => jump!(a64!() > x64!()),
            JGE_K => jump!(a64!() >= k64!()),
            JGE_X => jump!(a64!() >= x64!()),
            JSET_K => jump!(a64!() & k64!() != 0),
            JSET_X => jump!(a64!() & x64!() != 0),
            JNE_K => jump!(a64!() != k64!()),
            JNE_X => jump!(a64!() != x64!()),
            JSGT_K => jump!((a64!() as i64) > (k64!() as i64)),
            JSGT_X => jump!((a64!() as i64) > (x64!() as i64)),
            JSGE_K => jump!((a64!() as i64) >= (k64!() as i64)),
            JSGE_X => jump!((a64!() as i64) >= (x64!() as i64)),
            JLT_K => jump!(a64!() < k64!()),
            JLT_X => jump!(a64!() < x64!()),
            JLE_K => jump!(a64!() <= k64!()),
            JLE_X => jump!(a64!() <= x64!()),
            JSLT_K => jump!((a64!() as i64) < (k64!() as i64)),
            JSLT_X => jump!((a64!() as i64) < (x64!() as i64)),
            JSLE_K => jump!((a64!() as i64) <= (k64!() as i64)),
            JSLE_X => jump!((a64!() as i64) <= (x64!() as i64)),

            // ---- JMP32: compare the low 32 bits ----
            JEQ32_K => jump!(a32!() == k32!()),
            JEQ32_X => jump!(a32!() == x32!()),
            JGT32_K => jump!(a32!() > k32!()),
            JGT32_X => jump!(a32!() > x32!()),
            JGE32_K => jump!(a32!() >= k32!()),
            JGE32_X => jump!(a32!() >= x32!()),
            JSET32_K => jump!(a32!() & k32!() != 0),
            JSET32_X => jump!(a32!() & x32!() != 0),
            JNE32_K => jump!(a32!() != k32!()),
            JNE32_X => jump!(a32!() != x32!()),
            JSGT32_K => jump!((a32!() as i32) > (k32!() as i32)),
            JSGT32_X => jump!((a32!() as i32) > (x32!() as i32)),
            JSGE32_K => jump!((a32!() as i32) >= (k32!() as i32)),
            JSGE32_X => jump!((a32!() as i32) >= (x32!() as i32)),
            JLT32_K => jump!(a32!() < k32!()),
            JLT32_X => jump!(a32!() < x32!()),
            JLE32_K => jump!(a32!() <= k32!()),
            JLE32_X => jump!(a32!() <= x32!()),
            JSLT32_K => jump!((a32!() as i32) < (k32!() as i32)),
            JSLT32_X => jump!((a32!() as i32) < (x32!() as i32)),
            JSLE32_K => jump!((a32!() as i32) <= (k32!() as i32)),
            JSLE32_X => jump!((a32!() as i32) <= (x32!() as i32)),

            // ---- calls ----
            CALL | CALL_LOOKUP => {
                // An array or hash lookup runs inline; any other map's runs the helper.
                if op.code == CALL_LOOKUP {
                    // SAFETY: `env` is live and not borrowed elsewhere (contract); `windows`
                    // is current (as for loads).
                    let inlined = unsafe {
                        inline::map_lookup(env, &mut windows, &mut known, reg[1], reg[2])
                    };
                    if let Some(r0) = inlined {
                        reg[0] = r0;
                        continue;
                    }
                }
                let helper = decoded.helpers[op.imm as usize];
                let at = cur!();
                // Charged before the call: a callback run by the helper spends the rest.
                transfer!(at, at + 1);
                // SAFETY: `m` is live (contract). Publish where a callback's frame goes and
                // the budget left, since the helper may re-enter through `env.callback`.
                unsafe {
                    (*m).depth = depth + nframes + 1;
                    (*m).call_pc = at;
                    (*m).remaining = *remaining;
                }
                // SAFETY: helpers take r1..r5 and the live environment pointer; no
                // reference to `*env` is held across the call.
                reg[0] = unsafe { (helper.func)(reg[1], reg[2], reg[3], reg[4], reg[5], env) };
                // The helper may have added or moved regions (a looked-up value, an adjusted
                // packet): every window is stale.
                clear_windows!();
                // SAFETY: `m` and `env` are live; the helper has returned, so no one else
                // uses them now.
                unsafe {
                    *remaining = (*m).remaining;
                    if (*env).fault_flag != 0 {
                        return Err(Box::new((*env).take_fault(at)));
                    }
                    if (*env).tail_call_pending != 0 {
                        // In the main function the run unwinds to the dispatcher. In a
                        // subprogram the kernel runs the target in place of it and hands
                        // the target's r0 to the subprogram's caller.
                        let in_main = nframes == 0 && entry == 0;
                        let Some(hook) = (*env).tail_hook.filter(|_| !in_main) else {
                            return Ok(reg[0]);
                        };
                        reg[0] = hook(env)?;
                        clear_windows!();
                        if nframes == 0 {
                            // A callback function: its caller is the helper.
                            return Ok(reg[0]);
                        }
                        let ret = pop_frame!();
                        ip = base.add(ret);
                        block = ret;
                    }
                }
            }
            LOCAL_CALL => call!(cur!()),
            MOV_CALL => {
                reg[dst!()] = if op.aux != 0 {
                    u64::from(x32!())
                } else {
                    x64!()
                };
                call!(cur!() + 1)
            }
            // A `ja` to an `exit` charges its own slot too (`flag::EXIT_AFTER_JA`, 1); a
            // constant exit the slots it stands for.
            EXIT => exit!(cur!() + usize::from(op.aux)),
            EXIT_CONST => {
                reg[0] = k64!();
                exit!(cur!() + usize::from(op.aux))
            }

            // ---- loads and stores ----
            LD_IMM64 => {
                reg[dst!()] = k64!();
                resume!(2);
            }
            LDX_B => reg[dst!()] = u64::from(load!(u8, ea(x64!()))),
            LDX_H => reg[dst!()] = u64::from(load!(u16, ea(x64!()))),
            LDX_W => reg[dst!()] = u64::from(load!(u32, ea(x64!()))),
            LDX_DW => reg[dst!()] = load!(u64, ea(x64!())),
            LDSX_B => reg[dst!()] = load!(u8, ea(x64!())) as i8 as i64 as u64,
            LDSX_H => reg[dst!()] = load!(u16, ea(x64!())) as i16 as i64 as u64,
            LDSX_W => reg[dst!()] = load!(u32, ea(x64!())) as i32 as i64 as u64,
            ST_B => store!(u8, ea(a64!()), k32!() as u8),
            ST_H => store!(u16, ea(a64!()), k32!() as u16),
            ST_W => store!(u32, ea(a64!()), k32!()),
            ST_DW => store!(u64, ea(a64!()), k64!()),
            STX_B => store!(u8, ea(a64!()), x64!() as u8),
            STX_H => store!(u16, ea(a64!()), x64!() as u16),
            STX_W => store!(u32, ea(a64!()), x32!()),
            STX_DW => store!(u64, ea(a64!()), x64!()),
            LDX_STACK_B => reg[dst!()] = u64::from(load_stack!(u8)),
            LDX_STACK_H => reg[dst!()] = u64::from(load_stack!(u16)),
            LDX_STACK_W => reg[dst!()] = u64::from(load_stack!(u32)),
            LDX_STACK_DW => reg[dst!()] = load_stack!(u64),
            ST_STACK_B => store_stack!(u8, k32!() as u8),
            ST_STACK_H => store_stack!(u16, k32!() as u16),
            ST_STACK_W => store_stack!(u32, k32!()),
            ST_STACK_DW => store_stack!(u64, k64!()),
            STX_STACK_B => store_stack!(u8, x64!() as u8),
            STX_STACK_H => store_stack!(u16, x64!() as u16),
            STX_STACK_W => store_stack!(u32, x32!()),
            STX_STACK_DW => store_stack!(u64, x64!()),
            // In slot order: the address register, the load, then the addend (which may be
            // either register just written). One arm per width, as for `abs_fixed!`.
            INC_FIXED_DW => {
                reg[usize::from(op.aux & 0x0f)] = k64!();
                reg[dst!()] = load_fixed!(u64, k64!());
                let x = if op.aux & 0x10 != 0 {
                    x64!()
                } else {
                    op.off as i64 as u64
                };
                let v = reg[dst!()].wrapping_add(x);
                reg[dst!()] = v;
                store_fixed!(u64, k64!(), v);
                resume!(5);
            }
            INC_FIXED_W => {
                reg[usize::from(op.aux & 0x0f)] = k64!();
                let old = load_fixed!(u32, k64!());
                reg[dst!()] = u64::from(old);
                let x = if op.aux & 0x10 != 0 {
                    x32!()
                } else {
                    op.off as u32
                };
                let v = old.wrapping_add(x);
                reg[dst!()] = u64::from(v);
                store_fixed!(u32, k64!(), v);
                resume!(5);
            }
            SHIFT_OR32 => {
                let x = x32!();
                let t = shifted!(x, op.aux & 1 != 0, k32!());
                let u = shifted!(x, op.aux & 2 != 0, op.off as u32);
                reg[src!()] = u64::from(u);
                reg[dst!()] = u64::from(t | u);
                resume!(4);
            }
            SHIFT_OR64 => {
                let x = x64!();
                let t = shifted!(x, op.aux & 1 != 0, k32!());
                let u = shifted!(x, op.aux & 2 != 0, op.off as u32);
                reg[src!()] = u;
                reg[dst!()] = t | u;
                resume!(4);
            }
            LDX_FIXED_B => reg[dst!()] = u64::from(load_fixed!(u8, k64!())),
            LDX_FIXED_H => reg[dst!()] = u64::from(load_fixed!(u16, k64!())),
            LDX_FIXED_W => reg[dst!()] = u64::from(load_fixed!(u32, k64!())),
            LDX_FIXED_DW => reg[dst!()] = load_fixed!(u64, k64!()),
            STX_FIXED_B => store_fixed!(u8, k64!(), x64!() as u8),
            STX_FIXED_H => store_fixed!(u16, k64!(), x64!() as u16),
            STX_FIXED_W => store_fixed!(u32, k64!(), x32!()),
            STX_FIXED_DW => store_fixed!(u64, k64!(), x64!()),
            ST_FIXED_B => store_fixed!(u8, k64!(), op.off as u8),
            ST_FIXED_H => store_fixed!(u16, k64!(), op.off as u16),
            ST_FIXED_W => store_fixed!(u32, k64!(), op.off as u32),
            ST_FIXED_DW => store_fixed!(u64, k64!(), op.off as i64 as u64),
            ATOMIC_DW => {
                let x = x64!();
                // SAFETY: see the memory arms above.
                let cell = unsafe { mem::atomic64(&mut windows, env, cur!(), ea(a64!())) }?;
                // The decoder turned every other operation into a fault.
                match op.imm as i32 {
                    AT_ADD => _ = cell.fetch_add(x, ORDER),
                    AT_OR => _ = cell.fetch_or(x, ORDER),
                    AT_AND => _ = cell.fetch_and(x, ORDER),
                    AT_XOR => _ = cell.fetch_xor(x, ORDER),
                    AT_FETCH_ADD => reg[src!()] = cell.fetch_add(x, ORDER),
                    AT_FETCH_OR => reg[src!()] = cell.fetch_or(x, ORDER),
                    AT_FETCH_AND => reg[src!()] = cell.fetch_and(x, ORDER),
                    AT_FETCH_XOR => reg[src!()] = cell.fetch_xor(x, ORDER),
                    BPF_XCHG => reg[src!()] = cell.swap(x, ORDER),
                    _ => {
                        reg[0] = match cell.compare_exchange(reg[0], x, ORDER, ORDER) {
                            Ok(old) | Err(old) => old,
                        }
                    }
                }
            }
            ATOMIC_W => {
                let x = x32!();
                // SAFETY: see the memory arms above.
                let cell = unsafe { mem::atomic32(&mut windows, env, cur!(), ea(a64!())) }?;
                match op.imm as i32 {
                    AT_ADD => _ = cell.fetch_add(x, ORDER),
                    AT_OR => _ = cell.fetch_or(x, ORDER),
                    AT_AND => _ = cell.fetch_and(x, ORDER),
                    AT_XOR => _ = cell.fetch_xor(x, ORDER),
                    AT_FETCH_ADD => reg[src!()] = u64::from(cell.fetch_add(x, ORDER)),
                    AT_FETCH_OR => reg[src!()] = u64::from(cell.fetch_or(x, ORDER)),
                    AT_FETCH_AND => reg[src!()] = u64::from(cell.fetch_and(x, ORDER)),
                    AT_FETCH_XOR => reg[src!()] = u64::from(cell.fetch_xor(x, ORDER)),
                    BPF_XCHG => reg[src!()] = u64::from(cell.swap(x, ORDER)),
                    // CMPXCHG: the 32-bit variant compares the low half of r0 and
                    // zero-extends the old value into r0.
                    _ => {
                        reg[0] = u64::from(
                            match cell.compare_exchange(reg[0] as u32, x, ORDER, ORDER) {
                                Ok(old) | Err(old) => old,
                            },
                        )
                    }
                }
            }
            // ---- superinstructions (their slots are charged by distance, as any run) ----
            ADDR => {
                reg[dst!()] = x64!().wrapping_add(k64!());
                resume!(2);
            }
            BOUNDS => {
                let v = x64!().wrapping_add(k64!());
                reg[dst!()] = v;
                // Read after the write: the limit may be the register just computed.
                let end = reg[usize::from(op.aux & 0x0f)];
                // `v > end`, or its negation for a check written `if v <= end goto`.
                if (v > end) != (op.aux & flag::BOUNDS_LE != 0) {
                    transfer!(cur!() + 2, op.off as usize)
                } else {
                    resume!(3);
                }
            }
            KEY_ADDR => {
                reg[dst!()] = if op.aux & 1 != 0 {
                    u64::from(k32!())
                } else {
                    k64!()
                };
                if op.aux & 2 == 0 {
                    store_stack!(u32, reg[dst!()] as u32);
                } else {
                    store_stack!(u64, reg[dst!()]);
                }
                reg[src!()] = ea(reg[usize::from(FRAME_REG)]);
                resume!(4);
            }
            BYTES16_HI => {
                let (low, base) = (usize::from(op.aux & 0x0f), usize::from(op.aux >> 4));
                reg[dst!()] = u64::from(load!(u8, ea(x64!())));
                reg[dst!()] = u64::from((reg[dst!()] as u32) << 8);
                reg[low] = u64::from(load_at!(u8, reg[base].wrapping_add(k64!()), cur!() + 2));
                reg[dst!()] = u64::from(reg[dst!()] as u32 | reg[low] as u32);
                resume!(4);
            }
            BYTES16_LO => {
                let (high, base) = (usize::from(op.aux & 0x0f), usize::from(op.aux >> 4));
                reg[dst!()] = u64::from(load!(u8, ea(x64!())));
                reg[high] = u64::from(load_at!(u8, reg[base].wrapping_add(k64!()), cur!() + 1));
                // Shift, then or, as two steps: `high` may be `dst` (the or then reads the
                // shifted value, as the slots do).
                reg[high] = u64::from((reg[high] as u32) << 8);
                reg[high] = u64::from(reg[high] as u32 | reg[dst!()] as u32);
                resume!(4);
            }
            LDX_CTX_B => reg[dst!()] = u64::from(load_ctx!(u8, x64!(), op.off, cur!())),
            LDX_CTX_H => reg[dst!()] = u64::from(load_ctx!(u16, x64!(), op.off, cur!())),
            LDX_CTX_W => reg[dst!()] = u64::from(load_ctx!(u32, x64!(), op.off, cur!())),
            LDX_CTX_DW => reg[dst!()] = load_ctx!(u64, x64!(), op.off, cur!()),
            LDX2_CTX_W => {
                reg[dst!()] = u64::from(load_ctx!(u32, x64!(), op.off, cur!()));
                let second = reg[usize::from(op.aux >> 4)];
                reg[usize::from(op.aux & 0x0f)] =
                    u64::from(load_ctx!(u32, second, op.imm, cur!() + 1));
                resume!(2);
            }
            LDX2_W => {
                reg[dst!()] = u64::from(load!(u32, ea(x64!())));
                let second = reg[usize::from(op.aux >> 4)].wrapping_add(k64!());
                reg[usize::from(op.aux & 0x0f)] = u64::from(load_at!(u32, second, cur!() + 1));
                resume!(2);
            }
            LDX2_DW => {
                reg[dst!()] = load!(u64, ea(x64!()));
                let second = reg[usize::from(op.aux >> 4)].wrapping_add(k64!());
                reg[usize::from(op.aux & 0x0f)] = load_at!(u64, second, cur!() + 1);
                resume!(2);
            }
            COPY_W | COPY_H | COPY_B | COPY_DW => {
                let from = ea(x64!());
                let at = cur!() + 1;
                let to = |reg: &[u64; 16]| reg[usize::from(op.aux & 0x0f)].wrapping_add(k64!());
                match op.code {
                    COPY_B => {
                        reg[dst!()] = u64::from(load!(u8, from));
                        store_at!(u8, to(&reg), reg[dst!()] as u8, at);
                    }
                    COPY_H => {
                        reg[dst!()] = u64::from(load!(u16, from));
                        store_at!(u16, to(&reg), reg[dst!()] as u16, at);
                    }
                    COPY_W => {
                        reg[dst!()] = u64::from(load!(u32, from));
                        store_at!(u32, to(&reg), reg[dst!()] as u32, at);
                    }
                    _ => {
                        reg[dst!()] = load!(u64, from);
                        store_at!(u64, to(&reg), reg[dst!()], at);
                    }
                }
                resume!(2);
            }
            UREM64 => {
                let t = usize::from(op.aux & 0x0f);
                // The four slots in order: `t` may be any register, even the divisor.
                let divisor = |reg: &[u64; 16]| {
                    if op.aux & flag::UREM_BY_IMM != 0 {
                        k64!()
                    } else {
                        reg[src!()]
                    }
                };
                let lead = usize::from(op.aux & flag::UREM_SET_SRC != 0);
                if lead != 0 {
                    reg[src!()] = k64!();
                }
                if op.aux & flag::UREM_BY_IMM != 0 {
                    let (x, d) = (reg[dst!()], k64!());
                    let mask = d.wrapping_sub(1);
                    // A power of two takes a mask, not a division; so does zero, for which
                    // `x & !mask` is 0, as `x / 0` is.
                    reg[t] = if d & mask == 0 { x & !mask } else { x / d * d };
                } else {
                    reg[t] = reg[dst!()];
                    reg[t] = udiv64(reg[t], divisor(&reg));
                    reg[t] = reg[t].wrapping_mul(divisor(&reg));
                }
                // Read after the write: `t` may be `dst`.
                reg[dst!()] = reg[dst!()].wrapping_sub(reg[t]);
                let last = cur!() + lead + 3;
                if op.aux & flag::UREM_BRANCH == 0 {
                    resume!(lead + 4);
                } else if (reg[dst!()] == 0) == (op.aux & flag::UREM_BRANCH_ZERO != 0) {
                    transfer!(last + 1, op.off as usize);
                } else {
                    resume!(lead + 5);
                }
            }
            SET2 => {
                reg[usize::from(op.aux & 0x0f)] = k64!();
                reg[dst!()] = set_constant(op);
                resume!(src!());
            }
            SET_STORE_FIXED => {
                set_store_fixed!();
                resume!(4);
            }
            SKIP => resume!(usize::from(op.src)),
            SET_SKIP => {
                reg[dst!()] = k64!();
                resume!(usize::from(op.src));
            }
            SET_STORE_EXIT => {
                set_store_fixed!();
                exit!(cur!() + usize::from(op.src))
            }
            MOVE_SUB => {
                let t = usize::from(op.aux & 0x0f);
                if op.aux & flag::WIDE != 0 {
                    reg[dst!()] = x64!();
                    reg[dst!()] = reg[dst!()].wrapping_sub(reg[t]);
                } else {
                    reg[dst!()] = u64::from(x32!());
                    reg[dst!()] = u64::from((reg[dst!()] as u32).wrapping_sub(reg[t] as u32));
                }
                resume!(2);
            }
            SET_STACK_W | SET_STACK_DW => {
                reg[dst!()] = if op.aux == 1 {
                    u64::from(k32!())
                } else {
                    k64!()
                };
                if op.code == SET_STACK_W {
                    store_stack!(u32, k32!());
                } else {
                    store_stack!(u64, reg[dst!()]);
                }
                resume!(2);
            }
            // An ld_imm64 and the access through it (three slots).
            LDX_ABS_W | LDX_ABS_H | LDX_ABS_B | LDX_ABS_DW | STX_ABS_W | STX_ABS_H | STX_ABS_B
            | STX_ABS_DW => {
                reg[usize::from(op.aux & 0x0f)] = k64!();
                let addr = ea(k64!());
                // `src` of a fused load is the address register, `dst` its destination; of a
                // fused store `dst` is the address register, `src` the value.
                let at = cur!() + 2;
                match op.code {
                    LDX_ABS_B => reg[dst!()] = u64::from(load_at!(u8, addr, at)),
                    LDX_ABS_H => reg[dst!()] = u64::from(load_at!(u16, addr, at)),
                    LDX_ABS_W => reg[dst!()] = u64::from(load_at!(u32, addr, at)),
                    LDX_ABS_DW => reg[dst!()] = load_at!(u64, addr, at),
                    STX_ABS_B => store_at!(u8, addr, x64!() as u8, at),
                    STX_ABS_H => store_at!(u16, addr, x64!() as u16, at),
                    STX_ABS_W => store_at!(u32, addr, x32!(), at),
                    _ => store_at!(u64, addr, x64!(), at),
                }
                resume!(3);
            }
            // One arm per width, not one arm that tests the width again: that test would be
            // a second dispatch on every run of the op.
            LDX_ABS_FIXED_B => abs_fixed!(|addr| reg[dst!()] = u64::from(load_fixed!(u8, addr))),
            LDX_ABS_FIXED_H => abs_fixed!(|addr| reg[dst!()] = u64::from(load_fixed!(u16, addr))),
            LDX_ABS_FIXED_W => abs_fixed!(|addr| reg[dst!()] = u64::from(load_fixed!(u32, addr))),
            LDX_ABS_FIXED_DW => abs_fixed!(|addr| reg[dst!()] = load_fixed!(u64, addr)),
            STX_ABS_FIXED_B => abs_fixed!(|addr| store_fixed!(u8, addr, x64!() as u8)),
            STX_ABS_FIXED_H => abs_fixed!(|addr| store_fixed!(u16, addr, x64!() as u16)),
            STX_ABS_FIXED_W => abs_fixed!(|addr| store_fixed!(u32, addr, x32!())),
            STX_ABS_FIXED_DW => abs_fixed!(|addr| store_fixed!(u64, addr, x64!())),
            INC_MEM => {
                inc_mem!(op, cur!());
                resume!(3);
            }
            LOOKUP_BRANCH => {
                reg[dst!()] = k64!();
                // SAFETY: as for CALL_LOOKUP.
                match unsafe { inline::map_lookup(env, &mut windows, &mut known, reg[1], reg[2]) } {
                    Some(r0) => {
                        reg[0] = r0;
                        match op.aux & 3 {
                            1 if r0 == 0 => transfer!(cur!() + 3, op.off as usize),
                            2 if r0 != 0 => transfer!(cur!() + 3, op.off as usize),
                            1 if op.aux & flag::THEN_INC != 0 => {
                                // SAFETY: decoding set THEN_INC only where the slot 4 after
                                // this one exists and holds an INC_MEM (three slots, the last
                                // at most the sentinel's predecessor).
                                let inc = unsafe { *ops.get_unchecked(cur!() + 4) };
                                inc_mem!(inc, cur!() + 4);
                                resume!(7);
                            }
                            1 | 2 => resume!(4),
                            _ => resume!(3),
                        }
                    }
                    // Neither an array nor a hash map: the call's own op runs the helper.
                    None => resume!(2),
                }
            }
            SHUFFLE => {
                // SAFETY: decoding indexed a run it built; the contract of `shuffle::run` is
                // the loop's own for memory ops (r10 proven as for the stack ops).
                let run = unsafe { decoded.shuffles.get_unchecked(op.imm as usize) };
                // SAFETY: see above.
                if !unsafe { super::shuffle::run(run, &mut reg, &mut windows, env) } {
                    // SAFETY: see above.
                    unsafe { super::shuffle::run_checked(run, &mut reg, &mut windows, env) }?;
                }
                resume!(run.slots);
            }
            FAULT => return Err(Box::new(decoded.faults[op.imm as usize].clone())),
            // SAFETY: decoding makes every op of these codes a fault (its last pass, over
            // `is_hole`), so no op the loop fetches has one.
            holes!() => unsafe { std::hint::unreachable_unchecked() },
        }
    }
}
