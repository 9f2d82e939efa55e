#pragma once
/* Media types (RFC 9110 §8.3.1) and the patterns that select them, shared by the HTTP/3
 * routes and content types (src/h3/ctype.c) and the DNS content-type map (typemap.h).
 * A pattern is lower case "type/subtype", "type/" then '*', or '*' '/' '*'. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A media type's type and subtype: spans into the caller's bytes, not NUL-terminated. */
struct media_type {
	const char *t, *s;
	size_t tl, sl;
};

/* True for an RFC 9110 §5.6.2 token character. */
bool media_tchar(uint8_t c);

/* Splits v[n] (untrusted bytes) read as OWS token "/" token OWS [";" parameters]; false if
 * it is not that. Parameters are not looked at. */
bool media_type_split(const char *v, size_t n, struct media_type *m);

/* Checks that t[tl] "/" s[sl] may be a pattern ('*' is a whole type or subtype, never part
 * of one, and a '*' type needs a '*' subtype) and writes it lower case, NUL-terminated, into
 * out[cap]. Returns false (out untouched) if not, or if it does not fit. */
bool media_pattern_make(const struct media_type *m, char *out, size_t cap);

/* How pattern pat selects m: -1 not at all, 0 exactly, 1 by a wildcard subtype, 2 by the
 * wildcard type (a lower rank is more specific). Case-insensitive on m's side. */
int media_pattern_rank(const char *pat, const struct media_type *m);
