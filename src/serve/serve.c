#define _GNU_SOURCE /* accept4 */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/net.h"

enum { BUF = 8192 };

struct conn {
	int fd;
	bool http, decided;
	size_t inlen, outlen, outoff;
	char me[INET6_ADDRSTRLEN], peer[INET6_ADDRSTRLEN];
	char in[BUF], out[BUF];
};

/* Appends to the output buffer; false if it is full (the client reads too slowly). */
static bool out_add(struct conn *c, const char *s, size_t n)
{
	if (n > sizeof(c->out) - c->outlen)
		return false;
	memcpy(c->out + c->outlen, s, n);
	c->outlen += n;
	return true;
}

/* Spends us microseconds of this thread's CPU time (not wall time: a CPU quota that holds
 * the process back makes a request take longer, as it would an application's work). */
static void burn_cpu(unsigned us)
{
	struct timespec t;
	if (!us || clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t))
		return;
	uint64_t end = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec + us * 1000ull;
	volatile uint64_t x = 0;
	do {
		for (unsigned i = 0; i < 1000; i++)
			x += i;
		if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t))
			return;
	} while ((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec < end);
}

static const char *const methods[] = {"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS "};

/* Handles what is buffered: HTTP requests (headers only; a body is not expected) or lines.
 * Returns false when the connection must close after the output is sent. */
static bool work(struct conn *c, const struct serve_opts *o, bool *close_after)
{
	if (!c->decided && (c->inlen >= 8 || memchr(c->in, '\n', c->inlen))) {
		c->decided = true;
		for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
			c->http |= !strncmp(c->in, methods[i], strlen(methods[i]));
	}
	if (!c->decided)
		return true;
	const char *id = o->id;
	for (;;) {
		char *end;
		size_t used;
		if (c->http) {
			end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
			if (!end)
				break;
			used = (size_t)(end - c->in) + 4;
			burn_cpu(o->work_us);
			bool head = !strncmp(c->in, "HEAD ", 5);
			bool close_req = memmem(c->in, used, "\r\nConnection: close", 19) ||
			                 memmem(c->in, used, "\r\nconnection: close", 19) ||
			                 memmem(c->in, used, " HTTP/1.0\r\n", 11);
			char hdr[512];
			int n = snprintf(hdr, sizeof(hdr),
			                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			                 "Content-Length: %zu\r\nX-Peak-Endpoint: %s\r\n"
			                 "X-Peak-Destination: %s\r\nX-Peak-Source: %s\r\n%s\r\n",
			                 strlen(id) + 1, id, c->me, c->peer,
			                 close_req ? "Connection: close\r\n" : "");
			if (!out_add(c, hdr, (size_t)n) ||
			    (!head && (!out_add(c, id, strlen(id)) || !out_add(c, "\n", 1))))
				return false;
			*close_after |= close_req;
		} else {
			end = memchr(c->in, '\n', c->inlen);
			if (!end)
				break;
			used = (size_t)(end - c->in) + 1;
			burn_cpu(o->work_us);
			char line[256];
			int n = snprintf(line, sizeof(line), "%s %s %s\n", id, c->me, c->peer);
			if (!out_add(c, line, (size_t)n))
				return false;
		}
		memmove(c->in, c->in + used, c->inlen - used);
		c->inlen -= used;
	}
	/* a request or line longer than the buffer cannot be served */
	return c->inlen < sizeof(c->in);
}

/* Sends what is pending; false if the connection broke. */
static bool flush(struct conn *c)
{
	int r = sock_send_rest(c->fd, c->out, c->outlen, &c->outoff);
	if (r == 1)
		c->outoff = c->outlen = 0;
	return r >= 0;
}

static void addr_text(const struct sockaddr_in6 *sa, char out[INET6_ADDRSTRLEN])
{
	if (IN6_IS_ADDR_V4MAPPED(&sa->sin6_addr))
		inet_ntop(AF_INET, &sa->sin6_addr.s6_addr[12], out, INET6_ADDRSTRLEN);
	else
		inet_ntop(AF_INET6, &sa->sin6_addr, out, INET6_ADDRSTRLEN);
}

int serve_run(const struct serve_opts *o)
{
	int one = 1, zero = 0;
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(o->port)};
	int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1)
		return 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(lfd, 1024) == -1) {
		log_msg(LOG_ERR, "serve: port %u: %s", o->port, strerror(errno));
		close(lfd);
		return 1;
	}
	int sfd = signals_fd(0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct conn **conns = calloc(o->max_conns, sizeof(*conns));
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.u64 = UINT64_MAX - 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	if (o->work_us)
		log_msg(LOG_INFO, "serve: %s on port %u (%u us of CPU per request)", o->id, o->port,
		        o->work_us);
	else
		log_msg(LOG_INFO, "serve: %s on port %u", o->id, o->port);
	for (bool run = true; run;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			if (d == UINT64_MAX - 1) {
				run = false;
				break;
			}
			if (d == UINT64_MAX) {
				for (;;) {
					struct sockaddr_in6 peer;
					socklen_t pl = sizeof(peer), ml = sizeof(peer);
					int fd = accept4(lfd, (struct sockaddr *)&peer, &pl,
					                 SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd == -1)
						break;
					unsigned slot = 0;
					while (slot < o->max_conns && conns[slot])
						slot++;
					struct conn *c =
					    slot < o->max_conns ? calloc(1, sizeof(*c)) : NULL;
					if (!c) {
						close(fd);
						continue;
					}
					struct sockaddr_in6 me;
					getsockname(fd, (struct sockaddr *)&me, &ml);
					addr_text(&me, c->me);
					addr_text(&peer, c->peer);
					c->fd = fd;
					conns[slot] = c;
					struct epoll_event ce = {.events =
					                             EPOLLIN | EPOLLOUT | EPOLLET,
					                         .data.u64 = slot};
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
				}
				continue;
			}
			struct conn *c = conns[d];
			if (!c)
				continue;
			bool alive = !(evs[i].events & (EPOLLERR | EPOLLHUP)), close_after = false;
			for (;;) {
				ssize_t k =
				    recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
				if (k > 0) {
					c->inlen += (size_t)k;
					if (c->inlen == sizeof(c->in))
						break;
					continue;
				}
				if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
					alive = false;
				break;
			}
			if (!work(c, o, &close_after))
				alive = false;
			if (!flush(c))
				alive = false;
			if (!alive || (close_after && !c->outlen)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				free(c);
				conns[d] = NULL;
			}
		}
	}
	for (unsigned k = 0; k < o->max_conns; k++)
		if (conns[k]) {
			close(conns[k]->fd);
			free(conns[k]);
		}
	free(conns);
	close(ep);
	close(sfd);
	close(lfd);
	log_msg(LOG_INFO, "serve: stopped");
	return 0;
}
