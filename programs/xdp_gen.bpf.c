// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Traffic generator for BPF_PROG_TEST_RUN with live frames: writes the 64-byte template frame
 * from `gen_template` over the packet and sends it (XDP_TX). Live frames keep whatever the
 * receiving side wrote into their pages (an encapsulating program on the peer changes the
 * generator's own frame), so the template is written on every run, not only once. Frames of
 * another length, or an empty template, pass. */
#include "userxdp.h"

#define GEN_LEN 64

struct gen_template {
	__u32 len;
	__u8 bytes[GEN_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_template);
} gen_template SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct gen_template *t;
	__u32 zero = 0;

	t = bpf_map_lookup_elem(&gen_template, &zero);
	if (!t || t->len != GEN_LEN || !IN_BOUNDS(data, GEN_LEN, end))
		return XDP_PASS;
	__builtin_memcpy(data, t->bytes, GEN_LEN);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
