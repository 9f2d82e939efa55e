#pragma once
/*
 * The management slave's request grammar (one line on its Unix socket), read through the
 * cursor; pure, fuzzed. Tokens are separated by exactly one space; the line ends at '\n'
 * (optional) and holds at most MG_LINE_MAX bytes:
 *	show routes | show peers | show counters
 *	route add PREFIX PEER      (PREFIX: IPv6, bits past the length zero; PEER: a name)
 *	route del PREFIX
 * The answer is text lines, the last "ok" or "error: REASON".
 */
#include <stddef.h>

#include "peak/prefix.h"

enum {
	MG_LINE_MAX = 512,
	MG_NAME_MAX = 63,
};

enum mg_kind {
	MG_NONE,
	MG_SHOW_ROUTES,
	MG_SHOW_PEERS,
	MG_SHOW_COUNTERS,
	MG_ROUTE_ADD,
	MG_ROUTE_DEL
};

struct mg_req {
	enum mg_kind kind;
	struct prefix prefix;
	char peer[MG_NAME_MAX + 1];
};

/* Parses one request of n bytes (a trailing '\n' allowed). Returns 0, or -EBADMSG with *r
 * zeroed (kind MG_NONE). */
int mg_parse(const uint8_t *line, size_t n, struct mg_req *r);

/* Writes r in canonical form with a final '\n' into out (cap bytes, NUL-terminated).
 * Returns the length without the NUL, or -EMSGSIZE / -EINVAL (kind MG_NONE). */
int mg_write(const struct mg_req *r, char *out, size_t cap);
