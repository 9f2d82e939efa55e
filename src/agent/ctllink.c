/* peak agent: the link to the controller. ctl_line handles one line of it. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/net.h"
#include "mapline.h"

/* Frees a map's blocks (m->nep lists) and empties it. */
static void map_free(struct svc_map *m)
{
	for (unsigned e = 0; m->blocks && e < m->nep; e++)
		free(m->blocks[e]);
	free(m->blocks);
	free(m->nblocks);
	memset(m, 0, sizeof(*m));
}

/* Frees the n maps of v (one per service of the configuration they came with). */
void maps_free(struct svc_map *v, unsigned n)
{
	for (unsigned i = 0; v && i < n; i++)
		map_free(&v[i]);
	free(v);
}

/* Forgets the map being received, if any: on a new map line, a new connection, a reload
 * (cur_svc indexes the configuration) and at exit. */
void ctl_map_reset(struct agent *a)
{
	map_free(&a->pending);
	a->cur_svc = -1;
}

/* Closes the controller link (if open), forgets what it was receiving, and says so in the
 * metrics; the next attempt is at retry_ms. */
void ctl_drop(struct agent *a, uint64_t retry_ms)
{
	if (a->ctl >= 0)
		close(a->ctl);
	a->ctl = -1;
	a->inlen = 0;
	a->retry_ms = retry_ms;
	ctl_map_reset(a);
	pthread_mutex_lock(&a->st.lock);
	a->st.controller_up = false;
	pthread_mutex_unlock(&a->st.lock);
}

void ctl_send(struct agent *a, const char *line)
{
	size_t n = strlen(line);
	if (a->ctl >= 0 && send(a->ctl, line, n, MSG_NOSIGNAL) != (ssize_t)n)
		ctl_drop(a, mono_ms() + a->backoff_ms);
}

void ctl_health(struct agent *a, const struct hc *h)
{
	char name[DNS_NAME_STRLEN], line[DNS_NAME_STRLEN + CFG_ID_MAX + 32];
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	dns_name_print(&s->name, name, sizeof(name));
	snprintf(line, sizeof(line), "health %s %s %s\n", name, s->ep[h->ep].id,
	         h->up ? "up" : "down");
	ctl_send(a, line);
}

/* Connects to the controller (blocking, short), says hello and the health it knows. */
void ctl_connect(struct agent *a)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (sockaddr_parse(a->o->controller, &ss, &sl))
		return;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {0, 200000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (fd == -1 || connect(fd, (struct sockaddr *)&ss, sl) == -1) {
		if (fd != -1)
			close(fd);
		/* Keep the last routes (fail static) and retry with backoff, up to 5 s. */
		a->retry_ms = mono_ms() + a->backoff_ms;
		a->backoff_ms = a->backoff_ms * 2 > 5000 ? 5000 : a->backoff_ms * 2;
		return;
	}
	a->ctl = fd;
	a->backoff_ms = 100;
	pthread_mutex_lock(&a->st.lock);
	a->st.controller_up = true;
	pthread_mutex_unlock(&a->st.lock);
	a->inlen = 0;
	ctl_map_reset(a);
	char hello[CFG_ID_MAX + 16];
	snprintf(hello, sizeof(hello), "hello %s\n", a->o->node);
	ctl_send(a, hello);
	for (unsigned i = 0; i < a->nhc; i++)
		if (!a->hc[i].up)
			ctl_health(a, &a->hc[i]);
	if (a->ctl >= 0) /* else a send failed: dropped, retried after the backoff */
		log_msg(LOG_INFO, "agent: %s: connected to controller %s", a->o->node,
		        a->o->controller);
}

/* Logs a controller line the agent refuses, at most once a second (the rest are counted and
 * reported with the next message): a broken or hostile peer must not flood the log. */
static void ctl_refuse(struct agent *a, const char *why, const char *line)
{
	uint64_t now_s = mono_ms() / 1000;
	if (a->refused_s && now_s == a->refused_s) {
		a->refused++;
		return;
	}
	log_msg(LOG_WARNING,
	        "agent: %s: controller: %s in line '%.80s'; line ignored (%llu more "
	        "since the last such message)",
	        a->o->node, why, line, (unsigned long long)a->refused);
	a->refused_s = now_s;
	a->refused = 0;
}

/* One line of a map message. A map line starts a new map and drops any unfinished one
 * (a map with no end, or one cut off when the link dropped). */
