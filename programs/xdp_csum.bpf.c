// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* IPv4 header checksum with bpf_csum_diff. For every IPv4 frame:
 *   - verify the header checksum (fold of bpf_csum_diff over the header, options included);
 *     bad checksums are dropped and counted;
 *   - decrement the TTL (TTL <= 1 is dropped, like a router) and recompute the checksum from
 *     scratch with bpf_csum_diff -> XDP_TX with MACs swapped.
 * Non-IPv4 frames pass. bpf_ktime_get_ns is called but only stored in csum_stats.last_ns,
 * which differential tests ignore: no verdict depends on time. */
#include "userxdp.h"
#include <linux/ip.h>

#define MAX_IHL_BYTES 60

struct csum_stats {
	__u64 good;
	__u64 bad;
	__u64 ttl_expired;
	__u64 last_ns; /* time of the last frame; ignore in comparisons */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct csum_stats);
} csum_stats SEC(".maps");

/* One's-complement sum of the header (checksum field included) via bpf_csum_diff. The length
 * must be a multiple of 4 and a verifier-known bound, so the IHL is dispatched by cases. */
static __always_inline __s64 header_sum(struct iphdr *iph, void *data_end)
{
	__u32 hlen = iph->ihl * 4;

	if (hlen < 20 || hlen > MAX_IHL_BYTES)
		return -1;
	if ((void *)iph + MAX_IHL_BYTES <= data_end)
		return bpf_csum_diff(0, 0, (__be32 *)iph, hlen, 0);
	/* Short frame: only the option-free header can be summed safely. */
	if (hlen == 20 && (void *)iph + 20 <= data_end)
		return bpf_csum_diff(0, 0, (__be32 *)iph, 20, 0);
	return -1;
}

SEC("xdp")
int xdp_csum(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct csum_stats *st;
	__u32 zero = 0;
	__s64 sum;

	st = bpf_map_lookup_elem(&csum_stats, &zero);
	if (!st)
		return XDP_ABORTED;
	st->last_ns = bpf_ktime_get_ns();

	if (!IN_BOUNDS(eth, sizeof(*eth), data_end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	iph = (void *)(eth + 1);
	if (!IN_BOUNDS(iph, sizeof(*iph), data_end))
		return XDP_DROP;

	sum = header_sum(iph, data_end);
	if (sum < 0 || csum_fold32((__u32)sum) != 0xffff) {
		__sync_fetch_and_add(&st->bad, 1);
		return XDP_DROP;
	}
	__sync_fetch_and_add(&st->good, 1);

	if (iph->ttl <= 1) {
		__sync_fetch_and_add(&st->ttl_expired, 1);
		return XDP_DROP;
	}
	iph->ttl--;
	iph->check = 0;
	sum = header_sum(iph, data_end);
	if (sum < 0)
		return XDP_ABORTED;
	iph->check = ~csum_fold32((__u32)sum);
	swap_macs(eth);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
