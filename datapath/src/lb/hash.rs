//! The flow hash of `programs/lb.bpf.c`, bit for bit, so that the control plane can predict
//! which backend Maglev picks for a flow.
//!
//! `hash = jhash_3words(fold(src), fold(dst), ports, proto)` where `fold` XORs the four
//! big-endian 32-bit words of the 16-byte address (IPv4 addresses are v4-mapped first) and
//! `ports = sport << 16 | dport` (sport 0 when the VIP hashes without the source port).

use std::net::IpAddr;

/// `JHASH_INITVAL` of linux/jhash.h.
const JHASH_INITVAL: u32 = 0xdead_beef;

/// linux/jhash.h `jhash_3words(a, b, c, initval)`.
pub fn jhash_3words(a: u32, b: u32, c: u32, initval: u32) -> u32 {
    let init = initval.wrapping_add(JHASH_INITVAL).wrapping_add(3 << 2);
    let (mut a, mut b, mut c) = (
        a.wrapping_add(init),
        b.wrapping_add(init),
        c.wrapping_add(init),
    );
    // __jhash_final
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

/// The 16 bytes the program keeps for an address: IPv6 as is, IPv4 v4-mapped (`::ffff:a.b.c.d`).
pub fn addr16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// XOR of the four big-endian words of a 16-byte address (`fold_addr` in the C program).
fn fold(a: [u8; 16]) -> u32 {
    a.chunks_exact(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .fold(0, |x, w| x ^ w)
}

/// A connection's 5-tuple as the load balancer sees it (the client's packet toward the VIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Client address.
    pub src: IpAddr,
    /// VIP address.
    pub dst: IpAddr,
    /// Client port.
    pub sport: u16,
    /// VIP port.
    pub dport: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
}

impl Flow {
    /// The program's flow hash; `no_src_port` mirrors the VIP's `hash_no_src_port` flag.
    pub fn hash(&self, no_src_port: bool) -> u32 {
        let sport = if no_src_port {
            0
        } else {
            u32::from(self.sport)
        };
        let ports = (sport << 16) | u32::from(self.dport);
        jhash_3words(
            fold(addr16(self.src)),
            fold(addr16(self.dst)),
            ports,
            u32::from(self.proto),
        )
    }

    /// Key of this flow in `lru_conns` (`struct flow_key`, 40 bytes).
    pub fn lru_key(&self) -> [u8; 40] {
        let mut k = [0u8; 40];
        k[..16].copy_from_slice(&addr16(self.src));
        k[16..32].copy_from_slice(&addr16(self.dst));
        k[32..34].copy_from_slice(&self.sport.to_be_bytes());
        k[34..36].copy_from_slice(&self.dport.to_be_bytes());
        k[36] = self.proto;
        k
    }
}

/// `true` for IPv4 addresses and v4-mapped IPv6 ones (how the program sees them).
pub fn is_v4(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jhash_matches_linux_jhash_h() {
        // Reference values from linux/jhash.h's jhash_3words compiled in C.
        assert_eq!(jhash_3words(0, 0, 0, 0), 459_859_287);
        assert_eq!(
            jhash_3words(0x0102_0304, 0xc612_0001, (1234 << 16) | 80, 6),
            2_998_432_698
        );
    }
}
