/* peak agent: the routes a node wants, local failover and drain, and the sync. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../sys/log.h"
#include "../sys/route.h"

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

bool agent_blocks_fit(const struct ssa_space *sp, const struct assign_block *b, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct prefix p;
		if (b[k].start >= sp->nslices || assign_block_prefix(sp, &b[k], &p))
			return false;
	}
	return true;
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

/* Whether a route's gateway is a local endpoint that down() says is down. */
static bool via_down(const struct peak_config *cfg, const char *node,
                     bool (*down)(unsigned svc, unsigned ep, void *arg), void *arg,
                     const struct rt6 *rt)
{
	for (unsigned i = 0; i < cfg->nsvc; i++)
		for (unsigned e = 0; e < cfg->svc[i].nep; e++)
			if (!strcmp(cfg->svc[i].ep[e].node, node) &&
			    !memcmp(cfg->svc[i].ep[e].addr, rt->via, 16) && down(i, e, arg))
				return true;
	return false;
}

/* Whether any local endpoint is down. */
static bool any_down(const struct peak_config *cfg, const char *node,
                     bool (*down)(unsigned svc, unsigned ep, void *arg), void *arg)
{
	for (unsigned i = 0; i < cfg->nsvc; i++)
		for (unsigned e = 0; e < cfg->svc[i].nep; e++)
			if (!strcmp(cfg->svc[i].ep[e].node, node) && down(i, e, arg))
				return true;
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

bool agent_drain_has(const struct agent_drain *d, const struct prefix *dst)
{
	for (size_t j = 0; j < d->ndrain; j++)
		if (!prefix_cmp(&d->drain[j].rt.dst, dst))
			return true;
	return false;
}

/* agent_drain_has for slices_of's skip(). */
static bool draining(const void *arg, const struct prefix *dst)
{
	return agent_drain_has(arg, dst);
}

void agent_drain_fini(struct agent_drain *d)
{
	free(d->fo);
	free(d->drain);
	memset(d, 0, sizeof(*d));
}

int agent_failover_drain(const struct peak_config *cfg, const char *node,
                         bool (*down)(unsigned svc, unsigned ep, void *arg), void *arg,
                         struct agent_drain *d, uint64_t now_ms, struct rt6 **want, size_t *n,
                         size_t *moved)
{
	*moved = 0;
	if (!d->nfo && !d->ndrain && !any_down(cfg, node, down, arg))
		return 0; /* the usual case: nothing failed over, nothing draining */
	struct rt6 *orig = malloc((*n ? *n : 1) * sizeof(*orig));
	if (!orig)
		return -ENOMEM;
	if (*n) /* no routes: *want may be NULL */
		memcpy(orig, *want, *n * sizeof(*orig));
	*moved = agent_failover(cfg, node, down, arg, *want, *n);
	/* routes failed over last time and gone from the map now start draining */
	for (size_t k = 0; k < d->nfo; k++) {
		/* still here (maybe merged into a larger block of a local pod): no drain */
		if (agent_drain_has(d, &d->fo[k].dst) || has_dst(*want, *n, &d->fo[k].dst, true))
			continue;
		struct drain *dv = realloc(d->drain, (d->ndrain + 1) * sizeof(*dv));
		if (!dv) {
			free(orig);
			return -ENOMEM;
		}
		d->drain = dv;
		d->drain[d->ndrain++] = (struct drain){d->fo[k], now_ms + DRAIN_MS};
	}
	/* this sync's failed-over routes, for the next one */
	struct rt6 *f = realloc(d->fo, (*moved ? *moved : 1) * sizeof(*f));
	if (!f) {
		free(orig);
		return -ENOMEM;
	}
	d->fo = f;
	d->nfo = 0;
	for (size_t k = 0; k < *n; k++)
		if (memcmp(orig[k].via, (*want)[k].via, 16))
			d->fo[d->nfo++] = (*want)[k];
	free(orig);
	/* drop expired entries and those the map routes here again; keep the rest */
	size_t keep = 0;
	for (size_t k = 0; k < d->ndrain; k++)
		if (d->drain[k].until_ms > now_ms && !has_dst(*want, *n, &d->drain[k].rt.dst, true))
			d->drain[keep++] = d->drain[k];
	d->ndrain = keep;
	if (!keep)
		return 0;
	struct rt6 *all = realloc(*want, (*n + keep) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	size_t m = *n;
	for (size_t k = 0; k < keep; k++)
		all[m++] = d->drain[k].rt;
	/* a drained route's pod may have died since: re-point it, or let it go */
	agent_failover(cfg, node, down, arg, all + *n, keep);
	size_t w = *n;
	for (size_t k = *n; k < m; k++)
		if (!via_down(cfg, node, down, arg, &all[k]))
			all[w++] = all[k];
	qsort(all, w, sizeof(*all), rt6_cmp);
	*want = all;
	*n = w;
	return 0;
}

/* Where drained routes go. When the slice routes have a table of their own (--table, the
 * one BIRD learns and announces), the drained ones are kept in the node's main table
 * instead: the node still delivers there what the router sends it while BGP moves the
 * slices (its rule looks up the slice table first, then main), but they are not announced.
 * Announced, a drained route competed with the new owner's node announcing the same
 * prefix; the router kept the old path until the drain ended, so connections opened
 * meanwhile went to the local pod and were reset by the new owner when the drain ended.
 * Moves the drained routes of want (n of them, sorted) to out, keeping want sorted;
 * returns how many moved. */
static size_t drained_apart(const struct agent_drain *d, struct rt6 *want, size_t n,
                            struct rt6 *out)
{
	size_t keep = 0, moved = 0;
	for (size_t k = 0; k < n; k++) {
		if (agent_drain_has(d, &want[k].dst))
			out[moved++] = want[k];
		else
			want[keep++] = want[k];
	}
	return moved;
}

/* Syncs the drained routes (drained_apart) into the main table; logs a change. Returns 0 or
 * -errno. */
static int drain_sync(struct agent *a, const struct rt6 *dr, size_t ndr)
{
	size_t added, deleted;
	if (!ndr && a->drain_main_clean)
		return 0;
	int r = agent_sync(RT_TABLE_PEAK_MAIN, dr, ndr, &added, &deleted);
	if (r)
		return r;
	a->drain_main_clean = !ndr;
	if (added || deleted)
		log_msg(LOG_INFO,
		        "agent: %s: %zu drained slice routes in the main table, not announced "
		        "(+%zu -%zu)",
		        a->o->node, ndr, added, deleted);
	return 0;
}

/* One full sync of the node and its pods. Returns 0 or -1 (logged). */
int agent_sync_all(struct agent *a)
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
		r = agent_failover_drain(cfg, o->node, hc_down, a, &a->dr, peak_mono_ms(), &want,
		                         &n, &moved);
	if (!r && o->table != RT_TABLE_PEAK_MAIN && !o->once) {
		/* into main first, then out of the slice table: the node routes them throughout */
		struct rt6 *dr = malloc((n ? n : 1) * sizeof(*dr));
		size_t ndr = dr ? drained_apart(&a->dr, want, n, dr) : 0;
		r = dr ? drain_sync(a, dr, ndr) : -ENOMEM;
		n -= ndr;
		free(dr);
	}
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
			a->st.slices[k] =
			    slices_of(&cfg->svc[a->st.who[k][0]], (unsigned)a->st.who[k][1], want,
			              n, draining, &a->dr);
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
