#define _GNU_SOURCE /* accept4 */
#include "controller.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/net.h"
#include "peak/config.h"

enum { MAX_AGENTS = 64, LINE_MAX_B = 512 };

struct csvc {
	const struct cfg_service *s;
	struct assign a;
	bool have;
	int *slot; /* per endpoint: assignment slot, -1 when out */
	bool *healthy;
	uint64_t *conns, *cpu_ns; /* per endpoint: the last load its agent reported */
	char name[DNS_NAME_STRLEN];
};

struct agent_conn {
	int fd;
	char node[CFG_ID_MAX];
	char in[4096];
	size_t inlen;
};

struct ctl {
	const struct controller_opts *o;
	pthread_mutex_t lock; /* the metrics thread reads what the loop writes */
	struct peak_config *cfg;
	struct csvc *svc;
	struct agent_conn agents[MAX_AGENTS];
};

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return; /* a broken agent is noticed by its read side */
		p += k;
		n -= (size_t)k;
	}
}

/* The whole map of a service as text (malloc'ed). */
static char *map_text(const struct csvc *c, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *t = malloc(cap);
	struct assign_block *b = NULL;
	if (!t)
		return NULL;
#define PUT(...)                                                                                   \
	do {                                                                                       \
		int k_;                                                                            \
		while ((k_ = snprintf(t + n, cap - n, __VA_ARGS__)) >= (int)(cap - n)) {           \
			char *nt_ = realloc(t, cap *= 2);                                          \
			if (!nt_) {                                                                \
				free(t);                                                           \
				free(b);                                                           \
				return NULL;                                                       \
			}                                                                          \
			t = nt_;                                                                   \
		}                                                                                  \
		n += (size_t)k_;                                                                   \
	} while (0)
	PUT("map %s\n", c->name);
	for (unsigned e = 0; c->have && e < c->s->nep; e++) {
		if (c->slot[e] < 0)
			continue;
		size_t nb = assign_blocks(&c->a, (unsigned)c->slot[e], NULL, 0);
		struct assign_block *nbv = realloc(b, (nb ? nb : 1) * sizeof(*nbv));
		if (!nbv) {
			free(t);
			free(b);
			return NULL;
		}
		b = nbv;
		assign_blocks(&c->a, (unsigned)c->slot[e], b, nb);
		PUT("ep %s", c->s->ep[e].id);
		for (size_t k = 0; k < nb; k++)
			PUT(" %u/%u", b[k].start, b[k].log2);
		PUT("\n");
	}
	PUT("end\n");
#undef PUT
	free(b);
	*len = n;
	return t;
}

static void send_map(struct ctl *c, struct csvc *v, int only_fd)
{
	size_t len;
	char *t = map_text(v, &len);
	if (!t)
		return;
	for (int i = 0; i < MAX_AGENTS; i++)
		if (c->agents[i].fd >= 0 && c->agents[i].node[0] &&
		    (only_fd < 0 || c->agents[i].fd == only_fd))
			send_all(c->agents[i].fd, t, len);
	free(t);
}

/* Tells peak dns (its control socket) about a health change; failures are logged. */
static void tell_dns(const struct ctl *c, const char *line)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (!c->o->dns_control || strlen(c->o->dns_control) >= sizeof(sun.sun_path))
		return;
	memcpy(sun.sun_path, c->o->dns_control, strlen(c->o->dns_control) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char reply[256] = "";
	if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		log_msg(LOG_WARNING, "controller: peak dns at %s: %s", c->o->dns_control,
		        strerror(errno));
		if (fd != -1)
			close(fd);
		return;
	}
	send_all(fd, line, strlen(line));
	shutdown(fd, SHUT_WR);
	ssize_t k = recv(fd, reply, sizeof(reply) - 1, MSG_WAITALL);
	if (k > 0)
		reply[k] = '\0';
	if (strncmp(reply, "ok", 2))
		log_msg(LOG_WARNING, "controller: peak dns refused '%.*s': %s",
		        (int)strcspn(line, "\n"), line, reply);
	close(fd);
}

static void health(struct ctl *c, const char *svc, const char *ep, bool up)
{
	struct dns_name n;
	if (dns_name_parse(svc, &n))
		return;
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		struct csvc *v = &c->svc[i];
		if (!dns_name_eq(&v->s->name, &n) || !v->have)
			continue;
		for (unsigned e = 0; e < v->s->nep; e++) {
			if (strcmp(v->s->ep[e].id, ep) || v->healthy[e] == up)
				continue;
			v->healthy[e] = up;
			uint32_t moved = 0;
			if (!up && v->slot[e] >= 0 &&
			    !assign_del(&v->a, (unsigned)v->slot[e], &moved))
				v->slot[e] = -1;
			if (up && v->slot[e] < 0) {
				int s = assign_add(&v->a, v->s->ep[e].weight, &moved);
				if (s >= 0)
					v->slot[e] = s;
			}
			log_msg(LOG_INFO, "controller: %s %s %s: %u slices moved", v->name, ep,
			        up ? "up" : "down", moved);
			send_map(c, v, -1);
			char line[DNS_NAME_STRLEN + 320];
			snprintf(line, sizeof(line), "health %s %s %s\n", v->name, ep,
			         up ? "up" : "down");
			tell_dns(c, line);
		}
	}
}

