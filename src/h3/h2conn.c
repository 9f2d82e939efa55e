/* HTTP/2 over TLS/TCP: GnuTLS and nghttp2 on a non-blocking socket. */
#include "h2conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../sys/log.h"
#include "conn.h"

/* TLS 1.2 or 1.3; RFC 9113 §9.2.2's cipher suite blocklist is what GnuTLS's NORMAL leaves
 * out of TLS 1.2 anyway (AEAD suites with ephemeral key exchange come first). */
static const char H2_PRIORITY[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
static const gnutls_datum_t ALPN_H2 = {(unsigned char *)"h2", 2};

static struct log_limit h2_rl;

/* nghttp2 serializes frames into our buffer while it has room; WOULDBLOCK makes it keep the
 * rest for the next nghttp2_session_send. */
static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t n, int flags, void *ud)
{
	struct h2_conn *c = ud;
	(void)s;
	(void)flags;
	size_t room = sizeof(c->out) - c->out_len;
	if (!room)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (n > room)
		n = room;
	memcpy(c->out + c->out_len, data, n);
	c->out_len += n;
	return (ssize_t)n;
}

/* Notes the peer's first SETTINGS (a client must not count on a stream limit before it,
 * RFC 9113 §5.1.2: streams opened past it are refused), then the application's callback. */
static int frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2_conn *c = ud;
	if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
		c->settings = true;
	return c->cfg->frame_recv ? c->cfg->frame_recv(s, f, ud) : 0;
}

static int session_new(struct h2_conn *c, const struct h2_conn_cfg *cfg)
{
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_option *opt = NULL;
	int ret = -ENOMEM;
	if (nghttp2_session_callbacks_new(&cbs) || nghttp2_option_new(&opt))
		goto out;
	cfg->callbacks(cbs);
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_recv);
	/* window updates follow what the application used, not what arrived */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	int r = c->server ? nghttp2_session_server_new2(&c->s, cbs, c, opt)
	                  : nghttp2_session_client_new2(&c->s, cbs, c, opt);
	if (r)
		goto out;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->max_streams ? cfg->max_streams : 100},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
	     cfg->stream_window ? cfg->stream_window : H2_STREAM_WINDOW},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_HEADER_LIST_MAX},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	/* a client announces no stream limit of its own that matters (no push) */
	if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, c->server ? iv : iv + 1,
	                            c->server ? 4 : 3) ||
	    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW))
		goto out;
	ret = 0;
out:
	if (cbs)
		nghttp2_session_callbacks_del(cbs);
	if (opt)
		nghttp2_option_del(opt);
	return ret;
}

static int conn_new(struct h2_conn **out, int fd, bool server,
                    gnutls_certificate_credentials_t cred, const char *host, bool verify,
                    const struct h2_conn_cfg *cfg, void *app)
{
	struct h2_conn *c = calloc(1, sizeof(*c));
	unsigned char buf[16];
	int ret = -ENOMEM, one = 1;
	*out = NULL;
	if (!c) {
		close(fd);
		return ret;
	}
	c->fd = fd;
	c->server = server;
	c->cfg = cfg;
	c->app = app;
	c->t_start = h3_now();
	c->remote.len = sizeof(c->remote.ss);
	if (getpeername(fd, (struct sockaddr *)&c->remote.ss, &c->remote.len) == -1)
		c->remote.len = 0; /* a client still connecting */
	/* frames are written whole into records: no Nagle delay on the last one */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ret = -EINVAL;
	if (gnutls_init(&c->tls, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK)) {
		c->tls = NULL;
		goto out;
	}
	if (gnutls_priority_set_direct(c->tls, H2_PRIORITY, NULL) ||
	    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, cred) ||
	    /* MANDATORY: a peer that does not offer h2 fails the handshake */
	    gnutls_alpn_set_protocols(c->tls, &ALPN_H2, 1, GNUTLS_ALPN_MANDATORY))
		goto out;
	if (!server) {
		/* SNI carries names only (RFC 6066 §3) */
		bool literal =
		    inet_pton(AF_INET6, host, buf) == 1 || inet_pton(AF_INET, host, buf) == 1;
		if (!literal && gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, host, strlen(host)))
			goto out;
		if (verify)
			gnutls_session_set_verify_cert(c->tls, host, 0);
	}
	gnutls_transport_set_int(c->tls, fd);
	gnutls_handshake_set_timeout(c->tls, 0);
	if ((ret = session_new(c, cfg)))
		goto out;
	*out = c;
	return 0;
out:
	h2_conn_free(c);
	return ret;
}

int h2_conn_server_new(struct h2_conn **out, int fd, gnutls_certificate_credentials_t cred,
                       const struct h2_conn_cfg *cfg, void *app)
{
	return conn_new(out, fd, true, cred, NULL, false, cfg, app);
}

