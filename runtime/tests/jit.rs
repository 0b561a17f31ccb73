//! Focused tests of the Cranelift JIT: kernel semantics of every instruction family, calls,
//! faults in guarded mode, and a differential check against the interpreter.

use userxdp_runtime::object::spec::{MapSpec, Pinning, ProgramType};
use userxdp_runtime::vm::asm::assemble;
use userxdp_runtime::vm::env::RunEnv;
use userxdp_runtime::vm::error::VmError;
use userxdp_runtime::vm::insn::*;
use userxdp_runtime::vm::interp::Interpreter;
use userxdp_runtime::vm::jit::{JitError, JitOptions, JitProgram};
use userxdp_runtime::vm::memory::{Access, Region, RegionKind};
use userxdp_runtime::vm::program::PreparedProgram;

fn prepare(insns: Vec<Insn>) -> PreparedProgram {
    PreparedProgram::new("t", ProgramType::Xdp, insns).expect("valid program")
}

fn compile(prog: &PreparedProgram, guarded: bool) -> JitProgram {
    JitProgram::compile(prog, &JitOptions { guarded }).expect("compiles")
}

/// Runs `prog` with r1 = `mem` (registered as a writable context region) and r2 = its length.
fn run_on(jit: &JitProgram, mem: &mut [u8]) -> Result<u64, VmError> {
    let mut env = RunEnv::default();
    env.begin_run();
    env.memory.add(Region {
        start: mem.as_ptr() as u64,
        len: mem.len() as u64,
        writable: true,
        kind: RegionKind::Context,
    });
    let before = env.memory.regions().len();
    // SAFETY: test programs only touch `mem` and their stack (or are guarded).
    let r = unsafe { jit.run(&mut env, mem.as_mut_ptr() as u64, mem.len() as u64) };
    assert_eq!(
        env.memory.regions().len(),
        before,
        "run must not leave regions behind"
    );
    assert_eq!(env.fault_flag, 0);
    r
}

/// Runs the assembled `src` in both modes; both must agree; returns the result.
fn run_both(src: &str, mem: &[u8]) -> Result<u64, VmError> {
    let prog = prepare(assemble(src).expect("assembles"));
    let mut results = Vec::new();
    for guarded in [false, true] {
        let jit = compile(&prog, guarded);
        let mut m = mem.to_vec();
        results.push((run_on(&jit, &mut m), m));
    }
    assert_eq!(results[0], results[1], "trusted and guarded disagree");
    results.swap_remove(0).0
}

fn run(src: &str) -> u64 {
    run_both(src, &[0u8; 64]).expect("runs")
}

#[test]
fn jit_program_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<JitProgram>();
}

#[test]
fn alu64_basics() {
    assert_eq!(run("mov r0, 7\nadd r0, 5\nsub r0, 2\nmul r0, 3\nexit"), 30);
    assert_eq!(
        run("mov r0, -1\nexit"),
        u64::MAX,
        "ALU64 imm is sign-extended"
    );
    assert_eq!(
        run("mov r0, 0xf0\nor r0, 0x0f\nand r0, 0x3c\nxor r0, 0xff\nexit"),
        0xc3
    );
    assert_eq!(run("mov r0, 5\nneg r0\nexit"), (-5i64) as u64);
    assert_eq!(run("lddw r0, 0x1122334455667788\nexit"), 0x1122334455667788);
    assert_eq!(run("mov r0, -16\narsh r0, 2\nexit"), (-4i64) as u64);
    assert_eq!(run("mov r0, -16\nrsh r0, 60\nexit"), 0xf);
    assert_eq!(
        run("mov r0, 1\nmov r1, 65\nlsh r0, r1\nexit"),
        2,
        "shift masked by 63"
    );
    assert_eq!(run("mov r0, 1\nmov r1, 2\nmov r2, 3\nmov r3, 4\nmov r4, 5\nmov r5, 6\nmov r6, 7\nmov r7, 8\nmov r8, 9\nmov r9, 10\nadd r0, r1\nadd r0, r2\nadd r0, r3\nadd r0, r4\nadd r0, r5\nadd r0, r6\nadd r0, r7\nadd r0, r8\nadd r0, r9\nexit"), 55);
}

#[test]
fn alu32_zero_extends() {
    assert_eq!(run("lddw r0, 0xffffffffffffffff\nadd32 r0, 1\nexit"), 0);
    assert_eq!(run("lddw r0, 0x1ffffffff\nmov32 r0, r0\nexit"), 0xffff_ffff);
    assert_eq!(
        run("mov32 r0, -1\nexit"),
        0xffff_ffff,
        "ALU32 imm not sign-extended to 64"
    );
    assert_eq!(run("mov32 r0, 5\nneg32 r0\nexit"), 0xffff_fffb);
    assert_eq!(run("mov32 r0, -16\narsh32 r0, 2\nexit"), 0xffff_fffc);
    assert_eq!(
        run("mov32 r0, 1\nmov r1, 33\nlsh32 r0, r1\nexit"),
        2,
        "shift masked by 31"
    );
    assert_eq!(run("lddw r0, 0x100000003\nmul32 r0, 3\nexit"), 9);
    assert_eq!(run("lddw r0, 0x8000000000000000\nrsh32 r0, 1\nexit"), 0);
}

