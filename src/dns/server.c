#define _GNU_SOURCE /* recvmmsg, sendmmsg, accept4 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../k8s/kube.h"
#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/net.h"
#include "../sys/notify.h"
#include "answer.h"
#include "follow.h"
#include "peak/ctlproto.h"
#include "peak/util.h"
#include "state.h"

enum {
	BATCH = 32,
	STOP_CHECK_US = 200000, /* how soon a blocked worker notices a stop */
};

/* Why the server closed a connection (a metric's label): TC_REFUSED is a new client at the
 * limit with no connection to take the place of; TC_N (at shutdown) is not counted. */
enum tcp_close { TC_IDLE, TC_SLOW, TC_EVICTED, TC_CLIENT, TC_REFUSED, TC_N };

/* ---- the serving state, swapped atomically; readers publish what they use (hazard
 * pointers), so the old state is freed only once no reader holds it ---- */

struct server {
	const struct dnsd_opts *o;
	_Atomic(struct dns_state *) state;
	_Atomic(struct dns_state *) hp[DNSD_MAX_WORKERS + 1];
	struct dnsd_stats stats[DNSD_MAX_WORKERS + 1];
	int stop_fd; /* eventfd: readable when the server stops */
	atomic_bool stopping;
	unsigned nworkers; /* UDP workers: threads x listen addresses */
	unsigned nreaders; /* the UDP workers, then the TCP thread */
	/* control thread only, plus the metrics thread under dyn_lock */
	pthread_mutex_t dyn_lock;
	struct dnsd_dyn dyn;
	/* written by the main thread, read by the metrics thread */
	_Atomic uint64_t reloads_ok, reloads_failed;
	uint64_t tcp_closed[TC_N]; /* written by the TCP thread (atomic builtins) */
	struct tcp_ctx *tcp;
	struct kube *kube; /* --source kubernetes: the services' source, or NULL */
};

static struct dns_state *state_acquire(struct server *s, unsigned reader)
{
	struct dns_state *st;
	do {
		st = atomic_load(&s->state);
		atomic_store(&s->hp[reader], st);
	} while (st != atomic_load(&s->state));
	return st;
}

static void state_release(struct server *s, unsigned reader)
{
	atomic_store(&s->hp[reader], NULL);
}

/* Publishes a new state and frees the old one once no reader holds it. */
static void state_publish(struct server *s, struct dns_state *st)
{
	struct dns_state *old = atomic_exchange(&s->state, st);
	if (!old)
		return; /* the first state: nobody can hold an older one */
	for (;;) {
		bool busy = false;
		for (unsigned i = 0; i < s->nreaders; i++)
			busy |= atomic_load(&s->hp[i]) == old;
		if (!busy)
			break;
		struct timespec ts = {0, 20000};
		nanosleep(&ts, NULL);
	}
	dns_state_free(old);
}

/* Sets a worker's context up. Without memory for its proof-of-work cache it still serves
 * (pow answers are then only bounded, not cached); the caller frees it with dnsd_ctx_fini. */
static void ctx_init(struct server *s, struct dnsd_ctx *cx, unsigned worker)
{
	memset(cx, 0, sizeof(*cx));
	if (getrandom(&cx->rng, sizeof(cx->rng), 0) != sizeof(cx->rng))
		cx->rng = (uint64_t)time(NULL) ^ ((uint64_t)worker << 32);
	cx->worker = worker;
	cx->stats = &s->stats[worker];
	if (dnsd_ctx_pow_init(cx))
		log_msg(LOG_WARNING, "dns: worker %u: no memory for the proof-of-work cache",
		        worker);
}

/* ---- UDP ---- */

/* [::] serves IPv4 too (dual stack); a specific IPv6 address only IPv6. */
static void set_v6only(int fd, const struct sockaddr_storage *ss)
{
	if (ss->ss_family != AF_INET6)
		return;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	int v6only = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? 0 : 1;
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
}

