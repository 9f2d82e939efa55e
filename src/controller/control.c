/* The controller's control socket for peak controller-ctl: status, weight, health,
 * reload, add, del; one command per connection (a batch: "batch N" and its N lines),
 * answered with "ok" or "error: ...". */
#define _GNU_SOURCE /* accept4 */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../sys/log.h"

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
		ctlr_peer_send(c, p, line, (size_t)n);
}

/* One command from an operator client (the connection gets only one): runs it and queues
 * the reply, the last line "ok" or "error: TEXT". Returns 0, or -1 if p was closed. */
int ctlr_client_line(struct ctl *c, struct peer *p, const char *line, size_t len)
{
	struct ctl_msg m;
	char err[CFG_ERRLEN] = "";
	struct text t = {0};
	if (p->batch) { /* a line of a batch: its errors come with the reply at its end */
		if (ctlr_batch_line(c, p, line, len))
			return ctlr_batch_finish(c, p);
		return 0;
	}
	p->closing = true;
	if (ctl_parse(line, len, &m)) {
		reply_err(c, p, "%s (commands: status, health, weight, reload, add, del, batch)",
		          m.why);
		return p->fd >= 0 ? 0 : -1;
	}
	if (m.kind == CTL_BATCH || m.kind == CTL_ADD || m.kind == CTL_DEL) {
		if (ctlr_batch_start(p, m.kind == CTL_BATCH ? m.count : 1)) {
			reply_err(c, p, "out of memory");
			return p->fd >= 0 ? 0 : -1;
		}
		p->closing = false; /* the batch's lines follow (an add or del is its own) */
		if (m.kind != CTL_BATCH && ctlr_batch_line(c, p, line, len))
			return ctlr_batch_finish(c, p);
		return 0;
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
				ctlr_text_add(&t, row, (size_t)n);
			}
		}
		pthread_mutex_unlock(&c->lock);
		ctlr_text_add(&t, "ok\n", 3);
		if (!t.err)
			ctlr_peer_send(c, p, t.p, t.len);
		free(t.p);
		return p->fd >= 0 ? 0 : -1;
	}
	if (m.kind == CTL_RELOAD) {
		if (ctlr_reload(c, err, sizeof(err))) {
			log_msg(LOG_ERR,
			        "controller: reload refused, keeping the running "
			        "configuration: %s",
			        err);
			reply_err(c, p, "reload refused: %s", err);
		} else {
			log_msg(LOG_INFO, "controller: configuration reloaded from %s",
			        c->o->config);
			ctlr_peer_send(c, p, "ok\n", 3);
		}
		return p->fd >= 0 ? 0 : -1;
	}
	if (m.kind != CTL_WEIGHT && m.kind != CTL_HEALTH) {
		reply_err(c, p, "'%s' is not a command here", ctl_kind_name(m.kind));
		return p->fd >= 0 ? 0 : -1;
	}
	if (!c->leader) { /* a standby's change would be lost at the next adoption */
		reply_err(c, p, "a standby: send it to the leading controller");
		return p->fd >= 0 ? 0 : -1;
	}
	struct csvc *v = ctlr_svc_find(c, m.svc);
	int e = v ? ctlr_ep_index(v->s, m.id) : -1, r;
	if (e < 0) {
		reply_err(c, p, "no endpoint %s of service %s", m.id, m.svc);
		return p->fd >= 0 ? 0 : -1;
	}
	pthread_mutex_lock(&c->lock);
	r = m.kind == CTL_WEIGHT ? ctlr_weight(c, v, (unsigned)e, m.weight)
	    : m.up               ? ctlr_health(c, v, (unsigned)e, true)
	           : ctlr_drain(c, v, (unsigned)e); /* the operator's: the pod lives on */
	pthread_mutex_unlock(&c->lock);
	if (r)
		reply_err(c, p, "%s: %s", m.id,
		          r == -EINVAL ? "refused: the service would have no weight left"
		                       : strerror(-r));
	else
		ctlr_peer_send(c, p, "ok\n", 3);
	return p->fd >= 0 ? 0 : -1;
}

/* Binds the control socket at path, mode 0600. An existing path is replaced only if it is
 * a socket nobody answers on (a stale one); anything else is refused. Returns the
 * listening socket or -errno (the reason logged). */
int ctlr_control_listen(const char *path)
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

/* Accepts an operator client (at most MAX_CLIENTS at once; more are closed at once). */
void ctlr_client_accept(struct ctl *c, int lfd)
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
	c->clients[i] = (struct peer){.fd = fd, .born_ms = ctlr_now_ms()};
}
