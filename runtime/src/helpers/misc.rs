//! Time, randomness, CPU id and trace_printk.

use crate::vm::env::RunEnv;
use crate::vm::memory::Access;

/// `u64 bpf_ktime_get_ns(void)`: CLOCK_MONOTONIC, as the kernel.
pub(super) unsafe extern "C" fn ktime_get_ns(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut RunEnv,
) -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// `u64 bpf_ktime_get_boot_ns(void)`: CLOCK_BOOTTIME.
pub(super) unsafe extern "C" fn ktime_get_boot_ns(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut RunEnv,
) -> u64 {
    clock(libc::CLOCK_BOOTTIME)
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `u32 bpf_get_prandom_u32(void)`: a per-run-environment xorshift generator.
pub(super) unsafe extern "C" fn get_prandom_u32(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    let mut x = env.prandom_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    env.prandom_state = x;
    (x >> 32) as u32 as u64
}

/// `u32 bpf_get_smp_processor_id(void)`: the worker index.
pub(super) unsafe extern "C" fn get_smp_processor_id(
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live RunEnv.
    unsafe { (*env).cpu as u64 }
}

/// `long bpf_trace_printk(fmt, fmt_size, a1, a2, a3)`: formats into the run's trace log.
///
/// Supports the kernel's conversions (`%d %i %u %x %X %ld %lu %lx %lld %llu %llx %c %p %%`);
/// `%s` prints `(string)` since following a pointer from a log line is not worth a fault.
pub(super) unsafe extern "C" fn trace_printk(
    fmt: u64,
    size: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    env: *mut RunEnv,
) -> u64 {
    // SAFETY: engines pass their live, exclusively borrowed RunEnv.
    let env = unsafe { &mut *env };
    if !env.check_helper_mem("trace_printk", fmt, size, Access::Read) {
        return 0;
    }
    // SAFETY: checked above, or proven by the verifier.
    let bytes = unsafe { std::slice::from_raw_parts(fmt as *const u8, size as usize) };
    let text = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
    let line = format_printk(&String::from_utf8_lossy(text), [a1, a2, a3]);
    let n = line.len() as u64;
    env.trace_log.push(line.trim_end_matches('\n').to_string());
    n
}

fn format_printk(fmt: &str, args: [u64; 3]) -> String {
    let mut out = String::new();
    let mut args = args.into_iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut longs = 0;
        while chars.peek() == Some(&'l') {
            chars.next();
            longs += 1;
        }
        let Some(conv) = chars.next() else { break };
        if conv == '%' {
            out.push('%');
            continue;
        }
        let v = args.next().unwrap_or(0);
        let v32 = longs == 0;
        match conv {
            'd' | 'i' if v32 => out.push_str(&(v as i32).to_string()),
            'd' | 'i' => out.push_str(&(v as i64).to_string()),
            'u' if v32 => out.push_str(&(v as u32).to_string()),
            'u' => out.push_str(&v.to_string()),
            'x' if v32 => out.push_str(&format!("{:x}", v as u32)),
            'x' => out.push_str(&format!("{v:x}")),
            'X' => out.push_str(&format!("{v:X}")),
            'c' => out.push(char::from(v as u8)),
            'p' => out.push_str(&format!("{v:#x}")),
            's' => out.push_str("(string)"),
            other => {
                out.push('%');
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn printk_formats_like_the_kernel() {
        assert_eq!(
            super::format_printk("a=%d b=%u c=%llx %%\n", [u64::MAX, 7, 255]),
            "a=-1 b=7 c=ff %\n"
        );
    }
}
