/* Slice handover on a node's uplink, tc ingress: see handover.h for what it decides. Only
 * TCP over IPv6 without extension headers is handed over; everything else passes. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "handover.h"

#ifndef AF_INET6
#define AF_INET6 10
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, HO_MAX_SLICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ho_key);
	__type(value, __u32);
} ho_slices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HO_MAX);
	__type(key, __u32);
	__type(value, struct ho_ep);
} ho_eps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ho_cfg);
} ho_conf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HC_N);
	__type(key, __u32);
	__type(value, __u64);
} ho_counters SEC(".maps");

/* 16 bytes equal (BPF has no memcmp). */
static __always_inline int same16(const __u8 *a, const __u8 *b)
{
	__u8 d = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		d |= a[i] ^ b[i];
	return !d;
}

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&ho_counters, &c);
	if (v)
		*v += 1;
}

/* The handover whose slices hold dst, or NULL. */
static __always_inline struct ho_ep *ho_find(const struct in6_addr *dst)
{
	struct ho_key k = {.plen = 128};
	__builtin_memcpy(k.addr, dst, 16);
	__u32 *idx = bpf_map_lookup_elem(&ho_slices, &k);
	if (!idx)
		return NULL;
	struct ho_ep *e = bpf_map_lookup_elem(&ho_eps, idx);
	return e && e->live ? e : NULL;
}

/* Whether the pod of namespace nsid (-1: the node's own) has a socket for this packet's
 * connection (one being set up, established, closing or in TIME_WAIT; a listener does not
 * count). */
static __always_inline int sk_known(struct __sk_buff *skb, const struct ipv6hdr *ip6,
                                    const struct tcphdr *tcp, __s32 nsid)
{
	struct bpf_sock_tuple t = {};
	__builtin_memcpy(t.ipv6.saddr, &ip6->saddr, 16);
	__builtin_memcpy(t.ipv6.daddr, &ip6->daddr, 16);
	t.ipv6.sport = tcp->source;
	t.ipv6.dport = tcp->dest;
	/* an endpoint with no namespace of its own serves from the node's (-1: the current one) */
	__u64 ns = nsid < 0 ? (__u64)BPF_F_CURRENT_NETNS : (__u64)nsid;
	struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv6), ns, 0);
	if (!sk)
		return 0;
	int known = sk->state != BPF_TCP_LISTEN;
	bpf_sk_release(sk);
	return known;
}

/* Stamps e as carrying the old owner's traffic now. The stamp is written at most once a
 * millisecond, so that CPUs delivering for the same handover do not keep pulling its cache
 * line from each other. */
static __always_inline void old_seen(struct ho_ep *e)
{
	__u64 now = bpf_ktime_get_coarse_ns(); /* a tick is precise enough, and cheap */
	if (now - e->old_seen_ns > 1000000)
		e->old_seen_ns = now;
}

/* Stamps e as reached by the routes now (the same once-a-millisecond rule). */
static __always_inline void routed(struct ho_ep *e)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	if (now - e->routed_ns > 1000000)
		e->routed_ns = now;
}

/* To a local pod: its link, its address as the next hop. */
static __always_inline int to_pod(__u32 ifindex, const __u8 addr[16], __u32 c)
{
	struct bpf_redir_neigh nh = {.nh_family = AF_INET6};
	__builtin_memcpy(nh.ipv6_nh, addr, 16);
	count(c);
	return (int)bpf_redirect_neigh(ifindex, &nh, sizeof(nh), 0);
}

/* To a remote endpoint: an outer IPv6 header (next header 41) towards its address, then out
 * by the routes' next hop for that address. */
static __always_inline int to_node(struct __sk_buff *skb, const __u8 dst[16], __u32 c)
{
	__u32 zero = 0;
	struct ho_cfg *cfg = bpf_map_lookup_elem(&ho_conf, &zero);
	__u16 inner_len = (__u16)(skb->len - sizeof(struct ethhdr));
	if (!cfg)
		return TC_ACT_OK;
	struct ipv6hdr o = {.version = 6, .nexthdr = IPPROTO_IPV6, .hop_limit = 64};
	o.payload_len = bpf_htons(inner_len);
	__builtin_memcpy(&o.saddr, cfg->src, 16);
	__builtin_memcpy(&o.daddr, dst, 16);
	if (bpf_skb_adjust_room(skb, (__s32)sizeof(o), BPF_ADJ_ROOM_MAC,
	                        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6) ||
	    bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &o, sizeof(o), BPF_F_INVALIDATE_HASH)) {
		count(HC_ERROR);
		return TC_ACT_SHOT; /* half rewritten: it cannot go on as it was */
	}
	count(c);
	return (int)bpf_redirect_neigh((__u32)skb->ifindex, NULL, 0, 0);
}

/* An encapsulated packet for a local endpoint in handover: unwrapped and handed to the pod. */
static __always_inline int decap(struct __sk_buff *skb, void *data, void *data_end)
{
	struct ipv6hdr *o = data + sizeof(struct ethhdr);
	struct ipv6hdr *in = (void *)(o + 1);
	if ((void *)(in + 1) > data_end || in->version != 6)
		return TC_ACT_OK;
	struct ho_ep *e = ho_find(&in->daddr);
	if (!e)
		return TC_ACT_OK;
	__u32 ifindex = 0;
	__u8 addr[16];
	if (e->old_ifindex && same16((const __u8 *)&o->daddr, e->old_addr)) {
		ifindex = e->old_ifindex;
		__builtin_memcpy(addr, e->old_addr, 16);
		old_seen(e);
	} else if (e->new_ifindex && same16((const __u8 *)&o->daddr, e->new_addr)) {
		ifindex = e->new_ifindex;
		__builtin_memcpy(addr, e->new_addr, 16);
	} else {
		return TC_ACT_OK;
	}
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(struct ipv6hdr), BPF_ADJ_ROOM_MAC, 0)) {
		count(HC_ERROR);
		return TC_ACT_SHOT;
	}
	return to_pod(ifindex, addr, HC_DECAP);
}

SEC("tc")
int handover(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return TC_ACT_OK;
	if (ip6->nexthdr == IPPROTO_IPV6)
		return decap(skb, data, data_end);
	struct tcphdr *tcp = (void *)(ip6 + 1);
	if (ip6->nexthdr != IPPROTO_TCP || (void *)(tcp + 1) > data_end)
		return TC_ACT_OK;
	struct ho_ep *e = ho_find(&ip6->daddr);
	if (!e)
		return TC_ACT_OK;
	routed(e);
	int to_new;
	if (tcp->syn && !tcp->ack)
		to_new = 1; /* a connection start: the new owner's */
	else if (e->old_ifindex && sk_known(skb, ip6, tcp, e->old_nsid))
		to_new = 0;
	else if (e->new_ifindex && sk_known(skb, ip6, tcp, e->new_nsid))
		to_new = 1;
	else
		to_new = e->old_ifindex ? 1 : 0; /* nobody here knows it: the other node's */
	if (to_new)
		return e->new_ifindex ? to_pod(e->new_ifindex, e->new_addr, HC_TO_NEW_LOCAL)
		                      : to_node(skb, e->new_addr, HC_TO_NEW_REMOTE);
	old_seen(e);
	return e->old_ifindex ? to_pod(e->old_ifindex, e->old_addr, HC_TO_OLD_LOCAL)
	                      : to_node(skb, e->old_addr, HC_TO_OLD_REMOTE);
}

char LICENSE[] SEC("license") = "GPL";
