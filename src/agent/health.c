/* peak agent: health checks, and the watches on the pods' server processes. */
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/route.h"
#include "../sys/sockdiag.h"

/* Ends a check's connection with a reset (SO_LINGER 0): the pod's side of it is gone at once,
 * so the pod's load (its namespace's TCP connections) never counts the agent's own checks, and
 * no TIME_WAIT socket is left per check in the node's namespace. */
static void probe_close(struct hc_probe *p)
{
	struct linger lg = {1, 0};
	if (p->fd < 0)
		return;
	setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(p->fd);
	p->fd = -1;
	p->sent = false;
}

static void probe_finish(struct hc_probe *p, bool ok)
{
	probe_close(p);
	p->done = true;
	p->ok = ok;
}

/* Advances a check as far as it goes without waiting: a completed connect sends the request
 * (or answers the check when there is none); a reply's first byte, or an orderly close,
 * answers it: the server process acted. A failed connect, a reset or a request that does
 * not go out fails it. A connection the kernel completed for a server that never reads (a
 * stopped process) is not an answer: that is why the request is sent. */
static void probe_step(const char *req, struct hc_probe *p)
{
	if (p->fd < 0 || p->done)
		return;
	if (!p->sent) {
		struct pollfd pf = {.fd = p->fd, .events = POLLOUT};
		if (poll(&pf, 1, 0) != 1)
			return;
		int so = 1;
		socklen_t sl = sizeof(so);
		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &so, &sl) == -1 || so) {
			probe_finish(p, false);
			return;
		}
		if (!req || !*req) {
			probe_finish(p, true);
			return;
		}
		/* a fresh connection's send buffer takes a short request whole */
		size_t n = strlen(req);
		if (send(p->fd, req, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n) {
			probe_finish(p, false);
			return;
		}
		p->sent = true;
	}
	char buf[HC_REPLY_MAX];
	ssize_t k = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (k >= 0)
		probe_finish(p, true);
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		probe_finish(p, false);
}

void hc_close(struct hc *h)
{
	for (unsigned k = 0; k < HC_PROBES; k++)
		probe_close(&h->pr[k]);
}

/* Records a local endpoint's new health, tells the controller and re-points its routes
 * (local failover) at the next turn of the loop. */
static void hc_set(struct agent *a, unsigned i, bool up, const char *why)
{
	struct hc *h = &a->hc[i];
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	h->up = up;
	pthread_mutex_lock(&a->st.lock);
	if (i < a->st.n)
		a->st.healthy[i] = up;
	pthread_mutex_unlock(&a->st.lock);
	log_msg(LOG_INFO, "agent: %s: endpoint %s is %s%s", a->o->node, s->ep[h->ep].id,
	        up ? "up" : "down", why);
	if (!up)
		ho_endpoint_down(a, s->ep[h->ep].id);
	h->reset_due = !up;
	ctl_health(a, h);
	a->dirty = true;
}

/* ---- telling a pod's clients that its slices moved ----
 * A stopped or hung pod's kernel still holds its connections and acknowledges what its
 * clients send: a request sent before the pod was taken out waits for a reply that never
 * comes, until the client's own timeout (250 ms in the ingress bench: most of the 301 ms
 * the 'stop' scenario measured, against the 0.16 s the checks took). Nothing else tells
 * the client: its next packet would reach the slices' new owner and draw a reset, but it
 * sends none while it waits. So once none of the pod's slices is routed to it any more
 * (after the sync that moved them), the agent destroys the pod's TCP connections on the
 * service's port in its namespace (sock_diag SOCK_DESTROY: the kernel sends each client a
 * reset: tcp_destroy in sockdiag.c), and the clients reconnect at once, to the new owners.
 * Routes first, then the resets: a client that reconnects finds the new route. Only pods
 * with a namespace of their own: in the node's namespace a port's connections are not one
 * pod's. */

struct moved_job {
	uint16_t port;
	unsigned done;
};

