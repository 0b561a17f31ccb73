//! The `__sk_buff` context of TC (and socket filter) programs.
//!
//! As with XDP, `data`, `data_end` and `data_meta` are 32-bit fields holding real addresses of
//! packet memory below 4 GiB, so unmodified bytecode runs with no load rewriting. The fields
//! the kernel derives from a frame follow `bpf_prog_test_run_skb` on the loopback device
//! (`eth_type_trans`: `protocol`, `pkt_type`; `ifindex` 1), so that results compare equal.

use crate::context::{LowMemory, LowMemoryError, FRAME_SIZE};

/// `struct __sk_buff` (UAPI layout, 192 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkBuff {
    /// Packet length.
    pub len: u32,
    /// `PACKET_HOST` (0), `BROADCAST` (1), `MULTICAST` (2), `OTHERHOST` (3).
    pub pkt_type: u32,
    /// Firewall mark (writable).
    pub mark: u32,
    /// TX queue (writable).
    pub queue_mapping: u32,
    /// Ethertype in network byte order, as `skb->protocol`.
    pub protocol: u32,
    /// Whether a hardware-accelerated VLAN tag is present.
    pub vlan_present: u32,
    /// Accelerated VLAN TCI.
    pub vlan_tci: u32,
    /// Accelerated VLAN protocol.
    pub vlan_proto: u32,
    /// Priority (writable).
    pub priority: u32,
    /// Interface the packet arrived on.
    pub ingress_ifindex: u32,
    /// Interface the packet is on.
    pub ifindex: u32,
    /// Traffic control index (writable).
    pub tc_index: u32,
    /// Control buffer shared between programs (writable).
    pub cb: [u32; 5],
    /// Flow hash.
    pub hash: u32,
    /// Traffic class id (writable).
    pub tc_classid: u32,
    /// Address of the first packet byte (the Ethernet header for TC).
    pub data: u32,
    /// Address one past the last packet byte.
    pub data_end: u32,
    /// NAPI id.
    pub napi_id: u32,
    /// Socket family (socket programs).
    pub family: u32,
    /// Socket remote IPv4 address.
    pub remote_ip4: u32,
    /// Socket local IPv4 address.
    pub local_ip4: u32,
    /// Socket remote IPv6 address.
    pub remote_ip6: [u32; 4],
    /// Socket local IPv6 address.
    pub local_ip6: [u32; 4],
    /// Socket remote port.
    pub remote_port: u32,
    /// Socket local port.
    pub local_port: u32,
    /// Address of the metadata area (equal to `data` when there is none).
    pub data_meta: u32,
    /// Flow dissector keys (flow dissector programs only).
    pub flow_keys: u64,
    /// Timestamp (writable).
    pub tstamp: u64,
    /// Length on the wire.
    pub wire_len: u32,
    /// GSO segment count.
    pub gso_segs: u32,
    /// Socket pointer (read through helpers only).
    pub sk: u64,
    /// GSO size.
    pub gso_size: u32,
    /// Timestamp type.
    pub tstamp_type: u8,
    _pad: [u8; 3],
    /// Hardware timestamp.
    pub hwtstamp: u64,
}

/// Size of the UAPI `__sk_buff`.
pub const SK_BUFF_SIZE: usize = std::mem::size_of::<SkBuff>();
const _: () = assert!(SK_BUFF_SIZE == 192);

/// Byte range `[start, end)` of `__sk_buff` fields a TC program may write (the kernel's
/// `tc_cls_act_is_valid_access`): mark, queue_mapping, priority, tc_index, cb[], tc_classid,
/// tstamp.
pub fn writable_ranges() -> [(usize, usize); 5] {
    [
        (8, 16),    // mark, queue_mapping
        (32, 36),   // priority
        (44, 68),   // tc_index, cb[0..5]
        (72, 76),   // tc_classid
        (152, 160), // tstamp
    ]
}

/// Headroom before the packet in an skb frame (the kernel's test run reserves
/// `NET_SKB_PAD + NET_IP_ALIGN`).
pub const SKB_HEADROOM: usize = 64 + 2;

/// Largest packet an skb frame holds here.
pub const MAX_SKB_PACKET: usize = FRAME_SIZE - SKB_HEADROOM;

/// Longest packet `bpf_skb_change_tail` may make (the kernel's `BPF_SKB_MAX_LEN`,
/// `SKB_MAX_ALLOC`: four pages less the aligned `skb_shared_info`).
pub const BPF_SKB_MAX_LEN: usize = 4 * 4096 - 320;

