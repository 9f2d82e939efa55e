#define _GNU_SOURCE /* recvmmsg, sendmmsg, accept4 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/net.h"
#include "answer.h"
#include "state.h"

enum {
	BATCH = 32,
	STOP_CHECK_US = 200000, /* how soon a blocked worker notices a stop */
	CTL_LINE_MAX = 512,
};

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
	uint8_t *cfg_bytes; /* the configuration the current state was built from */
	size_t cfg_len;
	uint64_t reloads_ok, reloads_failed;
	struct log_limit rl_formerr;
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

static void ctx_init(struct server *s, struct dnsd_ctx *cx, unsigned worker)
{
	memset(cx, 0, sizeof(*cx));
	if (getrandom(&cx->rng, sizeof(cx->rng), 0) != sizeof(cx->rng))
		cx->rng = (uint64_t)time(NULL) ^ ((uint64_t)worker << 32);
	cx->worker = worker;
	cx->stats = &s->stats[worker];
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
	return NULL;
}

/* ---- TCP: one thread, many connections, several queries per connection ---- */

struct tconn {
	int fd;
	size_t inlen, outlen, outoff;
	uint64_t last_ms;
	uint8_t in[2 + DNSD_TCP_MAX];
	uint8_t out[2 + DNSD_TCP_MAX];
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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
};

static void tconn_close(int ep, struct tconn **slot)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, (*slot)->fd, NULL);
	close((*slot)->fd);
	free(*slot);
	*slot = NULL;
}

/* Sends what is pending. Returns -1 if the connection broke. */
static int tconn_flush(struct tconn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t k = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
		if (k == -1)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		c->outoff += (size_t)k;
	}
	c->outoff = c->outlen = 0;
	return 0;
}

/* Answers every complete query buffered, one at a time while the answer can be sent. */
static int tconn_work(struct server *s, struct dnsd_ctx *cx, struct tconn *c)
{
	for (;;) {
		if (c->outlen)
			return tconn_flush(c);
		if (c->inlen < 2)
			return 0;
		size_t mlen = (size_t)c->in[0] << 8 | c->in[1];
		if (c->inlen < 2 + mlen)
			return 0;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct dnsd_client cl = {0};
		if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0)
			cl.v6 = sockaddr_to_in6((struct sockaddr *)&ss, cl.addr);
		struct dns_state *st = state_acquire(s, s->nreaders - 1);
		cx->now = (uint64_t)time(NULL);
		size_t len =
		    dnsd_answer(st, cx, c->in + 2, mlen, &cl, true, c->out + 2, DNSD_TCP_MAX);
		state_release(s, s->nreaders - 1);
		memmove(c->in, c->in + 2 + mlen, c->inlen - 2 - mlen);
		c->inlen -= 2 + mlen;
		if (!len)
			return -1; /* not DNS: drop the connection */
		c->out[0] = (uint8_t)(len >> 8);
		c->out[1] = (uint8_t)len;
		c->outlen = len + 2;
		if (tconn_flush(c))
			return -1;
	}
}

