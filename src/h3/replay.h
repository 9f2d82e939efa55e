#pragma once
/* The anti-replay cache for TLS 1.3 early data (RFC 8446 §8): 0-RTT data can be replayed by
 * anyone who captured it, so the server remembers each ClientHello it accepted early data
 * with for the ticket's window and refuses early data for a repeat (the client then sends it
 * again in 1-RTT). A fixed ring: when its oldest entry has not expired yet, early data is
 * refused rather than the entry forgotten, so memory is bounded and no replay slips through. */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <gnutls/gnutls.h>

enum { H3_REPLAY_ENTRIES = 4096 };

struct h3_replay {
	gnutls_anti_replay_t ar;
	struct {
		uint8_t digest[32];
		time_t expires;
	} ent[H3_REPLAY_ENTRIES];
	size_t next;
	uint64_t refused; /* early data refused: a replay, or the ring was full */
};

/* Returns a cache ready for gnutls_anti_replay_enable(), or NULL. */
struct h3_replay *h3_replay_new(void);
void h3_replay_free(struct h3_replay *r);
