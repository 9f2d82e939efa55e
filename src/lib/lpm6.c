#include "peak/lpm6.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A node is a prefix (key, plen). Its children extend it: child[b] holds only prefixes
 * whose bit plen is b. A node with no value is a glue node and always has two children
 * (a lone child is spliced into its grandparent). Keys are kept as two host-order 64-bit
 * words with the bits past plen cleared, so a match is two masked compares.
 * Node 0 is never used: index 0 means "no node", and free nodes chain through child[0].
 */
struct lpm6_node {
	uint64_t k[2];
	uint32_t child[2];
	uint32_t val;
	uint8_t plen;
	uint8_t has_val;
};

struct lpm6 {
	struct lpm6_node *n;
	uint32_t cap;   /* nodes allocated, node 0 included */
	uint32_t used;  /* nodes ever handed out, node 0 included */
	uint32_t freel; /* head of the free list */
	uint32_t nfree;
	uint32_t root;
	size_t count;
};

enum { LPM6_MAX_NODES = UINT32_MAX / 2 };

static inline uint64_t load_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static inline void store_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* The mask of the first plen bits within word w (0 or 1). */
static inline uint64_t mask_word(unsigned plen, unsigned w)
{
	unsigned bits = plen > 64 * w ? plen - 64 * w : 0;
	if (bits >= 64)
		return ~0ULL;
	return bits ? ~0ULL << (64 - bits) : 0;
}

static inline unsigned bit_at(const uint64_t k[2], unsigned i)
{
	return (unsigned)(k[i >> 6] >> (63 - (i & 63))) & 1;
}

/* Number of leading bits a and b share (0..128). */
static inline unsigned common_bits(const uint64_t a[2], const uint64_t b[2])
{
	uint64_t x = a[0] ^ b[0];
	if (x)
		return (unsigned)__builtin_clzll(x);
	x = a[1] ^ b[1];
	if (x)
		return 64 + (unsigned)__builtin_clzll(x);
	return 128;
}

static inline bool node_holds(const struct lpm6_node *nd, const uint64_t a[2])
{
	return !((a[0] ^ nd->k[0]) & mask_word(nd->plen, 0)) &&
	       !((a[1] ^ nd->k[1]) & mask_word(nd->plen, 1));
}

static void key_make(const uint8_t p[16], unsigned plen, uint64_t k[2])
{
	k[0] = load_be64(p) & mask_word(plen, 0);
	k[1] = load_be64(p + 8) & mask_word(plen, 1);
}

struct lpm6 *lpm6_new(void)
{
	struct lpm6 *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->used = 1;
	if (lpm6_reserve(t, 8)) {
		free(t);
		return NULL;
	}
	return t;
}

void lpm6_free(struct lpm6 *t)
{
	if (!t)
		return;
	free(t->n);
	t->n = NULL;
	free(t);
}

