#pragma once
/* The resiliency slave (src/overlay/slave_resil.c) run whole against a stand-in gateway and a
 * fake clock: the test plays the peers (their probes' echoes, their packets, their link-state
 * reports) and reads what the slave sent and which relay it chose. No sockets, no sleeping.
 * Shared by the slave's unit tests and its regression tests. */
#include "../unit/test.h"

#include <stdbool.h>
#include <stdint.h>

#include "gateway.h"
#include "ovconf.h"
#include "slave_probe.h"
#include "wire.h"

enum { RH_PEERS = 4, RH_SENT = 8192 };

/* a peer as the stand-in gateway knows it */
struct rh_peer {
	char name[8];
	uint8_t id[OVW_ID_LEN];
	bool has_ep;
	uint64_t last_rx_ms, out_packets;
	uint32_t via; /* set by the slave (gw_set_via) */
};

/* a packet the slave sent through the stand-in gateway */
struct rh_sent {
	uint32_t cookie;
	uint8_t type; /* OVW_PROBE, OVW_PROBE_ACK, OVW_LOSS, OVW_LINKSTATE */
	uint8_t body[OVW_LS_BODY_MAX];
	size_t n;
	uint64_t at_ms;
};

extern struct rh_peer rh_peers[RH_PEERS];
extern size_t rh_npeers;
extern struct rh_sent rh_sent[RH_SENT];
extern size_t rh_nsent;
extern uint64_t rh_now_ms; /* the fake clock */

/* A slave with n peers named b, c, d... (cookies 0..n-1, ids 0xb0.., 0xc0..), each with an
 * endpoint and heard now, direct; dead-ms 600, the budget (bit/s), degraded-pct 25 (0: off),
 * late-ms 250, keepalive 1 s. The clock starts at 1000 s. Attached. */
struct ov_slave *rh_make(size_t n, unsigned budget_bps, unsigned degraded_pct);
/* Detaches and frees it. */
void rh_free(struct ov_slave *s);
/* Advances the clock by ms in 50 ms ticks (the slave's timer), letting the peers in live
 * echo each probe sent to them at once (a peer not live stays silent); the site sends a
 * packet to each peer in use[i] at every tick. live and in_use: bit i for peer i. */
void rh_run(struct ov_slave *s, unsigned ms, unsigned live, unsigned in_use);
/* Peer i echoes the probes sent to it rtt_ms after they were sent (10 by default). */
void rh_set_rtt(uint32_t i, unsigned rtt_ms);
/* Peer i echoes the probe body rtt_ms from now (delivered by rh_run, if it is live then). */
void rh_echo(uint32_t i, const uint8_t body[OVW_PROBE_LEN], unsigned rtt_ms);
/* Peer i probes the slave now, with the flag "I have your path down and hear nothing". */
void rh_probe_from(uint32_t i, bool flag);
/* Peer i sends a link-state report of body (n bytes) to the slave. */
void rh_linkstate(uint32_t i, const uint8_t *body, size_t n);
/* How many packets of type the slave sent to peer i since sent index from. */
size_t rh_count(size_t from, uint32_t i, uint8_t type);