static int moved_run(void *arg)
{
	struct moved_job *m = arg;
	return tcp_destroy(m->port, NULL, NULL, &m->done);
}

void hc_reset_moved(struct agent *a)
{
	for (unsigned i = 0; i < a->nhc; i++) {
		struct hc *h = &a->hc[i];
		if (!h->reset_due || h->up)
			continue;
		pthread_mutex_lock(&a->st.lock);
		bool routed = a->st.cfg == a->cfg && i < a->st.n && a->st.slices[i];
		pthread_mutex_unlock(&a->st.lock);
		if (routed)
			continue; /* nowhere else to go yet (the controller moves them) */
		h->reset_due = false;
		const struct cfg_service *s = &a->cfg->svc[h->svc];
		const struct cfg_endpoint *ep = &s->ep[h->ep];
		if (!ep->netns[0])
			continue;
		struct moved_job j = {(uint16_t)s->port, 0};
		int r = netns_run(ep->netns, moved_run, &j);
		pthread_mutex_lock(&a->st.lock);
		a->st.conns_reset += j.done;
		pthread_mutex_unlock(&a->st.lock);
		if (r)
			log_msg(LOG_WARNING,
			        "agent: %s: endpoint %s: resetting its connections: %s", a->o->node,
			        ep->id, strerror(-r));
		log_msg(LOG_INFO,
		        "agent: %s: endpoint %s: %u connections reset, its slices routed elsewhere",
		        a->o->node, ep->id, j.done);
	}
}

/* ---- knowing at once that a pod's server died ----
 * Health checks need hc_down failed rounds to mark an endpoint down. When the process
 * that holds the endpoint's listening socket exits, its port answers resets from then on:
 * the agent finds that process (the listener's inode from sock_diag in the pod's
 * namespace, then /proc/PID/fd) and waits on a pidfd for its exit. */

enum { WATCH_RETRY_MS = 2000 }; /* how often to scan /proc again for an owner not found */

struct listener_job {
	uint16_t port;
	uint64_t ino;
};

static int listener_job_run(void *arg)
{
	struct listener_job *j = arg;
	return tcp_listener_inode(j->port, &j->ino);
}

/* The inode of the socket listening on the endpoint's port in its namespace, or 0. */
static uint64_t endpoint_listener(const struct cfg_service *s, const struct cfg_endpoint *ep)
{
	struct listener_job j = {(uint16_t)s->port, 0};
	int r = ep->netns[0] ? netns_run(ep->netns, listener_job_run, &j) : listener_job_run(&j);
	return r ? 0 : j.ino;
}

void watch_start(struct agent *a, struct hc *h, uint64_t now)
{
	if (h->pidfd >= 0 || !h->up || now < h->find_ms)
		return;
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	uint64_t ino = endpoint_listener(s, &s->ep[h->ep]);
	if (!ino)
		return; /* nothing listens yet (a pod still starting): cheap, look next round */
	h->find_ms = now + WATCH_RETRY_MS; /* the /proc scan is what costs: not too often */
	pid_t pid = socket_owner(ino);
	if (pid > 0)
		h->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	h->pid = h->pidfd >= 0 ? pid : 0;
}

/* The watched process exited: the endpoint is down now, unless another process still
 * holds a listener on its port (then that one is watched). */
void watch_fired(struct agent *a, unsigned i)
{
	struct hc *h = &a->hc[i];
	close(h->pidfd);
	h->pidfd = -1;
	h->pid = 0;
	h->find_ms = 0;
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	if (!h->up || endpoint_listener(s, &s->ep[h->ep]))
		return;
	h->fails = a->o->hc_down;
	h->oks = 0;
	pthread_mutex_lock(&a->st.lock);
	a->st.fast_downs++;
	pthread_mutex_unlock(&a->st.lock);
	hc_set(a, i, false, " (its server process exited)");
}

void watch_stop_all(struct agent *a)
{
	for (unsigned i = 0; a->hc && i < a->nhc; i++)
		if (a->hc[i].pidfd >= 0) {
			close(a->hc[i].pidfd);
			a->hc[i].pidfd = -1;
			a->hc[i].pid = 0;
		}
}

