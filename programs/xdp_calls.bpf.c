// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* bpf-to-bpf calls: static and global noinline functions in .text, calls nested three deep,
 * pointers to the caller's stack passed down, and two programs in the same `xdp` section that
 * share subprograms.
 *
 * xdp_calls_a: sums the first bytes of the frame through a chain of calls; drops frames whose
 *              checksum byte is odd, passes the rest.
 * xdp_calls_b: classifies the frame by length and ethertype through the same helpers; returns
 *              XDP_TX for IPv4, XDP_PASS otherwise, XDP_DROP when too short. */
#include "userxdp.h"

#define WINDOW 16

/* Per-call scratch that lives on the caller's stack. */
struct scratch {
	__u32 sum;
	__u32 seen;
	__u8 bytes[WINDOW];
};

/* Copies up to WINDOW packet bytes into s->bytes; returns how many. */
static __attribute__((noinline)) int load_window(struct xdp_md *ctx, struct scratch *s)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int i, n = 0;

	for (i = 0; i < WINDOW; i++) {
		__u8 *p = data + i;

		if ((void *)(p + 1) > data_end)
			break;
		s->bytes[i] = *p;
		n++;
	}
	s->seen = n;
	return n;
}

/* Innermost: folds one byte into the running sum (rotating so order matters). */
static __attribute__((noinline)) __u32 mix(__u32 acc, __u32 byte)
{
	return ((acc << 5) | (acc >> 27)) ^ byte;
}

/* Middle: folds every loaded byte through mix(). */
static __attribute__((noinline)) int fold(struct scratch *s)
{
	__u32 acc = 0x5eed;
	int i;

	for (i = 0; i < WINDOW; i++) {
		if (i >= s->seen)
			break;
		acc = mix(acc, s->bytes[i]);
	}
	s->sum = acc;
	return 0;
}

/* Global (non-static) function: verified on its own by the kernel, so it only takes scalars
 * and a pointer to a scalar. Returns the ethertype from the window, host order. */
__attribute__((noinline)) int ethertype_of(__u32 b12, __u32 b13)
{
	return (int)((b12 << 8) | b13);
}

/* Outer: load + fold, writes the result through a caller-provided pointer. */
static __attribute__((noinline)) int digest(struct xdp_md *ctx, struct scratch *s, __u32 *out)
{
	if (load_window(ctx, s) < 1)
		return -1;
	fold(s);
	*out = s->sum;
	return 0;
}

SEC("xdp")
int xdp_calls_a(struct xdp_md *ctx)
{
	struct scratch s = {};
	__u32 sum = 0;

	if (digest(ctx, &s, &sum) < 0)
		return XDP_DROP;
	return (sum & 1) ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int xdp_calls_b(struct xdp_md *ctx)
{
	struct scratch s = {};
	__u32 sum = 0;
	int et;

	if (digest(ctx, &s, &sum) < 0 || s.seen < 14)
		return XDP_DROP;
	et = ethertype_of(s.bytes[12], s.bytes[13]);
	return et == ETH_P_IP ? XDP_TX : XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
