#pragma once
/* TLS 1.3 for QUIC (RFC 9001) through GnuTLS and ngtcp2's crypto helper: credentials and
 * one session per connection, ALPN "h3" (RFC 9114 §3.1). */
#include <stdbool.h>

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2_crypto.h>

/* Loads a PEM certificate chain and its key. Returns 0 or -EINVAL (the GnuTLS reason is
 * logged). */
int h3_tls_server_cred(gnutls_certificate_credentials_t *cred, const char *cert, const char *key);

/* Client credentials: trust ca (a PEM file) or, when ca is NULL, the system's trust store.
 * Returns 0 or -EINVAL. */
int h3_tls_client_cred(gnutls_certificate_credentials_t *cred, const char *ca);

/* Makes a server session bound to ref (ngtcp2 finds its connection through it). With
 * ticket_key (a key from gnutls_session_ticket_key_generate or 64 bytes of secret), the
 * session issues TLS 1.3 session tickets for resumption; with ar too, it accepts early data
 * (0-RTT) that ar has not seen. Returns 0 or -EINVAL; *out is NULL on failure. */
int h3_tls_server_session(gnutls_session_t *out, gnutls_certificate_credentials_t cred,
                          const gnutls_datum_t *ticket_key, gnutls_anti_replay_t ar,
                          ngtcp2_crypto_conn_ref *ref);

/* The client's session store: a file holding the last session (ticket) the server gave,
 * read before the handshake to resume and rewritten when a new ticket arrives. NULL: none.
 * One per process. */
void h3_tls_client_set_session_file(const char *path);

/* The path given to h3_tls_client_set_session_file, or NULL. */
const char *h3_tls_client_session_file(void);

/* Reads the session file into *d (gnutls_malloc'd; {NULL, 0} without a file or session). */
void h3_tls_session_file_read(gnutls_datum_t *d);

/* Stores session d in the session file (a temporary file renamed over it, owner-only);
 * no-op without a file or with an empty d. */
void h3_tls_session_file_write(const gnutls_datum_t *d);

/* Makes a client session for host (SNI unless it is an address; the certificate is checked
 * against host unless verify is false). *resuming says whether a stored session is offered
 * (early data can then be sent). Returns 0 or -EINVAL. */
int h3_tls_client_session(gnutls_session_t *out, gnutls_certificate_credentials_t cred,
                          ngtcp2_crypto_conn_ref *ref, const char *host, bool verify,
                          bool *resuming);

/* True if the server accepted the early data of a resumed session. */
bool h3_tls_early_data_accepted(gnutls_session_t s);
