//! The syscall seam: every raw bpf() call of the crate, through `libbpf_sys`'s thin wrappers
//! (each is one `syscall(SYS_bpf, ...)` with the attribute union filled in).
//!
//! Functions here take and return plain Rust values (slices, `OwnedFd`, `io::Error`); the
//! `unsafe` needed to hand pointers to the kernel stays in this file.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;

use crate::vm::insn::Insn;

/// Output of one `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub(crate) struct RunOutput {
    /// Program return value.
    pub retval: u32,
    /// Bytes the kernel wrote to `data_out` (truncated to the buffer given).
    pub data: Vec<u8>,
    /// Mean nanoseconds per repetition.
    pub duration_ns: u32,
}

/// Converts a libbpf return value (negative errno, or -1 with errno set) into an `io::Error`.
fn errno_of(ret: i32) -> io::Error {
    if ret < -1 {
        io::Error::from_raw_os_error(-ret)
    } else {
        io::Error::last_os_error()
    }
}

/// Encodes instructions in the kernel's `struct bpf_insn` layout.
fn to_kernel_insns(insns: &[Insn]) -> Vec<libbpf_sys::bpf_insn> {
    insns
        .iter()
        .map(|i| {
            let mut k = libbpf_sys::bpf_insn {
                code: i.op,
                off: i.off,
                imm: i.imm,
                ..Default::default()
            };
            k.set_dst_reg(i.dst);
            k.set_src_reg(i.src);
            k
        })
        .collect()
}

/// `BPF_PROG_LOAD` of raw instructions under license "GPL". On failure the error comes with
/// the verifier log written into `log` (level 1, retried only after a first silent attempt
/// failed, as libbpf does, so that successful loads pay nothing for logging).
pub(crate) fn prog_load(
    prog_type: u32,
    name: &str,
    insns: &[Insn],
    log: &mut Vec<u8>,
) -> Result<OwnedFd, io::Error> {
    let kinsns = to_kernel_insns(insns);
    // Kernel object names are at most 15 bytes + NUL and alphanumeric/underscore/dot.
    let short: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .take(15)
        .collect();
    let cname = CString::new(short).unwrap_or_default();

    log.clear();
    let err = match load_once(prog_type, &cname, &kinsns, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    // Without permission there is no log to get.
    if err.raw_os_error() == Some(libc::EPERM) {
        return Err(err);
    }
    log.resize(super::LOG_BUF_SIZE, 0);
    let result = load_once(prog_type, &cname, &kinsns, Some(log));
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    log.truncate(end);
    result
}

/// One `BPF_PROG_LOAD`; with `log`, at log level 1 into that buffer.
fn load_once(
    prog_type: u32,
    name: &CString,
    kinsns: &[libbpf_sys::bpf_insn],
    log: Option<&mut Vec<u8>>,
) -> Result<OwnedFd, io::Error> {
    // SAFETY: bpf_prog_load_opts is a plain C struct for which all-zero is the documented
    // "no options" value; `sz` is set as libbpf's OPTS_VALID requires.
    let mut opts: libbpf_sys::bpf_prog_load_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _;
    if let Some(log) = log {
        opts.log_level = 1;
        opts.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        opts.log_buf = log.as_mut_ptr().cast();
    }
    // SAFETY: every pointer is valid for the duration of the call: `kinsns` holds
    // `kinsns.len()` instructions, the strings are NUL-terminated, the log buffer (when
    // passed) has at least `log_size` writable bytes; the kernel copies what it needs before
    // returning.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            prog_type,
            name.as_ptr(),
            c"GPL".as_ptr(),
            kinsns.as_ptr(),
            kinsns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(errno_of(fd));
    }
    // SAFETY: a non-negative return is a fresh file descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_PROG_TEST_RUN` on `prog`: runs it `repeat` times (0 counts as 1) on `data`, with an
/// optional input context (`xdp_md` / `__sk_buff` bytes; not read back, since the kernel
/// fails with ENOSPC when `ctx_out` is shorter than its whole context struct), and returns
/// what the kernel reported.
/// The output buffer is `data.len() + 512` bytes, enough for any head/tail growth the
/// kernel's test-run allows on a single-buffer frame.
pub(crate) fn prog_test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    ctx: Option<&[u8]>,
    repeat: u32,
) -> Result<RunOutput, io::Error> {
    // Room for a program that grows the packet to a whole page (bpf_xdp_adjust_tail can reach
    // the end of the test run's 4 KiB frame); too small a buffer makes the run fail ENOSPC.
    let mut out = vec![0u8; data.len() + 4096];
    // SAFETY: all-zero is the valid "no options" value of this C struct; `sz` set below.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    opts.data_in = data.as_ptr().cast();
    opts.data_size_in = data.len() as u32;
    opts.data_out = out.as_mut_ptr().cast();
    opts.data_size_out = out.len() as u32;
    opts.repeat = repeat as i32;
    if let Some(ctx) = ctx {
        opts.ctx_in = ctx.as_ptr().cast();
        opts.ctx_size_in = ctx.len() as u32;
    }
    // SAFETY: data_in/ctx_in point to readable buffers of the given sizes, data_out to a
    // writable one; the kernel never writes past the sizes it is given and the buffers
    // outlive the call.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if ret < 0 {
        return Err(errno_of(ret));
    }
    out.truncate((opts.data_size_out as usize).min(out.len()));
    Ok(RunOutput {
        retval: opts.retval,
        data: out,
        duration_ns: opts.duration,
    })
}

