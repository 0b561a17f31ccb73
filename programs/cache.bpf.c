// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* cache: a BMC-style look-aside cache for memcached over UDP (port 11211).
 *
 * Ingress (XDP, cache_ingress) parses Ethernet (one optional 802.1Q/802.1ad tag), IPv4 (options
 * allowed, fragments passed), UDP to 11211 and the 8-byte memcached UDP frame header (request
 * id, sequence 0, 1 datagram). Then, through cache_xdp_progs (filled statically below):
 *
 *   cache_ingress --[0]--> cache_hash_keys (one key per call, self tail call)
 *                 --[1]--> cache_lookup    (one key per call, self tail call)
 *                 --[2]--> cache_reply     (all keys hit: XDP_TX the reply)
 *                 --[3]--> cache_invalidate (SET/ADD/.../FLUSH_ALL, ASCII or binary: PASS)
 *
 * A hit is answered as memcached would: ASCII `VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n`
 * (several VALUE blocks for `get a b c`, only when every key hits), binary GET/GETK responses
 * with the flags extras, the key for GETK and the CAS. Misses PASS; a binary GET miss is
 * rewritten to GETK (UDP checksum fixed) so memcached's reply carries the key, as BMC does.
 *
 * Egress (TC, cache_egress, direct packet access only) watches replies from 11211 and, through
 * cache_tc_progs[0] = cache_fill, fills entries from `VALUE k f n\r\ndata\r\n` blocks (up to
 * MAX_KEYS blocks of a reply, one per self tail call) and binary GETK responses. It always
 * returns TC_ACT_OK.
 *
 * Consistency: a SET must never be followed, once acknowledged, by a hit on the old value.
 *  - Writes invalidate their bucket at ingress (valid = 0, epoch++) before memcached sees them.
 *  - A fill is accepted only for the bucket's latest miss: the miss records (client address,
 *    client port, request id, key hash, epoch, flush generation) in the entry, and the reply
 *    must carry the same request id to the same client while epoch and generation are unchanged.
 *    So a GET reply that crosses a SET (generated before it) cannot fill.
 *  - The write itself is remembered in cache_pending_writes by (client, port, request id); when
 *    memcached's acknowledgement leaves through egress, the bucket's epoch is bumped again, so
 *    a miss that was registered while the write was in flight (and may have read the old value
 *    inside memcached) cannot fill either. FLUSH_ALL bumps the global generation both times.
 *  Remaining gaps: an LRU eviction of a pending write record under heavy write load loses the
 *  second bump; writes with noreply have no acknowledgement (nothing to order against); entry
 *  expiry (exptime, TOUCH) is not tracked beyond invalidation on TOUCH.
 *
 * Binary hits need the CAS, which only binary replies carry: entries filled from ASCII replies
 * serve ASCII gets only (binary gets on them are misses).
 *
 * Limits: keys <= max_key_len (<= 250), values <= max_value_len (<= 1000), up to MAX_KEYS keys
 * per get, replies up to MAX_REPLY payload bytes; anything bigger is passed to memcached.
 */
#include "userxdp.h"
#include <linux/ip.h>
#include <linux/udp.h>

#ifndef CACHE_ENTRIES
#define CACHE_ENTRIES 65536 /* must be a power of two */
#endif

#define MEMCACHED_PORT 11211
#define FRAME_HDR 8		/* memcached UDP frame header */
#define KEY_CAP 256		/* key buffer: keys are at most 250 bytes */
#define CHUNK_CAP 1280		/* "VALUE k f n\r\n" (<= 274) + data (<= 1000) + "\r\n" */
#define MAX_KEYS 8		/* keys per ASCII get */
#define MAX_REPLY 1400		/* reply payload bytes after the frame header */
#define OUT_MASK 2047		/* out buffer index mask (buffer has 8 bytes of slack) */
#define MAX_SCAN 2048		/* packet offsets beyond this are not parsed */
#define BIN_HDR 24
#define FNV_BASIS 2166136261u
#define FNV_PRIME 16777619u
#define FLUSH_BUCKET 0xffffffffu
#define HDR_SAVE 128		/* saved headers: l2 (<= 18) + IPv4 (<= 60) + UDP + frame + binary hdr */
#define HEAD_GROW 192		/* most a reply grows at the head (XDP headroom 256 - struct xdp_frame) */

/* Tunables (set before load through .rodata); clamped to the buffer sizes above. */
const volatile __u32 max_key_len = 250;
const volatile __u32 max_value_len = 1000;

/* Bumped by FLUSH_ALL: entries and pending misses of older generations are dead. */
__u64 cache_generation = 0;

struct cache_entry {
	struct bpf_spin_lock lock;
	__u32 valid;
	__u32 hash;
	__u32 key_len;
	__u32 value_len;	/* data bytes */
	__u32 chunk_len;	/* bytes of chunk used */
	__u32 data_off;		/* where data starts in chunk */
	__u32 flags;
	__u32 epoch;		/* bumped by every invalidation of this bucket */
	__u32 pending;		/* a miss waits for its reply */
	__u32 pending_ip;	/* client of that miss (network order) */
	__u16 pending_port;	/* client port (network order) */
	__u16 pending_req;	/* memcached request id (network order) */
	__u32 pending_hash;
	__u32 pending_epoch;
	__u32 pad;
	__u64 pending_gen;
	__u64 generation;	/* cache_generation at fill */
	__u64 cas;		/* 0: unknown (filled from ASCII) */
	char key[KEY_CAP];
	char chunk[CHUNK_CAP];	/* the ASCII reply block, verbatim */
};

struct cache_stats {
	__u64 hits;
	__u64 misses;
	__u64 invalidations;
	__u64 fills;
	__u64 passes;
};

enum cache_cmd {
	CMD_ASCII_GET = 1,
	CMD_BIN_GET = 2,	/* opcode GET (0x00) */
	CMD_BIN_GETK = 3,	/* opcode GETK (0x0c) */
	CMD_ASCII_WRITE = 4,	/* key starts at key_off, ends at a space or CR */
	CMD_BIN_WRITE = 5,	/* key at key_off, key_len bytes */
	CMD_FLUSH = 6,
};

