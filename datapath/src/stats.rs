//! Per-worker counters, readable while the worker runs.
//!
//! A worker counts in plain integers ([`Counters`]) and publishes them once per batch into a
//! [`SharedCounters`] of relaxed atomics that other threads read: no locked instruction per
//! packet, and a reader never stops the loop (testpmd's per-port statistics work the same way).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// What one worker (or all of them, summed) has done.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        /// [`Counters`] as relaxed atomics, written by one worker, read by anyone.
        #[derive(Debug, Default)]
        pub struct SharedCounters {
            $($name: AtomicU64,)*
        }

        impl SharedCounters {
            /// Publishes `c` (called by the owning worker only).
            pub fn publish(&self, c: &Counters) {
                $(self.$name.store(c.$name, Ordering::Relaxed);)*
            }

            /// The last published values.
            pub fn read(&self) -> Counters {
                Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl std::ops::Add for Counters {
            type Output = Counters;
            fn add(self, o: Counters) -> Counters {
                Counters { $($name: self.$name + o.$name,)* }
            }
        }

        impl std::ops::Sub for Counters {
            type Output = Counters;
            fn sub(self, o: Counters) -> Counters {
                Counters { $($name: self.$name.saturating_sub(o.$name),)* }
            }
        }
    };
}

counters! {
    /// Frames received from the device.
    rx,
    /// Frames sent back out (XDP_TX, and redirects to the receiving interface).
    tx,
    /// XDP_DROP.
    drop,
    /// XDP_PASS (handed to the kernel through the TAP, or to the pass sink).
    pass,
    /// XDP_REDIRECT with a resolved target.
    redirect,
    /// XDP_ABORTED and unknown return values (the kernel's `bpf_warn_invalid_xdp_action`).
    aborted,
    /// Received frames lost for a reason other than their verdict: a run the engine stopped
    /// (fault, budget), a full TX ring, a redirect without a usable target, a failed TAP write.
    errors,
    /// Of `errors`: runs the engine stopped (fault, instruction budget).
    faults,
    /// Of `errors`: frames the TX ring had no room for.
    tx_full,
    /// Of `errors`: PASS frames the TAP (or the pass sink) did not take.
    pass_lost,
    /// Of `errors`: redirects without a usable target, or refused by the redirect sink.
    redirect_lost,
    /// Of `errors`: descriptors from the device outside one frame (or into its reserved
    /// tail).
    bad_desc,
    /// Non-empty RX batches.
    batches,
    /// Frames read from the TAP (the kernel's output) and run through the egress program.
    egress_rx,
    /// Of those, sent out on the device.
    egress_tx,
    /// Of those, dropped by the egress program (TC_ACT_SHOT and friends).
    egress_drop,
    /// Of those, lost otherwise (engine fault, no free frame, full TX ring, too long).
    egress_errors,
    /// Bytes received.
    rx_bytes,
}

impl Counters {
    /// Received frames accounted for: every frame ends in exactly one of these, so once a
    /// worker is idle this equals `rx`.
    pub fn handled(&self) -> u64 {
        self.tx + self.drop + self.pass + self.redirect + self.aborted + self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_read_round_trip() {
        let shared = SharedCounters::default();
        let c = Counters {
            rx: 5,
            tx: 2,
            drop: 3,
            ..Counters::default()
        };
        shared.publish(&c);
        assert_eq!(shared.read(), c);
        assert_eq!((c + c).rx, 10);
        assert_eq!((c - c), Counters::default());
        assert_eq!(c.handled(), 5);
    }
}
