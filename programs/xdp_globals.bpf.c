// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Global variables in all three libbpf flavours:
 *   .rodata  const volatile configuration (set before load),
 *   .data    initialised, read and written,
 *   .bss     zero-initialised counters.
 * Verdict: frames shorter than min_len are dropped; every `sample_every`-th frame (by the
 * .bss counter) gets `sample_verdict`; the rest get `verdict` from .data, which the program
 * flips to XDP_DROP after `budget` frames have passed. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* .rodata */
const volatile __u32 min_len = 14;
const volatile __u32 sample_every = 4;
const volatile __u32 sample_verdict = XDP_TX;

/* .data */
__u32 verdict = XDP_PASS;
__u64 budget = 1000;
char tag[8] = "userxdp";

/* .bss */
__u64 frames;
__u64 bytes;
__u32 last_len;
__u8 last_first_byte;

SEC("xdp")
int xdp_globals(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	__u64 n;

	n = ++frames;
	bytes += len;
	last_len = len;
	if (data + 1 <= data_end)
		last_first_byte = *(__u8 *)data ^ tag[0];

	if (len < min_len)
		return XDP_DROP;
	if (sample_every && n % sample_every == 0)
		return sample_verdict;
	if (budget == 0) {
		verdict = XDP_DROP;
		return verdict;
	}
	budget--;
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
