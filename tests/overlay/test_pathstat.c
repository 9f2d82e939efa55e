/* The resiliency slave's probe window (src/overlay/pathstat.h): losses and late echoes are
 * counted, the window forgets the oldest probe, a healthy path with jitter is not bad, a path
 * losing or delaying a quarter of its probes is, no verdict before PS_MIN probes resolved,
 * stray or repeated echoes change nothing, probes in flight across the prober's own stall are
 * forgotten, and random sequences of sends, echoes and expiries
 * agree with a naive list of every probe (fixed seed). */
#include "../unit/test.h"

#include <stdbool.h>

#include "pathstat.h"

enum { MS = 1000 };

/* n probes 100 ms apart from t; each answered after rtt_us, except every k-th (k > 0):
 * lost (delay 0) or answered after delay us. Returns the time after the last. */
static uint64_t run(struct pathstat *ps, uint64_t t, int n, uint32_t rtt_us, int k, uint32_t delay)
{
	for (int i = 0; i < n; i++, t += 100 * MS) {
		ps_sent(ps, t);
		if (k && i % k == k - 1) {
			if (delay)
				assert_true(ps_answered(ps, t, t + delay));
			continue;
		}
		assert_true(ps_answered(ps, t, t + rtt_us));
	}
	ps_expire(ps, t + 2000 * MS, 1000 * MS);
	return t;
}

static void test_healthy_with_jitter_is_good(void **state)
{
	(void)state;
	struct pathstat ps;
	struct ps_summary s;
	ps_reset(&ps);
	uint64_t t = 1000000;
	for (int i = 0; i < 40; i++, t += 100 * MS) {
		ps_sent(&ps, t);
		assert_true(ps_answered(&ps, t, t + 20 * MS + (uint64_t)(i % 7) * 10 * MS));
	}
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.resolved, PS_MIN);
	assert_int_equal(s.lost, 0);
	assert_int_equal(s.late, 0);
	assert_false(ps_bad_share_at_least(&s, 25));
	/* the same jitter is late against a 50 ms threshold (70 ms above 20 ms: 3 of 7) */
	ps_summary(&ps, 50 * MS, &s);
	assert_true(s.late > 0);
}

static void test_quarter_lost_is_bad(void **state)
{
	(void)state;
	struct pathstat ps;
	struct ps_summary s;
	ps_reset(&ps);
	run(&ps, 1000000, 32, 20 * MS, 4, 0); /* every 4th lost */
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.resolved, PS_MIN);
	assert_int_equal(s.lost, PS_MIN / 4);
	assert_int_equal(s.late, 0);
	assert_true(ps_bad_share_at_least(&s, 25));
	assert_false(ps_bad_share_at_least(&s, 26));
}

static void test_quarter_delayed_is_bad(void **state)
{
	(void)state;
	struct pathstat ps;
	struct ps_summary s;
	ps_reset(&ps);
	run(&ps, 1000000, 32, 20 * MS, 4, 400 * MS); /* every 4th 400 ms late */
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.resolved, PS_MIN);
	assert_int_equal(s.lost, 0);
	assert_int_equal(s.late, PS_MIN / 4);
	assert_int_equal(s.base_us, 20 * MS);
	assert_true(ps_bad_share_at_least(&s, 25));
	/* all delayed alike is a longer path, not a delayed share */
	ps_reset(&ps);
	run(&ps, 1000000, 32, 400 * MS, 0, 0);
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.late, 0);
	assert_false(ps_bad_share_at_least(&s, 25));
}

static void test_pending_and_few_give_no_verdict(void **state)
{
	(void)state;
	struct pathstat ps;
	struct ps_summary s;
	ps_reset(&ps);
	/* PS_MIN - 1 probes, all lost: too few */
	for (int i = 0; i < PS_MIN - 1; i++)
		ps_sent(&ps, 1000000 + (uint64_t)i * 100 * MS);
	ps_expire(&ps, 1000000 + 5000 * MS, 1000 * MS);
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.lost, PS_MIN - 1);
	assert_false(ps_bad_share_at_least(&s, 25));
	/* one more, still pending (not yet past the timeout): not counted */
	uint64_t t = 1000000 + 5000 * MS;
	ps_sent(&ps, t);
	ps_expire(&ps, t + 999 * MS, 1000 * MS);
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.resolved, PS_MIN - 1);
	ps_expire(&ps, t + 1001 * MS, 1000 * MS);
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.resolved, PS_MIN);
	assert_true(ps_bad_share_at_least(&s, 100));
	/* its echo comes after all: answered, and late */
	assert_true(ps_answered(&ps, t, t + 1500 * MS));
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.lost, PS_MIN - 1);
	assert_int_equal(s.resolved, PS_MIN);
}