static int udp_socket(const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1, buf = 4 << 20;
	int fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	struct timeval tv = {0, STOP_CHECK_US};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	set_v6only(fd, ss);
	if (bind(fd, (const struct sockaddr *)ss, len) == -1) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* One UDP worker: one socket (of an address's SO_REUSEPORT group), one thread. */
struct worker {
	struct server *s;
	unsigned id; /* reader slot and counter cell */
	int fd;
	pthread_t th;
};

/* Blocks in recvmmsg(MSG_WAITFORONE) until at least one query is there and takes what has
 * arrived (up to BATCH), answers all, sends all with one sendmmsg: two system calls per
 * batch. A receive timeout lets the thread notice a stop. */
static void *udp_worker(void *arg)
{
	struct worker *wk = arg;
	struct server *s = wk->s;
	struct dnsd_ctx cx;
	static __thread struct mmsghdr in[BATCH], outm[BATCH];
	static __thread struct iovec iov[BATCH], oiov[BATCH];
	static __thread struct sockaddr_storage peer[BATCH];
	static __thread uint8_t qbuf[BATCH][DNSD_UDP_MAX], abuf[BATCH][DNSD_UDP_MAX];

	ctx_init(s, &cx, wk->id);
	while (!atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
		for (int i = 0; i < BATCH; i++) {
			iov[i] = (struct iovec){qbuf[i], sizeof(qbuf[i])};
			in[i].msg_hdr = (struct msghdr){
			    .msg_name = &peer[i],
			    .msg_namelen = sizeof(peer[i]),
			    .msg_iov = &iov[i],
			    .msg_iovlen = 1,
			};
		}
		int n = recvmmsg(wk->fd, in, BATCH, MSG_WAITFORONE, NULL);
		if (n <= 0)
			continue; /* timeout (to check for a stop), EINTR, or a passing error */
		DNSD_INC(cx.stats->batches);
		struct dns_state *st = state_acquire(s, wk->id);
		cx.now = (uint64_t)time(NULL);
		int m = 0;
		for (int i = 0; i < n; i++) {
			struct dnsd_client cl;
			cl.v6 = sockaddr_to_in6((struct sockaddr *)&peer[i], cl.addr);
			size_t len = dnsd_answer(st, &cx, qbuf[i], in[i].msg_len, &cl, false,
			                         abuf[m], DNSD_UDP_MAX);
			if (!len)
				continue;
			oiov[m] = (struct iovec){abuf[m], len};
			outm[m].msg_hdr = (struct msghdr){
			    .msg_name = &peer[i],
			    .msg_namelen = in[i].msg_hdr.msg_namelen,
			    .msg_iov = &oiov[m],
			    .msg_iovlen = 1,
			};
			m++;
		}
		state_release(s, wk->id);
		for (int sent = 0; sent < m;) {
			int k = sendmmsg(wk->fd, outm + sent, (unsigned)(m - sent), 0);
			if (k == -1 && errno == EINTR)
				continue;
			sent += k > 0 ? k : 1; /* skip a message the kernel refuses */
		}
	}
	dnsd_ctx_fini(&cx);
	return NULL;
}

/* ---- TCP: one thread, many connections, several queries per connection (RFC 7766) ----
 *
 * Level-triggered epoll. A connection reads while it has no answers waiting to be sent
 * (EPOLLIN), and only writes while it has (EPOLLOUT): a client that does not read its answers
 * stops being read, so nothing is buffered for it beyond one output buffer. Every event
 * answers all the complete queries in the input buffer while the output has room; answers
 * are batched into one send. Three clocks bound what a client can hold: a query must arrive
 * whole, and a blocked answer must leave, within --tcp-idle of its first byte (not of the
 * last one: a byte every few seconds does not keep a slot), and a connection with nothing
 * going on is closed after --tcp-idle. At the connection limit a new client takes the slot
 * of the connection whose query (or answer, or idleness) began longest ago (tconn_victim). */

enum {
	TCP_MSG_MAX = 2 + DNSD_TCP_MAX, /* a length prefix and the largest message */
	TCP_OUT_CAP = 2 * TCP_MSG_MAX,  /* room to batch answers behind a blocked one */
	TCP_SCAN_MS = 100,              /* how often the clocks are checked */
};

struct tconn {
	int fd;
	uint32_t gen; /* tells a reused slot's events from its old connection's */
	bool writing; /* epoll interest is EPOLLOUT: answers wait to be sent */
	bool eof;     /* the client closed its side; answer what came, then close */
	struct dnsd_client cl;
	size_t inlen, outlen, outoff;
	uint64_t last_ms;  /* the last byte received or sent */
	uint64_t query_ms; /* when the query being read began arriving, 0 if none is */
	uint64_t stall_ms; /* when sending began to block, 0 if it does not */
	uint8_t in[TCP_MSG_MAX];
	uint8_t out[TCP_OUT_CAP];
};

static int tcp_listener(const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	set_v6only(fd, ss);
	if (bind(fd, (const struct sockaddr *)ss, len) == -1 || listen(fd, 128) == -1) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

struct tcp_ctx {
	struct server *s;
	int lfds[DNSD_MAX_LISTEN];
	pthread_t th;
	int ep;
	struct tconn **conns; /* tcp_max slots */
	unsigned nconns;      /* read by the metrics thread */
	uint32_t gen;
	struct dnsd_ctx cx;
};

static void tconn_close(struct tcp_ctx *t, unsigned slot, enum tcp_close why)
{
	struct tconn *c = t->conns[slot];
	epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
	t->conns[slot] = NULL;
	__atomic_store_n(&t->nconns, t->nconns - 1, __ATOMIC_RELAXED);
	if (why < TC_N)
		__atomic_fetch_add(&t->s->tcp_closed[why], 1, __ATOMIC_RELAXED);
}

/* Sends what is pending. Returns -1 if the connection broke, else 0 (c->outlen is 0 when
 * everything went). */
static int tconn_flush(struct tconn *c, uint64_t now)
{
	size_t was = c->outoff;
	int r = sock_send_rest(c->fd, c->out, c->outlen, &c->outoff);
	if (r < 0)
		return -1;
	if (c->outoff > was)
		c->last_ms = now;
	if (!r) {
		if (!c->stall_ms)
			c->stall_ms = now;
		if (c->outoff) { /* make room behind what is left */
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		return 0;
	}
	c->outoff = c->outlen = 0;
	c->stall_ms = 0;
	return 0;
}

/* Answers the complete queries in the input buffer while the output has room for the
 * largest answer, sending as it goes. Returns -1 to drop the connection (it broke, or sent
 * something that is not DNS). */
static int tconn_answer(struct tcp_ctx *t, struct tconn *c, uint64_t now)
{
	struct server *s = t->s;
	size_t off = 0;
	int ret = 0;
	for (;;) {
		while (c->inlen - off >= 2 && TCP_OUT_CAP - c->outlen >= TCP_MSG_MAX) {
			size_t mlen = (size_t)c->in[off] << 8 | c->in[off + 1];
			if (c->inlen - off - 2 < mlen)
				break;
			struct dns_state *st = state_acquire(s, s->nreaders - 1);
			t->cx.now = (uint64_t)time(NULL);
			size_t len = dnsd_answer(st, &t->cx, c->in + off + 2, mlen, &c->cl, true,
			                         c->out + c->outlen + 2, DNSD_TCP_MAX);
			state_release(s, s->nreaders - 1);
			off += 2 + mlen;
			if (!len) {
				ret = -1; /* not DNS: drop the connection */
				goto out;
			}
			c->out[c->outlen] = (uint8_t)(len >> 8);
			c->out[c->outlen + 1] = (uint8_t)len;
			c->outlen += 2 + len;
		}
		if (tconn_flush(c, now)) {
			ret = -1;
			goto out;
		}
		/* Go on while answers left and others wait; stop when sending blocks. */
		bool more = c->inlen - off >= 2 &&
		            c->inlen - off - 2 >= ((size_t)c->in[off] << 8 | c->in[off + 1]);
		if (!more || TCP_OUT_CAP - c->outlen < TCP_MSG_MAX)
			break;
	}
out:
	if (off) {
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
		c->query_ms = 0; /* a new query begins with the bytes left */
	}
	if (c->inlen && !c->query_ms)
		c->query_ms = now;
	return ret;
}

/* Serves one readiness event of a connection. Returns -1 when it is to be closed. */
static int tconn_event(struct tcp_ctx *t, unsigned slot, uint32_t events, uint64_t now)
{
	struct tconn *c = t->conns[slot];
	if (events & EPOLLERR)
		return -1;
	if (!c->writing && !c->eof) {
		while (c->inlen < sizeof(c->in)) {
			ssize_t k = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
			if (k > 0) {
				if (!c->inlen)
					c->query_ms = now;
				c->inlen += (size_t)k;
				c->last_ms = now;
				continue;
			}
			if (k == 0)
				c->eof = true;
			else if (errno == EINTR)
				continue;
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			break;
		}
	}
	if (tconn_answer(t, c, now))
		return -1;
	if (c->eof && !c->outlen)
		return -1; /* everything that came is answered */
	bool writing = c->outlen > 0;
	if (writing != c->writing) {
		struct epoll_event ev = {.events = writing ? EPOLLOUT : EPOLLIN,
		                         .data.u64 = (uint64_t)c->gen << 32 | slot};
		if (epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev) == -1)
			return -1;
		c->writing = writing;
	}
	return 0;
}

/* The slot a new client may take at the limit, or -1 if there is none: the connection
 * whose current business began longest ago (the query it is still reading, the answer it
 * is still sending, or else its last activity), provided that was more than a grace period
 * (--tcp-idle / 8) ago. One trickling a query, or idle for long, goes first; a client just
 * accepted, or in the middle of a quick query, never goes: a slow client that reconnects as
 * soon as it is dropped cannot use the eviction to push out the client that took its slot. */
static int tconn_victim(const struct tcp_ctx *t, uint64_t now)
{
	uint64_t grace = t->s->o->tcp_idle_ms / 8, best_t = UINT64_MAX;
	int best = -1;
	for (unsigned k = 0; k < t->s->o->tcp_max; k++) {
		const struct tconn *c = t->conns[k];
		if (!c)
			continue;
		uint64_t since = c->last_ms;
		if (c->query_ms && c->query_ms < since)
			since = c->query_ms;
		if (c->stall_ms && c->stall_ms < since)
			since = c->stall_ms;
		if (since < best_t && now - since > grace) {
			best = (int)k;
			best_t = since;
		}
	}
	return best;
}

static void tcp_accept(struct tcp_ctx *t, int lfd, uint64_t now)
{
	const struct dnsd_opts *o = t->s->o;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			return; /* EAGAIN, or a passing error (the client gave up, no fds) */
		if (t->nconns == o->tcp_max) {
			int v = tconn_victim(t, now);
			if (v < 0) {
				close(fd); /* everyone is busy with something recent */
				__atomic_fetch_add(&t->s->tcp_closed[TC_REFUSED], 1,
				                   __ATOMIC_RELAXED);
				continue;
			}
			tconn_close(t, (unsigned)v, TC_EVICTED);
		}
		unsigned slot = 0;
		while (slot < o->tcp_max && t->conns[slot])
			slot++;
		struct tconn *c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct tconn, in));
		c->fd = fd;
		c->cl.v6 = sockaddr_to_in6((struct sockaddr *)&ss, c->cl.addr);
		c->last_ms = now;
		c->gen = t->gen++ & 0x7fffffffu;
		struct epoll_event ev = {.events = EPOLLIN,
		                         .data.u64 = (uint64_t)c->gen << 32 | slot};
		if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			close(fd);
			free(c);
			continue;
		}
		t->conns[slot] = c;
		__atomic_store_n(&t->nconns, t->nconns + 1, __ATOMIC_RELAXED);
	}
}

