//! The load balancer's configuration file (JSON): VIPs, their backends and weights, and the
//! encapsulation parameters.
//!
//! ```json
//! {
//!   "router_mac": "02:00:00:00:00:01",
//!   "src4_prefix": "198.19.0.0",
//!   "src6_prefix": "2001:db8:ffff::",
//!   "vips": [
//!     { "addr": "198.18.0.10", "port": 80, "proto": "tcp",
//!       "backends": [ { "addr": "198.18.1.1", "weight": 1 },
//!                     { "addr": "198.18.1.2", "weight": 2 } ] },
//!     { "addr": "2001:db8::10", "port": 0, "proto": "udp", "hash_no_src_port": true,
//!       "backends": [ { "addr": "2001:db8:1::1" } ] }
//!   ]
//! }
//! ```
//!
//! `port` 0 makes a port-agnostic VIP. `weight` defaults to 1. A backend's address family
//! chooses the encapsulation (IPv4 backend: IPIP, IPv6 backend: IP6IP6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::{MAX_REALS, MAX_VIPS};

/// Transport protocol of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

fn one() -> u32 {
    1
}

/// One backend ("real") of a VIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendConfig {
    /// Address the encapsulated packets go to.
    pub addr: IpAddr,
    /// Relative share of new flows (0 = drained: keeps its established flows only).
    #[serde(default = "one")]
    pub weight: u32,
}

/// One virtual IP service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipConfig {
    /// The VIP address.
    pub addr: IpAddr,
    /// Destination port, 0 = every port.
    #[serde(default)]
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
    /// Hash flows without their source port (katran's `F_HASH_NO_SRC_PORT`), so that all of a
    /// client's connections reach the same backend.
    #[serde(default)]
    pub hash_no_src_port: bool,
    /// Backends with weights.
    pub backends: Vec<BackendConfig>,
}

fn default_src4() -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 0)
}

fn default_src6() -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0)
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbConfig {
    /// Next-hop MAC of encapsulated frames, `aa:bb:cc:dd:ee:ff`.
    pub router_mac: String,
    /// Outer IPv4 source prefix (/16; the low 16 bits come from the flow hash).
    #[serde(default = "default_src4")]
    pub src4_prefix: Ipv4Addr,
    /// Outer IPv6 source prefix (/96; the low 32 bits come from the flow hash).
    #[serde(default = "default_src6")]
    pub src6_prefix: Ipv6Addr,
    /// Services, numbered in this order (VIP number = position).
    pub vips: Vec<VipConfig>,
}

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid JSON for [`LbConfig`].
    #[error("lb config: {0}")]
    Parse(#[from] serde_json::Error),
    /// `router_mac` is not six hex bytes.
    #[error("lb config: router_mac {mac:?} is not a MAC address")]
    BadMac {
        /// The text given.
        mac: String,
    },
    /// More VIPs than the program's tables hold.
    #[error("lb config: {count} vips, at most {max} fit")]
    TooManyVips {
        /// VIPs given.
        count: usize,
        /// `MAX_VIPS`.
        max: usize,
    },
    /// More distinct backends than `reals` holds (index 0 is reserved).
    #[error("lb config: {count} distinct backends, at most {max} fit")]
    TooManyReals {
        /// Distinct backends given.
        count: usize,
        /// `MAX_REALS - 1`.
        max: usize,
    },
    /// The same (addr, port, proto) twice.
    #[error("lb config: vip {index} ({addr} port {port}) is listed twice")]
    DuplicateVip {
        /// Position of the second occurrence.
        index: usize,
        /// Its address.
        addr: IpAddr,
        /// Its port.
        port: u16,
    },
}

impl LbConfig {
    /// Parses a JSON configuration and checks it ([`LbConfig::validate`]).
    pub fn from_json(text: &str) -> Result<LbConfig, ConfigError> {
        let cfg: LbConfig = serde_json::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks limits and duplicates; [`super::apply`] calls it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.mac()?;
        if self.vips.len() > MAX_VIPS {
            return Err(ConfigError::TooManyVips {
                count: self.vips.len(),
                max: MAX_VIPS,
            });
        }
        for (i, v) in self.vips.iter().enumerate() {
            let dup = self.vips[..i].iter().any(|w| {
                super::hash::addr16(w.addr) == super::hash::addr16(v.addr)
                    && w.port == v.port
                    && w.proto == v.proto
            });
            if dup {
                return Err(ConfigError::DuplicateVip {
                    index: i,
                    addr: v.addr,
                    port: v.port,
                });
            }
        }
        let reals = self.real_addrs().len();
        if reals >= MAX_REALS {
            return Err(ConfigError::TooManyReals {
                count: reals,
                max: MAX_REALS - 1,
            });
        }
        Ok(())
    }

    /// `router_mac` as bytes.
    pub fn mac(&self) -> Result<[u8; 6], ConfigError> {
        let bad = || ConfigError::BadMac {
            mac: self.router_mac.clone(),
        };
        let parts: Vec<&str> = self.router_mac.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (m, p) in mac.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(mac)
    }

    /// Distinct backend addresses in order of first appearance (on empty maps, backend `i` of
    /// this list becomes `reals[i + 1]`; index 0 means "no backend" to the program).
    pub fn real_addrs(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for b in self.vips.iter().flat_map(|v| &v.backends) {
            if !out.contains(&b.addr) {
                out.push(b.addr);
            }
        }
        out
    }
}
