// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* DELIBERATELY INVALID: reads the packet without comparing against data_end. The kernel
 * verifier must reject it ("invalid access to packet"); it is listed in KERNEL_REJECTS and
 * used to test that verification failures are reported. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int bad_oob(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	/* No bounds check on purpose. */
	return data[20] == 0x45 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