#[test]
fn division_edge_cases() {
    let min64 = i64::MIN as u64;
    // (source, expected)
    let cases: &[(&str, u64)] = &[
        ("mov r0, 7\nmov r1, 0\ndiv r0, r1\nexit", 0),
        ("mov r0, 7\nmov r1, 0\nmod r0, r1\nexit", 7),
        ("mov r0, 7\ndiv r0, 0\nexit", 0),
        ("mov r0, 7\nmod r0, 0\nexit", 7),
        ("mov r0, 17\ndiv r0, 5\nexit", 3),
        ("mov r0, 17\nmod r0, 5\nexit", 2),
        ("mov r0, 17\ndiv r0, -1\nexit", 0),
        ("mov r0, -1\ndiv r0, -1\nexit", 1),
        (
            "lddw r0, 0xffffffff00000007\nmov r1, 0\nmod32 r0, r1\nexit",
            7,
        ),
        ("lddw r0, 0xffffffff00000007\nmod32 r0, 0\nexit", 7),
        ("lddw r0, 0xffffffff00000007\ndiv32 r0, 0\nexit", 0),
        ("mov32 r0, -1\ndiv32 r0, -1\nexit", 1),
        (
            "mov32 r0, -1\nmov r1, 0x10\ndiv32 r0, r1\nexit",
            0x0fff_ffff,
        ),
        // signed (off = 1)
        ("mov r0, -7\nsdiv r0, 2\nexit", (-3i64) as u64),
        ("mov r0, -7\nsmod r0, 2\nexit", (-1i64) as u64),
        ("mov r0, 7\nsmod r0, -2\nexit", 1),
        ("mov r0, -7\nmov r1, 0\nsdiv r0, r1\nexit", 0),
        ("mov r0, -7\nmov r1, 0\nsmod r0, r1\nexit", (-7i64) as u64),
        ("mov r0, -7\nsdiv r0, 0\nexit", 0),
        ("mov r0, -7\nsmod r0, 0\nexit", (-7i64) as u64),
        (
            "lddw r0, 0x8000000000000000\nmov r1, -1\nsdiv r0, r1\nexit",
            min64,
        ),
        (
            "lddw r0, 0x8000000000000000\nmov r1, -1\nsmod r0, r1\nexit",
            0,
        ),
        ("lddw r0, 0x8000000000000000\nsdiv r0, -1\nexit", min64),
        ("lddw r0, 0x8000000000000000\nsmod r0, -1\nexit", 0),
        (
            "mov32 r0, 0x80000000\nmov32 r1, -1\nsdiv32 r0, r1\nexit",
            0x8000_0000,
        ),
        ("mov32 r0, 0x80000000\nmov32 r1, -1\nsmod32 r0, r1\nexit", 0),
        ("mov32 r0, 0x80000000\nsdiv32 r0, -1\nexit", 0x8000_0000),
        ("mov32 r0, -7\nsdiv32 r0, 2\nexit", 0xffff_fffd),
        ("mov32 r0, -7\nmov r1, 0\nsmod32 r0, r1\nexit", 0xffff_fff9),
        ("lddw r0, 0x1fffffff9\nsmod32 r0, 0\nexit", 0xffff_fff9),
        ("mov32 r0, -7\nsdiv32 r0, 0\nexit", 0),
    ];
    for (src, want) in cases {
        assert_eq!(run(src), *want, "{src}");
    }
}

#[test]
fn movsx_end_bswap() {
    assert_eq!(
        run("mov r1, 0x80\nmovsx64 r0, r1, 8\nexit"),
        (-128i64) as u64
    );
    assert_eq!(
        run("mov r1, 0x8000\nmovsx64 r0, r1, 16\nexit"),
        (-32768i64) as u64
    );
    assert_eq!(
        run("mov32 r1, 0x80000000\nmovsx64 r0, r1, 32\nexit"),
        0xffff_ffff_8000_0000
    );
    assert_eq!(run("mov r1, 0x80\nmovsx32 r0, r1, 8\nexit"), 0xffff_ff80);
    assert_eq!(run("mov r1, 0x8000\nmovsx32 r0, r1, 16\nexit"), 0xffff_8000);
    let x = "lddw r0, 0x1122334455667788\n";
    assert_eq!(run(&format!("{x}le16 r0\nexit")), 0x7788);
    assert_eq!(run(&format!("{x}le32 r0\nexit")), 0x5566_7788);
    assert_eq!(run(&format!("{x}le64 r0\nexit")), 0x1122_3344_5566_7788);
    assert_eq!(run(&format!("{x}be16 r0\nexit")), 0x8877);
    assert_eq!(run(&format!("{x}be32 r0\nexit")), 0x8877_6655);
    assert_eq!(run(&format!("{x}be64 r0\nexit")), 0x8877_6655_4433_2211);
    assert_eq!(run(&format!("{x}bswap16 r0\nexit")), 0x8877);
    assert_eq!(run(&format!("{x}bswap32 r0\nexit")), 0x8877_6655);
    assert_eq!(run(&format!("{x}bswap64 r0\nexit")), 0x8877_6655_4433_2211);
}

#[test]
fn jumps_all_conditions() {
    // For each condition: (mnemonic, a, b, taken-64, taken-32).
    let a = -2i64; // 0xff..fe; low 32 bits 0xfffffffe
    let cases = [
        ("jeq", a, a, true, true),
        ("jne", a, 3, true, true),
        ("jgt", a, 3, true, true),
        ("jge", 3, 3, true, true),
        ("jlt", a, 3, false, false),
        ("jle", 3, 3, true, true),
        ("jsgt", a, 3, false, false),
        ("jsge", a, a, true, true),
        ("jslt", a, 3, true, true),
        ("jsle", 4, 3, false, false),
        ("jset", 6, 3, true, true),
        ("jset", 4, 3, false, false),
    ];
    for (m, x, y, t64, t32) in cases {
        for (suffix, taken) in [("", t64), ("32", t32)] {
            for by_reg in [false, true] {
                let rhs = if by_reg {
                    "r2".to_string()
                } else {
                    y.to_string()
                };
                let src = format!(
                    "lddw r1, {x}\nmov r2, {y}\nmov r0, 1\n{m}{suffix} r1, {rhs}, +1\nmov r0, 0\nexit"
                );
                assert_eq!(run(&src), taken as u64, "{src}");
            }
        }
    }
    // JMP32 looks only at the low 32 bits.
    assert_eq!(
        run("lddw r1, 0x100000005\nmov r0, 1\njeq32 r1, 5, +1\nmov r0, 0\nexit"),
        1
    );
    assert_eq!(
        run("lddw r1, 0x100000005\nmov r0, 1\njeq r1, 5, +1\nmov r0, 0\nexit"),
        0
    );
    // gotol (JA32) uses imm.
    assert_eq!(run("mov r0, 1\ngotol skip\nmov r0, 2\nskip:\nexit"), 1);
}

