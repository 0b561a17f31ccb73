// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Map-heavy flow accounting. Per packet: read the config ARRAY, count packets/bytes per 5-tuple
 * in a HASH with atomic adds, track first-seen order in an LRU_HASH flow table, and decide the
 * verdict from map contents:
 *   - flows listed in `blocked` are dropped;
 *   - once a flow exceeds config.max_packets it is dropped (0 = unlimited);
 *   - config.default_verdict otherwise (XDP_PASS when unset). */
#include "userxdp.h"
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>

/* Identifies a flow; padded explicitly so keys hash the same in every implementation. */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
};

struct flow_info {
	__u64 first_seq; /* value of config.seq when the flow was first seen */
	__u32 last_len;
	__u32 hits;
};

struct config {
	__u32 default_verdict;
	__u32 max_packets;
	__u64 seq; /* bumped atomically for every new flow */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flow_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, struct flow_key);
	__type(value, struct flow_info);
} flow_table SEC(".maps");

/* Flows to drop, written by the control plane; value unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct flow_key);
	__type(value, __u8);
} blocked SEC(".maps");

static __always_inline int parse_flow(struct xdp_md *ctx, struct flow_key *key)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	void *l4;

	if (!IN_BOUNDS(eth, sizeof(*eth), data_end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	iph = (void *)(eth + 1);
	if (!IN_BOUNDS(iph, sizeof(*iph), data_end) || iph->ihl < 5)
		return -1;
	key->saddr = iph->saddr;
	key->daddr = iph->daddr;
	key->proto = iph->protocol;
	l4 = (void *)iph + iph->ihl * 4;
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if (!IN_BOUNDS(tcp, sizeof(*tcp), data_end))
			return -1;
		key->sport = tcp->source;
		key->dport = tcp->dest;
	} else if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if (!IN_BOUNDS(udp, sizeof(*udp), data_end))
			return -1;
		key->sport = udp->source;
		key->dport = udp->dest;
	}
	return 0;
}

SEC("xdp")
int xdp_flow_account(struct xdp_md *ctx)
{
	struct flow_key key = {};
	struct flow_stats *st, new_st = {};
	struct flow_info *info;
	struct config *cfg;
	__u32 zero = 0;
	__u32 verdict = XDP_PASS;
	/* Pointers first, then their difference: clang would otherwise keep a 32-bit copy of the
	 * packet pointer, and the verifier refuses to spill a pointer in 32 bits. */
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;

	cfg = bpf_map_lookup_elem(&config_map, &zero);
	if (!cfg)
		return XDP_ABORTED;
	if (cfg->default_verdict)
		verdict = cfg->default_verdict;

	if (parse_flow(ctx, &key) < 0)
		return verdict;

	if (bpf_map_lookup_elem(&blocked, &key))
		return XDP_DROP;

	st = bpf_map_lookup_elem(&flow_stats, &key);
	if (!st) {
		new_st.packets = 1;
		new_st.bytes = len;
		/* BPF_NOEXIST: a concurrent CPU may have created it; then fall through to the add. */
		if (bpf_map_update_elem(&flow_stats, &key, &new_st, BPF_NOEXIST) == 0)
			goto flow_table;
		st = bpf_map_lookup_elem(&flow_stats, &key);
		if (!st)
			return XDP_ABORTED;
	}
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, len);
	if (cfg->max_packets && st->packets > cfg->max_packets)
		return XDP_DROP;

flow_table:
	info = bpf_map_lookup_elem(&flow_table, &key);
	if (info) {
		info->last_len = len;
		__sync_fetch_and_add(&info->hits, 1);
	} else {
		struct flow_info fresh = {
			.first_seq = __sync_fetch_and_add(&cfg->seq, 1),
			.last_len = len,
			.hits = 1,
		};

		bpf_map_update_elem(&flow_table, &key, &fresh, BPF_ANY);
	}
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
