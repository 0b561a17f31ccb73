// Loader test: several programs in one section, .text subprograms (global and static,
// noinline, nested, shared by two programs), a bpf_loop callback, and section names.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} counter SEC(".maps");

__u64 glob;

static __attribute__((noinline)) int leaf(int x)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counter, &k);
	if (v)
		*v += x;
	return x + 1;
}

__attribute__((noinline)) int middle(int x)
{
	glob += x;
	return leaf(x) * 2;
}

static int loop_cb(__u32 idx, void *ctx)
{
	glob += idx;
	return 0;
}

SEC("xdp")
int first(struct xdp_md *ctx)
{
	return middle(ctx->ingress_ifindex) & 3;
}

SEC("xdp")
int second(struct xdp_md *ctx)
{
	bpf_loop(4, loop_cb, 0, 0);
	return leaf(ctx->rx_queue_index) & 3;
}

SEC("xdp.frags")
int frags(struct xdp_md *ctx) { return XDP_PASS; }

SEC("xdp/devmap")
int devmap(struct xdp_md *ctx) { return XDP_PASS; }

SEC("xdp.frags/cpumap")
int cpumap(struct xdp_md *ctx) { return XDP_PASS; }

SEC("tc/egress")
int egress(struct __sk_buff *skb) { return middle(skb->len); }

SEC("classifier/foo")
int cls(struct __sk_buff *skb) { return 0; }

SEC("tc")
int tc_any(struct __sk_buff *skb) { return 0; }

SEC("action")
int act(struct __sk_buff *skb) { return 0; }

SEC("socket")
int sock(struct __sk_buff *skb) { return 0; }

SEC("weird_section")
int weird(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
