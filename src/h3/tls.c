/* GnuTLS sessions configured for QUIC. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "../sys/log.h"

/* QUIC forbids TLS 1.2 and the middlebox compatibility mode (RFC 9001 §4.2, §8.4). */
static const char PRIORITY[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:%DISABLE_TLS13_COMPAT_MODE";
static const gnutls_datum_t ALPN_H3 = {(unsigned char *)"h3", 2};

int h3_tls_server_cred(gnutls_certificate_credentials_t *cred, const char *cert, const char *key)
{
	int r = gnutls_certificate_allocate_credentials(cred);
	if (r < 0)
		goto fail;
	r = gnutls_certificate_set_x509_key_file(*cred, cert, key, GNUTLS_X509_FMT_PEM);
	if (r < 0)
		goto fail;
	return 0;
fail:
	log_msg(LOG_ERR, "h3: certificate %s, key %s: %s", cert, key, gnutls_strerror(r));
	if (*cred)
		gnutls_certificate_free_credentials(*cred);
	*cred = NULL;
	return -EINVAL;
}

int h3_tls_client_cred(gnutls_certificate_credentials_t *cred, const char *ca)
{
	int r = gnutls_certificate_allocate_credentials(cred);
	if (r < 0)
		goto fail;
	r = ca ? gnutls_certificate_set_x509_trust_file(*cred, ca, GNUTLS_X509_FMT_PEM)
	       : gnutls_certificate_set_x509_system_trust(*cred);
	if (r < 0)
		goto fail;
	if (ca && r == 0) {
		r = GNUTLS_E_NO_CERTIFICATE_FOUND;
		goto fail;
	}
	return 0;
fail:
	log_msg(LOG_ERR, "h3: trust %s: %s", ca ? ca : "(system)", gnutls_strerror(r));
	if (*cred)
		gnutls_certificate_free_credentials(*cred);
	*cred = NULL;
	return -EINVAL;
}

static int session_common(gnutls_session_t s, gnutls_certificate_credentials_t cred,
                          ngtcp2_crypto_conn_ref *ref, unsigned alpn_flags)
{
	int r = gnutls_priority_set_direct(s, PRIORITY, NULL);
	if (r == 0)
		r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
	if (r == 0)
		r = gnutls_alpn_set_protocols(s, &ALPN_H3, 1, alpn_flags);
	if (r != 0) {
		log_msg(LOG_ERR, "h3: tls session: %s", gnutls_strerror(r));
		return -EINVAL;
	}
	gnutls_session_set_ptr(s, ref);
	return 0;
}

int h3_tls_server_session(gnutls_session_t *out, gnutls_certificate_credentials_t cred,
                          const gnutls_datum_t *ticket_key, gnutls_anti_replay_t ar,
                          ngtcp2_crypto_conn_ref *ref)
{
	gnutls_session_t s = NULL;
	int ret = -EINVAL;
	unsigned flags = GNUTLS_SERVER | GNUTLS_NO_END_OF_EARLY_DATA;
	if (ticket_key && ar)
		flags |= GNUTLS_ENABLE_EARLY_DATA;
	if (gnutls_init(&s, flags) != 0) {
		s = NULL;
		goto out;
	}
	if (ngtcp2_crypto_gnutls_configure_server_session(s) != 0)
		goto out;
	if (ticket_key && gnutls_session_ticket_enable_server(s, ticket_key) != 0)
		goto out;
	if (ticket_key && ar) {
		gnutls_anti_replay_enable(s, ar);
		/* QUIC bounds early data by its own flow control (RFC 9001 §4.6.1) */
		gnutls_record_set_max_early_data_size(s, 0xffffffffu);
	}
	/* MANDATORY: a client that does not offer h3 fails the handshake */
	ret = session_common(s, cred, ref, GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE);
out:
	if (ret && s) {
		gnutls_deinit(s);
		s = NULL;
	}
	*out = s;
	return ret;
}

static const char *session_file;

void h3_tls_client_set_session_file(const char *path)
{
	session_file = path;
}

const char *h3_tls_client_session_file(void)
{
	return session_file;
}

void h3_tls_session_file_write(const gnutls_datum_t *d)
{
	char tmp[4096];
	if (!session_file || !d->size)
		return;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", session_file) < (int)sizeof(tmp)) {
		/* it holds the resumption secret: owner only */
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		FILE *f = fd == -1 ? NULL : fdopen(fd, "w");
		if (!f && fd != -1)
			close(fd);
		if (f) {
			bool ok = fwrite(d->data, 1, d->size, f) == d->size;
			ok = !fclose(f) && ok;
			if (!ok || rename(tmp, session_file) == -1)
				unlink(tmp);
		}
	}
}

