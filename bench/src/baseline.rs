//! What every measurement here shares: the empty program each engine's figures are net of, and
//! pinning the measuring thread to one CPU.

use userxdp_runtime::context::XdpFrame;
use userxdp_runtime::kernel;
use userxdp_runtime::object::spec::{AttachPoint, ObjectSpec, ProgramSpec, ProgramType};
use userxdp_runtime::vm::error::VmError;
use userxdp_runtime::vm::instance::{Engine, LoadError, Runner, SafetyPolicy, Vm, VmOptions};

/// Runs per epoch pin in [`run_batched`]: `run-datapath`'s default RX batch.
pub const BATCH: u32 = 64;

/// Runs `runner` on `frame` `runs` times the way `run-datapath` does: in batches of [`BATCH`]
/// with one epoch pin each (`Runner::begin_batch`), not one per run. The frame is not
/// reloaded between runs.
pub fn run_batched(runner: &mut Runner, frame: &mut XdpFrame, runs: u64) -> Result<(), VmError> {
    let mut left = runs;
    while left > 0 {
        let n = left.min(u64::from(BATCH));
        runner.begin_batch();
        for _ in 0..n {
            if let Err(e) = runner.run_xdp(frame) {
                runner.end_batch();
                return Err(e);
            }
        }
        runner.end_batch();
        left -= n;
    }
    Ok(())
}

/// `r0 = XDP_PASS; exit` for `engine`: the empty program whose cost each engine subtracts, so
/// that figures are program execution only (the kernel's test-run loop and our run entry
/// excluded; the kernel side uses `kernel::RawProgram::empty_xdp`).
pub fn empty_vm(engine: Engine) -> Result<Vm, LoadError> {
    let program = ProgramSpec {
        name: "empty".into(),
        section: "xdp".into(),
        prog_type: ProgramType::Xdp,
        attach: AttachPoint::Any,
        xdp_frags: false,
        insns: kernel::return_pass_insns().to_vec(),
        map_relocs: Vec::new(),
        subprograms: Vec::new(),
    };
    let spec = ObjectSpec {
        license: "GPL".into(),
        maps: Vec::new(),
        programs: vec![program],
    };
    // Two instructions of our own: nothing for a verifier to prove.
    Vm::new(
        spec,
        None,
        None,
        VmOptions {
            engine,
            safety: SafetyPolicy::None,
            ..VmOptions::default()
        },
    )
}

/// Pins the calling thread to `cpu`, so that kernel test runs, per-CPU map slots and timings
/// all happen on that CPU. Returns false when that is not possible.
pub fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
