/* Metrics-based steering's step (src/controller/steer.h): bounds, the dead band, bounded
 * steps, the application's figure, bad inputs, and convergence without oscillation over
 * many rounds of noisy loads from a queueing model of pods of unequal capacity. */
#include "test.h"

#include <math.h>
#include <stdlib.h>

#include "../../src/controller/steer.h"
#include "peak/assign.h"

enum { N = 3 };

/* n live, fresh endpoints of configured weight 1 at their ceiling, conns c[e]. */
static void eps_make(struct steer_ep *ep, unsigned n, const uint64_t *c)
{
	for (unsigned e = 0; e < n; e++)
		ep[e] = (struct steer_ep){.live = true,
		                          .fresh = true,
		                          .conns = c[e],
		                          .ceiling = steer_fine(1),
		                          .weight = steer_fine(1)};
}

static void test_scale(void **state)
{
	(void)state;
	assert_int_equal(steer_fine(1), 1000);
	assert_int_equal(steer_fine(3), 3000);
	assert_int_equal(steer_fine(1000), ASSIGN_MAX_WEIGHT);
	assert_int_equal(steer_fine(5000), ASSIGN_MAX_WEIGHT); /* capped */
	assert_int_equal(steer_floor(1000), 50);
	assert_int_equal(steer_floor(1), 1); /* a floor above 0 for any ceiling */
	assert_int_equal(steer_floor(0), 0);
	assert_string_equal(steer_reason_name(STEER_SHED), "shed");
	assert_string_equal(steer_reason_name(STEER_NREASONS), "?");
}

/* Equal loads with +-15% noise stay inside the band: nothing changes, ever. */
static void test_equal_loads_change_nothing(void **state)
{
	(void)state;
	uint64_t seed = 7;
	struct steer_ep ep[N];
	uint32_t out[N];
	enum steer_reason why[N];
	for (int round = 0; round < 1000; round++) {
		uint64_t c[N];
		for (unsigned e = 0; e < N; e++)
			c[e] = 100 + test_rand(&seed) % 31 - 15;
		eps_make(ep, N, c);
		for (unsigned e = 0; e < N; e++) {
			ep[e].has_cpu = true;
			ep[e].cpu_ns_s = 200000000 + test_rand(&seed) % 30000000;
			ep[e].quiet = (uint32_t)round;
		}
		assert_int_equal(steer_step(ep, N, out, why), 0);
		for (unsigned e = 0; e < N; e++) {
			assert_int_equal(out[e], 1000);
			assert_int_equal(why[e], STEER_NONE);
		}
	}
}

/* Small connection counts (a mean of 20 per endpoint) sampled as Poisson counts stay
 * inside the noise gate: nothing changes in 1000 rounds, where without the gate a count of
 * 30 against 20 (2.2 sd, one round in 70) would shed. */
static void test_small_counts_are_noise(void **state)
{
	(void)state;
	uint64_t seed = 11;
	struct steer_ep ep[N];
	uint32_t out[N];
	enum steer_reason why[N];
	unsigned changes = 0;
	for (int round = 0; round < 1000; round++) {
		uint64_t c[N];
		for (unsigned e = 0; e < N; e++) { /* Poisson(20) by Knuth's product method */
			double l = exp(-20.0), p = 1;
			unsigned k = 0;
			do {
				k++;
				p *= (double)(test_rand(&seed) >> 11) / 9007199254740992.0;
			} while (p > l);
			c[e] = k - 1;
		}
		eps_make(ep, N, c);
		changes += steer_step(ep, N, out, why);
	}
	assert_int_equal(changes, 0);
}

/* The loaded endpoint sheds by at most one step per interval down to the floor; the
 * others, at their ceiling, stay there. */
static void test_overloaded_sheds_bounded(void **state)
{
	(void)state;
	struct steer_ep ep[N];
	uint32_t out[N];
	enum steer_reason why[N];
	uint64_t c[N] = {1000, 10, 10};
	eps_make(ep, N, c);
	uint32_t w = ep[0].weight;
	for (int round = 0; round < 40; round++) {
		ep[0].weight = w;
		unsigned k = steer_step(ep, N, out, why);
		assert_true(out[0] <= w);
		assert_true(w - out[0] <= 100); /* STEER_STEP_PM of the ceiling */
		assert_true(out[0] >= 50);      /* the floor */
		assert_int_equal(out[1], 1000);
		assert_int_equal(out[2], 1000);
		if (w > 50) {
			assert_int_equal(k, 1);
			assert_int_equal(why[0], STEER_SHED);
		} else {
			assert_int_equal(k, 0);
		}
		w = out[0];
	}
	assert_int_equal(w, 50);
}

