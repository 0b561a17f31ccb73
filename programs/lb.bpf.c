// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* lb.bpf.c — a katran-style L4 load balancer (XDP).
 *
 * Ingress only. For every Ethernet frame:
 *   1. Parse IPv4 (no options, not a fragment) or IPv6 (TCP/UDP directly after the fixed
 *      header) and the L4 ports. Anything else — ARP, VLAN-tagged frames, IPv4 options or
 *      fragments, IPv6 extension headers, truncated headers — is XDP_PASS.
 *   2. Look the destination up in `vip_map`: first (addr, port, proto), then (addr, 0, proto)
 *      for port-agnostic VIPs. No VIP -> XDP_PASS.
 *   3. Pick the backend ("real"): established flows (anything but a TCP SYN) first consult the
 *      connection table `lru_conns`; a TCP SYN, an LRU miss or a stale UDP entry (older than
 *      LB_UDP_LRU_TIMEOUT_NS) consults the VIP's Maglev ring in `ch_rings` at
 *      `vip_num * LB_RING_SIZE + flow_hash % LB_RING_SIZE` and records the choice in
 *      `lru_conns`. A ring slot holding 0 (no backend) -> XDP_DROP, counted as `no_real`.
 *   4. Encapsulate with bpf_xdp_adjust_head: IPIP (outer IPv4, protocol 4 or 41) when the real
 *      is IPv4, IP6IP6 (outer IPv6, next header 41 or 4) when it is IPv6. Outer source:
 *      the configured /16 (v4) or /96 (v6) prefix with the flow hash in the low bits, so one
 *      flow always has one outer source and the backends' RSS spreads flows. Outer
 *      destination: the real. IPv4 outer header checksum computed; IPv6 flow label = low 20
 *      bits of the flow hash (RFC 6438). New MACs: source = the frame's old destination (our
 *      own MAC), destination = the configured router MAC. -> XDP_TX. A failed adjust_head is
 *      XDP_DROP, counted as `encap_fail` (as katran does).
 *
 * ICMP / ICMPv6 (including v4 "fragmentation needed" and v6 "packet too big" toward a VIP) is
 * XDP_PASS and counted in the global `icmp` counter: the local stack answers echo and learns
 * path MTU; katran's ICMP rewriting toward the backend is not implemented.
 *
 * The flow hash is jhash_3words(src, dst, ports, proto) with 128-bit addresses folded by XOR
 * (see flow_hash()); datapath/src/lb/hash.rs computes the same function so that the control
 * plane can predict which backend Maglev picks. The ports word holds the source port in its
 * high half unless the VIP has LB_F_HASH_NO_SRC_PORT.
 *
 * Byte orders: addresses and ports in map keys are in network order as they appear on the
 * wire (IPv4 addresses are v4-mapped: ::ffff:a.b.c.d); every other integer is host order.
 */
#include "userxdp.h"
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#define LB_MAX_VIPS 16
#define LB_RING_SIZE 65537 /* prime, as in the Maglev paper and katran */
#define LB_MAX_REALS 4096
#define LB_LRU_SIZE 65536
#define LB_UDP_LRU_TIMEOUT_NS 30000000000ULL /* katran: 30 s */
#define LB_GLOBAL_STATS LB_MAX_VIPS /* stats index of the global counters */

/* vip_meta.flags */
#define LB_F_HASH_NO_SRC_PORT 1 /* hash ignores the source port (katran's flag) */
/* real_def.flags */
#define LB_REAL_F_IPV6 1

#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41

struct vip_key {
	__u8 addr[16]; /* IPv6, or v4-mapped IPv4 */
	__be16 port;   /* 0 = any port */
	__u8 proto;    /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad;
};

struct vip_meta {
	__u32 vip_num; /* < LB_MAX_VIPS: ring and stats index */
	__u32 flags;   /* LB_F_* */
};

