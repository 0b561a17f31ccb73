// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* RINGBUF producer. Per packet, byte 0 picks: reserve + fill + submit, reserve + discard,
 * bpf_ringbuf_output of a 20-byte event, or output with an invalid flag. Nobody consumes in a
 * differential run, so the 16 KiB ring fills (discarded records keep their space until
 * consumed, as in the kernel) and later reservations fail: the verdict says whether the record
 * was placed, and `rb_stats` keeps counts and the ring's positions from bpf_ringbuf_query. */
#include "userxdp.h"

struct event {
	__u32 len;
	__u8 head[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);
} events SEC(".maps");

enum {
	RB_SUBMITTED,
	RB_DISCARDED,
	RB_RESERVE_FAIL,
	RB_OUTPUT_OK,
	RB_OUTPUT_EAGAIN,
	RB_OUTPUT_EINVAL,
	RB_AVAIL,
	RB_SIZE,
	RB_CONS,
	RB_PROD,
	RB_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RB_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} rb_stats SEC(".maps");

static __always_inline void add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&rb_stats, &idx);

	if (c)
		__sync_fetch_and_add(c, n);
}

static __always_inline void set(__u32 idx, __u64 v)
{
	__u64 *c = bpf_map_lookup_elem(&rb_stats, &idx);

	if (c)
		*c = v;
}

SEC("xdp")
int xdp_ringbuf(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *p = data;
	struct event *e;
	struct event local = {};
	int verdict = XDP_PASS;
	long ret;

	if (!IN_BOUNDS(p, 16, data_end))
		return XDP_PASS;
	local.len = data_end - data;
	__builtin_memcpy(local.head, p, 16);

	switch (p[0] & 3) {
	case 0:
	case 1:
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			add(RB_RESERVE_FAIL, 1);
			verdict = XDP_DROP;
			break;
		}
		e->len = local.len;
		__builtin_memcpy(e->head, p, 16);
		if (p[0] & 1) {
			bpf_ringbuf_discard(e, 0);
			add(RB_DISCARDED, 1);
		} else {
			bpf_ringbuf_submit(e, 0);
			add(RB_SUBMITTED, 1);
		}
		break;
	case 2:
		ret = bpf_ringbuf_output(&events, &local, sizeof(local), BPF_RB_NO_WAKEUP);
		add(ret == 0 ? RB_OUTPUT_OK : RB_OUTPUT_EAGAIN, 1);
		if (ret)
			verdict = XDP_TX;
		break;
	default:
		ret = bpf_ringbuf_output(&events, &local, sizeof(local), 4);
		if (ret == -22)
			add(RB_OUTPUT_EINVAL, 1);
		break;
	}
	set(RB_AVAIL, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA));
	set(RB_SIZE, bpf_ringbuf_query(&events, BPF_RB_RING_SIZE));
	set(RB_CONS, bpf_ringbuf_query(&events, BPF_RB_CONS_POS));
	set(RB_PROD, bpf_ringbuf_query(&events, BPF_RB_PROD_POS));
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
