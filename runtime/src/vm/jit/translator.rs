//! The translator: one eBPF function into one Cranelift function.
//!
//! Per-class translation lives in `translate_{alu,jmp,mem,call}.rs`; this file holds the state
//! they share, the per-function driver and small utilities (registers, cold exits).

use cranelift_codegen::ir::{
    self, types, AbiParam, Block, FuncRef, InstBuilder, MemFlags, SigRef, Signature, SourceLoc,
    Type, Value,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

use super::{cfg, JitError};
use crate::vm::env::{FAULT_FLAG_OFFSET, TAIL_CALL_PENDING_OFFSET};
use crate::vm::insn::{
    Insn, BPF_ALU, BPF_ALU64, BPF_JMP, BPF_JMP32, BPF_LD, BPF_LDX, BPF_ST, BPF_STX, FRAME_REG,
    NUM_REGS,
};
use crate::vm::program::PreparedProgram;

/// What every function of one compilation shares.
pub(super) struct Unit<'a> {
    /// The program being compiled.
    pub(super) prog: &'a PreparedProgram,
    /// Emit bounds checks.
    pub(super) guarded: bool,
    /// Native pointer type.
    pub(super) ptr: Type,
    /// Calling convention of generated functions and of the runtime's `extern "C"` functions.
    pub(super) call_conv: CallConv,
}

/// Signatures of indirect calls the generated code makes.
pub(super) struct Sigs {
    /// `HelperFn`: (i64 x5, env) -> i64.
    pub(super) helper: SigRef,
    /// `rt::check_access`: (env, addr, len, tag) -> i32.
    pub(super) check: SigRef,
    /// `rt::helper_exit` / `rt::depth_fault`: (env, insn).
    pub(super) fault: SigRef,
    /// `rt::tail_in_place`: (env, insn) -> i64.
    pub(super) tail: SigRef,
    /// `maps::hash_lookup_trusted`: (map, key, cpu) -> i64.
    pub(super) hash_lookup: SigRef,
}

/// Translation state of one function.
pub(super) struct Translator<'a> {
    /// The Cranelift function being built.
    pub(super) builder: FunctionBuilder<'a>,
    /// r0..r10.
    pub(super) regs: [Variable; NUM_REGS],
    /// The `env` argument.
    pub(super) env: Value,
    /// The frame pointer argument (r10 never changes, so this is r10 everywhere).
    pub(super) fp: Value,
    /// Compilation-wide data.
    pub(super) unit: &'a Unit<'a>,
    /// Callee references, by function index.
    pub(super) callees: &'a [FuncRef],
    /// Indirect-call signatures.
    pub(super) sigs: Sigs,
    /// Start of this function's instructions (0 for the main function).
    pub(super) start: usize,
    /// Block of every block-start instruction, indexed by `pc - start`.
    blocks: Vec<Option<Block>>,
    /// Shared cold block that returns 0 after a fault was recorded.
    pub(super) fault_return: Block,
}

/// Translates function `f` of `unit.prog` into `func` (whose signature is already set).
pub(super) fn translate_function(
    unit: &Unit<'_>,
    f: usize,
    callees: &[FuncRef],
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
) -> Result<(), JitError> {
    let prog = unit.prog;
    let range = prog.function_range(f);
    let starts = cfg::block_starts(prog, f)?;

    let mut builder = FunctionBuilder::new(func, fctx);
    let regs = std::array::from_fn(|_| builder.declare_var(types::I64));
    let mut blocks = vec![None; range.len()];
    for &s in &starts {
        blocks[s - range.start] = Some(builder.create_block());
    }
    let sigs = make_sigs(&mut builder, unit);

    // A separate entry block: the first eBPF block may be a loop header, and Cranelift's entry
    // block cannot be a branch target.
    let entry = builder.create_block();
    // The shared exit of faulting paths (filled below; `run` ignores its return value).
    let fault_return = builder.create_block();
    builder.set_cold_block(fault_return);
    builder.append_block_params_for_function_params(entry);
    builder.switch_to_block(entry);
    let params = builder.block_params(entry).to_vec();
    let (env, fp) = (params[5], params[6]);
    let mut t = Translator {
        builder,
        regs,
        env,
        fp,
        unit,
        callees,
        sigs,
        start: range.start,
        blocks,
        fault_return,
    };
    let zero = t.builder.ins().iconst(types::I64, 0);
    for r in 0..NUM_REGS {
        let v = match r {
            1..=5 => params[r - 1],
            10 => fp,
            // The verifier forbids reading them before writing; zero keeps guarded runs
            // deterministic.
            _ => zero,
        };
        t.builder.def_var(t.regs[r], v);
    }
    let first = t.block_at(range.start)?;
    t.builder.ins().jump(first, &[]);
    t.builder.seal_block(entry);

    t.builder.switch_to_block(fault_return);
    let zero = t.builder.ins().iconst(types::I64, 0);
    t.builder.ins().return_(&[zero]);

    let mut terminated = true;
    let mut pc = range.start;
    while pc < range.end {
        let insn = prog.insns[pc];
        if let Some(b) = t.blocks[pc - range.start] {
            if !terminated {
                t.builder.ins().jump(b, &[]);
            }
            t.builder.switch_to_block(b);
        } else if terminated {
            // Unreachable code that no jump targets (the CFG pass makes a block after every
            // terminator, so this only guards the invariant).
            let b = t.builder.create_block();
            t.builder.switch_to_block(b);
        }
        t.builder.set_srcloc(SourceLoc::new(pc as u32));
        let width = if insn.is_ld_imm64() { 2 } else { 1 };
        if pc + width > range.end {
            return Err(t.unsupported(pc, "an ld_imm64 split across functions"));
        }
        terminated = t.translate_insn(pc, insn)?;
        pc += width;
    }
    if !terminated {
        return Err(t.unsupported(range.end - 1, "control falling off the end of a function"));
    }
    t.builder.seal_all_blocks();
    t.builder.finalize();
    Ok(())
}

