/* A variant of the overlay's LPM table kept for comparison (bench_lpm6's peer "fat", and the
 * unit test lpm6-fat, which runs tests/unit/test_lpm6.c against it): src/lib/lpm6.c as of git
 * 75d7f3e with leaves that hold all of their region's prefixes (up to LPM6_LEAF_K - 1 of them
 * and the region's default, in one 64-byte line with the default K of 3, or two with K 4 to 6)
 * instead of one trie node's copy and a walk of the trie below it, so a lookup reads the levels
 * of nodes, then one leaf, and takes its answer from that leaf with compares and selects, no
 * branch and no further read. It does not beat the table (README, the LPM bench), so it stays
 * here under other names: lpm6fat_*. Not linked into anything but the bench and its test. */
#include "lpm6_fat.h"
#include "peak/lpm6.h" /* declares the lpm6fat_ names above */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/*
 * Layout. Two structures hold the same prefixes:
 *  - the trie of record: a path-compressed binary trie (struct lpm6_node, 32 bytes, in one
 *    array indexed by 32-bit numbers, about 2 nodes a prefix). Adds, removes, gets and walks
 *    use it; lookups never read it (unless a poptrie build ran out of memory).
 *  - the read path: a poptrie patched on every change. A direct table of 2^14 entries (the
 *    first 14 bits) names a node or a leaf. A node (struct lpm6_pnode, 24 bytes) covers 6 more
 *    bits: 64 entries, each a child node or a leaf; its children sit in one block (base1), its
 *    leaves in another (base0), and entry v is found by counting the bits set below v in
 *    vector (children) or leafvec (runs of equal leaves, stored once). A leaf (struct
 *    lpm6_leaf, 64 bytes, one line, with LPM6_LEAF_K 3; 128 with 4 to 6) holds the longest
 *    prefix covering its whole region and every prefix inside the region: the lookup compares
 *    the address against them all, without a branch, and is done.
 *  - where nodes stop: a region (the span of one entry) holding at most LPM6_LEAF_K - 1
 *    prefixes ends in a leaf, at any depth; one holding more gets a node of its own.
 *  - lookups come in two builds from one body: one for the POPCNT instruction, taken where the
 *    CPU has it, and one with arithmetic popcount (the build targets baseline x86-64).
 *  - lpm6_lookup_batch interleaves up to 64 lookups with prefetches (see there).
 * Arrays of 2 MiB or more are mapped on transparent huge pages (mem_grow).
 */

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

/*
 * The read path is a poptrie (Asai and Ohara, SIGCOMM 2015) built from the trie and patched on
 * every change: a direct table indexed by the first LPM6_DIRECT_BITS bits, then multibit nodes
 * of stride 6 whose 64 entries are either a child node or a leaf. A node keeps its children and
 * its leaves in two contiguous blocks and finds entry v by counting the bits set below v
 * (popcount), so a node is 24 bytes whatever its fan-out. Runs of equal leaves are stored once
 * (leafvec marks where a run starts). A region whose trie subtree is small enough (fits_leaf)
 * gets no node: its leaf holds the subtree's prefixes.
 */
struct lpm6_pnode {
	uint64_t vector;  /* bit v: entry v is a child node */
	uint64_t leafvec; /* bit v: entry v is a leaf that starts a run of equal leaves */
	uint32_t base0;   /* first leaf of the block */
	uint32_t base1;   /* first child of the block */
};

/*
 * A leaf holds all of its region's answer, so a lookup ends in the leaf's own cache lines: slot
 * 0 is the longest prefix covering the whole region (the default), slots 1..LPM6_LEAF_K-1 the
 * prefixes inside the region (all of them: a region with more gets a node), ancestors before
 * their descendants, after padding slots that repeat the default (key 0, length 0: they match
 * every address). The lookup compares the address against every slot without a branch and
 * takes the last that matches: the longest, since all that match are nested. So a lookup past
 * the levels the cache holds reads one leaf (two adjacent lines, fetched in parallel), and no
 * instruction after that read waits on anything but it.
 */
#ifndef LPM6_LEAF_K
#define LPM6_LEAF_K 3
#endif

struct lpm6_leaf {
	uint64_t k[LPM6_LEAF_K - 1][2]; /* slot i+1's key (bits past its length clear) */
	uint32_t val[LPM6_LEAF_K];
	uint8_t plen[LPM6_LEAF_K];
	uint8_t has; /* bit i: slot i has a value */
	uint8_t n;   /* prefixes inside the region: the last n slots */
} __attribute__((aligned(LPM6_LEAF_K > 3 ? 128 : 64)));

/* A growable array of fixed-size elements handed out in blocks of 1..64, with one free list
 * per block size, so a patched node reuses the blocks freed by the last one. */
struct lpm6_pool {
	void *a;
	size_t esz;
	uint32_t cap, used;
	uint32_t freel[65];
};

enum { LPM6_DIRECT_BITS = 14, LPM6_STRIDE = 6, LPM6_LEAF_FLAG = 1U << 31 };

struct lpm6 {
	struct lpm6_node *n;
	uint32_t cap;   /* nodes allocated, node 0 included */
	uint32_t used;  /* nodes ever handed out, node 0 included */
	uint32_t freel; /* head of the free list */
	uint32_t nfree;
	uint32_t root;
	size_t count;
	bool fast; /* false after an allocation failed: lookups walk the trie until rebuilt */
	bool hw;   /* the CPU has POPCNT: lookups take the builds that use it */
	uint32_t direct[1 << LPM6_DIRECT_BITS]; /* node index, or LPM6_LEAF_FLAG | leaf index */
	struct lpm6_pool pn;                    /* struct lpm6_pnode */
	struct lpm6_pool lf;                    /* struct lpm6_leaf; leaf 0 is "no route" */
};

