/*
 * The anycast slave: an IPv6 prefix served by several sites' gateways. It owns the route of
 * each anycast prefix (added after the gateway's, so it replaces the members' own route of
 * it). A packet to the prefix belongs to a flow (TCP or UDP: addresses, protocol and ports;
 * any other: addresses, next header and flow label); a new flow goes to the healthy member of
 * lowest probe RTT (the resiliency slave measures it), and a flow keeps its member while the
 * member is healthy. A member is unhealthy when the resiliency slave has its direct path down
 * (silent for dead-ms while used) or nothing came from it for three keepalive periods; its flows
 * then move to the best healthy member at their next packet, so failover takes what detection
 * takes.
 *
 * Flows live in one open-addressed table (a keyed hash: a site's host cannot aim collisions),
 * AC_PROBE slots looked at per packet: an entry idle for AC_IDLE_MS is free again, and a full
 * neighbourhood evicts its least recently used flow (counted; that flow is placed again, on the
 * nearest member, at its next packet).
 *
 * Members are configured peers (sites:), or, for a prefix configured without sites, the sites
 * that publish an anycast record of it in the DHT (dht.anycast on their side; dht.c): looked
 * up when the slave starts, every AC_LOOKUP_MS, and at a packet while none is known; the
 * gateway learns them as peers (their certified prefixes, which hold the anycast prefix, are
 * the sources their answers may use). A member gets a slot the first time a lookup names it
 * and keeps it (so the metrics thread reads stable names); one no longer named is no member
 * and its flows move at their next packet.
 */
#include "slave_anycast.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "peak/siphash.h"
#include "peak/util.h"
#include "dht.h"
#include "gateway.h"
#include "slave_resil.h"

enum {
	AC_FLOWS = 1 << 16,  /* table slots, a power of 2 */
	AC_PROBE = 8,        /* slots looked at per packet */
	AC_IDLE_MS = 120000, /* a flow idle this long is forgotten */
	AC_KEY = 40,
	AC_LOOKUP_MS = 5000, /* members looked up in the DHT again after this */
};

struct ac_flow {
	uint8_t key[AC_KEY];
	uint64_t last_ms; /* 0: a free slot */
	uint16_t group, member;
};

struct ac_group {
	const struct ov_anycast_conf *conf;
	bool dht;                       /* members from the DHT (no sites configured) */
	size_t nslots;                  /* atomic (release): slots filled */
	bool active[OVC_ANYCAST_SITES]; /* the slot's site is a member now */
	char name[OVC_ANYCAST_SITES][OVC_NAME_MAX + 1];
	uint32_t cookie[OVC_ANYCAST_SITES];  /* the members' gateway cookies */
	uint64_t packets[OVC_ANYCAST_SITES]; /* atomic: read by the metrics thread */
	uint64_t next_lookup_ms;
	uint64_t lookups, members_full; /* atomic */
};

struct ac {
	struct ov_slave slave;
	struct ov_slave *gw, *rs, *dht;
	struct ov_master *m;
	struct ac_group groups[OVC_MAX_ANYCAST];
	size_t ngroups;
	struct ac_flow *flows; /* AC_FLOWS */
	uint64_t seed[2];
	unsigned keepalive_s; /* a member not heard within 3 of these is unhealthy */
	uint64_t new_flows, moved, evicted, unreachable; /* atomic */
};

#define CNT_ADD(p, f, v) __atomic_fetch_add(&(p)->f, (v), __ATOMIC_RELAXED)
#define CNT_GET(p, f) __atomic_load_n(&(p)->f, __ATOMIC_RELAXED)

/* The flow key of a checked IPv6 packet (len >= 40). */
static void flow_key(const uint8_t *pkt, size_t len, uint8_t key[AC_KEY])
{
	memset(key, 0, AC_KEY);
	memcpy(key, pkt + 8, 32); /* source and destination */
	uint8_t nh = pkt[6];
	key[32] = nh;
	if ((nh == 6 || nh == 17) && len >= 44) {
		memcpy(key + 33, pkt + 40, 4); /* the ports */
	} else {
		key[33] = pkt[1] & 0x0f; /* the flow label */
		key[34] = pkt[2];
		key[35] = pkt[3];
	}
}

/* The flow's hash: SipHash-2-4 keyed by the process's random seed, so a sender cannot aim
 * flows at one bucket. */
static uint64_t flow_hash(const struct ac *a, const uint8_t key[AC_KEY])
{
	uint8_t k[16];
	memcpy(k, a->seed, sizeof(k));
	return siphash24(k, key, AC_KEY);
}

