#pragma once
/* SipHash-2-4 (Aumasson and Bernstein), 128-bit key, 64-bit result, and the tagged
 * variants H64/H128 of the SSA contract (SPEC.md section 4). */
#include <stddef.h>
#include <stdint.h>

/* Incremental SipHash-2-4: init, any number of updates, final. */
struct siphash_state {
	uint64_t v[4];
	uint64_t tail;  /* bytes of the unfinished word, little-endian */
	uint64_t total; /* bytes hashed so far */
};
void siphash_init(struct siphash_state *st, const uint8_t key[static 16]);
void siphash_update(struct siphash_state *st, const void *data, size_t len);
uint64_t siphash_final(struct siphash_state *st);

/* SipHash-2-4 of msg under the 16-byte key (loaded little-endian as the reference does). */
uint64_t siphash24(const uint8_t key[static 16], const void *msg, size_t len);

/* H64(k, tag, data) = SipHash(k, [tag] || data), without copying data. */
uint64_t ssa_h64(const uint8_t key[static 16], uint8_t tag, const void *data, size_t len);

/* H128(k, tag, data) = H64(k, tag, data) << 64 | H64(k, tag | 0x80, data), written as
 * 16 big-endian bytes into out. */
void ssa_h128(const uint8_t key[static 16], uint8_t tag, const void *data, size_t len,
              uint8_t out[static 16]);