enum { LPM6_MAX_NODES = UINT32_MAX / 2 };

static inline uint64_t load_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8); /* one load: the byte loop cost a tenth of a batched lookup */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
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

/* ---- memory ---- */

/*
 * An array of LPM6_HUGE bytes or more (the trie's nodes, the poptrie's pools) gets a mapping of
 * its own, aligned to 2 MiB and marked MADV_HUGEPAGE: a lookup in a large table touches a few
 * random places in 100 MB or more, and with 4 KiB pages each of them also missed the TLB (its
 * 1536 or so entries cover 6 MiB); with 2 MiB pages the whole table fits in it. Where
 * transparent huge pages are off, the advice is ignored and the pages stay small. Smaller arrays
 * stay on the heap.
 */
enum { LPM6_HUGE = 2 << 20 };

static size_t map_len(size_t sz)
{
	return (sz + LPM6_HUGE - 1) & ~(size_t)(LPM6_HUGE - 1);
}

static void *map_huge(size_t sz)
{
	size_t len = map_len(sz);
	char *m =
	    mmap(NULL, len + LPM6_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	uintptr_t at = ((uintptr_t)m + LPM6_HUGE - 1) & ~(uintptr_t)(LPM6_HUGE - 1);
	size_t head = at - (uintptr_t)m;
	if (head)
		munmap(m, head);
	munmap((char *)at + len, LPM6_HUGE - head);
	(void)madvise((void *)at, len, MADV_HUGEPAGE); /* advice: refused is fine */
	return (void *)at;
}

static void mem_free(void *p, size_t sz)
{
	if (sz >= LPM6_HUGE)
		munmap(p, map_len(sz));
	else
		free(p);
}

/* p (oldsz bytes) grown to newsz bytes, its content kept, aligned to 128 bytes (a leaf's two
 * lines); NULL (p untouched) if out of memory. */
static void *mem_grow(void *p, size_t oldsz, size_t newsz)
{
	if (newsz < LPM6_HUGE) {
		void *q = aligned_alloc(128, (newsz + 127) & ~(size_t)127);
		if (!q)
			return NULL;
		if (oldsz)
			memcpy(q, p, oldsz < newsz ? oldsz : newsz);
		free(p);
		return q;
	}
	if (oldsz >= LPM6_HUGE && map_len(newsz) == map_len(oldsz))
		return p;
	void *q = map_huge(newsz);
	if (!q)
		return NULL;
	if (oldsz)
		memcpy(q, p, oldsz);
	mem_free(p, oldsz);
	return q;
}

/* ---- the poptrie: the read path ---- */

static int pool_init(struct lpm6_pool *p, size_t esz)
{
	memset(p, 0, sizeof(*p));
	p->esz = esz;
	p->a = mem_grow(NULL, 0, 64 * esz);
	if (!p->a)
		return -ENOMEM;
	memset(p->a, 0, 64 * esz);
	p->cap = 64;
	p->used = 1; /* element 0 stays zero: the "no route" leaf */
	return 0;
}

static inline void *pool_at(const struct lpm6_pool *p, uint32_t i)
{
	return (char *)p->a + (size_t)i * p->esz;
}

/* n (1..64) contiguous elements, or UINT32_MAX if out of memory. */
static uint32_t pool_alloc(struct lpm6_pool *p, unsigned n)
{
	uint32_t i = p->freel[n];
	if (i) {
		memcpy(&p->freel[n], pool_at(p, i), sizeof(uint32_t));
		return i;
	}
	if ((size_t)p->used + n > p->cap) {
		size_t cap = (size_t)p->cap * 2;
		if (cap > LPM6_MAX_NODES)
			return UINT32_MAX;
		void *a = mem_grow(p->a, (size_t)p->cap * p->esz, cap * p->esz);
		if (!a)
			return UINT32_MAX;
		p->a = a;
		p->cap = (uint32_t)cap;
	}
	i = p->used;
	p->used += n;
	return i;
}

static void pool_free(struct lpm6_pool *p, uint32_t i, unsigned n)
{
	if (!n || !i)
		return;
	memcpy(pool_at(p, i), &p->freel[n], sizeof(uint32_t));
	p->freel[n] = i;
}

static inline struct lpm6_pnode *pnode(const struct lpm6 *t, uint32_t i)
{
	return (struct lpm6_pnode *)t->pn.a + i;
}

static inline struct lpm6_leaf *pleaf(const struct lpm6 *t, uint32_t i)
{
	return (struct lpm6_leaf *)t->lf.a + i;
}

/* Prefetches poptrie node i: a 24-byte node may straddle two cache lines, and a read of the
 * second one, not prefetched, stalled the batched lookup for a whole memory latency. */
static inline void pnode_prefetch(const struct lpm6 *t, uint32_t i)
{
	const char *p = (const char *)pnode(t, i);
	__builtin_prefetch(p);
	__builtin_prefetch(p + sizeof(struct lpm6_pnode) - 1);
}

/* Prefetches leaf i, both of its lines. */
static inline void leaf_prefetch(const struct lpm6 *t, uint32_t i)
{
	const char *p = (const char *)pleaf(t, i);
	__builtin_prefetch(p);
	__builtin_prefetch(p + 64);
}

/* The LPM6_STRIDE bits of a starting at bit pos (pos <= 122). */
static inline unsigned chunk(const uint64_t a[2], unsigned pos)
{
	if (pos + LPM6_STRIDE <= 64)
		return (unsigned)(a[0] >> (64 - LPM6_STRIDE - pos)) & 63;
	if (pos >= 64)
		return (unsigned)(a[1] >> (128 - LPM6_STRIDE - pos)) & 63;
	return (unsigned)((a[0] << (pos + LPM6_STRIDE - 64)) |
	                  (a[1] >> (128 - LPM6_STRIDE - pos))) &
	       63;
}

static inline unsigned slot_of(const uint64_t a[2])
{
	return (unsigned)(a[0] >> (64 - LPM6_DIRECT_BITS));
}

/* The bits set in v. The build targets baseline x86-64, where __builtin_popcountll is a call into
 * libgcc, and the batched lookup spilled its registers around it: the same arithmetic, inline. */
static inline unsigned popcount64(uint64_t v)
{
#ifdef __POPCNT__
	return (unsigned)__builtin_popcountll(v);
#else
	v = v - ((v >> 1) & 0x5555555555555555ULL);
	v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
	v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (unsigned)((v * 0x0101010101010101ULL) >> 56);
#endif
}

/* Bits of v below bit b, counted: where entry b sits in its block. */
static inline unsigned rank(uint64_t v, unsigned b)
{
	return popcount64(v & ((2ULL << b) - 1));
}

/*
 * The lookups come in two builds from one body (always inlined with hw constant): hw true is
 * compiled for the POPCNT instruction and taken where the CPU has it (lpm6_new asks once), hw
 * false counts bits with the arithmetic above. With the instruction a level of the walk takes a
 * dozen instructions fewer, and the lookups at 1M prefixes are bound by how many of them the
 * CPU keeps in flight, not by the instructions alone (see the bench).
 */
#define LPM6_FLAT static inline __attribute__((always_inline))
#define LPM6_HW __attribute__((target("popcnt"), noinline))

LPM6_FLAT unsigned rank_x(uint64_t v, unsigned b, bool hw)
{
	v &= (2ULL << b) - 1;
	return hw ? (unsigned)__builtin_popcountll(v) : popcount64(v);
}

/* The region of pos bits holding key k: *root is the topmost trie node with plen >= pos inside
 * it (0 if none), *def the longest prefix shorter than pos that holds it (0 if none). */
static void trie_region(const struct lpm6 *t, const uint64_t k[2], unsigned pos, uint32_t *root,
                        uint32_t *def)
{
	uint64_t r[2] = {k[0] & mask_word(pos, 0), k[1] & mask_word(pos, 1)};
	uint32_t i = t->root, best = 0;
	while (i) {
		const struct lpm6_node *nd = &t->n[i];
		if (nd->plen >= pos) {
			if (common_bits(nd->k, r) < pos)
				i = 0;
			break;
		}
		if (!node_holds(nd, r)) {
			i = 0;
			break;
		}
		if (nd->has_val)
			best = i;
		i = nd->child[bit_at(r, nd->plen)];
	}
	*root = i;
	*def = best;
}

/* The prefixes (nodes with a value) of the trie subtree at i, counted up to lim + 1. */
static unsigned subtree_vals(const struct lpm6 *t, uint32_t i, unsigned lim)
{
	unsigned c = 0;
	while (i && c <= lim) {
		const struct lpm6_node *nd = &t->n[i];
		c += nd->has_val;
		if (nd->child[0] && c <= lim)
			c += subtree_vals(t, nd->child[0], lim - c);
		i = nd->child[1];
	}
	return c;
}

struct lpm6_scan {
	uint32_t best[64]; /* the longest prefix of at most pos + 6 bits holding entry v */
	uint32_t sub[64];  /* the topmost trie node below entry v with longer prefixes */
};

/* Fills s for the node at pos from the trie subtree at i (all of it at or below pos): prefixes
 * ending in the stride fill the entries they cover, parents before children so the longer wins;
 * deeper ones mark their entry's subtree. Recursion depth is at most the stride. */
static void scan(const struct lpm6 *t, uint32_t i, unsigned pos, struct lpm6_scan *s)
{
	unsigned end = pos + LPM6_STRIDE;
	while (i) {
		const struct lpm6_node *nd = &t->n[i];
		if (nd->plen > end || (nd->plen == end && (nd->child[0] | nd->child[1]))) {
			unsigned v = chunk(nd->k, pos);
			s->sub[v] = i;
			if (nd->plen == end && nd->has_val)
				s->best[v] = i;
			return;
		}
		if (nd->has_val) {
			unsigned lo = chunk(nd->k, pos), cnt = 1U << (end - nd->plen);
			for (unsigned v = lo; v < lo + cnt; v++)
				s->best[v] = i;
		}
		scan(t, nd->child[0], pos, s);
		i = nd->child[1];
	}
}

/* Appends the prefixes of the trie subtree at i to l's slots from *at on, parents first. */
static void leaf_fill(const struct lpm6 *t, struct lpm6_leaf *l, uint32_t i, unsigned *at)
{
	while (i) {
		const struct lpm6_node *nd = &t->n[i];
		if (nd->has_val) {
			unsigned j = (*at)++;
			l->k[j - 1][0] = nd->k[0];
			l->k[j - 1][1] = nd->k[1];
			l->val[j] = nd->val;
			l->plen[j] = nd->plen;
			l->has |= (uint8_t)(1U << j);
		}
		leaf_fill(t, l, nd->child[0], at);
		i = nd->child[1];
	}
}

/* The default slots of l (slot 0 and the padding) set to trie node best, whose prefix covers
 * the region, so a padding slot matches every address in it (0: no route, key 0 and length 0,
 * which match any address). */
static void leaf_set_def(const struct lpm6 *t, struct lpm6_leaf *l, uint32_t best)
{
	const struct lpm6_node *nd = best ? &t->n[best] : NULL;
	for (unsigned j = 0; j < (unsigned)(LPM6_LEAF_K - l->n); j++) {
		if (j) {
			l->k[j - 1][0] = nd ? nd->k[0] : 0;
			l->k[j - 1][1] = nd ? nd->k[1] : 0;
		}
		l->val[j] = nd ? nd->val : 0;
		l->plen[j] = nd ? nd->plen : 0;
		l->has = (uint8_t)((l->has & ~(1U << j)) | (nd ? 1U : 0U) << j);
	}
}

/* The leaf of a region whose longest covering prefix is best and whose trie subtree is sub
 * (fits_leaf: at most LPM6_LEAF_K - 1 prefixes). */
static void leaf_make(const struct lpm6 *t, struct lpm6_leaf *l, uint32_t best, uint32_t sub)
{
	memset(l, 0, sizeof(*l));
	l->n = (uint8_t)subtree_vals(t, sub, LPM6_LEAF_K - 1);
	unsigned at = LPM6_LEAF_K - l->n;
	leaf_fill(t, l, sub, &at);
	leaf_set_def(t, l, best);
}

static bool leaf_same(const struct lpm6_leaf *a, const struct lpm6_leaf *b)
{
	return !memcmp(a, b, sizeof(*a)); /* leaf_make clears the padding */
}

/* Whether the trie subtree sub, the whole of a region, fits in a leaf. */
static bool fits_leaf(const struct lpm6 *t, uint32_t sub)
{
	return subtree_vals(t, sub, LPM6_LEAF_K - 1) <= LPM6_LEAF_K - 1;
}

/*
 * Builds node at (an element of the node pool) for the region at pos whose trie subtree is root
 * and whose longest shorter prefix is def. With old (the node's previous content), the child
 * nodes of old other than entry vdeep are kept as they are (a change below vdeep alone cannot
 * touch them; LPM6_KEEP_ALL keeps them all); the rest is built anew. Returns 0 or -ENOMEM (the
 * poptrie is then inconsistent, and the caller drops it).
 */
static int build_node(struct lpm6 *t, uint32_t at, unsigned pos, uint32_t root, uint32_t def,
                      const struct lpm6_pnode *old, unsigned vdeep)
{
	struct lpm6_scan s;
	struct lpm6_leaf lv[2]; /* the leaf made last and the one before it */
	uint64_t vec = 0, leafvec = 0;
	unsigned nl = 0;
	for (unsigned v = 0; v < 64; v++) {
		s.best[v] = def;
		s.sub[v] = 0;
	}
	scan(t, root, pos, &s);
	/* two passes over the leaves: count the runs, then write them into their block (a block
	 * of 64 leaves is 8 KB, too much for a stack frame of a recursive build) */
	for (unsigned v = 0; v < 64; v++) {
		if (s.sub[v] && !fits_leaf(t, s.sub[v])) {
			vec |= 1ULL << v;
			continue;
		}
		leaf_make(t, &lv[nl & 1], s.best[v], s.sub[v]);
		if (!nl || !leaf_same(&lv[nl & 1], &lv[(nl - 1) & 1])) {
			nl++;
			leafvec |= 1ULL << v;
		}
	}
	unsigned nk = popcount64(vec);
	uint32_t base0 = 0, base1 = 0;
	if (nl && (base0 = pool_alloc(&t->lf, nl)) == UINT32_MAX)
		return -ENOMEM;
	if (nk && (base1 = pool_alloc(&t->pn, nk)) == UINT32_MAX)
		return -ENOMEM;
	for (unsigned v = 0, c = 0; v < 64; v++)
		if (leafvec >> v & 1)
			leaf_make(t, pleaf(t, base0 + c++), s.best[v], s.sub[v]);
	unsigned k = 0;
	for (unsigned v = 0; v < 64; v++) {
		if (!(vec >> v & 1))
			continue;
		uint32_t ci = base1 + k++;
		if (old && v != vdeep && (old->vector >> v & 1)) {
			*pnode(t, ci) = *pnode(t, old->base1 + rank(old->vector, v) - 1);
			continue;
		}
		int r = build_node(t, ci, pos + LPM6_STRIDE, s.sub[v], s.best[v], NULL, 0);
		if (r)
			return r;
	}
	struct lpm6_pnode *nd = pnode(t, at);
	nd->vector = vec;
	nd->leafvec = leafvec;
	nd->base0 = base0;
	nd->base1 = base1;
	return 0;
}

/* Returns the blocks below node i to the pools (i itself belongs to its parent's block). */
static void free_subtree(struct lpm6 *t, uint32_t i)
{
	struct lpm6_pnode nd = *pnode(t, i);
	unsigned nk = popcount64(nd.vector);
	for (unsigned k = 0; k < nk; k++)
		free_subtree(t, nd.base1 + k);
	pool_free(&t->pn, nd.base1, nk);
	pool_free(&t->lf, nd.base0, popcount64(nd.leafvec));
}

/* Rebuilds node at (region of pos bits holding k) after a change below its entry vdeep: the
 * entry is built anew, the other children are kept. */
static int rebuild_shallow(struct lpm6 *t, uint32_t at, unsigned pos, const uint64_t k[2],
                           unsigned vdeep)
{
	struct lpm6_pnode old = *pnode(t, at);
	uint32_t root, def;
	trie_region(t, k, pos, &root, &def);
	int r = build_node(t, at, pos, root, def, &old, vdeep);
	if (r)
		return r;
	uint64_t kept = pnode(t, at)->vector;
	if (vdeep < 64)
		kept &= ~(1ULL << vdeep);
	unsigned nk = popcount64(old.vector);
	for (unsigned v = 0, c = 0; v < 64; v++)
		if (old.vector >> v & 1) {
			if (!(kept >> v & 1))
				free_subtree(t, old.base1 + c);
			c++;
		}
	pool_free(&t->pn, old.base1, nk);
	pool_free(&t->lf, old.base0, popcount64(old.leafvec));
	return 0;
}

/* Rebuilds direct entry j from the trie. */
static int rebuild_slot(struct lpm6 *t, unsigned j)
{
	uint64_t k[2] = {(uint64_t)j << (64 - LPM6_DIRECT_BITS), 0};
	uint32_t root, def, e, old = t->direct[j];
	trie_region(t, k, LPM6_DIRECT_BITS, &root, &def);
	if (!root && !def) {
		e = LPM6_LEAF_FLAG;
	} else if (fits_leaf(t, root)) {
		uint32_t i = pool_alloc(&t->lf, 1);
		if (i == UINT32_MAX)
			return -ENOMEM;
		leaf_make(t, pleaf(t, i), def, root);
		e = LPM6_LEAF_FLAG | i;
	} else {
		e = pool_alloc(&t->pn, 1);
		if (e == UINT32_MAX)
			return -ENOMEM;
		int r = build_node(t, e, LPM6_DIRECT_BITS, root, def, NULL, 0);
		if (r)
			return r;
	}
	if (old & LPM6_LEAF_FLAG) {
		pool_free(&t->lf, old & ~LPM6_LEAF_FLAG, 1);
	} else {
		free_subtree(t, old);
		pool_free(&t->pn, old, 1);
	}
	t->direct[j] = e;
	return 0;
}

/* Drops the poptrie: lookups walk the trie until fast_rebuild succeeds. */
static void fast_drop(struct lpm6 *t)
{
	mem_free(t->pn.a, (size_t)t->pn.cap * t->pn.esz);
	t->pn.a = NULL;
	mem_free(t->lf.a, (size_t)t->lf.cap * t->lf.esz);
	t->lf.a = NULL;
	memset(&t->pn, 0, sizeof(t->pn));
	memset(&t->lf, 0, sizeof(t->lf));
	t->fast = false;
}

/* Builds the whole poptrie from the trie. Returns 0 or -ENOMEM (then dropped). */
static int fast_rebuild(struct lpm6 *t)
{
	fast_drop(t);
	if (pool_init(&t->pn, sizeof(struct lpm6_pnode)) ||
	    pool_init(&t->lf, sizeof(struct lpm6_leaf))) {
		fast_drop(t);
		return -ENOMEM;
	}
	for (unsigned j = 0; j < 1U << LPM6_DIRECT_BITS; j++)
		t->direct[j] = LPM6_LEAF_FLAG;
	for (unsigned j = 0; j < 1U << LPM6_DIRECT_BITS; j++)
		if (rebuild_slot(t, j)) {
			fast_drop(t);
			return -ENOMEM;
		}
	t->fast = true;
	return 0;
}

enum { LPM6_MAX_DEPTH = (128 - LPM6_DIRECT_BITS) / LPM6_STRIDE + 1, LPM6_KEEP_ALL = 64 };

/* The longest prefix of at most plen bits holding k, or 0. */
static uint32_t best_upto(const struct lpm6 *t, const uint64_t k[2], unsigned plen)
{
	uint32_t i = t->root, best = 0;
	while (i) {
		const struct lpm6_node *nd = &t->n[i];
		if (nd->plen > plen || !node_holds(nd, k))
			break;
		if (nd->has_val)
			best = i;
		if (nd->plen == plen)
			break;
		i = nd->child[bit_at(k, nd->plen)];
	}
	return best;
}

/* Below node i, all inside the region of a changed prefix of plen bits whose best match is
 * now b: every leaf that took its value from a prefix of at most plen bits takes b's. The shape
 * cannot change (only prefixes longer than a node's stride shape it), so no node is rebuilt;
 * runs of leaves that become equal stay apart, which costs a few bytes and no correctness. */
static void patch_subtree(struct lpm6 *t, uint32_t i, unsigned plen, uint32_t b)
{
	struct lpm6_pnode nd = *pnode(t, i);
	unsigned nl = popcount64(nd.leafvec);
	for (unsigned c = 0; c < nl; c++) {
		struct lpm6_leaf *l = pleaf(t, nd.base0 + c);
		if (!(l->has & 1) || l->plen[0] <= plen) {
			leaf_set_def(t, l, b);
		}
	}
	unsigned nk = popcount64(nd.vector);
	for (unsigned c = 0; c < nk; c++)
		patch_subtree(t, nd.base1 + c, plen, b);
}

/*
 * Patches the poptrie after prefix k/plen was added, replaced or removed in the trie. A prefix
 * longer than a node's stride can change the node's shape: the deepest node it falls below is
 * rebuilt, with its one entry holding the prefix built anew and its other children kept. A
 * prefix within a node's stride (or shorter than the direct table's) changes only values: that
 * node's leaves are recomputed and the leaves below the prefix rewritten in place. After a
 * removal, nodes whose region now fits a tail are folded into their parent, so the poptrie's
 * size follows the table's.
 */
static int fast_patch(struct lpm6 *t, const uint64_t k[2], unsigned plen, bool removed)
{
	if (!t->fast)
		return fast_rebuild(t);
	uint32_t b = best_upto(t, k, plen);
	unsigned j = slot_of(k);
	if (plen < LPM6_DIRECT_BITS) {
		for (unsigned c = 0; c < 1U << (LPM6_DIRECT_BITS - plen); c++) {
			uint32_t e = t->direct[j + c];
			if (!(e & LPM6_LEAF_FLAG))
				patch_subtree(t, e, plen, b);
			else if (rebuild_slot(t, j + c))
				return -ENOMEM;
		}
		return 0;
	}
	uint32_t at = t->direct[j];
	if (at & LPM6_LEAF_FLAG)
		return rebuild_slot(t, j);
	uint32_t path[LPM6_MAX_DEPTH];
	unsigned d = 0, pos = LPM6_DIRECT_BITS, v;
	for (;;) {
		const struct lpm6_pnode *nd = pnode(t, at);
		path[d++] = at;
		v = chunk(k, pos);
		if (plen < pos + LPM6_STRIDE || !(nd->vector >> v & 1))
			break;
		at = nd->base1 + rank(nd->vector, v) - 1;
		pos += LPM6_STRIDE;
	}
	if (plen < pos + LPM6_STRIDE) {
		if (rebuild_shallow(t, at, pos, k, LPM6_KEEP_ALL))
			return -ENOMEM;
		const struct lpm6_pnode *nd = pnode(t, at);
		for (unsigned c = v; c < v + (1U << (pos + LPM6_STRIDE - plen)); c++)
			if (nd->vector >> c & 1)
				patch_subtree(t, nd->base1 + rank(nd->vector, c) - 1, plen, b);
		return 0;
	}
	if (rebuild_shallow(t, at, pos, k, v))
		return -ENOMEM;
	while (removed && d) {
		uint32_t root, def;
		pos = LPM6_DIRECT_BITS + LPM6_STRIDE * (d - 1);
		trie_region(t, k, pos, &root, &def);
		if (!fits_leaf(t, root))
			break;
		if (d == 1)
			return rebuild_slot(t, j);
		pos -= LPM6_STRIDE;
		if (rebuild_shallow(t, path[d - 2], pos, k, chunk(k, pos)))
			return -ENOMEM;
		d--;
	}
	return 0;
}

/* After a change to the trie: patches the poptrie, or drops it if memory ran out. */
static void fast_changed(struct lpm6 *t, const uint64_t k[2], unsigned plen, bool removed)
{
	if (fast_patch(t, k, plen, removed))
		fast_drop(t);
}

/* A table whose lookups take the POPCNT builds if hw_ok and the CPU has the instruction. */
static struct lpm6 *table_new(bool hw_ok)
{
	struct lpm6 *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->used = 1;
	__builtin_cpu_init();
	t->hw = hw_ok && __builtin_cpu_supports("popcnt");
	if (lpm6_reserve(t, 8) || fast_rebuild(t)) {
		mem_free(t->n, (size_t)t->cap * sizeof(*t->n));
		fast_drop(t);
		free(t);
		return NULL;
	}
	return t;
}

struct lpm6 *lpm6_new(void)
{
	return table_new(true);
}

struct lpm6 *lpm6_new_soft(void)
{
	return table_new(false);
}

void lpm6_free(struct lpm6 *t)
{
	if (!t)
		return;
	mem_free(t->n, (size_t)t->cap * sizeof(*t->n));
	t->n = NULL;
	fast_drop(t);
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
	struct lpm6_node *n = mem_grow(t->n, (size_t)t->cap * sizeof(*n), cap * sizeof(*n));
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
			fast_changed(t, k, plen, false);
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
			fast_changed(t, k, plen, false);
			return 0;
		}
		/* they part at bit common: a glue node there holds both */
		uint32_t glue = node_take(t, k, common);
		t->n[glue].child[bit_at(k, common)] = fresh;
		t->n[glue].child[bit_at(t->n[cur].k, common)] = cur;
		*link = glue;
		fast_changed(t, k, plen, false);
		return 0;
	}
	uint32_t fresh = node_take(t, k, plen);
	t->n[fresh].val = val;
	t->n[fresh].has_val = 1;
	*link = fresh;
	t->count++;
	fast_changed(t, k, plen, false);
	return 0;
}

