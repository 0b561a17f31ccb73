// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Every BPF atomic, 32- and 64-bit, on a map value and on .bss globals:
 * add / or / and / xor with and without a fetched result, xchg and cmpxchg.
 * The fetched results land in `atomic_results` so that tests compare them across engines.
 * Verdict: XDP_PASS when this frame won the cmpxchg on `owner` (first frame after reset, or a
 * frame whose first byte equals the current owner), XDP_DROP otherwise. */
#include "userxdp.h"

struct counters {
	__u64 add64;
	__u64 or64;
	__u64 and64;
	__u64 xor64;
	__u32 add32;
	__u32 or32;
	__u32 and32;
	__u32 xor32;
	__u64 xchg64;
	__u32 xchg32;
	__u32 cmpxchg32;
	__u64 cmpxchg64;
};

/* Values returned by the fetching forms, for the last frame. */
struct results {
	__u64 fetch_add64;
	__u64 fetch_or64;
	__u64 fetch_and64;
	__u64 fetch_xor64;
	__u32 fetch_add32;
	__u32 fetch_or32;
	__u32 fetch_and32;
	__u32 fetch_xor32;
	__u64 old_xchg64;
	__u32 old_xchg32;
	__u32 old_cmpxchg32;
	__u64 old_cmpxchg64;
	__u64 global_fetch;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} atomic_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct results);
} atomic_results SEC(".maps");

/* .bss globals, updated with atomics too. */
__u64 g_frames;
__u32 g_bits;
__u32 owner; /* 0 = free; else first packet byte + 1 of the owning frame kind */

SEC("xdp")
int xdp_atomics(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	__u32 first = 0, zero = 0, want;
	struct counters *c;
	struct results *r;
	__u64 x = len;

	if (data + 1 <= data_end)
		first = *(__u8 *)data;

	c = bpf_map_lookup_elem(&atomic_counters, &zero);
	r = bpf_map_lookup_elem(&atomic_results, &zero);
	if (!c || !r)
		return XDP_ABORTED;

	/* Fetching forms (BPF_FETCH set). */
	r->fetch_add64 = __sync_fetch_and_add(&c->add64, x);
	r->fetch_or64 = __sync_fetch_and_or(&c->or64, x << 32 | first);
	r->fetch_and64 = __sync_fetch_and_and(&c->and64, ~(x << 3));
	r->fetch_xor64 = __sync_fetch_and_xor(&c->xor64, 0xa5a5a5a5a5a5a5a5ULL ^ x);
	r->fetch_add32 = __sync_fetch_and_add(&c->add32, (__u32)len);
	r->fetch_or32 = __sync_fetch_and_or(&c->or32, 1u << (first & 31));
	r->fetch_and32 = __sync_fetch_and_and(&c->and32, ~(1u << (len & 31)));
	r->fetch_xor32 = __sync_fetch_and_xor(&c->xor32, first * 0x01010101u);
	r->old_xchg64 = __sync_lock_test_and_set(&c->xchg64, x * 3);
	r->old_xchg32 = __sync_lock_test_and_set(&c->xchg32, first);
	r->old_cmpxchg32 = __sync_val_compare_and_swap(&c->cmpxchg32, 0, len);
	r->old_cmpxchg64 = __sync_val_compare_and_swap(&c->cmpxchg64, x, x + 1);

	/* Non-fetching forms on globals (result unused: plain BPF_ADD/OR/AND/XOR). */
	__sync_fetch_and_add(&g_frames, 1);
	__sync_fetch_and_or(&g_bits, 1u << (len & 31));
	__sync_fetch_and_and(&g_bits, ~(1u << (first & 31)));
	__sync_fetch_and_xor(&g_bits, 0x80000000u);
	r->global_fetch = __sync_fetch_and_add(&g_frames, 0);

	want = first + 1;
	if (__sync_val_compare_and_swap(&owner, 0, want) == 0)
		return XDP_PASS;
	if (__sync_val_compare_and_swap(&owner, want, want) == want)
		return XDP_PASS;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
