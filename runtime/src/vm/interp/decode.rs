//! Pre-decoding: the interpreter's own instruction stream, built once per program.
//!
//! Each BPF instruction becomes one [`Op`] at the same index, with everything the dispatch loop
//! would otherwise work out on every execution done ahead of time: jump and call targets are
//! absolute indices, immediates are sign-extended, `ld_imm64` holds its whole value, helpers are
//! resolved to an index into [`Decoded::helpers`], cpu-v4 sign-extending moves have codes of
//! their own, and accesses through `r10` that provably stay inside the current frame skip the
//! bounds check (`*_STACK` codes), as do loads and stores through constant addresses inside
//! map storage the decoded program holds (`*_FIXED` codes, [`super::fixed`]). Common sequences
//! become superinstructions ([`fuse`]). Anything that can only fault (an unknown opcode, a bad width,
//! an unknown helper, a jump out of the program) becomes a [`FAULT`] op that raises at run time
//! exactly the error the instruction would raise, so decoding itself never fails.
//!
//! Invariant the loop relies on: every `Op::off` of a jump or local call is a valid index into
//! `Decoded::ops`, and the last op is a [`FAULT`] sentinel, so execution that runs past the
//! final instruction (or returns to a call that was the final instruction) stops there instead
//! of leaving the stream.

use std::sync::Arc;

use crate::helpers::{self, Helper};
use crate::maps::Map;
use crate::vm::error::VmError;
use crate::vm::insn::*;
use crate::vm::memory::{Access, Region};

/// Internal opcodes, placed where real programs have no valid opcode: in the `BPF_LD` class
/// (the kernel only knows `ld_imm64` there, and cBPF's ABS/IND modes, which we refuse), and at
/// operation or mode values no instruction of their class has. Decoding turns every real
/// instruction with one of those codes into a fault, so an internal code always means itself.
pub(super) mod code {
    use crate::vm::insn::{
        BPF_ALU, BPF_ALU64, BPF_B, BPF_DW, BPF_EXIT, BPF_H, BPF_JMP, BPF_JMP32, BPF_LD, BPF_LDX,
        BPF_NEG, BPF_ST, BPF_STX, BPF_W, BPF_X,
    };

    /// `dst = *(size *)(r10 + off)`, offset proven inside the frame.
    pub const LDX_STACK: u8 = 0x60;
    /// `*(size *)(r10 + off) = src`, offset proven inside the frame.
    pub const STX_STACK: u8 = 0x80;
    /// `*(size *)(r10 + off) = imm`, offset proven inside the frame.
    pub const ST_STACK: u8 = 0xa0;
    /// The stack codes by width, in `BPF_SIZE` order (`| BPF_W`, `| BPF_H`, ...).
    pub const LDX_STACK_W: u8 = LDX_STACK | BPF_W;
    /// See [`LDX_STACK`].
    pub const LDX_STACK_H: u8 = LDX_STACK | BPF_H;
    /// See [`LDX_STACK`].
    pub const LDX_STACK_B: u8 = LDX_STACK | BPF_B;
    /// See [`LDX_STACK`].
    pub const LDX_STACK_DW: u8 = LDX_STACK | BPF_DW;
    /// See [`STX_STACK`].
    pub const STX_STACK_W: u8 = STX_STACK | BPF_W;
    /// See [`STX_STACK`].
    pub const STX_STACK_H: u8 = STX_STACK | BPF_H;
    /// See [`STX_STACK`].
    pub const STX_STACK_B: u8 = STX_STACK | BPF_B;
    /// See [`STX_STACK`].
    pub const STX_STACK_DW: u8 = STX_STACK | BPF_DW;
    /// See [`ST_STACK`].
    pub const ST_STACK_W: u8 = ST_STACK | BPF_W;
    /// See [`ST_STACK`].
    pub const ST_STACK_H: u8 = ST_STACK | BPF_H;
    /// See [`ST_STACK`].
    pub const ST_STACK_B: u8 = ST_STACK | BPF_B;
    /// See [`ST_STACK`].
    pub const ST_STACK_DW: u8 = ST_STACK | BPF_DW;
    /// 64-bit `movsx`: `dst = sign_extend(src, off bits)`.
    pub const MOVSX64: u8 = 0xc0;
    /// 32-bit `movsx`: `dst = zext32(sign_extend(src, off bits))`.
    pub const MOVSX32: u8 = 0xc8;
    /// `bpf_map_lookup_elem`, run inline for array maps (`imm` is the helper index for the
    /// others).
    pub const CALL_LOOKUP: u8 = 0xd8;
    /// Local call: `off` is the callee's entry.
    pub const LOCAL_CALL: u8 = 0xd0;
    /// `dst = src` (`aux` 1: 32-bit, zero-extended) then a local call to `off`: the argument
    /// set up right before a call (two slots). A JMP code no instruction has (`0xe0`).
    pub const MOV_CALL: u8 = BPF_JMP | 0xe0;
    /// Raises `Decoded::faults[imm]`. Code 0 (an LD-class code, which decoding never passes
    /// through): with it, the dispatch `match` spans every byte value, so its jump table
    /// needs no range check.
    pub const FAULT: u8 = 0x00;

