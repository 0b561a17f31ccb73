//! Kernel helpers, by kernel ID, in one table.
//!
//! Every helper has the signature [`HelperFn`]: five eBPF argument registers and the run
//! environment. The interpreter and the JIT call the same functions. A helper that rejects its
//! arguments (checked runs only) calls [`RunEnv::raise`] and returns 0; the engine then stops.

mod control;
mod csum;
mod foreach;
mod lock;
mod maps;
mod misc;
mod names;
mod perf;
mod queue;
mod ringbuf;
mod skb;
mod xdp;

use crate::vm::env::RunEnv;

pub use control::MAX_TAIL_CALLS;
pub use csum::csum_partial;
pub use names::kernel_name;

/// The calling convention of a helper: r1..r5 and the environment; the result goes to r0.
pub type HelperFn =
    unsafe extern "C" fn(r1: u64, r2: u64, r3: u64, r4: u64, r5: u64, env: *mut RunEnv) -> u64;

/// One helper implementation.
#[derive(Debug)]
pub struct Helper {
    /// Kernel helper ID (`BPF_FUNC_*`).
    pub id: i32,
    /// Kernel name without the `bpf_` prefix.
    pub name: &'static str,
    /// The implementation.
    pub func: HelperFn,
}

/// The helper with kernel ID `id`, if the runtime implements it.
pub fn get(id: i32) -> Option<&'static Helper> {
    TABLE.iter().find(|h| h.id == id)
}

/// Every implemented helper.
pub fn all() -> &'static [Helper] {
    TABLE
}

macro_rules! helpers {
    ($($id:literal => $name:literal, $func:path;)*) => {
        static TABLE: &[Helper] = &[$(Helper { id: $id, name: $name, func: $func },)*];
    };
}

helpers! {
    1 => "map_lookup_elem", maps::map_lookup_elem;
    2 => "map_update_elem", maps::map_update_elem;
    3 => "map_delete_elem", maps::map_delete_elem;
    5 => "ktime_get_ns", misc::ktime_get_ns;
    6 => "trace_printk", misc::trace_printk;
    7 => "get_prandom_u32", misc::get_prandom_u32;
    8 => "get_smp_processor_id", misc::get_smp_processor_id;
    9 => "skb_store_bytes", skb::skb_store_bytes;
    10 => "l3_csum_replace", skb::l3_csum_replace;
    11 => "l4_csum_replace", skb::l4_csum_replace;
    12 => "tail_call", control::tail_call;
    23 => "redirect", xdp::redirect;
    25 => "perf_event_output", perf::perf_event_output;
    26 => "skb_load_bytes", skb::skb_load_bytes;
    28 => "csum_diff", csum::csum_diff;
    38 => "skb_change_tail", skb::skb_change_tail;
    44 => "xdp_adjust_head", xdp::xdp_adjust_head;
    51 => "redirect_map", xdp::redirect_map;
    54 => "xdp_adjust_meta", xdp::xdp_adjust_meta;
    65 => "xdp_adjust_tail", xdp::xdp_adjust_tail;
    93 => "spin_lock", lock::spin_lock;
    94 => "spin_unlock", lock::spin_unlock;
    87 => "map_push_elem", queue::map_push_elem;
    88 => "map_pop_elem", queue::map_pop_elem;
    89 => "map_peek_elem", queue::map_peek_elem;
    125 => "ktime_get_boot_ns", misc::ktime_get_boot_ns;
    130 => "ringbuf_output", ringbuf::ringbuf_output;
    131 => "ringbuf_reserve", ringbuf::ringbuf_reserve;
    132 => "ringbuf_submit", ringbuf::ringbuf_submit;
    133 => "ringbuf_discard", ringbuf::ringbuf_discard;
    134 => "ringbuf_query", ringbuf::ringbuf_query;
    164 => "for_each_map_elem", foreach::for_each_map_elem;
    181 => "loop", control::bpf_loop;
    189 => "xdp_load_bytes", xdp::xdp_load_bytes;
    190 => "xdp_store_bytes", xdp::xdp_store_bytes;
}