#[test]
fn loops_and_stack() {
    // sum 1..=100 with a loop whose header is the function entry's successor.
    assert_eq!(
        run("mov r0, 0\nmov r1, 100\nl:\nadd r0, r1\nsub r1, 1\njne r1, 0, l\nexit"),
        5050
    );
    // A loop at instruction 0 (entry block is a branch target).
    assert_eq!(run("l:\nadd r3, 1\njlt r3, 10, l\nmov r0, r3\nexit"), 10);
    let src = "
        stdw [r10-8], 0x1234
        stw [r10-12], -1
        sth [r10-14], 0x7fff
        stb [r10-15], 0x80
        mov r1, 0x55
        stxb [r10-16], r1
        ldxdw r0, [r10-8]
        ldxw r2, [r10-12]
        add r0, r2
        ldxh r2, [r10-14]
        add r0, r2
        ldxb r2, [r10-15]
        add r0, r2
        ldxb r2, [r10-16]
        add r0, r2
        ldxsb r2, [r10-15]
        add r0, r2
        ldxsw r2, [r10-12]
        add r0, r2
        ldxsh r2, [r10-14]
        add r0, r2
        exit";
    let want = 0x1234u64 + 0xffff_ffff + 0x7fff + 0x80 + 0x55 - 128 - 1 + 0x7fff;
    assert_eq!(run(src), want);
}

#[test]
fn context_memory_unaligned() {
    let mut mem = [0u8; 16];
    for (i, b) in mem.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    let r = run_both(
        "ldxdw r0, [r1+3]\nstxw [r1+9], r0\nldxdw r0, [r1+8]\nexit",
        &mem,
    );
    let lo = u64::from_le_bytes(mem[3..11].try_into().unwrap());
    let mut m = mem;
    m[9..13].copy_from_slice(&(lo as u32).to_le_bytes());
    assert_eq!(r, Ok(u64::from_le_bytes(m[8..16].try_into().unwrap())));
}

#[test]
fn atomics() {
    let cases: &[(&str, u64)] = &[
        ("stdw [r10-8], 10\nmov r1, 5\natomic_add64 [r10-8], r1\nldxdw r0, [r10-8]\nexit", 15),
        ("stdw [r10-8], 10\nmov r1, 5\natomic_fetch_add64 [r10-8], r1\nmov r0, r1\nexit", 10),
        ("stdw [r10-8], 12\nmov r1, 5\natomic_or64 [r10-8], r1\nldxdw r0, [r10-8]\nexit", 13),
        ("stdw [r10-8], 12\nmov r1, 5\natomic_and64 [r10-8], r1\nldxdw r0, [r10-8]\nexit", 4),
        ("stdw [r10-8], 12\nmov r1, 5\natomic_xor64 [r10-8], r1\nldxdw r0, [r10-8]\nexit", 9),
        ("stdw [r10-8], 12\nmov r1, 5\natomic_fetch_xor64 [r10-8], r1\nldxdw r0, [r10-8]\nadd r0, r1\nexit", 21),
        ("stdw [r10-8], 12\nmov r1, 5\nxchg64 [r10-8], r1\nldxdw r0, [r10-8]\nlsh r0, 8\nadd r0, r1\nexit", 0x50c),
        // cmpxchg: equal -> store, r0 = old
        ("stdw [r10-8], 12\nmov r0, 12\nmov r1, 5\ncmpxchg64 [r10-8], r1\nldxdw r2, [r10-8]\nlsh r0, 8\nadd r0, r2\nexit", 0xc05),
        // not equal -> no store, r0 = old
        ("stdw [r10-8], 12\nmov r0, 11\nmov r1, 5\ncmpxchg64 [r10-8], r1\nldxdw r2, [r10-8]\nlsh r0, 8\nadd r0, r2\nexit", 0xc0c),
        // 32-bit: neighbours untouched, fetch zero-extends
        ("stdw [r10-8], -1\nmov r1, 1\natomic_add32 [r10-8], r1\nldxdw r0, [r10-8]\nexit", 0xffff_ffff_0000_0000),
        ("stw [r10-8], -1\nlddw r1, 0x1234500000001\natomic_fetch_add32 [r10-8], r1\nmov r0, r1\nexit", 0xffff_ffff),
        ("stw [r10-8], 7\nlddw r0, 0xabc00000007\nmov r1, 9\ncmpxchg32 [r10-8], r1\nldxw r2, [r10-8]\nlsh r0, 8\nadd r0, r2\nexit", 0x709),
        ("stw [r10-8], 7\nlddw r1, -1\nxchg32 [r10-8], r1\nmov r0, r1\nexit", 7),
        ("stw [r10-8], 6\nmov r1, 3\natomic_fetch_and32 [r10-8], r1\nldxw r0, [r10-8]\nlsh r0, 8\nadd r0, r1\nexit", 0x206),
        ("stw [r10-8], 6\nmov r1, 3\natomic_fetch_or32 [r10-8], r1\nldxw r0, [r10-8]\nlsh r0, 8\nadd r0, r1\nexit", 0x706),
    ];
    for (src, want) in cases {
        assert_eq!(run(src), *want, "{src}");
    }
}