    // Superinstructions: the first slot of a common sequence does the work of all of it (the
    // later slots keep their own ops, for jumps that land on them).
    /// `dst = src; dst += imm` (pointer arithmetic).
    pub const ADDR: u8 = 0xe8;
    /// `dst = src; dst += imm; if dst > aux & 0xf goto off` (a packet bounds check), or
    /// `if dst <= ...` with [`flag::BOUNDS_LE`](super::flag::BOUNDS_LE).
    pub const BOUNDS: u8 = 0xf0;
    /// `dst = imm; *(u32 *)(r10 + off) = dst` (a map key on the stack); `aux` = 1 when the
    /// move was 32-bit.
    pub const SET_STACK_W: u8 = 0xf8;
    /// As [`SET_STACK_W`] with an 8-byte store.
    pub const SET_STACK_DW: u8 = 0x08;
    /// `aux = imm (ld_imm64); dst = *(size *)(imm + off)`: global data and map values named by
    /// address. Sizes in `BPF_SIZE` order as for the stack codes; the codes of cBPF's ABS
    /// mode, which decoding never lets through.
    pub const LDX_ABS: u8 = 0x20;
    /// `aux = imm (ld_imm64); *(size *)(imm + off) = src`; the codes of cBPF's IND mode.
    pub const STX_ABS: u8 = 0x40;
    /// See [`LDX_ABS`].
    pub const LDX_ABS_W: u8 = LDX_ABS | BPF_W;
    /// See [`LDX_ABS`].
    pub const LDX_ABS_H: u8 = LDX_ABS | BPF_H;
    /// See [`LDX_ABS`].
    pub const LDX_ABS_B: u8 = LDX_ABS | BPF_B;
    /// See [`LDX_ABS`].
    pub const LDX_ABS_DW: u8 = LDX_ABS | BPF_DW;
    /// See [`STX_ABS`].
    pub const STX_ABS_W: u8 = STX_ABS | BPF_W;
    /// See [`STX_ABS`].
    pub const STX_ABS_H: u8 = STX_ABS | BPF_H;
    /// See [`STX_ABS`].
    pub const STX_ABS_B: u8 = STX_ABS | BPF_B;
    /// See [`STX_ABS`].
    pub const STX_ABS_DW: u8 = STX_ABS | BPF_DW;
    /// `*(u64 *)(src + off) += imm` through `dst` (`ldxdw; add64 k; stxdw`); `aux` bit 0: the
    /// access is 32-bit (`ldxw`/`stxw`), bit 1: the add is 32-bit (only with bit 0). An ALU64
    /// code no real instruction has (decoding faults those).
    pub const INC_MEM: u8 = 0xe7;
    /// `dst = *(size *)imm`: a load from an address proven readable at decoding
    /// ([`super::fixed`]). Codes of the LDX class in a mode no instruction has (`0xa0`), which
    /// decoding turns into faults; sizes in `BPF_SIZE` order.
    pub const LDX_FIXED: u8 = BPF_LDX | 0xa0;
    /// `*(size *)imm = src`: a store to an address proven writable at decoding.
    pub const STX_FIXED: u8 = BPF_STX | 0xa0;
    /// `*(size *)imm = off`: an immediate store to an address proven writable at decoding
    /// (the 32-bit immediate, sign-extended, moves to `off`).
    pub const ST_FIXED: u8 = BPF_ST | 0xa0;
    /// [`LDX_ABS`] with the access proven at decoding: `aux = imm; dst = *(size *)(imm +
    /// off)`. LDX codes of mode `0xe0`.
    pub const LDX_ABS_FIXED: u8 = BPF_LDX | 0xe0;
    /// [`STX_ABS`] with the access proven at decoding. STX codes of mode `0xe0`.
    pub const STX_ABS_FIXED: u8 = BPF_STX | 0xe0;
    /// A counter in global data: `aux & 0xf = imm (ld_imm64); dst = *(size *)imm; dst +=
    /// (aux & 0x10 ? src : off); *(size *)imm = dst`, the access proven at decoding (five
    /// slots). 64-bit cells take `add64`, 32-bit ones `add32`. ST codes of mode `0xe0`.
    pub const INC_FIXED: u8 = BPF_ST | 0xe0;
    /// `t = dst_shift(src, imm); u = src_shift(src, off); src = u; dst = t | u` on 32-bit
    /// values (zero-extended): `mov32 d, s; sh d, k; sh s, k'; or32 d, s`. `aux` bit 0: the
    /// shift of `dst` is left (else logical right), bit 1: that of `src` is. An ALU code no
    /// instruction has (`0xe0`), which decoding turns into a fault.
    pub const SHIFT_OR32: u8 = BPF_ALU | 0xe0;
    /// [`SHIFT_OR32`] on 64-bit values. An ALU64 code no instruction has.
    pub const SHIFT_OR64: u8 = BPF_ALU64 | 0xf0;
    /// `dst = imm (ld_imm64 of a map); r0 = map_lookup_elem(r1, r2)` run inline, then
    /// `aux` 1: `if r0 == 0 goto off`, 2: `if r0 != 0 goto off`, 0: no branch. When the map
    /// is neither an array nor of the hash family (or the key is not readable) it sets `dst`
    /// and continues at the call's own op, which runs the helper.
    pub const LOOKUP_BRANCH: u8 = 0xef;
    /// A little-endian 16-bit field read byte by byte, high byte first (clang's code for an
    /// unaligned `__u16`): `ldxb dst, [src + off]; lsh32 dst, 8; ldxb b, [q + imm];
    /// or32 dst, b` with `aux` = `b | q << 4` (four slots). An ALU code no instruction has
    /// (operation `0xf0`).
    pub const BYTES16_HI: u8 = BPF_ALU | 0xf0;
    /// As [`BYTES16_HI`], low byte first: `ldxb dst, [src + off]; ldxb a, [q + imm];
    /// lsh32 a, 8; or32 a, dst` with `aux` = `a | q << 4`. ALU operation `0xf0`, register
    /// form.
    pub const BYTES16_LO: u8 = BPF_ALU | 0xf0 | BPF_X;
    /// A map key on the stack and its address: `dst = imm; *(size *)(r10 + off) = dst;
    /// src = r10; src += off` (four slots). `aux` bit 0: the move is 32-bit; bit 1: the
    /// store is 8 bytes (else 4). An ALU code no instruction has (operation `0xe0`, register
    /// form).
    pub const KEY_ADDR: u8 = BPF_ALU | 0xe0 | BPF_X;
    /// clang's unsigned remainder when the divisor is not known to be a power of two:
    /// `mov64 t, dst; div64 t, y; mul64 t, y; sub64 dst, t` with `y` = `src` (or `imm` with
    /// [`UREM_BY_IMM`](super::flag::UREM_BY_IMM)) and `t` = `aux & 0xf` (four slots, run in
    /// order). With [`UREM_SET_SRC`](super::flag::UREM_SET_SRC) a `mov64 src, imm` comes
    /// first; with [`UREM_BRANCH`](super::flag::UREM_BRANCH) a test of `dst` against 0 jumping
    /// to `off` follows (one slot more each). An ALU64 code no instruction has (operation
    /// `0xf0`, register form).
    pub const UREM64: u8 = BPF_ALU64 | 0xf0 | BPF_X;
    /// A value copied between memory: `ldx dst, [src + off]; stx [aux + imm], dst` of one
    /// width (two slots, both accesses checked). Sizes in `BPF_SIZE` order; the JMP32 codes of
    /// operations `0xe0` and `0xf0`, which no instruction has.
    pub const COPY_MEM: u8 = BPF_JMP32 | 0xe0;
    /// Two 4-byte loads in a row: `ldxw dst, [src + off]; ldxw aux & 0xf, [aux >> 4 + imm]`
    /// (two slots, both checked, run in order), as every XDP program starts by reading
    /// `data` and `data_end`. A JMP code no instruction has (operation `0xf0`).
    pub const LDX2_W: u8 = BPF_JMP | 0xf0;
    /// As [`LDX2_W`] with two 8-byte loads. JMP operation `0xf0`, register form.
    pub const LDX2_DW: u8 = BPF_JMP | 0xf0 | BPF_X;
    /// `dst = *(size *)(src + off)` where decoding proved that `src` holds the pointer the
    /// run started with in r1 (the context) and `[off, off + size)` lies inside
    /// [`Decoded::ctx_extent`](super::Decoded) ([`super::fixed`]): read directly when the run
    /// finds its r1 and that extent inside its context region, else checked as any load.
    /// Sizes in `BPF_SIZE` order; LDX codes of cBPF's ABS mode, which decoding never lets
    /// through.
    pub const LDX_CTX: u8 = BPF_LDX | 0x20;
    /// Two [`LDX_CTX`] loads of 4 bytes in a row, encoded as [`LDX2_W`] (`data` and
    /// `data_end`). The LDX code of cBPF's IND mode.
    pub const LDX2_CTX_W: u8 = BPF_LDX | 0x40 | BPF_W;
    /// `aux & 0xf = imm (ld_imm64); dst = off` (sign-extended, or zero-extended from 32 bits
    /// with [`SET_NARROW`](super::flag::SET_NARROW)): an address and a constant read through
    /// it ([`super::fold`]), then the no-ops that follow (jumps on that constant that are
    /// never taken): the op covers `src` slots (3 to 15). An LD-class code no instruction has
    /// (`BPF_IMM | BPF_B`).
    pub const SET2: u8 = BPF_LD | BPF_B;
    /// `aux & 0xf = imm (ld_imm64); dst = off; *(size *)imm = dst`, the store proven at
    /// decoding (four slots): a constant stored to global data. `off` is zero-extended from 32
    /// bits with [`SET_NARROW`](super::flag::SET_NARROW), else sign-extended; `aux >>
    /// STORE_SIZE_SHIFT` is the store's `BPF_SIZE >> 3` (see
    /// [`STORE_SIZE_SHIFT`](super::flag::STORE_SIZE_SHIFT)). An LD-class code no instruction
    /// has (mode `0xe0`).
    pub const SET_STORE_FIXED: u8 = BPF_LD | 0xe0;
    /// `dst = src; dst -= aux & 0xf` (two slots), 64-bit with [`WIDE`](super::flag::WIDE),
    /// else 32-bit: a length from two pointers (`data_end - data`). A JMP code no instruction
    /// has (operation `0xe0`, register form).
    pub const MOVE_SUB: u8 = BPF_JMP | 0xe0 | BPF_X;
    /// `r0 = imm; exit`, charging `aux` slots beyond its own: a `ja` to a tail that only puts
    /// a value known at decoding in r0 and exits ([`super::fixed`]), possibly with constant
    /// sets before it that nothing reads ([`absorb_dead_sets`](super::decode)). The code of
    /// a 32-bit `exit`, which no instruction has (decoding faults it).
    pub const EXIT_CONST: u8 = BPF_JMP32 | BPF_EXIT;
    /// A [`SET_STORE_FIXED`] followed by an `exit` (a constant stored to global data and
    /// returned): its work, then the exit, charging `src` slots beyond its own. The code of
    /// an `exit` of register source, which no instruction has (decoding faults it).
    pub const SET_STORE_EXIT: u8 = BPF_JMP | BPF_EXIT | BPF_X;
    /// Continues `src` slots on: constant sets whose registers nothing reads after them
    /// ([`absorb_dead_sets`](super::decode)), charged with the run they lie in as the slots
    /// would be. The code of a 32-bit `exit` of register source, which no instruction has
    /// (decoding faults it).
    pub const SKIP: u8 = BPF_JMP32 | BPF_EXIT | BPF_X;
    /// `dst = imm`, then continues `src` slots on: a constant move whose register is read,
    /// before a [`SKIP`] ([`absorb_dead_sets`](super::decode)). The code of a 32-bit `ja` of
    /// register source, which no instruction has (decoding faults it).
    pub const SET_SKIP: u8 = BPF_JMP32 | BPF_X;
    /// A run of byte moves (loads, stores, moves, byte shifts and masks) as one gather and
    /// one scatter: `imm` indexes the decoded program's list of them (`shuffle`). A code no
    /// instruction has (`neg` by register).
    pub const SHUFFLE: u8 = BPF_ALU | BPF_NEG | BPF_X;
}

