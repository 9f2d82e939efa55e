/* PEAK's XDP filter (SPEC.md section 7): per packet, from the IPv6 source and destination
 * alone, checks the service's rule and drops what does not conform. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "filter.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FILTER_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct filter_key);
	__type(value, struct filter_svc);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * FC_N); /* packets, then bytes */
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_clock);
} clock SEC(".maps");

#ifndef MAX_SKEW
#define MAX_SKEW 4
#endif

static __always_inline __u64 rotl(__u64 x, int b)
{
	return x << b | x >> (64 - b);
}

static __always_inline __u64 le64(const __u8 *p)
{
	__u64 v = 0;
#pragma unroll
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#define ROUND                                                                                      \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = rotl(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = rotl(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = rotl(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = rotl(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = rotl(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = rotl(v2, 32);                                                                 \
	} while (0)

/* SipHash-2-4 state: init, compress one word (two rounds), final (four rounds). */
struct sip {
	__u64 v0, v1, v2, v3;
};

static __always_inline void sip_init(struct sip *s, __u64 k0, __u64 k1)
{
	s->v0 = 0x736f6d6570736575ULL ^ k0;
	s->v1 = 0x646f72616e646f6dULL ^ k1;
	s->v2 = 0x6c7967656e657261ULL ^ k0;
	s->v3 = 0x7465646279746573ULL ^ k1;
}

static __always_inline void sip_compress(struct sip *s, __u64 w)
{
	__u64 v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3 ^ w;
	ROUND;
	ROUND;
	s->v0 = v0 ^ w;
	s->v1 = v1;
	s->v2 = v2;
	s->v3 = v3;
}

/* Compresses the last word (tail bytes with the length in the top byte) and finishes. */
static __always_inline __u64 sip_final(struct sip *s, __u64 last)
{
	sip_compress(s, last);
	__u64 v0 = s->v0, v1 = s->v1, v2 = s->v2 ^ 0xff, v3 = s->v3;
	ROUND;
	ROUND;
	ROUND;
	ROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* SipHash-2-4 of m[0..len) (len <= 40, a constant at each call site). */
static __always_inline __u64 siphash(const __u8 *key, const __u8 *m, int len)
{
	struct sip s;
	sip_init(&s, le64(key), le64(key + 8));
	int full = len & ~7;
#pragma unroll
	for (int i = 0; i < 40; i += 8) {
		if (i >= full)
			break;
		sip_compress(&s, le64(m + i));
	}
	__u64 b = (__u64)len << 56;
#pragma unroll
	for (int i = 0; i < 7; i++)
		if (full + i < len)
			b |= (__u64)m[full + i] << (8 * i);
	return sip_final(&s, b);
}

/* SipHash-2-4 of a message given as one full little-endian word w0 and the tail bytes
 * (already placed in the low bytes of tail): len is 8..15. No byte loops: the src rules'
 * messages (tag || c64 || ...) are built as words directly. */
static __always_inline __u64 siphash_w(__u64 k0, __u64 k1, __u64 w0, __u64 tail, __u64 len)
{
	struct sip s;
	sip_init(&s, k0, k1);
	sip_compress(&s, w0);
	return sip_final(&s, tail | len << 56);
}

/* The address as two big-endian 64-bit halves, and bit fields of it (n <= 64). */
struct a128 {
	__u64 hi, lo;
};

static __always_inline __u64 bits(const struct a128 *a, unsigned off, unsigned n)
{
	if (!n)
		return 0;
	/* shift the 128-bit value right by 128 - off - n, keep n bits */
	unsigned sh = 128 - off - n;
	__u64 v;
	if (sh >= 64)
		v = a->hi >> (sh - 64);
	else if (sh == 0)
		v = a->lo;
	else
		v = a->lo >> sh | a->hi << (64 - sh);
	return n == 64 ? v : v & ((1ULL << n) - 1);
}

/* The destination's host value field equals the low hb bits of the value hi:lo. */
static __always_inline int host_ok(const struct filter_svc *sv, const struct a128 *d, __u64 hi,
                                   __u64 lo)
{
	unsigned hb = sv->hb;
	if (hb > 64)
		return bits(d, sv->slice, hb - 64) == (hi & ((1ULL << (hb - 64)) - 1)) &&
		       bits(d, sv->slice + hb - 64, 64) == lo;
	return bits(d, sv->slice, hb) == (hb == 64 ? lo : lo & ((1ULL << hb) - 1));
}

static __always_inline void put_be(__u8 *p, __u64 v, int bytes)
{
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (i < bytes)
			p[i] = (__u8)(v >> (8 * (bytes - 1 - i)));
}

static __always_inline void count(__u32 c, __u64 bytes)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &c);
	if (v)
		*v += 1;
	c += FC_N;
	v = bpf_map_lookup_elem(&counters, &c);
	if (v)
		*v += bytes;
}

/* Steps 3 and 4 for one epoch: 0 pass, else the reject counter. */
/* Steps 3 and 4 for the keyed src rules (no epoch): messages as words. c64 is the source's
 * first 8 bytes loaded little-endian, k0/k1 the key's words. */
