#define _GNU_SOURCE /* accept4 */
#include "controller.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/net.h"
#include "peak/config.h"
#include "peak/ctlauth.h"
#include "peak/ctlproto.h"

enum {
	MAX_AGENTS = 64,
	MAX_CLIENTS = 8,      /* operator connections on the control socket at once */
	OUTQ_MAX_B = 8 << 20, /* bytes queued for one peer before it is dropped */
	DRAIN_MS = 5000,      /* a peer whose queue made no progress this long is dropped */
	HELLO_MS = 10000,     /* a peer must say a valid hello within this */
	CLIENT_MS = 5000,     /* an operator client's whole exchange */
	DNS_MS = 2000,        /* one notification to peak dns: connect, send, reply */
	DNS_QUEUE_MAX = 1024, /* notifications waiting for peak dns */
	STALE_UP_MS = 2000,   /* see adopt(): the grace for a saved "down" after a hello */
	LOG_BURST = 10,       /* peer-caused log lines per second */
	POLL_TICK_MS = 250,
};

struct csvc {
	const struct cfg_service *s;
	struct assign a;
	bool have;
	int *slot; /* per endpoint: assignment slot, -1 when out */
	bool *healthy;
	uint32_t *weight;         /* per endpoint: the live weight (config, or the operator's) */
	uint64_t *stale;          /* per endpoint: a saved "down" not yet confirmed: bring it up at
	                           * this time (0: none, UINT64_MAX: its agent has not said hello) */
	uint64_t *conns, *cpu_ns; /* per endpoint: the last load its agent reported */
	char name[DNS_NAME_STRLEN];
};

struct outq {
	char *p;
	size_t len, off, cap;
	uint64_t since_ms; /* when it last made progress or became non-empty */
};

struct peer {
	int fd;
	bool hello;   /* agents: said a valid hello */
	bool closing; /* clients: close once the reply is out */
	char node[CTL_ID_MAX];
	uint8_t nonce[CTL_NONCE_LEN];
	uint64_t born_ms;
	char in[CTL_LINE_MAX];
	size_t inlen;
	struct outq q;
};

struct dnsq {
	char *line[DNS_QUEUE_MAX];
	unsigned head, n;
	int fd;
	size_t off;
	bool sent;
	uint64_t deadline_ms;
	char reply[CTL_LINE_MAX];
	size_t rlen;
};

struct ctl {
	const struct controller_opts *o;
	pthread_mutex_t lock; /* the metrics thread reads what the loop writes */
	struct peak_config *cfg;
	struct csvc *svc;
	struct peer agents[MAX_AGENTS];
	struct peer clients[MAX_CLIENTS];
	struct dnsq dns;
	struct ctlauth_key key;
	bool auth;
	const char *state; /* state file, or NULL */
	char state_buf[4096];
	uint64_t log_s;
	unsigned log_n;
};

static uint64_t mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Copies a NUL-terminated string, or leaves dst empty if it does not fit (a name cut
 * short would name something else; the grammar refuses the empty one). */