/* Weights outside [floor, ceiling] (a lowered ceiling, a weight adopted from another
 * mode) are brought within, even without load figures. */
static void test_bounds(void **state)
{
	(void)state;
	struct steer_ep ep[N];
	uint32_t out[N];
	enum steer_reason why[N];
	uint64_t c[N] = {0, 0, 0};
	eps_make(ep, N, c);
	ep[0].weight = 5000;
	ep[1].weight = 1;
	ep[2].fresh = false;
	assert_int_equal(steer_step(ep, N, out, why), 2);
	assert_int_equal(out[0], 1000);
	assert_int_equal(why[0], STEER_BOUNDS);
	assert_int_equal(out[1], 50);
	assert_int_equal(why[1], STEER_BOUNDS);
	assert_int_equal(out[2], 1000);
	assert_int_equal(why[2], STEER_NONE);
}

/* Inputs that must change nothing: no endpoints, one live endpoint, a stale report, loads
 * under the noise floor, endpoints down or of weight 0; huge figures stay finite. */
static void test_bad_inputs(void **state)
{
	(void)state;
	struct steer_ep ep[N];
	uint32_t out[N];
	enum steer_reason why[N];
	uint64_t skew[N] = {1000, 10, 10};
	assert_int_equal(steer_step(NULL, 0, NULL, NULL), 0);
	eps_make(ep, N, skew);
	ep[1].live = ep[2].live = false;
	assert_int_equal(steer_step(ep, N, out, why), 0); /* one live: nothing to even */
	eps_make(ep, N, skew);
	ep[2].fresh = false;
	assert_int_equal(steer_step(ep, N, out, why), 0); /* one stale report */
	uint64_t idle[N] = {2, 0, 0};
	eps_make(ep, N, idle);
	assert_int_equal(steer_step(ep, N, out, why), 0); /* 2 connections in all: noise */
	eps_make(ep, N, skew);
	ep[0].ceiling = ep[0].weight = 0; /* weight 0: never steered */
	ep[1].live = false;               /* down: left alone */
	ep[1].weight = 7;
	assert_int_equal(steer_step(ep, N, out, why), 0);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[1], 7);
	uint64_t huge[N] = {UINT64_MAX, UINT64_MAX, 0};
	eps_make(ep, N, huge);
	for (unsigned e = 0; e < N; e++) {
		ep[e].has_cpu = ep[e].has_app = true;
		ep[e].cpu_ns_s = ep[e].app = UINT64_MAX;
	}
	steer_step(ep, N, out, why);
	for (unsigned e = 0; e < N; e++)
		assert_true(out[e] >= 50 && out[e] <= 1000);
	eps_make(ep, N, skew); /* the smallest ceiling: steps of 1, a floor of 1 */
	for (unsigned e = 0; e < N; e++)
		ep[e].ceiling = ep[e].weight = 1;
	assert_int_equal(steer_step(ep, N, out, why), 0);
	assert_int_equal(out[0], 1);
}

/* When every endpoint reports an application figure, it alone counts. */
static void test_app_figure(void **state)
{
	(void)state;
	struct steer_ep ep[N];
	uint32_t out[N];
	enum steer_reason why[N];
	uint64_t c[N] = {100, 100, 100};
	eps_make(ep, N, c);
	for (unsigned e = 0; e < N; e++) {
		ep[e].has_app = true;
		ep[e].app = e == 2 ? 900 : 300;
	}
	assert_int_equal(steer_step(ep, N, out, why), 1);
	assert_int_equal(why[2], STEER_SHED);
	assert_int_equal(out[2], 900);
	ep[1].has_app = false; /* not all: connections again, which are even */
	assert_int_equal(steer_step(ep, N, out, why), 0);
}

/* A shed endpoint that becomes underloaded regains by bounded steps up to its ceiling;
 * one that sits quiet at the mean probes one step after STEER_PROBE_ROUNDS. */
static void test_regain_and_probe(void **state)
{
	(void)state;
	struct steer_ep ep[N];
	uint32_t out[N];
	enum steer_reason why[N];
	uint64_t c[N] = {1, 100, 100};
	eps_make(ep, N, c);
	ep[0].weight = 200;
	assert_int_equal(steer_step(ep, N, out, why), 1);
	assert_int_equal(why[0], STEER_REGAIN);
	assert_int_equal(out[0], 300);
	ep[0].weight = 950;
	steer_step(ep, N, out, why);
	assert_int_equal(out[0], 1000);    /* not past the ceiling */
	uint64_t even[N] = {20, 100, 100}; /* 20 for a fifth of the weight: at the mean */
	eps_make(ep, N, even);
	ep[0].weight = 200;
	ep[0].quiet = STEER_PROBE_ROUNDS - 1;
	assert_int_equal(steer_step(ep, N, out, why), 0);
	ep[0].quiet = STEER_PROBE_ROUNDS;
	assert_int_equal(steer_step(ep, N, out, why), 1);
	assert_int_equal(why[0], STEER_PROBE);
	assert_int_equal(out[0], 300);
}