int h2_conn_client_new(struct h2_conn **out, int fd, gnutls_certificate_credentials_t cred,
                       const char *host, bool verify, const struct h2_conn_cfg *cfg, void *app)
{
	return conn_new(out, fd, false, cred, host, verify, cfg, app);
}

static int fail(struct h2_conn *c, int err, const char *what, const char *why)
{
	log_rl(&h2_rl, LOG_DEBUG, "h2: connection %s: %s", what, why);
	snprintf(c->why, sizeof(c->why), "%s: %s", what, why);
	c->dead = true;
	return err;
}

static int handshake(struct h2_conn *c)
{
	gnutls_datum_t p = {NULL, 0};
	int r = gnutls_handshake(c->tls);
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
		return -EAGAIN;
	if (r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PULL_ERROR)
		return fail(c, -EPROTO, "connect", strerror(errno)); /* refused, unreachable */
	if (r < 0)
		return fail(c, -EPROTO, "handshake", gnutls_strerror(r));
	if (gnutls_alpn_get_selected_protocol(c->tls, &p) || p.size != 2 || memcmp(p.data, "h2", 2))
		return fail(c, -EPROTO, "handshake", "no ALPN h2");
	c->hs_done = true;
	c->t_handshake = h3_now();
	if (!c->remote.len) {
		c->remote.len = sizeof(c->remote.ss);
		if (getpeername(c->fd, (struct sockaddr *)&c->remote.ss, &c->remote.len) == -1)
			c->remote.len = 0;
	}
	return 0;
}

/* Reads every record the socket has now; nghttp2 calls the application's callbacks. */
static int pull(struct h2_conn *c)
{
	static uint8_t buf[H2_RECORD_LEN + 256];
	for (;;) {
		ssize_t n = gnutls_record_recv(c->tls, buf, sizeof(buf));
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			return 0;
		if (n == 0)
			return fail(c, -ECONNRESET, "read", "closed by the peer");
		if (n < 0)
			return fail(c, -EPROTO, "read", gnutls_strerror((int)n));
		c->records_in++;
		ssize_t r = nghttp2_session_mem_recv(c->s, buf, (size_t)n);
		if (r < 0)
			return fail(c, -EPROTO, "frames", nghttp2_strerror((int)r));
	}
}

/* Writes what nghttp2 has to send, as far as the socket takes it. */
static int push(struct h2_conn *c)
{
	for (;;) {
		if (c->out_off < c->out_len) {
			size_t k = c->out_len - c->out_off;
			/* after GNUTLS_E_AGAIN the same bytes are offered again, as GnuTLS
			 * requires: nothing before out_off moves until they are taken */
			ssize_t n = gnutls_record_send(c->tls, c->out + c->out_off,
			                               k > H2_RECORD_LEN ? H2_RECORD_LEN : k);
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
				return 0;
			if (n < 0)
				return fail(c, -EPIPE, "write", gnutls_strerror((int)n));
			c->out_off += (size_t)n;
			if (c->out_off == c->out_len)
				c->out_off = c->out_len = 0;
			continue;
		}
		if (!nghttp2_session_want_write(c->s))
			return 0;
		int r = nghttp2_session_send(c->s);
		if (r)
			return fail(c, -EPROTO, "send", nghttp2_strerror(r));
		if (!c->out_len)
			return 0;
	}
}

int h2_conn_io(struct h2_conn *c)
{
	int r;
	if (c->dead)
		return -EPIPE;
	if (!c->hs_done && (r = handshake(c)))
		return r == -EAGAIN ? 0 : r;
	if ((r = pull(c)) || (r = push(c)))
		return r;
	/* both sides are done: GOAWAY exchanged and no stream left */
	if (!nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s) &&
	    c->out_off == c->out_len)
		return fail(c, -ECONNRESET, "end", "no more streams");
	return 0;
}

short h2_conn_events(const struct h2_conn *c)
{
	if (!c->hs_done)
		return gnutls_record_get_direction(c->tls) ? POLLIN | POLLOUT : POLLIN;
	return c->out_off < c->out_len || nghttp2_session_want_write(c->s) ? POLLIN | POLLOUT
	                                                                   : POLLIN;
}

void h2_conn_free(struct h2_conn *c)
{
	if (!c)
		return;
	if (c->s)
		nghttp2_session_del(c->s);
	c->s = NULL;
	if (c->tls)
		gnutls_deinit(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

int h2_tcp_connect(const struct h3_addr *peer)
{
	int fd = socket(peer->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&peer->ss, peer->len) == -1 &&
	    errno != EINPROGRESS) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int h2_tcp_listen(const struct h3_addr *addr, struct h3_addr *bound)
{
	int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	int ret;
	if (fd == -1)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
	bound->len = sizeof(bound->ss);
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) == -1 ||
	    listen(fd, 1024) == -1 ||
	    getsockname(fd, (struct sockaddr *)&bound->ss, &bound->len) == -1) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}