static void agent_line(struct ctl *c, struct agent_conn *a, char *line)
{
	char w[4][256];
	int n = sscanf(line, "%255s %255s %255s %255s", w[0], w[1], w[2], w[3]);
	if (n == 2 && !strcmp(w[0], "hello")) {
		snprintf(a->node, sizeof(a->node), "%.63s", w[1]);
		log_msg(LOG_INFO, "controller: agent of node %s connected", a->node);
		for (unsigned i = 0; i < c->cfg->nsvc; i++)
			send_map(c, &c->svc[i], a->fd);
		return;
	}
	unsigned long long conns, cpu;
	if (sscanf(line, "load %255s %255s %llu %llu", w[1], w[2], &conns, &cpu) == 4) {
		struct dns_name n_;
		if (dns_name_parse(w[1], &n_))
			return;
		pthread_mutex_lock(&c->lock);
		for (unsigned i = 0; i < c->cfg->nsvc; i++)
			for (unsigned e = 0;
			     dns_name_eq(&c->svc[i].s->name, &n_) && e < c->svc[i].s->nep; e++)
				if (!strcmp(c->svc[i].s->ep[e].id, w[2])) {
					c->svc[i].conns[e] = conns;
					c->svc[i].cpu_ns[e] = cpu;
				}
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (n == 4 && !strcmp(w[0], "health") && (!strcmp(w[3], "up") || !strcmp(w[3], "down"))) {
		pthread_mutex_lock(&c->lock);
		health(c, w[1], w[2], !strcmp(w[3], "up"));
		pthread_mutex_unlock(&c->lock);
		return;
	}
	log_msg(LOG_WARNING, "controller: agent %s: unknown line '%.80s'", a->node, line);
}

static int setup(struct ctl *c)
{
	char err[CFG_ERRLEN];
	if (config_load(c->o->config, &c->cfg, err, sizeof(err))) {
		log_msg(LOG_ERR, "controller: %s", err);
		return -1;
	}
	c->svc = calloc(c->cfg->nsvc ? c->cfg->nsvc : 1, sizeof(*c->svc));
	if (!c->svc)
		return -1;
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		struct csvc *v = &c->svc[i];
		v->s = &c->cfg->svc[i];
		dns_name_print(&v->s->name, v->name, sizeof(v->name));
		v->slot = calloc(v->s->nep ? v->s->nep : 1, sizeof(*v->slot));
		v->healthy = calloc(v->s->nep ? v->s->nep : 1, sizeof(*v->healthy));
		v->conns = calloc(v->s->nep ? v->s->nep : 1, sizeof(*v->conns));
		v->cpu_ns = calloc(v->s->nep ? v->s->nep : 1, sizeof(*v->cpu_ns));
		if (!v->slot || !v->healthy || !v->conns || !v->cpu_ns)
			return -1;
		for (unsigned e = 0; e < v->s->nep; e++)
			v->healthy[e] = true;
		v->have = config_service_assign(v->s, &v->a, v->slot) == 0;
	}
	return 0;
}

static void render(struct mbuf *b, void *arg)
{
	struct ctl *c = arg;
	unsigned agents = 0;
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < MAX_AGENTS; i++)
		agents += c->agents[i].fd >= 0 && c->agents[i].node[0];
	mbuf_printf(b,
	            "# HELP peak_controller_agents Agents connected.\n"
	            "# TYPE peak_controller_agents gauge\npeak_controller_agents %u\n"
	            "# HELP peak_controller_endpoint_slices Slices assigned to the endpoint.\n"
	            "# TYPE peak_controller_endpoint_slices gauge\n",
	            agents);
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		struct csvc *v = &c->svc[i];
		for (unsigned e = 0; e < v->s->nep; e++)
			mbuf_printf(
			    b,
			    "peak_controller_endpoint_slices{service=\"%s\",endpoint=\"%s\"} %u\n",
			    v->name, v->s->ep[e].id,
			    v->have && v->slot[e] >= 0 ? v->a.ep[v->slot[e]].count : 0);
	}
	mbuf_printf(b, "# HELP peak_controller_endpoint_healthy 1 if the endpoint is up.\n"
	               "# TYPE peak_controller_endpoint_healthy gauge\n");
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		for (unsigned e = 0; e < c->svc[i].s->nep; e++)
			mbuf_printf(
			    b,
			    "peak_controller_endpoint_healthy{service=\"%s\",endpoint=\"%s\"} %d\n",
			    c->svc[i].name, c->svc[i].s->ep[e].id, c->svc[i].healthy[e]);
	mbuf_printf(b, "# HELP peak_controller_endpoint_connections Connections the agent saw.\n"
	               "# TYPE peak_controller_endpoint_connections gauge\n");
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		for (unsigned e = 0; e < c->svc[i].s->nep; e++)
			mbuf_printf(
			    b,
			    "peak_controller_endpoint_connections{service=\"%s\",endpoint=\"%s\"} "
			    "%llu\n",
			    c->svc[i].name, c->svc[i].s->ep[e].id,
			    (unsigned long long)c->svc[i].conns[e]);
	mbuf_printf(b, "# HELP peak_controller_endpoint_cpu_seconds_total CPU time of the pod.\n"
	               "# TYPE peak_controller_endpoint_cpu_seconds_total counter\n");
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		for (unsigned e = 0; e < c->svc[i].s->nep; e++)
			mbuf_printf(b,
			            "peak_controller_endpoint_cpu_seconds_total{service=\"%s\","
			            "endpoint=\"%s\"} %.3f\n",
			            c->svc[i].name, c->svc[i].s->ep[e].id,
			            (double)c->svc[i].cpu_ns[e] / 1e9);
	pthread_mutex_unlock(&c->lock);
}

