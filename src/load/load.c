/* The peak load engine; see load.h. One epoll loop per thread, each owning a share of the
 * connection slots; nothing is shared between threads until the results are merged. */
#define _GNU_SOURCE /* epoll_pwait2 */
#include "load.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "peak/http.h"
#include "peak/util.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum {
	IN_BUF = 16384,     /* a response must fit */
	QUEUE_CAP = 256,    /* open loop: due requests a busy client may owe */
	TICK_NS = 10000000, /* timeouts are checked this often */
	EVENTS = 256,
};

enum slot_state { S_IDLE, S_CONNECTING, S_SENDING, S_READING, S_BACKOFF };

struct worker;

struct slot {
	struct worker *w;
	unsigned index;      /* over all slots */
	unsigned conn_count; /* connections opened: picks the next emulated client */
	const struct load_client *cl;
	unsigned dst_index; /* which of the client's destinations the connection goes to */
	int fd;
	enum slot_state st;
	uint64_t req_start, attempt_start; /* ns */
	uint64_t retry_at;                 /* S_BACKOFF: when the next attempt starts */
	unsigned tries;
	size_t sent, inlen;
	uint64_t down_since; /* 0: not in a gap */
	bool queued;         /* on the worker's ready list: at most once */
	uint64_t q[QUEUE_CAP];
	unsigned qhead, qlen;
	uint8_t in[IN_BUF];
};

struct worker {
	const struct load_opts *o;
	pthread_t thread;
	int ep;
	struct slot **slots;
	unsigned nslots;
	uint64_t t0, end, issued;
	double rate;
	size_t req_len;
	bool stopping;
	/* slots whose next request waits to start; each slot at most once (slot.queued), so
	 * nslots entries each */
	struct slot **ready, **ready_next;
	unsigned nready;
	unsigned nbackoff; /* slots waiting to retry */
	struct load_result r;
	_Atomic uint64_t done; /* ok + failed, for the progress line */
	int error;
};

const char *load_err_name(enum load_err e)
{
	static const char *const names[LOAD_E_COUNT] = {
	    "refused", "connect", "reset", "eof", "timeout", "http", "status", "overload",
	};
	return (unsigned)e < LOAD_E_COUNT ? names[e] : "?";
}

static bool retryable(enum load_err e)
{
	return e <= LOAD_E_TIMEOUT;
}

static enum load_err connect_err(int e)
{
	return e == ECONNREFUSED ? LOAD_E_REFUSED
	       : e == ETIMEDOUT  ? LOAD_E_TIMEOUT
	                         : LOAD_E_CONNECT;
}

static void slot_close(struct slot *s)
{
	if (s->fd != -1) {
		close(s->fd); /* also leaves the epoll set */
		s->fd = -1;
	}
	s->st = S_IDLE;
	s->inlen = 0;
}

static void timeline_add(struct worker *w, uint64_t now, bool ok)
{
	struct load_result *r = &w->r;
	uint64_t i = (now - w->t0) / ((uint64_t)w->o->timeline_ms * 1000000u);
	if (i >= r->timeline_n)
		i = r->timeline_n - 1;
	(ok ? r->timeline_ok : r->timeline_failed)[i]++;
}

static void attempt(struct slot *s, uint64_t now);
static void request_start(struct slot *s, uint64_t start, uint64_t now);

/* The slot's request is over (ok or failed): its next one starts from the event loop,
 * not from here, so a connect that fails at once cannot recurse. A slot already on the
 * ready list stays there once: its next request is started (closed loop) or taken from its
 * queue (open loop) by that one entry. */
static void request_next(struct slot *s)
{
	struct worker *w = s->w;
	atomic_store_explicit(&w->done, w->r.ok + w->r.failed, memory_order_relaxed);
	if (!w->stopping && !s->queued) {
		s->queued = true;
		w->ready[w->nready++] = s;
	}
}

/* Starts the next request of every slot that became ready before this call. */
static void run_ready(struct worker *w, uint64_t now)
{
	struct slot **list = w->ready;
	unsigned n = w->nready;
	w->ready = w->ready_next;
	w->ready_next = list;
	w->nready = 0;
	for (unsigned i = 0; i < n; i++) {
		struct slot *s = list[i];
		s->queued = false; /* before the start: a failure at once lists it again */
		if (w->o->concurrency) {
			w->r.sent++;
			request_start(s, now, now);
		} else if (s->qlen) { /* open loop: the oldest request still owed */
			uint64_t due = s->q[s->qhead];
			s->qhead = (s->qhead + 1) % QUEUE_CAP;
			s->qlen--;
			request_start(s, due, now);
		}
	}
}