/* Ingress state carried along the tail-call chain (per CPU). */
struct rx_state {
	__u32 cmd;
	__u32 l2_len;		/* Ethernet (+ VLAN) header bytes */
	__u32 udp_off;		/* offset of the UDP header */
	__u32 payload_off;	/* offset of the memcached payload (after the frame header) */
	__u32 payload_end;	/* udp_off + udp length */
	__u32 cursor;		/* next byte to parse */
	__u32 nkeys;
	__u32 cur;		/* key being looked up */
	__u32 out_len;		/* ASCII reply bytes in out */
	__u32 missed;
	__u32 key_off;		/* binary / write commands: key offset and length */
	__u32 key_len;
	__u32 client_ip;
	__u16 client_port;
	__u16 req_id;
	__u32 stop;		/* terminator of the last key read */
	__u32 pad2;
	__u64 gen;
	/* binary hit */
	__u32 bin_flags;
	__u32 bin_data_off;
	__u32 bin_value_len;
	__u32 pad;
	__u64 bin_cas;
	__u8 hdrs[HDR_SAVE];	/* the request's headers while the frame is resized */
	__u32 hash[MAX_KEYS];
	__u32 len[MAX_KEYS];
	char keys[MAX_KEYS][KEY_CAP];
	char out[OUT_MASK + 1 + 8];
};

/* Egress state: the chunk being filled. */
struct tx_state {
	__u32 hash;
	__u32 key_len;
	__u32 chunk_len;
	__u32 data_off;
	__u32 value_len;
	__u32 flags;
	__u64 cas;
	__u32 client_ip;
	__u16 client_port;
	__u16 req_id;
	__u32 pkt_off;		/* ASCII: offset of "VALUE"; binary: of the header */
	__u32 binary;
	__u32 stop;		/* terminator of the key read */
	__u32 blocks;		/* VALUE blocks of this reply seen so far */
	__u64 number;		/* last decimal read */
	char key[KEY_CAP];
	char chunk[2048];
};

struct pending_write {
	__u32 client_ip;
	__u16 client_port;
	__u16 req_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CACHE_ENTRIES);
	__type(key, __u32);
	__type(value, struct cache_entry);
} cache_entries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cache_stats);
} cache_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rx_state);
} cache_rx_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tx_state);
} cache_tx_state SEC(".maps");

/* Writes in flight: (client, port, request id) -> bucket (FLUSH_BUCKET for flush_all). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct pending_write);
	__type(value, __u32);
} cache_pending_writes SEC(".maps");

enum xdp_slot {
	SLOT_HASH_KEYS = 0,
	SLOT_LOOKUP = 1,
	SLOT_REPLY = 2,
	SLOT_INVALIDATE = 3,
};

int cache_hash_keys(struct xdp_md *ctx);
int cache_lookup(struct xdp_md *ctx);
int cache_reply(struct xdp_md *ctx);
int cache_invalidate(struct xdp_md *ctx);
int cache_fill(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int(struct xdp_md *));
} cache_xdp_progs SEC(".maps") = {
	.values = {
		[SLOT_HASH_KEYS] = (void *)&cache_hash_keys,
		[SLOT_LOOKUP] = (void *)&cache_lookup,
		[SLOT_REPLY] = (void *)&cache_reply,
		[SLOT_INVALIDATE] = (void *)&cache_invalidate,
	},
};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int(struct __sk_buff *));
} cache_tc_progs SEC(".maps") = {
	.values = {
		[0] = (void *)&cache_fill,
	},
};

enum stat { ST_HIT, ST_MISS, ST_INVAL, ST_FILL, ST_PASS };

static __always_inline void count(enum stat which)
{
	__u32 zero = 0;
	struct cache_stats *s = bpf_map_lookup_elem(&cache_stats, &zero);

	if (!s)
		return;
	switch (which) {
	case ST_HIT: s->hits++; break;
	case ST_MISS: s->misses++; break;
	case ST_INVAL: s->invalidations++; break;
	case ST_FILL: s->fills++; break;
	case ST_PASS: s->passes++; break;
	}
}

static __always_inline int pass(void)
{
	count(ST_PASS);
	return XDP_PASS;
}

static __always_inline struct rx_state *rx_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cache_rx_state, &zero);
}

static __always_inline __u32 key_limit(void)
{
	__u32 l = max_key_len;

	return l < KEY_CAP - 6 ? l : KEY_CAP - 6;
}

static __always_inline __u32 value_limit(void)
{
	__u32 l = max_value_len;

	return l < 1000 ? l : 1000;
}

static __always_inline __u64 generation(void)
{
	return *(volatile __u64 *)&cache_generation;
}

static __always_inline __u32 bucket_of(__u32 hash)
{
	return hash & (CACHE_ENTRIES - 1);
}

/* Headers of a memcached UDP datagram. */
struct mc_hdrs {
	__u32 l2_len;
	__u32 udp_off;
	__u32 payload_off;
	__u32 payload_end;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u16 req_id;
};

/* Parses Ethernet/VLAN/IPv4/UDP and the memcached frame header. `to_server` picks the port
 * that must be 11211 (destination for requests, source for replies). Returns 0 on success. */