/*
 * Convergence. Three pods serve a fixed total of requests in proportion to their weights;
 * pod 0 has a quarter of the others' capacity (a quarter of a core). Each behaves as an
 * M/M/1 queue: its connections in flight are rate * latency (Little's law), latency
 * 1 / (capacity - rate), with +-10% noise on every report. The loaded pod's weight must
 * fall, its latency come within 1.5x of the others', and after settling no weight may
 * move by more than one step at a time, nor change in most rounds (no oscillation).
 */
static void converge(const double cap[N], double total, uint32_t *w0)
{
	struct steer_ep ep[N];
	uint32_t w[N] = {1000, 1000, 1000}, quiet[N] = {0}, out[N];
	enum steer_reason why[N];
	uint64_t seed = 42;
	unsigned late_changes = 0;
	double lat[N] = {0};
	for (int round = 0; round < 600; round++) {
		double wsum = w[0] + w[1] + w[2];
		for (unsigned e = 0; e < N; e++) {
			double rate = total * w[e] / wsum;
			double l = rate < 0.95 * cap[e] ? 1 / (cap[e] - rate) : 20 / cap[e];
			double noise = 0.9 + (double)(test_rand(&seed) % 2001) / 10000.0;
			lat[e] = l;
			ep[e] = (struct steer_ep){
			    .live = true,
			    .fresh = true,
			    .has_cpu = true,
			    .conns = (uint64_t)(rate * l * 100 * noise),
			    .cpu_ns_s = (uint64_t)((rate < cap[e] ? rate : cap[e]) * 1e6 * noise),
			    .ceiling = 1000,
			    .weight = w[e],
			    .quiet = quiet[e],
			};
		}
		steer_step(ep, N, out, why);
		for (unsigned e = 0; e < N; e++) {
			uint32_t d = out[e] > w[e] ? out[e] - w[e] : w[e] - out[e];
			assert_true(d <= 100);
			assert_true(out[e] >= 50 && out[e] <= 1000);
			if (round >= 300 && d)
				late_changes++;
			quiet[e] = d ? 0 : quiet[e] + 1;
			w[e] = out[e];
		}
	}
	double other = lat[1] > lat[2] ? lat[1] : lat[2];
	print_message("# converged weights %u %u %u, latency ratio %.2f, %u changes in the "
	              "last 300 rounds\n",
	              w[0], w[1], w[2], lat[0] / other, late_changes);
	assert_true(w[0] < 1000);
	assert_true(w[1] == 1000 && w[2] == 1000);
	assert_true(lat[0] <= 1.5 * other);
	assert_true(late_changes <= 30); /* a probe and its return at most every 30 rounds */
	*w0 = w[0];
}

/* A quarter of the capacity: even unloaded, the pod is slower than the others loaded; it
 * sheds down to the floor and stays within a probe of it (at the floor its few
 * connections are within the noise gate, so it probes one step up every 30 rounds and
 * sheds back). */
static void test_convergence_floor(void **state)
{
	(void)state;
	const double cap[N] = {250, 1000, 1000};
	uint32_t w0;
	converge(cap, 1500, &w0);
	assert_true(w0 <= 150);
}

/* Half the capacity: the latencies meet at an interior share (x = 266 of 1800 requests,
 * a weight near 350); the pod settles around it, above the floor. */
static void test_convergence_interior(void **state)
{
	(void)state;
	const double cap[N] = {500, 1000, 1000};
	uint32_t w0;
	converge(cap, 1800, &w0);
	assert_true(w0 > 150 && w0 < 700);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scale),
	    cmocka_unit_test(test_equal_loads_change_nothing),
	    cmocka_unit_test(test_small_counts_are_noise),
	    cmocka_unit_test(test_overloaded_sheds_bounded),
	    cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_bad_inputs),
	    cmocka_unit_test(test_app_figure),
	    cmocka_unit_test(test_regain_and_probe),
	    cmocka_unit_test(test_convergence_floor),
	    cmocka_unit_test(test_convergence_interior),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
