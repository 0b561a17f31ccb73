//! The running program pair (ingress XDP, optional egress TC), swappable while workers run.
//!
//! A reload publishes a new pair and bumps the generation; each worker compares the
//! generation with its own once per loop turn (one relaxed load, no lock) and, when it moved,
//! takes the new pair under a short lock and rebuilds its runners between two batches. No
//! frame is dropped: frames waiting in the rings are simply run by the new program. The maps
//! the new instance shares with the old one ([`Vm::reload`]) keep their state throughout.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use userxdp_runtime::vm::instance::Vm;

/// The ingress program and the optional egress program, instantiated over the same maps.
#[derive(Debug, Clone)]
pub struct ProgramPair {
    /// The XDP program run on received frames.
    pub ingress: Vm,
    /// The TC program run on frames the kernel sends out through the TAP.
    pub egress: Option<Vm>,
}

/// The current pair and its generation.
#[derive(Debug)]
pub struct ProgramSlot {
    generation: AtomicU64,
    current: Mutex<ProgramPair>,
}

impl ProgramSlot {
    /// A slot holding `pair` as generation 0.
    pub fn new(pair: ProgramPair) -> ProgramSlot {
        ProgramSlot {
            generation: AtomicU64::new(0),
            current: Mutex::new(pair),
        }
    }

    /// The generation workers compare against.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current pair and its generation.
    pub fn get(&self) -> (ProgramPair, u64) {
        let pair = self.current.lock();
        (pair.clone(), self.generation.load(Ordering::Acquire))
    }

    /// Publishes `pair`; workers switch at their next loop turn. Returns the new generation.
    pub fn publish(&self, pair: ProgramPair) -> u64 {
        let mut current = self.current.lock();
        *current = pair;
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}