static void *tcp_thread(void *arg)
{
	struct tcp_ctx *t = arg;
	struct server *s = t->s;
	const struct dnsd_opts *o = s->o;
	struct dnsd_ctx cx;
	struct tconn **conns = calloc(o->tcp_max, sizeof(*conns));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev, evs[64];
	uint64_t last_scan = mono_ms();

	ctx_init(s, &cx, s->nreaders - 1);
	if (!conns || ep == -1) {
		log_msg(LOG_ERR, "dns: tcp: cannot start: out of resources");
		free(conns);
		return NULL;
	}
	for (unsigned l = 0; l < o->nlisten; l++) {
		ev = (struct epoll_event){.events = EPOLLIN,
		                          .data.u64 = (uint64_t)l << 32 | 0xffffffffu};
		epoll_ctl(ep, EPOLL_CTL_ADD, t->lfds[l], &ev);
	}
	ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = UINT64_MAX};
	epoll_ctl(ep, EPOLL_CTL_ADD, s->stop_fd, &ev);
	for (bool run = true; run;) {
		int n = epoll_wait(ep, evs, 64, 100);
		uint64_t now = mono_ms();
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			if (d == UINT64_MAX) {
				run = false;
				break;
			}
			if ((d & 0xffffffffu) == 0xffffffffu) {
				int lfd = t->lfds[d >> 32];
				for (;;) {
					int fd =
					    accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd == -1)
						break;
					unsigned slot = 0;
					while (slot < o->tcp_max && conns[slot])
						slot++;
					struct tconn *c =
					    slot < o->tcp_max ? malloc(sizeof(*c)) : NULL;
					if (!c) {
						close(fd); /* at the limit: refuse politely */
						continue;
					}
					c->fd = fd;
					c->inlen = c->outlen = c->outoff = 0;
					c->last_ms = now;
					conns[slot] = c;
					ev = (struct epoll_event){.events =
					                              EPOLLIN | EPOLLOUT | EPOLLET,
					                          .data.u64 = slot};
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			struct tconn **cp = &conns[d];
			if (!*cp)
				continue;
			struct tconn *c = *cp;
			bool broken = evs[i].events & (EPOLLERR | EPOLLHUP);
			for (;;) {
				if (c->inlen == sizeof(c->in))
					break; /* wait until a query is answered */
				ssize_t k =
				    recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
				if (k > 0) {
					c->inlen += (size_t)k;
					c->last_ms = now;
					continue;
				}
				if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
					broken = true;
				break;
			}
			if (tconn_work(s, &cx, c) || (broken && !c->outlen))
				tconn_close(ep, cp);
		}
		if (now - last_scan >= 100) {
			last_scan = now;
			for (unsigned k = 0; k < o->tcp_max; k++)
				if (conns[k] && now - conns[k]->last_ms >= o->tcp_idle_ms)
					tconn_close(ep, &conns[k]);
		}
	}
	for (unsigned k = 0; k < o->tcp_max; k++)
		if (conns[k])
			tconn_close(ep, &conns[k]);
	free(conns);
	close(ep);
	return NULL;
}

/* ---- metrics ---- */

static void metric_steer(const struct steer_counter *c, uint64_t total, void *arg)
{
	mbuf_printf(arg, "peak_dns_steered_answers_total{service=\"%s\",endpoint=\"%s\"} %llu\n",
	            c->service, c->endpoint, (unsigned long long)total);
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
	            (unsigned long long)s->reloads_ok, (unsigned long long)s->reloads_failed);
	for (unsigned i = 0; i < s->dyn.nsvc; i++) {
		char name[DNS_NAME_STRLEN];
		dns_name_print(&s->dyn.svc[i].name, name, sizeof(name));
		for (unsigned e = 0; e < s->dyn.svc[i].nep; e++)
			mbuf_printf(
			    &b, "peak_dns_endpoint_healthy{service=\"%s\",endpoint=\"%s\"} %d\n",
			    name, s->dyn.svc[i].ep[e].id, s->dyn.svc[i].ep[e].healthy);
	}
	pthread_mutex_unlock(&s->dyn_lock);
	*bp = b;
}

/* ---- configuration, reloads and the control socket (the main thread) ---- */

