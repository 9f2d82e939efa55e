#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../filter/loader.h"
#include "../sys/metrics.h"
#include "../sys/net.h"
#include "../sys/sockdiag.h"
#include "mapline.h"

/* What the metrics endpoint shows; written by the agent's loop, read by the endpoint's
 * thread, both under the lock. */
struct agent_stats {
	pthread_mutex_t lock;
	uint64_t syncs, sync_errors, added, deleted, checks_ok, checks_failed, fast_downs;
	size_t routes, failover;
	double last_sync_ms;
	bool controller_up;
	struct filter_handle *filter; /* the node's XDP filter, when the config asks for one */
	const struct peak_config *cfg;
	const char *node;
	bool *healthy;    /* per local endpoint (the agent's hc order) */
	uint64_t *conns;  /* per local endpoint: established connections */
	uint64_t *cpu_ns; /* per local endpoint: CPU time of the pod's processes */
	uint64_t *slices; /* per local endpoint */
	int (*who)[2];    /* per local endpoint: service, endpoint index */
	unsigned n;
};

static void render(struct mbuf *b, void *arg)
{
	struct agent_stats *st = arg;
	pthread_mutex_lock(&st->lock);
	mbuf_printf(
	    b,
	    "# HELP peak_agent_slice_routes Slice routes installed.\n"
	    "# TYPE peak_agent_slice_routes gauge\npeak_agent_slice_routes %zu\n"
	    "# HELP peak_agent_failover_routes Slice routes of a local endpoint that is down, "
	    "pointed at a live local one.\n"
	    "# TYPE peak_agent_failover_routes gauge\npeak_agent_failover_routes %zu\n"
	    "# HELP peak_agent_fast_downs_total Endpoints marked down at once because the "
	    "process holding their listening socket exited.\n"
	    "# TYPE peak_agent_fast_downs_total counter\npeak_agent_fast_downs_total %llu\n"
	    "# HELP peak_agent_syncs_total Route syncs, by result.\n"
	    "# TYPE peak_agent_syncs_total counter\n"
	    "peak_agent_syncs_total{result=\"ok\"} %llu\n"
	    "peak_agent_syncs_total{result=\"error\"} %llu\n"
	    "# HELP peak_agent_route_changes_total Routes added (or replaced) and deleted.\n"
	    "# TYPE peak_agent_route_changes_total counter\n"
	    "peak_agent_route_changes_total{op=\"add\"} %llu\n"
	    "peak_agent_route_changes_total{op=\"delete\"} %llu\n"
	    "# HELP peak_agent_last_sync_seconds How long the last sync took.\n"
	    "# TYPE peak_agent_last_sync_seconds gauge\npeak_agent_last_sync_seconds %.6f\n"
	    "# HELP peak_agent_health_checks_total Health checks, by result.\n"
	    "# TYPE peak_agent_health_checks_total counter\n"
	    "peak_agent_health_checks_total{result=\"ok\"} %llu\n"
	    "peak_agent_health_checks_total{result=\"fail\"} %llu\n"
	    "# HELP peak_agent_controller_connected 1 while connected to the controller.\n"
	    "# TYPE peak_agent_controller_connected gauge\n"
	    "peak_agent_controller_connected %d\n"
	    "# HELP peak_agent_endpoint_healthy 1 if the local endpoint passes its checks.\n"
	    "# TYPE peak_agent_endpoint_healthy gauge\n",
	    st->routes, st->failover, (unsigned long long)st->fast_downs,
	    (unsigned long long)(st->syncs - st->sync_errors), (unsigned long long)st->sync_errors,
	    (unsigned long long)st->added, (unsigned long long)st->deleted, st->last_sync_ms / 1e3,
	    (unsigned long long)st->checks_ok, (unsigned long long)st->checks_failed,
	    st->controller_up);
	for (unsigned k = 0; st->cfg && k < st->n; k++) {
		char name[DNS_NAME_STRLEN];
		const struct cfg_service *s = &st->cfg->svc[st->who[k][0]];
		dns_name_print(&s->name, name, sizeof(name));
		mbuf_printf(b, "peak_agent_endpoint_healthy{service=\"%s\",endpoint=\"%s\"} %d\n",
		            name, s->ep[st->who[k][1]].id, st->healthy[k]);
	}
	mbuf_printf(b, "# HELP peak_agent_endpoint_connections TCP connections in the pod's "
	               "namespace.\n# TYPE peak_agent_endpoint_connections gauge\n");
	for (unsigned k = 0; st->cfg && k < st->n; k++) {
		char name[DNS_NAME_STRLEN];
		const struct cfg_service *s = &st->cfg->svc[st->who[k][0]];
		dns_name_print(&s->name, name, sizeof(name));
		mbuf_printf(
		    b, "peak_agent_endpoint_connections{service=\"%s\",endpoint=\"%s\"} %llu\n",
		    name, s->ep[st->who[k][1]].id, (unsigned long long)st->conns[k]);
	}
	mbuf_printf(b, "# HELP peak_agent_endpoint_cpu_seconds_total CPU time of the pod's "
	               "processes.\n# TYPE peak_agent_endpoint_cpu_seconds_total counter\n");
	for (unsigned k = 0; st->cfg && k < st->n; k++) {
		char name[DNS_NAME_STRLEN];
		const struct cfg_service *s = &st->cfg->svc[st->who[k][0]];
		dns_name_print(&s->name, name, sizeof(name));
		mbuf_printf(b,
		            "peak_agent_endpoint_cpu_seconds_total{service=\"%s\",endpoint=\"%s\"} "
		            "%.3f\n",
		            name, s->ep[st->who[k][1]].id, (double)st->cpu_ns[k] / 1e9);
	}
	uint64_t fp[FC_N], fb[FC_N];
	if (st->filter && !filter_handle_stats(st->filter, fp, fb)) {
		mbuf_printf(b, "# HELP peak_agent_filter_packets_total XDP filter classes and "
		               "reject reasons.\n"
		               "# TYPE peak_agent_filter_packets_total counter\n");
		for (unsigned c = 0; c < FC_N; c++)
			mbuf_printf(b, "peak_agent_filter_packets_total{verdict=\"%s\"} %llu\n",
			            filter_counter_name(c), (unsigned long long)fp[c]);
		mbuf_printf(b, "# HELP peak_agent_filter_bytes_total Bytes by XDP filter verdict.\n"
		               "# TYPE peak_agent_filter_bytes_total counter\n");
		for (unsigned c = 0; c < FC_N; c++)
			mbuf_printf(b, "peak_agent_filter_bytes_total{verdict=\"%s\"} %llu\n",
			            filter_counter_name(c), (unsigned long long)fb[c]);
	}
	struct filter_sigtab tab;
	uint64_t hits[FILTER_MAX_SIGNATURES];
	if (st->filter && !filter_handle_sigs(st->filter, &tab, hits)) {
		mbuf_printf(b,
		            "# HELP peak_agent_filter_signature_hits_total Packets each installed "
		            "signature matched, by slot.\n"
		            "# TYPE peak_agent_filter_signature_hits_total counter\n");
		for (unsigned k = 0; k < FILTER_MAX_SIGNATURES; k++)
			if (tab.used[k])
				mbuf_printf(
				    b, "peak_agent_filter_signature_hits_total{slot=\"%u\"} %llu\n",
				    k, (unsigned long long)hits[k]);
	}
	mbuf_printf(b, "# HELP peak_agent_endpoint_slices Slices routed to the local endpoint.\n"
	               "# TYPE peak_agent_endpoint_slices gauge\n");
	for (unsigned k = 0; st->cfg && k < st->n; k++) {
		char name[DNS_NAME_STRLEN];
		const struct cfg_service *s = &st->cfg->svc[st->who[k][0]];
		dns_name_print(&s->name, name, sizeof(name));
		mbuf_printf(b, "peak_agent_endpoint_slices{service=\"%s\",endpoint=\"%s\"} %llu\n",
		            name, s->ep[st->who[k][1]].id, (unsigned long long)st->slices[k]);
	}
	pthread_mutex_unlock(&st->lock);
}

