/* Metrics-based steering: the pure step (steer.h says what it computes and why). */
#include "steer.h"

#include <math.h>

#include "peak/assign.h"

static const char *const reason_names[STEER_NREASONS] = {
    [STEER_NONE] = "none",   [STEER_SHED] = "shed",     [STEER_REGAIN] = "regain",
    [STEER_PROBE] = "probe", [STEER_BOUNDS] = "bounds", [STEER_SATURATED] = "saturated",
};

const char *steer_reason_name(enum steer_reason r)
{
	return (unsigned)r < STEER_NREASONS ? reason_names[r] : "?";
}

uint32_t steer_fine(uint32_t configured)
{
	uint64_t w = (uint64_t)configured * STEER_SCALE;
	return w > ASSIGN_MAX_WEIGHT ? ASSIGN_MAX_WEIGHT : (uint32_t)w;
}

uint32_t steer_floor(uint32_t ceiling)
{
	uint32_t f = (uint32_t)((uint64_t)ceiling * STEER_FLOOR_PM / 1000);
	return ceiling && !f ? 1 : f;
}

/* The most a weight may move in one interval: STEER_STEP_PM per mille of the ceiling. */
static uint32_t step_of(uint32_t ceiling)
{
	uint32_t s = (uint32_t)((uint64_t)ceiling * STEER_STEP_PM / 1000);
	return s ? s : 1;
}

/* Which load figures count this interval (see steer.h): bit 0 connections, 1 CPU, 2 the
 * application's (alone when usable). */
enum { SIG_CONNS = 1, SIG_CPU = 2, SIG_APP = 4 };

static unsigned signals(const struct steer_ep *ep, unsigned n, unsigned nlive, double tot[3])
{
	bool cpu = true, app = true;
	tot[0] = tot[1] = tot[2] = 0;
	for (unsigned e = 0; e < n; e++) {
		if (!ep[e].live || !ep[e].ceiling)
			continue;
		cpu &= ep[e].has_cpu;
		app &= ep[e].has_app;
		tot[0] += (double)ep[e].conns;
		tot[1] += (double)ep[e].cpu_ns_s;
		tot[2] += (double)ep[e].app;
	}
	if (app && tot[2] > 0)
		return SIG_APP;
	unsigned s = 0;
	if (tot[0] >= (double)STEER_MIN_CONNS * nlive)
		s |= SIG_CONNS;
	if (cpu && tot[1] >= (double)STEER_MIN_CPU_NS_S * nlive)
		s |= SIG_CPU;
	return s;
}

/* An endpoint's utilisation: the part of the service's load it carries over the part of
 * the weight it holds, the largest over the figures in sig. */
static double util(const struct steer_ep *ep, uint32_t w, double wsum, unsigned sig,
                   const double tot[3])
{
	const double x[3] = {(double)ep->conns, (double)ep->cpu_ns_s, (double)ep->app};
	double share = w / wsum, u = 0;
	for (unsigned k = 0; k < 3; k++) {
		if (!(sig & 1u << k))
			continue;
		double q = x[k] / tot[k] / share, expect = tot[k] * share;
		/* connections are a count sampled once per report: within STEER_CONNS_Z
		 * standard deviations of a Poisson count of what the share expects, it is
		 * noise, not load */
		if (k == 0 && fabs(x[k] - expect) <= STEER_CONNS_Z * sqrt(expect))
			q = 1;
		if (q > u)
			u = q;
	}
	return u;
}

/* The smallest step of a ceiling (memory: STEER_STEP_MIN_PM per mille of it, at least 1). */
static uint32_t step_min_of(uint32_t ceiling)
{
	uint32_t s = (uint32_t)((uint64_t)ceiling * STEER_STEP_MIN_PM / 1000);
	return s ? s : 1;
}

/* The step endpoint e moves by in direction d: the full one without memory; with it the
 * step it holds, halved (down to the smallest) when d reverses its last change. */
static uint32_t step_now(const struct steer_ep *ep, const struct steer_mem *m, int d)
{
	uint32_t full = step_of(ep->ceiling), min = step_min_of(ep->ceiling);
	uint32_t st = m && m->step && m->step < full ? m->step : full;
	if (m && m->dir == -d)
		st = st / 2 < min ? min : st / 2;
	return st;
}

/* Takes this round's figures into the averages of m (steer.h, memory): the first report
 * after a change starts them. */
static void mem_take(struct steer_mem *m, const struct steer_ep *ep, double ratio)
{
	const double k = 1.0 / STEER_SMOOTH_ROUNDS;
	double sat = ep->has_sat ? ep->sat_pm : 0;
	m->sat_avg = m->have ? m->sat_avg + (sat - m->sat_avg) * k : sat;
	m->util_avg = m->have ? m->util_avg + (ratio - m->util_avg) * k : ratio;
	m->thr_sum = m->thr_sum * (1.0 - 1.0 / STEER_THR_ROUNDS) + ep->thr_pm;
	m->have = true;
}

/* Whether endpoint e's stall time (steer.h, memory) is at or above limit_pm per mille of
 * STEER_THR_ROUNDS rounds; never without memory. */