/// Flags in the `aux` of superinstructions, above the 4-bit register field that most of them
/// keep there (each flag names the ops it belongs to), and the one value of a real `exit`'s
/// `aux`.
pub(super) mod flag {
    /// `BOUNDS`: the jump is `if dst <= aux goto` (the limit check written the other way
    /// round), not `if dst > aux goto`.
    pub const BOUNDS_LE: u8 = 0x10;
    /// `LOOKUP_BRANCH` with a null branch (`aux` 1): the op at the fall-through (`+ 4`) is an
    /// [`INC_MEM`](super::code::INC_MEM) through r0, done by the lookup's own op.
    pub const THEN_INC: u8 = 0x20;
    /// `UREM64`: the divisor is the immediate.
    pub const UREM_BY_IMM: u8 = 0x10;
    /// `UREM64` (with [`UREM_BY_IMM`]): a `mov64 src, imm` comes first (the divisor, from a
    /// register of known value), one slot more.
    pub const UREM_SET_SRC: u8 = 0x20;
    /// `UREM64`: an `if dst != 0 goto off` follows, one slot more.
    pub const UREM_BRANCH: u8 = 0x40;
    /// `UREM64` with [`UREM_BRANCH`]: the jump is `if dst == 0 goto off` instead.
    pub const UREM_BRANCH_ZERO: u8 = 0x80;
    /// `SET2` and `SET_STORE_FIXED`: the constant was moved by a 32-bit `mov` (zero-extended).
    pub const SET_NARROW: u8 = 0x10;
    /// `SET_STORE_FIXED`: where the store's size (`BPF_SIZE >> 3`) sits in `aux`.
    pub const STORE_SIZE_SHIFT: u8 = 5;
    /// `MOVE_SUB`: 64-bit operations (else 32-bit).
    pub const WIDE: u8 = 0x10;
    /// A real `exit` with this `aux` stands for a `ja` to an `exit`: it charges the jump's
    /// slot too. An `exit`'s `aux` is a count of slots it charges beyond its own (0 or this
    /// 1), not a set of flags.
    pub const EXIT_AFTER_JA: u8 = 1;
}

pub(super) use code::FAULT;

/// One pre-decoded instruction (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Op {
    /// A BPF opcode byte, or one of [`code`]'s internal codes.
    pub code: u8,
    /// Destination register (0..=15; r11..r15 are never valid but index harmlessly).
    pub dst: u8,
    /// Source register (0..=15).
    pub src: u8,
    /// Memory displacement; absolute target of a jump or local call; the `off` modifier of
    /// ALU instructions (signed division, `movsx` width).
    pub off: i32,
    /// Sign-extended immediate; the whole `ld_imm64` value; a helper index for calls; a fault
    /// index for [`FAULT`].
    pub imm: u64,
    /// A third register or a flag, for superinstructions (and [`flag::EXIT_AFTER_JA`] on a
    /// real `exit`).
    pub aux: u8,
}

/// A program in the interpreter's form.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    /// One op per instruction slot, plus the final [`FAULT`] sentinel; superinstructions
    /// fused in.
    pub(super) ops: Box<[Op]>,
    /// Helpers the program calls, indexed by a call's `imm`.
    pub(super) helpers: Box<[&'static Helper]>,
    /// Errors raised by [`FAULT`] ops, indexed by their `imm`.
    pub(super) faults: Box<[VmError]>,
    /// How many bytes from the run's initial r1 the [`code::LDX_CTX`] ops read, at most
    /// (0: there are none).
    pub(super) ctx_extent: u64,
    /// The runs of byte moves the [`code::SHUFFLE`] ops stand for, indexed by their `imm`.
    pub(super) shuffles: Box<[super::shuffle::Shuffle]>,
    /// The maps whose storage the `*_FIXED` ops access without a check, held so that the
    /// storage lives as long as this form of the program, wherever it is run. Never read.
    _owners: Box<[Arc<dyn Map>]>,
}

/// The helper with kernel ID `id` (unit tests add private helpers).
fn resolve_helper(id: i32) -> Option<&'static Helper> {
    #[cfg(test)]
    if let Some(h) = super::tests::test_helper(id) {
        return Some(h);
    }
    helpers::get(id)
}

/// Whether any instruction writes r10 (ALU, LDX and ld_imm64 destinations, the register of a
/// fetching atomic). The verifier and `insn::validate` forbid it, but decoding does not rely on
/// them: if one does, r10 can hold anything and no stack access may skip its check.
fn writes_frame_pointer(insns: &[Insn]) -> bool {
    insns.iter().any(|i| {
        let dst_written = matches!(i.class(), BPF_ALU | BPF_ALU64 | BPF_LDX) || i.is_ld_imm64();
        let fetch = i.op & 0xe0 == BPF_ATOMIC && i.class() == BPF_STX && i.imm & BPF_FETCH != 0;
        // Masked as the decoder masks them: the register the loop will really write.
        (dst_written && i.dst & 0x0f == FRAME_REG) || (fetch && i.src & 0x0f == FRAME_REG)
    })
}

/// Whether `[r10 + off, r10 + off + size)` lies inside the current 512-byte frame.
fn in_frame(off: i16, size: usize) -> bool {
    let off = i64::from(off);
    off >= -(STACK_SIZE as i64) && off + size as i64 <= 0
}

impl Decoded {
    /// Decodes `insns`, superinstructions fused but nothing proven (see
    /// [`Decoded::with_fixed`]). Never fails: what cannot run becomes a fault op.
    pub fn new(insns: &[Insn]) -> Decoded {
        // SAFETY: no fixed regions, and nothing is proven.
        unsafe { Decoded::decode(insns, &[], &[], Box::new([]), false) }
    }

    /// Decodes `insns` whose function entries are `functions`, proving loads and stores
    /// through constant addresses against `fixed` ([`super::fixed`]), and keeping `owners`.
    ///
    /// # Safety
    /// Every region of `fixed` must be memory that stays valid, with the permission it gives,
    /// for as long as the returned value (or a clone of it) exists: the storage of `owners`,
    /// which it holds, or memory that outlives it otherwise. The contents of a
    /// [`RegionKind::Constant`](crate::vm::memory::RegionKind::Constant) region must not change
    /// in that time either: they are folded into the ops.
    pub unsafe fn with_fixed(
        insns: &[Insn],
        functions: &[usize],
        fixed: &[Region],
        owners: Box<[Arc<dyn Map>]>,
    ) -> Decoded {
        // SAFETY: forwarded contract.
        unsafe { Decoded::decode(insns, functions, fixed, owners, true) }
    }

