/* peak controller: the run loop, health and weights, reloads, agents and metrics (see
 * controller.h; ctl.h lists the other files). */
#define _GNU_SOURCE /* accept4 */
#include "controller.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../k8s/kube.h"
#include "../k8s/source.h"
#include "../sys/net.h"
#include "../sys/notify.h"
#include "ctl.h"
#include "steer.h"

/* The endpoints (lost[e], v's endpoint order) that had a slice in snap which is now owned
 * by an endpoint of another node: their nodes stop routing it and another node starts.
 * Returns lost (calloc'd) or NULL (no snapshot, or no memory: no order then). */
static bool *lost_to_other_node(const struct csvc *v, const struct ho_snap *snap)
{
	if (!snap || !snap->owner || !v->have || snap->nslices != v->a.nslices)
		return NULL;
	unsigned nep = v->s->nep;
	bool *lost = calloc(nep ? nep : 1, sizeof(*lost));
	int *now = malloc((v->a.nep ? v->a.nep : 1) * sizeof(*now)); /* slot -> endpoint */
	if (!lost || !now) {
		free(lost);
		free(now);
		return NULL;
	}
	for (unsigned k = 0; k < v->a.nep; k++)
		now[k] = -1;
	for (unsigned e = 0; e < nep; e++)
		if (v->slot[e] >= 0 && (unsigned)v->slot[e] < v->a.nep)
			now[v->slot[e]] = (int)e;
	for (uint32_t g = 0; g < snap->nslices; g++) {
		int32_t so = snap->owner[g], sn = v->a.owner[g];
		if (so < 0 || (unsigned)so >= snap->nslots || sn < 0 || (unsigned)sn >= v->a.nep)
			continue; /* unowned before or now: nobody routed it, or nobody will */
		int eo = snap->ep_of[so], en = now[sn];
		if (eo < 0 || en < 0 || eo == en || lost[eo])
			continue;
		lost[eo] = strcmp(v->s->ep[eo].node, v->s->ep[en].node) != 0;
	}
	free(now);
	return lost;
}

/* Whether agent p's node holds an endpoint that lost[] marks. */
static bool node_loses(const struct csvc *v, const bool *lost, const struct peer *p)
{
	for (unsigned e = 0; lost && e < v->s->nep; e++)
		if (lost[e] && !strcmp(v->s->ep[e].node, p->node))
			return true;
	return false;
}

/* Sends a service's whole map to every agent that said hello (or only to one). Sent to
 * every agent, it is a change: the service's saved record is written anew. With snap (the
 * assignment before the change), the agents of nodes that give slices to another node get
 * it last: a controller that dies between two agents' maps leaves a receiving node that
 * announces its new slices beside a giving node that still routes them (both deliver), not
 * a giving node that drained them beside a receiving node that does not announce them yet
 * (no node announces them, for a lease TTL: tests/regress/test_ctl_map_order.py). */
static void send_map_ordered(struct ctl *c, struct csvc *v, struct peer *only,
                             const struct ho_snap *snap)
{
	struct text t = {0};
	bool any = false;
	if (!only)
		ctlr_svc_dirty(v);
	for (int i = 0; i < MAX_AGENTS && !any; i++)
		any = c->agents[i].fd >= 0 && c->agents[i].hello;
	if (!any)
		return;               /* nobody to send it to: no text */
	ctlr_rt_text(v, NULL, 0, &t); /* the endpoints added at run time, before their map */
	ctlr_map_text(v, &t);
	if (t.err) {
		log_msg(LOG_ERR, "controller: %s: cannot write its map: %s", v->name,
		        strerror(-t.err));
		goto out;
	}
	bool *lost = only ? NULL : lost_to_other_node(v, snap);
	for (int pass = 0; pass < 2; pass++) /* the receiving and other nodes, then the giving */
		for (int i = 0; i < MAX_AGENTS; i++) {
			struct peer *p = &c->agents[i];
			if (p->fd >= 0 && p->hello && (!only || p == only) &&
			    node_loses(v, lost, p) == (pass == 1))
				ctlr_peer_send(c, p, t.p, t.len);
		}
	free(lost);
out:
	free(t.p);
}

static void send_map(struct ctl *c, struct csvc *v, struct peer *only)
{
	send_map_ordered(c, v, only, NULL);
}

void ctlr_send_map(struct ctl *c, struct csvc *v, struct peer *only)
{
	send_map(c, v, only);
}

void ctlr_send_map_moved(struct ctl *c, struct csvc *v, const struct ho_snap *snap)
{
	send_map_ordered(c, v, NULL, snap);
}

/* ---- health and weights ---- */

struct csvc *ctlr_svc_find(struct ctl *c, const char *name)
{
	struct dns_name n;
	int i;
	if (dns_name_parse(name, &n))
		return NULL;
	if (c->idx.cfg == c->cfg && c->idx.slot)
		return (i = ctlr_index_find(&c->idx, &n)) >= 0 ? &c->svc[i] : NULL;
	for (unsigned k = 0; k < c->cfg->nsvc; k++) /* (no index: out of memory) */
		if (dns_name_eq(&c->svc[k].s->name, &n))
			return &c->svc[k];
	return NULL;
}

/* Marks an endpoint up or down, moving only the slices it must, and tells the agents and
 * peak dns. Returns 0, -ENOENT (no such endpoint) or -EINVAL (it was the last one with
 * weight: it stays). The caller holds the lock. */
static int health_set(struct ctl *c, struct csvc *v, unsigned e, bool up, bool drain)
{
	const char *ep = v->s->ep[e].id;
	uint32_t moved = 0;
	int ret = 0;
	struct ho_snap snap = {0};
	v->stale[e] = 0;
	if (!v->have || v->healthy[e] == up)
		return 0;
	(void)ctlr_handover_snap(v, &snap); /* no memory: the move goes out without one */
	if (!up && v->slot[e] >= 0) {
		ret = assign_del(&v->a, (unsigned)v->slot[e], &moved);
		if (!ret)
			v->slot[e] = -1;
	}
	if (up && v->slot[e] < 0) {
		int s = assign_add(&v->a, v->weight[e], &moved);
		ret = s < 0 ? s : 0;
		if (s >= 0)
			v->slot[e] = s;
	}
	if (ret) {
		log_msg(LOG_WARNING, "controller: %s %s %s refused: %s", v->name, ep,
		        up ? "up" : "down",
		        ret == -EINVAL ? "it holds the last weight" : strerror(-ret));
		ctlr_handover_free(&snap);
		return ret;
	}
	v->healthy[e] = up;
	ctlr_svc_dirty(v);
	log_msg(LOG_INFO, "controller: %s %s %s%s: %u slices moved", v->name, ep,
	        up ? "up" : "down", drain ? " (drained)" : "", moved);
	ctlr_handover_send(c, v, &snap, drain ? (int)e : -1);
	send_map_ordered(c, v, NULL, &snap);
	ctlr_handover_free(&snap);
	struct ctl_msg m = {.kind = CTL_HEALTH, .up = up};
	ctlr_copy(m.svc, sizeof(m.svc), v->name);
	ctlr_copy(m.id, sizeof(m.id), ep);
	ctlr_dns_tell(c, &m);
	ctlr_state_save(c);
	return 0;
}