/* Pending probes (a backlog of up to a loss timeout's worth) are skipped: the newest
 * PS_MIN resolved ones are judged. */
static void test_pending_skipped(void **state)
{
	(void)state;
	struct pathstat ps;
	struct ps_summary s;
	ps_reset(&ps);
	uint64_t t = run(&ps, 1000000, PS_MIN, 20 * MS, 2, 0); /* half lost */
	for (int i = 0; i < PS_WIN - PS_MIN; i++, t += 100 * MS)
		ps_sent(&ps, t); /* pending */
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.resolved, PS_MIN);
	assert_int_equal(s.lost, PS_MIN / 2);
	assert_true(ps_bad_share_at_least(&s, 50));
}

/* A stall of the prober's own: the probes in flight are forgotten (neither lost at the next
 * expiry nor answered late), the resolved ones stay judged. */
static void test_forget_pending(void **state)
{
	(void)state;
	struct pathstat ps;
	struct ps_summary s;
	ps_reset(&ps);
	uint64_t t = run(&ps, 1000000, PS_MIN, 20 * MS, 0, 0); /* all answered */
	uint64_t first = t;
	for (int i = 0; i < 4; i++, t += 100 * MS)
		ps_sent(&ps, t);
	ps_forget_pending(&ps);
	assert_false(ps_answered(&ps, first, t + 5000 * MS)); /* its echo after the stall */
	ps_expire(&ps, t + 5000 * MS, 1000 * MS);
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.resolved, PS_MIN);
	assert_int_equal(s.lost + s.late, 0);
}

static void test_window_forgets_and_stray_echoes(void **state)
{
	(void)state;
	struct pathstat ps;
	struct ps_summary s;
	ps_reset(&ps);
	uint64_t t = run(&ps, 1000000, PS_WIN, 20 * MS, 1, 0); /* all lost */
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.lost, PS_MIN);
	/* PS_MIN good probes push every loss out of the judged ones */
	t = run(&ps, t, PS_MIN, 20 * MS, 0, 0);
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.resolved, PS_MIN);
	assert_int_equal(s.lost, 0);
	/* an echo of a probe never sent, or of one answered already, changes nothing */
	assert_false(ps_answered(&ps, 12345, t));
	assert_false(ps_answered(&ps, t - 100 * MS, t + 5000 * MS));
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.late, 0);
	/* an echo before its probe was sent (a clock gone back) is an RTT of 0, not a wrap */
	ps_sent(&ps, t + 10 * MS);
	assert_true(ps_answered(&ps, t + 10 * MS, t));
	ps_summary(&ps, 250 * MS, &s);
	assert_int_equal(s.late, 0);
}

/* The naive equivalent: every probe ever sent, in order; the ring's view is the last PS_WIN. */
struct naive {
	uint64_t sent[4096];
	uint32_t rtt[4096];
	int state[4096]; /* 1 pending, 2 answered, 3 lost */
	unsigned n;
};

static void naive_summary(const struct naive *v, uint32_t late_us, struct ps_summary *out)
{
	unsigned lo = v->n > PS_WIN ? v->n - PS_WIN : 0, idx[PS_MIN], k = 0;
	memset(out, 0, sizeof(*out));
	for (unsigned i = v->n; i-- > lo && k < PS_MIN;)
		if (v->state[i] >= 2)
			idx[k++] = i;
	for (unsigned j = 0; j < k; j++)
		if (v->state[idx[j]] == 2 && (!out->base_us || v->rtt[idx[j]] < out->base_us))
			out->base_us = v->rtt[idx[j]] ? v->rtt[idx[j]] : 1;
	for (unsigned j = 0; j < k; j++) {
		out->resolved++;
		if (v->state[idx[j]] == 3)
			out->lost++;
		else if ((uint64_t)v->rtt[idx[j]] > (uint64_t)out->base_us + late_us)
			out->late++;
	}
}