#[test]
fn local_calls_preserve_callee_saved_and_frames() {
    let src = "
        mov r6, 100
        stdw [r10-8], 1000
        mov r1, 1
        mov r2, 2
        call f
        add r0, r6
        ldxdw r1, [r10-8]
        add r0, r1
        exit
    f:
        mov r6, 7
        stdw [r10-8], 5
        add r1, r2
        mov r0, r1
        ldxdw r3, [r10-8]
        add r0, r3
        mov r1, r10
        call g
        exit
    g:
        mov r0, r1
        sub r0, 8
        ldxdw r0, [r0+0]
        lsh r0, 1
        exit";
    // f: r0 = 3 + 5, then g returns caller's [r10-8]*2 = 10 (f's r0 is overwritten by g)
    assert_eq!(run(src), 10 + 100 + 1000);
}

#[test]
fn recursion_within_depth_limit() {
    // fact(5) with 5 nested frames plus main: 6 frames.
    let src = "
        mov r1, 5
        call fact
        exit
    fact:
        mov r0, 1
        jle r1, 1, done
        mov r6, r1
        sub r1, 1
        call fact
        mul r0, r6
    done:
        exit";
    assert_eq!(run(src), 120);
}

#[test]
fn guarded_call_depth_exceeded() {
    let src = "
        mov r1, 100
        call rec
        exit
    rec:
        sub r1, 1
        jeq r1, 0, out
        call rec
    out:
        exit";
    let prog = prepare(assemble(src).unwrap());
    let jit = compile(&prog, true);
    let err = run_on(&jit, &mut [0u8; 8]).unwrap_err();
    assert_eq!(
        err,
        VmError::CallDepthExceeded {
            insn: 5,
            max: MAX_CALL_FRAMES
        }
    );
}

#[test]
fn guarded_out_of_bounds() {
    let prog = prepare(assemble("mov r0, 0\nldxw r0, [r1+14]\nexit").unwrap());
    let jit = compile(&prog, true);
    let mut mem = [0u8; 16];
    let addr = mem.as_ptr() as u64 + 14;
    assert_eq!(
        run_on(&jit, &mut mem),
        Err(VmError::OutOfBounds {
            insn: 1,
            addr,
            len: 4,
            access: Access::Read
        })
    );

    // Stack: below the frame through a derived pointer, and above r10.
    let prog = prepare(assemble("mov r2, r10\nstxdw [r2+0], r1\nexit").unwrap());
    let err = run_on(&compile(&prog, true), &mut mem).unwrap_err();
    assert!(matches!(
        err,
        VmError::OutOfBounds {
            insn: 1,
            len: 8,
            access: Access::Write,
            ..
        }
    ));
    let prog = prepare(assemble("stb [r10+0], 1\nexit").unwrap());
    let err = run_on(&compile(&prog, true), &mut mem).unwrap_err();
    assert!(
        matches!(
            err,
            VmError::OutOfBounds {
                insn: 0,
                len: 1,
                ..
            }
        ),
        "{err:?}"
    );

    // Writes to a read-only region, and atomics.
    let prog = prepare(assemble("mov r0, 0\nmov r2, 1\natomic_add64 [r1+8], r2\nexit").unwrap());
    let jit = compile(&prog, true);
    let mut env = RunEnv::default();
    env.begin_run();
    env.memory.add(Region {
        start: mem.as_ptr() as u64,
        len: 16,
        writable: false,
        kind: RegionKind::Context,
    });
    // SAFETY: guarded.
    let err = unsafe { jit.run(&mut env, mem.as_mut_ptr() as u64, 0) }.unwrap_err();
    assert!(matches!(
        err,
        VmError::OutOfBounds {
            insn: 2,
            access: Access::Write,
            ..
        }
    ));

    // A null pointer in a callee unwinds through the caller.
    let prog =
        prepare(assemble("mov r6, 1\ncall f\nmov r0, 9\nexit\nf:\nldxb r0, [r1+0]\nexit").unwrap());
    let err = run_on(&compile(&prog, true), &mut []).unwrap_err();
    assert!(matches!(err, VmError::OutOfBounds { insn: 4, .. }));
}

#[test]
fn guarded_misaligned_atomic_and_main_recursion() {
    let prog = prepare(
        assemble("stdw [r10-16], 0\nmov r2, 1\natomic_add64 [r10-12], r2\nmov r0, 0\nexit")
            .unwrap(),
    );
    let err = run_on(&compile(&prog, true), &mut []).unwrap_err();
    assert!(
        matches!(&err, VmError::Unsupported { insn: 2, what } if what.contains("misaligned")),
        "{err:?}"
    );
    let prog = prepare(assemble("f:\ncall f\nexit").unwrap());
    let err = run_on(&compile(&prog, true), &mut []).unwrap_err();
    assert_eq!(
        err,
        VmError::CallDepthExceeded {
            insn: 0,
            max: MAX_CALL_FRAMES
        }
    );
}

#[test]
fn stack_pointer_passed_by_register_is_accepted_in_guarded_mode() {
    assert_eq!(
        run("mov r1, r10\nadd r1, -16\nstdw [r1+8], 42\nldxdw r0, [r10-8]\nexit"),
        42
    );
}