static void note_failure(struct worker *w, uint64_t now)
{
	struct load_result *r = &w->r;
	double t = (double)(now - w->t0) / 1e9;
	if (++r->failed == 1)
		r->outage.first_fail_s = t;
	r->outage.last_fail_s = t;
	timeline_add(w, now, false);
}

static void request_done(struct slot *s, uint64_t now, bool ok)
{
	struct worker *w = s->w;
	struct load_result *r = &w->r;
	if (ok) {
		r->ok++;
		timeline_add(w, now, true);
		hist_add(&r->latency, now - s->req_start);
		if (s->down_since) {
			hist_add(&r->outage.gap, now - s->down_since);
			s->down_since = 0;
		}
	} else {
		note_failure(w, now);
		if (!s->down_since)
			s->down_since = s->req_start;
	}
	s->st = S_IDLE;
	/* a fallback address serves one request: the next goes to the rule's address again,
	 * which routing may have moved to a healthy pod meanwhile */
	if (s->fd != -1 && (w->o->new_conn || s->dst_index))
		slot_close(s);
	request_next(s);
}

/* Keeps the first LOAD_FAIL_LOG failed attempts of the worker (its own are in time
 * order), counts the rest. */
static void fail_log(struct slot *s, enum load_err e, uint64_t now)
{
	struct worker *w = s->w;
	struct load_result *r = &w->r;
	if (r->nfails == LOAD_FAIL_LOG) {
		r->fails_dropped++;
		return;
	}
	r->fails[r->nfails++] = (struct load_fail){
	    .start_ns = s->attempt_start - w->t0,
	    .end_ns = now - w->t0,
	    .slot = s->index,
	    .client = s->cl ? (unsigned)(s->cl - w->o->clients) : 0,
	    .dst_index = (uint8_t)s->dst_index,
	    .try_no = (uint8_t)(s->tries > 255 ? 255 : s->tries),
	    .err = (uint8_t)e,
	};
}

static void attempt_fail(struct slot *s, enum load_err e, uint64_t now)
{
	struct worker *w = s->w;
	w->r.err[e]++;
	fail_log(s, e, now);
	slot_close(s);
	if (retryable(e) && s->tries <= w->o->retries && !w->stopping) {
		w->r.retried++;
		if (w->o->retry_delay_ms) {
			s->st = S_BACKOFF;
			s->retry_at = now + (uint64_t)w->o->retry_delay_ms * 1000000u;
			w->nbackoff++;
			return;
		}
		attempt(s, now);
		return;
	}
	request_done(s, now, false);
}

static int ep_set(struct slot *s, int op, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = s};
	return epoll_ctl(s->w->ep, op, s->fd, &ev);
}

/* Opens a connection for the slot's client (a failure at once ends the attempt). */
static void conn_open(struct slot *s, uint64_t now)
{
	struct worker *w = s->w;
	const struct load_opts *o = w->o;
	unsigned conc = o->concurrency ? o->concurrency : o->nclients;
	if (s->tries <= 1 || !s->cl) /* a retry stays with its client */
		s->cl = &o->clients[(s->index + (uint64_t)s->conn_count++ * conc) % o->nclients];
	s->dst_index = (s->tries - 1) % s->cl->ndst;
	const struct sockaddr_in6 *dst = &s->cl->dst[s->dst_index];
	int one = 1, fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		attempt_fail(s, LOAD_E_CONNECT, now);
		return;
	}
	s->fd = fd;
	w->r.connections++;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!IN6_IS_ADDR_UNSPECIFIED(&s->cl->src.sin6_addr)) {
		/* AnyIP sources; the port is chosen at connect time from the whole 4-tuple */
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		struct sockaddr_in6 src = s->cl->src;
		src.sin6_port = 0;
		if (bind(fd, (const struct sockaddr *)&src, sizeof(src)) == -1) {
			attempt_fail(s, LOAD_E_CONNECT, now);
			return;
		}
	}
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) == -1 && errno != EINPROGRESS) {
		attempt_fail(s, connect_err(errno), now);
		return;
	}
	s->st = S_CONNECTING;
	if (ep_set(s, EPOLL_CTL_ADD, EPOLLOUT) == -1)
		attempt_fail(s, LOAD_E_CONNECT, now);
}