/// `BPF_MAP_CREATE` of a small map (used by the capability probe).
pub(crate) fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Result<OwnedFd, io::Error> {
    // SAFETY: a NULL name and NULL opts are accepted by libbpf ("no name", "no options").
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            map_type,
            std::ptr::null(),
            key_size,
            value_size,
            max_entries,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return Err(errno_of(fd));
    }
    // SAFETY: a non-negative return is a fresh file descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_MAP_LOOKUP_ELEM`: fills `value` (which must be the map's full value size, times the
/// possible-CPU count with 8-byte rounding for per-CPU maps). `Ok(false)` means ENOENT.
pub(crate) fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    // SAFETY: `key` is readable and `value` writable for the sizes the kernel derives from the
    // map's key/value size, which the callers size from the map's own attributes.
    let ret = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            key.as_ptr().cast(),
            value.as_mut_ptr().cast(),
        )
    };
    match ret {
        r if r >= 0 => Ok(true),
        r => {
            let e = errno_of(r);
            if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// `BPF_MAP_GET_NEXT_KEY`: the key after `key` (`None` = first key) into `next`;
/// `Ok(false)` at the end of the map.
pub(crate) fn map_next_key(
    map: BorrowedFd<'_>,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> io::Result<bool> {
    let key_ptr = key.map_or(std::ptr::null(), |k| k.as_ptr().cast());
    // SAFETY: `key` (or NULL, meaning "first key") is readable and `next` writable for the
    // map's key size, which callers use to size both.
    let ret = unsafe {
        libbpf_sys::bpf_map_get_next_key(map.as_raw_fd(), key_ptr, next.as_mut_ptr().cast())
    };
    match ret {
        r if r >= 0 => Ok(true),
        r => {
            let e = errno_of(r);
            if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// `BPF_MAP_UPDATE_ELEM` with `flags` (`BPF_ANY` 0, `BPF_NOEXIST` 1, `BPF_EXIST` 2, ...).
pub(crate) fn map_update(
    map: BorrowedFd<'_>,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> io::Result<()> {
    // SAFETY: both buffers are readable for the sizes the kernel reads; callers check them
    // against the map's key and value sizes first.
    let ret = unsafe {
        libbpf_sys::bpf_map_update_elem(
            map.as_raw_fd(),
            key.as_ptr().cast(),
            value.as_ptr().cast(),
            flags,
        )
    };
    if ret < 0 {
        return Err(errno_of(ret));
    }
    Ok(())
}

/// `BPF_MAP_DELETE_ELEM`.
pub(crate) fn map_delete(map: BorrowedFd<'_>, key: &[u8]) -> io::Result<()> {
    // SAFETY: `key` is readable for the map's key size (checked by the caller).
    let ret = unsafe { libbpf_sys::bpf_map_delete_elem(map.as_raw_fd(), key.as_ptr().cast()) };
    if ret < 0 {
        return Err(errno_of(ret));
    }
    Ok(())
}

/// Number of possible CPUs, the stride count of per-CPU map values.
pub(crate) fn possible_cpus() -> io::Result<usize> {
    // SAFETY: no arguments; libbpf parses /sys/devices/system/cpu/possible.
    let n = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    if n <= 0 {
        return Err(errno_of(n));
    }
    Ok(n as usize)
}

/// Effective user id, to explain permission failures.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
