//! A program instance: an object's maps, one program relocated against them, compiled for an
//! engine, and per-CPU runners that execute it on packets.
//!
//! ```text
//! ObjectSpec ──Vm::new──▶ Vm { maps, entry program (+ tail-call targets) }
//!                            └─runner(cpu)─▶ Runner { RunEnv, Interpreter } ──run_xdp(frame)
//! ```
//! A `Vm` is shared (`Arc`) by every worker; each worker owns a `Runner`.

use std::collections::HashMap as StdHashMap;
use std::ffi::c_void;
use std::sync::Arc;

use parking_lot::Mutex;

use super::env::{Redirect, RunEnv};
use super::error::VmError;
use super::insn::{Insn, PSEUDO_FUNC};
use super::interp::{Interpreter, DEFAULT_BUDGET};
use super::jit::{JitError, JitOptions, JitProgram};
use super::memory::{Region, RegionKind};
use super::program::{PrepareError, PreparedProgram};
use crate::context::{XdpAction, XdpContext, XdpFrame, XDP_MD_SIZE};
use crate::kernel::KernelError;
use crate::maps::{self, CreateError, Map, MapHandle, ProgArrayMap};
use crate::object::spec::{MapRefKind, MapSpec, ObjectSpec, ProgramSpec};
use crate::skb::{self, SkbFrame, SK_BUFF_SIZE};

/// Which engine executes the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The checked interpreter: every access bounds-checked.
    Interpreter,
    /// Cranelift-compiled native code.
    #[default]
    Jit,
}

/// What makes JIT code safe to run (see DESIGN.md, "Safety policy").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SafetyPolicy {
    /// The kernel verifier accepted the object (loaded with maps shrunk, then unloaded).
    #[default]
    Kernel,
    /// Every memory access is bounds-checked at run time.
    Guarded,
    /// Nothing: run unverified code unchecked. Must be asked for by name.
    None,
}

/// How to instantiate a program.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Engine.
    pub engine: Engine,
    /// Safety policy for the JIT (the interpreter is always checked).
    pub safety: SafetyPolicy,
    /// Instruction budget per run for the interpreter.
    pub budget: u64,
    /// Number of per-CPU slots in per-CPU maps (one per worker).
    pub ncpus: u32,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            engine: Engine::Jit,
            safety: SafetyPolicy::Kernel,
            budget: DEFAULT_BUDGET,
            ncpus: 1,
        }
    }
}

