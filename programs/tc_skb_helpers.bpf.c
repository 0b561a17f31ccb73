// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The __sk_buff helpers a TC egress program uses, with packet-dependent arguments:
 *   - bpf_skb_load_bytes of the Ethernet + IPv4 headers (and out of range: -EFAULT, zeroed);
 *   - IPv4 frames: TTL decremented and the destination address rewritten with
 *     bpf_skb_store_bytes, the IP checksum fixed with bpf_l3_csum_replace (sizes 2 and 4 and a
 *     bpf_csum_diff delta with size 0), the TCP/UDP checksum with bpf_l4_csum_replace
 *     (BPF_F_PSEUDO_HDR; BPF_F_MARK_MANGLED_0 for UDP), the UDP port with size 2;
 *   - bpf_skb_change_tail: short frames grow by up to 31 zeroed bytes and get a marker
 *     written at the new end, long ones are cut; data/data_end are re-read afterwards.
 * Return codes of every call (including deliberate failures: odd or huge offsets, bad flags,
 * lengths out of range) are recorded in skb_rets, so map comparison checks error codes. */
#include "userxdp.h"
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#define RET_SLOTS 24

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RET_SLOTS);
	__type(key, __u32);
	__type(value, __s64);
} skb_rets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __s64);
	__type(value, __u64);
} skb_ret_counts SEC(".maps");

/* Records the last return code of call `slot` and counts (slot, code) pairs. */
static __always_inline void rec(__u32 slot, __s64 ret)
{
	__s64 key = ((__s64)slot << 32) ^ ret;
	__u64 one = 1, *c;

	bpf_map_update_elem(&skb_rets, &slot, &ret, BPF_ANY);
	c = bpf_map_lookup_elem(&skb_ret_counts, &key);
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		bpf_map_update_elem(&skb_ret_counts, &key, &one, BPF_NOEXIST);
}

#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_TTL_OFF (IP_OFF + offsetof(struct iphdr, ttl))
#define IP_DST_OFF (IP_OFF + offsetof(struct iphdr, daddr))
#define IP_SRC_OFF (IP_OFF + offsetof(struct iphdr, saddr))

