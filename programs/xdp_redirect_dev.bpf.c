// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Redirects by UDP destination port, to exercise every redirect target a datapath resolves:
 *   1000 -> DEVMAP    tx_ports[0]   (falls back to XDP_DROP when the slot is empty)
 *   2000 -> CPUMAP    cpus[0]       (falls back to XDP_PASS)
 *   3000 -> XSKMAP    xsks[0]       (falls back to XDP_PASS)
 *   4000 -> bpf_redirect(redirect_ifindex)
 * Everything else is XDP_PASS. */
#include "userxdp.h"
#include <linux/ip.h>
#include <linux/udp.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Target of bpf_redirect for port 4000 (set before loading). */
const volatile __u32 redirect_ifindex = 1;

SEC("xdp")
int xdp_redirect_dev(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;

	if (!IN_BOUNDS(eth, sizeof(*eth), end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if (!IN_BOUNDS(ip, sizeof(*ip), end) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if (!IN_BOUNDS(udp, sizeof(*udp), end))
		return XDP_PASS;
	switch (bpf_ntohs(udp->dest)) {
	case 1000:
		return bpf_redirect_map(&tx_ports, 0, XDP_DROP);
	case 2000:
		return bpf_redirect_map(&cpus, 0, XDP_PASS);
	case 3000:
		return bpf_redirect_map(&xsks, 0, XDP_PASS);
	case 4000:
		return bpf_redirect(redirect_ifindex, 0);
	default:
		return XDP_PASS;
	}
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