/* Sends what is left of the request; on a full send, waits for the response. */
static void conn_send(struct slot *s, uint64_t now)
{
	struct worker *w = s->w;
	while (s->sent < w->req_len) {
		ssize_t k =
		    send(s->fd, w->o->request + s->sent, w->req_len - s->sent, MSG_NOSIGNAL);
		if (k == -1) {
			if (errno == EAGAIN) {
				ep_set(s, EPOLL_CTL_MOD, EPOLLOUT);
				s->st = S_SENDING;
				return;
			}
			attempt_fail(s, errno == ECONNREFUSED ? LOAD_E_REFUSED : LOAD_E_RESET, now);
			return;
		}
		s->sent += (size_t)k;
	}
	s->st = S_READING;
	ep_set(s, EPOLL_CTL_MOD, EPOLLIN);
}

static void attempt(struct slot *s, uint64_t now)
{
	s->tries++;
	s->attempt_start = now;
	s->sent = 0;
	s->inlen = 0;
	if (s->fd == -1) {
		conn_open(s, now); /* sends once connected */
		return;
	}
	s->st = S_SENDING;
	conn_send(s, now);
}

static void request_start(struct slot *s, uint64_t start, uint64_t now)
{
	s->req_start = start;
	s->tries = 0;
	attempt(s, now);
}

static void conn_read(struct slot *s, uint64_t now)
{
	struct worker *w = s->w;
	for (;;) {
		if (s->inlen == sizeof(s->in)) {
			attempt_fail(s, LOAD_E_HTTP, now);
			return;
		}
		ssize_t k = recv(s->fd, s->in + s->inlen, sizeof(s->in) - s->inlen, 0);
		if (k == 0) {
			attempt_fail(s, LOAD_E_EOF, now);
			return;
		}
		if (k == -1) {
			if (errno == EAGAIN)
				return;
			attempt_fail(s, errno == ECONNREFUSED ? LOAD_E_REFUSED : LOAD_E_RESET, now);
			return;
		}
		s->inlen += (size_t)k;
		struct http_resp resp;
		long m = http_resp_parse(s->in, s->inlen, w->o->head, &resp);
		if (m == 0)
			continue;
		if (m < 0 || (size_t)m != s->inlen) { /* garbage, or bytes nobody asked for */
			attempt_fail(s, LOAD_E_HTTP, now);
			return;
		}
		s->inlen = 0;
		if (resp.close)
			slot_close(s);
		if (resp.status < 200 || resp.status > 299) {
			w->r.err[LOAD_E_STATUS]++;
			slot_close(s);
			request_done(s, now, false);
		} else {
			request_done(s, now, true);
		}
		return;
	}
}

static void on_event(struct slot *s, uint32_t ev, uint64_t now)
{
	if (s->st == S_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			attempt_fail(s, connect_err(err), now);
			return;
		}
		s->st = S_SENDING;
		conn_send(s, now);
	} else if (s->st == S_SENDING) {
		conn_send(s, now);
	} else if (s->st == S_READING) {
		conn_read(s, now);
	} else if (ev & (EPOLLERR | EPOLLHUP | EPOLLIN)) {
		slot_close(s); /* an idle keep-alive connection the server closed */
	}
}

static void check_timeouts(struct worker *w, uint64_t now)
{
	uint64_t limit = (uint64_t)w->o->timeout_ms * 1000000u;
	for (unsigned i = 0; i < w->nslots; i++) {
		struct slot *s = w->slots[i];
		if (s->st != S_IDLE && s->st != S_BACKOFF && now - s->attempt_start >= limit)
			attempt_fail(s, LOAD_E_TIMEOUT, now);
	}
}

/* Starts the attempts whose retry delay is over; returns when the next one is due (or
 * UINT64_MAX). */
static uint64_t run_backoffs(struct worker *w, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	for (unsigned i = 0; w->nbackoff && i < w->nslots; i++) {
		struct slot *s = w->slots[i];
		if (s->st != S_BACKOFF)
			continue;
		if (s->retry_at > now) {
			next = s->retry_at < next ? s->retry_at : next;
			continue;
		}
		w->nbackoff--;
		s->st = S_IDLE;
		attempt(s, now);
	}
	return next;
}

/* Open loop: starts or queues every request due by now; returns when the next is due. A
 * slot on the ready list is not idle for this: its request joins the queue, which the ready
 * list drains, so a connect that fails at once does not list the slot again and again. */
static uint64_t issue_due(struct worker *w, uint64_t now)
{
	for (;;) {
		uint64_t due = w->t0 + (uint64_t)((double)w->issued * 1e9 / w->rate);
		if (due > now || due >= w->end)
			return due;
		struct slot *s = w->slots[w->issued % w->nslots];
		w->issued++;
		w->r.sent++;
		if (s->st == S_IDLE && !s->qlen && !s->queued) {
			request_start(s, due, now);
		} else if (s->qlen == QUEUE_CAP) {
			w->r.err[LOAD_E_OVERLOAD]++;
			note_failure(w, now);
		} else {
			s->q[(s->qhead + s->qlen++) % QUEUE_CAP] = due;
		}
	}
}