/* A period of mean ms, jittered uniformly over +-25% (xorshift32 on the endpoint's state),
 * so that the checks of many endpoints and agents do not fall into step. */
static uint64_t jittered(struct hc *h, unsigned ms)
{
	uint32_t x = h->rng ? h->rng : 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	h->rng = x;
	uint64_t lo = ms - ms / 4, span = ms / 2 + 1;
	return lo + x % span;
}

/* Starts a check of endpoint h in a free slot (none free: the check is skipped, the ones in
 * flight decide). A connect refused or unreachable at once is a finished failure. */
static void probe_start(const struct agent *a, struct hc *h, uint64_t now)
{
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	struct hc_probe *p = NULL;
	for (unsigned k = 0; k < HC_PROBES && !p; k++)
		if (!h->pr[k].start_ms)
			p = &h->pr[k];
	if (!p)
		return;
	unsigned ct = a->o->hc_connect_ms;
	*p = (struct hc_probe){.fd = -1,
	                       .start_ms = now,
	                       .due_ms = now + a->o->hc_timeout_ms,
	                       .conn_due_ms = ct && ct < a->o->hc_timeout_ms ? now + ct : 0};
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)s->port)};
	memcpy(&sa.sin6_addr, s->ep[h->ep].addr, 16);
	p->fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd == -1)
		probe_finish(p, false);
	else if (connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 && errno != EINPROGRESS)
		probe_finish(p, false); /* refused or unreachable at once */
	else
		probe_step(h->req, p); /* connected at once (loopback): send now */
}

/* When a check in flight is judged a miss: its timeout, or sooner its connect timeout while
 * the connection is not set up. A pod's kernel completes a handshake at once, whatever its
 * process does (a stopped, busy or starved server included: that is what the request is
 * for); a pod that does not is cut off (its packets dropped: silent) or its listen queue is
 * full (then its server runs: see the busy pod below), so it need not be given the whole
 * timeout that a slow answer gets. */
static uint64_t probe_due(const struct hc_probe *p)
{
	return !p->sent && p->conn_due_ms && p->conn_due_ms < p->due_ms ? p->conn_due_ms
	                                                                : p->due_ms;
}

/* ---- a busy pod is not a dead one ----
 * Under load a pod's answers can come later than the timeout (its accept queue is long, its
 * CPU share is taken), and three misses in a row took a serving pod out. A miss now also
 * reads the CPU time of the process that holds the endpoint's listener (the watched one),
 * and its state: if it ran for at least 1/HC_BUSY_SHARE of a CPU since the previous miss of
 * the row, or is runnable now (woken by the checks, waiting for a CPU: a pod starved by a
 * loaded host is as alive as one running flat out), the pod is busy, not unresponsive, and
 * is taken out only after HC_BUSY_FACTOR times hc_down misses in a row, over at least
 * HC_BUSY_MIN_OUT_MS. A stopped, hung or cut-off pod neither runs nor is runnable, so it
 * goes after hc_down misses as before; so does one whose process is not known (not found
 * yet, or gone). */
enum {
	HC_BUSY_SHARE = 20,  /* it ran: at least 5% of a CPU between two misses */
	HC_BUSY_FACTOR = 4,  /* a pod that keeps running: out after hc_down * this misses */
	HC_BUSY_MIN_MS = 10, /* a shorter interval is not read again (too coarse to judge) */
	/* and not before this long since the row's first check was sent: with checks in
	 * flight together, hc_down * HC_BUSY_FACTOR misses came in 0.43 s at the defaults,
	 * and on a saturated machine (the ingress bench's steady state at 256 connections
	 * through nginx, p99 0.9 s) a serving pod went 0.48 s without an answer and was taken
	 * out. A pod that runs and answers nothing for a second is taken out. */
	HC_BUSY_MIN_OUT_MS = 1000,
};