#[test]
fn helper_calls_and_callbacks() {
    // bpf_loop(5, cb, ctx = r10-8, 0): the callback adds its index to a stack slot of main.
    let src = "
        stdw [r10-8], 0
        mov r1, 5
        ldfunc r2, cb
        mov r3, r10
        add r3, -8
        mov r4, 0
        call 181
        ldxdw r1, [r10-8]
        lsh r0, 16
        add r0, r1
        exit
    cb:
        ldxdw r3, [r2+0]
        add r3, r1
        stxdw [r2+0], r3
        stdw [r10-8], 77
        mov r0, 0
        exit";
    assert_eq!(run(src), (5 << 16) + 10);

    // get_smp_processor_id reads env.cpu.
    let prog = prepare(assemble("call 8\nexit").unwrap());
    for guarded in [false, true] {
        let jit = compile(&prog, guarded);
        let mut env = RunEnv {
            cpu: 3,
            ..RunEnv::default()
        };
        // SAFETY: no memory access.
        assert_eq!(unsafe { jit.run(&mut env, 0, 0) }, Ok(3));
    }
}

#[test]
fn helper_fault_is_attributed_to_the_call() {
    // A fault raised by a callback (out of bounds at insn 8) surfaces from the loop helper.
    let src = "
        mov r1, 2
        ldfunc r2, cb
        mov r3, 0
        mov r4, 0
        call 181
        exit
    cb:
        mov r0, 0
        ldxdw r0, [r2+0]
        exit";
    let prog = prepare(assemble(src).unwrap());
    let err = run_on(&compile(&prog, true), &mut []).unwrap_err();
    assert!(
        matches!(err, VmError::OutOfBounds { insn: 8, .. }),
        "{err:?}"
    );

    // A helper refusing its arguments (guarded): attributed to the call instruction.
    let src = "mov r1, 0\nmov r2, 4\nmov r3, 0\nmov r4, 0\nmov r5, 0\ncall 28\nmov r0, 1\nexit";
    let prog = prepare(assemble(src).unwrap());
    let err = run_on(&compile(&prog, true), &mut []).unwrap_err();
    assert!(
        matches!(
            err,
            VmError::HelperFault {
                insn: 5,
                helper: "csum_diff",
                ..
            }
        ),
        "{err:?}"
    );
    // The same helper with a stack buffer is fine (the stack is a region in guarded runs).
    let src = "stdw [r10-8], -1\nmov r1, r10\nadd r1, -8\nmov r2, 8\nmov r3, 0\nmov r4, 0\nmov r5, 0\ncall 28\nexit";
    assert_eq!(run(src), 0);

    // bpf_loop with an unknown callback: the hook's error carries the call's insn.
    let src = "mov r1, 2\nlddw r2, 1000\nmov r3, 0\nmov r4, 0\ncall 181\nexit";
    let prog = prepare(assemble(src).unwrap());
    let err = run_on(&compile(&prog, false), &mut []).unwrap_err();
    assert!(
        matches!(err, VmError::Unsupported { insn: 5, .. }),
        "{err:?}"
    );
}

#[test]
fn tail_call_unwinds_from_a_callee() {
    use std::sync::Arc;
    use userxdp_runtime::maps::{types, MapHandle, ProgArrayMap};

    let spec = map_spec("jmp", types::PROG_ARRAY, 4, 2);
    let array = Arc::new(ProgArrayMap::new(spec));
    let target: Arc<dyn std::any::Any + Send + Sync> = Arc::new(7u32);
    let target_ptr = Arc::as_ptr(&target) as *const u32 as *const std::ffi::c_void;
    array.set(1, Some((1, target, target_ptr))).unwrap();
    let handle = MapHandle::new(array);
    // main: r6 = 5; call f; r0 = 99 (must not run after a successful tail call).
    // f: tail_call(ctx, map, r7) with r7 = index passed in r2; on failure return r7 + 100.
    let src = format!(
        "mov r2, 1\ncall f\nmov r0, 99\nexit\n\
         f:\nmov r7, r2\nlddw r2, {}\nmov r3, r7\ncall 12\nmov r0, r7\nadd r0, 100\nexit",
        handle.addr()
    );
    let prog = prepare(assemble(&src).unwrap());
    for guarded in [false, true] {
        let jit = compile(&prog, guarded);
        let mut env = RunEnv {
            checked: guarded,
            map_handles: vec![handle.addr()],
            ..RunEnv::default()
        };
        env.begin_run();
        // SAFETY: no memory access besides the map handle.
        let r = unsafe { jit.run(&mut env, 0, 0) };
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(env.tail_call_pending, 1, "guarded={guarded}");
        assert_eq!(env.tail_call_target, target_ptr);
        // An empty slot falls through and the program continues.
        let src2 = src.replacen("mov r2, 1", "mov r2, 0", 1);
        let prog2 = prepare(assemble(&src2).unwrap());
        let jit2 = compile(&prog2, guarded);
        env.begin_run();
        // SAFETY: as above.
        assert_eq!(unsafe { jit2.run(&mut env, 0, 0) }, Ok(99));
        assert_eq!(env.tail_call_pending, 0);
    }
}

fn map_spec(name: &str, map_type: u32, value_size: u32, max_entries: u32) -> MapSpec {
    MapSpec {
        name: name.into(),
        map_type,
        key_size: 4,
        value_size,
        max_entries,
        flags: 0,
        inner: None,
        data: None,
        pinning: Pinning::None,
        global_data: false,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        spin_lock_offset: None,
        initial_slots: Vec::new(),
    }
}

