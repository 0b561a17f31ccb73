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

/// One packet with its `__sk_buff`, as a TC program sees it.
#[derive(Debug)]
pub struct SkbFrame {
    mem: LowMemory,
    skb: Box<SkBuff>,
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
            mem: LowMemory::new(FRAME_SIZE)?,
            skb: Box::default(),
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
        buf.fill(0);
        buf[SKB_HEADROOM..SKB_HEADROOM + packet.len()].copy_from_slice(packet);
        let data = self.mem.as_ptr() as u64 + SKB_HEADROOM as u64;
        *self.skb = SkBuff {
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
        &self.skb
    }

    /// Address of the context, as r1 of a run.
    pub fn skb_ptr(&mut self) -> *mut SkBuff {
        &mut *self.skb
    }

    /// Packet bytes `[data, data_end)`.
    pub fn packet(&self) -> &[u8] {
        let base = self.mem.as_ptr() as u64;
        let a = (self.skb.data as u64).saturating_sub(base) as usize;
        let b = (self.skb.data_end as u64).saturating_sub(base) as usize;
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
}