/* Forgets the endpoints (at exit, or before the configuration they point into goes). */
static void stats_clear(struct agent_stats *st)
{
	pthread_mutex_lock(&st->lock);
	st->cfg = NULL;
	st->n = 0;
	free(st->healthy);
	free(st->slices);
	free(st->who);
	free(st->conns);
	free(st->cpu_ns);
	st->healthy = NULL;
	st->slices = NULL;
	st->who = NULL;
	st->conns = st->cpu_ns = NULL;
	pthread_mutex_unlock(&st->lock);
}

/* Slices of service i routed to endpoint e: the wanted routes via its address inside the
 * service's prefixes, less those skip() names (draining routes: not the pod's slices). */
static uint64_t slices_of(const struct cfg_service *s, unsigned e, const struct rt6 *want, size_t n,
                          bool (*skip)(const void *arg, const struct prefix *dst), const void *arg)
{
	uint64_t total = 0;
	for (size_t k = 0; k < n; k++) {
		if (memcmp(want[k].via, s->ep[e].addr, 16) || skip(arg, &want[k].dst))
			continue;
		for (unsigned p = 0; p < s->space.n; p++)
			if (prefix_contains(&s->space.pfx[p], &want[k].dst) &&
			    s->space.d.slice >= want[k].dst.len)
				total += 1ULL << (s->space.d.slice - want[k].dst.len);
	}
	return total;
}

struct rtvec {
	struct rt6 *v;
	size_t n, cap;
};

static int rtvec_push(struct rtvec *r, const struct rt6 *x)
{
	if (r->n == r->cap) {
		size_t nc = r->cap ? 2 * r->cap : 64;
		struct rt6 *nv = realloc(r->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		r->v = nv;
		r->cap = nc;
	}
	r->v[r->n++] = *x;
	return 0;
}

int agent_node_routes(const struct peak_config *cfg, const char *node, const struct svc_map *maps,
                      struct rt6 **out, size_t *n)
{
	struct rtvec rv = {0};
	struct assign_block *blocks = NULL;
	int *slot = NULL, ret = 0;
	*out = NULL;
	*n = 0;
	for (unsigned i = 0; i < cfg->nsvc && !ret; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		struct assign a;
		bool local = false;
		for (unsigned e = 0; e < s->nep; e++)
			local |= !strcmp(s->ep[e].node, node);
		if (!local)
			continue;
		if (maps && maps[i].have) {
			for (unsigned e = 0; e < s->nep && !ret; e++) {
				if (strcmp(s->ep[e].node, node))
					continue;
				for (size_t k = 0; k < maps[i].nblocks[e] && !ret; k++) {
					struct rt6 rt = {0};
					if (assign_block_prefix(&s->space, &maps[i].blocks[e][k],
					                        &rt.dst))
						continue; /* a block outside the space: ignored */
					memcpy(rt.via, s->ep[e].addr, 16);
					ret = rtvec_push(&rv, &rt);
				}
			}
			continue;
		}
		free(slot);
		if (!(slot = malloc(s->nep * sizeof(*slot)))) {
			ret = -ENOMEM;
			break;
		}
		int r = config_service_assign(s, &a, slot);
		if (r == -ENOMEM) {
			ret = r;
			break;
		}
		if (r)
			continue; /* no slices to route (logged by the caller's check) */
		for (unsigned e = 0; e < s->nep && !ret; e++) {
			if (strcmp(s->ep[e].node, node))
				continue;
			size_t nb = assign_blocks(&a, (unsigned)slot[e], NULL, 0);
			struct assign_block *nbv = realloc(blocks, (nb ? nb : 1) * sizeof(*nbv));
			if (!nbv) {
				ret = -ENOMEM;
				break;
			}
			blocks = nbv;
			assign_blocks(&a, (unsigned)slot[e], blocks, nb);
			for (size_t k = 0; k < nb && !ret; k++) {
				struct rt6 rt = {0};
				assign_block_prefix(&s->space, &blocks[k], &rt.dst);
				memcpy(rt.via, s->ep[e].addr, 16);
				ret = rtvec_push(&rv, &rt);
			}
		}
		assign_fini(&a);
	}
	free(slot);
	free(blocks);
	if (ret) {
		free(rv.v);
		return ret;
	}
	if (rv.n > 1)
		qsort(rv.v, rv.n, sizeof(*rv.v), rt6_cmp);
	*out = rv.v;
	*n = rv.n;
	return 0;
}

size_t agent_failover(const struct peak_config *cfg, const char *node,
                      bool (*down)(unsigned svc, unsigned ep, void *arg), void *arg,
                      struct rt6 *routes, size_t n)
{
	size_t moved = 0;
	unsigned *live = NULL, *dead = NULL;
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		unsigned nlive = 0, ndead = 0;
		free(live);
		free(dead);
		live = malloc((s->nep ? s->nep : 1) * sizeof(*live));
		dead = malloc((s->nep ? s->nep : 1) * sizeof(*dead));
		if (!live || !dead)
			break; /* no memory: routes stay as the map says */
		for (unsigned e = 0; e < s->nep; e++)
			if (!strcmp(s->ep[e].node, node)) {
				if (down(i, e, arg))
					dead[ndead++] = e;
				else
					live[nlive++] = e;
			}
		if (!ndead || !nlive)
			continue; /* nothing to move, or nothing local to move to */
		for (size_t k = 0; k < n; k++) {
			bool inside = false;
			for (unsigned p = 0; p < s->space.n && !inside; p++)
				inside = prefix_contains(&s->space.pfx[p], &routes[k].dst);
			for (unsigned d = 0; inside && d < ndead; d++)
				if (!memcmp(s->ep[dead[d]].addr, routes[k].via, 16)) {
					/* spread over the live endpoints, by route order */
					memcpy(routes[k].via, s->ep[live[k % nlive]].addr, 16);
					moved++;
					break;
				}
		}
	}
	free(live);
	free(dead);
	return moved;
}

int agent_sync(unsigned table, const struct rt6 *want, size_t nwant, size_t *added, size_t *deleted)
{
	struct rt6 *have = NULL, *add = NULL, *del = NULL;
	size_t nhave = 0;
	int ret = rt6_dump(table, &have, &nhave);
	*added = *deleted = 0;
	if (ret)
		return ret;
	add = malloc((nwant ? nwant : 1) * sizeof(*add));
	del = malloc((nhave ? nhave : 1) * sizeof(*del));
	if (!add || !del) {
		ret = -ENOMEM;
		goto out;
	}
	rt6_diff(have, nhave, want, nwant, add, added, del, deleted);
	ret = rt6_apply(table, add, *added, del, *deleted);
out:
	free(have);
	free(add);
	free(del);
	return ret;
}