static bool stalls_at(const struct steer_mem *m, unsigned limit_pm)
{
	return m && m->thr_sum >= (double)limit_pm * STEER_THR_ROUNDS;
}

/* Whether a verdict of direction d (-1 shed, +1 regain, 0 hold) acts this round: at once
 * without memory; with it, when it held STEER_CONFIRM_ROUNDS rounds in a row, and
 * STEER_LEAVE_ROUNDS once settled. Counts the streak. */
static bool sustained(struct steer_mem *m, int d)
{
	if (!m)
		return d != 0;
	m->hot = (uint8_t)(m->hot << 1 | (d < 0));
	if (m->settled && d < 0 &&
	    __builtin_popcount(m->hot & ((1u << STEER_SETTLED_SHED_M) - 1)) >= STEER_SETTLED_SHED_K)
		return true;
	if (d != m->pend) {
		m->pend = (int8_t)d;
		m->streak = 0;
	}
	if (!d)
		return false;
	if (m->streak < UINT8_MAX)
		m->streak++;
	return m->streak >= (m->settled ? STEER_LEAVE_ROUNDS : STEER_CONFIRM_ROUNDS);
}

/* Records in m a change of direction d by the step st (step_now; probe: a timed probe, not
 * a verdict): a reversal (its step already halved) settles; after a change in the same
 * direction as the last one the next step doubles (a probe that held, then another: room
 * to climb), and a verdict so leaves the settled state. The averages start again on the
 * new weight. */
static void mem_changed(struct steer_mem *m, const struct steer_ep *ep, int d, bool probe,
                        uint32_t st)
{
	if (!m)
		return;
	uint32_t full = step_of(ep->ceiling);
	if (m->dir == -d) {
		m->settled = true;
	} else if (m->dir == d) {
		st = st > full / 2 ? full : st * 2;
		m->settled = m->settled && probe;
	}
	m->step = st;
	m->dir = (int8_t)d;
	m->have = false;
	m->thr_sum = 0;
	m->pend = 0;
	m->streak = 0;
	m->hot = 0;
}

/* Records endpoint e's new weight nw (w before this part of the step) and the reason rs;
 * nothing when nw is w. Returns 1 when e had no change yet this step (the caller counts
 * changed endpoints), else 0. */
static unsigned steer_put(uint32_t *out, enum steer_reason *why, unsigned e, uint32_t w,
                          uint32_t nw, enum steer_reason rs)
{
	if (nw == w)
		return 0;
	unsigned first = why[e] == STEER_NONE;
	out[e] = nw;
	why[e] = rs;
	return first;
}

/* An endpoint's saturation as this round judges it clear or not: the average with memory
 * (a pod is clear when it has been for a while; hot is this round's report, counted over
 * rounds by sustained()). */
static double sat_of(const struct steer_ep *ep, const struct steer_mem *m)
{
	return m && m->have ? m->sat_avg : (double)ep->sat_pm;
}

/* Saturation alone (steer.h): every live endpoint reports it. out[] holds the weights within
 * bounds; cool says a live endpoint is clear. Returns the changes it adds. */
static unsigned sat_step(const struct steer_ep *ep, unsigned n, struct steer_mem *mem, bool cool,
                         uint32_t *out, enum steer_reason *why)
{
	unsigned changed = 0;
	for (unsigned e = 0; e < n; e++) {
		if (!ep[e].live || !ep[e].ceiling)
			continue;
		struct steer_mem *m = mem ? &mem[e] : NULL;
		uint32_t w = out[e], hi = ep[e].ceiling, lo = steer_floor(hi), st = 0;
		uint32_t nw = w, wait = STEER_PROBE_ROUNDS;
		enum steer_reason rs = STEER_NONE;
		double sat = sat_of(&ep[e], m);
		bool met =
		    ep[e].sat_shed || ep[e].last == STEER_SATURATED || ep[e].last == STEER_PROBE;
		wait <<= ep[e].backoff < STEER_BACKOFF_MAX ? ep[e].backoff : STEER_BACKOFF_MAX;
		int d = 0;
		bool clear = sat < STEER_SAT_LO_PM && !stalls_at(m, STEER_THR_LO_PM);
		if ((ep[e].sat_pm >= STEER_SAT_HI_PM || stalls_at(m, STEER_THR_HI_PM)) && cool)
			d = -1;
		else if (clear && w < hi && !met)
			d = 1;
		if (sustained(m, d)) {
			st = step_now(&ep[e], m, d);
			if (d < 0) {
				nw = w - st > w || w - st < lo ? lo : w - st;
				rs = STEER_SATURATED;
			} else {
				nw = w + st > hi ? hi : w + st;
				rs = STEER_REGAIN;
			}
		} else if (!d && clear && w < hi && met && ep[e].quiet >= wait) {
			st = step_now(&ep[e], m, 1);
			nw = w + st > hi ? hi : w + st;
			rs = STEER_PROBE;
		}
		if (nw != w)
			mem_changed(m, &ep[e], nw < w ? -1 : 1, rs == STEER_PROBE, st);
		changed += steer_put(out, why, e, w, nw, rs);
	}
	return changed;
}