/// Why a program could not be instantiated.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No program of that name or section.
    #[error("no program named {name} (object has: {available})")]
    NoSuchProgram {
        /// Requested name.
        name: String,
        /// Names that exist.
        available: String,
    },
    /// A map could not be created.
    #[error(transparent)]
    Map(#[from] CreateError),
    /// A relocation points outside its map.
    #[error("program {program}: insn {insn}: {reason}")]
    Relocation {
        /// Program name.
        program: String,
        /// Instruction index.
        insn: usize,
        /// What is wrong.
        reason: String,
    },
    /// The program is malformed or calls an unknown helper.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The JIT failed.
    #[error(transparent)]
    Jit(#[from] JitError),
    /// The kernel verifier rejected the program, or could not be asked.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A reload found a map of the same name that cannot carry its state over.
    #[error("map {map}: {reason}; a reload keeps maps, so their shape must not change")]
    IncompatibleMap {
        /// Map name.
        map: String,
        /// What differs.
        reason: String,
    },
    /// Kernel verification requested without the object bytes to verify.
    #[error("safety policy `kernel` needs the object file bytes to verify")]
    NoObjectBytes,
}

/// A program compiled for an engine, as tail-call targets and the entry are stored.
pub struct LoadedProgram {
    /// The relocated program.
    pub prepared: PreparedProgram,
    jit: Option<JitProgram>,
    /// Interpreter budget (for runs started by [`tail_in_place`]).
    budget: u64,
}

/// Clears the pending tail call and returns its target with a reference of our own, so that
/// replacing the PROG_ARRAY slot while the target runs cannot free it.
///
/// # Safety
/// `env.tail_call_target` was set by a successful `bpf_tail_call`: it points to a
/// `LoadedProgram` owned by an `Arc` in a PROG_ARRAY slot's owner list.
unsafe fn take_tail_target(env: &mut RunEnv) -> Arc<LoadedProgram> {
    env.tail_call_pending = 0;
    let target = env.tail_call_target as *const LoadedProgram;
    // SAFETY: caller's contract; the slot's Arc is alive now, and we add our own count.
    unsafe {
        Arc::increment_strong_count(target);
        Arc::from_raw(target)
    }
}

/// [`RunEnv::tail_hook`]: runs the pending tail-call target as the kernel does after a tail
/// call from a subprogram, i.e. in place of that subprogram, returning the target's r0 to the
/// subprogram's caller. Further tail calls of the target continue here, sharing the run's
/// tail-call count. The interpreter gets a stack of its own: a target cannot see its
/// predecessor's frames.
///
/// # Safety
/// `env` is the live environment of a run started by [`Runner::dispatch`], whose pending
/// target pointer came from a PROG_ARRAY slot (kept alive by the slot's owner list).
unsafe fn tail_in_place(env: *mut RunEnv) -> Result<u64, VmError> {
    // SAFETY: caller's contract.
    let env = unsafe { &mut *env };
    let r1 = env.ctx as u64;
    loop {
        // SAFETY: see the function contract.
        let prog = unsafe { take_tail_target(env) };
        let r0 = match &prog.jit {
            // SAFETY: same policy as the program that made the tail call.
            Some(jit) => unsafe { jit.run(env, r1, 0)? },
            None => Interpreter::new(prog.budget).run(&prog.prepared, env, r1, 0)?,
        };
        if env.tail_call_pending == 0 {
            return Ok(r0);
        }
    }
}

impl std::fmt::Debug for LoadedProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProgram")
            .field("name", &self.prepared.name)
            .field("jit", &self.jit.is_some())
            .finish()
    }
}

/// Shared state of an instance.
struct Shared {
    spec: ObjectSpec,
    object_bytes: Option<Arc<[u8]>>,
    options: VmOptions,
    maps: Vec<Arc<dyn Map>>,
    /// Boxed on purpose: programs hold each handle's address, so a handle must never move.
    #[allow(clippy::vec_box)]
    handles: Vec<Box<MapHandle>>,
    /// Programs compiled so far (entry and tail-call targets), by name.
    programs: Mutex<StdHashMap<String, Arc<LoadedProgram>>>,
    /// Some map needs runs pinned to an epoch ([`Map::needs_epoch`]).
    needs_epoch: bool,
}

/// An instantiated program with its maps. Cheap to clone; share it between workers.
#[derive(Clone)]
pub struct Vm {
    shared: Arc<Shared>,
    entry: Arc<LoadedProgram>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("program", &self.entry.prepared.name)
            .field("options", &self.shared.options)
            .finish()
    }
}

/// The kernel verifier, as the `kernel` safety policy uses it.
fn kernel_verify(bytes: &[u8], program: &ProgramSpec) -> Result<(), KernelError> {
    crate::kernel::verify(bytes, &program.name, Some(program.prog_type))
}

impl Vm {
    /// Instantiates `program` (function or section name; the first program when `None`) of an
    /// object: creates its maps, relocates, verifies as the policy says, and compiles. Prog
    /// arrays initialized statically in C ([`crate::object::MapSpec::initial_slots`]) are filled.
    ///
    /// `object_bytes` are needed for [`SafetyPolicy::Kernel`] with the JIT.
    pub fn new(
        spec: ObjectSpec,
        object_bytes: Option<&[u8]>,
        program: Option<&str>,
        options: VmOptions,
    ) -> Result<Vm, LoadError> {
        Self::build(spec, object_bytes, program, options, None)
    }

