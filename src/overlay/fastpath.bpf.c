/* The overlay gateway's kernel fast path: see fastpath.h. Only IPv4 without options
 * outside and IPv6 inside; everything the programs do not take goes on unchanged. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "fastpath.h"

/* bpf_skb_adjust_room's flag (Linux 6.3) that makes the packet IPv6 once the outer IPv4 is
 * gone; the build's headers may predate it */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV6
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FP_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fp_key);
	__type(value, __u32);
} fp_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FP_MAX_PEERS);
	__type(key, __u32);
	__type(value, struct fp_peer);
} fp_peers SEC(".maps");

/* a trusted peer's sender id (8 bytes as read) -> its index */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_PEERS);
	__type(key, __u64);
	__type(value, __u32);
} fp_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_conf);
} fp_conf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FC_N);
	__type(key, __u32);
	__type(value, __u64);
} fp_counters SEC(".maps");

static __always_inline void count(__u32 c, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&fp_counters, &c);
	if (v)
		*v += n;
}

/* The peer whose prefix holds addr (NULL: none), its index in *idx. */
static __always_inline struct fp_peer *peer_of(const __u8 *addr, __u32 *idx)
{
	struct fp_key k = {.plen = 128};
	__builtin_memcpy(k.addr, addr, 16);
	__u32 *i = bpf_map_lookup_elem(&fp_prefixes, &k);
	if (!i)
		return 0;
	*idx = *i;
	return bpf_map_lookup_elem(&fp_peers, i);
}

struct outer {
	struct iphdr ip;
	struct udphdr udp;
	__u8 type, version;
	__u16 rsv;
	__u8 id[8];
	__be64 epoch, counter;
} __attribute__((packed));

_Static_assert(sizeof(struct outer) == FP_OUTER, "outer headers");

SEC("lwt_xmit")
int peak_fp_xmit(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data;
	__u32 zero = 0, idx;
	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return BPF_OK;
	struct fp_peer *p = peer_of(ip6->daddr.s6_addr, &idx);
	struct fp_conf *c = bpf_map_lookup_elem(&fp_conf, &zero);
	if (!p || !c || !(p->flags & FP_TX)) {
		count(FC_TX_PASS, 1);
		return BPF_OK; /* on to the TUN: the daemon sends it */
	}
	__u32 len = skb->len;
	struct outer o = {
	    .ip = {.version = 4,
	           .ihl = 5,
	           .ttl = 64,
	           .protocol = IPPROTO_UDP,
	           .frag_off = bpf_htons(0x4000), /* DF */
	           .tot_len = bpf_htons(len + FP_OUTER),
	           .saddr = p->saddr,
	           .daddr = p->daddr},
	    .udp = {.source = c->port, .dest = p->dport, .len = bpf_htons(len + FP_OUTER - 20)},
	    .type = FP_TYPE_PLAIN,
	    .epoch = bpf_cpu_to_be64(c->epoch),
	    .counter = bpf_cpu_to_be64(__sync_fetch_and_add(&p->counter, 1)),
	};
	__builtin_memcpy(o.id, c->id, 8);
	if (bpf_lwt_push_encap(skb, BPF_LWT_ENCAP_IP, &o, sizeof(o))) {
		count(FC_TX_ERROR, 1);
		return BPF_OK;
	}
	count(FC_TX_PACKETS, 1);
	count(FC_TX_BYTES, len);
	return BPF_LWT_REROUTE; /* the kernel routes the IPv4 packet to the peer */
}

enum { OFF_UDP = sizeof(struct ethhdr) + sizeof(struct iphdr) };

SEC("tc")
int peak_fp_rx(struct __sk_buff *skb)
{
	__u32 zero = 0, idx, sidx;
	struct fp_conf *c = bpf_map_lookup_elem(&fp_conf, &zero);
	if (!c || skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	/* the headers and the inner fixed header in the linear part */
	if (skb->len >= sizeof(struct ethhdr) + FP_OUTER + sizeof(struct ipv6hdr))
		bpf_skb_pull_data(skb, sizeof(struct ethhdr) + FP_OUTER + sizeof(struct ipv6hdr));
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct outer *o = (void *)(eth + 1);
	struct ipv6hdr *ip6 = (void *)(o + 1);
	if ((void *)(o + 1) > end || o->ip.version != 4 || o->ip.ihl != 5 ||
	    o->ip.protocol != IPPROTO_UDP || (o->ip.frag_off & bpf_htons(0x3fff)) ||
	    o->udp.dest != c->port)
		return TC_ACT_OK;
	if (o->type != FP_TYPE_PLAIN || o->version || o->rsv || (void *)(ip6 + 1) > end)
		goto pass;
	__u64 id;
	__builtin_memcpy(&id, o->id, 8);
	__u32 *i = bpf_map_lookup_elem(&fp_ids, &id);
	if (!i)
		goto pass; /* the daemon drops and counts it (not trusted, or unknown) */
	idx = *i;
	struct fp_peer *p = bpf_map_lookup_elem(&fp_peers, &idx);
	/* an inner packet whose length disagrees goes to the daemon, which counts it */
	if (!p || !(p->flags & FP_RX) || ip6->version != 6 ||
	    bpf_ntohs(o->udp.len) != FP_OUTER - 20 + sizeof(*ip6) + bpf_ntohs(ip6->payload_len))
		goto pass;
	if (!peer_of(ip6->saddr.s6_addr, &sidx) || sidx != idx) {
		count(FC_RX_SOURCE, 1);
		return TC_ACT_SHOT;
	}
	__u32 inner = skb->len - sizeof(struct ethhdr) - FP_OUTER;
	if (bpf_skb_adjust_room(skb, -FP_OUTER, BPF_ADJ_ROOM_MAC,
	                        BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_DECAP_L3_IPV6)) {
		count(FC_RX_ERROR, 1); /* e.g. a kernel before 6.3: the daemon takes it */
		return TC_ACT_OK;
	}
	__be16 proto = bpf_htons(ETH_P_IPV6);
	bpf_skb_store_bytes(skb, __builtin_offsetof(struct ethhdr, h_proto), &proto, sizeof(proto),
	                    0);
	count(FC_RX_PACKETS, 1);
	count(FC_RX_BYTES, inner);
	return bpf_redirect(c->tun_ifindex, BPF_F_INGRESS);
pass:
	count(FC_RX_PASS, 1);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