/* AnyIP in a pod: one local route per prefix of each service the pod serves. */
struct pod_job {
	const struct rt6 *want;
	size_t n, added, deleted;
};

static int pod_sync(void *arg)
{
	struct pod_job *j = arg;
	return agent_sync(RT_TABLE_PEAK_LOCAL, j->want, j->n, &j->added, &j->deleted);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* ---- the running agent: health checks and the controller ---- */

enum { DRAIN_MS = 3000 }; /* more than BGP takes here to move a slice to another node */

struct drain {
	struct rt6 rt;
	uint64_t until_ms;
};

struct hc {
	int svc, ep; /* a local endpoint */
	int fd;      /* the check in flight, or -1 */
	unsigned fails, oks;
	bool up, started;
	bool ok; /* the last check's connect completed (judged at next_ms) */
	uint64_t next_ms; /* when the check in flight is judged and the next one starts */
	int pidfd;        /* the process holding the endpoint's listening socket, or -1 */
	uint64_t find_ms; /* when to look for that process (again) */
	/* The pod's CPU time as a counter: the sum over its live processes drops when one
	 * exits, so only the rises of that sum are added up (an exited process's last
	 * interval is lost; the counter never goes down). */
	uint64_t cpu_seen, cpu_total;
};

enum { CTL_LINE_LIMIT = 16 << 20 }; /* a map line of every slice fits many times over */

struct agent {
	const struct agent_opts *o;
	struct peak_config *cfg;
	struct svc_map *maps;
	struct hc *hc;
	unsigned nhc;
	int ctl;           /* controller connection, or -1 */
	uint64_t retry_ms; /* when to try the controller again */
	unsigned backoff_ms;
	char *in;
	size_t inlen, incap;
	int cur_svc; /* the map being received, or -1 */
	struct svc_map pending;
	bool dirty;        /* routes must be synced */
	struct pollfd *pf; /* signals, controller, per hc its pidfd, per hc its check */
	struct rt6 *fo;    /* the routes the last sync failed over */
	size_t nfo;
	struct drain *drain; /* failed-over routes the map has taken away, still kept */
	size_t ndrain;
	struct agent_stats st; /* shared with the metrics endpoint's thread */
	uint64_t refused_s, refused; /* the last second a refused line was logged; since then */
};

static uint64_t mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Ends a check's connection with a reset (SO_LINGER 0): the pod's side of it is gone at once,
 * so the pod's load (its namespace's TCP connections) never counts the agent's own checks, and
 * no TIME_WAIT socket is left per check in the node's namespace. */
static void hc_close(struct hc *h)
{
	struct linger lg = {1, 0};
	setsockopt(h->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(h->fd);
	h->fd = -1;
}

/* Collects a check whose connect has completed (connected or failed): records the outcome in
 * h->ok and closes the connection. Returns whether it did; a connect still in flight is
 * left alone. */
static bool hc_collect(struct hc *h)
{
	struct pollfd pf = {.fd = h->fd, .events = POLLOUT};
	if (h->fd < 0 || poll(&pf, 1, 0) != 1)
		return false;
	int so = 1;
	socklen_t sl = sizeof(so);
	if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &so, &sl) == -1)
		so = 1;
	h->ok = so == 0;
	hc_close(h);
	return true;
}

