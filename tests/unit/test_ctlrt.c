/* Endpoints added at run time (include/peak/ctlrt.h): the add and del lines an agent
 * collects before a map, composed with the file's endpoints (the file wins, the last line
 * naming an id wins, a del removes, bad addresses and too many endpoints are refused), and
 * the scan of a stored record's add lines, many thousands in one service in linear time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"

#include "peak/ctlrt.h"
#include "peak/dns.h"

static int take(struct ctlrt *r, const char *line, uint32_t *dropped, const char **why)
{
	struct ctl_msg m;
	assert_int_equal(ctl_parse(line, strlen(line), &m), 0);
	return ctlrt_take(r, &m, dropped, why);
}

static void take_ok(struct ctlrt *r, const char *line)
{
	uint32_t dropped = 0;
	const char *why = NULL;
	assert_int_equal(take(r, line, &dropped, &why), 0);
	assert_int_equal(dropped, 0);
}

static struct cfg_endpoint file_ep(const char *id, uint8_t last)
{
	struct cfg_endpoint e = {.weight = 1, .line = 7, .addr = {0x20, 0x01, 0x0d, 0xb8}};
	snprintf(e.id, sizeof(e.id), "%s", id);
	snprintf(e.node, sizeof(e.node), "node1");
	e.addr[15] = last;
	return e;
}

static void test_compose(void **state)
{
	(void)state;
	struct ctlrt r = {0};
	struct cfg_endpoint file[3] = {file_ep("pod-b", 0xb), file_ep("pod-a", 0xa)}, *out = NULL;
	file[2] = file_ep("old-rt", 0xf);
	file[2].line = 0; /* one the last map added: not in these lines, so it goes */
	unsigned n = 0, shadowed = 0;
	take_ok(&r, "add api.svc.example. pod-z 2001:db8::1 3 node2");
	take_ok(&r, "add api.svc.example. pod-c 2001:db8::2 1");
	take_ok(&r, "add API.svc.example. pod-a 2001:db8::99 1 node1"); /* the file's */
	take_ok(&r, "add api.svc.example. pod-d 2001:db8::4 1 node1");
	take_ok(&r, "del api.svc.example. pod-d");
	take_ok(&r, "add api.svc.example. pod-c 2001:db8::5 2 node1"); /* the last one wins */
	take_ok(&r, "del api.svc.example. pod-y");
	take_ok(&r, "del api.svc.example. pod-b"); /* the file's: kept */
	assert_true(ctlrt_for(&r, "api.svc.example."));
	assert_false(ctlrt_for(&r, "web.svc.example."));
	assert_int_equal(ctlrt_compose(&r, file, 3, &out, &n, &shadowed), 0);
	assert_int_equal(n, 4);
	assert_int_equal(shadowed, 1);
	assert_string_equal(out[0].id, "pod-b"); /* the file's, in the file's order */
	assert_string_equal(out[1].id, "pod-a");
	assert_int_equal(out[1].addr[15], 0xa);
	assert_int_equal(out[1].line, 7);
	assert_string_equal(out[2].id, "pod-c"); /* then the run-time ones, by id */
	assert_int_equal(out[2].addr[15], 5);
	assert_int_equal(out[2].weight, 2);
	assert_string_equal(out[2].node, "node1");
	assert_int_equal(out[2].line, 0);
	assert_string_equal(out[3].id, "pod-z");
	assert_string_equal(out[3].node, "node2");
	assert_int_equal(r.n, 0); /* used up */
	free(out);
	/* no lines: the file's alone (the run-time ones of the last map go) */
	assert_int_equal(ctlrt_compose(&r, file, 3, &out, &n, &shadowed), 0);
	assert_int_equal(n, 2);
	free(out);
	ctlrt_free(&r);
}

