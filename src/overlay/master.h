#pragma once
/*
 * The ON-master: reads IPv6 packets from the site's TUN device, forwards each to the slave
 * owning the longest matching route (include/peak/lpm6.h), answers ICMPv6 destination
 * unreachable (RFC 4443 §3.1, rate-limited) when no route matches, and writes the packets
 * slaves deliver back into the TUN device. One thread runs the loop; the metrics thread
 * only reads counters.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/prefix.h"
#include "slave.h"

struct mbuf;
struct ov_master;

struct ov_master_conf {
	const char *tun;       /* TUN device name, created if absent */
	unsigned mtu;          /* its MTU, 1280..OVW_INNER_MAX */
	uint8_t address[16];   /* source of the ICMPv6 errors the master sends */
	unsigned icmp_rate;    /* ICMPv6 errors per second at most (burst as many) */
	unsigned busy_poll_us; /* after a loop pass, poll without sleeping this long (0: never) */
};

enum { OV_MAX_SLAVES = 8, OV_MAX_ROUTES = 1 << 20 };

/* A master on conf (copied); NULL if out of memory. No device is opened yet. */
struct ov_master *ov_master_new(const struct ov_master_conf *conf);

/* Closes everything, detaches the slaves; NULL is allowed. */
void ov_master_free(struct ov_master *m);

/* Adds a slave (the master does not own s) before ov_master_run. 0 or -ENOSPC. */
int ov_master_add_slave(struct ov_master *m, struct ov_slave *s);

/* Routes p to slave s with cookie (passed back in s->ops->output). A route of the same
 * prefix is replaced. Returns 0, -EINVAL (not IPv6), -ENOSPC or -ENOMEM. */
int ov_route_add(struct ov_master *m, const struct prefix *p, struct ov_slave *s, uint32_t cookie);

/* Removes the route of exactly p. Returns 0 or -ENOENT. */
int ov_route_del(struct ov_master *m, const struct prefix *p);

/* Routes p to the first slave that knows the destination name (its cookie_of). Returns 0,
 * -ENOENT (no slave knows it) or what ov_route_add returns. */
int ov_route_add_named(struct ov_master *m, const struct prefix *p, const char *name);

/* Appends every route as "PREFIX SLAVE OWNER\n" in address order (loop thread). */
void ov_master_show_routes(struct ov_master *m, struct mbuf *b);

/* Appends every slave's show text (loop thread). */
void ov_master_show_slaves(struct ov_master *m, struct mbuf *b);

/* Stops watching fd (before the slave closes it). */
void ov_master_unwatch(struct ov_master *m, int fd);

/* Watches fd for input on behalf of s (s->ops->readable is called). 0 or -errno. */
int ov_master_watch(struct ov_master *m, int fd, struct ov_slave *s);

/* A slave hands the master a checked IPv6 packet for the site: written to the TUN device.
 * Returns 0 or -errno (counted). */
int ov_master_input(struct ov_master *m, const uint8_t *pkt, size_t len);

/* Routes a checked IPv6 packet from the site as if it had just been read from the TUN device
 * (e.g. one a slave held while it looked its destination up). Loop thread. */
void ov_master_output(struct ov_master *m, const uint8_t *pkt, size_t len);

/* Answers a checked IPv6 packet from the site with ICMPv6 no route to destination
 * (rate-limited; counted as no route), e.g. when a lookup found nothing. Loop thread. */
void ov_master_unreach(struct ov_master *m, const uint8_t *pkt, size_t len);

/* Answers a checked IPv6 packet from the site with ICMPv6 packet too big (RFC 4443 §3.2)
 * giving mtu (at least 1280 is announced), rate-limited like the unreachables, when a slave
 * cannot carry it whole (e.g. the tunnel's path MTU is smaller). Loop thread. */
void ov_master_too_big(struct ov_master *m, const uint8_t *pkt, size_t len, unsigned mtu);

/* fn(arg, to_site, pkt, len) sees every checked IPv6 packet read from the TUN device
 * (to_site false) before it is routed, and every one a slave hands in for the site (to_site
 * true), e.g. for the bridge slave's counters; NULL stops it. Loop thread. */
void ov_master_set_tap(struct ov_master *m,
                       void (*fn)(void *arg, bool to_site, const uint8_t *pkt, size_t len),
                       void *arg);

/* Opens the TUN device, attaches the slaves, and runs until SIGTERM or SIGINT arrives on
 * sigfd (a signalfd; SIGHUP is logged and ignored). Returns 0 on a signal, -errno on a
 * failure (logged). */
int ov_master_run(struct ov_master *m, int sigfd);

/* Appends the master's and every slave's counters (Prometheus text). Metrics thread. */
void ov_master_stats(struct ov_master *m, struct mbuf *b);