/* Whether a local endpoint is down (hc is in service, then endpoint order). */
static bool hc_down(unsigned svc, unsigned ep, void *arg)
{
	const struct agent *a = arg;
	unsigned lo = 0, hi = a->nhc;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct hc *h = &a->hc[mid];
		if (h->svc == (int)svc && h->ep == (int)ep)
			return !h->up;
		if (h->svc < (int)svc || (h->svc == (int)svc && h->ep < (int)ep))
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Whether a route's gateway is a local endpoint that is down. */
static bool via_down(const struct agent *a, const struct rt6 *rt)
{
	for (unsigned i = 0; i < a->nhc; i++) {
		const struct cfg_service *s = &a->cfg->svc[a->hc[i].svc];
		if (!a->hc[i].up && !memcmp(s->ep[a->hc[i].ep].addr, rt->via, 16))
			return true;
	}
	return false;
}

/* Whether a route of v has dst or (covers: true) a prefix containing it. */
static bool has_dst(const struct rt6 *v, size_t n, const struct prefix *dst, bool covers)
{
	for (size_t k = 0; k < n; k++)
		if (covers ? prefix_contains(&v[k].dst, dst) : !prefix_cmp(&v[k].dst, dst))
			return true;
	return false;
}

/* Whether dst is a draining route of the agent (arg). */
static bool draining(const void *arg, const struct prefix *dst)
{
	const struct agent *a = arg;
	for (size_t j = 0; j < a->ndrain; j++)
		if (!prefix_cmp(&a->drain[j].rt.dst, dst))
			return true;
	return false;
}

/* Local failover (agent_failover) on the wanted routes, then the drain: a failed-over
 * route that the controller's new map takes off this node stays, via a live local pod, for
 * DRAIN_MS more, so that packets the router still sends here while BGP moves the slices to
 * another node are served rather than lost (make before break). *want grows by the
 * drained routes; *moved counts the routes re-pointed. Returns 0 or -ENOMEM. */
static int failover_and_drain(struct agent *a, struct rt6 **want, size_t *n, size_t *moved)
{
	uint64_t now = mono_ms();
	bool any_down = false;
	for (unsigned i = 0; i < a->nhc && !any_down; i++)
		any_down = !a->hc[i].up;
	*moved = 0;
	if (!any_down && !a->nfo && !a->ndrain)
		return 0; /* the usual case: nothing failed over, nothing draining */
	struct rt6 *orig = malloc((*n ? *n : 1) * sizeof(*orig));
	if (!orig)
		return -ENOMEM;
	memcpy(orig, *want, *n * sizeof(*orig));
	*moved = agent_failover(a->cfg, a->o->node, hc_down, a, *want, *n);
	/* routes failed over last time and gone from the map now start draining */
	for (size_t k = 0; k < a->nfo; k++) {
		/* still here (maybe merged into a larger block of a local pod): no drain */
		if (draining(a, &a->fo[k].dst) || has_dst(*want, *n, &a->fo[k].dst, true))
			continue;
		struct drain *d = realloc(a->drain, (a->ndrain + 1) * sizeof(*d));
		if (!d) {
			free(orig);
			return -ENOMEM;
		}
		a->drain = d;
		a->drain[a->ndrain++] = (struct drain){a->fo[k], now + DRAIN_MS};
	}
	/* this sync's failed-over routes, for the next one */
	struct rt6 *f = realloc(a->fo, (*moved ? *moved : 1) * sizeof(*f));
	if (!f) {
		free(orig);
		return -ENOMEM;
	}
	a->fo = f;
	a->nfo = 0;
	for (size_t k = 0; k < *n; k++)
		if (memcmp(orig[k].via, (*want)[k].via, 16))
			a->fo[a->nfo++] = (*want)[k];
	free(orig);
	/* drop expired entries and those the map routes here again; keep the rest */
	size_t keep = 0;
	for (size_t k = 0; k < a->ndrain; k++)
		if (a->drain[k].until_ms > now && !has_dst(*want, *n, &a->drain[k].rt.dst, true))
			a->drain[keep++] = a->drain[k];
	a->ndrain = keep;
	if (!keep)
		return 0;
	struct rt6 *all = realloc(*want, (*n + keep) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	size_t m = *n;
	for (size_t k = 0; k < keep; k++)
		all[m++] = a->drain[k].rt;
	/* a drained route's pod may have died since: re-point it, or let it go */
	agent_failover(a->cfg, a->o->node, hc_down, a, all + *n, keep);
	size_t w = *n;
	for (size_t k = *n; k < m; k++)
		if (!via_down(a, &all[k]))
			all[w++] = all[k];
	qsort(all, w, sizeof(*all), rt6_cmp);
	*want = all;
	*n = w;
	return 0;
}

/* One full sync of the node and its pods. Returns 0 or -1 (logged). */
static int sync_all(struct agent *a)
{
	const struct agent_opts *o = a->o;
	const struct peak_config *cfg = a->cfg;
	struct rt6 *want = NULL;
	size_t n = 0, added, deleted, moved = 0;
	struct timespec t0;
	int ret = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = agent_node_routes(cfg, o->node, a->maps, &want, &n);
	if (!r)
		r = failover_and_drain(a, &want, &n, &moved);
	if (!r)
		r = agent_sync(o->table, want, n, &added, &deleted);
	pthread_mutex_lock(&a->st.lock);
	a->st.syncs++;
	if (r) {
		a->st.sync_errors++;
	} else {
		a->st.routes = n;
		a->st.added += added;
		a->st.deleted += deleted;
		a->st.last_sync_ms = ms_since(&t0);
		a->st.failover = moved;
		for (unsigned k = 0; a->st.cfg == cfg && k < a->st.n; k++)
			a->st.slices[k] = slices_of(&cfg->svc[a->st.who[k][0]], (unsigned)a->st.who[k][1],
			                         want, n, draining, a);
	}
	pthread_mutex_unlock(&a->st.lock);
	free(want);
	if (r) {
		log_msg(LOG_ERR, "agent: %s: slice routes: %s", o->node, strerror(-r));
		return -1;
	}
	if (o->once || added || deleted || moved) /* a sync that changes nothing is quiet */
		log_msg(LOG_INFO, "agent: %s: %zu slice routes (+%zu -%zu) in %.1f ms%s", o->node,
		        n, added, deleted, ms_since(&t0),
		        moved ? "; a down pod's routes failed over" : "");
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		struct rt6 local[SSA_MAX_PREFIXES];
		for (unsigned p = 0; p < s->space.n; p++) {
			memset(&local[p], 0, sizeof(local[p]));
			local[p].dst = s->space.pfx[p];
			local[p].local = true;
		}
		qsort(local, s->space.n, sizeof(local[0]), rt6_cmp);
		for (unsigned e = 0; e < s->nep; e++) {
			if (strcmp(s->ep[e].node, o->node) || !s->ep[e].netns[0])
				continue;
			/* A pod may serve several services: its wanted set is their union. */
			struct rtvec all = {0};
			for (unsigned j = 0; j < cfg->nsvc; j++)
				for (unsigned k = 0; k < cfg->svc[j].nep; k++)
					if (!strcmp(cfg->svc[j].ep[k].netns, s->ep[e].netns))
						for (unsigned p = 0; p < cfg->svc[j].space.n; p++) {
							struct rt6 rt = {
							    .dst = cfg->svc[j].space.pfx[p],
							    .local = true};
							rtvec_push(&all, &rt);
						}
			if (all.n > 1)
				qsort(all.v, all.n, sizeof(*all.v), rt6_cmp);
			size_t u = 0; /* the same prefix listed by several endpoints: once */
			for (size_t k = 0; k < all.n; k++)
				if (!u || rt6_cmp(&all.v[u - 1], &all.v[k]))
					all.v[u++] = all.v[k];
			struct pod_job j = {all.v, u, 0, 0};
			r = netns_run(s->ep[e].netns, pod_sync, &j);
			free(all.v);
			if (r) {
				log_msg(LOG_ERR, "agent: %s: pod %s (netns %s): AnyIP routes: %s",
				        o->node, s->ep[e].id, s->ep[e].netns, strerror(-r));
				ret = -1;
				continue;
			}
			if (j.added || j.deleted)
				log_msg(LOG_INFO,
				        "agent: %s: pod %s: AnyIP for %zu prefixes (+%zu -%zu)",
				        o->node, s->ep[e].id, u, j.added, j.deleted);
		}
	}
	return ret;
}

int agent_config_check(const struct peak_config *cfg, const char *path, const char *node,
                       char *err, size_t errlen)
{
	bool known = !cfg->nnodes;
	for (unsigned i = 0; i < cfg->nnodes; i++)
		known |= !strcmp(cfg->nodes[i].name, node);
	if (!known) {
		snprintf(err, errlen, "%s:%u: node '%s' is not one of the nodes listed here", path,
		         cfg->nodes[0].line, node);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		bool local = false;
		for (unsigned e = 0; e < s->nep; e++)
			local |= !strcmp(s->ep[e].node, node);
		if (!local)
			continue;
		struct assign a;
		int *slot = malloc(s->nep * sizeof(*slot));
		if (!slot) {
			snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
			return -ENOMEM;
		}
		int r = config_service_assign(s, &a, slot);
		free(slot);
		if (!r) {
			assign_fini(&a);
			continue;
		}
		char name[DNS_NAME_STRLEN];
		dns_name_print(&s->name, name, sizeof(name));
		snprintf(err, errlen, "%s:%u: service %s: its slices cannot be assigned, so node '%s' "
		         "would route none of them: %s", path, s->line, name, node,
		         r == -E2BIG ? "more slices than an assignment holds (2^24)"
		         : r == -EINVAL ? "every weight is 0" : strerror(-r));
		return r == -ENOMEM ? r : -EINVAL;
	}
	return 0;
}

/* Loads and checks the file (agent_config_check). Returns 0, or -1 (logged). */
static int load(const struct agent_opts *o, struct peak_config **cfg)
{
	char err[CFG_ERRLEN + 256];
	*cfg = NULL;
	if (config_load(o->config, cfg, err, sizeof(err))) {
		log_msg(LOG_ERR, "agent: %s", err);
		return -1;
	}
	if (agent_config_check(*cfg, o->config, o->node, err, sizeof(err))) {
		log_msg(LOG_ERR, "agent: %s", err);
		config_free(*cfg);
		*cfg = NULL;
		return -1;
	}
	bool any = false;
	for (unsigned i = 0; i < (*cfg)->nsvc; i++)
		for (unsigned e = 0; e < (*cfg)->svc[i].nep; e++)
			any |= !strcmp((*cfg)->svc[i].ep[e].node, o->node);
	if (!any)
		log_msg(LOG_WARNING, "agent: no endpoint of %s is on node '%s'", o->config,
		        o->node);
	return 0;
}

int agent_bird_config(const char *path, const struct bird_opts *b)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f,
	        "# BIRD 2 configuration written by peak agent for node %s.\n"
	        "# The agent keeps the node's slice routes in kernel table %u (protocol 0xa5);\n"
	        "# BIRD learns them from there and announces them to the router over BGP.\n"
	        "router id %s;\n"
	        "protocol device { scan time 10; }\n"
	        "protocol kernel peak_slices {\n"
	        "\tkernel table %u;\n"
	        "\tlearn;\n"
	        "\tscan time 5;\n"
	        "\tipv6 { import all; export none; };\n"
	        "}\n"
	        "protocol bgp uplink {\n"
	        "\tlocal as %u;\n"
	        "\tneighbor %s as %u;\n"
	        "\tconnect delay time 1;\n"
	        "\tconnect retry time 2;\n"
	        "\thold time 9;\n"
	        "\tkeepalive time 3;\n"
	        "\tipv6 { import none; export where source = RTS_INHERIT; next hop self; };\n"
	        "}\n",
	        b->node, b->table, b->router_id, b->table, b->local_as, b->neighbor, b->peer_as);
	return fclose(f) ? -errno : 0;
}

