//! Interpreter unit tests for what the conformance table cannot reach without real helpers:
//! callbacks, helper faults and tail-call unwinding. The instruction semantics are covered by
//! `runtime/tests/conformance.rs`.

use super::decode::flag;
use super::*;
use crate::helpers::Helper;
use crate::object::spec::ProgramType;
use crate::vm::asm::assemble;

/// Test helper: bpf_loop-like — calls function `r2` for i in 0..r1 with (i, r3) and sums r0.
const LOOP: i32 = 0x7fff_0001;
/// Test helper: raises a fault.
const FAULT: i32 = 0x7fff_0002;
/// Test helper: requests a tail call and returns 42.
const TAIL: i32 = 0x7fff_0003;

unsafe extern "C" fn loop_helper(
    n: u64,
    func: u64,
    ctx: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        // SAFETY: `env` is the live environment of the run calling this helper.
        let cb = unsafe { (*env).callback }.expect("engine sets a callback");
        // SAFETY: called from a helper of the run that installed the callback.
        match unsafe { cb(env, func, [i, ctx, 0, 0, 0]) } {
            Ok(v) => sum = sum.wrapping_add(v),
            Err(e) => {
                // SAFETY: as above; no other reference to `*env` is live.
                unsafe {
                    (*env).fault = Some(e);
                    (*env).fault_flag = 1;
                }
                return 0;
            }
        }
    }
    sum
}

unsafe extern "C" fn fault_helper(_: u64, _: u64, _: u64, _: u64, _: u64, env: *mut RunEnv) -> u64 {
    // SAFETY: `env` is the live environment of the calling run.
    unsafe { (*env).raise("test_fault", "refused") };
    0
}

unsafe extern "C" fn tail_helper(_: u64, _: u64, _: u64, _: u64, _: u64, env: *mut RunEnv) -> u64 {
    // SAFETY: `env` is the live environment of the calling run.
    unsafe { (*env).tail_call_pending = 1 };
    42
}

static TEST_HELPERS: [Helper; 3] = [
    Helper {
        id: LOOP,
        name: "test_loop",
        func: loop_helper,
    },
    Helper {
        id: FAULT,
        name: "test_fault",
        func: fault_helper,
    },
    Helper {
        id: TAIL,
        name: "test_tail",
        func: tail_helper,
    },
];

/// Helpers only the unit tests can call (resolved by the dispatch loop under `cfg(test)`).
pub(super) fn test_helper(id: i32) -> Option<&'static Helper> {
    TEST_HELPERS.iter().find(|h| h.id == id)
}

/// Builds a prepared program without `PreparedProgram::new`'s helper resolution (the test
/// helpers are not in the global table).
fn prepare(text: &str) -> PreparedProgram {
    let insns = assemble(text).expect("assembles");
    crate::vm::insn::validate(&insns).expect("valid");
    let mut functions = vec![0];
    for (pc, i) in insns.iter().enumerate() {
        let local = i.op == crate::vm::insn::BPF_JMP | crate::vm::insn::BPF_CALL
            && i.src == crate::vm::insn::CALL_LOCAL;
        if local || (i.is_ld_imm64() && i.src == crate::vm::insn::PSEUDO_FUNC) {
            functions.push((pc as i64 + 1 + i.imm as i64) as usize);
        }
    }
    functions.sort_unstable();
    functions.dedup();
    let decoded = std::sync::Arc::new(Decoded::new(&insns));
    PreparedProgram {
        name: "test".into(),
        prog_type: ProgramType::Xdp,
        insns,
        functions,
        decoded,
    }
}

fn run(text: &str) -> Result<u64, VmError> {
    let prog = prepare(text);
    let mut env = RunEnv::default();
    env.begin_run();
    Interpreter::default().run(&prog, &mut env, 0, 0)
}

#[test]
fn callback_runs_in_new_frame_and_sums() {
    // sum over i in 0..5 of (i * 10 + ctx), ctx = 3 → 100 + 15 = 115
    let text = format!(
        "
        mov64 r6, 77
        mov64 r1, 5
        ldfunc r2, cb
        mov64 r3, 3
        call {LOOP}
        jne r6, 77, bad
        exit
    bad:
        mov64 r0, -1
        exit
    cb:
        stxdw [r10-8], r1
        ldxdw r0, [r10-8]
        mul64 r0, 10
        add64 r0, r2
        mov64 r6, 0
        exit
    "
    );
    assert_eq!(run(&text), Ok(115));
}

#[test]
fn callback_depth_counts_against_frames() {
    // main calls itself through the loop helper forever; every level adds a frame.
    let text = format!(
        "
    f:
        mov64 r1, 1
        ldfunc r2, f
        mov64 r3, 0
        call {LOOP}
        exit
    "
    );
    assert_eq!(
        run(&text),
        Err(VmError::CallDepthExceeded {
            insn: 4,
            max: MAX_CALL_FRAMES
        })
    );
}

#[test]
fn callback_env_restored_after_run() {
    let prog = prepare("mov64 r0, 1\nexit");
    let mut env = RunEnv::default();
    env.begin_run();
    env.checked = false;
    Interpreter::default().run(&prog, &mut env, 0, 0).unwrap();
    assert!(env.callback.is_none());
    assert!(env.callback_data.is_null());
    assert!(!env.checked);
}

#[test]
fn helper_fault_names_call_insn() {
    let text = format!("mov64 r0, 0\ncall {FAULT}\nexit");
    assert_eq!(
        run(&text),
        Err(VmError::HelperFault {
            insn: 1,
            helper: "test_fault",
            reason: "refused".into()
        })
    );
}

#[test]
fn tail_call_unwinds_all_frames() {
    let text = format!(
        "
        call sub
        mov64 r0, 1
        exit
    sub:
        call {TAIL}
        mov64 r0, 2
        exit
    "
    );
    assert_eq!(run(&text), Ok(42));
}

#[test]
fn unknown_helper_at_runtime() {
    assert_eq!(
        run("call 0x7ffffff0\nexit"),
        Err(VmError::UnknownHelper {
            insn: 0,
            id: 0x7fff_fff0
        })
    );
}

#[test]
fn unresolved_map_load_is_unsupported() {
    let insns = vec![
        Insn::new(BPF_LD | BPF_IMM | BPF_DW, 1, PSEUDO_MAP_FD, 0, 3),
        Insn::new(0, 0, 0, 0, 0),
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ];
    let prog = PreparedProgram::new("t", ProgramType::Xdp, insns).unwrap();
    let mut env = RunEnv::default();
    env.begin_run();
    assert!(matches!(
        Interpreter::default().run(&prog, &mut env, 0, 0),
        Err(VmError::Unsupported { insn: 0, .. })
    ));
}

/// The interpreter's stack is a region for the duration of a run only: a pointer into the
/// stack of an interpreter that is gone (a tail-call target's) faults instead of reaching
/// freed memory.
#[test]
fn stack_region_lives_for_the_run() {
    let leak = prepare("mov64 r0, r10\nexit");
    let mut env = RunEnv::default();
    env.begin_run();
    // Made first, so that its stack cannot reuse the freed one below.
    let mut vm = Interpreter::default();
    let stack_top = Interpreter::default().run(&leak, &mut env, 0, 0).unwrap();
    assert!(env.memory.regions().is_empty());
    let read = prepare("ldxdw r0, [r1-8]\nexit");
    assert!(matches!(
        vm.run(&read, &mut env, stack_top, 0),
        Err(VmError::OutOfBounds { insn: 0, .. })
    ));
    vm.run(&leak, &mut env, 0, 0).unwrap();
    assert!(env.memory.regions().is_empty());
}

/// Review findings: a null map argument is refused, not dereferenced; a bounds check whose
/// limit is the register it computes compares with the new value; a 32-bit add to a 64-bit
/// counter truncates; register fields above r10 that mask to r10 count as writing r10; ja,
/// call and exit with the X bit fault.
#[test]
fn decoder_and_fusion_edge_cases() {
    assert!(matches!(
        run("mov64 r1, 0\nmov64 r2, r10\nadd64 r2, -4\ncall 1\nexit"),
        Err(VmError::HelperFault { insn: 3, .. })
    ));
    let text =
        "mov64 r2, r1\nadd64 r2, 8\njgt r2, r2, out\nmov64 r0, 0\nexit\nout:\nmov64 r0, 1\nexit";
    assert_eq!(run_with(text, 0, 100), Ok(0));
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
    let text = "ldxdw r3, [r1+0]\nadd32 r3, 1\nstxdw [r1+0], r3\nmov64 r0, r3\nexit";
    assert_eq!(run_on(text, &mut buf), Ok(1));
    assert_eq!(u64::from_le_bytes(buf), 1);
    // `mov64 r10 (as 0x1a), 0x10000; stxdw [r10-8], r1`: the store must be checked.
    let insns = vec![
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0x1a, 0, 0, 0x10000),
        Insn::new(BPF_STX | BPF_MEM | BPF_DW, 10, 1, -8, 0),
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ];
    assert!(super::decode::Decoded::new(&insns)
        .ops
        .iter()
        .all(|op| op.code != super::decode::code::STX_STACK_DW));
    // Real opcodes with no meaning, among them every code an internal op borrows (proven
    // accesses, counters, shift-or, move-and-call, the ALU superinstructions).
    for op in [
        BPF_JMP32 | BPF_JA | BPF_X,
        BPF_JMP | BPF_CALL | BPF_X,
        BPF_JMP | BPF_EXIT | BPF_X,
        // A 32-bit `exit` (`EXIT_CONST`).
        BPF_JMP32 | BPF_EXIT,
        0xa1,
        0xb9,
        0xe1,
        0xf9,
        0xa3,
        0xe3,
        0xa2,
        0xe2,
        0xfa,
        0xe4,
        0xf7,
        0xe7,
        0xef,
        0xe5,
        0xf5,
        0xe6,
        0xf4,
        0xfc,
        0xec,
        0xff,
        0xee,
        0xf6,
        0xfe,
        0xfd,
        // The LD class: only ld_imm64 (0x18) is real; its other codes carry FAULT (0x00), the
        // stack and fixed-address superinstructions.
        0x00,
        0x08,
        0x20,
        0x28,
        0x30,
        0x40,
        0x48,
        0x50,
        0x60,
        0x80,
        0xa0,
        0xc0,
        0xe0,
    ] {
        let insns = vec![
            Insn::new(op, 0, 0, 0, 7),
            Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        ];
        let d = super::decode::Decoded::new(&insns);
        assert_eq!(d.ops[0].code, super::decode::FAULT, "{op:#04x}");
        // A real fault of slot 0, not the opcode passed through (0x00 is FAULT's own code, and
        // its `imm` would then index the faults at random).
        let fault = d.faults.get(d.ops[0].imm as usize);
        assert!(
            matches!(fault, Some(VmError::Unsupported { insn: 0, .. })),
            "{op:#04x}: {fault:?}"
        );
    }
}