    /// A new version of a running program: `program` of `spec`, instantiated with this
    /// instance's options and its maps wherever the new object declares a map of the same
    /// name, so that their state carries over (hot reload). A same-named map must have the
    /// same type, key and value size, entry count and flags. Fresh maps are made for maps
    /// the old object lacks, for read-only data (`.rodata` holds the new object's constants)
    /// and for PROG_ARRAYs (their slots hold the old object's programs).
    pub fn reload(
        &self,
        spec: ObjectSpec,
        object_bytes: Option<&[u8]>,
        program: Option<&str>,
    ) -> Result<Vm, LoadError> {
        Self::build(
            spec,
            object_bytes,
            program,
            self.shared.options.clone(),
            Some(self),
        )
    }

    /// The map to use for `m` in a reload of `old`: the old map when compatible.
    fn reused_map(old: &Vm, m: &MapSpec) -> Result<Option<Arc<dyn Map>>, LoadError> {
        let Some(prev) = old.map(&m.name) else {
            return Ok(None);
        };
        let p = prev.spec();
        // Frozen read-only data holds the new object's constants.
        if maps::is_frozen(m) || m.map_type == maps::types::PROG_ARRAY {
            return Ok(None);
        }
        let differs = |what: &str, a: u32, b: u32| {
            Err(LoadError::IncompatibleMap {
                map: m.name.clone(),
                reason: format!("{what} was {a}, is now {b}"),
            })
        };
        if p.map_type != m.map_type {
            return differs("type", p.map_type, m.map_type);
        }
        if p.key_size != m.key_size {
            return differs("key size", p.key_size, m.key_size);
        }
        if p.value_size != m.value_size {
            return differs("value size", p.value_size, m.value_size);
        }
        if p.max_entries != m.max_entries {
            return differs("max_entries", p.max_entries, m.max_entries);
        }
        if p.flags != m.flags {
            return differs("flags", p.flags, m.flags);
        }
        Ok(Some(prev.clone()))
    }

    fn build(
        spec: ObjectSpec,
        object_bytes: Option<&[u8]>,
        program: Option<&str>,
        options: VmOptions,
        reuse: Option<&Vm>,
    ) -> Result<Vm, LoadError> {
        let prog_spec = match program {
            Some(name) => spec.program(name),
            None => spec.programs.first(),
        }
        .ok_or_else(|| LoadError::NoSuchProgram {
            name: program.unwrap_or("(first)").to_string(),
            available: spec
                .programs
                .iter()
                .map(|p| format!("{} ({})", p.name, p.section))
                .collect::<Vec<_>>()
                .join(", "),
        })?
        .clone();

        if options.engine == Engine::Jit && options.safety == SafetyPolicy::Kernel {
            let bytes = object_bytes.ok_or(LoadError::NoObjectBytes)?;
            kernel_verify(bytes, &prog_spec)?;
        }

        let mut maps = Vec::with_capacity(spec.maps.len());
        for m in &spec.maps {
            let kept = match reuse {
                Some(old) => Self::reused_map(old, m)?,
                None => None,
            };
            maps.push(match kept {
                Some(map) => map,
                None => maps::create(m, options.ncpus)?,
            });
        }
        let handles: Vec<Box<MapHandle>> = maps.iter().map(|m| MapHandle::new(m.clone())).collect();
        let needs_epoch = maps.iter().any(|m| m.needs_epoch());
        let shared = Arc::new(Shared {
            spec,
            object_bytes: object_bytes.map(Arc::from),
            options,
            maps,
            handles,
            programs: Mutex::new(StdHashMap::new()),
            needs_epoch,
        });
        let entry = Self::compile(&shared, &prog_spec)?;
        shared
            .programs
            .lock()
            .insert(prog_spec.name.clone(), entry.clone());
        let vm = Vm { shared, entry };
        // Prog arrays initialized statically in C (`.values = { [i] = &prog }`), as libbpf
        // fills them at load.
        for m in &vm.shared.spec.maps {
            for (slot, program) in &m.initial_slots {
                vm.set_tail_call(&m.name, *slot, program)?;
            }
        }
        Ok(vm)
    }

