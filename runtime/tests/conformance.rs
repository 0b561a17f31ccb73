//! One table of text-assembly programs with expected results, run on every engine: the checked
//! interpreter, the JIT (guarded, and trusted for programs that do not fault) and the kernel
//! (`BPF_PROG_TEST_RUN` as XDP). The kernel is the oracle: a row the kernel disagrees with is a
//! wrong row or a wrong engine.
//!
//! Every program runs as XDP with r1 = a `xdp_md` whose packet (64 bytes, byte i = i) lies
//! below 4 GiB, so 32-bit `data`/`data_end` loads work unchanged in userspace. The kernel only
//! reports the low 32 bits of r0; a second kernel run of a rewritten program (every `exit` of
//! the main function jumps to `rsh64 r0, 32; exit`) checks the high half.
//!
//! Rows come from three places: hand-written cases ([`hand_cases`]), an ALU matrix and a jump
//! matrix whose expected values come from a small reference model ([`alu_ref`], [`jmp_ref`]),
//! checked in turn by the kernel leg.

use userxdp_runtime::kernel::{self, KernelError};
use userxdp_runtime::object::spec::ProgramType;
use userxdp_runtime::vm::asm;
use userxdp_runtime::vm::env::RunEnv;
use userxdp_runtime::vm::error::VmError;
use userxdp_runtime::vm::insn::{self, Insn, BPF_ALU64, BPF_EXIT, BPF_JA, BPF_JMP, BPF_K, BPF_RSH};
use userxdp_runtime::vm::interp::Interpreter;
use userxdp_runtime::vm::jit::{JitError, JitOptions, JitProgram};
use userxdp_runtime::vm::memory::{Access, Region, RegionKind};
use userxdp_runtime::vm::program::PreparedProgram;

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// A fault an engine must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    OutOfBounds(Access),
    Budget,
    CallDepth,
    /// Atomic at an unaligned address (interpreter: `Unsupported`).
    Misaligned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    R0(u64),
    Fault(Fault),
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    asm: String,
    expect: Expect,
    /// Run on the kernel (the verifier must accept the program).
    kernel: bool,
    /// Run on the JIT.
    jit: bool,
    budget: u64,
    /// Packet bytes after the run (default: unchanged).
    packet_out: Option<Vec<u8>>,
}

impl Case {
    fn no_kernel(mut self) -> Self {
        self.kernel = false;
        self
    }
    fn no_jit(mut self) -> Self {
        self.jit = false;
        self
    }
    fn budget(mut self, n: u64) -> Self {
        self.budget = n;
        self
    }
    fn packet(mut self, bytes: Vec<u8>) -> Self {
        self.packet_out = Some(bytes);
        self
    }
}

fn ok(name: &str, asm: &str, r0: u64) -> Case {
    Case {
        name: name.into(),
        asm: asm.into(),
        expect: Expect::R0(r0),
        kernel: true,
        jit: true,
        budget: 1 << 20,
        packet_out: None,
    }
}

/// A faulting program: the kernel verifier refuses all of these.
fn fault(name: &str, asm: &str, f: Fault) -> Case {
    Case {
        expect: Expect::Fault(f),
        kernel: false,
        ..ok(name, asm, 0)
    }
}

const PACKET_LEN: usize = 64;

fn packet_in() -> Vec<u8> {
    (0..PACKET_LEN as u8).collect()
}

fn packet_with(edits: &[(usize, u8)]) -> Vec<u8> {
    let mut p = packet_in();
    for &(i, v) in edits {
        p[i] = v;
    }
    p
}

/// Loads data into r2 and data_end into r3 and checks that `len` bytes are there (else r0 = 0
/// and exit), as the kernel verifier wants before any packet access.
fn pkt_prologue(len: usize) -> String {
    format!(
        "
        ldxw r2, [r1+0]
        ldxw r3, [r1+4]
        mov64 r4, r2
        add64 r4, {len}
        jle r4, r3, pkt_ok
        mov64 r0, 0
        exit
    pkt_ok:
        "
    )
}