/* True if member cookie can take flows: an endpoint, heard lately (gw_peer_heard_within: a
 * stamp after now, e.g. now read before the member's packet came, is heard: the copy of the
 * rule here once read it as silent for 2^64 ms and moved the flows off a live member), and
 * its direct path not down. *rtt: its probe RTT (0: unmeasured). */
static bool healthy(struct ac *a, uint32_t cookie, uint64_t now, uint32_t *rtt)
{
	struct gw_peer_info in;
	bool down;
	if (gw_peer_info(a->gw, cookie, &in) || !in.has_ep ||
	    !gw_peer_heard_within(in.last_rx_ms, now, a->keepalive_s) ||
	    resil_peer(a->rs, cookie, &down, rtt) || down)
		return false;
	return true;
}

/* The healthy member of g with the lowest RTT (unmeasured ones last), or -1. */
static int best_member(struct ac *a, const struct ac_group *g, uint64_t now)
{
	int best = -1;
	uint64_t best_rtt = UINT64_MAX;
	for (size_t i = 0; i < g->nslots; i++) {
		uint32_t rtt;
		if (!g->active[i] || !healthy(a, g->cookie[i], now, &rtt))
			continue;
		uint64_t r = rtt ? rtt : UINT32_MAX;
		if (r < best_rtt) {
			best = (int)i;
			best_rtt = r;
		}
	}
	return best;
}

static int ac_output(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len)
{
	struct ac *a = s->priv;
	if (cookie >= a->ngroups)
		return -EINVAL;
	struct ac_group *g = &a->groups[cookie];
	uint8_t key[AC_KEY];
	uint64_t now = peak_mono_ms();
	flow_key(pkt, len, key);
	uint64_t h = flow_hash(a, key);
	struct ac_flow *f = NULL, *victim = NULL; /* victim: a free slot, else the LRU one */
	bool victim_live = false;
	for (size_t i = 0; i < AC_PROBE; i++) {
		struct ac_flow *e = &a->flows[(h + i) & (AC_FLOWS - 1)];
		bool live = e->last_ms && now - e->last_ms < AC_IDLE_MS;
		if (live && e->group == cookie && !memcmp(e->key, key, AC_KEY)) {
			f = e;
			break;
		}
		if (!live) {
			if (!victim || victim_live) {
				victim = e;
				victim_live = false;
			}
		} else if (!victim || (victim_live && e->last_ms < victim->last_ms)) {
			victim = e;
			victim_live = true;
		}
	}
	uint32_t rtt;
	if (!f || !g->active[f->member] || !healthy(a, g->cookie[f->member], now, &rtt)) {
		int m = best_member(a, g, now);
		if (m < 0) {
			if (g->dht && a->dht && now + AC_LOOKUP_MS >= g->next_lookup_ms + 1000 &&
			    !dht_anycast_lookup(a->dht, &g->conf->prefix)) { /* at most 1/s */
				CNT_ADD(g, lookups, 1);
				g->next_lookup_ms = now + AC_LOOKUP_MS;
			}
			CNT_ADD(a, unreachable, 1);
			return -EHOSTUNREACH;
		}
		if (f) {
			CNT_ADD(a, moved, 1);
		} else {
			f = victim;
			if (victim_live)
				CNT_ADD(a, evicted, 1);
			memcpy(f->key, key, AC_KEY);
			f->group = (uint16_t)cookie;
			CNT_ADD(a, new_flows, 1);
		}
		f->member = (uint16_t)m;
	}
	f->last_ms = now;
	CNT_ADD(g, packets[f->member], 1);
	return a->gw->ops->output(a->gw, g->cookie[f->member], pkt, len);
}

static int ac_attach(struct ov_slave *s, struct ov_master *m)
{
	struct ac *a = s->priv;
	a->m = m;
	for (size_t i = 0; i < a->ngroups; i++) {
		int ret = ov_route_add(m, &a->groups[i].conf->prefix, s, (uint32_t)i);
		if (ret)
			return ret;
	}
	return 0;
}

