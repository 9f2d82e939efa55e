#pragma once
/*
 * HTTP/1.1 responses as a load generator sees them (RFC 9112): the status line, the
 * Content-Length and Connection headers, and where the message ends. Chunked bodies are
 * not supported (peak serve, nginx and HAProxy send Content-Length to our requests).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	HTTP_HEAD_MAX = 8192, /* a longer header section is an error */
	HTTP_BODY_MAX = 1 << 24,
};

struct http_resp {
	unsigned status; /* 100..599 */
	size_t head_len; /* bytes up to and including the blank line */
	size_t body_len; /* the Content-Length (0 if none, e.g. 204 or 304) */
	bool close;      /* the server closes after this response */
};

/* Parses the response at the start of buf[0..len). Returns the whole message's length
 * (head + body) once all of it is buffered, 0 if more bytes are needed, or -EBADMSG for a
 * malformed or unsupported response (bad status line, bad or repeated Content-Length,
 * chunked coding, head over HTTP_HEAD_MAX, body over HTTP_BODY_MAX). For HEAD requests
 * pass head_req: the body is then empty whatever Content-Length says. */
long http_resp_parse(const uint8_t *buf, size_t len, bool head_req, struct http_resp *out);

/* As http_resp_parse, for a caller that streams the body itself (the object store's
 * client): returns the head's length once the head is buffered, whatever of the body
 * follows, 0 if more bytes are needed, or -EBADMSG as http_resp_parse does but with bodies
 * up to max_body (out->body_len, 64 bits on the 64-bit targets this builds for). */
long http_resp_head_parse(const uint8_t *buf, size_t len, bool head_req, uint64_t max_body,
                          struct http_resp *out);

/* Helpers for any HTTP/1.1 head (requests too), through the project's cursor. */
struct cur;

/* Length of the head (through the blank line's CRLF) if it ends within the first max bytes
 * of buf[0..len), else 0. */
size_t http_head_end(const uint8_t *buf, size_t len, size_t max);

/* One CRLF-terminated line (returned without its CRLF, length in *n), the cursor moved past
 * it; NULL at the end of the input or on a bare LF. */
const uint8_t *http_line(struct cur *c, size_t *n);

/* True if p[0..n) is name, compared case-insensitively (header names, tokens). */
bool http_token_is(const uint8_t *p, size_t n, const char *name);

/* p[0..n) without leading and trailing spaces and tabs (a header value); length in *out. */
const uint8_t *http_trim(const uint8_t *p, size_t n, size_t *out);

/* True if the comma-separated list p[0..n) holds token (case-insensitive), e.g. the
 * Connection header's "close". */
bool http_list_has(const uint8_t *p, size_t n, const char *token);
