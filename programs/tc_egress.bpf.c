// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* A TC classifier on __sk_buff: reads len, data/data_end, protocol and mark, parses
 * Ethernet/IPv4/L4 directly from packet memory, counts per class, and drops:
 *   - frames marked DROP_MARK,
 *   - IPv4 UDP to port 9 (discard),
 *   - frames whose skb->len disagrees with data_end - data (non-linear skbs: we only look at
 *     the linear part, and refuse to guess).
 * Everything else is TC_ACT_OK. */
#include "userxdp.h"
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#define DROP_MARK 0xdead

enum tc_slot {
	TC_SEEN = 0,
	TC_BYTES = 1,
	TC_IPV4 = 2,
	TC_TCP = 3,
	TC_UDP = 4,
	TC_OTHER = 5,
	TC_DROPPED = 6,
	TC_SLOTS = 7,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TC_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} tc_counters SEC(".maps");

static __always_inline void tc_count(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&tc_counters, &slot);

	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline int shot(void)
{
	tc_count(TC_DROPPED, 1);
	return TC_ACT_SHOT;
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	void *l4;

	tc_count(TC_SEEN, 1);
	tc_count(TC_BYTES, skb->len);

	if (skb->mark == DROP_MARK)
		return shot();
	if (skb->len != (__u32)(data_end - data))
		return shot();
	if (!IN_BOUNDS(eth, sizeof(*eth), data_end))
		return TC_ACT_OK;
	/* skb->protocol is the ethertype the stack assigned, network order. */
	if (skb->protocol != bpf_htons(ETH_P_IP) || eth->h_proto != bpf_htons(ETH_P_IP)) {
		tc_count(TC_OTHER, 1);
		return TC_ACT_OK;
	}
	iph = (void *)(eth + 1);
	if (!IN_BOUNDS(iph, sizeof(*iph), data_end) || iph->ihl < 5)
		return TC_ACT_OK;
	tc_count(TC_IPV4, 1);
	l4 = (void *)iph + iph->ihl * 4;
	if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if (!IN_BOUNDS(udp, sizeof(*udp), data_end))
			return TC_ACT_OK;
		tc_count(TC_UDP, 1);
		if (udp->dest == bpf_htons(9))
			return shot();
	} else if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if (!IN_BOUNDS(tcp, sizeof(*tcp), data_end))
			return TC_ACT_OK;
		tc_count(TC_TCP, 1);
	} else {
		tc_count(TC_OTHER, 1);
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
