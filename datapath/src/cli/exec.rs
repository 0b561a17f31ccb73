//! `userxdp exec`: run bare bytecode the way uBPF/rbpf test harnesses (and the bpf_conformance
//! plugin protocol) do.
//!
//! The program comes as base16 bytes (`b7 00 00 00 01 00 00 00 95 00 ...`) from standard input
//! or `--program`, or with `--elf` as an object file (raw or base16) whose first program runs.
//! The optional memory argument is copied into a buffer; the program starts with r1 pointing
//! to it and r2 holding its length (both 0 without memory) and r10 at the top of a 512-byte
//! stack. Success prints `0x<r0>`; any failure is one line on standard error naming the
//! instruction, and a non-zero exit.
//!
//! There is no kernel verifier here (no object to hand it), so the JIT runs `guarded` (every
//! access checked) or, asked for by name, `none`. The JIT has no instruction budget, so before
//! JIT code runs a program that can loop, or any program under `none`, the checked interpreter
//! runs it once on a copy of the memory: a run that would exhaust the budget or fault is
//! reported from that dry run instead of hanging or crashing the process.

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use userxdp_runtime::object;
use userxdp_runtime::object::spec::ProgramType;
use userxdp_runtime::vm::asm;
use userxdp_runtime::vm::error::VmError;
use userxdp_runtime::vm::insn::{self, Insn, BPF_CALL, BPF_JMP, CALL_HELPER};
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

/// Which engine runs the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecEngine {
    /// The checked interpreter.
    Interp,
    /// The Cranelift JIT.
    Jit,
}

/// What keeps JIT code from touching memory it should not (the interpreter is always checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecVerifier {
    /// Bounds checks on every memory access.
    Guarded,
    /// No checks in the JIT code (a checked interpreter dry run still goes first).
    None,
}

/// Arguments of `userxdp exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Memory for r1/r2, as base16 bytes (`"00 01 ff"` or `"0001ff"`); none when omitted.
    #[arg(value_name = "BASE16_MEMORY")]
    pub memory: Option<String>,
    /// Engine.
    #[arg(long, value_enum, default_value = "jit")]
    pub engine: ExecEngine,
    /// Safety policy for the JIT.
    #[arg(long, value_enum, default_value = "guarded")]
    pub verifier: ExecVerifier,
    /// Standard input (or --program) is an ELF object, raw or as base16; its first program runs.
    #[arg(long)]
    pub elf: bool,
    /// The program as base16 bytes, instead of reading it from standard input.
    #[arg(long, value_name = "BASE16_PROGRAM")]
    pub program: Option<String>,
    /// Print the disassembly, memory and engine to standard error before running, and
    /// `bpf_trace_printk` output after.
    #[arg(long)]
    pub debug: bool,
}

/// Runs the command: prints r0 on success, returns the error otherwise.
pub fn main(args: ExecArgs) -> Result<()> {
    let memory = match &args.memory {
        Some(m) => parse_base16(m).context("memory")?,
        None => Vec::new(),
    };
    let input = match &args.program {
        Some(p) => p.as_bytes().to_vec(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the program from standard input")?;
            buf
        }
    };
    let engine = match args.engine {
        ExecEngine::Interp => Engine::Interpreter,
        ExecEngine::Jit => Engine::Jit,
    };
    let safety = match args.verifier {
        ExecVerifier::Guarded => SafetyPolicy::Guarded,
        ExecVerifier::None => SafetyPolicy::None,
    };
    let opts = VmOptions {
        engine,
        safety,
        ..VmOptions::default()
    };
    let vm = if args.elf {
        load_elf(&input, opts)?
    } else {
        let text = std::str::from_utf8(&input)
            .map_err(|_| anyhow!("program: not base16 text (use --elf for an object file)"))?;
        let bytes = parse_base16(text).context("program")?;
        if bytes.is_empty() {
            bail!("program: empty (expected base16 instruction bytes)");
        }
        Vm::from_bytecode(&bytes, ProgramType::Xdp, opts).map_err(|e| anyhow!("{e}"))?
    };
    let insns = vm.program().insns.clone();
    if args.debug {
        print_debug(&insns, &memory, &args);
    }

    if engine == Engine::Jit && (safety == SafetyPolicy::None || can_loop(&insns)) {
        dry_run(&vm, &insns, &memory)?;
    }
    let mut mem = memory;
    let mut runner = vm.runner(0);
    let result = runner.run_raw(&mut mem);
    if args.debug {
        for line in runner.take_trace() {
            eprintln!("trace: {line}");
        }
    }
    let r0 = result.map_err(|e| describe_fault(&e, &insns))?;
    println!("{r0:#x}");
    Ok(())
}

/// Parses an object from raw ELF bytes or their base16 text.
fn load_elf(input: &[u8], opts: VmOptions) -> Result<Vm> {
    let bytes = if input.starts_with(b"\x7fELF") {
        input.to_vec()
    } else {
        let text = std::str::from_utf8(input)
            .map_err(|_| anyhow!("object: neither an ELF file nor base16 text"))?;
        parse_base16(text).context("object")?
    };
    let spec = object::parse(&bytes).context("object")?;
    if spec.programs.is_empty() {
        bail!("object: no programs (code in .text alone is not a program; give it a section)");
    }
    Vm::new(spec, Some(&bytes), None, opts).map_err(|e| anyhow!("{e}"))
}