/// Bytes mapped for one skb frame: headroom plus the longest packet a program can grow to, so
/// that tail growth never moves the packet (the kernel may reallocate; programs must re-read
/// `data`/`data_end` after it either way).
pub const SKB_BUFFER_SIZE: usize = SKB_HEADROOM + BPF_SKB_MAX_LEN;

/// The object r1 points to in a TC run: the UAPI `__sk_buff` (all a program may read, as the
/// verifier limits context accesses) followed by the buffer bounds skb helpers need.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SkbContext {
    /// What the program sees.
    pub skb: SkBuff,
    /// First byte of the packet buffer (`skb->head`).
    pub head: u64,
    /// One past the last byte the packet may grow to (`skb->end`).
    pub end: u64,
    /// Bytes at the start of the packet that `bpf_skb_change_tail` may not cut
    /// (`__bpf_skb_min_len`: the network header offset, 14 after `eth_type_trans`).
    pub min_len: u32,
}

impl SkbContext {
    /// Packet length (`skb->len`, equal to `data_end - data`: frames are linear).
    pub fn packet_len(&self) -> u32 {
        self.skb.data_end.saturating_sub(self.skb.data)
    }

    /// Resizes the packet to `new_len` bytes as `bpf_skb_change_tail` does: new bytes are
    /// zeroed, `len` and `data_end` follow. Returns `false` (and changes nothing) when
    /// `new_len` is outside `[min_len, BPF_SKB_MAX_LEN]` or the buffer.
    pub fn change_tail(&mut self, new_len: u32) -> bool {
        let old = self.packet_len();
        let data = self.skb.data as u64;
        if (new_len as usize) > BPF_SKB_MAX_LEN
            || new_len < self.min_len
            || data + new_len as u64 > self.end
        {
            return false;
        }
        if new_len > old {
            // SAFETY: [data + old, data + new_len) lies inside the buffer (checked against
            // `end` above), which this context's frame owns.
            unsafe {
                std::ptr::write_bytes(
                    (data + old as u64) as usize as *mut u8,
                    0,
                    (new_len - old) as usize,
                )
            };
        }
        self.skb.len = new_len;
        self.skb.data_end = (data + new_len as u64) as u32;
        true
    }
}

/// One packet with its `__sk_buff`, as a TC program sees it.
#[derive(Debug)]
pub struct SkbFrame {
    mem: LowMemory,
    ctx: Box<SkbContext>,
}

/// Fields a caller may preset, as `BPF_PROG_TEST_RUN`'s `ctx_in` allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkbInput {
    /// `mark`.
    pub mark: u32,
    /// `priority`.
    pub priority: u32,
}

impl SkbFrame {
    /// An empty frame.
    pub fn new() -> Result<SkbFrame, LowMemoryError> {
        Ok(SkbFrame {
            mem: LowMemory::new(SKB_BUFFER_SIZE)?,
            ctx: Box::default(),
        })
    }

    /// Loads an Ethernet frame and derives the `__sk_buff` fields as the kernel's test run
    /// does on the loopback device.
    pub fn load(
        &mut self,
        packet: &[u8],
        input: SkbInput,
    ) -> Result<(), crate::context::FrameError> {
        use crate::context::{FrameError, ETH_HLEN};
        if packet.len() > MAX_SKB_PACKET {
            return Err(FrameError::TooLong {
                len: packet.len(),
                max: MAX_SKB_PACKET,
            });
        }
        if packet.len() < ETH_HLEN {
            return Err(FrameError::TooShort { len: packet.len() });
        }
        let buf = self.mem.as_mut_slice();
        // Bytes past the packet are unreachable (tail growth zeroes what it adds), so only
        // the part a previous packet may have used needs clearing.
        let used = (SKB_HEADROOM + self.ctx.packet_len() as usize).min(buf.len());
        buf[..used].fill(0);
        buf[SKB_HEADROOM..SKB_HEADROOM + packet.len()].copy_from_slice(packet);
        let head = self.mem.as_ptr() as u64;
        let data = head + SKB_HEADROOM as u64;
        self.ctx.head = head;
        self.ctx.end = head + self.mem.len() as u64;
        self.ctx.min_len = ETH_HLEN as u32;
        self.ctx.skb = SkBuff {
            len: packet.len() as u32,
            pkt_type: pkt_type(&packet[..6]),
            mark: input.mark,
            priority: input.priority,
            protocol: eth_protocol(packet) as u32,
            ifindex: 1,
            data: data as u32,
            data_end: (data + packet.len() as u64) as u32,
            data_meta: data as u32,
            wire_len: 0,
            gso_segs: 1,
            ..SkBuff::default()
        };
        Ok(())
    }