/* The DHT named the members of anycast prefix p (the gateway's cookies, n of them). */
static void ac_members(void *arg, const struct prefix *p, const uint32_t *cookies, size_t n)
{
	struct ac *a = arg;
	struct ac_group *g = NULL;
	for (size_t i = 0; i < a->ngroups && !g; i++)
		if (a->groups[i].dht && !prefix_cmp(&a->groups[i].conf->prefix, p))
			g = &a->groups[i];
	if (!g)
		return;
	bool was[OVC_ANYCAST_SITES];
	memcpy(was, g->active, sizeof(was));
	memset(g->active, 0, sizeof(g->active));
	for (size_t k = 0; k < n; k++) {
		size_t i = 0;
		while (i < g->nslots && g->cookie[i] != cookies[k])
			i++;
		if (i == g->nslots) {
			struct gw_peer_info in;
			if (i == OVC_ANYCAST_SITES || gw_peer_info(a->gw, cookies[k], &in)) {
				CNT_ADD(g, members_full, 1);
				continue;
			}
			g->cookie[i] = cookies[k];
			snprintf(g->name[i], sizeof(g->name[i]), "%s", in.name);
			__atomic_store_n(&g->nslots, i + 1, __ATOMIC_RELEASE);
		}
		g->active[i] = true;
	}
	if (!memcmp(was, g->active, sizeof(was)))
		return;
	char pp[PREFIX_STRLEN], list[256] = "";
	size_t at = 0;
	for (size_t i = 0; i < g->nslots && at < sizeof(list); i++)
		if (g->active[i])
			at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%s", at ? " " : "",
			                       g->name[i]);
	log_msg(LOG_INFO, "overlay: anycast %s: members from the DHT: %s", prefix_print(p, pp),
	        at ? list : "none");
}

static void ac_timer(struct ov_slave *s, uint64_t now)
{
	struct ac *a = s->priv;
	for (size_t i = 0; i < a->ngroups && a->dht; i++) {
		struct ac_group *g = &a->groups[i];
		if (!g->dht || now < g->next_lookup_ms)
			continue;
		if (!dht_anycast_lookup(a->dht, &g->conf->prefix))
			CNT_ADD(g, lookups, 1);
		g->next_lookup_ms = now + AC_LOOKUP_MS; /* busy: the next round */
	}
}

static void ac_detach(struct ov_slave *s)
{
	(void)s; /* the master removes the routes; nothing else is held */
}

static void ac_stats(struct ov_slave *s, struct mbuf *b)
{
	struct ac *a = s->priv;
	mbuf_printf(b,
	            "# TYPE peak_overlay_anycast_flows_total counter\n"
	            "peak_overlay_anycast_flows_total %llu\n"
	            "# TYPE peak_overlay_anycast_flows_moved_total counter\n"
	            "peak_overlay_anycast_flows_moved_total %llu\n"
	            "# TYPE peak_overlay_anycast_flows_evicted_total counter\n"
	            "peak_overlay_anycast_flows_evicted_total %llu\n"
	            "# TYPE peak_overlay_anycast_unreachable_total counter\n"
	            "peak_overlay_anycast_unreachable_total %llu\n"
	            "# TYPE peak_overlay_anycast_packets_total counter\n",
	            (unsigned long long)CNT_GET(a, new_flows),
	            (unsigned long long)CNT_GET(a, moved), (unsigned long long)CNT_GET(a, evicted),
	            (unsigned long long)CNT_GET(a, unreachable));
	for (size_t i = 0; i < a->ngroups; i++) {
		char p[PREFIX_STRLEN], l[METRICS_LABEL_MAX];
		struct ac_group *g = &a->groups[i];
		prefix_print(&g->conf->prefix, p);
		size_t n = __atomic_load_n(&g->nslots, __ATOMIC_ACQUIRE);
		for (size_t k = 0; k < n; k++)
			mbuf_printf(
			    b,
			    "peak_overlay_anycast_packets_total{prefix=\"%s\",site=\"%s\"} %llu\n",
			    p, metrics_label(l, sizeof(l), g->name[k]),
			    (unsigned long long)CNT_GET(g, packets[k]));
	}
	mbuf_printf(b, "# TYPE peak_overlay_anycast_dht_lookups_total counter\n"
	               "# TYPE peak_overlay_anycast_dht_members_dropped_total counter\n");
	for (size_t i = 0; i < a->ngroups; i++) {
		char p[PREFIX_STRLEN];
		struct ac_group *g = &a->groups[i];
		if (!g->dht)
			continue;
		prefix_print(&g->conf->prefix, p);
		mbuf_printf(b,
		            "peak_overlay_anycast_dht_lookups_total{prefix=\"%s\"} %llu\n"
		            "peak_overlay_anycast_dht_members_dropped_total{prefix=\"%s\"} %llu\n",
		            p, (unsigned long long)CNT_GET(g, lookups), p,
		            (unsigned long long)CNT_GET(g, members_full));
	}
}

