//! Control plane of `programs/lb.bpf.c`, the katran-style L4 load balancer: builds Maglev
//! tables from a configuration and writes every map the program reads, into the userspace VM's
//! maps or a kernel-loaded copy alike (through [`MapWriter`]).
//!
//! Maps and their layouts (all integers host order unless marked network order):
//!
//! | map | type | key | value |
//! |---|---|---|---|
//! | `vip_map` | HASH, 512 | `vip_key` 20 B: addr\[16\] (v4-mapped), port (net, 0 = any), proto, pad | `vip_meta` 8 B: vip_num u32, flags u32 (`VIP_F_HASH_NO_SRC_PORT`) |
//! | `ch_rings` | ARRAY, `MAX_VIPS * RING_SIZE` | u32 `vip_num * RING_SIZE + hash % RING_SIZE` | u32 real index (0 = none) |
//! | `reals` | ARRAY, `MAX_REALS` | u32 index | `real_def` 20 B: addr\[16\] (v4 in the first 4), flags u32 (`REAL_F_IPV6`) |
//! | `lru_conns` | LRU_HASH, 65536 | `flow_key` 40 B: src\[16\], dst\[16\], sport, dport (net), proto, pad\[3\] | `conn_val` 16 B: real u32, pad u32, atime u64 (UDP only) |
//! | `lb_config` | ARRAY, 1 | 0 | `lb_config` 28 B: router_mac\[6\], pad\[2\], src4_prefix (net), src6_prefix\[16\] |
//! | `lb_stats` | PERCPU_ARRAY, `MAX_VIPS + 1` | vip_num, or `MAX_VIPS` for the global slot | [`LbStats`]: 8 × u64 |

pub mod config;
pub mod hash;
pub mod maglev;
mod plan;
pub mod targets;
mod writer;

pub use config::{BackendConfig, ConfigError, LbConfig, Proto, VipConfig};
pub use hash::Flow;
pub use plan::{decode_real, real_def, vip_key, Plan, VipPlan};
pub use writer::{apply, apply_plan, read_reals, ApplyError, MapWriter, VmMaps};

/// VIPs the program's ring and stats tables hold (`LB_MAX_VIPS`).
pub const MAX_VIPS: usize = 16;
/// Maglev table size per VIP, a prime (`LB_RING_SIZE`).
pub const RING_SIZE: usize = 65537;
/// Entries of `reals` (`LB_MAX_REALS`); index 0 means "no backend".
pub const MAX_REALS: usize = 4096;
/// `vip_meta.flags`: hash without the source port.
pub const VIP_F_HASH_NO_SRC_PORT: u32 = 1;
/// `real_def.flags`: the real is IPv6 (IP6IP6 encapsulation).
pub const REAL_F_IPV6: u32 = 1;
/// Index of the global counters in `lb_stats`.
pub const GLOBAL_STATS: u32 = MAX_VIPS as u32;

/// One `struct lb_stats` (per CPU in the map; [`LbStats::sum_percpu`] adds the CPUs up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LbStats {
    /// Packets (global slot: every packet the program saw).
    pub packets: u64,
    /// Bytes of those packets (frame length before encapsulation).
    pub bytes: u64,
    /// Backend found in `lru_conns`.
    pub lru_hits: u64,
    /// Backend chosen by the Maglev ring (TCP SYN, new or expired flow).
    pub lru_misses: u64,
    /// `bpf_xdp_adjust_head` failed: dropped.
    pub encap_fail: u64,
    /// The VIP has no backend: dropped.
    pub no_real: u64,
    /// ICMP / ICMPv6 passed to the stack (global slot only).
    pub icmp: u64,
    /// Passed: not for a VIP or not balanceable (global slot only).
    pub non_vip: u64,
}

impl LbStats {
    /// Size of one CPU's value.
    pub const SIZE: usize = 64;

    /// Sums the per-CPU values of a PERCPU_ARRAY read (each CPU's 64 bytes, concatenated).
    pub fn sum_percpu(bytes: &[u8]) -> LbStats {
        let mut s = LbStats::default();
        for cpu in bytes.chunks_exact(Self::SIZE) {
            let f = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&cpu[i * 8..i * 8 + 8]);
                u64::from_ne_bytes(w)
            };
            s.packets += f(0);
            s.bytes += f(1);
            s.lru_hits += f(2);
            s.lru_misses += f(3);
            s.encap_fail += f(4);
            s.no_real += f(5);
            s.icmp += f(6);
            s.non_vip += f(7);
        }
        s
    }
}
