/* The controller's links: growing text, per-peer output queues (non-blocking, bounded,
 * dropped when they stop draining), line input, and the queued peak dns exchange. */
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"

/* Milliseconds of CLOCK_MONOTONIC: every deadline of the controller. */
uint64_t ctlr_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Copies a NUL-terminated string, or leaves dst empty if it does not fit (a name cut
 * short would name something else; the grammar refuses the empty one). */
void ctlr_copy(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		n = 0;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* True if a peer-caused message may be logged now (LOG_BURST per second). */
bool ctlr_log_ok(struct ctl *c)
{
	uint64_t s = ctlr_now_ms() / 1000;
	if (s != c->log_s) {
		c->log_s = s;
		c->log_n = 0;
	}
	return c->log_n++ < LOG_BURST;
}

/* ---- growing text and per-peer output queues ---- */

/* Appends n bytes, growing the buffer; out of memory sets t->err and keeps the text. */
void ctlr_text_add(struct text *t, const char *s, size_t n)
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
void ctlr_text_msg(struct text *t, const struct ctl_msg *m)
{
	char line[CTL_LINE_MAX + 1];
	int n = ctl_write(m, line, sizeof(line));
	if (n < 0)
		t->err = n;
	else
		ctlr_text_add(t, line, (size_t)n);
}

/* Closes a peer and frees its queue; the slot is free again (fd -1). */
void ctlr_peer_close(struct peer *p)
{
	if (p->fd >= 0)
		close(p->fd);
	free(p->q.p);
	ctlr_batch_free(p->batch);
	*p = (struct peer){.fd = -1};
}

/* Sends what the peer's socket takes now (non-blocking). Returns 0 or -errno (the peer
 * is broken). */
int ctlr_peer_flush(struct peer *p, uint64_t now)
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

/* Queues bytes for a peer and sends what its socket takes. A peer that has bytes still
 * waiting and whose queue would pass OUTQ_MAX_B, or whose socket failed, is closed (an agent
 * reconnects and gets whole maps again); a message to an empty queue is taken whole, however
 * large (a status reply at 10,000 x 100 is about 60 MB). Returns 0 or -errno (the peer is
 * closed). */
int ctlr_peer_send(struct ctl *c, struct peer *p, const char *s, size_t n)
{
	uint64_t now = ctlr_now_ms();
	int ret = 0;
	size_t waiting = p->q.len - p->q.off;
	if (waiting && waiting + n > OUTQ_MAX_B) {
		if (ctlr_log_ok(c))
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
	ret = ctlr_peer_flush(p, now);
out:
	if (ret)
		ctlr_peer_close(p);
	return ret;
}

/* Closes an agent for a protocol reason, logged (rate-limited) with why. */
void ctlr_agent_drop(struct ctl *c, struct peer *a, const char *why)
{
	if (ctlr_log_ok(c))
		log_msg(LOG_WARNING, "controller: agent %s: %s: disconnected",
		        a->node[0] ? a->node : "(no hello)", why);
	ctlr_peer_close(a);
}

/* After an agent's valid hello, before any map: proves the key to an agent that asked for
 * it (its hello carried a nonce) with "welcome PROOF" (ctlauth.h). A controller without a
 * key cannot prove anything; it says so in its log, and such an agent refuses its maps.
 * Returns 0, or -1 if the agent was dropped (its queue failed). */
int ctlr_agent_welcome(struct ctl *c, struct peer *a, const struct ctl_msg *hello)
{
	struct ctl_msg m = {.kind = CTL_WELCOME};
	char line[CTL_LINE_MAX + 1];
	int n, ret = 0;
	if (!hello->has_nonce)
		return 0;
	if (!c->auth) {
		if (ctlr_log_ok(c))
			log_msg(LOG_WARNING,
			        "controller: agent %s asks this controller to prove the key, and "
			        "it has none (--key-file): the agent will refuse its maps",
			        a->node);
		return 0;
	}
	ctlauth_proof(&c->key, hello->nonce, a->nonce, hello->id, m.tag);
	n = ctl_write(&m, line, sizeof(line));
	if (n < 0 || ctlr_peer_send(c, a, line, (size_t)n))
		ret = -1;
	explicit_bzero(&m, sizeof(m));
	explicit_bzero(line, sizeof(line));
	if (ret && a->fd >= 0)
		ctlr_peer_close(a);
	return ret;
}

/* One read of what an agent or client sent, its complete lines run through fn. Returns
 * true if the peer may have more to read now. */
static bool peer_read_once(struct ctl *c, struct peer *p,
                           int (*fn)(struct ctl *, struct peer *, const char *, size_t));

/* Reads what an agent or client sent and runs its complete lines through fn. A client
 * sending a batch is read until its socket is empty: a line buffer a loop turn made a batch
 * of 1,000 lines take 50 turns of the loop, each a scan of every endpoint (0.28 s at
 * 10,000 services x 100 endpoints). */
void ctlr_peer_read(struct ctl *c, struct peer *p,
                    int (*fn)(struct ctl *, struct peer *, const char *, size_t))
{
	while (peer_read_once(c, p, fn) && p->fd >= 0 && !p->agent && p->batch && !p->closing)
		;
}

static bool peer_read_once(struct ctl *c, struct peer *p,
                           int (*fn)(struct ctl *, struct peer *, const char *, size_t))
{
	ssize_t k = recv(p->fd, p->in + p->inlen, sizeof(p->in) - p->inlen, MSG_DONTWAIT);
	if (k == -1 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (k <= 0) {
		if (!p->agent && p->inlen && !p->closing) { /* a last line without '\n' */
			if (!fn(c, p, p->in, p->inlen) && p->batch)
				ctlr_batch_finish(c, p); /* cut short */
			p->inlen = 0;
			if (p->fd >= 0)
				shutdown(p->fd, SHUT_RD);
			return false;
		}
		if (!p->agent && p->batch && !p->closing) { /* a batch cut short */
			if (!ctlr_batch_finish(c, p))
				shutdown(p->fd, SHUT_RD);
			return false;
		}
		if (p->agent)
			log_msg(LOG_INFO, "controller: agent of node %s left",
			        p->node[0] ? p->node : "?");
		ctlr_peer_close(p);
		return false;
	}
	p->inlen += (size_t)k;
	size_t at = 0, ll;
	long n;
	while (p->fd >= 0 && (n = ctl_line_split((uint8_t *)p->in + at, p->inlen - at, &ll)) > 0) {
		if (fn(c, p, p->in + at, ll))
			return false; /* p was closed */
		at += (size_t)n;
		if (p->closing) { /* a client gets one command */
			p->inlen = 0;
			return false;
		}
	}
	if (p->fd < 0)
		return false;
	if (n < 0) {
		if (p->agent)
			ctlr_agent_drop(c, p, "line too long");
		else
			ctlr_peer_close(p);
		return false;
	}
	memmove(p->in, p->in + at, p->inlen - at);
	p->inlen -= at;
	return true;
}

/* ---- peak dns notifications (a queue, one exchange at a time, each with a deadline) ---- */

/* Ends the running exchange with peak dns, if any, and drops the oldest queued line. */
void ctlr_dns_pop(struct dnsq *d)
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
		d->deadline_ms = ctlr_now_ms() + DNS_MS;
		if (d->fd >= 0 && (connect(d->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
		                   errno == EINPROGRESS || errno == EAGAIN))
			return;
		if (ctlr_log_ok(c))
			log_msg(LOG_WARNING, "controller: peak dns at %s: %s; '%.*s' not sent",
			        c->o->dns_control, strerror(errno),
			        (int)strcspn(d->line[d->head], "\n"), d->line[d->head]);
		ctlr_dns_pop(d);
	}
}

/* Queues one line for peak dns (with --dns-control). A full queue drops the oldest. */
void ctlr_dns_tell(struct ctl *c, const struct ctl_msg *m)
{
	struct dnsq *d = &c->dns;
	char line[CTL_LINE_MAX + 1];
	struct csvc *v = m->svc[0] ? ctlr_svc_find(c, m->svc) : NULL;
	if (v) /* what peak dns is told changed the service's saved record too (steering) */
		ctlr_svc_dirty(v);
	if (!c->o->dns_control || ctl_write(m, line, sizeof(line)) < 0)
		return;
	if (d->n == DNS_QUEUE_MAX) {
		if (ctlr_log_ok(c))
			log_msg(LOG_WARNING, "controller: peak dns queue full: dropping '%.*s'",
			        (int)strcspn(d->line[d->head], "\n"), d->line[d->head]);
		ctlr_dns_pop(d); /* the oldest, even if its exchange is running */
	}
	char *dup = strdup(line);
	if (!dup)
		return;
	d->line[(d->head + d->n) % DNS_QUEUE_MAX] = dup;
	d->n++;
	dns_start(c);
}

/* Moves the running exchange on (revents from poll, or 0 to check its deadline). */
void ctlr_dns_step(struct ctl *c, short revents, uint64_t now)
{
	struct dnsq *d = &c->dns;
	const char *line = d->n ? d->line[d->head] : "";
	if (d->fd < 0)
		return;
	if (!d->sent && revents & (POLLOUT | POLLERR | POLLHUP)) {
		size_t n = strlen(line);
		ssize_t k = send(d->fd, line + d->off, n - d->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k == -1 && errno != EAGAIN && errno != EINTR) {
			if (ctlr_log_ok(c))
				log_msg(LOG_WARNING,
				        "controller: peak dns at %s: %s; '%.*s' not sent",
				        c->o->dns_control, strerror(errno),
				        (int)strcspn(line, "\n"), line);
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
		if (strncmp(d->reply, "ok", 2) && ctlr_log_ok(c))
			log_msg(LOG_WARNING, "controller: peak dns refused '%.*s': %.*s",
			        (int)strcspn(line, "\n"), line, (int)strcspn(d->reply, "\n"),
			        d->reply);
		goto done;
	}
	if (now < d->deadline_ms)
		return;
	if (ctlr_log_ok(c))
		log_msg(LOG_WARNING,
		        "controller: peak dns at %s did not answer '%.*s' within %d ms",
		        c->o->dns_control, (int)strcspn(line, "\n"), line, DNS_MS);
done:
	ctlr_dns_pop(d);
	dns_start(c);
}