    /// Relocates and compiles one program of the object against the instance's maps.
    fn compile(shared: &Shared, p: &ProgramSpec) -> Result<Arc<LoadedProgram>, LoadError> {
        let mut insns: Vec<Insn> = p.insns.clone();
        for r in &p.map_relocs {
            let reloc_err = |reason: String| LoadError::Relocation {
                program: p.name.clone(),
                insn: r.insn,
                reason,
            };
            let handle = shared
                .handles
                .get(r.map)
                .ok_or_else(|| reloc_err(format!("map index {} out of range", r.map)))?;
            if r.insn + 1 >= insns.len() || !insns[r.insn].is_ld_imm64() {
                return Err(reloc_err("relocation is not on an ld_imm64".into()));
            }
            let value = match r.kind {
                MapRefKind::Map => handle.addr(),
                MapRefKind::Value { offset } => {
                    if handle.array_base.is_null() {
                        return Err(reloc_err(format!(
                            "map {} has no direct value (not an array)",
                            handle.map.spec().name
                        )));
                    }
                    if offset >= handle.value_size.max(1) {
                        return Err(reloc_err(format!(
                            "offset {offset} outside the {}-byte value of map {}",
                            handle.value_size,
                            handle.map.spec().name
                        )));
                    }
                    handle.array_base as u64 + offset as u64
                }
            };
            insns[r.insn].src = 0;
            insns[r.insn].imm = value as u32 as i32;
            insns[r.insn + 1].imm = (value >> 32) as u32 as i32;
        }
        // A PSEUDO_FUNC left by the loader keeps its relative encoding; engines resolve it.
        debug_assert!(insns
            .iter()
            .all(|i| !i.is_ld_imm64() || i.src == 0 || i.src == PSEUDO_FUNC));
        let mut prepared = PreparedProgram::new(p.name.clone(), p.prog_type, insns)?;
        let jit = match shared.options.engine {
            Engine::Interpreter => {
                prepared.prove_fixed_accesses(&shared.maps);
                None
            }
            Engine::Jit => Some(JitProgram::compile(
                &prepared,
                &JitOptions {
                    guarded: shared.options.safety == SafetyPolicy::Guarded,
                },
            )?),
        };
        Ok(Arc::new(LoadedProgram {
            prepared,
            jit,
            budget: shared.options.budget,
        }))
    }

    /// The entry program.
    pub fn program(&self) -> &PreparedProgram {
        &self.entry.prepared
    }

    /// The object this instance was made from.
    pub fn spec(&self) -> &ObjectSpec {
        &self.shared.spec
    }

    /// The options it was made with.
    pub fn options(&self) -> &VmOptions {
        &self.shared.options
    }

    /// The original object bytes, if given.
    pub fn object_bytes(&self) -> Option<&[u8]> {
        self.shared.object_bytes.as_deref()
    }

    /// Maps in declaration order, with their names.
    pub fn maps(&self) -> impl Iterator<Item = (&str, &Arc<dyn Map>)> {
        self.shared
            .spec
            .maps
            .iter()
            .map(|s| s.name.as_str())
            .zip(self.shared.maps.iter())
    }

    /// Maps with the address a program holds for them (what `bpf_redirect_map` records in
    /// [`Redirect::Map`]), so that the datapath can resolve a redirect target.
    pub fn maps_by_handle(&self) -> impl Iterator<Item = (u64, &str, &Arc<dyn Map>)> {
        self.shared
            .handles
            .iter()
            .map(|h| h.addr())
            .zip(self.maps())
            .map(|(addr, (name, map))| (addr, name, map))
    }

    /// A map by name.
    pub fn map(&self, name: &str) -> Option<&Arc<dyn Map>> {
        self.maps().find(|(n, _)| *n == name).map(|(_, m)| m)
    }