/* Clears the value of the node at *link (its parent's link at *plink, NULL at the root) and
 * splices out what is left with fewer than two children. */
static void trie_unlink(struct lpm6 *t, uint32_t *plink, uint32_t *link)
{
	uint32_t cur = *link;
	struct lpm6_node *nd = &t->n[cur];
	nd->has_val = 0;
	t->count--;
	if (nd->child[0] && nd->child[1])
		return; /* stays as glue */
	*link = nd->child[0] ? nd->child[0] : nd->child[1];
	node_put(t, cur);
	if (*link || !plink)
		return;
	/* cur was a leaf: its parent may now be a glue node with one child */
	uint32_t par = *plink;
	struct lpm6_node *pn = &t->n[par];
	if (pn->has_val)
		return;
	*plink = pn->child[0] ? pn->child[0] : pn->child[1];
	node_put(t, par);
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
	trie_unlink(t, plink, link);
	fast_changed(t, k, plen, true);
	return 0;
}

/* The longest prefix holding a found by walking the trie from node i, or best if none. */
static inline const struct lpm6_node *trie_walk(const struct lpm6 *t, uint32_t i,
                                                const uint64_t a[2], const struct lpm6_node *best)
{
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
	return best;
}

static bool answer(const struct lpm6_node *nd, uint32_t *val, unsigned *plen)
{
	if (!nd)
		return false;
	if (val)
		*val = nd->val;
	if (plen)
		*plen = nd->plen;
	return true;
}