int controller_run(const struct controller_opts *o)
{
	struct ctl c = {.o = o, .lock = PTHREAD_MUTEX_INITIALIZER};
	struct metrics_srv *ms = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, lfd = -1, sfd = -1, ret = 1;
	for (int i = 0; i < MAX_AGENTS; i++)
		c.agents[i].fd = -1;
	if (setup(&c))
		goto out;
	if (sockaddr_parse(o->listen, &ss, &sl)) {
		log_msg(LOG_ERR, "controller: --listen: '%s' is not ADDR:PORT", o->listen);
		goto out;
	}
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd == -1)
		goto out;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, sl) == -1 || listen(lfd, 64) == -1) {
		log_msg(LOG_ERR, "controller: %s: %s", o->listen, strerror(errno));
		goto out;
	}
	sfd = signals_fd(0);
	if (o->metrics && !(ms = metrics_start(o->metrics, render, &c))) {
		ret = 1;
		goto out;
	}
	log_msg(LOG_INFO, "controller: %u services from %s, agents on %s", c.cfg->nsvc, o->config,
	        o->listen);
	ret = 0;
	for (;;) {
		struct pollfd pf[MAX_AGENTS + 2];
		pf[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pf[1] = (struct pollfd){.fd = lfd, .events = POLLIN};
		for (int i = 0; i < MAX_AGENTS; i++)
			pf[2 + i] = (struct pollfd){.fd = c.agents[i].fd, .events = POLLIN};
		if (poll(pf, MAX_AGENTS + 2, -1) == -1 && errno != EINTR)
			break;
		if (pf[0].revents)
			break;
		if (pf[1].revents) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			int i = 0;
			while (fd >= 0 && i < MAX_AGENTS && c.agents[i].fd >= 0)
				i++;
			if (fd >= 0 && i < MAX_AGENTS)
				c.agents[i] = (struct agent_conn){.fd = fd};
			else if (fd >= 0)
				close(fd);
		}
		for (int i = 0; i < MAX_AGENTS; i++) {
			struct agent_conn *a = &c.agents[i];
			if (a->fd < 0 || !pf[2 + i].revents)
				continue;
			ssize_t k = recv(a->fd, a->in + a->inlen, sizeof(a->in) - 1 - a->inlen, 0);
			if (k <= 0) {
				log_msg(LOG_INFO, "controller: agent of node %s left",
				        a->node[0] ? a->node : "?");
				close(a->fd);
				a->fd = -1;
				continue;
			}
			a->inlen += (size_t)k;
			a->in[a->inlen] = '\0';
			char *nl;
			while ((nl = memchr(a->in, '\n', a->inlen))) {
				*nl = '\0';
				agent_line(&c, a, a->in);
				size_t used = (size_t)(nl - a->in) + 1;
				memmove(a->in, a->in + used, a->inlen - used);
				a->inlen -= used;
			}
			if (a->inlen == sizeof(a->in) - 1)
				a->inlen = 0; /* an endless line: drop it */
		}
	}
	log_msg(LOG_INFO, "controller: stopping");
out:
	metrics_stop(ms);
	for (int i = 0; i < MAX_AGENTS; i++)
		if (c.agents[i].fd >= 0)
			close(c.agents[i].fd);
	for (unsigned i = 0; c.svc && i < c.cfg->nsvc; i++) {
		if (c.svc[i].have)
			assign_fini(&c.svc[i].a);
		free(c.svc[i].slot);
		free(c.svc[i].healthy);
		free(c.svc[i].conns);
		free(c.svc[i].cpu_ns);
	}
	free(c.svc);
	config_free(c.cfg);
	if (lfd >= 0)
		close(lfd);
	if (sfd >= 0)
		close(sfd);
	return ret;
}
