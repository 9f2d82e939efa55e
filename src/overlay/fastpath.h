#pragma once
/*
 * The gateway's kernel fast path, shared by the BPF programs (fastpath.bpf.c) and the
 * daemon that loads them and fills their maps (fpload.c). For peers both ends mark trusted
 * (ovconf.h), data goes as OVW_DATA_PLAIN (wire.h: the 28-byte header, the inner IPv6 packet
 * in the clear) and never reaches user space:
 *   - transmit: an lwt xmit program on a route per trusted peer prefix (dev TUN, headroom
 *     FP_OUTER) pushes IPv4 + UDP (from the daemon's port, so the NAT mapping is the one its
 *     keepalives keep open) + the header, and has the kernel route the IPv4 packet;
 *   - receive: a tc ingress program on the uplink takes UDP to the daemon's port of type
 *     OVW_DATA_PLAIN from a trusted sender id whose inner source is in that peer's prefixes,
 *     strips the outer headers (bpf_skb_adjust_room) and hands the IPv6 packet to the TUN's
 *     ingress, so the kernel forwards it as if the daemon had written it. Anything else
 *     (keepalives, sealed data, unknown or untrusted senders) passes to the daemon untouched;
 *     a spoofed inner source is dropped and counted here.
 */
#include <linux/types.h>

#define FP_MAX_PEERS 1024    /* OVC_MAX_PEERS */
#define FP_MAX_PREFIXES 4096 /* trusted peers' prefixes in all */
#define FP_OUTER 56          /* IPv4 20 + UDP 8 + OVW_HDR_LEN 28 */
#define FP_TYPE_PLAIN 10     /* OVW_DATA_PLAIN */

/* A prefix of a trusted peer (LPM key): the destination routed to it, and the only inner
 * sources taken from it. The value is the peer's index in fp_peers. */
struct fp_key {
	__u32 plen;
	__u8 addr[16];
};

enum { FP_TX = 1, FP_RX = 2 };

/* A trusted peer (fp_peers[index], the gateway's peer index). */
struct fp_peer {
	__u32 flags;         /* FP_TX: endpoint known, encapsulate to it; FP_RX: take its packets */
	__be32 daddr, saddr; /* its endpoint; our address toward it */
	__be16 dport, pad;
	__u64 counter; /* the header's counter, per packet (atomic) */
};

/* The gateway (fp_conf[0]). */
struct fp_conf {
	__u8 id[8];  /* our sender id */
	__u64 epoch; /* our epoch */
	__be16 port; /* the daemon's UDP port: source of what is sent, destination taken */
	__u16 pad;
	__u32 tun_ifindex; /* where decapsulated packets enter */
};

enum fp_counter {
	FC_TX_PACKETS = 0, /* encapsulated (a GSO packet counts once) */
	FC_TX_BYTES,       /* their inner bytes */
	FC_TX_PASS,        /* to a trusted prefix but no endpoint yet: left to the daemon */
	FC_TX_ERROR,       /* the encapsulation failed: left to the daemon */
	FC_RX_PACKETS,     /* decapsulated and delivered */
	FC_RX_BYTES,       /* their inner bytes */
	FC_RX_PASS,        /* UDP to the daemon's port it left to the daemon */
	FC_RX_SOURCE,      /* dropped: inner source not in the sender's prefixes */
	FC_RX_ERROR,       /* the decapsulation failed: left to the daemon */
	FC_N,
};