int ctlr_health(struct ctl *c, struct csvc *v, unsigned e, bool up)
{
	return health_set(c, v, e, up, false);
}

/* An operator's "health ... down" of an endpoint whose pod lives on: its slices move as for
 * a failure, but with handovers, so the connections it holds keep reaching it until they
 * end or the handover's deadline. The caller holds the lock. */
int ctlr_drain(struct ctl *c, struct csvc *v, unsigned e)
{
	return health_set(c, v, e, false, true);
}

/* Sets an endpoint's live weight: rebalances if it is up, tells agents and peak dns.
 * While steering it is the ceiling, and the effective weight keeps its fraction of it.
 * Returns 0 or -EINVAL (every live weight would be 0). The caller holds the lock. */
int ctlr_weight(struct ctl *c, struct csvc *v, unsigned e, uint32_t w)
{
	uint32_t moved = 0, live = w;
	struct ho_snap snap = {0};
	if (!v->have)
		return -EINVAL;
	if (v->steer)
		w = ctlr_steer_rescale(v->weight[e], v->ceil[e], live);
	if (v->slot[e] >= 0) {
		(void)ctlr_handover_snap(v, &snap); /* no memory: the move goes out without one */
		int ret = assign_set_weight(&v->a, (unsigned)v->slot[e], w, &moved);
		if (ret) {
			ctlr_handover_free(&snap);
			return ret;
		}
	}
	v->weight[e] = w;
	v->ceil[e] = live;
	ctlr_svc_dirty(v);
	log_msg(LOG_INFO, "controller: %s %s weight %u%s: %u slices moved", v->name, v->s->ep[e].id,
	        live, v->steer ? " (the ceiling of steering)" : "", moved);
	if (moved) {
		ctlr_handover_send(c, v, &snap, -1);
		send_map_ordered(c, v, NULL, &snap);
	}
	ctlr_handover_free(&snap);
	struct ctl_msg m = {.kind = CTL_WEIGHT, .weight = w};
	ctlr_copy(m.svc, sizeof(m.svc), v->name);
	ctlr_copy(m.id, sizeof(m.id), v->s->ep[e].id);
	ctlr_dns_tell(c, &m);
	ctlr_state_save(c);
	return 0;
}

/* After an agent's hello: its endpoints (and those whose node the configuration does not
 * name) that are down only because the saved state said so come up after STALE_UP_MS
 * unless it reports them down (an agent reports what is down right after its hello, and
 * never reports an endpoint that recovered while the controller was away). */
static void stale_arm(struct ctl *c, const char *node, uint64_t now)
{
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		for (unsigned e = 0; e < c->svc[i].s->nep; e++)
			if (c->svc[i].stale[e] == UINT64_MAX &&
			    (!c->svc[i].s->ep[e].node[0] || !strcmp(c->svc[i].s->ep[e].node, node)))
				c->svc[i].stale[e] = now + STALE_UP_MS;
}

static void stale_expire(struct ctl *c, uint64_t now)
{
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		for (unsigned e = 0; e < c->svc[i].s->nep; e++)
			if (c->svc[i].stale[e] && c->svc[i].stale[e] != UINT64_MAX &&
			    now >= c->svc[i].stale[e]) {
				pthread_mutex_lock(&c->lock);
				ctlr_health(c, &c->svc[i], e, true);
				pthread_mutex_unlock(&c->lock);
			}
}

/* At start: tells peak dns what the adopted state holds beyond the configuration (weights
 * set through the controller, endpoints down), so both start in step. */
static void dns_sync(struct ctl *c)
{
	struct ctl_msg m = {0};
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		const struct csvc *v = &c->svc[i];
		ctlr_copy(m.svc, sizeof(m.svc), v->name);
		for (unsigned e = 0; e < v->s->nep; e++) {
			ctlr_copy(m.id, sizeof(m.id), v->s->ep[e].id);
			if (!v->s->ep[e].line) { /* added at run time (runtime.c) */
				m.kind = CTL_ADD;
				memcpy(m.addr, v->s->ep[e].addr, 16);
				ctlr_copy(m.node, sizeof(m.node), v->s->ep[e].node);
				m.weight = v->s->ep[e].weight;
				ctlr_dns_tell(c, &m);
				m.node[0] = '\0';
			}
			if (v->weight[e] != v->s->ep[e].weight) {
				m.kind = CTL_WEIGHT;
				m.weight = v->weight[e];
				ctlr_dns_tell(c, &m);
			}
			if (!v->healthy[e]) {
				m.kind = CTL_HEALTH;
				m.up = false;
				ctlr_dns_tell(c, &m);
			}
		}
	}
}

/* ---- configuration ---- */

/* Checks that service s of a configuration loaded from path has an assignment. Returns 0,
 * or -EINVAL with "FILE:LINE: reason" in err. */
static int svc_check(const char *path, const struct cfg_service *s, char *err, size_t errlen)
{
	struct assign a;
	int *slot = calloc(s->nep ? s->nep : 1, sizeof(*slot));
	int r = slot ? config_service_assign(s, &a, slot) : -ENOMEM;
	free(slot);
	if (!r) {
		assign_fini(&a);
		return 0;
	}
	char name[DNS_NAME_STRLEN];
	dns_name_print(&s->name, name, sizeof(name));
	snprintf(err, errlen, "%s:%u: service %.255s: %s", path, s->line, name,
	         r == -E2BIG    ? "more slices than an assignment holds (2^24)"
	         : r == -ENOENT ? "no endpoints"
	         : r == -EINVAL ? "every endpoint's weight is 0"
	                        : strerror(-r));
	return -EINVAL;
}

/* Loads and checks the configuration: every service must have an assignment. Returns 0,
 * or -EINVAL with "FILE:LINE: reason" in err. */
static int config_check(const char *path, struct peak_config **out, char *err, size_t errlen)
{
	int ret = config_load(path, out, err, errlen);
	if (ret)
		return ret;
	for (unsigned i = 0; i < (*out)->nsvc; i++)
		if (svc_check(path, &(*out)->svc[i], err, errlen)) {
			config_free(*out);
			*out = NULL;
			return -EINVAL;
		}
	return 0;
}

/* SIGHUP and the control socket's "reload": a configuration that does not load is
 * refused and the running one kept. A service whose configuration did not change
 * (ctlr_svc_same) is kept as it lives, untouched (its assignment, weights, health, steering
 * and saved record); only the others are checked and built anew, adopting their live
 * assignment, weights and health where they still match (adopt); a weight the new file
 * changes applies. So a reload costs the parse of the file plus the services it changed,
 * not the whole state. Agents get the maps of the services whose record changed. Returns 0
 * or -errno with the reason in err. */
