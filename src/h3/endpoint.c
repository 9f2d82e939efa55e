/* The server side of QUIC: accept, dispatch by connection ID, timers. */
#include "endpoint.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <nettle/sha2.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "tls.h"

enum {
	EP_BATCH = 64,        /* datagrams per readable event before timers get a turn */
	EP_MMSG = 8,          /* messages per receive call (recvmmsg) */
	EP_CIDS_PER_CONN = 8, /* our IDs (active_connection_id_limit 4, spares) + the client's */
	EP_RETRY_TOKEN_TIMEOUT_S = 10,      /* a Retry token is good this long */
	EP_NEW_TOKEN_TIMEOUT_S = 24 * 3600, /* and a NEW_TOKEN token this long */
	EP_RESETS_PER_S = 100,              /* stateless resets sent per second at most */
	EP_VN_MIN_IN = 1200,                /* the smallest client Initial datagram (§14.1) */
	/* the shortest datagram answered with a reset: ours is one byte shorter and ngtcp2
	 * needs 1 + 5 random + 16 token bytes; a client waiting for flow control credit sends
	 * only small PING probes (about 40 bytes), which must get one too */
	EP_RESET_MIN_IN =
	    1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1,
};

static struct log_limit ep_rl;

const uint64_t h3_hs_bucket_us[H3_HS_BUCKETS] = {1000,  2500,   5000,   10000,  25000,
                                                 50000, 100000, 250000, 500000, 1000000};

/* Counts a connection's handshake time once, when it has completed. */
static void observe_handshake(struct h3_endpoint *ep, struct h3_conn *c)
{
	if (!c->t_handshake || c->hs_counted)
		return;
	c->hs_counted = true;
	h3_stats_handshake(&ep->stats, c->t_handshake - c->t_start);
	if (c->new_token_sent)
		h3_stat_add(ep->stats.new_tokens_sent, 1);
	if (gnutls_session_is_resumed(c->tls))
		h3_stat_add(ep->stats.resumed, 1);
}

void h3_stats_handshake(struct h3_endpoint_stats *st, uint64_t ns)
{
	uint64_t us = ns / 1000;
	size_t b = 0;
	while (b < H3_HS_BUCKETS && us > h3_hs_bucket_us[b])
		b++;
	h3_stat_add(st->hs_bucket[b], 1);
	h3_stat_add(st->hs_sum_us, us);
	h3_stat_add(st->hs_count, 1);
}

int h3_ticket_key_init(gnutls_datum_t *k, const uint8_t *secret)
{
	if (!secret)
		return gnutls_session_ticket_key_generate(k) ? -EIO : 0;
	enum { TICKET_KEY_LEN = 64 }; /* GnuTLS 3.7's ticket master key */
	k->data = gnutls_malloc(TICKET_KEY_LEN);
	if (!k->data)
		return -ENOMEM;
	k->size = TICKET_KEY_LEN;
	for (uint8_t half = 0; half < 2; half++) {
		struct sha256_ctx sha;
		uint8_t label[] = {'t', 'i', 'c', 'k', 'e', 't', (uint8_t)('0' + half)};
		sha256_init(&sha);
		sha256_update(&sha, sizeof(label), label);
		sha256_update(&sha, H3_SECRET_LEN, secret);
		sha256_digest(&sha, SHA256_DIGEST_SIZE, k->data + half * SHA256_DIGEST_SIZE);
	}
	return 0;
}

