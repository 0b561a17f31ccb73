// SPDX-License-Identifier: GPL-2.0
/* A PROG_ARRAY initialized statically (libbpf `.values`), with a gap, between two ordinary
 * maps, for the loader's initial_slots. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} before SEC(".maps");

int slot_zero(struct xdp_md *ctx);
int slot_two(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int(struct xdp_md *));
} jumps SEC(".maps") = {
	.values = {
		[0] = (void *)&slot_zero,
		[2] = (void *)&slot_two,
	},
};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} empty_jumps SEC(".maps");

SEC("xdp")
int entry(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jumps, 2);
	return XDP_ABORTED;
}

SEC("xdp")
int slot_zero(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int slot_two(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &empty_jumps, 0);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