#[allow(clippy::too_many_lines)]
fn hand_cases() -> Vec<Case> {
    let m1 = u64::MAX;
    let imin = i64::MIN as u64;
    let mut v = vec![
        // ---- moves and immediates ----
        ok("mov64_imm_sign_extends", "mov64 r0, -1\nexit", m1),
        ok("mov32_imm_zero_extends", "mov32 r0, -1\nexit", 0xffff_ffff),
        ok("mov32_reg_zero_extends", "lddw r2, 0x1234567887654321\nmov32 r0, r2\nexit", 0x8765_4321),
        ok("mov64_reg", "lddw r2, 0x1234567887654321\nmov64 r0, r2\nexit", 0x1234_5678_8765_4321),
        ok("lddw_full", "lddw r0, 0x1122334455667788\nexit", 0x1122_3344_5566_7788),
        ok("lddw_low_half_negative", "lddw r0, 0x80000000\nexit", 0x8000_0000),
        ok("lddw_minus_one", "lddw r0, -1\nexit", m1),
        ok("lddw_high_only", "lddw r0, 0xffffffff00000000\nexit", 0xffff_ffff_0000_0000),
        // ---- add / sub / mul ----
        ok("add32_wraps", "mov32 r0, -1\nadd32 r0, 1\nexit", 0),
        ok("add64_imm_sign_extends", "mov64 r0, 0\nadd64 r0, -1\nexit", m1),
        ok("add32_clears_high", "lddw r0, 0xffffffff00000001\nadd32 r0, 1\nexit", 2),
        ok("add64_carry", "mov32 r0, -1\nadd64 r0, 1\nexit", 0x1_0000_0000),
        ok("sub64_negative", "mov64 r0, 3\nsub64 r0, 5\nexit", (-2i64) as u64),
        ok("sub32_negative", "mov64 r0, 3\nsub32 r0, 5\nexit", 0xffff_fffe),
        ok("sub64_reg", "mov64 r0, 3\nmov64 r2, -5\nsub64 r0, r2\nexit", 8),
        ok("mul64", "lddw r0, 0x100000001\nmul64 r0, 3\nexit", 0x3_0000_0003),
        ok("mul32_truncates", "mov32 r0, 0x10000\nmul32 r0, 0x10000\nexit", 0),
        ok("mul64_negative_imm", "mov64 r0, 5\nmul64 r0, -3\nexit", (-15i64) as u64),
        ok("mul32_negative_reg", "mov64 r0, 5\nmov64 r2, -3\nmul32 r0, r2\nexit", 0xffff_fff1),
        // ---- unsigned division and modulo ----
        ok("div64_k", "mov64 r0, -1\ndiv64 r0, 2\nexit", 0x7fff_ffff_ffff_ffff),
        ok("div64_k_imm_sign_extended", "mov64 r0, -1\ndiv64 r0, -1\nexit", 1),
        ok("div32_k_minus_one_is_max", "mov32 r0, 10\ndiv32 r0, -1\nexit", 0),
        ok("div32_k_both_max", "mov32 r0, -1\ndiv32 r0, -1\nexit", 1),
        ok("div64_x_by_zero", "mov64 r0, 77\nmov64 r2, 0\ndiv64 r0, r2\nexit", 0),
        ok("div32_x_by_zero", "lddw r0, 0x100000005\nmov64 r2, 0\ndiv32 r0, r2\nexit", 0),
        ok("div32_x_uses_low_half", "mov64 r0, 100\nlddw r2, 0x100000005\ndiv32 r0, r2\nexit", 20),
        ok("mod64_x_by_zero_keeps", "lddw r0, 0x100000005\nmov64 r2, 0\nmod64 r0, r2\nexit", 0x1_0000_0005),
        ok("mod32_x_by_zero_truncates", "lddw r0, 0x100000005\nmov64 r2, 0\nmod32 r0, r2\nexit", 5),
        ok("mod64_k", "mov64 r0, 17\nmod64 r0, 5\nexit", 2),
        ok("mod32_k_high_bits", "lddw r0, 0x100000011\nmod32 r0, 5\nexit", 2),
        ok("mod64_k_unsigned", "mov64 r0, -1\nmod64 r0, 10\nexit", 5),
        ok("mod64_x_by_zero_neg", "mov64 r0, -9\nmov64 r2, 0\nmod64 r0, r2\nexit", (-9i64) as u64),
        ok("div64_k_zero", "mov64 r0, 9\ndiv64 r0, 0\nexit", 0).no_kernel(),
        ok("mod64_k_zero", "mov64 r0, 9\nmod64 r0, 0\nexit", 9).no_kernel(),
        ok("div32_k_zero", "mov64 r0, 9\ndiv32 r0, 0\nexit", 0).no_kernel(),
        ok("mod32_k_zero", "lddw r0, 0x100000009\nmod32 r0, 0\nexit", 9).no_kernel(),
        // ---- signed division and modulo (cpu v4) ----
        ok("sdiv64_k", "mov64 r0, -7\nsdiv64 r0, 2\nexit", (-3i64) as u64),
        ok("sdiv64_k_neg", "mov64 r0, -100\nsdiv64 r0, 7\nexit", (-14i64) as u64),
        ok("sdiv64_x_min_by_minus_one", "lddw r0, 0x8000000000000000\nmov64 r2, -1\nsdiv64 r0, r2\nexit", imin),
        ok("sdiv64_k_min_by_minus_one", "lddw r0, 0x8000000000000000\nsdiv64 r0, -1\nexit", imin),
        ok("sdiv64_x_by_zero", "mov64 r0, -7\nmov64 r2, 0\nsdiv64 r0, r2\nexit", 0),
        ok("sdiv32_k", "mov64 r0, -7\nsdiv32 r0, 2\nexit", 0xffff_fffd),
        ok("sdiv32_x_min_by_minus_one", "mov32 r0, 0x80000000\nmov64 r2, -1\nsdiv32 r0, r2\nexit", 0x8000_0000),
        ok("sdiv32_k_high_garbage", "lddw r0, 0x12345678fffffff9\nsdiv32 r0, -1\nexit", 7),
        ok("sdiv32_x_by_zero", "mov64 r0, -7\nmov64 r2, 0\nsdiv32 r0, r2\nexit", 0),
        ok("smod64_k", "mov64 r0, -7\nsmod64 r0, 2\nexit", m1),
        ok("smod64_k_neg_divisor", "mov64 r0, 7\nsmod64 r0, -2\nexit", 1),
        ok("smod64_x_min_by_minus_one", "lddw r0, 0x8000000000000000\nmov64 r2, -1\nsmod64 r0, r2\nexit", 0),
        ok("smod64_x_by_zero_keeps", "mov64 r0, -7\nmov64 r2, 0\nsmod64 r0, r2\nexit", (-7i64) as u64),
        ok("smod32_k", "mov64 r0, -7\nsmod32 r0, 2\nexit", 0xffff_ffff),
        ok("smod32_x_by_zero_truncates", "mov64 r0, -7\nmov64 r2, 0\nsmod32 r0, r2\nexit", 0xffff_fff9),
        ok("smod32_x_min_by_minus_one", "mov32 r0, 0x80000000\nmov64 r2, -1\nsmod32 r0, r2\nexit", 0),
        ok("sdiv64_k_zero", "mov64 r0, -7\nsdiv64 r0, 0\nexit", 0).no_kernel(),
        ok("smod32_k_zero", "lddw r0, 0x1fffffff9\nsmod32 r0, 0\nexit", 0xffff_fff9).no_kernel(),
        // ---- bitwise ----
        ok("or64_k", "lddw r0, 0xf0f0f0f0f0f0f0f0\nor64 r0, 0x0f\nexit", 0xf0f0_f0f0_f0f0_f0ff),
        ok("or32_k", "lddw r0, 0xf0f0f0f0f0f0f0f0\nor32 r0, 0x0f\nexit", 0xf0f0_f0ff),
        ok("or64_k_negative", "mov64 r0, 0\nor64 r0, -2\nexit", (-2i64) as u64),
        ok("and64_k_minus_one_keeps", "lddw r0, 0xf0f0f0f0f0f0f0f0\nand64 r0, -1\nexit", 0xf0f0_f0f0_f0f0_f0f0),
        ok("and32_k_minus_one_truncates", "lddw r0, 0xf0f0f0f0f0f0f0f0\nand32 r0, -1\nexit", 0xf0f0_f0f0),
        ok("and64_x", "lddw r0, 0xff00ff00ff00ff00\nlddw r2, 0x0ff00ff00ff00ff0\nand64 r0, r2\nexit", 0x0f00_0f00_0f00_0f00),
        ok("xor64_k_minus_one", "lddw r0, 0xf0f0f0f0f0f0f0f0\nxor64 r0, -1\nexit", 0x0f0f_0f0f_0f0f_0f0f),
        ok("xor32_k_minus_one", "lddw r0, 0xf0f0f0f0f0f0f0f0\nxor32 r0, -1\nexit", 0x0f0f_0f0f),
        ok("xor64_self", "lddw r0, 0x1234\nxor64 r0, r0\nexit", 0),
        // ---- shifts ----
        ok("lsh64_k_0", "mov64 r0, 3\nlsh64 r0, 0\nexit", 3),
        ok("lsh64_k_63", "mov64 r0, 3\nlsh64 r0, 63\nexit", imin),
        ok("lsh64_x_64_masked", "mov64 r0, 3\nmov64 r2, 64\nlsh64 r0, r2\nexit", 3),
        ok("lsh64_x_65_masked", "mov64 r0, 3\nmov64 r2, 65\nlsh64 r0, r2\nexit", 6),
        ok("lsh32_k_31", "mov64 r0, 3\nlsh32 r0, 31\nexit", 0x8000_0000),
        ok("lsh32_x_32_masked", "lddw r0, 0x100000003\nmov64 r2, 32\nlsh32 r0, r2\nexit", 3),
        ok("lsh32_x_33_masked", "mov64 r0, 3\nmov64 r2, 33\nlsh32 r0, r2\nexit", 6),
        ok("lsh64_k_64", "mov64 r0, 3\nlsh64 r0, 64\nexit", 3).no_kernel(),
        ok("lsh32_k_32", "mov64 r0, 3\nlsh32 r0, 32\nexit", 3).no_kernel(),
        ok("rsh64_k_63", "mov64 r0, -1\nrsh64 r0, 63\nexit", 1),
        ok("rsh64_x_64_masked", "mov64 r0, -1\nmov64 r2, 64\nrsh64 r0, r2\nexit", m1),
        ok("rsh32_k_clears_high", "mov64 r0, -1\nrsh32 r0, 4\nexit", 0x0fff_ffff),
        ok("rsh32_x_33_masked", "mov64 r0, -1\nmov64 r2, 33\nrsh32 r0, r2\nexit", 0x7fff_ffff),
        ok("rsh32_k_0_truncates", "mov64 r0, -1\nrsh32 r0, 0\nexit", 0xffff_ffff),
        ok("arsh64_k_63", "mov64 r0, -8\narsh64 r0, 63\nexit", m1),
        ok("arsh64_k_1", "mov64 r0, -8\narsh64 r0, 1\nexit", (-4i64) as u64),
        ok("arsh64_x_64_masked", "mov64 r0, -8\nmov64 r2, 64\narsh64 r0, r2\nexit", (-8i64) as u64),
        ok("arsh32_k_31", "mov32 r0, 0x80000000\narsh32 r0, 31\nexit", 0xffff_ffff),
        ok("arsh32_uses_bit31", "lddw r0, 0x80000000\narsh32 r0, 4\nexit", 0xf800_0000),
        ok("arsh32_ignores_bit63", "lddw r0, 0x8000000000000010\narsh32 r0, 4\nexit", 1),
        ok("arsh32_x_32_masked", "mov32 r0, 0x80000000\nmov64 r2, 32\narsh32 r0, r2\nexit", 0x8000_0000),
        ok("arsh64_k_64", "mov64 r0, -8\narsh64 r0, 64\nexit", (-8i64) as u64).no_kernel(),
        // ---- neg ----
        ok("neg64", "mov64 r0, 1\nneg64 r0\nexit", m1),
        ok("neg64_min", "lddw r0, 0x8000000000000000\nneg64 r0\nexit", imin),
        ok("neg32", "mov64 r0, 1\nneg32 r0\nexit", 0xffff_ffff),
        ok("neg32_high_bits", "lddw r0, 0x100000000\nneg32 r0\nexit", 0),
        ok("neg32_min", "mov32 r0, 0x80000000\nneg32 r0\nexit", 0x8000_0000),
        // ---- movsx (cpu v4) ----
        ok("movsx64_8_neg", "mov64 r2, 0x80\nmovsx64 r0, r2, 8\nexit", 0xffff_ffff_ffff_ff80),
        ok("movsx64_8_pos", "mov64 r2, 0x17f\nmovsx64 r0, r2, 8\nexit", 0x7f),
        ok("movsx64_8_ignores_high", "lddw r2, 0x123456789abcde01\nmovsx64 r0, r2, 8\nexit", 1),
        ok("movsx64_16_neg", "mov64 r2, 0x8000\nmovsx64 r0, r2, 16\nexit", 0xffff_ffff_ffff_8000),
        ok("movsx64_16_pos", "mov64 r2, 0x17fff\nmovsx64 r0, r2, 16\nexit", 0x7fff),
        ok("movsx64_32_neg", "mov32 r2, 0x80000000\nmovsx64 r0, r2, 32\nexit", 0xffff_ffff_8000_0000),
        ok("movsx64_32_pos", "lddw r2, 0xff7fffffff\nmovsx64 r0, r2, 32\nexit", 0x7fff_ffff),
        ok("movsx32_8_neg", "mov64 r2, 0x80\nmovsx32 r0, r2, 8\nexit", 0xffff_ff80),
        ok("movsx32_16_neg", "mov64 r2, 0x8000\nmovsx32 r0, r2, 16\nexit", 0xffff_8000),
        ok("movsx32_16_pos_high", "lddw r2, 0xffffffff00001234\nmovsx32 r0, r2, 16\nexit", 0x1234),
        // ---- endianness ----
        ok("le16", "lddw r0, 0x1122334455667788\nle16 r0\nexit", 0x7788),
        ok("le32", "lddw r0, 0x1122334455667788\nle32 r0\nexit", 0x5566_7788),
        ok("le64", "lddw r0, 0x1122334455667788\nle64 r0\nexit", 0x1122_3344_5566_7788),
        ok("be16", "lddw r0, 0x1122334455667788\nbe16 r0\nexit", 0x8877),
        ok("be32", "lddw r0, 0x1122334455667788\nbe32 r0\nexit", 0x8877_6655),
        ok("be64", "lddw r0, 0x1122334455667788\nbe64 r0\nexit", 0x8877_6655_4433_2211),
        ok("bswap16", "lddw r0, 0x1122334455667788\nbswap16 r0\nexit", 0x8877),
        ok("bswap32", "lddw r0, 0x1122334455667788\nbswap32 r0\nexit", 0x8877_6655),
        ok("bswap64", "lddw r0, 0x1122334455667788\nbswap64 r0\nexit", 0x8877_6655_4433_2211),
        // ---- unconditional jumps ----
        ok(
            "ja_forward",
            "mov64 r0, 1\nmov64 r2, 1\njeq r2, 0, skip\nja +2\nskip: mov64 r0, 9\nexit\nadd64 r0, 5\nexit",
            6,
        ),
        ok(
            "gotol_forward_and_back",
            "
            mov64 r0, 1
            gotol fwd
        back:
            add64 r0, 100
            exit
        fwd:
            add64 r0, 10
            gotol back
            ",
            111,
        ),
        ok(
            "ja_backward_loop_sum",
            "
            mov64 r0, 0
            mov64 r2, 0
        top:
            add64 r2, 1
            add64 r0, r2
            jlt r2, 100, top
            exit
            ",
            5050,
        ),
        ok(
            "loop_jmp32_counter",
            "
            mov32 r0, 0
            mov32 r2, 10
        top:
            add32 r0, 3
            sub32 r2, 1
            jne32 r2, 0, top
            exit
            ",
            30,
        ),
        // ---- loads and stores on the stack ----
        ok("stxdw_ldxdw", "lddw r2, 0x1122334455667788\nstxdw [r10-8], r2\nldxdw r0, [r10-8]\nexit", 0x1122_3344_5566_7788),
        ok("stxdw_ldxw_low", "lddw r2, 0x1122334455667788\nstxdw [r10-8], r2\nldxw r0, [r10-8]\nexit", 0x5566_7788),
        ok("stxdw_ldxw_high", "lddw r2, 0x1122334455667788\nstxdw [r10-8], r2\nldxw r0, [r10-4]\nexit", 0x1122_3344),
        ok("stxdw_ldxh", "lddw r2, 0x1122334455667788\nstxdw [r10-8], r2\nldxh r0, [r10-6]\nexit", 0x5566),
        ok("stxdw_ldxb", "lddw r2, 0x1122334455667788\nstxdw [r10-8], r2\nldxb r0, [r10-1]\nexit", 0x11),
        ok("stxw_truncates", "stdw [r10-8], 0\nlddw r2, 0x1122334455667788\nstxw [r10-8], r2\nldxdw r0, [r10-8]\nexit", 0x5566_7788),
        ok("stxh_truncates", "stdw [r10-8], 0\nmov64 r2, -1\nstxh [r10-8], r2\nldxdw r0, [r10-8]\nexit", 0xffff),
        ok("stxb_truncates", "stdw [r10-8], 0\nmov64 r2, -1\nstxb [r10-7], r2\nldxdw r0, [r10-8]\nexit", 0xff00),
        ok("stdw_imm_sign_extends", "stdw [r10-8], -1\nldxdw r0, [r10-8]\nexit", m1),
        ok("stw_imm", "stdw [r10-8], 0\nstw [r10-4], -1\nldxdw r0, [r10-8]\nexit", 0xffff_ffff_0000_0000),
        ok("sth_imm_truncates", "sth [r10-2], 0x12345\nldxh r0, [r10-2]\nexit", 0x2345),
        ok("stb_imm_truncates", "stb [r10-1], 0x1ff\nldxb r0, [r10-1]\nexit", 0xff),
        ok("ldxb_zero_extends", "stb [r10-1], -1\nldxb r0, [r10-1]\nexit", 0xff),
        ok("ldxh_zero_extends", "sth [r10-2], -1\nldxh r0, [r10-2]\nexit", 0xffff),
        ok("ldxw_zero_extends", "stw [r10-4], -1\nldxw r0, [r10-4]\nexit", 0xffff_ffff),
        ok("stack_bottom_of_frame", "stdw [r10-512], 42\nldxdw r0, [r10-512]\nexit", 42),
        ok("stack_via_copy_of_r10", "mov64 r2, r10\nadd64 r2, -16\nstdw [r2+8], 7\nldxdw r0, [r10-8]\nexit", 7),
        // ---- sign-extending loads (cpu v4) ----
        ok("ldxsb_neg", "stb [r10-1], 0x80\nldxsb r0, [r10-1]\nexit", 0xffff_ffff_ffff_ff80),
        ok("ldxsb_pos", "stb [r10-1], 0x7f\nldxsb r0, [r10-1]\nexit", 0x7f),
        ok("ldxsh_neg", "sth [r10-2], 0x8001\nldxsh r0, [r10-2]\nexit", 0xffff_ffff_ffff_8001),
        ok("ldxsh_pos", "sth [r10-2], 0x7001\nldxsh r0, [r10-2]\nexit", 0x7001),
        ok("ldxsw_neg", "stw [r10-4], 0x80000001\nldxsw r0, [r10-4]\nexit", 0xffff_ffff_8000_0001),
        ok("ldxsw_pos", "stw [r10-4], 0x7fffffff\nldxsw r0, [r10-4]\nexit", 0x7fff_ffff),
        // ---- packet access through xdp_md ----
        ok("pkt_len", "ldxw r2, [r1+0]\nldxw r3, [r1+4]\nmov64 r0, r3\nsub64 r0, r2\nexit", PACKET_LEN as u64),
        ok("pkt_ldxdw", &format!("{}ldxdw r0, [r2+0]\nexit", pkt_prologue(8)), 0x0706_0504_0302_0100),
        ok("pkt_ldxw_unaligned", &format!("{}ldxw r0, [r2+1]\nexit", pkt_prologue(8)), 0x0403_0201),
        ok("pkt_ldxsb", &format!("{}ldxsb r0, [r2+63]\nexit", pkt_prologue(64)), 63),
        ok("pkt_ldxh_last", &format!("{}ldxh r0, [r2+62]\nexit", pkt_prologue(64)), 0x3f3e),
        ok(
            "pkt_stb",
            &format!("{}stb [r2+0], 0xaa\nldxb r0, [r2+0]\nexit", pkt_prologue(1)),
            0xaa,
        )
        .packet(packet_with(&[(0, 0xaa)])),
        ok(
            "pkt_stxdw",
            &format!("{}lddw r5, 0x1122334455667788\nstxdw [r2+8], r5\nmov64 r0, 2\nexit", pkt_prologue(16)),
            2,
        )
        .packet(packet_with(&[
            (8, 0x88),
            (9, 0x77),
            (10, 0x66),
            (11, 0x55),
            (12, 0x44),
            (13, 0x33),
            (14, 0x22),
            (15, 0x11),
        ])),
        ok(
            "pkt_sth_swap_ports",
            &format!("{}ldxh r5, [r2+4]\nbe16 r5\nadd64 r5, 1\nbe16 r5\nstxh [r2+4], r5\nmov64 r0, 3\nexit", pkt_prologue(6)),
            3,
        )
        .packet(packet_with(&[(5, 0x06)])),
        ok(
            "pkt_loop_checksum",
            &format!(
                "{}
                mov64 r0, 0
                mov64 r5, 0
            sum:
                mov64 r6, r2
                add64 r6, r5
                ldxb r7, [r6+0]
                add64 r0, r7
                add64 r5, 1
                jlt r5, 32, sum
                exit",
                pkt_prologue(32)
            ),
            (0..32).sum(),
        ),
        // ---- atomics on the stack ----
        ok(
            "atomic_add64",
            "stdw [r10-8], 10\nmov64 r2, 5\natomic_add64 [r10-8], r2\nldxdw r0, [r10-8]\nexit",
            15,
        ),
        ok(
            "atomic_add64_keeps_src",
            "stdw [r10-8], 10\nmov64 r2, 5\nxadd64 [r10-8], r2\nmov64 r0, r2\nexit",
            5,
        ),
        ok(
            "atomic_add32",
            "stdw [r10-8], -1\nmov64 r2, 1\natomic_add32 [r10-8], r2\nldxdw r0, [r10-8]\nexit",
            0xffff_ffff_0000_0000,
        ),
        ok(
            "atomic_or64",
            "stdw [r10-8], 0x10\nmov64 r2, 0x3\natomic_or64 [r10-8], r2\nldxdw r0, [r10-8]\nexit",
            0x13,
        ),
        ok(
            "atomic_or32_high_src_ignored",
            "stdw [r10-8], 0x10\nlddw r2, 0xff00000003\natomic_or32 [r10-8], r2\nldxdw r0, [r10-8]\nexit",
            0x13,
        ),
        ok(
            "atomic_and64",
            "stdw [r10-8], 0x1f\nmov64 r2, 0x6\natomic_and64 [r10-8], r2\nldxdw r0, [r10-8]\nexit",
            0x6,
        ),
        ok(
            "atomic_and32",
            "stdw [r10-8], -1\nmov64 r2, 0x6\natomic_and32 [r10-8], r2\nldxdw r0, [r10-8]\nexit",
            0xffff_ffff_0000_0006,
        ),
        ok(
            "atomic_xor64",
            "stdw [r10-8], 0xff\nmov64 r2, 0x0f\natomic_xor64 [r10-8], r2\nldxdw r0, [r10-8]\nexit",
            0xf0,
        ),
        ok(
            "atomic_xor32_upper_half",
            "stdw [r10-8], 0\nmov64 r2, -1\natomic_xor32 [r10-4], r2\nldxdw r0, [r10-8]\nexit",
            0xffff_ffff_0000_0000,
        ),
    ];
    // Fetching atomics: r0 = (old << 32) | new, values small.
    for (name, init, operand, old_new) in [
        ("atomic_fetch_add64", 10, 5, (10, 15)),
        ("atomic_fetch_or64", 0x10, 3, (0x10, 0x13)),
        ("atomic_fetch_and64", 0x1f, 6, (0x1f, 6)),
        ("atomic_fetch_xor64", 0xff, 0x0f, (0xff, 0xf0)),
        ("xchg64", 10, 99, (10, 99)),
        ("atomic_fetch_add32", 10, 5, (10, 15)),
        ("atomic_fetch_or32", 0x10, 3, (0x10, 0x13)),
        ("atomic_fetch_and32", 0x1f, 6, (0x1f, 6)),
        ("atomic_fetch_xor32", 0xff, 0x0f, (0xff, 0xf0)),
        ("xchg32", 10, 99, (10, 99)),
    ] {
        let (load, high) = if name.ends_with("32") {
            // The operand's high half must not matter and the fetched value is zero-extended.
            ("ldxw", "lddw r3, 0x7700000000\nor64 r2, r3\n")
        } else {
            ("ldxdw", "")
        };
        v.push(ok(
            name,
            &format!(
                "stdw [r10-8], {init}\nmov64 r2, {operand}\n{high}{name} [r10-8], r2\n{load} r3, [r10-8]\n\
                 lsh64 r2, 32\nor64 r2, r3\nmov64 r0, r2\nexit"
            ),
            (old_new.0 << 32) | old_new.1,
        ));
    }
    v.extend([
        ok(
            "atomic_fetch_add64_negative",
            "stdw [r10-8], 1\nmov64 r2, -2\natomic_fetch_add64 [r10-8], r2\nldxdw r0, [r10-8]\nadd64 r0, r2\nexit",
            0,
        ),
        ok(
            "atomic_fetch_add32_zero_extends_old",
            "stw [r10-4], -1\nmov64 r2, 1\natomic_fetch_add32 [r10-4], r2\nmov64 r0, r2\nexit",
            0xffff_ffff,
        ),
        ok(
            "cmpxchg64_success",
            "stdw [r10-8], 10\nmov64 r0, 10\nmov64 r2, 20\ncmpxchg64 [r10-8], r2\nldxdw r3, [r10-8]\nlsh64 r0, 32\nor64 r0, r3\nexit",
            (10 << 32) | 20,
        ),
        ok(
            "cmpxchg64_failure",
            "stdw [r10-8], 10\nmov64 r0, 11\nmov64 r2, 20\ncmpxchg64 [r10-8], r2\nldxdw r3, [r10-8]\nlsh64 r0, 32\nor64 r0, r3\nexit",
            (10 << 32) | 10,
        ),
        ok(
            "cmpxchg64_full_width_compare",
            "stdw [r10-8], 10\nlddw r0, 0x10000000a\nmov64 r2, 20\ncmpxchg64 [r10-8], r2\nldxdw r0, [r10-8]\nexit",
            10,
        ),
        ok(
            "cmpxchg32_success_low_half_compare",
            "stdw [r10-8], 10\nlddw r0, 0xffffffff0000000a\nmov64 r2, 20\ncmpxchg32 [r10-8], r2\nldxdw r3, [r10-8]\nlsh64 r0, 32\nor64 r0, r3\nexit",
            (10 << 32) | 20,
        ),
        ok(
            "cmpxchg32_failure_zero_extends_r0",
            "stdw [r10-8], -1\nlddw r0, 0x7700000005\nmov64 r2, 20\ncmpxchg32 [r10-8], r2\nexit",
            0xffff_ffff,
        ),
        ok(
            "cmpxchg32_old_zero_extended",
            "stw [r10-4], -2\nmov64 r0, -2\nmov64 r2, 3\ncmpxchg32 [r10-4], r2\nexit",
            0xffff_fffe,
        ),
        // ---- bpf-to-bpf calls ----
        ok("call_simple", "mov64 r1, 5\ncall f\nexit\nf:\nmov64 r0, r1\nadd64 r0, 1\nexit", 6),
        ok(
            "call_preserves_r6_r9",
            "
            mov64 r6, 1
            mov64 r7, 2
            mov64 r8, 3
            mov64 r9, 4
            call f
            mov64 r0, r6
            lsh64 r0, 8
            or64 r0, r7
            lsh64 r0, 8
            or64 r0, r8
            lsh64 r0, 8
            or64 r0, r9
            exit
        f:
            mov64 r6, 0x10
            mov64 r7, 0x20
            mov64 r8, 0x30
            mov64 r9, 0x40
            mov64 r0, 0
            exit
            ",
            0x0102_0304,
        ),
        ok(
            "call_own_frame",
            "
            stdw [r10-8], 1
            call f
            ldxdw r2, [r10-8]
            lsh64 r0, 8
            or64 r0, r2
            exit
        f:
            stdw [r10-8], 2
            ldxdw r0, [r10-8]
            exit
            ",
            0x0201,
        ),
        ok(
            "call_pointer_to_caller_stack",
            "
            stdw [r10-8], 7
            mov64 r1, r10
            add64 r1, -8
            call inc
            ldxdw r0, [r10-8]
            exit
        inc:
            ldxdw r0, [r1+0]
            add64 r0, 1
            stxdw [r1+0], r0
            exit
            ",
            8,
        ),
        ok(
            "call_nested_three",
            "
            mov64 r1, 1
            call a
            exit
        a:
            mov64 r6, r1
            mov64 r1, 10
            call b
            add64 r0, r6
            exit
        b:
            mov64 r6, r1
            mov64 r1, 100
            call c
            add64 r0, r6
            exit
        c:
            mov64 r0, r1
            exit
            ",
            111,
        ),
        ok(
            "call_five_args",
            "
            mov64 r1, 1
            mov64 r2, 2
            mov64 r3, 3
            mov64 r4, 4
            mov64 r5, 5
            call f
            exit
        f:
            mov64 r0, r1
            mul64 r0, 10
            add64 r0, r2
            mul64 r0, 10
            add64 r0, r3
            mul64 r0, 10
            add64 r0, r4
            mul64 r0, 10
            add64 r0, r5
            exit
            ",
            12345,
        ),
        ok(
            "call_returns_64bit",
            "call f\nexit\nf:\nlddw r0, 0xdeadbeefcafef00d\nexit",
            0xdead_beef_cafe_f00d,
        ),
        ok(
            "call_in_loop",
            "
            mov64 r6, 0
            mov64 r7, 0
        top:
            mov64 r1, r6
            call sq
            add64 r7, r0
            add64 r6, 1
            jlt r6, 5, top
            mov64 r0, r7
            exit
        sq:
            mov64 r0, r1
            mul64 r0, r1
            exit
            ",
            30,
        ),
        ok("call_chain_eight_frames", &chain(7), 7),
        ok(
            "recursion_seven_frames",
            "
            mov64 r1, 6
            call f
            exit
        f:
            mov64 r0, 0
            jeq r1, 0, done
            sub64 r1, 1
            call f
            add64 r0, 1
        done:
            exit
            ",
            6,
        )
        .no_kernel(),
        // ---- callbacks through bpf_loop (181). The kernel wants BTF func_info for
        // PSEUDO_FUNC loads, which raw instructions cannot carry, so these are userspace-only.
        ok(
            "bpf_loop_sums_index",
            "
            stdw [r10-8], 0
            mov64 r6, 77
            mov64 r1, 10
            ldfunc r2, cb
            mov64 r3, r10
            add64 r3, -8
            mov64 r4, 0
            call 181
            ldxdw r2, [r10-8]
            lsh64 r0, 32
            or64 r0, r2
            jeq r6, 77, good
            mov64 r0, -1
        good:
            exit
        cb:
            mov64 r6, 0
            ldxdw r3, [r2+0]
            add64 r3, r1
            stxdw [r2+0], r3
            mov64 r0, 0
            exit
            ",
            (10 << 32) | 45,
        )
        .no_kernel(),
        ok(
            "bpf_loop_early_stop",
            "
            stdw [r10-8], 0
            mov64 r1, 100
            ldfunc r2, cb
            mov64 r3, r10
            add64 r3, -8
            mov64 r4, 0
            call 181
            ldxdw r2, [r10-8]
            lsh64 r0, 32
            or64 r0, r2
            exit
        cb:
            ldxdw r3, [r2+0]
            add64 r3, r1
            stxdw [r2+0], r3
            mov64 r0, 0
            jne r1, 3, out
            mov64 r0, 1
        out:
            exit
            ",
            (4 << 32) | 6,
        )
        .no_kernel(),
        ok(
            "bpf_loop_callback_calls_subprog",
            "
            stdw [r10-8], 0
            mov64 r1, 4
            ldfunc r2, cb
            mov64 r3, r10
            add64 r3, -8
            mov64 r4, 0
            call 181
            ldxdw r0, [r10-8]
            exit
        cb:
            mov64 r6, r2
            call sq
            ldxdw r3, [r6+0]
            add64 r3, r0
            stxdw [r6+0], r3
            mov64 r0, 0
            exit
        sq:
            mov64 r0, r1
            mul64 r0, r1
            exit
            ",
            14,
        )
        .no_kernel(),
        ok(
            "bpf_loop_callback_own_frame",
            "
            stdw [r10-8], 5
            mov64 r1, 1
            ldfunc r2, cb
            mov64 r3, 0
            mov64 r4, 0
            call 181
            ldxdw r0, [r10-8]
            exit
        cb:
            stdw [r10-8], 9
            mov64 r0, 0
            exit
            ",
            5,
        )
        .no_kernel(),
        fault(
            "bpf_loop_callback_depth",
            "
        f:
            mov64 r1, 1
            ldfunc r2, f
            mov64 r3, 0
            mov64 r4, 0
            call 181
            exit
            ",
            Fault::CallDepth,
        ),
        // ---- faults (the kernel verifier refuses all of these) ----
        fault("oob_stack_underflow", "ldxdw r0, [r10-4104]\nexit", Fault::OutOfBounds(Access::Read)),
        fault("oob_write_at_r10", "stb [r10+0], 1\nmov64 r0, 0\nexit", Fault::OutOfBounds(Access::Write)),
        fault("oob_read_above_r10", "ldxw r0, [r10+8]\nexit", Fault::OutOfBounds(Access::Read)),
        fault("oob_random_read", "lddw r2, 0xdead0000\nldxw r0, [r2+0]\nexit", Fault::OutOfBounds(Access::Read)),
        fault(
            "oob_random_write",
            "lddw r2, 0x10\nmov64 r3, 1\nstxdw [r2+0], r3\nmov64 r0, 0\nexit",
            Fault::OutOfBounds(Access::Write),
        ),
        fault("oob_null_read", "mov64 r2, 0\nldxb r0, [r2+0]\nexit", Fault::OutOfBounds(Access::Read)),
        fault("oob_ctx_write", "stw [r1+0], 0\nmov64 r0, 0\nexit", Fault::OutOfBounds(Access::Write)),
        fault("oob_ctx_read_past_end", "ldxw r0, [r1+24]\nexit", Fault::OutOfBounds(Access::Read)),
        fault("oob_packet_end", "ldxw r2, [r1+4]\nldxb r0, [r2+0]\nexit", Fault::OutOfBounds(Access::Read)),
        fault(
            "oob_packet_straddles_end",
            "ldxw r2, [r1+4]\nldxw r0, [r2-2]\nexit",
            Fault::OutOfBounds(Access::Read),
        ),
        fault(
            "oob_atomic",
            "mov64 r2, 8\nmov64 r3, 1\natomic_add64 [r2+0], r3\nmov64 r0, 0\nexit",
            Fault::OutOfBounds(Access::Write),
        ),
        fault(
            "oob_callee_above_main_frame",
            "call f\nexit\nf:\nldxdw r0, [r10+512]\nexit",
            Fault::OutOfBounds(Access::Read),
        ),
        fault(
            "misaligned_atomic",
            "stdw [r10-16], 0\nmov64 r2, 1\natomic_add64 [r10-12], r2\nmov64 r0, 0\nexit",
            Fault::Misaligned,
        )
        .no_jit(),
        fault("budget_infinite_loop", "mov64 r0, 0\nloop:\nadd64 r0, 1\nja loop", Fault::Budget)
            .budget(1000)
            .no_jit(),
        fault("call_depth_recursion", "f:\ncall f\nexit", Fault::CallDepth).no_jit(),
        fault("call_depth_chain_nine_frames", &chain(8), Fault::CallDepth),
    ]);
    v
}