/// Bytes of base16 text: pairs of hex digits, separated by whitespace or not, with an optional
/// `0x` before each group. Errors name the offending group.
pub fn parse_base16(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (i, word) in text.split_whitespace().enumerate() {
        let digits = word
            .strip_prefix("0x")
            .or_else(|| word.strip_prefix("0X"))
            .unwrap_or(word);
        if digits.is_empty() || !digits.len().is_multiple_of(2) {
            bail!("group {} ({word:?}) is not whole base16 bytes", i + 1);
        }
        for pair in digits.as_bytes().chunks(2) {
            let s = std::str::from_utf8(pair).unwrap_or("??");
            let b = u8::from_str_radix(s, 16)
                .map_err(|_| anyhow!("group {} ({word:?}) is not base16", i + 1))?;
            out.push(b);
        }
    }
    Ok(out)
}

/// Whether the program can run longer than its length: a backward jump or a callback helper.
fn can_loop(insns: &[Insn]) -> bool {
    !loop_sites(insns).is_empty()
}

/// Instructions that can repeat code: backward jumps (and calls) and `bpf_loop` calls.
fn loop_sites(insns: &[Insn]) -> Vec<usize> {
    const BPF_LOOP: i32 = 181;
    let mut sites = Vec::new();
    let mut pc = 0;
    while pc < insns.len() {
        let i = insns[pc];
        let backward = insn::jump_target(pc, i).is_some_and(|t| t <= pc as i64);
        let callback = i.op == BPF_JMP | BPF_CALL && i.src == CALL_HELPER && i.imm == BPF_LOOP;
        if backward || callback {
            sites.push(pc);
        }
        pc += if i.is_ld_imm64() { 2 } else { 1 };
    }
    sites
}

/// Runs the program once in the checked interpreter on a copy of the memory, so that a run
/// that would not end, or fault, in JIT code is reported instead.
fn dry_run(vm: &Vm, insns: &[Insn], memory: &[u8]) -> Result<()> {
    let opts = VmOptions {
        engine: Engine::Interpreter,
        ..vm.options().clone()
    };
    let checker = match vm.object_bytes() {
        Some(bytes) => Vm::new(vm.spec().clone(), Some(bytes), None, opts),
        None => Vm::from_insns(insns.to_vec(), ProgramType::Xdp, opts),
    }
    .map_err(|e| anyhow!("{e}"))?;
    let mut mem = memory.to_vec();
    checker
        .runner(0)
        .run_raw(&mut mem)
        .map(|_| ())
        .map_err(|e| describe_fault(&e, insns).context("checked dry run before the JIT"))
}

/// One line for a fault: the runtime's message plus the faulting instruction's text, or for
/// an exhausted budget the loops that kept it running.
fn describe_fault(e: &VmError, insns: &[Insn]) -> anyhow::Error {
    let at = match e {
        VmError::OutOfBounds { insn, .. }
        | VmError::UnknownHelper { insn, .. }
        | VmError::HelperFault { insn, .. }
        | VmError::CallDepthExceeded { insn, .. }
        | VmError::Unsupported { insn, .. } => Some(*insn),
        VmError::BudgetExhausted { .. } => None,
    };
    let msg = one_line(&e.to_string());
    match at {
        Some(pc) => match insns.get(pc) {
            Some(&i) => anyhow!("{msg} ({})", insn_text(insns, pc, i)),
            None => anyhow!("{msg}"),
        },
        None => {
            let sites: Vec<String> = loop_sites(insns)
                .into_iter()
                .map(|pc| pc.to_string())
                .collect();
            if sites.is_empty() {
                anyhow!("{msg}")
            } else {
                anyhow!("{msg} in the loop at insn {}", sites.join(", "))
            }
        }
    }
}

/// The disassembly of slot `pc`, with both slots of an ld_imm64.
fn insn_text(insns: &[Insn], pc: usize, i: Insn) -> String {
    let text = if i.is_ld_imm64() && pc + 1 < insns.len() {
        asm::disassemble(&insns[pc..pc + 2])
    } else {
        asm::disassemble_one(i)
    };
    text.trim().to_string()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn print_debug(insns: &[Insn], memory: &[u8], args: &ExecArgs) {
    eprintln!(
        "engine {:?}, verifier {:?}, {} insns, {} bytes of memory",
        args.engine,
        args.verifier,
        insns.len(),
        memory.len()
    );
    let text = asm::disassemble(insns);
    let mut pc = 0;
    for line in text.lines() {
        eprintln!("{pc:5}: {line}");
        pc += if insns.get(pc).is_some_and(|i| i.is_ld_imm64()) {
            2
        } else {
            1
        };
    }
    if !memory.is_empty() {
        let hex: Vec<String> = memory.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("memory: {}", hex.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base16_forms() {
        assert_eq!(parse_base16("b7 00 0x01\n").unwrap(), vec![0xb7, 0, 1]);
        assert_eq!(parse_base16("b700ff").unwrap(), vec![0xb7, 0, 0xff]);
        assert!(parse_base16("").unwrap().is_empty());
        let e = parse_base16("00 0g").unwrap_err().to_string();
        assert!(e.contains("group 2"), "{e}");
        assert!(parse_base16("abc").is_err());
    }
}