int h3_endpoint_init(struct h3_endpoint *ep, const struct h3_addr *listen, const char *cert,
                     const char *key, const struct h3_limits *lim, size_t max_conns,
                     const uint8_t *secret, const struct h3_retry_policy *retry,
                     const struct h3_conn_ops *ops, void *app)
{
	uint8_t mapkey[16];
	int ret;
	memset(ep, 0, sizeof(*ep));
	ep->fd = -1;
	ep->bound = *listen;
	ep->lim = *lim;
	ep->max_conns = max_conns;
	ep->ops = ops;
	ep->app = app;
	ep->retry = *retry;
	if (secret)
		memcpy(ep->secret, secret, sizeof(ep->secret));
	if ((!secret && gnutls_rnd(GNUTLS_RND_KEY, ep->secret, sizeof(ep->secret))) ||
	    gnutls_rnd(GNUTLS_RND_KEY, mapkey, sizeof(mapkey))) {
		ret = -EIO;
		goto out;
	}
	if ((ret = h3_tls_server_cred(&ep->cred, cert, key)))
		goto out;
	if ((ret = h3_ticket_key_init(&ep->ticket_key, secret ? ep->secret : NULL)))
		goto out;
	ret = -ENOMEM;
	if (!(ep->replay = h3_replay_new()))
		goto out;
	if ((ret = h3_cidmap_init(&ep->map, max_conns * EP_CIDS_PER_CONN * 4 / 3 + 1, mapkey)))
		goto out;
	if ((ret = h3_udp_bind(listen)) < 0) {
		char a[64];
		h3_addr_format(listen, a, sizeof(a));
		log_msg(LOG_ERR, "h3: bind %s: %s", a, strerror(-ret));
		goto out;
	}
	ep->fd = ret;
	if ((ret = h3_udp_reader_init(&ep->rx, EP_MMSG)))
		goto out;
	/* learn the port the kernel chose when listen asked for 0 */
	ep->bound.len = sizeof(ep->bound.ss);
	if (getsockname(ep->fd, (struct sockaddr *)&ep->bound.ss, &ep->bound.len) == -1) {
		ret = -errno;
		goto out;
	}
	ret = 0;
out:
	if (ret)
		h3_endpoint_fini(ep);
	return ret;
}

static void conn_unlink_free(struct h3_endpoint *ep, struct h3_conn **pp)
{
	struct h3_conn *c = *pp;
	*pp = c->next;
	h3_conn_free(c);
	ep->nconns--;
	h3_stat_add(ep->stats.open, (uint64_t)-1);
}

void h3_endpoint_fini(struct h3_endpoint *ep)
{
	while (ep->conns)
		conn_unlink_free(ep, &ep->conns);
	h3_cidmap_fini(&ep->map);
	h3_replay_free(ep->replay);
	ep->replay = NULL;
	if (ep->ticket_key.data) {
		gnutls_memset(ep->ticket_key.data, 0, ep->ticket_key.size);
		gnutls_free(ep->ticket_key.data);
		ep->ticket_key.data = NULL;
	}
	if (ep->cred)
		gnutls_certificate_free_credentials(ep->cred);
	ep->cred = NULL;
	if (ep->fd != -1)
		close(ep->fd);
	ep->fd = -1;
	h3_udp_reader_fini(&ep->rx);
}

/* Answers a client Initial with a Retry carrying a token bound to the client's address
 * and its original destination ID (RFC 9000 §8.1.2): no state is kept until the client
 * comes back with it, so a flood from spoofed addresses costs no memory. */
static void send_retry(struct h3_endpoint *ep, const struct h3_addr *local,
                       const struct h3_addr *remote, const ngtcp2_pkt_hd *hd, size_t n)
{
	uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN], buf[H3_MAX_UDP_PAYLOAD];
	ngtcp2_cid scid;
	scid.datalen = H3_SCID_LEN;
	if (gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen))
		return;
	ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token(
	    token, ep->secret, sizeof(ep->secret), hd->version,
	    (const ngtcp2_sockaddr *)&remote->ss, remote->len, &scid, &hd->dcid, h3_now());
	if (tl < 0)
		return;
	/* a Retry is never larger than 3 times what came in (§8.1) */
	size_t cap = n * 3 < sizeof(buf) ? n * 3 : sizeof(buf);
	ngtcp2_ssize w = ngtcp2_crypto_write_retry(buf, cap, hd->version, &hd->scid, &scid,
	                                           &hd->dcid, token, (size_t)tl);
	if (w < 0)
		return;
	if (h3_udp_send(ep->fd, local, remote, buf, (size_t)w, 0) == 0)
		h3_stat_add(ep->stats.retries, 1);
}