static int read_file(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	uint8_t *buf = malloc(CFG_MAX_FILE_BYTES + 1);
	size_t n = buf ? fread(buf, 1, CFG_MAX_FILE_BYTES + 1, f) : 0;
	fclose(f);
	if (!buf || n > CFG_MAX_FILE_BYTES) {
		free(buf);
		snprintf(err, errlen, "%s: unreadable or larger than %d bytes", path,
		         CFG_MAX_FILE_BYTES);
		return -1;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* Builds and publishes a state from configuration bytes. On success the server keeps the
 * bytes (it owns them then). Returns 0 or -1 with the reason in err. */
static int rebuild(struct server *s, uint8_t *bytes, size_t len, char *err, size_t errlen)
{
	struct peak_config *cfg;
	if (config_parse(s->o->config, bytes, len, &cfg, err, errlen))
		return -1;
	pthread_mutex_lock(&s->dyn_lock);
	struct dns_state *st = dns_state_build(cfg, &s->dyn, err, errlen);
	pthread_mutex_unlock(&s->dyn_lock);
	if (!st) {
		config_free(cfg);
		return -1;
	}
	state_publish(s, st);
	if (bytes != s->cfg_bytes) {
		free(s->cfg_bytes);
		s->cfg_bytes = bytes;
		s->cfg_len = len;
	}
	return 0;
}

static void reload(struct server *s, char *reply, size_t cap)
{
	char err[CFG_ERRLEN];
	uint8_t *bytes;
	size_t len;
	if (read_file(s->o->config, &bytes, &len, err, sizeof(err)) ||
	    (rebuild(s, bytes, len, err, sizeof(err)) && (free(bytes), 1))) {
		s->reloads_failed++;
		log_msg(LOG_ERR, "dns: reload refused, still serving the previous state: %s", err);
		snprintf(reply, cap, "error: %s\n", err);
		return;
	}
	s->reloads_ok++;
	log_msg(LOG_INFO, "dns: reloaded %s", s->o->config);
	snprintf(reply, cap, "ok\n");
}

/* Runs one control command; writes the reply (ending in "ok" or "error: ...") to reply. */
static void control_command(struct server *s, char *line, char *reply, size_t cap)
{
	char *argv[8];
	int argc = 0;
	char err[CFG_ERRLEN];
	for (char *tok = strtok(line, " \t\r\n"); tok && argc < 8; tok = strtok(NULL, " \t\r\n"))
		argv[argc++] = tok;
	if (argc == 1 && !strcmp(argv[0], "reload")) {
		reload(s, reply, cap);
		return;
	}
	if (argc == 1 && !strcmp(argv[0], "status")) {
		size_t n = 0;
		pthread_mutex_lock(&s->dyn_lock);
		struct dns_state *st = atomic_load(&s->state);
		for (unsigned i = 0; i < s->dyn.nsvc && n < cap; i++) {
			char name[DNS_NAME_STRLEN];
			const struct dnsd_svc_dyn *sd = &s->dyn.svc[i];
			dns_name_print(&sd->name, name, sizeof(name));
			for (unsigned e = 0; e < sd->nep && n < cap; e++) {
				uint32_t held = i < st->nsvc && st->svc[i].ep_nslice
				                    ? st->svc[i].ep_nslice[e]
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
	bool health = argc == 4 && !strcmp(argv[0], "health");
	bool weight = argc == 4 && !strcmp(argv[0], "weight");
	if (!health && !weight) {
		snprintf(
		    reply, cap,
		    "error: unknown command (status | reload | health SERVICE ENDPOINT up|down "
		    "| weight SERVICE ENDPOINT N)\n");
		return;
	}
	struct dns_name svc;
	int h = -1;
	long w = -1;
	if (dns_name_parse(argv[1], &svc)) {
		snprintf(reply, cap, "error: '%s' is not a domain name\n", argv[1]);
		return;
	}
	if (health) {
		h = !strcmp(argv[3], "up") ? 1 : !strcmp(argv[3], "down") ? 0 : -1;
		if (h < 0) {
			snprintf(reply, cap, "error: health is 'up' or 'down', not '%s'\n",
			         argv[3]);
			return;
		}
	} else {
		char *end;
		errno = 0;
		w = strtol(argv[3], &end, 10);
		if (*end || errno || w < 0 || w > ASSIGN_MAX_WEIGHT) {
			snprintf(reply, cap, "error: weight must be 0..%d\n", ASSIGN_MAX_WEIGHT);
			return;
		}
	}
	pthread_mutex_lock(&s->dyn_lock);
	int r = dnsd_dyn_set(&s->dyn, &svc, argv[2], h, w);
	pthread_mutex_unlock(&s->dyn_lock);
	if (r == -ENOENT) {
		snprintf(reply, cap, "error: no endpoint '%s' in service %s\n", argv[2], argv[1]);
		return;
	}
	if (r || rebuild(s, s->cfg_bytes, s->cfg_len, err, sizeof(err))) {
		snprintf(reply, cap, "error: %s\n", r ? strerror(-r) : err);
		return;
	}
	log_msg(LOG_INFO, "dns: %s %s %s %s", argv[0], argv[1], argv[2], argv[3]);
	snprintf(reply, cap, "ok\n");
}

static int control_listen(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 || listen(fd, 16) == -1) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void control_serve(struct server *s, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd == -1)
		return;
	struct timeval tv = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char line[CTL_LINE_MAX];
	size_t n = 0;
	while (n < sizeof(line) - 1) {
		ssize_t k = recv(fd, line + n, sizeof(line) - 1 - n, 0);
		if (k <= 0)
			break;
		n += (size_t)k;
		if (memchr(line, '\n', n))
			break;
	}
	line[n] = '\0';
	char *reply = malloc(1 << 20);
	if (reply) {
		control_command(s, line, reply, 1 << 20);
		size_t len = strlen(reply), off = 0;
		while (off < len) {
			ssize_t k = send(fd, reply + off, len - off, MSG_NOSIGNAL);
			if (k <= 0)
				break;
			off += (size_t)k;
		}
		free(reply);
	}
	close(fd);
}

int dnsd_ctl(const char *path, const char *line)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "peak dns-ctl: control path too long\n");
		return 2;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr, "peak dns-ctl: cannot reach %s: %s\n", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return 2;
	}
	size_t len = strlen(line);
	if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		fprintf(stderr, "peak dns-ctl: cannot send to %s\n", path);
		close(fd);
		return 2;
	}
	shutdown(fd, SHUT_WR);
	char buf[4096], last[1024] = "";
	size_t have = 0;
	ssize_t k;
	while ((k = recv(fd, buf, sizeof(buf), 0)) > 0) {
		fwrite(buf, 1, (size_t)k, stdout);
		for (ssize_t i = 0; i < k; i++) {
			if (buf[i] == '\n') {
				if (have)
					last[have < sizeof(last) ? have : sizeof(last) - 1] = '\0';
				have = 0;
				continue;
			}
			if (have < sizeof(last) - 1)
				last[have] = buf[i];
			have++;
		}
	}
	close(fd);
	return !strncmp(last, "ok", 2) ? 0 : !strncmp(last, "error", 5) ? 1 : 2;
}

