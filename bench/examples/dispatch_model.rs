//! A model of two ways to dispatch an interpreter's ops, on a 26-op program shaped like
//! `xdp_globals` (context loads checked against a window, counters in fixed memory, compares
//! and a verdict): a `match` loop, as `runtime`'s interpreter is written, against threaded
//! code, where every handler is a function that ends by calling the next op's handler through
//! a table.
//!
//! Both engines do the same work per op: the opcode picks the arm or handler through a
//! 16-entry table, each reads the operand fields it uses, and every op fetch masks the pc
//! into the program's 32 slots. They must leave the same registers and memory behind.
//!
//! Stable rustc turns those calls in tail position into `jmp *` in release builds, but only
//! the unstable `become` guarantees it: unoptimised, every op adds a stack frame. The model
//! returns to a trampoline at every taken jump; straight-line code still nests, which a real
//! engine would cut every few dozen ops. It is a measurement aid for that design, not part of
//! the runtime.
//!
//! ```sh
//! cargo run --release -p userxdp-bench --example dispatch_model
//! ```
//!
//! Prints ns per run of each, and of a two-op program (the entry cost both subtract). An
//! argument sets the runs per measurement (20 million by default).

use std::hint::black_box;
use std::time::Instant;

/// One decoded op (16 bytes, as the interpreter's).
#[derive(Clone, Copy)]
struct Op {
    /// Immediate; the index of a fixed-memory word for the `*_FIXED` ops.
    imm: u64,
    /// Load displacement, or the absolute target of a jump.
    off: i32,
    /// One of the op codes below (its low four bits pick the arm or handler).
    code: u8,
    /// Destination register.
    dst: u8,
    /// Source register.
    src: u8,
}

/// `dst += imm`.
const ADD_K: u8 = 1;
/// `dst += src`.
const ADD_X: u8 = 2;
/// `dst = imm`.
const MOV_K: u8 = 3;
/// `dst = src`.
const MOV_X: u8 = 4;
/// `dst -= src`.
const SUB_X: u8 = 5;
/// `dst ^= src`.
const XOR_X: u8 = 6;
/// `dst = *(u32 *)(src + off)`, checked against the window.
const LDX_W: u8 = 7;
/// `if dst == imm goto off`.
const JEQ_K: u8 = 8;
/// `if dst < src goto off`.
const JLT_X: u8 = 9;
/// `dst = fixed[imm]` (an access proven at decoding, in the interpreter).
const LDX_FIXED: u8 = 10;
/// `fixed[imm] = src`.
const STX_FIXED: u8 = 11;
/// Return r0.
const EXIT: u8 = 12;
/// `dst &= imm`.
const AND_K: u8 = 13;

/// The op with these fields.
fn op(code: u8, dst: u8, src: u8, off: i32, imm: u64) -> Op {
    Op {
        imm,
        off,
        code,
        dst,
        src,
    }
}

/// The model of `xdp_globals`' common path: every jump falls through to the `EXIT`.
fn globals_path() -> Vec<Op> {
    vec![
        op(LDX_W, 4, 1, 4, 0),
        op(LDX_W, 3, 1, 0, 0),
        op(MOV_X, 2, 4, 0, 0),
        op(SUB_X, 2, 3, 0, 0),
        op(LDX_FIXED, 5, 0, 0, 0),
        op(ADD_X, 5, 2, 0, 0),
        op(STX_FIXED, 0, 5, 0, 0),
        op(LDX_FIXED, 1, 0, 0, 1),
        op(ADD_K, 1, 0, 0, 1),
        op(STX_FIXED, 0, 1, 0, 1),
        op(STX_FIXED, 0, 2, 0, 2),
        op(MOV_X, 5, 3, 0, 0),
        op(ADD_K, 5, 0, 0, 1),
        op(JLT_X, 4, 5, 24, 0),
        op(LDX_W, 3, 10, 8, 0),
        op(LDX_FIXED, 4, 0, 0, 3),
        op(XOR_X, 4, 3, 0, 0),
        op(STX_FIXED, 0, 4, 0, 4),
        op(MOV_K, 0, 0, 0, 1),
        op(LDX_FIXED, 3, 0, 0, 5),
        op(JEQ_K, 3, 0, 24, 0),
        op(AND_K, 1, 0, 0, 3),
        op(JEQ_K, 1, 0, 24, 99),
        op(LDX_FIXED, 0, 0, 0, 6),
        op(ADD_X, 0, 1, 0, 0),
        op(EXIT, 0, 0, 0, 0),
    ]
}

/// Registers, fixed memory (the model's global data) and the checked window (the context).
struct Machine {
    reg: [u64; 16],
    fixed: [u64; 8],
    window: [u8; 64],
}

impl Machine {
    fn new() -> Machine {
        let mut window = [0u8; 64];
        window[4..8].copy_from_slice(&60u32.to_ne_bytes());
        let mut fixed = [0u64; 8];
        fixed[3] = 0x55;
        fixed[5] = 4;
        fixed[6] = 2;
        Machine {
            reg: [0; 16],
            fixed,
            window,
        }
    }