/* Frees a map's blocks (m->nep lists) and empties it. */
static void map_free(struct svc_map *m)
{
	for (unsigned e = 0; m->blocks && e < m->nep; e++)
		free(m->blocks[e]);
	free(m->blocks);
	free(m->nblocks);
	memset(m, 0, sizeof(*m));
}

/* Frees the n maps of v (one per service of the configuration they came with). */
static void maps_free(struct svc_map *v, unsigned n)
{
	for (unsigned i = 0; v && i < n; i++)
		map_free(&v[i]);
	free(v);
}

/* Forgets the map being received, if any: on a new map line, a new connection, a reload
 * (cur_svc indexes the configuration) and at exit. */
static void ctl_map_reset(struct agent *a)
{
	map_free(&a->pending);
	a->cur_svc = -1;
}

/* Closes the controller link (if open), forgets what it was receiving, and says so in the
 * metrics; the next attempt is at retry_ms. */
static void ctl_drop(struct agent *a, uint64_t retry_ms)
{
	if (a->ctl >= 0)
		close(a->ctl);
	a->ctl = -1;
	a->inlen = 0;
	a->retry_ms = retry_ms;
	ctl_map_reset(a);
	pthread_mutex_lock(&a->st.lock);
	a->st.controller_up = false;
	pthread_mutex_unlock(&a->st.lock);
}

static void ctl_send(struct agent *a, const char *line)
{
	size_t n = strlen(line);
	if (a->ctl >= 0 && send(a->ctl, line, n, MSG_NOSIGNAL) != (ssize_t)n)
		ctl_drop(a, mono_ms() + a->backoff_ms);
}

static void ctl_health(struct agent *a, const struct hc *h)
{
	char name[DNS_NAME_STRLEN], line[DNS_NAME_STRLEN + CFG_ID_MAX + 32];
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	dns_name_print(&s->name, name, sizeof(name));
	snprintf(line, sizeof(line), "health %s %s %s\n", name, s->ep[h->ep].id,
	         h->up ? "up" : "down");
	ctl_send(a, line);
}

/* Connects to the controller (blocking, short), says hello and the health it knows. */
static void ctl_connect(struct agent *a)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (sockaddr_parse(a->o->controller, &ss, &sl))
		return;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {0, 200000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (fd == -1 || connect(fd, (struct sockaddr *)&ss, sl) == -1) {
		if (fd != -1)
			close(fd);
		/* Keep the last routes (fail static) and retry with backoff, up to 5 s. */
		a->retry_ms = mono_ms() + a->backoff_ms;
		a->backoff_ms = a->backoff_ms * 2 > 5000 ? 5000 : a->backoff_ms * 2;
		return;
	}
	a->ctl = fd;
	a->backoff_ms = 100;
	pthread_mutex_lock(&a->st.lock);
	a->st.controller_up = true;
	pthread_mutex_unlock(&a->st.lock);
	a->inlen = 0;
	ctl_map_reset(a);
	char hello[CFG_ID_MAX + 16];
	snprintf(hello, sizeof(hello), "hello %s\n", a->o->node);
	ctl_send(a, hello);
	for (unsigned i = 0; i < a->nhc; i++)
		if (!a->hc[i].up)
			ctl_health(a, &a->hc[i]);
	log_msg(LOG_INFO, "agent: %s: connected to controller %s", a->o->node, a->o->controller);
}

/* Logs a controller line the agent refuses, at most once a second (the rest are counted and
 * reported with the next message): a broken or hostile peer must not flood the log. */
static void ctl_refuse(struct agent *a, const char *why, const char *line)
{
	uint64_t now_s = mono_ms() / 1000;
	if (a->refused_s && now_s == a->refused_s) {
		a->refused++;
		return;
	}
	log_msg(LOG_WARNING, "agent: %s: controller: %s in line '%.80s'; line ignored (%llu more "
	        "since the last such message)", a->o->node, why, line,
	        (unsigned long long)a->refused);
	a->refused_s = now_s;
	a->refused = 0;
}

/* One line of a map message. A map line starts a new map and drops any unfinished one
 * (a map with no end, or one cut off when the link dropped). */
static void ctl_line(struct agent *a, char *line)
{
	struct peak_config *cfg = a->cfg;
	if (!strncmp(line, "map ", 4)) {
		struct dns_name n;
		ctl_map_reset(a);
		if (dns_name_parse(line + 4, &n))
			return;
		for (unsigned i = 0; i < cfg->nsvc; i++)
			if (dns_name_eq(&cfg->svc[i].name, &n))
				a->cur_svc = (int)i;
		if (a->cur_svc < 0)
			return;
		unsigned nep = cfg->svc[a->cur_svc].nep;
		a->pending.blocks = calloc(nep ? nep : 1, sizeof(*a->pending.blocks));
		a->pending.nblocks = calloc(nep ? nep : 1, sizeof(*a->pending.nblocks));
		a->pending.nep = nep;
		if (!a->pending.blocks || !a->pending.nblocks)
			ctl_map_reset(a);
		return;
	}
	if (a->cur_svc < 0)
		return;
	const struct cfg_service *s = &cfg->svc[a->cur_svc];
	if (!strncmp(line, "ep ", 3)) {
		/* "ep ID BLOCKS": a line with a bad block is refused whole (parsed once to check
		 * and count, once to store) */
		const char *id = line + 3, *sp = strchr(id, ' ');
		size_t idlen = sp ? (size_t)(sp - id) : strlen(id), nb, have;
		const char *blocks = sp ? sp + 1 : "";
		int e = -1;
		for (unsigned k = 0; k < s->nep && e < 0; k++)
			if (strlen(s->ep[k].id) == idlen && !memcmp(s->ep[k].id, id, idlen))
				e = (int)k;
		if (e < 0 ||
		    mapline_blocks_parse(blocks, strlen(blocks), &s->space, NULL, 0, &nb)) {
			ctl_refuse(a, e < 0 ? "unknown endpoint" : "bad block", line);
			return;
		}
		have = a->pending.nblocks[e];
		struct assign_block *nv =
		    realloc(a->pending.blocks[e], (have + nb + 1) * sizeof(*nv));
		if (!nv) {
			ctl_refuse(a, "no memory for", line);
			return;
		}
		a->pending.blocks[e] = nv;
		mapline_blocks_parse(blocks, strlen(blocks), &s->space, nv + have, nb, &nb);
		a->pending.nblocks[e] = have + nb;
		return;
	}
	if (!strcmp(line, "end")) {
		map_free(&a->maps[a->cur_svc]);
		a->maps[a->cur_svc] = a->pending;
		a->maps[a->cur_svc].have = true;
		memset(&a->pending, 0, sizeof(a->pending));
		a->cur_svc = -1;
		a->dirty = true;
	}
}

