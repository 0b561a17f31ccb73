//! CALL: helpers (indirect call through the helper table's function pointer) and bpf-to-bpf
//! calls (direct call of the callee's native function, one frame lower).
//!
//! After either kind of call the code checks `env.fault_flag` / `env.tail_call_pending` and
//! returns at once when one is set (see the module doc of `jit`).
//!
//! Hot helpers that cannot fault are inlined, as the kernel's JITs do: `get_smp_processor_id`
//! is a load of `env.cpu`, `ktime_get_ns` a direct `clock_gettime(CLOCK_MONOTONIC)` call, and
//! array lookups index the array in place and hash lookups call the table directly (trusted
//! code only).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, Block, InstBuilder, MemFlags, Signature, StackSlotData, StackSlotKind, Value,
};

use super::rt;
use super::translator::Translator;
use super::JitError;
use std::mem::offset_of;

use crate::helpers;
use crate::maps::MapHandle;
use crate::vm::insn::{Insn, CALL_HELPER, CALL_LOCAL, STACK_SIZE};

/// `bpf_map_lookup_elem`: inlined for ARRAY and PERCPU_ARRAY maps, a direct table call for
/// the hash family, in trusted code.
const MAP_LOOKUP_ELEM: i32 = 1;
/// `bpf_ktime_get_ns`, inlined as a direct `clock_gettime` call.
const KTIME_GET_NS: i32 = 5;
/// `bpf_get_smp_processor_id`, inlined as a load of `env.cpu`.
const GET_SMP_PROCESSOR_ID: i32 = 8;
/// `bpf_tail_call`.
const TAIL_CALL: i32 = 12;
/// Offset of `MapHandle::array_base` (null unless the map is an ARRAY).
const ARRAY_BASE_OFFSET: i32 = offset_of!(MapHandle, array_base) as i32;
/// Offset of `MapHandle::max_entries`.
const MAX_ENTRIES_OFFSET: i32 = offset_of!(MapHandle, max_entries) as i32;
/// Offset of `MapHandle::value_stride`.
const VALUE_STRIDE_OFFSET: i32 = offset_of!(MapHandle, value_stride) as i32;
/// Offset of `MapHandle::percpu_base` (null unless the map is a PERCPU_ARRAY).
const PERCPU_BASE_OFFSET: i32 = offset_of!(MapHandle, percpu_base) as i32;
/// Offset of `MapHandle::hash` (null unless the map is of the hash family).
const HASH_OFFSET: i32 = offset_of!(MapHandle, hash) as i32;
/// Offset of `MapHandle::ncpus`.
const NCPUS_OFFSET: i32 = offset_of!(MapHandle, ncpus) as i32;
/// Offset of `RunEnv::cpu`.
const ENV_CPU_OFFSET: i32 = offset_of!(crate::vm::env::RunEnv, cpu) as i32;

/// Helpers that may call back into the program (`for_each_map_elem`, `timer_set_callback`,
/// `find_vma`, `loop`, `user_ringbuf_drain`): the caller's frame is published before them so
/// the callback gets the frame below it.
pub(super) const CALLBACK_HELPERS: [i32; 5] = [164, 170, 180, 181, 209];