/* The poptrie's leaf for a. */
LPM6_FLAT const struct lpm6_leaf *fast_leaf(const struct lpm6 *t, const uint64_t a[2], bool hw)
{
	uint32_t e = t->direct[slot_of(a)];
	if (e & LPM6_LEAF_FLAG)
		return pleaf(t, e & ~LPM6_LEAF_FLAG);
	const struct lpm6_pnode *nd = pnode(t, e);
	for (unsigned pos = LPM6_DIRECT_BITS;; pos += LPM6_STRIDE) {
		unsigned v = chunk(a, pos);
		if (!(nd->vector >> v & 1))
			return pleaf(t, nd->base0 + rank_x(nd->leafvec, v, hw) - 1);
		nd = pnode(t, nd->base1 + rank_x(nd->vector, v, hw) - 1);
	}
}

/* Whether the first plen bits of a and k agree (k has no bits set past plen). */
static inline bool key_holds(const uint64_t k[2], unsigned plen, const uint64_t a[2])
{
	return !((a[0] ^ k[0]) & mask_word(plen, 0)) && !((a[1] ^ k[1]) & mask_word(plen, 1));
}

/* The masks of the first plen bits in each word, for plen 0..128: a leaf's slot compares
 * through them instead of computing them (two loads from a table the L1 cache holds). */