static void ac_describe(struct ov_slave *s, uint32_t cookie, char *out, size_t cap)
{
	struct ac *a = s->priv;
	snprintf(out, cap, "%s", cookie < a->ngroups ? "anycast" : "?");
}

/* One line per anycast prefix and member: "anycast PREFIX SITE healthy|unhealthy rtt-us N|-"
 * (a site the DHT no longer names is left out); "anycast PREFIX - no-members" for a prefix
 * whose DHT lookup found none yet. */
static void ac_show(struct ov_slave *s, struct mbuf *b)
{
	struct ac *a = s->priv;
	uint64_t now = peak_mono_ms();
	for (size_t i = 0; i < a->ngroups; i++) {
		char p[PREFIX_STRLEN];
		prefix_print(&a->groups[i].conf->prefix, p);
		bool any = false;
		for (size_t k = 0; k < a->groups[i].nslots; k++) {
			uint32_t rtt = 0;
			char r[24] = "-";
			if (!a->groups[i].active[k])
				continue;
			any = true;
			bool ok = healthy(a, a->groups[i].cookie[k], now, &rtt);
			if (rtt)
				snprintf(r, sizeof(r), "%u", rtt);
			mbuf_printf(b, "anycast %s %s %s rtt-us %s\n", p, a->groups[i].name[k],
			            ok ? "healthy" : "unhealthy", r);
		}
		if (!any)
			mbuf_printf(b, "anycast %s - no-members\n", p);
	}
}

static const struct ov_slave_ops ac_ops = {
    .name = "anycast",
    .attach = ac_attach,
    .detach = ac_detach,
    .output = ac_output,
    .timer = ac_timer,
    .stats = ac_stats,
    .describe = ac_describe,
    .show = ac_show,
};

struct ov_slave *anycast_new(const struct ov_conf *conf, struct ov_slave *gw, struct ov_slave *rs,
                             struct ov_slave *dht, char *err, size_t errlen)
{
	struct ac *a = calloc(1, sizeof(*a));
	if (a)
		a->slave.priv = a;
	if (!a || !(a->flows = calloc(AC_FLOWS, sizeof(*a->flows)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (getrandom(a->seed, sizeof(a->seed), 0) != sizeof(a->seed)) {
		snprintf(err, errlen, "getrandom failed");
		goto fail;
	}
	a->slave.ops = &ac_ops;
	a->gw = gw;
	a->rs = rs;
	a->dht = dht;
	a->keepalive_s = conf->keepalive_s;
	a->ngroups = conf->nanycast;
	for (size_t i = 0; i < conf->nanycast; i++) {
		const struct ov_anycast_conf *ac = &conf->anycast[i];
		char p[PREFIX_STRLEN];
		a->groups[i].conf = ac;
		a->groups[i].nslots = ac->nsites;
		prefix_print(&ac->prefix, p);
		if (!ac->nsites) {
			if (!dht) {
				snprintf(err, errlen,
				         "anycast %s: no sites and no DHT to find them", p);
				goto fail;
			}
			a->groups[i].dht = true;
		}
		for (size_t k = 0; k < ac->nsites; k++) {
			const struct ov_peer_conf *pc = NULL;
			for (size_t j = 0; j < conf->npeers && !pc; j++)
				if (!strcmp(conf->peers[j].name, ac->sites[k])) {
					pc = &conf->peers[j];
					a->groups[i].cookie[k] = (uint32_t)j; /* gw_new's order */
					a->groups[i].active[k] = true;
					snprintf(a->groups[i].name[k], sizeof(a->groups[i].name[k]),
					         "%s", ac->sites[k]);
				}
			bool serves = false;
			for (size_t j = 0; pc && j < pc->nprefixes && !serves; j++)
				serves = prefix_contains(&pc->prefixes[j], &ac->prefix);
			if (!pc) {
				snprintf(err, errlen, "anycast %s: '%s' is not a configured peer",
				         p, ac->sites[k]);
				goto fail;
			}
			if (!serves) {
				snprintf(
				    err, errlen,
				    "anycast %s: peer '%s' does not list it in its prefixes (its "
				    "answers would be dropped)",
				    p, ac->sites[k]);
				goto fail;
			}
		}
	}
	if (dht)
		dht_set_anycast_cb(dht, ac_members, a);
	return &a->slave;
fail:
	if (a)
		anycast_free(&a->slave);
	return NULL;
}

void anycast_free(struct ov_slave *s)
{
	if (!s)
		return;
	struct ac *a = s->priv;
	free(a->flows);
	free(a);
}