static void ctl_line(struct agent *a, char *line)
{
	struct peak_config *cfg = a->cfg;
	if (!strncmp(line, "map ", 4)) {
		struct dns_name n;
		ctl_map_reset(a);
		if (dns_name_parse(line + 4, &n))
			return;
		for (unsigned i = 0; i < cfg->nsvc; i++)
			if (dns_name_eq(&cfg->svc[i].name, &n))
				a->cur_svc = (int)i;
		if (a->cur_svc < 0)
			return;
		unsigned nep = cfg->svc[a->cur_svc].nep;
		a->pending.blocks = calloc(nep ? nep : 1, sizeof(*a->pending.blocks));
		a->pending.nblocks = calloc(nep ? nep : 1, sizeof(*a->pending.nblocks));
		a->pending.nep = nep;
		if (!a->pending.blocks || !a->pending.nblocks)
			ctl_map_reset(a);
		return;
	}
	if (a->cur_svc < 0)
		return;
	const struct cfg_service *s = &cfg->svc[a->cur_svc];
	if (!strncmp(line, "ep ", 3)) {
		/* "ep ID BLOCKS": a line with a bad block is refused whole (parsed once to check
		 * and count, once to store) */
		const char *id = line + 3, *sp = strchr(id, ' ');
		size_t idlen = sp ? (size_t)(sp - id) : strlen(id), nb, have;
		const char *blocks = sp ? sp + 1 : "";
		int e = -1;
		for (unsigned k = 0; k < s->nep && e < 0; k++)
			if (strlen(s->ep[k].id) == idlen && !memcmp(s->ep[k].id, id, idlen))
				e = (int)k;
		if (e < 0 ||
		    mapline_blocks_parse(blocks, strlen(blocks), &s->space, NULL, 0, &nb)) {
			ctl_refuse(a, e < 0 ? "unknown endpoint" : "bad block", line);
			return;
		}
		have = a->pending.nblocks[e];
		struct assign_block *nv =
		    realloc(a->pending.blocks[e], (have + nb + 1) * sizeof(*nv));
		if (!nv) {
			ctl_refuse(a, "no memory for", line);
			return;
		}
		a->pending.blocks[e] = nv;
		mapline_blocks_parse(blocks, strlen(blocks), &s->space, nv + have, nb, &nb);
		a->pending.nblocks[e] = have + nb;
		return;
	}
	if (!strcmp(line, "end")) {
		map_free(&a->maps[a->cur_svc]);
		a->maps[a->cur_svc] = a->pending;
		a->maps[a->cur_svc].have = true;
		memset(&a->pending, 0, sizeof(a->pending));
		a->cur_svc = -1;
		a->dirty = true;
	}
}

void ctl_read(struct agent *a)
{
	char *grown = NULL;
	if (a->inlen + 4096 > a->incap && a->incap < CTL_LINE_LIMIT) {
		size_t nc = a->incap ? 2 * a->incap : 65536;
		if ((grown = realloc(a->in, nc))) {
			a->in = grown;
			a->incap = nc;
		}
	}
	/* A line longer than any map can be, or no memory for it: drop the connection (the
	 * routes stay) rather than grow without bound or spin on a full buffer. */
	bool full = a->inlen + 1 >= a->incap;
	ssize_t k = full ? 0 : recv(a->ctl, a->in + a->inlen, a->incap - a->inlen - 1, 0);
	if (full)
		log_msg(LOG_ERR, "agent: %s: controller line longer than %zu bytes", a->o->node,
		        a->incap);
	if (k <= 0) {
		log_msg(LOG_WARNING, "agent: %s: controller gone; keeping the routes, retrying",
		        a->o->node);
		ctl_drop(a, mono_ms() + a->backoff_ms);
		return;
	}
	a->inlen += (size_t)k;
	/* every complete line, then what is left moves to the front once */
	size_t used = 0;
	char *nl;
	while (a->ctl >= 0 && (nl = memchr(a->in + used, '\n', a->inlen - used))) {
		char *line = a->in + used;
		*nl = '\0';
		if (memchr(line, '\0', (size_t)(nl - line)))
			ctl_refuse(a, "a NUL byte", "");
		else
			ctl_line(a, line);
		used = (size_t)(nl - a->in) + 1;
	}
	if (a->ctl < 0)
		return; /* dropped meanwhile: the buffer is empty */
	memmove(a->in, a->in + used, a->inlen - used);
	a->inlen -= used;
}
