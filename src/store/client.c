/* The object store's client side; see client.h. A reply's head is framed by the project's
 * HTTP response parser (src/lib/http.c, http_resp_head_parse); bodies stream through a
 * 72 KiB buffer, so objects of any size cost the same memory. */
#define _GNU_SOURCE /* memmem */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "peak/http.h"
#include "peak/util.h"

static const char *const method_names[] = {"", "GET", "HEAD", "PUT", "DELETE"};

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0)
			return k ? -errno : -EPIPE;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Writes a GET's body bytes to call->outfd, counting each write in call->body_out (also
 * when one fails: the retry truncates the output back by that count). */
static int write_out(struct store_call *call, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(call->outfd, p, n);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0)
			return k ? -errno : -EIO;
		call->body_out += (uint64_t)k;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

void store_header_value(const uint8_t *h, size_t hl, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	out[0] = 0;
	for (size_t i = 0; i + nl + 3 < hl; i++) {
		if (h[i] != '\n' || strncasecmp((const char *)h + i + 1, name, nl) ||
		    h[i + 1 + nl] != ':')
			continue;
		size_t j = i + 2 + nl, k = 0;
		while (j < hl && h[j] == ' ')
			j++;
		while (j < hl && h[j] != '\r' && k + 1 < cap)
			out[k++] = (char)h[j++];
		out[k] = 0;
		return;
	}
}

/* Reads one response head into buf (len bytes held, some may be body); parses it. */
static int head_read(int fd, struct store_call *call, uint8_t *buf, size_t *len,
                     struct http_resp *resp)
{
	for (;;) {
		long hl =
		    http_resp_head_parse(buf, *len, call->method == STORE_HEAD, UINT64_MAX, resp);
		if (hl < 0) {
			snprintf(call->detail, sizeof(call->detail), "a reply that does not parse");
			return -EBADMSG;
		}
		if (hl > 0)
			return 0;
		ssize_t k = recv(fd, buf + *len, HTTP_HEAD_MAX - *len, 0);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			int r = k ? -errno : -EBADMSG;
			snprintf(call->detail, sizeof(call->detail), "no reply: %s",
			         k ? strerror(errno) : "closed");
			return r;
		}
		*len += (size_t)k;
		call->replied = true;
	}
}

/* Streams the body from infd (a regular file, from offset 0) to the socket. */
static int body_send(int fd, const struct store_call *call)
{
	off_t off = 0;
	for (uint64_t left = call->in_len; left;) {
		ssize_t k = sendfile(fd, call->infd, &off, left < (1u << 30) ? left : (1u << 30));
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0)
			return k ? -errno : -EIO; /* the file shrank */
		left -= (uint64_t)k;
	}
	return 0;
}

unsigned store_routes_parse(const uint8_t *h, size_t hl, struct prefix *routes, unsigned max)
{
	char v[640], *save = NULL;
	unsigned n = 0;
	store_header_value(h, hl, "X-Peak-Routes", v, sizeof(v));
	if (strlen(v) + 1 == sizeof(v)) {
		char *sp = strrchr(v, ' '); /* cut: its last prefix may be part of one */
		*(sp ? sp : v) = 0;
	}
	for (char *t = strtok_r(v, " ", &save); t && n < max; t = strtok_r(NULL, " ", &save)) {
		struct prefix p;
		if (!prefix_parse(t, true, &p) && p.family == PEAK_AFI_IP6)
			routes[n++] = p;
	}
	return n;
}