/// main calls f1, f1 calls f2, ..., f`n` returns; each adds one: r0 = n. n + 1 frames.
fn chain(n: usize) -> String {
    let mut s = String::from("call f1\nexit\n");
    for i in 1..=n {
        if i == n {
            s += &format!("f{i}:\nmov64 r0, 1\nexit\n");
        } else {
            s += &format!("f{i}:\ncall f{}\nadd64 r0, 1\nexit\n", i + 1);
        }
    }
    s
}

// ---- generated ALU matrix ----

const ALU_OPS: [&str; 13] = [
    "add", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "xor", "lsh", "rsh", "arsh",
];

/// (a, b) operand pairs: b is the full register value for X forms; K forms use `b as i32`.
const ALU_PAIRS: [(u64, u64); 12] = [
    (0x0123_4567_89ab_cdef, 7),
    (u64::MAX, 1),
    (i64::MIN as u64, u64::MAX),
    (0x8000_0000, u64::MAX),
    (0xffff_fffe_7fff_ffff, (-16i64) as u64),
    (5, 0),
    ((-7i64) as u64, 2),
    (0x1_0000_0003, 0x1_0000_0002),
    (12345, 64),
    (0x8000_0000_0000_0001, 31),
    (0xdead_beef, 32),
    (u64::MAX, 63),
];