static void test_refused(void **state)
{
	(void)state;
	struct ctlrt r = {0};
	uint32_t dropped = 0;
	const char *why = NULL;
	static const char *const bad[] = {
	    "add a.svc.example. x :: 1",
	    "add a.svc.example. x ::1 1",
	    "add a.svc.example. x ff02::1 1",
	    "add a.svc.example. x fe80::1 1",
	    "add a.svc.example. x ::ffff:192.0.2.1 1",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		why = NULL;
		assert_int_equal(take(&r, bad[k], &dropped, &why), -EINVAL);
		assert_non_null(why);
		assert_int_equal(r.n, 0);
	}
	struct ctl_msg m;
	assert_int_equal(ctl_parse("end", 3, &m), 0);
	assert_int_equal(ctlrt_take(&r, &m, &dropped, &why), -EINVAL);
	/* lines of another service drop those collected before them */
	take_ok(&r, "add a.svc.example. x 2001:db8::1 1");
	take_ok(&r, "add a.svc.example. y 2001:db8::2 1");
	assert_int_equal(take(&r, "add b.svc.example. z 2001:db8::3 1", &dropped, &why), 0);
	assert_int_equal(dropped, 2);
	assert_int_equal(r.n, 1);
	assert_true(ctlrt_for(&r, "b.svc.example."));
	ctlrt_reset(&r);
	/* at most CTLRT_MAX lines, and at most CTLRT_MAX endpoints with the file's */
	char line[128];
	for (unsigned k = 0; k < CTLRT_MAX; k++) {
		snprintf(line, sizeof(line), "add a.svc.example. e%u 2001:db8::%x:%x 1", k, k >> 16,
		         k & 0xffff);
		assert_int_equal(ctl_parse(line, strlen(line), &m), 0);
		assert_int_equal(ctlrt_take(&r, &m, &dropped, &why), 0);
	}
	assert_int_equal(take(&r, "add a.svc.example. one-more 2001:db8::1 1", &dropped, &why),
	                 -E2BIG);
	struct cfg_endpoint file = file_ep("f", 1), *out = NULL;
	unsigned n = 0, shadowed = 0;
	assert_int_equal(ctlrt_compose(&r, &file, 1, &out, &n, &shadowed), -E2BIG);
	assert_null(out);
	assert_int_equal(r.n, 0);
	ctlrt_free(&r);
}

static int one_svc(const struct dns_name *n, void *arg)
{
	struct dns_name want;
	(void)arg;
	assert_int_equal(dns_name_parse("big.svc.example.", &want), 0);
	if (dns_name_eq(n, &want))
		return 0;
	assert_int_equal(dns_name_parse("small.svc.example.", &want), 0);
	return dns_name_eq(n, &want) ? 1 : -1;
}

/* 100,000 adds in one service among other lines: every one read, in order (one realloc per
 * add made this quadratic in the controller's scan_adds). */
static void test_scan_many(void **state)
{
	(void)state;
	enum { N = 100000 };
	size_t cap = (size_t)N * 80 + 4096, len = 0;
	char *text = malloc(cap);
	assert_non_null(text);
	len += (size_t)snprintf(text + len, cap - len, "map big.svc.example.\nep x 0/8\nend\n");
	for (unsigned k = 0; k < N; k++) {
		len += (size_t)snprintf(text + len, cap - len,
		                        "add big.svc.example. p%u 2001:db8:1::%x:%x %u node1\n", k,
		                        k >> 16, k & 0xffff, k % 7 + 1);
		if (k % 1000 == 0)
			len += (size_t)snprintf(text + len, cap - len,
			                        "add small.svc.example. s%u 2001:db8:2::%x 1\n"
			                        "add other.svc.example. o 2001:db8:3::1 1\n"
			                        "add big.svc.example. bad 2001:db8::zz 1\n"
			                        "weight big.svc.example. p0 3\n",
			                        k, k / 1000 + 1);
	}
	struct cfg_endpoint *adds[2] = {NULL, NULL};
	unsigned nadd[2] = {0, 0};
	assert_int_equal(ctlrt_scan(text, len, one_svc, NULL, adds, nadd), 0);
	assert_int_equal(nadd[0], N);
	assert_int_equal(nadd[1], N / 1000);
	for (unsigned k = 0; k < N; k++) {
		char id[16];
		snprintf(id, sizeof(id), "p%u", k);
		assert_string_equal(adds[0][k].id, id);
		assert_int_equal(adds[0][k].weight, k % 7 + 1);
		assert_int_equal(adds[0][k].addr[15], k & 0xff);
		assert_int_equal(adds[0][k].line, 0);
	}
	assert_string_equal(adds[1][3].id, "s3000");
	/* a last line without '\n' counts too */
	const char *tail = "add small.svc.example. last 2001:db8:2::ff 1";
	assert_int_equal(ctlrt_scan(tail, strlen(tail), one_svc, NULL, adds, nadd), 0);
	assert_int_equal(nadd[1], N / 1000 + 1);
	assert_string_equal(adds[1][N / 1000].id, "last");
	free(adds[0]);
	free(adds[1]);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compose),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_scan_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