int store_call_run(int fd, struct store_call *call)
{
	char target[3 * 255 + 1], head[1024 + sizeof(target) + STORE_ACKED_MAX + STORE_EAGER_BODY];
	uint8_t buf[HTTP_HEAD_MAX + 65536];
	size_t len = 0;
	struct http_resp resp;
	int r;
	call->status = 0;
	call->body_len = call->body_out = call->version = call->head_size = call->deleted = 0;
	call->pod[0] = call->detail[0] = 0;
	call->replied = call->reusable = call->former = false;
	call->nroutes = 0;
	store_key_encode((const uint8_t *)call->key, strlen(call->key), target, sizeof(target));
	int n = snprintf(head, sizeof(head), "%s /o/%s HTTP/1.1\r\nHost: %s\r\n",
	                 method_names[call->method], target, call->host);
	if (call->acked && *call->acked)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "X-Peak-Acked: %s\r\n",
		              call->acked);
	/* a small body goes with the head: waiting for 100 Continue would cost a round trip
	 * (and a wake-up at each end) to spare a few KiB that a refusal's lingering close
	 * reads and drops */
	bool eager = call->method == STORE_PUT && call->in_len <= STORE_EAGER_BODY;
	if (call->method == STORE_PUT)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %llu\r\n%s",
		              (unsigned long long)call->in_len,
		              eager ? "" : "Expect: 100-continue\r\n");
	n += snprintf(head + n, sizeof(head) - (size_t)n, "%s\r\n",
	              call->keep ? "" : "Connection: close\r\n");
	if ((size_t)n >= sizeof(head) || (eager && (size_t)n + call->in_len > sizeof(head))) {
		snprintf(call->detail, sizeof(call->detail), "request head too long");
		return -EMSGSIZE;
	}
	if (eager && call->in_len) {
		ssize_t k = pread(call->infd, head + n, call->in_len, 0);
		if (k != (ssize_t)call->in_len) {
			snprintf(call->detail, sizeof(call->detail), "read: %s",
			         k < 0 ? strerror(errno) : "the file shrank");
			return k < 0 ? -errno : -EIO;
		}
		n += (int)call->in_len;
	}
	if ((r = send_all(fd, head, (size_t)n))) {
		snprintf(call->detail, sizeof(call->detail), "send: %s", strerror(-r));
		return r;
	}
	if ((r = head_read(fd, call, buf, &len, &resp)))
		return r;
	bool body_sent = call->method != STORE_PUT || eager;
	if (call->method == STORE_PUT && resp.status == 100) {
		/* the pod takes the body (RFC 9110 10.1.1): send it, then read the final reply */
		len -= resp.head_len;
		memmove(buf, buf + resp.head_len, len);
		if ((r = body_send(fd, call))) {
			snprintf(call->detail, sizeof(call->detail), "send: %s", strerror(-r));
			return r;
		}
		body_sent = true;
		if ((r = head_read(fd, call, buf, &len, &resp)))
			return r;
	}
	size_t hl = resp.head_len;
	call->status = resp.status;
	call->body_len = resp.body_len;
	store_header_value(buf, hl, "X-Peak-Pod", call->pod, sizeof(call->pod));
	char ver[24];
	store_header_value(buf, hl, "X-Peak-Version", ver, sizeof(ver));
	call->version = strtoull(ver, NULL, 10);
	store_header_value(buf, hl, "X-Peak-Former", ver, sizeof(ver));
	call->former = *ver == '1';
	store_header_value(buf, hl, "X-Peak-Deleted", ver, sizeof(ver));
	call->deleted = resp.status == 404 ? strtoull(ver, NULL, 10) : 0;
	if (call->method == STORE_HEAD) {
		char cl[24];
		store_header_value(buf, hl, "Content-Length", cl, sizeof(cl));
		call->head_size = strtoull(cl, NULL, 10);
	}
	if (resp.status == 421) {
		char owner[80], addr[64];
		store_header_value(buf, hl, "X-Peak-Owner", owner, sizeof(owner));
		store_header_value(buf, hl, "X-Peak-Address", addr, sizeof(addr));
		snprintf(call->detail, sizeof(call->detail), "owner %s at %s", *owner ? owner : "?",
		         *addr ? addr : "?");
	}
	if (call->keep)
		call->nroutes = store_routes_parse(buf, hl, call->routes, STORE_ROUTES_MAX);
	/* the connection can carry another request if the pod keeps it, the request went
	 * whole and the reply is read to its end, with nothing after it */
	bool keep = call->keep && !resp.close && body_sent;
	if (call->method != STORE_GET || resp.status != 200) {
		call->reusable = keep && len - hl == resp.body_len;
		return 0;
	}
	if (len - hl > resp.body_len)
		keep = false;
	uint64_t left = resp.body_len;
	size_t have = len - hl < left ? len - hl : (size_t)left;
	if ((r = write_out(call, buf + hl, have)))
		goto werr;
	left -= have;
	while (left) {
		ssize_t k = recv(fd, buf, left < sizeof(buf) ? left : sizeof(buf), 0);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(call->detail, sizeof(call->detail), "reply cut short: %s",
			         k ? strerror(errno) : "closed");
			return k ? -errno : -EBADMSG;
		}
		if ((r = write_out(call, buf, (size_t)k)))
			goto werr;
		left -= (uint64_t)k;
	}
	call->reusable = keep;
	return 0;
