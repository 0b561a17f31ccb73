//! Deterministic packet corpora: crafted frames of every shape the programs parse, plus
//! truncated and random ones. Built with etherparse; all addresses in 198.18.0.0/15 and
//! 2001:db8::/32 (documentation ranges), so nothing here could route anywhere real.

use etherparse::{PacketBuilder, VlanId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn ip4(rng: &mut StdRng) -> [u8; 4] {
    [
        198,
        18 + rng.random_range(0..2u8),
        rng.random(),
        rng.random(),
    ]
}

fn ip6(rng: &mut StdRng) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    rng.fill(&mut a[8..]);
    a
}

/// Ports the test programs react to (echo, discard, DNS, HTTP, memcached) and a random one.
fn port(rng: &mut StdRng) -> u16 {
    const INTERESTING: [u16; 6] = [7, 9, 53, 80, 11211, 443];
    if rng.random_bool(0.6) {
        INTERESTING[rng.random_range(0..INTERESTING.len())]
    } else {
        rng.random()
    }
}

fn payload(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 => Vec::new(),
        1 => format!("get key{}\r\n", rng.random_range(0..100)).into_bytes(),
        2 => {
            let mut p = vec![0u8; rng.random_range(1..64)];
            rng.fill(&mut p[..]);
            p
        }
        _ => vec![0x5a; rng.random_range(64..1200)],
    }
}

/// One crafted frame of a randomly chosen shape.
pub fn crafted(rng: &mut StdRng) -> Vec<u8> {
    let (src, dst) = if rng.random_bool(0.5) {
        (MAC_A, MAC_B)
    } else {
        (MAC_B, MAC_A)
    };
    let eth = PacketBuilder::ethernet2(src, dst);
    let payload = payload(rng);
    let mut out = Vec::new();
    let vlan = rng.random_range(0..6);
    let proto = rng.random_range(0..7);
    // Build through the VLAN step only when chosen, since the builder types differ.
    macro_rules! finish {
        ($l3:expr) => {{
            let r = match proto {
                0 | 1 => $l3.udp(port(rng), port(rng)).write(&mut out, &payload),
                2 | 3 => {
                    let b = $l3.tcp(port(rng), port(rng), rng.random(), rng.random());
                    let b = if rng.random_bool(0.3) {
                        b.syn()
                    } else {
                        b.ack(rng.random())
                    };
                    b.write(&mut out, &payload)
                }
                _ => $l3
                    .icmpv4_echo_request(rng.random(), rng.random())
                    .write(&mut out, &payload),
            };
            r.is_ok()
        }};
    }
    let v6 = rng.random_bool(0.25);
    let ok = match (vlan, v6) {
        (0, false) => {
            let l3 = eth
                .single_vlan(VlanId::try_new(rng.random_range(1..4095)).unwrap_or(VlanId::ZERO))
                .ipv4(ip4(rng), ip4(rng), 64);
            finish!(l3)
        }
        (1, false) => {
            let l3 = eth
                .double_vlan(
                    VlanId::try_new(100).unwrap_or(VlanId::ZERO),
                    VlanId::try_new(200).unwrap_or(VlanId::ZERO),
                )
                .ipv4(ip4(rng), ip4(rng), 64);
            finish!(l3)
        }
        (_, false) => {
            let l3 = eth.ipv4(ip4(rng), ip4(rng), rng.random_range(1..=255));
            finish!(l3)
        }
        (_, true) => {
            let l3 = eth.ipv6(ip6(rng), ip6(rng), 64);
            let r = match proto {
                0..=2 => l3.udp(port(rng), port(rng)).write(&mut out, &payload),
                3..=5 => l3
                    .tcp(port(rng), port(rng), rng.random(), 1024)
                    .write(&mut out, &payload),
                _ => l3.icmpv6_echo_request(1, 2).write(&mut out, &payload),
            };
            r.is_ok()
        }
    };
    if !ok {
        out.clear();
        out.extend_from_slice(&[0u8; 60]);
    }
    mutate(rng, &mut out);
    out
}

/// Occasionally bends a valid frame: IPv4 options, fragment bits, bad lengths, truncation.
fn mutate(rng: &mut StdRng, pkt: &mut Vec<u8>) {
    let ipv4_at = (pkt.len() > 34 && pkt[12] == 0x08 && pkt[13] == 0x00).then_some(14);
    match rng.random_range(0..10) {
        0 if ipv4_at.is_some() => {
            // Fragment: set MF and a non-zero offset.
            pkt[20] = 0x20 | rng.random_range(0..0x1f);
            pkt[21] = rng.random();
        }
        1 if ipv4_at.is_some() => {
            // Insert 4 bytes of NOP options and fix IHL and total length.
            pkt.splice(34..34, [1u8, 1, 1, 1]);
            pkt[14] = 0x46;
            let tot = u16::from_be_bytes([pkt[16], pkt[17]]).wrapping_add(4);
            pkt[16..18].copy_from_slice(&tot.to_be_bytes());
        }
        2 => {
            // Truncate anywhere after the Ethernet header.
            let len = rng.random_range(14..=pkt.len().max(14));
            pkt.truncate(len);
        }
        3 if ipv4_at.is_some() => {
            // Lie about the IPv4 header length.
            pkt[14] = 0x40 | rng.random_range(0..16);
        }
        _ => {}
    }
    if pkt.len() < 14 {
        pkt.resize(14, 0);
    }
}

/// A frame of random bytes (14..=1514 long).
pub fn random(rng: &mut StdRng) -> Vec<u8> {
    let mut p = vec![0u8; rng.random_range(14..=1514)];
    rng.fill(&mut p[..]);
    p
}

/// `n` frames from `seed`: mostly crafted, 10% random bytes, plus fixed edge cases first
/// (minimum-size frames, an ARP request, a maximum-size frame).
pub fn corpus(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![
        vec![0u8; 14],
        {
            let mut arp = vec![0xffu8; 6];
            arp.extend_from_slice(&MAC_A);
            arp.extend_from_slice(&[0x08, 0x06]);
            arp.extend_from_slice(&[0u8; 28]);
            arp
        },
        vec![0xa5u8; userxdp_runtime::context::MAX_PACKET.min(1514)],
    ];
    while out.len() < n {
        let p = if rng.random_bool(0.1) {
            random(&mut rng)
        } else {
            crafted(&mut rng)
        };
        out.push(p);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn corpus_is_deterministic_and_well_sized() {
        let a = super::corpus(7, 500);
        assert_eq!(a, super::corpus(7, 500));
        assert_eq!(a.len(), 500);
        assert!(a.iter().all(|p| (14..=1514).contains(&p.len())));
        assert!(a.iter().any(|p| p.len() > 14 && p[12..14] == [0x86, 0xdd]));
    }
}