#define LPM6_MW0(p) ((p) >= 64 ? ~0ULL : (p) ? ~0ULL << ((64 - (p)) & 63) : 0ULL)
#define LPM6_MW1(p) ((p) > 64 ? ~0ULL << ((128 - (p)) & 63) : 0ULL)
#define LPM6_M1(p)                                                                                 \
	{                                                                                          \
		LPM6_MW0(p), LPM6_MW1(p)                                                           \
	}
#define LPM6_M4(p) LPM6_M1(p), LPM6_M1((p) + 1), LPM6_M1((p) + 2), LPM6_M1((p) + 3)
#define LPM6_M16(p) LPM6_M4(p), LPM6_M4((p) + 4), LPM6_M4((p) + 8), LPM6_M4((p) + 12)
#define LPM6_M64(p) LPM6_M16(p), LPM6_M16((p) + 16), LPM6_M16((p) + 32), LPM6_M16((p) + 48)
static const uint64_t lpm6_masks[129][2]
    __attribute__((aligned(64))) = {LPM6_M64(0), LPM6_M64(64), LPM6_M1(128)};

/* The slot of leaf l that answers a: the last whose prefix holds a, without a branch. */
LPM6_FLAT unsigned leaf_pick(const struct lpm6_leaf *l, const uint64_t a[2])
{
	unsigned hits = 1; /* bit j: slot j holds a (slot 0 always does) */
	for (unsigned j = 1; j < LPM6_LEAF_K; j++) {
		const uint64_t *m = lpm6_masks[l->plen[j]];
		uint64_t x = ((a[0] ^ l->k[j - 1][0]) & m[0]) | ((a[1] ^ l->k[j - 1][1]) & m[1]);
		hits |= (unsigned)(x == 0) << j;
	}
	/* the highest bit set: a select the compiler turned into a jump cost a mispredicted
	 * branch on the leaf's data, the line that misses */
	return 31 - (unsigned)__builtin_clz(hits);
}

