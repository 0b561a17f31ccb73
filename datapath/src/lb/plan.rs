//! A configuration turned into map contents: real indices, Maglev rings, encoded keys and
//! values. Pure computation, so tests can predict the program's choices.

use std::net::IpAddr;

use super::config::{ConfigError, LbConfig};
use super::hash::{addr16, is_v4, Flow};
use super::maglev::{self, MaglevBackend};
use super::{MAX_REALS, REAL_F_IPV6, RING_SIZE, VIP_F_HASH_NO_SRC_PORT};

/// One VIP's map entries.
#[derive(Debug, Clone)]
pub struct VipPlan {
    /// VIP number (ring block and stats index).
    pub vip_num: u32,
    /// `vip_map` key.
    pub key: [u8; 20],
    /// `vip_map` value.
    pub meta: [u8; 8],
    /// Hash without the source port.
    pub hash_no_src_port: bool,
    /// Real index per ring slot (`RING_SIZE` entries; 0 everywhere when no backend has weight).
    pub ring: Vec<u32>,
}

/// Everything [`super::apply`] writes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `reals[i + 1]` addresses (`None`: slot left as it is).
    pub reals: Vec<Option<IpAddr>>,
    /// Per VIP, in configuration order.
    pub vips: Vec<VipPlan>,
    /// `lb_config[0]` value.
    pub config_value: [u8; 28],
}

/// `vip_map` key for (addr, port, proto).
pub fn vip_key(addr: IpAddr, port: u16, proto: u8) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(&addr16(addr));
    k[16..18].copy_from_slice(&port.to_be_bytes());
    k[18] = proto;
    k
}

/// `reals` value for an address.
pub fn real_def(addr: IpAddr) -> [u8; 20] {
    let mut v = [0u8; 20];
    let flags = match addr {
        IpAddr::V6(a) if !is_v4(addr) => {
            v[..16].copy_from_slice(&a.octets());
            REAL_F_IPV6
        }
        _ => {
            let a16 = addr16(addr);
            v[..4].copy_from_slice(&a16[12..]);
            0
        }
    };
    v[16..].copy_from_slice(&flags.to_ne_bytes());
    v
}

/// The address a `reals` value holds, `None` for an empty slot (all-zero address).
pub fn decode_real(value: &[u8]) -> Option<IpAddr> {
    let addr: [u8; 16] = value.get(..16)?.try_into().ok()?;
    let flags = u32::from_ne_bytes(value.get(16..20)?.try_into().ok()?);
    if addr == [0; 16] {
        return None;
    }
    Some(if flags & REAL_F_IPV6 != 0 {
        IpAddr::V6(addr.into())
    } else {
        IpAddr::V4([addr[0], addr[1], addr[2], addr[3]].into())
    })
}

/// Real indices for the configuration's backends: an address already in `existing` (index,
/// address) keeps its index, so established flows in `lru_conns` keep their backend; a new
/// address takes the lowest index never used, or, when none is left, one whose address left
/// the configuration. Until reused, a removed backend's slot keeps its address, so its
/// established flows drain to it.
fn allocate(cfg: &LbConfig, existing: &[(u32, IpAddr)]) -> Vec<Option<IpAddr>> {
    let wanted = cfg.real_addrs();
    let mut reals: Vec<Option<IpAddr>> = vec![None; MAX_REALS - 1];
    let mut occupied = vec![false; MAX_REALS - 1];
    for &(idx, addr) in existing {
        let Some(i) = (idx as usize).checked_sub(1).filter(|&i| i < reals.len()) else {
            continue;
        };
        occupied[i] = true;
        if wanted.contains(&addr) && !reals.contains(&Some(addr)) {
            reals[i] = Some(addr);
        }
    }
    for addr in wanted {
        if reals.contains(&Some(addr)) {
            continue;
        }
        let free = (0..reals.len())
            .find(|&i| reals[i].is_none() && !occupied[i])
            .or_else(|| (0..reals.len()).find(|&i| reals[i].is_none()));
        // validate() bounds the number of distinct backends by the table size.
        if let Some(i) = free {
            reals[i] = Some(addr);
        }
    }
    let used = reals.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    reals.truncate(used);
    reals
}

