//! `userxdp exec` end to end: bare programs piped through the built binary in both engines
//! (and both JIT policies), compared with expected r0; error exits with one line naming the
//! instruction; and, as root, the same bytes through the kernel with `BPF_PROG_TEST_RUN`.
//!
//! Kernel leg: an XDP program's r1 is the `xdp_md` context, not the memory, so every program
//! is wrapped: a prologue loads `data`/`data_end`, proves `data + len <= data_end` to the
//! verifier, sets r1 = data, r2 = len, r3 = 0, and calls the original program as a
//! bpf-to-bpf subprogram (so its exits return to the wrapper). The wrapper returns r0, or in
//! a second load r0 >> 32, so both halves of the 64-bit r0 are compared although the kernel
//! reports 32 bits. The packet is the memory, padded with zeros to the 14 bytes an XDP test
//! run needs (r2 stays the unpadded length).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use userxdp_runtime::kernel;
use userxdp_runtime::object::spec::ProgramType;
use userxdp_runtime::vm::asm::assemble;
use userxdp_runtime::vm::insn::{
    Insn, BPF_ADD, BPF_ALU64, BPF_CALL, BPF_EXIT, BPF_JLE, BPF_JMP, BPF_K, BPF_LDX, BPF_MEM,
    BPF_MOV, BPF_RSH, BPF_W, BPF_X, CALL_LOCAL,
};

/// Runs `userxdp exec ARGS` with `stdin`.
fn exec(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_userxdp"))
        .arg("exec")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn userxdp");
    // A closed pipe (the program exited early) is fine: the exit status tells.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait userxdp")
}

fn base16(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn code(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

fn asm(text: &str) -> Vec<Insn> {
    assemble(text).unwrap_or_else(|e| panic!("assemble {text:?}: {e}"))
}

/// Engine arguments every case runs under.
const ENGINES: &[&[&str]] = &[
    &["--engine", "interp"],
    &["--engine", "jit", "--verifier", "guarded"],
    &["--engine", "jit", "--verifier", "none"],
];

struct Case {
    name: &'static str,
    asm: &'static str,
    memory: Option<&'static [u8]>,
    r0: u64,
    kernel: bool,
}

fn ok(name: &'static str, asm: &'static str, memory: Option<&'static [u8]>, r0: u64) -> Case {
    Case {
        name,
        asm,
        memory,
        r0,
        kernel: true,
    }
}

fn cases() -> Vec<Case> {
    vec![
        ok("mov_exit", "mov r0, 1\nexit", None, 1),
        ok(
            "no_memory_means_r1_r2_zero",
            "mov r0, r1\nor r0, r2\nadd r0, 7\nexit",
            None,
            7,
        ),
        ok(
            "r2_is_length",
            "mov r0, r2\nexit",
            Some(&[9, 8, 7, 6, 5]),
            5,
        ),
        ok(
            "load_dw_from_memory",
            "ldxdw r0, [r1+0]\nexit",
            Some(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]),
            0x8877_6655_4433_2211,
        ),
        ok(
            "store_then_load_memory",
            "stw [r1+4], 0x01020304\nldxdw r0, [r1+0]\nexit",
            Some(&[0xaa; 8]),
            0x0102_0304_aaaa_aaaa,
        ),
        ok(
            "sum_memory_bytes_loop",
            "mov r0, 0\nmov r3, 0\nloop:\njge r3, r2, done\nmov r4, r1\nadd r4, r3\n\
             ldxb r5, [r4+0]\nadd r0, r5\nadd r3, 1\nja loop\ndone:\nexit",
            Some(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]),
            136,
        ),
        ok(
            "stack",
            "stdw [r10-8], 42\nldxdw r0, [r10-8]\nexit",
            None,
            42,
        ),
        ok(
            "local_call",
            "mov r1, 5\ncall sq\nadd r0, 1\nexit\nsq:\nmov r0, r1\nmul r0, r0\nexit",
            None,
            26,
        ),
        ok(
            "bounded_loop_sum",
            "mov r0, 0\nmov r1, 1\nl:\nadd r0, r1\nadd r1, 1\njle r1, 100, l\nexit",
            None,
            5050,
        ),
        ok(
            "lddw",
            "lddw r0, 0x1122334455667788\nexit",
            None,
            0x1122_3344_5566_7788,
        ),
        ok(
            "div_by_zero_is_zero",
            "mov r0, 10\nmov r1, 0\ndiv r0, r1\nexit",
            None,
            0,
        ),
        ok(
            "mod_by_zero_keeps",
            "mov r0, 10\nmov r1, 0\nmod r0, r1\nexit",
            None,
            10,
        ),
        ok(
            "sdiv",
            "mov r0, -10\nsdiv r0, 3\nexit",
            None,
            (-3i64) as u64,
        ),
        ok(
            "alu32_zero_extends",
            "lddw r0, 0xffffffffffffffff\nadd32 r0, 1\nexit",
            None,
            0,
        ),
        ok(
            "atomic_fetch_add_on_stack",
            "stdw [r10-8], 1\nmov r2, 5\natomic_fetch_add64 [r10-8], r2\nldxdw r0, [r10-8]\n\
             lsh r0, 8\nor r0, r2\nexit",
            None,
            0x601,
        ),
        Case {
            // The kernel refuses atomics on packet memory ("BPF_ATOMIC stores into R1 pkt").
            name: "atomic_fetch_add_on_memory",
            asm: "mov r2, 5\natomic_fetch_add64 [r1+0], r2\nldxdw r0, [r1+0]\nlsh r0, 8\n\
                  or r0, r2\nexit",
            memory: Some(&[1, 0, 0, 0, 0, 0, 0, 0]),
            r0: 0x601,
            kernel: false,
        },
        Case {
            // A helper the runtime knows; the CPU differs between kernel and us.
            name: "helper_smp_processor_id",
            asm: "call 8\nexit",
            memory: None,
            r0: 0,
            kernel: false,
        },
    ]
}

