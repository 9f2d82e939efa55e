/* The agent's pure parts: the blocks of an 'ep' line (the grammar, then agent_blocks_fit in
 * routes.c), and the routes a node wants, their local failover and the drain (routes.c), on
 * a small configuration. */
#include "test.h"

#include <errno.h>
#include <stdlib.h>

#include "agent.h"
#include "peak/ctlproto.h"

static const char yaml[] = "zone: {name: svc.example., ns: [{name: ns1.svc.example.}]}\n"
                           "nodes: [{name: n1}, {name: n2}]\n"
                           "services:\n"
                           "  - name: b.svc.example.\n"
                           "    prefixes: [\"fd00:b::/64\"]\n"
                           "    slice: 72\n"
                           "    port: 8080\n"
                           "    endpoints:\n"
                           "      - {id: e1, address: \"fd00:1::1\", node: n1}\n"
                           "      - {id: e2, address: \"fd00:1::2\", node: n1}\n"
                           "      - {id: e3, address: \"fd00:1::3\", node: n2}\n";

static struct peak_config *cfg_make(void)
{
	struct peak_config *c = NULL;
	char err[CFG_ERRLEN];
	int r = config_parse("test", (const uint8_t *)yaml, sizeof(yaml) - 1, &c, err, sizeof(err));
	if (r)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(r, 0);
	return c;
}

/* Parses "ep e1 BLOCKS" as the agent does: the grammar, then the fit in the service's space.
 * Returns the block count, or -1 if either refuses the line. */
static int ep_line(const struct ssa_space *sp, const char *blocks, struct ctl_msg *m)
{
	char line[CTL_LINE_MAX];
	int n = snprintf(line, sizeof(line), "ep e1%s%s", *blocks ? " " : "", blocks);
	if (ctl_parse(line, (size_t)n, m) || !agent_blocks_fit(sp, m->blocks, m->nblocks))
		return -1;
	return (int)m->nblocks;
}

static void test_ep_line_good(void **state)
{
	(void)state;
	struct peak_config *c = cfg_make();
	const struct ssa_space *sp = &c->svc[0].space;
	static struct ctl_msg m;
	assert_int_equal(ep_line(sp, "0/7 128/6 255/0", &m), 3);
	assert_int_equal(m.blocks[0].start, 0);
	assert_int_equal(m.blocks[0].log2, 7);
	assert_int_equal(m.blocks[1].start, 128);
	assert_int_equal(m.blocks[2].start, 255);
	assert_int_equal(m.blocks[2].log2, 0);
	assert_int_equal(ep_line(sp, "", &m), 0);    /* owns nothing */
	assert_int_equal(ep_line(sp, "0/8", &m), 1); /* the whole space */
	assert_true(agent_blocks_fit(sp, NULL, 0));
	config_free(c);
}

static void test_ep_line_refused(void **state)
{
	(void)state;
	/* the grammar's refusals and, from "256/0" on, the space's (256 slices) */
	static const char *bad[] = {
	    "-1/7",          "+64/6", "0128/6",    "0/07",        "64/6 ",   " 64/6",
	    "64/6  0/6",     "64",    "64/",       "/6",          "64/6x",   "6a/1",
	    "256/0",         "65/6",  "0/9",       "0/25",        "0/-1",    "0/4294967296",
	    "99999999999/0", "0/7\n", "0/7,128/7", "255/0 256/0", "32768/0", "16777215/0",
	};
	struct peak_config *c = cfg_make();
	static struct ctl_msg m;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		int r = ep_line(&c->svc[0].space, bad[k], &m);
		if (r != -1)
			fprintf(stderr, "accepted: '%s'\n", bad[k]);
		assert_int_equal(r, -1);
	}
	/* a block the grammar cannot refuse, as it does not know the service */
	struct assign_block b[] = {{0, 7}, {256, 0}};
	assert_true(agent_blocks_fit(&c->svc[0].space, b, 1));
	assert_false(agent_blocks_fit(&c->svc[0].space, b, 2));
	config_free(c);
}

/* Routes: sorted, disjoint, inside the service, via n1's endpoints only; returns their
 * slices (of 256). */
static unsigned check_routes(const struct peak_config *c, const struct rt6 *r, size_t n)
{
	unsigned total = 0;
	for (size_t k = 0; k < n; k++) {
		assert_true(prefix_contains(&c->svc[0].space.pfx[0], &r[k].dst));
		assert_true(!memcmp(r[k].via, c->svc[0].ep[0].addr, 16) ||
		            !memcmp(r[k].via, c->svc[0].ep[1].addr, 16));
		if (k) {
			assert_true(rt6_cmp(&r[k - 1], &r[k]) < 0);
			assert_false(prefix_contains(&r[k - 1].dst, &r[k].dst));
		}
		total += 1u << (72 - r[k].dst.len);
	}
	return total;
}