/// Reference semantics of the kernel for ALU ops; `b` is the already extended operand.
fn alu_ref(op: &str, is64: bool, a: u64, b: u64) -> u64 {
    if is64 {
        let (sa, sb) = (a as i64, b as i64);
        match op {
            "add" => a.wrapping_add(b),
            "sub" => a.wrapping_sub(b),
            "mul" => a.wrapping_mul(b),
            "div" => a.checked_div(b).unwrap_or(0),
            "sdiv" => {
                if b == 0 {
                    0
                } else {
                    sa.wrapping_div(sb) as u64
                }
            }
            "mod" => {
                if b == 0 {
                    a
                } else {
                    a % b
                }
            }
            "smod" => {
                if b == 0 {
                    a
                } else {
                    sa.wrapping_rem(sb) as u64
                }
            }
            "or" => a | b,
            "and" => a & b,
            "xor" => a ^ b,
            "lsh" => a << (b & 63),
            "rsh" => a >> (b & 63),
            "arsh" => (sa >> (b & 63)) as u64,
            _ => unreachable!("{op}"),
        }
    } else {
        let (a, b) = (a as u32, b as u32);
        let (sa, sb) = (a as i32, b as i32);
        u64::from(match op {
            "add" => a.wrapping_add(b),
            "sub" => a.wrapping_sub(b),
            "mul" => a.wrapping_mul(b),
            "div" => a.checked_div(b).unwrap_or(0),
            "sdiv" => {
                if b == 0 {
                    0
                } else {
                    sa.wrapping_div(sb) as u32
                }
            }
            "mod" => {
                if b == 0 {
                    a
                } else {
                    a % b
                }
            }
            "smod" => {
                if b == 0 {
                    a
                } else {
                    sa.wrapping_rem(sb) as u32
                }
            }
            "or" => a | b,
            "and" => a & b,
            "xor" => a ^ b,
            "lsh" => a << (b & 31),
            "rsh" => a >> (b & 31),
            "arsh" => (sa >> (b & 31)) as u32,
            _ => unreachable!("{op}"),
        })
    }
}

