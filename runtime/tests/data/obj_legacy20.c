// Loader test: legacy `maps` section with 20-byte struct bpf_map_def.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct map_def20 {
	unsigned int type, key_size, value_size, max_entries, map_flags;
};

struct map_def20 legacy_a SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 4,
};
struct map_def20 legacy_b SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH, .key_size = 8, .value_size = 16, .max_entries = 100, .map_flags = 1,
};

SEC("xdp")
int legacy(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 k2 = 0;
	__u64 *v = bpf_map_lookup_elem(&legacy_a, &k);
	if (v)
		*v += 1;
	if (bpf_map_lookup_elem(&legacy_b, &k2))
		return XDP_DROP;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