    /// [`Decoded::with_fixed`], with what `prove` runs ([`super::fixed::prove`]: accesses
    /// through constant addresses and the context, constant folding) or not.
    ///
    /// # Safety
    /// As [`Decoded::with_fixed`].
    unsafe fn decode(
        insns: &[Insn],
        functions: &[usize],
        fixed: &[Region],
        owners: Box<[Arc<dyn Map>]>,
        prove: bool,
    ) -> Decoded {
        let mut d = Decoder {
            ops: Vec::with_capacity(insns.len() + 1),
            helpers: Vec::new(),
            faults: Vec::new(),
            len: insns.len(),
        };
        let stack_ok = !writes_frame_pointer(insns);
        let mut pc = 0;
        while pc < insns.len() {
            let insn = insns[pc];
            if insn.is_ld_imm64() {
                let op = d.ld_imm64(pc, insn, insns.get(pc + 1).copied());
                d.ops.push(op);
                if pc + 1 < insns.len() {
                    // Reaching the second slot means a jump into the middle of an ld_imm64.
                    let tail = d.fault(VmError::Unsupported {
                        insn: pc + 1,
                        what: "opcode 0x00".into(),
                    });
                    d.ops.push(tail);
                }
                pc += 2;
            } else {
                let op = d.op(pc, insn, stack_ok);
                d.ops.push(op);
                pc += 1;
            }
        }
        let end = d.fault(VmError::Unsupported {
            insn: insns.len(),
            what: "execution left the program".into(),
        });
        d.ops.push(end);
        // Tests compare programs against their plain, slot-by-slot form.
        #[cfg(test)]
        let plain = super::tests::PLAIN_DECODING.with(|p| p.get());
        #[cfg(not(test))]
        let plain = false;
        let mut ctx_extent = 0;
        let mut shuffles = Vec::new();
        if !plain {
            let mut live = Vec::new();
            if prove {
                // SAFETY: the regions are valid memory (contract).
                ctx_extent = unsafe { super::fixed::prove(&mut d.ops, functions, fixed) };
                live = super::live::live_in(&d.ops, functions);
            }
            // The runs of byte moves are found in the ops as they are before fusion (each
            // slot its own instruction), and replace whatever fusion put at their start.
            let unfused = d.ops.clone();
            fuse(&mut d.ops, fixed);
            fuse_lookup_inc(&mut d.ops);
            fuse_store_exit(&mut d.ops);
            absorb_dead_sets(&mut d.ops, &live);
            shuffles = super::shuffle::fuse_runs(&mut d.ops, &unfused, &live);
        }
        // The loop has no arm for these codes ([`super::exec::is_hole`]), and relies on
        // meeting none: each becomes the fault the instruction raises, naming its slot.
        for pc in 0..d.ops.len() {
            let op = d.ops[pc].code;
            if super::exec::is_hole(op) {
                d.ops[pc] = d.fault(VmError::Unsupported {
                    insn: pc,
                    what: format!("opcode {op:#04x}"),
                });
            }
        }
        Decoded {
            ops: d.ops.into_boxed_slice(),
            helpers: d.helpers.into_boxed_slice(),
            faults: d.faults.into_boxed_slice(),
            ctx_extent,
            shuffles: shuffles.into_boxed_slice(),
            _owners: owners,
        }
    }
}

/// Decoding state.
struct Decoder {
    ops: Vec<Op>,
    helpers: Vec<&'static Helper>,
    faults: Vec<VmError>,
    /// Instruction slots in the program.
    len: usize,
}

impl Decoder {
    /// A [`FAULT`] op raising `err`.
    fn fault(&mut self, err: VmError) -> Op {
        self.faults.push(err);
        Op {
            code: FAULT,
            dst: 0,
            src: 0,
            off: 0,
            imm: (self.faults.len() - 1) as u64,
            aux: 0,
        }
    }

    /// The absolute target `pc + 1 + delta`, or a fault op if it lies outside the program.
    fn target(&mut self, pc: usize, delta: i64) -> Result<i32, Op> {
        let t = pc as i64 + 1 + delta;
        if (0..self.len as i64).contains(&t) {
            Ok(t as i32)
        } else {
            Err(self.fault(VmError::Unsupported {
                insn: pc,
                what: format!("jump to {t}, outside the program"),
            }))
        }
    }

    fn ld_imm64(&mut self, pc: usize, insn: Insn, next: Option<Insn>) -> Op {
        let Some(next) = next else {
            return self.fault(VmError::Unsupported {
                insn: pc,
                what: "truncated ld_imm64".into(),
            });
        };
        let value = match insn.src {
            PSEUDO_NONE => insn.imm64(next),
            // The function value is the callee's absolute instruction index.
            PSEUDO_FUNC => (pc as i64 + 1 + i64::from(insn.imm)) as u64,
            other => {
                return self.fault(VmError::Unsupported {
                    insn: pc,
                    what: format!("unresolved ld_imm64 pseudo source {other}"),
                })
            }
        };
        Op {
            code: insn.op,
            dst: insn.dst & 0x0f,
            src: 0,
            off: 0,
            imm: value,
            aux: 0,
        }
    }

    fn op(&mut self, pc: usize, insn: Insn, stack_ok: bool) -> Op {
        let mut op = Op {
            code: insn.op,
            dst: insn.dst & 0x0f,
            src: insn.src & 0x0f,
            off: i32::from(insn.off),
            imm: insn.imm as i64 as u64,
            aux: 0,
        };
        let class = insn.class();
        let unsupported = |what: String| VmError::Unsupported { insn: pc, what };
        match class {
            // No such modes; their codes carry the proven accesses of `super::fixed`.
            BPF_LDX | BPF_ST | BPF_STX if matches!(insn.op & 0xe0, 0xa0 | 0xe0) => {
                return self.fault(unsupported(format!("opcode {:#04x}", insn.op)))
            }
            BPF_ALU | BPF_ALU64 => match insn.op & 0xf0 {
                // No such operations; their codes carry superinstructions.
                0xe0 | 0xf0 => return self.fault(unsupported(format!("opcode {:#04x}", insn.op))),
                BPF_END if !matches!(insn.imm, 16 | 32 | 64) => {
                    return self.fault(unsupported("byte swap width".into()))
                }
                BPF_END if class == BPF_ALU64 && insn.op & BPF_X != 0 => {
                    return self.fault(unsupported(format!("opcode {:#04x}", insn.op)))
                }
                BPF_MOV if insn.op & BPF_X != 0 && matches!(insn.off, 8 | 16 | 32) => {
                    if class == BPF_ALU64 {
                        op.code = code::MOVSX64;
                    } else if insn.off == 32 {
                        // 32-bit movsx has no 32-bit width; the old loop moved the value.
                        op.off = 0;
                    } else {
                        op.code = code::MOVSX32;
                    }
                }
                _ => {}
            },
            BPF_JMP | BPF_JMP32 => match insn.op & 0xf0 {
                // ja, call and exit have no register-source form; 0xe0 and 0xf0 are no
                // operations (their codes carry superinstructions).
                BPF_JA | BPF_CALL | BPF_EXIT if insn.op & BPF_X != 0 => {
                    return self.fault(unsupported(format!("opcode {:#04x}", insn.op)))
                }
                0xe0 | 0xf0 => return self.fault(unsupported(format!("opcode {:#04x}", insn.op))),
                // A 32-bit `exit` does not exist; its code carries `EXIT_CONST`.
                BPF_EXIT if class == BPF_JMP32 => {
                    return self.fault(unsupported(format!("opcode {:#04x}", insn.op)))
                }
                BPF_EXIT => {}
                BPF_CALL if class == BPF_JMP => match insn.src {
                    CALL_HELPER => match resolve_helper(insn.imm) {
                        Some(h) => {
                            if h.id == super::inline::MAP_LOOKUP_ELEM {
                                op.code = code::CALL_LOOKUP;
                            }
                            op.imm = self.helpers.len() as u64;
                            self.helpers.push(h);
                        }
                        None => {
                            return self.fault(VmError::UnknownHelper {
                                insn: pc,
                                id: insn.imm,
                            })
                        }
                    },
                    CALL_LOCAL => match self.target(pc, i64::from(insn.imm)) {
                        Ok(t) => {
                            op.code = code::LOCAL_CALL;
                            op.off = t;
                        }
                        Err(fault) => return fault,
                    },
                    _ => return self.fault(unsupported("kfunc call".into())),
                },
                BPF_JA if class == BPF_JMP32 => match self.target(pc, i64::from(insn.imm)) {
                    Ok(t) => {
                        op.code = BPF_JMP | BPF_JA;
                        op.off = t;
                    }
                    Err(fault) => return fault,
                },
                _ => match self.target(pc, i64::from(insn.off)) {
                    Ok(t) => op.off = t,
                    Err(fault) => return fault,
                },
            },
            BPF_LDX
                if insn.op & 0xe0 == BPF_MEM
                    && stack_ok
                    && insn.src == FRAME_REG
                    && in_frame(insn.off, insn.mem_size()) =>
            {
                op.code = code::LDX_STACK | size(insn.op);
            }
            BPF_STX
                if insn.op & 0xe0 == BPF_MEM
                    && stack_ok
                    && insn.dst == FRAME_REG
                    && in_frame(insn.off, insn.mem_size()) =>
            {
                op.code = code::STX_STACK | size(insn.op);
            }
            BPF_ST
                if insn.op & 0xe0 == BPF_MEM
                    && stack_ok
                    && insn.dst == FRAME_REG
                    && in_frame(insn.off, insn.mem_size()) =>
            {
                op.code = code::ST_STACK | size(insn.op);
            }
            BPF_STX if insn.op & 0xe0 == BPF_ATOMIC => {
                let known = [
                    BPF_ADD as i32,
                    BPF_OR as i32,
                    BPF_AND as i32,
                    BPF_XOR as i32,
                ]
                .iter()
                .any(|&a| insn.imm == a || insn.imm == a | BPF_FETCH)
                    || insn.imm == BPF_XCHG
                    || insn.imm == BPF_CMPXCHG;
                if !known {
                    return self.fault(unsupported(format!("atomic operation {:#x}", insn.imm)));
                }
            }
            BPF_LD => {
                // Only ld_imm64 is valid in this class (handled by the caller); the internal
                // codes live here, so a real opcode of this class must never reach the loop.
                return self.fault(unsupported(format!("opcode {:#04x}", insn.op)));
            }
            _ => {}
        }
        op
    }
}