static __always_inline int src_check(const struct filter_svc *sv, __u64 k0, __u64 k1, __u64 c64,
                                     const struct a128 *d, __u64 g, __u8 i)
{
	/* tag || c64: the first word is tag and 7 bytes of c64; c64's last byte is in the tail */
	if (sv->select == 1) {
		__u64 h = siphash_w(k0, k1, 0x01 | c64 << 8, c64 >> 56 | (__u64)i << 8, 10);
		if ((sv->tmask ? h & sv->tmask : h % sv->nslices) != g)
			return FC_REJECT_SLICE;
	}
	if (sv->host == 1) {
		/* tag || c64 || u32(g) big-endian || u8(i): 14 bytes */
		__u64 tail = c64 >> 56 | ((g >> 24) & 0xff) << 8 | ((g >> 16) & 0xff) << 16 |
		             ((g >> 8) & 0xff) << 24 | (g & 0xff) << 32 | (__u64)i << 40;
		__u64 hi = siphash_w(k0, k1, 0x11 | c64 << 8, tail, 14);
		__u64 lo = siphash_w(k0, k1, 0x91 | c64 << 8, tail, 14);
		if (!host_ok(sv, d, hi, lo))
			return FC_REJECT_HOST;
	}
	return 0;
}

static __always_inline int rule_check(const struct filter_svc *sv, const __u8 *src,
                                      const struct a128 *d, __u64 g, __u8 i, __u64 e)
{
	__u8 m[24];
	if (sv->select == 1 || sv->select == 3) {
		const __u8 *k = sv->select == 3 ? sv->secret : sv->key;
		__u64 h;
		m[0] = sv->select == 3 ? 0x03 : 0x01;
		__builtin_memcpy(m + 1, src, 8);
		if (sv->select == 3) {
			put_be(m + 9, e, 8);
			m[17] = i;
			h = siphash(k, m, 18);
		} else {
			m[9] = i;
			h = siphash(k, m, 10);
		}
		if (h % sv->nslices != g)
			return FC_REJECT_SLICE;
	}
	if (sv->host == 1 || sv->host == 3) {
		const __u8 *k = sv->host == 3 ? sv->secret : sv->key;
		int n;
		__builtin_memcpy(m + 1, src, 8);
		if (sv->host == 3) {
			put_be(m + 9, e, 8);
			put_be(m + 17, g, 4);
			m[21] = i;
			n = 22;
		} else {
			put_be(m + 9, g, 4);
			m[13] = i;
			n = 14;
		}
		m[0] = sv->host == 3 ? 0x13 : 0x11;
		__u64 hi = n == 22 ? siphash(k, m, 22) : siphash(k, m, 14);
		m[0] |= 0x80;
		__u64 lo = n == 22 ? siphash(k, m, 22) : siphash(k, m, 14);
		if (!host_ok(sv, d, hi, lo))
			return FC_REJECT_HOST;
	}
	return 0;
}

SEC("xdp")
int peak_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u64 bytes = (__u64)(end - data);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end) {
		count(FC_MALFORMED, bytes);
		return XDP_DROP;
	}
	if (eth->h_proto != bpf_htons(ETH_P_IPV6)) {
		count(FC_NOT_IPV6, bytes);
		return XDP_PASS;
	}
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > end) {
		count(FC_MALFORMED, bytes);
		return XDP_DROP;
	}
	struct filter_key key = {.prefixlen = 128};
	__builtin_memcpy(key.addr, &ip6->daddr, 16);
	struct filter_svc *sv = bpf_map_lookup_elem(&services, &key);
	if (!sv) {
		count(FC_OUTSIDE, bytes);
		return XDP_PASS;
	}
	__u8 src[16], dst[16];
	__builtin_memcpy(src, &ip6->saddr, 16);
	__builtin_memcpy(dst, &ip6->daddr, 16);
	struct a128 d = {0, 0};
#pragma unroll
	for (int b = 0; b < 8; b++) {
		d.hi = d.hi << 8 | dst[b];
		d.lo = d.lo << 8 | dst[8 + b];
	}
	__u64 g = (__u64)sv->pfx_index << sv->s | bits(&d, sv->p, sv->s);
	__u8 i = 0;
	if (sv->fanbits) {
		i = (__u8)bits(&d, 128 - sv->w - 8, 8);
		if (i >= sv->fanout) {
			count(FC_REJECT_FANOUT, bytes);
			return XDP_DROP;
		}
	}
	int hop = sv->select == 3 || sv->host == 3;
	__u64 e = 0;
	if (hop) {
		__u32 z = 0;
		struct filter_clock *c = bpf_map_lookup_elem(&clock, &z);
		__u64 t = c && c->fixed_time
		              ? c->fixed_time
		              : bpf_ktime_get_tai_ns() / 1000000000ULL - (c ? c->tai_offset : 37);
		e = sv->period ? t / sv->period : 0;
	}
	int verdict = FC_REJECT_SLICE;
	if (!hop) {
		verdict = src_check(sv, sv->k0, sv->k1, le64(src), &d, g, i);
	} else {
		__u64 lo = e >= sv->skew ? e - sv->skew : 0;
#pragma unroll
		for (int k = 0; k <= 2 * MAX_SKEW; k++) {
			if (lo + k > e + sv->skew)
				break;
			int v = rule_check(sv, src, &d, g, i, lo + k);
			if (!v) {
				verdict = 0;
				break;
			}
			if (v == FC_REJECT_HOST) /* as ssa_check: host once a slice matched */
				verdict = v;
		}
	}
	if (verdict) {
		count(verdict, bytes);
		return XDP_DROP;
	}
	if (sv->w) {
		__u8 m[33];
		m[0] = 0x04;
		__builtin_memcpy(m + 1, src, 16);
		__builtin_memcpy(m + 17, dst, 16);
		__u64 h = siphash(sv->key, m, 33);
		if (sv->pow >= 64 ? h != 0 : (h >> (64 - sv->pow)) != 0) {
			count(FC_REJECT_POW, bytes);
			return XDP_DROP;
		}
	}
	count(FC_PASS, bytes);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
