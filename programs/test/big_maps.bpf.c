// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Maps far too big to create just for verification (2 GiB ARRAY, 16M-entry HASH, a pinned
 * map, map-in-map with a large inner template). kernel::verify must shrink and unpin them;
 * never load this object at full size (Oracle) on a small machine. */
#include "userxdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 28);
	__type(key, __u32);
	__type(value, __u64);
} huge_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 24);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_hash SEC(".maps");

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1 << 20);
	__type(key, __u32);
	__array(values, struct inner_array);
} outer SEC(".maps");

SEC("xdp")
int big_maps(struct xdp_md *ctx)
{
	__u32 idx = ctx->rx_queue_index;
	__u64 key = idx, *v;
	__u32 *inner_v;
	void *inner;

	v = bpf_map_lookup_elem(&huge_array, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
	v = bpf_map_lookup_elem(&pinned_hash, &key);
	if (v)
		return XDP_DROP;
	inner = bpf_map_lookup_elem(&outer, &idx);
	if (inner) {
		inner_v = bpf_map_lookup_elem(inner, &idx);
		if (inner_v && *inner_v)
			return XDP_TX;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
