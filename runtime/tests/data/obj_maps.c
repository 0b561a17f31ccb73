// Loader test: BTF-defined maps (incl. a map-in-map template), global data in .rodata, .data
// and .bss at known offsets, and map relocations.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct key {
	__u32 a;
	__u16 b;
};
typedef struct key key_t;

struct val {
	__u64 x[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, const key_t);
	__type(value, struct val);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hash_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, 4);
	__uint(value_size, 8);
	__uint(max_entries, 16);
} array_map SEC(".maps");

struct inner_def {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, struct inner_def);
} outer_map SEC(".maps");

volatile const __u32 ro_a = 7;
volatile const __u64 ro_b = 9;
volatile __u32 data_a = 1;
volatile __u64 data_b = 2;
volatile __u32 bss_a;
volatile __u64 bss_b;

SEC("xdp")
int use_maps(struct xdp_md *ctx)
{
	key_t k = { .a = 1, .b = 2 };
	__u32 i = 0;
	struct val *v = bpf_map_lookup_elem(&hash_map, &k);
	if (v)
		v->x[0]++;
	__u64 *p = bpf_map_lookup_elem(&array_map, &i);
	if (p)
		*p += ro_a;
	void *inner = bpf_map_lookup_elem(&outer_map, &i);
	if (inner)
		bss_a = 1;
	data_b += ro_b;
	bss_b = data_a;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