werr:
	snprintf(call->detail, sizeof(call->detail), "write: %s", strerror(-r));
	return r;
}

/* Connects to the candidate (bound to its source) with the socket timeouts set. */
static int cand_connect(const struct peak_candidate *cd, unsigned timeout_ms)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	bool bind_src = !IN6_IS_ADDR_UNSPECIFIED(&cd->src.sin6_addr);
	if ((bind_src && bind(fd, (const struct sockaddr *)&cd->src, sizeof(cd->src)) == -1) ||
	    connect(fd, (const struct sockaddr *)&cd->dst, sizeof(cd->dst)) == -1) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

struct pool_conn {
	int fd;
	struct in6_addr src;     /* the bound source (:: if none) */
	struct sockaddr_in6 dst; /* the address it was opened to */
	uint64_t idle_ms;        /* when it was put back */
	char pod[STORE_POD_MAX];
	struct prefix routes[STORE_ROUTES_MAX]; /* routed to its pod (X-Peak-Routes) */
	unsigned nroutes;
};

struct store_pool {
	struct pool_conn c[STORE_POOL_MAX];
	unsigned n;
};

struct store_pool *store_pool_new(void)
{
	return calloc(1, sizeof(struct store_pool));
}

void store_pool_free(struct store_pool *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n; i++)
		close(p->c[i].fd);
	free(p);
}

static void pool_drop(struct store_pool *p, unsigned i)
{
	close(p->c[i].fd);
	p->c[i] = p->c[--p->n];
}

/* True if the connection leads where cd's address does: opened to it from cd's source,
 * or to a pod whose routes hold it. */
static bool pool_fits(const struct pool_conn *pc, const struct peak_candidate *cd)
{
	if (memcmp(&pc->src, &cd->src.sin6_addr, 16) || pc->dst.sin6_port != cd->dst.sin6_port)
		return false;
	if (!memcmp(&pc->dst.sin6_addr, &cd->dst.sin6_addr, 16))
		return true;
	for (unsigned k = 0; k < pc->nroutes; k++)
		if (prefix_contains_addr(&pc->routes[k], cd->dst.sin6_addr.s6_addr))
			return true;
	return false;
}

