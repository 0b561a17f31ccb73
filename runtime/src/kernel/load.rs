//! Loading an ELF object into the kernel through libbpf-rs, the way both [`super::verify`] and
//! [`super::Oracle`] need it:
//!
//! - libbpf's messages are captured instead of printed, and become error details;
//! - every program gets its own verifier-log buffer, so a rejection names its program and
//!   carries its log (libbpf only asks the kernel for a log after a silent attempt failed);
//! - pinning is switched off: `LIBBPF_PIN_BY_NAME` maps would otherwise be reused from, or
//!   pinned into, bpffs, sharing state between runs (or failing where bpffs is not mounted).
//!   Every load here gets private maps;
//! - optionally, ordinary maps shrink to one entry and only one program is loaded
//!   (verification), and every program's type can be overridden.

use std::ptr;

use libbpf_rs::libbpf_sys;
use libbpf_rs::{AsRawLibbpf, Object, ObjectBuilder, OpenObject, PrintCallback, PrintLevel};
use parking_lot::{Mutex, MutexGuard};

use super::{summarize_log, KernelError, LOG_BUF_SIZE};
use crate::object::spec::ProgramType;

/// What to load and how.
#[derive(Debug, Clone, Copy)]
pub(super) struct LoadOptions<'a> {
    /// Load only this program (others get autoload off); `None` loads all.
    pub only: Option<&'a str>,
    /// Program type for every loaded program, instead of the one the section implies.
    pub prog_type: Option<ProgramType>,
    /// Shrink ordinary maps to one entry (global data maps and inner-map templates keep
    /// their size; libbpf does not list templates among the object's maps).
    pub shrink_maps: bool,
}

/// An object loaded into the kernel.
pub(super) struct Loaded {
    /// The libbpf object; dropping it unloads programs and closes maps.
    pub object: Object,
}