    /// A checked 4-byte load at window offset `addr`; `None` outside the window.
    #[inline(always)]
    fn load_w(&self, addr: u64) -> Option<u64> {
        let a = usize::try_from(addr).ok()?;
        let bytes = self.window.get(a..a.checked_add(4)?)?;
        Some(u64::from(u32::from_ne_bytes(bytes.try_into().ok()?)))
    }
}

/// Slots in a program: a power of two, so that a masked pc always indexes inside it.
const SLOTS: usize = 32;

/// The op at `pc` (masked: past the program's end the slots hold `EXIT`). Both engines fetch
/// through this, so both pay the same `and` instead of a bounds check, as the runtime's
/// interpreter fetches without one.
#[inline(always)]
fn at(ops: &[Op; SLOTS], pc: usize) -> &Op {
    &ops[pc & (SLOTS - 1)]
}

/// `ops` in a program's slots, the rest filled with `EXIT`.
fn slots(ops: &[Op]) -> [Op; SLOTS] {
    assert!(ops.len() <= SLOTS);
    let mut all = [op(EXIT, 0, 0, 0, 0); SLOTS];
    all[..ops.len()].copy_from_slice(ops);
    all
}

/// That `ops` ends with `EXIT`, uses only the codes above and jumps inside itself, so that a
/// run never leaves it (the fetch would end such a run, but its timing would mean nothing).
fn check_program(ops: &[Op]) {
    assert_eq!(ops.last().map(|o| o.code), Some(EXIT));
    for o in ops {
        assert!(o.code < 16);
        if matches!(o.code, JEQ_K | JLT_X) {
            assert!((o.off as usize) < ops.len());
        }
    }
}

/// Runs `ops` in a `match` loop, as the runtime's interpreter does.
fn run_match(ops: &[Op; SLOTS], m: &mut Machine) -> u64 {
    let mut pc = 0usize;
    loop {
        let op = at(ops, pc);
        pc += 1;
        // Read where the arms use them, as the interpreter does.
        macro_rules! d {
            () => {
                usize::from(op.dst & 15)
            };
        }
        macro_rules! s {
            () => {
                usize::from(op.src & 15)
            };
        }
        match op.code & 15 {
            ADD_K => m.reg[d!()] = m.reg[d!()].wrapping_add(op.imm),
            AND_K => m.reg[d!()] &= op.imm,
            ADD_X => m.reg[d!()] = m.reg[d!()].wrapping_add(m.reg[s!()]),
            MOV_K => m.reg[d!()] = op.imm,
            MOV_X => m.reg[d!()] = m.reg[s!()],
            SUB_X => m.reg[d!()] = m.reg[d!()].wrapping_sub(m.reg[s!()]),
            XOR_X => m.reg[d!()] ^= m.reg[s!()],
            LDX_W => {
                let addr = m.reg[s!()].wrapping_add(op.off as i64 as u64);
                match m.load_w(addr) {
                    Some(v) => m.reg[d!()] = v,
                    None => return u64::MAX,
                }
            }
            LDX_FIXED => m.reg[d!()] = m.fixed[op.imm as usize & 7],
            STX_FIXED => m.fixed[op.imm as usize & 7] = m.reg[s!()],
            JEQ_K => {
                if m.reg[d!()] == op.imm {
                    pc = op.off as usize;
                }
            }
            JLT_X => {
                if m.reg[d!()] < m.reg[s!()] {
                    pc = op.off as usize;
                }
            }
            EXIT => return m.reg[0],
            _ => return u64::MAX - 1,
        }
    }
}

/// What a threaded handler returns to the trampoline: the run's result, or where to go on.
enum Next {
    Done(u64),
    At(usize),
}

type Handler = fn(&[Op; SLOTS], usize, &mut Machine) -> Next;

/// Handlers by op code.
static HANDLERS: [Handler; 16] = [
    h_bad,
    h_add_k,
    h_add_x,
    h_mov_k,
    h_mov_x,
    h_sub_x,
    h_xor_x,
    h_ldx_w,
    h_jeq_k,
    h_jlt_x,
    h_ldx_fixed,
    h_stx_fixed,
    h_exit,
    h_and_k,
    h_bad,
    h_bad,
];

/// Runs the handler of the op at `pc`.
#[inline(always)]
fn dispatch(ops: &[Op; SLOTS], pc: usize, m: &mut Machine) -> Next {
    HANDLERS[usize::from(at(ops, pc).code & 15)](ops, pc, m)
}

/// Continues at the op after `pc`: a call in tail position, a jump in release builds.
#[inline(always)]
fn next(ops: &[Op; SLOTS], pc: usize, m: &mut Machine) -> Next {
    dispatch(ops, pc + 1, m)
}

