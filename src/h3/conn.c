/* A QUIC connection with HTTP/3 on top: the ngtcp2 callbacks, the read and write paths. */
#define _GNU_SOURCE /* ppoll */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "../sys/log.h"
#include "qlog.h"
#include "tls.h"

static struct log_limit conn_rl;

uint64_t h3_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

int h3_poll(struct pollfd *p, nfds_t n, uint64_t deadline)
{
	struct timespec ts = {0, 0};
	uint64_t now = h3_now();
	if (deadline == UINT64_MAX)
		return ppoll(p, n, NULL, NULL);
	if (deadline > now) {
		ts.tv_sec = (time_t)((deadline - now) / NGTCP2_SECONDS);
		ts.tv_nsec = (long)((deadline - now) % NGTCP2_SECONDS);
	}
	return ppoll(p, n, &ts, NULL);
}

/* ngtcp2's own trace on stderr when PEAK_H3_TRACE is set (debugging aid). */
static void trace_printf(void *ud, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void trace_printf(void *ud, const char *fmt, ...)
{
	va_list ap;
	(void)ud;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static ngtcp2_printf trace_fn(void)
{
	const char *t = getenv("PEAK_H3_TRACE");
	return t && *t ? trace_printf : NULL;
}

int h3_cc_parse(const char *name)
{
	static const struct {
		const char *name;
		int algo;
	} t[] = {{"reno", NGTCP2_CC_ALGO_RENO},
	         {"cubic", NGTCP2_CC_ALGO_CUBIC},
	         {"bbr", NGTCP2_CC_ALGO_BBR},
	         {"bbr2", NGTCP2_CC_ALGO_BBR2}};
	size_t n = name ? strcspn(name, " \t\n") : 0;
	for (size_t i = 0; n && i < sizeof(t) / sizeof(t[0]); i++)
		if (strlen(t[i].name) == n && !strncmp(name, t[i].name, n))
			return t[i].algo;
	return -1;
}

static int cc_algo = -1;

/* Sets cc_algo once, for every thread (pthread_once: connections are made on several). */
static void cc_algo_read(void)
{
	int algo = -1;
	const char *e = getenv("PEAK_H3_CC");
	if (e && *e)
		algo = h3_cc_parse(e);
	if (algo < 0) {
		char buf[32] = "";
		FILE *f = fopen("/proc/sys/net/ipv4/tcp_congestion_control", "re");
		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = 0;
			fclose(f);
		}
		algo = h3_cc_parse(buf);
	}
	cc_algo = algo < 0 ? NGTCP2_CC_ALGO_CUBIC : algo;
}

int h3_cc_algo(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, cc_algo_read);
	return cc_algo;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	return ((struct h3_conn *)ref->user_data)->q;
}

static void rand_cb(uint8_t *dest, size_t n, const ngtcp2_rand_ctx *ctx)
{
	(void)ctx;
	(void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, n);
}

/* Binds the HTTP/3 control and QPACK streams (RFC 9114 §6.2, RFC 9204 §4.2). */
static int http_setup(struct h3_conn *c)
{
	int64_t ctrl, enc, dec;
	if (c->h)
		return 0;
	if (ngtcp2_conn_get_max_local_streams_uni(c->q) < 3) {
		log_rl(&conn_rl, LOG_NOTICE, "h3: peer allows fewer than 3 unidirectional streams");
		return -EPROTO;
	}
	if (c->ops->http_new(c))
		return -EPROTO;
	if (c->server) {
		const ngtcp2_transport_params *p = ngtcp2_conn_get_local_transport_params(c->q);
		nghttp3_conn_set_max_client_streams_bidi(c->h, p->initial_max_streams_bidi);
	}
	if (ngtcp2_conn_open_uni_stream(c->q, &ctrl, NULL) ||
	    nghttp3_conn_bind_control_stream(c->h, ctrl) ||
	    ngtcp2_conn_open_uni_stream(c->q, &enc, NULL) ||
	    ngtcp2_conn_open_uni_stream(c->q, &dec, NULL) ||
	    nghttp3_conn_bind_qpack_streams(c->h, enc, dec))
		return -EPROTO;
	return 0;
}

/* The server's transport parameters that 0-RTT must respect (RFC 9000 §7.4.1), kept beside
 * the session ticket as "name value" lines in FILE.tp. */
#define TP_FIELDS(X)                                                                               \
	X(initial_max_streams_bidi)                                                                \
	X(initial_max_streams_uni)                                                                 \
	X(initial_max_stream_data_bidi_local)                                                      \
	X(initial_max_stream_data_bidi_remote)                                                     \
	X(initial_max_stream_data_uni)                                                             \
	X(initial_max_data)                                                                        \
	X(active_connection_id_limit)

static int tp_path(char *out, size_t cap)
{
	const char *f = h3_tls_client_session_file();
	return f && snprintf(out, cap, "%s.tp", f) < (int)cap ? 0 : -ENAMETOOLONG;
}

static void tp_store(const ngtcp2_transport_params *p, ngtcp2_duration rtt)
{
	char path[4096], tmp[4200];
	if (tp_path(path, sizeof(path)) || snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= 4200)
		return;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd == -1 ? NULL : fdopen(fd, "w");
	if (!f) {
		if (fd != -1)
			close(fd);
		return;
	}
#define X(name) fprintf(f, #name " %llu\n", (unsigned long long)p->name);
	TP_FIELDS(X)
#undef X
	fprintf(f, "smoothed_rtt_ns %llu\n", (unsigned long long)rtt);
	if (fclose(f) || rename(tmp, path) == -1)
		unlink(tmp);
}

