//! No file descriptor leaks from verification, oracles and raw test runs. Alone in its own
//! test binary so that no concurrent test opens or closes descriptors meanwhile.

use userxdp_runtime::kernel::{self, Oracle};
use userxdp_runtime::object::spec::ProgramType;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn kernel_calls_do_not_leak_fds() {
    if let Err(e) = kernel::probe() {
        eprintln!("skipping: {e}");
        return;
    }
    let maps = userxdp_programs::bytes("xdp_tailcall").unwrap();
    let bad = userxdp_programs::bytes("bad_oob").unwrap();
    let prog = kernel::return_pass_insns();
    // Warm up lazily opened descriptors (libbpf feature probes, ...).
    kernel::verify(&maps, "xdp_tail_entry", None).unwrap();
    let before = open_fds();
    for _ in 0..20 {
        kernel::verify(&maps, "xdp_tail_entry", None).unwrap();
        assert!(kernel::verify(&bad, "bad_oob", None).is_err());
        let o = Oracle::load(&maps, None).unwrap();
        o.set_tail_call("jmp_table", 0, "xdp_tail_parse").unwrap();
        o.test_run("xdp_tail_entry", &[0u8; 64], 1).unwrap();
        drop(o);
        kernel::test_run_insns(&prog, ProgramType::Xdp, &[0u8; 64], 1).unwrap();
    }
    assert_eq!(open_fds(), before);
}
