//! Program contexts and packet memory below 4 GiB.
//!
//! Unmodified objects read `xdp_md.data` and `data_end` as 32-bit fields and use them as
//! pointers (the kernel rewrites those loads; we do not). That works unchanged when packet
//! memory lives below 4 GiB, so frames come from [`LowMemory`], which maps with `MAP_32BIT`
//! and checks the address it got.
//!
//! Frame geometry follows the kernel's `BPF_PROG_TEST_RUN` for XDP, so that head/tail
//! adjustments succeed and fail exactly where the kernel's do: a 4096-byte frame, 256 bytes of
//! headroom, and the last 320 bytes (`skb_shared_info`) unusable as tailroom.

use std::ptr::NonNull;

/// Bytes before `data` in a fresh frame (`XDP_PACKET_HEADROOM`).
pub const XDP_HEADROOM: usize = 256;
/// Size of one frame (one page, as the kernel's test run and most drivers use).
pub const FRAME_SIZE: usize = 4096;
/// Bytes at the end of a frame reserved for `skb_shared_info` (x86-64, 6.x).
pub const SHINFO_SIZE: usize = 320;
/// `sizeof(struct xdp_frame)`: adjust_head/adjust_meta may not move data below this.
pub const XDP_FRAME_STRUCT_SIZE: usize = 40;
/// Largest packet a fresh frame can hold.
pub const MAX_PACKET: usize = FRAME_SIZE - XDP_HEADROOM - SHINFO_SIZE;
/// Ethernet header length: adjustments may not shrink a packet below it.
pub const ETH_HLEN: usize = 14;

/// XDP verdicts (`enum xdp_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XdpAction {
    /// XDP_ABORTED (0): program error; drop and count.
    Aborted,
    /// XDP_DROP (1).
    Drop,
    /// XDP_PASS (2): to the kernel stack.
    Pass,
    /// XDP_TX (3): back out the receiving port.
    Tx,
    /// XDP_REDIRECT (4): to the target chosen by a redirect helper.
    Redirect,
}

impl XdpAction {
    /// Maps a program's return value as the kernel does: unknown values are treated as
    /// ABORTED (`bpf_warn_invalid_xdp_action`).
    pub fn from_retval(r0: u64) -> XdpAction {
        match r0 as u32 {
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            _ => XdpAction::Aborted,
        }
    }

    /// The kernel's name (`XDP_DROP`, ...).
    pub fn name(self) -> &'static str {
        match self {
            XdpAction::Aborted => "XDP_ABORTED",
            XdpAction::Drop => "XDP_DROP",
            XdpAction::Pass => "XDP_PASS",
            XdpAction::Tx => "XDP_TX",
            XdpAction::Redirect => "XDP_REDIRECT",
        }
    }
}

/// `struct xdp_md` as programs see it (UAPI layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpMd {
    /// Address of the first packet byte.
    pub data: u32,
    /// Address one past the last packet byte.
    pub data_end: u32,
    /// Address of the metadata area (equal to `data` when there is none).
    pub data_meta: u32,
    /// Receiving interface.
    pub ingress_ifindex: u32,
    /// Receiving queue.
    pub rx_queue_index: u32,
    /// Target interface for devmap programs.
    pub egress_ifindex: u32,
}

/// Size of the UAPI `xdp_md` (the part programs may read).
pub const XDP_MD_SIZE: usize = std::mem::size_of::<XdpMd>();

/// The object r1 points to in an XDP run: the UAPI `xdp_md`, followed by the frame bounds that
/// helpers need (programs cannot read past `xdp_md`: the verifier limits context accesses).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XdpContext {
    /// What the program reads.
    pub md: XdpMd,
    /// `data_hard_start`: first byte of the frame.
    pub frame_start: u64,
    /// Frame size in bytes (`frame_sz`).
    pub frame_size: u32,
}

impl XdpContext {
    /// Address one past the last byte `data_end` may reach (frame end less `skb_shared_info`).
    pub fn hard_end(&self) -> u64 {
        self.frame_start + self.frame_size as u64 - SHINFO_SIZE as u64
    }
}

/// Why low memory could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LowMemoryError {
    /// mmap failed.
    #[error("mmap of {len} bytes below 4 GiB failed: {source}")]
    Map {
        /// Requested length.
        len: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel returned memory above 4 GiB (not x86-64 `MAP_32BIT` semantics).
    #[error("mmap returned {addr:#x}, above 4 GiB: 32-bit xdp_md pointers cannot reach it")]
    TooHigh {
        /// The address returned.
        addr: u64,
    },
}

/// An anonymous mapping below 4 GiB, unmapped on drop.
#[derive(Debug)]
pub struct LowMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value.
unsafe impl Send for LowMemory {}
// SAFETY: shared access only hands out raw addresses; writers synchronise externally.
unsafe impl Sync for LowMemory {}