struct real_def {
	__u8 addr[16]; /* IPv6, or IPv4 in the first 4 bytes */
	__u32 flags;   /* LB_REAL_F_* */
};

struct flow_key {
	__u8 src[16]; /* v4-mapped for IPv4 */
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct conn_val {
	__u32 real;  /* index into `reals` */
	__u32 pad;
	__u64 atime; /* bpf_ktime_get_ns() of the last UDP packet; 0 for TCP (as katran) */
};

struct lb_config {
	__u8 router_mac[6]; /* destination MAC of encapsulated frames */
	__u8 pad[2];
	__be32 src4_prefix; /* outer IPv4 source: high 16 bits used */
	__u8 src6_prefix[16]; /* outer IPv6 source: first 12 bytes used */
};

struct lb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 lru_hits;
	__u64 lru_misses;
	__u64 encap_fail;
	__u64 no_real;
	__u64 icmp;    /* global slot only */
	__u64 non_vip; /* global slot only: passed without a VIP */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} vip_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_VIPS * LB_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} ch_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_REALS);
	__type(key, __u32);
	__type(value, struct real_def);
} reals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_LRU_SIZE);
	__type(key, struct flow_key);
	__type(value, struct conn_val);
} lru_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} lb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_VIPS + 1);
	__type(key, __u32);
	__type(value, struct lb_stats);
} lb_stats SEC(".maps");

/* ---- jhash (linux/jhash.h), the 3-word variant ---- */

#define JHASH_INITVAL 0xdeadbeef

static __always_inline __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += JHASH_INITVAL + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

/* XOR of the four big-endian words of a 16-byte address (v4-mapped IPv4 included). */
static __always_inline __u32 fold_addr(const __u8 *a)
{
	__u32 w[4];

	__builtin_memcpy(w, a, 16);
	return bpf_ntohl(w[0]) ^ bpf_ntohl(w[1]) ^ bpf_ntohl(w[2]) ^ bpf_ntohl(w[3]);
}

static __always_inline __u32 flow_hash(const struct flow_key *fk, __u32 vip_flags)
{
	__u32 sport = (vip_flags & LB_F_HASH_NO_SRC_PORT) ? 0 : bpf_ntohs(fk->sport);
	__u32 ports = (sport << 16) | bpf_ntohs(fk->dport);

	return jhash_3words(fold_addr(fk->src), fold_addr(fk->dst), ports, fk->proto);
}

/* ---- stats ---- */

static __always_inline struct lb_stats *stats_slot(__u32 idx)
{
	return bpf_map_lookup_elem(&lb_stats, &idx);
}

/* ---- parsing ---- */

struct parsed {
	struct flow_key fk;
	__u32 inner_len; /* bytes of the inner IP packet (its own length fields) */
	__u8 tos;        /* DSCP/ECN of the inner packet, copied to the outer header */
	__u8 is_v6;
	__u8 is_syn;
	__u8 is_icmp;
};

static __always_inline void v4_mapped(__u8 *out, __be32 addr)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &addr, 4);
}

/* Fills `p` from the frame; returns 0 when the packet is a TCP/UDP candidate for balancing,
 * -1 otherwise (p->is_icmp says whether it was ICMP). */