fn alu_matrix() -> Vec<Case> {
    let mut v = Vec::new();
    for op in ALU_OPS {
        for is64 in [true, false] {
            let w = if is64 { 64 } else { 32 };
            for (i, &(a, b)) in ALU_PAIRS.iter().enumerate() {
                // X form: full register operand.
                v.push(ok(
                    &format!("gen_alu/{op}{w}_x/{i}"),
                    &format!("lddw r0, {a:#x}\nlddw r2, {b:#x}\n{op}{w} r0, r2\nexit"),
                    alu_ref(op, is64, a, b),
                ));
                // K form: 32-bit immediate, sign-extended for ALU64.
                let k = b as i32;
                let kb = if is64 {
                    k as i64 as u64
                } else {
                    u64::from(k as u32)
                };
                let mut c = ok(
                    &format!("gen_alu/{op}{w}_k/{i}"),
                    &format!("lddw r0, {a:#x}\n{op}{w} r0, {k}\nexit"),
                    alu_ref(op, is64, a, kb),
                );
                let shift = matches!(op, "lsh" | "rsh" | "arsh");
                let divide = matches!(op, "div" | "sdiv" | "mod" | "smod");
                // The verifier rejects constant division by zero and out-of-range shifts.
                if (divide && k == 0) || (shift && (k < 0 || k >= w)) {
                    c = c.no_kernel();
                }
                v.push(c);
            }
        }
    }
    v
}

