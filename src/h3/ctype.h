#pragma once
/* Content-type matching for HTTP/3 routing and serving: a media type (RFC 9110 §8.3.1)
 * against patterns: "type/subtype", a wildcard subtype ("audio/" then '*') or the wildcard
 * type and subtype; case-insensitive, parameters ("; charset=...") and white space around the
 * type ignored. */
#include <stdbool.h>
#include <stddef.h>

enum { H3_CTYPE_MAX = 8, H3_CTYPE_LEN = 128 };

struct h3_ctype_set {
	char pat[H3_CTYPE_MAX][H3_CTYPE_LEN]; /* lower case, "type/subtype" or a wildcard */
	size_t n;
};

/* Parses a comma-separated list of patterns. Returns 0 or -EINVAL (empty item, no '/',
 * more than H3_CTYPE_MAX items, an item over H3_CTYPE_LEN - 1 bytes, a '*' type with a
 * concrete subtype, or characters outside RFC 9110 tokens). */
int h3_ctype_set_parse(struct h3_ctype_set *set, const char *list);

/* True if the media type in v[n] (untrusted header bytes, not NUL-terminated) matches a
 * pattern of set. A value that is not "token/token" with optional parameters matches none. */
bool h3_ctype_set_match(const struct h3_ctype_set *set, const char *v, size_t n);
