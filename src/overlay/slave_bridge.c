/*
 * The bridge slave: a site with a native IPv6 network (an interface of the gateway's host)
 * carries traffic between that network and the overlay. The data path is the host kernel's:
 *
 * - Native prefixes into the overlay: they are announced like the site's own prefixes (with
 *   the DHT slave, in dht.prefixes and so certified and published signed; with static peers,
 *   in the other sites' list of this site's prefixes), so the other sites route them to this
 *   gateway and accept sources inside them from it.
 * - Overlay to native: the gateway writes what it receives into the TUN device as for any
 *   destination of the site, and the kernel forwards it out of the native interface along the
 *   route the slave installs for each native prefix (on-link, or via a next hop).
 * - Native to overlay: the slave installs a route for each overlay prefix (bridge.overlay)
 *   into the TUN device, so the kernel hands the native hosts' packets to the master, which
 *   routes them like the site's own (LPM table, DHT lookups). With bridge.table the same
 *   routes go into that kernel table too, where BIRD's kernel protocol learns them and
 *   announces them to the native network's routers (peak agent's BIRD layout, bird.c).
 *
 * The routes carry PEAK's routing protocol number (sys/route.h): they replace a route of the
 * same prefix and table, and are removed when the slave detaches. The host must forward IPv6
 * (net.ipv6.conf.all.forwarding=1): the slave refuses to start otherwise. A tap on the
 * master counts the packets that cross: to the native network (destination inside a native
 * prefix) and from it (source inside one).
 */
#include "slave_bridge.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/route.h"

enum { BR_MAX_ROUTES = 2 * OVC_BRIDGE_PREFIXES }; /* per table */

struct br {
	struct ov_slave slave;
	const struct ov_bridge_conf *bc;
	const char *tun;
	struct ov_master *m;
	unsigned ifindex, tun_index;
	struct rt6 main_rt[BR_MAX_ROUTES], table_rt[OVC_BRIDGE_PREFIXES];
	size_t nmain, ntable; /* installed (atomic: the metrics thread reads them) */
	uint64_t to_native, from_native, route_errors; /* atomic */
};

#define CNT_ADD(p, f, v) __atomic_fetch_add(&(p)->f, (v), __ATOMIC_RELAXED)
#define CNT_GET(p, f) __atomic_load_n(&(p)->f, __ATOMIC_RELAXED)

static bool in_native(const struct br *b, const uint8_t addr[16])
{
	for (size_t i = 0; i < b->bc->nnative; i++)
		if (prefix_contains_addr(&b->bc->native[i], addr))
			return true;
	return false;
}

/* The master's tap: counts what crosses between the native network and the overlay. */
static void br_tap(void *arg, bool to_site, const uint8_t *pkt, size_t len)
{
	struct br *b = arg;
	(void)len;
	if (to_site && in_native(b, pkt + 24))
		CNT_ADD(b, to_native, 1);
	else if (!to_site && in_native(b, pkt + 8))
		CNT_ADD(b, from_native, 1);
}

/* 1 if /proc says the host forwards IPv6, 0 if not, -errno if it cannot be read. */
static int forwarding(void)
{
	FILE *f = fopen("/proc/sys/net/ipv6/conf/all/forwarding", "re");
	if (!f)
		return -errno;
	int v = fgetc(f);
	fclose(f);
	return v == '1';
}

static int br_attach(struct ov_slave *s, struct ov_master *m)
{
	struct br *b = s->priv;
	const struct ov_bridge_conf *bc = b->bc;
	b->m = m;
	if (!(b->ifindex = if_nametoindex(bc->interface))) {
		int e = errno;
		log_msg(LOG_ERR, "overlay: bridge: interface %s: %s", bc->interface, strerror(e));
		return -ENODEV;
	}
	if (!(b->tun_index = if_nametoindex(b->tun)))
		return -errno;
	int fw = forwarding();
	if (fw != 1) {
		log_msg(LOG_ERR,
		        "overlay: bridge: the host does not forward IPv6 (%s): set "
		        "net.ipv6.conf.all.forwarding=1",
		        fw < 0 ? strerror(-fw) : "net.ipv6.conf.all.forwarding is 0");
		return -EPERM;
	}
	size_t n = 0, t = 0;
	for (size_t i = 0; i < bc->nnative; i++) {
		struct rt6 *r = &b->main_rt[n++];
		memset(r, 0, sizeof(*r));
		r->dst = bc->native[i];
		if (bc->has_via)
			memcpy(r->via, bc->via, 16);
		r->oif = b->ifindex;
	}
	for (size_t i = 0; i < bc->noverlay; i++) {
		struct rt6 *r = &b->main_rt[n++];
		memset(r, 0, sizeof(*r));
		r->dst = bc->overlay[i];
		r->oif = b->tun_index;
		if (bc->table)
			b->table_rt[t++] = *r;
	}
	int e = rt6_apply(RT_TABLE_PEAK_MAIN, b->main_rt, n, NULL, 0);
	if (!e)
		__atomic_store_n(&b->nmain, n, __ATOMIC_RELAXED);
	if (!e && t && !(e = rt6_apply(bc->table, b->table_rt, t, NULL, 0)))
		__atomic_store_n(&b->ntable, t, __ATOMIC_RELAXED);
	if (e) {
		CNT_ADD(b, route_errors, 1);
		log_msg(LOG_ERR, "overlay: bridge: installing the routes: %s", strerror(-e));
		return e;
	}
	ov_master_set_tap(m, br_tap, b);
	log_msg(LOG_INFO,
	        "overlay: bridge: %zu native prefix(es) on %s, %zu overlay prefix(es) into %s%s",
	        bc->nnative, bc->interface, bc->noverlay, b->tun,
	        bc->table ? " (and a table)" : "");
	return 0;
}

