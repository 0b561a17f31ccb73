//! Instances made from bare instructions, without an object file: what uBPF/rbpf-style
//! harnesses (and `userxdp exec`) run.
//!
//! A raw program has no maps, no relocations and no section; it is wrapped in a one-program
//! [`ObjectSpec`] and instantiated like any other, so both engines, local calls, helpers and
//! [`Runner::run_raw`](super::instance::Runner::run_raw) work unchanged. There is no object for
//! the kernel verifier to check, so [`SafetyPolicy::Kernel`] with the JIT is refused
//! ([`LoadError::NoObjectBytes`]); use `Guarded` (every access checked) or `None`.

use super::insn::{self, Insn};
use super::instance::{LoadError, SafetyPolicy, Vm, VmOptions};
use super::program::PrepareError;
use crate::object::spec::{AttachPoint, ObjectSpec, ProgramSpec, ProgramType};

/// The name raw programs get in errors and traces.
pub const RAW_PROGRAM_NAME: &str = "raw";

impl Vm {
    /// Instantiates a program given as instruction slots (ld_imm64 takes two). The program is
    /// validated structurally ([`insn::validate`]) and its helper calls resolved; errors name
    /// the instruction.
    ///
    /// The program type only labels the program (engines do not look at it); r1/r2 are what
    /// the chosen `Runner::run_*` method passes.
    pub fn from_insns(
        insns: Vec<Insn>,
        prog_type: ProgramType,
        options: VmOptions,
    ) -> Result<Vm, LoadError> {
        if options.safety == SafetyPolicy::Kernel && options.engine == super::instance::Engine::Jit
        {
            // Without an object there is nothing the kernel verifier could be asked about.
            return Err(LoadError::NoObjectBytes);
        }
        let spec = ObjectSpec {
            license: "GPL".into(),
            maps: Vec::new(),
            programs: vec![ProgramSpec {
                name: RAW_PROGRAM_NAME.into(),
                section: RAW_PROGRAM_NAME.into(),
                prog_type,
                attach: AttachPoint::Any,
                xdp_frags: false,
                insns,
                map_relocs: Vec::new(),
                subprograms: Vec::new(),
            }],
        };
        Vm::new(spec, None, None, options)
    }

    /// [`Vm::from_insns`] for little-endian bytecode (8 bytes per slot), as uBPF and rbpf take
    /// it. A length that is not a multiple of 8 or a malformed instruction is a
    /// [`LoadError::Prepare`] naming the instruction.
    pub fn from_bytecode(
        bytes: &[u8],
        prog_type: ProgramType,
        options: VmOptions,
    ) -> Result<Vm, LoadError> {
        let insns = insn::decode(bytes).map_err(|source| PrepareError::Decode {
            program: RAW_PROGRAM_NAME.into(),
            source,
        })?;
        Vm::from_insns(insns, prog_type, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::instance::Engine;

    fn opts(engine: Engine) -> VmOptions {
        VmOptions {
            engine,
            safety: SafetyPolicy::Guarded,
            ..VmOptions::default()
        }
    }

    #[test]
    fn runs_bytecode_in_both_engines() {
        // mov r0, r2; add r0, 1; exit
        let code = [
            0xbf, 0x20, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0,
        ];
        for engine in [Engine::Interpreter, Engine::Jit] {
            let vm = Vm::from_bytecode(&code, ProgramType::Xdp, opts(engine)).unwrap();
            let mut mem = [0u8; 5];
            assert_eq!(vm.runner(0).run_raw(&mut mem).unwrap(), 6);
        }
    }

    #[test]
    fn malformed_bytecode_names_the_instruction() {
        let bad = [0x07, 0, 0, 0, 1, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0];
        let err = Vm::from_bytecode(&bad, ProgramType::Xdp, opts(Engine::Interpreter))
            .unwrap_err()
            .to_string();
        assert!(err.contains("insn 1"), "{err}");
        let short = Vm::from_bytecode(&[0x95, 0, 0], ProgramType::Xdp, opts(Engine::Jit))
            .unwrap_err()
            .to_string();
        assert!(short.contains("multiple of 8"), "{short}");
    }

    #[test]
    fn kernel_policy_needs_an_object() {
        let exit = [0x95, 0, 0, 0, 0, 0, 0, 0];
        let o = VmOptions {
            engine: Engine::Jit,
            safety: SafetyPolicy::Kernel,
            ..VmOptions::default()
        };
        assert!(matches!(
            Vm::from_bytecode(&exit, ProgramType::Xdp, o),
            Err(LoadError::NoObjectBytes)
        ));
    }
}
