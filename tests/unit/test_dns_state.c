/* The DNS server's serving state at scale: the steering counter registry (ids found again,
 * names intact, per-worker cells summed) and dns_state_update (a changed service rebuilt,
 * every other service's tables shared with the old state, answers byte-identical to a full
 * build from the same live state). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "answer.h"
#include "peak/config.h"

enum { NSVC = 40, NEP = 12, NCOUNTERS = 5000 };

static char *make_config(void)
{
	size_t cap = 1 << 20, n = 0;
	char *b = malloc(cap);
	assert_non_null(b);
	n += (size_t)snprintf(b + n, cap - n,
	                      "zone:\n  name: svc.example.\n  ns:\n"
	                      "    - {name: ns1.svc.example., address: \"2001:db8:53::1\"}\n"
	                      "  soa: {primary: ns1.svc.example., contact: h.svc.example., "
	                      "serial: 1, minimum: 20}\nservices:\n");
	for (int s = 0; s < NSVC; s++) {
		n += (size_t)snprintf(
		    b + n, cap - n,
		    "  - name: s%d.svc.example.\n    prefixes: [2001:db8:%x::/64]\n"
		    "    slice: 74\n    endpoints:\n",
		    s, s);
		for (int e = 0; e < NEP; e++)
			n += (size_t)snprintf(b + n, cap - n,
			                      "      - {id: e%d, address: \"fd00:%x::%x\"}\n", e, s,
			                      e + 1);
	}
	return b;
}

static struct peak_config *parse(const char *text)
{
	struct peak_config *cfg = NULL;
	char err[CFG_ERRLEN];
	int r = config_parse("test", (const uint8_t *)text, strlen(text), &cfg, err, sizeof(err));
	if (r)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(r, 0);
	return cfg;
}

struct seen {
	unsigned n;
	uint64_t total;
	bool found;
};

static void each(const struct steer_counter *c, uint64_t total, void *arg)
{
	struct seen *s = arg;
	s->n++;
	s->total += total;
	if (!strcmp(c->service, "s7.svc.example.") && !strcmp(c->endpoint, "e3"))
		s->found = true;
}

/* Thousands of counters: each (service, endpoint) gets one id, found again on the next
 * build (the registry outlives states), and the per-worker cells add up in the totals. */
static void test_counters(void **state)
{
	(void)state;
	steer_counters_init(3);
	char *text = make_config();
	struct dnsd_dyn dyn = {0};
	char err[CFG_ERRLEN];
	struct dns_state *a = dns_state_build(parse(text), &dyn, err, sizeof(err));
	struct dns_state *b = dns_state_build(parse(text), &dyn, err, sizeof(err));
	assert_non_null(a);
	assert_non_null(b);
	for (int s = 0; s < NSVC; s++)
		for (int e = 0; e < NEP; e++)
			assert_int_equal(a->svc[s]->counter[e], b->svc[s]->counter[e]);
	assert_int_not_equal(a->svc[0]->counter[0], a->svc[0]->counter[1]);
	assert_int_not_equal(a->svc[0]->counter[0], a->svc[1]->counter[0]);
	uint32_t id = a->svc[7]->counter[3];
	*steer_cell(0, id) += 5;
	*steer_cell(2, id) += 7;
	struct seen sn = {0};
	steer_counters_each(each, &sn);
	assert_int_equal(sn.n, NSVC * NEP);
	assert_int_equal(sn.total, 12);
	assert_true(sn.found);
	dns_state_free(a);
	dns_state_free(b);
	dnsd_dyn_fini(&dyn);
	steer_counters_free();
	/* many more than one chunk of cells, the hash index grown several times */
	size_t cap = (size_t)NCOUNTERS * 64 + 4096, n = 0;
	char *big = malloc(cap);
	assert_non_null(big);
	n += (size_t)snprintf(big + n, cap - n,
	                      "zone:\n  name: z.example.\n  ns: [{name: ns.elsewhere.example.}]\n"
	                      "  soa: {primary: ns.elsewhere.example., contact: h.z.example.}\n"
	                      "services:\n  - name: big.z.example.\n    prefixes: [2001:db8::/48]\n"
	                      "    slice: 63\n    endpoints:\n");
	for (int e = 0; e < NCOUNTERS; e++)
		n += (size_t)snprintf(big + n, cap - n,
		                      "      - {id: p%d, address: \"fd00::%x\"}\n", e, e + 1);
	a = dns_state_build(parse(big), &dyn, err, sizeof(err));
	assert_non_null(a);
	memset(&sn, 0, sizeof(sn));
	steer_counters_each(each, &sn);
	assert_int_equal(sn.n, NCOUNTERS);
	for (int e = 0; e < NCOUNTERS; e++)
		assert_int_equal(a->svc[0]->counter[e], (uint32_t)e);
	dns_state_free(a);
	dnsd_dyn_fini(&dyn);
	steer_counters_free();
	free(big);
	free(text);
}