fn r0_of(o: &Output) -> Result<u64, String> {
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        return Err(format!("exit {:?}: {err}", o.status.code()));
    }
    let text = out.trim();
    let hex = text
        .strip_prefix("0x")
        .ok_or_else(|| format!("output {text:?} does not start with 0x"))?;
    u64::from_str_radix(hex, 16).map_err(|e| format!("output {text:?}: {e}"))
}

#[test]
fn programs_give_expected_r0_in_every_engine() {
    let mut failures = Vec::new();
    for c in cases() {
        let program = base16(&code(&asm(c.asm)));
        for engine in ENGINES {
            let mut args: Vec<&str> = engine.to_vec();
            let mem = c.memory.map(base16);
            if let Some(m) = &mem {
                args.insert(0, m);
            }
            // The program from stdin, and the same through --program.
            let from_stdin = r0_of(&exec(&args, program.as_bytes()));
            let mut with_flag = args.clone();
            with_flag.extend(["--program", &program]);
            let from_flag = r0_of(&exec(&with_flag, b""));
            for (how, got) in [("stdin", from_stdin), ("--program", from_flag)] {
                match got {
                    Ok(r0) if r0 == c.r0 => {}
                    other => failures.push(format!(
                        "{} {engine:?} ({how}): {other:?}, expected {:#x}",
                        c.name, c.r0
                    )),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn issue_example_and_input_forms() {
    let o = exec(&[], b"b7 00 00 00 01 00 00 00 95 00 00 00 00 00 00 00\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "0x1\n");
    assert!(o.status.success());
    // Unseparated bytes, no trailing newline, memory unseparated too.
    let o = exec(
        &["0a0b", "--engine", "interp"],
        b"bf200000000000009500000000000000",
    );
    assert_eq!(r0_of(&o), Ok(2));
    // An empty memory argument is no memory (r1 = 0).
    let o = exec(
        &["", "--engine", "interp"],
        b"bf10000000000000 9500000000000000",
    );
    assert_eq!(r0_of(&o), Ok(0));
}

#[test]
fn elf_input_runs_the_first_program() {
    let path = userxdp_programs::path("xdp_pass").expect("xdp_pass built");
    let bytes = std::fs::read(path).unwrap();
    for engine in ENGINES {
        let mut args = vec!["--elf"];
        args.extend_from_slice(engine);
        // Raw ELF bytes on stdin ...
        assert_eq!(r0_of(&exec(&args, &bytes)), Ok(2), "{engine:?}");
        // ... or their base16 text.
        assert_eq!(
            r0_of(&exec(&args, base16(&bytes).as_bytes())),
            Ok(2),
            "{engine:?}"
        );
    }
    let o = exec(&["--elf"], b"\x7fELF but not really");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("userxdp: exec: object"), "{err}");
}

/// Failing runs: (name, program bytes or asm, memory, text the error line must contain).
#[test]
fn failures_are_one_line_naming_the_instruction() {
    let asm_case = |text: &str| base16(&code(&asm(text)));
    let cases: Vec<(&str, String, Option<&str>, Vec<&str>)> = vec![
        (
            "oob_read_past_memory",
            asm_case("mov r0, 0\nldxw r0, [r1+8]\nexit"),
            Some("00 01 02 03"),
            vec!["insn 1", "out-of-bounds read of 4 bytes", "ldxw r0, [r1+8]"],
        ),
        (
            "oob_write_past_memory",
            asm_case("stdw [r1+0], 1\nmov r0, 0\nexit"),
            Some("00 01 02 03"),
            vec!["insn 0", "out-of-bounds write"],
        ),
        (
            "null_memory",
            asm_case("ldxb r0, [r1+0]\nexit"),
            None,
            vec!["insn 0", "out-of-bounds read"],
        ),
        (
            "stack_above_frame",
            asm_case("ldxdw r0, [r10+8]\nexit"),
            None,
            vec!["insn 0", "out-of-bounds"],
        ),
        (
            "unknown_helper",
            asm_case("call 9999\nexit"),
            None,
            vec!["insn 0", "unknown helper 9999"],
        ),
        (
            "unknown_opcode",
            "07 00 00 00 01 00 00 00 ff 00 00 00 00 00 00 00 95 00 00 00 00 00 00 00".into(),
            None,
            vec!["insn 1", "unknown opcode 0xff"],
        ),
        (
            "jump_out_of_program",
            asm_case("ja +5\nexit"),
            None,
            vec!["insn 0", "jump target"],
        ),
        (
            "falls_off_end",
            asm_case("mov r0, 1"),
            None,
            vec!["falls off its end"],
        ),
        (
            "bad_length",
            "95 00 00".into(),
            None,
            vec!["not a multiple of 8"],
        ),
        (
            "not_base16",
            "95 00 zz".into(),
            None,
            vec!["program", "group 3"],
        ),
        ("empty_program", "".into(), None, vec!["program: empty"]),
        (
            "bad_memory",
            asm_case("mov r0, 0\nexit"),
            Some("0q"),
            vec!["memory", "group 1"],
        ),
        (
            "infinite_loop",
            asm_case("mov r0, 0\nl:\nadd r0, 1\nja l"),
            None,
            vec!["budget", "exhausted", "insn 2"],
        ),
        (
            "recursion_too_deep",
            asm_case("f:\ncall f\nexit"),
            None,
            vec!["insn 0", "call depth"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, program, memory, needles) in &cases {
        for engine in ENGINES {
            let mut args: Vec<&str> = engine.to_vec();
            if let Some(m) = memory {
                args.insert(0, m);
            }
            let o = exec(&args, program.as_bytes());
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            let problems: Vec<String> = [
                (o.status.success()).then(|| "exit status 0".to_string()),
                o.status
                    .code()
                    .is_none()
                    .then(|| "killed by a signal".to_string()),
                (!o.stdout.is_empty())
                    .then(|| format!("stdout {:?}", String::from_utf8_lossy(&o.stdout))),
                (err.lines().count() != 1).then(|| "not exactly one line".to_string()),
                (!err.starts_with("userxdp: exec: ")).then(|| "no prefix".to_string()),
                err.contains("panicked").then(|| "panicked".to_string()),
            ]
            .into_iter()
            .flatten()
            .chain(
                needles
                    .iter()
                    .filter(|n| !err.contains(*n))
                    .map(|n| format!("missing {n:?}")),
            )
            .collect();
            if !problems.is_empty() {
                failures.push(format!("{name} {engine:?}: {problems:?}: {err:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn debug_prints_disassembly_to_stderr() {
    let o = exec(
        &["01 02", "--debug", "--engine", "interp"],
        b"bf 20 00 00 00 00 00 00 95 00 00 00 00 00 00 00",
    );
    assert_eq!(r0_of(&o), Ok(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("0: mov64 r0, r2"), "{err}");
    assert!(err.contains("memory: 01 02"), "{err}");
}

/// The wrapper described in the module doc; `high` returns r0 >> 32 instead of r0.
fn kernel_wrapper(program: &[Insn], mem_len: usize, high: bool) -> Vec<Insn> {
    let len = mem_len as i32;
    let mut w = if mem_len == 0 {
        vec![
            Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 1, 0, 0, 0),
            Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 2, 0, 0, 0),
        ]
    } else {
        vec![
            // r2 = ctx->data_end; r1 = ctx->data
            Insn::new(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 4, 0),
            Insn::new(BPF_LDX | BPF_MEM | BPF_W, 1, 1, 0, 0),
            // if (r1 + len <= data_end) skip the bail-out
            Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 3, 1, 0, 0),
            Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 3, 0, 0, len),
            Insn::new(BPF_JMP | BPF_JLE | BPF_X, 3, 2, 2, 0),
            Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0x7bad),
            Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
            Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 2, 0, 0, len),
        ]
    };
    w.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, 0));
    // call the program, which starts after the (one or two) instructions that follow
    let tail = if high { 2 } else { 1 };
    w.push(Insn::new(BPF_JMP | BPF_CALL, 0, CALL_LOCAL, 0, tail));
    if high {
        w.push(Insn::new(BPF_ALU64 | BPF_RSH | BPF_K, 0, 0, 0, 32));
    }
    w.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    w.extend_from_slice(program);
    w
}

#[test]
fn kernel_agrees_where_it_accepts_the_program() {
    if let Err(e) = kernel::probe() {
        eprintln!("skipping kernel leg: {e}");
        return;
    }
    let mut failures = Vec::new();
    let mut compared = 0;
    for c in cases().into_iter().filter(|c| c.kernel) {
        let program = asm(c.asm);
        let mem = c.memory.unwrap_or(&[]);
        let mut packet = mem.to_vec();
        packet.resize(packet.len().max(14), 0);
        let mut halves = [0u32; 2];
        let mut refused = None;
        for (i, high) in [false, true].into_iter().enumerate() {
            let wrapped = kernel_wrapper(&program, mem.len(), high);
            match kernel::test_run_insns(&wrapped, ProgramType::Xdp, &packet, 1) {
                Ok(r) => halves[i] = r.retval,
                Err(e) => refused = Some(e.to_string()),
            }
        }
        if let Some(e) = refused {
            failures.push(format!("{}: the kernel refused it: {e}", c.name));
            continue;
        }
        compared += 1;
        let kernel_r0 = (halves[0] as u64) | ((halves[1] as u64) << 32);
        // Our answer, from the binary, on the same bytes.
        let hex = base16(&code(&program));
        let mut args = vec!["--engine", "interp"];
        let mem_hex = c.memory.map(base16);
        if let Some(m) = &mem_hex {
            args.insert(0, m);
        }
        let ours = r0_of(&exec(&args, hex.as_bytes()));
        if ours != Ok(kernel_r0) || kernel_r0 != c.r0 {
            failures.push(format!(
                "{}: kernel {kernel_r0:#x}, userxdp {ours:?}, table {:#x}",
                c.name, c.r0
            ));
        }
    }
    eprintln!("kernel leg compared {compared} programs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