/// `mov d, s; sh d, k1; sh s, k2; or d, s` (either shift first, each left or right by a
/// constant, all four 32-bit or all 64-bit, `d != s`): the rotate idiom (`(x << k) | (x >>
/// (32 - k))`, as in jhash), which BPF has no instruction for. The fused op leaves `s`
/// shifted and `d` the or of both shifts, as the four slots do.
fn shift_pair_or(a: Op, b: Op, c: Option<Op>, d: Option<Op>) -> Option<Op> {
    let (c, d) = (c?, d?);
    let (class, code) = match a.code {
        x if x == BPF_ALU64 | BPF_MOV | BPF_X => (BPF_ALU64, code::SHIFT_OR64),
        x if x == BPF_ALU | BPF_MOV | BPF_X && a.off == 0 => (BPF_ALU, code::SHIFT_OR32),
        _ => return None,
    };
    let (dst, src) = (a.dst, a.src);
    let shift = |op: Op| match op.code {
        x if x == class | BPF_LSH | BPF_K => Some(true),
        x if x == class | BPF_RSH | BPF_K => Some(false),
        _ => None,
    };
    let (left_b, left_c) = (shift(b)?, shift(c)?);
    let (dst_shift, src_shift) = match (b.dst, c.dst) {
        (x, y) if x == dst && y == src => ((left_b, b.imm), (left_c, c.imm)),
        (x, y) if x == src && y == dst => ((left_c, c.imm), (left_b, b.imm)),
        _ => return None,
    };
    let or = class | BPF_OR | BPF_X;
    if dst == src || d.code != or || d.dst != dst || d.src != src {
        return None;
    }
    Some(Op {
        code,
        dst,
        src,
        // The shift counts are immediates the loop masks to the width, as for plain shifts.
        off: src_shift.1 as i32,
        imm: dst_shift.1,
        aux: u8::from(dst_shift.0) | u8::from(src_shift.0) << 1,
    })
}

/// `ldx t, [p + off]; add t, k; stx [p + off], t` (`t != p`; 8-byte cells take a 64-bit
/// add, 4-byte ones either): a counter update, as one [`code::INC_MEM`] op.
fn inc_mem(a: Op, b: Op, c: Option<Op>) -> Option<Op> {
    const ADD64_K: u8 = BPF_ALU64 | BPF_ADD | BPF_K;
    const ADD32_K: u8 = BPF_ALU | BPF_ADD | BPF_K;
    let c = c?;
    let narrow = match (a.code, c.code) {
        (x, y) if x == BPF_LDX | BPF_MEM | BPF_DW && y == BPF_STX | BPF_MEM | BPF_DW => 0,
        (x, y) if x == BPF_LDX | BPF_MEM | BPF_W && y == BPF_STX | BPF_MEM | BPF_W => 1,
        _ => return None,
    };
    // A 64-bit cell takes a 64-bit add only (a 32-bit add would truncate).
    let fits = (b.code == ADD64_K || (b.code == ADD32_K && narrow == 1))
        && b.dst == a.dst
        && c.src == a.dst
        && c.dst == a.src
        && c.off == a.off
        && a.dst != a.src;
    fits.then_some(Op {
        code: code::INC_MEM,
        dst: a.dst,
        src: a.src,
        off: a.off,
        imm: b.imm,
        aux: narrow | if b.code == ADD32_K { 2 } else { 0 },
    })
}

/// `mov d, k; stx [r10 + o], d; mov r, r10; add r, o` (`mov` of either width, a 4- or 8-byte
/// store proven inside the frame): a map key written to the stack and its address taken for
/// the lookup, as one [`code::KEY_ADDR`] op.
fn key_addr(a: Op, b: Op, c: Option<Op>, d: Option<Op>) -> Option<Op> {
    let (c, d) = (c?, d?);
    let narrow_move = match a.code {
        x if x == BPF_ALU64 | BPF_MOV | BPF_K => false,
        x if x == BPF_ALU | BPF_MOV | BPF_K => true,
        _ => return None,
    };
    let wide_store = match b.code {
        code::STX_STACK_W => false,
        code::STX_STACK_DW => true,
        _ => return None,
    };
    let takes_key_address = c.code == BPF_ALU64 | BPF_MOV | BPF_X
        && c.src == FRAME_REG
        && d.code == BPF_ALU64 | BPF_ADD | BPF_K
        && d.dst == c.dst
        && d.imm as i64 == i64::from(b.off);
    if b.src != a.dst || !takes_key_address {
        return None;
    }
    Some(Op {
        code: code::KEY_ADDR,
        dst: a.dst,
        src: c.dst,
        off: b.off,
        imm: a.imm,
        aux: u8::from(narrow_move) | u8::from(wide_store) << 1,
    })
}

/// The encoding of the ops built on two loads: the first load's destination, base and offset
/// in `dst`, `src` and `off`; the second's offset in `imm`, and in `aux` the register `other`
/// (the second's destination, or the register the op combines into) and the second's base.
fn two_loads(code: u8, first: Op, second: Op, other: u8) -> Op {
    Op {
        code,
        dst: first.dst,
        src: first.src,
        off: first.off,
        imm: second.off as i64 as u64,
        aux: other | second.src << 4,
    }
}