fn make_sigs(builder: &mut FunctionBuilder<'_>, unit: &Unit<'_>) -> Sigs {
    let i64p = AbiParam::new(types::I64);
    let ptr = AbiParam::new(unit.ptr);
    let mut helper = Signature::new(unit.call_conv);
    helper.params.extend([i64p; 5]);
    helper.params.push(ptr);
    helper.returns.push(i64p);
    let mut check = Signature::new(unit.call_conv);
    check.params.extend([ptr, i64p, i64p, i64p]);
    check.returns.push(AbiParam::new(types::I32));
    let mut fault = Signature::new(unit.call_conv);
    fault.params.extend([ptr, i64p]);
    let mut tail = fault.clone();
    tail.returns.push(i64p);
    let mut hash_lookup = Signature::new(unit.call_conv);
    hash_lookup
        .params
        .extend([ptr, i64p, AbiParam::new(types::I32)]);
    hash_lookup.returns.push(i64p);
    Sigs {
        hash_lookup: builder.import_signature(hash_lookup),
        tail: builder.import_signature(tail),
        helper: builder.import_signature(helper),
        check: builder.import_signature(check),
        fault: builder.import_signature(fault),
    }
}

impl Translator<'_> {
    /// Translates one instruction; returns whether it ended the current block.
    fn translate_insn(&mut self, pc: usize, insn: Insn) -> Result<bool, JitError> {
        match insn.class() {
            BPF_ALU | BPF_ALU64 => self.translate_alu(pc, insn).map(|()| false),
            BPF_JMP | BPF_JMP32 => self.translate_jmp(pc, insn),
            BPF_LDX => self.translate_load(pc, insn).map(|()| false),
            BPF_ST | BPF_STX => self.translate_store(pc, insn).map(|()| false),
            BPF_LD => self.translate_ld_imm64(pc, insn).map(|()| false),
            _ => Err(self.unsupported(pc, format!("opcode {:#04x}", insn.op))),
        }
    }

    /// The current value of register `r`.
    pub(super) fn reg(&mut self, r: u8) -> Value {
        if r == FRAME_REG {
            return self.fp;
        }
        self.builder.use_var(self.regs[r as usize])
    }

    /// Assigns register `r` (never r10: `insn::validate` rejects writes to it).
    pub(super) fn set_reg(&mut self, r: u8, v: Value) {
        self.builder.def_var(self.regs[r as usize], v);
    }

    /// The block that starts at instruction `pc` of this function.
    pub(super) fn block_at(&self, pc: usize) -> Result<Block, JitError> {
        pc.checked_sub(self.start)
            .and_then(|i| self.blocks.get(i).copied().flatten())
            .ok_or_else(|| self.unsupported(pc, "a jump to an instruction that is no block"))
    }

    /// An `Unsupported` error at `insn`.
    pub(super) fn unsupported(&self, insn: usize, what: impl Into<String>) -> JitError {
        JitError::Unsupported {
            program: self.unit.prog.name.clone(),
            insn,
            what: what.into(),
        }
    }

    /// Flags of eBPF loads and stores: little-endian host order, unaligned allowed, never
    /// trapping (proven by the verifier or checked in guarded mode).
    pub(super) fn mem_flags() -> MemFlags {
        MemFlags::new().with_notrap()
    }

    /// Branches to `cold` (a block that returns) if `fail` is non-zero, and continues in a
    /// fresh block otherwise.
    pub(super) fn branch_to_cold(&mut self, fail: Value, cold: Block) {
        let cont = self.builder.create_block();
        self.builder.ins().brif(fail, cold, &[], cont, &[]);
        self.builder.seal_block(cont);
        self.builder.switch_to_block(cont);
    }

    /// Like [`Translator::branch_to_cold`] with a new cold block that `fill` writes and
    /// terminates (it must return).
    pub(super) fn branch_cold_with(&mut self, fail: Value, fill: impl FnOnce(&mut Self)) {
        let cold = self.builder.create_block();
        self.builder.set_cold_block(cold);
        let cont = self.builder.create_block();
        self.builder.ins().brif(fail, cold, &[], cont, &[]);
        self.builder.seal_block(cold);
        self.builder.seal_block(cont);
        self.builder.switch_to_block(cold);
        fill(self);
        self.builder.switch_to_block(cont);
    }

    /// Non-zero when a fault or a pending tail call requires unwinding (read from `env`).
    pub(super) fn unwind_pending(&mut self) -> Value {
        let flags = MemFlags::trusted();
        if TAIL_CALL_PENDING_OFFSET == FAULT_FLAG_OFFSET + 4 && FAULT_FLAG_OFFSET % 8 == 0 {
            // Both u32 flags in one load.
            self.builder
                .ins()
                .load(types::I64, flags, self.env, FAULT_FLAG_OFFSET)
        } else {
            let a = self
                .builder
                .ins()
                .load(types::I32, flags, self.env, FAULT_FLAG_OFFSET);
            let b = self
                .builder
                .ins()
                .load(types::I32, flags, self.env, TAIL_CALL_PENDING_OFFSET);
            self.builder.ins().bor(a, b)
        }
    }

    /// Calls a runtime `extern "C"` function at `addr` with signature `sig`.
    pub(super) fn call_rt(&mut self, sig: SigRef, addr: usize, args: &[Value]) -> ir::Inst {
        let callee = self.builder.ins().iconst(self.unit.ptr, addr as i64);
        self.builder.ins().call_indirect(sig, callee, args)
    }
}
