//! The per-run environment that engines and helpers share.
//!
//! A pointer to [`RunEnv`] is the hidden sixth argument of every helper call. The first fields
//! are `#[repr(C)]` at fixed offsets because JIT code reads them directly after helper calls.

use std::ffi::c_void;

use super::error::VmError;
use super::memory::{Access, MemoryMap};
use crate::maps::MapHandle;

/// State of one program run, reused across runs of the same VM.
#[repr(C)]
pub struct RunEnv {
    /// Set to 1 by a helper that refused its arguments; engines stop with [`RunEnv::fault`].
    pub fault_flag: u32,
    /// Set to 1 by a successful `bpf_tail_call`: the engine must return to the dispatcher,
    /// which continues with [`RunEnv::tail_call_target`].
    pub tail_call_pending: u32,
    /// Tail calls taken so far in this run (the kernel allows 33).
    pub tail_call_count: u32,
    /// The "CPU" this run is on: the worker index, used by per-CPU maps.
    pub cpu: u32,
    /// Whether helpers must check pointer arguments against [`RunEnv::memory`]
    /// (interpreter, and JIT under `--verifier guarded`).
    pub checked: bool,
    /// Regions the program may touch (consulted only when `checked`).
    pub memory: MemoryMap,
    /// The fault a helper reported with `fault_flag`.
    pub fault: Option<VmError>,
    /// Program to continue with after a tail call (an opaque `*const LoadedProgram`).
    pub tail_call_target: *const c_void,
    /// The context pointer of the current run (`xdp_md`, `__sk_buff` or raw memory).
    pub ctx: *mut u8,
    /// Map handles this program may pass to helpers (addresses, sorted), for checked runs.
    pub map_handles: Vec<u64>,
    /// Inner-map handles looked up in this run (addresses, sorted), also valid map arguments
    /// in checked runs. Forgotten at [`RunEnv::begin_run`]: a map of maps frees a replaced
    /// inner handle once no run is pinned, so one kept past its run (say, as an integer in a
    /// map value) must not validate later.
    pub inner_handles: Vec<u64>,
    /// Target chosen by `bpf_redirect` / `bpf_redirect_map` in this run.
    pub redirect: Redirect,
    /// Lines written by `bpf_trace_printk`, drained by the caller.
    pub trace_log: Vec<String>,
    /// State of `bpf_get_prandom_u32`.
    pub prandom_state: u64,
    /// Invokes a callback (bpf_loop, for_each_map_elem) given its encoded function value.
    pub callback: Option<CallbackFn>,
    /// Engine-private pointer handed back to [`RunEnv::callback`].
    pub callback_data: *mut c_void,
    /// Runs the pending tail-call target in place of the calling subprogram and returns its
    /// r0 (installed by the dispatcher). A `bpf_tail_call` in the main function unwinds to the
    /// dispatcher instead; in a bpf-to-bpf subprogram the kernel returns the target's r0 to
    /// the subprogram's caller, and engines call this hook to do the same.
    pub tail_hook: Option<TailHookFn>,
}

/// Signature of [`RunEnv::tail_hook`]: runs `env.tail_call_target` (and any tail calls it
/// makes) with the run's context, clearing `tail_call_pending`.
pub type TailHookFn = unsafe fn(env: *mut RunEnv) -> Result<u64, VmError>;

/// Signature of the engine hook that runs a callback function of the current program.
pub type CallbackFn =
    unsafe fn(env: *mut RunEnv, func: u64, args: [u64; 5]) -> Result<u64, VmError>;

/// The redirect target a program selected (`bpf_redirect*`), consumed by the datapath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redirect {
    /// No redirect requested.
    #[default]
    None,
    /// `bpf_redirect(ifindex, flags)`.
    Ifindex {
        /// Target interface.
        ifindex: u32,
        /// Flags.
        flags: u64,
    },
    /// `bpf_redirect_map(map, key, flags)`.
    Map {
        /// Address of the map's [`MapHandle`].
        map: u64,
        /// Key in the map.
        key: u32,
        /// Flags.
        flags: u64,
    },
}

impl Default for RunEnv {
    fn default() -> Self {
        RunEnv {
            fault_flag: 0,
            tail_call_pending: 0,
            tail_call_count: 0,
            cpu: 0,
            checked: true,
            memory: MemoryMap::new(),
            fault: None,
            tail_call_target: std::ptr::null(),
            ctx: std::ptr::null_mut(),
            map_handles: Vec::new(),
            inner_handles: Vec::new(),
            redirect: Redirect::None,
            trace_log: Vec::new(),
            prandom_state: 0x9e37_79b9_7f4a_7c15,
            callback: None,
            callback_data: std::ptr::null_mut(),
            tail_hook: None,
        }
    }
}

/// Offset of [`RunEnv::fault_flag`], read by JIT code after helper calls.
pub const FAULT_FLAG_OFFSET: i32 = std::mem::offset_of!(RunEnv, fault_flag) as i32;
/// Offset of [`RunEnv::tail_call_pending`], read by JIT code after `bpf_tail_call`.
pub const TAIL_CALL_PENDING_OFFSET: i32 = std::mem::offset_of!(RunEnv, tail_call_pending) as i32;

