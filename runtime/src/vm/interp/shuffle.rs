//! Straight-line byte moves as one op: a run of loads, stores, moves, byte shifts and byte
//! masks is evaluated symbolically at decoding and run as one gather and one scatter.
//!
//! Clang compiles a `__builtin_memcpy` between byte-aligned fields (a MAC address, a packed
//! header) into byte loads and stores, often through wider stack temporaries put together
//! with shifts and ors: swapping two MAC addresses is some forty instructions. Each is an op
//! of the loop (a dispatch) and each access a check. Here the net effect of such a run is
//! worked out once: which memory bytes and registers end up holding which original bytes
//! (of memory through one base register, of the frame, of registers as the run found them)
//! or constants. The op that stands for the run ([`code::SHUFFLE`]) checks once that the
//! whole span the run touches through its base register lies in a region that allows its
//! accesses, reads every source byte into a buffer, then writes every destination (memory,
//! and the registers read after the run) from it.
//!
//! Exactness: the symbolic values are exact (each op below is modelled byte for byte, loads
//! see the run's own earlier stores), all sources are read before anything is written (so
//! the gather sees memory as the run found it, which is what the model's original bytes
//! are), and every base access is within the checked span. Accesses through the base may
//! alias the frame only if the base points into the stack; the op then takes the slow path.
//! When any check fails the slow path runs the run's own ops one by one, every access
//! checked, so a fault names the slot the plain form would fault at, after the same writes.
//! A run contains no jump, call or exit, so the budget (charged at transfers) sees it as
//! its slots.

use std::collections::BTreeMap;

use super::decode::{code, Op};
use super::mem::{self, Windows};
use crate::vm::env::RunEnv;
use crate::vm::error::VmError;
use crate::vm::insn::*;
use crate::vm::memory::Access;

/// Largest buffer a run may need: its changed memory bytes plus eight per register it
/// leaves live.
const BUF: usize = 64;
/// Rough costs, in machine instructions, that decide whether a run is worth its op, and
/// which of the runs from a slot is worth most (callgrind on the built-in programs): a slot
/// of the loop (its dispatch; superinstructions share one among several slots) and the check
/// of an access through a register, against the fused op's entry and span check, each
/// segment it copies and each register it sets. Short runs of cheap frame ops are better
/// left to the loop.
const SLOT_COST: usize = 8;
/// See [`SLOT_COST`].
const CHECK_COST: usize = 10;
/// See [`SLOT_COST`].
const RUN_COST: usize = 40;
/// See [`SLOT_COST`].
const SEGMENT_COST: usize = 14;
/// See [`SLOT_COST`].
const RESULT_COST: usize = 6;

/// Which memory a byte of a run lies in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Space {
    /// The current frame, through r10 (offsets proven inside it at decoding).
    Frame = 0,
    /// Through the run's one base register, as the run found it.
    Base = 1,
}

/// What one byte holds, in terms of the state the run started from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Byte {
    Const(u8),
    /// The byte at this offset of a memory space, as the run found it.
    Mem(Space, i64),
    /// Byte `lane` (little-endian) of register `reg` as the run found it.
    Reg(u8, u8),
}

/// The ops a run may contain, as the model and the slow path both read them.
#[derive(Clone, Copy)]
enum Step {
    /// `dst = *(size *)(src + off)`, `src` the base; checked.
    Load {
        dst: u8,
        src: u8,
        off: i32,
        width: usize,
    },
    /// `dst = *(size *)(r10 + off)`, proven inside the frame.
    LoadFrame { dst: u8, off: i32, width: usize },
    /// `*(size *)(dst + off) = value`, `dst` the base; checked.
    Store {
        dst: u8,
        off: i32,
        width: usize,
        value: Value,
    },
    /// `*(size *)(r10 + off) = value`, proven inside the frame.
    StoreFrame {
        off: i32,
        width: usize,
        value: Value,
    },
    /// `dst = value` (`wide`: 64 bits, else the low 32 bits zero-extended).
    Move { dst: u8, value: Value, wide: bool },
    /// `dst <<= bits` or `dst >>= bits` (logical), at 64 or 32 bits; `bits` a multiple of 8
    /// below the width.
    Shift {
        dst: u8,
        left: bool,
        bits: u32,
        wide: bool,
    },
    /// `dst |= value` or `dst &= value`.
    Logic {
        dst: u8,
        and: bool,
        value: Value,
        wide: bool,
    },
}

