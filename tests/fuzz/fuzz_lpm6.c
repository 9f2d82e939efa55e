/* Fuzzes the overlay's LPM table (include/peak/lpm6.h) against a linear scan: the input is a
 * base address (16 bytes) and then operations of 6 bytes (what, length, two byte positions,
 * two bytes to flip there, a byte of the value), so prefixes and addresses cluster around the base
 * at every depth; adds, removes, replacements, single and batched lookups and exact gets must all
 * agree with the scan, and the count too. The first byte also picks the lookups' popcount build
 * (the POPCNT instruction or the arithmetic one), so both are fuzzed. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "peak/lpm6.h"

enum { MAXP = 128, OPSZ = 6, BATCH = 70 };

struct ent {
	uint8_t p[16];
	unsigned plen;
	uint32_t val;
};

static bool holds(const struct ent *e, const uint8_t a[16])
{
	unsigned full = e->plen / 8, rest = e->plen % 8;
	if (memcmp(e->p, a, full))
		return false;
	return !rest || !((e->p[full] ^ a[full]) & (uint8_t)(0xff << (8 - rest)));
}

static const struct ent *scan(const struct ent *v, size_t n, const uint8_t a[16])
{
	const struct ent *best = NULL;
	for (size_t i = 0; i < n; i++)
		if (holds(&v[i], a) && (!best || v[i].plen > best->plen))
			best = &v[i];
	return best;
}

static void mask(uint8_t p[16], unsigned plen)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = plen > 8 * i ? plen - 8 * i : 0;
		p[i] &= keep >= 8 ? 0xff : (uint8_t)(0xff << (8 - keep));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 16)
		return 0;
	struct lpm6 *t = (data[0] & 1) ? lpm6_new_soft() : lpm6_new();
	if (!t)
		return 0;
	static struct ent v[MAXP];
	static uint8_t seen[BATCH][16];
	size_t n = 0, ns = 0;
	uint8_t base[16];
	memcpy(base, data, 16);
	for (size_t off = 16; off + OPSZ <= size; off += OPSZ) {
		const uint8_t *op = data + off;
		uint8_t a[16];
		memcpy(a, base, 16);
		a[op[2] & 15] ^= op[3];
		a[op[2] >> 4] ^= op[4];
		unsigned plen = op[1] % 129;
		uint32_t val = (uint32_t)off ^ (uint32_t)op[5] << 24;
		switch (op[0] % 4) {
		case 0:
		case 1: { /* add or replace */
			mask(a, plen);
			size_t i = 0;
			while (i < n && !(v[i].plen == plen && !memcmp(v[i].p, a, 16)))
				i++;
			if (i == n && n == MAXP)
				break;
			int r = lpm6_add(t, a, plen, val);
			if (r != (i < n ? 1 : 0))
				__builtin_trap();
			if (i == n)
				n++;
			memcpy(v[i].p, a, 16);
			v[i].plen = plen;
			v[i].val = val;
			break;
		}
		case 2: { /* remove */
			mask(a, plen);
			size_t i = 0;
			while (i < n && !(v[i].plen == plen && !memcmp(v[i].p, a, 16)))
				i++;
			if (lpm6_del(t, a, plen) != (i < n ? 0 : -ENOENT))
				__builtin_trap();
			if (i < n)
				v[i] = v[--n];
			break;
		}
		default: { /* lookup, remembered for the batch */
			const struct ent *e = scan(v, n, a);
			uint32_t got = 0;
			unsigned pl = 0;
			if (lpm6_lookup(t, a, &got, &pl) != (e != NULL) ||
			    (e && (got != e->val || pl != e->plen)))
				__builtin_trap();
			memcpy(seen[ns++ % BATCH], a, 16);
			break;
		}
		}
	}
	if (lpm6_count(t) != n)
		__builtin_trap();
	for (size_t i = 0; i < n; i++) {
		uint32_t got;
		if (!lpm6_get(t, v[i].p, v[i].plen, &got) || got != v[i].val)
			__builtin_trap();
	}
	size_t nb = ns < BATCH ? ns : BATCH;
	uint32_t bv[BATCH];
	bool bf[BATCH];
	lpm6_lookup_batch(t, (const uint8_t(*)[16])seen, nb, bv, bf);
	for (size_t i = 0; i < nb; i++) {
		const struct ent *e = scan(v, n, seen[i]);
		if (bf[i] != (e != NULL) || (e && bv[i] != e->val))
			__builtin_trap();
	}
	lpm6_free(t);
	return 0;
}
