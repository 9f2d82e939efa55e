/* The checksum backend on HTTP/3. */
#define _GNU_SOURCE /* accept4 */
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
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/notify.h"
#include "endpoint.h"
#include "h2conn.h"
#include "head.h"
#include "qlog.h"
#include "tls.h"

enum {
	BE_BODY_LEN = 1024, /* the JSON answer (the type echoed, escaped) */
};

/* One request stream. Freed when nghttp3 closes the stream (finished, reset, or the
 * connection's end). */
struct bstream {
	struct bstream *prev, *next; /* the connection's open streams (h3_conn.app_conn) */
	struct sha256_ctx sha;
	uint64_t bytes;
	struct h3_req_head q; /* the request's head */
	bool hashing, answered;
	int status;          /* the answer's, once answered */
	const char *r_ctype; /* the answer's content-type (a constant) */
	char body[BE_BODY_LEN];
	const char *rbody; /* the answer's body: body, or the page (--page) */
	size_t body_len;
	/* HTTP/2 only */
	size_t body_off;   /* answer bytes handed to nghttp2 */
	size_t head_bytes; /* header section bytes received (RFC 9113 §6.5.2) */
	bool head_big;     /* over H2_HEADER_LIST_MAX: answered 431 */
};

static const struct h3_backend_opts *be;
static struct log_limit be_rl;

/* Streams by the status they were answered with; "reset" closed without an answer. */
static const int be_status[] = {200, 201, 400, 404, 405, 415, 431, 0};
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
	vec[0].base = (uint8_t *)s->rbody;
	vec[0].len = s->body_len;
	return 1;
}

/* Makes s's answer: status with body (a line of text or JSON) in s->body. Returns false if
 * s was answered already (the first answer stands). */