static void cp(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		n = 0;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* True if a peer-caused message may be logged now (LOG_BURST per second). */
static bool log_ok(struct ctl *c)
{
	uint64_t s = mono_ms() / 1000;
	if (s != c->log_s) {
		c->log_s = s;
		c->log_n = 0;
	}
	return c->log_n++ < LOG_BURST;
}

/* ---- growing text and per-peer output queues ---- */

struct text {
	char *p;
	size_t len, cap;
	int err;
};

static void text_add(struct text *t, const char *s, size_t n)
{
	if (t->err)
		return;
	if (n > t->cap - t->len) {
		size_t nc = t->cap ? t->cap : 4096;
		while (nc - t->len < n)
			nc *= 2;
		char *np = realloc(t->p, nc);
		if (!np) {
			t->err = -ENOMEM;
			return;
		}
		t->p = np;
		t->cap = nc;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
}

/* Appends m as a line; a message outside the grammar sets the error. */
static void text_msg(struct text *t, const struct ctl_msg *m)
{
	char line[CTL_LINE_MAX + 1];
	int n = ctl_write(m, line, sizeof(line));
	if (n < 0)
		t->err = n;
	else
		text_add(t, line, (size_t)n);
}

static void peer_close(struct peer *p)
{
	if (p->fd >= 0)
		close(p->fd);
	free(p->q.p);
	*p = (struct peer){.fd = -1};
}

/* Sends what the peer's socket takes now (non-blocking). Returns 0 or -errno (the peer
 * is broken). */
static int peer_flush(struct peer *p, uint64_t now)
{
	while (p->q.off < p->q.len) {
		ssize_t k = send(p->fd, p->q.p + p->q.off, p->q.len - p->q.off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		p->q.off += (size_t)k;
		p->q.since_ms = now;
	}
	p->q.off = p->q.len = 0;
	return 0;
}

/* Queues bytes for a peer and sends what its socket takes. A peer whose queue would pass
 * OUTQ_MAX_B, or whose socket failed, is closed (an agent reconnects and gets whole maps
 * again). Returns 0 or -errno (the peer is closed). */
static int peer_send(struct ctl *c, struct peer *p, const char *s, size_t n)
{
	uint64_t now = mono_ms();
	int ret = 0;
	if (p->q.len - p->q.off + n > OUTQ_MAX_B) {
		if (log_ok(c))
			log_msg(LOG_WARNING,
			        "controller: peer %s does not read (%zu bytes queued): "
			        "dropped",
			        p->node[0] ? p->node : "?", p->q.len - p->q.off);
		ret = -ENOBUFS;
		goto out;
	}
	if (p->q.off && p->q.off == p->q.len)
		p->q.off = p->q.len = 0;
	if (p->q.off > p->q.cap / 2) { /* reuse the sent half */
		memmove(p->q.p, p->q.p + p->q.off, p->q.len - p->q.off);
		p->q.len -= p->q.off;
		p->q.off = 0;
	}
	if (n > p->q.cap - p->q.len) {
		size_t nc = p->q.cap ? p->q.cap : 4096;
		while (nc - p->q.len < n)
			nc *= 2;
		char *np = realloc(p->q.p, nc);
		if (!np) {
			ret = -ENOMEM;
			goto out;
		}
		p->q.p = np;
		p->q.cap = nc;
	}
	if (p->q.len == p->q.off)
		p->q.since_ms = now;
	memcpy(p->q.p + p->q.len, s, n);
	p->q.len += n;
	ret = peer_flush(p, now);
out:
	if (ret)
		peer_close(p);
	return ret;
}

/* ---- maps and the state file ---- */

/* Appends a service's whole map: "map", every endpoint holding slices with its blocks
 * (CTL_EP_BLOCKS_MAX per line), "end". */
static void map_text(const struct csvc *v, struct text *t)
{
	struct ctl_msg *m = calloc(1, sizeof(*m));
	struct assign_block *b = NULL;
	if (!m) {
		t->err = -ENOMEM;
		return;
	}
	m->kind = CTL_MAP;
	cp(m->svc, sizeof(m->svc), v->name);
	text_msg(t, m);
	for (unsigned e = 0; v->have && e < v->s->nep && !t->err; e++) {
		if (v->slot[e] < 0)
			continue;
		size_t nb = assign_blocks(&v->a, (unsigned)v->slot[e], NULL, 0);
		struct assign_block *nbv = realloc(b, (nb ? nb : 1) * sizeof(*nbv));
		if (!nbv) {
			t->err = -ENOMEM;
			break;
		}
		b = nbv;
		if (nb) /* (assign_blocks copies from NULL when there is nothing) */
			assign_blocks(&v->a, (unsigned)v->slot[e], b, nb);
		m->kind = CTL_EP;
		cp(m->id, sizeof(m->id), v->s->ep[e].id);
		size_t k = 0;
		do {
			m->nblocks = 0;
			while (k < nb && m->nblocks < CTL_EP_BLOCKS_MAX)
				m->blocks[m->nblocks++] = b[k++];
			text_msg(t, m);
		} while (k < nb);
	}
	m->kind = CTL_END;
	text_msg(t, m);
	free(b);
	free(m);
}

static void send_map(struct ctl *c, struct csvc *v, struct peer *only)
{
	struct text t = {0};
	map_text(v, &t);
	if (t.err) {
		log_msg(LOG_ERR, "controller: %s: cannot write its map: %s", v->name,
		        strerror(-t.err));
		goto out;
	}
	for (int i = 0; i < MAX_AGENTS; i++) {
		struct peer *p = &c->agents[i];
		if (p->fd >= 0 && p->hello && (!only || p == only))
			peer_send(c, p, t.p, t.len);
	}
out:
	free(t.p);
}

/* The whole live state as control lines: per service its map, then "weight" for every
 * endpoint and "health ... down" for the endpoints that are down. */
static int state_text(const struct ctl *c, struct text *t)
{
	struct ctl_msg m = {0};
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		const struct csvc *v = &c->svc[i];
		if (!v->have)
			continue;
		map_text(v, t);
		cp(m.svc, sizeof(m.svc), v->name);
		for (unsigned e = 0; e < v->s->nep; e++) {
			cp(m.id, sizeof(m.id), v->s->ep[e].id);
			m.kind = CTL_WEIGHT;
			m.weight = v->weight[e];
			text_msg(t, &m);
			if (!v->healthy[e]) {
				m.kind = CTL_HEALTH;
				m.up = false;
				text_msg(t, &m);
			}
		}
	}
	return t->err;
}

/* Writes the state file atomically: a temporary file beside it, fsync, rename, fsync of
 * the directory. Failures are logged; the controller goes on without a saved state. */
static void state_save(struct ctl *c)
{
	struct text t = {0};
	char tmp[4096 + 8], dir[4096];
	int fd = -1, dfd = -1, err = 0;
	if (!c->state)
		return;
	if ((err = state_text(c, &t)))
		goto out;
	snprintf(tmp, sizeof(tmp), "%s.tmp", c->state);
	snprintf(dir, sizeof(dir), "%s", c->state);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		err = -errno;
		goto out;
	}
	for (size_t off = 0; off < t.len;) {
		ssize_t k = write(fd, t.p + off, t.len - off);
		if (k == -1 && errno == EINTR)
			continue;
		if (k == -1) {
			err = -errno;
			goto out;
		}
		off += (size_t)k;
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		err = -errno;
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, c->state) == -1) {
		err = -errno;
		goto out;
	}
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1)
		fsync(dfd);
out:
	if (err) {
		log_msg(LOG_WARNING, "controller: state file %s: %s", c->state, strerror(-err));
		unlink(tmp);
	}
	if (fd != -1)
		close(fd);
	if (dfd != -1)
		close(dfd);
	free(t.p);
}

/* Reads a whole small file (at most 64 MiB) into *out (malloc'ed, NUL-terminated). */
static int file_read(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "re");
	struct text t = {0};
	char buf[65536];
	size_t k;
	if (!f)
		return -errno;
	while ((k = fread(buf, 1, sizeof(buf), f)) > 0 && !t.err && t.len < (64u << 20))
		text_add(&t, buf, k);
	text_add(&t, "", 1);
	fclose(f);
	if (t.err) {
		free(t.p);
		return t.err;
	}
	*out = t.p;
	*len = t.len - 1;
	return 0;
}

static int ep_index(const struct cfg_service *s, const char *id)
{
	for (unsigned e = 0; e < s->nep; e++)
		if (!strcmp(s->ep[e].id, id))
			return (int)e;
	return -1;
}

/*
 * Adopts a saved assignment for service v from state (control lines as state_text writes
 * them; NULL: none). It must match the configuration: every slice of the service held by
 * exactly one known endpoint that is up, and down endpoints holding nothing. The saved
 * weights and health come with it. An endpoint the state does not know (new in the
 * configuration) then joins as assign_add does, taking only its share. Returns 0
 * (adopted), -ENOENT (the state has no such service) or -EBADMSG (it does not match; the
 * caller builds a fresh assignment).
 */
