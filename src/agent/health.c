/* peak agent: health checks, and the watches on the pods' server processes. */
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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
void hc_close(struct hc *h)
{
	struct linger lg = {1, 0};
	setsockopt(h->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(h->fd);
	h->fd = -1;
}

/* Collects a check whose connect has completed (connected or failed): records the outcome in
 * h->ok and closes the connection. Returns whether it did; a connect still in flight is
 * left alone. */
bool hc_collect(struct hc *h)
{
	struct pollfd pf = {.fd = h->fd, .events = POLLOUT};
	if (h->fd < 0 || poll(&pf, 1, 0) != 1)
		return false;
	int so = 1;
	socklen_t sl = sizeof(so);
	if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &so, &sl) == -1)
		so = 1;
	h->ok = so == 0;
	hc_close(h);
	return true;
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
	ctl_health(a, h);
	a->dirty = true;
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
}

/* The watched process exited: the endpoint is down now, unless another process still
 * holds a listener on its port (then that one is watched). */
void watch_fired(struct agent *a, unsigned i)
{
	struct hc *h = &a->hc[i];
	close(h->pidfd);
	h->pidfd = -1;
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
		}
}

/* For each local endpoint whose check is due: judges its last connect (completed by now
 * and connected, or not), then starts the next one, due after the fast interval while the
 * endpoint's health is changing (a failure while up, a success while down), else the interval.
 * Returns when the next check is due. */
uint64_t hc_round(struct agent *a, uint64_t now)
{
	uint64_t next = now + a->o->hc_interval_ms;
	for (unsigned i = 0; i < a->nhc; i++) {
		struct hc *h = &a->hc[i];
		const struct cfg_service *s = &a->cfg->svc[h->svc];
		if (h->next_ms > now) {
			next = h->next_ms < next ? h->next_ms : next;
			continue;
		}
		if (h->started) {
			hc_collect(h);
			if (h->fd >= 0)
				hc_close(h); /* not connected yet counts as a failure */
			bool ok = h->ok, was = h->up;
			pthread_mutex_lock(&a->st.lock);
			if (ok)
				a->st.checks_ok++;
			else
				a->st.checks_failed++;
			pthread_mutex_unlock(&a->st.lock);
			h->oks = ok ? h->oks + 1 : 0;
			h->fails = ok ? 0 : h->fails + 1;
			if (h->up && h->fails >= a->o->hc_down)
				hc_set(a, i, false, "");
			if (!was && h->oks >= a->o->hc_up)
				hc_set(a, i, true, "");
		}
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
		                          .sin6_port = htons((uint16_t)s->port)};
		memcpy(&sa.sin6_addr, s->ep[h->ep].addr, 16);
		h->started = true;
		h->ok = false;
		h->fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (h->fd >= 0 && connect(h->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 &&
		    errno != EINPROGRESS) {
			close(h->fd); /* refused or unreachable at once: a failure */
			h->fd = -1;
		}
		bool changing = h->up ? h->fails > 0 : h->oks > 0;
		h->next_ms = now + (changing ? a->o->hc_fast_ms : a->o->hc_interval_ms);
		next = h->next_ms < next ? h->next_ms : next;
	}
	return next;
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
	struct hc *hc = calloc(n ? n : 1, sizeof(*hc));
	struct pollfd *pf = calloc(2 * n + 2, sizeof(*pf));
	bool *healthy = calloc(n ? n : 1, sizeof(*healthy));
	uint64_t *slices = calloc(n ? n : 1, sizeof(*slices));
	int(*who)[2] = calloc(n ? n : 1, sizeof(*who));
	uint64_t *conns = calloc(n ? n : 1, sizeof(*conns));
	uint64_t *cpu_ns = calloc(n ? n : 1, sizeof(*cpu_ns));
	if (!hc || !pf || !healthy || !slices || !who || !conns || !cpu_ns) {
		free(hc);
		free(pf);
		free(healthy);
		free(slices);
		free(who);
		free(conns);
		free(cpu_ns);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < a->cfg->nsvc; i++)
		for (unsigned e = 0; e < a->cfg->svc[i].nep; e++)
			if (!strcmp(a->cfg->svc[i].ep[e].node, a->o->node))
				hc[m++] = (struct hc){
				    .svc = (int)i, .ep = (int)e, .fd = -1, .up = true, .pidfd = -1};
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
		if (a->hc[i].fd >= 0)
			hc_close(
			    &a->hc[i]); /* the check in flight: its socket went with the hc once */
	free(a->hc);
	free(a->pf);
	a->hc = hc;
	a->pf = pf;
	a->nhc = n;
	pthread_mutex_lock(&a->st.lock);
	free(a->st.healthy);
	free(a->st.slices);
	free(a->st.who);
	free(a->st.conns);
	free(a->st.cpu_ns);
	a->st.healthy = healthy;
	a->st.slices = slices;
	a->st.who = who;
	a->st.conns = conns;
	a->st.cpu_ns = cpu_ns;
	a->st.n = n;
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