/* Called at each miss of endpoint h (h->fails counts it already): whether its server
 * process ran since the previous miss of this row, by the rule above. */
static bool pod_ran(struct hc *h, uint64_t now)
{
	if (h->fails > 1 && h->miss_ms && now < h->miss_ms + HC_BUSY_MIN_MS)
		return h->miss_ran; /* misses judged together: the last reading holds */
	bool runnable = false;
	uint64_t cpu = h->pid > 0 ? pid_cpu_ns(h->pid, &runnable) : 0;
	bool ran = false;
	if (h->fails > 1 && h->miss_ms && cpu)
		ran = runnable ||
		      (cpu > h->miss_cpu_ns &&
		       cpu - h->miss_cpu_ns >= (now - h->miss_ms) * 1000000 / HC_BUSY_SHARE);
	h->miss_cpu_ns = cpu;
	h->miss_ms = cpu ? now : 0;
	h->miss_ran = ran;
	return ran;
}

/* Judges one finished or overdue check of endpoint i: answers and misses in a row change
 * its health (hc_down misses mark it down, or hc_down * HC_BUSY_FACTOR over at least
 * HC_BUSY_MIN_OUT_MS while its pod keeps running; hc_up answers mark it up). The slot is
 * freed. */
static void probe_judge(struct agent *a, unsigned i, struct hc_probe *p, uint64_t now)
{
	struct hc *h = &a->hc[i];
	bool unconnected = false;
	if (!p->done) {                                   /* overdue: a miss */
		unconnected = !p->sent && p->conn_due_ms; /* judged at its connect timeout */
		probe_close(p);
		p->ok = false;
	}
	bool ok = p->ok, was = h->up;
	uint64_t started = p->start_ms;
	*p = (struct hc_probe){.fd = -1};
	pthread_mutex_lock(&a->st.lock);
	if (ok)
		a->st.checks_ok++;
	else
		a->st.checks_failed++;
	pthread_mutex_unlock(&a->st.lock);
	h->oks = ok ? h->oks + 1 : 0;
	h->fails = ok ? 0 : h->fails + 1;
	if (h->fails == 1)
		h->row_ms = started;
	h->unconnected = h->fails == 1 ? unconnected : h->fails ? h->unconnected + unconnected : 0;
	bool busy = !ok && h->up && pod_ran(h, now);
	if (ok)
		h->busy_logged = false;
	if (h->up && h->fails >= a->o->hc_down) {
		if (!busy || (h->fails >= a->o->hc_down * HC_BUSY_FACTOR &&
		              now >= h->row_ms + HC_BUSY_MIN_OUT_MS)) {
			/* the mechanism in the log: how many checks in a row, over what time */
			char why[192], nc[64] = "";
			if (h->unconnected)
				snprintf(nc, sizeof(nc), "; %u not connected within %u ms",
				         h->unconnected, a->o->hc_connect_ms);
			snprintf(why, sizeof(why),
			         " after %u missed checks, the first sent %llu ms before%s%s",
			         h->fails, (unsigned long long)(now - h->row_ms),
			         busy ? " (busy, but answering nothing)" : "", nc);
			hc_set(a, i, false, why);
		} else if (!h->busy_logged) { /* once per row of misses */
			h->busy_logged = true;
			log_msg(LOG_INFO,
			        "agent: %s: endpoint %s missed %u checks while its pod runs: busy, "
			        "kept in",
			        a->o->node, a->cfg->svc[h->svc].ep[h->ep].id, h->fails);
		}
	}
	if (!was && h->oks >= a->o->hc_up)
		hc_set(a, i, true, "");
}

/* Judges endpoint i's finished and overdue checks, oldest first (the order of the answers
 * and misses in a row). Only an overdue check costs a system call: the answer may wait in
 * its socket unread (the agent was not scheduled), and then it counts. */
