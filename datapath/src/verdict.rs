//! What happens to a frame after the program ran: the one place that maps an XDP verdict (and
//! a redirect target) to a path out of the worker.
//!
//! - `XDP_DROP`, `XDP_ABORTED` (and unknown return values, as the kernel treats them): the
//!   frame is recycled.
//! - `XDP_TX`: the frame, as resized by the program, goes out on the queue it came from.
//! - `XDP_PASS`: the frame goes to the kernel stack through the TAP device.
//! - `XDP_REDIRECT`: resolved here. A DEVMAP/DEVMAP_HASH slot or `bpf_redirect` naming the
//!   receiving interface transmits like `XDP_TX`; naming the TAP passes to the kernel; a
//!   CPUMAP target hands the frame to the kernel stack (what CPUMAP is for); an XSKMAP target,
//!   or an interface this datapath does not drive, goes to the redirect sink (a pcap file in
//!   the pcap backend; counted and released otherwise).

use std::collections::HashMap;
use std::sync::Arc;

use userxdp_runtime::context::XdpAction;
use userxdp_runtime::maps::{types, Map};
use userxdp_runtime::vm::env::Redirect;
use userxdp_runtime::vm::instance::{Vm, XdpRun};

/// The path a frame takes out of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Recycle the frame (XDP_DROP).
    Drop,
    /// Recycle and count as aborted (XDP_ABORTED or an unknown return value).
    Aborted,
    /// Transmit on the receiving queue.
    Tx,
    /// Hand to the kernel stack.
    Pass,
    /// A redirect to this datapath's own interface: transmit (counted as redirect).
    RedirectTx,
    /// A redirect to the kernel stack (TAP or CPUMAP): pass (counted as redirect).
    RedirectPass,
    /// A redirect to a target outside the datapath (XSKMAP socket, other interface): the
    /// redirect sink.
    RedirectOut,
    /// A redirect whose target cannot be resolved (empty or removed slot): lost, as in the
    /// kernel, where `xdp_do_redirect` fails.
    RedirectFailed,
}

/// Resolves redirect targets of one program instance.
#[derive(Debug)]
pub struct Verdicts {
    device_ifindex: u32,
    tap_ifindex: Option<u32>,
    /// Redirect-capable maps by the address programs hold for them.
    maps: HashMap<u64, (u32, Arc<dyn Map>)>,
}

impl Verdicts {
    /// For frames of `vm`'s program received on `device_ifindex`, with an optional TAP.
    pub fn new(vm: &Vm, device_ifindex: u32, tap_ifindex: Option<u32>) -> Verdicts {
        let maps = vm
            .maps_by_handle()
            .filter(|(_, _, m)| {
                matches!(
                    m.spec().map_type,
                    types::DEVMAP | types::DEVMAP_HASH | types::CPUMAP | types::XSKMAP
                )
            })
            .map(|(addr, _, m)| (addr, (m.spec().map_type, m.clone())))
            .collect();
        Verdicts {
            device_ifindex,
            tap_ifindex,
            maps,
        }
    }

    /// Where a frame with outcome `run` goes.
    pub fn dispose(&self, run: &XdpRun) -> Disposition {
        match run.action {
            XdpAction::Drop => Disposition::Drop,
            XdpAction::Aborted => Disposition::Aborted,
            XdpAction::Tx => Disposition::Tx,
            XdpAction::Pass => Disposition::Pass,
            XdpAction::Redirect => self.redirect(run.redirect),
        }
    }

    fn redirect(&self, target: Redirect) -> Disposition {
        match target {
            Redirect::None => Disposition::RedirectFailed,
            Redirect::Ifindex { ifindex, .. } => self.to_interface(ifindex),
            Redirect::Map { map, key, .. } => {
                let Some((map_type, map)) = self.maps.get(&map) else {
                    return Disposition::RedirectFailed;
                };
                let Ok(value) = map.read(&key.to_ne_bytes()) else {
                    return Disposition::RedirectFailed;
                };
                match *map_type {
                    types::DEVMAP | types::DEVMAP_HASH => match value.get(..4) {
                        Some(b) => self.to_interface(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                        None => Disposition::RedirectFailed,
                    },
                    types::CPUMAP => Disposition::RedirectPass,
                    _ => Disposition::RedirectOut,
                }
            }
        }
    }

    fn to_interface(&self, ifindex: u32) -> Disposition {
        if ifindex == self.device_ifindex {
            Disposition::RedirectTx
        } else if Some(ifindex) == self.tap_ifindex {
            Disposition::RedirectPass
        } else {
            Disposition::RedirectOut
        }
    }
}
