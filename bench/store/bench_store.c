/* The object store benchmark's client (bench/store/run.py): one closed-loop worker doing
 * the same object workload against one of three systems, a connection per request in each
 * by default, so only the path to the pod differs:
 *
 *	bench_store peak DNS-SERVER PORT NAME      put|get FIRST:END SIZE OUT
 *	bench_store nginx ADDR PORT                put|get FIRST:END SIZE OUT
 *	bench_store ketama PORT ADDR[,ADDR...]     put|get FIRST:END SIZE OUT
 *	bench_store ketama-moved ADDRS-BEFORE ADDRS-AFTER COUNT
 *
 * peak: the peak_store_* calls of peak.h (resolve, compute the key's address, go there).
 * nginx: every request to one proxy address (nginx with hash $request_uri consistent).
 * ketama: libketama's continuum (160 points per server from MD5 of "ADDR-i", a key's point
 * the first 4 bytes of MD5(key), little-endian), straight to the chosen pod's address.
 * With BENCH_STORE_CONN=keepalive each worker keeps its connections instead, in all three:
 * peak through the library's pool (X-Peak-Routes), nginx and ketama one per address.
 * A peak worker uses one resolver for all its requests, so the library's remembered source
 * address (peak_resolve) is looked up about once a second, not per request.
 * Keys are "obj-I" for I in [FIRST, END); PUT bodies are SIZE bytes; a GET checks the size.
 * OUT gets one line per request, "I MICROSECONDS STATUS POD" (status 0: no answer, POD "-"
 * when unknown); stdout's last line is "done OPS failed FAILS seconds S".
 * ketama-moved prints how many of keys obj-0..COUNT-1 change server between the two rings.
 *
 * BENCH_STORE_PASSES=N: a GET worker reads its keys N times over (longer rounds).
 * BENCH_STORE_DEPTH=D (2..64, with keepalive, bodies up to 4 KiB): each worker keeps D
 * requests in flight, HTTP/1.1 pipelining: it takes its next D keys, writes each one's
 * request to the connection of its entry point (all in one send per connection), then
 * reads the replies (in order per connection) and starts the next D once all came; a
 * request's latency runs from that send to its reply. The entry point: nginx one
 * connection (BENCH_STORE_SPREAD=1: D connections, one request on each, as nginx cannot
 * work on pipelined requests at once); ketama the key's pod's connection; peak the pod
 * whose X-Peak-Routes hold the key's computed address (peak_resolve), else a connection
 * to that address (the library's pool does the same, one request at a time). */
#define _GNU_SOURCE /* memfd_create */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nettle/md5.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../../src/client/client.h"
#include "client.h"
#include "peak/http.h"
#include "peak/peak.h"
#include "peak/prefix.h"

enum {
	KETAMA_POINTS = 160, /* per server of weight 1, as libketama */
	SERVERS_MAX = 16,
	TIMEOUT_MS = 5000,
	ADDR_MAX = 64,
	DEPTH_MAX = 64,
	PCONN_MAX = 128,
	PIPE_BODY_MAX = 4096,
	PIPE_IN = 1 << 17,
	/* a pipelined connection idle for longer is opened again before it is used: the pods
	 * of the testbed close an idle one after 1.5 s (conftest's --timeout), and one that a
	 * worker keeps for a rare slice (a pod's routes did not cover it) goes idle */
	PIPE_IDLE_MS = 1000,
};

struct point {
	uint32_t hash;
	unsigned server;
};

struct ring {
	struct point p[SERVERS_MAX * KETAMA_POINTS];
	unsigned n, nservers;
	char addr[SERVERS_MAX][ADDR_MAX];
};

static uint32_t md5_point(const char *s, size_t len, unsigned h)
{
	struct md5_ctx c;
	uint8_t d[MD5_DIGEST_SIZE];
	md5_init(&c);
	md5_update(&c, len, (const uint8_t *)s);
	md5_digest(&c, sizeof(d), d);
	return (uint32_t)d[3 + h * 4] << 24 | (uint32_t)d[2 + h * 4] << 16 |
	       (uint32_t)d[1 + h * 4] << 8 | d[h * 4];
}

static int point_cmp(const void *x, const void *y)
{
	const struct point *a = x, *b = y;
	return a->hash < b->hash ? -1 : a->hash > b->hash;
}

