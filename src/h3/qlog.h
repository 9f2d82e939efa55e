#pragma once
/* qlog (draft-ietf-quic-qlog, JSON-SEQ as ngtcp2 writes it): one file per connection in the
 * directory set here, named after the client's original destination ID and the role,
 * written through a 64 KiB stdio buffer. ngtcp2 writes the transport events; the
 * applications add the HTTP/3 events nghttp3 does not log (request heads, answers). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include <ngtcp2/ngtcp2.h>

struct h3_conn;

/* Sets the directory (NULL: no qlog). Not thread-safe: call before any connection. */
void h3_qlog_set_dir(const char *dir);

/* True if qlog is on. */
int h3_qlog_enabled(void);

/* Opens DIR/<odcid hex>-<role>.sqlog for writing (role "server" or "client"). Returns the
 * stream or NULL (the reason is logged, rate-limited). */
FILE *h3_qlog_open(const ngtcp2_cid *odcid, const char *role);

/* ngtcp2's qlog write callback; user_data is the h3_conn. */
void h3_qlog_write(void *user_data, uint32_t flags, const void *data, size_t n);

/* Appends one event record {"time":MS,"name":NAME,"data":{DATA}} to c's qlog, the time in
 * milliseconds since the connection started as ngtcp2's events have it. fmt renders the
 * members of data (JSON, the caller escapes strings with h3_qlog_str). No-op without qlog. */
void h3_qlog_event(struct h3_conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same record into f (NULL: no-op), the time counted from t_start (h3_now's clock):
 * for the HTTP/2 connections (h2conn.h), which have no h3_conn. */
void h3_qlog_vevent(FILE *f, uint64_t t_start, const char *name, const char *fmt, va_list ap);

/* Opens DIR/<16 random hex digits>-h2-<role>.sqlog for an HTTP/2 connection over TLS/TCP
 * (role "server" or "client") and writes its header record (protocol_type TCP, TLS, HTTP2;
 * group_id the hex digits). Returns the stream or NULL (the reason is logged, rate-limited). */
FILE *h3_qlog_open_tcp(const char *role);

/* Copies v[n] into out (cap > 0, NUL-terminated) as the inside of a JSON string: '"', '\\'
 * and control bytes escaped, bytes over 0x7e as \u00XX; cut at a whole escape. Also used
 * for the JSON the backend answers with. */
const char *h3_qlog_str(char *out, size_t cap, const char *v, size_t n);
