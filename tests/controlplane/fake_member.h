#pragma once
/* A fake etcd member for the etcd client's watch tests: a listening socket of the test on
 * loopback that speaks the JSON gateway's wire format (HTTP/1.1, a chunked stream of JSON
 * lines). Include after cmocka.h and src/etcd/etcd.h. Every wait has a deadline. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { DEADLINE_MS = 10000 };

struct fake_member {
	int l, c;                 /* listening socket; the watch stream's connection, or -1 */
	struct sockaddr_in6 addr; /* where it listens */
	char url[64];             /* http://[::1]:PORT, for etcd_open */
};

static inline uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static inline void send_all(int fd, const char *s)
{
	size_t n = strlen(s);
	assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* One HTTP/1.1 chunk holding line (with its newline). */
static inline void send_chunk(int fd, const char *line)
{
	char b[512];
	snprintf(b, sizeof(b), "%zx\r\n%s\n\r\n", strlen(line) + 1, line);
	send_all(fd, b);
}

/* The member listens on an ephemeral port of ::1. */
static inline void member_listen(struct fake_member *m)
{
	socklen_t al = sizeof(m->addr);
	memset(&m->addr, 0, sizeof(m->addr));
	m->addr.sin6_family = AF_INET6;
	m->addr.sin6_addr = in6addr_loopback;
	m->c = -1;
	m->l = socket(AF_INET6, SOCK_STREAM, 0);
	assert_true(m->l >= 0);
	assert_int_equal(bind(m->l, (struct sockaddr *)&m->addr, sizeof(m->addr)), 0);
	assert_int_equal(listen(m->l, 4), 0);
	assert_int_equal(getsockname(m->l, (struct sockaddr *)&m->addr, &al), 0);
	snprintf(m->url, sizeof(m->url), "http://[::1]:%u", ntohs(m->addr.sin6_port));
}

/* Drives etcd_watch (prefix /peak/svc/ from revision 7) until the member accepted the stream
 * and holds the whole watch request, NUL-terminated in req (of size n). */
static inline void member_take_watch(struct fake_member *m, struct etcd *e, etcd_event_fn on,
                                     void *arg, char *req, size_t n)
{
	size_t got = 0;
	uint64_t end = now_ms() + DEADLINE_MS;
	req[0] = 0;
	while (!strstr(req, "create_request")) {
		assert_true(now_ms() < end);
		assert_true(etcd_watch(e, "/peak/svc/", 7, on, arg) >= 0);
		struct pollfd p = {.fd = m->c == -1 ? m->l : m->c, .events = POLLIN};
		if (poll(&p, 1, 10) != 1)
			continue;
		if (m->c == -1) {
			assert_true((m->c = accept(m->l, NULL, NULL)) >= 0);
			continue;
		}
		ssize_t k = recv(m->c, req + got, n - 1 - got, 0);
		assert_true(k > 0);
		got += (size_t)k;
		req[got] = 0;
	}
}

/* Closes both sockets. */
static inline void member_close(struct fake_member *m)
{
	if (m->c >= 0)
		close(m->c);
	close(m->l);
}