LPM6_FLAT bool lookup_x(const struct lpm6 *t, const uint64_t a[2], uint32_t *val, unsigned *plen,
                        bool hw)
{
	const struct lpm6_leaf *l = fast_leaf(t, a, hw);
	unsigned j = leaf_pick(l, a);
	if (val)
		*val = l->val[j];
	if (plen)
		*plen = l->plen[j];
	return l->has >> j & 1;
}

LPM6_HW static bool lookup_hw(const struct lpm6 *t, const uint8_t addr[16], uint32_t *val,
                              unsigned *plen)
{
	uint64_t a[2] = {load_be64(addr), load_be64(addr + 8)};
	return lookup_x(t, a, val, plen, true);
}

__attribute__((noinline)) static bool lookup_sw(const struct lpm6 *t, const uint8_t addr[16],
                                                uint32_t *val, unsigned *plen)
{
	uint64_t a[2] = {load_be64(addr), load_be64(addr + 8)};
	if (!t->fast)
		return answer(trie_walk(t, t->root, a, NULL), val, plen);
	return lookup_x(t, a, val, plen, false);
}

/* Only picks the build, so the call is a jump and saves no registers. */
bool lpm6_lookup(const struct lpm6 *t, const uint8_t addr[static 16], uint32_t *val, unsigned *plen)
{
	if (t->hw && t->fast)
		return lookup_hw(t, addr, val, plen);
	return lookup_sw(t, addr, val, plen);
}