static __always_inline int parse(void *data, void *data_end, struct parsed *p)
{
	struct ethhdr *eth = data;
	void *l4;
	__u16 avail;

	if (!IN_BOUNDS(eth, sizeof(*eth), data_end))
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if (!IN_BOUNDS(iph, sizeof(*iph), data_end))
			return -1;
		if (iph->protocol == IPPROTO_ICMP) {
			p->is_icmp = 1;
			return -1;
		}
		/* Options and fragments go to the stack (it reassembles; katran drops them). */
		if (iph->ihl != 5 || (iph->frag_off & bpf_htons(0x3fff)))
			return -1;
		p->inner_len = bpf_ntohs(iph->tot_len);
		avail = (__u16)((long)data_end - (long)iph);
		if (p->inner_len < sizeof(*iph) || p->inner_len > avail)
			return -1;
		p->tos = iph->tos;
		p->fk.proto = iph->protocol;
		v4_mapped(p->fk.src, iph->saddr);
		v4_mapped(p->fk.dst, iph->daddr);
		l4 = iph + 1;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if (!IN_BOUNDS(ip6h, sizeof(*ip6h), data_end))
			return -1;
		if (ip6h->nexthdr == IPPROTO_ICMPV6) {
			p->is_icmp = 1;
			return -1;
		}
		p->inner_len = bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h);
		avail = (__u16)((long)data_end - (long)ip6h);
		if (p->inner_len > avail)
			return -1;
		p->is_v6 = 1;
		p->tos = (ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4);
		p->fk.proto = ip6h->nexthdr;
		__builtin_memcpy(p->fk.src, &ip6h->saddr, 16);
		__builtin_memcpy(p->fk.dst, &ip6h->daddr, 16);
		l4 = ip6h + 1;
	} else {
		return -1;
	}

	if (p->fk.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if (!IN_BOUNDS(th, sizeof(*th), data_end))
			return -1;
		p->fk.sport = th->source;
		p->fk.dport = th->dest;
		p->is_syn = th->syn;
	} else if (p->fk.proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if (!IN_BOUNDS(uh, sizeof(*uh), data_end))
			return -1;
		p->fk.sport = uh->source;
		p->fk.dport = uh->dest;
	} else {
		return -1;
	}
	return 0;
}

/* ---- backend choice ---- */

/* Index of the real for this flow, 0 when the VIP's ring has no backend. */
static __always_inline __u32 pick_real(struct parsed *p, __u32 vip_num, __u32 hash,
				       struct lb_stats *vs, struct lb_stats *gs)
{
	__u64 now = bpf_ktime_get_ns();
	struct conn_val *cv, nv = {};
	__u32 slot, *ring;

	if (!(p->fk.proto == IPPROTO_TCP && p->is_syn)) {
		cv = bpf_map_lookup_elem(&lru_conns, &p->fk);
		if (cv) {
			if (p->fk.proto != IPPROTO_UDP) {
				vs->lru_hits++;
				gs->lru_hits++;
				return cv->real;
			}
			if (now - cv->atime < LB_UDP_LRU_TIMEOUT_NS) {
				cv->atime = now;
				vs->lru_hits++;
				gs->lru_hits++;
				return cv->real;
			}
		}
	}
	vs->lru_misses++;
	gs->lru_misses++;
	slot = vip_num * LB_RING_SIZE + hash % LB_RING_SIZE;
	ring = bpf_map_lookup_elem(&ch_rings, &slot);
	if (!ring || !*ring)
		return 0;
	nv.real = *ring;
	if (p->fk.proto == IPPROTO_UDP)
		nv.atime = now;
	bpf_map_update_elem(&lru_conns, &p->fk, &nv, BPF_ANY);
	return nv.real;
}

/* ---- encapsulation ---- */

static __always_inline __u16 ipv4_csum(struct iphdr *iph)
{
	__u16 *w = (__u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)sizeof(*iph) / 2; i++)
		sum += w[i];
	return ~csum_fold32(sum);
}

