#pragma once
/*
 * The object store's HTTP/1.1 requests (RFC 9112) as a pod reads them off the socket: the
 * request line for /o/KEY, Content-Length, Connection, Expect and Transfer-Encoding. Pure
 * code over untrusted bytes (read through the cursor), fuzzed by tests/fuzz/fuzz_store.c.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	STORE_HEAD_MAX = 8192, /* a longer request head gets 431 */
	STORE_KEY_MAX = 255,   /* bytes of a decoded key */
	STORE_HEADERS_MAX = 100,
	STORE_ACKED_MAX = 512, /* bytes of an X-Peak-Acked value */
	STORE_NAME_MAX = 80,   /* an object's file name with its NUL (store_object_name) */
	STORE_LIST_DEF = 256,  /* objects a listing page holds unless limit= says */
	STORE_LIST_MAX = 1000,
};

enum store_method { STORE_GET = 1, STORE_HEAD, STORE_PUT, STORE_DELETE };

struct store_req {
	enum store_method method;
	uint8_t key[STORE_KEY_MAX]; /* decoded; not NUL-terminated */
	size_t key_len;
	uint64_t body_len; /* Content-Length, 0 if absent */
	bool has_len;      /* a Content-Length header was present */
	bool close;        /* the client asked to close after this request */
	bool expect_100;   /* Expect: 100-continue */
	/* X-Peak-Acked: the comma-separated pod ids a replicated call counted already; a pod
	 * named there answers 208 and does nothing. */
	uint8_t acked[STORE_ACKED_MAX];
	size_t acked_len;
	/* GET /s/[?after=NAME][&limit=N]: a page of the pod's object listing (store.h) */
	bool list;
	char list_after[STORE_NAME_MAX]; /* "" or [0-9a-f-]: the names after this one */
	unsigned list_limit;             /* 1..STORE_LIST_MAX */
	size_t head_len;                 /* bytes up to and including the blank line */
};

/* Parses the request head at the start of buf[0..len). Returns the head length once the
 * whole head is buffered, 0 if more bytes are needed, or a negative HTTP status for a
 * request the pod refuses (the caller answers it and closes): -400 malformed, or a key that
 * is empty, longer than STORE_KEY_MAX, holds '/' or NUL, is "." or "..", or has a bad
 * percent escape; -404 a path outside /o/ and /s/; -405 another method (GET only on /s/);
 * a listing's query must be after=NAME ([0-9a-f-]) and/or limit=1..STORE_LIST_MAX (else
 * -400); -411 PUT without
 * Content-Length; -413 Content-Length above max_body; -431 a head over STORE_HEAD_MAX or an
 * X-Peak-Acked over STORE_ACKED_MAX; -501
 * Transfer-Encoding; -505 not HTTP/1.x. out is complete only when the return is positive. */
long store_req_parse(const uint8_t *buf, size_t len, uint64_t max_body, struct store_req *out);

/* Percent-encodes key[0..len) for a path (all but RFC 3986 unreserved characters) into out,
 * NUL-terminated; 3 * STORE_KEY_MAX + 1 bytes hold any key. */
void store_key_encode(const uint8_t *key, size_t len, char *out, size_t cap);

/* Decodes a percent-encoded key s[0..n) with the rules above (as in a /o/ path). Returns 0
 * or -EINVAL. */
int store_key_decode(const uint8_t *s, size_t n, uint8_t out[static STORE_KEY_MAX], size_t *len);

/* Checks a decoded key with the rules above. Returns 0 or -EINVAL. */
int store_key_check(const uint8_t *key, size_t len);

/* The reason phrase of a status the store sends ("Misdirected Request"), or "Error". */
const char *store_status_text(unsigned status);
