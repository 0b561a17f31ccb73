// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* A parser in the style of real XDP front ends:
 *   Ethernet (+ up to two 802.1Q/802.1ad tags) -> IPv4 (IHL, options) | IPv6 -> TCP | UDP | ICMP.
 * Counts frames per protocol in a PERCPU_ARRAY, drops TCP to port 9 (discard), reflects UDP to
 * port 7 (echo) with MACs, addresses and ports swapped, and passes everything else. */
#include "userxdp.h"
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#define MAX_VLAN_TAGS 2

/* Slots of proto_count. */
enum proto_slot {
	SLOT_OTHER_L2 = 0,
	SLOT_IPV4 = 1,
	SLOT_IPV6 = 2,
	SLOT_TCP = 3,
	SLOT_UDP = 4,
	SLOT_ICMP = 5,
	SLOT_OTHER_L4 = 6,
	SLOT_VLAN = 7,
	SLOT_MALFORMED = 8,
	SLOT_COUNT = 9,
};

/* Frames seen per protocol slot, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} proto_count SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&proto_count, &slot);

	if (v)
		*v += 1; /* per-CPU: no atomics needed */
}

/* Cursor-style parse state. */
struct cursor {
	void *pos;
	void *end;
};

/* Swaps the UDP ports and turns the frame around. IPv4 addresses swap without touching the
 * checksum (a sum is order-independent); the TTL reset is patched incrementally. */
static __always_inline int reflect_udp4(struct ethhdr *eth, struct iphdr *iph, struct udphdr *udp)
{
	__be32 addr = iph->saddr;
	__be16 port = udp->source;
	__u16 old_ttl_proto = *(__u16 *)&iph->ttl;

	iph->saddr = iph->daddr;
	iph->daddr = addr;
	udp->source = udp->dest;
	udp->dest = port;
	iph->ttl = 64;
	iph->check = csum_replace2(iph->check, old_ttl_proto, *(__u16 *)&iph->ttl);
	swap_macs(eth);
	return XDP_TX;
}

static __always_inline int reflect_udp6(struct ethhdr *eth, struct ipv6hdr *ip6, struct udphdr *udp)
{
	struct in6_addr addr = ip6->saddr;
	__be16 port = udp->source;

	ip6->saddr = ip6->daddr;
	ip6->daddr = addr;
	udp->source = udp->dest;
	udp->dest = port;
	swap_macs(eth);
	return XDP_TX;
}

SEC("xdp")
int xdp_parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct cursor c = { .pos = data, .end = data_end };
	struct iphdr *iph = NULL;
	struct ipv6hdr *ip6 = NULL;
	__u16 proto;
	__u8 l4;
	int i;

	if (!IN_BOUNDS(eth, sizeof(*eth), c.end)) {
		count(SLOT_MALFORMED);
		return XDP_DROP;
	}
	proto = eth->h_proto;
	c.pos = eth + 1;

#pragma unroll
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vh = c.pos;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (!IN_BOUNDS(vh, sizeof(*vh), c.end)) {
			count(SLOT_MALFORMED);
			return XDP_DROP;
		}
		count(SLOT_VLAN);
		proto = vh->encapsulated_proto;
		c.pos = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		__u32 hlen;

		iph = c.pos;
		if (!IN_BOUNDS(iph, sizeof(*iph), c.end) || iph->version != 4 || iph->ihl < 5) {
			count(SLOT_MALFORMED);
			return XDP_DROP;
		}
		hlen = iph->ihl * 4;
		if (c.pos + hlen > c.end) {
			count(SLOT_MALFORMED);
			return XDP_DROP;
		}
		count(SLOT_IPV4);
		/* Non-first fragments carry no L4 header. */
		if (iph->frag_off & bpf_htons(0x1fff))
			return XDP_PASS;
		l4 = iph->protocol;
		c.pos += hlen;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		ip6 = c.pos;
		if (!IN_BOUNDS(ip6, sizeof(*ip6), c.end)) {
			count(SLOT_MALFORMED);
			return XDP_DROP;
		}
		count(SLOT_IPV6);
		l4 = ip6->nexthdr;
		c.pos = ip6 + 1;
	} else {
		count(SLOT_OTHER_L2);
		return XDP_PASS;
	}

	switch (l4) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = c.pos;

		if (!IN_BOUNDS(tcp, sizeof(*tcp), c.end)) {
			count(SLOT_MALFORMED);
			return XDP_DROP;
		}
		count(SLOT_TCP);
		if (tcp->dest == bpf_htons(9))
			return XDP_DROP;
		return XDP_PASS;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = c.pos;

		if (!IN_BOUNDS(udp, sizeof(*udp), c.end)) {
			count(SLOT_MALFORMED);
			return XDP_DROP;
		}
		count(SLOT_UDP);
		if (udp->dest != bpf_htons(7))
			return XDP_PASS;
		if (iph)
			return reflect_udp4(eth, iph, udp);
		if (ip6)
			return reflect_udp6(eth, ip6, udp);
		return XDP_PASS;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* ICMP only over IPv4, ICMPv6 only over IPv6. */
		if ((l4 == IPPROTO_ICMP) == (iph != NULL)) {
			count(SLOT_ICMP);
			return XDP_PASS;
		}
		count(SLOT_OTHER_L4);
		return XDP_PASS;
	default:
		count(SLOT_OTHER_L4);
		return XDP_PASS;
	}
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