static __always_inline int parse_mc(void *data, void *end, int to_server, struct mc_hdrs *h)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u16 proto;
	__u32 l2 = sizeof(*eth), ihl, udp_len;
	__u16 *frame;

	if (!IN_BOUNDS(eth, sizeof(*eth), end))
		return -1;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if (!IN_BOUNDS(vh, sizeof(*vh), end))
			return -1;
		proto = vh->encapsulated_proto;
		l2 += sizeof(*vh);
	}
	if (proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = data + l2;
	if (!IN_BOUNDS(ip, sizeof(*ip), end))
		return -1;
	if (ip->version != 4 || ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
		return -1;
	/* More fragments, or a fragment offset: not a whole datagram. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return -1;
	ihl = ip->ihl * 4;
	udp = (void *)ip + ihl;
	if (!IN_BOUNDS(udp, sizeof(*udp), end))
		return -1;
	if ((to_server ? udp->dest : udp->source) != bpf_htons(MEMCACHED_PORT))
		return -1;
	udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) + FRAME_HDR)
		return -1;
	if ((void *)udp + udp_len > end)
		return -1;
	if (bpf_ntohs(ip->tot_len) < ihl + udp_len)
		return -1;
	frame = (void *)(udp + 1);
	if (!IN_BOUNDS(frame, FRAME_HDR, end))
		return -1;
	/* Sequence 0 of exactly 1 datagram. */
	if (frame[1] != 0 || frame[2] != bpf_htons(1))
		return -1;
	h->l2_len = l2;
	h->udp_off = l2 + ihl;
	h->payload_off = h->udp_off + sizeof(*udp) + FRAME_HDR;
	h->payload_end = h->udp_off + udp_len;
	h->saddr = ip->saddr;
	h->daddr = ip->daddr;
	h->sport = udp->source;
	h->dport = udp->dest;
	h->req_id = frame[0];
	return 0;
}

/* Copies up to 16 payload bytes (zero padded) for command matching. */
static __always_inline void peek16(void *data, void *end, __u32 off, __u8 *buf)
{
	__u32 i;

	__builtin_memset(buf, 0, 16);
#pragma unroll
	for (i = 0; i < 16; i++) {
		__u8 *p = data + off + i;

		/* Hide p from clang's loop rewriting: the verifier needs the check on p itself. */
		barrier_var(p);

		if (!IN_BOUNDS(p, 1, end))
			break;
		buf[i] = *p;
	}
}

static __always_inline int has_prefix(const __u8 *buf, const char *s, int n)
{
	int i;

#pragma unroll
	for (i = 0; i < n; i++)
		if (buf[i] != (__u8)s[i])
			return 0;
	return 1;
}

#define PREFIX(buf, lit) has_prefix(buf, lit, sizeof(lit) - 1)

/* ASCII commands whose first argument is a key they modify; returns the command length
 * (with its space), 0 otherwise. */
static __always_inline __u32 ascii_write_cmd(const __u8 *b)
{
	if (PREFIX(b, "set ") || PREFIX(b, "add ") || PREFIX(b, "cas "))
		return 4;
	if (PREFIX(b, "incr ") || PREFIX(b, "decr "))
		return 5;
	if (PREFIX(b, "delete ") || PREFIX(b, "append "))
		return 7;
	if (PREFIX(b, "replace ") || PREFIX(b, "prepend "))
		return 8;
	if (PREFIX(b, "touch "))
		return 6;
	/* meta set / delete / arithmetic */
	if (PREFIX(b, "ms ") || PREFIX(b, "md ") || PREFIX(b, "ma "))
		return 3;
	return 0;
}

/* Binary opcodes that modify the key they name (quiet variants too). */
static __always_inline int bin_write_op(__u8 op)
{
	switch (op) {
	case 0x01: case 0x02: case 0x03: case 0x04: case 0x05: case 0x06: /* set .. decr */
	case 0x0e: case 0x0f:			/* append, prepend */
	case 0x11: case 0x12: case 0x13: case 0x14: case 0x15: case 0x16: /* quiet */
	case 0x19: case 0x1a:			/* appendq, prependq */
	case 0x1c: case 0x1d: case 0x1e:	/* touch, gat, gatq */
	case 0x23: case 0x24:			/* gatk, gatkq */
		return 1;
	}
	return 0;
}

SEC("xdp")
int cache_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct mc_hdrs h = {};
	struct rx_state *st;
	__u8 b[16];
	__u32 n;

	if (parse_mc(data, end, 1, &h))
		return XDP_PASS;
	st = rx_state();
	if (!st)
		return pass();
	st->l2_len = h.l2_len;
	st->udp_off = h.udp_off;
	st->payload_off = h.payload_off;
	st->payload_end = h.payload_end;
	st->client_ip = h.saddr;
	st->client_port = h.sport;
	st->req_id = h.req_id;
	st->nkeys = 0;
	st->cur = 0;
	st->out_len = 0;
	st->missed = 0;
	st->gen = generation();
	peek16(data, end, h.payload_off, b);

	if (b[0] == 0x80) {
		/* Binary request header: magic, opcode, key length, extras length, ... */
		__u8 *hdr = data + h.payload_off;
		__u32 klen, extlen;

		if (!IN_BOUNDS(hdr, BIN_HDR, end))
			return pass();
		klen = ((__u32)hdr[2] << 8) | hdr[3];
		extlen = hdr[4];
		st->key_off = h.payload_off + BIN_HDR + extlen;
		st->key_len = klen;
		if (st->key_off + klen > h.payload_end)
			return pass();
		if (hdr[1] == 0x00 || hdr[1] == 0x0c) {
			if (klen == 0 || klen > key_limit() || extlen != 0)
				return pass();
			st->cmd = hdr[1] == 0x00 ? CMD_BIN_GET : CMD_BIN_GETK;
			st->cursor = st->key_off;
			bpf_tail_call(ctx, &cache_xdp_progs, SLOT_HASH_KEYS);
			return pass();
		}
		if (hdr[1] == 0x08 || hdr[1] == 0x18) {
			st->cmd = CMD_FLUSH;
			bpf_tail_call(ctx, &cache_xdp_progs, SLOT_INVALIDATE);
			return pass();
		}
		if (bin_write_op(hdr[1])) {
			st->cmd = CMD_BIN_WRITE;
			bpf_tail_call(ctx, &cache_xdp_progs, SLOT_INVALIDATE);
		}
		return pass();
	}
	if (PREFIX(b, "get ")) {
		st->cmd = CMD_ASCII_GET;
		st->cursor = h.payload_off + 4;
		bpf_tail_call(ctx, &cache_xdp_progs, SLOT_HASH_KEYS);
		return pass();
	}
	if (PREFIX(b, "flush_all")) {
		st->cmd = CMD_FLUSH;
		bpf_tail_call(ctx, &cache_xdp_progs, SLOT_INVALIDATE);
		return pass();
	}
	n = ascii_write_cmd(b);
	if (n) {
		st->cmd = CMD_ASCII_WRITE;
		st->key_off = h.payload_off + n;
		bpf_tail_call(ctx, &cache_xdp_progs, SLOT_INVALIDATE);
	}
	return pass();
}

