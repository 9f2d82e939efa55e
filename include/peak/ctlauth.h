#pragma once
/*
 * The control link's handshake: a shared key (a file only root reads) and an HMAC
 * challenge. On accept the controller sends "challenge NONCE" (16 random bytes); the agent
 * answers "hello NODE TAG" with TAG = HMAC-SHA256(key, "peak-ctl-hello-v1" 0x00 || NONCE ||
 * NODE). The domain string keeps the tag from meaning anything in another protocol that
 * shares the key; NODE comes last, so nonce and node cannot be re-split.
 *
 * The other way: an agent with a key adds its own fresh nonce, "hello NODE TAG ANONCE", and
 * takes nothing from the controller (no map) until it has read "welcome PROOF" with
 * PROOF = HMAC-SHA256(key, "peak-ctl-welcome-v1" 0x00 || ANONCE || NONCE || NODE): only a
 * holder of the key can answer a nonce it has never seen. The other domain string keeps a
 * hello tag from ever passing for a proof (and the other way round); NONCE binds the proof to
 * the connection's challenge. The key is never printed; every function here leaves it out
 * of its messages.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/ctlproto.h"

enum {
	CTLAUTH_KEY_MIN = 16,   /* bytes: shorter keys are refused */
	CTLAUTH_KEY_MAX = 1024, /* bytes */
	CTLAUTH_ERRLEN = 512,
};

struct ctlauth_key {
	size_t len;
	uint8_t k[CTLAUTH_KEY_MAX];
};

/* Reads a key file: its bytes, without one trailing "\n" or "\r\n". Refuses (with the
 * reason, never the key, in err) a file that is not a regular file, that group or others
 * may write or others may read, or whose key is shorter than CTLAUTH_KEY_MIN or longer
 * than CTLAUTH_KEY_MAX bytes. Returns 0, -EPERM (mode), -EINVAL (length, kind) or -errno. */
int ctlauth_key_load(const char *path, struct ctlauth_key *key, char *err, size_t errlen);

/* Overwrites the key in memory. */
void ctlauth_key_wipe(struct ctlauth_key *key);

/* Fills a fresh random nonce (getrandom). Returns 0 or -errno. */
int ctlauth_nonce(uint8_t nonce[static CTL_NONCE_LEN]);

/* The hello tag of node for this nonce. node is a NUL-terminated node name. */
void ctlauth_tag(const struct ctlauth_key *key, const uint8_t nonce[static CTL_NONCE_LEN],
                 const char *node, uint8_t tag[static CTL_TAG_LEN]);

/* True if tag is node's tag for nonce; the comparison takes the same time for any tag. */
bool ctlauth_check(const struct ctlauth_key *key, const uint8_t nonce[static CTL_NONCE_LEN],
                   const char *node, const uint8_t tag[static CTL_TAG_LEN]);

/* The controller's proof for an agent that sent anonce in its hello on the connection whose
 * challenge was cnonce; node is the hello's NUL-terminated node name. */
void ctlauth_proof(const struct ctlauth_key *key, const uint8_t anonce[static CTL_NONCE_LEN],
                   const uint8_t cnonce[static CTL_NONCE_LEN], const char *node,
                   uint8_t proof[static CTL_TAG_LEN]);

/* True if proof is the controller's proof for these nonces and node; the comparison takes
 * the same time for any proof. */
bool ctlauth_proof_check(const struct ctlauth_key *key, const uint8_t anonce[static CTL_NONCE_LEN],
                         const uint8_t cnonce[static CTL_NONCE_LEN], const char *node,
                         const uint8_t proof[static CTL_TAG_LEN]);