/* Closes the connections whose clock ran out. */
static void tcp_expire(struct tcp_ctx *t, uint64_t now)
{
	uint64_t lim = t->s->o->tcp_idle_ms;
	for (unsigned k = 0; k < t->s->o->tcp_max; k++) {
		const struct tconn *c = t->conns[k];
		if (!c)
			continue;
		if ((c->query_ms && now - c->query_ms >= lim) ||
		    (c->stall_ms && now - c->stall_ms >= lim))
			tconn_close(t, k, TC_SLOW);
		else if (now - c->last_ms >= lim)
			tconn_close(t, k, TC_IDLE);
	}
}

static void *tcp_thread(void *arg)
{
	struct tcp_ctx *t = arg;
	struct server *s = t->s;
	const struct dnsd_opts *o = s->o;
	struct epoll_event ev, evs[64];
	uint64_t last_scan = peak_mono_ms();

	for (unsigned l = 0; l < o->nlisten; l++) {
		ev = (struct epoll_event){.events = EPOLLIN,
		                          .data.u64 = (uint64_t)l << 32 | 0xffffffffu};
		epoll_ctl(t->ep, EPOLL_CTL_ADD, t->lfds[l], &ev);
	}
	ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = UINT64_MAX};
	epoll_ctl(t->ep, EPOLL_CTL_ADD, s->stop_fd, &ev);
	for (bool run = true; run;) {
		int n = epoll_wait(t->ep, evs, 64, TCP_SCAN_MS);
		uint64_t now = peak_mono_ms();
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			if (d == UINT64_MAX) {
				run = false;
				break;
			}
			if ((d & 0xffffffffu) == 0xffffffffu) {
				tcp_accept(t, t->lfds[d >> 32], now);
				continue;
			}
			/* A slot closed (or evicted and reused) earlier in this batch may
			 * still have an event here: the generation tells. */
			unsigned slot = (unsigned)(d & 0xffffffffu);
			struct tconn *c = t->conns[slot];
			if (c && c->gen == d >> 32 && tconn_event(t, slot, evs[i].events, now))
				tconn_close(t, slot, TC_CLIENT);
		}
		if (now - last_scan >= TCP_SCAN_MS) {
			last_scan = now;
			tcp_expire(t, now);
		}
	}
	for (unsigned k = 0; k < o->tcp_max; k++)
		if (t->conns[k])
			tconn_close(t, k, TC_N);
	return NULL;
}

/* ---- metrics ---- */

enum { LABEL_MAX = 2 * DNS_NAME_STRLEN + 1 };

static void metric_steer(const struct steer_counter *c, uint64_t total, void *arg)
{
	char sv[LABEL_MAX], ep[LABEL_MAX];
	mbuf_printf(arg, "peak_dns_steered_answers_total{service=\"%s\",endpoint=\"%s\"} %llu\n",
	            metrics_label(sv, sizeof(sv), c->service),
	            metrics_label(ep, sizeof(ep), c->endpoint), (unsigned long long)total);
}

static void metrics_render(struct mbuf *bp, void *arg)
{
	struct server *s = arg;
	struct mbuf b = *bp;
	static const char *const qt[] = {"A", "AAAA", "APL", "TXT", "SOA", "NS", "ANY", "other"};
	static const char *const rc[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
	                                 "NOTIMP",  "REFUSED", "BADVERS"};
	struct dnsd_stats t = {0};
	for (unsigned w = 0; w < s->nreaders; w++) {
		const struct dnsd_stats *x = &s->stats[w];
		for (int i = 0; i < DQ_N; i++)
			t.qtype[i] += __atomic_load_n(&x->qtype[i], __ATOMIC_RELAXED);
		for (int i = 0; i < DR_N; i++)
			t.rcode[i] += __atomic_load_n(&x->rcode[i], __ATOMIC_RELAXED);
		t.udp += __atomic_load_n(&x->udp, __ATOMIC_RELAXED);
		t.tcp += __atomic_load_n(&x->tcp, __ATOMIC_RELAXED);
		t.dropped += __atomic_load_n(&x->dropped, __ATOMIC_RELAXED);
		t.truncated += __atomic_load_n(&x->truncated, __ATOMIC_RELAXED);
		t.ecs += __atomic_load_n(&x->ecs, __ATOMIC_RELAXED);
		t.batches += __atomic_load_n(&x->batches, __ATOMIC_RELAXED);
		for (int i = 0; i < DP_N; i++)
			t.pow[i] += __atomic_load_n(&x->pow[i], __ATOMIC_RELAXED);
		t.pow_hashes += __atomic_load_n(&x->pow_hashes, __ATOMIC_RELAXED);
	}
	mbuf_printf(&b, "# HELP peak_dns_queries_total Queries answered, by query type.\n"
	                "# TYPE peak_dns_queries_total counter\n");
	for (int i = 0; i < DQ_N; i++)
		mbuf_printf(&b, "peak_dns_queries_total{type=\"%s\"} %llu\n", qt[i],
		            (unsigned long long)t.qtype[i]);
	mbuf_printf(&b, "# HELP peak_dns_responses_total Responses, by rcode.\n"
	                "# TYPE peak_dns_responses_total counter\n");
	for (int i = 0; i < DR_N; i++)
		mbuf_printf(&b, "peak_dns_responses_total{rcode=\"%s\"} %llu\n", rc[i],
		            (unsigned long long)t.rcode[i]);
	mbuf_printf(
	    &b,
	    "# HELP peak_dns_received_total Messages received, by transport.\n"
	    "# TYPE peak_dns_received_total counter\n"
	    "peak_dns_received_total{transport=\"udp\"} %llu\n"
	    "peak_dns_received_total{transport=\"tcp\"} %llu\n"
	    "# HELP peak_dns_dropped_total Messages that were not queries (never answered).\n"
	    "# TYPE peak_dns_dropped_total counter\npeak_dns_dropped_total %llu\n"
	    "# HELP peak_dns_truncated_total UDP responses truncated (TC).\n"
	    "# TYPE peak_dns_truncated_total counter\npeak_dns_truncated_total %llu\n"
	    "# HELP peak_dns_client_subnet_total Queries with a Client Subnet option.\n"
	    "# TYPE peak_dns_client_subnet_total counter\npeak_dns_client_subnet_total %llu\n"
	    "# HELP peak_dns_udp_batches_total UDP receive calls that returned queries.\n"
	    "# TYPE peak_dns_udp_batches_total counter\npeak_dns_udp_batches_total %llu\n",
	    (unsigned long long)t.udp, (unsigned long long)t.tcp, (unsigned long long)t.dropped,
	    (unsigned long long)t.truncated, (unsigned long long)t.ecs,
	    (unsigned long long)t.batches);
	static const char *const pw[DP_N] = {"searched", "cached", "refused"};
	mbuf_printf(&b, "# HELP peak_dns_pow_addresses_total Proof-of-work addresses in AAAA "
	                "answers: searched, from the cache, or refused (over the budget).\n"
	                "# TYPE peak_dns_pow_addresses_total counter\n");
	for (int i = 0; i < DP_N; i++)
		mbuf_printf(&b, "peak_dns_pow_addresses_total{result=\"%s\"} %llu\n", pw[i],
		            (unsigned long long)t.pow[i]);
	mbuf_printf(&b,
	            "# HELP peak_dns_pow_hashes_total Hashes spent searching proof-of-work "
	            "nonces.\n# TYPE peak_dns_pow_hashes_total counter\npeak_dns_pow_hashes_total "
	            "%llu\n",
	            (unsigned long long)t.pow_hashes);
	static const char *const why[TC_N] = {"idle", "slow", "evicted", "client", "refused"};
	mbuf_printf(&b,
	            "# HELP peak_dns_tcp_connections TCP connections open.\n"
	            "# TYPE peak_dns_tcp_connections gauge\npeak_dns_tcp_connections %u\n"
	            "# HELP peak_dns_tcp_closed_total TCP connections closed by the server, by "
	            "reason.\n# TYPE peak_dns_tcp_closed_total counter\n",
	            s->tcp ? __atomic_load_n(&s->tcp->nconns, __ATOMIC_RELAXED) : 0);
	for (int i = 0; i < TC_N; i++)
		mbuf_printf(
		    &b, "peak_dns_tcp_closed_total{reason=\"%s\"} %llu\n", why[i],
		    (unsigned long long)__atomic_load_n(&s->tcp_closed[i], __ATOMIC_RELAXED));
	mbuf_printf(&b,
	            "# HELP peak_dns_steered_answers_total AAAA answers steered to an endpoint.\n"
	            "# TYPE peak_dns_steered_answers_total counter\n");
	steer_counters_each(metric_steer, &b);
	pthread_mutex_lock(&s->dyn_lock);
	mbuf_printf(&b,
	            "# HELP peak_dns_reloads_total Configuration reloads, by result.\n"
	            "# TYPE peak_dns_reloads_total counter\n"
	            "peak_dns_reloads_total{result=\"ok\"} %llu\n"
	            "peak_dns_reloads_total{result=\"error\"} %llu\n"
	            "# HELP peak_dns_endpoint_healthy 1 if the endpoint is marked healthy.\n"
	            "# TYPE peak_dns_endpoint_healthy gauge\n",
	            (unsigned long long)atomic_load(&s->reloads_ok),
	            (unsigned long long)atomic_load(&s->reloads_failed));
	for (unsigned i = 0; i < s->dyn.nsvc; i++) {
		char name[DNS_NAME_STRLEN], sv[LABEL_MAX], ep[LABEL_MAX];
		dns_name_print(&s->dyn.svc[i].name, name, sizeof(name));
		metrics_label(sv, sizeof(sv), name);
		for (unsigned e = 0; e < s->dyn.svc[i].nep; e++)
			mbuf_printf(
			    &b, "peak_dns_endpoint_healthy{service=\"%s\",endpoint=\"%s\"} %d\n",
			    sv, metrics_label(ep, sizeof(ep), s->dyn.svc[i].ep[e].id),
			    s->dyn.svc[i].ep[e].healthy);
	}
	pthread_mutex_unlock(&s->dyn_lock);
	*bp = b;
}

