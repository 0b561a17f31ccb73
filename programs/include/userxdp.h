/* Shared helpers for the userxdp test programs: packet-bounds checks, VLAN header,
 * incremental checksum update. Header-only, static inline, no maps. */
#ifndef USERXDP_H
#define USERXDP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* TC verdicts (linux/pkt_cls.h pulls in more than we want). */
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

/* 802.1Q tag following the MAC addresses. */
struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* True when [p, p + len) lies inside the packet; the verifier needs this exact shape. */
#define IN_BOUNDS(p, len, end) ((void *)(p) + (len) <= (void *)(end))

/* Swaps source and destination MAC addresses in place. */
static __always_inline void swap_macs(struct ethhdr *eth)
{
	unsigned char tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

/* Folds a 32-bit one's-complement sum into 16 bits. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* RFC 1624 incremental update: checksum `check` after a 16-bit field changed from `old` to
 * `new` (all in network byte order). */
static __always_inline __u16 csum_replace2(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~old;
	sum += new;
	return ~csum_fold32(sum);
}

#endif /* USERXDP_H */