/* Builds the continuum of the comma-separated addresses. Returns 0 or -EINVAL. */
static int ring_init(struct ring *r, const char *list)
{
	char buf[SERVERS_MAX * ADDR_MAX], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", list);
	r->n = r->nservers = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (r->nservers == SERVERS_MAX || strlen(t) >= ADDR_MAX)
			return -EINVAL;
		unsigned s = r->nservers++;
		snprintf(r->addr[s], ADDR_MAX, "%s", t);
		for (unsigned k = 0; k < KETAMA_POINTS / 4; k++) {
			char name[ADDR_MAX + 16];
			int n = snprintf(name, sizeof(name), "%s-%u", t, k);
			for (unsigned h = 0; h < 4; h++)
				r->p[r->n++] = (struct point){md5_point(name, (size_t)n, h), s};
		}
	}
	qsort(r->p, r->n, sizeof(r->p[0]), point_cmp);
	return r->nservers ? 0 : -EINVAL;
}

/* The server of key: the first point at or after the key's hash, wrapping round. */
static unsigned ring_lookup(const struct ring *r, const char *key)
{
	uint32_t h = md5_point(key, strlen(key), 0);
	unsigned lo = 0, hi = r->n;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (r->p[mid].hash < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	return r->p[lo == r->n ? 0 : lo].server;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static bool keepalive; /* BENCH_STORE_CONN=keepalive */

/* Kept connections of nginx and ketama workers, one per address. */
static struct {
	char addr[ADDR_MAX];
	int fd;
} kept[SERVERS_MAX];

static int direct_connect(const char *addr, unsigned port)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = TIMEOUT_MS / 1000};
	int fd;
	if (inet_pton(AF_INET6, addr, &sa.sin6_addr) != 1)
		return -EINVAL;
	if ((fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* One request to [addr]:port, on a new connection or (keepalive) the address's kept one,
 * opened again if the server had closed it; the status in call (0: no answer). */
static int direct_call(const char *addr, unsigned port, struct store_call *call)
{
	char host[ADDR_MAX + 10];
	unsigned k = 0;
	int fd = -1, ret;
	snprintf(host, sizeof(host), "[%s]:%u", addr, port);
	call->host = host;
	call->keep = keepalive;
	if (keepalive) {
		unsigned empty = SERVERS_MAX;
		for (k = 0; k < SERVERS_MAX && strcmp(kept[k].addr, addr); k++)
			if (!kept[k].addr[0] && empty == SERVERS_MAX)
				empty = k;
		if (k == SERVERS_MAX && (k = empty) == SERVERS_MAX)
			return -ENOSPC;
		fd = kept[k].addr[0] ? kept[k].fd : -1;
	}
	for (int attempt = 0;; attempt++) {
		bool reused = fd != -1;
		if (!reused && (fd = direct_connect(addr, port)) < 0)
			return fd;
		ret = store_call_run(fd, call);
		if (ret && reused && !call->replied && !attempt) {
			close(fd); /* closed by the server while idle: once more */
			fd = -1;
			continue;
		}
		break;
	}
	if (keepalive && !ret && call->reusable) {
		snprintf(kept[k].addr, ADDR_MAX, "%s", addr);
		kept[k].fd = fd;
	} else {
		close(fd);
		if (keepalive && kept[k].addr[0])
			kept[k].addr[0] = 0;
	}
	return ret;
}

/* -- BENCH_STORE_DEPTH: pipelined requests (see the head of the file) ------------------ */

struct pconn {
	int fd;
	uint8_t dst[16]; /* the address it was opened to */
	unsigned port;
	double used; /* when a request last went on it */
	struct prefix routes[STORE_ROUTES_MAX];
	unsigned nroutes;
	bool routes_asked;             /* a reply came: its X-Peak-Routes, if any, are in routes */
	unsigned q[DEPTH_MAX], qh, qn; /* the batch slots awaiting replies, in order */
	size_t inlen, outlen;
	uint8_t in[PIPE_IN];
	char out[DEPTH_MAX * (PIPE_BODY_MAX + 512)];
};

struct slot {
	unsigned key;
	unsigned status;
	double us;
	char pod[STORE_POD_MAX];
};

static struct pconn *pconns[PCONN_MAX];
static unsigned npconns;

static struct pconn *pconn_open(const uint8_t dst[16], unsigned port)
{
	char a[INET6_ADDRSTRLEN];
	if (npconns == PCONN_MAX)
		return NULL;
	inet_ntop(AF_INET6, dst, a, sizeof(a));
	int fd = direct_connect(a, port);
	if (fd < 0)
		return NULL;
	struct pconn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->fd = fd;
	memcpy(c->dst, dst, 16);
	c->port = port;
	c->used = now_s();
	pconns[npconns++] = c;
	return c;
}

/* c, opened again if it was idle for PIPE_IDLE_MS (the pod may have closed it). */
static struct pconn *pconn_fresh(struct pconn *c)
{
	char a[INET6_ADDRSTRLEN];
	if (!c || c->fd == -1 || c->qn || c->outlen || now_s() - c->used < PIPE_IDLE_MS / 1e3)
		return c;
	close(c->fd);
	c->inlen = 0;
	inet_ntop(AF_INET6, c->dst, a, sizeof(a));
	c->fd = direct_connect(a, c->port);
	c->used = now_s();
	if (c->fd >= 0)
		return c;
	c->fd = -1; /* never chosen again, as pconn_drop leaves one */
	memset(c->dst, 0, 16);
	c->nroutes = 0;
	return NULL;
}

/* The connection for a request to dst: the first opened to it, or to a pod whose routes
 * hold it (route: true), else NULL. */
static struct pconn *pconn_find(const uint8_t dst[16], bool route)
{
	for (unsigned i = 0; i < npconns; i++) {
		struct pconn *c = pconns[i];
		if (!memcmp(c->dst, dst, 16))
			return c;
		for (unsigned k = 0; route && k < c->nroutes; k++)
			if (prefix_contains_addr(&c->routes[k], dst))
				return c;
	}
	return NULL;
}

/* Whether a connection awaits its first reply (the pod's routes are not known yet). */
static bool pconn_unrouted(void)
{
	for (unsigned i = 0; i < npconns; i++)
		if (!pconns[i]->routes_asked && pconns[i]->fd != -1)
			return true;
	return false;
}

static void pconn_add(struct pconn *c, unsigned slot, bool put, const char *key, const char *body,
                      size_t size)
{
	int n = snprintf(c->out + c->outlen, sizeof(c->out) - c->outlen,
	                 "%s /o/%s HTTP/1.1\r\nHost: store\r\nContent-Length: %zu\r\n\r\n",
	                 put ? "PUT" : "GET", key, put ? size : (size_t)0);
	c->outlen += (size_t)n;
	if (put) {
		memcpy(c->out + c->outlen, body, size);
		c->outlen += size;
	}
	c->q[(c->qh + c->qn++) % DEPTH_MAX] = slot;
	c->used = now_s();
}

/* Takes the complete replies in c's buffer; returns how many, or -1 (a bad reply). */
static int pconn_replies(struct pconn *c, struct slot *slots, double t0, bool put, uint64_t size)
{
	int got = 0;
	size_t off = 0;
	while (c->qn) {
		struct http_resp r;
		long n = http_resp_parse(c->in + off, c->inlen - off, false, &r);
		if (n < 0)
			return -1;
		if (!n)
			break;
		struct slot *s = &slots[c->q[c->qh]];
		c->qh = (c->qh + 1) % DEPTH_MAX;
		c->qn--;
		s->us = (now_s() - t0) * 1e6;
		s->status = r.status;
		if (!put && r.status == 200 && r.body_len != size)
			s->status = 0;
		store_header_value(c->in + off, r.head_len, "X-Peak-Pod", s->pod, sizeof(s->pod));
		if (!c->routes_asked) {
			c->nroutes = store_routes_parse(c->in + off, r.head_len, c->routes,
			                                STORE_ROUTES_MAX);
			c->routes_asked = true;
		}
		off += (size_t)n;
		got++;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	return got;
}

static void pconn_drop(struct pconn *c, struct slot *slots)
{
	for (; c->qn; c->qn--, c->qh = (c->qh + 1) % DEPTH_MAX)
		slots[c->q[c->qh]].status = 0;
	close(c->fd);
	c->fd = -1;
	c->inlen = c->outlen = 0;
	memset(c->dst, 0, 16); /* never chosen again */
	c->nroutes = 0;
}

/* Sends the batch's requests, then reads every reply. */
static void pipe_batch(struct pconn **used, unsigned nused, struct slot *slots, double t0, bool put,
                       uint64_t size)
{
	struct pollfd pf[PCONN_MAX];
	unsigned left = 0;
	for (unsigned i = 0; i < nused; i++) {
		struct pconn *c = used[i];
		for (size_t off = 0; off < c->outlen;) {
			ssize_t k = send(c->fd, c->out + off, c->outlen - off, MSG_NOSIGNAL);
			if (k <= 0 && errno != EINTR) {
				pconn_drop(c, slots); /* blocking, with SO_SNDTIMEO: it failed */
				break;
			}
			off += k > 0 ? (size_t)k : 0;
		}
		c->outlen = 0;
		left += c->qn;
	}
	while (left) {
		unsigned n = 0;
		for (unsigned i = 0; i < nused; i++)
			if (used[i]->qn)
				pf[n++] = (struct pollfd){.fd = used[i]->fd, .events = POLLIN};
		if (poll(pf, n, TIMEOUT_MS) <= 0) {
			for (unsigned i = 0; i < nused; i++)
				if (used[i]->qn)
					pconn_drop(used[i], slots);
			return;
		}
		for (unsigned i = 0, k = 0; i < nused; i++) {
			struct pconn *c = used[i];
			if (!c->qn)
				continue;
			if (!(pf[k++].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t got = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
			int r = got > 0 ? (c->inlen += (size_t)got,
			                   pconn_replies(c, slots, t0, put, size))
			                : -1;
			if (r < 0) {
				left -= c->qn;
				pconn_drop(c, slots);
			} else {
				left -= (unsigned)r;
			}
		}
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: bench_store peak DNS-SERVER PORT NAME put|get FIRST:END SIZE OUT\n"
	                "       bench_store nginx ADDR PORT put|get FIRST:END SIZE OUT\n"
	                "       bench_store ketama PORT ADDR[,ADDR...] put|get FIRST:END SIZE "
	                "OUT\n"
	                "       bench_store ketama-moved ADDRS-BEFORE ADDRS-AFTER COUNT\n");
	return 2;
}

static int ketama_moved(char **argv)
{
	static struct ring a, b;
	unsigned n = (unsigned)strtoul(argv[4], NULL, 10), moved = 0;
	if (ring_init(&a, argv[2]) || ring_init(&b, argv[3]))
		return usage();
	for (unsigned i = 0; i < n; i++) {
		char key[32];
		snprintf(key, sizeof(key), "obj-%u", i);
		moved += strcmp(a.addr[ring_lookup(&a, key)], b.addr[ring_lookup(&b, key)]) != 0;
	}
	printf("%u\n", moved);
	return 0;
}

int main(int argc, char **argv)
{
	static struct ring ring;
	if (argc == 5 && !strcmp(argv[1], "ketama-moved"))
		return ketama_moved(argv);
	bool peak = argc == 9 && !strcmp(argv[1], "peak");
	if (!peak && (argc != 8 || (strcmp(argv[1], "nginx") && strcmp(argv[1], "ketama"))))
		return usage();
	bool ketama = !strcmp(argv[1], "ketama");
	char **w = argv + (peak ? 5 : 4); /* put|get FIRST:END SIZE OUT */
	bool put = !strcmp(w[0], "put");
	char *colon = strchr(w[1], ':');
	unsigned first = (unsigned)strtoul(w[1], NULL, 10);
	unsigned end = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
	uint64_t size = strtoull(w[2], NULL, 10), ops = 0, fails = 0;
	if ((!put && strcmp(w[0], "get")) || !colon || (ketama && ring_init(&ring, argv[3])))
		return usage();
	FILE *out = fopen(w[3], "w");
	int body = memfd_create("bench-store", MFD_CLOEXEC);
	int sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (!out || body == -1 || sink == -1 || ftruncate(body, (off_t)size) == -1) {
		perror("bench_store");
		return 1;
	}
	struct peak_resolver *r = NULL;
	const char *conn = getenv("BENCH_STORE_CONN");
	keepalive = conn && !strcmp(conn, "keepalive");
	struct peak_store_opts so = {.timeout_ms = TIMEOUT_MS, .no_keepalive = !keepalive};
	if (peak) {
		struct peak_resolver_opts ro = {.servers = {argv[2]}, .timeout_ms = 2000};
		int err;
		so.port = (uint16_t)atoi(argv[3]);
		if (!(r = peak_resolver_new(&ro, &err))) {
			fprintf(stderr, "resolver: %s\n", peak_strerror(err));
			return 1;
		}
	}
	const char *ev = getenv("BENCH_STORE_DEPTH");
	unsigned depth = ev ? (unsigned)atoi(ev) : 1, passes = 1;
	if ((ev = getenv("BENCH_STORE_PASSES")) && !put && atoi(ev) > 1)
		passes = (unsigned)atoi(ev);
	if (depth > DEPTH_MAX)
		depth = DEPTH_MAX;
	double t0 = now_s();
	if (depth > 1 && keepalive && size <= PIPE_BODY_MAX) {
		ev = getenv("BENCH_STORE_SPREAD");
		bool spread = ev && atoi(ev) > 0;
		static char pbody[PIPE_BODY_MAX];
		memset(pbody, 'x', sizeof(pbody));
		if (peak)
			resolver_replicas_swap(r, 0); /* replica 0's address only: replicas=1 */
		unsigned total = (end - first) * passes;
		for (unsigned done = 0; done < total;) {
			struct slot slots[DEPTH_MAX];
			struct pconn *used[DEPTH_MAX];
			unsigned nb = total - done < depth ? total - done : depth, nused = 0;
			double tb = now_s();
			for (unsigned j = 0; j < nb; j++) {
				unsigned i = first + (done + j) % (end - first);
				char key[32];
				uint8_t dst[16];
				struct pconn *c = NULL;
				snprintf(key, sizeof(key), "obj-%u", i);
				slots[j] = (struct slot){.key = i};
				if (peak) {
					struct peak_result res;
					if (!peak_resolve(r, argv[4], key, so.port, &res) &&
					    res.n) {
						memcpy(dst, &res.cand[0].dst.sin6_addr, 16);
						c = pconn_find(dst, true);
						if (!c && pconn_unrouted()) {
							/* the routes of a pod that has not answered
							 * yet may hold dst: its first reply first,
							 * as the library's pool has them before it
							 * opens another connection */
							pipe_batch(used, nused, slots, tb, put,
							           size);
							nused = 0;
							c = pconn_find(dst, true);
						}
						if (!c)
							c = pconn_open(dst, so.port);
					}
				} else {
					const char *a =
					    ketama ? ring.addr[ring_lookup(&ring, key)] : argv[2];
					unsigned port = (unsigned)atoi(ketama ? argv[2] : argv[3]);
					inet_pton(AF_INET6, a, dst);
					if (spread && !ketama) /* connection j to the one address */
						c = j < npconns ? pconns[j] : pconn_open(dst, port);
					else if (!(c = pconn_find(dst, false)))
						c = pconn_open(dst, port);
				}
				c = pconn_fresh(c);
				if (!c || c->fd == -1)
					continue; /* status 0 */
				if (!c->qn && !c->outlen)
					used[nused++] = c;
				pconn_add(c, j, put, key, pbody, size);
			}
			pipe_batch(used, nused, slots, tb, put, size);
			for (unsigned j = 0; j < nb; j++) {
				struct slot *sl = &slots[j];
				bool ok = put ? sl->status == 201 || sl->status == 204
				              : sl->status == 200;
				ops++;
				if (!ok && fails++ < 5)
					fprintf(stderr, "bench_store: %s obj-%u: status %u\n", w[0],
					        sl->key, sl->status);
				fprintf(out, "%u %.0f %u %s\n", sl->key, sl->us, sl->status,
				        *sl->pod ? sl->pod : "-");
			}
			done += nb;
		}
		end = first; /* done: skip the loop below */
	}
	for (unsigned n = 0; n < (end - first) * passes; n++) {
		unsigned i = first + n % (end - first);
		char key[32];
		struct store_call call = {.method = put ? STORE_PUT : STORE_GET,
		                          .key = key,
		                          .infd = body,
		                          .in_len = size,
		                          .outfd = sink};
		snprintf(key, sizeof(key), "obj-%u", i);
		double t = now_s();
		int err;
		if (peak) {
			if (put)
				err = peak_store_put(r, argv[4], key, body, &so);
			else
				err = peak_store_get(r, argv[4], key, sink, &so);
			call.status = !err ? (put ? 201 : 200) : err == PEAK_E_NOTFOUND ? 404 : 0;
			call.body_out = size;
		} else if (ketama) {
			err = direct_call(ring.addr[ring_lookup(&ring, key)],
			                  (unsigned)atoi(argv[2]), &call);
		} else {
			err = direct_call(argv[2], (unsigned)atoi(argv[3]), &call);
		}
		double us = (now_s() - t) * 1e6;
		bool ok = !err && (put ? call.status == 201 || call.status == 204
		                       : call.status == 200 && call.body_out == size);
		ops++;
		if (!ok) {
			if (fails++ < 5)
				fprintf(stderr, "bench_store: %s %s: %s (status %u%s%s)\n", w[0],
				        key,
				        err ? (peak ? peak_strerror(err) : strerror(-err)) : "ok",
				        call.status, r ? ": " : "", r ? peak_last_detail(r) : "");
		}
		fprintf(out, "%u %.0f %u %s\n", i, us, call.status, *call.pod ? call.pod : "-");
	}
	printf("done %llu failed %llu seconds %.3f\n", (unsigned long long)ops,
	       (unsigned long long)fails, now_s() - t0);
	fclose(out);
	if (r)
		peak_resolver_free(r);
	return 0;
}
