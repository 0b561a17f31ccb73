//! CFG pre-pass: which instructions of a function start a basic block.

use super::JitError;
use crate::vm::insn::{jump_target, BPF_CALL, BPF_EXIT, BPF_JMP, BPF_JMP32};
use crate::vm::program::PreparedProgram;

/// Sorted instruction indices that start a block in function `f`: its entry, every jump
/// target, and the instruction after every branch or exit.
///
/// Jumps must stay inside their function (the kernel verifier rejects anything else); a jump
/// that leaves it is reported as unsupported rather than translated.
pub(super) fn block_starts(prog: &PreparedProgram, f: usize) -> Result<Vec<usize>, JitError> {
    let range = prog.function_range(f);
    let mut starts = vec![range.start];
    let mut pc = range.start;
    while pc < range.end {
        let insn = prog.insns[pc];
        let class = insn.class();
        let op = insn.op & 0xf0;
        if (class == BPF_JMP || class == BPF_JMP32) && op != BPF_CALL {
            if op != BPF_EXIT {
                let target = jump_target(pc, insn).unwrap_or(-1);
                if target < range.start as i64 || target >= range.end as i64 {
                    return Err(JitError::Unsupported {
                        program: prog.name.clone(),
                        insn: pc,
                        what: format!("a jump to {target} outside its function"),
                    });
                }
                starts.push(target as usize);
            }
            if pc + 1 < range.end {
                starts.push(pc + 1);
            }
        }
        pc += if insn.is_ld_imm64() { 2 } else { 1 };
    }
    starts.sort_unstable();
    starts.dedup();
    Ok(starts)
}