static void br_detach(struct ov_slave *s)
{
	struct br *b = s->priv;
	if (b->m)
		ov_master_set_tap(b->m, NULL, NULL);
	size_t n = CNT_GET(b, nmain), t = CNT_GET(b, ntable);
	int e = 0;
	if (n)
		e = rt6_apply(RT_TABLE_PEAK_MAIN, NULL, 0, b->main_rt, n);
	if (t && !e)
		e = rt6_apply(b->bc->table, NULL, 0, b->table_rt, t);
	if (e)
		log_msg(LOG_WARNING, "overlay: bridge: removing the routes: %s", strerror(-e));
	__atomic_store_n(&b->nmain, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&b->ntable, 0, __ATOMIC_RELAXED);
}

static int br_output(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len)
{
	(void)s, (void)cookie, (void)pkt, (void)len;
	return -EINVAL; /* the bridge owns no route of the master's */
}

static void br_stats(struct ov_slave *s, struct mbuf *mb)
{
	struct br *b = s->priv;
	mbuf_printf(mb,
	            "# HELP peak_overlay_bridge_packets_total Packets between the native "
	            "network and the overlay.\n"
	            "# TYPE peak_overlay_bridge_packets_total counter\n"
	            "peak_overlay_bridge_packets_total{dir=\"to_native\"} %llu\n"
	            "peak_overlay_bridge_packets_total{dir=\"from_native\"} %llu\n"
	            "# HELP peak_overlay_bridge_routes Kernel routes the bridge installed.\n"
	            "# TYPE peak_overlay_bridge_routes gauge\n"
	            "peak_overlay_bridge_routes %llu\n"
	            "# TYPE peak_overlay_bridge_route_errors_total counter\n"
	            "peak_overlay_bridge_route_errors_total %llu\n",
	            (unsigned long long)CNT_GET(b, to_native),
	            (unsigned long long)CNT_GET(b, from_native),
	            (unsigned long long)(CNT_GET(b, nmain) + CNT_GET(b, ntable)),
	            (unsigned long long)CNT_GET(b, route_errors));
}

/* "bridge native PREFIX dev IF via ADDR|on-link", "bridge overlay PREFIX dev TUN table
 * main|main,N" and "bridge packets to-native N from-native N". */
static void br_show(struct ov_slave *s, struct mbuf *mb)
{
	struct br *b = s->priv;
	const struct ov_bridge_conf *bc = b->bc;
	char p[PREFIX_STRLEN], a[ADDR_STRLEN] = "on-link";
	if (bc->has_via)
		addr_print(PEAK_AFI_IP6, bc->via, a);
	for (size_t i = 0; i < bc->nnative; i++)
		mbuf_printf(mb, "bridge native %s dev %s via %s\n", prefix_print(&bc->native[i], p),
		            bc->interface, a);
	for (size_t i = 0; i < bc->noverlay; i++) {
		char t[16] = "";
		if (bc->table)
			snprintf(t, sizeof(t), ",%u", bc->table);
		mbuf_printf(mb, "bridge overlay %s dev %s table main%s\n",
		            prefix_print(&bc->overlay[i], p), b->tun, t);
	}
	mbuf_printf(mb, "bridge packets to-native %llu from-native %llu\n",
	            (unsigned long long)CNT_GET(b, to_native),
	            (unsigned long long)CNT_GET(b, from_native));
}

static void br_describe(struct ov_slave *s, uint32_t cookie, char *out, size_t cap)
{
	(void)s, (void)cookie;
	snprintf(out, cap, "bridge");
}

static const struct ov_slave_ops br_ops = {
    .name = "bridge",
    .attach = br_attach,
    .detach = br_detach,
    .output = br_output,
    .stats = br_stats,
    .describe = br_describe,
    .show = br_show,
};

struct ov_slave *bridge_new(const struct ov_conf *conf, char *err, size_t errlen)
{
	if (!conf->bridge.enabled) {
		snprintf(err, errlen, "bridge: not configured");
		return NULL;
	}
	struct br *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->slave.ops = &br_ops;
	b->slave.priv = b;
	b->bc = &conf->bridge;
	b->tun = conf->tun;
	return &b->slave;
}

void bridge_free(struct ov_slave *s)
{
	if (s)
		free(s->priv);
}