/* Whether hd's token is a NEW_TOKEN token of ours for remote's address, not expired. */
static bool new_token_ok(struct h3_endpoint *ep, const struct h3_addr *remote,
                         const ngtcp2_pkt_hd *hd)
{
	struct h3_addr a;
	h3_token_addr(remote, &a);
	if (ngtcp2_crypto_verify_regular_token(hd->token.base, hd->token.len, ep->secret,
	                                       sizeof(ep->secret), (const ngtcp2_sockaddr *)&a.ss,
	                                       a.len, EP_NEW_TOKEN_TIMEOUT_S * NGTCP2_SECONDS,
	                                       h3_token_now())) {
		h3_stat_add(ep->stats.new_tokens_bad, 1);
		return false;
	}
	h3_stat_add(ep->stats.new_tokens_ok, 1);
	return true;
}

static bool retry_required(const struct h3_endpoint *ep)
{
	return ep->retry.always || (ep->retry.above && ep->nconns >= ep->retry.above);
}

/* A short-header datagram for a connection we do not know (we restarted, or it went): a
 * stateless reset lets the client give up now instead of at its idle timeout (RFC 9000
 * §10.3). It is smaller than what came in (no reset loops between two endpoints, §10.3.3)
 * and rate-limited (each costs a hash). */
static void send_reset(struct h3_endpoint *ep, const struct h3_addr *local,
                       const struct h3_addr *remote, const ngtcp2_version_cid *vc, size_t n)
{
	uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], rnd[64], buf[128];
	ngtcp2_cid dcid;
	uint64_t s = h3_now() / NGTCP2_SECONDS;
	if (n < EP_RESET_MIN_IN || vc->dcidlen != H3_SCID_LEN)
		return;
	if (s != ep->reset_window_s) {
		ep->reset_window_s = s;
		ep->resets_in_window = 0;
	}
	if (ep->resets_in_window >= EP_RESETS_PER_S)
		return;
	ep->resets_in_window++;
	ngtcp2_cid_init(&dcid, vc->dcid, vc->dcidlen);
	/* 1 byte of header, random bytes, 16 of token: one byte shorter than the datagram,
	 * at most 64 random bytes */
	size_t randlen = n - 1 - sizeof(token);
	if (randlen > sizeof(rnd))
		randlen = sizeof(rnd);
	if (ngtcp2_crypto_generate_stateless_reset_token(token, ep->secret, sizeof(ep->secret),
	                                                 &dcid) ||
	    gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen))
		return;
	ngtcp2_ssize w = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token, rnd, randlen);
	if (w > 0 && h3_udp_send(ep->fd, local, remote, buf, (size_t)w, 0) == 0)
		h3_stat_add(ep->stats.resets, 1);
}

/* A long-header datagram of a version we do not speak: list ours (RFC 9000 §6.1), only
 * for datagrams of at least 1200 bytes (what a client's first Initial must be, §14.1; the
 * answer is far smaller, so no amplification) and within the reset rate limit. */
static void send_version_negotiation(struct h3_endpoint *ep, const struct h3_addr *local,
                                     const struct h3_addr *remote, const ngtcp2_version_cid *vc,
                                     size_t n)
{
	static const uint32_t versions[] = {NGTCP2_PROTO_VER_V1};
	uint8_t buf[256], unused;
	uint64_t s = h3_now() / NGTCP2_SECONDS;
	if (n < EP_VN_MIN_IN) {
		h3_stat_add(ep->stats.dropped, 1);
		return;
	}
	if (s != ep->reset_window_s) {
		ep->reset_window_s = s;
		ep->resets_in_window = 0;
	}
	if (ep->resets_in_window >= EP_RESETS_PER_S || gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1))
		return;
	ep->resets_in_window++;
	/* our answer swaps the client's IDs */
	ngtcp2_ssize w = ngtcp2_pkt_write_version_negotiation(
	    buf, sizeof(buf), unused, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, versions, 1);
	if (w > 0 && h3_udp_send(ep->fd, local, remote, buf, (size_t)w, 0) == 0)
		h3_stat_add(ep->stats.version_negotiations, 1);
}