/* Grows the node array to hold at least want nodes. */
static int grow(struct lpm6 *t, size_t want)
{
	if (want <= t->cap)
		return 0;
	if (want > LPM6_MAX_NODES)
		return -ENOMEM;
	size_t cap = t->cap ? t->cap : 16;
	while (cap < want)
		cap *= 2;
	if (cap > LPM6_MAX_NODES)
		cap = LPM6_MAX_NODES;
	struct lpm6_node *n = realloc(t->n, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	t->n = n;
	t->cap = (uint32_t)cap;
	return 0;
}

int lpm6_reserve(struct lpm6 *t, size_t n)
{
	if (n > LPM6_MAX_NODES / 2)
		return -ENOMEM;
	return grow(t, (size_t)t->used + 2 * n);
}

/* A node from the free list or the unused tail; the caller has made room for it. */
static uint32_t node_take(struct lpm6 *t, const uint64_t k[2], unsigned plen)
{
	uint32_t i;
	if (t->freel) {
		i = t->freel;
		t->freel = t->n[i].child[0];
		t->nfree--;
	} else {
		i = t->used++;
	}
	struct lpm6_node *nd = &t->n[i];
	memset(nd, 0, sizeof(*nd));
	nd->k[0] = k[0] & mask_word(plen, 0);
	nd->k[1] = k[1] & mask_word(plen, 1);
	nd->plen = (uint8_t)plen;
	return i;
}

static void node_put(struct lpm6 *t, uint32_t i)
{
	t->n[i].has_val = 0;
	t->n[i].child[1] = 0;
	t->n[i].child[0] = t->freel;
	t->freel = i;
	t->nfree++;
}

int lpm6_add(struct lpm6 *t, const uint8_t prefix[static 16], unsigned plen, uint32_t val)
{
	if (plen > 128)
		return -EINVAL;
	/* at most two new nodes; room first, since growing moves the array under link */
	if (t->nfree < 2) {
		int r = grow(t, (size_t)t->used + 2);
		if (r)
			return r;
	}
	uint64_t k[2];
	key_make(prefix, plen, k);
	uint32_t *link = &t->root;
	while (*link) {
		uint32_t cur = *link;
		struct lpm6_node *nd = &t->n[cur];
		unsigned common = common_bits(nd->k, k);
		if (common > nd->plen)
			common = nd->plen;
		if (common > plen)
			common = plen;
		if (common == nd->plen && nd->plen == plen) {
			int replaced = nd->has_val;
			nd->val = val;
			nd->has_val = 1;
			if (!replaced)
				t->count++;
			return replaced;
		}
		if (common == nd->plen) { /* nd is a strict ancestor of the new prefix */
			link = &nd->child[bit_at(k, nd->plen)];
			continue;
		}
		uint32_t fresh = node_take(t, k, plen);
		t->n[fresh].val = val;
		t->n[fresh].has_val = 1;
		t->count++;
		nd = &t->n[cur];
		if (common == plen) { /* the new prefix is a strict ancestor of nd */
			t->n[fresh].child[bit_at(nd->k, plen)] = cur;
			*link = fresh;
			return 0;
		}
		/* they part at bit common: a glue node there holds both */
		uint32_t glue = node_take(t, k, common);
		t->n[glue].child[bit_at(k, common)] = fresh;
		t->n[glue].child[bit_at(t->n[cur].k, common)] = cur;
		*link = glue;
		return 0;
	}
	uint32_t fresh = node_take(t, k, plen);
	t->n[fresh].val = val;
	t->n[fresh].has_val = 1;
	*link = fresh;
	t->count++;
	return 0;
}

int lpm6_del(struct lpm6 *t, const uint8_t prefix[static 16], unsigned plen)
{
	if (plen > 128)
		return -EINVAL;
	uint64_t k[2];
	key_make(prefix, plen, k);
	uint32_t *plink = NULL, *link = &t->root;
	while (*link) {
		struct lpm6_node *nd = &t->n[*link];
		if (nd->plen > plen || !node_holds(nd, k))
			return -ENOENT;
		if (nd->plen == plen)
			break;
		plink = link;
		link = &nd->child[bit_at(k, nd->plen)];
	}
	if (!*link || !t->n[*link].has_val)
		return -ENOENT;
	uint32_t cur = *link;
	struct lpm6_node *nd = &t->n[cur];
	nd->has_val = 0;
	t->count--;
	if (nd->child[0] && nd->child[1])
		return 0; /* stays as glue */
	*link = nd->child[0] ? nd->child[0] : nd->child[1];
	node_put(t, cur);
	if (*link || !plink)
		return 0;
	/* cur was a leaf: its parent may now be a glue node with one child */
	uint32_t par = *plink;
	struct lpm6_node *pn = &t->n[par];
	if (pn->has_val)
		return 0;
	*plink = pn->child[0] ? pn->child[0] : pn->child[1];
	node_put(t, par);
	return 0;
}

bool lpm6_lookup(const struct lpm6 *t, const uint8_t addr[static 16], uint32_t *val, unsigned *plen)
{
	uint64_t a[2] = {load_be64(addr), load_be64(addr + 8)};
	const struct lpm6_node *best = NULL;
	uint32_t i = t->root;
	while (i) {
		const struct lpm6_node *nd = &t->n[i];
		if (!node_holds(nd, a))
			break;
		if (nd->has_val)
			best = nd;
		if (nd->plen == 128)
			break;
		i = nd->child[bit_at(a, nd->plen)];
	}
	if (!best)
		return false;
	if (val)
		*val = best->val;
	if (plen)
		*plen = best->plen;
	return true;
}

enum { LPM6_LANES = 16 };

void lpm6_lookup_batch(const struct lpm6 *t, const uint8_t (*addr)[16], size_t n, uint32_t *val,
                       bool *found)
{
	for (size_t base = 0; base < n; base += LPM6_LANES) {
		size_t k = n - base < LPM6_LANES ? n - base : LPM6_LANES;
		uint64_t a[LPM6_LANES][2];
		uint32_t at[LPM6_LANES];
		const struct lpm6_node *best[LPM6_LANES];
		size_t live = k;
		for (size_t j = 0; j < k; j++) {
			a[j][0] = load_be64(addr[base + j]);
			a[j][1] = load_be64(addr[base + j] + 8);
			at[j] = t->root;
			best[j] = NULL;
		}
		if (t->root)
			__builtin_prefetch(&t->n[t->root]);
		/* one step of every live walk per round: each node was prefetched a round ago */
		while (live) {
			live = 0;
			for (size_t j = 0; j < k; j++) {
				uint32_t i = at[j];
				if (!i)
					continue;
				const struct lpm6_node *nd = &t->n[i];
				if (!node_holds(nd, a[j]) || nd->plen == 128) {
					if (node_holds(nd, a[j]) && nd->has_val)
						best[j] = nd;
					at[j] = 0;
					continue;
				}
				if (nd->has_val)
					best[j] = nd;
				i = nd->child[bit_at(a[j], nd->plen)];
				at[j] = i;
				if (i) {
					__builtin_prefetch(&t->n[i]);
					live++;
				}
			}
		}
		for (size_t j = 0; j < k; j++) {
			found[base + j] = best[j] != NULL;
			if (best[j])
				val[base + j] = best[j]->val;
		}
	}
}

bool lpm6_get(const struct lpm6 *t, const uint8_t prefix[static 16], unsigned plen, uint32_t *val)
{
	if (plen > 128)
		return false;
	uint64_t k[2];
	key_make(prefix, plen, k);
	uint32_t i = t->root;
	while (i) {
		const struct lpm6_node *nd = &t->n[i];
		if (nd->plen > plen || !node_holds(nd, k))
			return false;
		if (nd->plen == plen) {
			if (nd->has_val && val)
				*val = nd->val;
			return nd->has_val;
		}
		i = nd->child[bit_at(k, nd->plen)];
	}
	return false;
}

size_t lpm6_count(const struct lpm6 *t)
{
	return t->count;
}

size_t lpm6_bytes(const struct lpm6 *t)
{
	return sizeof(*t) + (size_t)t->cap * sizeof(struct lpm6_node);
}

/* Depth-first in bit order; the depth is at most 129 nodes, so recursion is bounded. */
static int walk(const struct lpm6 *t, uint32_t i,
                int (*fn)(const uint8_t prefix[16], unsigned plen, uint32_t val, void *arg),
                void *arg)
{
	if (!i)
		return 0;
	const struct lpm6_node *nd = &t->n[i];
	if (nd->has_val) {
		uint8_t p[16];
		store_be64(p, nd->k[0]);
		store_be64(p + 8, nd->k[1]);
		int r = fn(p, nd->plen, nd->val, arg);
		if (r)
			return r;
	}
	int r = walk(t, nd->child[0], fn, arg);
	return r ? r : walk(t, nd->child[1], fn, arg);
}

int lpm6_walk(const struct lpm6 *t,
              int (*fn)(const uint8_t prefix[16], unsigned plen, uint32_t val, void *arg),
              void *arg)
{
	return walk(t, t->root, fn, arg);
}
