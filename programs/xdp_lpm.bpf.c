// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* LPM_TRIE under packet-driven churn. Per packet (of at least 34 bytes), with bytes 26..29 as an
 * IPv4-like address:
 *   - longest-prefix lookup of the /32; a hit counts in the entry and its verdict is returned;
 *   - a miss inserts a prefix of 8..32 bits (from byte 30) with BPF_NOEXIST, keeping the
 *     address's bits past the prefix (the trie stores them and get_next_key returns them);
 *   - every 7th packet (by byte 31) deletes an exact prefix of 0..32 bits (byte 32);
 *   - one packet in 16 (byte 33) looks up with a shorter key prefix length.
 * Results land in `lpm_stats`: successes and failures of each operation (failure counts only:
 * the kernel says ENOSPC for a full trie, we say E2BIG). The trie fills (64 entries) so full-map
 * and replacement paths run. */
#include "userxdp.h"

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_val {
	__u32 hits;
	__u32 verdict;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, struct lpm_val);
} routes SEC(".maps");

enum {
	ST_HIT,
	ST_MISS,
	ST_INSERT_OK,
	ST_INSERT_FAIL,
	ST_DELETE_OK,
	ST_DELETE_FAIL,
	ST_SHORT_HIT,
	ST_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ST_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lpm_stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&lpm_stats, &idx);

	if (c)
		__sync_fetch_and_add(c, 1);
}

SEC("xdp")
int xdp_lpm(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;
	struct lpm_key key = {};
	struct lpm_val *val;

	if (!IN_BOUNDS(p, 34, data_end))
		return XDP_PASS;
	__builtin_memcpy(key.addr, p + 26, 4);

	if ((p[31] % 7) == 0) {
		struct lpm_key del = { .prefixlen = p[32] % 33 };

		__builtin_memcpy(del.addr, p + 26, 4);
		count(bpf_map_delete_elem(&routes, &del) == 0 ? ST_DELETE_OK : ST_DELETE_FAIL);
	}
	if ((p[33] & 15) == 0) {
		key.prefixlen = p[33] >> 3;
		if (bpf_map_lookup_elem(&routes, &key))
			count(ST_SHORT_HIT);
	}

	key.prefixlen = 32;
	val = bpf_map_lookup_elem(&routes, &key);
	if (val) {
		__sync_fetch_and_add(&val->hits, 1);
		count(ST_HIT);
		return val->verdict;
	}
	count(ST_MISS);
	{
		struct lpm_val fresh = { .hits = 1, .verdict = (p[30] & 1) ? XDP_DROP : XDP_PASS };

		key.prefixlen = 8 + p[30] % 25;
		if (bpf_map_update_elem(&routes, &key, &fresh, BPF_NOEXIST) == 0)
			count(ST_INSERT_OK);
		else
			count(ST_INSERT_FAIL);
	}
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
