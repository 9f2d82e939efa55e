#pragma once
/*
 * The content-type map of a service (PEAK-direct, issue 16): which service, and optionally
 * which object key, takes an upload of a given media type. Published by peak dns as the TXT
 * record at _types.NAME beside the descriptor at _ssa.NAME; read by 'peak h3 upload --peak'.
 *
 *	TEXT    = "v=types1" *( ";" ENTRY ) [";"]      white space around items ignored
 *	ENTRY   = PATTERN "=" TARGET | FIELD "=" VALUE  (a FIELD has no '/': ignored, for later)
 *	PATTERN = type "/" subtype | type "/" "*" | "*" "/" "*"    (RFC 9110 tokens)
 *	TARGET  = ( NAME | "@" ) [ "#" KEY ]
 *
 * e.g. "v=types1; audio/opus=audio.svc.example.; video/mp4=media.svc.example.#video".
 * NAME is a domain name (letters, digits, '-', '_', '.'; absolute with a trailing dot); "@"
 * is the name the map was published for. KEY (1 to TYPEMAP_KEY_LEN - 1 visible characters,
 * no ';' or '#') is the object key a select=obj service computes the address from. Patterns
 * and names are case-insensitive (kept lower case); a pattern given twice is an error. The
 * most specific pattern that matches a media type wins: exact, then a wildcard subtype, then
 * the wildcard type. (Wildcards: 'audio/' then '*'; '*', '/', '*'.)
 */
#include <stdbool.h>
#include <stddef.h>

enum {
	TYPEMAP_MAX = 16,        /* entries */
	TYPEMAP_PAT_LEN = 128,   /* a pattern, with NUL */
	TYPEMAP_NAME_LEN = 256,  /* a target name, with NUL */
	TYPEMAP_KEY_LEN = 128,   /* an object key, with NUL */
	TYPEMAP_TEXT_MAX = 2048, /* the whole text, with NUL */
	TYPEMAP_ERRLEN = 160,
};

struct typemap_entry {
	char pat[TYPEMAP_PAT_LEN];   /* lower case */
	char name[TYPEMAP_NAME_LEN]; /* lower case; "@" for the map's own name */
	char key[TYPEMAP_KEY_LEN];   /* "" when none */
};

struct typemap {
	struct typemap_entry e[TYPEMAP_MAX];
	unsigned n;
};

/* Parses text[len] (untrusted: DNS answers, configuration; not NUL-terminated), read
 * through a bounded cursor. Returns 0 with m filled, or -EINVAL with the reason in
 * err[errlen] (m then holds nothing usable). */
int typemap_parse(const char *text, size_t len, struct typemap *m, char *err, size_t errlen);

/* Writes m in the canonical form typemap_parse reads back to the same map. Returns the
 * length written (without the NUL) or -ENOSPC when it does not fit cap. */
int typemap_print(const struct typemap *m, char *out, size_t cap);

/* The entry for the media type in v[n] (untrusted, not NUL-terminated; parameters such as
 * "; charset=" ignored), the most specific that matches; NULL when none matches or v is not
 * type/subtype. */
const struct typemap_entry *typemap_lookup(const struct typemap *m, const char *v, size_t n);
