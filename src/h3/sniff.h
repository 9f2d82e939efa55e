#pragma once
/* Content sniffing for the ingress (--sniff): the media type of a body from its first bytes,
 * by the magic numbers of common audio and video containers, for requests that carry no
 * content-type or only application/octet-stream. Pure code: no I/O. */
#include <stddef.h>
#include <stdint.h>

enum {
	H3_SNIFF_LEN = 192, /* bytes that decide every type known here (MPEG-TS: 2 packets) */
};

struct h3_sniff {
	const char *type; /* a media type ("audio/ogg"), or NULL: not recognised */
	const char *why;  /* the signature that decided, e.g. "OggS at 0" (NULL with type) */
};

/* Looks at the first n bytes of a body (untrusted; n may be below H3_SNIFF_LEN when the body
 * is shorter). Returns the type and the signature seen, or {NULL, NULL}. Never reads past n;
 * the strings are constants. */
struct h3_sniff h3_sniff_type(const uint8_t *p, size_t n);