static bool bs_answer(struct bstream *s, int status, const char *ctype, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool bs_answer(struct bstream *s, int status, const char *ctype, const char *fmt, ...)
{
	va_list ap;
	if (s->answered)
		return false;
	s->answered = true;
	s->status = status;
	s->r_ctype = ctype;
	count_status(status);
	va_start(ap, fmt);
	int n = vsnprintf(s->body, sizeof(s->body), fmt, ap);
	va_end(ap);
	s->body_len = n < 0 ? 0 : (size_t)n >= sizeof(s->body) ? sizeof(s->body) - 1 : (size_t)n;
	s->rbody = s->body;
	return true;
}

/* Makes s's answer 200 with the page (--page), sent from the page itself (it lives as long
 * as the process). */
static bool bs_answer_page(struct bstream *s)
{
	if (!bs_answer(s, 200, "text/html; charset=utf-8", "%s", ""))
		return false;
	s->rbody = be->page->html;
	s->body_len = be->page->len;
	return true;
}

/* Decides what the request gets once its headers are in, whatever carried it: a refusal
 * right away (the rest of the body is read and dropped, not stopped: RFC 9114 §4.1.1 and
 * RFC 9113 §8.1 let a server answer early, and STOP_SENDING after it stalls some clients),
 * or hashing until the body ends. Returns true if s was answered now. */
static bool bs_head(struct bstream *s, int64_t sid)
{
	if (strcmp(s->q.method, "POST"))
		return false; /* GET and the others are answered at the end of the request */
	if (!s->q.has_ctype)
		return bs_answer(s, 400, "text/plain", "no content-type\n");
	if (s->q.ctype_long || !h3_ctype_set_match(&be->types, s->q.ctype, strlen(s->q.ctype)))
		return bs_answer(s, 415, "text/plain", "content-type not served here\n");
	sha256_init(&s->sha);
	s->hashing = true;
	log_msg(LOG_DEBUG, "h3 backend %s: stream %" PRId64 ": POST %s: receiving", be->id, sid,
	        s->q.ctype);
	return false;
}

static void bs_body(struct bstream *s, const uint8_t *data, size_t n)
{
	if (s->hashing) {
		sha256_update(&s->sha, n, data);
		s->bytes += n;
		h3_stat_add(be_stats.body_bytes, n);
	}
}

/* The request ended: the checksum, or the answer to a GET. Returns true if s was answered
 * now. */
static bool bs_end(struct bstream *s, int64_t sid)
{
	uint8_t d[SHA256_DIGEST_SIZE];
	char hex[2 * SHA256_DIGEST_SIZE + 1];
	if (s->answered)
		return false;
	if (s->hashing) {
		sha256_digest(&s->sha, sizeof(d), d);
		for (size_t i = 0; i < sizeof(d); i++)
			snprintf(hex + 2 * i, 3, "%02x", d[i]);
		s->hashing = false;
		log_msg(LOG_DEBUG, "h3 backend %s: stream %" PRId64 ": %" PRIu64 " bytes, %s",
		        be->id, sid, s->bytes, hex);
		/* the type is echoed as received, parameters included, as a JSON string */
		char t[2 * H3_HEAD_FIELD_LEN];
		h3_qlog_str(t, sizeof(t), s->q.ctype, strlen(s->q.ctype));
		return bs_answer(s, 201, "application/json",
		                 "{\"checksum\":\"%s\",\"bytes\":%" PRIu64
		                 ",\"type\":\"%s\",\"backend\":\"%s\"}\n",
		                 hex, s->bytes, t, be->id);
	}
	if (!strcmp(s->q.method, "GET") || !strcmp(s->q.method, "HEAD")) {
		if (!strcmp(s->q.path, "/healthz"))
			return bs_answer(s, 200, "text/plain", "ok\n");
		/* a GET / with a type served here: an ingress routed it by that type */
		if (be->page &&
		    (h3_page_wanted(&s->q) ||
		     (!strcmp(s->q.method, "GET") && s->q.has_ctype && !s->q.ctype_long &&
		      h3_ctype_set_match(&be->types, s->q.ctype, strlen(s->q.ctype)) &&
		      (!strcmp(s->q.path, "/") || !strncmp(s->q.path, "/?", 2)))))
			return bs_answer_page(s);
		return bs_answer(s, 404, "text/plain", "not found\n");
	}
	return bs_answer(s, 405, "text/plain", "method not allowed\n");
}

/* Sends s's answer (bs_answer) on HTTP/3. */
static int respond(struct h3_conn *c, int64_t sid, struct bstream *s)
{
	char st[4], len[24];
	snprintf(st, sizeof(st), "%d", s->status);
	snprintf(len, sizeof(len), "%zu", s->body_len);
	const nghttp3_nv nva[] = {
	    {(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP3_NV_FLAG_NONE},
	    {(uint8_t *)"content-type", (uint8_t *)s->r_ctype, 12, strlen(s->r_ctype),
	     NGHTTP3_NV_FLAG_NONE},
	    {(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len), NGHTTP3_NV_FLAG_NONE},
	    {(uint8_t *)"x-peak-backend", (uint8_t *)be->id, 14, strlen(be->id),
	     NGHTTP3_NV_FLAG_NONE},
	};
	nghttp3_data_reader dr = {read_body};
	h3_qlog_event(c, "http:response",
	              "\"stream_id\":%" PRId64 ",\"status\":%d,"
	              "\"body_bytes\":%" PRIu64,
	              sid, s->status, s->bytes);
	int r = nghttp3_conn_submit_response(c->h, sid, nva, sizeof(nva) / sizeof(nva[0]), &dr);
	if (r) {
		log_rl(&be_rl, LOG_WARNING, "h3 backend: stream %" PRId64 ": response: %s", sid,
		       nghttp3_strerror(r));
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

/* Links a new stream at the head of a connection's list (h3_conn or h2_conn app_conn). */
static struct bstream *bstream_new(void **head)
{
	struct bstream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->next = *head;
	if (s->next)
		s->next->prev = s;
	*head = s;
	return s;
}

static void bstream_free(void **head, struct bstream *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

static int begin_headers(nghttp3_conn *h, int64_t sid, void *cu, void *su)
{
	if (su)
		return 0;
	struct h3_conn *c = cu;
	struct bstream *s = bstream_new(&c->app_conn);
	if (!s)
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	if (nghttp3_conn_set_stream_user_data(h, sid, s)) {
		bstream_free(&c->app_conn, s);
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

/* Streams still open when the connection goes (closed, timed out, or at exit). */
static void conn_free(struct h3_conn *c)
{
	while (c->app_conn)
		bstream_free(&c->app_conn, c->app_conn);
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
	if (s) {
		nghttp3_vec n = nghttp3_rcbuf_get_buf(name), v = nghttp3_rcbuf_get_buf(value);
		h3_req_head_field(&s->q, n.base, n.len, v.base, v.len);
	}
	return 0;
}

static int end_headers(nghttp3_conn *h, int64_t sid, int fin, void *cu, void *su)
{
	struct h3_conn *c = cu;
	struct bstream *s = su;
	(void)h;
	(void)fin;
	if (!s)
		return 0;
	if (c->qlog) {
		char m[64], p[2 * H3_HEAD_FIELD_LEN], t[2 * H3_HEAD_FIELD_LEN];
		h3_qlog_event(c, "http:request_headers",
		              "\"stream_id\":%" PRId64 ",\"method\":\"%s\",\"path\":\"%s\","
		              "\"content_type\":%s%s%s",
		              sid, h3_qlog_str(m, sizeof(m), s->q.method, strlen(s->q.method)),
		              h3_qlog_str(p, sizeof(p), s->q.path, strlen(s->q.path)),
		              s->q.has_ctype ? "\"" : "",
		              s->q.has_ctype
		                  ? h3_qlog_str(t, sizeof(t), s->q.ctype, strlen(s->q.ctype))
		                  : "null",
		              s->q.has_ctype ? "\"" : "");
	}
	return bs_head(s, sid) ? respond(c, sid, s) : 0;
}

static int recv_data(nghttp3_conn *h, int64_t sid, const uint8_t *data, size_t n, void *cu,
                     void *su)
{
	struct h3_conn *c = cu;
	struct bstream *s = su;
	(void)h;
	if (s)
		bs_body(s, data, n);
	h3_conn_consume(c, sid, n);
	return 0;
}

static int end_stream(nghttp3_conn *h, int64_t sid, void *cu, void *su)
{
	struct bstream *s = su;
	(void)h;
	return s && bs_end(s, sid) ? respond(cu, sid, s) : 0;
}

static int stream_close(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su)
{
	struct h3_conn *c = cu;
	(void)h;
	(void)code;
	if (su && !((struct bstream *)su)->answered)
		count_status(0);
	if (su)
		bstream_free(&c->app_conn, su);
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

static struct h3_endpoint h2ep; /* only its stats: the h2 server has no QUIC endpoint */
static struct h2_conn *h2conns;
static struct h3_replay *h2replay; /* early data: ClientHellos seen (replays refused) */
static uint64_t h2_early_accepted; /* connections whose early data was taken */

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
	if (st == &h2ep && h2replay)
		mbuf_printf(b,
		            "# HELP peak_h3_early_data_total TLS 1.3 early data over TCP: taken, "
		            "or refused as a replay (or with the anti-replay cache full).\n"
		            "# TYPE peak_h3_early_data_total counter\n"
		            "peak_h3_early_data_total{backend=\"%s\",result=\"accepted\"} %llu\n"
		            "peak_h3_early_data_total{backend=\"%s\",result=\"replay_refused\"} "
		            "%llu\n",
		            id, (unsigned long long)h3_stat_get(h2_early_accepted), id,
		            (unsigned long long)h3_stat_get(h2replay->refused));
	h3_endpoint_render(b, st, "backend", be->id);
}

static const struct h3_conn_ops backend_ops = {.http_new = http_new, .conn_free = conn_free};

/* ---- HTTP/2 over TLS/TCP (--proto h2): the same requests and answers ---- */

enum {
	BE_H2_EVENTS = 64,    /* epoll events per wait */
	BE_H2_TICK_MS = 1000, /* idle connections are looked for this often */
};

static ssize_t h2_read_body(nghttp2_session *h, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct bstream *s = src->ptr;
	(void)h;
	(void)sid;
	(void)ud;
	size_t k = s->body_len - s->body_off < len ? s->body_len - s->body_off : len;
	memcpy(buf, s->rbody + s->body_off, k);
	s->body_off += k;
	if (s->body_off == s->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)k;
}

/* Sends s's answer (bs_answer) on HTTP/2. */
static int h2_respond(nghttp2_session *h, int32_t sid, struct bstream *s)
{
	char st[4], len[24];
	snprintf(st, sizeof(st), "%d", s->status);
	snprintf(len, sizeof(len), "%zu", s->body_len);
	const nghttp2_nv nva[] = {
	    {(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-type", (uint8_t *)s->r_ctype, 12, strlen(s->r_ctype),
	     NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len), NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"x-peak-backend", (uint8_t *)be->id, 14, strlen(be->id),
	     NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_data_provider dp = {.source.ptr = s, .read_callback = h2_read_body};
	int r = nghttp2_submit_response(h, sid, nva, sizeof(nva) / sizeof(nva[0]), &dp);
	if (r) {
		log_rl(&be_rl, LOG_WARNING, "h3 backend: h2 stream %d: response: %s", sid,
		       nghttp2_strerror(r));
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int h2_begin_headers(nghttp2_session *h, const nghttp2_frame *f, void *ud)
{
	struct h2_conn *c = ud;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct bstream *s = bstream_new(&c->app_conn);
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* this stream is reset */
	if (nghttp2_session_set_stream_user_data(h, f->hd.stream_id, s)) {
		bstream_free(&c->app_conn, s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int h2_header(nghttp2_session *h, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                     const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	struct bstream *s = nghttp2_session_get_stream_user_data(h, f->hd.stream_id);
	if (!s || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	/* the size SETTINGS_MAX_HEADER_LIST_SIZE counts (RFC 9113 §6.5.2); nghttp2 leaves
	 * enforcing our own announcement to us: past it the fields are dropped and the
	 * request is answered 431 (RFC 6585 §5) */
	s->head_bytes += nl + vl + 32;
	if (s->head_bytes > H2_HEADER_LIST_MAX)
		s->head_big = true;
	else
		h3_req_head_field(&s->q, n, nl, v, vl);
	return 0;
}

static int h2_frame_recv(nghttp2_session *h, const nghttp2_frame *f, void *ud)
{
	(void)ud;
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	int32_t sid = f->hd.stream_id;
	struct bstream *s = nghttp2_session_get_stream_user_data(h, sid);
	if (!s)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
		bool now = s->head_big ? bs_answer(s, 431, "text/plain",
		                                   "request header fields too large\n")
		                       : bs_head(s, sid);
		if (now && h2_respond(h, sid, s))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) && bs_end(s, sid))
		return h2_respond(h, sid, s);
	return 0;
}

static int h2_data(nghttp2_session *h, uint8_t flags, int32_t sid, const uint8_t *d, size_t n,
                   void *ud)
{
	(void)flags;
	(void)ud;
	struct bstream *s = nghttp2_session_get_stream_user_data(h, sid);
	if (s)
		bs_body(s, d, n);
	/* hashed (or dropped): the window opens by as much (RFC 9113 §5.2) */
	nghttp2_session_consume(h, sid, n);
	return 0;
}

static int h2_stream_close(nghttp2_session *h, int32_t sid, uint32_t code, void *ud)
{
	struct h2_conn *c = ud;
	struct bstream *s = nghttp2_session_get_stream_user_data(h, sid);
	(void)code;
	if (!s)
		return 0;
	if (!s->answered)
		count_status(0);
	nghttp2_session_set_stream_user_data(h, sid, NULL);
	bstream_free(&c->app_conn, s);
	return 0;
}

static void h2_callbacks(nghttp2_session_callbacks *cbs)
{
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h2_begin_headers);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_data);
}

static void h2_handshake_done(struct h2_conn *c)
{
	h3_stats_handshake(&h2ep.stats, c->t_handshake - c->t_start);
	if (c->resumed)
		h3_stat_add(h2ep.stats.resumed, 1);
	if (c->early == H3_EARLY_ACCEPTED)
		h3_stat_add(h2_early_accepted, 1);
}

static void h2_conn_gone(int epfd, struct h2_conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->prev)
		c->prev->next = c->next;
	else
		h2conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	while (c->app_conn) {
		struct bstream *s = c->app_conn;
		if (!s->answered)
			count_status(0);
		bstream_free(&c->app_conn, s);
	}
	h2_conn_free(c);
	h3_stat_add(h2ep.stats.open, (uint64_t)-1);
}

/* Runs the connection after an event; frees it when it is over; else polls what it waits
 * for. */
static void h2_conn_step(int epfd, struct h2_conn *c)
{
	c->t_last = h3_now();
	if (h2_conn_io(c)) {
		h2_conn_gone(epfd, c);
		return;
	}
	uint32_t ev = (uint32_t)h2_conn_events(c);
	if (ev != c->polled) {
		struct epoll_event e = {.events = ev, .data.ptr = c};
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
		c->polled = ev;
	}
}

static void h2_accept(int epfd, int lfd, gnutls_certificate_credentials_t cred,
                      const gnutls_datum_t *ticket_key)
{
	static struct h2_conn_cfg cf = {.callbacks = h2_callbacks,
	                                .frame_recv = h2_frame_recv,
	                                .header = h2_header,
	                                .stream_close = h2_stream_close,
	                                .handshake_done = h2_handshake_done};
	cf.max_streams = (uint32_t)be->max_streams;
	cf.anti_replay = h2replay->ar;
	for (int i = 0; i < BE_H2_EVENTS; i++) {
		struct h2_conn *c = NULL;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			return;
		if (h3_stat_get(h2ep.stats.open) >= be->max_conns) {
			h3_stat_add(h2ep.stats.refused, 1);
			close(fd);
			continue;
		}
		if (h2_conn_server_new(&c, fd, cred, ticket_key, &cf, NULL))
			continue;
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) == -1) {
			h2_conn_free(c);
			continue;
		}
		c->polled = EPOLLIN;
		c->next = h2conns;
		if (c->next)
			c->next->prev = c;
		h2conns = c;
		h3_stat_add(h2ep.stats.open, 1);
		h3_stat_add(h2ep.stats.accepted, 1);
		h2_conn_step(epfd, c);
	}
}

static int run_h2(const struct h3_backend_opts *o, int sfd)
{
	gnutls_certificate_credentials_t cred = NULL;
	gnutls_datum_t ticket_key = {NULL, 0};
	uint8_t secret[H3_SECRET_LEN];
	struct metrics_srv *ms = NULL;
	struct h3_addr bound;
	static int lfd_tag, sfd_tag;
	int lfd = -1, epfd = -1, ret;
	char a[80];
	memset(&h2ep, 0, sizeof(h2ep));
	h3_qlog_set_dir(o->qlog_dir);
	if ((ret = h3_tls_server_cred(&cred, o->cert, o->key)))
		goto out;
	/* TLS 1.3 session tickets, their key from --secret-file as on QUIC (a restarted backend
	 * still resumes its clients' sessions) or random */
	if (o->secret)
		h3_secret_derive(secret, o->secret);
	if ((ret = h3_ticket_key_init(&ticket_key, o->secret ? secret : NULL)))
		goto out;
	/* early data as on QUIC: taken once per ClientHello, a replay's refused (the client
	 * sends it again after the handshake) */
	if (!(h2replay = h3_replay_new())) {
		ret = -ENOMEM;
		goto out;
	}
	if ((lfd = h2_tcp_listen(&o->listen, &bound)) < 0) {
		ret = lfd;
		h3_addr_format(&o->listen, a, sizeof(a));
		log_msg(LOG_ERR, "h3 backend: listen %s (tcp): %s", a, strerror(-ret));
		goto out;
	}
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		ret = -errno;
		goto out;
	}
	struct epoll_event el = {.events = EPOLLIN, .data.ptr = &lfd_tag};
	struct epoll_event es = {.events = EPOLLIN, .data.ptr = &sfd_tag};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &el) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &es) == -1) {
		ret = -errno;
		goto out;
	}
	if (o->metrics && !(ms = metrics_start(o->metrics, render, &h2ep))) {
		ret = -EINVAL;
		goto out;
	}
	h3_addr_format(&bound, a, sizeof(a));
	log_msg(LOG_INFO, "h3 backend %s: listening on %s (tcp, h2)", o->id, a);
	notify_ready("backend %s listening on %s (tcp, h2)", o->id, a);
	uint64_t next_tick = h3_now();
	for (;;) {
		struct epoll_event ev[BE_H2_EVENTS];
		int n = epoll_wait(epfd, ev, BE_H2_EVENTS, BE_H2_TICK_MS);
		if (n == -1 && errno != EINTR) {
			ret = -errno;
			break;
		}
		bool stop = false;
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == &lfd_tag) {
				h2_accept(epfd, lfd, cred, &ticket_key);
			} else if (ev[i].data.ptr == &sfd_tag) {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
				    si.ssi_signo != SIGHUP) {
					log_msg(LOG_INFO, "h3 backend %s: signal %u, stopping",
					        o->id, si.ssi_signo);
					stop = true;
				}
			} else {
				h2_conn_step(epfd, ev[i].data.ptr);
			}
		}
		if (stop) {
			notify_stopping();
			ret = 0;
			break;
		}
		/* a connection silent for the idle timeout is dropped (a handshake never
		 * finished, a peer gone without a FIN), so held slots come back */
		uint64_t now = h3_now();
		if (now >= next_tick) {
			next_tick = now + (uint64_t)BE_H2_TICK_MS * 1000000;
			for (struct h2_conn *c = h2conns, *nx; c; c = nx) {
				nx = c->next;
				if (now - c->t_last > (uint64_t)H3_IDLE_TIMEOUT_S * 1000000000 &&
				    !c->app_conn)
					h2_conn_gone(epfd, c);
			}
		}
	}
	/* a GOAWAY each, flushed as far as the sockets take it at once */
	while (h2conns) {
		struct h2_conn *c = h2conns;
		nghttp2_session_terminate_session(c->s, NGHTTP2_NO_ERROR);
		h2_conn_io(c);
		h2_conn_gone(epfd, c);
	}
	log_msg(LOG_INFO, "h3 backend %s: %" PRIu64 " connections (tcp), %" PRIu64 " refused",
	        o->id, h2ep.stats.accepted, h2ep.stats.refused);
out:
	if (ms)
		metrics_stop(ms);
	if (epfd != -1)
		close(epfd);
	if (lfd >= 0)
		close(lfd);
	if (cred)
		gnutls_certificate_free_credentials(cred);
	if (ticket_key.data) {
		gnutls_memset(ticket_key.data, 0, ticket_key.size);
		gnutls_free(ticket_key.data);
	}
	h3_replay_free(h2replay);
	h2replay = NULL;
	return ret;
}

int h3_backend_run(const struct h3_backend_opts *o)
{
	struct h3_endpoint ep;
	struct h3_limits lim = {
	    .max_streams_bidi = o->max_streams,
	    .max_stream_data = 1024 * 1024,
	    .max_data = 8 * 1024 * 1024,
	    .max_stream_window = 16 * 1024 * 1024,
	    .max_window = 32 * 1024 * 1024,
	};
	struct h3_retry_policy retry = {.always = o->retry, .above = o->max_conns / 2};
	struct metrics_srv *ms = NULL;
	uint8_t secret[H3_SECRET_LEN];
	char a[80];
	int sfd = signals_fd(1), ret;
	if (sfd < 0)
		return sfd;
	be = o;
	if (o->h2) {
		ret = run_h2(o, sfd);
		close(sfd);
		return ret;
	}
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
		int n = h3_poll(p, 2, h3_endpoint_deadline(&ep));
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
