//! The `userxdp` command-line tool: subcommands that drive the runtime without a NIC.

pub mod objects;
pub mod run;

/// Number of possible CPUs, as the kernel sizes per-CPU map values
/// (`/sys/devices/system/cpu/possible`, e.g. `0-1`).
pub fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            s.trim()
                .split(',')
                .map(|part| match part.split_once('-') {
                    Some((a, b)) => Some(b.parse::<u32>().ok()? - a.parse::<u32>().ok()? + 1),
                    None => part.parse::<u32>().ok().map(|_| 1),
                })
                .sum::<Option<u32>>()
        })
        .unwrap_or(1)
        .max(1)
}

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