    /// The context.
    pub fn skb(&self) -> &SkBuff {
        &self.ctx.skb
    }

    /// Address of the context, as r1 of a run. It points to an [`SkbContext`], whose first
    /// field is the `__sk_buff`.
    pub fn skb_ptr(&mut self) -> *mut SkBuff {
        let ctx: *mut SkbContext = &mut *self.ctx;
        ctx.cast()
    }

    /// The context with the buffer bounds.
    pub fn context(&self) -> &SkbContext {
        &self.ctx
    }

    /// Packet bytes `[data, data_end)`.
    pub fn packet(&self) -> &[u8] {
        let base = self.mem.as_ptr() as u64;
        let a = (self.ctx.skb.data as u64).saturating_sub(base) as usize;
        let b = (self.ctx.skb.data_end as u64).saturating_sub(base) as usize;
        self.mem.as_slice().get(a..b).unwrap_or(&[])
    }
}

/// `eth_type_trans`'s packet type for the loopback device (address 00:00:00:00:00:00).
fn pkt_type(dst: &[u8]) -> u32 {
    if dst.iter().all(|&b| b == 0xff) {
        1
    } else if dst[0] & 1 != 0 {
        2
    } else if dst.iter().all(|&b| b == 0) {
        0
    } else {
        3
    }
}

/// `eth_type_trans`'s protocol, in network byte order as stored in `skb->protocol`.
fn eth_protocol(packet: &[u8]) -> u16 {
    const ETH_P_802_3_MIN: u16 = 0x0600;
    const ETH_P_802_3: u16 = 0x0001;
    const ETH_P_802_2: u16 = 0x0004;
    let proto = u16::from_be_bytes([packet[12], packet[13]]);
    let host = if proto >= ETH_P_802_3_MIN {
        proto
    } else if packet.len() >= 16 && packet[14] == 0xff && packet[15] == 0xff {
        // Raw 802.3 (Novell IPX) frames.
        ETH_P_802_3
    } else {
        ETH_P_802_2
    };
    host.to_be()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_uapi() {
        assert_eq!(std::mem::offset_of!(SkBuff, data), 76);
        assert_eq!(std::mem::offset_of!(SkBuff, data_meta), 140);
        assert_eq!(std::mem::offset_of!(SkBuff, tstamp), 152);
        assert_eq!(std::mem::offset_of!(SkBuff, hwtstamp), 184);
    }

    #[test]
    fn derives_fields_like_eth_type_trans() {
        let mut f = SkbFrame::new().unwrap();
        let mut p = vec![0u8; 60];
        p[12] = 0x08;
        f.load(
            &p,
            SkbInput {
                mark: 7,
                priority: 0,
            },
        )
        .unwrap();
        assert_eq!(f.skb().protocol, 0x0800u16.to_be() as u32);
        assert_eq!((f.skb().pkt_type, f.skb().mark, f.skb().len), (0, 7, 60));
        p[0] = 0x01;
        f.load(&p, SkbInput::default()).unwrap();
        assert_eq!(f.skb().pkt_type, 2);
        assert_eq!(f.packet(), &p[..]);
    }

    #[test]
    fn change_tail_grows_with_zeros_and_respects_limits() {
        let mut f = SkbFrame::new().unwrap();
        let p = vec![0xabu8; 60];
        f.load(&p, SkbInput::default()).unwrap();
        let mut ctx = *f.context();
        assert!(ctx.change_tail(100));
        assert!(!ctx.change_tail(13), "below the network header");
        assert!(!ctx.change_tail(BPF_SKB_MAX_LEN as u32 + 1));
        f.ctx.skb = ctx.skb;
        assert_eq!(f.skb().len, 100);
        assert_eq!(&f.packet()[..60], &p[..]);
        assert!(f.packet()[60..].iter().all(|&b| b == 0));
        let mut ctx = *f.context();
        assert!(ctx.change_tail(BPF_SKB_MAX_LEN as u32));
        assert!(ctx.change_tail(14));
        f.ctx.skb = ctx.skb;
        assert_eq!(f.packet(), &p[..14]);
        // A reload after growth leaves no trace of the grown bytes.
        f.load(&p[..20], SkbInput::default()).unwrap();
        assert_eq!(f.packet(), &p[..20]);
    }
}