    /// Puts program `program` of the same object into slot `index` of PROG_ARRAY `map` (the
    /// userspace equivalent of writing a program fd into the array).
    pub fn set_tail_call(&self, map: &str, index: u32, program: &str) -> Result<(), LoadError> {
        let target = {
            let mut programs = self.shared.programs.lock();
            match programs.get(program) {
                Some(p) => p.clone(),
                None => {
                    let spec = self.shared.spec.program(program).ok_or_else(|| {
                        LoadError::NoSuchProgram {
                            name: program.to_string(),
                            available: self
                                .shared
                                .spec
                                .programs
                                .iter()
                                .map(|p| p.name.clone())
                                .collect::<Vec<_>>()
                                .join(", "),
                        }
                    })?;
                    let loaded = Self::compile(&self.shared, spec)?;
                    programs.insert(program.to_string(), loaded.clone());
                    loaded
                }
            }
        };
        let id = self
            .shared
            .spec
            .programs
            .iter()
            .position(|p| p.name == program)
            .unwrap_or(0) as u32
            + 1;
        let array = self
            .map(map)
            .and_then(|m| m.as_any().downcast_ref::<ProgArrayMap>())
            .ok_or_else(|| LoadError::NoSuchProgram {
                name: format!("prog_array map {map}"),
                available: self
                    .maps()
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let ptr = Arc::as_ptr(&target) as *const c_void;
        array
            .set(index, Some((id, target, ptr)))
            .map_err(|e| LoadError::Relocation {
                program: program.to_string(),
                insn: 0,
                reason: format!("prog_array {map}[{index}]: {e}"),
            })
    }

    /// Another program of the same object, sharing this instance's maps: the egress half of
    /// an application whose ingress half this is (`cache.o`'s XDP and TC programs), or a
    /// program reloaded into running maps. Compiled once; later calls share the compilation.
    pub fn sibling(&self, program: &str) -> Result<Vm, LoadError> {
        let existing = self.shared.programs.lock().get(program).cloned();
        let entry =
            match existing {
                Some(p) => p,
                None => {
                    let spec = self.shared.spec.program(program).ok_or_else(|| {
                        LoadError::NoSuchProgram {
                            name: program.to_string(),
                            available: self
                                .shared
                                .spec
                                .programs
                                .iter()
                                .map(|p| format!("{} ({})", p.name, p.section))
                                .collect::<Vec<_>>()
                                .join(", "),
                        }
                    })?;
                    if self.shared.options.engine == Engine::Jit
                        && self.shared.options.safety == SafetyPolicy::Kernel
                    {
                        let bytes = self.object_bytes().ok_or(LoadError::NoObjectBytes)?;
                        kernel_verify(bytes, spec)?;
                    }
                    let loaded = Self::compile(&self.shared, spec)?;
                    self.shared
                        .programs
                        .lock()
                        .entry(spec.name.clone())
                        .or_insert(loaded)
                        .clone()
                }
            };
        Ok(Vm {
            shared: self.shared.clone(),
            entry,
        })
    }

    /// A runner for CPU (worker) `cpu`, which should be below `VmOptions::ncpus` (it is taken
    /// modulo `ncpus`).
    pub fn runner(&self, cpu: u32) -> Runner {
        let opts = &self.shared.options;
        let checked = opts.engine == Engine::Interpreter || opts.safety == SafetyPolicy::Guarded;
        // Per-CPU maps have `ncpus` slots; a runner must use one of them (inlined per-CPU
        // lookups index by `env.cpu` directly).
        let cpu = cpu % opts.ncpus.max(1);
        let mut env = RunEnv {
            cpu,
            checked,
            tail_hook: Some(tail_in_place),
            ..RunEnv::default()
        };
        let mut handles: Vec<u64> = self.shared.handles.iter().map(|h| h.addr()).collect();
        handles.sort_unstable();
        env.map_handles = handles;
        if checked {
            for region in crate::vm::memory::fixed_regions(&self.shared.maps) {
                env.memory.add_fixed(region);
            }
        }
        Runner {
            vm: self.clone(),
            env,
            interp: Interpreter::new(opts.budget),
            runs: 0,
            batch: None,
        }
    }
}

/// Outcome of one XDP run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpRun {
    /// The verdict.
    pub action: XdpAction,
    /// The raw return value (r0).
    pub retval: u64,
    /// The redirect target, when the verdict is XDP_REDIRECT.
    pub redirect: Redirect,
}

/// Executes a [`Vm`]'s program on one CPU. Not shared between threads.
pub struct Runner {
    vm: Vm,
    env: RunEnv,
    interp: Interpreter,
    runs: u64,
    /// The epoch pin of the current batch ([`Runner::begin_batch`]); runs outside a batch pin
    /// for themselves.
    batch: Option<maps::epoch::Guard>,
}

/// How often (in runs) [`Map::quiesce`] is called, for maps that still reclaim that way. The
/// HASH family does not: it reclaims through epochs (`maps::epoch`), safe across threads.
const QUIESCE_EVERY: u64 = 64;

impl Runner {
    /// Runs the program on an XDP frame, which the program may modify and resize.
    pub fn run_xdp(&mut self, frame: &mut XdpFrame) -> Result<XdpRun, VmError> {
        // SAFETY: an XdpFrame's context describes the frame's own low memory.
        unsafe { self.run_xdp_in_place(frame.context_mut()) }
    }