/* Reads FILE.tp; false if it is missing or incomplete (then no 0-RTT). *rtt gets the
 * smoothed RTT of the connection that stored it, or stays as it was. */
static bool tp_load(ngtcp2_transport_params *p, ngtcp2_duration *rtt)
{
	char path[4096], name[64];
	unsigned long long v;
	unsigned seen = 0, want = 0;
	FILE *f;
	if (tp_path(path, sizeof(path)) || !(f = fopen(path, "re")))
		return false;
	ngtcp2_transport_params_default(p);
#define X(name) want++;
	TP_FIELDS(X)
#undef X
	for (int lines = 0; lines < 32 && fscanf(f, "%63s %llu", name, &v) == 2; lines++) {
#define X(field)                                                                                   \
	if (!strcmp(name, #field)) {                                                               \
		p->field = v;                                                                      \
		seen++;                                                                            \
	}
		TP_FIELDS(X)
#undef X
		if (!strcmp(name, "smoothed_rtt_ns") && v >= NGTCP2_MILLISECONDS / 10 &&
		    v <= NGTCP2_DEFAULT_INITIAL_RTT)
			*rtt = v;
	}
	fclose(f);
	return seen == want;
}

uint64_t h3_token_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void h3_token_addr(const struct h3_addr *remote, struct h3_addr *out)
{
	*out = *remote;
	if (out->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&out->ss)->sin6_port = 0;
	else if (out->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&out->ss)->sin_port = 0;
}

/* Gives the client a token for its next connection (a NEW_TOKEN frame, RFC 9000 §8.1.3),
 * bound to its address (not its port, which a new connection changes) and sealed with the
 * endpoint's secret, so that a server doing Retry lets it in without one. */
static void send_new_token(struct h3_conn *c)
{
	uint8_t tok[NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN];
	struct h3_addr a;
	h3_token_addr(&c->remote, &a);
	ngtcp2_ssize n = ngtcp2_crypto_generate_regular_token(
	    tok, c->secret, H3_SECRET_LEN, (const ngtcp2_sockaddr *)&a.ss, a.len, h3_token_now());
	if (n > 0 && ngtcp2_conn_submit_new_token(c->q, tok, (size_t)n) == 0)
		c->new_token_sent = true;
}

static int handshake_completed(ngtcp2_conn *q, void *ud)
{
	struct h3_conn *c = ud;
	c->t_handshake = h3_now();
	if (c->server) {
		if (c->secret)
			send_new_token(c);
		return 0;
	}
	if (c->early == H3_EARLY_SENT) {
		c->early =
		    h3_tls_early_data_accepted(c->tls) ? H3_EARLY_ACCEPTED : H3_EARLY_REJECTED;
		/* GnuTLS tells only now: drop the 0-RTT streams (early_data_rejected) */
		if (c->early == H3_EARLY_REJECTED && ngtcp2_conn_early_data_rejected(q))
			return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (h3_tls_client_session_file()) {
		ngtcp2_conn_stat st;
		ngtcp2_conn_get_conn_stat(q, &st);
		tp_store(ngtcp2_conn_get_remote_transport_params(q), st.smoothed_rtt);
	}
	if (http_setup(c))
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static bool early_data_on;

void h3_conn_client_early_data(bool on)
{
	early_data_on = on;
}

static int early_data_rejected(ngtcp2_conn *q, void *ud)
{
	struct h3_conn *c = ud;
	(void)q;
	if (c->h) {
		nghttp3_conn_del(c->h);
		c->h = NULL;
	}
	if (c->ops->early_rejected)
		c->ops->early_rejected(c);
	return 0;
}

/* The server starts HTTP/3 as soon as it can send 1-RTT data (its SETTINGS go out in
 * 0.5-RTT, RFC 9114 §6.2.1), before the client's Finished arrives. */
static int recv_tx_key(ngtcp2_conn *q, ngtcp2_crypto_level level, void *ud)
{
	struct h3_conn *c = ud;
	(void)q;
	if (level != NGTCP2_CRYPTO_LEVEL_APPLICATION || !c->server)
		return 0;
	return http_setup(c) ? NGTCP2_ERR_CALLBACK_FAILURE : 0;
}

static int recv_stream_data(ngtcp2_conn *q, uint32_t flags, int64_t sid, uint64_t off,
                            const uint8_t *data, size_t n, void *ud, void *sud)
{
	struct h3_conn *c = ud;
	(void)off;
	(void)sud;
	if (!c->h) {
		h3_conn_consume(c, sid, n);
		return 0;
	}
	nghttp3_ssize r =
	    nghttp3_conn_read_stream(c->h, sid, data, n, flags & NGTCP2_STREAM_DATA_FLAG_FIN);
	if (r < 0) {
		log_rl(&conn_rl, LOG_NOTICE, "h3: stream %lld: %s", (long long)sid,
		       nghttp3_strerror((int)r));
		ngtcp2_connection_close_error_set_application_error(
		    &c->err, nghttp3_err_infer_quic_app_error_code((int)r), NULL, 0);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	/* what nghttp3 consumed itself (frame headers, QPACK); the application credits the
	 * body bytes it was given as it consumes them */
	ngtcp2_conn_extend_max_stream_offset(q, sid, (uint64_t)r);
	ngtcp2_conn_extend_max_offset(q, (uint64_t)r);
	return 0;
}

static int acked_stream_data_offset(ngtcp2_conn *q, int64_t sid, uint64_t off, uint64_t n, void *ud,
                                    void *sud)
{
	struct h3_conn *c = ud;
	(void)q;
	(void)off;
	(void)sud;
	if (c->h && nghttp3_conn_add_ack_offset(c->h, sid, n))
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int stream_close(ngtcp2_conn *q, uint32_t flags, int64_t sid, uint64_t code, void *ud,
                        void *sud)
{
	struct h3_conn *c = ud;
	(void)sud;
	if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET))
		code = NGHTTP3_H3_NO_ERROR;
	if (!c->h)
		return 0;
	int r = nghttp3_conn_close_stream(c->h, sid, code);
	if (r == NGHTTP3_ERR_STREAM_NOT_FOUND) {
		/* a stream nghttp3 never saw still counts against the peer's limit */
		if (ngtcp2_is_bidi_stream(sid) && !ngtcp2_conn_is_local_stream(q, sid))
			ngtcp2_conn_extend_max_streams_bidi(q, 1);
		return 0;
	}
	if (r) {
		ngtcp2_connection_close_error_set_application_error(
		    &c->err, nghttp3_err_infer_quic_app_error_code(r), NULL, 0);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

/* The peer abandoned its side of a stream (RESET_STREAM) or asked us to stop sending
 * (STOP_SENDING). A server also gives up its answer on a reset request, so the stream closes
 * and its state is freed now rather than at the connection's end. */
static int stream_reset(ngtcp2_conn *q, int64_t sid, uint64_t final_size, uint64_t code, void *ud,
                        void *sud)
{
	struct h3_conn *c = ud;
	(void)final_size;
	(void)code;
	(void)sud;
	if (c->h && nghttp3_conn_shutdown_stream_read(c->h, sid))
		return NGTCP2_ERR_CALLBACK_FAILURE;
	if (c->server && ngtcp2_is_bidi_stream(sid))
		ngtcp2_conn_shutdown_stream_write(q, sid, NGHTTP3_H3_REQUEST_CANCELLED);
	return 0;
}

static int stream_stop_sending(ngtcp2_conn *q, int64_t sid, uint64_t code, void *ud, void *sud)
{
	struct h3_conn *c = ud;
	(void)q;
	(void)code;
	(void)sud;
	if (c->h && nghttp3_conn_shutdown_stream_read(c->h, sid))
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int extend_max_local_streams_bidi(ngtcp2_conn *q, uint64_t max, void *ud)
{
	struct h3_conn *c = ud;
	(void)q;
	(void)max;
	if (c->h && c->ops->streams_more)
		c->ops->streams_more(c);
	return 0;
}

static int extend_max_remote_streams_bidi(ngtcp2_conn *q, uint64_t max, void *ud)
{
	struct h3_conn *c = ud;
	(void)q;
	if (c->h)
		nghttp3_conn_set_max_client_streams_bidi(c->h, max);
	return 0;
}

static int extend_max_stream_data(ngtcp2_conn *q, int64_t sid, uint64_t max, void *ud, void *sud)
{
	struct h3_conn *c = ud;
	(void)q;
	(void)max;
	(void)sud;
	if (c->h && nghttp3_conn_unblock_stream(c->h, sid))
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

/* Every ID we issue is mapped before the peer can learn it (RFC 9000 §5.1.1); its
 * stateless reset token derives from the endpoint's static secret (§10.3.2). */
static int get_new_connection_id(ngtcp2_conn *q, ngtcp2_cid *cid, uint8_t *token, size_t len,
                                 void *ud)
{
	struct h3_conn *c = ud;
	(void)q;
	for (int tries = 0; tries < 4; tries++) {
		if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, len))
			return NGTCP2_ERR_CALLBACK_FAILURE;
		cid->datalen = len;
		if (!c->map)
			break;
		int r = h3_cidmap_add(c->map, cid->data, len, c);
		if (r == 0) {
			c->nmapped++;
			break;
		}
		if (r != -EEXIST || tries == 3)
			return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (c->secret) {
		if (ngtcp2_crypto_generate_stateless_reset_token(token, c->secret, H3_SECRET_LEN,
		                                                 cid))
			return NGTCP2_ERR_CALLBACK_FAILURE;
	} else if (gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN)) {
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int remove_connection_id(ngtcp2_conn *q, const ngtcp2_cid *cid, void *ud)
{
	struct h3_conn *c = ud;
	(void)q;
	if (c->map && h3_cidmap_lookup(c->map, cid->data, cid->datalen) == c &&
	    h3_cidmap_del(c->map, cid->data, cid->datalen) == 0)
		c->nmapped--;
	return 0;
}

/* Unmaps id if it maps to c. */
static void unmap(struct h3_conn *c, const uint8_t *id, size_t len)
{
	if (h3_cidmap_lookup(c->map, id, len) == c && h3_cidmap_del(c->map, id, len) == 0)
		c->nmapped--;
}

/* A peer that moved (RFC 9000 §9) proved the new path; the packets already arrived by
 * connection ID. Logged at debug level only: any client can trigger it. */
static int path_validation(ngtcp2_conn *q, uint32_t flags, const ngtcp2_path *path,
                           ngtcp2_path_validation_result res, void *ud)
{
	struct h3_conn *c = ud;
	struct h3_addr a;
	char s[80];
	(void)q;
	(void)flags;
	if (res != NGTCP2_PATH_VALIDATION_RESULT_SUCCESS || path->remote.addrlen > sizeof(a.ss))
		return 0;
	memcpy(&a.ss, path->remote.addr, path->remote.addrlen);
	a.len = path->remote.addrlen;
	h3_addr_format(&a, s, sizeof(s));
	log_msg(LOG_DEBUG, "h3: %s path to %s validated", c->server ? "server" : "client", s);
	return 0;
}

static const ngtcp2_callbacks server_cbs = {
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = handshake_completed,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data,
    .acked_stream_data_offset = acked_stream_data_offset,
    .stream_close = stream_close,
    .rand = rand_cb,
    .get_new_connection_id = get_new_connection_id,
    .remove_connection_id = remove_connection_id,
    .update_key = ngtcp2_crypto_update_key_cb,
    .path_validation = path_validation,
    .stream_reset = stream_reset,
    .extend_max_remote_streams_bidi = extend_max_remote_streams_bidi,
    .extend_max_stream_data = extend_max_stream_data,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .stream_stop_sending = stream_stop_sending,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .recv_tx_key = recv_tx_key,
};

/* The server lost our connection (restart, another node) and said so statelessly
 * (RFC 9000 §10.3): ngtcp2 drains the connection; say why. */
static int recv_stateless_reset(ngtcp2_conn *q, const ngtcp2_pkt_stateless_reset *sr, void *ud)
{
	(void)q;
	(void)sr;
	(void)ud;
	log_msg(LOG_NOTICE, "h3: stateless reset received: the server lost the connection");
	return 0;
}

/* The server asked us to prove our address (RFC 9000 §8.1.2): count it, then let ngtcp2 start
 * over with the token. */
static int token_path(char *out, size_t cap)
{
	const char *f = h3_tls_client_session_file();
	return f && snprintf(out, cap, "%s.token", f) < (int)cap ? 0 : -ENAMETOOLONG;
}

/* The server's NEW_TOKEN token: kept in FILE.token (mode 0600, replaced whole) beside the
 * session ticket, for the next connection's Initial. */
static int recv_new_token(ngtcp2_conn *q, const ngtcp2_vec *token, void *ud)
{
	char path[4096], tmp[4200];
	(void)q;
	(void)ud;
	if (!token->len || token->len > H3_TOKEN_MAX || token_path(path, sizeof(path)) ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1)
		return 0;
	bool ok = write(fd, token->base, token->len) == (ssize_t)token->len;
	if (close(fd) == -1 || !ok || rename(tmp, path) == -1)
		unlink(tmp);
	return 0;
}

/* Reads FILE.token into tok (H3_TOKEN_MAX bytes) and removes the file: a token is used for one
 * connection attempt only, which brings the next (RFC 9000 §8.1.3: a reused token links
 * connections). Returns its length, 0 if none. */
static size_t token_load(uint8_t *tok)
{
	char path[4096];
	if (token_path(path, sizeof(path)))
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return 0;
	ssize_t n = read(fd, tok, H3_TOKEN_MAX);
	close(fd);
	unlink(path);
	return n > 0 ? (size_t)n : 0;
}

static int recv_retry(ngtcp2_conn *q, const ngtcp2_pkt_hd *hd, void *ud)
{
	struct h3_conn *c = ud;
	c->retries++;
	return ngtcp2_crypto_recv_retry_cb(q, hd, ud);
}

static const ngtcp2_callbacks client_cbs = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = handshake_completed,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data,
    .acked_stream_data_offset = acked_stream_data_offset,
    .stream_close = stream_close,
    .recv_stateless_reset = recv_stateless_reset,
    .recv_retry = recv_retry,
    .recv_new_token = recv_new_token,
    .extend_max_local_streams_bidi = extend_max_local_streams_bidi,
    .rand = rand_cb,
    .get_new_connection_id = get_new_connection_id,
    .remove_connection_id = remove_connection_id,
    .update_key = ngtcp2_crypto_update_key_cb,
    .stream_reset = stream_reset,
    .extend_max_stream_data = extend_max_stream_data,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .stream_stop_sending = stream_stop_sending,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .early_data_rejected = early_data_rejected,
};

static struct h3_conn *conn_alloc(int fd, const struct h3_addr *local, const struct h3_addr *remote,
                                  const struct h3_conn_ops *ops, void *app)
{
	struct h3_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->ref.get_conn = get_conn;
	c->ref.user_data = c;
	c->fd = fd;
	c->local = *local;
	c->remote = *remote;
	c->ops = ops;
	c->app = app;
	c->t_start = h3_now();
	ngtcp2_connection_close_error_default(&c->err);
	return c;
}

static ngtcp2_path path_of(const struct h3_addr *local, const struct h3_addr *remote)
{
	ngtcp2_path p = {
	    {(ngtcp2_sockaddr *)&local->ss, local->len},
	    {(ngtcp2_sockaddr *)&remote->ss, remote->len},
	    NULL,
	};
	return p;
}

int h3_conn_server_new(struct h3_conn **out, int fd, const struct h3_addr *local,
                       const struct h3_addr *remote, const ngtcp2_pkt_hd *hd,
                       const ngtcp2_cid *ocid, gnutls_certificate_credentials_t cred,
                       const gnutls_datum_t *ticket_key, gnutls_anti_replay_t ar,
                       const struct h3_limits *lim, struct h3_cidmap *map, const uint8_t *secret,
                       const struct h3_conn_ops *ops, void *app)
{
	ngtcp2_settings settings;
	ngtcp2_transport_params params;
	ngtcp2_cid scid;
	int ret = -ENOMEM;
	struct h3_conn *c = conn_alloc(fd, local, remote, ops, app);
	*out = NULL;
	if (!c)
		goto out;
	c->server = true;
	c->secret = secret;
	ret = -EIO;
	scid.datalen = H3_SCID_LEN;
	if (gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen))
		goto out;
	ngtcp2_settings_default(&settings);
	settings.initial_ts = c->t_start;
	settings.log_printf = trace_fn();
	settings.max_tx_udp_payload_size = H3_MAX_UDP_PAYLOAD;
	settings.cc_algo = (ngtcp2_cc_algo)h3_cc_algo();
	settings.max_stream_window = lim->max_stream_window;
	settings.max_window = lim->max_window;
	ngtcp2_transport_params_default(&params);
	params.initial_max_streams_bidi = lim->max_streams_bidi;
	params.initial_max_streams_uni = 3;
	params.initial_max_stream_data_bidi_remote = lim->max_stream_data;
	params.initial_max_stream_data_uni = 64 * 1024;
	params.initial_max_data = lim->max_data;
	if (lim->max_ack_delay)
		params.max_ack_delay = lim->max_ack_delay;
	params.max_idle_timeout = H3_IDLE_TIMEOUT_S * NGTCP2_SECONDS;
	params.active_connection_id_limit = 4;
	if (ocid) {
		/* after a Retry: the IDs the client started with and the one our Retry chose
		 * are authenticated through the transport parameters (RFC 9000 §7.3) */
		params.original_dcid = *ocid;
		params.retry_scid = hd->dcid;
		params.retry_scid_present = 1;
		settings.token = hd->token;
	} else {
		params.original_dcid = hd->dcid;
		/* a NEW_TOKEN token the endpoint verified (else it cleared it): the address
		 * counts as validated (no 3x amplification limit, RFC 9000 §8.1.3) */
		settings.token = hd->token;
	}
	params.stateless_reset_token_present = 1;
	if (ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token, secret,
	                                                 H3_SECRET_LEN, &scid))
		goto out;
	if (h3_qlog_enabled() && (c->qlog = h3_qlog_open(ocid ? ocid : &hd->dcid, "server"))) {
		settings.qlog.write = h3_qlog_write;
		settings.qlog.odcid = ocid ? *ocid : hd->dcid;
	}
	ngtcp2_path path = path_of(local, remote);
	if (ngtcp2_conn_server_new(&c->q, &hd->scid, &scid, &path, hd->version, &server_cbs,
	                           &settings, &params, NULL, c)) {
		c->q = NULL;
		goto out;
	}
	if ((ret = h3_tls_server_session(&c->tls, cred, ticket_key, ar, &c->ref)))
		goto out;
	ngtcp2_conn_set_tls_native_handle(c->q, c->tls);
	/* map our first ID and the client's chosen destination ID, which its Initial and
	 * 0-RTT packets carry until it learns ours (RFC 9000 §7.2) */
	c->map = map;
	if ((ret = h3_cidmap_add(map, scid.data, scid.datalen, c)))
		goto out;
	c->nmapped++;
	if ((ret = h3_cidmap_add(map, hd->dcid.data, hd->dcid.datalen, c)))
		goto out;
	c->nmapped++;
	c->first_dcid = hd->dcid;
	*out = c;
	c = NULL;
	ret = 0;
out:
	if (c && c->map)
		unmap(c, scid.data, scid.datalen);
	h3_conn_free(c);
	return ret;
}

int h3_conn_client_new(struct h3_conn **out, int fd, const struct h3_addr *local,
                       const struct h3_addr *remote, gnutls_certificate_credentials_t cred,
                       const char *host, bool verify, const struct h3_conn_ops *ops, void *app)
{
	ngtcp2_settings settings;
	ngtcp2_transport_params params;
	ngtcp2_cid scid, dcid;
	int ret = -ENOMEM;
	struct h3_conn *c = conn_alloc(fd, local, remote, ops, app);
	*out = NULL;
	if (!c)
		goto out;
	ret = -EIO;
	scid.datalen = H3_SCID_LEN;
	dcid.datalen = NGTCP2_MIN_INITIAL_DCIDLEN + 2;
	if (gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen) ||
	    gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen))
		goto out;
	ngtcp2_settings_default(&settings);
	settings.initial_ts = c->t_start;
	settings.log_printf = trace_fn();
	settings.max_tx_udp_payload_size = H3_MAX_UDP_PAYLOAD;
	settings.cc_algo = (ngtcp2_cc_algo)h3_cc_algo();
	/* a resumed connection may start from the last one's smoothed RTT (RFC 9002 §6.2.2);
	 * ngtcp2 paces the first flight by it, and with the default 333 ms a 0-RTT flight held
	 * back our TLS Finished for a quarter of a second (20 ms after a plain Initial) */
	ngtcp2_transport_params early;
	bool have_tp = h3_tls_client_session_file() && tp_load(&early, &settings.initial_rtt);
	ngtcp2_transport_params_default(&params);
	params.initial_max_streams_uni = 3;
	params.initial_max_stream_data_bidi_local = 256 * 1024;
	params.initial_max_stream_data_uni = 64 * 1024;
	params.initial_max_data = 4 * 1024 * 1024;
	params.max_idle_timeout = H3_IDLE_TIMEOUT_S * NGTCP2_SECONDS;
	params.active_connection_id_limit = 4;
	if (h3_qlog_enabled() && (c->qlog = h3_qlog_open(&dcid, "client")))
		settings.qlog.write = h3_qlog_write;
	uint8_t tok[H3_TOKEN_MAX];
	size_t toklen = h3_tls_client_session_file() ? token_load(tok) : 0;
	if (toklen) { /* copied by ngtcp2_conn_client_new */
		settings.token = (ngtcp2_vec){tok, toklen};
		c->token_used = true;
	}
	ngtcp2_path path = path_of(local, remote);
	if (ngtcp2_conn_client_new(&c->q, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &client_cbs,
	                           &settings, &params, NULL, c)) {
		c->q = NULL;
		goto out;
	}
	bool resuming;
	if ((ret = h3_tls_client_session(&c->tls, cred, &c->ref, host, verify, &resuming)))
		goto out;
	ngtcp2_conn_set_tls_native_handle(c->q, c->tls);
	if (resuming && early_data_on && have_tp) {
		ngtcp2_conn_set_early_remote_transport_params(c->q, &early);
		ret = -EPROTO;
		if (http_setup(c))
			goto out;
		c->early = H3_EARLY_SENT;
	}
	*out = c;
	c = NULL;
	ret = 0;
out:
	h3_conn_free(c);
	return ret;
}

void h3_conn_free(struct h3_conn *c)
{
	if (!c)
		return;
	if (c->map) {
		ngtcp2_cid ids[16];
		unmap(c, c->first_dcid.data, c->first_dcid.datalen);
		size_t n = c->q ? ngtcp2_conn_get_num_scid(c->q) : 0;
		if (n && n <= sizeof(ids) / sizeof(ids[0])) {
			ngtcp2_conn_get_scid(c->q, ids);
			for (size_t i = 0; i < n; i++)
				unmap(c, ids[i].data, ids[i].datalen);
		}
		/* whatever ngtcp2 no longer lists but is still ours (never seen; the count
		 * says whether a sweep is needed): no map entry may outlive c */
		for (size_t i = 0; c->nmapped && i < c->map->cap;) {
			struct h3_cidmap_slot *sl = &c->map->slot[i];
			if (sl->val == c && h3_cidmap_del(c->map, sl->id, sl->len) == 0)
				c->nmapped--; /* slot i is refilled by the shift: look again */
			else
				i++;
		}
	}
	if (c->ops && c->ops->conn_free)
		c->ops->conn_free(c);
	if (c->h)
		nghttp3_conn_del(c->h);
	if (c->q)
		ngtcp2_conn_del(c->q);
	if (c->tls)
		gnutls_deinit(c->tls);
	if (c->qlog)
		fclose(c->qlog);
	free(c);
}

/* Cleared when the kernel refuses UDP GSO once: then one datagram per sendmsg. */
static bool gso_ok = true;

/* Sends n bytes of datagrams on path, gso bytes each but the last (gso 0: one datagram). */
static void send_pkts(struct h3_conn *c, const ngtcp2_path *path, const uint8_t *p, size_t n,
                      size_t gso)
{
	struct h3_addr from, to;
	memcpy(&from.ss, path->local.addr, path->local.addrlen);
	from.len = path->local.addrlen;
	memcpy(&to.ss, path->remote.addr, path->remote.addrlen);
	to.len = path->remote.addrlen;
	int r = h3_udp_send(c->fd, c->server ? &from : NULL, &to, p, n, gso_ok ? gso : 0);
	if ((r == -EIO || r == -EINVAL || r == -ENOPROTOOPT || r == -EOPNOTSUPP) && gso_ok && gso &&
	    n > gso) {
		gso_ok = false;
		log_msg(LOG_NOTICE, "h3: UDP GSO refused (%s): one datagram per send",
		        strerror(-r));
		for (size_t off = 0; off < n; off += gso)
			r = h3_udp_send(c->fd, c->server ? &from : NULL, &to, p + off,
			                n - off < gso ? n - off : gso, 0);
	}
	if (r && r != -EAGAIN)
		log_rl(&conn_rl, LOG_WARNING, "h3: send: %s", strerror(-r));
}

static void send_pkt(struct h3_conn *c, const ngtcp2_path *path, const uint8_t *p, size_t n)
{
	send_pkts(c, path, p, n, 0);
}

/* Datagrams written back to back for one sendmsg: same path, each gso bytes but the last. */
struct txbatch {
	uint8_t buf[H3_GSO_SEGS * H3_MAX_UDP_PAYLOAD];
	size_t len, gso, segs;
	ngtcp2_path_storage ps;
};

static void batch_flush(struct h3_conn *c, struct txbatch *b)
{
	if (b->len)
		send_pkts(c, &b->ps.path, b->buf, b->len, b->segs > 1 ? b->gso : 0);
	b->len = b->segs = 0;
}

/* Adds the n-byte datagram just written at b->buf + b->len for path. A new path or a larger
 * datagram sends what is batched first; a shorter one (it must be last) or a full batch is
 * sent at once. */
static void batch_add(struct h3_conn *c, struct txbatch *b, const ngtcp2_path *path, size_t n)
{
	if (b->segs && (!ngtcp2_path_eq(&b->ps.path, path) || n > b->gso)) {
		size_t at = b->len;
		send_pkts(c, &b->ps.path, b->buf, at, b->segs > 1 ? b->gso : 0);
		memmove(b->buf, b->buf + at, n);
		b->len = b->segs = 0;
	}
	if (!b->segs) {
		ngtcp2_path_copy(&b->ps.path, path);
		b->gso = n;
	}
	b->len += n;
	b->segs++;
	if (n < b->gso || b->segs == (gso_ok ? H3_GSO_SEGS : 1))
		batch_flush(c, b);
}

static void start_closing(struct h3_conn *c, uint64_t now)
{
	if (!c->close_at)
		c->close_at = now + 3 * ngtcp2_conn_get_pto(c->q);
}

void h3_conn_close(struct h3_conn *c, uint64_t h3_error)
{
	uint8_t buf[H3_MAX_UDP_PAYLOAD];
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	uint64_t now = h3_now();
	if (c->dead || c->close_at || ngtcp2_conn_is_in_closing_period(c->q) ||
	    ngtcp2_conn_is_in_draining_period(c->q)) {
		start_closing(c, now);
		return;
	}
	if (!c->err.error_code && c->err.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT)
		ngtcp2_connection_close_error_set_application_error(&c->err, h3_error, NULL, 0);
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_ssize n =
	    ngtcp2_conn_write_connection_close(c->q, &ps.path, &pi, buf, sizeof(buf), &c->err, now);
	if (n > 0)
		send_pkt(c, &ps.path, buf, (size_t)n);
	start_closing(c, now);
}

/* Closes after a library error: the transport error it implies, or the TLS alert. */
static void fail(struct h3_conn *c, int liberr)
{
	if (!c->err.error_code) {
		if (liberr == NGTCP2_ERR_CRYPTO)
			ngtcp2_connection_close_error_set_transport_error_tls_alert(
			    &c->err, ngtcp2_conn_get_tls_alert(c->q), NULL, 0);
		else if (liberr != NGTCP2_ERR_CALLBACK_FAILURE)
			ngtcp2_connection_close_error_set_transport_error_liberr(&c->err, liberr,
			                                                         NULL, 0);
		else
			ngtcp2_connection_close_error_set_transport_error(
			    &c->err, NGTCP2_INTERNAL_ERROR, NULL, 0);
	}
	h3_conn_close(c, NGHTTP3_H3_INTERNAL_ERROR);
}

int h3_conn_read(struct h3_conn *c, const struct h3_addr *local, const struct h3_addr *remote,
                 const uint8_t *pkt, size_t n)
{
	ngtcp2_pkt_info pi = {0};
	if (c->dead)
		return -EPROTO;
	if (c->close_at)
		return 0; /* closing or draining: no more packets are processed (§10.2) */
	ngtcp2_path path = path_of(local, remote);
	int r = ngtcp2_conn_read_pkt(c->q, &path, &pi, pkt, n, h3_now());
	if (r == 0) {
		c->local = *local;
		c->remote = *remote;
		return 0;
	}
	switch (r) {
	case NGTCP2_ERR_DRAINING:
		start_closing(c, h3_now());
		return 0;
	case NGTCP2_ERR_DROP_CONN:
		c->dead = true;
		return -EPROTO;
	case NGTCP2_ERR_RETRY: /* no Retry tokens yet: refuse the connection */
		c->dead = true;
		return -EPROTO;
	default:
		log_rl(&conn_rl, LOG_NOTICE, "h3: read: %s", ngtcp2_strerror(r));
		fail(c, r);
		return -EPROTO;
	}
}

int h3_conn_write(struct h3_conn *c)
{
	static struct txbatch b; /* one thread; flushed before returning */
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	nghttp3_vec vec[16];
	uint64_t now = h3_now();
	if (c->dead || c->close_at || ngtcp2_conn_is_in_closing_period(c->q) ||
	    ngtcp2_conn_is_in_draining_period(c->q))
		return 0;
	size_t max_pkts = ngtcp2_conn_get_send_quantum(c->q) / H3_MAX_UDP_PAYLOAD + 1;
	size_t pkts = 0;
	bool idle_tried = false, quantum_used = false;
	ngtcp2_path_storage_zero(&ps);
	b.len = b.segs = 0;
	ngtcp2_path_storage_zero(&b.ps); /* points its addresses at its own storage */
	static int no_gso = -1; /* PEAK_H3_NO_GSO, for comparisons: read once, not per write */
	if (no_gso < 0)
		no_gso = getenv("PEAK_H3_NO_GSO") != NULL;
	if (no_gso)
		gso_ok = false;
	/* each pass yields one packet or moves one stream along; the bound is the send
	 * quantum plus the streams that can block in between */
	for (size_t guard = 0; guard < 100000; guard++) {
		int64_t sid = -1;
		int fin = 0;
		nghttp3_ssize nv = 0;
		if (c->h && ngtcp2_conn_get_max_data_left(c->q)) {
			nv = nghttp3_conn_writev_stream(c->h, &sid, &fin, vec, 16);
			if (nv < 0) {
				batch_flush(c, &b);
				ngtcp2_connection_close_error_set_application_error(
				    &c->err, nghttp3_err_infer_quic_app_error_code((int)nv), NULL,
				    0);
				h3_conn_close(c, NGHTTP3_H3_INTERNAL_ERROR);
				return -EPROTO;
			}
			/* one round of resuming per dry spell: a stream that pauses again at once
			 * must not spin this loop (a pending packet is then finished below) */
			if (sid != -1)
				idle_tried = false;
			else if (!idle_tried && c->ops->streams_idle) {
				idle_tried = true;
				if (c->ops->streams_idle(c))
					continue;
			}
		}
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
		if (fin)
			flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		ngtcp2_ssize ndata = -1;
		ngtcp2_ssize n = ngtcp2_conn_writev_stream(
		    c->q, &ps.path, &pi, b.buf + b.len, H3_MAX_UDP_PAYLOAD, &ndata, flags, sid,
		    (const ngtcp2_vec *)vec, (size_t)nv, now);
		if (n < 0) {
			switch (n) {
			case NGTCP2_ERR_STREAM_DATA_BLOCKED:
				nghttp3_conn_block_stream(c->h, sid);
				continue;
			case NGTCP2_ERR_STREAM_SHUT_WR:
				nghttp3_conn_shutdown_stream_write(c->h, sid);
				continue;
			case NGTCP2_ERR_WRITE_MORE:
				if (nghttp3_conn_add_write_offset(c->h, sid, (size_t)ndata))
					goto h3fail;
				continue;
			default:
				batch_flush(c, &b);
				fail(c, (int)n);
				return -EPROTO;
			}
		}
		if (ndata >= 0 && sid >= 0 &&
		    nghttp3_conn_add_write_offset(c->h, sid, (size_t)ndata))
			goto h3fail;
		if (n == 0)
			break;
		batch_add(c, &b, &ps.path, (size_t)n);
		if (++pkts >= max_pkts) {
			quantum_used = true;
			break;
		}
	}
	batch_flush(c, &b);
	/* Pacing starts only when a send quantum is used up. ngtcp2 0.12 spaces the next
	 * packet by what was just sent over the rate of the moment and keeps that time when
	 * an RTT sample arrives: before the first sample the rate comes from the 333 ms
	 * initial RTT, and a handshake flight of 1-3 KB held the next packet (the answer to
	 * the first request, our TLS Finished) back by 10-30 ms on loopback. A write that
	 * ends because there is nothing more to send, or no congestion window, needs no
	 * pacing; the bytes it sent are counted at the next update. */
	if (quantum_used)
		ngtcp2_conn_update_pkt_tx_time(c->q, now);
	return 0;
h3fail:
	batch_flush(c, &b);
	ngtcp2_connection_close_error_set_application_error(&c->err, NGHTTP3_H3_INTERNAL_ERROR,
	                                                    NULL, 0);
	h3_conn_close(c, NGHTTP3_H3_INTERNAL_ERROR);
	return -EPROTO;
}

void h3_conn_on_timer(struct h3_conn *c, uint64_t now)
{
	if (c->dead)
		return;
	if (c->close_at) {
		if (now >= c->close_at)
			c->dead = true;
		return;
	}
	if (ngtcp2_conn_get_expiry(c->q) > now)
		return;
	int r = ngtcp2_conn_handle_expiry(c->q, now);
	if (r == NGTCP2_ERR_IDLE_CLOSE) {
		c->dead = true;
		return;
	}
	if (r) {
		fail(c, r);
		return;
	}
	h3_conn_write(c);
}

uint64_t h3_conn_deadline(struct h3_conn *c)
{
	if (c->dead)
		return 0;
	if (c->close_at)
		return c->close_at;
	return ngtcp2_conn_get_expiry(c->q);
}

void h3_conn_consume(struct h3_conn *c, int64_t sid, size_t n)
{
	ngtcp2_conn_extend_max_stream_offset(c->q, sid, n);
	ngtcp2_conn_extend_max_offset(c->q, n);
}

int h3_cb_deferred_consume(nghttp3_conn *h, int64_t sid, size_t n, void *cu, void *su)
{
	(void)h;
	(void)su;
	h3_conn_consume(cu, sid, n);
	return 0;
}

int h3_cb_stop_sending(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su)
{
	struct h3_conn *c = cu;
	(void)h;
	(void)su;
	ngtcp2_conn_shutdown_stream_read(c->q, sid, code);
	return 0;
}

int h3_cb_reset_stream(nghttp3_conn *h, int64_t sid, uint64_t code, void *cu, void *su)
{
	struct h3_conn *c = cu;
	(void)h;
	(void)su;
	ngtcp2_conn_shutdown_stream_write(c->q, sid, code);
	return 0;
}

void h3_http_settings(nghttp3_settings *st)
{
	nghttp3_settings_default(st);
	st->max_field_section_size = 16 * 1024;
	st->qpack_max_dtable_capacity = 4096;
	st->qpack_blocked_streams = 16;
}

bool h3_field_is_raw(const uint8_t *name, size_t n, const char *s)
{
	return n == strlen(s) && !memcmp(name, s, n);
}

bool h3_field_is(nghttp3_rcbuf *name, const char *s)
{
	nghttp3_vec b = nghttp3_rcbuf_get_buf(name);
	return h3_field_is_raw(b.base, b.len, s);
}

void h3_field_copy_raw(char *dst, size_t cap, const uint8_t *v, size_t n, bool *too_long)
{
	if (n >= cap) {
		if (too_long)
			*too_long = true;
		n = cap - 1;
	}
	for (size_t i = 0; i < n; i++)
		dst[i] = v[i] < 0x20 || v[i] > 0x7e ? '?' : (char)v[i];
	dst[n] = 0;
}

void h3_field_copy(char *dst, size_t cap, nghttp3_rcbuf *v, bool *too_long)
{
	nghttp3_vec b = nghttp3_rcbuf_get_buf(v);
	h3_field_copy_raw(dst, cap, b.base, b.len, too_long);
}