#[test]
fn map_lookup_inline_for_arrays_and_direct_for_hashes() {
    use userxdp_runtime::maps::{self, types, MapHandle};

    // Two CPUs, the run on CPU 1: per-CPU maps must answer with CPU 1's slot, which alone
    // holds the values (CPU 0's slots hold other numbers).
    for map_type in [
        types::ARRAY,
        types::PERCPU_ARRAY,
        types::HASH,
        types::PERCPU_HASH,
        types::LRU_HASH,
        types::LRU_PERCPU_HASH,
    ] {
        // Room to spare in hash maps: an LRU update of a full map evicts even when the key
        // exists (as the kernel's prealloc_lru_pop).
        let arrays = [types::ARRAY, types::PERCPU_ARRAY];
        let max_entries = if arrays.contains(&map_type) { 4 } else { 8 };
        let map = maps::create(&map_spec("m", map_type, 12, max_entries), 2).unwrap();
        for k in 0..4u32 {
            let mut v = [0u8; 12];
            v[4..8].copy_from_slice(&(k * 10 + 7).to_ne_bytes());
            map.update(&k.to_ne_bytes(), &v, 0, 0).unwrap();
            v[4..8].copy_from_slice(&(k * 10 + 1).to_ne_bytes());
            map.update(&k.to_ne_bytes(), &v, 0, 1).unwrap();
        }
        let handle = MapHandle::new(map);
        // r0 = sum over keys 0..=4 of value[4..8] (key 4 is out of range: NULL, adds 1000).
        let src = format!(
            "mov r6, 0\nmov r7, 0\n\
             l:\nstxw [r10-4], r7\nlddw r1, {}\nmov r2, r10\nadd r2, -4\ncall 1\n\
             jeq r0, 0, null\nldxw r0, [r0+4]\nadd r6, r0\nja next\n\
             null:\nadd r6, 1000\n\
             next:\nadd r7, 1\njle r7, 4, l\nmov r0, r6\nexit",
            handle.addr()
        );
        let prog = prepare(assemble(&src).unwrap());
        for guarded in [false, true] {
            let jit = compile(&prog, guarded);
            let mut env = RunEnv {
                checked: guarded,
                cpu: 1,
                map_handles: vec![handle.addr()],
                ..RunEnv::default()
            };
            env.begin_run();
            let _pin = maps::epoch::pin();
            // SAFETY: the program only reads its stack and the map's values; pinned for the
            // hash maps' values.
            let r = unsafe { jit.run(&mut env, 0, 0) };
            assert_eq!(
                r,
                Ok(1 + 11 + 21 + 31 + 1000),
                "map type {map_type} guarded={guarded}"
            );
        }
        // The interpreter's inline lookups (arrays, and the hash family's direct call) give
        // the same answers, also in clang's order (key address first, then the map, the call
        // and the null check: one fused op), and leave each value's region registered.
        let clang_order = format!(
            "mov r6, 0\nmov r7, 0\n\
             l:\nstxw [r10-4], r7\nmov r2, r10\nadd r2, -4\nlddw r1, {}\ncall 1\n\
             jeq r0, 0, null\nldxw r0, [r0+4]\nadd r6, r0\nja next\n\
             null:\nadd r6, 1000\n\
             next:\nadd r7, 1\njle r7, 4, l\nmov r0, r6\nexit",
            handle.addr()
        );
        for prog in [prog, prepare(assemble(&clang_order).unwrap())] {
            let mut env = RunEnv {
                cpu: 1,
                map_handles: vec![handle.addr()],
                ..RunEnv::default()
            };
            env.begin_run();
            let _pin = maps::epoch::pin();
            assert_eq!(
                Interpreter::default().run(&prog, &mut env, 0, 0),
                Ok(1 + 11 + 21 + 31 + 1000),
                "map type {map_type} interpreted"
            );
            let values = env
                .memory
                .regions()
                .iter()
                .filter(|r| r.kind == RegionKind::MapValue)
                .count();
            assert_eq!(values, 4, "map type {map_type}: value regions");
        }
        // A key the program may not read is the helper's fault, not a miss.
        let src = format!("lddw r1, {}\nmov r2, 64\ncall 1\nexit", handle.addr());
        let prog = prepare(assemble(&src).unwrap());
        let mut env = RunEnv {
            map_handles: vec![handle.addr()],
            ..RunEnv::default()
        };
        env.begin_run();
        let r = Interpreter::default().run(&prog, &mut env, 0, 0);
        assert!(
            matches!(
                r,
                Err(VmError::HelperFault {
                    insn: 3,
                    helper: "map_lookup_elem",
                    ..
                })
            ),
            "map type {map_type}: {r:?}"
        );
    }
}

#[test]
fn compile_errors_are_reported() {
    // Jump out of its function.
    let prog = prepare(assemble("call f\nexit\nf:\nja -3\n").unwrap());
    let err = JitProgram::compile(&prog, &JitOptions::default()).unwrap_err();
    assert!(
        matches!(err, JitError::Unsupported { insn: 2, .. }),
        "{err}"
    );
    // ld_imm64 with a pseudo source the loader should have resolved.
    let mut insns = assemble("lddw r0, 1\nexit").unwrap();
    insns[0].src = PSEUDO_MAP_FD;
    let err = JitProgram::compile(&prepare(insns), &JitOptions::default()).unwrap_err();
    assert!(
        matches!(err, JitError::Unsupported { insn: 0, .. }),
        "{err}"
    );
}

#[test]
fn runs_concurrently_from_threads() {
    let prog = prepare(
        assemble("mov r0, 0\nl:\nadd r0, r1\nsub r1, 1\njne r1, 0, l\nstxdw [r10-8], r0\nldxdw r0, [r10-8]\nexit")
            .unwrap(),
    );
    let jit = std::sync::Arc::new(compile(&prog, false));
    let handles: Vec<_> = (1..=4u64)
        .map(|n| {
            let jit = jit.clone();
            std::thread::spawn(move || {
                let mut env = RunEnv::default();
                (0..1000)
                    .map(|_| {
                        // SAFETY: only its own stack is touched.
                        unsafe { jit.run(&mut env, n * 100, 0) }.unwrap()
                    })
                    .last()
            })
        })
        .collect();
    for (n, h) in (1..=4u64).zip(handles) {
        let k = n * 100;
        assert_eq!(h.join().unwrap(), Some(k * (k + 1) / 2));
    }
}