int ctlr_reload(struct ctl *c, char *err, size_t errlen)
{
	struct peak_config *cfg = NULL;
	struct text t = {0};
	struct csvc *svc = NULL;
	struct name_index newidx = {0}, oldidx = {0};
	int *from = NULL; /* per new service: the old one of that name, -1: none */
	bool *same = NULL, *taken = NULL, *send = NULL;
	unsigned nsame = 0;
	int ret = c->kube ? ksrc_config(c, &cfg, err, errlen)
	                  : config_load(c->o->config, &cfg, err, errlen);
	if (ret)
		goto out;
	ret = -ENOMEM;
	snprintf(err, errlen, "out of memory");
	from = malloc((cfg->nsvc ? cfg->nsvc : 1) * sizeof(*from));
	same = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*same));
	send = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*send));
	taken = calloc(c->cfg->nsvc ? c->cfg->nsvc : 1, sizeof(*taken));
	if (!from || !same || !send || !taken || ctlr_index_build(&oldidx, c->cfg))
		goto out;
	for (unsigned i = 0; i < cfg->nsvc; i++)
		from[i] = ctlr_index_find(&oldidx, &cfg->svc[i].name);
	/* the endpoints added at run time stay (runtime.c) */
	if (!c->kube && ctlr_rt_reload_merge(cfg, c->cfg, from))
		goto out;
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		int k = from[i];
		/* (the Kubernetes source marks endpoints that left down first: built anew) */
		same[i] = !c->kube && k >= 0 && !taken[k] && c->svc[k].have &&
		          ctlr_svc_same(c->cfg->svc + k, cfg->svc + i);
		if (same[i]) {
			taken[k] = true;
			nsame++;
		} else if (!c->kube && (ret = svc_check(c->o->config, cfg->svc + i, err, errlen))) {
			goto out; /* (the ones kept were checked when they were loaded) */
		}
	}
	if (c->kube)
		ksrc_before(c, cfg); /* endpoints that left go down first: only theirs move */
	c->copy_exact = false;       /* a standby's services no longer those a load gives */
	/* the live state of the services built anew, which they adopt where it matches */
	for (unsigned i = 0; i < cfg->nsvc; i++)
		if (!same[i] && from[i] >= 0)
			ctlr_svc_text(&c->svc[from[i]], &t);
	ctlr_text_add(&t, "", 1);
	if ((ret = t.err)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (c->kube)
		ksrc_filter(cfg, &t);
	if (!(svc = ctlr_svcs_build_some(cfg, t.p, t.len - 1, c->steer, same))) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < cfg->nsvc; i++) { /* weights the file changes */
		struct csvc *v = &svc[i];
		int k = from[i];
		const struct cfg_service *old = k >= 0 && !same[i] ? &c->cfg->svc[k] : NULL;
		const struct csvc *ov = old ? &c->svc[k] : NULL;
		for (unsigned e = 0; old && v->have && e < v->s->nep; e++) {
			int o = ctlr_ep_index_at(old, v->s->ep[e].id, (int)e);
			uint32_t w = v->s->ep[e].weight;
			if (o >= 0 && v->steer && old->ep[o].weight == w)
				v->ceil[e] = ov->ceil[o]; /* the operator's ceiling stays */
			if (o < 0 || old->ep[o].weight == w || (!v->steer && v->weight[e] == w))
				continue;
			if (v->steer) /* a new ceiling: the same fraction of it */
				w = ctlr_steer_rescale(v->weight[e], ov->ceil[o], w);
			if (v->slot[e] < 0 ||
			    !assign_set_weight(&v->a, (unsigned)v->slot[e], w, NULL))
				v->weight[e] = w;
		}
	}
	/* The agents get the maps of the services that changed (a new service, or a record
	 * that differs from the one saved before): a scale-up of a few services sends those. */
	if (ctlr_index_build(&newidx, cfg)) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		struct csvc *v = &svc[i];
		struct csvc *ov = from[i] >= 0 ? &c->svc[from[i]] : NULL;
		struct text rt = {0};
		if (same[i])
			continue; /* kept as it is: nothing to send */
		send[i] = true;
		if (!ov || !ov->have || !v->have)
			continue;
		if (!ov->rec_ok) { /* (the old record, as saved or as it would be) */
			ctlr_svc_text(ov, &rt);
			if (rt.err) {
				free(rt.p);
				continue;
			}
			free(ov->rec);
			ov->rec = rt.p;
			ov->reclen = rt.len;
			ov->rec_ok = true;
			rt = (struct text){0};
		}
		ctlr_svc_text(v, &rt);
		if (!rt.err) {
			send[i] = rt.len != ov->reclen || memcmp(rt.p, ov->rec, rt.len);
			v->rec = rt.p; /* what the save below writes */
			v->reclen = rt.len;
			v->rec_ok = true;
		} else {
			free(rt.p);
		}
	}
	/* Nothing fails from here: the services kept move into the new array as they are
	 * (their slots in the old one emptied, so freeing it leaves them). */
	pthread_mutex_lock(&c->lock);
	struct peak_config *oldcfg = c->cfg;
	struct csvc *oldsvc = c->svc;
	for (unsigned i = 0; i < cfg->nsvc; i++)
		if (same[i]) {
			svc[i] = oldsvc[from[i]];
			svc[i].s = &cfg->svc[i];
			oldsvc[from[i]] = (struct csvc){0};
		}
	c->cfg = cfg;
	c->svc = svc;
	ctlr_index_fini(&c->idx);
	c->idx = newidx;
	newidx = (struct name_index){0};
	c->reload_rebuilt += cfg->nsvc - nsame;
	pthread_mutex_unlock(&c->lock);
	ctlr_svcs_free(oldsvc, oldcfg->nsvc);
	config_free(oldcfg);
	cfg = NULL;
	svc = NULL;
	unsigned nsent = 0;
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		if (send[i]) {
			send_map(c, &c->svc[i], NULL);
			nsent++;
		}
	log_msg(LOG_INFO, "controller: reload: %u of %u services changed (%u built anew)", nsent,
	        c->cfg->nsvc, c->cfg->nsvc - nsame);
	ctlr_state_save(c);
	if (c->kube)
		ksrc_after(c);
	ret = 0;
out:
	if (svc)
		ctlr_svcs_free(svc, cfg->nsvc);
	config_free(cfg);
	ctlr_index_fini(&newidx);
	ctlr_index_fini(&oldidx);
	free(t.p);
	free(from);
	free(same);
	free(taken);
	free(send);
	return ret;
}

/* ---- agents ---- */

/* One line from an agent. Before a valid hello nothing else is accepted. Returns 0, or -1
 * if the agent was dropped. */
