/*
 * The management slave: a Unix stream socket (mode 0600) where `peak overlay-ctl` sends
 * one request line (mgmtproto.h) and reads the answer until the connection closes. It owns
 * no routes; it changes other slaves' routes through the master. A client gets
 * MG_CLIENT_MS in total to send its line and take the answer, so a slow or stuck client
 * delays the loop by at most that much, once per connection.
 */
#include "mgmt.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "mgmtproto.h"
#include "peak/util.h"

enum { MG_CLIENT_MS = 200, MG_ACCEPT_BATCH = 1 }; /* epoll comes back for the next */

struct mg {
	struct ov_slave slave;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd;
	bool bound;
	struct ov_master *m;
	uint64_t requests, refused; /* atomic: the metrics thread reads them */
};

/* Waits for ev on fd until the deadline; true if ready. */
static bool wait_fd(int fd, short ev, uint64_t deadline)
{
	uint64_t now = peak_mono_ms();
	if (now >= deadline)
		return false;
	struct pollfd p = {.fd = fd, .events = ev};
	return poll(&p, 1, (int)(deadline - now)) == 1;
}

static void answer(struct mg *g, const struct mg_req *r, struct mbuf *b)
{
	char ps[PREFIX_STRLEN];
	int e;
	switch (r->kind) {
	case MG_SHOW_ROUTES:
		ov_master_show_routes(g->m, b);
		break;
	case MG_SHOW_PEERS:
		ov_master_show_slaves(g->m, b);
		break;
	case MG_SHOW_COUNTERS:
		ov_master_stats(g->m, b);
		break;
	case MG_ROUTE_ADD:
		e = ov_route_add_named(g->m, &r->prefix, r->peer);
		if (e) {
			mbuf_printf(b, "error: %s\n",
			            e == -ENOENT ? "no slave knows that peer" : strerror(-e));
			return;
		}
		log_msg(LOG_INFO, "overlay: mgmt: route %s to %s", prefix_print(&r->prefix, ps),
		        r->peer);
		break;
	case MG_ROUTE_DEL:
		e = ov_route_del(g->m, &r->prefix);
		if (e) {
			mbuf_printf(b, "error: %s\n",
			            e == -ENOENT ? "no such route" : strerror(-e));
			return;
		}
		log_msg(LOG_INFO, "overlay: mgmt: route %s removed", prefix_print(&r->prefix, ps));
		break;
	default:
		mbuf_printf(b, "error: bad request\n");
		return;
	}
	mbuf_printf(b, "ok\n");
}

/* Reads one request (bounded in size and time), answers, closes. */
static void serve(struct mg *g, int fd)
{
	uint8_t line[MG_LINE_MAX + 1];
	size_t n = 0;
	struct mbuf b = {0};
	uint64_t deadline = peak_mono_ms() + MG_CLIENT_MS;
	while (n < sizeof(line) && (!n || line[n - 1] != '\n')) {
		ssize_t r = recv(fd, line + n, sizeof(line) - n, MSG_DONTWAIT);
		if (r > 0) {
			n += (size_t)r;
			continue;
		}
		if (r == 0 || (errno != EAGAIN && errno != EINTR) || !wait_fd(fd, POLLIN, deadline))
			break;
	}
	struct mg_req req;
	__atomic_fetch_add(&g->requests, 1, __ATOMIC_RELAXED);
	if (mg_parse(line, n, &req)) {
		__atomic_fetch_add(&g->refused, 1, __ATOMIC_RELAXED);
		mbuf_printf(&b, "error: bad request (show routes|peers|counters, "
		                "route add PREFIX PEER, route del PREFIX)\n");
	} else {
		answer(g, &req, &b);
	}
	size_t off = 0;
	while (b.p && off < b.len) {
		ssize_t w = send(fd, b.p + off, b.len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w == -1 && (errno == EAGAIN || errno == EINTR) &&
		    wait_fd(fd, POLLOUT, deadline))
			continue;
		break;
	}
	free(b.p);
	b.p = NULL;
	close(fd);
}

static void mg_readable(struct ov_slave *s, int fd)
{
	struct mg *g = s->priv;
	for (int i = 0; i < MG_ACCEPT_BATCH; i++) {
		int c = accept(fd, NULL, NULL); /* blocking: serve() bounds each read and write */
		if (c == -1)
			return;
		serve(g, c);
	}
}

/* Refuses a path that exists and is not a stale socket (a live daemon answers, a regular
 * file is never deleted); removes a stale one. */
static int path_free(const char *path)
{
	struct stat st;
	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	close(fd);
	if (r == 0)
		return -EADDRINUSE;
	if (e != ECONNREFUSED)
		return -e;
	return unlink(path) == -1 ? -errno : 0;
}

static int mg_attach(struct ov_slave *s, struct ov_master *m)
{
	struct mg *g = s->priv;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int ret;
	g->m = m;
	if ((ret = path_free(g->path))) {
		log_msg(LOG_ERR, "overlay: mgmt: %s: %s", g->path,
		        ret == -EEXIST ? "exists and is not a socket, refusing" : strerror(-ret));
		return ret;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g->path);
	g->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (g->lfd == -1)
		return -errno;
	mode_t old = umask(077); /* the socket is born 0600: no window with a wider mode */
	int b = bind(g->lfd, (struct sockaddr *)&sa, sizeof(sa));
	ret = -errno;
	umask(old);
	if (b == -1) {
		log_msg(LOG_ERR, "overlay: mgmt: bind %s: %s", g->path, strerror(-ret));
		return ret;
	}
	g->bound = true;
	if (listen(g->lfd, 16) == -1)
		return -errno;
	return ov_master_watch(m, g->lfd, s);
}

static void mg_detach(struct ov_slave *s)
{
	struct mg *g = s->priv;
	if (g->lfd != -1)
		close(g->lfd);
	g->lfd = -1;
	if (g->bound)
		unlink(g->path);
	g->bound = false;
}

static int mg_output(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len)
{
	(void)s, (void)cookie, (void)pkt, (void)len;
	return -EINVAL; /* owns no routes */
}

static void mg_stats(struct ov_slave *s, struct mbuf *b)
{
	struct mg *g = s->priv;
	mbuf_printf(b,
	            "# TYPE peak_overlay_mgmt_requests_total counter\n"
	            "peak_overlay_mgmt_requests_total %llu\n"
	            "# TYPE peak_overlay_mgmt_refused_total counter\n"
	            "peak_overlay_mgmt_refused_total %llu\n",
	            (unsigned long long)__atomic_load_n(&g->requests, __ATOMIC_RELAXED),
	            (unsigned long long)__atomic_load_n(&g->refused, __ATOMIC_RELAXED));
}

static const struct ov_slave_ops mg_ops = {
    .name = "mgmt",
    .attach = mg_attach,
    .detach = mg_detach,
    .output = mg_output,
    .readable = mg_readable,
    .stats = mg_stats,
};

struct ov_slave *mg_new(const char *path)
{
	struct mg *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	if (strlen(path) >= sizeof(g->path)) {
		free(g);
		errno = ENAMETOOLONG;
		return NULL;
	}
	strcpy(g->path, path);
	g->lfd = -1;
	g->slave.ops = &mg_ops;
	g->slave.priv = g;
	return &g->slave;
}

void mg_free(struct ov_slave *s)
{
	if (!s)
		return;
	mg_detach(s);
	free(s->priv);
}
