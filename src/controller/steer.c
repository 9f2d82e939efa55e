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

/* Saturation alone (steer.h): every live endpoint reports it. out[] holds the weights within
 * bounds; cool says a live endpoint is clear. Returns the changes it adds. */
static unsigned sat_step(const struct steer_ep *ep, unsigned n, bool cool, uint32_t *out,
                         enum steer_reason *why)
{
	unsigned changed = 0;
	for (unsigned e = 0; e < n; e++) {
		if (!ep[e].live || !ep[e].ceiling)
			continue;
		uint32_t w = out[e], hi = ep[e].ceiling, lo = steer_floor(hi), st = step_of(hi);
		uint32_t nw = w, wait = STEER_PROBE_ROUNDS;
		enum steer_reason rs = STEER_NONE;
		bool met =
		    ep[e].sat_shed || ep[e].last == STEER_SATURATED || ep[e].last == STEER_PROBE;
		wait <<= ep[e].backoff < STEER_BACKOFF_MAX ? ep[e].backoff : STEER_BACKOFF_MAX;
		if (ep[e].sat_pm >= STEER_SAT_HI_PM && cool) {
			nw = w - st > w || w - st < lo ? lo : w - st;
			rs = STEER_SATURATED;
		} else if (ep[e].sat_pm < STEER_SAT_LO_PM && w < hi &&
		           (!met || ep[e].quiet >= wait)) {
			nw = w + st > hi ? hi : w + st;
			rs = met ? STEER_PROBE : STEER_REGAIN;
		}
		changed += steer_put(out, why, e, w, nw, rs);
	}
	return changed;
}

unsigned steer_step(const struct steer_ep *ep, unsigned n, uint32_t *out, enum steer_reason *why)
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
		}
		nlive++;
		fresh &= ep[e].fresh;
		wsum += out[e];
	}
	if (nlive < 2 || !fresh)
		return changed;
	bool cool = false; /* a live endpoint clear of saturation: shedding has somewhere to go */
	bool all_sat = true;
	for (unsigned e = 0; e < n; e++) {
		cool |=
		    ep[e].live && ep[e].ceiling && ep[e].has_sat && ep[e].sat_pm < STEER_SAT_LO_PM;
		all_sat &= !ep[e].live || !ep[e].ceiling || ep[e].has_sat;
	}
	if (all_sat)
		return changed + sat_step(ep, n, cool, out, why);
	sig = signals(ep, n, nlive, tot);
	for (unsigned e = 0; sig && e < n; e++) /* the weighted mean of the utilisations */
		if (ep[e].live && ep[e].ceiling)
			mean += out[e] / wsum * util(&ep[e], out[e], wsum, sig, tot);
	if (!(mean > 0) && !cool)
		return changed;
	const double band = STEER_BAND_PM / 1000.0;
	for (unsigned e = 0; e < n; e++) {
		if (!ep[e].live || !ep[e].ceiling)
			continue;
		uint32_t w = out[e], hi = ep[e].ceiling, lo = steer_floor(hi), st = step_of(hi);
		/* (no usable utilisation: every endpoint at its share) */
		double r = mean > 0 ? util(&ep[e], w, wsum, sig, tot) / mean : 1, target;
		bool hot = ep[e].has_sat && ep[e].sat_pm >= STEER_SAT_HI_PM && cool;
		bool warm = ep[e].has_sat && ep[e].sat_pm >= STEER_SAT_LO_PM;
		uint32_t nw = w;
		enum steer_reason rs = STEER_NONE;
		if (hot) {
			nw = w - st > w || w - st < lo ? lo : w - st;
			rs = STEER_SATURATED;
		} else if (r > 1 + band) {
			target = w / r;
			nw = w - st > w ? 0 : w - st; /* (no wrap below 0) */
			if (target > nw)
				nw = (uint32_t)target;
			if (nw < lo)
				nw = lo;
			rs = STEER_SHED;
		} else if (r < 1 - band && w < hi && !warm && !ep[e].sat_shed) {
			target = r > 0 ? w / r : (double)hi;
			nw = w + st > hi ? hi : w + st;
			if (target < nw)
				nw = (uint32_t)target;
			if (nw < w) /* (target rounds down to w: nothing to gain) */
				nw = w;
			rs = STEER_REGAIN;
		} else if (r <= 1 && w < hi && !warm && ep[e].quiet >= STEER_PROBE_ROUNDS) {
			nw = w + st > hi ? hi : w + st;
			rs = STEER_PROBE;
		}
		changed += steer_put(out, why, e, w, nw, rs);
	}
	return changed;
}
