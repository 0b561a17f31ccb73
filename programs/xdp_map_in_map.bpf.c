// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Map-in-map lookups. Byte 0 of the packet picks an outer ARRAY_OF_MAPS slot (0 or 1) and a
 * HASH_OF_MAPS key; the inner maps (ARRAY and HASH of counters) are filled by the control
 * plane. A hit counts in the inner map and the counter's parity picks the verdict; with no
 * inner map the packet passes. In a differential run both sides start with empty outer maps,
 * so this mostly checks that the lookups verify and return NULL alike; userspace tests fill
 * the slots (runtime/tests/map_semantics.rs). */
#include "userxdp.h"

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner_hash {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_array);
} outer_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_hash);
} outer_hash SEC(".maps");

SEC("xdp")
int xdp_map_in_map(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;
	__u32 slot, key;
	__u64 *v;
	void *inner;
	int verdict = XDP_PASS;

	if (!IN_BOUNDS(p, 2, data_end))
		return XDP_PASS;
	slot = p[0] & 1;
	key = p[1] & 3;

	inner = bpf_map_lookup_elem(&outer_array, &slot);
	if (inner) {
		v = bpf_map_lookup_elem(inner, &key);
		if (v) {
			__sync_fetch_and_add(v, 1);
			verdict = (*v & 1) ? XDP_DROP : XDP_TX;
		}
	}
	inner = bpf_map_lookup_elem(&outer_hash, &slot);
	if (inner) {
		v = bpf_map_lookup_elem(inner, &key);
		if (v)
			__sync_fetch_and_add(v, 10);
		else {
			__u64 one = 1;

			bpf_map_update_elem(inner, &key, &one, BPF_NOEXIST);
		}
	}
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