unsigned steer_step(const struct steer_ep *ep, unsigned n, struct steer_mem *mem, uint32_t *out,
                    enum steer_reason *why)
{
	unsigned changed = 0, nlive = 0, sig;
	bool fresh = true;
	double tot[3], wsum = 0, mean = 0;
	for (unsigned e = 0; e < n; e++) {
		uint32_t w = ep[e].weight, lo = steer_floor(ep[e].ceiling);
		out[e] = w;
		why[e] = STEER_NONE;
		if (!ep[e].live || !ep[e].ceiling)
			continue;
		if (w < lo)
			out[e] = lo;
		else if (w > ep[e].ceiling)
			out[e] = ep[e].ceiling;
		if (out[e] != w) {
			why[e] = STEER_BOUNDS;
			changed++;
			if (mem) /* (a new weight: what was averaged measured another) */
				mem[e] = (struct steer_mem){0};
		}
		nlive++;
		fresh &= ep[e].fresh;
		wsum += out[e];
	}
	if (nlive < 2 || !fresh)
		return changed;
	bool all_sat = true;
	for (unsigned e = 0; e < n; e++)
		all_sat &= !ep[e].live || !ep[e].ceiling || ep[e].has_sat;
	sig = all_sat ? 0 : signals(ep, n, nlive, tot);
	for (unsigned e = 0; sig && e < n; e++) /* the weighted mean of the utilisations */
		if (ep[e].live && ep[e].ceiling)
			mean += out[e] / wsum * util(&ep[e], out[e], wsum, sig, tot);
	for (unsigned e = 0; mem && e < n; e++) /* this round's reports into the averages */
		if (ep[e].live && ep[e].ceiling)
			mem_take(&mem[e], &ep[e],
			         mean > 0 ? util(&ep[e], out[e], wsum, sig, tot) / mean : 1);
	bool cool = false; /* a live endpoint clear of saturation: shedding has somewhere to go */
	for (unsigned e = 0; e < n; e++)
		cool |= ep[e].live && ep[e].ceiling && ep[e].has_sat &&
		        sat_of(&ep[e], mem ? &mem[e] : NULL) < STEER_SAT_LO_PM &&
		        !stalls_at(mem ? &mem[e] : NULL, STEER_THR_LO_PM);
	if (all_sat)
		return changed + sat_step(ep, n, mem, cool, out, why);
	if (!(mean > 0) && !cool)
		return changed;
	for (unsigned e = 0; e < n; e++) {
		if (!ep[e].live || !ep[e].ceiling)
			continue;
		struct steer_mem *m = mem ? &mem[e] : NULL;
		uint32_t w = out[e], hi = ep[e].ceiling, lo = steer_floor(hi), st;
		/* (no usable utilisation: every endpoint at its share) */
		double r = m ? m->util_avg : mean > 0 ? util(&ep[e], w, wsum, sig, tot) / mean : 1;
		double band = (m && m->settled ? STEER_BAND_OUT_PM : STEER_BAND_PM) / 1000.0,
		       target;
		double sat = sat_of(&ep[e], m);
		bool hot = ep[e].has_sat &&
		           (ep[e].sat_pm >= STEER_SAT_HI_PM || stalls_at(m, STEER_THR_HI_PM)) &&
		           cool;
		bool warm =
		    ep[e].has_sat && (sat >= STEER_SAT_LO_PM || stalls_at(m, STEER_THR_LO_PM));
		uint32_t nw = w;
		enum steer_reason rs = STEER_NONE;
		int d = 0;
		if (hot || r > 1 + band)
			d = -1;
		else if (r < 1 - band && w < hi && !warm && !ep[e].sat_shed)
			d = 1;
		bool act = sustained(m, d);
		st = step_now(&ep[e], m, act ? d : 1); /* (not acting: a probe, if any) */
		if (!act) {
			if (!d && r <= 1 && w < hi && !warm && ep[e].quiet >= STEER_PROBE_ROUNDS) {
				nw = w + st > hi ? hi : w + st;
				rs = STEER_PROBE;
			}
		} else if (hot) {
			nw = w - st > w || w - st < lo ? lo : w - st;
			rs = STEER_SATURATED;
		} else if (d < 0) {
			target = w / r;
			nw = w - st > w ? 0 : w - st; /* (no wrap below 0) */
			if (target > nw)
				nw = (uint32_t)target;
			if (nw < lo)
				nw = lo;
			rs = STEER_SHED;
		} else {
			target = r > 0 ? w / r : (double)hi;
			nw = w + st > hi ? hi : w + st;
			if (target < nw)
				nw = (uint32_t)target;
			if (nw < w) /* (target rounds down to w: nothing to gain) */
				nw = w;
			rs = STEER_REGAIN;
		}
		if (nw != w)
			mem_changed(m, &ep[e], nw < w ? -1 : 1, rs == STEER_PROBE, st);
		changed += steer_put(out, why, e, w, nw, rs);
	}
	return changed;
}