/* A datagram whose destination ID maps to no connection: a client Initial starts one (after
 * a Retry round trip when the policy asks for it); a short-header packet gets a stateless
 * reset; anything else is dropped. */
static void accept_new(struct h3_endpoint *ep, const struct h3_addr *local,
                       const struct h3_addr *remote, const ngtcp2_version_cid *vc,
                       const uint8_t *pkt, size_t n)
{
	ngtcp2_pkt_hd hd;
	ngtcp2_cid ocid;
	const ngtcp2_cid *pocid = NULL;
	struct h3_conn *c = NULL;
	/* 1-RTT packets, and Handshake packets (QUIC v1 long header type 2): their destination
	 * is an ID we issued, so a miss means a connection we lost. A client whose server died
	 * before confirming the handshake retransmits Handshake packets only; it holds our
	 * token from the transport parameters, so a reset works for it too (RFC 9000 §10.3).
	 * Initial and 0-RTT packets carry IDs the client chose: never reset those. */
	bool handshake =
	    (pkt[0] & 0x80) && vc->version == NGTCP2_PROTO_VER_V1 && ((pkt[0] & 0x30) >> 4) == 2;
	if (!(pkt[0] & 0x80) || handshake) {
		send_reset(ep, local, remote, vc, n);
		h3_stat_add(ep->stats.dropped, 1);
		return;
	}
	if (ngtcp2_accept(&hd, pkt, n) != 0) {
		h3_stat_add(ep->stats.dropped, 1);
		return;
	}
	if (ep->nconns >= ep->max_conns) {
		h3_stat_add(ep->stats.refused, 1);
		log_rl(&ep_rl, LOG_WARNING, "h3: %zu connections: refusing new ones", ep->nconns);
		return;
	}
	if (hd.token.len && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
		if (ngtcp2_crypto_verify_retry_token(
		        &ocid, hd.token.base, hd.token.len, ep->secret, sizeof(ep->secret),
		        hd.version, (const ngtcp2_sockaddr *)&remote->ss, remote->len, &hd.dcid,
		        EP_RETRY_TOKEN_TIMEOUT_S * NGTCP2_SECONDS, h3_now())) {
			/* forged, expired or from another address: drop, no state */
			h3_stat_add(ep->stats.bad_tokens, 1);
			return;
		}
		pocid = &ocid;
	} else if (hd.token.len && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR &&
	           new_token_ok(ep, remote, &hd)) {
		/* the client proved this address on an earlier connection: no Retry */
	} else if (retry_required(ep)) {
		send_retry(ep, local, remote, &hd, n);
		return;
	} else {
		hd.token.base = NULL; /* no token, or one that did not verify: ignore it */
		hd.token.len = 0;
	}
	int r =
	    h3_conn_server_new(&c, ep->fd, local, remote, &hd, pocid, ep->cred, &ep->ticket_key,
	                       ep->replay->ar, &ep->lim, &ep->map, ep->secret, ep->ops, ep->app);
	if (r) {
		h3_stat_add(ep->stats.refused, 1);
		log_rl(&ep_rl, LOG_WARNING, "h3: new connection: %s", strerror(-r));
		return;
	}
	c->next = ep->conns;
	ep->conns = c;
	ep->nconns++;
	h3_stat_add(ep->stats.open, 1);
	h3_stat_add(ep->stats.accepted, 1);
	if (h3_conn_read(c, local, remote, pkt, n) == 0)
		h3_conn_write(c);
}

/* The connection's answer to what it just read (acknowledgements, stream data): once per
 * run of datagrams for it, not once per datagram. */