/// `ldxb`, `ldxb`, `lsh32 8`, `or32` in either of clang's two orders (a little-endian `__u16`
/// read a byte at a time, see [`code::BYTES16_HI`] and [`code::BYTES16_LO`]). Both loads
/// stay checked; the fused op runs the four slots in order, whatever registers they share.
fn bytes16(a: Op, b: Op, c: Option<Op>, d: Option<Op>) -> Option<Op> {
    const LDX_B: u8 = BPF_LDX | BPF_MEM | BPF_B;
    let (c, d) = (c?, d?);
    let shl8 = |op: Op, r: u8| op.code == BPF_ALU | BPF_LSH | BPF_K && op.imm == 8 && op.dst == r;
    let or =
        |op: Op, r: u8, s: u8| op.code == BPF_ALU | BPF_OR | BPF_X && op.dst == r && op.src == s;
    if a.code != LDX_B {
        return None;
    }
    // High byte first: ldxb a; lsh32 a, 8; ldxb c; or32 a, c.
    let (code, second, other) = if shl8(b, a.dst) && c.code == LDX_B && or(d, a.dst, c.dst) {
        (code::BYTES16_HI, c, c.dst)
    // Low byte first: ldxb a; ldxb b; lsh32 b, 8; or32 b, a.
    } else if b.code == LDX_B && shl8(c, b.dst) && or(d, b.dst, a.dst) {
        (code::BYTES16_LO, b, b.dst)
    } else {
        return None;
    };
    Some(two_loads(code, a, second, other))
}

/// `mov64 t, x; div64 t, y; mul64 t, y; sub64 x, t` (unsigned, `y` a register or an
/// immediate): `x %= y` as clang writes it, leaving `t = x / y * y`, as one
/// [`code::UREM64`] op.
fn urem64(a: Op, b: Op, c: Option<Op>, d: Option<Op>) -> Option<Op> {
    let (c, d) = (c?, d?);
    let (t, x) = (a.dst, a.src);
    let by_imm = match b.code {
        v if v == BPF_ALU64 | BPF_DIV | BPF_X => false,
        v if v == BPF_ALU64 | BPF_DIV | BPF_K => true,
        _ => return None,
    };
    let mul = BPF_ALU64 | BPF_MUL | (b.code & BPF_X);
    let same_divisor = c.code == mul && c.src == b.src && (!by_imm || c.imm == b.imm);
    let is_idiom = a.code == BPF_ALU64 | BPF_MOV | BPF_X
        && b.dst == t
        && b.off == 0
        && c.dst == t
        && same_divisor
        && d.code == BPF_ALU64 | BPF_SUB | BPF_X
        && d.dst == x
        && d.src == t;
    is_idiom.then_some(Op {
        code: code::UREM64,
        dst: x,
        src: b.src,
        off: 0,
        imm: b.imm,
        aux: t | if by_imm { flag::UREM_BY_IMM } else { 0 },
    })
}

/// Marks each [`code::LOOKUP_BRANCH`] with a null branch whose fall-through is an
/// [`code::INC_MEM`] through r0 (`if (v) *v += k`, the per-CPU counter idiom), so that the
/// lookup's op does the increment too ([`flag::THEN_INC`]).
fn fuse_lookup_inc(ops: &mut [Op]) {
    for i in 0..ops.len() {
        let inc_follows = ops
            .get(i + 4)
            .is_some_and(|n| n.code == code::INC_MEM && n.src == 0);
        if ops[i].code == code::LOOKUP_BRANCH && ops[i].aux == 1 && inc_follows {
            ops[i].aux |= flag::THEN_INC;
        }
    }
}

/// Makes each [`code::SET_STORE_FIXED`] whose next op (past its four slots) is an `exit` a
/// [`code::SET_STORE_EXIT`] that exits too, charging the exit's slots.
fn fuse_store_exit(ops: &mut [Op]) {
    const EXIT: u8 = BPF_JMP | BPF_EXIT;
    for i in 0..ops.len() {
        let Some(exit) = ops.get(i + 4).filter(|e| e.code == EXIT) else {
            continue;
        };
        if ops[i].code == code::SET_STORE_FIXED {
            // The exit charges its own slot and, standing for a `ja`, the jump's (`aux`).
            ops[i].src = 4 + exit.aux;
            ops[i].code = code::SET_STORE_EXIT;
        }
    }
}

/// The size field of a memory op's code (`BPF_W`, `BPF_H`, `BPF_B`, `BPF_DW`).
fn size(code: u8) -> u8 {
    code & 0x18
}

/// A memory op's code without its size: class and mode (`BPF_LDX | BPF_MEM`, ...).
fn class_mode(code: u8) -> u8 {
    code & !0x18
}

/// `ld_imm64 a, X; ldx v, [a + 0]; add v, k|x; stx [a + 0], v` with both accesses proven at
/// X (a counter in global data), as one [`code::INC_FIXED`] op; `a` is the ld_imm64 and
/// `rest` the slots after its two.
fn fixed_counter(a: Op, rest: &[Op]) -> Option<Op> {
    let [load, add, store, ..] = *rest else {
        return None;
    };
    let size = size(load.code);
    let (add_k, add_x) = match size {
        BPF_DW => (BPF_ALU64 | BPF_ADD | BPF_K, BPF_ALU64 | BPF_ADD | BPF_X),
        BPF_W => (BPF_ALU | BPF_ADD | BPF_K, BPF_ALU | BPF_ADD | BPF_X),
        _ => return None,
    };
    let v = load.dst;
    let fits = load.code == code::LDX_FIXED | size
        && load.src == a.dst
        && load.off == 0
        && load.imm == a.imm
        && v != a.dst
        && (add.code == add_k || add.code == add_x)
        && add.dst == v
        && store.code == code::STX_FIXED | size
        && store.dst == a.dst
        && store.src == v
        && store.imm == a.imm;
    if !fits {
        return None;
    }
    let register = add.code == add_x;
    Some(Op {
        code: code::INC_FIXED | size,
        dst: v,
        src: if register { add.src } else { 0 },
        // A 32-bit immediate, sign-extended as the add's.
        off: if register { 0 } else { add.imm as i32 },
        imm: a.imm,
        aux: a.dst | if register { 0x10 } else { 0 },
    })
}