/* ---- configuration, reloads and the control socket (the main thread) ---- */

enum { KUBE_TICK_MS = 250 }; /* --source kubernetes: retries and backoffs are driven so often */

static int read_file(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	int r = peak_read_file(path, CFG_MAX_FILE_BYTES, out, len);
	if (r == -EFBIG)
		snprintf(err, errlen, "%s: larger than %d bytes", path, CFG_MAX_FILE_BYTES);
	else if (r)
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-r));
	return r ? -1 : 0;
}

/* Builds and publishes a state from configuration bytes, which it frees on success (the
 * caller keeps them on failure). Returns 0 or -1 with the reason in err. */
static int publish_config(struct server *s, struct peak_config *cfg, char *err, size_t errlen);

static int rebuild(struct server *s, uint8_t *bytes, size_t len, char *err, size_t errlen)
{
	struct peak_config *cfg;
	if (config_parse(s->o->config, bytes, len, &cfg, err, errlen))
		return -1;
	if (publish_config(s, cfg, err, errlen)) {
		config_free(cfg);
		return -1;
	}
	free(bytes); /* the parsed configuration is what later changes start from */
	return 0;
}

/* Builds and publishes a state from cfg, which the state takes over on success (the
 * caller keeps it on failure). Returns 0 or -1 with the reason in err. */
static int publish_config(struct server *s, struct peak_config *cfg, char *err, size_t errlen)
{
	pthread_mutex_lock(&s->dyn_lock);
	struct dns_state *st = dns_state_build(cfg, &s->dyn, err, errlen);
	pthread_mutex_unlock(&s->dyn_lock);
	if (!st)
		return -1;
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		char name[DNS_NAME_STRLEN];
		unsigned pow = cfg->svc[i].space.d.pow;
		if (pow <= DNSD_POW_WARN_BITS)
			continue;
		dns_name_print(&cfg->svc[i].name, name, sizeof(name));
		log_msg(LOG_WARNING,
		        "dns: service %s: pow=%u needs 2^%u hashes per AAAA address on average; "
		        "the server stops at 2^%d, so many AAAA queries will get SERVFAIL",
		        name, pow, pow, DNSD_POW_MAX_TRIES_LOG2);
	}
	state_publish(s, st);
	return 0;
}

/* Publishes a state with the services whose live state changed rebuilt and the rest
 * shared with the state in force: no parsing. Main thread. Returns 0 or -1 with the reason
 * in err. */
static int update(struct server *s, char *err, size_t errlen)
{
	pthread_mutex_lock(&s->dyn_lock);
	struct dns_state *st = dns_state_update(atomic_load(&s->state), &s->dyn, err, errlen);
	pthread_mutex_unlock(&s->dyn_lock);
	if (!st)
		return -1;
	state_publish(s, st);
	return 0;
}

static int update(struct server *s, char *err, size_t errlen);

/* --source kubernetes: publishes the cluster's current view (kube_config: the file's zone
 * with the API's services); its endpoints that drain (terminating, still serving) are
 * marked down, those that stopped draining up. Returns 0 or -1 with the reason in err (the
 * state in force stays). */
static int kube_rebuild(struct server *s, char *err, size_t errlen)
{
	struct peak_config *cfg = NULL;
	if (kube_config(s->kube, s->o->config, &cfg, err, errlen))
		return -1;
	if (publish_config(s, cfg, err, errlen)) {
		config_free(cfg);
		return -1;
	}
	bool changed = false; /* cfg is the state's now, unchanged while this thread runs */
	pthread_mutex_lock(&s->dyn_lock);
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		char name[DNS_NAME_STRLEN];
		dns_name_print(&cfg->svc[i].name, name, sizeof(name));
		for (unsigned e = 0; e < cfg->svc[i].nep; e++) {
			const char *id = cfg->svc[i].ep[e].id;
			bool now = kube_draining(s->kube, name, id, false);
			if (now == kube_draining(s->kube, name, id, true) && !now)
				continue;
			changed |= !dnsd_dyn_set(&s->dyn, &cfg->svc[i].name, id, !now, -1);
		}
	}
	pthread_mutex_unlock(&s->dyn_lock);
	return changed ? update(s, err, errlen) : 0;
}

