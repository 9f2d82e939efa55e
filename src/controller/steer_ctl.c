/* Metrics-based steering in the controller (--steer metrics): the agents' load reports
 * recorded per endpoint, and every interval the step of steer.h run on each service and its
 * result applied as one change: the effective weights go into the assignment together
 * (one rebalance, so the slices move once), the new maps to the agents, the weights to
 * peak dns, and the state to the store (so a takeover adopts them and moves nothing). */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sys/log.h"
#include "steer.h"

/* Per mille of part in whole, at most 1000. */
static uint32_t permille(double part, double whole)
{
	double v = whole > 0 ? part * 1000.0 / whole : 0;
	return v >= 1000 ? 1000 : (uint32_t)v;
}

/* Records one load report of endpoint e (what the metrics show, and what steering reads):
 * the CPU and throttled counters become rates over at least STEER_RATE_MIN_MS; a counter
 * that went back (a restarted pod, another cgroup) starts a new window. The caller holds
 * the lock. */
void ctlr_load_report(struct csvc *v, unsigned e, const struct ctl_msg *m, uint64_t now)
{
	struct steer_load *l = &v->load[e];
	if (!l->at_ms || m->cpu_ns < l->rate_ns || m->throttled_ns < l->rate_thr) {
		l->rate_ms = now;
		l->rate_ns = m->cpu_ns;
		l->rate_thr = m->throttled_ns;
		l->has_cpu = l->has_thr = false;
	} else if (now - l->rate_ms >= STEER_RATE_MIN_MS) {
		l->cpu_ns_s = (uint64_t)((double)(m->cpu_ns - l->rate_ns) * 1000.0 /
		                         (double)(now - l->rate_ms));
		l->has_cpu = true;
		/* (throttled time summed over CPUs can pass the wall time: capped at 1000) */
		l->thr_pm = permille((double)(m->throttled_ns - l->rate_thr),
		                     (double)(now - l->rate_ms) * 1e6);
		l->has_thr = m->has_sat;
		l->win_ms = l->rate_ms;
		l->rate_ms = now;
		l->rate_ns = m->cpu_ns;
		l->rate_thr = m->throttled_ns;
	}
	if (!m->has_sat)
		l->has_thr = false; /* (an agent that stopped sending it) */
	l->has_queue = m->has_sat && m->backlog > 0;
	l->queue_pm = l->has_queue ? permille(m->queued, m->backlog) : 0;
	/* (one sample per report: on a busy host a pod that keeps up still shows a few
	 * percent now and then; a queue a quarter full is one that does not) */
	if (l->queue_pm < STEER_SAT_QUEUE_PM)
		l->queue_pm = 0;
	l->has_app = m->has_app;
	l->app = m->app;
	l->at_ms = now;
	v->conns[e] = m->conns;
	v->cpu_ns[e] = m->cpu_ns;
}

uint32_t ctlr_saturation(const struct steer_load *l)
{
	uint32_t t = l->has_thr ? l->thr_pm : 0, q = l->has_queue ? l->queue_pm : 0;
	return t > q ? t : q;
}

/* The effective weight of an endpoint whose ceiling changes from old_ceil to new_ceil
 * (configured units): the same fraction of the new ceiling, within its floor. */
uint32_t ctlr_steer_rescale(uint32_t eff, uint32_t old_ceil, uint32_t new_ceil)
{
	uint32_t hi = steer_fine(new_ceil), lo = steer_floor(hi), old = steer_fine(old_ceil);
	uint64_t w = old ? (uint64_t)eff * hi / old : hi;
	return w > hi ? hi : w < lo ? lo : (uint32_t)w;
}

/* Applies one service's step: the changed weights enter the assignment at once and one
 * rebalance moves the slices; the agents get the handovers of the moved slices (unless
 * --no-handover), then the map, peak dns the weights, the store the state. The caller
 * holds the lock. */