/* Hashes (FNV-1a) and copies one key starting at `off` into `key` (zero padded to KEY_CAP).
 * ASCII keys (`bin_len` 0) end at a space or control character (CR, LF), which goes to *stop;
 * binary keys are `bin_len` bytes. Returns the key length, or -1 (too long, truncated, empty).
 * Two plain single-path loops: branchy variants make the verifier's work explode. */
static __always_inline int read_key(void *data, void *end, __u32 off, __u32 bin_len,
				    char *key, __u32 *hash, __u8 *stop)
{
	__u32 limit = key_limit(), h = FNV_BASIS, i;
	__u64 *kw = (void *)key;
	__u8 c = 0;

#pragma unroll
	for (i = 0; i < KEY_CAP / 8; i++)
		kw[i] = 0;
	*stop = 0;
	if (off > MAX_SCAN)
		return -1;
	if (bin_len) {
		if (bin_len > limit)
			return -1;
		for (i = 0; i < KEY_CAP; i++) {
			__u8 *p = data + off + i;

			barrier_var(p);
			if (i >= bin_len)
				break;
			if (!IN_BOUNDS(p, 1, end))
				return -1;
			c = *p;
			h = (h ^ c) * FNV_PRIME;
			key[i] = c;
		}
	} else {
		for (i = 0; i < KEY_CAP; i++) {
			__u8 *p = data + off + i;

			/* Hide p from clang's loop rewriting: the verifier needs the check on p. */
			barrier_var(p);
			if (!IN_BOUNDS(p, 1, end))
				return -1;
			c = *p;
			if (c <= ' ')
				break;
			h = (h ^ c) * FNV_PRIME;
			key[i] = c;
		}
		*stop = c;
	}
	if (i == 0 || i > limit)
		return -1;
	*hash = h;
	return i;
}

/* read_key into the ingress state's key `slot`: hash in st->hash[slot], terminator in
 * st->stop. Global (verified once; the caller sees an unknown length, so its own paths do not
 * multiply by every possible key length). */
__noinline int rx_read_key(struct xdp_md *ctx, __u32 off, __u32 bin_len, __u32 slot)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct rx_state *st = rx_state();
	__u32 hash = 0;
	__u8 stop = 0;
	int len;

	if (!st)
		return -1;
	slot &= MAX_KEYS - 1;
	len = read_key(data, end, off, bin_len, st->keys[slot], &hash, &stop);
	st->hash[slot] = hash;
	st->stop = stop;
	return len;
}

/* One key per call: the next key of an ASCII get (or the binary key), then on to lookups. */
SEC("xdp")
int cache_hash_keys(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct rx_state *st = rx_state();
	__u32 idx, bin;
	__u8 stop = 0;
	int len;

	if (!st)
		return pass();
	idx = st->nkeys;
	if (idx >= MAX_KEYS)
		return pass();
	bin = st->cmd != CMD_ASCII_GET ? st->key_len : 0;
	len = rx_read_key(ctx, st->cursor, bin, idx);
	if (len < 0 || len >= KEY_CAP)
		return pass();
	stop = st->stop;
	st->len[idx] = len;
	st->nkeys = idx + 1;
	if (!bin) {
		__u32 next = st->cursor + len + 1;
		__u8 *p = data + (next & (MAX_SCAN - 1));

		if (stop == ' ') {
			/* "get a \r\n": a trailing space before the end of line. */
			if (next > MAX_SCAN || !IN_BOUNDS(p, 1, end))
				return pass();
			if (*p != '\r') {
				st->cursor = next;
				bpf_tail_call(ctx, &cache_xdp_progs, SLOT_HASH_KEYS);
				return pass();
			}
			next++;
			p = data + (next & (MAX_SCAN - 1));
		} else if (stop != '\r') {
			return pass();
		}
		/* At the CR: "\n" must follow and end the request. */
		if (next > MAX_SCAN || !IN_BOUNDS(p, 1, end) || *p != '\n' ||
		    next + 1 != st->payload_end)
			return pass();
	}
	bpf_tail_call(ctx, &cache_xdp_progs, SLOT_LOOKUP);
	return pass();
}

/* Records a miss of `e` so that the matching reply may fill it. Called with e->lock held. */
static __always_inline void note_miss(struct cache_entry *e, struct rx_state *st, __u32 hash)
{
	e->pending = 1;
	e->pending_ip = st->client_ip;
	e->pending_port = st->client_port;
	e->pending_req = st->req_id;
	e->pending_hash = hash;
	e->pending_epoch = e->epoch;
	e->pending_gen = st->gen;
}