static void ctl_read(struct agent *a)
{
	char *grown = NULL;
	if (a->inlen + 4096 > a->incap && a->incap < CTL_LINE_LIMIT) {
		size_t nc = a->incap ? 2 * a->incap : 65536;
		if ((grown = realloc(a->in, nc))) {
			a->in = grown;
			a->incap = nc;
		}
	}
	/* A line longer than any map can be, or no memory for it: drop the connection (the
	 * routes stay) rather than grow without bound or spin on a full buffer. */
	bool full = a->inlen + 1 >= a->incap;
	ssize_t k = full ? 0 : recv(a->ctl, a->in + a->inlen, a->incap - a->inlen - 1, 0);
	if (full)
		log_msg(LOG_ERR, "agent: %s: controller line longer than %zu bytes", a->o->node,
		        a->incap);
	if (k <= 0) {
		log_msg(LOG_WARNING, "agent: %s: controller gone; keeping the routes, retrying",
		        a->o->node);
		ctl_drop(a, mono_ms() + a->backoff_ms);
		return;
	}
	a->inlen += (size_t)k;
	char *nl;
	while ((nl = memchr(a->in, '\n', a->inlen))) {
		*nl = '\0';
		ctl_line(a, a->in);
		size_t used = (size_t)(nl - a->in) + 1;
		memmove(a->in, a->in + used, a->inlen - used);
		a->inlen -= used;
	}
}

/* Load of a pod: the TCP connections of its namespace (tcp_open_count, read from inside it;
 * not /proc/net/tcp6, whose text grows with every TIME_WAIT socket and cost a core per
 * agent under a connection per request; nor a sock_diag dump of established sockets,
 * which walks the kernel's connection table shared by every namespace), and the CPU time
 * of the processes living in that namespace. */
struct load_job {
	uint64_t conns;
};

static int count_conns(void *arg)
{
	struct load_job *j = arg;
	return tcp_open_count(&j->conns);
}

/* CPU nanoseconds of the processes in the network namespace with this inode. */
static uint64_t netns_cpu_ns(unsigned long ino)
{
	uint64_t total = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[300], link[64];
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/net", e->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strtoul(link + 5, NULL, 10) != ino) /* "net:[INODE]" */
			continue;
		snprintf(path, sizeof(path), "/proc/%s/schedstat", e->d_name);
		FILE *fp = fopen(path, "r");
		unsigned long long ns = 0;
		if (fp && fscanf(fp, "%llu", &ns) == 1)
			total += ns;
		if (fp)
			fclose(fp);
	}
	if (d)
		closedir(d);
	return total;
}

/* Measures every local pod's load, records it and reports it to the controller. */
static void load_round(struct agent *a)
{
	for (unsigned i = 0; i < a->nhc; i++) {
		const struct cfg_service *s = &a->cfg->svc[a->hc[i].svc];
		const struct cfg_endpoint *ep = &s->ep[a->hc[i].ep];
		if (!ep->netns[0])
			continue;
		struct load_job j = {0};
		char path[300];
		struct stat sb;
		snprintf(path, sizeof(path), "/run/netns/%s", ep->netns);
		/* Our own check must not count as load: collect it if it has connected, and
		 * count again if it connected while we counted (the pod's side of a check
		 * exists only once our side is connected, and is gone once collected). */
		hc_collect(&a->hc[i]);
		int r = netns_run(ep->netns, count_conns, &j);
		for (int tries = 0; !r && tries < 3 && hc_collect(&a->hc[i]); tries++)
			r = netns_run(ep->netns, count_conns, &j);
		if (r || stat(path, &sb))
			continue;
		struct hc *h = &a->hc[i];
		uint64_t now_ns = netns_cpu_ns((unsigned long)sb.st_ino);
		if (now_ns > h->cpu_seen)
			h->cpu_total += now_ns - h->cpu_seen;
		h->cpu_seen = now_ns;
		uint64_t cpu = h->cpu_total;
		pthread_mutex_lock(&a->st.lock);
		if (i < a->st.n) {
			a->st.conns[i] = j.conns;
			a->st.cpu_ns[i] = cpu;
		}
		pthread_mutex_unlock(&a->st.lock);
		char name[DNS_NAME_STRLEN], line[DNS_NAME_STRLEN + CFG_ID_MAX + 64];
		dns_name_print(&s->name, name, sizeof(name));
		snprintf(line, sizeof(line), "load %s %s %llu %llu\n", name, ep->id,
		         (unsigned long long)j.conns, (unsigned long long)cpu);
		ctl_send(a, line);
	}
}

/* Records a local endpoint's new health, tells the controller and re-points its routes
 * (local failover) at the next turn of the loop. */
static void hc_set(struct agent *a, unsigned i, bool up, const char *why)
{
	struct hc *h = &a->hc[i];
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	h->up = up;
	pthread_mutex_lock(&a->st.lock);
	if (i < a->st.n)
		a->st.healthy[i] = up;
	pthread_mutex_unlock(&a->st.lock);
	log_msg(LOG_INFO, "agent: %s: endpoint %s is %s%s", a->o->node, s->ep[h->ep].id,
	        up ? "up" : "down", why);
	ctl_health(a, h);
	a->dirty = true;
}

/* ---- knowing at once that a pod's server died ----
 * Health checks need hc_down failed rounds to mark an endpoint down. When the process
 * that holds the endpoint's listening socket exits, its port answers resets from then on:
 * the agent finds that process (the listener's inode from sock_diag in the pod's
 * namespace, then /proc/PID/fd) and waits on a pidfd for its exit. */

enum { WATCH_RETRY_MS = 2000 }; /* how often to scan /proc again for an owner not found */

struct listener_job {
	uint16_t port;
	uint64_t ino;
};

static int listener_job_run(void *arg)
{
	struct listener_job *j = arg;
	return tcp_listener_inode(j->port, &j->ino);
}

/* The inode of the socket listening on the endpoint's port in its namespace, or 0. */
static uint64_t endpoint_listener(const struct cfg_service *s, const struct cfg_endpoint *ep)
{
	struct listener_job j = {(uint16_t)s->port, 0};
	int r = ep->netns[0] ? netns_run(ep->netns, listener_job_run, &j) : listener_job_run(&j);
	return r ? 0 : j.ino;
}

static void watch_start(struct agent *a, struct hc *h, uint64_t now)
{
	if (h->pidfd >= 0 || !h->up || now < h->find_ms)
		return;
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	uint64_t ino = endpoint_listener(s, &s->ep[h->ep]);
	if (!ino)
		return; /* nothing listens yet (a pod still starting): cheap, look next round */
	h->find_ms = now + WATCH_RETRY_MS; /* the /proc scan is what costs: not too often */
	pid_t pid = socket_owner(ino);
	if (pid > 0)
		h->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
}