impl LowMemory {
    /// Maps `len` zeroed bytes whose every address fits in 32 bits.
    pub fn new(len: usize) -> Result<LowMemory, LowMemoryError> {
        let len = len.max(1);
        // SAFETY: anonymous private mapping with no address hint; the result is checked.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(LowMemoryError::Map {
                len,
                source: std::io::Error::last_os_error(),
            });
        }
        let addr = raw as u64;
        if addr + len as u64 > u32::MAX as u64 {
            // SAFETY: unmapping exactly what was mapped above.
            unsafe { libc::munmap(raw, len) };
            return Err(LowMemoryError::TooHigh { addr });
        }
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or(LowMemoryError::TooHigh { addr: 0 })?;
        Ok(LowMemory { ptr, len })
    }

    /// First byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: at least one byte is mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole mapping as bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The whole mapping as mutable bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` writable bytes owned exclusively by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for LowMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this value owns.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Why a packet cannot be placed in a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than a single frame holds (multi-buffer frames are not supported here).
    #[error("packet of {len} bytes exceeds the {max}-byte frame limit")]
    TooLong {
        /// Packet length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Shorter than an Ethernet header (the kernel's test run refuses these for XDP).
    #[error("packet of {len} bytes is shorter than an Ethernet header")]
    TooShort {
        /// Packet length.
        len: usize,
    },
}

/// One XDP frame: its memory (below 4 GiB) and the context describing the packet in it.
#[derive(Debug)]
pub struct XdpFrame {
    mem: LowMemory,
    ctx: Box<XdpContext>,
}

impl XdpFrame {
    /// An empty frame with its own page of low memory.
    pub fn new() -> Result<XdpFrame, LowMemoryError> {
        let mem = LowMemory::new(FRAME_SIZE)?;
        let start = mem.as_ptr() as u64;
        let data = (start + XDP_HEADROOM as u64) as u32;
        let ctx = Box::new(XdpContext {
            md: XdpMd {
                data,
                data_end: data,
                data_meta: data,
                ingress_ifindex: 1,
                rx_queue_index: 0,
                egress_ifindex: 0,
            },
            frame_start: start,
            frame_size: FRAME_SIZE as u32,
        });
        Ok(XdpFrame { mem, ctx })
    }

    /// Resets the frame to hold `packet` after the standard headroom (no metadata).
    pub fn load(&mut self, packet: &[u8]) -> Result<(), FrameError> {
        if packet.len() > MAX_PACKET {
            return Err(FrameError::TooLong {
                len: packet.len(),
                max: MAX_PACKET,
            });
        }
        if packet.len() < ETH_HLEN {
            return Err(FrameError::TooShort { len: packet.len() });
        }
        let buf = self.mem.as_mut_slice();
        buf.fill(0);
        buf[XDP_HEADROOM..XDP_HEADROOM + packet.len()].copy_from_slice(packet);
        let data = (self.ctx.frame_start + XDP_HEADROOM as u64) as u32;
        self.ctx.md.data = data;
        self.ctx.md.data_meta = data;
        self.ctx.md.data_end = data + packet.len() as u32;
        Ok(())
    }

    /// The context (for setting `ingress_ifindex`, `rx_queue_index`).
    pub fn context_mut(&mut self) -> &mut XdpContext {
        &mut self.ctx
    }

    /// The context.
    pub fn context(&self) -> &XdpContext {
        &self.ctx
    }

    /// Address of the context, as r1 of a run.
    pub fn context_ptr(&mut self) -> *mut XdpContext {
        &mut *self.ctx
    }

    fn offset(&self, addr: u32) -> usize {
        (addr as u64).saturating_sub(self.ctx.frame_start) as usize
    }

    /// Packet bytes `[data, data_end)`.
    pub fn packet(&self) -> &[u8] {
        let (a, b) = (
            self.offset(self.ctx.md.data),
            self.offset(self.ctx.md.data_end),
        );
        self.mem.as_slice().get(a..b).unwrap_or(&[])
    }

    /// Metadata and packet `[data_meta, data_end)`: what the kernel's test run returns.
    pub fn meta_and_packet(&self) -> &[u8] {
        let (a, b) = (
            self.offset(self.ctx.md.data_meta),
            self.offset(self.ctx.md.data_end),
        );
        self.mem.as_slice().get(a..b).unwrap_or(&[])
    }

    /// The whole frame memory `[start, start + len)` as an address range.
    pub fn frame_range(&self) -> (u64, u64) {
        (self.ctx.frame_start, self.mem.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_below_4g_and_hold_packets() {
        let mut f = XdpFrame::new().unwrap();
        f.load(&[7u8; 60]).unwrap();
        assert!(f.context().frame_start + FRAME_SIZE as u64 <= u32::MAX as u64);
        assert_eq!(f.packet(), &[7u8; 60][..]);
        assert_eq!(f.context().md.data_end - f.context().md.data, 60);
        assert!(matches!(
            f.load(&[0; 5000]),
            Err(FrameError::TooLong { .. })
        ));
        assert!(matches!(
            f.load(&[0; 3]),
            Err(FrameError::TooShort { len: 3 })
        ));
    }

    #[test]
    fn unknown_retvals_abort() {
        assert_eq!(XdpAction::from_retval(3), XdpAction::Tx);
        assert_eq!(XdpAction::from_retval(77), XdpAction::Aborted);
        assert_eq!(XdpAction::from_retval(1 << 32 | 2), XdpAction::Pass);
    }
}
