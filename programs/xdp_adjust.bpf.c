// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Frame resizing with all three XDP adjust helpers.
 *
 * 1. bpf_xdp_adjust_meta(-8): reserve 8 bytes of metadata and write a cookie + the original
 *    length there.
 * 2. bpf_xdp_adjust_head:
 *      - IPv4 frame: push a 4-byte shim after the MACs (ethertype SHIM_PROTO) holding the
 *        original ethertype and a tag -> XDP_TX;
 *      - SHIM_PROTO frame: pop the shim, restoring the original ethertype -> XDP_PASS.
 * 3. bpf_xdp_adjust_tail: frames longer than TRIM_TO are trimmed to it; frames shorter than
 *    PAD_TO are grown to it (the kernel zero-fills the new tail).
 * 4. The metadata is read back (it moves with data on adjust_head) and must still hold the
 *    cookie; otherwise XDP_DROP. A helper failure is XDP_ABORTED. */
#include "userxdp.h"

#define SHIM_PROTO 0x88B5 /* IEEE local experimental ethertype */
#define SHIM_TAG 0xbeef
#define META_COOKIE 0xc0ffee42
#define TRIM_TO 256
#define PAD_TO 64

struct shim {
	__be16 tag;
	__be16 inner_proto;
};

struct meta {
	__u32 cookie;
	__u32 orig_len;
};

static __always_inline int push_shim(struct xdp_md *ctx)
{
	struct ethhdr eth_copy, *eth;
	struct shim *sh;
	void *data, *data_end;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (!IN_BOUNDS(data, sizeof(struct ethhdr), data_end))
		return -1;
	__builtin_memcpy(&eth_copy, data, sizeof(eth_copy));

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct shim)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	sh = (void *)(eth + 1);
	if (!IN_BOUNDS(sh, sizeof(*sh), data_end))
		return -1;
	__builtin_memcpy(eth->h_dest, eth_copy.h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth_copy.h_source, ETH_ALEN);
	eth->h_proto = bpf_htons(SHIM_PROTO);
	sh->tag = bpf_htons(SHIM_TAG);
	sh->inner_proto = eth_copy.h_proto;
	return 0;
}

static __always_inline int pop_shim(struct xdp_md *ctx)
{
	struct ethhdr eth_copy, *eth;
	struct shim *sh;
	void *data, *data_end;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	sh = (void *)(eth + 1);
	if (!IN_BOUNDS(sh, sizeof(*sh), data_end))
		return -1;
	__builtin_memcpy(&eth_copy, eth, sizeof(eth_copy));
	eth_copy.h_proto = sh->inner_proto;

	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct shim)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (!IN_BOUNDS(data, sizeof(struct ethhdr), data_end))
		return -1;
	__builtin_memcpy(data, &eth_copy, sizeof(eth_copy));
	return 0;
}

SEC("xdp")
int xdp_adjust(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	struct ethhdr *eth;
	struct meta *m;
	int verdict = XDP_PASS;
	__u16 proto;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct meta)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	m = (void *)(long)ctx->data_meta;
	if (!IN_BOUNDS(m, sizeof(*m), data))
		return XDP_ABORTED;
	m->cookie = META_COOKIE;
	m->orig_len = len;

	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if (!IN_BOUNDS(eth, sizeof(*eth), data_end))
		return XDP_DROP;
	proto = bpf_ntohs(eth->h_proto);

	if (proto == ETH_P_IP) {
		if (push_shim(ctx))
			return XDP_ABORTED;
		verdict = XDP_TX;
	} else if (proto == SHIM_PROTO) {
		if (pop_shim(ctx))
			return XDP_ABORTED;
	}

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	len = data_end - data;
	if (len > TRIM_TO) {
		if (bpf_xdp_adjust_tail(ctx, TRIM_TO - (int)len))
			return XDP_ABORTED;
	} else if (len < PAD_TO) {
		if (bpf_xdp_adjust_tail(ctx, PAD_TO - (int)len))
			return XDP_ABORTED;
	}

	data = (void *)(long)ctx->data;
	m = (void *)(long)ctx->data_meta;
	if (!IN_BOUNDS(m, sizeof(*m), data))
		return XDP_ABORTED;
	if (m->cookie != META_COOKIE)
		return XDP_DROP;
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
