/* The resiliency slave's link-state (RON's relay choice) and RTT verdict (slave_resil.c), run
 * whole against a stand-in gateway and a fake clock (resil_harness.h): the relay is the one
 * of lowest (our RTT to it + its reported RTT to the destination), only among relays that
 * report hearing it; stale reports expire; malformed ones are dropped and counted; our own
 * reports go to every live peer within the probe budget; a direct path whose RTT grows as a
 * whole is relayed when the relay is clearly faster, and goes back when it recovers, with no
 * flapping between the two thresholds. */
#include "resil_harness.h"

#include "slave_resil.h"

enum { B = 0, C = 1, D = 2 };

#define BIT(i) (1u << (i))

/* Peer rep reports its paths: n entries of (peer, RTT ms, loss %). */
static void report(uint32_t rep, bool complete, size_t n, const uint32_t *peer,
                   const unsigned *rtt_ms, const unsigned *loss)
{
	struct ovw_ls_entry e[OVW_LS_MAX];
	uint8_t body[OVW_LS_BODY_MAX];
	for (size_t k = 0; k < n; k++) {
		memcpy(e[k].id, rh_peers[peer[k]].id, OVW_ID_LEN);
		e[k].rtt_us = rtt_ms[k] * 1000;
		e[k].loss_pct = (uint8_t)loss[k];
	}
	long len = ovw_ls_encode(complete ? OVW_LS_COMPLETE : 0, e, n, body, sizeof(body));
	assert_true(len > 0);
	rh_linkstate(rep, body, (size_t)len);
}

/* A triangle and a half: b the destination in use, c near (5 ms), d further (20 ms). */
static struct ov_slave *square(void)
{
	struct ov_slave *s = rh_make(3, 1000, 25);
	rh_set_rtt(B, 10);
	rh_set_rtt(C, 5);
	rh_set_rtt(D, 20);
	rh_run(s, 3000, BIT(B) | BIT(C) | BIT(D), BIT(B)); /* all measured */
	return s;
}

/* b dies: the relay the slave takes for it. */
static uint32_t relay_when_b_dies(struct ov_slave *s)
{
	for (unsigned t = 0; t < 3000 && rh_peers[B].via == GW_DIRECT; t += 10)
		rh_run(s, 10, BIT(C) | BIT(D), BIT(B));
	return rh_peers[B].via;
}

static void test_without_linkstate_lowest_rtt(void **state)
{
	(void)state;
	struct ov_slave *s = square();
	assert_int_equal(relay_when_b_dies(s), C); /* our RTT alone, as before */
	rh_free(s);
}

static void test_relay_that_reaches_the_destination_well(void **state)
{
	(void)state;
	struct ov_slave *s = square();
	/* c is nearer, but its path to b is slow and lossy-free; d's is quick: 5 + 200 > 20 + 10 */
	report(C, true, 2, (uint32_t[]){B, D}, (unsigned[]){200, 30}, (unsigned[]){0, 0});
	report(D, true, 2, (uint32_t[]){B, C}, (unsigned[]){10, 30}, (unsigned[]){0, 0});
	assert_true(slave_show_has(s, "linkstate c b rtt-us 200000 loss-pct 0 age-ms 0"));
	assert_true(slave_show_has(s, "linkstate d b rtt-us 10000 loss-pct 0 age-ms 0"));
	assert_int_equal(relay_when_b_dies(s), D);
	assert_true(slave_show_has(s, "path b down via d"));
	assert_int_equal(slave_metric(s, "peak_overlay_resil_linkstate_received_total"), 2);
	rh_free(s);
}

static void test_lossy_or_unheard_destination_not_a_relay(void **state)
{
	(void)state;
	struct ov_slave *s = square();
	/* c hears b but loses half its probes to it: not taken, d (no report) is */
	report(C, true, 1, (uint32_t[]){B}, (unsigned[]){1}, (unsigned[]){50});
	assert_int_equal(relay_when_b_dies(s), D);
	rh_free(s);
	s = square();
	/* c's complete list leaves b out: it does not hear b; d did not report */
	report(C, true, 1, (uint32_t[]){D}, (unsigned[]){30}, (unsigned[]){0});
	assert_int_equal(relay_when_b_dies(s), D);
	rh_free(s);
	s = square();
	/* a part of c's list (not complete) without b says nothing: c by our RTT */
	report(C, false, 1, (uint32_t[]){D}, (unsigned[]){30}, (unsigned[]){0});
	assert_int_equal(relay_when_b_dies(s), C);
	rh_free(s);
}

