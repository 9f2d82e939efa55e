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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../src/etcd/etcd.h"

enum { DEADLINE_MS = 10000 };

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void send_all(int fd, const char *s)
{
	size_t n = strlen(s);
	assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

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
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	socklen_t al = sizeof(a);
	char url[64], err[128], req[4096] = "", b[512];
	int l = socket(AF_INET6, SOCK_STREAM, 0), c = -1, r;
	unsigned n = 0;
	size_t got = 0;
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 4), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
	snprintf(url, sizeof(url), "http://[::1]:%u", ntohs(a.sin6_port));
	assert_int_equal(etcd_open(&e, "test", url, 2000, err, sizeof(err)), 0);
	uint64_t end = now_ms() + DEADLINE_MS;
	while (!strstr(req, "create_request")) { /* the whole watch request */
		assert_true(now_ms() < end);
		assert_true(etcd_watch(&e, "/peak/svc/", 7, on_ev, &n) >= 0);
		struct pollfd p = {.fd = c == -1 ? l : c, .events = POLLIN};
		if (poll(&p, 1, 10) != 1)
			continue;
		if (c == -1) {
			assert_true((c = accept(l, NULL, NULL)) >= 0);
			continue;
		}
		ssize_t k = recv(c, req + got, sizeof(req) - 1 - got, 0);
		assert_true(k > 0);
		got += (size_t)k;
		req[got] = 0;
	}
	const char *line = "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"kv\":"
	                   "{\"key\":\"L3BlYWsvc3ZjL3g=\",\"mod_revision\":\"8\",\"value\":"
	                   "\"bWFwIHgK\"}},{\"type\":\"DELETE\"}]}}";
	snprintf(b, sizeof(b),
	         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	         "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\n\r\n",
	         strlen(line) + 1, line);
	send_all(c, b);
	end = now_ms() + DEADLINE_MS;
	while ((r = etcd_watch(&e, "/peak/svc/", 7, on_ev, &n)) == 0) {
		struct pollfd p = {.fd = c, .events = 0};
		assert_true(now_ms() < end);
		poll(&p, 1, 10);
	}
	assert_int_equal(r, ETCD_WATCH_RESYNC);
	assert_int_equal(n, 0);
	etcd_close(&e);
	close(c);
	close(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_event_without_kv),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