/* --source kubernetes: applies the cluster's new view, counted and logged as a reload. */
static void kube_apply(struct server *s, char *reply, size_t cap)
{
	char err[CFG_ERRLEN];
	if (kube_rebuild(s, err, sizeof(err))) {
		atomic_fetch_add(&s->reloads_failed, 1);
		log_msg(LOG_ERR,
		        "dns: kubernetes: the cluster's view not applied, still serving "
		        "the previous state: %s",
		        err);
		snprintf(reply, cap, "error: %s\n", err);
		return;
	}
	atomic_fetch_add(&s->reloads_ok, 1);
	log_msg(LOG_INFO, "dns: kubernetes: %u services applied",
	        atomic_load(&s->state)->cfg->nsvc);
	snprintf(reply, cap, "ok\n");
}

static void reload(struct server *s, char *reply, size_t cap)
{
	char err[CFG_ERRLEN];
	uint8_t *bytes;
	size_t len;
	if (s->kube) { /* the file's zone again, with the cluster's services */
		kube_apply(s, reply, cap);
		return;
	}
	if (read_file(s->o->config, &bytes, &len, err, sizeof(err)) ||
	    (rebuild(s, bytes, len, err, sizeof(err)) && (free(bytes), 1))) {
		atomic_fetch_add(&s->reloads_failed, 1);
		log_msg(LOG_ERR, "dns: reload refused, still serving the previous state: %s", err);
		snprintf(reply, cap, "error: %s\n", err);
		return;
	}
	atomic_fetch_add(&s->reloads_ok, 1);
	log_msg(LOG_INFO, "dns: reloaded %s", s->o->config);
	snprintf(reply, cap, "ok\n");
}

/* Runs one control command; writes the reply (ending in "ok" or "error: ...") to reply. */
static void control_command(struct server *s, char *line, char *reply, size_t cap)
{
	struct ctl_msg m;
	char err[CFG_ERRLEN];
	size_t len = strcspn(line, "\n");
	if (ctl_parse(line, len, &m) ||
	    (m.kind != CTL_RELOAD && m.kind != CTL_STATUS && m.kind != CTL_HEALTH &&
	     m.kind != CTL_WEIGHT && m.kind != CTL_ADD && m.kind != CTL_DEL)) {
		snprintf(reply, cap,
		         "error: %s (commands: status | reload | health SERVICE ENDPOINT up|down "
		         "| weight SERVICE ENDPOINT N | add SERVICE ENDPOINT ADDRESS WEIGHT [NODE] "
		         "| del SERVICE ENDPOINT)\n",
		         m.kind == CTL_NONE ? m.why : "unknown command");
		return;
	}
	if (m.kind == CTL_ADD || m.kind == CTL_DEL) { /* endpoints added at run time */
		struct dns_name nm;
		int r = -ENOENT;
		pthread_mutex_lock(&s->dyn_lock);
		struct dnsd_svc_dyn *sd =
		    dns_name_parse(m.svc, &nm) ? NULL : dnsd_dyn_svc(&s->dyn, &nm);
		if (sd)
			r = m.kind == CTL_ADD ? dnsd_svc_ep_add(sd, m.id, m.weight)
			                      : dnsd_svc_ep_del(sd, m.id);
		pthread_mutex_unlock(&s->dyn_lock);
		if (r || update(s, err, sizeof(err))) {
			snprintf(reply, cap, "error: %s\n",
			         !sd            ? "no such service"
			         : r == -EPERM  ? "the endpoint is the file's: remove it there"
			         : r == -EEXIST ? "the endpoint exists"
			         : r == -ENOENT ? "no such endpoint"
			         : r == -EINVAL ? "it holds the last weight"
			         : r            ? strerror(-r)
			                        : err);
			return;
		}
		log_msg(LOG_INFO, "dns: %.*s", (int)len, line);
		snprintf(reply, cap, "ok\n");
		return;
	}
	if (m.kind == CTL_RELOAD) {
		reload(s, reply, cap);
		return;
	}
	if (m.kind == CTL_STATUS) {
		size_t n = 0;
		pthread_mutex_lock(&s->dyn_lock);
		struct dns_state *st = atomic_load(&s->state);
		for (unsigned i = 0; i < s->dyn.nsvc && n < cap; i++) {
			char name[DNS_NAME_STRLEN];
			const struct dnsd_svc_dyn *sd = &s->dyn.svc[i];
			dns_name_print(&sd->name, name, sizeof(name));
			for (unsigned e = 0; e < sd->nep && n < cap; e++) {
				uint32_t held =
				    i < st->nsvc && st->svc[i]->ep_nslice && e < st->svc[i]->nep
				        ? st->svc[i]->ep_nslice[e]
				        : 0;
				n += (size_t)snprintf(
				    reply + n, cap - n, "%s %s %s weight=%u slices=%u\n", name,
				    sd->ep[e].id, sd->ep[e].healthy ? "up" : "down",
				    sd->ep[e].weight, held);
			}
		}
		pthread_mutex_unlock(&s->dyn_lock);
		if (n < cap)
			snprintf(reply + n, cap - n, "ok\n");
		return;
	}
	struct dns_name svc;
	if (dns_name_parse(m.svc, &svc)) { /* the grammar checked it: cannot fail */
		snprintf(reply, cap, "error: '%s' is not a domain name\n", m.svc);
		return;
	}
	int h = m.kind == CTL_HEALTH ? m.up : -1;
	long w = m.kind == CTL_WEIGHT ? (long)m.weight : -1;
	pthread_mutex_lock(&s->dyn_lock);
	int r = dnsd_dyn_set(&s->dyn, &svc, m.id, h, w);
	pthread_mutex_unlock(&s->dyn_lock);
	if (r == -ENOENT) {
		snprintf(reply, cap, "error: no endpoint '%s' in service %s\n", m.id, m.svc);
		return;
	}
	if (r || update(s, err, sizeof(err))) {
		snprintf(reply, cap, "error: %s\n", r ? strerror(-r) : err);
		return;
	}
	log_msg(LOG_INFO, "dns: %.*s", (int)len, line);
	snprintf(reply, cap, "ok\n");
}

/* ---- --store etcd: the state the controller stores, followed (follow.h) ---- */

struct follow_ctx {
	struct server *s;
	unsigned changed;
};

/* The endpoints added at run time that a service's record names ("add" lines) join sd,
 * those it no longer names leave (the file's endpoints stay as they are): the pods of a
 * scale-up through the controller's control socket reach this replica through the store,
 * with no read of its configuration. Returns the changes made. */