impl Plan {
    /// Computes every map entry for `cfg` (validated first) for empty maps.
    pub fn build(cfg: &LbConfig) -> Result<Plan, ConfigError> {
        Plan::build_with(cfg, &[])
    }

    /// Computes every map entry for `cfg` given the (index, address) pairs already in
    /// `reals` (see [`decode_real`]), keeping their indices.
    pub fn build_with(cfg: &LbConfig, existing: &[(u32, IpAddr)]) -> Result<Plan, ConfigError> {
        cfg.validate()?;
        let reals = allocate(cfg, existing);
        let mut config_value = [0u8; 28];
        config_value[..6].copy_from_slice(&cfg.mac()?);
        config_value[8..12].copy_from_slice(&cfg.src4_prefix.octets());
        config_value[12..].copy_from_slice(&cfg.src6_prefix.octets());
        let mut vips = Vec::with_capacity(cfg.vips.len());
        for (n, v) in cfg.vips.iter().enumerate() {
            let ids: Vec<[u8; 16]> = v.backends.iter().map(|b| addr16(b.addr)).collect();
            let backends: Vec<MaglevBackend<'_>> = ids
                .iter()
                .zip(&v.backends)
                .map(|(id, b)| MaglevBackend {
                    id,
                    weight: b.weight,
                })
                .collect();
            let real_of = |pos: usize| -> u32 {
                let addr = v.backends[pos].addr;
                // allocate() gave every configured backend an index, so the position exists.
                reals
                    .iter()
                    .position(|r| *r == Some(addr))
                    .map_or(0, |i| i as u32 + 1)
            };
            let ring = match maglev::build(&backends, RING_SIZE) {
                Some(table) => {
                    let ids: Vec<u32> = (0..v.backends.len()).map(real_of).collect();
                    table.into_iter().map(|pos| ids[pos]).collect()
                }
                None => vec![0; RING_SIZE],
            };
            let flags = if v.hash_no_src_port {
                VIP_F_HASH_NO_SRC_PORT
            } else {
                0
            };
            let mut meta = [0u8; 8];
            meta[..4].copy_from_slice(&(n as u32).to_ne_bytes());
            meta[4..].copy_from_slice(&flags.to_ne_bytes());
            vips.push(VipPlan {
                vip_num: n as u32,
                key: vip_key(v.addr, v.port, v.proto.number()),
                meta,
                hash_no_src_port: v.hash_no_src_port,
                ring,
            });
        }
        Ok(Plan {
            reals,
            vips,
            config_value,
        })
    }

    /// The VIP a flow matches: exact port first, then the port-agnostic entry (as the program).
    pub fn vip_for(&self, flow: &Flow) -> Option<&VipPlan> {
        let exact = vip_key(flow.dst, flow.dport, flow.proto);
        let any = vip_key(flow.dst, 0, flow.proto);
        self.vips
            .iter()
            .find(|v| v.key == exact)
            .or_else(|| self.vips.iter().find(|v| v.key == any))
    }

    /// The real index Maglev picks for a new flow (0 = VIP without backends), or `None` when
    /// the flow matches no VIP.
    pub fn ring_choice(&self, flow: &Flow) -> Option<u32> {
        let vip = self.vip_for(flow)?;
        let slot = flow.hash(vip.hash_no_src_port) as usize % RING_SIZE;
        Some(vip.ring[slot])
    }

    /// The backend address Maglev picks for a new flow, `None` if no VIP or no backend.
    pub fn predict(&self, flow: &Flow) -> Option<IpAddr> {
        let idx = self.ring_choice(flow)?;
        self.real_addr(idx)
    }

    /// Address of real index `idx` (1-based), `None` for 0 or out of range.
    pub fn real_addr(&self, idx: u32) -> Option<IpAddr> {
        *self.reals.get((idx as usize).checked_sub(1)?)?
    }
}