use crate::vm::insn::{
    Insn, BPF_ALU64, BPF_CALL, BPF_DW, BPF_EXIT, BPF_IMM, BPF_JA, BPF_JMP, BPF_JMP32, BPF_K,
    BPF_LD, BPF_MEM, BPF_MOV, BPF_STX, BPF_X, PSEUDO_MAP_FD,
};

/// Runs `text` with r1 = `r1` and the given budget.
fn run_with(text: &str, r1: u64, budget: u64) -> Result<u64, VmError> {
    let prog = prepare(text);
    let mut env = RunEnv::default();
    env.begin_run();
    Interpreter::new(budget).run(&prog, &mut env, r1, 0)
}

/// The bounds-check superinstruction (`mov`, `add`, `jgt`) at its first slot and a jump into
/// its middle give the results of the plain instructions.
#[test]
fn superinstructions_match_their_slots() {
    let text = "
        mov64 r3, 100
        jeq r1, 7, mid
        mov64 r2, r1
    mid:
        add64 r2, 14
        jgt r2, r3, out
        mov64 r0, r2
        exit
    out:
        mov64 r0, 1000
        add64 r0, r2
        exit";
    // From the top: r2 = r1 + 14.
    assert_eq!(run_with(text, 50, 100), Ok(64));
    assert_eq!(run_with(text, 90, 100), Ok(1104));
    // Into the middle: r2 is 0 there, so r2 = 14.
    assert_eq!(run_with(text, 7, 100), Ok(14));
    // A key stored on the stack by the fused move-and-store reads back, and the register
    // keeps the moved value (32-bit move: zero-extended).
    let text = "
        mov32 r1, -1
        stxw [r10-4], r1
        ldxw r0, [r10-4]
        add64 r0, r1
        exit";
    assert_eq!(run_with(text, 0, 100), Ok(2 * 0xffff_ffff));
}

/// Superinstructions count every instruction they stand for: the budget is charged at each
/// taken jump, call and exit for every slot run since the last one.
#[test]
fn budget_counts_every_slot_of_superinstructions() {
    let text = "mov64 r2, r1\nadd64 r2, 1\nmov64 r0, r2\nexit";
    assert_eq!(run_with(text, 5, 4), Ok(6));
    assert_eq!(
        run_with(text, 5, 3),
        Err(VmError::BudgetExhausted { insns: 3 })
    );
    assert_eq!(
        run_with(text, 5, 1),
        Err(VmError::BudgetExhausted { insns: 1 })
    );
    // Jumps that fall through are charged with the run they continue.
    let text = "jeq r1, 1, +0\njeq r1, 1, +0\njeq r1, 1, +0\nmov64 r0, 0\nexit";
    assert_eq!(run_with(text, 0, 5), Ok(0));
    assert_eq!(
        run_with(text, 0, 4),
        Err(VmError::BudgetExhausted { insns: 4 })
    );
}

/// A program that writes r10 (the verifier forbids it; `ld_imm64` and fetching atomics name
/// their register where the decoder's ALU check does not look) gets every stack access
/// checked, so it cannot write through the forged frame pointer.
#[test]
fn written_frame_pointer_disables_unchecked_stack_access() {
    let text = "lddw r10, 0x10000\nstxdw [r10-8], r1\nmov64 r0, 0\nexit";
    assert_eq!(
        run_with(text, 0, 100),
        Err(VmError::OutOfBounds {
            insn: 2,
            addr: 0x10000 - 8,
            len: 8,
            access: crate::vm::memory::Access::Write,
        })
    );
}

/// Runs `text` with r1 = the address of `buf`, registered as a writable region.
fn run_on(text: &str, buf: &mut [u8]) -> Result<u64, VmError> {
    run_on_region(text, buf, true)
}

/// Runs `text` with r1 = the address of `buf`, registered as a region.
fn run_on_region(text: &str, buf: &mut [u8], writable: bool) -> Result<u64, VmError> {
    let prog = prepare(text);
    let mut env = RunEnv::default();
    env.begin_run();
    env.memory.add(crate::vm::memory::Region {
        start: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        writable,
        kind: crate::vm::memory::RegionKind::MapValue,
    });
    Interpreter::default().run(&prog, &mut env, buf.as_mut_ptr() as u64, 0)
}