static unsigned follow_endpoints(struct dnsd_svc_dyn *sd, const char *text, size_t len)
{
	struct ctl_msg *m = malloc(sizeof(*m));
	unsigned changed = 0, nadd = 0, nnew = 0, cap = 0;
	char(*ids)[CTL_ID_MAX] = NULL;
	uint32_t *w = NULL;
	bool *isnew = NULL;
	char name[DNS_NAME_STRLEN];
	if (!m)
		return 0;
	dns_name_print(&sd->name, name, sizeof(name));
	for (size_t at = 0, n; at < len; at += n + 1) {
		const char *nl = memchr(text + at, '\n', len - at);
		n = nl ? (size_t)(nl - (text + at)) : len - at;
		bool add = n > 4 && !memcmp(text + at, "add ", 4);
		bool wt = n > 7 && !memcmp(text + at, "weight ", 7);
		if ((!add && !wt) || ctl_parse(text + at, n, m))
			continue;
		if (wt) { /* the live weight of one added (they come after the add lines) */
			for (unsigned k = 0; k < nadd; k++)
				if (!strcmp(ids[k], m->id))
					w[k] = m->weight;
			continue;
		}
		if (nadd == cap) {
			cap = cap ? 2 * cap : 16;
			char(*g)[CTL_ID_MAX] = realloc(ids, cap * sizeof(*ids));
			uint32_t *gw = g ? realloc(w, cap * sizeof(*w)) : NULL;
			bool *gn = gw ? realloc(isnew, cap * sizeof(*isnew)) : NULL;
			ids = g ? g : ids;
			w = gw ? gw : w;
			isnew = gn ? gn : isnew;
			if (!gn)
				goto out;
		}
		memcpy(ids[nadd], m->id, CTL_ID_MAX);
		w[nadd] = m->weight;
		isnew[nadd] = true;
		for (unsigned e = 0; e < sd->nep && isnew[nadd]; e++)
			isnew[nadd] = strcmp(sd->ep[e].id, m->id) != 0;
		nnew += isnew[nadd];
		nadd++;
	}
	if (nnew) { /* the new ones in the record's order, in one rebalance */
		char(*nid)[CFG_ID_MAX] = malloc(nnew * sizeof(*nid));
		uint32_t *nw = malloc(nnew * sizeof(*nw));
		unsigned k = 0;
		for (unsigned j = 0; nid && nw && j < nadd; j++)
			if (isnew[j]) {
				memcpy(nid[k], ids[j], CFG_ID_MAX);
				nw[k++] = w[j];
			}
		int r = nid && nw ? dnsd_svc_ep_add_many(sd, nid, nw, nnew) : -ENOMEM;
		if (!r)
			changed += nnew;
		else
			log_msg(LOG_WARNING, "dns: %s: cannot add %u endpoints: %s", name, nnew,
			        strerror(-r));
		free(nid);
		free(nw);
	}
	for (unsigned e = 0; e < sd->nep;) { /* in order, as the controller removes them */
		bool named = !sd->ep[e].rt;
		for (unsigned k = 0; k < nadd && !named; k++)
			named = !strcmp(ids[k], sd->ep[e].id);
		if (named) {
			e++;
			continue;
		}
		char id[CFG_ID_MAX];
		memcpy(id, sd->ep[e].id, CFG_ID_MAX);
		int r = dnsd_svc_ep_del(sd, id);
		if (!r) {
			changed++;
			continue;
		}
		log_msg(LOG_WARNING, "dns: %s %s: cannot remove it: %s", name, id, strerror(-r));
		e++;
	}
out:
	free(ids);
	free(w);
	free(isnew);
	free(m);
	return changed;
}

/* One service's stored record (checked): each endpoint of the service is up unless the
 * record says "health ... down", and takes the record's weight. Ups and weights go first,
 * downs last, so the service is never left without an endpoint on the way. A service or
 * endpoint the configuration does not have is skipped. */
static void follow_apply(void *arg, const char *name, const char *text, size_t len)
{
	struct follow_ctx *fc = arg;
	struct dnsd_dyn *dyn = &fc->s->dyn;
	struct dnsd_svc_dyn *sd = NULL;
	struct dns_name svc;
	bool *down = NULL;
	long *w = NULL;
	if (dns_name_parse(name, &svc))
		return;
	pthread_mutex_lock(&fc->s->dyn_lock);
	for (unsigned i = 0; i < dyn->nsvc && !sd; i++)
		if (dns_name_eq(&dyn->svc[i].name, &svc))
			sd = &dyn->svc[i];
	if (!sd)
		goto out;
	fc->changed += follow_endpoints(sd, text, len);
	if (!(down = calloc(sd->nep + 1, sizeof(*down))) ||
	    !(w = malloc((sd->nep + 1) * sizeof(*w))))
		goto out;
	for (unsigned e = 0; e < sd->nep; e++)
		w[e] = -1;
	for (size_t at = 0, n; at < len; at += n + 1) {
		struct ctl_msg m;
		const char *nl = memchr(text + at, '\n', len - at);
		n = nl ? (size_t)(nl - (text + at)) : len - at;
		if (ctl_parse(text + at, n, &m) || (m.kind != CTL_HEALTH && m.kind != CTL_WEIGHT))
			continue;
		for (unsigned e = 0; e < sd->nep; e++) {
			if (strcmp(sd->ep[e].id, m.id))
				continue;
			if (m.kind == CTL_HEALTH)
				down[e] = !m.up;
			else
				w[e] = (long)m.weight;
		}
	}
	for (int pass = 0; pass < 3; pass++) {
		for (unsigned e = 0; e < sd->nep; e++) {
			const struct dnsd_ep_dyn *x = &sd->ep[e];
			int h = -1;
			long wt = -1;
			if (pass == 0 && !down[e] && !x->healthy)
				h = 1;
			else if (pass == 1 && w[e] >= 0 && (uint32_t)w[e] != x->weight)
				wt = w[e];
			else if (pass == 2 && down[e] && x->healthy)
				h = 0;
			if ((h >= 0 || wt >= 0) && !dnsd_dyn_set(dyn, &svc, x->id, h, wt))
				fc->changed++;
		}
	}
out:
	pthread_mutex_unlock(&fc->s->dyn_lock);
	free(down);
	free(w);
}

/* Every FOLLOW_TICK_MS: reads the stored state afresh when it changed and serves it. */
static void follow_tick(struct server *s, struct dns_follow *f)
{
	struct follow_ctx fc = {.s = s};
	char err[CFG_ERRLEN];
	if (dns_follow_step(f, follow_apply, &fc) != 1 || !fc.changed)
		return;
	if (update(s, err, sizeof(err)))
		log_msg(LOG_ERR, "dns: %s: the stored state cannot be served: %s",
		        s->o->kube ? "kubernetes" : "etcd", err);
	else
		log_msg(LOG_INFO, "dns: %s: the stored state applied (%u changes)",
		        s->o->kube ? "kubernetes" : "etcd", fc.changed);
}

/* ---- the control socket: served by the main thread between signals, never blocking ----
 *
 * Each client gets CTL_DEADLINE_MS from its connection to send its line and take the whole
 * reply; a client slower than that is dropped, so a client trickling bytes delays neither a
 * signal nor another client. At most CTL_MAX_CLIENTS at once: a new one takes the place of
 * the oldest. */

enum { CTL_MAX_CLIENTS = 8, CTL_DEADLINE_MS = 2000, CTL_REPLY_MAX = 1 << 20 };

struct ctl_client {
	int fd; /* -1: a free place */
	uint64_t deadline_ms;
	size_t inlen;
	char line[CTL_LINE_MAX];
	char *reply; /* NULL while the line is read */
	size_t replylen, replyoff;
};

struct ctl {
	int lfd;
	const char *path;
	dev_t dev; /* the socket file we made, so that we remove only that */
	ino_t ino;
	struct ctl_client cl[CTL_MAX_CLIENTS];
};

/* Makes the control socket at o->control with mode o->control_mode and group
 * o->control_group (unless -1). An existing file there is removed only if it is a socket
 * nobody listens on (a previous server's); anything else is refused. Returns 0, or -1 with
 * the reason logged. */
