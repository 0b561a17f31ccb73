//! The in-memory generator backend: a fixed set of packets received over and over, a bounded
//! number of times, and transmitted frames counted and recycled. Used to benchmark and test
//! the worker loop and a program without a NIC or any system call on the fast path.

use std::io;

use super::{FreeFrames, Port};
use crate::area::{Desc, FrameArea};

/// One queue receiving copies of template packets.
pub struct MemoryPort {
    area: FrameArea,
    free: FreeFrames,
    templates: Vec<Vec<u8>>,
    next: usize,
    remaining: u64,
    transmitted: u64,
    ifindex: u32,
    queue: u32,
}

impl MemoryPort {
    /// A port that receives `count` packets, cycling through `templates` (which must be
    /// non-empty, each between 14 bytes and what a frame holds).
    pub fn new(
        templates: Vec<Vec<u8>>,
        count: u64,
        area_frames: u32,
        ifindex: u32,
        queue: u32,
    ) -> io::Result<MemoryPort> {
        let limit = userxdp_runtime::context::MAX_PACKET;
        if templates.is_empty() {
            return Err(io::Error::other("generator needs at least one packet"));
        }
        if let Some((i, t)) = templates
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() < userxdp_runtime::context::ETH_HLEN || t.len() > limit)
        {
            return Err(io::Error::other(format!(
                "generator packet {i} has {} bytes (must be 14..={limit})",
                t.len()
            )));
        }
        let area = FrameArea::new(area_frames).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(MemoryPort {
            free: FreeFrames::all(&area),
            area,
            templates,
            next: 0,
            remaining: count,
            transmitted: 0,
            ifindex,
            queue,
        })
    }

    /// Frames transmitted so far.
    pub fn transmitted(&self) -> u64 {
        self.transmitted
    }
}

impl Port for MemoryPort {
    fn area(&self) -> &FrameArea {
        &self.area
    }

    fn area_mut(&mut self) -> &mut FrameArea {
        &mut self.area
    }

    fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn queue(&self) -> u32 {
        self.queue
    }

    fn receive(&mut self, rx: &mut Vec<Desc>, max: usize) -> io::Result<()> {
        for _ in 0..max {
            if self.remaining == 0 {
                break;
            }
            let Some(slot) = self.free.pop() else { break };
            let packet = &self.templates[self.next];
            self.next = (self.next + 1) % self.templates.len();
            self.remaining -= 1;
            match self.area.write(slot, packet) {
                Some(desc) => rx.push(desc),
                // Unreachable: template sizes are checked in new().
                None => self.free.push(slot),
            }
        }
        Ok(())
    }

    fn transmit(&mut self, tx: &[Desc]) -> io::Result<usize> {
        for d in tx {
            self.free.push(d.addr);
        }
        self.transmitted += tx.len() as u64;
        Ok(tx.len())
    }

    fn release(&mut self, addr: u64) {
        self.free.push(addr);
    }

    fn alloc(&mut self) -> Option<u64> {
        self.free.pop()
    }

    fn service(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn finished(&self) -> bool {
        self.remaining == 0
    }
}