/// A register or an immediate operand.
#[derive(Clone, Copy)]
enum Value {
    Reg(u8),
    Imm(u64),
}

/// The step `op` is, if a run may contain it.
fn step(op: &Op) -> Option<Step> {
    let (dst, src) = (op.dst & 0x0f, op.src & 0x0f);
    let width = mem_width(op.code);
    let class = op.code & 0x07;
    let by_register = op.code & BPF_X != 0;
    let value = if by_register {
        Value::Reg(src)
    } else {
        Value::Imm(op.imm)
    };
    let wide = class == BPF_ALU64;
    // The shift count as the loop masks it.
    let bits = (op.imm as u32) & if wide { 63 } else { 31 };
    let step = match op.code & !0x18 {
        m if m == BPF_LDX | BPF_MEM => Step::Load {
            dst,
            src,
            off: op.off,
            width,
        },
        code::LDX_STACK => Step::LoadFrame {
            dst,
            off: op.off,
            width,
        },
        m if m == BPF_STX | BPF_MEM => Step::Store {
            dst,
            off: op.off,
            width,
            value: Value::Reg(src),
        },
        m if m == BPF_ST | BPF_MEM => Step::Store {
            dst,
            off: op.off,
            width,
            value: Value::Imm(op.imm),
        },
        code::STX_STACK => Step::StoreFrame {
            off: op.off,
            width,
            value: Value::Reg(src),
        },
        code::ST_STACK => Step::StoreFrame {
            off: op.off,
            width,
            value: Value::Imm(op.imm),
        },
        // ALU ops that write r10 are left alone (the frame's proofs assume none does).
        _ if !matches!(class, BPF_ALU | BPF_ALU64) || dst == FRAME_REG => return None,
        // A `movsx` has codes of its own: a move here has no modifier.
        _ => match op.code & 0xf0 {
            BPF_MOV => Step::Move { dst, value, wide },
            BPF_LSH | BPF_RSH if !by_register && bits.is_multiple_of(8) => Step::Shift {
                dst,
                left: op.code & 0xf0 == BPF_LSH,
                bits,
                wide,
            },
            BPF_OR | BPF_AND => Step::Logic {
                dst,
                and: op.code & 0xf0 == BPF_AND,
                value,
                wide,
            },
            _ => return None,
        },
    };
    Some(step)
}

/// A run's net effect, and what its op needs to run it (see the module documentation).
#[derive(Debug, Clone)]
pub(super) struct Shuffle {
    /// How many slots the run spans.
    pub(super) slots: usize,
    /// The base register (meaningless without a `span`).
    base: u8,
    /// Offsets from the base that the run's loads and stores touch, `[lo, hi)`, if any, and
    /// what they need of them: writes if there is a store (a region that allows writes
    /// allows reads), else reads.
    span: Option<((i64, i64), Access)>,
    /// Whether the run touches the frame (then the base must not point into it).
    frame: bool,
    /// The buffer's initial bytes: the constants among the destinations' bytes.
    template: [u8; BUF],
    /// Source bytes copied into the buffer, all before any destination is written.
    gathers: Box<[Segment]>,
    /// Memory bytes written from the buffer.
    scatters: Box<[Segment]>,
    /// Registers set from eight buffer bytes each: `(register, buffer offset)`.
    results: Box<[(u8, u8)]>,
    /// The run's own ops and the slot of the first, for the checked slow path.
    plain: Box<[Op]>,
    first: usize,
}