/// Opens `bytes` with libbpf, applies `opts`, and loads it.
pub(super) fn load_object(bytes: &[u8], opts: LoadOptions<'_>) -> Result<Loaded, KernelError> {
    let capture = MessageCapture::start();
    let mut open = match ObjectBuilder::default()
        .name("userxdp")
        .and_then(|b| b.open_memory(bytes))
    {
        Ok(open) => open,
        Err(source) => {
            let messages = capture.finish();
            return Err(libbpf_error("open object", messages, source));
        }
    };

    if let Some(name) = opts.only {
        if !open.progs().any(|p| p.name().to_str() == Some(name)) {
            return Err(KernelError::NotFound {
                kind: "program",
                name: name.to_string(),
            });
        }
    }
    // Prog arrays initialized statically in C: libbpf fills them after loading every program
    // and fails if a target is not loaded or a slot is beyond a shrunk map, so their targets
    // load with the selected program and their sizes are kept.
    let static_slots = crate::object::parse(bytes)
        .map(|spec| {
            spec.maps
                .into_iter()
                .filter(|m| !m.initial_slots.is_empty())
                .map(|m| (m.name, m.initial_slots))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let keep_size: Vec<&str> = static_slots.iter().map(|(m, _)| m.as_str()).collect();
    let slot_targets: Vec<&str> = static_slots
        .iter()
        .flat_map(|(_, slots)| slots.iter().map(|(_, p)| p.as_str()))
        .collect();
    prepare_maps(&mut open, opts.shrink_maps, &keep_size);

    // One log buffer per program. They must outlive `load()`: libbpf keeps raw pointers to
    // them until it is done loading.
    let mut logs: Vec<(String, Vec<u8>)> = Vec::new();
    for mut prog in open.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let chosen = !matches!(opts.only, Some(only) if only != name);
        let selected = chosen || slot_targets.contains(&name.as_str());
        prog.set_autoload(selected);
        if !selected {
            continue;
        }
        // A tail-call target loaded only to fill a static slot keeps its own type.
        if let Some(ty) = opts.prog_type.filter(|_| chosen) {
            prog.set_prog_type(libbpf_rs::ProgramType::from(ty.kernel_id()));
            // libbpf derived the expected attach type from the section; a different program
            // type needs the one that fits it (BPF_XDP for XDP, none otherwise).
            let attach = if ty == ProgramType::Xdp {
                libbpf_sys::BPF_XDP
            } else {
                0
            };
            // SAFETY: the pointer comes from a live OpenProgramMut of `open`; the setter only
            // stores the value.
            unsafe {
                libbpf_sys::bpf_program__set_expected_attach_type(
                    prog.as_libbpf_object().as_ptr(),
                    attach,
                );
            }
        }
        logs.push((name, vec![0u8; LOG_BUF_SIZE]));
        let (_, buf) = logs.last_mut().expect("just pushed");
        // SAFETY: `buf` lives in `logs`, which is neither dropped nor resized (its element
        // Vecs' heap buffers do not move) until after `open.load()` returns below.
        let rc = unsafe {
            libbpf_sys::bpf_program__set_log_buf(
                prog.as_libbpf_object().as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len() as _,
            )
        };
        debug_assert_eq!(rc, 0, "bpf_program__set_log_buf before load cannot fail");
    }

    let result = open.load();
    let messages = capture.finish();
    match result {
        Ok(object) => Ok(Loaded { object }),
        Err(source) => {
            // libbpf stops at the first program that fails; it is the one with a log.
            for (program, buf) in &logs {
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                if end > 0 {
                    let log = String::from_utf8_lossy(&buf[..end]).into_owned();
                    return Err(KernelError::Rejected {
                        program: program.clone(),
                        summary: summarize_log(&log),
                        log,
                    });
                }
            }
            Err(libbpf_error("load object", messages, source))
        }
    }
}

/// Turns pinning off for every map and, when asked, shrinks ordinary maps except those named in
/// `keep_size`.
fn prepare_maps(open: &mut OpenObject, shrink: bool, keep_size: &[&str]) {
    for mut map in open.maps_mut() {
        let raw = map.as_libbpf_object().as_ptr();
        // SAFETY: `raw` is a live map of `open`. A NULL path is libbpf's documented way to
        // clear the pin path (it frees the old one); with no pin path, load neither reuses nor
        // pins anything.
        unsafe {
            libbpf_sys::bpf_map__set_pin_path(raw, ptr::null());
        }
        if !shrink {
            continue;
        }
        // SAFETY: `raw` is a live map of `open`; the call only reads it.
        let internal = unsafe { libbpf_sys::bpf_map__is_internal(raw) };
        if internal || keep_size.iter().any(|k| map.name().to_str() == Some(*k)) {
            continue;
        }
        if let Some(n) = shrunk_max_entries(u32::from(map.map_type()), map.max_entries()) {
            // Only fails after load; we are before it.
            let _ = map.set_max_entries(n);
        }
    }
}

/// The `max_entries` a map of `map_type` is verified with, or `None` to keep it.
fn shrunk_max_entries(map_type: u32, max_entries: u32) -> Option<u32> {
    match map_type {
        // Ring buffers are sized in bytes: a power of two, at least a page.
        libbpf_sys::BPF_MAP_TYPE_RINGBUF | libbpf_sys::BPF_MAP_TYPE_USER_RINGBUF => {
            let page = page_size();
            (max_entries > page).then_some(page)
        }
        // Local storages require 0; struct_ops exactly 1; arena counts pages of a mapping
        // the program may address directly.
        libbpf_sys::BPF_MAP_TYPE_SK_STORAGE
        | libbpf_sys::BPF_MAP_TYPE_INODE_STORAGE
        | libbpf_sys::BPF_MAP_TYPE_TASK_STORAGE
        | libbpf_sys::BPF_MAP_TYPE_CGRP_STORAGE
        | libbpf_sys::BPF_MAP_TYPE_STRUCT_OPS
        | libbpf_sys::BPF_MAP_TYPE_ARENA => None,
        _ => (max_entries > 1).then_some(1),
    }
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Builds [`KernelError::Libbpf`] from what libbpf printed.
fn libbpf_error(action: &'static str, messages: String, source: libbpf_rs::Error) -> KernelError {
    let detail = messages
        .lines()
        .map(|l| l.trim().trim_start_matches("libbpf:").trim())
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| source.to_string());
    KernelError::Libbpf {
        action,
        detail,
        messages,
        source,
    }
}

/// Text libbpf printed since capture started; `None` while nobody captures.
static CAPTURED: Mutex<Option<String>> = Mutex::new(None);
/// Serialises captures: libbpf's print hook is process-global.
static CAPTURE_SLOT: Mutex<()> = Mutex::new(());

fn capture_print(_level: PrintLevel, msg: String) {
    if let Some(buf) = CAPTURED.lock().as_mut() {
        buf.push_str(&msg);
    }
}

/// Routes libbpf's warnings into a buffer for as long as it lives, then restores whatever
/// print hook was installed before. One capture at a time per process; messages from other
/// threads' libbpf calls during a capture land in it too.
struct MessageCapture {
    previous: Option<(PrintLevel, PrintCallback)>,
    _slot: MutexGuard<'static, ()>,
}

impl MessageCapture {
    fn start() -> Self {
        let slot = CAPTURE_SLOT.lock();
        *CAPTURED.lock() = Some(String::new());
        let previous =
            libbpf_rs::set_print(Some((PrintLevel::Warn, capture_print as PrintCallback)));
        MessageCapture {
            previous,
            _slot: slot,
        }
    }

    /// Stops capturing and returns the text.
    fn finish(self) -> String {
        CAPTURED.lock().clone().unwrap_or_default()
    }
}

impl Drop for MessageCapture {
    fn drop(&mut self) {
        libbpf_rs::set_print(self.previous.take());
        *CAPTURED.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_rules() {
        assert_eq!(
            shrunk_max_entries(libbpf_sys::BPF_MAP_TYPE_HASH, 1 << 20),
            Some(1)
        );
        assert_eq!(shrunk_max_entries(libbpf_sys::BPF_MAP_TYPE_ARRAY, 1), None);
        assert_eq!(
            shrunk_max_entries(libbpf_sys::BPF_MAP_TYPE_SK_STORAGE, 0),
            None
        );
        assert_eq!(
            shrunk_max_entries(libbpf_sys::BPF_MAP_TYPE_RINGBUF, 1 << 24),
            Some(page_size())
        );
    }
}
