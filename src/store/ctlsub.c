/* The pod's link to the controller (ctlsub.h). */
#include "ctlsub.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peak/ctlproto.h"
#include "peak/dns.h"
#include "../sys/log.h"
#include "../sys/net.h"

enum { IN_CAP = 4 * CTL_LINE_MAX };

struct link {
	int fd;
	char at[STORE_CTL_ADDR_MAX]; /* the controller's address in use */
	uint8_t in[IN_CAP];
	size_t inlen;
	uint8_t anonce[CTL_NONCE_LEN], cnonce[CTL_NONCE_LEN];
	bool hello, welcome_due, in_map, bad;
	bool up;      /* the handshake is done (hello sent, and welcome checked with a key) */
	int32_t *own; /* the map being received */
};

static int send_msg(int fd, const struct ctl_msg *m)
{
	char line[CTL_LINE_MAX + 1];
	int n = ctl_write(m, line, sizeof(line));
	if (n < 0)
		return n;
	return send(fd, line, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -EIO;
}

/* Whether name (a service name as the controller wrote it) is the pod's service. */
static bool svc_is(const struct store_ctl *c, const char *name)
{
	struct dns_name n;
	return !dns_name_parse(name, &n) && dns_name_eq(&n, &c->svc->name);
}

/* The link's handshake is done: counted and logged once per link, so a controller that
 * refuses each link (a wrong key) logs only the rate-limited refusal. */
static void link_up(struct store_ctl *c, struct link *l)
{
	l->up = true;
	atomic_fetch_add(&c->links, 1);
	log_msg(LOG_INFO, "store: connected to controller %s as node %s", l->at, c->node);
}

/* Handles one line. Returns 0, or -EPROTO when the link must go. */
static int on_line(struct store_ctl *c, struct link *l, const struct ctl_msg *m)
{
	if (!l->hello) {
		struct ctl_msg h = {.kind = CTL_HELLO};
		if (m->kind != CTL_CHALLENGE)
			return -EPROTO;
		snprintf(h.id, sizeof(h.id), "%s", c->node);
		memcpy(l->cnonce, m->nonce, sizeof(l->cnonce));
		if (c->key) {
			if (ctlauth_nonce(l->anonce))
				return -EPROTO;
			ctlauth_tag(c->key, l->cnonce, c->node, h.tag);
			memcpy(h.nonce, l->anonce, sizeof(h.nonce));
			h.has_tag = h.has_nonce = true;
			l->welcome_due = true;
		}
		l->hello = true;
		if (send_msg(l->fd, &h))
			return -EPROTO;
		if (!c->key)
			link_up(c, l);
		return 0;
	}
	if (l->welcome_due) {
		/* a controller that cannot prove the key gets no say over the slices */
		if (m->kind != CTL_WELCOME ||
		    !ctlauth_proof_check(c->key, l->anonce, l->cnonce, c->node, m->tag)) {
			log_rl(&c->rl, LOG_WARNING,
			       "store: controller %s: no valid welcome (the key?)", l->at);
			return -EPROTO;
		}
		l->welcome_due = false;
		link_up(c, l);
		return 0;
	}
	switch (m->kind) {
	case CTL_MAP:
		l->in_map = svc_is(c, m->svc);
		l->bad = false;
		for (uint32_t g = 0; l->in_map && g < c->nslices; g++)
			l->own[g] = -1;
		return 0;
	case CTL_EP: {
		if (!l->in_map)
			return 0;
		int e = -1;
		for (unsigned i = 0; i < c->svc->nep; i++)
			if (!strcmp(c->svc->ep[i].id, m->id))
				e = (int)i;
		if (e < 0) {
			l->bad = true; /* an endpoint our configuration does not know */
			return 0;
		}
		for (unsigned b = 0; b < m->nblocks; b++) {
			uint64_t start = m->blocks[b].start, n = 1ull << m->blocks[b].log2;
			if (start >= c->nslices || n > c->nslices - start) {
				l->bad = true;
				return 0;
			}
			for (uint64_t g = start; g < start + n; g++)
				l->own[g] = e;
		}
		return 0;
	}
	case CTL_END:
		if (!l->in_map)
			return 0;
		l->in_map = false;
		if (l->bad) {
			log_msg(LOG_WARNING,
			        "store: controller %s: a map that does not fit the "
			        "configuration: ignored",
			        l->at);
			return 0;
		}
		int32_t *copy = malloc(c->nslices * sizeof(*copy));
		if (!copy)
			return 0;
		memcpy(copy, l->own, c->nslices * sizeof(*copy));
		pthread_mutex_lock(&c->mu);
		free(c->map);
		c->map = copy;
		pthread_mutex_unlock(&c->mu);
		atomic_fetch_add(&c->maps, 1);
		uint64_t one = 1;
		(void)!write(c->efd, &one, sizeof(one));
		return 0;
	default:
		return 0; /* handovers, and what a later controller may add */
	}
}

/* Runs one connection until it fails or the pod stops. */
static void link_run(struct store_ctl *c, struct link *l)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct timeval tv = {1, 0};
	if (sockaddr_parse(l->at, &ss, &sl))
		return;
	l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd == -1 || setsockopt(l->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(l->fd, (struct sockaddr *)&ss, sl) == -1)
		return;
	while (!atomic_load(&c->stop)) {
		struct pollfd p = {.fd = l->fd, .events = POLLIN};
		int k = poll(&p, 1, STORE_CTL_RETRY_MS);
		if (k <= 0) {
			if (k == -1 && errno != EINTR)
				break;
			continue;
		}
		if (l->inlen == sizeof(l->in))
			break;
		ssize_t n = recv(l->fd, l->in + l->inlen, sizeof(l->in) - l->inlen, 0);
		if (n <= 0)
			break;
		l->inlen += (size_t)n;
		for (;;) {
			size_t len;
			long used = ctl_line_split(l->in, l->inlen, &len);
			struct ctl_msg m;
			if (used < 0)
				goto out;
			if (!used)
				break;
			/* a line we cannot parse is skipped, as an agent does */
			if (!ctl_parse((const char *)l->in, len, &m) && on_line(c, l, &m))
				goto out;
			memmove(l->in, l->in + used, l->inlen - (size_t)used);
			l->inlen -= (size_t)used;
		}
	}
out:
	if (l->up)
		log_msg(LOG_INFO, "store: controller %s: link lost; the slices stay as they are",
		        l->at);
}