/// Up to 16 consecutive bytes between the buffer and memory or a register.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Which address the offset is from: 0 the frame's top (r10), 1 the base register, 2 the
    /// register file (`8 * register + lane`).
    from: u8,
    off: i64,
    len: u8,
    /// Offset in the buffer.
    at: u8,
}

/// The register file as a segment's `from`.
const REGISTERS: u8 = 2;
/// Longest segment [`copy_small`] copies.
const SEGMENT: usize = 16;

/// The symbolic state of a run being modelled.
struct Model {
    regs: [[Byte; 8]; 16],
    /// Registers the run has written.
    written: u16,
    /// Memory bytes the run has written, with what they hold.
    mem: BTreeMap<(Space, i64), Byte>,
    base: Option<u8>,
    read: Option<(i64, i64)>,
    write: Option<(i64, i64)>,
    frame: bool,
    /// Loads and stores through the base (each a check in the loop).
    checked: usize,
}

/// Widens `range` to cover `[lo, hi)`.
fn cover(range: &mut Option<(i64, i64)>, lo: i64, hi: i64) {
    *range = Some(match *range {
        Some((a, b)) => (a.min(lo), b.max(hi)),
        None => (lo, hi),
    });
}

impl Model {
    fn new() -> Model {
        let mut regs = [[Byte::Const(0); 8]; 16];
        for (r, lanes) in regs.iter_mut().enumerate() {
            for (lane, b) in lanes.iter_mut().enumerate() {
                *b = Byte::Reg(r as u8, lane as u8);
            }
        }
        Model {
            regs,
            written: 0,
            mem: BTreeMap::new(),
            base: None,
            read: None,
            write: None,
            frame: false,
            checked: 0,
        }
    }

    fn value(&self, v: Value) -> [Byte; 8] {
        match v {
            Value::Reg(r) => self.regs[usize::from(r)],
            Value::Imm(k) => k.to_le_bytes().map(Byte::Const),
        }
    }

    /// Makes `r` the run's base register, if it can be: unwritten so far, and the only base.
    fn take_base(&mut self, r: u8) -> bool {
        if self.written & 1 << r != 0 || self.base.is_some_and(|b| b != r) {
            return false;
        }
        self.base = Some(r);
        true
    }

    /// The byte at `key` as the run sees it now.
    fn byte_at(&self, key: (Space, i64)) -> Byte {
        self.mem
            .get(&key)
            .copied()
            .unwrap_or(Byte::Mem(key.0, key.1))
    }

    /// What a load of `width` bytes at `off` in `space` puts in its register (zero-extended).
    fn loaded(&self, space: Space, off: i64, width: usize) -> [Byte; 8] {
        let mut lanes = [Byte::Const(0); 8];
        for (i, b) in lanes.iter_mut().enumerate().take(width) {
            *b = self.byte_at((space, off + i as i64));
        }
        lanes
    }

    /// What a store of the low `width` bytes of `value` at `off` in `space` leaves there.
    fn store(&mut self, space: Space, off: i64, width: usize, value: Value) {
        for (i, &b) in self.value(value).iter().enumerate().take(width) {
            self.mem.insert((space, off + i as i64), b);
        }
    }

    fn set(&mut self, dst: u8, lanes: [Byte; 8]) {
        self.regs[usize::from(dst)] = lanes;
        self.written |= 1 << dst;
    }