static int adopt(struct csvc *v, const char *state, size_t len)
{
	struct ctl_msg *m = malloc(sizeof(*m));
	int32_t *own = NULL;
	uint32_t *count = NULL;
	bool *known = NULL;
	int ret = -ENOENT, cur = -1;
	bool in = false, seen = false;
	struct dns_name want, got;
	uint32_t ns = (uint32_t)v->s->space.nslices;
	unsigned nep = v->s->nep;
	if (!m || !state || dns_name_parse(v->name, &want))
		goto out;
	own = malloc(ns * sizeof(*own));
	count = calloc(nep ? nep : 1, sizeof(*count));
	known = calloc(nep ? nep : 1, sizeof(*known));
	if (!own || !count || !known) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < ns; s++)
		own[s] = -1;
	for (size_t at = 0, ll; at < len;) {
		long k = ctl_line_split((const uint8_t *)state + at, len - at, &ll);
		if (k <= 0 || ctl_parse(state + at, ll, m)) {
			ret = seen ? -EBADMSG : -ENOENT;
			goto out;
		}
		at += (size_t)k;
		bool mine = m->svc[0] && !dns_name_parse(m->svc, &got) && dns_name_eq(&got, &want);
		if (m->kind == CTL_MAP) {
			in = mine;
			seen |= mine;
			continue;
		}
		if (m->kind == CTL_END) {
			in = false;
			continue;
		}
		if (m->kind == CTL_EP && in) {
			if ((cur = ep_index(v->s, m->id)) < 0)
				goto mismatch;
			for (unsigned b = 0; b < m->nblocks; b++) {
				uint64_t start = m->blocks[b].start, n = 1ull << m->blocks[b].log2;
				if (start + n > ns)
					goto mismatch;
				for (uint64_t s = start; s < start + n; s++) {
					if (own[s] >= 0)
						goto mismatch;
					own[s] = cur;
				}
				count[cur] += (uint32_t)n;
			}
			continue;
		}
		if (!mine || (m->kind != CTL_WEIGHT && m->kind != CTL_HEALTH))
			continue;
		if ((cur = ep_index(v->s, m->id)) < 0)
			goto mismatch;
		if (m->kind == CTL_WEIGHT) {
			v->weight[cur] = m->weight;
			known[cur] = true;
		} else
			v->healthy[cur] = m->up;
	}
	if (!seen)
		goto out;
	for (uint32_t s = 0; s < ns; s++)
		if (own[s] < 0 || !v->healthy[own[s]] || !known[own[s]])
			goto mismatch;
	/* The saved map as an assignment: one live slot per endpoint that is up, in the
	 * endpoints' order; the targets are what they hold (the saved map was balanced). */
	struct assign a = {.nslices = ns, .block_bits = v->s->space.s};
	a.owner = own;
	a.ep = calloc(nep ? nep : 1, sizeof(*a.ep));
	a.cap = nep ? nep : 1;
	if (!a.ep) {
		ret = -ENOMEM;
		goto out;
	}
	int32_t *slot_of = (int32_t *)count; /* reuse: count is read before it is rewritten */
	for (unsigned e = 0; e < nep; e++) {
		if (!v->healthy[e] || !known[e]) {
			v->slot[e] = -1;
			continue;
		}
		a.ep[a.nep] = (struct assign_ep){
		    .weight = v->weight[e], .count = count[e], .target = count[e], .live = true};
		v->slot[e] = (int)a.nep;
		slot_of[e] = (int32_t)a.nep++;
	}
	for (uint32_t s = 0; s < ns; s++)
		own[s] = slot_of[own[s]];
	v->a = a;
	v->have = true;
	own = NULL;
	for (unsigned e = 0; e < nep; e++) {
		int slot;
		if (known[e] || (slot = assign_add(&v->a, v->weight[e], NULL)) < 0)
			continue;
		v->slot[e] = slot;
		v->healthy[e] = true;
	}
	ret = 0;
	goto out;
mismatch:
	ret = -EBADMSG;
out:
	if (ret) {
		for (unsigned e = 0; e < nep; e++) {
			v->weight[e] = v->s->ep[e].weight;
			v->healthy[e] = true;
		}
	}
	free(own);
	free(count);
	free(known);
	free(m);
	return ret;
}

static void svcs_free(struct csvc *svc, unsigned n)
{
	for (unsigned i = 0; svc && i < n; i++) {
		if (svc[i].have)
			assign_fini(&svc[i].a);
		free(svc[i].slot);
		free(svc[i].healthy);
		free(svc[i].weight);
		free(svc[i].stale);
		free(svc[i].conns);
		free(svc[i].cpu_ns);
	}
	free(svc);
}

/* Builds the services of cfg, each adopting its part of state (see adopt) or else the
 * initial assignment. Returns the array or NULL (out of memory). */
static struct csvc *svcs_build(const struct peak_config *cfg, const char *state, size_t len)
{
	struct csvc *svc = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*svc));
	for (unsigned i = 0; svc && i < cfg->nsvc; i++) {
		struct csvc *v = &svc[i];
		unsigned n = cfg->svc[i].nep ? cfg->svc[i].nep : 1;
		v->s = &cfg->svc[i];
		dns_name_print(&v->s->name, v->name, sizeof(v->name));
		v->slot = calloc(n, sizeof(*v->slot));
		v->healthy = calloc(n, sizeof(*v->healthy));
		v->weight = calloc(n, sizeof(*v->weight));
		v->stale = calloc(n, sizeof(*v->stale));
		v->conns = calloc(n, sizeof(*v->conns));
		v->cpu_ns = calloc(n, sizeof(*v->cpu_ns));
		if (!v->slot || !v->healthy || !v->weight || !v->stale || !v->conns || !v->cpu_ns) {
			svcs_free(svc, cfg->nsvc);
			return NULL;
		}
		for (unsigned e = 0; e < v->s->nep; e++) {
			v->healthy[e] = true;
			v->weight[e] = v->s->ep[e].weight;
		}
		int r = v->s->space.nslices <= ASSIGN_MAX_SLICES ? adopt(v, state, len) : -ENOENT;
		if (r == -EBADMSG)
			log_msg(LOG_WARNING,
			        "controller: %s: the saved assignment does not match the "
			        "configuration; starting from the initial one",
			        v->name);
		if (!r) {
			for (unsigned e = 0; e < v->s->nep; e++)
				v->stale[e] = v->healthy[e] ? 0 : UINT64_MAX;
			continue;
		}
		v->have = config_service_assign(v->s, &v->a, v->slot) == 0;
	}
	return svc;
}

/* ---- peak dns notifications (a queue, one exchange at a time, each with a deadline) ---- */

static void dns_pop(struct dnsq *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	if (d->n) {
		free(d->line[d->head]);
		d->line[d->head] = NULL;
		d->head = (d->head + 1) % DNS_QUEUE_MAX;
		d->n--;
	}
}

