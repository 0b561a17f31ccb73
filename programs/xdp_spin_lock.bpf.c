// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* bpf_spin_lock / bpf_spin_unlock on map values. Every frame updates, under the value's lock:
 *   - an ARRAY slot chosen by the frame length (packets, bytes, last length), and
 *   - a HASH entry keyed by the ethertype (created on first sight), whose running count picks
 *     the verdict: odd counts pass, even counts drop.
 * The lock word reads as 0 in map dumps (the kernel's copy_map_value skips it; ours is free
 * between runs), so kernel and userspace dumps compare equal. */
#include "userxdp.h"

#define SLOTS 16

struct slot {
	struct bpf_spin_lock lock;
	__u32 last_len;
	__u64 packets;
	__u64 bytes;
};

struct proto_stat {
	__u64 count;
	struct bpf_spin_lock lock;
	__u32 max_len;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct slot);
} lock_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct proto_stat);
} lock_protos SEC(".maps");

SEC("xdp")
int xdp_spin_lock(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 len = data_end - data;
	__u32 key = len % SLOTS;
	struct proto_stat *ps, fresh = {};
	struct slot *s;
	__u64 count;

	s = bpf_map_lookup_elem(&lock_slots, &key);
	if (!s)
		return XDP_ABORTED;
	bpf_spin_lock(&s->lock);
	s->packets++;
	s->bytes += len;
	s->last_len = len;
	bpf_spin_unlock(&s->lock);

	if (!IN_BOUNDS(eth, sizeof(*eth), data_end))
		return XDP_PASS;
	/* Fold the ethertype into at most 256 keys so the map never fills. */
	key = bpf_ntohs(eth->h_proto) & 0xff;
	ps = bpf_map_lookup_elem(&lock_protos, &key);
	if (!ps) {
		bpf_map_update_elem(&lock_protos, &key, &fresh, BPF_NOEXIST);
		ps = bpf_map_lookup_elem(&lock_protos, &key);
		if (!ps)
			return XDP_ABORTED;
	}
	bpf_spin_lock(&ps->lock);
	count = ++ps->count;
	if (len > ps->max_len)
		ps->max_len = len;
	bpf_spin_unlock(&ps->lock);
	return count & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
