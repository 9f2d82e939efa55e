/* The checksum backend on HTTP/3. */
#include "backend.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/notify.h"
#include "endpoint.h"
#include "qlog.h"

enum {
	BE_FIELD_LEN = 128, /* :method, :path and content-type kept per request */
	BE_BODY_LEN = 512,  /* the JSON answer */
};

/* One request stream. Freed when nghttp3 closes the stream (finished, reset, or the
 * connection's end). */
struct bstream {
	struct bstream *prev, *next; /* the connection's open streams (h3_conn.app_conn) */
	struct sha256_ctx sha;
	uint64_t bytes;
	char method[16];
	char path[BE_FIELD_LEN];
	char ctype[BE_FIELD_LEN];
	bool has_ctype, ctype_long, hashing, answered;
	char body[BE_BODY_LEN];
	size_t body_len;
};

static const struct h3_backend_opts *be;
static struct log_limit be_rl;

/* Streams by the status they were answered with; "reset" closed without an answer. */
static const int be_status[] = {200, 201, 400, 404, 405, 415, 0};
enum { BE_NSTATUS = sizeof(be_status) / sizeof(be_status[0]) };
static struct {
	uint64_t streams[BE_NSTATUS];
	uint64_t body_bytes; /* hashed request bodies */
} be_stats;

static void count_status(int status)
{
	size_t i = 0;
	while (i < BE_NSTATUS - 1 && be_status[i] != status)
		i++;
	h3_stat_add(be_stats.streams[i], 1);
}

static nghttp3_ssize read_body(nghttp3_conn *h, int64_t sid, nghttp3_vec *vec, size_t veccnt,
                               uint32_t *pflags, void *cu, void *su)
{
	struct bstream *s = su;
	(void)h;
	(void)sid;
	(void)cu;
	*pflags |= NGHTTP3_DATA_FLAG_EOF;
	if (!s || !s->body_len || !veccnt)
		return 0;
	vec[0].base = (uint8_t *)s->body;
	vec[0].len = s->body_len;
	return 1;
}

