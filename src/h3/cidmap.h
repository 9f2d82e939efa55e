#pragma once
/* The connection-ID map of a QUIC server endpoint: every connection ID a connection issued
 * (and the client's first destination ID) maps to that connection, so packets are matched by
 * ID alone, never by peer address (RFC 9000 §5.2: a peer may migrate). Open addressing with
 * linear probing and backward-shift deletion in a table fixed at init: no allocation on the
 * packet path. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { H3_CID_MAX = 20 }; /* RFC 9000 §17.2: at most 20 bytes */

struct h3_cidmap_slot {
	void *val; /* NULL: free */
	uint8_t len;
	uint8_t id[H3_CID_MAX];
};

struct h3_cidmap {
	struct h3_cidmap_slot *slot;
	size_t cap; /* a power of two */
	size_t n;
	uint8_t key[16]; /* SipHash key: IDs chosen by peers must not pick our buckets */
};

/* Allocates a table of cap slots (rounded up to a power of two, at least 8) holding at most
 * 3/4 of them. Returns 0 or -ENOMEM. */
int h3_cidmap_init(struct h3_cidmap *m, size_t cap, const uint8_t key[static 16]);
void h3_cidmap_fini(struct h3_cidmap *m);

/* Maps id[len] to val (not NULL). Returns 0, -EEXIST if the id is mapped, -ENOSPC if the table
 * is full, -EINVAL for a length over H3_CID_MAX. */
int h3_cidmap_add(struct h3_cidmap *m, const uint8_t *id, size_t len, void *val);

/* Removes id[len]. Returns 0 or -ENOENT. */
int h3_cidmap_del(struct h3_cidmap *m, const uint8_t *id, size_t len);

/* The value mapped to id[len], or NULL. */
void *h3_cidmap_lookup(const struct h3_cidmap *m, const uint8_t *id, size_t len);