static void test_node_routes_from_file_and_map(void **state)
{
	(void)state;
	struct peak_config *c = cfg_make();
	struct rt6 *r;
	size_t n;
	/* from the file: n1 holds e1's and e2's shares, about two thirds */
	assert_int_equal(agent_node_routes(c, "n1", NULL, &r, &n), 0);
	unsigned s = check_routes(c, r, n);
	assert_true(s >= 170 && s <= 172);
	free(r);
	assert_int_equal(agent_node_routes(c, "n9", NULL, &r, &n), 0);
	assert_int_equal(n, 0);
	free(r);
	/* from a map: e1 0/7, e2 128/6, e3 (on n2) 192/6 */
	struct assign_block b1 = {0, 7}, b2 = {128, 6}, b3 = {192, 6};
	struct assign_block *blocks[3] = {&b1, &b2, &b3};
	size_t nblocks[3] = {1, 1, 1};
	struct svc_map m = {.have = true, .nep = 3, .blocks = blocks, .nblocks = nblocks};
	assert_int_equal(agent_node_routes(c, "n1", &m, &r, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(check_routes(c, r, n), 192);
	assert_int_equal(r[0].dst.len, 65);
	assert_memory_equal(r[0].via, c->svc[0].ep[0].addr, 16);
	assert_int_equal(r[1].dst.len, 66);
	assert_memory_equal(r[1].via, c->svc[0].ep[1].addr, 16);
	free(r);
	config_free(c);
}

static bool down_e1(unsigned svc, unsigned ep, void *arg)
{
	(void)svc;
	(void)arg;
	return ep == 0;
}

static bool down_all(unsigned svc, unsigned ep, void *arg)
{
	(void)svc;
	(void)ep;
	(void)arg;
	return true;
}

static void test_failover(void **state)
{
	(void)state;
	struct peak_config *c = cfg_make();
	struct rt6 *r;
	size_t n, via_e1 = 0;
	assert_int_equal(agent_node_routes(c, "n1", NULL, &r, &n), 0);
	for (size_t k = 0; k < n; k++)
		via_e1 += !memcmp(r[k].via, c->svc[0].ep[0].addr, 16);
	assert_true(via_e1 > 0);
	unsigned slices = check_routes(c, r, n);
	/* nothing local to move to: nothing moves */
	assert_int_equal(agent_failover(c, "n1", down_all, NULL, r, n), 0);
	/* e1 down: its routes go to e2, the same prefixes, still sorted */
	assert_int_equal(agent_failover(c, "n1", down_e1, NULL, r, n), via_e1);
	for (size_t k = 0; k < n; k++)
		assert_memory_equal(r[k].via, c->svc[0].ep[1].addr, 16);
	assert_int_equal(check_routes(c, r, n), slices);
	free(r);
	config_free(c);
}

/* n1's routes under a map: e1 gets b1 (or nothing), e2 128/6, e3 (on n2) the rest. */
static void routes_of_map(const struct peak_config *c, const struct assign_block *b1,
                          struct rt6 **r, size_t *n)
{
	struct assign_block e2 = {128, 6}, e3[2] = {{0, 7}, {192, 6}};
	struct assign_block *blocks[3] = {(struct assign_block *)b1, &e2, b1 ? &e3[1] : e3};
	size_t nblocks[3] = {b1 ? 1 : 0, 1, b1 ? 1 : 2};
	struct svc_map m = {.have = true, .nep = 3, .blocks = blocks, .nblocks = nblocks};
	assert_int_equal(agent_node_routes(c, "n1", &m, r, n), 0);
}

static void test_drain(void **state)
{
	(void)state;
	struct peak_config *c = cfg_make();
	struct agent_drain d = {0};
	struct assign_block b1 = {0, 7};
	struct rt6 *r;
	size_t n, moved;
	const uint8_t *e2 = c->svc[0].ep[1].addr;
	/* all up: nothing moves, nothing kept */
	routes_of_map(c, &b1, &r, &n);
	assert_int_equal(n, 2);
	assert_int_equal(agent_failover_drain(c, "n1", down_all, NULL, &d, 0, &r, &n, &moved), 0);
	assert_int_equal(moved, 0); /* nothing live to move to */
	free(r);
	/* e1 down: its /65 fails over to e2 */
	routes_of_map(c, &b1, &r, &n);
	assert_int_equal(agent_failover_drain(c, "n1", down_e1, NULL, &d, 1000, &r, &n, &moved), 0);
	assert_int_equal(moved, 1);
	assert_int_equal(n, 2);
	assert_memory_equal(r[0].via, e2, 16);
	assert_int_equal(r[0].dst.len, 65);
	struct prefix p65 = r[0].dst;
	free(r);
	/* the controller's new map gives e1's slices to n2: the /65 stays here, via e2, for
	 * DRAIN_MS (make before break) */
	for (uint64_t now = 1500; now < 1000 + 500 + DRAIN_MS; now += 1000) {
		routes_of_map(c, NULL, &r, &n);
		assert_int_equal(n, 1);
		assert_int_equal(
		    agent_failover_drain(c, "n1", down_e1, NULL, &d, now, &r, &n, &moved), 0);
		assert_int_equal(n, 2);
		assert_int_equal(moved, 0);
		assert_true(agent_drain_has(&d, &p65));
		assert_int_equal(prefix_cmp(&r[0].dst, &p65), 0);
		assert_memory_equal(r[0].via, e2, 16);
		assert_true(rt6_cmp(&r[0], &r[1]) < 0);
		free(r);
	}
	/* a draining route whose live pod has died too is let go at once */
	routes_of_map(c, NULL, &r, &n);
	assert_int_equal(agent_failover_drain(c, "n1", down_all, NULL, &d, 2000, &r, &n, &moved),
	                 0);
	assert_int_equal(n, 1);
	free(r);
	/* and once its time is up, it goes */
	routes_of_map(c, NULL, &r, &n);
	assert_int_equal(
	    agent_failover_drain(c, "n1", down_e1, NULL, &d, 1500 + DRAIN_MS, &r, &n, &moved), 0);
	assert_int_equal(n, 1);
	assert_false(agent_drain_has(&d, &p65));
	free(r);
	agent_drain_fini(&d);
	config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ep_line_good),
	    cmocka_unit_test(test_ep_line_refused),
	    cmocka_unit_test(test_node_routes_from_file_and_map),
	    cmocka_unit_test(test_failover),
	    cmocka_unit_test(test_drain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