static void hc_judge(struct agent *a, unsigned i, uint64_t now)
{
	struct hc *h = &a->hc[i];
	for (;;) {
		struct hc_probe *old = NULL;
		for (unsigned k = 0; k < HC_PROBES; k++) {
			struct hc_probe *p = &h->pr[k];
			if (!p->start_ms)
				continue;
			if (!p->done && now >= probe_due(p))
				probe_step(h->req, p); /* connected or answered meanwhile? */
			if ((p->done || now >= probe_due(p)) &&
			    (!old || p->start_ms < old->start_ms))
				old = p;
		}
		if (!old)
			break;
		probe_judge(a, i, old, now);
	}
}

/* For each local endpoint: starts a check when one is due (the next one after a jittered
 * period: the fast period while its health is changing, a miss while up or an answer
 * while down), then judges, oldest first, the checks that have finished or are overdue.
 * Several checks are in flight when the timeout exceeds the period, so a silent pod is
 * found after the timeout plus (hc_down - 1) periods, while a slow one has the whole
 * timeout for each answer. Returns when the next check starts or is due. */
uint64_t hc_round(struct agent *a, uint64_t now)
{
	uint64_t next = now + a->o->hc_interval_ms;
	for (unsigned i = 0; i < a->nhc; i++) {
		struct hc *h = &a->hc[i];
		if (h->next_ms <= now) {
			probe_start(a, h, now);
			bool changing = h->up ? h->fails > 0 : h->oks > 0;
			unsigned period = a->o->hc_interval_ms;
			if (changing && a->o->hc_fast_ms < period)
				period = a->o->hc_fast_ms;
			h->next_ms = now + jittered(h, period);
		}
		hc_judge(a, i, now);
		next = h->next_ms < next ? h->next_ms : next;
		for (unsigned k = 0; k < HC_PROBES; k++)
			if (h->pr[k].start_ms && probe_due(&h->pr[k]) < next)
				next = probe_due(&h->pr[k]);
	}
	return next;
}

void hc_pollfds(const struct agent *a, struct pollfd *pf)
{
	for (unsigned i = 0; i < a->nhc; i++)
		for (unsigned k = 0; k < HC_PROBES; k++) {
			const struct hc_probe *p = &a->hc[i].pr[k];
			pf[i * HC_PROBES + k] = (struct pollfd){
			    .fd = p->fd, .events = (short)(p->sent ? POLLIN : POLLOUT)};
		}
}

bool hc_polled(struct agent *a, const struct pollfd *pf)
{
	bool any = false;
	for (unsigned i = 0; i < a->nhc; i++)
		for (unsigned k = 0; k < HC_PROBES; k++) {
			struct hc_probe *p = &a->hc[i].pr[k];
			if (!pf[i * HC_PROBES + k].revents || p->fd != pf[i * HC_PROBES + k].fd)
				continue;
			probe_step(a->hc[i].req, p);
			if (p->done) {
				hc_judge(a, i, peak_mono_ms()); /* an answer counts at once */
				any = true;
			}
		}
	return any;
}

/* A local endpoint's checks before the first: up, nothing in flight, the first check
 * due at once; the jitter seeded per agent and endpoint (m: its index). */
static struct hc hc_new(const struct agent *a, unsigned svc, unsigned ep, unsigned m)
{
	struct hc h = {.svc = (int)svc, .ep = (int)ep, .up = true, .pidfd = -1, .app_err = -ENOENT};
	const char *req = a->o->hc_request;
	h.req = req && *req ? req : NULL;
	for (unsigned k = 0; k < HC_PROBES; k++)
		h.pr[k].fd = -1;
	h.rng =
	    (uint32_t)(peak_mono_ms() * 2654435761u) ^ ((m + 1) * 0x85ebca6bu) ^ (uint32_t)getpid();
	return h;
}

/* The arrays of n local endpoints' checks: the agent's (hc, pf) and the metrics' (st). */
struct hc_arrays {
	struct hc *hc;
	struct pollfd *pf;
	bool *healthy;
	uint64_t *slices, *conns, *cpu_ns, *app;
	int (*who)[2];
	struct pod_sat *sat;
};