/* Open loop, at the end: the requests that fell due before it and were never started (the
 * worker did not run: a starved or stopped process) count as sent and unfinished, so the
 * figures show them instead of a lower rate. */
static void count_unissued(struct worker *w)
{
	for (;;) {
		uint64_t due = w->t0 + (uint64_t)((double)w->issued * 1e9 / w->rate);
		if (due >= w->end)
			return;
		w->issued++;
		w->r.sent++;
		w->r.unfinished++;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event ev[EVENTS];
	uint64_t now = peak_mono_ns(), next_tick = now + TICK_NS;
	if (w->o->concurrency)
		for (unsigned i = 0; i < w->nslots; i++) {
			w->slots[i]->queued = true;
			w->ready[w->nready++] = w->slots[i];
		}
	for (;;) {
		run_ready(w, now);
		now = peak_mono_ns();
		if (now >= w->end) {
			if (!w->o->concurrency && w->rate > 0)
				count_unissued(w);
			break;
		}
		uint64_t wake = next_tick < w->end ? next_tick : w->end;
		if (!w->o->concurrency && w->rate > 0) {
			uint64_t due = issue_due(w, now);
			if (due < wake)
				wake = due;
		}
		if (w->nbackoff) {
			uint64_t r = run_backoffs(w, now);
			if (r < wake)
				wake = r;
		}
		if (now >= next_tick) {
			check_timeouts(w, now);
			next_tick = now + TICK_NS;
		}
		uint64_t d = wake > now && !w->nready ? wake - now : 0;
		struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
		int n = epoll_pwait2(w->ep, ev, EVENTS, &ts, NULL);
		if (n == -1 && errno != EINTR) {
			w->error = -errno;
			break;
		}
		now = peak_mono_ns();
		for (int i = 0; i < n; i++)
			on_event(ev[i].data.ptr, ev[i].events, now);
	}
	w->stopping = true;
	for (unsigned i = 0; i < w->nslots; i++) {
		struct slot *s = w->slots[i];
		w->r.unfinished += (s->st != S_IDLE) + s->qlen;
		slot_close(s);
		if (s->down_since)
			w->r.outage.still_down++; /* still in a gap at the end */
	}
	return NULL;
}

static int result_init(struct load_result *r, unsigned n)
{
	memset(r, 0, sizeof(*r));
	hist_init(&r->latency);
	hist_init(&r->outage.gap);
	r->timeline_n = n;
	r->timeline_ok = calloc(n, sizeof(uint64_t));
	r->timeline_failed = calloc(n, sizeof(uint64_t));
	r->fails = calloc(LOAD_FAIL_LOG, sizeof(*r->fails));
	return r->timeline_ok && r->timeline_failed && r->fails ? 0 : -ENOMEM;
}

void load_result_fini(struct load_result *r)
{
	free(r->timeline_ok);
	free(r->timeline_failed);
	free(r->fails);
	r->timeline_ok = r->timeline_failed = NULL;
	r->fails = NULL;
	r->nfails = 0;
}

static int fail_cmp(const void *a, const void *b)
{
	const struct load_fail *x = a, *y = b;
	return x->end_ns < y->end_ns ? -1 : x->end_ns > y->end_ns;
}

static void result_merge(struct load_result *d, const struct load_result *s)
{
	hist_merge(&d->latency, &s->latency);
	hist_merge(&d->outage.gap, &s->outage.gap);
	d->sent += s->sent;
	d->ok += s->ok;
	d->failed += s->failed;
	d->retried += s->retried;
	d->unfinished += s->unfinished;
	d->connections += s->connections;
	for (unsigned e = 0; e < LOAD_E_COUNT; e++)
		d->err[e] += s->err[e];
	for (unsigned i = 0; i < d->timeline_n; i++) {
		d->timeline_ok[i] += s->timeline_ok[i];
		d->timeline_failed[i] += s->timeline_failed[i];
	}
	d->outage.still_down += s->outage.still_down;
	/* both lists are in time order: merged, the first LOAD_FAIL_LOG of the two are kept */
	struct load_fail both[2 * LOAD_FAIL_LOG];
	unsigned n = d->nfails + s->nfails;
	memcpy(both, d->fails, d->nfails * sizeof(*both));
	memcpy(both + d->nfails, s->fails, s->nfails * sizeof(*both));
	qsort(both, n, sizeof(*both), fail_cmp);
	d->fails_dropped += s->fails_dropped + (n > LOAD_FAIL_LOG ? n - LOAD_FAIL_LOG : 0);
	d->nfails = n > LOAD_FAIL_LOG ? LOAD_FAIL_LOG : n;
	memcpy(d->fails, both, d->nfails * sizeof(*both));
	if (s->failed) {
		if (!d->outage.last_fail_s || s->outage.first_fail_s < d->outage.first_fail_s)
			d->outage.first_fail_s = s->outage.first_fail_s;
		if (s->outage.last_fail_s > d->outage.last_fail_s)
			d->outage.last_fail_s = s->outage.last_fail_s;
	}
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void progress(struct worker *ws, unsigned nt, uint64_t t0, uint64_t end)
{
	uint64_t last = 0, prev_t = t0;
	for (;;) {
		struct timespec ts = {1, 0};
		uint64_t now = peak_mono_ns();
		if (now + 1000000000u > end) {
			ts.tv_sec = 0;
			ts.tv_nsec = now < end ? (long)(end - now) : 0;
		}
		nanosleep(&ts, NULL);
		now = peak_mono_ns();
		if (now >= end)
			return;
		uint64_t done = 0;
		for (unsigned i = 0; i < nt; i++)
			done += atomic_load_explicit(&ws[i].done, memory_order_relaxed);
		fprintf(stderr, "peak load: %.0f s, %llu requests done, %.0f/s\n",
		        (double)(now - t0) / 1e9, (unsigned long long)done,
		        (double)(done - last) * 1e9 / (double)(now - prev_t));
		last = done;
		prev_t = now;
	}
}

int load_run(const struct load_opts *o, struct load_result *res)
{
	unsigned nslots = o->concurrency ? o->concurrency : o->nclients;
	unsigned nt = o->threads ? o->threads : 1;
	if (nt > nslots)
		nt = nslots;
	unsigned tl = (unsigned)(o->duration_s * 1000 / o->timeline_ms) + 1;
	struct worker *ws = calloc(nt, sizeof(*ws));
	struct slot *slots = calloc(nslots, sizeof(*slots));
	struct slot **lists = calloc(nslots, sizeof(*lists));
	struct slot **ready = calloc(2 * (size_t)nslots, sizeof(*ready));
	int ret = -ENOMEM;
	unsigned started = 0;
	double cpu0 = cpu_seconds();
	if (!ws || !slots || !lists || !ready || result_init(res, tl))
		goto out;
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	uint64_t t0 = peak_mono_ns(), end = t0 + (uint64_t)(o->duration_s * 1e9);
	res->start_unix = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
	for (unsigned t = 0, used = 0; t < nt; t++) {
		struct worker *w = &ws[t];
		w->o = o;
		w->t0 = t0;
		w->end = end;
		w->req_len = strlen(o->request);
		w->slots = lists + used;
		w->ep = -1;
		for (unsigned i = t; i < nslots; i += nt) {
			slots[i] = (struct slot){.w = w, .index = i, .fd = -1};
			w->slots[w->nslots++] = &slots[i];
		}
		w->ready = ready + 2 * (size_t)used;
		w->ready_next = w->ready + w->nslots;
		used += w->nslots;
		w->rate = o->rate * w->nslots / nslots;
		if (result_init(&w->r, tl))
			goto out;
		if ((w->ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
			ret = -errno;
			goto out;
		}
	}
	for (; started < nt; started++) {
		int e = pthread_create(&ws[started].thread, NULL, worker_main, &ws[started]);
		if (e) {
			ret = -e;
			for (unsigned t = 0; t < started; t++)
				ws[t].end = 0; /* stop the started ones at once */
			goto out;
		}
	}
	if (o->progress)
		progress(ws, nt, t0, end);
	ret = 0;
out:
	for (unsigned t = 0; t < started; t++) {
		pthread_join(ws[t].thread, NULL);
		if (ws[t].error && !ret)
			ret = ws[t].error;
	}
	if (!ret) {
		res->elapsed_s = (double)(peak_mono_ns() - ws[0].t0) / 1e9;
		res->cpu_s = cpu_seconds() - cpu0;
		for (unsigned t = 0; t < nt; t++)
			result_merge(res, &ws[t].r);
	}
	for (unsigned t = 0; ws && t < nt; t++) {
		if (ws[t].ep != -1)
			close(ws[t].ep);
		load_result_fini(&ws[t].r);
	}
	free(ws);
	free(slots);
	free(lists);
	free(ready);
	return ret;
}
