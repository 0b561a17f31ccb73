// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Tail calls through a PROG_ARRAY, BMC style. The control plane fills jmp_table:
 *   slot 0 = xdp_tail_parse, slot 1 = xdp_tail_verdict, slot 2 left empty.
 * xdp_tail_entry -> [0] xdp_tail_parse -> [1] xdp_tail_verdict (IPv4) or [2] (empty: falls
 * through). The path taken is recorded in tail_trace so tests can see it.
 * Verdicts: entry alone (slot 0 empty) -> XDP_ABORTED; IPv4 -> XDP_TX from xdp_tail_verdict
 * (after a second hop); non-IPv4 -> the empty slot 2 falls through -> XDP_PASS. */
#include "userxdp.h"

enum {
	SLOT_PARSE = 0,
	SLOT_VERDICT = 1,
	SLOT_MISSING = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} jmp_table SEC(".maps");

/* Slot 0: one bit per program that ran (1 entry, 2 parse, 4 verdict, 8 parse fell through). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tail_trace SEC(".maps");

static __always_inline void trace(__u32 bit)
{
	__u32 zero = 0;
	__u32 *v = bpf_map_lookup_elem(&tail_trace, &zero);

	if (v)
		__sync_fetch_and_or(v, bit);
}

SEC("xdp")
int xdp_tail_entry(struct xdp_md *ctx)
{
	trace(1);
	bpf_tail_call(ctx, &jmp_table, SLOT_PARSE);
	/* Only reached when slot 0 is empty. */
	return XDP_ABORTED;
}

SEC("xdp")
int xdp_tail_parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	trace(2);
	if (!IN_BOUNDS(eth, sizeof(*eth), data_end))
		return XDP_DROP;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		bpf_tail_call(ctx, &jmp_table, SLOT_VERDICT);
	else
		bpf_tail_call(ctx, &jmp_table, SLOT_MISSING);
	trace(8);
	return XDP_PASS;
}

SEC("xdp")
int xdp_tail_verdict(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	trace(4);
	if (!IN_BOUNDS(eth, sizeof(*eth), data_end))
		return XDP_DROP;
	swap_macs(eth);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