// ---- generated jump matrix ----

const JMP_CONDS: [&str; 11] = [
    "eq", "gt", "ge", "set", "ne", "sgt", "sge", "lt", "le", "slt", "sle",
];

const JMP_PAIRS: [(u64, u64); 10] = [
    (0, 0),
    (1, 2),
    (2, 1),
    (u64::MAX, 1),
    (1, u64::MAX),
    (0x7fff_ffff, 0x8000_0000),
    (0x8000_0000, 0x7fff_ffff),
    (i64::MIN as u64, i64::MAX as u64),
    (0x1_0000_0005, 5),
    (0xffff_ffff, u64::MAX),
];

fn jmp_ref(cond: &str, is64: bool, a: u64, b: u64) -> bool {
    let (a, b, sa, sb) = if is64 {
        (a, b, a as i64, b as i64)
    } else {
        let (a, b) = (a as u32, b as u32);
        (
            u64::from(a),
            u64::from(b),
            i64::from(a as i32),
            i64::from(b as i32),
        )
    };
    match cond {
        "eq" => a == b,
        "gt" => a > b,
        "ge" => a >= b,
        "set" => a & b != 0,
        "ne" => a != b,
        "sgt" => sa > sb,
        "sge" => sa >= sb,
        "lt" => a < b,
        "le" => a <= b,
        "slt" => sa < sb,
        "sle" => sa <= sb,
        _ => unreachable!("{cond}"),
    }
}