static int agent_line(struct ctl *c, struct peer *a, const char *line, size_t len)
{
	struct ctl_msg m;
	if (ctl_parse(line, len, &m)) {
		if (!a->hello) {
			ctlr_agent_drop(c, a, "not a control line before hello");
			return -1;
		}
		if (ctlr_log_ok(c))
			log_msg(LOG_WARNING, "controller: agent %s: malformed line '%.*s'", a->node,
			        (int)(len > 80 ? 80 : len), line);
		return 0;
	}
	if (!a->hello) {
		if (m.kind != CTL_HELLO) {
			ctlr_agent_drop(c, a, "no hello before other lines");
			return -1;
		}
		if (c->auth && (!m.has_tag || !ctlauth_check(&c->key, a->nonce, m.id, m.tag))) {
			ctlr_copy(a->node, sizeof(a->node), m.id);
			ctlr_agent_drop(
			    c, a, m.has_tag ? "wrong key (hello tag)" : "hello without a tag");
			return -1;
		}
		a->hello = true;
		ctlr_copy(a->node, sizeof(a->node), m.id);
		log_msg(LOG_INFO, "controller: agent of node %s connected%s", a->node,
		        c->auth ? " (authenticated)" : "");
		if (ctlr_agent_welcome(c, a, &m))
			return -1;
		stale_arm(c, a->node, ctlr_now_ms());
		for (unsigned i = 0; i < c->cfg->nsvc && a->fd >= 0; i++)
			send_map(c, &c->svc[i], a);
		return a->fd >= 0 ? 0 : -1;
	}
	if (m.kind != CTL_HEALTH && m.kind != CTL_LOAD) {
		if (ctlr_log_ok(c))
			log_msg(LOG_WARNING, "controller: agent %s: unexpected '%s' line", a->node,
			        ctl_kind_name(m.kind));
		return 0;
	}
	struct csvc *v = ctlr_svc_find(c, m.svc);
	int e = v ? ctlr_ep_index(v->s, m.id) : -1;
	if (e < 0 || (v->s->ep[e].node[0] && strcmp(v->s->ep[e].node, a->node))) {
		if (ctlr_log_ok(c))
			log_msg(LOG_WARNING,
			        "controller: agent %s: %s %s %s: not an endpoint of "
			        "its node",
			        a->node, ctl_kind_name(m.kind), m.svc, m.id);
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	if (m.kind == CTL_LOAD) {
		ctlr_load_report(v, (unsigned)e, &m, ctlr_now_ms());
	} else {
		ctlr_health(c, v, (unsigned)e, m.up);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void agent_accept(struct ctl *c, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	int i = 0;
	if (fd == -1)
		return;
	while (i < MAX_AGENTS && c->agents[i].fd >= 0)
		i++;
	if (i == MAX_AGENTS) {
		if (ctlr_log_ok(c))
			log_msg(LOG_WARNING, "controller: %d agents connected: refusing another",
			        MAX_AGENTS);
		close(fd);
		return;
	}
	struct peer *a = &c->agents[i];
	*a = (struct peer){.fd = fd, .agent = true, .born_ms = ctlr_now_ms()};
	struct ctl_msg m = {.kind = CTL_CHALLENGE};
	char line[CTL_LINE_MAX + 1];
	int n = -EINVAL;
	if (!ctlauth_nonce(a->nonce)) {
		memcpy(m.nonce, a->nonce, sizeof(m.nonce));
		n = ctl_write(&m, line, sizeof(line));
	}
	if (n < 0)
		ctlr_peer_close(a);
	else
		ctlr_peer_send(c, a, line, (size_t)n);
}

/* ---- the store and the lead ---- */

/* Opens the agents' listener (while leading). Returns 0 or -errno, logged once per
 * failure streak (a standby taking over may find the old leader's port still held). */
static int listen_open(struct ctl *c)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, fd, err;
	if (c->lfd >= 0)
		return 0;
	if (sockaddr_parse(c->o->listen, &ss, &sl))
		return -EINVAL;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&ss, sl) == -1 || listen(fd, 64) == -1) {
		err = -errno;
		if (fd != -1)
			close(fd);
		if (ctlr_log_ok(c))
			log_msg(LOG_ERR, "controller: %s: %s", c->o->listen, strerror(-err));
		return err;
	}
	c->lfd = fd;
	return 0;
}

/* Loads the stored state and adopts it in place of the services' (ctlr_svcs_build: what
 * does not match the configuration starts from the initial assignment). The maps are not
 * pushed. Returns 0 or -errno (the store did not answer: the services are kept). */
static int store_adopt(struct ctl *c)
{
	char *state = NULL;
	size_t len = 0;
	struct csvc *svc, *old;
	c->copy_exact = false;
	struct cfg_endpoint **eps = NULL;
	unsigned *neps = NULL;
	struct peak_config tmp;
	int r = c->store->ops->load(c->store, &state, &len);
	if (r)
		return r;
	/* the endpoints added at run time that the records name, built into a copy of the
	 * services and put in the configuration with the services built from it */
	if (!c->kube && (r = ctlr_rt_adopt_eps(c, state, len, &eps, &neps))) {
		free(state);
		return r;
	}
	tmp = *c->cfg;
	if (eps && !(tmp.svc = malloc((tmp.nsvc ? tmp.nsvc : 1) * sizeof(*tmp.svc))))
		r = -ENOMEM;
	for (unsigned i = 0; eps && !r && i < tmp.nsvc; i++) {
		tmp.svc[i] = c->cfg->svc[i];
		if (eps[i]) {
			tmp.svc[i].ep = eps[i];
			tmp.svc[i].nep = neps[i];
		}
	}
	svc = r ? NULL : ctlr_svcs_build(&tmp, state, len, c->steer);
	free(state);
	if (!svc) {
		for (unsigned i = 0; eps && i < tmp.nsvc; i++)
			free(eps[i]);
		if (eps && tmp.svc != c->cfg->svc)
			free(tmp.svc);
		free(eps);
		free(neps);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; eps && i < tmp.nsvc; i++) {
		if (eps[i]) {
			free(c->cfg->svc[i].ep);
			c->cfg->svc[i].ep = eps[i];
			c->cfg->svc[i].nep = neps[i];
		}
		svc[i].s = &c->cfg->svc[i];
	}
	old = c->svc;
	c->svc = svc;
	c->store_reads++;
	pthread_mutex_unlock(&c->lock);
	if (eps)
		free(tmp.svc);
	free(eps);
	free(neps);
	ctlr_svcs_free(old, c->cfg->nsvc);
	c->copy_exact = true;
	return 0;
}

/* A standby applies one service's record as the store's watch hands it (store_change_fn):
 * the service is built again from that record alone, as a full load's adoption builds it
 * (ctlr_svcs_build over a configuration of this one service: the record of a service
 * holds its lines only), and replaces the one held. A change costs its service, not the
 * whole state. */