    /// Applies `step`; false (the state unchanged) when the model cannot follow it.
    fn apply(&mut self, step: Step) -> bool {
        let zero = Byte::Const(0);
        match step {
            Step::Load {
                dst,
                src,
                off,
                width,
            } => {
                if dst == FRAME_REG || !self.take_base(src) {
                    return false;
                }
                let off = i64::from(off);
                cover(&mut self.read, off, off + width as i64);
                self.set(dst, self.loaded(Space::Base, off, width));
            }
            Step::LoadFrame { dst, off, width } => {
                self.frame = true;
                self.set(dst, self.loaded(Space::Frame, i64::from(off), width));
            }
            Step::Store {
                dst,
                off,
                width,
                value,
            } => {
                if !self.take_base(dst) {
                    return false;
                }
                let off = i64::from(off);
                cover(&mut self.write, off, off + width as i64);
                self.store(Space::Base, off, width, value);
            }
            Step::StoreFrame { off, width, value } => {
                self.store(Space::Frame, i64::from(off), width, value);
                self.frame = true;
            }
            Step::Move { dst, value, wide } => {
                let mut lanes = self.value(value);
                if !wide {
                    lanes[4..].fill(zero);
                }
                self.set(dst, lanes);
            }
            Step::Shift {
                dst,
                left,
                bits,
                wide,
            } => {
                let width = if wide { 8 } else { 4 };
                let n = (bits / 8) as usize;
                let old = self.regs[usize::from(dst)];
                let mut lanes = [zero; 8];
                for (i, b) in lanes.iter_mut().enumerate().take(width) {
                    let from = if left { i.checked_sub(n) } else { Some(i + n) };
                    *b = from.filter(|&j| j < width).map_or(zero, |j| old[j]);
                }
                self.set(dst, lanes);
            }
            Step::Logic {
                dst,
                and,
                value,
                wide,
            } => {
                let (a, b) = (self.regs[usize::from(dst)], self.value(value));
                let mut lanes = [zero; 8];
                let width = if wide { 8 } else { 4 };
                for i in 0..width {
                    lanes[i] = match (a[i], b[i], and) {
                        (Byte::Const(x), Byte::Const(y), true) => Byte::Const(x & y),
                        (Byte::Const(x), Byte::Const(y), false) => Byte::Const(x | y),
                        (x, Byte::Const(0xff), true) | (Byte::Const(0xff), x, true) => x,
                        (_, Byte::Const(0), true) | (Byte::Const(0), _, true) => zero,
                        (x, Byte::Const(0), false) | (Byte::Const(0), x, false) => x,
                        _ => return false,
                    };
                }
                self.set(dst, lanes);
            }
        }
        if matches!(step, Step::Load { .. } | Step::Store { .. }) {
            self.checked += 1;
        }
        true
    }
}

/// Adds the byte at `off` from `from` (see [`Segment::from`]) at buffer offset `at` to
/// `segments`: to the last one when it ends right before both, else as a new one.
fn add_byte(segments: &mut Vec<Segment>, from: u8, off: i64, at: usize) {
    match segments.last_mut() {
        Some(s)
            if s.from == from
                && s.off + i64::from(s.len) == off
                && usize::from(s.at) + usize::from(s.len) == at
                && usize::from(s.len) < SEGMENT =>
        {
            s.len += 1;
        }
        _ => segments.push(Segment {
            from,
            off,
            len: 1,
            at: at as u8,
        }),
    }
}

/// Cuts `sources`, one per buffer byte from 0 on, into segments of consecutive bytes;
/// constants go to `template` instead.
fn gather_segments(sources: &[Byte], template: &mut [u8; BUF], gathers: &mut Vec<Segment>) {
    for (at, &b) in sources.iter().enumerate() {
        match b {
            Byte::Const(c) => template[at] = c,
            Byte::Mem(space, off) => add_byte(gathers, space as u8, off, at),
            Byte::Reg(r, lane) => {
                add_byte(gathers, REGISTERS, 8 * i64::from(r) + i64::from(lane), at)
            }
        }
    }
}

