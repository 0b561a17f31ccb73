/* Packet access through helpers rather than direct pointers: bpf_xdp_load_bytes (189),
 * bpf_xdp_store_bytes (190) and a bpf_loop (181) callback, including their error returns.
 *
 * - Loads the Ethernet header and the 64 bytes at offset 20 (fails with -EINVAL on short
 *   frames; the return codes are counted in `bytes_stats`).
 * - Sums up to 32 payload bytes after the Ethernet header with bpf_loop.
 * - Frames whose byte sum is odd get their MACs swapped with bpf_xdp_store_bytes and go back
 *   out (XDP_TX); even sums pass; frames too short for the 64-byte load are dropped. */
#include "userxdp.h"

struct bytes_stats {
	__u64 load_ok;
	__u64 load_einval;
	__u64 loops;
	__u64 sum;
	__s64 last_ret;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bytes_stats);
} bytes_stats SEC(".maps");

struct sum_ctx {
	__u8 buf[32];
	__u32 len;
	__u64 sum;
};

static long add_byte(__u32 i, void *data)
{
	struct sum_ctx *c = data;

	if (i >= c->len || i >= sizeof(c->buf))
		return 1; /* stop */
	c->sum += c->buf[i & 31];
	return 0;
}

SEC("xdp")
int xdp_bytes(struct xdp_md *ctx)
{
	struct bytes_stats *st;
	struct ethhdr eth;
	struct sum_ctx sc = {};
	__u8 window[64];
	__u32 zero = 0, pkt_len;
	long ret;

	st = bpf_map_lookup_elem(&bytes_stats, &zero);
	if (!st)
		return XDP_ABORTED;

	if (bpf_xdp_load_bytes(ctx, 0, &eth, sizeof(eth)))
		return XDP_ABORTED; /* every frame here has an Ethernet header */

	ret = bpf_xdp_load_bytes(ctx, 20, window, sizeof(window));
	st->last_ret = ret;
	if (ret) {
		st->load_einval++;
		return XDP_DROP;
	}
	st->load_ok++;

	pkt_len = ctx->data_end - ctx->data;
	sc.len = pkt_len - sizeof(eth) < sizeof(sc.buf) ? pkt_len - sizeof(eth) : sizeof(sc.buf);
	if (bpf_xdp_load_bytes(ctx, sizeof(eth), sc.buf, sizeof(sc.buf)))
		sc.len = 0;
	st->loops += bpf_loop(sizeof(sc.buf), add_byte, &sc, 0);
	st->sum += sc.sum;

	if (sc.sum & 1) {
		swap_macs(&eth);
		if (bpf_xdp_store_bytes(ctx, 0, &eth, sizeof(eth)))
			return XDP_ABORTED;
		return XDP_TX;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
