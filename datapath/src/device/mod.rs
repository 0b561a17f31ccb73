//! Where frames come from and go to: one [`Port`] per queue, behind the same worker loop.
//!
//! - [`afxdp`]: an AF_XDP socket on a NIC queue (the product);
//! - [`pcap`]: frames read from a capture, outputs written to captures;
//! - [`memory`]: an in-memory generator, for benchmarks and tests without a NIC.
//!
//! A port owns a [`FrameArea`] and every frame in it; the worker borrows frames between
//! [`Port::receive`] and [`Port::transmit`]/[`Port::release`]. Frames that leave the datapath
//! by copy (PASS to the kernel, redirects elsewhere) go to a [`Sink`]; frames the kernel sends
//! out through the TAP come from a [`Source`].

pub mod afxdp;
pub mod memory;
pub mod pcap;

use std::io;

use crate::area::{Desc, FrameArea};

/// One queue of a device.
pub trait Port: Send {
    /// The packet memory of this queue.
    fn area(&self) -> &FrameArea;

    /// The packet memory of this queue, to place a packet in a frame from [`Port::alloc`].
    fn area_mut(&mut self) -> &mut FrameArea;

    /// The interface index programs see as `ingress_ifindex`.
    fn ifindex(&self) -> u32;

    /// The queue programs see as `rx_queue_index`.
    fn queue(&self) -> u32;

    /// Appends up to `max` received packets to `rx`; their frames now belong to the caller.
    fn receive(&mut self, rx: &mut Vec<Desc>, max: usize) -> io::Result<()>;

    /// Sends a prefix of `tx` and returns its length; the frames of that prefix belong to the
    /// port again, the rest still to the caller.
    fn transmit(&mut self, tx: &[Desc]) -> io::Result<usize>;

    /// Gives a frame (any address inside it) back to the port.
    fn release(&mut self, addr: u64);

    /// A free frame for a packet from elsewhere (the TAP), if one can be spared.
    fn alloc(&mut self) -> Option<u64>;

    /// Housekeeping once per loop: reap TX completions, refill the receive side, wake the
    /// kernel when it asks to be woken.
    fn service(&mut self) -> io::Result<()>;

    /// True when no frame will ever be received again (finite inputs); the worker stops once
    /// it has nothing in flight.
    fn finished(&self) -> bool {
        false
    }

    /// Flushes buffered output (captures); called when the worker stops.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// A descriptor that becomes readable when frames arrive, for an idle worker to sleep
    /// on instead of spinning; `None` when the port cannot be waited for.
    fn wait_fd(&self) -> Option<i32> {
        None
    }

    /// False while the port has work in flight that needs the worker (frames not yet handed
    /// to the kernel for transmission): the worker keeps spinning instead of sleeping.
    fn can_sleep(&self) -> bool {
        true
    }
}

/// Takes copies of frames leaving the datapath (to the kernel stack, to a capture).
pub trait Sink: Send {
    /// Delivers one packet; false when it was lost (full queue, write error).
    fn deliver(&mut self, packet: &[u8]) -> bool;

    /// Flushes buffered output; called when the worker stops.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Gives frames entering the datapath from the side (the kernel's output through the TAP).
pub trait Source: Send {
    /// Reads one packet into `buf` and returns its length, or `None` when none is waiting.
    fn read(&mut self, buf: &mut [u8]) -> Option<usize>;

    /// A descriptor that becomes readable when a packet is waiting.
    fn wait_fd(&self) -> Option<i32> {
        None
    }
}

/// A sink that only counts: frames are accepted and dropped (no TAP, no capture asked for).
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn deliver(&mut self, _: &[u8]) -> bool {
        true
    }
}

/// A sink that writes a pcap file, with timestamps relative to its creation.
pub struct PcapSink {
    out: Option<crate::capture::PcapOut>,
    start: std::time::Instant,
    failed: bool,
}

impl PcapSink {
    /// Creates (truncates) `path`.
    pub fn create(path: &std::path::Path) -> Result<PcapSink, crate::capture::CaptureError> {
        Ok(PcapSink {
            out: Some(crate::capture::PcapOut::create(path)?),
            start: std::time::Instant::now(),
            failed: false,
        })
    }
}

impl Sink for PcapSink {
    fn deliver(&mut self, packet: &[u8]) -> bool {
        let ok = match &mut self.out {
            Some(out) => out.write(self.start.elapsed(), packet).is_ok(),
            None => false,
        };
        self.failed |= !ok;
        ok
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("a frame could not be written"));
        }
        match self.out.take() {
            Some(out) => out.finish(),
            None => Ok(()),
        }
    }
}

/// A free list of frames, shared by the backends.
#[derive(Debug, Default)]
pub(crate) struct FreeFrames {
    frames: Vec<u64>,
}

impl FreeFrames {
    /// Every frame of `area`.
    pub(crate) fn all(area: &FrameArea) -> FreeFrames {
        FreeFrames {
            frames: area.all_frames().rev().collect(),
        }
    }

    pub(crate) fn push(&mut self, addr: u64) {
        self.frames.push(FrameArea::frame_of(addr));
    }

    pub(crate) fn pop(&mut self) -> Option<u64> {
        self.frames.pop()
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }
}