static int standby_apply(void *arg, const char *name, const char *text, size_t len)
{
	struct ctl *c = arg;
	struct csvc *v = ctlr_svc_find(c, name), *nv, tmp;
	if (!v)
		return 0; /* not in the configuration: a load leaves it out too */
	unsigned i = (unsigned)(v - c->svc), nep = 0;
	struct cfg_endpoint *eps = NULL; /* the endpoints added at run time, as it names them */
	struct peak_config *one = calloc(1, sizeof(*one));
	struct cfg_service s1 = c->cfg->svc[i];
	if (!one || (!c->kube && ctlr_rt_record_eps(c, i, text, text ? len : 0, &eps, &nep))) {
		free(one);
		return -ENOMEM;
	}
	if (eps) {
		s1.ep = eps;
		s1.nep = nep;
	}
	one->svc = &s1;
	one->nsvc = 1;
	nv = ctlr_svcs_build(one, text, text ? len : 0, c->steer);
	free(one);
	if (!nv) {
		free(eps);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	if (eps) {
		free(c->cfg->svc[i].ep);
		c->cfg->svc[i].ep = eps;
		c->cfg->svc[i].nep = nep;
	}
	nv[0].s = &c->cfg->svc[i];
	tmp = *v;
	*v = nv[0];
	nv[0] = tmp;
	c->store_changes++;
	pthread_mutex_unlock(&c->lock);
	ctlr_svcs_free(nv, 1);
	return 0;
}

/* Takes the lead: adopts the stored state (a standby's copy may be a watch behind: it is
 * kept only when the store says it is current, else read afresh), then listens for
 * agents, saves what adoption added, and brings peak dns in step. */
static void lead(struct ctl *c)
{
	struct store *st = c->store;
	bool kept = !c->leader && c->copy_exact && st->ops->current && st->ops->current(st) == 1;
	int r = kept ? 0 : store_adopt(c);
	if (r)
		log_msg(LOG_WARNING,
		        "controller: the store did not answer (%s): leading with the "
		        "state held here",
		        strerror(-r));
	pthread_mutex_lock(&c->lock);
	c->leader = true;
	c->term = c->store->term;
	c->lead_ms = ctlr_now_ms();
	c->nodes_judged = false;
	pthread_mutex_unlock(&c->lock);
	log_msg(LOG_INFO, "controller: leading (store %s)%s%s", c->store->ops->name,
	        r ? "" : ": the stored state adopted",
	        kept ? " (the standby's copy, current)" : "");
	listen_open(c);
	for (unsigned i = 0; i < c->cfg->nsvc; i++) /* agents still here after a lost term */
		send_map(c, &c->svc[i], NULL);
	ctlr_state_save(c);
	dns_sync(c);
}

/* Steps down to standby: stops listening and drops the agents (they reconnect to the
 * leader), so two controllers never push maps at once. */
static void follow(struct ctl *c, const char *why)
{
	log_msg(LOG_WARNING, "controller: standby: %s", why);
	pthread_mutex_lock(&c->lock);
	c->leader = false;
	pthread_mutex_unlock(&c->lock);
	c->copy_exact = false; /* the live state, not the stored one: read it at the next tick */
	if (c->lfd >= 0)
		close(c->lfd);
	c->lfd = -1;
	for (int i = 0; i < MAX_AGENTS; i++)
		if (c->agents[i].fd >= 0)
			ctlr_agent_drop(c, &c->agents[i], "this controller is a standby now");
}

/* Whether an agent of node is connected (said hello). */
static bool node_connected(const struct ctl *c, const char *node)
{
	for (int i = 0; i < MAX_AGENTS; i++)
		if (c->agents[i].fd >= 0 && c->agents[i].hello && !strcmp(c->agents[i].node, node))
			return true;
	return false;
}

/* Whether endpoint e of v is the last one up with weight (ctlr_health would refuse). */
bool ctlr_last_up(const struct csvc *v, unsigned e)
{
	for (unsigned k = 0; k < v->s->nep; k++)
		if (k != e && v->healthy[k] && v->slot[k] >= 0 && v->weight[k])
			return false;
	return true;
}

/* The leader, at every store interval, in a store with leases: keeps the registrations of
 * the connected agents' nodes alive, and takes down the endpoints of every node whose
 * registration lapsed (its agent's link dropped at least the agent TTL ago, or never came
 * back after a takeover) and whose agent is not connected: their slices move. Only nodes
 * seen registered are judged (a standby reads the registrations too): at a cold start an
 * agent that has not connected yet moves nothing. Their "down"
 * waits for the agent's hello (stale_arm), as an adopted one does. For the agent TTL after
 * taking the lead nothing is taken down: the agents of a leader that died reconnect
 * meanwhile, while the registrations it kept run out with its lease. Nothing moves while
 * the store does not answer (what is alive is then unknown). */
static void nodes_tick(struct ctl *c, uint64_t now)
{
	struct store *st = c->store;
	const char *nodes[MAX_AGENTS];
	unsigned n = 0, ttl_s = c->o->agent_ttl_s ? c->o->agent_ttl_s : AGENT_TTL_DEF_S;
	for (int i = 0; i < MAX_AGENTS; i++)
		if (c->agents[i].fd >= 0 && c->agents[i].hello)
			nodes[n++] = c->agents[i].node;
	/* lead_ms may be later than now: lead() ran since now was read */
	if (st->ops->nodes_renew(st, nodes, n) || now < c->lead_ms + ttl_s * 1000ull)
		return;
	if (!c->nodes_judged)
		log_msg(LOG_INFO,
		        "controller: %u agents connected %u s after taking the lead: the "
		        "endpoints of nodes without a live registration go down from now on",
		        n, ttl_s);
	c->nodes_judged = true;
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		struct csvc *v = &c->svc[i];
		for (unsigned e = 0; v->have && e < v->s->nep; e++) {
			const char *node = v->s->ep[e].node;
			if (!node[0] || !v->healthy[e] || node_connected(c, node) ||
			    !st->ops->node_known(st, node) || st->ops->node_alive(st, node) ||
			    ctlr_last_up(v, e))
				continue;
			log_msg(LOG_WARNING,
			        "controller: node %s gone (no agent, its registration lapsed): "
			        "%s %s down",
			        node, v->name, v->s->ep[e].id);
			pthread_mutex_lock(&c->lock);
			if (!ctlr_health(c, v, e, false))
				v->stale[e] = UINT64_MAX; /* up again after its agent's hello */
			pthread_mutex_unlock(&c->lock);
		}
	}
}

/* A standby, at every store interval and when the store's watch socket is readable:
 * follows the stored state. With a store that hands over its changes (follow), each
 * changed record is applied to its service alone, and the state is read afresh only when
 * the store says so or the copy is not the stored state (a read failed, the lead was
 * lost, a reload); else (watch) it is read afresh at every change. */
