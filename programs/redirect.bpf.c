// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The kernel half of the AF_XDP datapath: steer every frame of queue q to the AF_XDP socket
 * bound to q, and let the kernel stack have it when no socket is bound there. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* queue id -> AF_XDP socket; filled by the datapath. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

SEC("xdp")
int xdp_redirect_xsk(struct xdp_md *ctx)
{
	__u32 qid = ctx->rx_queue_index;

	/* Lower bits of flags are the verdict when the slot is empty. */
	return bpf_redirect_map(&xsks_map, qid, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