impl Model {
    /// The op's form of the run modelled so far, which spans `plain` from slot `first`, when
    /// its buffer is big enough: `live` are the registers read after it.
    fn plan(&self, plain: &[Op], first: usize, live: u16) -> Option<Shuffle> {
        // Destinations in buffer order: changed memory bytes, then live registers written.
        let changed: Vec<((Space, i64), Byte)> = self
            .mem
            .iter()
            .filter(|&(&(space, off), &b)| b != Byte::Mem(space, off))
            .map(|(&k, &b)| (k, b))
            .collect();
        let results: Vec<u8> = (0..16u8)
            .filter(|&r| self.written & live & 1 << r != 0)
            .collect();
        if changed.len() + 8 * results.len() > BUF {
            return None;
        }
        let mut sources: Vec<Byte> = changed.iter().map(|&(_, b)| b).collect();
        let mut scatters: Vec<Segment> = Vec::new();
        for (at, &((space, off), _)) in changed.iter().enumerate() {
            add_byte(&mut scatters, space as u8, off, at);
        }
        let mut placed = Vec::new();
        for &r in &results {
            placed.push((r, sources.len() as u8));
            sources.extend_from_slice(&self.regs[usize::from(r)]);
        }
        let mut template = [0u8; BUF];
        let mut gathers = Vec::new();
        gather_segments(&sources, &mut template, &mut gathers);
        let span = match (self.read, self.write) {
            (Some((a, b)), Some((c, d))) => Some(((a.min(c), b.max(d)), Access::Write)),
            (None, Some(w)) => Some((w, Access::Write)),
            (Some(r), None) => Some((r, Access::Read)),
            (None, None) => None,
        };
        Some(Shuffle {
            slots: plain.len(),
            base: self.base.unwrap_or(0),
            span,
            frame: self.frame,
            template,
            gathers: gathers.into(),
            scatters: scatters.into(),
            results: placed.into(),
            plain: plain.into(),
            first,
        })
    }
}

/// The run from slot `first` of `plain` worth most as one op, if one is worth it (see
/// [`SLOT_COST`]), with the slot after it. `live` gives the registers read after each slot
/// (empty: all of them, as far as known).
fn best_run(plain: &[Op], first: usize, live: &[u16]) -> Option<(Shuffle, usize)> {
    if !cfg!(target_endian = "little") {
        // The buffer holds register bytes in memory order.
        return None;
    }
    // Tests of the op's semantics fuse every run they can, the longest, whatever it costs.
    #[cfg(test)]
    let any = super::tests::ANY_RUN.with(|a| a.get());
    #[cfg(not(test))]
    let any = false;
    let mut model = Model::new();
    let mut best = None;
    let mut best_saving = 0;
    for (i, op) in plain.iter().enumerate().skip(first) {
        if !step(op).is_some_and(|s| model.apply(s)) || model.mem.len() > BUF {
            break;
        }
        let end = i + 1;
        let in_loop = SLOT_COST * (end - first) + CHECK_COST * model.checked;
        if in_loop <= best_saving + RUN_COST && !any {
            continue;
        }
        let after = if live.is_empty() {
            u16::MAX
        } else {
            live.get(end).copied().unwrap_or(u16::MAX)
        };
        let Some(s) = model.plan(&plain[first..end], first, after) else {
            continue;
        };
        let fused = RUN_COST
            + SEGMENT_COST * (s.gathers.len() + s.scatters.len())
            + RESULT_COST * s.results.len();
        if in_loop > fused + best_saving || any {
            best_saving = in_loop.saturating_sub(fused);
            best = Some((s, end));
        }
    }
    best
}

/// Replaces the first op of each run of `plain` (the ops before fusion, slot for slot with
/// `ops`) worth it by a [`code::SHUFFLE`] op, whose `imm` indexes the returned list. The
/// run's other slots keep their ops, for jumps that land inside it.
pub(super) fn fuse_runs(ops: &mut [Op], plain: &[Op], live: &[u16]) -> Vec<Shuffle> {
    let mut shuffles = Vec::new();
    let mut pc = 0;
    while pc < plain.len() {
        // A LOOKUP_BRANCH may run the INC_MEM four slots on itself: that op stays.
        let run = (ops[pc].code != code::INC_MEM)
            .then(|| best_run(plain, pc, live))
            .flatten();
        match run {
            Some((s, end)) => {
                ops[pc] = Op {
                    code: code::SHUFFLE,
                    dst: 0,
                    src: 0,
                    off: 0,
                    imm: shuffles.len() as u64,
                    aux: 0,
                };
                shuffles.push(s);
                pc = end;
            }
            None => pc += 1,
        }
    }
    shuffles
}

