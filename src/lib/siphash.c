#include "peak/siphash.h"

#include <string.h>

static inline uint64_t rotl(uint64_t x, int b)
{
	return x << b | x >> (64 - b);
}

static inline uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline void sipround(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = rotl(v[1], 13);
	v[1] ^= v[0];
	v[0] = rotl(v[0], 32);
	v[2] += v[3];
	v[3] = rotl(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = rotl(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = rotl(v[1], 17);
	v[1] ^= v[2];
	v[2] = rotl(v[2], 32);
}

static inline void compress(struct siphash_state *st, uint64_t m)
{
	st->v[3] ^= m;
	sipround(st->v);
	sipround(st->v);
	st->v[0] ^= m;
}

void siphash_init(struct siphash_state *st, const uint8_t key[static 16])
{
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	st->v[0] = 0x736f6d6570736575ULL ^ k0;
	st->v[1] = 0x646f72616e646f6dULL ^ k1;
	st->v[2] = 0x6c7967656e657261ULL ^ k0;
	st->v[3] = 0x7465646279746573ULL ^ k1;
	st->tail = 0;
	st->total = 0;
}

void siphash_update(struct siphash_state *st, const void *data, size_t len)
{
	const uint8_t *m = data;
	/* Fill a partial word first, then whole words, then keep the rest as the tail. */
	while (len && (st->total & 7)) {
		st->tail |= (uint64_t)*m++ << (8 * (st->total & 7));
		st->total++;
		len--;
		if (!(st->total & 7)) {
			compress(st, st->tail);
			st->tail = 0;
		}
	}
	for (; len >= 8; m += 8, len -= 8, st->total += 8)
		compress(st, le64(m));
	for (; len; len--, st->total++)
		st->tail |= (uint64_t)*m++ << (8 * (st->total & 7));
}

uint64_t siphash_final(struct siphash_state *st)
{
	compress(st, st->tail | (uint64_t)st->total << 56);
	st->v[2] ^= 0xff;
	for (int i = 0; i < 4; i++)
		sipround(st->v);
	return st->v[0] ^ st->v[1] ^ st->v[2] ^ st->v[3];
}

uint64_t siphash24(const uint8_t key[static 16], const void *msg, size_t len)
{
	struct siphash_state st;
	siphash_init(&st, key);
	siphash_update(&st, msg, len);
	return siphash_final(&st);
}

uint64_t ssa_h64(const uint8_t key[static 16], uint8_t tag, const void *data, size_t len)
{
	uint8_t buf[64];
	if (len < sizeof(buf)) {
		/* The SSA rules hash at most 33 bytes: one contiguous buffer takes the
		 * word-at-a-time path. */
		buf[0] = tag;
		memcpy(buf + 1, data, len);
		return siphash24(key, buf, len + 1);
	}
	struct siphash_state st;
	siphash_init(&st, key);
	siphash_update(&st, &tag, 1);
	siphash_update(&st, data, len);
	return siphash_final(&st);
}

void ssa_h128(const uint8_t key[static 16], uint8_t tag, const void *data, size_t len,
              uint8_t out[static 16])
{
	uint64_t hi = ssa_h64(key, tag, data, len), lo = ssa_h64(key, tag | 0x80, data, len);
	for (int i = 0; i < 8; i++) {
		out[i] = (uint8_t)(hi >> (56 - 8 * i));
		out[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
	}
}
