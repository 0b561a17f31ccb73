// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* IPIP decapsulation in XDP, for load-balancer backends on kernels without an ipip tunnel
 * device: an IPv4 packet carrying IPv4 (protocol 4) loses its outer header, the Ethernet
 * header moves up to the inner packet, and the kernel sees the packet the client sent.
 * Everything else passes untouched. */
#include "userxdp.h"
#include <linux/ip.h>

#define IPPROTO_IPIP_ 4

SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data, copy;
	struct iphdr *outer, *inner;
	__u32 outer_len;

	if (!IN_BOUNDS(eth, sizeof(*eth), end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	outer = (void *)(eth + 1);
	if (!IN_BOUNDS(outer, sizeof(*outer), end) || outer->protocol != IPPROTO_IPIP_)
		return XDP_PASS;
	outer_len = outer->ihl * 4;
	if (outer_len < sizeof(*outer) || outer_len > 60)
		return XDP_PASS;
	inner = (void *)outer + outer_len;
	if (!IN_BOUNDS(inner, sizeof(*inner), end) || inner->version != 4)
		return XDP_PASS;
	__builtin_memcpy(&copy, eth, sizeof(copy));
	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if (!IN_BOUNDS(eth, sizeof(*eth), end))
		return XDP_DROP;
	__builtin_memcpy(eth, &copy, sizeof(copy));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