/* One key per call: takes the entry's lock, compares, copies the reply block out. */
SEC("xdp")
int cache_lookup(struct xdp_md *ctx)
{
	struct rx_state *st = rx_state();
	struct cache_entry *e;
	__u32 idx, bucket, hash, len, pos, i, hit = 0;
	__u64 *kw, *ew;
	int binary;

	if (!st)
		return pass();
	idx = st->cur;
	if (idx >= MAX_KEYS || idx >= st->nkeys)
		return pass();
	hash = st->hash[idx];
	len = st->len[idx];
	binary = st->cmd != CMD_ASCII_GET;
	bucket = bucket_of(hash);
	e = bpf_map_lookup_elem(&cache_entries, &bucket);
	if (!e)
		return pass();
	pos = st->out_len;
	kw = (void *)st->keys[idx];
	ew = (void *)e->key;

	bpf_spin_lock(&e->lock);
	if (e->valid && e->hash == hash && e->key_len == len && e->generation == st->gen &&
	    (!binary || e->cas != 0)) {
		hit = 1;
		for (i = 0; i < KEY_CAP / 8; i++) {
			if (kw[i] != ew[i]) {
				hit = 0;
				break;
			}
		}
	}
	if (hit) {
		__u32 clen = e->chunk_len;

		if (clen > CHUNK_CAP || pos + clen > MAX_REPLY - 5) {
			hit = 0; /* the reply would not fit: let memcached answer */
		} else {
			__u64 *src = (void *)e->chunk;

			for (i = 0; i < CHUNK_CAP / 8; i++) {
				if (i * 8 >= clen)
					break;
				*(__u64 *)(st->out + ((pos + i * 8) & OUT_MASK)) = src[i];
			}
			st->out_len = pos + clen;
			st->bin_flags = e->flags;
			st->bin_data_off = e->data_off;
			st->bin_value_len = e->value_len;
			st->bin_cas = e->cas;
		}
	} else {
		note_miss(e, st, hash);
	}
	bpf_spin_unlock(&e->lock);

	if (!hit)
		st->missed = 1;
	st->cur = idx + 1;
	if (idx + 1 < st->nkeys) {
		bpf_tail_call(ctx, &cache_xdp_progs, SLOT_LOOKUP);
		return pass();
	}
	if (st->missed) {
		count(ST_MISS);
		if (st->cmd == CMD_BIN_GET) {
			/* GET -> GETK, so memcached's reply carries the key for the fill. */
			void *data = (void *)(long)ctx->data;
			void *end = (void *)(long)ctx->data_end;
			__u32 off = st->payload_off, uoff = st->udp_off;
			__u16 *word = data + (off & (MAX_SCAN - 1));
			struct udphdr *udp = data + (uoff & 127);

			if (off > MAX_SCAN || !IN_BOUNDS(word, 2, end) || !IN_BOUNDS(udp, 8, end))
				return pass();
			{
				__u16 old = *word;
				__u16 new = bpf_htons(0x800c);

				*word = new;
				if (udp->check)
					udp->check = csum_replace2(udp->check, old, new) ?: 0xffff;
			}
		}
		return pass();
	}
	bpf_tail_call(ctx, &cache_xdp_progs, SLOT_REPLY);
	return pass();
}

/* Sum of 16-bit words of the packet bytes [off, off + len), native order. */
static __always_inline __u32 sum_words(void *data, void *end, __u32 off, __u32 len, int *bad)
{
	__u32 sum = 0, i;

	for (i = 0; i < (MAX_REPLY + 64) / 2; i++) {
		__u16 *w = data + ((off + 2 * i) & (MAX_SCAN * 2 - 1));

		barrier_var(w);

		if (2 * i + 1 >= len)
			break;
		if (!IN_BOUNDS(w, 2, end)) {
			*bad = 1;
			return 0;
		}
		sum += *w;
	}
	if (len & 1) {
		__u8 *p = data + ((off + len - 1) & (MAX_SCAN * 2 - 1));

		if (!IN_BOUNDS(p, 1, end)) {
			*bad = 1;
			return 0;
		}
		/* The odd byte is the high-order byte of a zero-padded word. */
		__u16 last = 0;
		*(__u8 *)&last = *p;
		sum += last;
	}
	return sum;
}

/* Resizes the frame by `delta` bytes; 0 on success, the frame unchanged otherwise. Afterwards
 * only the length is known: the caller rewrites headers and payload.
 *
 * Shrinking trims the tail. Growing takes room at the head first: native XDP on veth runs on a
 * copy of the skb whose tailroom is only the cache-line padding of the data (a 59-byte request
 * cannot grow by 16 bytes at the tail), while XDP_PACKET_HEADROOM (256 bytes, of which XDP_TX
 * needs sizeof(struct xdp_frame)) is guaranteed by every XDP host: veth, drivers,
 * BPF_PROG_TEST_RUN, and the userspace datapath. Whatever HEAD_GROW cannot cover is asked of
 * the tail; when that fails too the head is given back. */
static __always_inline int resize(struct xdp_md *ctx, int delta)
{
	int head;

	if (delta <= 0)
		return delta ? bpf_xdp_adjust_tail(ctx, delta) : 0;
	head = delta < HEAD_GROW ? delta : HEAD_GROW;
	if (bpf_xdp_adjust_head(ctx, -head))
		head = 0;
	if (head < delta && bpf_xdp_adjust_tail(ctx, delta - head)) {
		if (head)
			bpf_xdp_adjust_head(ctx, head);
		return -1;
	}
	return 0;
}

