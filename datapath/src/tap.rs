//! The exception path to the kernel: a multi-queue TAP device. XDP_PASS frames are written to
//! it (the kernel receives them as if from the wire); frames the kernel sends out through it
//! are read back, run through the egress program, and leave on the NIC.
//!
//! One TAP queue per worker, so workers never share a descriptor; the kernel picks the queue
//! of an outgoing frame by flow hash. The device is not persistent: it disappears with the
//! process, taking nothing with it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crate::device::{Sink, Source};
use crate::netdev::{self, IfReq};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_MULTI_QUEUE: i16 = 0x0100;

/// A TAP device with one descriptor per queue.
#[derive(Debug)]
pub struct Tap {
    name: String,
    ifindex: u32,
    queues: Vec<File>,
}

impl Tap {
    /// Creates (or attaches to) TAP `name` with `queues` queues, gives it `mac` and `mtu`,
    /// and brings it up.
    pub fn open(name: &str, queues: usize, mac: [u8; 6], mtu: u32) -> io::Result<Tap> {
        let mut files = Vec::with_capacity(queues);
        for _ in 0..queues.max(1) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open("/dev/net/tun")
                .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
            let mut req = IfReq::new(name)?;
            req.data[..2].copy_from_slice(&(IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE).to_ne_bytes());
            // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq matches.
            let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
            if r < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "TAP {name}: {e} (an existing device of that name must be a \
                         multi-queue TAP)"
                    ),
                ));
            }
            files.push(file);
        }
        netdev::set_mac(name, mac)?;
        netdev::set_mtu(name, mtu)?;
        netdev::set_up(name)?;
        Ok(Tap {
            name: name.to_string(),
            ifindex: netdev::ifindex(name)?,
            queues: files,
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// A handle on queue `i` for one worker (its own descriptor).
    pub fn queue(&self, i: usize) -> io::Result<TapQueue> {
        let file = self
            .queues
            .get(i)
            .ok_or_else(|| io::Error::other(format!("TAP {} has no queue {i}", self.name)))?
            .try_clone()?;
        Ok(TapQueue { file })
    }
}

/// One queue of a TAP device: a [`Sink`] towards the kernel and a [`Source`] of its output.
#[derive(Debug)]
pub struct TapQueue {
    file: File,
}

impl TapQueue {
    /// A second handle on the same queue (one for the PASS side, one for the egress side).
    pub fn try_clone(&self) -> io::Result<TapQueue> {
        Ok(TapQueue {
            file: self.file.try_clone()?,
        })
    }
}

impl Sink for TapQueue {
    fn deliver(&mut self, packet: &[u8]) -> bool {
        matches!(self.file.write(packet), Ok(n) if n == packet.len())
    }
}

impl Source for TapQueue {
    fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.file.read(buf) {
            Ok(n) if n > 0 => Some(n),
            _ => None,
        }
    }

    fn wait_fd(&self) -> Option<i32> {
        Some(self.file.as_raw_fd())
    }
}