fn jmp_matrix() -> Vec<Case> {
    let mut v = Vec::new();
    for cond in JMP_CONDS {
        for is64 in [true, false] {
            let w = if is64 { "" } else { "32" };
            for (i, &(a, b)) in JMP_PAIRS.iter().enumerate() {
                let body = |operand: &str| {
                    format!("lddw r2, {a:#x}\nlddw r3, {b:#x}\nmov64 r0, 1\nj{cond}{w} r2, {operand}, +1\nmov64 r0, 0\nexit")
                };
                v.push(ok(
                    &format!("gen_jmp/j{cond}{w}_x/{i}"),
                    &body("r3"),
                    u64::from(jmp_ref(cond, is64, a, b)),
                ));
                let k = b as i32;
                let kb = if is64 {
                    k as i64 as u64
                } else {
                    u64::from(k as u32)
                };
                v.push(ok(
                    &format!("gen_jmp/j{cond}{w}_k/{i}"),
                    &body(&k.to_string()),
                    u64::from(jmp_ref(cond, is64, a, kb)),
                ));
            }
        }
    }
    v
}

fn all_cases() -> Vec<Case> {
    let mut v = hand_cases();
    v.extend(alu_matrix());
    v.extend(jmp_matrix());
    v
}

// ---------------------------------------------------------------------------------------------
// Test memory: an xdp_md and a packet below 4 GiB
// ---------------------------------------------------------------------------------------------

/// The kernel's `struct xdp_md`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

const MEM_SIZE: usize = 4096;
const PACKET_OFFSET: usize = 256;

/// One page below 4 GiB holding the context at offset 0 and the packet at 256.
struct LowMem {
    base: *mut u8,
}

impl LowMem {
    fn new() -> LowMem {
        // SAFETY: anonymous private mapping; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap(MAP_32BIT) failed");
        assert!(
            (p as u64) + (MEM_SIZE as u64) < (1 << 32),
            "MAP_32BIT mapping above 4 GiB"
        );
        LowMem { base: p.cast() }
    }

    fn ctx_addr(&self) -> u64 {
        self.base as u64
    }

    fn packet_addr(&self) -> u64 {
        self.base as u64 + PACKET_OFFSET as u64
    }

    /// Resets context and packet and returns an environment that may touch them.
    fn fresh_env(&mut self) -> RunEnv {
        let packet = packet_in();
        // SAFETY: the mapping is MEM_SIZE bytes; the packet fits at PACKET_OFFSET and the
        // context at 0; nothing else references the mapping now.
        unsafe {
            std::ptr::copy_nonoverlapping(
                packet.as_ptr(),
                self.base.add(PACKET_OFFSET),
                PACKET_LEN,
            );
            let data = self.packet_addr() as u32;
            let md = XdpMd {
                data,
                data_end: data + PACKET_LEN as u32,
                data_meta: data,
                ingress_ifindex: 1,
                rx_queue_index: 0,
                egress_ifindex: 0,
            };
            std::ptr::write(self.base.cast::<XdpMd>(), md);
        }
        let mut env = RunEnv::default();
        env.begin_run();
        env.ctx = self.base;
        env.memory.add(Region {
            start: self.ctx_addr(),
            len: std::mem::size_of::<XdpMd>() as u64,
            writable: false,
            kind: RegionKind::Context,
        });
        env.memory.add(Region {
            start: self.packet_addr(),
            len: PACKET_LEN as u64,
            writable: true,
            kind: RegionKind::Packet,
        });
        env
    }

    fn packet(&self) -> Vec<u8> {
        // SAFETY: in bounds of the mapping; no engine runs now.
        unsafe { std::slice::from_raw_parts(self.base.add(PACKET_OFFSET), PACKET_LEN) }.to_vec()
    }
}

impl Drop for LowMem {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.base.cast(), MEM_SIZE) };
    }
}

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

fn fault_kind(e: &VmError) -> Option<Fault> {
    match e {
        VmError::OutOfBounds { access, .. } => Some(Fault::OutOfBounds(*access)),
        VmError::BudgetExhausted { .. } => Some(Fault::Budget),
        VmError::CallDepthExceeded { .. } => Some(Fault::CallDepth),
        VmError::Unsupported { what, .. } if what.contains("misaligned") => Some(Fault::Misaligned),
        _ => None,
    }
}

/// Compares an engine's outcome with the row; `None` when they agree.
fn judge(case: &Case, got: &Result<u64, VmError>, packet: &[u8]) -> Option<String> {
    match (&case.expect, got) {
        (Expect::R0(want), Ok(r0)) if want == r0 => {}
        (Expect::R0(want), Ok(r0)) => return Some(format!("r0 = {r0:#x}, expected {want:#x}")),
        (Expect::R0(want), Err(e)) => return Some(format!("fault `{e}`, expected r0 = {want:#x}")),
        (Expect::Fault(f), Err(e)) if fault_kind(e) == Some(*f) => {}
        (Expect::Fault(f), other) => return Some(format!("{other:?}, expected fault {f:?}")),
    }
    let want = case.packet_out.clone().unwrap_or_else(packet_in);
    (matches!(case.expect, Expect::R0(_)) && packet != want.as_slice())
        .then(|| format!("packet after run {packet:02x?}, expected {want:02x?}"))
}

#[derive(Default)]
struct Tally {
    run: usize,
    skipped: usize,
}

/// Why the JIT leg is skipped, if it is (the JIT is still being written).
fn jit_unavailable(prog: &PreparedProgram) -> Option<String> {
    match JitProgram::compile(prog, &JitOptions { guarded: true }) {
        Err(JitError::Unsupported { what, .. }) if what.contains("not built yet") => Some(what),
        _ => None,
    }
}

/// The program with every exit of the main function redirected to `rsh64 r0, 32; exit`
/// inserted right after the main function, so the kernel reports r0's high half.
fn high_half_variant(prog: &PreparedProgram) -> Vec<Insn> {
    let main_end = prog.function_range(0).end;
    let map = |i: usize| if i >= main_end { i + 2 } else { i };
    let mut out = Vec::with_capacity(prog.insns.len() + 2);
    for (pc, &insn) in prog.insns.iter().enumerate() {
        let mut insn = insn;
        let new_pc = map(pc) as i64;
        if pc < main_end && insn.op == BPF_JMP | BPF_EXIT {
            insn = Insn::new(
                BPF_JMP | BPF_JA,
                0,
                0,
                (main_end as i64 - new_pc - 1) as i16,
                0,
            );
        } else if let Some(target) = insn::jump_target(pc, insn) {
            let rel = map(target as usize) as i64 - new_pc - 1;
            if insn.op & 0xf0 == 0x80 || insn.op == insn::BPF_JMP32 | BPF_JA {
                insn.imm = rel as i32;
            } else {
                insn.off = rel as i16;
            }
        } else if insn.is_ld_imm64() && insn.src == insn::PSEUDO_FUNC {
            let target = pc as i64 + 1 + insn.imm as i64;
            insn.imm = (map(target as usize) as i64 - new_pc - 1) as i32;
        }
        if pc == main_end {
            out.push(Insn::new(BPF_ALU64 | BPF_RSH | BPF_K, 0, 0, 0, 32));
            out.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
        }
        out.push(insn);
    }
    if main_end == prog.insns.len() {
        out.push(Insn::new(BPF_ALU64 | BPF_RSH | BPF_K, 0, 0, 0, 32));
        out.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    }
    out
}

