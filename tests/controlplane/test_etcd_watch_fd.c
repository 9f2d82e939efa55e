/* The etcd client's watch socket (src/etcd: etcd_watch_fd), which peak dns --store etcd
 * polls beside its tick: -1 without a stream; once the stream is open, the very socket
 * connected to the member, readable as soon as the member sends an event, after which
 * etcd_watch hands the caller each event's record (the value it carries: no read per
 * change), and a compaction says "read afresh". The member is a socket of this test on loopback
 * speaking the gateway's wire format (a chunked stream of JSON lines). Every wait has a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "../../src/etcd/etcd.h"
#include "fake_member.h"

/* The events etcd_watch handed over: their keys and values (base64) and DELETE flags. */
struct evs {
	unsigned n;
	char key[4][64], value[4][64];
	bool deleted[4];
};

static void on_ev(void *arg, json_t *kv, bool deleted)
{
	struct evs *x = arg;
	const char *k = json_string_value(json_object_get(kv, "key"));
	const char *v = json_string_value(json_object_get(kv, "value"));
	if (x->n < 4) {
		snprintf(x->key[x->n], sizeof(x->key[0]), "%s", k ? k : "");
		snprintf(x->value[x->n], sizeof(x->value[0]), "%s", v ? v : "");
		x->deleted[x->n] = deleted;
	}
	x->n++;
}

static void test_watch_fd(void **unused)
{
	(void)unused;
	struct etcd e = {0};
	struct evs got_ev = {0};
	struct fake_member m;
	char err[128], req[4096];
	int fd, one = 1;
	member_listen(&m);
	assert_int_equal(etcd_open(&e, "test", m.url, 2000, err, sizeof(err)), 0);
	assert_int_equal(etcd_watch_fd(&e), -1); /* no stream yet */

	/* the stream starts: drive it until the member has the whole watch request */
	member_take_watch(&m, &e, on_ev, &got_ev, req, sizeof(req));
	assert_non_null(strstr(req, "POST /v3/watch "));
	setsockopt(m.c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	send_all(m.c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	              "Transfer-Encoding: chunked\r\n\r\n");
	send_chunk(m.c, "{\"result\":{\"header\":{\"revision\":\"7\"},\"created\":true}}");

	/* the socket it gives is the one connected to this member */
	uint64_t end = now_ms() + DEADLINE_MS;
	while ((fd = etcd_watch_fd(&e)) == -1) {
		assert_true(now_ms() < end);
		assert_int_equal(etcd_watch(&e, "/peak/svc/", 7, on_ev, &got_ev), 0);
		usleep(1000);
	}
	struct sockaddr_in6 peer, mine;
	socklen_t pl = sizeof(peer), ml = sizeof(mine);
	assert_int_equal(getpeername(fd, (struct sockaddr *)&peer, &pl), 0);
	assert_int_equal(getpeername(m.c, (struct sockaddr *)&mine, &ml), 0);
	assert_int_equal(peer.sin6_port, m.addr.sin6_port);
	struct sockaddr_in6 local;
	socklen_t ll = sizeof(local);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&local, &ll), 0);
	assert_int_equal(local.sin6_port, mine.sin6_port);

	/* until the "created" line is read, a read gives no change; then the socket is quiet */
	end = now_ms() + DEADLINE_MS;
	for (;;) {
		assert_true(now_ms() < end);
		assert_int_equal(etcd_watch(&e, "/peak/svc/", 7, on_ev, &got_ev), 0);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 20) == 0 && e.wbuf.len == 0)
			break;
	}

	/* an event: the socket wakes the caller, and etcd_watch says so */
	send_chunk(m.c, "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"kv\":"
	                "{\"key\":\"L3BlYWsvc3ZjL3g=\",\"mod_revision\":\"8\",\"value\":"
	                "\"bWFwIHgK\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"L3BlYWsvc3ZjL3k=\","
	                "\"mod_revision\":\"9\"}}]}}");
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, DEADLINE_MS), 1);
	int r = 0;
	end = now_ms() + DEADLINE_MS;
	while ((r = etcd_watch(&e, "/peak/svc/", 7, on_ev, &got_ev)) == 0) {
		assert_true(now_ms() < end); /* (a line split across reads: the rest follows) */
		poll(&p, 1, 10);
	}
	assert_int_equal(r, ETCD_WATCH_EVENTS);
	/* both events, in order, with the value the first one carries */
	assert_int_equal(got_ev.n, 2);
	assert_string_equal(got_ev.key[0], "L3BlYWsvc3ZjL3g=");
	assert_string_equal(got_ev.value[0], "bWFwIHgK");
	assert_false(got_ev.deleted[0]);
	assert_string_equal(got_ev.key[1], "L3BlYWsvc3ZjL3k=");
	assert_true(got_ev.deleted[1]);

	/* compacted past the revision asked: read afresh (the stream ends) */
	send_chunk(m.c, "{\"result\":{\"header\":{\"revision\":\"20\"},\"compact_revision\":"
	                "\"15\",\"canceled\":true}}");
	end = now_ms() + DEADLINE_MS;
	while ((r = etcd_watch(&e, "/peak/svc/", 7, on_ev, &got_ev)) == 0) {
		assert_true(now_ms() < end);
		poll(&p, 1, 10);
	}
	assert_int_equal(r, ETCD_WATCH_RESYNC);
	assert_int_equal(got_ev.n, 2);

	etcd_close(&e);
	member_close(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_watch_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
