/* Defect: a watch event without its kv object (a line of etcd's /v3/watch stream whose
 * events hold {"type":"DELETE"} alone) was skipped silently by etcd_watch: the line's other
 * events were handed over and ETCD_WATCH_EVENTS returned, so a follower (peak dns, a
 * standby controller) went on with a change it never saw. Now such a line ends the watch:
 * none of its events is handed over and etcd_watch returns ETCD_WATCH_RESYNC (read
 * afresh). The member is a socket of this test on loopback speaking the gateway's wire
 * format (a chunked stream of JSON lines); every wait has a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <unistd.h>

#include "../../src/etcd/etcd.h"
#include "../controlplane/fake_member.h"

static void on_ev(void *arg, json_t *kv, bool deleted)
{
	(void)kv;
	(void)deleted;
	(*(unsigned *)arg)++;
}

static void test_event_without_kv(void **unused)
{
	(void)unused;
	struct etcd e = {0};
	struct fake_member m;
	char err[128], req[4096], b[512];
	int r;
	unsigned n = 0;
	member_listen(&m);
	assert_int_equal(etcd_open(&e, "test", m.url, 2000, err, sizeof(err)), 0);
	member_take_watch(&m, &e, on_ev, &n, req, sizeof(req));
	const char *line = "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"kv\":"
	                   "{\"key\":\"L3BlYWsvc3ZjL3g=\",\"mod_revision\":\"8\",\"value\":"
	                   "\"bWFwIHgK\"}},{\"type\":\"DELETE\"}]}}";
	snprintf(b, sizeof(b),
	         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	         "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\n\r\n",
	         strlen(line) + 1, line);
	send_all(m.c, b);
	uint64_t end = now_ms() + DEADLINE_MS;
	while ((r = etcd_watch(&e, "/peak/svc/", 7, on_ev, &n)) == 0) {
		struct pollfd p = {.fd = m.c, .events = 0};
		assert_true(now_ms() < end);
		poll(&p, 1, 10);
	}
	assert_int_equal(r, ETCD_WATCH_RESYNC);
	assert_int_equal(n, 0);
	etcd_close(&e);
	member_close(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_event_without_kv),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