/* Every key hit: turn the request into the reply and send it back. */
SEC("xdp")
int cache_reply(struct xdp_md *ctx)
{
	struct rx_state *st = rx_state();
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 payload_off, udp_off, l2, reply_len, pkt_len, udp_len, sum, save;
	__u32 ip_words, i;
	__be32 addr;
	__be16 port;
	int delta, bad = 0;

	if (!st)
		return pass();
	l2 = st->l2_len;
	udp_off = st->udp_off;
	payload_off = st->payload_off;
	if (l2 > 18 || udp_off > 18 + 60 || payload_off != udp_off + 16)
		return pass();

	if (st->cmd == CMD_ASCII_GET) {
		__u32 pos = st->out_len;

		if (pos > MAX_REPLY - 5)
			return pass();
		st->out[pos & OUT_MASK] = 'E';
		st->out[(pos + 1) & OUT_MASK] = 'N';
		st->out[(pos + 2) & OUT_MASK] = 'D';
		st->out[(pos + 3) & OUT_MASK] = '\r';
		st->out[(pos + 4) & OUT_MASK] = '\n';
		reply_len = pos + 5;
	} else {
		__u32 klen = st->cmd == CMD_BIN_GETK ? st->len[0] : 0;
		__u32 vlen = st->bin_value_len;

		if (vlen > 1000 || klen > KEY_CAP)
			return pass();
		reply_len = BIN_HDR + 4 + klen + vlen;
	}

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	pkt_len = end - data;
	/* Keeps clang from folding the length into 32-bit pointer arithmetic. */
	barrier_var(pkt_len);
	/* The headers (and a binary request's header) move when the frame grows at the head:
	 * keep them, resize, and put the headers back at the new start. */
	save = payload_off + (st->cmd == CMD_ASCII_GET ? 0 : BIN_HDR);
	if (save < 1 || save > HDR_SAVE || save > pkt_len)
		return pass();
	if (bpf_xdp_load_bytes(ctx, 0, st->hdrs, save))
		return pass();
	delta = (int)(payload_off + reply_len) - (int)pkt_len;
	if (resize(ctx, delta))
		return pass();
	if (bpf_xdp_store_bytes(ctx, 0, st->hdrs, payload_off))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;

	if (st->cmd == CMD_ASCII_GET) {
		if (reply_len < 1 || reply_len > MAX_REPLY)
			return XDP_DROP;
		if (bpf_xdp_store_bytes(ctx, payload_off, st->out, reply_len))
			return XDP_DROP;
	} else {
		__u32 klen = st->cmd == CMD_BIN_GETK ? st->len[0] : 0;
		__u32 vlen = st->bin_value_len, doff = st->bin_data_off;
		__u8 hdr[BIN_HDR + 4] = {};
		__u32 body = 4 + klen + vlen;
		/* The request header, saved before the resize (payload_off <= 94: checked above). */
		__u8 *req = st->hdrs + (payload_off & 127);

		if (payload_off + BIN_HDR > HDR_SAVE)
			return XDP_DROP;
		hdr[0] = 0x81;
		hdr[1] = req[1];
		hdr[2] = klen >> 8;
		hdr[3] = klen;
		hdr[4] = 4;
		/* data type 0, status 0 */
		hdr[8] = body >> 24;
		hdr[9] = body >> 16;
		hdr[10] = body >> 8;
		hdr[11] = body;
		__builtin_memcpy(&hdr[12], &req[12], 4); /* opaque */
		*(__u64 *)&hdr[16] = bpf_cpu_to_be64(st->bin_cas);
		*(__u32 *)&hdr[24] = bpf_htonl(st->bin_flags);
		if (bpf_xdp_store_bytes(ctx, payload_off, hdr, sizeof(hdr)))
			return XDP_DROP;
		if (klen) {
			if (klen < 1 || klen > KEY_CAP)
				return XDP_DROP;
			if (bpf_xdp_store_bytes(ctx, payload_off + sizeof(hdr), st->keys[0], klen))
				return XDP_DROP;
		}
		if (vlen) {
			doff &= 511;
			if (vlen < 1 || vlen > 1000)
				return XDP_DROP;
			if (bpf_xdp_store_bytes(ctx, payload_off + sizeof(hdr) + klen,
						st->out + doff, vlen))
				return XDP_DROP;
		}
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;

	/* Headers: swap addresses and ports, fix lengths and checksums. */
	eth = data;
	if (!IN_BOUNDS(eth, sizeof(*eth), end))
		return XDP_DROP;
	swap_macs(eth);
	ip = data + (l2 & 31);
	if (!IN_BOUNDS(ip, sizeof(*ip), end))
		return XDP_DROP;
	udp_len = 8 + FRAME_HDR + reply_len;
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	ip->tot_len = bpf_htons(udp_off - l2 + udp_len);
	ip->check = 0;
	ip_words = (udp_off - l2) / 2;
	sum = 0;
	for (i = 0; i < 30; i++) {
		__u16 *w = (void *)ip + 2 * i;

		if (i >= ip_words)
			break;
		if (!IN_BOUNDS(w, 2, end))
			return XDP_DROP;
		sum += *w;
	}
	ip->check = ~csum_fold32(sum);

	udp = data + (udp_off & 127);
	if (!IN_BOUNDS(udp, sizeof(*udp) + FRAME_HDR, end))
		return XDP_DROP;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->len = bpf_htons(udp_len);
	udp->check = 0;
	/* Frame header: same request id, sequence 0, 1 datagram, reserved 0. */
	((__u16 *)(udp + 1))[1] = 0;
	((__u16 *)(udp + 1))[2] = bpf_htons(1);
	((__u16 *)(udp + 1))[3] = 0;

	ip = data + (l2 & 31);
	if (!IN_BOUNDS(ip, sizeof(*ip), end))
		return XDP_DROP;
	sum = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) +
	      (ip->daddr >> 16) + bpf_htons(IPPROTO_UDP) + bpf_htons(udp_len);
	sum += sum_words(data, end, udp_off, udp_len, &bad);
	if (bad)
		return XDP_DROP;
	udp = data + (udp_off & 127);
	if (!IN_BOUNDS(udp, sizeof(*udp), end))
		return XDP_DROP;
	udp->check = ~csum_fold32(sum) ?: 0xffff;
	count(ST_HIT);
	return XDP_TX;
}

/* Remembers a write in flight, so its acknowledgement can invalidate once more. */
static __always_inline void note_write(struct rx_state *st, __u32 bucket)
{
	struct pending_write k = {
		.client_ip = st->client_ip,
		.client_port = st->client_port,
		.req_id = st->req_id,
	};

	bpf_map_update_elem(&cache_pending_writes, &k, &bucket, BPF_ANY);
}

/* Makes bucket `bucket` unusable for hits and for fills of misses seen so far. */
static __always_inline void invalidate_bucket(__u32 bucket)
{
	struct cache_entry *e = bpf_map_lookup_elem(&cache_entries, &bucket);

	if (!e)
		return;
	bpf_spin_lock(&e->lock);
	e->valid = 0;
	e->pending = 0;
	e->epoch++;
	bpf_spin_unlock(&e->lock);
}