static void test_stale_reports_expire(void **state)
{
	(void)state;
	struct ov_slave *s = square();
	report(C, true, 2, (uint32_t[]){B, D}, (unsigned[]){200, 30}, (unsigned[]){0, 0});
	report(D, true, 2, (uint32_t[]){B, C}, (unsigned[]){10, 30}, (unsigned[]){0, 0});
	rh_run(s, 36000, BIT(B) | BIT(C) | BIT(D), BIT(B)); /* past RS_LS_TTL_MS (35 s) */
	assert_false(slave_show_has(s, "linkstate "));
	assert_int_equal(relay_when_b_dies(s), C); /* forgotten: our RTT alone again */
	rh_free(s);
}

static void test_malformed_linkstate_dropped_and_counted(void **state)
{
	(void)state;
	struct ov_slave *s = square();
	report(D, true, 2, (uint32_t[]){B, C}, (unsigned[]){10, 30}, (unsigned[]){0, 0});
	uint8_t bad[][OVW_LS_BODY_MAX] = {
	    {0, 1}, /* truncated: one entry said, none there */
	    {2, 0}, /* unknown flags */
	    {0, 0}, /* an empty part */
	    {1, 1, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0, 0, 0, 0, 0}, /* RTT 0 */
	};
	size_t lens[] = {2, 2, 2, 2 + OVW_LS_ENTRY_LEN};
	for (size_t k = 0; k < 4; k++)
		rh_linkstate(D, bad[k], lens[k]);
	/* and a complete list of c's that would have ruled c out, garbled: ignored */
	uint8_t trailing[2 + OVW_LS_ENTRY_LEN + 1] = {1, 1};
	memcpy(trailing + 2, rh_peers[D].id, OVW_ID_LEN);
	trailing[2 + OVW_ID_LEN + 3] = 1;
	rh_linkstate(C, trailing, sizeof(trailing));
	assert_int_equal(slave_metric(s, "peak_overlay_resil_linkstate_dropped_total"), 5);
	assert_int_equal(slave_metric(s, "peak_overlay_resil_linkstate_received_total"), 1);
	assert_int_equal(relay_when_b_dies(s), D); /* d's good report stands */
	rh_free(s);
}

/* Our reports: every live peer gets a complete list of the others with their RTT, and the
 * probe bucket pays them: probes and reports to a peer stay within a quarter of the budget. */
static void test_own_reports_within_the_budget(void **state)
{
	(void)state;
	struct ov_slave *s = square();
	size_t from = rh_nsent;
	const unsigned secs = 60;
	rh_run(s, secs * 1000, BIT(B) | BIT(C) | BIT(D), BIT(B));
	for (uint32_t j = 0; j < 3; j++) {
		size_t reports = rh_count(from, j, OVW_LINKSTATE);
		size_t probes = rh_count(from, j, OVW_PROBE);
		size_t bytes = probes * 80, ls_bytes = 0;
		for (size_t k = from; k < rh_nsent; k++) {
			if (rh_sent[k].cookie != j || rh_sent[k].type != OVW_LINKSTATE)
				continue;
			ls_bytes += 20 + 8 + OVW_HDR_LEN + OVW_TAG_LEN + rh_sent[k].n;
			uint8_t fl;
			struct ovw_ls_entry e[OVW_LS_MAX];
			size_t n;
			assert_int_equal(ovw_ls_decode(rh_sent[k].body, rh_sent[k].n, &fl, e, &n),
			                 0);
			assert_int_equal(fl, OVW_LS_COMPLETE);
			assert_int_equal(n, 2); /* the two others */
			for (size_t x = 0; x < n; x++)
				assert_memory_not_equal(e[x].id, rh_peers[j].id, OVW_ID_LEN);
		}
		print_message("# to %s: %zu reports (%zu bytes), %zu probes in %u s: %zu bit/s of "
		              "the 250 bit/s probe quarter\n",
		              rh_peers[j].name, reports, ls_bytes, probes, secs,
		              (bytes + ls_bytes) * 8 / secs);
		assert_true(reports >= secs * 1000 / 10000 - 1); /* every RS_LS_MS */
		/* a quarter of 1000 bit/s over the run, plus the burst of 8 probes */
		assert_true((bytes + ls_bytes) * 8 <= 250 * secs + 8 * 80 * 8);
	}
	assert_true(slave_metric(s, "peak_overlay_resil_linkstate_sent_total") >= 15);
	rh_free(s);
}