/* Answers status with body (a line of text or JSON; NUL-terminated). */
static int respond(struct h3_conn *c, int64_t sid, struct bstream *s, int status, const char *ctype,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int respond(struct h3_conn *c, int64_t sid, struct bstream *s, int status, const char *ctype,
                   const char *fmt, ...)
{
	char st[4], len[24];
	va_list ap;
	if (s->answered)
		return 0;
	s->answered = true;
	count_status(status);
	va_start(ap, fmt);
	int n = vsnprintf(s->body, sizeof(s->body), fmt, ap);
	va_end(ap);
	s->body_len = n < 0 ? 0 : (size_t)n >= sizeof(s->body) ? sizeof(s->body) - 1 : (size_t)n;
	snprintf(st, sizeof(st), "%d", status);
	snprintf(len, sizeof(len), "%zu", s->body_len);
	const nghttp3_nv nva[] = {
	    {(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP3_NV_FLAG_NONE},
	    {(uint8_t *)"content-type", (uint8_t *)ctype, 12, strlen(ctype), NGHTTP3_NV_FLAG_NONE},
	    {(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len), NGHTTP3_NV_FLAG_NONE},
	    {(uint8_t *)"x-peak-backend", (uint8_t *)be->id, 14, strlen(be->id),
	     NGHTTP3_NV_FLAG_NONE},
	};
	nghttp3_data_reader dr = {read_body};
	h3_qlog_event(c, "http:response",
	              "\"stream_id\":%" PRId64 ",\"status\":%d,"
	              "\"body_bytes\":%" PRIu64,
	              sid, status, s->bytes);
	int r = nghttp3_conn_submit_response(c->h, sid, nva, sizeof(nva) / sizeof(nva[0]), &dr);
	if (r) {
		log_rl(&be_rl, LOG_WARNING, "h3 backend: stream %" PRId64 ": response: %s", sid,
		       nghttp3_strerror(r));
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int begin_headers(nghttp3_conn *h, int64_t sid, void *cu, void *su)
{
	if (su)
		return 0;
	struct h3_conn *c = cu;
	struct bstream *s = calloc(1, sizeof(*s));
	if (!s)
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	if (nghttp3_conn_set_stream_user_data(h, sid, s)) {
		free(s);
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	}
	s->next = c->app_conn;
	if (s->next)
		s->next->prev = s;
	c->app_conn = s;
	return 0;
}

static void bstream_free(struct h3_conn *c, struct bstream *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		c->app_conn = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* Streams still open when the connection goes (closed, timed out, or at exit). */
static void conn_free(struct h3_conn *c)
{
	while (c->app_conn)
		bstream_free(c, c->app_conn);
}

static int recv_header(nghttp3_conn *h, int64_t sid, int32_t token, nghttp3_rcbuf *name,
                       nghttp3_rcbuf *value, uint8_t flags, void *cu, void *su)
{
	struct bstream *s = su;
	(void)h;
	(void)sid;
	(void)token;
	(void)flags;
	(void)cu;
	if (!s)
		return 0;
	if (h3_field_is(name, ":method")) {
		h3_field_copy(s->method, sizeof(s->method), value, NULL);
	} else if (h3_field_is(name, ":path")) {
		h3_field_copy(s->path, sizeof(s->path), value, NULL);
	} else if (h3_field_is(name, "content-type")) {
		s->has_ctype = true;
		h3_field_copy(s->ctype, sizeof(s->ctype), value, &s->ctype_long);
	}
	return 0;
}

/* Decides what the request gets once its headers are in: a refusal right away (the rest of
 * the body is read and dropped, not stopped: RFC 9114 §4.1.1 lets a server answer early, and
 * STOP_SENDING after it stalls some clients), or hashing until the body ends. */
static int end_headers(nghttp3_conn *h, int64_t sid, int fin, void *cu, void *su)
{
	struct h3_conn *c = cu;
	struct bstream *s = su;
	(void)h;
	(void)fin;
	if (!s)
		return 0;
	if (c->qlog) {
		char m[64], p[2 * BE_FIELD_LEN], t[2 * BE_FIELD_LEN];
		h3_qlog_event(
		    c, "http:request_headers",
		    "\"stream_id\":%" PRId64 ",\"method\":\"%s\",\"path\":\"%s\","
		    "\"content_type\":%s%s%s",
		    sid, h3_qlog_str(m, sizeof(m), s->method, strlen(s->method)),
		    h3_qlog_str(p, sizeof(p), s->path, strlen(s->path)), s->has_ctype ? "\"" : "",
		    s->has_ctype ? h3_qlog_str(t, sizeof(t), s->ctype, strlen(s->ctype)) : "null",
		    s->has_ctype ? "\"" : "");
	}
	if (strcmp(s->method, "POST"))
		return 0; /* GET and the others are answered at the end of the request */
	if (!s->has_ctype)
		return respond(c, sid, s, 400, "text/plain", "no content-type\n");
	if (s->ctype_long || !h3_ctype_set_match(&be->types, s->ctype, strlen(s->ctype)))
		return respond(c, sid, s, 415, "text/plain", "content-type not served here\n");
	sha256_init(&s->sha);
	s->hashing = true;
	log_msg(LOG_DEBUG, "h3 backend %s: stream %" PRId64 ": POST %s: receiving", be->id, sid,
	        s->ctype);
	return 0;
}

static int recv_data(nghttp3_conn *h, int64_t sid, const uint8_t *data, size_t n, void *cu,
                     void *su)
{
	struct h3_conn *c = cu;
	struct bstream *s = su;
	(void)h;
	if (s && s->hashing) {
		sha256_update(&s->sha, n, data);
		s->bytes += n;
		h3_stat_add(be_stats.body_bytes, n);
	}
	h3_conn_consume(c, sid, n);
	return 0;
}

static int end_stream(nghttp3_conn *h, int64_t sid, void *cu, void *su)
{
	struct h3_conn *c = cu;
	struct bstream *s = su;
	uint8_t d[SHA256_DIGEST_SIZE];
	char hex[2 * SHA256_DIGEST_SIZE + 1];
	(void)h;
	if (!s || s->answered)
		return 0;
	if (s->hashing) {
		sha256_digest(&s->sha, sizeof(d), d);
		for (size_t i = 0; i < sizeof(d); i++)
			snprintf(hex + 2 * i, 3, "%02x", d[i]);
		s->hashing = false;
		log_msg(LOG_DEBUG, "h3 backend %s: stream %" PRId64 ": %" PRIu64 " bytes, %s",
		        be->id, sid, s->bytes, hex);
		/* the type is echoed as received, parameters included, as a JSON string */
		char t[2 * BE_FIELD_LEN];
		h3_qlog_str(t, sizeof(t), s->ctype, strlen(s->ctype));
		return respond(c, sid, s, 201, "application/json",
		               "{\"checksum\":\"%s\",\"bytes\":%" PRIu64
		               ",\"type\":\"%s\",\"backend\":\"%s\"}\n",
		               hex, s->bytes, t, be->id);
	}
	if (!strcmp(s->method, "GET") || !strcmp(s->method, "HEAD")) {
		if (!strcmp(s->path, "/healthz"))
			return respond(c, sid, s, 200, "text/plain", "ok\n");
		return respond(c, sid, s, 404, "text/plain", "not found\n");
	}
	return respond(c, sid, s, 405, "text/plain", "method not allowed\n");
}

static int stream_close(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su)
{
	struct h3_conn *c = cu;
	(void)h;
	(void)code;
	if (su && !((struct bstream *)su)->answered)
		count_status(0);
	if (su)
		bstream_free(c, su);
	/* a finished request stream makes room for one more (RFC 9000 §4.6) */
	if (!ngtcp2_conn_is_local_stream(c->q, sid))
		ngtcp2_conn_extend_max_streams_bidi(c->q, 1);
	return 0;
}

static int http_new(struct h3_conn *c)
{
	static const nghttp3_callbacks cbs = {
	    .stream_close = stream_close,
	    .recv_data = recv_data,
	    .deferred_consume = h3_cb_deferred_consume,
	    .begin_headers = begin_headers,
	    .recv_header = recv_header,
	    .end_headers = end_headers,
	    .stop_sending = h3_cb_stop_sending,
	    .end_stream = end_stream,
	    .reset_stream = h3_cb_reset_stream,
	};
	nghttp3_settings st;
	h3_http_settings(&st);
	return nghttp3_conn_server_new(&c->h, &cbs, &st, NULL, c) ? -ENOMEM : 0;
}

static void render(struct mbuf *b, void *arg)
{
	const struct h3_endpoint *st = arg;
	char id[METRICS_LABEL_MAX];
	metrics_label(id, sizeof(id), be->id);
	mbuf_printf(b,
	            "# HELP peak_h3_streams_total Request streams by the status answered "
	            "(reset: closed without an answer).\n# TYPE peak_h3_streams_total counter\n");
	for (size_t i = 0; i < BE_NSTATUS; i++) {
		if (be_status[i])
			mbuf_printf(b, "peak_h3_streams_total{backend=\"%s\",status=\"%d\"} %llu\n",
			            id, be_status[i],
			            (unsigned long long)h3_stat_get(be_stats.streams[i]));
		else
			mbuf_printf(b,
			            "peak_h3_streams_total{backend=\"%s\",status=\"reset\"} %llu\n",
			            id, (unsigned long long)h3_stat_get(be_stats.streams[i]));
	}
	mbuf_printf(b,
	            "# HELP peak_h3_body_bytes_total Request body bytes hashed.\n"
	            "# TYPE peak_h3_body_bytes_total counter\n"
	            "peak_h3_body_bytes_total{backend=\"%s\"} %llu\n",
	            id, (unsigned long long)h3_stat_get(be_stats.body_bytes));
	h3_endpoint_render(b, st, "backend", be->id);
}

static const struct h3_conn_ops backend_ops = {.http_new = http_new, .conn_free = conn_free};

int h3_backend_run(const struct h3_backend_opts *o)
{
	struct h3_endpoint ep;
	struct h3_limits lim = {
	    .max_streams_bidi = o->max_streams,
	    .max_stream_data = 1024 * 1024,
	    .max_data = 8 * 1024 * 1024,
	};
	struct h3_retry_policy retry = {.always = o->retry, .above = o->max_conns / 2};
	struct metrics_srv *ms = NULL;
	uint8_t secret[H3_SECRET_LEN];
	char a[80];
	int sfd = signals_fd(1), ret;
	if (sfd < 0)
		return sfd;
	be = o;
	h3_qlog_set_dir(o->qlog_dir);
	if (o->secret)
		h3_secret_derive(secret, o->secret);
	if ((ret = h3_endpoint_init(&ep, &o->listen, o->cert, o->key, &lim, o->max_conns,
	                            o->secret ? secret : NULL, &retry, &backend_ops, NULL))) {
		close(sfd);
		return ret;
	}
	/* after signals_fd: the metrics thread inherits the blocked signals */
	if (o->metrics && !(ms = metrics_start(o->metrics, render, &ep))) {
		h3_endpoint_fini(&ep);
		close(sfd);
		return -EINVAL;
	}
	h3_addr_format(&ep.bound, a, sizeof(a));
	log_msg(LOG_INFO, "h3 backend %s: listening on %s (udp)", o->id, a);
	notify_ready("backend %s listening on %s (udp)", o->id, a);
	for (;;) {
		struct pollfd p[2] = {{ep.fd, POLLIN, 0}, {sfd, POLLIN, 0}};
		int n = poll(p, 2, h3_endpoint_timeout_ms(&ep));
		if (n == -1 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (n > 0 && (p[1].revents & POLLIN)) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
			    si.ssi_signo != SIGHUP) {
				log_msg(LOG_INFO, "h3 backend %s: signal %u, stopping", o->id,
				        si.ssi_signo);
				notify_stopping();
				ret = 0;
				break;
			}
		}
		if (n > 0 && (p[0].revents & POLLIN))
			h3_endpoint_on_readable(&ep);
		h3_endpoint_on_timer(&ep);
	}
	h3_endpoint_close_all(&ep);
	log_msg(LOG_INFO,
	        "h3 backend %s: %" PRIu64 " connections, %" PRIu64 " datagrams dropped, %" PRIu64
	        " refused, %" PRIu64 " retries, %" PRIu64 " bad tokens, %" PRIu64
	        " stateless resets",
	        o->id, ep.stats.accepted, ep.stats.dropped, ep.stats.refused, ep.stats.retries,
	        ep.stats.bad_tokens, ep.stats.resets);
	if (ms)
		metrics_stop(ms);
	h3_endpoint_fini(&ep);
	close(sfd);
	return ret;
}