static void standby_follow(struct ctl *c)
{
	struct store *st = c->store;
	uint64_t n0 = c->store_changes;
	int r;
	if (!st->ops->follow) {
		if (st->ops->watch(st) == 1 && !store_adopt(c))
			log_msg(LOG_INFO, "controller: standby: the stored state changed: adopted");
		return;
	}
	if (!c->copy_exact)
		r = STORE_RELOAD;
	else if ((r = st->ops->follow(st, standby_apply, c)) == STORE_CHANGED &&
	         c->store_changes > n0) /* (else of services not configured here) */
		log_msg(LOG_INFO,
		        "controller: standby: the stored state changed: adopted (%" PRIu64
		        " records from the watch)",
		        c->store_changes - n0);
	if (r == STORE_RELOAD && !store_adopt(c))
		log_msg(LOG_INFO, "controller: standby: the stored state changed: adopted (read "
		                  "afresh)");
}

/* Every store interval: keeps the lease, takes or gives up the lead, keeps the agents'
 * registrations, and on a standby follows the stored state. */
static void store_tick(struct ctl *c, uint64_t now)
{
	struct store *st = c->store;
	if (c->stale_store) {
		c->stale_store = false;
		c->store_next = now;
	}
	if (now < c->store_next)
		return;
	c->store_next = now + st->ops->interval_ms(st);
	int k = st->ops->keepalive(st);
	if (k == 1 && (!c->leader || c->term != st->term))
		lead(c);
	else if (k != 1 && c->leader)
		follow(c, k < 0 ? "the store did not answer" : "another controller leads");
	if (c->leader && c->lfd < 0)
		listen_open(c);
	if (c->leader && c->unsaved)
		ctlr_state_save(c);
	if (c->leader && st->ops->nodes_renew)
		nodes_tick(c, now);
	else if (st->ops->nodes_renew && k >= 0)   /* a standby: which nodes are registered */
		st->ops->nodes_renew(st, NULL, 0); /* (not when etcd just failed: no 2nd wait) */
	if (!c->leader)
		standby_follow(c);
}

/* ---- metrics ---- */