static void conn_flush(struct h3_endpoint *ep, struct h3_conn *c, bool ok)
{
	if (!c)
		return;
	if (ok)
		h3_conn_write(c);
	observe_handshake(ep, c);
}

/* One datagram of n bytes; *last and *last_ok are the connection that read the datagrams
 * before it and whether all went well (its write is held until another connection or the
 * end of the batch). */
static void on_datagram(struct h3_endpoint *ep, const struct h3_addr *to,
                        const struct h3_addr *from, const uint8_t *pkt, size_t n,
                        struct h3_conn **last, bool *last_ok)
{
	ngtcp2_version_cid vc;
	int r = ngtcp2_pkt_decode_version_cid(&vc, pkt, n, H3_SCID_LEN);
	if (r == NGTCP2_ERR_VERSION_NEGOTIATION) {
		send_version_negotiation(ep, to, from, &vc, n);
		return;
	}
	if (r) {
		h3_stat_add(ep->stats.dropped, 1);
		return;
	}
	struct h3_conn *c = h3_cidmap_lookup(&ep->map, vc.dcid, vc.dcidlen);
	if (c != *last) {
		conn_flush(ep, *last, *last_ok);
		*last = NULL;
	}
	if (!c) {
		accept_new(ep, to, from, &vc, pkt, n);
		return;
	}
	if (*last != c) {
		*last = c;
		*last_ok = true;
	}
	if (h3_conn_read(c, to, from, pkt, n))
		*last_ok = false;
}

/* A read batch's state: the connection that read the datagrams before and whether all went
 * well (its write is held until another connection or the end of the batch). */
struct ep_batch {
	struct h3_endpoint *ep;
	struct h3_conn *last;
	bool last_ok;
};

static int ep_datagram(void *arg, const struct h3_addr *to, const struct h3_addr *from,
                       const uint8_t *p, size_t n)
{
	struct ep_batch *b = arg;
	on_datagram(b->ep, to, from, p, n, &b->last, &b->last_ok);
	return 0;
}

void h3_endpoint_on_readable(struct h3_endpoint *ep)
{
	/* up to EP_MMSG messages a call (many clients' datagrams), each one datagram or with
	 * UDP GRO several of one flow back to back */
	struct ep_batch b = {ep, NULL, false};
	ssize_t r = h3_udp_read(&ep->rx, ep->fd, &ep->bound, EP_BATCH, ep_datagram, &b);
	if (r < 0)
		log_rl(&ep_rl, LOG_WARNING, "h3: recv: %s", strerror((int)-r));
	conn_flush(ep, b.last, b.last_ok);
}

void h3_endpoint_on_timer(struct h3_endpoint *ep)
{
	uint64_t now = h3_now();
	for (struct h3_conn **pp = &ep->conns; *pp;) {
		struct h3_conn *c = *pp;
		uint64_t d = h3_conn_deadline(c);
		if (!c->dead && d <= now)
			h3_conn_on_timer(c, now);
		if (c->dead)
			conn_unlink_free(ep, pp);
		else
			pp = &c->next;
	}
}

uint64_t h3_endpoint_deadline(struct h3_endpoint *ep)
{
	uint64_t next = UINT64_MAX;
	for (struct h3_conn *c = ep->conns; c; c = c->next) {
		uint64_t d = h3_conn_deadline(c);
		if (d < next)
			next = d;
	}
	return next;
}

void h3_endpoint_close_all(struct h3_endpoint *ep)
{
	for (struct h3_conn *c = ep->conns; c; c = c->next)
		h3_conn_close(c, NGHTTP3_H3_NO_ERROR);
}