/// Accesses through a just-loaded address, and read-modify-write counters, fused or entered
/// in the middle, do what their slots do; faults name the slot that faults.
#[test]
fn fused_memory_sequences_match_their_slots() {
    let mut buf = [0u8; 32];
    buf[8..16].copy_from_slice(&40u64.to_le_bytes());
    let addr = buf.as_ptr() as u64;
    let text = format!(
        "
        mov64 r6, r1
        lddw r2, {addr:#x}
        ldxdw r0, [r2+8]
        lddw r3, {addr:#x}
        stxdw [r3+16], r0
        ldxdw r4, [r6+8]
        add64 r4, 2
        stxdw [r6+8], r4
        ldxw r5, [r6+8]
        add32 r5, -1
        stxw [r6+8], r5
        add64 r0, r4
        add64 r0, r5
        exit"
    );
    // r0 = 40; copy at 16; counter 40 -> 42 (r4), then 32-bit 42 -> 41 (r5); 40 + 42 + 41.
    assert_eq!(run_on(&text, &mut buf), Ok(123));
    assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 41);
    assert_eq!(u64::from_le_bytes(buf[16..24].try_into().unwrap()), 40);
    // Jumping past the ld_imm64 onto the load uses the register as it is.
    let text = format!(
        "
        mov64 r2, r1
        ja mid
        lddw r2, {:#x}
    mid:
        ldxdw r0, [r2+8]
        exit",
        addr + 8
    );
    assert_eq!(run_on(&text, &mut buf), Ok(41));
    // A fused load out of bounds faults at the load's slot, not the ld_imm64's.
    let text = format!("lddw r2, {:#x}\nldxdw r0, [r2+8]\nexit", addr + 32);
    assert!(matches!(
        run_on(&text, &mut buf),
        Err(VmError::OutOfBounds { insn: 2, .. })
    ));
    // A counter outside the region faults at its load; in a read-only one, at its store.
    let text = "ldxdw r3, [r1+32]\nadd64 r3, 1\nstxdw [r1+32], r3\nexit";
    assert!(matches!(
        run_on(text, &mut buf),
        Err(VmError::OutOfBounds { insn: 0, .. })
    ));
    let text = "ldxdw r3, [r1+8]\nadd64 r3, 1\nstxdw [r1+8], r3\nexit";
    assert!(matches!(
        run_on_region(text, &mut buf, false),
        Err(VmError::OutOfBounds { insn: 2, .. })
    ));
}

/// Runs `text` with `buf` as a fixed region (proven against at decoding) of the given
/// permission; returns the result and the decoded codes, to see which accesses were proven.
fn run_fixed(text: &str, buf: &mut [u8], writable: bool) -> (Result<u64, VmError>, Vec<u8>) {
    let region = crate::vm::memory::Region {
        start: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        writable,
        kind: crate::vm::memory::RegionKind::MapValue,
    };
    let mut prog = prepare(text);
    // SAFETY: `buf` outlives `prog`, which is dropped at the end of this function.
    prog.decoded = std::sync::Arc::new(unsafe {
        Decoded::with_fixed(&prog.insns, &prog.functions, &[region], Box::new([]))
    });
    let codes = prog.decoded.ops.iter().map(|op| op.code).collect();
    let mut env = RunEnv::default();
    env.memory.add_fixed(region);
    env.begin_run();
    (Interpreter::default().run(&prog, &mut env, 0, 0), codes)
}

/// Loads and stores through an `ld_imm64` address inside a fixed region are proven once at
/// decoding and do what the checked ones do; anything not provable (out of the region, a
/// store to read-only memory, a register overwritten, a jump landing between the `ld_imm64`
/// and its use) keeps its run-time check and faults where it did.
#[test]
fn accesses_through_constant_addresses_are_proven_at_decoding() {
    use super::decode::code;
    let proven = |c: u8| {
        [
            code::LDX_FIXED,
            code::STX_FIXED,
            code::ST_FIXED,
            code::LDX_ABS_FIXED,
            code::STX_ABS_FIXED,
        ]
        .contains(&(c & !0x18))
    };
    let proven_count = |codes: &[u8]| codes.iter().filter(|&&c| proven(c)).count();
    let mut buf = [0u8; 32];
    buf[0..8].copy_from_slice(&5u64.to_le_bytes());
    let addr = buf.as_ptr() as u64;
    // Fused load and store, a later load and an immediate store through the same register,
    // a register copied and moved by a constant.
    let text = format!(
        "
        lddw r1, {addr:#x}
        ldxdw r2, [r1+0]
        add64 r2, 10
        stxdw [r1+8], r2
        stw [r1+16], -2
        mov64 r3, r1
        add64 r3, 24
        stxb [r3+0], r2
        ldxw r0, [r1+16]
        add64 r0, r2
        exit"
    );
    let (result, codes) = run_fixed(&text, &mut buf, true);
    assert_eq!(result, Ok(0xffff_fffe + 15));
    assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 15);
    assert_eq!(buf[24], 15);
    // Every access in the program was proven: five, plus the load's own slot kept under the
    // op that fuses it with the ld_imm64.
    assert_eq!(proven_count(&codes), 6, "{codes:x?}");

    // Read-only: loads are proven, the store stays checked and faults at its slot.
    let text = format!("lddw r1, {addr:#x}\nldxdw r0, [r1+0]\nstxdw [r1+8], r0\nexit");
    let (result, codes) = run_fixed(&text, &mut buf, false);
    assert!(matches!(result, Err(VmError::OutOfBounds { insn: 3, .. })));
    assert_eq!(proven_count(&codes), 2, "{codes:x?}");

    // A proven store right after the ld_imm64 (fused), the last 8 bytes of the region, and
    // a sign-extended immediate store.
    let text = format!(
        "
        lddw r1, {addr:#x}
        stxdw [r1+0], r1
        stdw [r1+24], -1
        ldxdw r0, [r1+24]
        ldxdw r2, [r1+0]
        sub64 r2, r1
        add64 r0, r2
        exit"
    );
    let (result, codes) = run_fixed(&text, &mut buf, true);
    assert_eq!(result, Ok(u64::MAX));
    assert!(
        codes.contains(&(super::decode::code::STX_ABS_FIXED | 0x18)),
        "{codes:x?}"
    );
    assert_eq!(proven_count(&codes), 5, "{codes:x?}");
    // One byte further, the same access is not provable, stays checked and faults.
    let text = format!("lddw r1, {addr:#x}\nldxdw r0, [r1+25]\nexit");
    let (result, codes) = run_fixed(&text, &mut buf, true);
    assert!(matches!(result, Err(VmError::OutOfBounds { insn: 2, .. })));
    assert_eq!(proven_count(&codes), 0, "{codes:x?}");

    // Past the region's end: checked, and faults.
    let text = format!("lddw r1, {addr:#x}\nldxdw r0, [r1+28]\nexit");
    let (result, codes) = run_fixed(&text, &mut buf, true);
    assert!(matches!(result, Err(VmError::OutOfBounds { insn: 2, .. })));
    assert_eq!(proven_count(&codes), 0, "{codes:x?}");

    buf[0..8].copy_from_slice(&5u64.to_le_bytes());
    // The register is overwritten before the access, or the access is a jump target: the
    // address is not known there, so nothing is proven (and the accesses fault: r1 is 0, or
    // the 5 loaded from the region).
    for text in [
        format!("lddw r1, {addr:#x}\nmov64 r1, 0\nldxdw r0, [r1+0]\nexit"),
        format!("lddw r1, {addr:#x}\nldxdw r1, [r1+0]\nldxdw r0, [r1+0]\nexit"),
        format!("mov64 r1, 0\nja use\nlddw r1, {addr:#x}\nuse:\nldxdw r0, [r1+0]\nexit"),
        // A call may change r1..r5 (here the callee sets r1 = 0).
        format!("lddw r1, {addr:#x}\ncall f\nldxdw r0, [r1+0]\nexit\nf:\nmov64 r1, 0\nexit"),
    ] {
        let (result, codes) = run_fixed(&text, &mut buf, true);
        assert!(
            matches!(result, Err(VmError::OutOfBounds { addr: 0 | 5, .. })),
            "{text}: {result:?}"
        );
        // The last access (before `exit` and the sentinel) stays checked.
        assert!(!proven(codes[codes.len() - 3]), "{text}: {codes:x?}");
    }

    // Knowledge flows past a conditional jump to its fall-through (reached from nowhere
    // else): the load after it is proven, and reads the region (r2 is 0: not taken).
    let text = format!(
        "lddw r1, {addr:#x}\njeq r2, 1, out\nldxdw r0, [r1+0]\nexit\nout:\nmov64 r0, 1\nexit"
    );
    let (result, codes) = run_fixed(&text, &mut buf, true);
    assert_eq!(result, Ok(5));
    assert_eq!(codes[3], code::LDX_FIXED | 0x18, "{codes:x?}");
    // A target only one forward jump reaches (the slot before it exits) gets the state that
    // jump saw; one that two jumps reach does not.
    let text = format!(
        "lddw r1, {addr:#x}\njeq r2, 0, use\nmov64 r0, 7\nexit\nuse:\nldxdw r0, [r1+0]\nexit"
    );
    let (result, codes) = run_fixed(&text, &mut buf, true);
    assert_eq!(result, Ok(5));
    assert_eq!(codes[5], code::LDX_FIXED | 0x18, "{codes:x?}");
    let text = format!("lddw r1, {addr:#x}\njeq r2, 0, use\njeq r2, 1, use\nmov64 r0, 7\nexit\nuse:\nldxdw r0, [r1+0]\nexit");
    let (result, codes) = run_fixed(&text, &mut buf, true);
    assert_eq!(result, Ok(5));
    assert!(!proven(codes[6]), "{codes:x?}");
    // An ld_imm64 fused with an access that is itself a jump target: the fused op proves the
    // address it loads; the access's own slot, reached with another r1, stays checked.
    let text =
        format!("mov64 r1, 0\njeq r2, 1, use\nlddw r1, {addr:#x}\nuse:\nldxdw r0, [r1+0]\nexit");
    let (result, codes) = run_fixed(&text, &mut buf, true);
    assert_eq!(result, Ok(5));
    assert_eq!(codes[2], code::LDX_ABS_FIXED | 0x18, "{codes:x?}");
    assert!(!proven(codes[4]), "{codes:x?}");
}

/// clang's unsigned remainder (`mov`, `div`, `mul`, `sub`) runs as one op that leaves both
/// registers as the four slots do: by a register or an immediate, by zero (`x % 0 = x`), with
/// the scratch register as the divisor; a signed division is not this idiom.
#[test]
fn unsigned_remainders_match_their_slots() {
    use super::decode::code::UREM64;
    let text = "
        mov64 r2, 7
        mov64 r3, r1
        div64 r3, r2
        mul64 r3, r2
        sub64 r1, r3
        mov64 r0, r1
        lsh64 r0, 32
        add64 r0, r3
        exit";
    assert_eq!(decoded_codes(text)[1], UREM64);
    // 100 % 7 = 2, t = 98.
    assert_eq!(run_with(text, 100, 100), Ok(2 << 32 | 98));
    let by_zero = text.replace("mov64 r2, 7", "mov64 r2, 0");
    assert_eq!(run_with(&by_zero, 100, 100), Ok(100 << 32));
    let by_imm = "mov64 r3, r1\ndiv64 r3, 10\nmul64 r3, 10\nsub64 r1, r3\nmov64 r0, r1\nexit";
    assert_eq!(decoded_codes(by_imm)[0], UREM64);
    assert_eq!(run_with(by_imm, 1234, 100), Ok(4));
    // The scratch register is the divisor: t = x / x = 1, t * t = 1, x - 1.
    let own = "mov64 r3, r1\ndiv64 r3, r3\nmul64 r3, r3\nsub64 r1, r3\nmov64 r0, r1\nexit";
    assert_eq!(decoded_codes(own)[0], UREM64);
    assert_eq!(run_with(own, 50, 100), Ok(49));
    let signed = "mov64 r3, r1\nsdiv64 r3, 10\nmul64 r3, 10\nsub64 r1, r3\nmov64 r0, r1\nexit";
    assert_ne!(decoded_codes(signed)[0], UREM64);
    assert_eq!(run_with(signed, (-1234i64) as u64, 100), Ok((-4i64) as u64));
}

/// The shift-pair-or superinstruction (the rotate idiom) leaves both registers as its four
/// slots do, in both widths and both shift orders, and a jump into its middle runs the slots.
#[test]
fn shift_pair_or_matches_its_slots() {
    let x: u64 = 0x8123_4567_89ab_cdef;
    // 32-bit rotate left by 5: r0 = rol32(x, 5); r2 = x << 5 (32-bit).
    let text = "
        mov64 r2, r1
        mov32 r0, r2
        rsh32 r0, 27
        lsh32 r2, 5
        or32 r0, r2
        xor64 r0, r2
        exit";
    let x32 = x as u32;
    let want = u64::from(x32.rotate_left(5)) ^ u64::from(x32 << 5);
    assert_eq!(run_with(text, x, 100), Ok(want));
    // 64-bit, the source shifted first, and right in the destination.
    let text = "
        mov64 r2, r1
        mov64 r0, r2
        lsh64 r2, 13
        rsh64 r0, 51
        or64 r0, r2
        add64 r0, r2
        exit";
    let want = (x.rotate_left(13)).wrapping_add(x << 13);
    assert_eq!(run_with(text, x, 100), Ok(want));
    // Entered at its second slot: r0 holds r1 ^ 0xf0f0 there, not a copy of r2.
    let text = "
        mov64 r2, r1
        mov64 r0, r1
        xor64 r0, 0xf0f0
        jne r1, 1, mid
        mov32 r0, r2
    mid:
        rsh32 r0, 27
        lsh32 r2, 5
        or32 r0, r2
        exit";
    let y = x as u32;
    let want = ((y ^ 0xf0f0) >> 27) | (y << 5);
    assert_eq!(run_with(text, x, 100), Ok(u64::from(want)));
    assert_eq!(run_with(text, 1, 100), Ok(u64::from(1u32.rotate_left(5))));
}

/// Counters in global data (`ld_imm64`, load, add, store at the proven address) run as one op
/// and leave memory and every register as the five slots do, for an immediate or a register
/// addend (including the loaded register itself), 64- and 32-bit.
#[test]
fn fixed_counters_match_their_slots() {
    let mut buf = [0u8; 16];
    buf[0..8].copy_from_slice(&40u64.to_le_bytes());
    buf[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let addr = buf.as_ptr() as u64;
    let text = format!(
        "
        mov64 r4, 7
        lddw r1, {addr:#x}
        ldxdw r2, [r1+0]
        add64 r2, -3
        stxdw [r1+0], r2
        lddw r3, {addr:#x}
        ldxdw r5, [r3+0]
        add64 r5, r5
        stxdw [r3+0], r5
        lddw r6, {:#x}
        ldxw r7, [r6+0]
        add32 r7, r4
        stxw [r6+0], r7
        lddw r8, {addr:#x}
        ldxdw r9, [r8+0]
        add64 r9, r8
        stxdw [r8+0], r9
        mov64 r0, r2
        add64 r0, r5
        add64 r0, r7
        sub64 r0, r1
        sub64 r0, r3
        sub64 r0, r6
        exit",
        addr + 8
    );
    let (result, codes) = run_fixed(&text, &mut buf, true);
    // 40 - 3 = 37; 37 + 37 = 74; u32::MAX + 7 wraps to 6; the address registers hold their
    // addresses (subtracted again); the last counter adds its own address.
    let want = (37u64 + 74 + 6)
        .wrapping_sub(addr)
        .wrapping_sub(addr)
        .wrapping_sub(addr + 8);
    assert_eq!(result, Ok(want));
    assert_eq!(
        u64::from_le_bytes(buf[0..8].try_into().unwrap()),
        74u64.wrapping_add(addr)
    );
    assert_eq!(u32::from_le_bytes(buf[8..12].try_into().unwrap()), 6);
    let fused = codes
        .iter()
        .filter(|&&c| c & !0x18 == super::decode::code::INC_FIXED)
        .count();
    assert_eq!(fused, 4, "{codes:x?}");
}

/// An argument move fused with the local call after it does what the two slots do (a 32-bit
/// move zero-extends), a jump onto the call itself skips the move, and a call too deep names
/// the call's slot.
#[test]
fn move_and_call_match_their_slots() {
    let text = "
        lddw r6, 0x100000005
        jeq r1, 1, direct
        mov32 r1, r6
    direct:
        call double
        exit
    double:
        mov64 r0, r1
        add64 r0, r1
        exit";
    // Through the move: r1 = 5; jumping onto the call: r1 is still 1.
    assert_eq!(run_with(text, 0, 100), Ok(10));
    assert_eq!(run_with(text, 1, 100), Ok(2));
    // The call returns past itself, once: the callee counts its runs in the caller's frame.
    let text = "
        stdw [r10-8], 0
        mov64 r2, r10
        add64 r2, -8
        mov64 r6, 3
        mov64 r1, r6
        call count
        ldxdw r0, [r10-8]
        exit
    count:
        ldxdw r3, [r2+0]
        add64 r3, r1
        stxdw [r2+0], r3
        exit";
    assert_eq!(run_with(text, 0, 100), Ok(3));
    let text = "mov64 r0, 0\nf:\nmov64 r1, r10\ncall f\nexit";
    assert_eq!(
        run_with(text, 0, 1000),
        Err(VmError::CallDepthExceeded {
            insn: 2,
            max: MAX_CALL_FRAMES
        })
    );
}

/// `xdp_globals` in an interpreter VM (its maps created, its program decoded with them).
fn globals_vm() -> crate::vm::instance::Vm {
    use crate::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};
    let bytes = userxdp_programs::bytes("xdp_globals").expect("built");
    let spec = crate::object::parse(&bytes).unwrap();
    let opts = VmOptions {
        engine: Engine::Interpreter,
        safety: SafetyPolicy::Guarded,
        ..VmOptions::default()
    };
    Vm::new(spec, Some(&bytes), None, opts).unwrap()
}

/// A program whose global-data accesses were proven at decoding holds the maps it accesses
/// without a check: a copy of it outlives its instance, and the storage lives as long.
#[test]
fn proven_program_keeps_its_maps_alive() {
    let vm = globals_vm();
    let bss = vm.map(".bss").unwrap().clone();
    let program = vm.program().clone();
    let proven = program.decoded.ops.iter().any(|op| {
        op.code & !0x18 == super::decode::code::LDX_ABS_FIXED
            || op.code & !0x18 == super::decode::code::INC_FIXED
    });
    assert!(proven, "xdp_globals has proven accesses");
    drop(vm);
    // Ours, and the program's.
    assert_eq!(std::sync::Arc::strong_count(&bss), 2);
    drop(program);
    assert_eq!(std::sync::Arc::strong_count(&bss), 1);
}

/// A real object's frozen `.rodata` is folded when its program is built for the interpreter:
/// `xdp_globals` reads its limit and sampling rate as constants (their loads skipped or
/// folded into a set), returns its sampled verdict (`XDP_TX`) as a constant exit, and its
/// test of the rate against zero is gone.
#[test]
fn real_rodata_is_folded() {
    use super::decode::code;
    let vm = globals_vm();
    let ops = &vm.program().decoded.ops;
    let sets = ops
        .iter()
        .filter(|op| matches!(op.code, code::SET2 | code::SKIP))
        .count();
    assert!(sets >= 2, "{ops:x?}");
    assert!(
        ops.iter()
            .any(|op| op.code == code::EXIT_CONST && op.imm == 3),
        "{ops:x?}"
    );
    assert!(
        ops.iter()
            .enumerate()
            .any(|(i, op)| *op == super::fold::no_op(i)),
        "{ops:x?}"
    );
}

/// The codes of `text` after decoding (to see which sequences fused).
fn decoded_codes(text: &str) -> Vec<u8> {
    prepare(text).decoded.ops.iter().map(|op| op.code).collect()
}

/// A little-endian `__u16` read a byte at a time (clang's two orders) runs as one op that
/// leaves both registers as the slots do, with each load checked and a fault naming its own
/// slot; a jump into the middle runs the slots.
#[test]
fn byte_pairs_match_their_slots() {
    use super::decode::code::{BYTES16_HI, BYTES16_LO};
    let mut buf = [0u8; 32];
    buf[12] = 0x08;
    buf[13] = 0x86;
    buf[20] = 0xdd;
    buf[21] = 0x81;
    // High byte first (r2 = 0x8608, r3 = 0x08), then low byte first (r4 = 0xdd,
    // r5 = 0x81dd).
    let text = "
        ldxb r2, [r1+13]
        lsh32 r2, 8
        ldxb r3, [r1+12]
        or32 r2, r3
        ldxb r4, [r1+20]
        ldxb r5, [r1+21]
        lsh32 r5, 8
        or32 r5, r4
        mov64 r0, r2
        lsh64 r0, 32
        or64 r0, r5
        lsh64 r3, 16
        or64 r0, r3
        lsh64 r4, 24
        add64 r0, r4
        exit";
    let codes = decoded_codes(text);
    assert_eq!((codes[0], codes[4]), (BYTES16_HI, BYTES16_LO), "{codes:x?}");
    let want = (0x8608u64 << 32 | 0x81dd | 0x08 << 16) + (0xdd << 24);
    assert_eq!(run_on(text, &mut buf), Ok(want));
    // The second load's base is the register the first one wrote (low byte first).
    let text = "
        mov64 r6, r1
        stb [r1+0], 3
        ldxb r1, [r6+0]
        add64 r1, r6
        ldxb r1, [r6+0]
        ldxb r2, [r1+0]
        lsh32 r2, 8
        or32 r2, r1
        mov64 r0, r2
        exit";
    assert!(matches!(decoded_codes(text)[4], BYTES16_LO));
    // r1 = 3, then [r1 + 0] is address 3: out of bounds at the second load's slot.
    assert!(matches!(
        run_on(text, &mut buf),
        Err(VmError::OutOfBounds {
            insn: 5,
            addr: 3,
            ..
        })
    ));
    // Out of bounds at each load's own slot, high byte first.
    let text = "ldxb r2, [r1+40]\nlsh32 r2, 8\nldxb r3, [r1+0]\nor32 r2, r3\nexit";
    assert!(matches!(
        run_on(text, &mut buf),
        Err(VmError::OutOfBounds { insn: 0, .. })
    ));
    let text = "ldxb r2, [r1+0]\nlsh32 r2, 8\nldxb r3, [r1+32]\nor32 r2, r3\nexit";
    assert!(matches!(
        run_on(text, &mut buf),
        Err(VmError::OutOfBounds { insn: 2, .. })
    ));
    // Entered at the shift: r2 keeps what it had (0x7f), shifted, or the low byte.
    let text = "
        mov64 r2, 0x7f
        jeq r2, 0x7f, mid
        ldxb r2, [r1+13]
    mid:
        lsh32 r2, 8
        ldxb r3, [r1+12]
        or32 r2, r3
        mov64 r0, r2
        exit";
    assert_eq!(run_on(text, &mut buf), Ok(0x7f08));
    // Both loads write one register (review finding): the or reads the shifted value.
    buf[0] = 0x12;
    buf[1] = 0x34;
    let text = "ldxb r2, [r1+0]\nldxb r2, [r1+1]\nlsh32 r2, 8\nor32 r2, r2\nmov64 r0, r2\nexit";
    assert_eq!(decoded_codes(text)[0], BYTES16_LO);
    assert_eq!(run_on(text, &mut buf), Ok(0x3400));
}

/// A map key stored on the stack and its address taken (four slots) runs as one op: the key
/// reads back through the address, both registers hold what the slots leave, in both widths.
#[test]
fn key_addresses_match_their_slots() {
    let text = "
        mov32 r1, -1
        stxw [r10-8], r1
        mov64 r2, r10
        add64 r2, -8
        ldxw r0, [r2+0]
        add64 r0, r1
        mov64 r3, -2
        stxdw [r10-24], r3
        mov64 r4, r10
        add64 r4, -24
        ldxdw r5, [r4+0]
        add64 r0, r5
        sub64 r4, r2
        add64 r0, r4
        exit";
    let codes = decoded_codes(text);
    assert_eq!(codes[0], super::decode::code::KEY_ADDR, "{codes:x?}");
    assert_eq!(codes[6], super::decode::code::KEY_ADDR, "{codes:x?}");
    // 2 * 0xffff_ffff - 2 + (-16).
    let want = (2u64 * 0xffff_ffff).wrapping_sub(2).wrapping_sub(16);
    assert_eq!(run_with(text, 0, 100), Ok(want));
    // An address other than the key's is not this idiom.
    let text = "mov64 r1, 1\nstxw [r10-8], r1\nmov64 r2, r10\nadd64 r2, -4\nmov64 r0, 0\nexit";
    assert_ne!(decoded_codes(text)[0], super::decode::code::KEY_ADDR);
}

/// A bounds check written `if end >= p + n` (`jle`) fuses like the `jgt` form, taken and not
/// taken.
#[test]
fn bounds_checks_written_either_way_match_their_slots() {
    let text = "
        mov64 r3, 100
        mov64 r2, r1
        add64 r2, 14
        jle r2, r3, ok
        mov64 r0, 1
        exit
    ok:
        mov64 r0, r2
        exit";
    let codes = decoded_codes(text);
    assert_eq!(codes[1], super::decode::code::BOUNDS, "{codes:x?}");
    assert_eq!(run_with(text, 86, 100), Ok(100));
    assert_eq!(run_with(text, 87, 100), Ok(1));
    assert_eq!(run_with(text, u64::MAX - 13, 100), Ok(0));
}

/// A per-CPU-counter style update after an inline array lookup (`if (v) *v += 1`) is done by
/// the lookup's op: the counter moves, a miss takes the branch, and an increment of a map
/// the program may only read faults at the store's own slot, as unfused.
#[test]
fn lookup_then_increment_matches_its_slots() {
    use crate::maps::{self, MapHandle};
    use crate::object::MapSpec;
    let array = |flags| {
        let spec = MapSpec {
            name: "counts".into(),
            map_type: maps::types::ARRAY,
            key_size: 4,
            value_size: 8,
            max_entries: 4,
            flags,
            ..MapSpec::default()
        };
        MapHandle::new(maps::create(&spec, 1).expect("array"))
    };
    let run_counter = |handle: &MapHandle, key: u32| {
        let addr = handle as *const MapHandle as u64;
        let text = format!(
            "
            mov32 r1, {key}
            stxw [r10-4], r1
            mov64 r2, r10
            add64 r2, -4
            lddw r1, {addr:#x}
            call 1
            jeq r0, 0, miss
            ldxdw r1, [r0+0]
            add64 r1, 5
            stxdw [r0+0], r1
            mov64 r0, r1
            exit
        miss:
            mov64 r0, 99
            exit"
        );
        let prog = PreparedProgram::new("t", ProgramType::Xdp, assemble(&text).unwrap()).unwrap();
        let flagged = prog.decoded.ops.iter().any(|op| {
            op.code == super::decode::code::LOOKUP_BRANCH
                && op.aux & super::decode::flag::THEN_INC != 0
        });
        assert!(flagged);
        let mut env = RunEnv::default();
        env.begin_run();
        env.map_handles.push(addr);
        for (start, len, writable) in handle.map.fixed_regions() {
            env.memory.add(crate::vm::memory::Region {
                start,
                len,
                writable,
                kind: crate::vm::memory::RegionKind::MapValue,
            });
        }
        Interpreter::default().run(&prog, &mut env, 0, 0)
    };
    let counts = array(0);
    assert_eq!(run_counter(&counts, 2), Ok(5));
    assert_eq!(run_counter(&counts, 2), Ok(10));
    assert_eq!(run_counter(&counts, 4), Ok(99));
    // Read-only for programs: the load (slot 8) passes, the store (slot 10) faults.
    let read_only = array(crate::maps::BPF_F_RDONLY_PROG);
    assert!(matches!(
        run_counter(&read_only, 1),
        Err(VmError::OutOfBounds { insn: 10, .. })
    ));
}

/// A load and the store of the loaded register (a byte copied from the packet to a buffer)
/// run as one op in every width: both checked, each fault at its own slot, and the store's
/// address read after the load, as the slots do.
#[test]
fn memory_copies_match_their_slots() {
    use super::decode::code::COPY_MEM;
    let mut buf = [0u8; 32];
    buf[0..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    // The add keeps the four copies from forming one run of byte moves (`shuffle`).
    let text = "
        ldxb r2, [r1+0]
        stxb [r1+8], r2
        ldxh r3, [r1+0]
        stxh [r1+10], r3
        add64 r9, 1
        ldxw r4, [r1+0]
        stxw [r1+12], r4
        ldxdw r5, [r1+0]
        stxdw [r1+16], r5
        mov64 r0, r2
        add64 r0, r3
        add64 r0, r4
        exit";
    let codes = decoded_codes(text);
    for at in [0, 2, 5, 7] {
        assert_eq!(codes[at] & !0x18, COPY_MEM, "{codes:x?}");
    }
    assert_eq!(run_on(text, &mut buf), Ok(0x88 + 0x7788 + 0x5566_7788));
    assert_eq!(buf[8], 0x88);
    assert_eq!(&buf[10..12], &[0x88, 0x77]);
    assert_eq!(&buf[12..16], &0x5566_7788u32.to_le_bytes());
    assert_eq!(&buf[16..24], &0x1122_3344_5566_7788u64.to_le_bytes());
    // Out of bounds: the load at slot 0, the store at slot 1.
    assert!(matches!(
        run_on("ldxb r2, [r1+32]\nstxb [r1+0], r2\nexit", &mut buf),
        Err(VmError::OutOfBounds { insn: 0, .. })
    ));
    assert!(matches!(
        run_on("ldxb r2, [r1+0]\nstxb [r1+32], r2\nexit", &mut buf),
        Err(VmError::OutOfBounds { insn: 1, .. })
    ));
    // The loaded register is the store's base: the store goes to the loaded address (0x88
    // + 0 here, out of bounds, at the store's slot).
    assert!(matches!(
        run_on("ldxb r2, [r1+0]\nstxb [r2+0], r2\nexit", &mut buf),
        Err(VmError::OutOfBounds {
            insn: 1,
            addr: 0x88,
            ..
        })
    ));
}

/// Two loads of one width in a row run as one op: both checked with faults at their own
/// slots, the second's base read after the first load wrote its register.
#[test]
fn load_pairs_match_their_slots() {
    use super::decode::code::{LDX2_DW, LDX2_W};
    let mut buf = [0u8; 32];
    buf[0..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    buf[8..16].copy_from_slice(&8u64.to_le_bytes());
    let text = "
        ldxw r2, [r1+4]
        ldxw r3, [r1+0]
        ldxdw r4, [r1+8]
        ldxdw r5, [r1+0]
        mov64 r0, r2
        add64 r0, r3
        add64 r0, r4
        add64 r0, r5
        exit";
    let codes = decoded_codes(text);
    assert_eq!((codes[0], codes[2]), (LDX2_W, LDX2_DW), "{codes:x?}");
    let want = 0x1122_3344u64 + 0x5566_7788 + 8 + 0x1122_3344_5566_7788;
    assert_eq!(run_on(text, &mut buf), Ok(want));
    // A load followed by a counter update of the next cell fuses the counter, not the pair.
    let text = "ldxw r2, [r1+0]\nldxw r3, [r1+4]\nadd32 r3, 1\nstxw [r1+4], r3\nmov64 r0, r3\nexit";
    let codes = decoded_codes(text);
    assert_eq!(codes[1], super::decode::code::INC_MEM, "{codes:x?}");
    assert_ne!(codes[0], LDX2_W, "{codes:x?}");
    assert_eq!(run_on(text, &mut buf), Ok(0x1122_3345));
    // The first load writes the second's base.
    let chained = "ldxdw r1, [r1+8]\nldxdw r0, [r1+0]\nexit";
    assert_eq!(decoded_codes(chained)[0], LDX2_DW);
    // r1 = 8 after the first load: the second reads address 8, out of bounds at slot 1.
    assert!(matches!(
        run_on(chained, &mut buf),
        Err(VmError::OutOfBounds {
            insn: 1,
            addr: 8,
            ..
        })
    ));
    assert!(matches!(
        run_on("ldxw r2, [r1+32]\nldxw r3, [r1+0]\nexit", &mut buf),
        Err(VmError::OutOfBounds { insn: 0, .. })
    ));
}

thread_local! {
    /// Set while a test decodes a program's plain form: one op per instruction, nothing
    /// proven, folded or fused.
    pub(super) static PLAIN_DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

thread_local! {
    /// Set while a test decodes with every run of byte moves fused, worth it or not (see
    /// `shuffle`), to test the fused op's semantics on short programs.
    pub(super) static ANY_RUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `text` decoded in its plain form (see [`PLAIN_DECODING`]).
fn prepare_plain(text: &str) -> PreparedProgram {
    PLAIN_DECODING.with(|p| p.set(true));
    let prog = prepare(text);
    PLAIN_DECODING.with(|p| p.set(false));
    prog
}

/// Runs `text` with `r1` on `buf`, a fixed region of `kind`, twice: decoded against the region
/// (accesses proven, constants folded, superinstructions fused) and in its plain form (one op
/// per instruction, every access checked at run time), each with every budget from 1 to 64.
/// Asserts that both runs give the same result, budget exhaustion included, and leave the same
/// bytes; returns the result with the full budget and the ops of the first form.
fn run_both_forms(
    text: &str,
    r1: u64,
    buf: &mut [u8],
    kind: crate::vm::memory::RegionKind,
) -> (Result<u64, VmError>, Vec<super::decode::Op>) {
    let region = crate::vm::memory::Region {
        start: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        writable: kind == crate::vm::memory::RegionKind::MapValue,
        kind,
    };
    let plain = prepare_plain(text);
    let mut proven = prepare(text);
    // SAFETY: `buf` outlives `proven`, dropped at the end of this function.
    proven.decoded = std::sync::Arc::new(unsafe {
        Decoded::with_fixed(&proven.insns, &proven.functions, &[region], Box::new([]))
    });
    let initial = buf.to_vec();
    let run = |prog: &PreparedProgram, budget: u64, buf: &mut [u8]| {
        buf.copy_from_slice(&initial);
        let mut env = RunEnv::default();
        env.memory.add_fixed(region);
        env.begin_run();
        Interpreter::new(budget).run(prog, &mut env, r1, 0)
    };
    for budget in 1..=64 {
        let folded = run(&proven, budget, buf);
        let after = buf.to_vec();
        let checked = run(&plain, budget, buf);
        assert_eq!(folded, checked, "budget {budget}");
        assert_eq!(after, buf, "memory after a run with budget {budget}");
    }
    let ops = proven.decoded.ops.to_vec();
    (run(&proven, 1 << 20, buf), ops)
}

/// The codes of `ops`.
fn codes_of(ops: &[super::decode::Op]) -> Vec<u8> {
    ops.iter().map(|op| op.code).collect()
}

/// Frozen read-only data is folded as the kernel's verifier folds it: a load from it becomes
/// a move of its value, a register of known value becomes an immediate, and a jump on such
/// values becomes a `ja` or a no-op; with the ops they enable (a constant address and value
/// set in one op, a remainder by a constant power of two with its test, a jump to `exit`)
/// everything runs, faults and charges the budget as the plain instructions do.
#[test]
fn frozen_constants_fold_as_the_verifier_folds_them() {
    use super::decode::code;
    use crate::vm::memory::RegionKind::{Constant, MapValue};
    let mut buf = [0u8; 16];
    buf[0..4].copy_from_slice(&4u32.to_le_bytes());
    buf[4..8].copy_from_slice(&14u32.to_le_bytes());
    buf[8..12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let addr = buf.as_ptr() as u64;
    // xdp_globals' shape: a limit, a sampling rate tested for zero, a remainder by it.
    let text = format!(
        "
        mov64 r6, r1
        rsh64 r6, 6
        lddw r2, {addr:#x}
        ldxw r3, [r2+4]
        jlt r6, r3, small
        lddw r2, {addr:#x}
        ldxw r3, [r2+0]
        jeq r3, 0, none
        ldxw r2, [r2+0]
        mov64 r3, r1
        div64 r3, r2
        mul64 r3, r2
        sub64 r1, r3
        jne r1, 0, none
        mov64 r0, 1
        ja out
    none:
        mov64 r0, r1
        lsh64 r0, 32
        add64 r0, r3
        ja out
    small:
        mov64 r0, 99
    out:
        exit"
    );
    let (result, ops) = run_both_forms(&text, 1234, &mut buf, Constant);
    let codes = codes_of(&ops);
    // 1234 % 4 = 2, t = 1232.
    assert_eq!(result, Ok(2 << 32 | 1232));
    // The limit's load folds (a SET2), and as nothing reads its registers, a skip of it.
    assert_eq!(codes[2], code::SKIP, "{codes:x?}");
    // The limit's jump takes the limit as its immediate; the zero test is a no-op covered
    // by the op before it (skipped too); the remainder takes its divisor's move and its
    // test.
    assert_eq!(codes[5], BPF_JMP | 0xa0 | BPF_K, "{codes:x?}");
    assert_eq!(codes[6], code::SKIP, "{codes:x?}");
    assert_eq!(ops[6].src, 4, "the no-op is covered");
    assert_eq!(codes[10], code::UREM64, "{codes:x?}");
    let urem_flags = flag::UREM_BY_IMM | flag::UREM_SET_SRC | flag::UREM_BRANCH;
    assert_eq!(ops[10].aux & !0x0f, urem_flags, "{:x?}", ops[10]);
    // The `ja out` before `exit` exits.
    assert_eq!(codes[17], BPF_JMP | BPF_EXIT, "{codes:x?}");
    assert_eq!(codes[21], BPF_JMP | BPF_EXIT, "{codes:x?}");
    // The same memory, writable: nothing is known, nothing folds, the results agree.
    let (result, ops) = run_both_forms(&text, 1234, &mut buf, MapValue);
    let codes = codes_of(&ops);
    assert_eq!(result, Ok(2 << 32 | 1232));
    assert!(!codes.contains(&code::SET2), "{codes:x?}");
    // A divisor that is not a power of two, a remainder of zero, the limit's other side.
    buf[0..4].copy_from_slice(&617u32.to_le_bytes());
    assert_eq!(run_both_forms(&text, 1234, &mut buf, Constant).0, Ok(1));
    buf[0..4].copy_from_slice(&100u32.to_le_bytes());
    assert_eq!(
        run_both_forms(&text, 1234, &mut buf, Constant).0,
        Ok(34 << 32 | 1200)
    );
    buf[4..8].copy_from_slice(&21u32.to_le_bytes());
    assert_eq!(run_both_forms(&text, 1234, &mut buf, Constant).0, Ok(99));
    // A zero rate: the zero test is always taken (a `ja`).
    buf[0..4].copy_from_slice(&0u32.to_le_bytes());
    buf[4..8].copy_from_slice(&14u32.to_le_bytes());
    let (result, ops) = run_both_forms(&text, 1234, &mut buf, Constant);
    assert_eq!(result, Ok(1234 << 32));
    assert_eq!(ops[9].code, BPF_JMP | BPF_JA, "{ops:x?}");

    // A `ja` to an `exit` exits, charging both; a `ja` back to such a `ja` does not
    // become one (it would charge one slot of the three too few).
    let text = "
        mov64 r0, 7
        ja +2
        ja +2
        exit
        ja -3
        exit";
    let (result, ops) = run_both_forms(text, 0, &mut buf, MapValue);
    assert_eq!(result, Ok(7));
    assert_eq!(ops[2].code, BPF_JMP | BPF_EXIT, "{ops:x?}");
    assert_eq!(ops[4].code, BPF_JMP | BPF_JA, "{ops:x?}");

    // A folded jump that falls through charges nothing, as the jump it replaces: the budget
    // runs out at the same place, here never before the fault of the last load.
    buf[0..4].copy_from_slice(&4u32.to_le_bytes());
    let text = format!(
        "
        lddw r2, {addr:#x}
        ldxw r3, [r2+0]
        mov64 r0, 0
        jeq r3, 0, out
        ldxw r0, [r1+0]
    out:
        exit"
    );
    let (result, ops) = run_both_forms(&text, 0, &mut buf, Constant);
    assert!(
        matches!(result, Err(VmError::OutOfBounds { insn: 5, .. })),
        "{result:?}"
    );
    assert_eq!(ops[4], super::fold::no_op(4));

    // A value that is no sign-extended immediate stays a load, but is still known; a jump
    // landing between the address and the load leaves the load as it was.
    let text = format!(
        "
        lddw r2, {addr:#x}
        ldxw r3, [r2+8]
        jgt r3, 0x7fffffff, big
        mov64 r0, 1
        exit
    big:
        jeq r1, 0, +0
        ldxw r0, [r2+0]
        ldxw r4, [r2+8]
        jeq32 r4, r0, +1
        add64 r0, r4
        exit"
    );
    let (result, ops) = run_both_forms(&text, 1234, &mut buf, Constant);
    let codes = codes_of(&ops);
    assert_eq!(result, Ok(0xffff_fff4));
    assert_eq!(codes[0] & !0x18, code::LDX_ABS_FIXED, "{codes:x?}");
    assert_eq!(codes[3], BPF_JMP | BPF_JA, "{codes:x?}");
    // After the `jeq` at `big:` (slot 7 is reached two ways) r2 is unknown: the loads stay
    // checked (the two, fused).
    assert_eq!(codes[7], code::LDX2_W, "{codes:x?}");
}

/// Known values wider than 32 bits become immediates only where the op reads 32 bits (its low
/// half) or the value fits: 32- and 64-bit ALU ops and jumps, shifts past the width, signed
/// division, 32-bit moves; a run of never-taken jumps is covered by one op up to its limit.
#[test]
fn known_values_become_immediates_in_every_width() {
    use super::decode::code;
    use crate::vm::memory::RegionKind::Constant;
    let mut buf = [0u8; 16];
    buf[0..8].copy_from_slice(&0x1_0000_0003u64.to_le_bytes());
    buf[8..16].copy_from_slice(&(-2i64).to_le_bytes());
    let addr = buf.as_ptr() as u64;
    let text = format!(
        "
        lddw r2, {addr:#x}
        ldxdw r3, [r2+0]
        ldxdw r6, [r2+8]
        mov64 r4, r1
        add32 r4, r3
        mov64 r5, r1
        add64 r5, r3
        mov64 r7, r1
        lsh64 r7, r3
        mov64 r8, r1
        sdiv64 r8, r6
        mov32 r9, r3
        mov64 r0, 0
        jeq r3, 3, +1
        add64 r0, 2000
        jeq32 r3, 3, +1
        add64 r0, 1000
        jsgt32 r6, r4, +1
        add64 r0, 4000
        add64 r0, r4
        add64 r0, r5
        add64 r0, r7
        add64 r0, r8
        add64 r0, r9
        exit"
    );
    let (result, ops) = run_both_forms(&text, 100, &mut buf, Constant);
    let r5 = 100u64 + 0x1_0000_0003;
    let r8 = (-50i64) as u64;
    let expected = (2000u64 + 4000 + 103 + r5 + 800 + 3).wrapping_add(r8);
    assert_eq!(result, Ok(expected));
    let k = |i: usize| ops[i].code & BPF_X == 0;
    // 32-bit add: the low half; 64-bit add: the value does not fit, stays a register.
    assert!(k(5) && ops[5].imm as u32 == 3, "{:x?}", ops[5]);
    assert!(!k(7), "{:x?}", ops[7]);
    // The shift takes 0x1_0000_0003 as written (the loop masks it, as the kernel).
    assert!(!k(9), "{:x?}", ops[9]);
    // -2 fits: the signed division takes it, keeping its `off` (signed).
    assert!(
        k(11) && ops[11].off == 1 && ops[11].imm == (-2i64) as u64,
        "{:x?}",
        ops[11]
    );
    assert!(
        k(12) && ops[12].code == crate::vm::insn::BPF_ALU | BPF_MOV | BPF_K,
        "{:x?}",
        ops[12]
    );
    // Decided: the 64-bit test is not taken, the 32-bit one is.
    assert_eq!(ops[14], super::fold::no_op(14));
    assert_eq!(ops[16].code, BPF_JMP | BPF_JA, "{:x?}", ops[16]);

    // Fourteen never-taken jumps on a constant: one op covers the first twelve (fifteen
    // slots in all), the next op the rest. (r3 is read as the immediate it became: the
    // SET2 is a skip.)
    let jumps = "jeq r3, 0, out\n".repeat(14);
    let text = format!("lddw r2, {addr:#x}\nldxw r3, [r2+0]\n{jumps}mov64 r0, r3\nout:\nexit");
    let (result, ops) = run_both_forms(&text, 0, &mut buf, Constant);
    assert_eq!(result, Ok(3));
    assert_eq!((ops[0].code, ops[0].src), (code::SKIP, 15), "{:x?}", ops[0]);
    assert!(
        (15..17).all(|i| ops[i] == super::fold::no_op(i)),
        "{:x?}",
        &ops[15..17]
    );

    // Code a decided jump skips is dead: the slot after it is reached only by the jump, and
    // keeps what the jump knew.
    let text = format!(
        "
        lddw r2, {addr:#x}
        ldxw r3, [r2+0]
        mov64 r0, 0
        jeq r3, 3, +1
        add64 r0, 1
        jeq r3, 3, +1
        add64 r0, 2
        add64 r0, 5
        exit"
    );
    let (result, ops) = run_both_forms(&text, 0, &mut buf, Constant);
    assert_eq!(result, Ok(5));
    assert_eq!(ops[4].code, BPF_JMP | BPF_JA, "{:x?}", ops[4]);
    assert_eq!(ops[6].code, BPF_JMP | BPF_JA, "{:x?}", ops[6]);
}

/// The ops fused for constant stores, differences and the remainder's test do what their
/// slots do, in every width, whatever registers they share.
#[test]
fn constant_stores_and_differences_match_their_slots() {
    use super::decode::code;
    use crate::vm::memory::RegionKind::MapValue;
    let mut buf = [0u8; 16];
    let addr = buf.as_ptr() as u64;
    for width in ["w", "h", "b", "dw"] {
        for mov in ["mov32 r0, -3", "mov64 r0, -3"] {
            let text = format!(
                "lddw r1, {addr:#x}\n{mov}\nstx{width} [r1+0], r0\nldxdw r2, [r1+0]\nadd64 r0, r2\nexit"
            );
            let (result, ops) = run_both_forms(&text, 1234, &mut buf, MapValue);
            assert!(result.is_ok());
            assert_eq!(ops[0].code, code::SET_STORE_FIXED, "{text}: {ops:x?}");
        }
    }
    // Differences, 32- and 64-bit, into a register that is also the subtrahend (r1 = 10).
    for (text, expected) in [
        (
            "mov64 r2, r1\nrsh64 r2, 1\nmov32 r4, r1\nsub32 r4, r2\nmov64 r0, r4\nexit",
            5,
        ),
        (
            "mov64 r2, r1\nlsh64 r2, 1\nmov32 r4, r1\nsub32 r4, r2\nmov64 r0, r4\nexit",
            0xffff_fff6,
        ),
        (
            "mov64 r2, r1\nlsh64 r2, 1\nmov64 r4, r1\nsub64 r4, r2\nmov64 r0, r4\nexit",
            (-10i64) as u64,
        ),
        (
            "mov64 r2, r1\nlsh64 r2, 1\nmov64 r2, r1\nsub64 r2, r2\nmov64 r0, r2\nexit",
            0,
        ),
    ] {
        let (result, ops) = run_both_forms(text, 10, &mut buf, MapValue);
        assert_eq!(result, Ok(expected), "{text}");
        assert!(codes_of(&ops).contains(&code::MOVE_SUB), "{text}: {ops:x?}");
    }
    // The remainder's test either way, by a register and by an immediate, entered in the
    // middle too.
    for test in ["jne r1, 0, odd", "jeq r1, 0, odd"] {
        for divisor in ["r2", "6"] {
            let text = format!(
                "
                mov64 r2, 6
                jeq r1, 77, mid
                mov64 r3, r1
            mid:
                div64 r3, {divisor}
                mul64 r3, {divisor}
                sub64 r1, r3
                {test}
                mov64 r0, r1
                exit
            odd:
                mov64 r0, 1000
                add64 r0, r3
                exit"
            );
            for r1 in [0u64, 5, 12, 77] {
                // At `mid`, r3 is still 0.
                let (t, x) = if r1 == 77 {
                    (0, 77)
                } else {
                    (r1 / 6 * 6, r1 % 6)
                };
                let taken = if test.starts_with("jne") {
                    x != 0
                } else {
                    x == 0
                };
                let expected = if taken { 1000 + t } else { x };
                let (result, _) = run_both_forms(&text, r1, &mut buf, MapValue);
                assert_eq!(result, Ok(expected), "{text} with r1 = {r1}");
            }
            let op = prepare(&text).decoded.ops[2];
            assert_eq!(op.code, code::UREM64, "{text}");
            let zero = if test.starts_with("jeq") {
                flag::UREM_BRANCH_ZERO
            } else {
                0
            };
            assert_eq!(op.aux & !0x1f, flag::UREM_BRANCH | zero, "{text}");
        }
    }
}

/// Loads through the run's initial r1 (the context) are proven at decoding when nothing else
/// can have written the register: read directly when r1 and their extent lie in the run's
/// context region, checked otherwise, with the results, faults and budget of the plain form.
#[test]
fn context_loads_are_proven_from_the_run_start() {
    use super::decode::code::{LDX2_CTX_W, LDX_CTX};
    use crate::vm::insn::{BPF_LDX, BPF_W};
    use crate::vm::memory::RegionKind;
    const LDX_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
    let mut ctx = [0u8; 24];
    ctx[0..4].copy_from_slice(&1000u32.to_le_bytes());
    ctx[4..8].copy_from_slice(&1064u32.to_le_bytes());
    ctx[16..20].copy_from_slice(&3u32.to_le_bytes());
    let r1 = ctx.as_mut_ptr() as u64;
    // `data_end - data`, then a field read through a copy of r1.
    let text = "
        ldxw r2, [r1+4]
        ldxw r3, [r1+0]
        mov64 r6, r1
        ldxw r4, [r6+16]
        mov64 r0, r2
        sub64 r0, r3
        add64 r0, r4
        exit";
    for kind in [RegionKind::Context, RegionKind::MapValue] {
        // Direct reads from a context region; checked ones from any other region.
        let (result, ops) = run_both_forms(text, r1, &mut ctx, kind);
        assert_eq!(result, Ok(67), "{kind:?}");
        let codes = codes_of(&ops);
        assert_eq!(
            (codes[0], codes[3]),
            (LDX2_CTX_W, LDX_CTX | BPF_W),
            "{codes:x?}"
        );
    }
    // Past the end of the region: checked, the fault at the load's slot.
    let (result, ops) = run_both_forms("ldxw r0, [r1+24]\nexit", r1, &mut ctx, RegionKind::Context);
    assert!(
        matches!(result, Err(VmError::OutOfBounds { insn: 0, .. })),
        "{result:?}"
    );
    assert_eq!(codes_of(&ops)[0], LDX_CTX | BPF_W);
    // Not the initial r1: moved, at a negative offset, written by a call, or at a slot that
    // a backward jump also reaches.
    for (text, at) in [
        ("add64 r1, 4\nldxw r0, [r1+0]\nexit", 1),
        ("ldxw r0, [r1-4]\nexit", 0),
        ("call 1\nldxw r0, [r1+0]\nexit", 1),
        ("ldxw r0, [r1+0]\njeq r0, 7, -2\nexit", 0),
    ] {
        let (_, ops) = run_both_forms(text, r1, &mut ctx, RegionKind::Context);
        assert_eq!(codes_of(&ops)[at], LDX_W, "{text}");
    }
    // A slot reached two ways knows r1 only if both ways do.
    let text = "
        ldxw r2, [r1+0]
        jeq r2, 1000, skip
        mov64 r1, r10
    skip:
        ldxw r0, [r1+4]
        exit";
    let (result, ops) = run_both_forms(text, r1, &mut ctx, RegionKind::Context);
    assert_eq!(result, Ok(1064));
    assert_eq!(codes_of(&ops)[3], LDX_W);
}

/// A constant move before a `SET2` whose registers nothing reads afterwards takes the `SET2`'s
/// slots into one op (a move that skips them); the results and the budget are those of the
/// plain form. Where a path still reads one of them, both ops stay.
#[test]
fn dead_constant_sets_are_absorbed_by_the_move_before() {
    use super::decode::code;
    use crate::vm::memory::RegionKind::Constant;
    let mut buf = [0u8; 8];
    buf[4..8].copy_from_slice(&14u32.to_le_bytes());
    let addr = buf.as_ptr() as u64;
    let program = |tail: &str| {
        format!(
            "
            mov32 r0, 1
            lddw r3, {addr:#x}
            ldxw r3, [r3+4]
            jlt r1, r3, small
            mov64 r0, 2
            jeq r1, 99, small
            exit
        small:
            {tail}
            exit"
        )
    };
    let text = program("add64 r0, 10");
    for (r1, want) in [(5, 11), (20, 2), (99, 12)] {
        let (result, ops) = run_both_forms(&text, r1, &mut buf, Constant);
        assert_eq!(result, Ok(want), "r1 = {r1}");
        assert_eq!((ops[0].code, ops[0].src), (code::SET_SKIP, 4), "{ops:x?}");
    }
    // r3 is read at `small`, which two jumps reach (so its value is not known there and the
    // read stays): the move and the SET2 stay apart.
    let text = program("add64 r0, r3");
    for (r1, want) in [(5, 15), (99, 2 + 14)] {
        let (result, ops) = run_both_forms(&text, r1, &mut buf, Constant);
        assert_eq!(result, Ok(want), "r1 = {r1}");
        assert_eq!(
            ops[0].code,
            crate::vm::insn::BPF_ALU | BPF_MOV | BPF_K,
            "{ops:x?}"
        );
        assert_eq!(ops[1].code, code::SET2, "{ops:x?}");
    }
}

/// A `ja` to a tail that loads a known constant into r0 (or moves one) and exits becomes that
/// exit, with the value, and the constant sets before it that nothing reads then go too; the
/// tail, no longer reached by the jump, folds on its one remaining way in. Results, memory
/// and the budget are the plain form's at every budget; a tail whose value is not known (a
/// writable map value) keeps its jump, and in a subprogram, whose `exit` shows r1..r5 to its
/// caller, the set of r2 stays.
#[test]
fn jumps_to_constant_exits_are_exits() {
    use super::decode::code;
    use crate::vm::memory::RegionKind::{Constant, MapValue};
    let mut buf = [0u8; 8];
    buf[0..4].copy_from_slice(&3u32.to_le_bytes());
    buf[4..8].copy_from_slice(&9u32.to_le_bytes());
    let addr = buf.as_ptr() as u64;
    let text = format!(
        "
        mov64 r0, 1
        jgt r1, 10, big
        lddw r2, {addr:#x}
        ja out
    big:
        jgt r1, 20, seven
        lddw r2, {:#x}
    out:
        ldxw r0, [r2+0]
        exit
    seven:
        ja tail
        mov64 r0, 0
    tail:
        mov64 r0, 7
        exit",
        addr + 4
    );
    for (r1, want) in [(5, 3), (15, 9), (25, 7)] {
        let (result, ops) = run_both_forms(&text, r1, &mut buf, Constant);
        assert_eq!(result, Ok(want), "r1 = {r1}");
        // The set of r2 and the `ja` are one exit; the load on the other way in is a move.
        assert_eq!(
            (ops[2].code, ops[2].imm, ops[2].aux),
            (code::EXIT_CONST, 3, 4)
        );
        assert_eq!((ops[8].code, ops[8].imm), (BPF_ALU64 | BPF_MOV | BPF_K, 9));
        assert_eq!((ops[10].code, ops[10].imm), (code::EXIT_CONST, 7));
    }
    for (r1, want) in [(5, 3), (15, 9)] {
        let (result, ops) = run_both_forms(&text, r1, &mut buf, MapValue);
        assert_eq!(result, Ok(want), "r1 = {r1}");
        assert_eq!(ops[4].code, BPF_JMP | BPF_JA, "{ops:x?}");
    }
    let text = format!(
        "
        call sub
        exit
    sub:
        lddw r2, {addr:#x}
        ja out
        mov64 r0, 0
    out:
        ldxw r0, [r2+0]
        exit"
    );
    let (result, ops) = run_both_forms(&text, 0, &mut buf, Constant);
    assert_eq!(result, Ok(3));
    assert_eq!(ops[2].code, BPF_LD | BPF_IMM | BPF_DW, "{ops:x?}");
    assert_eq!((ops[4].code, ops[4].aux), (code::EXIT_CONST, 2), "{ops:x?}");
}

/// The codes the loop has no arm for never reach it: no opcode, with any of the source
/// values that select its forms, decodes to one, and an instruction of one runs as the
/// fault of its slot (or as the op the decoder makes of it).
#[test]
fn codes_without_an_arm_become_faults() {
    use super::exec::is_hole;
    for op in 0..=u8::MAX {
        for src in [0, 1, 2, 3, 4] {
            let insns = vec![
                Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1),
                Insn::new(op, 1, src, 1, 7),
                Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
                Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
            ];
            let d = super::decode::Decoded::new(&insns);
            assert!(
                d.ops.iter().all(|o| !is_hole(o.code)),
                "{op:#04x} src {src}: {:x?}",
                d.ops
            );
            if is_hole(op) {
                let prog = PreparedProgram {
                    decoded: std::sync::Arc::new(d),
                    ..prepare("exit")
                };
                let mut env = RunEnv::default();
                env.begin_run();
                let got = Interpreter::new(1000).run(&prog, &mut env, 0, 0);
                // The decoder turns a few into ops of their own (`gotol` into `ja`).
                assert!(
                    matches!(&got, Ok(_) | Err(VmError::Unsupported { insn: 1, .. })),
                    "{op:#04x}: {got:?}"
                );
            }
        }
    }
}

/// A constant stored to global data and then returned (`verdict = XDP_DROP; return
/// verdict;`) is one op that exits, directly or through the `ja` to a shared `exit`, with
/// the plain form's result, memory and budget.
#[test]
fn stored_constants_exit_in_one_op() {
    use super::decode::code;
    use crate::vm::memory::RegionKind::MapValue;
    let mut buf = [0u8; 8];
    let addr = buf.as_ptr() as u64;
    let text = format!(
        "
        jgt r1, 10, other
        lddw r2, {addr:#x}
        mov32 r0, 1
        stxw [r2+0], r0
        ja out
    other:
        lddw r2, {:#x}
        mov64 r0, 7
        stxw [r2+0], r0
    out:
        exit",
        addr + 4
    );
    for (r1, want, memory) in [
        (5, 1, [1, 0, 0, 0, 0, 0, 0, 0]),
        (20, 7, [0, 0, 0, 0, 7, 0, 0, 0]),
    ] {
        buf = [0; 8];
        let (result, ops) = run_both_forms(&text, r1, &mut buf, MapValue);
        assert_eq!(result, Ok(want), "r1 = {r1}");
        assert_eq!(buf, memory, "r1 = {r1}");
        assert_eq!(
            (ops[1].code, ops[1].src),
            (code::SET_STORE_EXIT, 5),
            "{ops:x?}"
        );
        assert_eq!(
            (ops[6].code, ops[6].src),
            (code::SET_STORE_EXIT, 4),
            "{ops:x?}"
        );
    }
}

/// The MAC swap clang makes of `swap_macs` (three `__builtin_memcpy`s of six bytes through a
/// stack temporary, put together with shifts and ors), as in `xdp_tx.o`.
const SWAP_MACS: &str = "
        ldxb r2, [r1+11]
        lsh32 r2, 8
        ldxb r3, [r1+10]
        or32 r2, r3
        stxh [r10-4], r2
        ldxb r2, [r1+7]
        lsh32 r2, 8
        ldxb r3, [r1+6]
        or32 r2, r3
        ldxb r3, [r1+9]
        lsh32 r3, 8
        ldxb r4, [r1+8]
        or32 r3, r4
        lsh32 r3, 16
        or32 r3, r2
        stxw [r10-8], r3
        ldxb r2, [r1+2]
        stxb [r1+8], r2
        ldxb r2, [r1+3]
        stxb [r1+9], r2
        ldxb r2, [r1+0]
        stxb [r1+6], r2
        ldxb r2, [r1+1]
        stxb [r1+7], r2
        ldxb r2, [r1+4]
        stxb [r1+10], r2
        ldxb r2, [r1+5]
        stxb [r1+11], r2
        ldxw r2, [r10-8]
        mov32 r3, r2
        rsh32 r3, 16
        stxb [r1+2], r3
        mov32 r3, r2
        rsh32 r3, 24
        stxb [r1+3], r3
        stxb [r1+0], r2
        rsh32 r2, 8
        stxb [r1+1], r2
        ldxh r2, [r10-4]
        stxb [r1+4], r2
        rsh32 r2, 8
        stxb [r1+5], r2";

/// A run of byte moves (loads, stores, moves, byte shifts and masks) runs as one op that
/// leaves memory and registers as its slots do: the MAC swap; registers read after the run,
/// with and without liveness; constants and masks; jumps into the run; faults part-way
/// through, at the faulting slot after the same writes; and a base that points into the
/// frame the run also writes (the checked slow path).
#[test]
fn byte_move_runs_match_their_slots() {
    use super::decode::code::SHUFFLE;
    use crate::vm::memory::RegionKind::{MapValue, ReadOnly};
    let frame: Vec<u8> = (1..=14).collect();
    let mut buf = frame.clone();
    let r1 = buf.as_mut_ptr() as u64;
    // The swap, the verdict set inside the run; every register written is dead after it.
    // (The add makes r1 a plain pointer: loads through the run's initial r1 are context
    // loads, see `fixed`.)
    let text = format!("add64 r1, 0\n{SWAP_MACS}\nmov32 r0, 3\nexit");
    let (result, ops) = run_both_forms(&text, r1, &mut buf, MapValue);
    assert_eq!(result, Ok(3));
    assert_eq!(ops[1].code, SHUFFLE, "{:x?}", codes_of(&ops));
    let mut want = frame.clone();
    want[..6].copy_from_slice(&frame[6..12]);
    want[6..12].copy_from_slice(&frame[..6]);
    assert_eq!(buf, want);
    assert_eq!(run_on(&text, &mut buf), Ok(3));
    assert_eq!(buf, frame, "swapped twice");
    // Registers the run leaves are read after it: r2 = the old half of bytes 10..12 >> 8
    // (byte 11: 12), r3 = the old word of bytes 6..10 >> 24 (byte 9: 10), r4 = byte 8 (9);
    // and the frame holds the temporaries.
    let text = format!(
        "add64 r1, 0
        {SWAP_MACS}
        ldxw r5, [r10-8]
        ldxh r6, [r10-4]
        lsh64 r3, 8
        or64 r3, r2
        lsh64 r3, 8
        or64 r3, r4
        lsh64 r3, 32
        mov64 r0, r5
        add64 r0, r6
        add64 r0, r3
        exit"
    );
    let word = u64::from(u32::from_le_bytes([7, 8, 9, 10]));
    let half = u64::from(u16::from_le_bytes([11, 12]));
    let regs = (10u64 << 16 | 12 << 8 | 9) << 32;
    assert_eq!(run_on(&text, &mut buf), Ok(word + half + regs));
    assert_eq!(decoded_codes(&text)[1], SHUFFLE);
    buf.copy_from_slice(&frame);
    assert_eq!(
        run_both_forms(&text, r1, &mut buf, MapValue).0,
        Ok(word + half + regs)
    );
    // Too short for the swap: the plain form faults at the first store past the end, after
    // the writes before it; the fused form does the same.
    let mut short = frame[..10].to_vec();
    let r1_short = short.as_mut_ptr() as u64;
    let (result, _) = run_both_forms(&text, r1_short, &mut short, MapValue);
    assert!(
        matches!(result, Err(VmError::OutOfBounds { insn: 1, .. })),
        "{result:?}"
    );
    // Read-only: the first store faults, nothing is written.
    buf.copy_from_slice(&frame);
    let (result, _) = run_both_forms(&text, r1, &mut buf, ReadOnly);
    assert!(
        matches!(result, Err(VmError::OutOfBounds { insn: 18, .. })),
        "{result:?}"
    );
    assert_eq!(buf, frame);
    // Constants, masks and 64-bit shifts; a store of an immediate; a load that sees the
    // run's own store.
    let text = "
        add64 r1, 0
        ldxdw r2, [r1+0]
        and64 r2, 0xff00ff
        stb [r1+8], 0x7f
        ldxh r3, [r1+8]
        lsh64 r3, 40
        or64 r2, r3
        mov64 r4, 0x1100
        or64 r2, r4
        stxdw [r1+0], r2
        stxw [r10-8], r2
        ldxw r5, [r10-8]
        rsh64 r2, 40
        stxh [r1+12], r2
        mov64 r0, r5
        exit";
    ANY_RUN.with(|a| a.set(true));
    let (result, ops) = run_both_forms(text, r1, &mut buf, MapValue);
    ANY_RUN.with(|a| a.set(false));
    assert_eq!(ops[1].code, SHUFFLE, "{:x?}", codes_of(&ops));
    let first = u64::from_le_bytes(frame[..8].try_into().unwrap()) & 0xff00ff;
    let r2 = first | u64::from(u16::from_le_bytes([0x7f, 10])) << 40 | 0x1100;
    assert_eq!(result, Ok(r2 & 0xffff_ffff));
    assert_eq!(buf[..8], r2.to_le_bytes());
    assert_eq!(buf[12..14], ((r2 >> 40) as u16).to_le_bytes());
    buf.copy_from_slice(&frame);
    // Entered in the middle (at the word's assembly): the slots from there run as they are.
    let text = format!(
        "
        add64 r1, 0
        mov64 r2, 0
        jeq r2, 0, mid
        mov64 r2, 1
        {}
    mid:
        {}
        mov32 r0, 3
        exit",
        SWAP_MACS.lines().take(6).collect::<Vec<_>>().join("\n"),
        SWAP_MACS.lines().skip(6).collect::<Vec<_>>().join("\n"),
    );
    let (result, _) = run_both_forms(&text, r1, &mut buf, MapValue);
    assert_eq!(result, Ok(3));
    buf.copy_from_slice(&frame);
    // The base points into the frame the run writes through r10: the frame stores and the
    // base accesses meet, which only the slot-by-slot path gets right.
    let text = "
        mov64 r6, r10
        add64 r6, -16
        stdw [r10-16], 0
        stb [r10-16], 1
        stb [r10-15], 2
        ldxb r3, [r6+0]
        ldxh r4, [r6+0]
        stxh [r6+2], r4
        ldxw r5, [r10-16]
        mov64 r0, r5
        lsh64 r0, 8
        or64 r0, r3
        exit";
    let want = u64::from(u32::from_le_bytes([1, 2, 1, 2])) << 8 | 1;
    ANY_RUN.with(|a| a.set(true));
    assert_eq!(run_on(text, &mut buf), Ok(want));
    assert!(decoded_codes(text).contains(&SHUFFLE));
    ANY_RUN.with(|a| a.set(false));
}

/// Random straight-line programs of byte moves (accesses through a buffer pointer, or through
/// a pointer into the frame, and through r10; moves, byte shifts, masks), fused into runs
/// wherever one can be (`ANY_RUN`) and with the cost model, run against their plain form:
/// the same result or fault, buffer and frame.
#[test]
fn random_byte_moves_match_their_slots() {
    use crate::vm::memory::RegionKind::MapValue;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_b17e);
    let widths = [("b", 1), ("h", 2), ("w", 4), ("dw", 8)];
    let mut fused_runs = 0;
    for case in 0..400 {
        // r6 points into the frame (32 bytes below r10) in one program of four.
        let base = if case % 4 == 3 { "r6" } else { "r1" };
        let mut text = String::from("mov64 r6, r10\nadd64 r6, -32\n");
        for k in 1..=8 {
            text += &format!("stdw [r10-{}], {}\n", 8 * k, k);
        }
        for _ in 0..rng.random_range(4..40) {
            let (suffix, w) = widths[rng.random_range(0..4)];
            let reg = |rng: &mut rand::rngs::StdRng| {
                // r1 now and then, which ends the run (and the buffer's reachability).
                if rng.random_range(0..40) == 0 {
                    1
                } else {
                    rng.random_range(2..6)
                }
            };
            let (d, s) = (reg(&mut rng), reg(&mut rng));
            // Mostly inside the 32-byte buffer, sometimes past its end.
            let off = rng.random_range(0..=(34 - w));
            let slot = rng.random_range(w..=64);
            let imm = rng.random_range(-300i32..300);
            let k = 8 * rng.random_range(0..8);
            text += &match rng.random_range(0..14) {
                0 | 1 => format!("ldx{suffix} r{d}, [{base}+{off}]\n"),
                2 | 3 => format!("stx{suffix} [{base}+{off}], r{s}\n"),
                4 => format!("st{suffix} [{base}+{off}], {imm}\n"),
                5 => format!("ldx{suffix} r{d}, [r10-{slot}]\n"),
                6 => format!("stx{suffix} [r10-{slot}], r{s}\n"),
                7 => format!("st{suffix} [r10-{slot}], {imm}\n"),
                8 => format!("mov64 r{d}, r{s}\n"),
                9 => format!("mov32 r{d}, r{s}\n"),
                10 => {
                    let (op, width) = [("lsh", 64), ("rsh", 64), ("lsh", 32), ("rsh", 32)]
                        [rng.random_range(0..4)];
                    format!("{op}{width} r{d}, {}\n", k % width)
                }
                11 => format!("or64 r{d}, r{s}\nor32 r{s}, 0x1100\n"),
                12 => format!("and64 r{d}, 0xff00ff00\nand32 r{s}, 0xffff\n"),
                _ => format!("mov32 r{d}, {imm}\n"),
            };
        }
        text += "mov64 r0, r2\nxor64 r0, r3\nxor64 r0, r4\nxor64 r0, r5\n";
        for k in 1..=8 {
            text += &format!("ldxdw r7, [r10-{}]\nxor64 r0, r7\nlsh64 r0, 1\n", 8 * k);
        }
        text += "exit";
        let mut buf = vec![0u8; 32];
        let r1 = buf.as_mut_ptr() as u64;
        let fill = |buf: &mut [u8]| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = i as u8 * 7 + 1;
            }
        };
        for any in [true, false] {
            ANY_RUN.with(|a| a.set(any));
            fill(&mut buf);
            let (result, ops) = run_both_forms(&text, r1, &mut buf, MapValue);
            let after = buf.clone();
            fused_runs += ops
                .iter()
                .filter(|op| op.code == super::decode::code::SHUFFLE)
                .count();
            // The whole program too, past the budgets `run_both_forms` tries.
            fill(&mut buf);
            let plain = {
                let prog = prepare_plain(&text);
                let mut env = RunEnv::default();
                env.memory.add_fixed(crate::vm::memory::Region {
                    start: r1,
                    len: 32,
                    writable: true,
                    kind: MapValue,
                });
                env.begin_run();
                Interpreter::new(1 << 20).run(&prog, &mut env, r1, 0)
            };
            // Addresses in the frame differ between interpreters (each has its own stack).
            let unplaced = |r: Result<u64, VmError>| match r {
                Err(VmError::OutOfBounds {
                    insn, len, access, ..
                }) => Err((insn, len, access)),
                Err(e) => panic!("case {case}: {e}"),
                Ok(v) => Ok(v),
            };
            assert_eq!(
                unplaced(result),
                unplaced(plain),
                "case {case}, any {any}:\n{text}"
            );
            assert_eq!(after, buf, "case {case}, any {any}:\n{text}");
        }
        ANY_RUN.with(|a| a.set(false));
    }
    assert!(fused_runs > 400, "only {fused_runs} runs fused");
}