/* Write commands: invalidate the key's bucket (or everything), then let memcached do it. */
SEC("xdp")
int cache_invalidate(struct xdp_md *ctx)
{
	struct rx_state *st = rx_state();
	__u32 hash = 0, bucket;
	int len;

	if (!st)
		return pass();
	if (st->cmd == CMD_FLUSH) {
		__sync_fetch_and_add(&cache_generation, 1);
		note_write(st, FLUSH_BUCKET);
		count(ST_INVAL);
		return pass();
	}
	if (st->cmd == CMD_BIN_WRITE) {
		if (st->key_len == 0 || st->key_len >= KEY_CAP)
			return pass(); /* no key (or one memcached refuses): nothing cached */
		len = rx_read_key(ctx, st->key_off, st->key_len, 0);
	} else {
		len = rx_read_key(ctx, st->key_off, 0, 0);
	}
	hash = st->hash[0];
	/* A key we could not read is one we never cache (too long) or a malformed request. */
	if (len < 0)
		return pass();
	bucket = bucket_of(hash);
	invalidate_bucket(bucket);
	note_write(st, bucket);
	count(ST_INVAL);
	return pass();
}

/* ---------------------------------------------------------------------------------------- */
/* Egress                                                                                    */

static __always_inline struct tx_state *tx_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cache_tx_state, &zero);
}

SEC("tc")
int cache_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct mc_hdrs h = {};
	struct pending_write k = {};
	struct tx_state *st;
	__u32 *bucket;
	__u8 b[16];

	if (parse_mc(data, end, 0, &h))
		return TC_ACT_OK;
	/* The acknowledgement of a write in flight: invalidate once more (see the top). */
	k.client_ip = h.daddr;
	k.client_port = h.dport;
	k.req_id = h.req_id;
	bucket = bpf_map_lookup_elem(&cache_pending_writes, &k);
	if (bucket) {
		__u32 which = *bucket;

		if (which == FLUSH_BUCKET)
			__sync_fetch_and_add(&cache_generation, 1);
		else
			invalidate_bucket(which);
		bpf_map_delete_elem(&cache_pending_writes, &k);
		return TC_ACT_OK;
	}
	peek16(data, end, h.payload_off, b);
	st = tx_state();
	if (!st)
		return TC_ACT_OK;
	st->client_ip = h.daddr;
	st->client_port = h.dport;
	st->req_id = h.req_id;
	st->pkt_off = h.payload_off;
	st->blocks = 0;
	if (PREFIX(b, "VALUE ")) {
		st->binary = 0;
		bpf_tail_call(skb, &cache_tc_progs, 0);
	} else if (b[0] == 0x81 && (b[1] == 0x0c || b[1] == 0x0d) && b[6] == 0 && b[7] == 0) {
		st->binary = 1;
		bpf_tail_call(skb, &cache_tc_progs, 0);
	}
	return TC_ACT_OK;
}

/* Parses a decimal number ending at `term` from the packet into st->number; returns its
 * digit count or -1. Global: verified once. */
__noinline int tx_read_decimal(struct __sk_buff *skb, __u32 off, __u32 term)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tx_state *st = tx_state();
	__u64 v = 0;
	__u32 i;

	if (!st || off > MAX_SCAN)
		return -1;
	for (i = 0; i < 21; i++) {
		__u8 *p = data + off + i;
		__u8 c;

		barrier_var(p);
		if (!IN_BOUNDS(p, 1, end))
			return -1;
		c = *p;
		if (c == term)
			break;
		if (c < '0' || c > '9' || i >= 20)
			return -1;
		v = v * 10 + (c - '0');
	}
	if (i == 0 || i >= 21)
		return -1;
	st->number = v;
	return i;
}

/* read_key into the egress state (hash in st->hash, terminator in st->stop). Global. */
__noinline int tx_read_key(struct __sk_buff *skb, __u32 off, __u32 bin_len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tx_state *st = tx_state();
	__u32 hash = 0;
	__u8 stop = 0;
	int len;

	if (!st)
		return -1;
	len = read_key(data, end, off, bin_len, st->key, &hash, &stop);
	st->hash = hash;
	st->stop = stop;
	return len;
}

/* Appends the decimal form of `v` to chunk at `pos`; returns the new position. */
static __always_inline __u32 put_decimal(char *chunk, __u32 pos, __u32 v)
{
	char digits[10];
	__u32 n = 0, i;

	for (i = 0; i < 10; i++) {
		digits[i] = '0' + v % 10;
		v /= 10;
		n = i + 1;
		if (!v)
			break;
	}
	for (i = 0; i < 10; i++) {
		if (i >= n)
			break;
		chunk[(pos + i) & 2047] = digits[(n - 1 - i) & 15];
	}
	return pos + n;
}

/* Copies packet bytes [off, off + len) into the egress state's chunk[at..]; 0 on success.
 * A global (non-inlined) function: the verifier checks its 1280-step loop once, not once per
 * path of the caller. */
__noinline int copy_from_packet(struct __sk_buff *skb, __u32 off, __u32 len, __u32 at)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tx_state *st = tx_state();
	__u32 i;

	if (!st || off > MAX_SCAN || at > 512)
		return -1;
	for (i = 0; i < CHUNK_CAP; i++) {
		__u8 *p = data + off + i;

		barrier_var(p);
		if (i >= len)
			break;
		if (!IN_BOUNDS(p, 1, end))
			return -1;
		st->chunk[(at + i) & 2047] = *p;
	}
	return 0;
}

/* Stores the chunk in the egress state into its entry, under the entry's lock, if it answers
 * the bucket's latest miss; returns 1 when filled. A global function: verified once, whatever
 * path the parser took. */
