#pragma once
/* The gateway slave (src/overlay/gateway.c) run whole against a stand-in master on loopback
 * UDP: the test plays the other sites ("G" is the gateway under test), sealing their packets
 * with the wire format's own functions. No root, no namespaces. For cmocka tests: setup and
 * teardown start and free G (keepalive 1 s, the DHT slave's learned peers and relays). */
#include "../unit/test.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway.h"
#include "wire.h"

/* a site the test plays: its keys, its socket, its prefix fd00:N::/64 */
struct site {
	uint8_t priv[32], pub[32], prk[32];
	int fd;
	struct sockaddr_in addr;
	uint64_t epoch, counter;
	struct prefix pfx;
	uint32_t cookie;
	uint8_t n;
};

extern int gw_fd;                  /* G's UDP socket */
extern unsigned input_calls;       /* packets G handed to the stand-in master */
extern uint8_t last_input_src[16]; /* the last one's IPv6 source */
extern uint8_t g_priv[32], g_pub[32];
extern struct sockaddr_in g_addr; /* where G listens */
extern struct ov_conf conf;
extern struct ov_slave *gw;

/* Makes site n: its keys, a socket on 127.0.0.1, its prefix fd00:n::/64. */
void site_init(struct site *x, uint8_t n);
/* G learns x as the DHT slave would: its locator, its NAT's kind, its prefix. */
void learn(struct site *x, bool edm);
/* Writes an IPv6 packet from fd00:s::2 to fd00:d::2 (8 bytes of UDP); returns its length. */
size_t ip6(uint8_t pkt[48], uint8_t s, uint8_t d);
/* x seals body as a packet of type to G and sends it from x->fd; G reads it. */
void send_g(struct site *x, uint8_t type, const uint8_t *body, size_t n);
/* Waits up to wait_ms for a packet of type from G at x (others dropped), opened into body:
 * its length, or -1. */
long recv_wait(struct site *x, uint8_t type, uint8_t body[OVW_INNER_MAX], unsigned wait_ms);
/* recv_wait for up to 5 s. */
long recv_type(struct site *x, uint8_t type, uint8_t body[OVW_INNER_MAX]);
/* Empties x's socket. */
void drain(struct site *x);
/* G's metric name (with its labels) as it reports it now; ~0 if absent. */
unsigned long long metric(const char *name);
/* True if G's `show peers` holds text. */
bool show_has(const char *text);
/* cmocka setup and teardown: G started on 127.0.0.1, then freed. */
int setup(void **state);
int teardown(void **state);
/* G sends the site's packet for o and flushes; returns the output's result. */
int output_to(struct site *o);
/* The endpoint G sends x to, as `show peers` says it: "ADDR:PORT" into out. */
void endpoint_of(struct site *x, char *out, size_t cap);