/// Copies `len` (1 to [`SEGMENT`]) bytes from `src` to `dst`, which do not overlap, as at
/// most four loads and stores.
///
/// # Safety
/// Both ranges must be valid for the access.
#[inline(always)]
unsafe fn copy_small(src: *const u8, dst: *mut u8, len: u8) {
    let len = usize::from(len);
    use std::ptr::{read_unaligned as get, write_unaligned as put};
    // Two accesses of the widest size that fits, the second ending at the last byte: they
    // overlap when `len` is not twice the size, and cover every byte either way.
    macro_rules! two {
        ($t:ty) => {{
            let n = std::mem::size_of::<$t>();
            // SAFETY: `n <= len`: both accesses lie inside the ranges (contract).
            unsafe {
                let (a, b) = (get(src.cast::<$t>()), get(src.add(len - n).cast::<$t>()));
                put(dst.cast::<$t>(), a);
                put(dst.add(len - n).cast::<$t>(), b);
            }
        }};
    }
    match len {
        // SAFETY: one byte, inside the ranges (contract).
        1 => unsafe { *dst = *src },
        2..=3 => two!(u16),
        4..=7 => two!(u32),
        _ => two!(u64),
    }
}

/// Runs the run `s` stands for, from the registers in `reg` (r10 the frame's top), when the
/// checks of its base accesses pass; false, with nothing done, when they do not (then
/// [`run_checked`] runs it).
///
/// # Safety
/// As the loop's memory ops: `env` is live and not borrowed elsewhere, `windows` holds only
/// regions of it taken since its last change, and r10 is a frame top of the interpreter's
/// stack in a program that never writes it (the frame offsets were proven for such).
#[inline(never)]
pub(super) unsafe fn run(
    s: &Shuffle,
    reg: &mut [u64; 16],
    windows: &mut Windows,
    env: *const RunEnv,
) -> bool {
    let (fp, base) = (reg[usize::from(FRAME_REG)], reg[usize::from(s.base & 0x0f)]);
    if let Some(((lo, hi), access)) = s.span {
        let (start, len) = (base.wrapping_add(lo as u64), (hi - lo) as u64);
        // SAFETY: forwarded contract.
        if !unsafe { windows.allows(env, start, len, access) } {
            return false;
        }
        // Inside a region, so `start + len` does not wrap. The frame is
        // `[fp - STACK_SIZE, fp)`.
        if s.frame && start < fp && start + len > fp.wrapping_sub(STACK_SIZE as u64) {
            return false;
        }
    }
    let mut buf = s.template;
    // Where each segment's offset is from (see [`Segment::from`]); four, so that a masked
    // index needs no bounds check.
    let origin = [fp, base, reg.as_ptr() as u64, 0];
    for g in s.gathers.iter() {
        let from = origin[usize::from(g.from & 3)].wrapping_add(g.off as u64);
        // SAFETY: a base segment lies inside the span, checked above; a frame one inside the
        // frame (its load's offset was proven there, and r10 is a frame top); a register one
        // inside `reg`. The buffer holds every segment (`plan`).
        unsafe {
            copy_small(
                from as usize as *const u8,
                buf.as_mut_ptr().add(usize::from(g.at)),
                g.len,
            )
        };
    }
    for t in s.scatters.iter() {
        let to = origin[usize::from(t.from & 3)].wrapping_add(t.off as u64);
        // SAFETY: as for the gathers, for a span that allows writes; base and frame bytes do
        // not overlap (checked above), and the buffer is not program memory.
        unsafe {
            copy_small(
                buf.as_ptr().add(usize::from(t.at)),
                to as usize as *mut u8,
                t.len,
            )
        };
    }
    for &(r, at) in s.results.iter() {
        let at = usize::from(at).min(BUF - 8);
        // SAFETY: `at + 8 <= BUF`.
        let v = unsafe { std::ptr::read_unaligned(buf.as_ptr().add(at).cast::<u64>()) };
        reg[usize::from(r & 0x0f)] = u64::from_le(v);
    }
    true
}

