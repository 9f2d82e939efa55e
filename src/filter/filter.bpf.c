/* PEAK's filter (SPEC.md section 7). The XDP program on a node's uplink checks, per packet
 * and from the IPv6 source and destination alone, the service's rule, drops what does not
 * conform and classes the rest (known good, assumed good, possibly bad) into the packet's
 * metadata; a TC ingress program turns the class into the skb priority that the prio qdisc
 * toward the pods serves by; a TC egress program records the flows the pods answer. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "filter.h"
#include "siphash.bpf.h"

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

/* Flows the pods have answered. One hash shared by all CPUs, each CPU with its own LRU
 * list (no lock shared between CPUs on insert): value = when the pod last sent (ns, the
 * coarse monotonic clock: bpf_ktime_get_coarse_ns). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FILTER_MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct filter_flow);
	__type(value, __u64);
} flows SEC(".maps");

/* Asks: a bit per slot of flows (filter_ask_slot), set by the XDP program when it passes a
 * packet of a flow it does not know, or of a known flow due for a refresh; cleared by the
 * TC egress program once it has recorded the pod's answer. The egress program looks a pod's
 * packet up in the flows table only when its slot's bit is set: nearly all of a pod's
 * packets belong to flows known already, and they skip the table, whose lookup misses the
 * cache on nearly every packet under load (bench/datapath). Updated without atomics: a bit
 * lost to a race between CPUs is asked again by the flow's next packet, or costs one lookup
 * more. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_asks);
} asks SEC(".maps");

/* Token buckets per service and source /64. Updated without a lock: two CPUs racing on one
 * bucket can each spend the same token, so a source may get up to one extra packet per CPU
 * per refill; the limit stays a limit. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FILTER_MAX_SOURCES);
	__type(key, struct filter_bucket_key);
	__type(value, struct filter_bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_sigtab);
} signatures SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FILTER_MAX_SIGNATURES);
	__type(key, __u32);
	__type(value, __u64);
} sighits SEC(".maps");

#ifndef MAX_SKEW
#define MAX_SKEW 4
#endif

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
		/* the high word only when the host field is wider than 64 bits (short slices) */
		__u64 lo = siphash_w(k0, k1, 0x91 | c64 << 8, tail, 14);
		__u64 hi = sv->hb > 64 ? siphash_w(k0, k1, 0x11 | c64 << 8, tail, 14) : 0;
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

/* Steps 3 and 4 for the hop rules: any epoch in [e - skew, e + skew]. A BPF call of its
 * own: its unrolled hashing needs a stack frame beside the filter's. */
static __noinline int hop_check(const struct filter_svc *sv, const __u8 *src, const struct a128 *d,
                                __u64 g, __u8 i)
{
	__u32 z = 0;
	struct filter_clock *c = bpf_map_lookup_elem(&clock, &z);
	__u64 tm = c && c->fixed_time
	               ? c->fixed_time
	               : bpf_ktime_get_tai_ns() / 1000000000ULL - (c ? c->tai_offset : 37);
	__u64 e = sv->period ? tm / sv->period : 0;
	__u64 lo = e >= sv->skew ? e - sv->skew : 0;
	int verdict = FC_REJECT_SLICE;
#pragma clang loop unroll(disable)
	for (int k = 0; k <= 2 * MAX_SKEW; k++) {
		if (lo + k > e + sv->skew)
			break;
		int v = rule_check(sv, src, d, g, i, lo + k);
		if (!v)
			return 0;
		if (v == FC_REJECT_HOST) /* as ssa_check: host once a slice matched */
			verdict = v;
	}
	return verdict;
}

/* Step 5: the proof of work over source and destination. */
static __noinline int pow_ok(const struct filter_svc *sv, const __u8 *src, const __u8 *dst)
{
	__u8 m[33];
	m[0] = 0x04;
	__builtin_memcpy(m + 1, src, 16);
	__builtin_memcpy(m + 17, dst, 16);
	__u64 h = siphash(sv->key, m, 33);
	return sv->pow >= 64 ? h == 0 : (h >> (64 - sv->pow)) == 0;
}

/* The transport header fields the filter uses: ports (network order) and TCP flags. */
struct l4 {
	__u16 sport, dport;
	__u8 proto, flags;
};

/* Ports of a TCP or UDP header right after the IPv6 header; other next headers (extension
 * headers included) leave ports 0, which still makes a flow key. */
static __always_inline void l4_parse(void *l4p, void *end, __u8 nexthdr, struct l4 *o)
{
	o->proto = nexthdr;
	o->sport = o->dport = 0;
	o->flags = 0;
	if (nexthdr == IPPROTO_TCP) {
		struct tcphdr *t = l4p;
		if ((void *)(t + 1) > end)
			return;
		o->sport = t->source;
		o->dport = t->dest;
		o->flags = ((__u8 *)t)[13];
	} else if (nexthdr == IPPROTO_UDP) {
		struct udphdr *u = l4p;
		if ((void *)(u + 1) > end)
			return;
		o->sport = u->source;
		o->dport = u->dest;
	}
}