static void *ctl_main(void *arg)
{
	struct store_ctl *c = arg;
	struct link *l = calloc(1, sizeof(*l));
	if (l)
		l->own = malloc(c->nslices * sizeof(*l->own));
	/* cur: the address in use; failed: addresses failed since a link was last up */
	unsigned cur = 0, failed = 0, n = 0;
	char scratch[STORE_CTL_ADDR_MAX];
	while (addr_list_at(c->addr, n, scratch, sizeof(scratch)) != -ENOENT)
		n++;
	while (l && l->own && !atomic_load(&c->stop)) {
		int32_t *own = l->own;
		*l = (struct link){.fd = -1, .own = own};
		if (addr_list_at(c->addr, cur, l->at, sizeof(l->at)))
			break; /* (checked on the command line) */
		link_run(c, l);
		if (l->fd != -1)
			close(l->fd);
		cur = (cur + 1) % n; /* a lost link or a failure: the next controller */
		failed = l->up ? 1 : failed + 1;
		if (failed < n)
			continue;
		failed = 0; /* every address failed in this round: wait before the next */
		for (unsigned t = 0; t < STORE_CTL_RETRY_MS / 50 && !atomic_load(&c->stop); t++)
			usleep(50 * 1000);
	}
	if (l)
		free(l->own);
	free(l);
	return NULL;
}

int store_ctl_start(struct store_ctl *c)
{
	pthread_mutex_init(&c->mu, NULL);
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd == -1)
		return -errno;
	int err = pthread_create(&c->thread, NULL, ctl_main, c);
	if (err) {
		close(c->efd);
		c->efd = -1;
		return -err;
	}
	c->started = true;
	return 0;
}

int32_t *store_ctl_take(struct store_ctl *c)
{
	uint64_t v;
	(void)!read(c->efd, &v, sizeof(v));
	pthread_mutex_lock(&c->mu);
	int32_t *m = c->map;
	c->map = NULL;
	pthread_mutex_unlock(&c->mu);
	return m;
}

void store_ctl_stop(struct store_ctl *c)
{
	if (!c->started)
		return;
	atomic_store(&c->stop, true);
	pthread_join(c->thread, NULL);
	c->started = false;
	free(c->map);
	c->map = NULL;
	close(c->efd);
	c->efd = -1;
	pthread_mutex_destroy(&c->mu);
}
