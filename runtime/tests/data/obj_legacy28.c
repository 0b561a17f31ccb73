// Loader test: legacy `maps` section with samples/bpf's 28-byte struct bpf_map_def
// (inner_map_idx, numa_node): an ARRAY_OF_MAPS whose template is map 0.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct map_def28 {
	unsigned int type, key_size, value_size, max_entries, map_flags, inner_map_idx, numa_node;
};

struct map_def28 inner_tmpl SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 1,
};
struct map_def28 outer SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY_OF_MAPS, .key_size = 4, .value_size = 4, .max_entries = 2,
	.inner_map_idx = 0,
};

SEC("xdp")
int legacy28(struct xdp_md *ctx)
{
	__u32 k = 0;
	if (bpf_map_lookup_elem(&outer, &k))
		return XDP_DROP;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