static size_t query(uint8_t *buf, const char *name, uint16_t type)
{
	struct dns_writer w;
	struct dns_name n;
	dns_name_parse(name, &n);
	dns_writer_init(&w, buf, 512, 0x1234, DNS_F_RD);
	dns_writer_question(&w, &n, type, DNS_C_IN);
	return (size_t)dns_writer_finish(&w);
}

/* The answers of two states to the same queries with the same random numbers. */
static void assert_same_answers(const struct dns_state *x, const struct dns_state *y)
{
	static struct dnsd_stats stats;
	static const uint16_t types[] = {DNS_T_AAAA, DNS_T_APL, DNS_T_TXT, DNS_T_SOA};
	struct dnsd_client cl = {.addr = {0x20, 0x01, 0x0d, 0xb8, 0, 1}, .v6 = true};
	uint8_t q[512], ox[DNSD_UDP_MAX], oy[DNSD_UDP_MAX];
	char name[64];
	for (int s = 0; s < NSVC; s++)
		for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
			for (int k = 0; k < 8; k++) {
				struct dnsd_ctx cx = {
				    .rng = (uint64_t)k + 1, .now = 1767225600, .stats = &stats};
				struct dnsd_ctx cy = cx;
				snprintf(name, sizeof(name), "%ss%d.svc.example.",
				         types[t] == DNS_T_TXT ? "_ssa." : "", s);
				size_t ql = query(q, name, types[t]);
				size_t lx = dnsd_answer(x, &cx, q, ql, &cl, false, ox, sizeof(ox));
				size_t ly = dnsd_answer(y, &cy, q, ql, &cl, false, oy, sizeof(oy));
				assert_true(lx > 0);
				assert_int_equal(lx, ly);
				assert_memory_equal(ox, oy, lx);
			}
}

/* A health change rebuilds its service only; the rest is shared, answers are as a full
 * build's, and the old state stays whole (workers may still read it). */
static void test_update(void **state)
{
	(void)state;
	char *text = make_config();
	struct dnsd_dyn dyn = {0};
	char err[CFG_ERRLEN];
	struct dns_state *a = dns_state_build(parse(text), &dyn, err, sizeof(err));
	assert_non_null(a);
	struct dns_name s5;
	dns_name_parse("s5.svc.example.", &s5);
	assert_int_equal(dnsd_dyn_set(&dyn, &s5, "e2", 0, -1), 0);
	assert_int_equal(dnsd_dyn_set(&dyn, &s5, "e4", -1, 7), 0);
	assert_int_equal(dnsd_dyn_set(&dyn, &s5, "nope", 0, -1), -ENOENT);
	struct dns_state *b = dns_state_update(a, &dyn, err, sizeof(err));
	assert_non_null(b);
	assert_true(b->serial > a->serial);
	assert_ptr_equal(a->shared, b->shared);
	assert_ptr_equal(a->cfg, b->cfg);
	for (int s = 0; s < NSVC; s++)
		if (s == 5)
			assert_ptr_not_equal(a->svc[s], b->svc[s]);
		else
			assert_ptr_equal(a->svc[s], b->svc[s]);
	assert_int_equal(b->svc[5]->ep_nslice[2], 0); /* down: its slices moved */
	assert_int_not_equal(a->svc[5]->ep_nslice[2], 0);
	/* nothing changed since: the next update shares every service */
	struct dns_state *c = dns_state_update(b, &dyn, err, sizeof(err));
	assert_non_null(c);
	for (int s = 0; s < NSVC; s++)
		assert_ptr_equal(b->svc[s], c->svc[s]);
	dns_state_free(c);
	/* a full build from the same live state (a reload of the same file) answers the same,
	 * and keeps every service's slice runs as they were (copied as they are when its
	 * endpoints did not change: no expand, settle and pack again) */
	uint32_t nruns[NSVC], *starts[NSVC];
	for (int s = 0; s < NSVC; s++) {
		assert_null(dyn.svc[s].a.owner); /* (packed between changes) */
		nruns[s] = dyn.svc[s].nruns;
		starts[s] = malloc(nruns[s] * sizeof(**starts));
		assert_non_null(starts[s]);
		memcpy(starts[s], dyn.svc[s].run_start, nruns[s] * sizeof(**starts));
	}
	struct dns_state *full = dns_state_build(parse(text), &dyn, err, sizeof(err));
	assert_non_null(full);
	for (int s = 0; s < NSVC; s++) {
		assert_int_equal(dyn.svc[s].nruns, nruns[s]);
		assert_memory_equal(dyn.svc[s].run_start, starts[s], nruns[s] * sizeof(**starts));
		free(starts[s]);
	}
	assert_int_equal(full->svc[5]->ep_nslice[2], 0);
	assert_same_answers(b, full);
	dns_state_free(a); /* b still whole */
	assert_same_answers(b, full);
	dns_state_free(b);
	dns_state_free(full);
	dnsd_dyn_fini(&dyn);
	steer_counters_free();
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counters),
	    cmocka_unit_test(test_update),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