    /// Runs the program on a frame that lives in memory the caller owns (an AF_XDP UMEM
    /// chunk): `ctx` describes it, and the program may move `data`, `data_meta` and `data_end`
    /// within `[frame_start, frame_start + frame_size - SHINFO_SIZE)`.
    ///
    /// # Safety
    /// `[ctx.frame_start, ctx.frame_start + ctx.frame_size)` must be valid, writable memory
    /// below 4 GiB that nothing else accesses during the run, and `data_meta <= data <=
    /// data_end` must lie inside it.
    pub unsafe fn run_xdp_in_place(&mut self, ctx: &mut XdpContext) -> Result<XdpRun, VmError> {
        self.env.begin_run();
        let md = ctx.md;
        let ctx: *mut XdpContext = ctx;
        self.env.ctx = ctx.cast();
        if self.env.checked {
            self.env.memory.add(Region {
                start: ctx as u64,
                len: XDP_MD_SIZE as u64,
                writable: false,
                kind: RegionKind::Context,
            });
            self.env.memory.add(Region {
                start: md.data_meta as u64,
                len: (md.data_end - md.data_meta) as u64,
                writable: true,
                kind: RegionKind::Packet,
            });
        }
        let r0 = self.dispatch(ctx as u64, 0)?;
        self.after_run();
        Ok(XdpRun {
            action: XdpAction::from_retval(r0),
            retval: r0,
            redirect: self.env.redirect,
        })
    }

    /// Runs a TC/socket program on an skb frame; returns r0 (`TC_ACT_OK` = 0, `SHOT` = 2, ...).
    pub fn run_skb(&mut self, frame: &mut SkbFrame) -> Result<u64, VmError> {
        self.env.begin_run();
        let ctx = frame.skb_ptr();
        self.env.ctx = ctx.cast();
        if self.env.checked {
            let skb = *frame.skb();
            self.env.memory.add(Region {
                start: ctx as u64,
                len: SK_BUFF_SIZE as u64,
                writable: false,
                kind: RegionKind::Context,
            });
            for (start, end) in skb::writable_ranges() {
                self.env.memory.add(Region {
                    start: ctx as u64 + start as u64,
                    len: (end - start) as u64,
                    writable: true,
                    kind: RegionKind::Context,
                });
            }
            self.env.memory.add(Region {
                start: skb.data_meta as u64,
                len: (skb.data_end - skb.data_meta) as u64,
                writable: true,
                kind: RegionKind::Packet,
            });
        }
        let r0 = self.dispatch(ctx as u64, 0)?;
        self.after_run();
        Ok(r0)
    }

