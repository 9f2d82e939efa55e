#pragma once
/* SipHash-2-4 and 128-bit address fields for the BPF programs (SPEC.md 4 and 5): everything
 * inlined, every loop bounded by a constant. */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "filter.h"

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
