// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* QUEUE and STACK driven by packet bytes. Per packet (of at least 26 bytes), bytes 24 and 25
 * (an IPv4 checksum: well spread) pick an operation on the queue and on the stack: push
 * (BPF_ANY), push with BPF_EXIST (drops the oldest when full), push with a bad flag, pop (twice
 * as likely, so the maps drain as well as fill), or peek. A popped or
 * peeked value is written over packet bytes 0..3 (queue) and 4..11 (stack), so output bytes
 * show the order; every helper result lands in `queue_stats` by operation and errno. The maps
 * are small (8 and 5 entries) so full and empty paths both run. */
#include "userxdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 8);
	__type(value, __u32);
} fifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 5);
	__type(value, __u64);
} lifo SEC(".maps");

/* Index: map * 64 + op * 8 + (errno & 7): 0 success, ENOENT 2, E2BIG 7, EINVAL 22 & 7 = 6. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
} queue_stats SEC(".maps");

static __always_inline void record(__u32 map, __u32 op, long ret)
{
	__u32 idx = map * 64 + op * 8 + ((__u32)(-ret) & 7);
	__u64 *c = bpf_map_lookup_elem(&queue_stats, &idx);

	if (c)
		__sync_fetch_and_add(c, 1);
}

SEC("xdp")
int xdp_queue(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;
	__u32 qv;
	__u64 sv;
	__u32 qop, sop;
	long ret;
	int verdict = XDP_PASS;

	if (!IN_BOUNDS(p, 26, data_end))
		return XDP_PASS;
	qop = p[24] % 6;
	sop = p[25] % 6;
	__builtin_memcpy(&qv, p + 6, 4);
	__builtin_memcpy(&sv, p + 6, 8);

	switch (qop) {
	case 0:
		ret = bpf_map_push_elem(&fifo, &qv, BPF_ANY);
		break;
	case 1:
		ret = bpf_map_push_elem(&fifo, &qv, BPF_EXIST);
		break;
	case 2:
		ret = bpf_map_push_elem(&fifo, &qv, BPF_NOEXIST);
		break;
	case 3:
	case 4:
		ret = bpf_map_pop_elem(&fifo, &qv);
		if (ret == 0)
			__builtin_memcpy(p, &qv, 4);
		else
			verdict = XDP_DROP;
		break;
	default:
		ret = bpf_map_peek_elem(&fifo, &qv);
		if (ret == 0)
			__builtin_memcpy(p, &qv, 4);
		break;
	}
	record(0, qop, ret);

	switch (sop) {
	case 0:
		ret = bpf_map_push_elem(&lifo, &sv, BPF_ANY);
		break;
	case 1:
		ret = bpf_map_push_elem(&lifo, &sv, BPF_EXIST);
		break;
	case 2:
		ret = bpf_map_push_elem(&lifo, &sv, 4);
		break;
	case 3:
	case 4:
		ret = bpf_map_pop_elem(&lifo, &sv);
		if (ret == 0)
			__builtin_memcpy(p + 4, &sv, 8);
		else
			verdict = XDP_TX;
		break;
	default:
		ret = bpf_map_peek_elem(&lifo, &sv);
		if (ret == 0)
			__builtin_memcpy(p + 4, &sv, 8);
		break;
	}
	record(1, sop, ret);
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