void h3_endpoint_render(struct mbuf *b, const struct h3_endpoint *ep, const char *lname,
                        const char *lvalue)
{
	const struct h3_endpoint_stats *st = &ep->stats;
	char id[METRICS_LABEL_MAX];
	metrics_label(id, sizeof(id), lvalue);
	const struct {
		const char *name, *help;
		const uint64_t *v;
	} ctr[] = {
	    {"connections_total", "QUIC connections accepted.", &st->accepted},
	    {"datagrams_dropped_total", "Datagrams for no connection that started none.",
	     &st->dropped},
	    {"initials_refused_total", "Initials refused at the connection limit.", &st->refused},
	    {"retries_total", "Retry packets sent (address validation).", &st->retries},
	    {"bad_tokens_total", "Initials with a Retry token that did not verify.",
	     &st->bad_tokens},
	    {"stateless_resets_total", "Stateless resets sent.", &st->resets},
	    {"version_negotiations_total", "Version Negotiation packets sent.",
	     &st->version_negotiations},
	    {"resumed_total", "Handshakes that resumed a TLS session (a session ticket).",
	     &st->resumed},
	    {"new_tokens_sent_total", "NEW_TOKEN tokens given to clients.", &st->new_tokens_sent},
	    {"new_tokens_accepted_total", "Initials whose NEW_TOKEN token verified (no Retry).",
	     &st->new_tokens_ok},
	    {"new_tokens_rejected_total",
	     "Initials whose NEW_TOKEN token did not verify (treated as none).",
	     &st->new_tokens_bad},
	    {"udp_receive_calls_total", "Receive system calls (recvmmsg) that returned data.",
	     &ep->rx.st.calls},
	    {"udp_messages_received_total",
	     "Messages those calls returned (several per call with many clients).",
	     &ep->rx.st.msgs},
	    {"udp_datagrams_received_total",
	     "Datagrams in those messages (UDP GRO: several of one flow per message).",
	     &ep->rx.st.dgrams},
	};
	for (size_t i = 0; i < sizeof(ctr) / sizeof(ctr[0]); i++)
		mbuf_printf(b,
		            "# HELP peak_h3_%s %s\n# TYPE peak_h3_%s counter\n"
		            "peak_h3_%s{%s=\"%s\"} %llu\n",
		            ctr[i].name, ctr[i].help, ctr[i].name, ctr[i].name, lname, id,
		            (unsigned long long)__atomic_load_n(ctr[i].v, __ATOMIC_RELAXED));
	mbuf_printf(b,
	            "# HELP peak_h3_connections Open QUIC connections.\n"
	            "# TYPE peak_h3_connections gauge\npeak_h3_connections{%s=\"%s\"} %llu\n",
	            lname, id, (unsigned long long)h3_stat_get(st->open));
	mbuf_printf(b, "# HELP peak_h3_handshake_seconds QUIC handshake time, first Initial to "
	               "the client's Finished.\n# TYPE peak_h3_handshake_seconds histogram\n");
	char labels[METRICS_LABEL_MAX + 64];
	snprintf(labels, sizeof(labels), "%s=\"%s\"", lname, id);
	h3_hs_render(b, "peak_h3_handshake_seconds", st, labels);
}

void h3_hs_render(struct mbuf *b, const char *name, const struct h3_endpoint_stats *st,
                  const char *labels)
{
	uint64_t cum = 0;
	for (size_t i = 0; i <= H3_HS_BUCKETS; i++) {
		cum += h3_stat_get(st->hs_bucket[i]);
		if (i < H3_HS_BUCKETS)
			mbuf_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels,
			            (double)h3_hs_bucket_us[i] / 1e6, (unsigned long long)cum);
		else
			mbuf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels,
			            (unsigned long long)cum);
	}
	mbuf_printf(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
	            (double)h3_stat_get(st->hs_sum_us) / 1e6, name, labels,
	            (unsigned long long)h3_stat_get(st->hs_count));
}

void h3_secret_derive(uint8_t out[static H3_SECRET_LEN], const uint8_t in[static 16])
{
	struct sha256_ctx sha;
	sha256_init(&sha);
	sha256_update(&sha, 15, (const uint8_t *)"peak h3 secret\n");
	sha256_update(&sha, 16, in);
	sha256_digest(&sha, H3_SECRET_LEN, out);
}