/// Tiny deterministic PRNG (no dependency on `rand`'s API for reproducibility).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random straight-line ALU programs with forward conditional jumps, compared with the
/// interpreter (register state is folded into r0 at the end).
#[test]
fn differential_against_interpreter() {
    const OPS: [u8; 13] = [
        BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD,
        BPF_XOR, BPF_MOV, BPF_ARSH,
    ];
    const JOPS: [u8; 11] = [
        BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE, BPF_JLT, BPF_JLE,
        BPF_JSLT, BPF_JSLE,
    ];
    let interesting = [
        0i32,
        1,
        -1,
        2,
        31,
        32,
        63,
        64,
        i32::MIN,
        i32::MAX,
        0x7fff,
        -0x8000,
    ];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..300 {
        let mut insns = Vec::new();
        for r in 0..10u8 {
            let v = rng.next();
            insns.push(Insn::new(
                BPF_LD | BPF_IMM | BPF_DW,
                r,
                0,
                0,
                v as u32 as i32,
            ));
            insns.push(Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32));
        }
        let body = 40;
        let start = insns.len();
        for i in 0..body {
            let dst = rng.below(10) as u8;
            let src = rng.below(10) as u8;
            let imm = if rng.below(2) == 0 {
                interesting[rng.below(interesting.len() as u64) as usize]
            } else {
                rng.next() as i32
            };
            let class = if rng.below(2) == 0 {
                BPF_ALU
            } else {
                BPF_ALU64
            };
            let x = if rng.below(2) == 0 { BPF_K } else { BPF_X };
            let kind = rng.below(10);
            let insn = if kind == 0 {
                let left = (body - i - 1) as i16;
                let jclass = if rng.below(2) == 0 {
                    BPF_JMP
                } else {
                    BPF_JMP32
                };
                let op = JOPS[rng.below(JOPS.len() as u64) as usize];
                Insn::new(
                    jclass | op | x,
                    dst,
                    src,
                    rng.below(left as u64 + 1) as i16,
                    imm,
                )
            } else if kind == 1 {
                let width = [16, 32, 64][rng.below(3) as usize];
                let (class, x) = if rng.below(3) == 0 {
                    (BPF_ALU64, 0)
                } else {
                    (BPF_ALU, x)
                };
                Insn::new(class | BPF_END | x, dst, 0, 0, width)
            } else if kind == 2 {
                let off = [8i16, 16, 32][rng.below(3) as usize];
                let class = if off == 32 { BPF_ALU64 } else { class };
                Insn::new(class | BPF_MOV | BPF_X, dst, src, off, 0)
            } else {
                let op = OPS[rng.below(OPS.len() as u64) as usize];
                // NEG has no source operand: BPF_K and src_reg 0, as the kernel requires.
                let (x, src) = if op == BPF_NEG { (BPF_K, 0) } else { (x, src) };
                let off = if (op == BPF_DIV || op == BPF_MOD) && rng.below(2) == 0 {
                    1
                } else {
                    0
                };
                Insn::new(class | op | x, dst, src, off, imm)
            };
            insns.push(insn);
        }
        debug_assert_eq!(insns.len(), start + body);
        for r in 1..10u8 {
            insns.push(Insn::new(BPF_ALU64 | BPF_MUL | BPF_K, 0, 0, 0, 0x3f1));
            insns.push(Insn::new(BPF_ALU64 | BPF_XOR | BPF_X, 0, r, 0, 0));
        }
        insns.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
        let prog = prepare(insns);

        let mut env = RunEnv::default();
        env.begin_run();
        let want = Interpreter::default().run(&prog, &mut env, 0, 0);
        for guarded in [false, true] {
            let jit = compile(&prog, guarded);
            let mut env = RunEnv::default();
            env.begin_run();
            // SAFETY: ALU-only program.
            let got = unsafe { jit.run(&mut env, 0, 0) };
            if got != want {
                report_mismatch(&prog, guarded, round);
            }
        }
    }
}