/* Starts the exchange for the oldest queued line if none is running. */
static void dns_start(struct ctl *c)
{
	struct dnsq *d = &c->dns;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	while (d->fd < 0 && d->n) {
		size_t pl = strlen(c->o->dns_control);
		memcpy(sun.sun_path, c->o->dns_control, pl + 1);
		d->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		d->off = d->rlen = 0;
		d->sent = false;
		d->deadline_ms = mono_ms() + DNS_MS;
		if (d->fd >= 0 && (connect(d->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
		                   errno == EINPROGRESS || errno == EAGAIN))
			return;
		log_msg(LOG_WARNING, "controller: peak dns at %s: %s; '%.*s' not sent",
		        c->o->dns_control, strerror(errno), (int)strcspn(d->line[d->head], "\n"),
		        d->line[d->head]);
		dns_pop(d);
	}
}

/* Queues one line for peak dns (with --dns-control). A full queue drops the oldest. */
static void dns_tell(struct ctl *c, const struct ctl_msg *m)
{
	struct dnsq *d = &c->dns;
	char line[CTL_LINE_MAX + 1];
	if (!c->o->dns_control || ctl_write(m, line, sizeof(line)) < 0)
		return;
	if (d->n == DNS_QUEUE_MAX) {
		log_msg(LOG_WARNING, "controller: peak dns queue full: dropping '%.*s'",
		        (int)strcspn(d->line[d->head], "\n"), d->line[d->head]);
		dns_pop(d); /* the oldest, even if its exchange is running */
	}
	char *dup = strdup(line);
	if (!dup)
		return;
	d->line[(d->head + d->n) % DNS_QUEUE_MAX] = dup;
	d->n++;
	dns_start(c);
}

/* Moves the running exchange on (revents from poll, or 0 to check its deadline). */
static void dns_step(struct ctl *c, short revents, uint64_t now)
{
	struct dnsq *d = &c->dns;
	const char *line = d->n ? d->line[d->head] : "";
	if (d->fd < 0)
		return;
	if (!d->sent && revents & (POLLOUT | POLLERR | POLLHUP)) {
		size_t n = strlen(line);
		ssize_t k = send(d->fd, line + d->off, n - d->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k == -1 && errno != EAGAIN && errno != EINTR) {
			log_msg(LOG_WARNING, "controller: peak dns at %s: %s; '%.*s' not sent",
			        c->o->dns_control, strerror(errno), (int)strcspn(line, "\n"), line);
			goto done;
		}
		d->off += k > 0 ? (size_t)k : 0;
		if (d->off == n) {
			shutdown(d->fd, SHUT_WR);
			d->sent = true;
		}
	} else if (d->sent && revents & (POLLIN | POLLERR | POLLHUP)) {
		ssize_t k =
		    recv(d->fd, d->reply + d->rlen, sizeof(d->reply) - 1 - d->rlen, MSG_DONTWAIT);
		if (k == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (k > 0) {
			d->rlen += (size_t)k;
			char *nl; /* keep the last line only */
			while ((nl = memchr(d->reply, '\n', d->rlen)) &&
			       (size_t)(nl - d->reply) + 1 < d->rlen) {
				size_t used = (size_t)(nl - d->reply) + 1;
				memmove(d->reply, d->reply + used, d->rlen - used);
				d->rlen -= used;
			}
			if (d->rlen == sizeof(d->reply) - 1)
				d->rlen = 0;
			return;
		}
		d->reply[d->rlen] = '\0';
		if (strncmp(d->reply, "ok", 2))
			log_msg(LOG_WARNING, "controller: peak dns refused '%.*s': %.*s",
			        (int)strcspn(line, "\n"), line, (int)strcspn(d->reply, "\n"),
			        d->reply);
		goto done;
	}
	if (now < d->deadline_ms)
		return;
	log_msg(LOG_WARNING, "controller: peak dns at %s did not answer '%.*s' within %d ms",
	        c->o->dns_control, (int)strcspn(line, "\n"), line, DNS_MS);
done:
	dns_pop(d);
	dns_start(c);
}

/* ---- health and weights ---- */

static struct csvc *svc_find(struct ctl *c, const char *name)
{
	struct dns_name n;
	if (dns_name_parse(name, &n))
		return NULL;
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		if (dns_name_eq(&c->svc[i].s->name, &n))
			return &c->svc[i];
	return NULL;
}

/* Marks an endpoint up or down, moving only the slices it must, and tells the agents and
 * peak dns. Returns 0, -ENOENT (no such endpoint) or -EINVAL (it was the last one with
 * weight: it stays). The caller holds the lock. */
static int health(struct ctl *c, struct csvc *v, unsigned e, bool up)
{
	const char *ep = v->s->ep[e].id;
	uint32_t moved = 0;
	int ret = 0;
	v->stale[e] = 0;
	if (!v->have || v->healthy[e] == up)
		return 0;
	if (!up && v->slot[e] >= 0) {
		ret = assign_del(&v->a, (unsigned)v->slot[e], &moved);
		if (!ret)
			v->slot[e] = -1;
	}
	if (up && v->slot[e] < 0) {
		int s = assign_add(&v->a, v->weight[e], &moved);
		ret = s < 0 ? s : 0;
		if (s >= 0)
			v->slot[e] = s;
	}
	if (ret) {
		log_msg(LOG_WARNING, "controller: %s %s %s refused: %s", v->name, ep,
		        up ? "up" : "down",
		        ret == -EINVAL ? "it holds the last weight" : strerror(-ret));
		return ret;
	}
	v->healthy[e] = up;
	log_msg(LOG_INFO, "controller: %s %s %s: %u slices moved", v->name, ep, up ? "up" : "down",
	        moved);
	send_map(c, v, NULL);
	struct ctl_msg m = {.kind = CTL_HEALTH, .up = up};
	cp(m.svc, sizeof(m.svc), v->name);
	cp(m.id, sizeof(m.id), ep);
	dns_tell(c, &m);
	state_save(c);
	return 0;
}

/* Sets an endpoint's live weight: rebalances if it is up, tells agents and peak dns.
 * Returns 0 or -EINVAL (every live weight would be 0). The caller holds the lock. */
static int weight(struct ctl *c, struct csvc *v, unsigned e, uint32_t w)
{
	uint32_t moved = 0;
	if (!v->have)
		return -EINVAL;
	if (v->slot[e] >= 0) {
		int ret = assign_set_weight(&v->a, (unsigned)v->slot[e], w, &moved);
		if (ret)
			return ret;
	}
	v->weight[e] = w;
	log_msg(LOG_INFO, "controller: %s %s weight %u: %u slices moved", v->name, v->s->ep[e].id,
	        w, moved);
	if (moved)
		send_map(c, v, NULL);
	struct ctl_msg m = {.kind = CTL_WEIGHT, .weight = w};
	cp(m.svc, sizeof(m.svc), v->name);
	cp(m.id, sizeof(m.id), v->s->ep[e].id);
	dns_tell(c, &m);
	state_save(c);
	return 0;
}

/* After an agent's hello: its endpoints that are down only because the saved state said
 * so come up after STALE_UP_MS unless it reports them down (it reports what is down right
 * after its hello). */
static void stale_arm(struct ctl *c, const char *node, uint64_t now)
{
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		for (unsigned e = 0; e < c->svc[i].s->nep; e++)
			if (c->svc[i].stale[e] == UINT64_MAX &&
			    !strcmp(c->svc[i].s->ep[e].node, node))
				c->svc[i].stale[e] = now + STALE_UP_MS;
}

static void stale_expire(struct ctl *c, uint64_t now)
{
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		for (unsigned e = 0; e < c->svc[i].s->nep; e++)
			if (c->svc[i].stale[e] && c->svc[i].stale[e] != UINT64_MAX &&
			    now >= c->svc[i].stale[e]) {
				pthread_mutex_lock(&c->lock);
				health(c, &c->svc[i], e, true);
				pthread_mutex_unlock(&c->lock);
			}
}

/* At start: tells peak dns what the adopted state holds beyond the configuration (weights
 * set through the controller, endpoints down), so both start in step. */
static void dns_sync(struct ctl *c)
{
	struct ctl_msg m = {0};
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		const struct csvc *v = &c->svc[i];
		cp(m.svc, sizeof(m.svc), v->name);
		for (unsigned e = 0; e < v->s->nep; e++) {
			cp(m.id, sizeof(m.id), v->s->ep[e].id);
			if (v->weight[e] != v->s->ep[e].weight) {
				m.kind = CTL_WEIGHT;
				m.weight = v->weight[e];
				dns_tell(c, &m);
			}
			if (!v->healthy[e]) {
				m.kind = CTL_HEALTH;
				m.up = false;
				dns_tell(c, &m);
			}
		}
	}
}

/* ---- configuration ---- */

/* Loads and checks the configuration: every service must have an assignment. Returns 0,
 * or -EINVAL with "FILE:LINE: reason" in err. */
static int config_check(const char *path, struct peak_config **out, char *err, size_t errlen)
{
	int ret = config_load(path, out, err, errlen);
	if (ret)
		return ret;
	for (unsigned i = 0; i < (*out)->nsvc; i++) {
		const struct cfg_service *s = &(*out)->svc[i];
		struct assign a;
		int *slot = calloc(s->nep ? s->nep : 1, sizeof(*slot));
		int r = slot ? config_service_assign(s, &a, slot) : -ENOMEM;
		free(slot);
		if (!r) {
			assign_fini(&a);
			continue;
		}
		char name[DNS_NAME_STRLEN];
		dns_name_print(&s->name, name, sizeof(name));
		snprintf(err, errlen, "%s:%u: service %.255s: %s", path, s->line, name,
		         r == -E2BIG    ? "more slices than an assignment holds (2^24)"
		         : r == -ENOENT ? "no endpoints"
		         : r == -EINVAL ? "every endpoint's weight is 0"
		                        : strerror(-r));
		config_free(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

/* SIGHUP and the control socket's "reload": a configuration that does not load is
 * refused and the running one kept. Services keep their live assignment, weights and
 * health where they still match (adopt); a weight the new file changes applies. Every
 * agent gets the new maps. Returns 0 or -errno with the reason in err. */
static int reload(struct ctl *c, char *err, size_t errlen)
{
	struct peak_config *cfg = NULL;
	struct text t = {0};
	struct csvc *svc = NULL;
	int ret = config_check(c->o->config, &cfg, err, errlen);
	if (ret)
		goto out;
	if ((ret = state_text(c, &t)) || (text_add(&t, "", 1), ret = t.err))
		goto out;
	if (!(svc = svcs_build(cfg, t.p, t.len - 1))) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < cfg->nsvc; i++) { /* weights the file changes */
		struct csvc *v = &svc[i];
		const struct cfg_service *old = NULL;
		for (unsigned k = 0; k < c->cfg->nsvc && !old; k++)
			if (dns_name_eq(&c->cfg->svc[k].name, &v->s->name))
				old = &c->cfg->svc[k];
		for (unsigned e = 0; old && v->have && e < v->s->nep; e++) {
			int o = ep_index(old, v->s->ep[e].id);
			uint32_t w = v->s->ep[e].weight;
			if (o < 0 || old->ep[o].weight == w || v->weight[e] == w)
				continue;
			if (v->slot[e] < 0 ||
			    !assign_set_weight(&v->a, (unsigned)v->slot[e], w, NULL))
				v->weight[e] = w;
		}
	}
	pthread_mutex_lock(&c->lock);
	struct peak_config *oldcfg = c->cfg;
	struct csvc *oldsvc = c->svc;
	c->cfg = cfg;
	c->svc = svc;
	pthread_mutex_unlock(&c->lock);
	svcs_free(oldsvc, oldcfg->nsvc);
	config_free(oldcfg);
	cfg = NULL;
	svc = NULL;
	for (unsigned i = 0; i < c->cfg->nsvc; i++)
		send_map(c, &c->svc[i], NULL);
	state_save(c);
	ret = 0;
out:
	if (svc)
		svcs_free(svc, cfg->nsvc);
	config_free(cfg);
	free(t.p);
	return ret;
}

/* ---- agents ---- */

static void agent_drop(struct ctl *c, struct peer *a, const char *why)
{
	if (log_ok(c))
		log_msg(LOG_WARNING, "controller: agent %s: %s: disconnected",
		        a->node[0] ? a->node : "(no hello)", why);
	peer_close(a);
}

/* One line from an agent. Before a valid hello nothing else is accepted. Returns 0, or -1
 * if the agent was dropped. */
static int agent_line(struct ctl *c, struct peer *a, const char *line, size_t len)
{
	struct ctl_msg m;
	if (ctl_parse(line, len, &m)) {
		if (!a->hello) {
			agent_drop(c, a, "not a control line before hello");
			return -1;
		}
		if (log_ok(c))
			log_msg(LOG_WARNING, "controller: agent %s: malformed line '%.*s'", a->node,
			        (int)(len > 80 ? 80 : len), line);
		return 0;
	}
	if (!a->hello) {
		if (m.kind != CTL_HELLO) {
			agent_drop(c, a, "no hello before other lines");
			return -1;
		}
		if (c->auth && (!m.has_tag || !ctlauth_check(&c->key, a->nonce, m.id, m.tag))) {
			cp(a->node, sizeof(a->node), m.id);
			agent_drop(c, a,
			           m.has_tag ? "wrong key (hello tag)" : "hello without a tag");
			return -1;
		}
		a->hello = true;
		cp(a->node, sizeof(a->node), m.id);
		log_msg(LOG_INFO, "controller: agent of node %s connected%s", a->node,
		        c->auth ? " (authenticated)" : "");
		stale_arm(c, a->node, mono_ms());
		for (unsigned i = 0; i < c->cfg->nsvc && a->fd >= 0; i++)
			send_map(c, &c->svc[i], a);
		return a->fd >= 0 ? 0 : -1;
	}
	if (m.kind != CTL_HEALTH && m.kind != CTL_LOAD) {
		if (log_ok(c))
			log_msg(LOG_WARNING, "controller: agent %s: unexpected '%s' line", a->node,
			        ctl_kind_name(m.kind));
		return 0;
	}
	struct csvc *v = svc_find(c, m.svc);
	int e = v ? ep_index(v->s, m.id) : -1;
	if (e < 0 || (v->s->ep[e].node[0] && strcmp(v->s->ep[e].node, a->node))) {
		if (log_ok(c))
			log_msg(LOG_WARNING,
			        "controller: agent %s: %s %s %s: not an endpoint of "
			        "its node",
			        a->node, ctl_kind_name(m.kind), m.svc, m.id);
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	if (m.kind == CTL_LOAD) {
		v->conns[e] = m.conns;
		v->cpu_ns[e] = m.cpu_ns;
	} else {
		health(c, v, (unsigned)e, m.up);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void agent_accept(struct ctl *c, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	int i = 0;
	if (fd == -1)
		return;
	while (i < MAX_AGENTS && c->agents[i].fd >= 0)
		i++;
	if (i == MAX_AGENTS) {
		if (log_ok(c))
			log_msg(LOG_WARNING, "controller: %d agents connected: refusing another",
			        MAX_AGENTS);
		close(fd);
		return;
	}
	struct peer *a = &c->agents[i];
	*a = (struct peer){.fd = fd, .born_ms = mono_ms()};
	struct ctl_msg m = {.kind = CTL_CHALLENGE};
	char line[CTL_LINE_MAX + 1];
	int n = -EINVAL;
	if (!ctlauth_nonce(a->nonce)) {
		memcpy(m.nonce, a->nonce, sizeof(m.nonce));
		n = ctl_write(&m, line, sizeof(line));
	}
	if (n < 0)
		peer_close(a);
	else
		peer_send(c, a, line, (size_t)n);
}

/* Reads what an agent or client sent and runs its complete lines through fn. */
static void peer_read(struct ctl *c, struct peer *p,
                      int (*fn)(struct ctl *, struct peer *, const char *, size_t))
{
	ssize_t k = recv(p->fd, p->in + p->inlen, sizeof(p->in) - p->inlen, MSG_DONTWAIT);
	if (k == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k <= 0) {
		if (fn != agent_line && p->inlen && !p->closing) { /* a last line without '\n' */
			fn(c, p, p->in, p->inlen);
			shutdown(p->fd, SHUT_RD);
			return;
		}
		if (fn == agent_line)
			log_msg(LOG_INFO, "controller: agent of node %s left",
			        p->node[0] ? p->node : "?");
		peer_close(p);
		return;
	}
	p->inlen += (size_t)k;
	size_t at = 0, ll;
	long n;
	while (p->fd >= 0 && (n = ctl_line_split((uint8_t *)p->in + at, p->inlen - at, &ll)) > 0) {
		if (fn(c, p, p->in + at, ll))
			return; /* p was closed */
		at += (size_t)n;
		if (p->closing) { /* a client gets one command */
			p->inlen = 0;
			return;
		}
	}
	if (p->fd < 0)
		return;
	if (n < 0) {
		if (fn == agent_line)
			agent_drop(c, p, "line too long");
		else
			peer_close(p);
		return;
	}
	memmove(p->in, p->in + at, p->inlen - at);
	p->inlen -= at;
}

/* ---- the operator's control socket ---- */

static void reply_err(struct ctl *c, struct peer *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Replies "error: TEXT" (the text cut to what a line holds). */
static void reply_err(struct ctl *c, struct peer *p, const char *fmt, ...)
{
	struct ctl_msg m = {.kind = CTL_ERROR};
	char line[CTL_LINE_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	for (char *q = m.text; *q; q++)
		if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
			*q = '?';
	int n = ctl_write(&m, line, sizeof(line));
	if (n > 0)
		peer_send(c, p, line, (size_t)n);
}

static int client_line(struct ctl *c, struct peer *p, const char *line, size_t len)
{
	struct ctl_msg m;
	char err[CFG_ERRLEN] = "";
	struct text t = {0};
	p->closing = true;
	if (ctl_parse(line, len, &m)) {
		reply_err(c, p, "not a command: use status, health, weight or reload");
		return p->fd >= 0 ? 0 : -1;
	}
	if (m.kind == CTL_STATUS) {
		pthread_mutex_lock(&c->lock);
		for (unsigned i = 0; i < c->cfg->nsvc; i++) {
			const struct csvc *v = &c->svc[i];
			for (unsigned e = 0; e < v->s->nep; e++) {
				char row[DNS_NAME_STRLEN + CFG_ID_MAX + 96];
				int n = snprintf(
				    row, sizeof(row), "%s %s %s weight %u slices %u\n", v->name,
				    v->s->ep[e].id, v->healthy[e] ? "up" : "down", v->weight[e],
				    v->have && v->slot[e] >= 0 ? v->a.ep[v->slot[e]].count : 0);
				text_add(&t, row, (size_t)n);
			}
		}
		pthread_mutex_unlock(&c->lock);
		text_add(&t, "ok\n", 3);
		if (!t.err)
			peer_send(c, p, t.p, t.len);
		free(t.p);
		return p->fd >= 0 ? 0 : -1;
	}
	if (m.kind == CTL_RELOAD) {
		if (reload(c, err, sizeof(err))) {
			log_msg(LOG_ERR,
			        "controller: reload refused, keeping the running "
			        "configuration: %s",
			        err);
			reply_err(c, p, "reload refused: %s", err);
		} else {
			log_msg(LOG_INFO, "controller: configuration reloaded from %s",
			        c->o->config);
			peer_send(c, p, "ok\n", 3);
		}
		return p->fd >= 0 ? 0 : -1;
	}
	if (m.kind != CTL_WEIGHT && m.kind != CTL_HEALTH) {
		reply_err(c, p, "'%s' is not a command here", ctl_kind_name(m.kind));
		return p->fd >= 0 ? 0 : -1;
	}
	struct csvc *v = svc_find(c, m.svc);
	int e = v ? ep_index(v->s, m.id) : -1, r;
	if (e < 0) {
		reply_err(c, p, "no endpoint %s of service %s", m.id, m.svc);
		return p->fd >= 0 ? 0 : -1;
	}
	pthread_mutex_lock(&c->lock);
	r = m.kind == CTL_WEIGHT ? weight(c, v, (unsigned)e, m.weight)
	                         : health(c, v, (unsigned)e, m.up);
	pthread_mutex_unlock(&c->lock);
	if (r)
		reply_err(c, p, "%s: %s", m.id,
		          r == -EINVAL ? "refused: the service would have no weight left"
		                       : strerror(-r));
	else
		peer_send(c, p, "ok\n", 3);
	return p->fd >= 0 ? 0 : -1;
}

/* Binds the control socket at path, mode 0600. An existing path is replaced only if it is
 * a socket nobody answers on (a stale one); anything else is refused. Returns the
 * listening socket or -errno (the reason logged). */
static int control_listen(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd = -1, ret;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_msg(LOG_ERR, "controller: --control %s: path too long", path);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_msg(LOG_ERR, "controller: --control %s exists and is not a socket",
			        path);
			return -EEXIST;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && !connect(probe, (struct sockaddr *)&sun, sizeof(sun));
		if (probe >= 0)
			close(probe);
		if (live) {
			log_msg(LOG_ERR, "controller: --control %s: another process serves it",
			        path);
			return -EADDRINUSE;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		goto fail;
	mode_t um = umask(0077);
	ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(um);
	if (ret == -1 || chmod(path, 0600) == -1 || listen(fd, 16) == -1)
		goto fail;
	return fd;
fail:
	ret = -errno;
	log_msg(LOG_ERR, "controller: --control %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return ret;
}

static void client_accept(struct ctl *c, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	int i = 0;
	if (fd == -1)
		return;
	while (i < MAX_CLIENTS && c->clients[i].fd >= 0)
		i++;
	if (i == MAX_CLIENTS) {
		close(fd);
		return;
	}
	c->clients[i] = (struct peer){.fd = fd, .born_ms = mono_ms()};
}

/* ---- metrics ---- */

/* A label value in the Prometheus text format: \, " and newline escaped. */
static const char *esc(const char *s, char *out, size_t cap)
{
	size_t n = 0;
	for (; *s && n + 3 < cap; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			out[n++] = '\\';
			out[n++] = *s == '\n' ? 'n' : *s;
		} else {
			out[n++] = *s;
		}
	}
	out[n] = '\0';
	return out;
}

static void render(struct mbuf *b, void *arg)
{
	static const struct {
		const char *name, *help;
	} per_ep[] = {
	    {"peak_controller_endpoint_slices", "Slices assigned to the endpoint."},
	    {"peak_controller_endpoint_healthy", "1 if the endpoint is up."},
	    {"peak_controller_endpoint_weight", "The endpoint's live weight."},
	    {"peak_controller_endpoint_connections", "Connections the agent saw."},
	    {"peak_controller_endpoint_cpu_seconds",
	     "CPU time of the pod as its agent last reported it (a gauge: a restarted pod "
	     "starts again from 0)."},
	};
	struct ctl *c = arg;
	unsigned agents = 0;
	char sv[2 * DNS_NAME_STRLEN], ep[2 * CFG_ID_MAX];
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < MAX_AGENTS; i++)
		agents += c->agents[i].fd >= 0 && c->agents[i].hello;
	mbuf_printf(b,
	            "# HELP peak_controller_agents Agents connected.\n"
	            "# TYPE peak_controller_agents gauge\npeak_controller_agents %u\n",
	            agents);
	for (unsigned k = 0; k < sizeof(per_ep) / sizeof(per_ep[0]); k++) {
		mbuf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", per_ep[k].name, per_ep[k].help,
		            per_ep[k].name);
		for (unsigned i = 0; i < c->cfg->nsvc; i++) {
			const struct csvc *v = &c->svc[i];
			esc(v->name, sv, sizeof(sv));
			for (unsigned e = 0; e < v->s->nep; e++) {
				esc(v->s->ep[e].id, ep, sizeof(ep));
				mbuf_printf(b, "%s{service=\"%s\",endpoint=\"%s\"} ",
				            per_ep[k].name, sv, ep);
				if (k == 0)
					mbuf_printf(b, "%u\n",
					            v->have && v->slot[e] >= 0
					                ? v->a.ep[v->slot[e]].count
					                : 0);
				else if (k == 1)
					mbuf_printf(b, "%d\n", v->healthy[e]);
				else if (k == 2)
					mbuf_printf(b, "%u\n", v->weight[e]);
				else if (k == 3)
					mbuf_printf(b, "%llu\n", (unsigned long long)v->conns[e]);
				else
					mbuf_printf(b, "%.3f\n", (double)v->cpu_ns[e] / 1e9);
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* ---- the run loop ---- */

int controller_check(const struct controller_opts *o)
{
	struct peak_config *cfg = NULL;
	char err[CFG_ERRLEN];
	struct ctlauth_key *key = NULL;
	int ret = 0;
	if (config_check(o->config, &cfg, err, sizeof(err))) {
		fprintf(stderr, "peak controller: %s\n", err);
		return 2;
	}
	if (o->key_file && ((key = malloc(sizeof(*key))) == NULL ||
	                    ctlauth_key_load(o->key_file, key, err, sizeof(err)))) {
		fprintf(stderr, "peak controller: %s\n", key ? err : "out of memory");
		ret = 2;
	}
	if (key) {
		ctlauth_key_wipe(key);
		free(key);
	}
	config_free(cfg);
	return ret;
}

int controller_run(const struct controller_opts *o)
{
	struct ctl *c = calloc(1, sizeof(*c));
	struct metrics_srv *ms = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	char err[CFG_ERRLEN], *state = NULL;
	size_t slen = 0;
	int one = 1, lfd = -1, sfd = -1, cfd = -1, ret = 1, r;
	if (!c)
		return 1;
	c->o = o;
	pthread_mutex_init(&c->lock, NULL);
	c->dns.fd = -1;
	for (int i = 0; i < MAX_AGENTS; i++)
		c->agents[i].fd = -1;
	for (int i = 0; i < MAX_CLIENTS; i++)
		c->clients[i].fd = -1;
	/* Signals are blocked before any thread starts, so only the signalfd sees them. */
	if ((sfd = signals_fd(1)) < 0) {
		log_msg(LOG_ERR, "controller: signals: %s", strerror(-sfd));
		goto out;
	}
	ret = 2; /* bad input from here until the sockets */
	if (sockaddr_parse(o->listen, &ss, &sl)) {
		log_msg(LOG_ERR, "controller: --listen: '%s' is not ADDR:PORT", o->listen);
		goto out;
	}
	if (o->dns_control &&
	    strlen(o->dns_control) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		log_msg(LOG_ERR, "controller: --dns-control: path too long");
		goto out;
	}
	if (o->key_file) {
		if (ctlauth_key_load(o->key_file, &c->key, err, sizeof(err))) {
			log_msg(LOG_ERR, "controller: %s", err);
			goto out;
		}
		c->auth = true;
	} else {
		log_msg(LOG_WARNING,
		        "controller: no --key-file: any peer that reaches %s can "
		        "report health (agents are not authenticated)",
		        o->listen);
	}
	if (config_check(o->config, &c->cfg, err, sizeof(err))) {
		log_msg(LOG_ERR, "controller: %s", err);
		goto out;
	}
	if (o->state && strcmp(o->state, "none")) {
		c->state = o->state;
	} else if (!o->state) {
		snprintf(c->state_buf, sizeof(c->state_buf), "%s.state", o->config);
		c->state = c->state_buf;
	}
	if (c->state && (r = file_read(c->state, &state, &slen)) && r != -ENOENT)
		log_msg(LOG_WARNING, "controller: state file %s: %s", c->state, strerror(-r));
	ret = 1;
	if (!(c->svc = svcs_build(c->cfg, state, slen)))
		goto out;
	for (unsigned i = 0; state && i < c->cfg->nsvc; i++)
		if (c->svc[i].have)
			log_msg(LOG_INFO, "controller: %s: assignment from %s", c->svc[i].name,
			        c->state);
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd == -1 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(lfd, (struct sockaddr *)&ss, sl) == -1 || listen(lfd, 64) == -1) {
		log_msg(LOG_ERR, "controller: %s: %s", o->listen, strerror(errno));
		goto out;
	}
	if (o->control && (cfd = control_listen(o->control)) < 0)
		goto out;
	if (o->metrics && !(ms = metrics_start(o->metrics, render, c)))
		goto out;
	state_save(c);
	dns_sync(c);
	log_msg(LOG_INFO, "controller: %u services from %s, agents on %s%s", c->cfg->nsvc,
	        o->config, o->listen, c->auth ? " (key file)" : "");
	for (;;) {
		struct pollfd pf[4 + MAX_AGENTS + MAX_CLIENTS];
		uint64_t now = mono_ms();
		pf[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pf[1] = (struct pollfd){.fd = lfd, .events = POLLIN};
		pf[2] = (struct pollfd){.fd = cfd, .events = POLLIN};
		pf[3] = (struct pollfd){.fd = c->dns.fd, .events = c->dns.sent ? POLLIN : POLLOUT};
		for (int i = 0; i < MAX_AGENTS; i++) {
			struct peer *p = &c->agents[i];
			pf[4 + i] = (struct pollfd){
			    .fd = p->fd, .events = POLLIN | (p->q.len > p->q.off ? POLLOUT : 0)};
		}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct peer *p = &c->clients[i];
			pf[4 + MAX_AGENTS + i] =
			    (struct pollfd){.fd = p->fd,
			                    .events = (p->closing ? 0 : POLLIN) |
			                              (p->q.len > p->q.off ? POLLOUT : 0)};
		}
		if (poll(pf, 4 + MAX_AGENTS + MAX_CLIENTS, POLL_TICK_MS) == -1 && errno != EINTR) {
			log_msg(LOG_ERR, "controller: poll: %s", strerror(errno));
			ret = 1;
			goto out;
		}
		now = mono_ms();
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo != SIGHUP)
				break;
			if (reload(c, err, sizeof(err)))
				log_msg(LOG_ERR,
				        "controller: reload refused, keeping the running "
				        "configuration: %s",
				        err);
			else
				log_msg(LOG_INFO, "controller: configuration reloaded from %s",
				        o->config);
		}
		if (pf[1].revents)
			agent_accept(c, lfd);
		if (cfd >= 0 && pf[2].revents)
			client_accept(c, cfd);
		dns_step(c, pf[3].revents, now);
		for (int i = 0; i < MAX_AGENTS; i++) {
			struct peer *p = &c->agents[i];
			short rev = pf[4 + i].revents;
			if (p->fd < 0 || pf[4 + i].fd != p->fd)
				continue; /* closed or replaced during this round */
			if (rev & POLLOUT && peer_flush(p, now)) {
				agent_drop(c, p, "send failed");
				continue;
			}
			if (rev & (POLLIN | POLLHUP | POLLERR))
				peer_read(c, p, agent_line);
			if (p->fd < 0)
				continue;
			if (!p->hello && now - p->born_ms > HELLO_MS)
				agent_drop(c, p, "no hello in time");
			else if (p->q.len > p->q.off && now - p->q.since_ms > DRAIN_MS)
				agent_drop(c, p, "not reading its maps");
		}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct peer *p = &c->clients[i];
			short rev = pf[4 + MAX_AGENTS + i].revents;
			if (p->fd < 0 || pf[4 + MAX_AGENTS + i].fd != p->fd)
				continue;
			if (rev & POLLOUT && peer_flush(p, now)) {
				peer_close(p);
				continue;
			}
			if (!p->closing && rev & (POLLIN | POLLHUP | POLLERR))
				peer_read(c, p, client_line);
			if (p->fd < 0)
				continue;
			if ((p->closing && p->q.len == p->q.off) || now - p->born_ms > CLIENT_MS)
				peer_close(p);
		}
		stale_expire(c, now);
	}
	log_msg(LOG_INFO, "controller: stopping");
	ret = 0;
out:
	metrics_stop(ms);
	for (int i = 0; i < MAX_AGENTS; i++)
		peer_close(&c->agents[i]);
	for (int i = 0; i < MAX_CLIENTS; i++)
		peer_close(&c->clients[i]);
	while (c->dns.n || c->dns.fd >= 0)
		dns_pop(&c->dns);
	svcs_free(c->svc, c->cfg ? c->cfg->nsvc : 0);
	config_free(c->cfg);
	ctlauth_key_wipe(&c->key);
	free(state);
	if (lfd >= 0)
		close(lfd);
	if (cfd >= 0) {
		close(cfd);
		unlink(o->control);
	}
	if (sfd >= 0)
		close(sfd);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return ret;
}
