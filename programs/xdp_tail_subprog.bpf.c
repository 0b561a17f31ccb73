/* A tail call from a bpf-to-bpf subprogram. In the kernel the target replaces the
 * subprogram's frame, so the target's r0 comes back to the subprogram's caller (here:
 * tail_target's verdict code, plus the caller's own adjustment). With slot 0 empty the tail
 * call falls through and the subprogram's own value is used. `classify` is a global function
 * so clang cannot fold its return value into the caller.
 *
 * Slot 0 of tail_jmp must hold tail_target (the differential tests set it). */
#include "userxdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} tail_jmp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} tail_seen SEC(".maps");

static __always_inline void seen(__u32 what)
{
	__u64 *v = bpf_map_lookup_elem(&tail_seen, &what);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Target: XDP_DROP for frames shorter than 100 bytes, else a "pass" marker (10) that the
 * caller turns into XDP_PASS. */
SEC("xdp")
int tail_target(struct xdp_md *ctx)
{
	seen(1);
	if (ctx->data_end - ctx->data < 100)
		return 1 + 100;
	return 10;
}

__attribute__((noinline)) int classify(struct xdp_md *ctx)
{
	/* Only even-length frames take the tail call: both paths are exercised. */
	if (((ctx->data_end - ctx->data) & 1) == 0)
		bpf_tail_call(ctx, &tail_jmp, 0);
	seen(2);
	return ctx->ingress_ifindex + 2; /* 3 in a test run (loopback): XDP_TX after -0 */
}

SEC("xdp")
int xdp_tail_subprog(struct xdp_md *ctx)
{
	int r = classify(ctx);

	seen(3);
	if (r == 10)
		return XDP_PASS;
	if (r > 100)
		return r - 100;
	return r;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
