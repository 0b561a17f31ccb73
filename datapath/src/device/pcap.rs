//! The pcap backend: frames come from a capture instead of a NIC; what would be transmitted
//! is written to a capture (`tx.pcap`), so a program's whole datapath behaviour can be run,
//! inspected in Wireshark and tested without privileges.

use std::io;
use std::path::Path;

use super::{FreeFrames, PcapSink, Port, Sink};
use crate::area::{Desc, FrameArea};
use crate::capture::{CaptureError, CapturedFrame};

/// One queue fed from captured frames.
pub struct PcapPort {
    area: FrameArea,
    free: FreeFrames,
    input: std::vec::IntoIter<CapturedFrame>,
    tx: PcapSink,
    /// Input frames that could not be placed (too long for a frame, shorter than Ethernet).
    skipped: u64,
    ifindex: u32,
    queue: u32,
}

impl PcapPort {
    /// A port that receives `frames` in order and writes transmitted frames to `tx_path`.
    pub fn new(
        frames: Vec<CapturedFrame>,
        tx_path: &Path,
        area_frames: u32,
        ifindex: u32,
        queue: u32,
    ) -> Result<PcapPort, CaptureError> {
        let area = FrameArea::new(area_frames).map_err(|e| CaptureError::Io {
            path: tx_path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        Ok(PcapPort {
            free: FreeFrames::all(&area),
            area,
            input: frames.into_iter(),
            tx: PcapSink::create(tx_path)?,
            skipped: 0,
            ifindex,
            queue,
        })
    }

    /// Input frames that could not be received (longer than a frame holds, or shorter than
    /// an Ethernet header, which no NIC delivers).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl Port for PcapPort {
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
        let mut taken = 0;
        while taken < max {
            let Some(slot) = self.free.pop() else { break };
            let Some(frame) = self.input.next() else {
                self.free.push(slot);
                break;
            };
            match self.area.write(slot, &frame.data) {
                Some(desc) if frame.data.len() >= userxdp_runtime::context::ETH_HLEN => {
                    rx.push(desc);
                    taken += 1;
                }
                _ => {
                    self.free.push(slot);
                    self.skipped += 1;
                }
            }
        }
        Ok(())
    }

    fn transmit(&mut self, tx: &[Desc]) -> io::Result<usize> {
        for d in tx {
            self.tx.deliver(self.area.bytes(*d));
            self.free.push(d.addr);
        }
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
        self.input.len() == 0
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tx.flush()
    }
}