static void render(struct mbuf *b, void *arg)
{
	static const struct {
		const char *name, *help;
	} per_ep[] = {
	    {"peak_controller_endpoint_slices", "Slices assigned to the endpoint."},
	    {"peak_controller_endpoint_healthy", "1 if the endpoint is up."},
	    {"peak_controller_endpoint_weight",
	     "The endpoint's live weight (configured, or the operator's): the ceiling of "
	     "steering."},
	    {"peak_controller_endpoint_connections", "Connections the agent saw."},
	    {"peak_controller_endpoint_cpu_seconds",
	     "CPU time of the pod as its agent last reported it (a gauge: a restarted pod "
	     "starts again from 0)."},
	    {"peak_controller_endpoint_effective_weight",
	     "The weight the assignment and peak dns hold, in thousandths of a configured "
	     "unit: with --steer metrics from the load reports, else the live weight."},
	    {"peak_controller_endpoint_saturation",
	     "The pod's saturation as its agent last reported it, per mille: the larger of the "
	     "share of time its cgroup was throttled and its accept queue's fill (steering "
	     "sheds from 10 up while another endpoint is below 3)."},
	};
	struct ctl *c = arg;
	char sv[2 * DNS_NAME_STRLEN], ep[2 * CFG_ID_MAX];
	pthread_mutex_lock(&c->lock);
	mbuf_printf(b,
	            "# HELP peak_controller_agents Agents connected.\n"
	            "# TYPE peak_controller_agents gauge\npeak_controller_agents %u\n"
	            "# HELP peak_controller_leader 1 if this controller leads (0: a standby).\n"
	            "# TYPE peak_controller_leader gauge\npeak_controller_leader %d\n"
	            "# HELP peak_controller_steer_metrics 1 with --steer metrics, 0 static.\n"
	            "# TYPE peak_controller_steer_metrics gauge\npeak_controller_steer_metrics "
	            "%d\n"
	            "# HELP peak_controller_store_reads_total Reads of the whole stored state "
	            "(at start, taking the lead, and when a standby cannot follow the store's "
	            "changes).\n"
	            "# TYPE peak_controller_store_reads_total counter\n"
	            "peak_controller_store_reads_total %" PRIu64 "\n"
	            "# HELP peak_controller_store_changes_total Service records a standby applied "
	            "from the store's watch, each alone.\n"
	            "# TYPE peak_controller_store_changes_total counter\n"
	            "peak_controller_store_changes_total %" PRIu64 "\n"
	            "# HELP peak_controller_reload_rebuilt_total Services reloads built anew "
	            "(new, or changed in the configuration; the others are kept as they live).\n"
	            "# TYPE peak_controller_reload_rebuilt_total counter\n"
	            "peak_controller_reload_rebuilt_total %" PRIu64 "\n",
	            c->nagents, c->leader, c->steer, c->store_reads, c->store_changes,
	            c->reload_rebuilt);
	for (unsigned k = 0; k < sizeof(per_ep) / sizeof(per_ep[0]); k++) {
		mbuf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", per_ep[k].name, per_ep[k].help,
		            per_ep[k].name);
		for (unsigned i = 0; i < c->cfg->nsvc; i++) {
			const struct csvc *v = &c->svc[i];
			metrics_label(sv, sizeof(sv), v->name);
			for (unsigned e = 0; e < v->s->nep; e++) {
				metrics_label(ep, sizeof(ep), v->s->ep[e].id);
				mbuf_printf(b, "%s{service=\"%s\",endpoint=\"%s\"} ",
				            per_ep[k].name, sv, ep);
				if (k == 0)
					mbuf_printf(b, "%u\n",
					            v->have && v->slot[e] >= 0
					                ? v->a.ep[v->slot[e]].count
					                : 0);
				else if (k == 1)
					mbuf_printf(b, "%d\n", v->healthy[e]);
				else if (k == 2)
					mbuf_printf(b, "%u\n",
					            v->steer ? v->ceil[e] : v->weight[e]);
				else if (k == 3)
					mbuf_printf(b, "%llu\n", (unsigned long long)v->conns[e]);
				else if (k == 4)
					mbuf_printf(b, "%.3f\n", (double)v->cpu_ns[e] / 1e9);
				else if (k == 5) /* (static: the live weight on the same scale) */
					mbuf_printf(b, "%u\n",
					            v->steer ? v->weight[e]
					                     : steer_fine(v->weight[e]));
				else
					mbuf_printf(b, "%u\n", ctlr_saturation(&v->load[e]));
			}
		}
	}
	/* (codes, not a reason label: every sample here has the service and endpoint labels
	 * only, which the regress suite checks) */
	mbuf_printf(b, "# HELP peak_controller_endpoint_steer_reason The reason of the last "
	               "steering change of the endpoint's weight: 0 none, 1 shed (above the "
	               "band), 2 regain (below it), 3 probe (quiet below the ceiling), 4 bounds "
	               "(brought within floor and ceiling), 5 saturated (while another "
	               "endpoint was not).\n"
	               "# TYPE peak_controller_endpoint_steer_reason gauge\n");
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		const struct csvc *v = &c->svc[i];
		metrics_label(sv, sizeof(sv), v->name);
		for (unsigned e = 0; e < v->s->nep; e++) {
			metrics_label(ep, sizeof(ep), v->s->ep[e].id);
			mbuf_printf(b,
			            "peak_controller_endpoint_steer_reason{service=\"%s\",endpoint="
			            "\"%s\"} %u\n",
			            sv, ep, v->reason[e]);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* ---- the Kubernetes source ---- */

static bool kube_wanted(const struct controller_opts *o)
{
	return o->source && !strcmp(o->source, "kubernetes");
}

static struct kube *kube_from_opts(const struct controller_opts *o, char *err, size_t errlen)
{
	const struct kube_opts ko = o->kube;
	return kube_open(&ko, err, errlen);
}

/* At start: waits up to KUBE_SYNC_MS for the first lists, so the services the store
 * holds are adopted (not saved empty first); then the cluster's view replaces the file's
 * services. A cluster that does not answer yet leaves no services: they come when it does. */
static void kube_start(struct ctl *c)
{
	enum { KUBE_SYNC_MS = 10000 };
	struct peak_config *cfg = NULL;
	char err[CFG_ERRLEN];
	if (!kube_wait_synced(c->kube, KUBE_SYNC_MS))
		log_msg(LOG_WARNING,
		        "controller: kubernetes: the API did not answer in %d s: "
		        "starting with no services",
		        KUBE_SYNC_MS / 1000);
	if (c->cfg->nsvc)
		log_msg(LOG_WARNING, "controller: kubernetes: the %u services of %s are ignored",
		        c->cfg->nsvc, c->o->config);
	if (kube_config(c->kube, c->o->config, &cfg, err, sizeof(err))) {
		log_msg(LOG_ERR, "controller: %s", err);
		return;
	}
	config_free(c->cfg);
	c->cfg = cfg;
	kube_touch(c->kube); /* the loop's first round applies the draining (ksrc_after) */
}

/* ---- the run loop ---- */

int controller_check(const struct controller_opts *o)
{
	struct peak_config *cfg = NULL;
	char err[CFG_ERRLEN] = "";
	struct ctlauth_key *key = NULL;
	int ret = 0;
	if (config_check(o->config, &cfg, err, sizeof(err))) {
		fprintf(stderr, "peak controller: %s\n", err);
		return 2;
	}
	if (o->key_file && ((key = malloc(sizeof(*key))) == NULL ||
	                    ctlauth_key_load(o->key_file, key, err, sizeof(err)))) {
		fprintf(stderr, "peak controller: %s\n", key ? err : "out of memory");
		ret = 2;
	}
	if (key) {
		ctlauth_key_wipe(key);
		free(key);
	}
	struct kube *k = NULL;
	if (!ret && kube_wanted(o) && !(k = kube_from_opts(o, err, sizeof(err)))) {
		fprintf(stderr, "peak controller: %s\n", err);
		ret = 2;
	}
	kube_free(k);
	struct store *st = ret ? NULL : store_open(o, err, sizeof(err)); /* options only */
	if (!ret && !st) {
		fprintf(stderr, "peak controller: %s\n", err);
		ret = 2;
	}
	if (st)
		st->ops->free(st);
	config_free(cfg);
	return ret;
}

int controller_run(const struct controller_opts *o)
{
	struct ctl *c = calloc(1, sizeof(*c));
	struct metrics_srv *ms = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	char err[CFG_ERRLEN] = "";
	int sfd = -1, cfd = -1, ret = 1, r;
	if (!c)
		return 1;
	c->o = o;
	c->lfd = -1;
	c->steer = o->steer_metrics;
	pthread_mutex_init(&c->lock, NULL);
	c->dns.fd = -1;
	for (int i = 0; i < MAX_AGENTS; i++)
		c->agents[i].fd = -1;
	for (int i = 0; i < MAX_CLIENTS; i++)
		c->clients[i].fd = -1;
	/* Signals are blocked before any thread starts, so only the signalfd sees them. */
	if ((sfd = signals_fd(1)) < 0) {
		log_msg(LOG_ERR, "controller: signals: %s", strerror(-sfd));
		goto out;
	}
	ret = 2; /* bad input from here until the sockets */
	if (sockaddr_parse(o->listen, &ss, &sl)) {
		log_msg(LOG_ERR, "controller: --listen: '%s' is not ADDR:PORT", o->listen);
		goto out;
	}
	if (o->dns_control &&
	    strlen(o->dns_control) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		log_msg(LOG_ERR, "controller: --dns-control: path too long");
		goto out;
	}
	if (o->key_file) {
		if (ctlauth_key_load(o->key_file, &c->key, err, sizeof(err))) {
			log_msg(LOG_ERR, "controller: %s", err);
			goto out;
		}
		c->auth = true;
	} else {
		log_msg(LOG_WARNING,
		        "controller: no --key-file: any peer that reaches %s can "
		        "report health (agents are not authenticated)",
		        o->listen);
	}
	if (config_check(o->config, &c->cfg, err, sizeof(err))) {
		log_msg(LOG_ERR, "controller: %s", err);
		goto out;
	}
	if (kube_wanted(o)) {
		if (!(c->kube = kube_from_opts(o, err, sizeof(err)))) {
			log_msg(LOG_ERR, "controller: %s", err);
			goto out;
		}
		kube_start(c);
	}
	if (!(c->store = store_open(o, err, sizeof(err)))) {
		log_msg(LOG_ERR, "controller: %s", err);
		goto out;
	}
	ret = 1;
	if (ctlr_index_build(&c->idx, c->cfg) ||
	    !(c->svc = ctlr_svcs_build(c->cfg, NULL, 0, c->steer)))
		goto out;
	/* The file store is never refused: it leads at once and its listener must open. With
	 * etcd the first keepalive decides, and the listener opens only while leading. */
	if (c->store->ops->keepalive(c->store) == 1) {
		lead(c);
		if (c->lfd < 0)
			goto out;
	} else if ((r = store_adopt(c))) {
		log_msg(LOG_WARNING, "controller: the store did not answer: %s", strerror(-r));
	}
	c->store_next = ctlr_now_ms() + c->store->ops->interval_ms(c->store);
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		if (c->svc[i].have && c->svc[i].adopted)
			log_msg(LOG_INFO, "controller: %s: assignment from the store (%s)",
			        c->svc[i].name, c->store->ops->name);
	if (o->control && (cfd = ctlr_control_listen(o->control)) < 0)
		goto out;
	if (o->metrics && !(ms = metrics_start(o->metrics, render, c)))
		goto out;
	log_msg(LOG_INFO, "controller: %u services from %s, agents on %s%s%s%s", c->cfg->nsvc,
	        o->config, o->listen, c->auth ? " (key file)" : "",
	        c->steer ? " (steering by load)" : "",
	        c->leader ? "" : " (a standby: listening once it leads)");
	notify_ready("%u services from %s%s", c->cfg->nsvc, o->config,
	             c->leader ? "" : " (standby)");
	for (;;) {
		struct pollfd pf[4 + MAX_AGENTS + MAX_CLIENTS + KUBE_POLLFDS + 1];
		uint64_t now = ctlr_now_ms();
		pf[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pf[1] = (struct pollfd){.fd = c->lfd, .events = POLLIN};
		pf[2] = (struct pollfd){.fd = cfd, .events = POLLIN};
		pf[3] = (struct pollfd){.fd = c->dns.fd, .events = c->dns.sent ? POLLIN : POLLOUT};
		for (int i = 0; i < MAX_AGENTS; i++) {
			struct peer *p = &c->agents[i];
			pf[4 + i] = (struct pollfd){
			    .fd = p->fd, .events = POLLIN | (p->q.len > p->q.off ? POLLOUT : 0)};
		}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct peer *p = &c->clients[i];
			pf[4 + MAX_AGENTS + i] =
			    (struct pollfd){.fd = p->fd,
			                    .events = (p->closing ? 0 : POLLIN) |
			                              (p->q.len > p->q.off ? POLLOUT : 0)};
		}
		struct pollfd *kpf = &pf[4 + MAX_AGENTS + MAX_CLIENTS];
		for (int i = 0; i < KUBE_POLLFDS; i++) /* a watch's event wakes the loop */
			kpf[i] = (struct pollfd){.fd = -1};
		if (c->kube)
			kube_pollfds(c->kube, kpf);
		/* a standby wakes when the store's watch has news, not only at its interval */
		struct pollfd *wpf = &kpf[KUBE_POLLFDS];
		*wpf = (struct pollfd){.fd = !c->leader && c->copy_exact && c->store->ops->watch_fd
		                                 ? c->store->ops->watch_fd(c->store)
		                                 : -1,
		                       .events = POLLIN};
		if (poll(pf, 4 + MAX_AGENTS + MAX_CLIENTS + KUBE_POLLFDS + 1, POLL_TICK_MS) == -1 &&
		    errno != EINTR) {
			log_msg(LOG_ERR, "controller: poll: %s", strerror(errno));
			ret = 1;
			goto out;
		}
		now = ctlr_now_ms();
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo != SIGHUP)
				break;
			notify_reloading();
			if (ctlr_reload(c, err, sizeof(err))) {
				log_msg(LOG_ERR,
				        "controller: reload refused, keeping the running "
				        "configuration: %s",
				        err);
				notify_ready("reload refused, %u services as before: %s",
				             c->cfg->nsvc, err);
			} else {
				log_msg(LOG_INFO, "controller: configuration reloaded from %s",
				        o->config);
				notify_ready("%u services from %s", c->cfg->nsvc, o->config);
			}
		}
		if (pf[1].revents && c->lfd >= 0)
			agent_accept(c, c->lfd);
		if (cfd >= 0 && pf[2].revents)
			ctlr_client_accept(c, cfd);
		ctlr_dns_step(c, pf[3].revents, now);
		for (int i = 0; i < MAX_AGENTS; i++) {
			struct peer *p = &c->agents[i];
			short rev = pf[4 + i].revents;
			if (p->fd < 0 || pf[4 + i].fd != p->fd)
				continue; /* closed or replaced during this round */
			if (rev & POLLOUT && ctlr_peer_flush(p, now)) {
				ctlr_agent_drop(c, p, "send failed");
				continue;
			}
			if (rev & (POLLIN | POLLHUP | POLLERR))
				ctlr_peer_read(c, p, agent_line);
			if (p->fd < 0)
				continue;
			if (!p->hello && now - p->born_ms > HELLO_MS)
				ctlr_agent_drop(c, p, "no hello in time");
			else if (p->q.len > p->q.off && now - p->q.since_ms > DRAIN_MS)
				ctlr_agent_drop(c, p, "not reading its maps");
		}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct peer *p = &c->clients[i];
			short rev = pf[4 + MAX_AGENTS + i].revents;
			if (p->fd < 0 || pf[4 + MAX_AGENTS + i].fd != p->fd)
				continue;
			if (rev & POLLOUT && ctlr_peer_flush(p, now)) {
				ctlr_peer_close(p);
				continue;
			}
			if (!p->closing && rev & (POLLIN | POLLHUP | POLLERR))
				ctlr_peer_read(c, p, ctlr_client_line);
			if (p->fd < 0)
				continue;
			if ((p->closing && p->q.len == p->q.off) || now - p->born_ms > CLIENT_MS)
				ctlr_peer_close(p);
		}
		stale_expire(c, now);
		if (wpf->fd >= 0 && wpf->revents && !c->leader)
			standby_follow(c);
		store_tick(c, now);
		ctlr_steer_tick(c, now);
		if (c->kube && kube_poll(c->kube) == 1) {
			if (ctlr_reload(c, err, sizeof(err)))
				log_msg(LOG_ERR,
				        "controller: kubernetes: the cluster's view not "
				        "applied: %s",
				        err);
			else
				log_msg(LOG_INFO, "controller: kubernetes: %u services applied",
				        c->cfg->nsvc);
		}
		unsigned n = 0;
		for (int i = 0; i < MAX_AGENTS; i++)
			n += c->agents[i].fd >= 0 && c->agents[i].hello;
		if (n != c->nagents) {
			pthread_mutex_lock(&c->lock);
			c->nagents = n;
			pthread_mutex_unlock(&c->lock);
		}
	}
	log_msg(LOG_INFO, "controller: stopping");
	notify_stopping();
	ret = 0;
out:
	metrics_stop(ms);
	for (int i = 0; i < MAX_AGENTS; i++)
		ctlr_peer_close(&c->agents[i]);
	for (int i = 0; i < MAX_CLIENTS; i++)
		ctlr_peer_close(&c->clients[i]);
	while (c->dns.n || c->dns.fd >= 0)
		ctlr_dns_pop(&c->dns);
	ctlr_svcs_free(c->svc, c->cfg ? c->cfg->nsvc : 0);
	ctlr_index_fini(&c->idx);
	config_free(c->cfg);
	ctlauth_key_wipe(&c->key);
	if (c->store)
		c->store->ops->free(c->store);
	kube_free(c->kube);
	if (c->lfd >= 0)
		close(c->lfd);
	if (cfd >= 0) {
		close(cfd);
		unlink(o->control);
	}
	if (sfd >= 0)
		close(sfd);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return ret;
}