    /// Runs the program with r1 pointing to `mem` and r2 = its length (uBPF/rbpf-style raw
    /// memory; `mem` is the context region).
    pub fn run_raw(&mut self, mem: &mut [u8]) -> Result<u64, VmError> {
        self.env.begin_run();
        let (ptr, len) = (mem.as_mut_ptr(), mem.len());
        self.env.ctx = ptr;
        if self.env.checked && len > 0 {
            self.env.memory.add(Region {
                start: ptr as u64,
                len: len as u64,
                writable: true,
                kind: RegionKind::Context,
            });
        }
        let (r1, r2) = if len == 0 {
            (0, 0)
        } else {
            (ptr as u64, len as u64)
        };
        let r0 = self.dispatch(r1, r2)?;
        self.after_run();
        Ok(r0)
    }

    /// Runs the entry program and follows tail calls.
    fn dispatch(&mut self, r1: u64, r2: u64) -> Result<u64, VmError> {
        // Map value pointers must stay valid for the whole run (maps::epoch): pinned by the
        // batch, or here for a run outside one.
        // Programs with array maps only need no pin (their values never move).
        let _pin = (self.batch.is_none() && self.vm.shared.needs_epoch).then(maps::epoch::pin);
        // The entry is kept alive by `self.vm`; only tail-call targets need a reference of
        // their own (their PROG_ARRAY slot may be replaced while they run).
        let mut held: Option<Arc<LoadedProgram>> = None;
        let mut prog: *const LoadedProgram = Arc::as_ptr(&self.vm.entry);
        loop {
            // SAFETY: `prog` is the entry (owned by self.vm) or `held`.
            let p = unsafe { &*prog };
            let r0 = match &p.jit {
                // SAFETY: the JIT code was verified by the kernel (policy `kernel`), is
                // guarded, or the user asked for `none` by name.
                Some(jit) => unsafe { jit.run(&mut self.env, r1, r2)? },
                None => self.interp.run(&p.prepared, &mut self.env, r1, r2)?,
            };
            if self.env.tail_call_pending == 0 {
                return Ok(r0);
            }
            // SAFETY: the pending tail call was set by `bpf_tail_call` from a PROG_ARRAY slot.
            let next = unsafe { take_tail_target(&mut self.env) };
            prog = Arc::as_ptr(&next);
            drop(held.replace(next));
            // r1 is the context again for the target, as in the kernel.
        }
    }

    fn after_run(&mut self) {
        self.runs += 1;
        if self.runs.is_multiple_of(QUIESCE_EVERY) {
            self.quiesce();
        }
    }

    /// Starts a batch of runs: pins this thread once for all of them (see `maps::epoch`), so
    /// that runs do not pin one by one. Memory that maps retire (deleted or replaced hash
    /// elements) cannot be freed until [`Runner::end_batch`]: keep batches short (a burst of
    /// RX descriptors). Calling it while a batch is open does nothing.
    pub fn begin_batch(&mut self) {
        if self.batch.is_none() {
            self.batch = Some(maps::epoch::pin());
        }
    }

    /// Ends the batch begun by [`Runner::begin_batch`]: unpins, letting retired map memory be
    /// freed. No pointer a program obtained during the batch may be used afterwards.
    pub fn end_batch(&mut self) {
        self.batch = None;
    }

    /// Calls [`Map::quiesce`] on every map (types that reclaim retired values that way). Call
    /// between batches when no run can hold a pointer into a map.
    pub fn quiesce(&mut self) {
        for m in &self.vm.shared.maps {
            m.quiesce();
        }
    }

    /// Lines written by `bpf_trace_printk` since the last call.
    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.env.trace_log)
    }

    /// The instance this runner executes.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }
}
