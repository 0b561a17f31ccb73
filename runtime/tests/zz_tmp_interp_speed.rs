use userxdp_runtime::object::spec::ProgramType;
use userxdp_runtime::vm::{asm, env::RunEnv, interp::Interpreter, program::PreparedProgram};
#[test]
fn speed() {
    let text = "mov64 r0, 0\nmov64 r2, 0\ntop:\nadd64 r2, 1\nstxdw [r10-8], r2\nldxdw r3, [r10-8]\nadd64 r0, r3\njlt r2, 10000000, top\nexit";
    let prog = PreparedProgram::new("b", ProgramType::Xdp, asm::assemble(text).unwrap()).unwrap();
    let mut env = RunEnv::default();
    env.begin_run();
    let mut vm = Interpreter::new(u64::MAX);
    let t = std::time::Instant::now();
    let r = vm.run(&prog, &mut env, 0, 0).unwrap();
    let el = t.elapsed();
    eprintln!("r0={r} {:?} => {:.2} ns/insn", el, el.as_nanos() as f64 / 50_000_000.0);
}