/* Allocates x for n endpoints, zeroed; -ENOMEM (nothing kept) if any allocation fails. */
static int hc_arrays_new(struct hc_arrays *x, unsigned n)
{
	size_t k = n ? n : 1;
	x->hc = calloc(k, sizeof(*x->hc));
	x->pf = calloc((1 + HC_PROBES) * n + AGENT_PF_FIXED, sizeof(*x->pf));
	x->healthy = calloc(k, sizeof(*x->healthy));
	x->slices = calloc(k, sizeof(*x->slices));
	x->who = calloc(k, sizeof(*x->who));
	x->conns = calloc(k, sizeof(*x->conns));
	x->cpu_ns = calloc(k, sizeof(*x->cpu_ns));
	x->sat = calloc(k, sizeof(*x->sat));
	x->app = malloc(k * sizeof(*x->app));
	if (x->hc && x->pf && x->healthy && x->slices && x->who && x->conns && x->cpu_ns &&
	    x->sat && x->app) {
		for (size_t i = 0; i < k; i++)
			x->app[i] = UINT64_MAX;
		return 0;
	}
	free(x->hc);
	free(x->pf);
	free(x->healthy);
	free(x->slices);
	free(x->who);
	free(x->conns);
	free(x->cpu_ns);
	free(x->sat);
	free(x->app);
	return -ENOMEM;
}

/* Puts x (n endpoints) in force in place of the agent's arrays, which are freed (a->st.lock
 * held: the metrics thread reads st). */
static void hc_arrays_install(struct agent *a, const struct hc_arrays *x, unsigned n)
{
	free(a->hc);
	free(a->pf);
	a->hc = x->hc;
	a->pf = x->pf;
	a->nhc = n;
	free(a->st.healthy);
	free(a->st.slices);
	free(a->st.who);
	free(a->st.conns);
	free(a->st.cpu_ns);
	free(a->st.sat);
	free(a->st.app);
	a->st.healthy = x->healthy;
	a->st.slices = x->slices;
	a->st.who = x->who;
	a->st.conns = x->conns;
	a->st.cpu_ns = x->cpu_ns;
	a->st.sat = x->sat;
	a->st.app = x->app;
	a->st.n = n;
}

/* Sets up the health checks (and their metrics) of a->cfg's local endpoints. The new state
 * is allocated first: on failure (-ENOMEM) the previous one is left as it was. On success
 * the previous checks' connections and pidfds are closed and st points into a->cfg. old,
 * the configuration a->hc was made for (NULL at start), lets an endpoint that stays (same
 * service name, same id) keep its CPU counter across a reload. */
int hc_setup(struct agent *a, const struct peak_config *old)
{
	unsigned n = 0, m = 0;
	for (unsigned i = 0; i < a->cfg->nsvc; i++)
		for (unsigned e = 0; e < a->cfg->svc[i].nep; e++)
			n += !strcmp(a->cfg->svc[i].ep[e].node, a->o->node);
	struct hc_arrays x;
	if (hc_arrays_new(&x, n))
		return -ENOMEM;
	struct hc *hc = x.hc;
	for (unsigned i = 0; i < a->cfg->nsvc; i++)
		for (unsigned e = 0; e < a->cfg->svc[i].nep; e++)
			if (!strcmp(a->cfg->svc[i].ep[e].node, a->o->node)) {
				hc[m] = hc_new(a, i, e, m);
				m++;
			}
	for (unsigned k = 0; old && k < n; k++) {
		const struct cfg_service *s = &a->cfg->svc[hc[k].svc];
		for (unsigned j = 0; j < a->nhc; j++) {
			const struct cfg_service *t = &old->svc[a->hc[j].svc];
			if (dns_name_eq(&s->name, &t->name) &&
			    !strcmp(s->ep[hc[k].ep].id, t->ep[a->hc[j].ep].id)) {
				hc[k].cpu_seen = a->hc[j].cpu_seen;
				hc[k].cpu_total = a->hc[j].cpu_total;
				break;
			}
		}
	}
	watch_stop_all(a);
	for (unsigned i = 0; a->hc && i < a->nhc; i++)
		hc_close(&a->hc[i]); /* the checks in flight: their sockets went with the hc once */
	pthread_mutex_lock(&a->st.lock);
	hc_arrays_install(a, &x, n);
	for (unsigned k = 0; k < n; k++) {
		a->st.healthy[k] = true;
		a->st.cpu_ns[k] =
		    hc[k].cpu_total; /* a counter kept across a reload shows at once */
		a->st.who[k][0] = hc[k].svc;
		a->st.who[k][1] = hc[k].ep;
	}
	a->st.cfg = a->cfg;
	a->st.node = a->o->node;
	pthread_mutex_unlock(&a->st.lock);
	return 0;
}

