//! The `userxdp` command-line tool: subcommands that drive the runtime without a NIC.

pub mod attach;
pub mod ctl;
pub mod exec;
pub mod lb;
pub mod maps_init;
pub mod objects;
pub mod run;

/// Pins the calling thread to `cpu`, so that kernel test runs and per-CPU map slots line up
/// with the userspace runner for that CPU. Returns false when that is not possible.
pub fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
