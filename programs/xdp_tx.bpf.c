// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Reflects every Ethernet frame back out of the port it came in on, MACs swapped. Frames too
 * short for an Ethernet header are dropped. */
#include "userxdp.h"

SEC("xdp")
int xdp_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (!IN_BOUNDS(eth, sizeof(*eth), data_end))
		return XDP_DROP;
	swap_macs(eth);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