/// Random programs with stack loads, stores and atomics (and a local call that does the same
/// on its own frame), compared with the interpreter.
#[test]
fn differential_memory_against_interpreter() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let fetch_ops = [
        BPF_ADD as i32,
        BPF_OR as i32,
        BPF_AND as i32,
        BPF_XOR as i32,
        BPF_ADD as i32 | BPF_FETCH,
        BPF_OR as i32 | BPF_FETCH,
        BPF_AND as i32 | BPF_FETCH,
        BPF_XOR as i32 | BPF_FETCH,
        BPF_XCHG,
        BPF_CMPXCHG,
    ];
    let sizes = [BPF_B, BPF_H, BPF_W, BPF_DW];
    // One function body: fill the frame, random memory/ALU ops, fold the frame into r0.
    let body = |rng: &mut Rng, insns: &mut Vec<Insn>, call_at: Option<usize>| {
        for k in 1..=64i16 {
            insns.push(Insn::new(
                BPF_ST | BPF_MEM | BPF_DW,
                10,
                0,
                -8 * k,
                rng.next() as i32,
            ));
        }
        for r in 0..10u8 {
            let v = rng.next();
            insns.push(Insn::new(
                BPF_LD | BPF_IMM | BPF_DW,
                r,
                0,
                0,
                v as u32 as i32,
            ));
            insns.push(Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32));
        }
        let n = 60;
        for i in 0..n {
            if Some(i) == call_at {
                insns.push(Insn::new(BPF_JMP | BPF_CALL, 0, CALL_LOCAL, 0, 0)); // patched
                                                                                // r1-r5 are clobbered by a call (the verifier forbids reading them after it).
                for r in 1..=5u8 {
                    insns.push(Insn::new(
                        BPF_ALU64 | BPF_MOV | BPF_K,
                        r,
                        0,
                        0,
                        rng.next() as i32,
                    ));
                }
                continue;
            }
            let r = rng.below(10) as u8;
            let s = rng.below(10) as u8;
            let size = sizes[rng.below(4) as usize];
            let bytes: i16 = match size {
                BPF_B => 1,
                BPF_H => 2,
                BPF_W => 4,
                _ => 8,
            };
            let off = -(rng.below((512 - bytes as u64) / bytes as u64) as i16 + 1) * bytes;
            let insn = match rng.below(8) {
                0 => Insn::new(BPF_LDX | BPF_MEM | size, r, 10, off, 0),
                1 if size != BPF_DW => Insn::new(BPF_LDX | BPF_MEMSX | size, r, 10, off, 0),
                2 => Insn::new(BPF_STX | BPF_MEM | size, 10, s, off, 0),
                3 => Insn::new(BPF_ST | BPF_MEM | size, 10, 0, off, rng.next() as i32),
                4 => {
                    let (size, bytes) = if rng.below(2) == 0 {
                        (BPF_W, 4)
                    } else {
                        (BPF_DW, 8)
                    };
                    let off = -(rng.below(512 / bytes) as i16 + 1) * bytes as i16;
                    let op = fetch_ops[rng.below(fetch_ops.len() as u64) as usize];
                    Insn::new(BPF_STX | BPF_ATOMIC | size, 10, s, off, op)
                }
                5 => {
                    let left = (n - i - 1) as u64;
                    Insn::new(
                        BPF_JMP | BPF_JGT | BPF_X,
                        r,
                        s,
                        rng.below(left.min(5) + 1) as i16,
                        0,
                    )
                }
                _ => Insn::new(BPF_ALU64 | BPF_XOR | BPF_X, r, s, 0, 0),
            };
            insns.push(insn);
        }
        for k in 1..=64i16 {
            insns.push(Insn::new(BPF_LDX | BPF_MEM | BPF_DW, 1, 10, -8 * k, 0));
            insns.push(Insn::new(BPF_ALU64 | BPF_MUL | BPF_K, 0, 0, 0, 0x3f1));
            insns.push(Insn::new(BPF_ALU64 | BPF_XOR | BPF_X, 0, 1, 0, 0));
        }
        for r in 6..10u8 {
            insns.push(Insn::new(BPF_ALU64 | BPF_MUL | BPF_K, 0, 0, 0, 0x3f1));
            insns.push(Insn::new(BPF_ALU64 | BPF_XOR | BPF_X, 0, r, 0, 0));
        }
        insns.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    };
    for round in 0..150 {
        let mut insns = Vec::new();
        let call_at = rng.below(60) as usize;
        body(&mut rng, &mut insns, Some(call_at));
        let callee = insns.len();
        body(&mut rng, &mut insns, None);
        let call_pc = insns
            .iter()
            .position(|i| i.op == BPF_JMP | BPF_CALL)
            .expect("call placed");
        insns[call_pc].imm = (callee - call_pc - 1) as i32;
        let prog = prepare(insns);

        let mut env = RunEnv::default();
        env.begin_run();
        let want = Interpreter::default().run(&prog, &mut env, 0, 0);
        assert!(want.is_ok(), "{want:?}");
        for guarded in [false, true] {
            let jit = compile(&prog, guarded);
            let mut env = RunEnv::default();
            env.begin_run();
            // SAFETY: only in-frame stack accesses.
            let got = unsafe { jit.run(&mut env, 0, 0) };
            if got != want {
                report_mismatch(&prog, guarded, round);
            }
        }
    }
}

/// Runs `insns` on the interpreter and the JIT; `None` if they do not form a program.
fn both_engines(
    insns: &[Insn],
    guarded: bool,
) -> Option<(Result<u64, VmError>, Result<u64, VmError>)> {
    let p = PreparedProgram::new("t", ProgramType::Xdp, insns.to_vec()).ok()?;
    let mut env = RunEnv::default();
    let want = Interpreter::default().run(&p, &mut env, 0, 0);
    let jit = compile(&p, guarded);
    let mut env = RunEnv::default();
    // SAFETY: only in-frame stack accesses (nop-ing instructions keeps that true).
    let got = unsafe { jit.run(&mut env, 0, 0) };
    Some((got, want))
}

/// Shrinks a program on which the engines disagree (replacing instructions by no-ops while
/// they still disagree; stack initialisation is kept) and panics with the remainder.
fn report_mismatch(prog: &PreparedProgram, guarded: bool, round: usize) -> ! {
    let nop = Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 0, 0, 0, 0);
    let keep = |i: Insn| i.op == BPF_JMP | BPF_EXIT || i.op == BPF_ST | BPF_MEM | BPF_DW;
    let differs = |insns: &[Insn]| both_engines(insns, guarded).is_some_and(|(a, b)| a != b);
    let mut insns = prog.insns.clone();
    let mut i = 0;
    while i < insns.len() {
        let w = if insns[i].is_ld_imm64() { 2 } else { 1 };
        if !keep(insns[i]) && insns[i] != nop {
            let mut t = insns.clone();
            t[i..i + w].fill(nop);
            if differs(&t) {
                insns = t;
            }
        }
        i += w;
    }
    let (got, want) = both_engines(&insns, guarded).expect("still a program");
    let text: Vec<String> = insns
        .iter()
        .enumerate()
        .filter(|(_, i)| **i != nop && i.op != BPF_ST | BPF_MEM | BPF_DW)
        .map(|(k, i)| format!("{k}: {}", userxdp_runtime::vm::asm::disassemble_one(*i)))
        .collect();
    panic!(
        "round {round} guarded={guarded}: jit {got:?}, interpreter {want:?}\n{}",
        text.join("\n")
    );
}