/* A direct path whose RTT grows as a whole is relayed when the relayed estimate is clearly
 * better, comes back when it recovers, and in between moves neither way. */
static void test_slow_direct_path_relayed_with_hysteresis(void **state)
{
	(void)state;
	struct ov_slave *s = rh_make(2, 16000, 25); /* a probe budget for quick windows */
	rh_set_rtt(B, 10);
	rh_set_rtt(C, 10);
	unsigned all = BIT(B) | BIT(C);
	rh_run(s, 3000, all, BIT(B));
	/* c hears b at 10 ms: relayed about 20 ms */
	for (int k = 0; k < 4; k++) {
		report(C, true, 1, (uint32_t[]){B}, (unsigned[]){10}, (unsigned[]){0});
		rh_run(s, 1000, all, BIT(B));
	}
	assert_int_equal(rh_peers[B].via, GW_DIRECT);
	rh_set_rtt(B, 80); /* the direct path 80 ms as a whole: not a late share, slow */
	unsigned t = 0;
	for (; t < 10000 && rh_peers[B].via == GW_DIRECT; t += 100) {
		if (!(t % 5000))
			report(C, true, 1, (uint32_t[]){B}, (unsigned[]){10}, (unsigned[]){0});
		rh_run(s, 100, all, BIT(B));
	}
	print_message("# relayed %u ms after the direct RTT went from 10 to 80 ms\n", t);
	assert_int_equal(rh_peers[B].via, C);
	assert_true(t >= 1000); /* a sustained window, not one probe */
	assert_true(slave_show_has(s, "path b slow via c"));
	assert_int_equal(slave_metric(s, "peak_overlay_resil_paths_slow_total"), 1);
	/* 27 ms: between going (> 30) and coming back (<= 25): stays relayed */
	rh_set_rtt(B, 27);
	for (t = 0; t < 6000; t += 1000) {
		report(C, true, 1, (uint32_t[]){B}, (unsigned[]){10}, (unsigned[]){0});
		rh_run(s, 1000, all, BIT(B));
		assert_int_equal(rh_peers[B].via, C);
	}
	rh_set_rtt(B, 10); /* recovered */
	for (t = 0; t < 10000 && rh_peers[B].via != GW_DIRECT; t += 100) {
		if (!(t % 5000))
			report(C, true, 1, (uint32_t[]){B}, (unsigned[]){10}, (unsigned[]){0});
		rh_run(s, 100, all, BIT(B));
	}
	print_message("# direct again %u ms after it recovered\n", t);
	assert_int_equal(rh_peers[B].via, GW_DIRECT);
	assert_int_equal(slave_metric(s, "peak_overlay_resil_paths_fast_again_total"), 1);
	rh_set_rtt(B, 27); /* and from direct, 27 ms stays direct */
	for (t = 0; t < 6000; t += 1000) {
		report(C, true, 1, (uint32_t[]){B}, (unsigned[]){10}, (unsigned[]){0});
		rh_run(s, 1000, all, BIT(B));
		assert_int_equal(rh_peers[B].via, GW_DIRECT);
	}
	assert_int_equal(slave_metric(s, "peak_overlay_resil_paths_slow_total"), 1);
	assert_int_equal(slave_metric(s, "peak_overlay_resil_paths_down_total"), 0);
	rh_free(s);
}

