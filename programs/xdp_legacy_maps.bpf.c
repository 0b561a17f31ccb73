// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* Pre-BTF map definitions: `struct bpf_map_def` in SEC("maps"), as iproute2 and old samples
 * wrote them. libbpf >= 1.0 refuses this section, so this object is in KERNEL_REJECTS; our
 * own loader must still parse it (20-byte definitions, map found by symbol offset). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The classic 20-byte layout: five u32 fields. */
struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

/* Packets per ethertype (host order), 0 for runts. */
struct bpf_map_def SEC("maps") legacy_ethertype_count = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 64,
};

/* Slot 0: verdict for every frame (0 means XDP_PASS). */
struct bpf_map_def SEC("maps") legacy_config = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 1,
};

SEC("xdp")
int xdp_legacy(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 key = 0, zero = 0;
	__u64 one = 1, *cnt;
	__u32 *verdict;

	if ((void *)(eth + 1) <= data_end)
		key = bpf_ntohs(eth->h_proto);
	cnt = bpf_map_lookup_elem(&legacy_ethertype_count, &key);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	else
		bpf_map_update_elem(&legacy_ethertype_count, &key, &one, BPF_NOEXIST);

	verdict = bpf_map_lookup_elem(&legacy_config, &zero);
	if (verdict && *verdict)
		return *verdict;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
