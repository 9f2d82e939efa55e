#pragma once
/* Shared between the XDP filter (filter.bpf.c) and user space: map layouts and counters.
 * The filter decides per packet, from its source and destination alone, as SPEC.md 7 says. */
#include <linux/types.h>

enum {
	FILTER_MAX_PREFIXES = 4096, /* LPM entries: one per service prefix */
};

/* The LPM key: prefix length in bits, then the IPv6 address. */
struct filter_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* One service prefix and its service's rule (SPEC.md 3 and 5). */
struct filter_svc {
	__u8 p;       /* prefix length */
	__u8 slice;   /* slice length L */
	__u8 s;       /* slice bits: L - p */
	__u8 hb;      /* host value bits */
	__u8 fanbits; /* 8 if fanout > 1 */
	__u8 w;       /* nonce bits if pow > 0 */
	__u8 select;  /* 0 rand, 1 src, 2 obj, 3 hop */
	__u8 host;    /* 0 rand, 1 src, 3 hop */
	__u8 fanout;
	__u8 pow;
	__u8 skew;
	__u8 pad;
	__u32 period;
	__u32 pfx_index; /* this prefix's place in the service: g = pfx_index << s | field */
	__u64 nslices;   /* T */
	__u64 tmask;     /* T - 1 when T is a power of two (g = h & tmask), else 0 */
	__u64 k0, k1;    /* the key as SipHash loads it (two little-endian words) */
	__u8 key[16];    /* the public key K */
	__u8 secret[16]; /* the hop secret S */
};

/* Verdicts and counters (indexes of the per-CPU counter array, packets then bytes). */
enum filter_counter {
	FC_OUTSIDE = 0,   /* not in any service prefix: passed untouched */
	FC_PASS,          /* conforming */
	FC_REJECT_FANOUT, /* SPEC.md 7 step 2 */
	FC_REJECT_SLICE,  /* step 3 */
	FC_REJECT_HOST,   /* step 4 */
	FC_REJECT_POW,    /* step 5 */
	FC_NOT_IPV6,      /* other ethertypes: passed */
	FC_MALFORMED,     /* truncated IPv6: dropped */
	FC_N,
};

/* The clock: unix seconds when fixed_time is not 0 (tests), else TAI time minus
 * tai_offset seconds. */
struct filter_clock {
	__u64 fixed_time;
	__u64 tai_offset;
};

/* Little-endian word of 8 key bytes, as SipHash loads it. */
static inline __u64 filter_le64(const __u8 *p)
{
	__u64 v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Fills the derived fields of a service value once its key and nslices are set. */
static inline void filter_svc_derive(struct filter_svc *v)
{
	v->k0 = filter_le64(v->key);
	v->k1 = filter_le64(v->key + 8);
	v->tmask = v->nslices && !(v->nslices & (v->nslices - 1)) ? v->nslices - 1 : 0;
}