/* Pushes the outer header; returns 0 or -1 (adjust_head failed or bounds). */
static __always_inline int encap(struct xdp_md *ctx, const struct parsed *p,
				 const struct real_def *real, const struct lb_config *cfg,
				 __u32 hash)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 our_mac[ETH_ALEN];
	__u8 inner_proto = p->is_v6 ? IPPROTO_IPV6_ : IPPROTO_IPIP_;

	if (!IN_BOUNDS(eth, sizeof(*eth), data_end))
		return -1;
	__builtin_memcpy(our_mac, eth->h_dest, ETH_ALEN);

	if (real->flags & LB_REAL_F_IPV6) {
		struct ipv6hdr *ip6h;
		__u32 w0, lo;

		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ipv6hdr)))
			return -1;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		eth = data;
		ip6h = (void *)(eth + 1);
		if (!IN_BOUNDS(ip6h, sizeof(*ip6h), data_end))
			return -1;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		/* version 6, inner traffic class, flow label from the flow hash */
		w0 = (6u << 28) | ((__u32)p->tos << 20) | (hash & 0xfffff);
		w0 = bpf_htonl(w0);
		__builtin_memcpy(ip6h, &w0, 4);
		ip6h->payload_len = bpf_htons((__u16)p->inner_len);
		ip6h->nexthdr = inner_proto;
		ip6h->hop_limit = 64;
		__builtin_memcpy(&ip6h->saddr, cfg->src6_prefix, 12);
		lo = bpf_htonl(hash);
		__builtin_memcpy((__u8 *)&ip6h->saddr + 12, &lo, 4);
		__builtin_memcpy(&ip6h->daddr, real->addr, 16);
	} else {
		struct iphdr *iph;
		__u32 src;

		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
			return -1;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		eth = data;
		iph = (void *)(eth + 1);
		if (!IN_BOUNDS(iph, sizeof(*iph), data_end))
			return -1;
		eth->h_proto = bpf_htons(ETH_P_IP);
		iph->version = 4;
		iph->ihl = 5;
		iph->tos = p->tos;
		iph->tot_len = bpf_htons((__u16)(p->inner_len + sizeof(*iph)));
		iph->id = 0;
		iph->frag_off = 0;
		iph->ttl = 64;
		iph->protocol = inner_proto;
		iph->check = 0;
		src = (bpf_ntohl(cfg->src4_prefix) & 0xffff0000) | (hash & 0xffff);
		iph->saddr = bpf_htonl(src);
		__builtin_memcpy(&iph->daddr, real->addr, 4);
		iph->check = ipv4_csum(iph);
	}
	__builtin_memcpy(eth->h_source, our_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, cfg->router_mac, ETH_ALEN);
	return 0;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = (long)data_end - (long)data;
	struct parsed p = {};
	struct vip_key vk = {};
	struct vip_meta *vip;
	struct real_def *real;
	struct lb_config *cfg;
	struct lb_stats *gs, *vs;
	__u32 zero = 0, real_idx, vip_num, hash;

	gs = stats_slot(LB_GLOBAL_STATS);
	if (!gs)
		return XDP_ABORTED;
	gs->packets++;
	gs->bytes += len;

	if (parse(data, data_end, &p)) {
		if (p.is_icmp)
			gs->icmp++;
		else
			gs->non_vip++;
		return XDP_PASS;
	}

	__builtin_memcpy(vk.addr, p.fk.dst, 16);
	vk.port = p.fk.dport;
	vk.proto = p.fk.proto;
	vip = bpf_map_lookup_elem(&vip_map, &vk);
	if (!vip) {
		vk.port = 0;
		vip = bpf_map_lookup_elem(&vip_map, &vk);
		if (!vip) {
			gs->non_vip++;
			return XDP_PASS;
		}
	}
	vip_num = vip->vip_num;
	if (vip_num >= LB_MAX_VIPS) {
		gs->non_vip++;
		return XDP_PASS;
	}
	vs = stats_slot(vip_num);
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!vs || !cfg)
		return XDP_ABORTED;
	vs->packets++;
	vs->bytes += len;

	hash = flow_hash(&p.fk, vip->flags);
	real_idx = pick_real(&p, vip_num, hash, vs, gs);
	real = real_idx ? bpf_map_lookup_elem(&reals, &real_idx) : 0;
	if (!real) {
		vs->no_real++;
		gs->no_real++;
		return XDP_DROP;
	}
	if (encap(ctx, &p, real, cfg, hash)) {
		vs->encap_fail++;
		gs->encap_fail++;
		return XDP_DROP;
	}
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