__noinline int fill_entry(struct __sk_buff *skb)
{
	struct tx_state *st = tx_state();
	struct cache_entry *e;
	__u32 bucket, hash, clen, i;
	__u64 gen = generation();
	int filled = 0;

	if (!st || !skb)
		return 0;
	hash = st->hash;
	clen = st->chunk_len;
	if (clen > CHUNK_CAP)
		return 0;
	bucket = bucket_of(hash);
	e = bpf_map_lookup_elem(&cache_entries, &bucket);
	if (!e)
		return 0;
	bpf_spin_lock(&e->lock);
	if (e->pending && e->pending_ip == st->client_ip && e->pending_port == st->client_port &&
	    e->pending_req == st->req_id && e->pending_hash == hash &&
	    e->pending_epoch == e->epoch && e->pending_gen == gen) {
		__u64 *dst = (void *)e->chunk, *src = (void *)st->chunk;
		__u64 *kd = (void *)e->key, *ks = (void *)st->key;

		for (i = 0; i < KEY_CAP / 8; i++)
			kd[i] = ks[i];
		for (i = 0; i < CHUNK_CAP / 8; i++) {
			if (i * 8 >= clen)
				break;
			dst[i] = src[i];
		}
		e->hash = hash;
		e->key_len = st->key_len;
		e->value_len = st->value_len;
		e->chunk_len = clen;
		e->data_off = st->data_off;
		e->flags = st->flags;
		e->cas = st->cas;
		e->generation = gen;
		e->pending = 0;
		e->valid = 1;
		filled = 1;
	}
	bpf_spin_unlock(&e->lock);
	return filled;
}

/* Fills the entry of the reply's key, if the reply answers that bucket's latest miss. */
SEC("tc")
int cache_fill(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tx_state *st = tx_state();
	__u32 off, hash = 0, klen, vlen, clen, doff;
	__u64 flags = 0, bytes = 0, cas = 0;
	int len, n;

	if (!st)
		return TC_ACT_OK;
	off = st->pkt_off;
	if (off > MAX_SCAN)
		return TC_ACT_OK;
	if (!st->binary) {
		/* VALUE <key> <flags> <bytes>\r\n<data>\r\n */
		len = tx_read_key(skb, off + 6, 0);
		if (len < 0 || len >= KEY_CAP || st->stop != ' ')
			return TC_ACT_OK;
		klen = len;
		hash = st->hash;
		n = tx_read_decimal(skb, off + 6 + klen + 1, ' ');
		flags = st->number;
		if (n < 0 || n > 20 || flags > 0xffffffffULL)
			return TC_ACT_OK;
		doff = 6 + klen + 1 + n + 1;
		/* A space here would be a `gets` reply (CAS): its block is not a `get` block. */
		n = tx_read_decimal(skb, off + doff, '\r');
		bytes = st->number;
		if (n < 0 || n > 20)
			return TC_ACT_OK;
		doff += n + 2;
		if (bytes > value_limit())
			return TC_ACT_OK;
		vlen = bytes;
		clen = doff + vlen + 2;
		{
			__u8 *lf = data + ((off + doff - 1) & 4095);
			__u8 *tail = data + ((off + doff + vlen) & 4095);

			if (!IN_BOUNDS(lf, 1, end) || *lf != '\n')
				return TC_ACT_OK;
			if (!IN_BOUNDS(tail, 2, end) || tail[0] != '\r' || tail[1] != '\n')
				return TC_ACT_OK;
		}
		if (clen > CHUNK_CAP)
			return TC_ACT_OK;
		if (copy_from_packet(skb, off, clen, 0))
			return TC_ACT_OK;
	} else {
		/* Binary GETK response: header, 4 bytes of flags, key, value. */
		__u8 *hdr = data + (off & (MAX_SCAN - 1));
		__u32 extlen, body;
		__u32 pos;

		if (!IN_BOUNDS(hdr, BIN_HDR + 4, end))
			return TC_ACT_OK;
		klen = ((__u32)hdr[2] << 8) | hdr[3];
		extlen = hdr[4];
		body = ((__u32)hdr[8] << 24) | ((__u32)hdr[9] << 16) | ((__u32)hdr[10] << 8) | hdr[11];
		if (extlen != 4 || klen == 0 || body < 4 + klen)
			return TC_ACT_OK;
		vlen = body - 4 - klen;
		if (vlen > value_limit())
			return TC_ACT_OK;
		flags = bpf_ntohl(*(__u32 *)&hdr[24]);
		cas = bpf_be64_to_cpu(*(__u64 *)&hdr[16]);
		if (cas == 0)
			return TC_ACT_OK;
		len = tx_read_key(skb, off + BIN_HDR + 4, klen);
		if (len < 0)
			return TC_ACT_OK;
		hash = st->hash;
		/* Render the ASCII block memcached would send for this item. */
		__builtin_memcpy(st->chunk, "VALUE ", 6);
		if (copy_from_packet(skb, off + BIN_HDR + 4, klen, 6))
			return TC_ACT_OK;
		pos = 6 + klen;
		st->chunk[pos & 2047] = ' ';
		pos = put_decimal(st->chunk, pos + 1, flags);
		st->chunk[pos & 2047] = ' ';
		pos = put_decimal(st->chunk, pos + 1, vlen);
		st->chunk[pos & 2047] = '\r';
		st->chunk[(pos + 1) & 2047] = '\n';
		doff = pos + 2;
		if (doff > 512)
			return TC_ACT_OK;
		if (copy_from_packet(skb, off + BIN_HDR + 4 + klen, vlen, doff))
			return TC_ACT_OK;
		clen = doff + vlen + 2;
		if (clen > CHUNK_CAP)
			return TC_ACT_OK;
		st->chunk[(doff + vlen) & 2047] = '\r';
		st->chunk[(doff + vlen + 1) & 2047] = '\n';
	}

	st->hash = hash;
	st->key_len = klen;
	st->value_len = vlen;
	st->chunk_len = clen;
	st->data_off = doff;
	st->flags = flags;
	st->cas = cas;
	if (fill_entry(skb) == 1)
		count(ST_FILL);
	/* A multi-key reply: the next VALUE block follows this one. */
	if (!st->binary && st->blocks + 1 < MAX_KEYS) {
		__u32 next = off + clen;
		__u8 *v = data + (next & (MAX_SCAN - 1));

		if (next > MAX_SCAN || !IN_BOUNDS(v, 6, end))
			return TC_ACT_OK;
		if (v[0] == 'V' && v[1] == 'A' && v[2] == 'L' && v[3] == 'U' && v[4] == 'E' &&
		    v[5] == ' ') {
			st->blocks++;
			st->pkt_off = next;
			bpf_tail_call(skb, &cache_tc_progs, 0);
		}
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