/* An idle connection has nothing to read: EOF or bytes mean the pod is done with it. */
static bool idle_open(int fd)
{
	char b;
	ssize_t k = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return k == -1 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Takes an idle connection that fits cd (moved out of the pool into *out), or returns
 * -1. One idle too long, or closed or written to by the pod meanwhile (checked after
 * STORE_POOL_CHECK_MS), is closed. */
static int pool_take(struct store_pool *p, const struct peak_candidate *cd, struct pool_conn *out)
{
	uint64_t now = peak_mono_ms();
	for (unsigned i = 0; i < p->n;) {
		struct pool_conn *pc = &p->c[i];
		if (now - pc->idle_ms > STORE_POOL_IDLE_MS) {
			pool_drop(p, i);
			continue;
		}
		if (!pool_fits(pc, cd)) {
			i++;
			continue;
		}
		/* checked only after STORE_POOL_CHECK_MS idle */
		if (now - pc->idle_ms >= STORE_POOL_CHECK_MS && !idle_open(pc->fd)) {
			pool_drop(p, i);
			continue;
		}
		*out = *pc;
		p->c[i] = p->c[--p->n];
		return out->fd;
	}
	return -1;
}

/* Keeps fd for reuse (the oldest idle one goes if the pool is full). */
static void pool_put(struct store_pool *p, const struct pool_conn *pc)
{
	if (p->n == STORE_POOL_MAX) {
		unsigned old = 0;
		for (unsigned i = 1; i < p->n; i++)
			if (p->c[i].idle_ms < p->c[old].idle_ms)
				old = i;
		pool_drop(p, old);
	}
	p->c[p->n] = *pc;
	p->c[p->n++].idle_ms = peak_mono_ms();
}

/* Forgets the routes learned from pod (a stale one sent a key elsewhere). */
static void pool_forget(struct store_pool *p, const char *pod)
{
	for (unsigned i = 0; i < p->n; i++)
		if (!strcmp(p->c[i].pod, pod))
			p->c[i].nroutes = 0;
}

static void trace(const struct store_op *op, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void trace(const struct store_op *op, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	if (!op->trace)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	op->trace(op->trace_arg, line);
}

/* Adds pod to the comma-separated list (if it fits and is not there); true if added. */
static bool pod_add(char *list, size_t cap, const char *pod)
{
	size_t n = strlen(list), pl = strlen(pod);
	if (!pl || http_list_has((const uint8_t *)list, n, pod) || n + pl + 2 > cap)
		return false;
	snprintf(list + n, cap - n, "%s%s", n ? "," : "", pod);
	return true;
}

int store_op_run(struct store_op *op)
{
	char acked[STORE_ACKED_MAX] = "", host[INET6_ADDRSTRLEN + 8], a[INET6_ADDRSTRLEN];
	unsigned need = op->method == STORE_GET ? op->replicas : op->replicas / 2 + 1;
	unsigned failures = 0, found = 0;
	bool fresh = false; /* the next attempt opens a new connection */
	int last_err = -EHOSTUNREACH;
	op->status = op->acks = op->connect_failures = 0;
	op->detail[0] = 0;
	for (unsigned i = 0; op->acks < op->replicas; i++) {
		if (i >= op->ncand) {
			unsigned (*more)(struct store_op *) = op->more;
			op->more = NULL; /* once */
			if (!more || (op->ncand = more(op)) <= i)
				break;
		}
		const struct peak_candidate *cd = &op->cand[i];
		inet_ntop(AF_INET6, &cd->dst.sin6_addr, a, sizeof(a));
		snprintf(host, sizeof(host), "[%s]:%u", a, ntohs(cd->dst.sin6_port));
		struct pool_conn pc;
		int fd = op->pool && !fresh ? pool_take(op->pool, cd, &pc) : -1;
		bool reused = fd != -1;
		fresh = false;
		if (!reused && (fd = cand_connect(cd, op->timeout_ms)) < 0) {
			failures++;
			op->connect_failures++;
			last_err = fd;
			snprintf(op->detail, sizeof(op->detail), "connect %s: %s", host,
			         strerror(-fd));
			trace(op, "replica %u at %s: %s", cd->replica, host, op->detail);
			continue;
		}
		if (!reused)
			pc = (struct pool_conn){.fd = fd, .src = cd->src.sin6_addr, .dst = cd->dst};
		struct store_call call = {.method = op->method,
		                          .key = op->key,
		                          .host = host,
		                          .acked = acked,
		                          .infd = op->infd,
		                          .in_len = op->in_len,
		                          .outfd = op->outfd,
		                          .keep = op->pool != NULL};
		int r = store_call_run(fd, &call);
		/* a kept connection the pod closed before it read the request (its idle
		 * timeout), or a 421 on a kept one (a stale route hint, or a connection opened
		 * before the key's slice moved away from that pod): this replica again, on a
		 * new connection, which follows the routes as they are now */
		bool closed = !call.replied && !call.body_out &&
		              (r == -EBADMSG || r == -ECONNRESET || r == -EPIPE);
		if (reused && ((r && closed) || (!r && call.status == 421))) {
			close(fd);
			if (!r)
				pool_forget(op->pool, pc.pod);
			fresh = true;
			i--;
			continue;
		}
		if (!r && call.reusable) {
			snprintf(pc.pod, sizeof(pc.pod), "%s", call.pod);
			if (call.nroutes) {
				memcpy(pc.routes, call.routes, sizeof(call.routes));
				pc.nroutes = call.nroutes;
			}
			pool_put(op->pool, &pc);
		} else {
			close(fd);
		}
		if (r) {
			failures++;
			last_err = r;
			snprintf(op->detail, sizeof(op->detail), "%s: %.190s", host, call.detail);
			trace(op, "replica %u at %s: %s", cd->replica, host, call.detail);
			if (call.body_out) {
				/* part of a body went out: start again from where it began (the
				 * offset less what this call wrote; no lseek per call) */
				off_t cur = lseek(op->outfd, 0, SEEK_CUR);
				off_t out_start = cur == -1 ? -1 : cur - (off_t)call.body_out;
				if (out_start < 0 || ftruncate(op->outfd, out_start) == -1 ||
				    lseek(op->outfd, out_start, SEEK_SET) == -1)
					return r;
			}
			continue;
		}
		trace(op, "replica %u at %s: %u %s%s%s", cd->replica, host, call.status,
		      store_status_text(call.status), *call.pod ? " from " : "", call.pod);
		unsigned st = call.status;
		if ((op->method == STORE_GET || op->method == STORE_HEAD) && st == 200) {
			op->status = 200;
			op->acks = 1;
			return 0;
		}
		if (st == 208 || st == 421)
			continue;
		if (st >= 500) {
			failures++;
			last_err = -EIO;
			snprintf(op->detail, sizeof(op->detail), "%s: %u %s", host, st,
			         store_status_text(st));
			continue;
		}
		if (st >= 400 && st != 404) {
			op->status = st; /* the request itself is refused (413, 400): final */
			snprintf(op->detail, sizeof(op->detail), "%s", call.detail);
			return 0;
		}
		if (st == 404 && op->method == STORE_PUT)
			continue; /* not a status a PUT gets */
		/* a server that does not name itself is counted each time it answers */
		if (!*call.pod || pod_add(acked, sizeof(acked), call.pod)) {
			op->acks++;
			if (st != 404)
				found++;
			if (op->status != 201)
				op->status = st;
		}
	}
	switch (op->method) {
	case STORE_PUT:
		if (op->acks >= need)
			return 0;
		snprintf(op->detail + strlen(op->detail), sizeof(op->detail) - strlen(op->detail),
		         "%sstored on %u of the %u replicas a write needs", *op->detail ? "; " : "",
		         op->acks, need);
		op->status = 0;
		return failures ? last_err : -EIO;
	case STORE_GET:
	case STORE_HEAD:
		if (!failures || op->acks >= op->replicas / 2 + 1) {
			op->status = 404;
			return 0;
		}
		op->status = 0;
		return last_err;
	case STORE_DELETE:
		/* a majority holds the tombstone; repair spreads it to the rest */
		if (op->acks >= need || !failures) {
			op->status = found ? 204 : 404;
			return 0;
		}
		snprintf(op->detail + strlen(op->detail), sizeof(op->detail) - strlen(op->detail),
		         "; deleted on %u of the %u replicas a delete needs", op->acks, need);
		op->status = 0;
		return last_err;
	}
	return -EINVAL;
}