/// Replaces the first op of each common sequence by a superinstruction doing all of it.
///
/// Only sequences of plain ops, accesses proven at decoding and local calls fuse (never a
/// fault or a helper call), and the fused op does exactly what its slots do in order; the
/// later slots keep their own ops, so a program runs the same whether or not a jump lands
/// inside a sequence.
fn fuse(ops: &mut [Op], fixed: &[Region]) {
    const JEQ_K: u8 = BPF_JMP | BPF_JEQ | BPF_K;
    const JNE_K: u8 = BPF_JMP | BPF_JNE | BPF_K;
    const LD_IMM64: u8 = BPF_LD | BPF_IMM | BPF_DW;
    const EXIT: u8 = BPF_JMP | BPF_EXIT;
    for i in 0..ops.len().saturating_sub(1) {
        let (a, b) = (ops[i], ops[i + 1]);
        let c = ops.get(i + 2).copied();
        let d = ops.get(i + 3).copied();
        if a.code == LD_IMM64 {
            // The op after an ld_imm64's two slots.
            let Some(m) = c else { continue };
            if let Some(inc) = fixed_counter(a, &ops[i + 2..]) {
                ops[i] = inc;
                continue;
            }
            if let Some(set) = set_store_fixed(a, &ops[i + 2..]).or_else(|| set2(a, ops, i)) {
                ops[i] = set;
                continue;
            }
            // Proven for every path into the access, or for this one: the address is the
            // ld_imm64's own value (the access slot itself may be reached from elsewhere).
            let here = |access| {
                let addr = a.imm.wrapping_add(m.off as i64 as u64);
                super::fixed::allows(fixed, addr, mem_width(m.code) as u64, access)
            };
            let plain_load = class_mode(m.code) == BPF_LDX | BPF_MEM && m.src == a.dst;
            let plain_store = class_mode(m.code) == BPF_STX | BPF_MEM && m.dst == a.dst;
            let proven_load =
                class_mode(m.code) == code::LDX_FIXED || (plain_load && here(Access::Read));
            let proven_store =
                class_mode(m.code) == code::STX_FIXED || (plain_store && here(Access::Write));
            if (proven_load && m.src == a.dst) || (proven_store && m.dst == a.dst) {
                // The access was proven through this very ld_imm64's register: the fused op
                // sets the register and accesses `imm + off` (the address it proved) directly.
                ops[i] = Op {
                    code: if proven_load {
                        code::LDX_ABS_FIXED
                    } else {
                        code::STX_ABS_FIXED
                    } | size(m.code),
                    dst: m.dst,
                    src: m.src,
                    off: m.off,
                    imm: a.imm,
                    aux: a.dst,
                };
            } else if class_mode(m.code) == BPF_LDX | BPF_MEM && m.src == a.dst {
                ops[i] = Op {
                    code: code::LDX_ABS | size(m.code),
                    dst: m.dst,
                    src: a.dst,
                    off: m.off,
                    imm: a.imm,
                    aux: a.dst,
                };
            } else if class_mode(m.code) == BPF_STX | BPF_MEM && m.dst == a.dst {
                ops[i] = Op {
                    code: code::STX_ABS | size(m.code),
                    dst: a.dst,
                    src: m.src,
                    off: m.off,
                    imm: a.imm,
                    aux: a.dst,
                };
            } else if m.code == code::CALL_LOOKUP {
                let branch = d.filter(|j| j.dst == 0 && j.imm == 0);
                let (aux, off) = match branch {
                    Some(j) if j.code == JEQ_K => (1, j.off),
                    Some(j) if j.code == JNE_K => (2, j.off),
                    _ => (0, 0),
                };
                ops[i] = Op {
                    code: code::LOOKUP_BRANCH,
                    dst: a.dst,
                    src: 0,
                    off,
                    imm: a.imm,
                    aux,
                };
            }
            continue;
        }
        // Only to a real `exit`: one already standing for a `ja` (reached backward) would
        // charge one slot of the chain too few.
        let to_exit = |t: &Op| t.code == EXIT && t.aux == 0;
        if a.code == BPF_JMP | BPF_JA && ops.get(a.off as usize).is_some_and(to_exit) {
            // A jump to an `exit` exits, charging the jump's slot too.
            ops[i] = Op {
                aux: flag::EXIT_AFTER_JA,
                ..ops[a.off as usize]
            };
            continue;
        }
        // The first pattern that matches, in order of preference.
        let fused = inc_mem(a, b, c)
            .or_else(|| set_divisor_urem64(a, &ops[i + 1..]))
            .or_else(|| urem64(a, b, c, d).map(|u| then_branch(u, ops.get(i + 4))))
            .or_else(|| shift_pair_or(a, b, c, d))
            .or_else(|| move_call(a, b))
            .or_else(|| copy_mem(a, b))
            .or_else(|| key_addr(a, b, c, d))
            .or_else(|| bytes16(a, b, c, d))
            .or_else(|| load_pair(a, b, c, d))
            .or_else(|| address(a, b, c))
            .or_else(|| set_stack(a, b))
            .or_else(|| move_sub(a, b));
        if let Some(op) = fused {
            ops[i] = op;
        }
    }
}

/// The [`flag::SET_NARROW`] bit for `op` if it is a `mov d, k` whose immediate the `SET*` ops
/// can carry in `off`: 0 for a 64-bit move (sign-extended), the flag for a 32-bit one
/// (zero-extended from the low half).
fn constant_move(op: Op) -> Option<u8> {
    if !super::fold::fits_immediate(op.imm) {
        return None;
    }
    match op.code {
        c if c == BPF_ALU64 | BPF_MOV | BPF_K => Some(0),
        c if c == BPF_ALU | BPF_MOV | BPF_K => Some(flag::SET_NARROW),
        _ => None,
    }
}

/// `ld_imm64 a, X; mov d, k` (the move usually a folded load of a constant through `a`,
/// [`super::fold`]) and the no-ops after it, as one [`code::SET2`] op; `a` is the ld_imm64
/// at slot `i`.
fn set2(a: Op, ops: &[Op], i: usize) -> Option<Op> {
    let m = *ops.get(i + 2)?;
    let narrow = constant_move(m)?;
    let mut slots = 3;
    while slots < 15
        && ops
            .get(i + slots)
            .is_some_and(|n| super::fold::is_no_op(n, i + slots))
    {
        slots += 1;
    }
    Some(Op {
        code: code::SET2,
        dst: m.dst,
        src: slots as u8,
        off: m.imm as i32,
        imm: a.imm,
        aux: a.dst | narrow,
    })
}

/// The constant a [`code::SET2`] or [`code::SET_STORE_FIXED`] op moves: its `off`,
/// zero-extended from 32 bits with [`flag::SET_NARROW`] (a `mov32`), else sign-extended (a
/// `mov64`).
#[inline(always)]
pub(super) fn set_constant(op: &Op) -> u64 {
    if op.aux & flag::SET_NARROW != 0 {
        u64::from(op.off as u32)
    } else {
        op.off as i64 as u64
    }
}

/// Constant sets whose registers nothing reads after them (`live`: each slot's live
/// registers before fusion, empty when unknown), taken into the op after them so that they
/// are never dispatched:
/// - a constant move, `ld_imm64` or `SET2` followed by a [`code::EXIT_CONST`]: the exit
///   moves up and charges their slots too. `xdp_globals` takes the address of a verdict in
///   `.rodata` and jumps to the load and `exit` that folded into one.
/// - a `SET2` (cheaper skipped than run), and any of them before a skip: a [`code::SKIP`]
///   over their slots. `xdp_globals` loads a sampling rate that folds to an immediate and
///   then sets both registers again.
/// - a constant move whose register is read, before a skip: a [`code::SET_SKIP`] that moves
///   the value and covers the skip's slots. `xdp_globals` sets `r0` and then loads a limit
///   it compares as an immediate.
///
/// Runs back to front, so a chain of dead sets all go.
fn absorb_dead_sets(ops: &mut [Op], live: &[u16]) {
    const LD_IMM64: u8 = BPF_LD | BPF_IMM | BPF_DW;
    for at in (0..ops.len().saturating_sub(1)).rev() {
        let m = ops[at];
        let (slots, written) = match m.code {
            LD_IMM64 => (2, 1u16 << (m.dst & 0x0f)),
            code::SET2 => (
                usize::from(m.src),
                1u16 << (m.aux & 0x0f) | 1u16 << (m.dst & 0x0f),
            ),
            _ if constant_move(m).is_some() => (1, 1u16 << (m.dst & 0x0f)),
            _ => continue,
        };
        let dead = live
            .get(at + slots)
            .is_some_and(|&after| after & written == 0);
        let Some(&next) = ops.get(at + slots) else {
            continue;
        };
        // Whether the merged op can count these slots and the next op's `count` in the
        // one-byte field it keeps them in.
        let fits = |count: u8| slots + usize::from(count) <= usize::from(u8::MAX);
        match next.code {
            code::EXIT_CONST if dead && fits(next.aux) => {
                ops[at] = Op {
                    aux: next.aux + slots as u8,
                    ..next
                };
            }
            code::SKIP if dead && fits(next.src) => {
                ops[at] = skip(slots + usize::from(next.src));
            }
            code::SKIP if fits(next.src) => {
                // Only a constant move merges (an `ld_imm64` or a `SET2` would need a set
                // of its own register kept).
                let Some(value) = super::fold::moved_constant(&m) else {
                    continue;
                };
                ops[at] = Op {
                    code: code::SET_SKIP,
                    dst: m.dst,
                    src: (slots + usize::from(next.src)) as u8,
                    off: 0,
                    imm: value,
                    aux: 0,
                };
            }
            _ if dead && m.code == code::SET2 => ops[at] = skip(slots),
            _ => {}
        }
    }
}

/// A [`code::SKIP`] over `slots` slots.
fn skip(slots: usize) -> Op {
    Op {
        code: code::SKIP,
        dst: 0,
        src: slots as u8,
        off: 0,
        imm: 0,
        aux: 0,
    }
}