enum { LPM6_LANES = 64 };

/* Where one lane of lpm6_lookup_batch is: in a poptrie node, at a leaf, or idle. */
enum { LANE_NODE, LANE_LEAF, LANE_IDLE };

struct lpm6_lanes {
	uint64_t a[LPM6_LANES][2];
	uint32_t at[LPM6_LANES];
	size_t who[LPM6_LANES]; /* the address this lane looks up */
	uint8_t pos[LPM6_LANES], st[LPM6_LANES];
};

/*
 * Starts lane j on address i. The direct table and the two node levels below it are few and
 * read by every lookup, so they stay cached: the lane walks them at once and yields (after a
 * prefetch) only at the first deeper node or leaf, whose read is likely to miss. Where a level
 * is larger than the cache, this only means the miss is waited for here.
 */
enum { LPM6_HOT_POS = LPM6_DIRECT_BITS + 2 * LPM6_STRIDE };

LPM6_FLAT void lane_start(const struct lpm6 *t, struct lpm6_lanes *L, unsigned j,
                          const uint8_t addr[16], size_t i, bool *found, bool hw)
{
	uint64_t *a = L->a[j];
	a[0] = load_be64(addr);
	a[1] = load_be64(addr + 8);
	L->who[j] = i;
	found[i] = false;
	uint32_t e = t->direct[slot_of(a)];
	unsigned pos = LPM6_DIRECT_BITS;
	while (!(e & LPM6_LEAF_FLAG) && pos < LPM6_HOT_POS) {
		const struct lpm6_pnode *nd = pnode(t, e);
		unsigned v = chunk(a, pos);
		if (nd->vector >> v & 1) {
			e = nd->base1 + rank_x(nd->vector, v, hw) - 1;
			pos += LPM6_STRIDE;
		} else {
			e = LPM6_LEAF_FLAG | (nd->base0 + rank_x(nd->leafvec, v, hw) - 1);
		}
	}
	L->pos[j] = (uint8_t)pos;
	if (e & LPM6_LEAF_FLAG) {
		L->at[j] = e & ~LPM6_LEAF_FLAG;
		L->st[j] = LANE_LEAF;
		leaf_prefetch(t, L->at[j]);
	} else {
		L->at[j] = e;
		L->st[j] = LANE_NODE;
		pnode_prefetch(t, e);
	}
}