impl RunEnv {
    /// Clears per-run state before a run starts (memory regions other than fixed ones,
    /// redirect, tail-call bookkeeping, faults).
    pub fn begin_run(&mut self) {
        self.fault_flag = 0;
        self.fault = None;
        self.tail_call_pending = 0;
        self.tail_call_count = 0;
        self.tail_call_target = std::ptr::null();
        self.redirect = Redirect::None;
        self.memory.reset_dynamic();
        self.inner_handles.clear();
    }

    /// Whether `addr` is one of this program's map handles or an inner map looked up in this
    /// run.
    #[inline(always)]
    pub fn is_map_handle(&self, addr: u64) -> bool {
        self.map_handles.binary_search(&addr).is_ok()
            || self.inner_handles.binary_search(&addr).is_ok()
    }

    /// Records a helper fault; the engine sees `fault_flag` and stops at the calling insn.
    pub fn raise(&mut self, helper: &'static str, reason: impl Into<String>) {
        self.fault_flag = 1;
        self.fault = Some(VmError::HelperFault {
            insn: 0,
            helper,
            reason: reason.into(),
        });
    }

    /// The fault of a map argument that is none of the program's maps.
    #[cold]
    #[inline(never)]
    fn raise_not_a_map(&mut self, helper: &'static str, addr: u64) {
        self.raise(helper, format!("{addr:#x} is not a map of this program"));
    }

    /// Takes the fault a helper raised, attributing it to instruction `insn`.
    pub fn take_fault(&mut self, insn: usize) -> VmError {
        self.fault_flag = 0;
        match self.fault.take() {
            Some(VmError::HelperFault { helper, reason, .. }) => VmError::HelperFault {
                insn,
                helper,
                reason,
            },
            Some(other) => other,
            None => VmError::HelperFault {
                insn,
                helper: "unknown",
                reason: "fault flag set without a fault".into(),
            },
        }
    }

    /// In checked runs, whether a helper may access `[addr, addr+len)`; raises a fault if not.
    /// Always true in trusted runs (the kernel verifier proved the access).
    ///
    /// Inlined into every helper: a trusted run pays one test of `checked`, and the fault's
    /// formatting stays out of line.
    #[inline(always)]
    pub fn check_helper_mem(
        &mut self,
        helper: &'static str,
        addr: u64,
        len: u64,
        access: Access,
    ) -> bool {
        if !self.checked || len == 0 || self.memory.allows(addr, len, access) {
            return true;
        }
        self.raise_outside(helper, addr, len, access);
        false
    }

    /// The fault of a helper access outside the program's memory.
    #[cold]
    #[inline(never)]
    fn raise_outside(&mut self, helper: &'static str, addr: u64, len: u64, access: Access) {
        self.raise(
            helper,
            format!("{access} of {len} bytes at {addr:#x} is outside the program's memory"),
        );
    }

    /// Resolves a map argument of a helper. In checked runs the address must be one of this
    /// program's maps; in trusted runs the verifier has proven it.
    ///
    /// # Safety
    /// In trusted runs `addr` must be the address of a live [`MapHandle`] (true for any map
    /// argument of a verified program, as the loader put it there).
    #[inline(always)]
    pub unsafe fn map_arg<'a>(&mut self, helper: &'static str, addr: u64) -> Option<&'a MapHandle> {
        if self.checked && !self.is_map_handle(addr) {
            self.raise_not_a_map(helper, addr);
            return None;
        }
        // SAFETY: either checked above to be one of the program's live handles (which outlive
        // every run of it) or an inner handle of this run (freed only after the run's pin), or
        // proven by the verifier (caller's contract).
        Some(unsafe { &*(addr as *const MapHandle) })
    }
}

#[cfg(test)]
mod tests {
    use super::RunEnv;
    use crate::maps::{self, types, MapHandle};
    use crate::object::spec::MapSpec;

    /// An inner-map handle is a valid map argument for the rest of the run that looked it
    /// up, and no longer once the next run begins (its map of maps may have freed it).
    #[test]
    fn inner_handles_are_forgotten_at_the_next_run() {
        let spec = MapSpec {
            name: "inner".into(),
            map_type: types::ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            ..MapSpec::default()
        };
        let handle = MapHandle::new(maps::create(&spec, 1).unwrap());
        let mut env = RunEnv::default();
        assert!(env.checked);
        env.begin_run();
        env.inner_handles.push(handle.addr());
        // SAFETY: the address is a live handle, and checked runs validate it anyway.
        assert!(unsafe { env.map_arg("t", handle.addr()) }.is_some());
        assert_eq!(env.fault_flag, 0);
        env.begin_run();
        // SAFETY: as above; the check refuses it before any dereference.
        assert!(unsafe { env.map_arg("t", handle.addr()) }.is_none());
        assert_eq!(env.fault_flag, 1);
    }
}
