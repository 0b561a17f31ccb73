// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* bpf_for_each_map_elem over ARRAY, PERCPU_ARRAY and HASH maps. Every frame bumps one element
 * of each map (chosen by its length and first bytes), then walks them:
 *   - the ARRAY walk sums values and stops at an index chosen by the frame (callback returns
 *     1), so the visited count the helper returns depends on the packet;
 *   - the PERCPU_ARRAY walk sums this CPU's values;
 *   - the HASH walk counts and sums every element, deleting those that grew past a limit
 *     (order-independent, as hash iteration order differs between implementations).
 * The results add up in fe_results and pick the verdict. */
#include "userxdp.h"

struct bpf_map;

#define ARRAY_SLOTS 8
#define PERCPU_SLOTS 4
#define HASH_LIMIT 3000

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ARRAY_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} fe_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PERCPU_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} fe_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} fe_hash SEC(".maps");

enum fe_slot {
	FE_ARRAY_VISITED = 0,
	FE_ARRAY_SUM = 1,
	FE_PERCPU_SUM = 2,
	FE_HASH_VISITED = 3,
	FE_HASH_SUM = 4,
	FE_HASH_DELETED = 5,
	FE_BAD_FLAGS = 6,
	FE_SLOTS = 7,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FE_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} fe_results SEC(".maps");

struct walk {
	__u64 sum;
	__u64 count;
	__u64 deleted;
	__u32 stop_at;
};

static long sum_until(struct bpf_map *map, __u32 *key, __u64 *val, struct walk *w)
{
	w->sum += *val;
	w->count++;
	return *key == w->stop_at ? 1 : 0;
}

static long sum_all(struct bpf_map *map, __u32 *key, __u64 *val, struct walk *w)
{
	w->sum += *val;
	w->count++;
	return 0;
}

static long prune(struct bpf_map *map, __u32 *key, __u64 *val, struct walk *w)
{
	w->sum += *val;
	w->count++;
	if (*val > HASH_LIMIT) {
		bpf_map_delete_elem(map, key);
		w->deleted++;
	}
	return 0;
}

/* Accumulates v into result slot `slot` (over all frames, so final map contents reflect
 * every walk, not only the last). */
static __always_inline void put(__u32 slot, __u64 v)
{
	__u64 *r = bpf_map_lookup_elem(&fe_results, &slot);

	if (r)
		*r += v;
}

static __always_inline void bump(void *map, __u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);

	if (v)
		*v += n;
}

SEC("xdp")
int xdp_for_each(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	struct walk w = {};
	__u8 *p = data;
	__u32 hkey;
	__u64 *hv, one, verdict;
	long n;

	if (!IN_BOUNDS(p, 14, data_end))
		return XDP_PASS;
	bump(&fe_array, len % ARRAY_SLOTS, 1);
	bump(&fe_percpu, p[0] % PERCPU_SLOTS, len);
	hkey = (len + p[13]) % 61;
	hv = bpf_map_lookup_elem(&fe_hash, &hkey);
	if (hv) {
		*hv += len;
	} else {
		one = len;
		bpf_map_update_elem(&fe_hash, &hkey, &one, BPF_NOEXIST);
	}

	w.stop_at = p[12] % (ARRAY_SLOTS + 2); /* 8 and 9: never stops */
	n = bpf_for_each_map_elem(&fe_array, sum_until, &w, 0);
	put(FE_ARRAY_VISITED, n);
	verdict = n;
	put(FE_ARRAY_SUM, w.sum);

	w.sum = 0;
	w.count = 0;
	n = bpf_for_each_map_elem(&fe_percpu, sum_all, &w, 0);
	put(FE_PERCPU_SUM, w.sum + (n << 48));

	w.sum = 0;
	w.count = 0;
	n = bpf_for_each_map_elem(&fe_hash, prune, &w, 0);
	put(FE_HASH_VISITED, n + (w.count << 32));
	put(FE_HASH_SUM, w.sum);
	bump(&fe_results, FE_HASH_DELETED, w.deleted);

	/* Bad flags: -EINVAL, nothing visited. */
	put(FE_BAD_FLAGS, bpf_for_each_map_elem(&fe_array, sum_all, &w, 1));
	return (verdict + w.sum + n) & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
