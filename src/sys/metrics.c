#include "metrics.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "net.h"

struct metrics_srv {
	struct MHD_Daemon *d;
	metrics_render_fn fn;
	void *arg;
};

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = b->p ? vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap) : -1;
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t nc = b->cap ? 2 * b->cap : 16384;
		char *np = realloc(b->p, nc);
		if (!np) {
			if (b->p)
				b->p[b->len] = '\0';
			return;
		}
		b->p = np;
		b->cap = nc;
	}
}

/* The escape of one byte of a label value, or NULL if it stands for itself. */
static const char *label_escape(char c)
{
	return c == '\\' ? "\\\\" : c == '"' ? "\\\"" : c == '\n' ? "\\n" : NULL;
}

const char *metrics_label(char *out, size_t cap, const char *v)
{
	size_t o = 0;
	for (; *v; v++) {
		const char *e = label_escape(*v);
		size_t k = e ? 2 : 1;
		if (k > cap - 1 - o)
			break;
		if (e)
			memcpy(out + o, e, 2);
		else
			out[o] = *v;
		o += k;
	}
	out[o] = '\0';
	return out;
}

void mbuf_label(struct mbuf *b, const char *v)
{
	size_t len = b->len, n = 2;
	for (const char *p = v; *p; p++)
		n += label_escape(*p) ? 2 : 1;
	mbuf_printf(b, "%s", ""); /* allocates a first buffer if there is none */
	while (b->p && b->cap - b->len <= n) {
		size_t nc = 2 * b->cap;
		char *np = realloc(b->p, nc);
		if (!np)
			return;
		b->p = np;
		b->cap = nc;
	}
	if (!b->p)
		return;
	b->p[len++] = '"';
	metrics_label(b->p + len, b->cap - len, v);
	len += n - 2;
	b->p[len++] = '"';
	b->p[len] = '\0';
	b->len = len;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_len, void **ptr)
{
	struct metrics_srv *m = cls;
	(void)version, (void)upload, (void)upload_len, (void)ptr;
	if (strcmp(method, "GET"))
		return MHD_NO;
	if (strcmp(url, "/metrics")) {
		static char nf[] = "not found: try /metrics\n";
		struct MHD_Response *r =
		    MHD_create_response_from_buffer(sizeof(nf) - 1, nf, MHD_RESPMEM_PERSISTENT);
		enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, r);
		MHD_destroy_response(r);
		return ret;
	}
	struct mbuf b = {0};
	m->fn(&b, m->arg);
	if (!b.p)
		return MHD_NO;
	struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
	enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

struct metrics_srv *metrics_start(const char *addr, metrics_render_fn fn, void *arg)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (sockaddr_parse(addr, &ss, &sl)) {
		log_msg(LOG_ERR, "metrics: '%s' is not ADDR:PORT or [IPV6]:PORT", addr);
		return NULL;
	}
	struct metrics_srv *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->fn = fn;
	m->arg = arg;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, m, MHD_OPTION_SOCK_ADDR,
	                        (struct sockaddr *)&ss, MHD_OPTION_END);
	if (!m->d) {
		log_msg(LOG_ERR, "metrics: cannot listen on %s", addr);
		free(m);
		return NULL;
	}
	log_msg(LOG_INFO, "metrics on http://%s/metrics", addr);
	return m;
}

void metrics_stop(struct metrics_srv *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