/* The watched process exited: the endpoint is down now, unless another process still
 * holds a listener on its port (then that one is watched). */
static void watch_fired(struct agent *a, unsigned i)
{
	struct hc *h = &a->hc[i];
	close(h->pidfd);
	h->pidfd = -1;
	h->find_ms = 0;
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	if (!h->up || endpoint_listener(s, &s->ep[h->ep]))
		return;
	h->fails = a->o->hc_down;
	h->oks = 0;
	pthread_mutex_lock(&a->st.lock);
	a->st.fast_downs++;
	pthread_mutex_unlock(&a->st.lock);
	hc_set(a, i, false, " (its server process exited)");
}

static void watch_stop_all(struct agent *a)
{
	for (unsigned i = 0; a->hc && i < a->nhc; i++)
		if (a->hc[i].pidfd >= 0) {
			close(a->hc[i].pidfd);
			a->hc[i].pidfd = -1;
		}
}

/* For each local endpoint whose check is due: judges its last connect (completed by now
 * and connected, or not), then starts the next one, due after the fast interval while the endpoint's
 * health is changing (a failure while up, a success while down), else the interval.
 * Returns when the next check is due. */
static uint64_t hc_round(struct agent *a, uint64_t now)
{
	uint64_t next = now + a->o->hc_interval_ms;
	for (unsigned i = 0; i < a->nhc; i++) {
		struct hc *h = &a->hc[i];
		const struct cfg_service *s = &a->cfg->svc[h->svc];
		if (h->next_ms > now) {
			next = h->next_ms < next ? h->next_ms : next;
			continue;
		}
		if (h->started) {
			hc_collect(h);
			if (h->fd >= 0)
				hc_close(h); /* not connected yet counts as a failure */
			bool ok = h->ok, was = h->up;
			pthread_mutex_lock(&a->st.lock);
			if (ok)
				a->st.checks_ok++;
			else
				a->st.checks_failed++;
			pthread_mutex_unlock(&a->st.lock);
			h->oks = ok ? h->oks + 1 : 0;
			h->fails = ok ? 0 : h->fails + 1;
			if (h->up && h->fails >= a->o->hc_down)
				hc_set(a, i, false, "");
			if (!was && h->oks >= a->o->hc_up)
				hc_set(a, i, true, "");
		}
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
		                          .sin6_port = htons((uint16_t)s->port)};
		memcpy(&sa.sin6_addr, s->ep[h->ep].addr, 16);
		h->started = true;
		h->ok = false;
		h->fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (h->fd >= 0 && connect(h->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 &&
		    errno != EINPROGRESS) {
			close(h->fd); /* refused or unreachable at once: a failure */
			h->fd = -1;
		}
		bool changing = h->up ? h->fails > 0 : h->oks > 0;
		h->next_ms = now + (changing ? a->o->hc_fast_ms : a->o->hc_interval_ms);
		next = h->next_ms < next ? h->next_ms : next;
	}
	return next;
}

/* Sets up the health checks (and their metrics) of a->cfg's local endpoints. The new state
 * is allocated first: on failure (-ENOMEM) the previous one is left as it was. On success
 * the previous checks' connections and pidfds are closed and st points into a->cfg. old,
 * the configuration a->hc was made for (NULL at start), lets an endpoint that stays (same
 * service name, same id) keep its CPU counter across a reload. */
static int hc_setup(struct agent *a, const struct peak_config *old)
{
	unsigned n = 0, m = 0;
	for (unsigned i = 0; i < a->cfg->nsvc; i++)
		for (unsigned e = 0; e < a->cfg->svc[i].nep; e++)
			n += !strcmp(a->cfg->svc[i].ep[e].node, a->o->node);
	struct hc *hc = calloc(n ? n : 1, sizeof(*hc));
	struct pollfd *pf = calloc(2 * n + 2, sizeof(*pf));
	bool *healthy = calloc(n ? n : 1, sizeof(*healthy));
	uint64_t *slices = calloc(n ? n : 1, sizeof(*slices));
	int(*who)[2] = calloc(n ? n : 1, sizeof(*who));
	uint64_t *conns = calloc(n ? n : 1, sizeof(*conns));
	uint64_t *cpu_ns = calloc(n ? n : 1, sizeof(*cpu_ns));
	if (!hc || !pf || !healthy || !slices || !who || !conns || !cpu_ns) {
		free(hc);
		free(pf);
		free(healthy);
		free(slices);
		free(who);
		free(conns);
		free(cpu_ns);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < a->cfg->nsvc; i++)
		for (unsigned e = 0; e < a->cfg->svc[i].nep; e++)
			if (!strcmp(a->cfg->svc[i].ep[e].node, a->o->node))
				hc[m++] = (struct hc){
				    .svc = (int)i, .ep = (int)e, .fd = -1, .up = true, .pidfd = -1};
	for (unsigned k = 0; old && k < n; k++) {
		const struct cfg_service *s = &a->cfg->svc[hc[k].svc];
		for (unsigned j = 0; j < a->nhc; j++) {
			const struct cfg_service *t = &old->svc[a->hc[j].svc];
			if (dns_name_eq(&s->name, &t->name) &&
			    !strcmp(s->ep[hc[k].ep].id, t->ep[a->hc[j].ep].id)) {
				hc[k].cpu_seen = a->hc[j].cpu_seen;
				hc[k].cpu_total = a->hc[j].cpu_total;
				break;
			}
		}
	}
	watch_stop_all(a);
	for (unsigned i = 0; a->hc && i < a->nhc; i++)
		if (a->hc[i].fd >= 0)
			hc_close(&a->hc[i]); /* the check in flight: its socket went with the hc once */
	free(a->hc);
	free(a->pf);
	a->hc = hc;
	a->pf = pf;
	a->nhc = n;
	pthread_mutex_lock(&a->st.lock);
	free(a->st.healthy);
	free(a->st.slices);
	free(a->st.who);
	free(a->st.conns);
	free(a->st.cpu_ns);
	a->st.healthy = healthy;
	a->st.slices = slices;
	a->st.who = who;
	a->st.conns = conns;
	a->st.cpu_ns = cpu_ns;
	a->st.n = n;
	for (unsigned k = 0; k < n; k++) {
		a->st.healthy[k] = true;
		a->st.cpu_ns[k] = hc[k].cpu_total; /* a counter kept across a reload shows at once */
		a->st.who[k][0] = hc[k].svc;
		a->st.who[k][1] = hc[k].ep;
	}
	a->st.cfg = a->cfg;
	a->st.node = a->o->node;
	pthread_mutex_unlock(&a->st.lock);
	return 0;
}

/* The interface the configuration wants this node's filter on, or NULL. */
static const char *filter_dev(const struct peak_config *cfg, const char *node)
{
	for (unsigned i = 0; i < cfg->nnodes; i++)
		if (!strcmp(cfg->nodes[i].name, node) && cfg->nodes[i].filter_dev[0])
			return cfg->nodes[i].filter_dev;
	return NULL;
}

