// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* bpf_redirect_map on a DEVMAP_HASH keyed by sparse ids. Byte 0 of the packet picks a key
 * (0..15, only some present) and byte 1 the fallback verdict in the flags' low bits; the
 * verdict is XDP_REDIRECT when the key has a target, the fallback otherwise. A lookup of the
 * same key counts hits in `dev_hits` (the value is the target's ifindex). */
#include "userxdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} dev_hits SEC(".maps");

SEC("xdp")
int xdp_devmap_hash(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;
	__u32 key;
	__u64 *hits;

	if (!IN_BOUNDS(p, 2, data_end))
		return XDP_PASS;
	key = p[0] & 15;
	if (bpf_map_lookup_elem(&devs, &key)) {
		hits = bpf_map_lookup_elem(&dev_hits, &key);
		if (hits)
			__sync_fetch_and_add(hits, 1);
	}
	return bpf_redirect_map(&devs, key, p[1] % 3);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