fn kernel_leg(case: &Case, prog: &PreparedProgram) -> Option<String> {
    let Expect::R0(want) = case.expect else {
        return None;
    };
    let packet = packet_in();
    let describe = |e: KernelError| match e {
        KernelError::Rejected { summary, log, .. } => {
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            format!("verifier rejected: {summary}\n      log tail: {:?}", tail)
        }
        other => other.to_string(),
    };
    let low = match kernel::test_run_insns(&prog.insns, ProgramType::Xdp, &packet, 1) {
        Ok(r) => r,
        Err(e) => return Some(describe(e)),
    };
    if u64::from(low.retval) != want & 0xffff_ffff {
        return Some(format!(
            "retval {:#x}, expected low half {:#x}",
            low.retval,
            want & 0xffff_ffff
        ));
    }
    let want_packet = case.packet_out.clone().unwrap_or_else(packet_in);
    if low.data != want_packet {
        return Some(format!(
            "packet after run {:02x?}, expected {want_packet:02x?}",
            low.data
        ));
    }
    let high_prog = high_half_variant(prog);
    match kernel::test_run_insns(&high_prog, ProgramType::Xdp, &packet, 1) {
        Ok(r) if u64::from(r.retval) == want >> 32 => None,
        Ok(r) => Some(format!(
            "high half {:#x}, expected {:#x}",
            r.retval,
            want >> 32
        )),
        Err(e) => Some(format!("high-half variant: {}", describe(e))),
    }
}

#[test]
fn conformance_table() {
    let cases = all_cases();
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
    }
    let mut mem = LowMem::new();
    let mut failures: Vec<String> = Vec::new();
    let (mut interp, mut jit_g, mut jit_t, mut kern) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    let kernel_skip = kernel::probe().err().map(|e| e.to_string());
    if let Some(reason) = &kernel_skip {
        eprintln!("skipping kernel leg: {reason}");
    }
    let mut jit_skip_reason: Option<String> = None;

    for case in &cases {
        let mut fail = |engine: &str, msg: String| {
            failures.push(format!("[{engine}] {}: {msg}", case.name));
        };
        let insns = match asm::assemble(&case.asm) {
            Ok(i) => i,
            Err(e) => {
                fail("asm", e.to_string());
                continue;
            }
        };
        let prog = match PreparedProgram::new(case.name.clone(), ProgramType::Xdp, insns) {
            Ok(p) => p,
            Err(e) => {
                fail("prepare", e.to_string());
                continue;
            }
        };

        // 1. interpreter
        let mut env = mem.fresh_env();
        let got = Interpreter::new(case.budget).run(&prog, &mut env, mem.ctx_addr(), 0);
        interp.run += 1;
        if let Some(msg) = judge(case, &got, &mem.packet()) {
            fail("interp", msg);
        }

        // 2. JIT, guarded and (for programs that do not fault) trusted
        if case.jit {
            if let Some(reason) = jit_unavailable(&prog) {
                jit_skip_reason.get_or_insert(reason);
                jit_g.skipped += 1;
                jit_t.skipped += 1;
            } else {
                for guarded in [true, false] {
                    let tally = if guarded { &mut jit_g } else { &mut jit_t };
                    if !guarded && matches!(case.expect, Expect::Fault(_)) {
                        continue;
                    }
                    let engine = if guarded {
                        "jit-guarded"
                    } else {
                        "jit-trusted"
                    };
                    let jit = match JitProgram::compile(&prog, &JitOptions { guarded }) {
                        Ok(j) => j,
                        Err(e) => {
                            fail(engine, format!("compile: {e}"));
                            continue;
                        }
                    };
                    let mut env = mem.fresh_env();
                    // SAFETY: guarded runs check every access; trusted runs are only done for
                    // rows that stay inside stack, context and packet (they do not fault in the
                    // checked interpreter and the kernel verifier accepts them).
                    let got = unsafe { jit.run(&mut env, mem.ctx_addr(), 0) };
                    tally.run += 1;
                    if let Some(msg) = judge(case, &got, &mem.packet()) {
                        fail(engine, msg);
                    }
                }
            }
        }

        // 3. kernel
        if case.kernel && kernel_skip.is_none() {
            kern.run += 1;
            if let Some(msg) = kernel_leg(case, &prog) {
                fail("kernel", msg);
            }
        } else {
            kern.skipped += 1;
        }
    }

    if let Some(reason) = jit_skip_reason {
        eprintln!("skipping JIT leg: {reason}");
    }
    eprintln!(
        "conformance: {} rows; interpreter ran {}; jit guarded ran {} (skipped {}); \
         jit trusted ran {} (skipped {}); kernel ran {} (skipped {})",
        cases.len(),
        interp.run,
        jit_g.run,
        jit_g.skipped,
        jit_t.run,
        jit_t.skipped,
        kern.run,
        kern.skipped
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every program of the table survives disassembly and reassembly unchanged.
#[test]
fn asm_roundtrip_table() {
    for case in all_cases() {
        let insns = asm::assemble(&case.asm).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let text = asm::disassemble(&insns);
        let again = asm::assemble(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", case.name));
        assert_eq!(again, insns, "{}:\n{text}", case.name);
    }
}

/// The interpreter reports the exact fault location, not only its kind.
#[test]
fn interpreter_fault_details() {
    let mut mem = LowMem::new();
    let run = |mem: &mut LowMem, text: &str, budget: u64| {
        let prog =
            PreparedProgram::new("t", ProgramType::Xdp, asm::assemble(text).unwrap()).unwrap();
        let mut env = mem.fresh_env();
        Interpreter::new(budget).run(&prog, &mut env, mem.ctx_addr(), 0)
    };
    assert_eq!(
        run(
            &mut mem,
            "lddw r2, 0xdead0000\nmov64 r0, 0\nldxw r0, [r2+4]\nexit",
            100
        ),
        Err(VmError::OutOfBounds {
            insn: 3,
            addr: 0xdead_0004,
            len: 4,
            access: Access::Read
        })
    );
    assert_eq!(
        run(&mut mem, "loop:\nja loop", 50),
        Err(VmError::BudgetExhausted { insns: 50 })
    );
    assert_eq!(
        run(&mut mem, "f:\ncall f\nexit", 100),
        Err(VmError::CallDepthExceeded { insn: 0, max: 8 })
    );
    // The budget counts instructions: a 3-instruction program runs with budget 3, not 2.
    assert_eq!(run(&mut mem, "mov64 r0, 1\nadd64 r0, 1\nexit", 3), Ok(2));
    assert_eq!(
        run(&mut mem, "mov64 r0, 1\nadd64 r0, 1\nexit", 2),
        Err(VmError::BudgetExhausted { insns: 2 })
    );
}

/// Rows marked `no_kernel` really are refused by the kernel verifier (the flag hides nothing).
#[test]
fn kernel_refuses_rows_marked_no_kernel() {
    if let Err(e) = kernel::probe() {
        eprintln!("skipping kernel leg: {e}");
        return;
    }
    let mut accepted = Vec::new();
    for case in all_cases().into_iter().filter(|c| !c.kernel) {
        let insns = asm::assemble(&case.asm).unwrap();
        match kernel::test_run_insns(&insns, ProgramType::Xdp, &packet_in(), 1) {
            Err(KernelError::Rejected { .. }) => {}
            other => accepted.push(format!("{}: {other:?}", case.name)),
        }
    }
    assert!(
        accepted.is_empty(),
        "kernel accepted:\n{}",
        accepted.join("\n")
    );
}