static void apply(struct ctl *c, struct csvc *v, const uint32_t *out, const enum steer_reason *why)
{
	char msg[512];
	size_t ml = 0;
	int last = -1;
	uint32_t moved = 0;
	struct ho_snap snap = {0};
	(void)ctlr_handover_snap(v, &snap); /* no memory: the move goes out without one */
	for (unsigned e = 0; e < v->s->nep; e++) {
		if (why[e] == STEER_NONE)
			continue;
		if (ml < sizeof(msg))
			ml += (size_t)snprintf(msg + ml, sizeof(msg) - ml, " %s %u->%u (%s)",
			                       v->s->ep[e].id, v->weight[e], out[e],
			                       steer_reason_name(why[e]));
		if (v->slot[e] >= 0) {
			v->a.ep[v->slot[e]].weight = out[e];
			last = v->slot[e];
		}
		v->weight[e] = out[e];
		/* (steer.h, saturation alone: a probe that ended in a saturated shed makes the
		 * next one wait longer; one that held, not) */
		struct steer_load *l = &v->load[e];
		if (why[e] == STEER_SATURATED && v->reason[e] == STEER_PROBE)
			l->backoff += l->backoff < STEER_BACKOFF_MAX;
		else if (why[e] == STEER_PROBE && v->reason[e] == STEER_PROBE)
			l->backoff = 0;
		v->reason[e] = (uint8_t)why[e];
		v->quiet[e] = 0;
	}
	/* (the weights are in already: this only rebalances; floors keep them above 0) */
	if (last >= 0 &&
	    assign_set_weight(&v->a, (unsigned)last, v->a.ep[last].weight, &moved) == -ENOMEM)
		log_msg(LOG_ERR, "controller: %s: steering: out of memory", v->name);
	if (ml >= sizeof(msg)) /* (snprintf counts what did not fit) */
		ml = sizeof(msg) - 1;
	log_msg(LOG_INFO, "controller: %s steering:%.*s: %u slices moved", v->name, (int)ml, msg,
	        moved);
	/* A steering move is a move between live endpoints like an operator's weight: the
	 * old owners' connections are handed over, not cut (before the map that moves them). */
	if (moved) {
		ctlr_handover_send(c, v, &snap, -1);
		ctlr_send_map_moved(c, v, &snap);
	}
	ctlr_handover_free(&snap);
	struct ctl_msg m = {.kind = CTL_WEIGHT};
	ctlr_copy(m.svc, sizeof(m.svc), v->name);
	for (unsigned e = 0; e < v->s->nep; e++) {
		if (why[e] == STEER_NONE)
			continue;
		ctlr_copy(m.id, sizeof(m.id), v->s->ep[e].id);
		m.weight = out[e];
		ctlr_dns_tell(c, &m);
	}
}

/* One service's round: the step on what its endpoints reported since the last round that
 * had fresh reports from every endpoint steered (so rounds go no faster than the agents
 * report), and only on reports that measured the weights in force: a report counts once
 * an interval has passed since the last change (the maps reach the agents, clients move),
 * a CPU rate once its whole window came after the change. Without that wait a step would
 * be judged on the load of the weights before it, and shed again (overshoot). Returns
 * true if a weight changed. */
static bool steer_svc(struct ctl *c, struct csvc *v, uint64_t now, unsigned interval_ms)
{
	unsigned n = v->s->nep;
	struct steer_ep *ep = calloc(n ? n : 1, sizeof(*ep));
	uint32_t *out = calloc(n ? n : 1, sizeof(*out));
	enum steer_reason *why = calloc(n ? n : 1, sizeof(*why));
	struct steer_mem *mem = calloc(n ? n : 1, sizeof(*mem));
	bool fresh = true, changed = false;
	if (!ep || !out || !why || !mem)
		goto out;
	for (unsigned e = 0; e < n; e++) {
		const struct steer_load *l = &v->load[e];
		ep[e] = (struct steer_ep){
		    .live = v->healthy[e] && v->slot[e] >= 0,
		    /* (an agent reporting saturation: only once a throttled window after the
		     * change is in, since a saturated pod judged without it would regain) */
		    .fresh = l->at_ms > v->steer_ms && l->at_ms >= v->changed_ms + interval_ms &&
		             (!l->has_thr || l->win_ms >= v->changed_ms),
		    .has_cpu = l->has_cpu && l->win_ms >= v->changed_ms,
		    .has_app = l->has_app,
		    .has_sat = l->has_thr,
		    .sat_shed = v->reason[e] == STEER_SATURATED,
		    .sat_pm = ctlr_saturation(l),
		    .thr_pm = l->has_thr ? l->thr_pm : 0,
		    .conns = v->conns[e],
		    .cpu_ns_s = l->cpu_ns_s,
		    .app = l->app,
		    .ceiling = steer_fine(v->ceil[e]),
		    .weight = v->weight[e],
		    .quiet = v->quiet[e],
		    .last = v->reason[e],
		    .backoff = l->backoff,
		};
		fresh &= !ep[e].live || ep[e].fresh;
	}
	pthread_mutex_lock(&c->lock);
	for (unsigned e = 0; e < n; e++)
		mem[e] = v->load[e].mem;
	changed = steer_step(ep, n, mem, out, why) > 0;
	for (unsigned e = 0; e < n; e++)
		v->load[e].mem = mem[e];
	if (fresh) {
		v->steer_ms = now;
		for (unsigned e = 0; e < n; e++)
			v->quiet[e]++;
	}
	if (changed) {
		apply(c, v, out, why);
		v->changed_ms = now;
	}
	pthread_mutex_unlock(&c->lock);
out:
	free(ep);
	free(out);
	free(why);
	free(mem);
	return changed;
}

/* Every steering interval, while leading with --steer metrics: one round per service with
 * an assignment; the state is saved once if anything changed. */
void ctlr_steer_tick(struct ctl *c, uint64_t now)
{
	unsigned ms = c->o->steer_interval_ms ? c->o->steer_interval_ms : STEER_INTERVAL_DEF_MS;
	bool changed = false;
	if (!c->steer || !c->leader || now < c->steer_next)
		return;
	c->steer_next = now + ms;
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		if (c->svc[i].have)
			changed |= steer_svc(c, &c->svc[i], now, ms);
	if (changed)
		ctlr_state_save(c);
}