/* Regression (an anycast flow sent to the farther member on a loaded CI machine): one echo
 * stalled 400 ms by a busy host must not make a 1 ms path look farther than a 41 ms one, as the
 * smoothed RTT did (1 + 400/8 ms); a path that really got longer shows once the window ends. */
static void test_minrtt_ignores_a_stall(void **state)
{
	(void)state;
	struct ps_minrtt near = {0}, far = {0};
	uint32_t srtt = 0;
	uint64_t t = 1000;
	for (int i = 0; i < 20; i++, t += 100) {
		uint32_t s = i == 10 ? 400000 : 1000; /* the stalled echo */
		ps_minrtt_sample(&near, s, t, 30000);
		ps_minrtt_sample(&far, 41000, t, 30000);
		srtt = srtt ? (7 * srtt + s) / 8 : s;
		if (i == 10)
			assert_true(srtt > far.us); /* what the smoothed RTT said */
		assert_int_equal(near.us, 1000);
	}
	assert_int_equal(far.us, 41000);
	/* longer for good: the old minimum holds until the window ends, then the new one */
	uint64_t t0 = t;
	for (; t < t0 + 40000; t += 100) {
		ps_minrtt_sample(&near, 50000, t, 30000);
		if (t - 1000 < t0 + 28000)
			assert_int_equal(near.us, 1000);
	}
	assert_int_equal(near.us, 50000);
	/* 0 is kept apart from "no sample" */
	struct ps_minrtt z = {0};
	ps_minrtt_sample(&z, 0, 5, 30000);
	assert_int_equal(z.us, 1);
}

static void test_random_against_naive(void **state)
{
	(void)state;
	static struct naive v;
	struct pathstat ps;
	uint64_t seed = 0x9e3779b97f4a7c15ULL, t = 1000000;
	memset(&v, 0, sizeof(v));
	ps_reset(&ps);
	for (int step = 0; step < 4000; step++) {
		uint64_t r = test_rand(&seed);
		t += 1 + r % (50 * MS);
		switch ((r >> 32) % 3) {
		case 0:
			ps_sent(&ps, t);
			v.sent[v.n] = t;
			v.state[v.n++] = 1;
			break;
		case 1: { /* an echo of one of the last 40 probes (some out of the ring) */
			if (!v.n)
				break;
			unsigned back = (unsigned)((r >> 40) % 40);
			unsigned i = back < v.n ? v.n - 1 - back : 0;
			bool in_ring = v.n - i <= PS_WIN && (v.state[i] == 1 || v.state[i] == 3);
			assert_int_equal(ps_answered(&ps, v.sent[i], t), in_ring);
			if (in_ring) {
				v.state[i] = 2;
				v.rtt[i] = (uint32_t)(t - v.sent[i]);
			}
			break;
		}
		default:
			ps_expire(&ps, t, 300 * MS);
			for (unsigned i = v.n > PS_WIN ? v.n - PS_WIN : 0; i < v.n; i++)
				if (v.state[i] == 1 && t - v.sent[i] > 300 * MS)
					v.state[i] = 3;
		}
		struct ps_summary a, b;
		ps_summary(&ps, 100 * MS, &a);
		naive_summary(&v, 100 * MS, &b);
		assert_int_equal(a.resolved, b.resolved);
		assert_int_equal(a.lost, b.lost);
		assert_int_equal(a.late, b.late);
		assert_int_equal(a.base_us, b.base_us);
		if (v.n == 4096)
			break;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_healthy_with_jitter_is_good),
	    cmocka_unit_test(test_quarter_lost_is_bad),
	    cmocka_unit_test(test_quarter_delayed_is_bad),
	    cmocka_unit_test(test_pending_and_few_give_no_verdict),
	    cmocka_unit_test(test_pending_skipped),
	    cmocka_unit_test(test_forget_pending),
	    cmocka_unit_test(test_window_forgets_and_stray_echoes),
	    cmocka_unit_test(test_random_against_naive),
	    cmocka_unit_test(test_minrtt_ignores_a_stall),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
