//! Packet memory of one queue: a run of 4096-byte frames below 4 GiB.
//!
//! Every backend keeps its frames here, so that a worker runs the program on the frame where
//! it arrived (for AF_XDP: the UMEM chunk the kernel wrote) and unmodified objects can use the
//! 32-bit `xdp_md.data`/`data_end` fields as pointers. Frames are named by their byte offset
//! in the area, as AF_XDP descriptors name them.

use userxdp_runtime::context::{
    LowMemory, LowMemoryError, XdpContext, XdpMd, FRAME_SIZE, SHINFO_SIZE, XDP_HEADROOM,
};

/// One packet in an area: where its first byte is and how long it is (an AF_XDP descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    /// Offset of the packet's first byte from the start of the area.
    pub addr: u64,
    /// Packet length in bytes.
    pub len: u32,
}

/// Frames of [`FRAME_SIZE`] bytes in one mapping below 4 GiB.
#[derive(Debug)]
pub struct FrameArea {
    mem: LowMemory,
    frames: u32,
}

impl FrameArea {
    /// An area of `frames` frames.
    pub fn new(frames: u32) -> Result<FrameArea, LowMemoryError> {
        let mem = LowMemory::new(frames.max(1) as usize * FRAME_SIZE)?;
        Ok(FrameArea {
            mem,
            frames: frames.max(1),
        })
    }

    /// Number of frames.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Address of the first byte of the area.
    pub fn base(&self) -> u64 {
        self.mem.as_ptr() as u64
    }

    /// The whole area, for registering it as an AF_XDP UMEM.
    pub fn as_raw(&self) -> std::ptr::NonNull<[u8]> {
        let slice = std::ptr::slice_from_raw_parts_mut(self.mem.as_ptr(), self.mem.len());
        // SAFETY: the mapping is non-null (LowMemory checked it).
        unsafe { std::ptr::NonNull::new_unchecked(slice) }
    }

    /// Offset of the frame holding offset `addr`.
    pub fn frame_of(addr: u64) -> u64 {
        addr & !(FRAME_SIZE as u64 - 1)
    }

    /// Offsets of every frame, in order.
    pub fn all_frames(&self) -> impl DoubleEndedIterator<Item = u64> {
        (0..self.frames as u64).map(|i| i * FRAME_SIZE as u64)
    }

    /// Whether `desc` lies inside one frame of this area, below the reserved tail
    /// (`skb_shared_info`), so that a program may run on it.
    pub fn holds(&self, desc: Desc) -> bool {
        let frame = Self::frame_of(desc.addr);
        frame < self.frames as u64 * FRAME_SIZE as u64
            && desc.addr + desc.len as u64 <= frame + (FRAME_SIZE - SHINFO_SIZE) as u64
    }

    /// The XDP context for a received packet: the frame is the whole chunk, the packet's
    /// headroom is whatever lies before it in the chunk (AF_XDP gives at least 256 bytes).
    /// `desc` must satisfy [`FrameArea::holds`].
    pub fn context(&self, desc: Desc, ingress_ifindex: u32, rx_queue_index: u32) -> XdpContext {
        let data = (self.base() + desc.addr) as u32;
        XdpContext {
            md: XdpMd {
                data,
                data_end: data + desc.len,
                data_meta: data,
                ingress_ifindex,
                rx_queue_index,
                egress_ifindex: 0,
            },
            frame_start: self.base() + Self::frame_of(desc.addr),
            frame_size: FRAME_SIZE as u32,
        }
    }

    /// The packet a context describes after a run, as a descriptor (data to data_end).
    pub fn desc_of(&self, ctx: &XdpContext) -> Desc {
        Desc {
            addr: ctx.md.data as u64 - self.base(),
            len: ctx.md.data_end - ctx.md.data,
        }
    }

    /// The bytes of `desc`; empty when it is outside the area.
    pub fn bytes(&self, desc: Desc) -> &[u8] {
        let (a, b) = (desc.addr as usize, desc.addr as usize + desc.len as usize);
        self.mem.as_slice().get(a..b).unwrap_or(&[])
    }

    /// Copies `packet` into frame `frame` after the standard headroom; `None` when it does not
    /// fit (longer than a frame holds).
    pub fn write(&mut self, frame: u64, packet: &[u8]) -> Option<Desc> {
        let desc = Desc {
            addr: frame + XDP_HEADROOM as u64,
            len: u32::try_from(packet.len()).ok()?,
        };
        if !self.holds(desc) {
            return None;
        }
        let start = desc.addr as usize;
        self.mem.as_mut_slice()[start..start + packet.len()].copy_from_slice(packet);
        Some(desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_hold_packets_below_4g() {
        let mut area = FrameArea::new(4).unwrap();
        assert!(area.base() + 4 * FRAME_SIZE as u64 <= u32::MAX as u64);
        let d = area.write(2 * FRAME_SIZE as u64, &[1, 2, 3]).unwrap();
        assert_eq!(area.bytes(d), &[1, 2, 3]);
        let ctx = area.context(d, 7, 1);
        assert_eq!(ctx.frame_start, area.base() + 2 * FRAME_SIZE as u64);
        assert_eq!(ctx.md.data_end - ctx.md.data, 3);
        assert_eq!(area.desc_of(&ctx), d);
        assert!(area.write(0, &[0; FRAME_SIZE]).is_none());
        assert!(!area.holds(Desc {
            addr: 4 * FRAME_SIZE as u64,
            len: 1
        }));
    }
}
