#pragma once
/*
 * APL records (RFC 3123): wire and presentation formats, both directions.
 * Input is checked strictly (AFDLENGTH over the family maximum, prefix length over 32/128,
 * truncation); bits beyond the prefix length are masked on input, trailing zero octets are
 * trimmed on output. Items of unknown families are kept as opaque bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/prefix.h"

enum {
	APL_AFD_MAX = 127,     /* AFDLENGTH is 7 bits */
	APL_MAX_ITEMS = 16384, /* 65535-byte rdata of 4-byte items */
};

struct apl_item {
	uint16_t family;          /* IANA address family: 1 IPv4, 2 IPv6, others opaque */
	uint8_t prefix;           /* prefix length */
	bool negate;              /* the N bit */
	uint8_t afdlen;           /* opaque families only: bytes in afd */
	uint8_t afd[APL_AFD_MAX]; /* the address (16 bytes used for IPv6, 4 for IPv4) */
};

/* Parses APL rdata of len bytes into at most cap items. Returns the item count, or
 * -EBADMSG (truncated, AFDLENGTH or prefix over the family maximum) or -E2BIG (more than
 * cap items). */
int apl_parse(const uint8_t *rdata, size_t len, struct apl_item *items, size_t cap);

/* Writes n items as rdata into out (cap bytes). Returns the length, -EMSGSIZE if out is too
 * small, or -EINVAL for an item whose prefix length exceeds its family. */
int apl_write(const struct apl_item *items, size_t n, uint8_t *out, size_t cap);

/* Parses the presentation form ("[!]AFI:ADDRESS/PREFIX" items separated by white space, or
 * the RFC 3597 generic form "\# LEN HEX"). Returns the item count, -EINVAL with a reason in
 * err, or -E2BIG. */
int apl_parse_text(const char *s, struct apl_item *items, size_t cap, char *err, size_t errlen);

/* Writes the presentation form of n items. Items of unknown families have no presentation
 * form (RFC 3123 section 5), so then the whole rdata is written in the RFC 3597 generic form.
 * Returns the length, or -ENOSPC. */
int apl_print(const struct apl_item *items, size_t n, char *out, size_t cap);

/* Makes an item from a prefix (not negated). */
void apl_item_from_prefix(struct apl_item *it, const struct prefix *p);

/* Converts a known-family item to a prefix. Returns 0 or -EAFNOSUPPORT. */
int apl_item_to_prefix(const struct apl_item *it, struct prefix *p);
