#pragma once
/* Shared between the XDP filter (filter.bpf.c) and user space: map layouts and counters.
 * The filter decides per packet, from its source and destination alone, as SPEC.md 7 says. */
#include <linux/types.h>

enum {
	FILTER_MAX_PREFIXES = 4096,  /* LPM entries: one per service prefix */
	FILTER_MAX_FLOWS = 262144,   /* known-good flows (LRU: the oldest go first) */
	FILTER_MAX_SOURCES = 262144, /* token buckets, one per service and source /64 (LRU) */
	FILTER_MAX_SIGNATURES = 16,  /* drop signatures installed at run time */
	FILTER_FLOW_IDLE_S = 300,   /* a flow the pod has not answered for this long is forgotten */
	FILTER_FLOW_REFRESH_S = 60, /* a known flow older than this asks for the pod's answer */
	FILTER_ASK_BITS = 12,       /* the asks bitmap: 1 << FILTER_ASK_BITS slots */
	FILTER_ASK_WORDS = (1 << FILTER_ASK_BITS) / 64,
	FILTER_TOKEN_NS =
	    1000000000, /* one packet's worth of a token bucket, in rate-nanoseconds */
	FILTER_META_MAGIC =
	    0x50450000, /* XDP metadata word: magic | class, read by the TC ingress */
};

/* The classes of conforming packets (SPEC.md 7) and the skb priority each gets: the class
 * ids 5045:1, 5045:2 and 5045:3 of the class queue (queue.h), which HTB takes directly. */
enum filter_class {
	FCLASS_KNOWN_GOOD = 0,   /* a flow the pod has answered */
	FCLASS_ASSUMED_GOOD = 1, /* conforming, within its rate */
	FCLASS_POSSIBLY_BAD =
	    2, /* conforming, but over its source's rate or matching a signature */
	FCLASS_N,
};
enum {
	FQUEUE_MAJOR = 0x5045, /* the class queue's qdisc handle */
	FPRIO_KNOWN_GOOD = FQUEUE_MAJOR << 16 | 1,
	FPRIO_ASSUMED_GOOD = FQUEUE_MAJOR << 16 | 2,
	FPRIO_POSSIBLY_BAD = FQUEUE_MAJOR << 16 | 3,
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
	__u32 svc_id;    /* the service's index in the configuration (token buckets) */
	__u32 rate;      /* conforming packets per second per source /64 (0: no limit) */
	__u64 burst_tok; /* bucket size, in rate-nanoseconds (burst * FILTER_TOKEN_NS) */
	__u64 fill_ns;   /* time an empty bucket takes to fill (burst_tok / rate) */
	__u64 nslices;   /* T */
	__u64 tmask;     /* T - 1 when T is a power of two (g = h & tmask), else 0 */
	__u64 k0, k1;    /* the key as SipHash loads it (two little-endian words) */
	__u8 key[16];    /* the public key K */
	__u8 secret[16]; /* the hop secret S */
};

/* Verdicts and counters (indexes of the per-CPU counter array, packets then bytes). */
enum filter_counter {
	FC_OUTSIDE = 0,      /* not in any service prefix: passed untouched */
	FC_KNOWN_GOOD,       /* passed: a flow the pod has answered (no other check) */
	FC_ASSUMED_GOOD,     /* passed: conforming */
	FC_POSSIBLY_BAD,     /* passed: conforming, over its rate or matching a signature */
	FC_REJECT_FANOUT,    /* SPEC.md 7 step 2 */
	FC_REJECT_SLICE,     /* step 3 */
	FC_REJECT_HOST,      /* step 4 */
	FC_REJECT_POW,       /* step 5 */
	FC_REJECT_SIGNATURE, /* conforming, but matching a signature whose action is drop */
	FC_NOT_IPV6,         /* other ethertypes: passed */
	FC_MALFORMED,        /* truncated IPv6: dropped */
	FC_N,
};

/* A flow as the filter sees it arriving: client and service address, ports, protocol. The
 * TC egress program stores the reverse of what the pod sends. (8-aligned: the programs
 * hash it by words.) */
struct filter_flow {
	__u8 client[16];
	__u8 service[16];
	__u16 cport, sport; /* network order; 0 for protocols without ports */
	__u8 proto;
	__u8 pad[3];
} __attribute__((aligned(8)));

/* The asks (filter.bpf.c): one bit per slot, set while a flow of the slot waits for the
 * pod's answer to be recorded. 512 bytes, so it stays in the cache. */
struct filter_asks {
	__u64 bits[FILTER_ASK_WORDS];
};

/* The slot of the asks bitmap a flow's asks go to (a hash of its addresses and ports). */
static inline __u32 filter_ask_slot(const struct filter_flow *f)
{
	const __u64 *c = (const __u64 *)(const void *)f->client;
	const __u64 *s = (const __u64 *)(const void *)f->service;
	__u64 h = (c[0] ^ c[1]) * 0x9e3779b97f4a7c15ULL;
	h = (h ^ s[0] ^ s[1] ^ ((__u64)f->cport << 16 | f->sport)) * 0xbf58476d1ce4e5b9ULL;
	return (__u32)(h >> (64 - FILTER_ASK_BITS));
}

/* A token bucket: tokens in rate-nanoseconds, at the time last (ns, monotonic). */
struct filter_bucket {
	__u64 tokens;
	__u64 last;
};

struct filter_bucket_key {
	__u64 src64; /* the source's /64, as loaded from the packet */
	__u32 svc_id;
	__u32 pad;
};

/* An attack signature: conforming packets that match every given field are classed
 * possibly bad (or dropped when action is FSIG_DROP). A field of 0 matches anything. */
enum { FSIG_CLASS = 0, FSIG_DROP = 1 };
struct filter_sig {
	__u8 src[16]; /* source prefix (src_len bits; 0: any source) */
	__u8 src_len;
	__u8 proto;     /* next header (6 TCP, 17 UDP, ...) */
	__u8 hop_limit; /* exact hop limit */
	__u8 tcp_mask;  /* TCP flags: (flags & tcp_mask) == tcp_flags */
	__u8 tcp_flags;
	__u8 action;
	__u16 dport;   /* host order */
	__u16 min_len; /* IPv6 payload length range (max 0: no upper bound) */
	__u16 max_len;
	__u32 pad;
};

/* All signatures in one map value, so the program reads them with one lookup. n is the
 * number of slots in use (gaps have used = 0). */
struct filter_sigtab {
	__u32 n;
	__u32 pad;
	__u8 used[FILTER_MAX_SIGNATURES];
	struct filter_sig sig[FILTER_MAX_SIGNATURES];
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

/* Sets a service value's per-source rate: rate packets per second with bursts of burst
 * packets (burst 0: one second's worth); rate 0 turns the limit off. */
static inline void filter_svc_set_rate(struct filter_svc *v, __u32 rate, __u32 burst)
{
	v->rate = rate;
	burst = burst ? burst : rate;
	v->burst_tok = (__u64)burst * FILTER_TOKEN_NS;
	v->fill_ns = rate ? v->burst_tok / rate : 0;
}
