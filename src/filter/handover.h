#pragma once
/*
 * Slice handover, shared by the tc program (handover.bpf.c) and the agent that fills its
 * maps (src/agent/handover.c). While a slice moves from endpoint OLD to endpoint NEW, the
 * program on each node's uplink (tc ingress) decides per TCP packet for the slice:
 *   - a connection start (SYN without ACK) goes to NEW;
 *   - any other packet goes to the local one of OLD and NEW whose pod has a socket for it
 *     (bpf_skc_lookup_tcp in the pod's network namespace, listeners not counted), else to
 *     the other one (the connection is that endpoint's, or nobody's);
 * and delivers it: to a local endpoint straight to its pod (bpf_redirect_neigh to the pod's
 * link with the pod's address as next hop, whatever the routes say), to a remote one
 * encapsulated IPv6-in-IPv6 with the endpoint's address as outer destination (routed to its
 * node). The program on that node takes such a packet off its outer header and hands it to
 * the pod, with no second decision, so a packet is forwarded at most once. The XDP filter
 * before it stays stateless; the handover's state is these maps, which the agent empties
 * when the window ends. Every packet the program delivers to OLD (locally, encapsulated, or
 * unwrapped here) stamps the handover's old_seen_ns, so that the agent keeps forwarding past
 * the deadline while OLD's connections on the slices still carry packets (src/agent/handover.c).
 * Every packet for the slices that reaches the program by the routes (not unwrapped) stamps
 * routed_ns: on the new owner's node, the window does not end before the routes lead there.
 */
#include <linux/types.h>

#ifndef HO_MAX_SLICES
#define HO_MAX_SLICES 262144 /* slices in handover at once, over all handovers */
#endif
#ifndef HO_MAX
#define HO_MAX 256 /* handovers at once */
#endif

/* A moved slice: LPM key of the slice's length (one per slice, so a later handover of a
 * slice replaces its key exactly). */
struct ho_key {
	__u32 plen;
	__u8 addr[16];
};

/* One handover (an entry of ho_eps, indexed by the value of ho_slices). */
struct ho_ep {
	__u8 old_addr[16], new_addr[16]; /* the endpoints' (pods') addresses */
	__u32 old_ifindex, new_ifindex;  /* the link to the pod when it is local, else 0 */
	__s32 old_nsid, new_nsid;        /* a local pod's namespace id here (for the socket
	                                  * lookup), -1: it serves from the node's namespace */
	__u32 live;
	__u64 old_seen_ns; /* the program's: when it last delivered a packet to OLD
	                    * (bpf_ktime_get_coarse_ns; 0: never); the agent writes 0 */
	__u64 routed_ns;   /* the program's: when a packet for the slices last came here by
	                    * the routes (not encapsulated by the other node; 0: never): the
	                    * routes lead here; the agent writes 0 */
};

/* The node: the outer source of what it encapsulates. */
struct ho_cfg {
	__u8 src[16];
};

enum ho_counter {
	HC_TO_OLD_LOCAL = 0, /* delivered to the old owner's pod on this node */
	HC_TO_NEW_LOCAL,     /* delivered to the new owner's pod on this node */
	HC_TO_OLD_REMOTE,    /* encapsulated to the old owner's node */
	HC_TO_NEW_REMOTE,    /* encapsulated to the new owner's node */
	HC_DECAP,            /* received encapsulated and delivered to a local pod */
	HC_ERROR,            /* a helper failed: passed on unchanged */
	HC_N,
};
