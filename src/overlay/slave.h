#pragma once
/*
 * The interface between the ON-master and its slaves. A slave is one file that fills a
 * struct ov_slave_ops; the master calls only these functions and never looks inside
 * priv. A slave talks back to the master only through master.h (routes, file descriptors
 * to watch, packets for the site).
 */
#include <stddef.h>
#include <stdint.h>

struct mbuf;
struct ov_master;
struct ov_slave;

struct ov_slave_ops {
	const char *name;
	/* Called once when the master starts: the slave opens its sockets, asks the master to
	 * watch them and adds the routes it owns. Returns 0 or -errno (the daemon stops). */
	int (*attach)(struct ov_slave *s, struct ov_master *m);
	/* Releases everything the slave holds; the master removes its routes itself. */
	void (*detach)(struct ov_slave *s);
	/* A packet from the site (len bytes, a checked IPv6 packet) whose destination's longest
	 * match is a route this slave added with cookie. The slave owns nothing past the call.
	 * Returns 0 or -errno (the master counts the failure; the packet is gone); -EHOSTUNREACH
	 * makes the master answer ICMPv6 address unreachable. 0 may mean queued until flush. */
	int (*output)(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len);
	/* A descriptor the slave registered with ov_master_watch is readable. */
	void (*readable)(struct ov_slave *s, int fd);
	/* Optional: sends what output queued (e.g. several packets in one system call). The
	 * master calls it at the end of every pass of its loop, after all the calls to output,
	 * readable and timer of that pass. */
	void (*flush)(struct ov_slave *s);
	/* Called about every OV_TICK_MS with a monotonic time in ms. */
	void (*timer)(struct ov_slave *s, uint64_t now_ms);
	/* Appends the slave's counters in the Prometheus text format. Runs on the metrics
	 * thread: read counters with __atomic loads only. */
	void (*stats)(struct ov_slave *s, struct mbuf *b);
	/* Optional, for the management slave; all run on the loop's thread.
	 * name: the cookie a route to the named destination (e.g. a peer) takes: 0, or -ENOENT.
	 * describe: a route's owner as text (e.g. the peer's name) into out (cap bytes).
	 * show: the slave's state as text lines (e.g. peers and their endpoints). */
	int (*cookie_of)(struct ov_slave *s, const char *name, uint32_t *cookie);
	void (*describe)(struct ov_slave *s, uint32_t cookie, char *out, size_t cap);
	void (*show)(struct ov_slave *s, struct mbuf *b);
};

struct ov_slave {
	const struct ov_slave_ops *ops;
	void *priv;
};

enum { OV_TICK_MS = 250 };