impl Translator<'_> {
    /// Translates a call instruction.
    pub(super) fn translate_call(&mut self, pc: usize, insn: Insn) -> Result<(), JitError> {
        match insn.src {
            CALL_HELPER => self.call_helper(pc, insn.imm),
            CALL_LOCAL => self.call_local(pc, insn.imm),
            _ => Err(self.unsupported(pc, "a kfunc call")),
        }
    }

    fn args(&mut self) -> Vec<cranelift_codegen::ir::Value> {
        let mut args: Vec<_> = (1..=5).map(|r| self.reg(r)).collect();
        args.push(self.env);
        args
    }

    fn call_helper(&mut self, pc: usize, id: i32) -> Result<(), JitError> {
        let helper =
            helpers::get(id).ok_or_else(|| self.unsupported(pc, format!("unknown helper {id}")))?;
        match id {
            MAP_LOOKUP_ELEM if !self.unit.guarded => {
                self.inline_map_lookup(pc, id, helper.func as usize)
            }
            GET_SMP_PROCESSOR_ID => self.inline_smp_processor_id(),
            KTIME_GET_NS => self.inline_ktime_get_ns(),
            _ => self.emit_helper_call(pc, id, helper.func as usize),
        }
        Ok(())
    }

    /// `u32 bpf_get_smp_processor_id(void)`: the run's CPU (worker index), zero-extended,
    /// exactly what `misc::get_smp_processor_id` returns.
    fn inline_smp_processor_id(&mut self) {
        let cpu = self
            .builder
            .ins()
            .uload32(MemFlags::trusted(), self.env, ENV_CPU_OFFSET);
        self.set_reg(0, cpu);
    }

    /// `u64 bpf_ktime_get_ns(void)`: CLOCK_MONOTONIC in nanoseconds, as the kernel's
    /// `ktime_get_mono_fast_ns`, by a direct `clock_gettime` call into a stack slot (vDSO: no
    /// system call). The timespec fields are `i64` on x86-64 Linux.
    fn inline_ktime_get_ns(&mut self) {
        let slot = self.builder.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            std::mem::size_of::<libc::timespec>() as u32,
            3,
        ));
        let ts = self.builder.ins().stack_addr(self.unit.ptr, slot, 0);
        let mut sig = Signature::new(self.unit.call_conv);
        sig.params.push(AbiParam::new(types::I32));
        sig.params.push(AbiParam::new(self.unit.ptr));
        sig.returns.push(AbiParam::new(types::I32));
        let sig = self.builder.import_signature(sig);
        let clock = self
            .builder
            .ins()
            .iconst(types::I32, i64::from(libc::CLOCK_MONOTONIC));
        // clock_gettime cannot fail for CLOCK_MONOTONIC with a valid pointer.
        self.call_rt(sig, libc::clock_gettime as *const () as usize, &[clock, ts]);
        let sec = self.builder.ins().stack_load(
            types::I64,
            slot,
            offset_of!(libc::timespec, tv_sec) as i32,
        );
        let nsec = self.builder.ins().stack_load(
            types::I64,
            slot,
            offset_of!(libc::timespec, tv_nsec) as i32,
        );
        let ns = self.builder.ins().imul_imm(sec, 1_000_000_000);
        let ns = self.builder.ins().iadd(ns, nsec);
        self.set_reg(0, ns);
    }

    /// `bpf_map_lookup_elem` on an ARRAY or PERCPU_ARRAY map without a call, as the kernel's
    /// `array_map_gen_lookup`: `key < max_entries ? array_base + key * stride : NULL`, read
    /// from the [`MapHandle`] header (per-CPU: row `key * ncpus + env.cpu`). Hash maps take a
    /// direct call of their lookup; other maps (all three fields null) the helper call.
    ///
    /// Trusted code only: r1 must be a live `MapHandle` and r2 a readable key, which the
    /// verifier proves. In checked environments array values are already fixed regions, so the
    /// helper's region bookkeeping is not needed either.
    fn inline_map_lookup(&mut self, pc: usize, id: i32, func: usize) {
        let map = self.reg(1);
        let join = self.builder.create_block();

        let (base, not_array) = self.when_set(map, ARRAY_BASE_OFFSET);
        self.array_element(map, base, false);
        self.builder.ins().jump(join, &[]);

        // PERCPU_ARRAY, as `percpu_array_map_gen_lookup`: element `key` of this CPU.
        self.builder.switch_to_block(not_array);
        let (percpu_base, not_percpu) = self.when_set(map, PERCPU_BASE_OFFSET);
        self.array_element(map, percpu_base, true);
        self.builder.ins().jump(join, &[]);

        // The hash family, as `htab_map_gen_lookup`: a direct call of the table's lookup,
        // which needs no checks and cannot fault, so no unwind check follows it either.
        self.builder.switch_to_block(not_percpu);
        let (hash, other) = self.when_set(map, HASH_OFFSET);
        let key_ptr = self.reg(2);
        let cpu =
            self.builder
                .ins()
                .load(types::I32, MemFlags::trusted(), self.env, ENV_CPU_OFFSET);
        let lookup = crate::maps::hash_lookup_trusted as *const () as usize;
        let call = self.call_rt(self.sigs.hash_lookup, lookup, &[hash, key_ptr, cpu]);
        let r0 = self.builder.inst_results(call)[0];
        self.set_reg(0, r0);
        self.builder.ins().jump(join, &[]);

        self.builder.switch_to_block(other);
        self.emit_helper_call(pc, id, func);
        self.builder.ins().jump(join, &[]);
        self.builder.seal_block(join);
        self.builder.switch_to_block(join);
    }

    /// Loads the pointer field at `offset` of the [`MapHandle`] `map` and branches on it: what
    /// is emitted next runs when it is set. Returns the field and the block where it is null.
    fn when_set(&mut self, map: Value, offset: i32) -> (Value, Block) {
        let flags = MemFlags::trusted().with_readonly();
        let field = self.builder.ins().load(self.unit.ptr, flags, map, offset);
        let set = self.builder.create_block();
        let null = self.builder.create_block();
        self.builder.ins().brif(field, set, &[], null, &[]);
        self.builder.seal_block(set);
        self.builder.seal_block(null);
        self.builder.switch_to_block(set);
        (field, null)
    }

    /// r0 = the address of element `*r2` of the array at `base` in `map` (of this CPU's row
    /// when `percpu`; the runner keeps env.cpu below ncpus), or NULL past `max_entries`.
    fn array_element(&mut self, map: Value, base: Value, percpu: bool) {
        let flags = MemFlags::trusted().with_readonly();
        let key_ptr = self.reg(2);
        let key = self.builder.ins().uload32(Self::mem_flags(), key_ptr, 0);
        let max = self.builder.ins().uload32(flags, map, MAX_ENTRIES_OFFSET);
        let stride = self
            .builder
            .ins()
            .load(types::I64, flags, map, VALUE_STRIDE_OFFSET);
        let slot = if percpu {
            let ncpus = self.builder.ins().uload32(flags, map, NCPUS_OFFSET);
            let cpu = self
                .builder
                .ins()
                .uload32(MemFlags::trusted(), self.env, ENV_CPU_OFFSET);
            let row = self.builder.ins().imul(key, ncpus);
            self.builder.ins().iadd(row, cpu)
        } else {
            key
        };
        let off = self.builder.ins().imul(slot, stride);
        let addr = self.builder.ins().iadd(base, off);
        let inside = self.builder.ins().icmp(IntCC::UnsignedLessThan, key, max);
        let null = self.builder.ins().iconst(types::I64, 0);
        let r0 = self.builder.ins().select(inside, addr, null);
        self.set_reg(0, r0);
    }

    /// The call of helper `id` at address `func`, result into r0, then the unwind check.
    fn emit_helper_call(&mut self, pc: usize, id: i32, func: usize) {
        if CALLBACK_HELPERS.contains(&id) {
            let flags = MemFlags::trusted();
            let state =
                self.builder
                    .ins()
                    .load(self.unit.ptr, flags, self.env, rt::CALLBACK_DATA_OFFSET);
            self.builder
                .ins()
                .store(flags, self.fp, state, rt::CB_SP_OFFSET);
            let insn = self.builder.ins().iconst(types::I64, pc as i64);
            self.builder
                .ins()
                .store(flags, insn, state, rt::CB_INSN_OFFSET);
        }
        let args = self.args();
        let call = self.call_rt(self.sigs.helper, func, &args);
        let r0 = self.builder.inst_results(call)[0];
        self.set_reg(0, r0);

        let pending = self.unwind_pending();
        let (env, fault_sig, tail_sig) = (self.env, self.sigs.fault, self.sigs.tail);
        // A tail call from a subprogram (not the main function) runs the target in place of
        // this function and returns its r0 to our caller, as the kernel does; anywhere else
        // the run unwinds to the dispatcher.
        let in_place = id == TAIL_CALL && self.start != 0;
        self.branch_cold_with(pending, |t| {
            let insn = t.builder.ins().iconst(types::I64, pc as i64);
            if in_place {
                let call = t.call_rt(
                    tail_sig,
                    rt::tail_in_place as *const () as usize,
                    &[env, insn],
                );
                let r0 = t.builder.inst_results(call)[0];
                t.builder.ins().return_(&[r0]);
            } else {
                t.call_rt(
                    fault_sig,
                    rt::helper_exit as *const () as usize,
                    &[env, insn],
                );
                let zero = t.builder.ins().iconst(types::I64, 0);
                t.builder.ins().return_(&[zero]);
            }
        });
    }

    fn call_local(&mut self, pc: usize, imm: i32) -> Result<(), JitError> {
        let entry = pc as i64 + 1 + i64::from(imm);
        let callee = usize::try_from(entry)
            .ok()
            .and_then(|e| self.unit.prog.functions.binary_search(&e).ok())
            .ok_or_else(|| self.unsupported(pc, format!("a call to {entry}, not a function")))?;
        let frame = STACK_SIZE as i64;
        let callee_fp = self.builder.ins().iadd_imm(self.fp, -frame);
        if self.unit.guarded {
            // The callee's frame [fp - 1024, fp - 512) must lie inside the stack buffer.
            let flags = MemFlags::trusted();
            let state =
                self.builder
                    .ins()
                    .load(self.unit.ptr, flags, self.env, rt::CALLBACK_DATA_OFFSET);
            let lo = self
                .builder
                .ins()
                .load(types::I64, flags, state, rt::STACK_LO_OFFSET);
            let bottom = self.builder.ins().iadd_imm(callee_fp, -frame);
            let too_deep = self.builder.ins().icmp(IntCC::UnsignedLessThan, bottom, lo);
            let (env, fault_sig) = (self.env, self.sigs.fault);
            self.branch_cold_with(too_deep, |t| {
                let insn = t.builder.ins().iconst(types::I64, pc as i64);
                t.call_rt(
                    fault_sig,
                    rt::depth_fault as *const () as usize,
                    &[env, insn],
                );
                let zero = t.builder.ins().iconst(types::I64, 0);
                t.builder.ins().return_(&[zero]);
            });
        }
        let mut args = self.args();
        args.push(callee_fp);
        let call = self.builder.ins().call(self.callees[callee], &args);
        let r0 = self.builder.inst_results(call)[0];
        self.set_reg(0, r0);

        // The callee already attributed any fault; just keep unwinding.
        let pending = self.unwind_pending();
        self.branch_cold_with(pending, |t| {
            t.builder.ins().return_(&[r0]);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::object::spec::ProgramType;
    use crate::vm::asm::assemble;
    use crate::vm::env::RunEnv;
    use crate::vm::jit::{JitOptions, JitProgram};
    use crate::vm::program::PreparedProgram;

    /// Runs `src` JIT-compiled (trusted and guarded) on CPU `cpu`.
    fn run(src: &str, cpu: u32) -> Vec<u64> {
        let prog = PreparedProgram::new("t", ProgramType::Xdp, assemble(src).expect("assembles"))
            .expect("valid");
        [false, true]
            .into_iter()
            .map(|guarded| {
                let jit = JitProgram::compile(&prog, &JitOptions { guarded }).expect("compiles");
                let mut env = RunEnv {
                    cpu,
                    checked: guarded,
                    ..RunEnv::default()
                };
                env.begin_run();
                // SAFETY: the programs touch only registers.
                unsafe { jit.run(&mut env, 0, 0) }.expect("runs")
            })
            .collect()
    }

    #[test]
    fn inlined_smp_processor_id_reads_env_cpu() {
        // r1..r5 are not inputs: the inlined form ignores them, as the helper does.
        assert_eq!(run("mov r1, -1\ncall 8\nexit", 3), vec![3, 3]);
    }

    #[test]
    fn inlined_ktime_is_monotonic_nanoseconds() {
        let now = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid out-pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let before = now();
        // Two reads in one run: the second is not earlier than the first.
        let src = "call 5\nmov r6, r0\ncall 5\nmov r7, r0\nsub r7, r6\nrsh r7, 63\n\
                   jeq r7, 0, +1\nmov r0, 0\nexit";
        let got = run(src, 0);
        let after = now();
        for t in got {
            assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
        }
    }
}