/* What signatures look at, copied out of the packet. */
struct sig_in {
	__u8 src[16];
	__u16 len; /* IPv6 payload length */
	__u8 hop_limit;
	struct l4 t;
};

/* Whether the packet matches signature g. */
static __always_inline int sig_match(const struct filter_sig *g, const struct sig_in *in)
{
	const __u8 *src = in->src;
	if (g->proto && g->proto != in->t.proto)
		return 0;
	if (g->dport && bpf_htons(g->dport) != in->t.dport)
		return 0;
	if (g->hop_limit && g->hop_limit != in->hop_limit)
		return 0;
	if (g->tcp_mask &&
	    (in->t.proto != IPPROTO_TCP || (in->t.flags & g->tcp_mask) != g->tcp_flags))
		return 0;
	if (in->len < g->min_len || (g->max_len && in->len > g->max_len))
		return 0;
	unsigned n = g->src_len > 128 ? 128 : g->src_len;
#pragma unroll
	for (int b = 0; b < 16; b++) {
		if (n >= 8 * (unsigned)b + 8) {
			if (src[b] != g->src[b])
				return 0;
		} else if (n > 8 * (unsigned)b) {
			__u8 m = (__u8)(0xff << (8 - (n - 8 * b)));
			if ((src[b] ^ g->src[b]) & m)
				return 0;
		}
	}
	return 1;
}

/* The first signature the packet matches: -1 none, else its action (hits counted). A
 * function of its own (a BPF call), so its loop does not grow the filter's stack. */
static __noinline int signatures_check(const struct sig_in *in)
{
	__u32 z = 0;
	struct filter_sigtab *tab = bpf_map_lookup_elem(&signatures, &z);
	if (!tab || !tab->n)
		return -1;
#pragma clang loop unroll(disable)
	for (__u32 k = 0; k < FILTER_MAX_SIGNATURES; k++) {
		if (k >= tab->n)
			break;
		if (!tab->used[k] || !sig_match(&tab->sig[k], in))
			continue;
		__u64 *h = bpf_map_lookup_elem(&sighits, &k);
		if (h)
			*h += 1;
		return tab->sig[k].action;
	}
	return -1;
}

/* Takes one token from the bucket of (service, source /64): 0 if it had one, 1 if the source
 * is over its rate. A new source starts with a full bucket. */
static __always_inline int over_rate(const struct filter_svc *sv, __u64 src64)
{
	struct filter_bucket_key k = {.src64 = src64, .svc_id = sv->svc_id};
	__u64 now = bpf_ktime_get_ns();
	struct filter_bucket *b = bpf_map_lookup_elem(&buckets, &k);
	if (!b) {
		struct filter_bucket nb = {.tokens = sv->burst_tok - FILTER_TOKEN_NS, .last = now};
		bpf_map_update_elem(&buckets, &k, &nb, BPF_ANY);
		return 0;
	}
	__u64 el = now - b->last, tok = b->tokens;
	tok = el >= sv->fill_ns ? sv->burst_tok : tok + el * sv->rate;
	if (tok > sv->burst_tok)
		tok = sv->burst_tok;
	b->last = now;
	if (tok < FILTER_TOKEN_NS) {
		b->tokens = tok;
		return 1;
	}
	b->tokens = tok - FILTER_TOKEN_NS;
	return 0;
}

/* The word of the asks bitmap that holds flow f's bit (NULL: no map), and the bit. */
static __always_inline __u64 *ask_word(const struct filter_flow *f, __u64 *bit)
{
	__u32 z = 0, slot = filter_ask_slot(f);
	struct filter_asks *a = bpf_map_lookup_elem(&asks, &z);
	*bit = 1ULL << (slot & 63);
	return a ? &a->bits[(slot >> 6) & (FILTER_ASK_WORDS - 1)] : NULL;
}

/* Asks for the pod's answer on flow f (the bit written only when it changes, so that CPUs
 * do not pull the line from each other). */
static __always_inline void ask(const struct filter_flow *f)
{
	__u64 bit, *w = ask_word(f, &bit);
	if (w && !(*w & bit))
		*w |= bit;
}