static int control_listen(const struct dnsd_opts *o, struct ctl *c)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *path = o->control;
	struct stat sb;
	bool made = false;
	int ret = -1, fd = -1;

	c->lfd = -1;
	c->path = path;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		c->cl[i].fd = -1;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_msg(LOG_ERR, "dns: control socket %s: path longer than %zu bytes", path,
		        sizeof(sun.sun_path) - 1);
		goto out;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		log_msg(LOG_ERR, "dns: control socket: %s", strerror(errno));
		goto out;
	}
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			log_msg(LOG_ERR,
			        "dns: control socket %s: the path exists and is not a "
			        "socket; not removing it",
			        path);
			goto out;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int r = probe == -1 ? -1 : connect(probe, (struct sockaddr *)&sun, sizeof(sun));
		int e = errno;
		if (probe != -1)
			close(probe);
		if (r == 0) {
			log_msg(LOG_ERR, "dns: control socket %s: another server listens there",
			        path);
			goto out;
		}
		if (e != ECONNREFUSED) {
			log_msg(LOG_ERR, "dns: control socket %s: cannot tell if it is stale: %s",
			        path, strerror(e));
			goto out;
		}
		if (unlink(path) == -1 && errno != ENOENT) {
			log_msg(LOG_ERR,
			        "dns: control socket %s: cannot remove the stale socket: %s", path,
			        strerror(errno));
			goto out;
		}
	} else if (errno != ENOENT) {
		log_msg(LOG_ERR, "dns: control socket %s: %s", path, strerror(errno));
		goto out;
	}
	/* Owner-only while it is made (umask is per process: no thread runs yet), then the
	 * group and mode asked for, so nobody else can connect in between. */
	mode_t um = umask(0177);
	int b = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	int e = errno;
	umask(um);
	if (b == -1) {
		log_msg(LOG_ERR, "dns: control socket %s: %s", path, strerror(e));
		goto out;
	}
	made = true;
	if (o->control_group != -1 && chown(path, (uid_t)-1, (gid_t)o->control_group) == -1) {
		log_msg(LOG_ERR, "dns: control socket %s: cannot set group %ld: %s", path,
		        o->control_group, strerror(errno));
		goto out;
	}
	if (chmod(path, o->control_mode) == -1 || lstat(path, &sb) == -1 || listen(fd, 16) == -1) {
		log_msg(LOG_ERR, "dns: control socket %s: %s", path, strerror(errno));
		goto out;
	}
	c->dev = sb.st_dev;
	c->ino = sb.st_ino;
	c->lfd = fd;
	fd = -1;
	ret = 0;
out:
	if (fd != -1)
		close(fd);
	if (ret && made)
		unlink(path);
	return ret;
}

static void ctl_client_close(struct ctl_client *k)
{
	close(k->fd);
	k->fd = -1;
	free(k->reply);
	k->reply = NULL;
}

/* Closes the clients and the socket, and removes the socket file if it is still ours. */
static void control_close(struct ctl *c)
{
	struct stat sb;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->cl[i].fd != -1)
			ctl_client_close(&c->cl[i]);
	if (c->lfd == -1)
		return;
	close(c->lfd);
	c->lfd = -1;
	if (lstat(c->path, &sb) == 0 && sb.st_dev == c->dev && sb.st_ino == c->ino)
		unlink(c->path);
}

static void control_accept(struct ctl *c, uint64_t now)
{
	for (;;) {
		int fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			return;
		int slot = 0;
		for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
			if (c->cl[i].fd == -1) {
				slot = i;
				break;
			}
			if (c->cl[i].deadline_ms < c->cl[slot].deadline_ms)
				slot = i;
		}
		struct ctl_client *k = &c->cl[slot];
		if (k->fd != -1) {
			log_msg(LOG_WARNING,
			        "dns: control: %d clients at once; dropping the oldest",
			        CTL_MAX_CLIENTS);
			ctl_client_close(k);
		}
		k->fd = fd;
		k->deadline_ms = now + CTL_DEADLINE_MS;
		k->inlen = 0;
		k->replylen = k->replyoff = 0;
	}
}

/* Moves one client on as far as it can go without waiting. */
static void control_step(struct server *s, struct ctl_client *k)
{
	while (!k->reply) {
		ssize_t n = recv(k->fd, k->line + k->inlen, sizeof(k->line) - 1 - k->inlen, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n == -1) {
			ctl_client_close(k);
			return;
		}
		k->inlen += (size_t)n;
		bool whole =
		    n == 0 || memchr(k->line, '\n', k->inlen) || k->inlen == sizeof(k->line) - 1;
		if (!whole)
			continue;
		k->line[k->inlen] = '\0';
		if (!(k->reply = malloc(CTL_REPLY_MAX))) {
			ctl_client_close(k);
			return;
		}
		control_command(s, k->line, k->reply, CTL_REPLY_MAX);
		k->replylen = strlen(k->reply);
	}
	while (k->replyoff < k->replylen) {
		ssize_t n =
		    send(k->fd, k->reply + k->replyoff, k->replylen - k->replyoff, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n == -1)
			break;
		k->replyoff += (size_t)n;
	}
	ctl_client_close(k);
}