int dnsd_run(const struct dnsd_opts *o)
{
	struct server *s = calloc(1, sizeof(*s));
	struct worker *wk = NULL;
	struct tcp_ctx tc = {0};
	struct metrics_srv *mhd = NULL;
	int ret = 1, ctl = -1, sfd = -1;
	unsigned started = 0;
	bool tcp_started = false;
	char err[CFG_ERRLEN], a[64];
	uint8_t *bytes = NULL;
	size_t len;

	if (!s)
		return 1;
	s->o = o;
	s->nworkers = o->threads * o->nlisten;
	s->nreaders = s->nworkers + 1;
	if (s->nreaders > DNSD_MAX_WORKERS) {
		log_msg(LOG_ERR, "dns: %u threads x %u addresses is more than %d workers",
		        o->threads, o->nlisten, DNSD_MAX_WORKERS - 1);
		free(s);
		return 1;
	}
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	pthread_mutex_init(&s->dyn_lock, NULL);
	for (unsigned l = 0; l < DNSD_MAX_LISTEN; l++)
		tc.lfds[l] = -1;
	if (read_file(o->config, &bytes, &len, err, sizeof(err)) ||
	    rebuild(s, bytes, len, err, sizeof(err))) {
		free(bytes);
		log_msg(LOG_ERR, "dns: %s", err);
		goto out;
	}
	sfd = signals_fd(1); /* signals are read by the control loop only */
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
	if (o->control && (ctl = control_listen(o->control)) < 0) {
		log_msg(LOG_ERR, "dns: control socket %s: %s", o->control, strerror(-ctl));
		goto out;
	}
	if (o->metrics && !(mhd = metrics_start(o->metrics, metrics_render, s)))
		goto out;
	s->rl_formerr = (struct log_limit){0};
	for (; started < s->nworkers; started++) {
		wk[started].s = s;
		wk[started].id = started;
		if (pthread_create(&wk[started].th, NULL, udp_worker, &wk[started]))
			goto out;
	}
	tc.s = s;
	if (pthread_create(&tc.th, NULL, tcp_thread, &tc))
		goto out;
	tcp_started = true;
	for (unsigned l = 0; l < o->nlisten; l++)
		log_msg(LOG_INFO, "dns: serving %s on %s (udp: %u workers, tcp)", o->config,
		        sockaddr_print((const struct sockaddr *)&o->listen[l], a, sizeof(a)),
		        o->threads);
	ret = 0;
	for (bool run = true; run;) {
		struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN},
		                       {.fd = ctl, .events = POLLIN}};
		if (poll(pf, ctl >= 0 ? 2 : 1, -1) == -1 && errno != EINTR)
			break;
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				char reply[CFG_ERRLEN + 16];
				reload(s, reply, sizeof(reply));
			} else {
				log_msg(LOG_INFO, "dns: stopping on signal %u", si.ssi_signo);
				run = false;
			}
		}
		if (ctl >= 0 && pf[1].revents)
			control_serve(s, ctl);
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
	if (ctl >= 0) {
		close(ctl);
		unlink(o->control);
	}
	if (sfd >= 0)
		close(sfd);
	dns_state_free(atomic_load(&s->state));
	dnsd_dyn_fini(&s->dyn);
	steer_counters_free();
	free(s->cfg_bytes);
	free(wk);
	close(s->stop_fd);
	pthread_mutex_destroy(&s->dyn_lock);
	free(s);
	return ret;
}