static __always_inline void rewrite_l4(struct __sk_buff *skb, __u8 ihl, __u8 proto,
				       __u32 old_dst, __u32 new_dst)
{
	__u32 l4 = IP_OFF + 20;
	__u16 old_port, new_port;
	long r;

	if (ihl != 5)
		return;
	if (proto == IPPROTO_TCP) {
		r = bpf_l4_csum_replace(skb, l4 + offsetof(struct tcphdr, check), old_dst, new_dst,
					BPF_F_PSEUDO_HDR | 4);
		rec(10, r);
	} else if (proto == IPPROTO_UDP) {
		__u32 csum_off = l4 + offsetof(struct udphdr, check);

		r = bpf_l4_csum_replace(skb, csum_off, old_dst, new_dst,
					BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
		rec(11, r);
		r = bpf_skb_load_bytes(skb, l4 + offsetof(struct udphdr, dest), &old_port, 2);
		rec(12, r);
		if (r)
			return;
		new_port = old_port ^ bpf_htons(0x0101);
		r = bpf_skb_store_bytes(skb, l4 + offsetof(struct udphdr, dest), &new_port, 2, 0);
		rec(13, r);
		r = bpf_l4_csum_replace(skb, csum_off, old_port, new_port,
					BPF_F_MARK_MANGLED_0 | 2);
		rec(14, r);
		/* Enforce: a zero checksum is updated too. */
		r = bpf_l4_csum_replace(skb, csum_off, 0, 0, BPF_F_MARK_MANGLED_0 |
					BPF_F_MARK_ENFORCE | 2);
		rec(15, r);
	} else {
		/* Not TCP/UDP: exercise the by-diff form on the IP id field's neighbour. */
		r = bpf_l4_csum_replace(skb, IP_CSUM_OFF, 1, 2, 0);
		rec(16, r); /* size 0 with from != 0: -EINVAL */
	}
}

SEC("tc")
int tc_skb_helpers(struct __sk_buff *skb)
{
	struct {
		struct ethhdr eth;
		struct iphdr ip;
	} __attribute__((packed)) h;
	__u32 len = skb->len;
	__u8 ttl_word[2], new_ttl_word[2];
	__u32 old_dst, new_dst, old_src, new_src;
	__s64 diff;
	long r;
	void *data, *data_end;
	__u8 marker[4] = { 0xde, 0xad, 0xbe, 0xef };
	__u32 new_len;

	r = bpf_skb_load_bytes(skb, 0, &h, sizeof(h));
	rec(0, r);
	/* Past the end: -EFAULT and the buffer zeroed. */
	r = bpf_skb_load_bytes(skb, len - 2, &old_dst, 4);
	rec(1, r);
	rec(2, old_dst);
	/* Bad flags, odd offset, huge offset. */
	rec(3, bpf_skb_store_bytes(skb, 0, marker, 4, 4));
	rec(4, bpf_l3_csum_replace(skb, 1, 0, 0, 0));
	rec(5, bpf_l4_csum_replace(skb, 0x10000, 0, 0, 0));
	rec(6, bpf_l3_csum_replace(skb, 0, 0, 0, 3));
	rec(7, bpf_l4_csum_replace(skb, 0, 0, 0, 1 << 8));

	if (r == 0 || h.eth.h_proto != bpf_htons(ETH_P_IP) || len < sizeof(h))
		goto tail;
	if (bpf_skb_load_bytes(skb, 0, &h, sizeof(h)))
		goto tail;

	/* TTL: the 16-bit word holding ttl and protocol, updated with size 2. */
	ttl_word[0] = h.ip.ttl;
	ttl_word[1] = h.ip.protocol;
	new_ttl_word[0] = h.ip.ttl - 1;
	new_ttl_word[1] = h.ip.protocol;
	r = bpf_skb_store_bytes(skb, IP_TTL_OFF, &new_ttl_word[0], 1, BPF_F_RECOMPUTE_CSUM);
	rec(8, r);
	r = bpf_l3_csum_replace(skb, IP_CSUM_OFF, *(__u16 *)ttl_word, *(__u16 *)new_ttl_word, 2);
	rec(9, r);

	/* Destination: size 4 for both checksums. */
	old_dst = h.ip.daddr;
	new_dst = old_dst ^ bpf_htonl(0x01000000 | len);
	r = bpf_skb_store_bytes(skb, IP_DST_OFF, &new_dst, 4, BPF_F_INVALIDATE_HASH);
	rec(17, r);
	r = bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_dst, new_dst, 4);
	rec(18, r);
	rewrite_l4(skb, h.ip.ihl, h.ip.protocol, old_dst, new_dst);

	/* Source: a bpf_csum_diff delta applied with size 0. */
	old_src = h.ip.saddr;
	new_src = bpf_htonl(0xc6120000 | (len & 0xffff));
	diff = bpf_csum_diff(&old_src, 4, &new_src, 4, 0);
	r = bpf_skb_store_bytes(skb, IP_SRC_OFF, &new_src, 4, 0);
	rec(19, r);
	r = bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, diff, 0);
	rec(20, r);

tail:
	/* Too short, too long, bad flags: -EINVAL. */
	rec(21, bpf_skb_change_tail(skb, 13, 0) + bpf_skb_change_tail(skb, 70000, 0) +
			bpf_skb_change_tail(skb, len, 1));
	if (len < 128)
		new_len = len + (len & 31);
	else
		new_len = len - (len & 63);
	r = bpf_skb_change_tail(skb, new_len, 0);
	rec(22, r);
	if (r == 0 && new_len >= 4) {
		r = bpf_skb_store_bytes(skb, new_len - 4, marker, 4, 0);
		rec(23, r);
	}
	/* Packet pointers are stale after change_tail: re-read them. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + 14 > data_end)
		return TC_ACT_SHOT;
	return (skb->len == data_end - data) ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