/* Keeps the session a NewSessionTicket makes resumable (RFC 8446 §4.6.1): the latest one,
 * written to a temporary file and renamed over the store. */
static int ticket_hook(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                       const gnutls_datum_t *msg)
{
	gnutls_datum_t d = {NULL, 0};
	(void)htype;
	(void)when;
	(void)incoming;
	(void)msg;
	if (!session_file || gnutls_session_get_data2(s, &d) != 0)
		return 0;
	h3_tls_session_file_write(&d);
	gnutls_free(d.data);
	return 0;
}

void h3_tls_session_file_read(gnutls_datum_t *d)
{
	enum { SESSION_MAX = 16384 };
	FILE *f = session_file ? fopen(session_file, "re") : NULL;
	*d = (gnutls_datum_t){NULL, 0};
	if (!f)
		return;
	if ((d->data = gnutls_malloc(SESSION_MAX))) {
		size_t n = fread(d->data, 1, SESSION_MAX, f);
		if (n && n < SESSION_MAX) {
			d->size = (unsigned)n;
		} else {
			gnutls_free(d->data);
			d->data = NULL;
		}
	}
	fclose(f);
}

/* Offers the stored session, if any; a bad or stale one only costs a full handshake.
 * Returns true if one is offered. */
static bool session_resume(gnutls_session_t s)
{
	gnutls_datum_t d;
	h3_tls_session_file_read(&d);
	bool ok = d.size && gnutls_session_set_data(s, d.data, d.size) == 0;
	gnutls_free(d.data);
	return ok;
}

bool h3_tls_early_data_accepted(gnutls_session_t s)
{
	return gnutls_session_get_flags(s) & GNUTLS_SFLAGS_EARLY_DATA;
}

int h3_tls_client_session(gnutls_session_t *out, gnutls_certificate_credentials_t cred,
                          ngtcp2_crypto_conn_ref *ref, const char *host, bool verify,
                          bool *resuming)
{
	gnutls_session_t s = NULL;
	unsigned char buf[16];
	int ret = -EINVAL;
	*resuming = false;
	if (gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA |
	                        GNUTLS_NO_END_OF_EARLY_DATA) != 0) {
		s = NULL;
		goto out;
	}
	if (ngtcp2_crypto_gnutls_configure_client_session(s) != 0)
		goto out;
	if ((ret = session_common(s, cred, ref, GNUTLS_ALPN_MANDATORY)))
		goto out;
	ret = -EINVAL;
	/* SNI carries names only (RFC 6066 §3) */
	bool literal = inet_pton(AF_INET6, host, buf) == 1 || inet_pton(AF_INET, host, buf) == 1;
	if (!literal && gnutls_server_name_set(s, GNUTLS_NAME_DNS, host, strlen(host)) != 0)
		goto out;
	if (verify)
		gnutls_session_set_verify_cert(s, host, 0);
	if (session_file) {
		*resuming = session_resume(s);
		gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_NEW_SESSION_TICKET,
		                                   GNUTLS_HOOK_POST, ticket_hook);
	}
	ret = 0;
out:
	if (ret && s) {
		gnutls_deinit(s);
		s = NULL;
	}
	*out = s;
	return ret;
}