/// `ld_imm64 a, X; mov d, k; stx [a + 0], d` with the store proven at X (`d != a`): a
/// constant stored to global data, as one [`code::SET_STORE_FIXED`] op; `rest` are the slots
/// after the ld_imm64's two.
fn set_store_fixed(a: Op, rest: &[Op]) -> Option<Op> {
    let [m, store, ..] = *rest else {
        return None;
    };
    let narrow = constant_move(m)?;
    // The store was proven at `imm` = the address plus its offset: at the ld_imm64's value
    // itself when the offset is 0.
    let fits = class_mode(store.code) == code::STX_FIXED
        && store.dst == a.dst
        && store.src == m.dst
        && store.off == 0
        && store.imm == a.imm
        && m.dst != a.dst;
    fits.then_some(Op {
        code: code::SET_STORE_FIXED,
        dst: m.dst,
        src: 0,
        off: m.imm as i32,
        imm: a.imm,
        aux: a.dst | narrow | (size(store.code) >> 3) << flag::STORE_SIZE_SHIFT,
    })
}

/// `mov64 y, k` before a [`code::UREM64`] by the immediate `k` (the divisor of a remainder,
/// made known by [`super::fold`]): one op that sets `y` too ([`flag::UREM_SET_SRC`]), and
/// takes the test of the remainder after it ([`then_branch`]); `rest` are the slots after
/// the move.
fn set_divisor_urem64(a: Op, rest: &[Op]) -> Option<Op> {
    let [b, c, d, e, ..] = *rest else {
        return None;
    };
    let urem = urem64(b, c, Some(d), Some(e))?;
    let fits = a.code == BPF_ALU64 | BPF_MOV | BPF_K
        && urem.aux & flag::UREM_BY_IMM != 0
        && urem.imm == a.imm;
    let set = Op {
        src: a.dst,
        aux: urem.aux | flag::UREM_SET_SRC,
        ..urem
    };
    fits.then(|| then_branch(set, rest.get(4)))
}

/// `urem` with the test of the remainder that follows it (`if x != 0 goto` or `if x == 0
/// goto`, 64-bit), `next`, as [`flag::UREM_BRANCH`].
fn then_branch(urem: Op, next: Option<&Op>) -> Op {
    const JNE_K: u8 = BPF_JMP | BPF_JNE | BPF_K;
    const JEQ_K: u8 = BPF_JMP | BPF_JEQ | BPF_K;
    match next {
        Some(j) if (j.code == JNE_K || j.code == JEQ_K) && j.dst == urem.dst && j.imm == 0 => Op {
            off: j.off,
            aux: urem.aux
                | flag::UREM_BRANCH
                | if j.code == JEQ_K {
                    flag::UREM_BRANCH_ZERO
                } else {
                    0
                },
            ..urem
        },
        _ => urem,
    }
}

/// `mov d, s; sub d, t` of one width (`mov32` zero-extending): a difference into a new
/// register, as one [`code::MOVE_SUB`] op.
fn move_sub(a: Op, b: Op) -> Option<Op> {
    let wide = match (a.code, b.code) {
        (x, y) if x == BPF_ALU64 | BPF_MOV | BPF_X && y == BPF_ALU64 | BPF_SUB | BPF_X => true,
        (x, y) if x == BPF_ALU | BPF_MOV | BPF_X && y == BPF_ALU | BPF_SUB | BPF_X => false,
        _ => return None,
    };
    (a.off == 0 && b.dst == a.dst).then_some(Op {
        code: code::MOVE_SUB,
        dst: a.dst,
        src: a.src,
        off: 0,
        imm: 0,
        aux: b.src | if wide { flag::WIDE } else { 0 },
    })
}

/// `mov d, s` (64-bit, or 32-bit zero-extending) right before a local call: the argument set
/// up, as one [`code::MOV_CALL`] op.
fn move_call(a: Op, b: Op) -> Option<Op> {
    const MOV64_X: u8 = BPF_ALU64 | BPF_MOV | BPF_X;
    const MOV32_X: u8 = BPF_ALU | BPF_MOV | BPF_X;
    let is_move = a.code == MOV64_X || (a.code == MOV32_X && a.off == 0);
    (is_move && b.code == code::LOCAL_CALL).then_some(Op {
        code: code::MOV_CALL,
        dst: a.dst,
        src: a.src,
        off: b.off,
        imm: 0,
        aux: u8::from(a.code == MOV32_X),
    })
}

/// `ldx t, [p + o]; stx [q + o2], t` of one width: a copy, as one [`code::COPY_MEM`] op (the
/// store's address is read after the load, as the slots do, so `q` may be `t`).
fn copy_mem(a: Op, b: Op) -> Option<Op> {
    let is_copy = class_mode(a.code) == BPF_LDX | BPF_MEM
        && class_mode(b.code) == BPF_STX | BPF_MEM
        && size(a.code) == size(b.code)
        && b.src == a.dst;
    is_copy.then_some(Op {
        code: code::COPY_MEM | size(a.code),
        dst: a.dst,
        src: a.src,
        off: a.off,
        imm: b.off as i64 as u64,
        aux: b.dst,
    })
}

/// Two loads of one width (4 or 8 bytes) in a row, as one [`code::LDX2_W`] or
/// [`code::LDX2_DW`] op (the second's base is read after the first load's write, as the
/// slots do); not when the second load starts a counter update, which saves more.
fn load_pair(a: Op, b: Op, c: Option<Op>, d: Option<Op>) -> Option<Op> {
    let code = match (a.code, b.code) {
        (x, y) if x == y && x == BPF_LDX | BPF_MEM | BPF_W => code::LDX2_W,
        (x, y) if x == y && x == BPF_LDX | BPF_MEM | BPF_DW => code::LDX2_DW,
        (x, y) if x == y && x == code::LDX_CTX | BPF_W => code::LDX2_CTX_W,
        _ => return None,
    };
    if inc_mem(b, c?, d).is_some() {
        return None;
    }
    Some(two_loads(code, a, b, b.dst))
}

/// `mov64 d, s; add64 d, k`: pointer arithmetic ([`code::ADDR`]), and with a following
/// `if d > end goto` or `if d <= end goto` a packet bounds check ([`code::BOUNDS`]).
fn address(a: Op, b: Op, c: Option<Op>) -> Option<Op> {
    const JGT_X: u8 = BPF_JMP | BPF_JGT | BPF_X;
    const JLE_X: u8 = BPF_JMP | BPF_JLE | BPF_X;
    let is_address = a.code == BPF_ALU64 | BPF_MOV | BPF_X
        && b.code == BPF_ALU64 | BPF_ADD | BPF_K
        && b.dst == a.dst;
    if !is_address {
        return None;
    }
    let bounds = c.filter(|c| (c.code == JGT_X || c.code == JLE_X) && c.dst == a.dst);
    Some(Op {
        code: if bounds.is_some() {
            code::BOUNDS
        } else {
            code::ADDR
        },
        dst: a.dst,
        src: a.src,
        off: bounds.map_or(0, |c| c.off),
        imm: b.imm,
        aux: bounds.map_or(0, |c| {
            c.src | if c.code == JLE_X { flag::BOUNDS_LE } else { 0 }
        }),
    })
}

/// `mov d, k; stx [r10 + o], d` (4 or 8 bytes, proven in the frame): a map key on the stack,
/// as one [`code::SET_STACK_W`] or [`code::SET_STACK_DW`] op.
fn set_stack(a: Op, b: Op) -> Option<Op> {
    let narrow = match a.code {
        x if x == BPF_ALU64 | BPF_MOV | BPF_K => false,
        x if x == BPF_ALU | BPF_MOV | BPF_K => true,
        _ => return None,
    };
    let code = match b.code {
        code::STX_STACK_W => code::SET_STACK_W,
        code::STX_STACK_DW => code::SET_STACK_DW,
        _ => return None,
    };
    (b.src == a.dst).then_some(Op {
        code,
        dst: a.dst,
        src: 0,
        off: b.off,
        imm: a.imm,
        aux: u8::from(narrow),
    })
}
