#pragma once
/* The gateway's kernel fast path, the daemon's side (fastpath.h says what the programs do):
 * loads them, attaches them, fills their maps from the peer table and takes it all away. */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fastpath.h"
#include "peak/prefix.h"

struct ov_fp;

/* Loads the programs, attaches the receive one (tc ingress) to the uplinks: the interface
 * holding listen's address, or with 0.0.0.0 every interface that is up, not loopback, not
 * the TUN and has an IPv4 address; fills fp_conf (our sender id, epoch, listen's port, the
 * TUN's index). Returns NULL with the reason in err (the caller falls back to user space). */
struct ov_fp *fp_open(const char *tun, const struct sockaddr_in *listen, const uint8_t id[8],
                      uint64_t epoch, char *err, size_t errlen);

/* Adds trusted peer idx (sender id, prefixes): its packets are taken on receive, and its
 * prefixes get routes through the TUN with the transmit program (encapsulating once the
 * peer has an endpoint: fp_peer_endpoint). Returns 0 or -errno. */
int fp_peer_add(struct ov_fp *f, uint32_t idx, const uint8_t id[8], const struct prefix *pfx,
                size_t n);

/* Sets the endpoint of peer idx (our source address toward it found by the routing table),
 * or with NULL stops encapsulating to it. Returns 0 or -errno. */
int fp_peer_endpoint(struct ov_fp *f, uint32_t idx, const struct sockaddr_in *ep);

/* The counters (enum fp_counter), summed over the CPUs. */
void fp_counters(struct ov_fp *f, uint64_t out[FC_N]);

/* The number of interfaces the receive program is on. */
unsigned fp_uplinks(const struct ov_fp *f);

/* Deletes the routes and takes the receive program off the uplinks (the maps stay readable
 * for fp_counters); NULL is allowed. */
void fp_detach(struct ov_fp *f);

/* fp_detach, then unloads the programs and frees f; NULL is allowed. */
void fp_close(struct ov_fp *f);