/// The slow path: `s`'s ops one by one, every base access checked, as the loop runs them;
/// a fault names the slot of the plain op that faults.
///
/// # Safety
/// As [`run`].
#[cold]
#[inline(never)]
pub(super) unsafe fn run_checked(
    s: &Shuffle,
    reg: &mut [u64; 16],
    windows: &mut Windows,
    env: *const RunEnv,
) -> Result<(), VmError> {
    let fp = reg[usize::from(FRAME_REG)];
    let value = |reg: &[u64; 16], v: Value| match v {
        Value::Reg(r) => reg[usize::from(r)],
        Value::Imm(k) => k,
    };
    for (i, op) in s.plain.iter().enumerate() {
        let pc = s.first + i;
        let Some(step) = step(op) else {
            return Err(VmError::Unsupported {
                insn: pc,
                what: "byte-move run holds an op it cannot run".into(),
            });
        };
        match step {
            Step::Load {
                dst,
                src,
                off,
                width,
            } => {
                let addr = reg[usize::from(src)].wrapping_add(off as i64 as u64);
                // SAFETY: forwarded contract; `mem::load` checks before reading.
                reg[usize::from(dst)] = unsafe {
                    match width {
                        1 => mem::load::<u8>(windows, env, pc, addr).map(u64::from),
                        2 => mem::load::<u16>(windows, env, pc, addr).map(u64::from),
                        4 => mem::load::<u32>(windows, env, pc, addr).map(u64::from),
                        _ => mem::load::<u64>(windows, env, pc, addr),
                    }
                }?;
            }
            Step::Store {
                dst,
                off,
                width,
                value: v,
            } => {
                let addr = reg[usize::from(dst)].wrapping_add(off as i64 as u64);
                let v = value(reg, v);
                // SAFETY: forwarded contract; `mem::store` checks before writing.
                unsafe {
                    match width {
                        1 => mem::store::<u8>(windows, env, pc, addr, v as u8),
                        2 => mem::store::<u16>(windows, env, pc, addr, v as u16),
                        4 => mem::store::<u32>(windows, env, pc, addr, v as u32),
                        _ => mem::store::<u64>(windows, env, pc, addr, v),
                    }
                }?;
            }
            Step::LoadFrame { dst, off, width } => {
                let at = fp.wrapping_add(off as i64 as u64) as usize as *const u8;
                let mut bytes = [0u8; 8];
                // SAFETY: decoding proved `[r10 + off, + width)` inside the frame, r10 a
                // frame top of the interpreter's live stack (contract).
                unsafe { std::ptr::copy_nonoverlapping(at, bytes.as_mut_ptr(), width) };
                reg[usize::from(dst)] = u64::from_le_bytes(bytes);
            }
            Step::StoreFrame {
                off,
                width,
                value: v,
            } => {
                let at = fp.wrapping_add(off as i64 as u64) as usize as *mut u8;
                let bytes = value(reg, v).to_le_bytes();
                // SAFETY: as for the frame load.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, width) };
            }
            Step::Move {
                dst,
                value: v,
                wide,
            } => {
                let v = value(reg, v);
                reg[usize::from(dst)] = if wide { v } else { u64::from(v as u32) };
            }
            Step::Shift {
                dst,
                left,
                bits,
                wide,
            } => {
                let a = reg[usize::from(dst)];
                reg[usize::from(dst)] = match (wide, left) {
                    (true, true) => a << bits,
                    (true, false) => a >> bits,
                    (false, true) => u64::from((a as u32) << bits),
                    (false, false) => u64::from((a as u32) >> bits),
                };
            }
            Step::Logic {
                dst,
                and,
                value: v,
                wide,
            } => {
                let (a, b) = (reg[usize::from(dst)], value(reg, v));
                let r = if and { a & b } else { a | b };
                reg[usize::from(dst)] = if wide { r } else { u64::from(r as u32) };
            }
        }
    }
    Ok(())
}