/* Passes the packet with its class in the metadata (when the driver has room for it). */
static __always_inline int pass_class(struct xdp_md *ctx, __u32 cls, __u64 bytes)
{
	count(FC_KNOWN_GOOD + cls, bytes);
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(__u32)))
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	__u32 *meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > data)
		return XDP_PASS;
	*meta = FILTER_META_MAGIC | cls;
	return XDP_PASS;
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
	struct l4 t;
	l4_parse(ip6 + 1, end, ip6->nexthdr, &t);
	/* a SYN opens a flow, so it cannot be one the pod answered: SYN floods skip the lookup */
	struct filter_flow fl = {.cport = t.sport, .sport = t.dport, .proto = t.proto};
	int not_syn = t.proto != IPPROTO_TCP || !(t.flags & 0x02);
	if (not_syn) {
		__builtin_memcpy(fl.client, &ip6->saddr, 16);
		__builtin_memcpy(fl.service, &ip6->daddr, 16);
		__u64 *seen = bpf_map_lookup_elem(&flows, &fl);
		/* the coarse clock (the last tick's time): on a paravirtual clock (kvm-clock
		 * here) a precise read costs as much as the rest of the program, and an idle
		 * limit of minutes needs no better than a tick */
		__u64 now = bpf_ktime_get_coarse_ns();
		if (seen && now - *seen < FILTER_FLOW_IDLE_S * 1000000000ULL) {
			if (now - *seen > FILTER_FLOW_REFRESH_S * 1000000000ULL)
				ask(&fl); /* the pod's next answer refreshes it */
			return pass_class(ctx, FCLASS_KNOWN_GOOD, bytes);
		}
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
	int verdict = sv->select == 3 || sv->host == 3
	                  ? hop_check(sv, src, &d, g, i)
	                  : src_check(sv, sv->k0, sv->k1, le64(src), &d, g, i);
	if (verdict) {
		count(verdict, bytes);
		return XDP_DROP;
	}
	if (sv->w && !pow_ok(sv, src, dst)) {
		count(FC_REJECT_POW, bytes);
		return XDP_DROP;
	}
	struct sig_in in = {
	    .len = bpf_ntohs(ip6->payload_len), .hop_limit = ip6->hop_limit, .t = t};
	__builtin_memcpy(in.src, src, 16);
	int sig = signatures_check(&in);
	if (sig == FSIG_DROP) {
		count(FC_REJECT_SIGNATURE, bytes);
		return XDP_DROP;
	}
	if (not_syn) /* passed, not known (yet): the pod's answer will record the flow */
		ask(&fl);
	if (sig >= 0 || (sv->rate && over_rate(sv, le64(src))))
		return pass_class(ctx, FCLASS_POSSIBLY_BAD, bytes);
	return pass_class(ctx, FCLASS_ASSUMED_GOOD, bytes);
}

/* TC ingress on the same interface: the class the XDP program left in the metadata becomes
 * the skb priority, which the prio qdisc toward the pods serves by. */
SEC("tc")
int peak_classify(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	__u32 *meta = (void *)(long)skb->data_meta;
	if ((void *)(meta + 1) > data)
		return TC_ACT_OK;
	__u32 m = *meta;
	if ((m & 0xffff0000) != FILTER_META_MAGIC)
		return TC_ACT_OK;
	switch (m & 0xffff) {
	case FCLASS_KNOWN_GOOD:
		skb->priority = FPRIO_KNOWN_GOOD;
		break;
	case FCLASS_ASSUMED_GOOD:
		skb->priority = FPRIO_ASSUMED_GOOD;
		break;
	default:
		skb->priority = FPRIO_POSSIBLY_BAD;
	}
	return TC_ACT_OK;
}

/* TC egress on the uplink: a packet a pod sends from a service address answers its flow;
 * the flow is recorded as known good. TCP counts once past the handshake (no SYN, no RST):
 * a SYN-ACK goes to any source, spoofed ones included. Only flows the XDP program asked
 * about (its slot's ask stands) are looked up: one it did not know, or one due for a
 * refresh; the ask ends when the answer is recorded. */
SEC("tc")
int peak_answered(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return TC_ACT_OK;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > end)
		return TC_ACT_OK;
	struct l4 t;
	l4_parse(ip6 + 1, end, ip6->nexthdr, &t);
	if (t.proto == IPPROTO_TCP && (t.flags & 0x06)) /* SYN or RST */
		return TC_ACT_OK;
	struct filter_flow fl = {.cport = t.dport, .sport = t.sport, .proto = t.proto};
	__builtin_memcpy(fl.client, &ip6->daddr, 16);
	__builtin_memcpy(fl.service, &ip6->saddr, 16);
	int fin = t.proto == IPPROTO_TCP && (t.flags & 0x01); /* FIN: the flow is ending */
	__u64 bit = 0, *w = NULL;
	if (!fin && (!(w = ask_word(&fl, &bit)) || !(*w & bit)))
		return TC_ACT_OK; /* nothing asked: known already, or not a client's flow */
	struct filter_key key = {.prefixlen = 128};
	__builtin_memcpy(key.addr, &ip6->saddr, 16);
	if (!bpf_map_lookup_elem(&services, &key))
		return TC_ACT_OK;
	if (fin || !w) {
		bpf_map_delete_elem(&flows, &fl);
		return TC_ACT_OK;
	}
	__u64 now = bpf_ktime_get_coarse_ns(); /* as the XDP program reads it, and as cheap */
	__u64 *seen = bpf_map_lookup_elem(&flows, &fl);
	if (seen) {
		if (now - *seen > 1000000000ULL) /* refresh at most once a second per flow */
			*seen = now;
	} else {
		bpf_map_update_elem(&flows, &fl, &now, BPF_ANY);
	}
	*w &= ~bit; /* answered (a flow sharing the slot asks again with its next packet) */
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