/* Attaches, updates or leaves the node's filter as the configuration says. */
static int filter_sync(struct agent *a)
{
	const struct agent_opts *o = a->o;
	const struct peak_config *cfg = a->cfg;
	char err[512];
	const char *dev = filter_dev(cfg, o->node);
	if (!dev)
		return 0;
	pthread_mutex_lock(&a->st.lock);
	struct filter_handle *h = a->st.filter;
	pthread_mutex_unlock(&a->st.lock);
	if (h) {
		if (filter_handle_update(h, cfg, err, sizeof(err))) {
			log_msg(LOG_ERR, "agent: %s: filter update: %s", o->node, err);
			return -1;
		}
		return 0;
	}
	h = filter_open(dev, o->filter_object, cfg, FILTER_MODE_AUTO, err, sizeof(err));
	if (!h) {
		log_msg(LOG_ERR, "agent: %s: filter on %s: %s", o->node, dev, err);
		return -1;
	}
	pthread_mutex_lock(&a->st.lock);
	a->st.filter = h;
	pthread_mutex_unlock(&a->st.lock);
	log_msg(LOG_INFO, "agent: %s: XDP filter attached to %s (%s hook)", o->node, dev,
	        filter_handle_hook(h));
	if (!filter_handle_pinned(h))
		log_msg(LOG_WARNING,
		        "agent: %s: the filter on %s is not pinned, so 'peak filter' commands "
		        "cannot reach it: %s",
		        o->node, dev, err);
	return 0;
}

/* SIGHUP: loads the file again and starts over from it (the controller's maps, which name
 * services of the old configuration, are dropped and asked for again). Everything the new
 * configuration needs is allocated before the old state goes: a file that does not load,
 * or no memory, leaves the agent as it was. Returns 0 or -1 (logged). */
static int reload(struct agent *a)
{
	struct peak_config *n = NULL, *old = a->cfg;
	struct svc_map *maps = NULL, *old_maps = a->maps;
	if (load(a->o, &n))
		goto refused;
	if (!(maps = calloc(n->nsvc ? n->nsvc : 1, sizeof(*maps))))
		goto refused;
	a->cfg = n;
	if (hc_setup(a, old)) { /* it left the old checks (and st) as they were */
		a->cfg = old;
		goto refused;
	}
	a->maps = maps;
	ctl_map_reset(a); /* cur_svc indexes the old configuration */
	maps_free(old_maps, old->nsvc);
	config_free(old); /* nothing points into it now: hc_setup moved st to the new one */
	return 0;
refused:
	free(maps);
	config_free(n);
	log_msg(LOG_ERR, "agent: reload refused, keeping the previous state");
	return -1;
}

int agent_run(const struct agent_opts *o)
{
	struct agent a = {.o = o,
	                  .ctl = -1,
	                  .backoff_ms = 100,
	                  .cur_svc = -1,
	                  .st = {.lock = PTHREAD_MUTEX_INITIALIZER}};
	struct metrics_srv *ms = NULL;
	int ret = AGENT_EXIT_FAIL, sfd = -1;
	/* Before any thread starts (the metrics endpoint's): threads inherit the signal mask,
	 * and one started with SIGHUP and SIGTERM unblocked would take them and die of them. */
	if (!o->once && (sfd = signals_fd(1)) < 0) {
		log_msg(LOG_ERR, "agent: signals: %s", strerror(-sfd));
		goto out;
	}
	if (load(o, &a.cfg)) {
		ret = AGENT_EXIT_CONFIG;
		goto out;
	}
	if (!(a.maps = calloc(a.cfg->nsvc ? a.cfg->nsvc : 1, sizeof(*a.maps))) || hc_setup(&a, NULL)) {
		log_msg(LOG_ERR, "agent: %s", strerror(ENOMEM));
		goto out;
	}
	if (!o->once && o->metrics && !(ms = metrics_start(o->metrics, render, &a.st)))
		goto out;
	int bad = sync_all(&a);
	if (o->once) {
		ret = bad ? AGENT_EXIT_FAIL : AGENT_EXIT_OK;
		goto out;
	}
	if (filter_sync(&a))
		goto out;
	uint64_t next_sync = mono_ms() + o->interval_ms, next_hc = mono_ms();
	for (bool run = true; run;) {
		uint64_t now = mono_ms();
		if (o->controller && a.ctl < 0 && now >= a.retry_ms)
			ctl_connect(&a);
		if (now >= next_hc) {
			next_hc = hc_round(&a, now);
			for (unsigned i = 0; i < a.nhc; i++)
				watch_start(&a, &a.hc[i], now);
		}
		if (a.dirty || now >= next_sync) {
			/* a full sync also repairs routes changed behind our back */
			sync_all(&a);
			if (now >= next_sync)
				load_round(&a);
			a.dirty = false;
			next_sync = now + o->interval_ms;
		}
		uint64_t until = next_hc < next_sync ? next_hc : next_sync;
		for (size_t k = 0; k < a.ndrain; k++)
			if (a.drain[k].until_ms < until)
				until = a.drain[k].until_ms;
		if (a.ndrain && until <= now)
			a.dirty = true; /* a drained route's time is up */
		if (o->controller && a.ctl < 0 && a.retry_ms < until)
			until = a.retry_ms;
		struct pollfd *pf = a.pf;
		pf[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pf[1] = (struct pollfd){.fd = a.ctl, .events = POLLIN};
		for (unsigned i = 0; i < a.nhc; i++) {
			pf[2 + i] = (struct pollfd){.fd = a.hc[i].pidfd, .events = POLLIN};
			pf[2 + a.nhc + i] = (struct pollfd){.fd = a.hc[i].fd, .events = POLLOUT};
		}
		int k = poll(pf, 2 + 2 * a.nhc, until > now ? (int)(until - now) : 0);
		if (k <= 0)
			continue;
		for (unsigned i = 0; i < a.nhc; i++) {
			if (pf[2 + a.nhc + i].revents)
				hc_collect(&a.hc[i]); /* judged when due; the connection goes now */
			if (pf[2 + i].revents && a.hc[i].pidfd >= 0)
				watch_fired(&a, i);
		}
		if (pf[1].revents)
			ctl_read(&a);
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo != SIGHUP) {
				log_msg(LOG_INFO, "agent: stopping; routes stay as they are");
				run = false;
				continue;
			}
			if (reload(&a))
				continue;
			if (a.ctl >= 0) /* the controller sends the maps again after a hello */
				ctl_drop(&a, 0);
			next_hc = 0; /* the new endpoints' checks start now */
			a.dirty = true;
			filter_sync(&a);
			log_msg(LOG_INFO, "agent: reloaded %s", o->config);
		}
	}
	ret = AGENT_EXIT_OK;
out:
	metrics_stop(ms);
	pthread_mutex_lock(&a.st.lock);
	filter_close(a.st.filter, false); /* the filter stays attached, like the routes */
	a.st.filter = NULL;
	pthread_mutex_unlock(&a.st.lock);
	stats_clear(&a.st);
	for (unsigned i = 0; i < a.nhc; i++)
		if (a.hc[i].fd >= 0)
			hc_close(&a.hc[i]);
	watch_stop_all(&a);
	ctl_drop(&a, 0);
	if (sfd >= 0)
		close(sfd);
	maps_free(a.maps, a.cfg ? a.cfg->nsvc : 0);
	ctl_map_reset(&a);
	free(a.in);
	free(a.hc);
	free(a.pf);
	free(a.fo);
	free(a.drain);
	config_free(a.cfg);
	return ret;
}