/* A path relayed for its RTT and no longer in use goes direct when its relay dies (was: it
 * stayed relayed through the dead gateway, and an anycast flow moved to it was lost:
 * gaps.py --only anycast --same-bed, A's path to the far member C relayed through B). */
static void test_slow_path_not_in_use_direct_when_its_relay_dies(void **state)
{
	(void)state;
	struct ov_slave *s = rh_make(2, 16000, 25);
	rh_set_rtt(B, 10);
	rh_set_rtt(C, 10);
	unsigned all = BIT(B) | BIT(C);
	rh_run(s, 3000, all, all);
	rh_set_rtt(B, 80);
	for (unsigned t = 0; t < 10000 && rh_peers[B].via == GW_DIRECT; t += 100) {
		if (!(t % 2000))
			report(C, true, 1, (uint32_t[]){B}, (unsigned[]){10}, (unsigned[]){0});
		rh_run(s, 100, all, all);
	}
	assert_int_equal(rh_peers[B].via, C);
	rh_run(s, 3100, all, BIT(C)); /* b's flows moved away: b not in use any more */
	assert_int_equal(rh_peers[B].via, C);
	unsigned t = 0;
	for (; t < 3000 && rh_peers[B].via != GW_DIRECT; t += 10)
		rh_run(s, 10, BIT(B), BIT(C)); /* c dies, and is given up */
	print_message("# b direct %u ms after its relay c died\n", t);
	assert_int_equal(rh_peers[B].via, GW_DIRECT); /* not through the dead c */
	assert_true(t <= 800);                        /* c given up after dead-ms, then b */
	assert_true(slave_show_has(s, "path c down"));
	assert_true(slave_show_has(s, "path b direct"));
	rh_free(s);
}

/* A relay that carries a peer in use is judged as in use: when it dies it is given up after
 * dead-ms and the peer it carried goes direct (was: the relay, not sent to itself, was never
 * judged down, and the peer's packets went into the dead relay until it had been silent for
 * three keepalives: gaps.py --only anycast --same-bed, gC's answers to A through the dead gB). */
static void test_dead_relay_of_a_peer_in_use_given_up(void **state)
{
	(void)state;
	struct ov_slave *s = rh_make(2, 16000, 25);
	rh_set_rtt(B, 10);
	rh_set_rtt(C, 10);
	unsigned all = BIT(B) | BIT(C);
	rh_run(s, 3000, all, BIT(B));
	rh_set_rtt(B, 80);
	for (unsigned t = 0; t < 10000 && rh_peers[B].via == GW_DIRECT; t += 100) {
		if (!(t % 2000))
			report(C, true, 1, (uint32_t[]){B}, (unsigned[]){10}, (unsigned[]){0});
		rh_run(s, 100, all, BIT(B));
	}
	assert_int_equal(rh_peers[B].via, C); /* b in use, slow, through c (not sent to) */
	unsigned t = 0;
	for (; t < 3000 && rh_peers[B].via != GW_DIRECT; t += 10)
		rh_run(s, 10, BIT(B), BIT(B)); /* c dies */
	print_message("# b direct %u ms after its relay c died\n", t);
	assert_int_equal(rh_peers[B].via, GW_DIRECT);
	assert_true(t <= 800); /* dead-ms and a tick or two; was 3.5 s (three keepalives) */
	assert_true(slave_show_has(s, "path c down"));
	rh_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_without_linkstate_lowest_rtt),
	    cmocka_unit_test(test_relay_that_reaches_the_destination_well),
	    cmocka_unit_test(test_lossy_or_unheard_destination_not_a_relay),
	    cmocka_unit_test(test_stale_reports_expire),
	    cmocka_unit_test(test_malformed_linkstate_dropped_and_counted),
	    cmocka_unit_test(test_own_reports_within_the_budget),
	    cmocka_unit_test(test_slow_direct_path_relayed_with_hysteresis),
	    cmocka_unit_test(test_slow_path_not_in_use_direct_when_its_relay_dies),
	    cmocka_unit_test(test_dead_relay_of_a_peer_in_use_given_up),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
