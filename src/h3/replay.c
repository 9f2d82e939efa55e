/* Anti-replay cache for 0-RTT. */
#include "replay.h"

#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

/* GnuTLS asks to store key (from the ClientHello) until exp_time; an entry still live means
 * a replay. */
static int replay_add(void *ptr, time_t exp_time, const gnutls_datum_t *key,
                      const gnutls_datum_t *data)
{
	struct h3_replay *r = ptr;
	struct sha256_ctx sha;
	uint8_t d[32];
	time_t now = time(NULL);
	(void)data;
	sha256_init(&sha);
	sha256_update(&sha, key->size, key->data);
	sha256_digest(&sha, sizeof(d), d);
	for (size_t i = 0; i < H3_REPLAY_ENTRIES; i++)
		if (r->ent[i].expires >= now && !memcmp(r->ent[i].digest, d, sizeof(d)))
			goto refuse;
	if (r->ent[r->next].expires >= now)
		goto refuse; /* full of live entries: no early data rather than a blind spot */
	memcpy(r->ent[r->next].digest, d, sizeof(d));
	r->ent[r->next].expires = exp_time;
	r->next = (r->next + 1) % H3_REPLAY_ENTRIES;
	return 0;
refuse:
	__atomic_fetch_add(&r->refused, 1, __ATOMIC_RELAXED); /* the metrics thread reads it */
	return GNUTLS_E_DB_ENTRY_EXISTS;
}

struct h3_replay *h3_replay_new(void)
{
	struct h3_replay *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	if (gnutls_anti_replay_init(&r->ar) != 0) {
		free(r);
		return NULL;
	}
	gnutls_anti_replay_set_add_function(r->ar, replay_add);
	gnutls_anti_replay_set_ptr(r->ar, r);
	return r;
}

void h3_replay_free(struct h3_replay *r)
{
	if (!r)
		return;
	gnutls_anti_replay_deinit(r->ar);
	free(r);
}