/// Declares a handler that does `$body` with the op's masked registers, then continues.
macro_rules! straight {
    ($name:ident, |$op:ident, $m:ident, $d:ident, $s:ident| $body:expr) => {
        fn $name(ops: &[Op; SLOTS], pc: usize, $m: &mut Machine) -> Next {
            let $op = at(ops, pc);
            let $d = usize::from($op.dst & 15);
            let $s = usize::from($op.src & 15);
            $body;
            next(ops, pc, $m)
        }
    };
}

straight!(h_add_k, |o, m, d, _s| m.reg[d] =
    m.reg[d].wrapping_add(o.imm));
straight!(h_and_k, |o, m, d, _s| m.reg[d] &= o.imm);
straight!(h_add_x, |_o, m, d, s| m.reg[d] =
    m.reg[d].wrapping_add(m.reg[s]));
straight!(h_mov_k, |o, m, d, _s| m.reg[d] = o.imm);
straight!(h_mov_x, |_o, m, d, s| m.reg[d] = m.reg[s]);
straight!(h_sub_x, |_o, m, d, s| m.reg[d] =
    m.reg[d].wrapping_sub(m.reg[s]));
straight!(h_xor_x, |_o, m, d, s| m.reg[d] ^= m.reg[s]);
straight!(h_ldx_fixed, |o, m, d, _s| m.reg[d] =
    m.fixed[o.imm as usize & 7]);
straight!(h_stx_fixed, |o, m, _d, s| m.fixed[o.imm as usize & 7] =
    m.reg[s]);

fn h_ldx_w(ops: &[Op; SLOTS], pc: usize, m: &mut Machine) -> Next {
    let o = at(ops, pc);
    let addr = m.reg[usize::from(o.src & 15)].wrapping_add(o.off as i64 as u64);
    match m.load_w(addr) {
        Some(v) => m.reg[usize::from(o.dst & 15)] = v,
        None => return Next::Done(u64::MAX),
    }
    next(ops, pc, m)
}

fn h_jeq_k(ops: &[Op; SLOTS], pc: usize, m: &mut Machine) -> Next {
    let o = at(ops, pc);
    if m.reg[usize::from(o.dst & 15)] == o.imm {
        // A taken jump returns to the trampoline: the depth stays bounded unoptimised.
        return Next::At(o.off as usize);
    }
    next(ops, pc, m)
}

fn h_jlt_x(ops: &[Op; SLOTS], pc: usize, m: &mut Machine) -> Next {
    let o = at(ops, pc);
    if m.reg[usize::from(o.dst & 15)] < m.reg[usize::from(o.src & 15)] {
        return Next::At(o.off as usize);
    }
    next(ops, pc, m)
}

fn h_exit(_: &[Op; SLOTS], _: usize, m: &mut Machine) -> Next {
    Next::Done(m.reg[0])
}

fn h_bad(_: &[Op; SLOTS], _: usize, _: &mut Machine) -> Next {
    Next::Done(u64::MAX - 1)
}

/// Runs `ops` as threaded code, from a trampoline that restarts the chain of handlers at
/// every taken jump.
fn run_threaded(ops: &[Op; SLOTS], m: &mut Machine) -> u64 {
    let mut pc = 0;
    loop {
        match dispatch(ops, pc, m) {
            Next::Done(r0) => return r0,
            Next::At(target) => pc = target,
        }
    }
}

/// ns per run of `engine` on `ops` over `runs` runs (r1 = r10 = 0: window offsets), with the
/// sum of the runs' r0 and the machine left behind (the counters in fixed memory carry over
/// from run to run, so r0 changes between runs).
#[inline(never)]
fn time(
    engine: fn(&[Op; SLOTS], &mut Machine) -> u64,
    ops: &[Op; SLOTS],
    runs: u64,
) -> (f64, u64, Machine) {
    let mut m = Machine::new();
    let mut sum = 0u64;
    let start = Instant::now();
    for _ in 0..runs {
        m.reg = [0; 16];
        sum = sum.wrapping_add(engine(black_box(ops), &mut m));
    }
    (start.elapsed().as_nanos() as f64 / runs as f64, sum, m)
}

fn main() {
    let program = globals_path();
    let empty = vec![op(MOV_K, 0, 0, 0, 2), op(EXIT, 0, 0, 0, 0)];
    check_program(&program);
    check_program(&empty);
    let (program_len, program, empty) = (program.len(), slots(&program), slots(&empty));
    // Runs per measurement: the first argument, 20 million by default.
    let runs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000u64);
    println!("{program_len} ops; ns per run (net = program - empty)");
    for round in 1..=3 {
        let mut line = format!("round {round}:");
        let mut results = Vec::new();
        for (name, engine) in [
            ("match", run_match as fn(&[Op; SLOTS], &mut Machine) -> u64),
            ("threaded", run_threaded),
        ] {
            let (full, sum, m) = time(engine, &program, runs);
            let (base, _, _) = time(engine, &empty, runs);
            line += &format!("  {name} {full:.1} - {base:.1} = {:.1}", full - base);
            results.push((sum, m.reg, m.fixed));
        }
        assert!(results[0] == results[1], "the engines disagree");
        println!("{line}");
    }
}
