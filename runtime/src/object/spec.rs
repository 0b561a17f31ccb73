//! What an object file declares: programs and maps, as plain values.
//!
//! Specs are pure data produced by the ELF parser; nothing here touches the running system.
//! Instantiation (map memory, JIT code, kernel verification) happens later, in `vm` and `maps`.

use crate::vm::insn::Insn;

/// The kernel's program types that matter here (`enum bpf_prog_type`), by numeric value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER` (1), `__sk_buff` context.
    SocketFilter,
    /// `BPF_PROG_TYPE_SCHED_CLS` (3): TC classifier, `__sk_buff` context.
    SchedCls,
    /// `BPF_PROG_TYPE_SCHED_ACT` (4): TC action, `__sk_buff` context.
    SchedAct,
    /// `BPF_PROG_TYPE_XDP` (6): `xdp_md` context.
    Xdp,
    /// Any other kernel program type, kept by number (loadable, not runnable here).
    Other(u32),
}

impl ProgramType {
    /// The kernel's numeric program type.
    pub fn kernel_id(self) -> u32 {
        match self {
            ProgramType::SocketFilter => 1,
            ProgramType::SchedCls => 3,
            ProgramType::SchedAct => 4,
            ProgramType::Xdp => 6,
            ProgramType::Other(n) => n,
        }
    }

    /// Whether the program's context is a `__sk_buff`.
    pub fn uses_skb(self) -> bool {
        matches!(
            self,
            ProgramType::SocketFilter | ProgramType::SchedCls | ProgramType::SchedAct
        )
    }
}

/// Where a TC or XDP program expects to attach, when the section name says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachPoint {
    /// Unspecified by the section.
    Any,
    /// `tc/ingress`, `tc`, `classifier` (libbpf treats plain `tc` as any).
    TcIngress,
    /// `tc/egress`.
    TcEgress,
    /// `xdp/devmap` programs run on a DEVMAP redirect.
    XdpDevmap,
    /// `xdp/cpumap` programs run on a CPUMAP redirect.
    XdpCpumap,
}

/// A program: its linked instructions and the relocations still to resolve at load.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramSpec {
    /// Function symbol name.
    pub name: String,
    /// ELF section the program came from (`xdp`, `tc/egress`, ...).
    pub section: String,
    /// Program type, from the section name or an explicit override.
    pub prog_type: ProgramType,
    /// Attach point hinted by the section name.
    pub attach: AttachPoint,
    /// Whether the section asks for multi-buffer XDP (`xdp.frags`).
    pub xdp_frags: bool,
    /// Instructions: the program followed by every `.text` subprogram it calls (transitively),
    /// with local-call offsets fixed for this layout, as libbpf links them.
    pub insns: Vec<Insn>,
    /// ld_imm64 instructions that reference maps.
    pub map_relocs: Vec<MapReloc>,
    /// Entry points (instruction indices) of the appended subprograms, with their names.
    pub subprograms: Vec<(usize, String)>,
}

/// An ld_imm64 that must be pointed at a map or into a map's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapReloc {
    /// Index of the ld_imm64 (first slot) in [`ProgramSpec::insns`].
    pub insn: usize,
    /// Index of the map in [`ObjectSpec::maps`].
    pub map: usize,
    /// Reference kind.
    pub kind: MapRefKind,
}

/// How an ld_imm64 refers to a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRefKind {
    /// The map itself (`BPF_PSEUDO_MAP_FD`): helpers take it as their map argument.
    Map,
    /// A pointer `offset` bytes into the map's single value (`BPF_PSEUDO_MAP_VALUE`): global
    /// data in `.data`, `.rodata`, `.bss`.
    Value {
        /// Byte offset into the value.
        offset: u32,
    },
}

/// Whether and how a map is pinned in bpffs (`LIBBPF_PIN_BY_NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pinning {
    /// Not pinned.
    #[default]
    None,
    /// Pinned by name under the pin root.
    ByName,
}

/// A map declaration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MapSpec {
    /// Map name (symbol name, or `.rodata` etc. for global data).
    pub name: String,
    /// Kernel map type number (`enum bpf_map_type`).
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum number of entries.
    pub max_entries: u32,
    /// `map_flags` (`BPF_F_NO_PREALLOC`, `BPF_F_RDONLY_PROG`, `BPF_F_MMAPABLE`, ...).
    pub flags: u32,
    /// Inner map template for ARRAY_OF_MAPS / HASH_OF_MAPS.
    pub inner: Option<Box<MapSpec>>,
    /// Initial contents of the single value of a global-data map.
    pub data: Option<Vec<u8>>,
    /// Pinning requested by the object.
    pub pinning: Pinning,
    /// Whether this map holds `.data`/`.rodata`/`.bss` (kept at full size when verifying).
    pub global_data: bool,
    /// BTF type id of the key, when the object has BTF.
    pub btf_key_type_id: u32,
    /// BTF type id of the value, when the object has BTF.
    pub btf_value_type_id: u32,
    /// Byte offset of the `struct bpf_spin_lock` in the value, when the value has one (from
    /// BTF): map updates leave that word alone and user reads show it as 0, as the kernel's
    /// `copy_map_value` does, and `BPF_F_LOCK` updates take it.
    pub spin_lock_offset: Option<u32>,
    /// Slots of a PROG_ARRAY initialized statically in C (libbpf's `.values = { [i] = &prog }`),
    /// as (slot, program function name), in slot order; empty for other maps.
    pub initial_slots: Vec<(u32, String)>,
}

/// Everything an object file declares.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSpec {
    /// `license` section contents.
    pub license: String,
    /// Maps in declaration order; [`MapReloc::map`] indexes this.
    pub maps: Vec<MapSpec>,
    /// Programs in section order.
    pub programs: Vec<ProgramSpec>,
}

impl ObjectSpec {
    /// Finds a program by function name or, failing that, by section name.
    pub fn program(&self, name: &str) -> Option<&ProgramSpec> {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .or_else(|| self.programs.iter().find(|p| p.section == name))
    }

    /// Finds a map by name.
    pub fn map(&self, name: &str) -> Option<&MapSpec> {
        self.maps.iter().find(|m| m.name == name)
    }
}