/*
 * The lanes run as a pipeline: each round takes one step of every busy lane, reading what the
 * previous round prefetched for it, and a lane whose lookup ends takes the next address at once.
 * So up to LPM6_LANES cache misses stay in flight whatever the lengths of the walks, where
 * lanes moving in lockstep waited for the longest walk of their group.
 */
LPM6_FLAT void batch_x(const struct lpm6 *t, const uint8_t (*addr)[16], size_t n, uint32_t *val,
                       bool *found, bool hw)
{
	struct lpm6_lanes L;
	unsigned k = n < LPM6_LANES ? (unsigned)n : LPM6_LANES, busy = k;
	size_t next = 0;
	for (unsigned j = 0; j < k; j++, next++)
		lane_start(t, &L, j, addr[next], next, found, hw);
	while (busy) {
		for (unsigned j = 0; j < k; j++) {
			size_t i = L.who[j];
			switch (L.st[j]) {
			case LANE_NODE: {
				const struct lpm6_pnode *nd = pnode(t, L.at[j]);
				unsigned v = chunk(L.a[j], L.pos[j]);
				if (nd->vector >> v & 1) {
					L.at[j] = nd->base1 + rank_x(nd->vector, v, hw) - 1;
					L.pos[j] += LPM6_STRIDE;
					pnode_prefetch(t, L.at[j]);
				} else {
					L.at[j] = nd->base0 + rank_x(nd->leafvec, v, hw) - 1;
					L.st[j] = LANE_LEAF;
					leaf_prefetch(t, L.at[j]);
				}
				continue;
			}
			case LANE_LEAF: {
				const struct lpm6_leaf *l = pleaf(t, L.at[j]);
				unsigned at = leaf_pick(l, L.a[j]);
				found[i] = l->has >> at & 1;
				val[i] = l->val[at];
				break;
			}
			default:
				continue;
			}
			/* lane j is done: on to the next address, or idle */
			if (next < n) {
				lane_start(t, &L, j, addr[next], next, found, hw);
				next++;
			} else {
				L.st[j] = LANE_IDLE;
				busy--;
			}
		}
	}
}

LPM6_HW static void batch_hw(const struct lpm6 *t, const uint8_t (*addr)[16], size_t n,
                             uint32_t *val, bool *found)
{
	batch_x(t, addr, n, val, found, true);
}

void lpm6_lookup_batch(const struct lpm6 *t, const uint8_t (*addr)[16], size_t n, uint32_t *val,
                       bool *found)
{
	if (!t->fast) {
		for (size_t j = 0; j < n; j++)
			found[j] = lpm6_lookup(t, addr[j], &val[j], NULL);
		return;
	}
	if (t->hw)
		batch_hw(t, addr, n, val, found);
	else
		batch_x(t, addr, n, val, found, false);
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
	return sizeof(*t) + (size_t)t->cap * sizeof(struct lpm6_node) +
	       (size_t)t->pn.cap * t->pn.esz + (size_t)t->lf.cap * t->lf.esz;
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