int dnsd_run(const struct dnsd_opts *o)
{
	struct server *s = calloc(1, sizeof(*s));
	struct worker *wk = NULL;
	struct tcp_ctx tc = {.ep = -1};
	struct ctl ctl = {.lfd = -1};
	struct metrics_srv *mhd = NULL;
	struct dns_follow *fol = NULL;
	uint64_t fol_next = 0;
	int ret = 1, sfd = -1;
	unsigned started = 0;
	bool tcp_started = false;
	char err[CFG_ERRLEN], a[64];
	uint8_t *bytes = NULL;
	size_t len;

	if (!s)
		return 1;
	s->o = o;
	s->stop_fd = -1;
	s->nworkers = o->threads * o->nlisten;
	s->nreaders = s->nworkers + 1;
	pthread_mutex_init(&s->dyn_lock, NULL);
	for (unsigned l = 0; l < DNSD_MAX_LISTEN; l++)
		tc.lfds[l] = -1;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		ctl.cl[i].fd = -1;
	if (s->nreaders > DNSD_MAX_WORKERS) {
		log_msg(LOG_ERR, "dns: %u threads x %u addresses is more than %d workers",
		        o->threads, o->nlisten, DNSD_MAX_WORKERS - 1);
		ret = 2;
		goto out;
	}
	steer_counters_init(s->nreaders);
	/* Before any thread starts, so that every thread has the signals blocked. */
	if ((sfd = signals_fd(1)) < 0) {
		log_msg(LOG_ERR, "dns: signalfd: %s", strerror(-sfd));
		goto out;
	}
	if ((s->stop_fd = eventfd(0, EFD_CLOEXEC)) == -1) {
		log_msg(LOG_ERR, "dns: eventfd: %s", strerror(errno));
		goto out;
	}
	if (o->source_kube) { /* the first lists (up to 10 s), then the cluster's view */
		if (!(s->kube = kube_open(o->source_kube, err, sizeof(err)))) {
			log_msg(LOG_ERR, "dns: %s", err);
			ret = 2; /* bad input: the options */
			goto out;
		}
		if (!kube_wait_synced(s->kube, 10000))
			log_msg(LOG_WARNING, "dns: kubernetes: the API did not answer in 10 s: "
			                     "starting with no services");
		if (kube_rebuild(s, err, sizeof(err))) {
			log_msg(LOG_ERR, "dns: %s", err);
			ret = 2; /* bad input: the configuration */
			goto out;
		}
	} else if (read_file(o->config, &bytes, &len, err, sizeof(err)) ||
	           rebuild(s, bytes, len, err, sizeof(err))) {
		free(bytes);
		log_msg(LOG_ERR, "dns: %s", err);
		ret = 2; /* bad input: the configuration */
		goto out;
	}
	if (!(wk = calloc(s->nworkers, sizeof(*wk))))
		goto out;
	for (unsigned w = 0; w < s->nworkers; w++)
		wk[w].fd = -1;
	for (unsigned l = 0; l < o->nlisten; l++) {
		for (unsigned t = 0; t < o->threads; t++) {
			unsigned w = l * o->threads + t;
			int fd = udp_socket(&o->listen[l], o->listen_len[l]);
			if (fd < 0) {
				log_msg(LOG_ERR, "dns: udp %s: %s",
				        sockaddr_print((const struct sockaddr *)&o->listen[l], a,
				                       sizeof(a)),
				        strerror(-fd));
				goto out;
			}
			wk[w].fd = fd;
		}
		tc.lfds[l] = tcp_listener(&o->listen[l], o->listen_len[l]);
		if (tc.lfds[l] < 0) {
			log_msg(
			    LOG_ERR, "dns: tcp %s: %s",
			    sockaddr_print((const struct sockaddr *)&o->listen[l], a, sizeof(a)),
			    strerror(-tc.lfds[l]));
			goto out;
		}
	}
	if (o->control && control_listen(o, &ctl))
		goto out;
	if (o->kube && !(fol = dns_follow_kube_open(o->kube, o->kube_namespace, o->kube_cm, err,
	                                            sizeof(err)))) {
		log_msg(LOG_ERR, "dns: %s", err);
		ret = 2; /* bad input: the options */
		goto out;
	}
	if (o->etcd && !(fol = dns_follow_open(o->etcd, o->etcd_prefix, err, sizeof(err)))) {
		log_msg(LOG_ERR, "dns: %s", err);
		ret = 2; /* bad input: the options */
		goto out;
	}
	tc.s = s;
	if ((tc.ep = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    !(tc.conns = calloc(o->tcp_max, sizeof(*tc.conns)))) {
		log_msg(LOG_ERR, "dns: tcp: cannot start: %s", strerror(errno));
		goto out;
	}
	ctx_init(s, &tc.cx, s->nreaders - 1);
	s->tcp = &tc;
	if (o->metrics && !(mhd = metrics_start(o->metrics, metrics_render, s)))
		goto out;
	for (; started < s->nworkers; started++) {
		wk[started].s = s;
		wk[started].id = started;
		if (pthread_create(&wk[started].th, NULL, udp_worker, &wk[started]))
			goto out;
	}
	if (pthread_create(&tc.th, NULL, tcp_thread, &tc))
		goto out;
	tcp_started = true;
	for (unsigned l = 0; l < o->nlisten; l++)
		log_msg(LOG_INFO, "dns: serving %s on %s (udp: %u workers, tcp)", o->config,
		        sockaddr_print((const struct sockaddr *)&o->listen[l], a, sizeof(a)),
		        o->threads);
	notify_ready("serving %s on %u addresses", o->config, o->nlisten);
	ret = 0;
	for (bool run = true; run;) {
		struct pollfd pf[3 + CTL_MAX_CLIENTS + KUBE_POLLFDS];
		struct ctl_client *who[CTL_MAX_CLIENTS];
		nfds_t n = 0;
		uint64_t now = peak_mono_ms(), next = UINT64_MAX;
		pf[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		if (ctl.lfd != -1)
			pf[n++] = (struct pollfd){.fd = ctl.lfd, .events = POLLIN};
		nfds_t first = n;
		for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
			struct ctl_client *k = &ctl.cl[i];
			if (k->fd == -1)
				continue;
			if (now >= k->deadline_ms) {
				ctl_client_close(k); /* too slow */
				continue;
			}
			next = k->deadline_ms < next ? k->deadline_ms : next;
			who[n - first] = k;
			pf[n++] =
			    (struct pollfd){.fd = k->fd, .events = k->reply ? POLLOUT : POLLIN};
		}
		if (fol && now >= fol_next) {
			follow_tick(s, fol);
			fol_next = peak_mono_ms() + FOLLOW_TICK_MS;
		}
		if (fol)
			next = fol_next < next ? fol_next : next;
		nfds_t nctl = n; /* the control clients end here: the watch's socket follows */
		int wfd = fol ? dns_follow_fd(fol) : -1;
		if (wfd != -1)
			pf[n++] = (struct pollfd){.fd = wfd, .events = POLLIN};
		if (s->kube) { /* a watch's event wakes the loop; a retry waits for a tick */
			kube_pollfds(s->kube, pf + n);
			n += KUBE_POLLFDS;
			next = now + KUBE_TICK_MS < next ? now + KUBE_TICK_MS : next;
		}
		int wait = next == UINT64_MAX ? -1 : (int)(next - now);
		if (poll(pf, n, wait) == -1 && errno != EINTR) {
			log_msg(LOG_ERR, "dns: poll: %s", strerror(errno));
			ret = 1;
			break;
		}
		now = peak_mono_ms();
		if (wfd != -1 && pf[nctl].revents)
			fol_next = 0; /* the watch has news: read it now, not at the next tick */
		if (s->kube && kube_poll(s->kube) == 1) {
			char reply[CFG_ERRLEN + 16];
			kube_apply(s, reply, sizeof(reply));
		}
		for (nfds_t i = first; i < nctl; i++)
			if (pf[i].revents)
				control_step(s, who[i - first]);
		if (ctl.lfd != -1 && pf[1].revents)
			control_accept(&ctl, now);
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				char reply[CFG_ERRLEN + 16];
				notify_reloading();
				reload(s, reply, sizeof(reply));
				notify_ready("serving %s; reload: %.*s", o->config,
				             (int)strcspn(reply, "\n"), reply);
			} else {
				log_msg(LOG_INFO, "dns: stopping on signal %u", si.ssi_signo);
				notify_stopping();
				run = false;
			}
		}
	}
out:
	atomic_store(&s->stopping, true);
	if (s->stop_fd != -1) {
		uint64_t one = 1;
		if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
			log_msg(LOG_ERR, "dns: cannot signal the workers to stop");
	}
	for (unsigned w = 0; w < started; w++)
		pthread_join(wk[w].th, NULL);
	if (tcp_started)
		pthread_join(tc.th, NULL);
	metrics_stop(mhd);
	for (unsigned w = 0; wk && w < s->nworkers; w++)
		if (wk[w].fd >= 0)
			close(wk[w].fd);
	for (unsigned l = 0; l < o->nlisten; l++)
		if (tc.lfds[l] >= 0)
			close(tc.lfds[l]);
	if (tc.ep != -1)
		close(tc.ep);
	free(tc.conns);
	dnsd_ctx_fini(&tc.cx);
	control_close(&ctl);
	dns_follow_free(fol);
	kube_free(s->kube);
	if (sfd >= 0)
		close(sfd);
	dns_state_free(atomic_load(&s->state));
	dnsd_dyn_fini(&s->dyn);
	steer_counters_free();
	free(wk);
	if (s->stop_fd != -1)
		close(s->stop_fd);
	pthread_mutex_destroy(&s->dyn_lock);
	free(s);
	return ret;
}
