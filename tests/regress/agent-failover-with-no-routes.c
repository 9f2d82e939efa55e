/* Regression: agent_failover_drain() copied the node's wanted routes with memcpy() from
 * *want even when there were none (*want NULL, *n 0), which UBSan aborts on ("null pointer
 * passed as argument 2"). It happened in the demo under the ASan build: both pods of a node
 * went down before the controller's map gave the node any route, and the agent died. */
#include "../unit/test.h"

#include <stdlib.h>

#include "agent.h"

static const char yaml[] = "zone: {name: svc.example., ns: [{name: ns1.svc.example.}]}\n"
                           "nodes: [{name: n1}, {name: n2}]\n"
                           "services:\n"
                           "  - name: b.svc.example.\n"
                           "    prefixes: [\"fd00:b::/64\"]\n"
                           "    slice: 72\n"
                           "    port: 8080\n"
                           "    endpoints:\n"
                           "      - {id: e1, address: \"fd00:1::1\", node: n1}\n"
                           "      - {id: e2, address: \"fd00:1::2\", node: n2}\n";

static bool down_all(unsigned svc, unsigned ep, void *arg)
{
	(void)svc, (void)ep, (void)arg;
	return true;
}

static void test_failover_with_no_routes(void **state)
{
	(void)state;
	struct peak_config *c = NULL;
	char err[CFG_ERRLEN];
	struct agent_drain d = {0};
	struct rt6 *want = NULL;
	size_t n = 0, moved = 99;
	assert_int_equal(
	    config_parse("t", (const uint8_t *)yaml, sizeof(yaml) - 1, &c, err, sizeof(err)), 0);
	assert_int_equal(agent_failover_drain(c, "n1", down_all, NULL, &d, 0, &want, &n, &moved),
	                 0);
	assert_int_equal(n, 0);
	assert_int_equal(moved, 0);
	free(want);
	agent_drain_fini(&d);
	config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_failover_with_no_routes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