int hc_rebuild(struct agent *a, unsigned svc, struct cfg_endpoint *ep, unsigned nep,
               const int *old_of)
{
	struct cfg_service *s = &a->cfg->svc[svc];
	unsigned n = 0, m = 0;
	for (unsigned i = 0; i < a->cfg->nsvc; i++) {
		const struct cfg_endpoint *v = i == svc ? ep : a->cfg->svc[i].ep;
		unsigned vn = i == svc ? nep : a->cfg->svc[i].nep;
		for (unsigned e = 0; e < vn; e++)
			n += !strcmp(v[e].node, a->o->node);
	}
	struct hc_arrays x;
	if (hc_arrays_new(&x, n))
		return -ENOMEM;
	struct hc *hc = x.hc;
	bool *healthy = x.healthy;
	uint64_t *slices = x.slices, *conns = x.conns, *cpu_ns = x.cpu_ns;
	int(*who)[2] = x.who;
	struct pod_sat *sat = x.sat;
	uint64_t *app = x.app;
	pthread_mutex_lock(&a->st.lock);
	/* the old checks come in (service, endpoint) order, as the new ones: one walk */
	unsigned j = 0;
	for (unsigned i = 0; i < a->cfg->nsvc; i++) {
		const struct cfg_endpoint *v = i == svc ? ep : a->cfg->svc[i].ep;
		unsigned vn = i == svc ? nep : a->cfg->svc[i].nep;
		for (unsigned e = 0; e < vn; e++) {
			if (strcmp(v[e].node, a->o->node))
				continue;
			int oe = i == svc ? old_of[e] : (int)e;
			while (j < a->nhc && (a->hc[j].svc < (int)i ||
			                      (a->hc[j].svc == (int)i && a->hc[j].ep < oe)))
				j++;
			if (oe >= 0 && j < a->nhc && a->hc[j].svc == (int)i && a->hc[j].ep == oe) {
				hc[m] =
				    a->hc[j]; /* its checks in flight and its pidfd move with it */
				for (unsigned k = 0; k < HC_PROBES; k++)
					a->hc[j].pr[k].fd = -1;
				a->hc[j].pidfd = -1;
				healthy[m] = a->st.healthy[j];
				slices[m] = a->st.slices[j];
				conns[m] = a->st.conns[j];
				cpu_ns[m] = a->st.cpu_ns[j];
				sat[m] = a->st.sat[j];
				app[m] = a->st.app[j];
			} else {
				hc[m] = hc_new(a, i, e, m);
				healthy[m] = true;
			}
			hc[m].svc = (int)i;
			hc[m].ep = (int)e;
			who[m][0] = (int)i;
			who[m][1] = (int)e;
			m++;
		}
	}
	for (unsigned i = 0; i < a->nhc; i++) { /* the endpoints that went */
		hc_close(&a->hc[i]);
		if (a->hc[i].pidfd >= 0)
			close(a->hc[i].pidfd);
	}
	hc_arrays_install(a, &x, n);
	free(s->ep);
	s->ep = ep;
	s->nep = nep;
	pthread_mutex_unlock(&a->st.lock);
	return 0;
}
