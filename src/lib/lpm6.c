#include "peak/lpm6.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/*
 * Layout. Two structures hold the same prefixes:
 *  - the trie of record: a path-compressed binary trie (struct lpm6_node, 32 bytes, in one
 *    array indexed by 32-bit numbers, about 2 nodes a prefix). Adds, removes, gets and walks
 *    use it; lookups reach it only in the deep regions below (past 68 bits).
 *  - the read path: a poptrie patched on every change. A direct table of 2^14 entries (the
 *    first 14 bits) names a node or a leaf. A node (struct lpm6_pnode, 24 bytes) covers 6 more
 *    bits: 64 entries, each a child node or a leaf; its children sit in one block (base1), its
 *    leaves in another (base0), and entry v is found by counting the bits set below v in
 *    vector (children) or leafvec (runs of equal leaves, stored once). A leaf (struct
 *    lpm6_leaf, 32 bytes, never straddling a cache line) holds the longest prefix covering its
 *    whole region and a copy of the region's topmost longer prefix (the tail's first trie node):
 *    the lookup compares the address against that copy and is done.
 *  - where nodes stop: a region (the span of one entry) whose trie subtree is one node ends in a
 *    leaf with that node copied, so a lookup in a region of fewer than 68 bits reads only the
 *    direct table, the nodes on its path and one leaf, never the trie: a region there holding
 *    two or more trie nodes gets a node of its own. Regions of 68 bits or more (inside a /64,
 *    where hosts crowd) end in a leaf when their subtree has up to 3 nodes, and a lookup that
 *    matches a copied node with children walks the trie from it (at most a few nodes), which
 *    keeps a dense /64 from costing a chain of nodes per host pair. The direct table (64 KB)
 *    and the first levels of nodes are read by every lookup and stay in the cache; at 1M
 *    prefixes a lookup that hits a prefix misses it on one or two deeper nodes and its leaf.
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
 * of stride 6 whose 64 entries are either a child node or a leaf. A node is a block of 32-byte
 * units in one arena: a header (vector, leafvec), the unit numbers of its children, then its
 * leaves, so a node's leaves sit right after it in memory and a lookup prefetches them with the
 * node (its last node and its leaf were two dependent cache misses when leaves had a pool of
 * their own). Entry v is found by counting the bits set below v (popcount) in vector
 * (children) or leafvec (runs of equal leaves, stored once). A region whose trie subtree is
 * small enough (fits_tail: one node, or up to LPM6_TAIL_NODES past LPM6_DEEP_BITS) gets no
 * node: its leaf names the trie node to finish the walk from (the tail), which keeps sparse
 * regions (most of a large table) at a few bytes each.
 */
struct lpm6_bhead {
	uint64_t vector;  /* bit v: entry v is a child node */
	uint64_t leafvec; /* bit v: entry v is a leaf that starts a run of equal leaves */
	uint32_t kid[];   /* the children's blocks, in entry order; then the leaves */
};

/*
 * A leaf with a tail carries a copy of the tail's first trie node (key, length, value, whether
 * it has children): above LPM6_DEEP_BITS that node is the only one, and below it most often,
 * so the lookup ends in the leaf's cache line instead of reading the trie (one memory access
 * fewer, the one that misses the cache). Every change that alters that node rebuilds the leaf
 * (fast_patch). A leaf is one unit of the arena, so it never straddles a cache line.
 */
struct lpm6_leaf {
	uint64_t tk[2]; /* the tail's first node: key */
	uint32_t val;
	uint32_t tail; /* 0, or the trie node whose subtree holds the longer prefixes */
	uint32_t tval; /* the tail's first node: value */
	uint8_t plen;
	uint8_t has_val;
	uint8_t tplen;  /* the tail's first node: length */
	uint8_t tflags; /* LPM6_T_VAL: it has a value; LPM6_T_KIDS: it has children */
};

enum { LPM6_T_VAL = 1, LPM6_T_KIDS = 2 };

enum {
	LPM6_UNIT = 32,      /* bytes of a unit of the arena: a leaf, or a block's header */
	LPM6_MAX_UNITS = 73, /* of a block: header and 64 children in 9 units, 64 leaves */
	LPM6_PREFETCH = 3,   /* lines of a block prefetched past its first (its leaves) */
};

/* The arena: units handed out in blocks of 1..LPM6_MAX_UNITS, with one free list per block
 * size, so a patched node reuses the blocks freed by the last one. Blocks 0 and 1 are the
 * "no route" node (a header whose 64 entries are one empty leaf) and never freed. */
struct lpm6_pool {
	void *a;
	uint32_t cap, used;
	uint32_t freel[LPM6_MAX_UNITS + 1];
};

enum {
	LPM6_DIRECT_BITS = 14,
	LPM6_STRIDE = 6,
	LPM6_DEEP_BITS = 68,      /* regions this long or longer take tails of more than one node */
	LPM6_TAIL_NODES = 3,      /* the most nodes a tail holds there; shorter regions take 1 */
	LPM6_LEAF_FLAG = 1U << 31 /* in the direct table: the block is a lone leaf (fits_tail) */
};

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
	uint32_t direct[1 << LPM6_DIRECT_BITS]; /* block, with LPM6_LEAF_FLAG if a lone leaf */
	struct lpm6_pool bk;                    /* the blocks of nodes and leaves */
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

/* p (oldsz bytes) grown to newsz bytes, its content kept; NULL (p untouched) if out of memory. */
static void *mem_grow(void *p, size_t oldsz, size_t newsz)
{
	if (newsz < LPM6_HUGE)
		return realloc(p, newsz);
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

/* An arena holding only the "no route" node: a header whose entries all take leaf 0. */
static int pool_init(struct lpm6_pool *p)
{
	memset(p, 0, sizeof(*p));
	p->a = calloc(128, LPM6_UNIT);
	if (!p->a)
		return -ENOMEM;
	p->cap = 128;
	p->used = 2;
	((struct lpm6_bhead *)p->a)->leafvec = 1;
	return 0;
}

static inline void *pool_at(const struct lpm6_pool *p, uint32_t i)
{
	return (char *)p->a + (size_t)i * LPM6_UNIT;
}

/* n (1..LPM6_MAX_UNITS) contiguous units, or UINT32_MAX if out of memory. */
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
		void *a = mem_grow(p->a, (size_t)p->cap * LPM6_UNIT, cap * LPM6_UNIT);
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
	if (!n || i < 2)
		return;
	memcpy(pool_at(p, i), &p->freel[n], sizeof(uint32_t));
	p->freel[n] = i;
}

static inline struct lpm6_bhead *bhead(const struct lpm6 *t, uint32_t b)
{
	return (struct lpm6_bhead *)pool_at(&t->bk, b);
}

static inline struct lpm6_leaf *pleaf(const struct lpm6 *t, uint32_t u)
{
	return (struct lpm6_leaf *)pool_at(&t->bk, u);
}

/* Units of a block's header and children (nk of them): its first leaf is that many units in. */
static inline unsigned head_units(unsigned nk)
{
	return (4 * nk + 16 + LPM6_UNIT - 1) / LPM6_UNIT;
}

/* Prefetches block b: its header's line and the LPM6_PREFETCH lines after it, where its leaves
 * are, so that the read of a leaf after the header does not wait for a second miss. */
static inline void block_prefetch(const struct lpm6 *t, uint32_t b)
{
	const char *p = (const char *)bhead(t, b);
	__builtin_prefetch(p);
	for (unsigned l = 1; l <= LPM6_PREFETCH; l++)
		__builtin_prefetch(p + 64 * l);
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

/* The nodes of the trie subtree at i, counted up to lim + 1. */
static unsigned subtree_nodes(const struct lpm6 *t, uint32_t i, unsigned lim)
{
	if (!i)
		return 0;
	unsigned c = 1;
	for (int b = 0; b < 2 && c <= lim; b++)
		c += subtree_nodes(t, t->n[i].child[b], lim - c);
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

static void leaf_make(const struct lpm6 *t, struct lpm6_leaf *l, uint32_t best, uint32_t tail)
{
	memset(l, 0, sizeof(*l));
	l->tail = tail;
	if (tail) {
		const struct lpm6_node *nd = &t->n[tail];
		l->tk[0] = nd->k[0];
		l->tk[1] = nd->k[1];
		l->tval = nd->val;
		l->tplen = nd->plen;
		l->tflags = (uint8_t)((nd->has_val ? LPM6_T_VAL : 0) |
		                      (nd->child[0] | nd->child[1] ? LPM6_T_KIDS : 0));
	}
	if (best) {
		l->val = t->n[best].val;
		l->plen = t->n[best].plen;
		l->has_val = 1;
	}
}

static bool leaf_same(const struct lpm6_leaf *a, const struct lpm6_leaf *b)
{
	return a->val == b->val && a->tail == b->tail && a->plen == b->plen &&
	       a->has_val == b->has_val;
}

/* Whether the trie subtree sub, the whole of a region of rlen bits, can be its leaf's tail. */
static bool fits_tail(const struct lpm6 *t, uint32_t sub, unsigned rlen)
{
	unsigned lim = rlen >= LPM6_DEEP_BITS ? LPM6_TAIL_NODES : 1;
	return subtree_nodes(t, sub, lim) <= lim;
}

/* Units of block b (its header, children and leaves). */
static unsigned block_units(const struct lpm6 *t, uint32_t b)
{
	const struct lpm6_bhead *h = bhead(t, b);
	return head_units(popcount64(h->vector)) + popcount64(h->leafvec);
}

/* The child of block b at entry v (a child there). */
static inline uint32_t *kid_at(const struct lpm6 *t, uint32_t b, unsigned v)
{
	struct lpm6_bhead *h = bhead(t, b);
	return &h->kid[rank(h->vector, v) - 1];
}

/*
 * Builds the block for the region at pos whose trie subtree is root and whose longest shorter
 * prefix is def; *out is its first unit. With has_old, the children of block old other than
 * entry vdeep are kept as they are (a change below vdeep alone cannot touch them; LPM6_KEEP_ALL
 * keeps them all); the rest is built anew. Returns 0 or -ENOMEM (the poptrie is then
 * inconsistent, and the caller drops it).
 */
static int build_block(struct lpm6 *t, unsigned pos, uint32_t root, uint32_t def, bool has_old,
                       uint32_t old, unsigned vdeep, uint32_t *out)
{
	struct lpm6_scan s;
	struct lpm6_leaf lv[64];
	uint64_t vec = 0, leafvec = 0;
	unsigned nl = 0;
	for (unsigned v = 0; v < 64; v++) {
		s.best[v] = def;
		s.sub[v] = 0;
	}
	scan(t, root, pos, &s);
	for (unsigned v = 0; v < 64; v++) {
		if (s.sub[v] && !fits_tail(t, s.sub[v], pos + LPM6_STRIDE)) {
			vec |= 1ULL << v;
			continue;
		}
		struct lpm6_leaf l;
		leaf_make(t, &l, s.best[v], s.sub[v]);
		if (!nl || !leaf_same(&l, &lv[nl - 1])) {
			lv[nl++] = l;
			leafvec |= 1ULL << v;
		}
	}
	unsigned nk = popcount64(vec), hu = head_units(nk);
	uint32_t b = pool_alloc(&t->bk, hu + nl);
	if (b == UINT32_MAX)
		return -ENOMEM;
	struct lpm6_bhead *h = bhead(t, b);
	memset(h, 0, (size_t)hu * LPM6_UNIT);
	h->vector = vec;
	h->leafvec = leafvec;
	memcpy(pleaf(t, b + hu), lv, nl * sizeof(lv[0]));
	for (unsigned v = 0, k = 0; v < 64; v++) {
		if (!(vec >> v & 1))
			continue;
		uint32_t kid;
		if (has_old && v != vdeep && (bhead(t, old)->vector >> v & 1)) {
			kid = *kid_at(t, old, v);
		} else {
			int r = build_block(t, pos + LPM6_STRIDE, s.sub[v], s.best[v], false, 0, 0,
			                    &kid);
			if (r)
				return r;
		}
		bhead(t, b)->kid[k++] = kid; /* the arena may have moved while building */
	}
	*out = b;
	return 0;
}

/* Returns block b and the blocks below it to the arena (the "no route" block stays). */
static void free_subtree(struct lpm6 *t, uint32_t b)
{
	if (b < 2)
		return;
	unsigned nk = popcount64(bhead(t, b)->vector);
	for (unsigned k = 0; k < nk; k++)
		free_subtree(t, bhead(t, b)->kid[k]);
	pool_free(&t->bk, b, block_units(t, b));
}

/* Rebuilds block at (region of pos bits holding k) after a change below its entry vdeep: the
 * entry is built anew, the other children are kept. *out is the new block, which replaces at
 * in its parent (at is freed). */
static int rebuild_shallow(struct lpm6 *t, uint32_t at, unsigned pos, const uint64_t k[2],
                           unsigned vdeep, uint32_t *out)
{
	uint32_t root, def, nb;
	trie_region(t, k, pos, &root, &def);
	int r = build_block(t, pos, root, def, true, at, vdeep, &nb);
	if (r)
		return r;
	uint64_t kept = bhead(t, nb)->vector, old = bhead(t, at)->vector;
	if (vdeep < 64)
		kept &= ~(1ULL << vdeep);
	for (unsigned v = 0, c = 0; v < 64; v++)
		if (old >> v & 1) {
			if (!(kept >> v & 1))
				free_subtree(t, bhead(t, at)->kid[c]);
			c++;
		}
	pool_free(&t->bk, at, block_units(t, at));
	*out = nb;
	return 0;
}

/* Rebuilds direct entry j from the trie. */
static int rebuild_slot(struct lpm6 *t, unsigned j)
{
	uint64_t k[2] = {(uint64_t)j << (64 - LPM6_DIRECT_BITS), 0};
	uint32_t root, def, e, old = t->direct[j];
	trie_region(t, k, LPM6_DIRECT_BITS, &root, &def);
	if (!root && !def) {
		e = LPM6_LEAF_FLAG; /* the "no route" block */
	} else if (fits_tail(t, root, LPM6_DIRECT_BITS)) {
		/* a lone leaf: a header whose 64 entries take it */
		uint32_t i = pool_alloc(&t->bk, 2);
		if (i == UINT32_MAX)
			return -ENOMEM;
		struct lpm6_bhead *h = bhead(t, i);
		h->vector = 0;
		h->leafvec = 1;
		leaf_make(t, pleaf(t, i + 1), def, root);
		e = LPM6_LEAF_FLAG | i;
	} else {
		int r = build_block(t, LPM6_DIRECT_BITS, root, def, false, 0, 0, &e);
		if (r)
			return r;
	}
	free_subtree(t, old & ~LPM6_LEAF_FLAG);
	t->direct[j] = e;
	return 0;
}

/* Drops the poptrie: lookups walk the trie until fast_rebuild succeeds. */
static void fast_drop(struct lpm6 *t)
{
	mem_free(t->bk.a, (size_t)t->bk.cap * LPM6_UNIT);
	memset(&t->bk, 0, sizeof(t->bk));
	t->fast = false;
}

/* Builds the whole poptrie from the trie. Returns 0 or -ENOMEM (then dropped). */
static int fast_rebuild(struct lpm6 *t)
{
	fast_drop(t);
	if (pool_init(&t->bk)) {
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

/* Below block b, all inside the region of a changed prefix of plen bits whose best match is
 * now lb: every leaf that took its value from a prefix of at most plen bits takes lb's. The
 * shape cannot change (only prefixes longer than a node's stride shape it), so no block is
 * rebuilt; runs of leaves that become equal stay apart, which costs a few bytes and no
 * correctness. */
static void patch_subtree(struct lpm6 *t, uint32_t b, unsigned plen, const struct lpm6_leaf *lb)
{
	const struct lpm6_bhead *h = bhead(t, b);
	unsigned nk = popcount64(h->vector), nl = popcount64(h->leafvec);
	for (unsigned c = 0; c < nl; c++) {
		struct lpm6_leaf *l = pleaf(t, b + head_units(nk) + c);
		if (!l->has_val || l->plen <= plen) {
			l->val = lb->val;
			l->plen = lb->plen;
			l->has_val = lb->has_val;
		}
	}
	for (unsigned c = 0; c < nk; c++)
		patch_subtree(t, h->kid[c], plen, lb);
}

/* Points the parent of the block at depth d of path (the direct table at depth 0) to nb. */
static void set_parent(struct lpm6 *t, const uint32_t *path, unsigned d, const uint64_t k[2],
                       uint32_t nb)
{
	if (!d)
		t->direct[slot_of(k)] = nb;
	else
		*kid_at(t, path[d - 1], chunk(k, LPM6_DIRECT_BITS + LPM6_STRIDE * (d - 1))) = nb;
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
	struct lpm6_leaf lb;
	leaf_make(t, &lb, best_upto(t, k, plen), 0);
	unsigned j = slot_of(k);
	if (plen < LPM6_DIRECT_BITS) {
		for (unsigned c = 0; c < 1U << (LPM6_DIRECT_BITS - plen); c++) {
			uint32_t e = t->direct[j + c];
			if (!(e & LPM6_LEAF_FLAG))
				patch_subtree(t, e, plen, &lb);
			else if (rebuild_slot(t, j + c))
				return -ENOMEM;
		}
		return 0;
	}
	uint32_t at = t->direct[j], nb;
	if (at & LPM6_LEAF_FLAG)
		return rebuild_slot(t, j);
	uint32_t path[LPM6_MAX_DEPTH];
	unsigned d = 0, pos = LPM6_DIRECT_BITS, v;
	for (;;) {
		path[d++] = at;
		v = chunk(k, pos);
		if (plen < pos + LPM6_STRIDE || !(bhead(t, at)->vector >> v & 1))
			break;
		at = *kid_at(t, at, v);
		pos += LPM6_STRIDE;
	}
	if (plen < pos + LPM6_STRIDE) {
		if (rebuild_shallow(t, at, pos, k, LPM6_KEEP_ALL, &nb))
			return -ENOMEM;
		set_parent(t, path, d - 1, k, nb);
		uint64_t vec = bhead(t, nb)->vector;
		for (unsigned c = v; c < v + (1U << (pos + LPM6_STRIDE - plen)); c++)
			if (vec >> c & 1)
				patch_subtree(t, *kid_at(t, nb, c), plen, &lb);
		return 0;
	}
	if (rebuild_shallow(t, at, pos, k, v, &nb))
		return -ENOMEM;
	set_parent(t, path, d - 1, k, nb);
	while (removed && d) {
		uint32_t root, def;
		pos = LPM6_DIRECT_BITS + LPM6_STRIDE * (d - 1);
		trie_region(t, k, pos, &root, &def);
		if (!fits_tail(t, root, pos))
			break;
		if (d == 1)
			return rebuild_slot(t, j);
		pos -= LPM6_STRIDE;
		if (rebuild_shallow(t, path[d - 2], pos, k, chunk(k, pos), &nb))
			return -ENOMEM;
		set_parent(t, path, d - 2, k, nb);
		path[d - 2] = nb;
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

/*
 * The poptrie's leaf for a. The walk keeps the address from the current node's bits on in
 * (hi, lo), so a node's entry is always the top 6 bits of hi, and shifts the node's vector left
 * by 63 minus the entry: the sign bit then says whether the entry is a child and the bits set
 * give its rank, with no branch on the position and no mask. A lookup at 1M prefixes waits for
 * memory, and the CPU overlaps as many lookups as its window holds instructions of them: the
 * fewer a lookup takes, the more run at once. Each step prefetches the next block's first
 * lines, where its leaves are, along with its header.
 */
LPM6_FLAT const struct lpm6_leaf *fast_leaf(const struct lpm6 *t, const uint64_t a[2], bool hw)
{
	const char *base = t->bk.a;
	uint32_t b = t->direct[slot_of(a)];
	if (b & LPM6_LEAF_FLAG) /* a lone leaf: the unit after the header */
		return (const void *)(base + (size_t)((b & ~LPM6_LEAF_FLAG) + 1) * LPM6_UNIT);
	uint64_t hi = a[0] << LPM6_DIRECT_BITS | a[1] >> (64 - LPM6_DIRECT_BITS);
	uint64_t lo = a[1] << LPM6_DIRECT_BITS;
	for (;;) {
		const struct lpm6_bhead *h = (const void *)(base + (size_t)b * LPM6_UNIT);
		unsigned sh = (unsigned)(~hi >> (64 - LPM6_STRIDE)); /* 63 - entry */
		uint64_t s = h->vector << sh;
		if (!(s >> 63)) {
			uint64_t lv = h->leafvec << sh;
			unsigned nk =
			    hw ? (unsigned)__builtin_popcountll(h->vector) : popcount64(h->vector);
			unsigned r = hw ? (unsigned)__builtin_popcountll(lv) : popcount64(lv);
			return (const void *)(base +
			                      (size_t)(b + head_units(nk) + r - 1) * LPM6_UNIT);
		}
		b = h->kid[(hw ? (unsigned)__builtin_popcountll(s) : popcount64(s)) - 1];
		for (unsigned l = 1; l <= LPM6_PREFETCH; l++)
			__builtin_prefetch(base + (size_t)b * LPM6_UNIT + 64 * l);
		hi = hi << LPM6_STRIDE | lo >> (64 - LPM6_STRIDE);
		lo <<= LPM6_STRIDE;
	}
}

/* Whether the first plen bits of a and k agree (k has no bits set past plen). */
static inline bool key_holds(const uint64_t k[2], unsigned plen, const uint64_t a[2])
{
	return !((a[0] ^ k[0]) & mask_word(plen, 0)) && !((a[1] ^ k[1]) & mask_word(plen, 1));
}

/* The longest prefix below leaf l's tail node (which holds a and has children), or the
 * tail node itself, or the leaf's prefix: the rare end of a lookup, kept out of line. */
__attribute__((noinline)) static bool lookup_kids(const struct lpm6 *t, const struct lpm6_leaf *l,
                                                  const uint64_t a[2], uint32_t *val,
                                                  unsigned *plen)
{
	const struct lpm6_node *nd = &t->n[l->tail];
	const struct lpm6_node *best = trie_walk(t, nd->child[bit_at(a, nd->plen)], a, NULL);
	if (best)
		return answer(best, val, plen);
	bool tv = l->tflags & LPM6_T_VAL;
	if (!tv && !l->has_val)
		return false;
	if (val)
		*val = tv ? l->tval : l->val;
	if (plen)
		*plen = tv ? l->tplen : l->plen;
	return true;
}

/* The leaf's answer without a branch on what it holds (a branch on data that missed the
 * cache stops the CPU from going on to the next lookup when it guesses wrong): the tail's
 * first node matches if a and its key agree on its tplen bits (a leaf without a tail has no
 * flags, so the shift of 128 - 0 taken as 0 matters not). */
LPM6_FLAT bool lookup_x(const struct lpm6 *t, const uint64_t a[2], uint32_t *val, unsigned *plen,
                        bool hw)
{
	const struct lpm6_leaf *l = fast_leaf(t, a, hw);
	unsigned __int128 x = (unsigned __int128)(a[0] ^ l->tk[0]) << 64 | (a[1] ^ l->tk[1]);
	unsigned tf = l->tflags;
	bool m = (x >> ((128 - l->tplen) & 127)) == 0;
	if (__builtin_expect(m && (tf & LPM6_T_KIDS), 0))
		return lookup_kids(t, l, a, val, plen);
	bool tv = m & (tf & LPM6_T_VAL);
	uint32_t v = tv ? l->tval : l->val;
	unsigned pl = tv ? l->tplen : l->plen;
	if (val)
		*val = v;
	if (plen)
		*plen = pl;
	return l->has_val | tv;
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

/* Where one lane of lpm6_lookup_batch is: in a poptrie node, at a leaf, at the tail's first
 * node (to take its child), in the tail below it, or idle. */
enum { LANE_NODE, LANE_LEAF, LANE_KIDS, LANE_TAIL, LANE_IDLE };

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
	uint32_t b = t->direct[slot_of(a)];
	unsigned pos = LPM6_DIRECT_BITS;
	if (b & LPM6_LEAF_FLAG) { /* a lone leaf: the unit after the header */
		L->at[j] = (b & ~LPM6_LEAF_FLAG) + 1;
		L->st[j] = LANE_LEAF;
		__builtin_prefetch(pleaf(t, L->at[j]));
		return;
	}
	for (;;) {
		const struct lpm6_bhead *h = bhead(t, b);
		unsigned v = chunk(a, pos);
		if (!(h->vector >> v & 1)) {
			unsigned nk =
			    hw ? (unsigned)__builtin_popcountll(h->vector) : popcount64(h->vector);
			L->at[j] = b + head_units(nk) + rank_x(h->leafvec, v, hw) - 1;
			L->st[j] = LANE_LEAF;
			__builtin_prefetch(pleaf(t, L->at[j]));
			break;
		}
		b = h->kid[rank_x(h->vector, v, hw) - 1];
		pos += LPM6_STRIDE;
		if (pos >= LPM6_HOT_POS) {
			L->at[j] = b;
			L->st[j] = LANE_NODE;
			block_prefetch(t, b);
			break;
		}
	}
	L->pos[j] = (uint8_t)pos;
}

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
				const struct lpm6_bhead *h = bhead(t, L.at[j]);
				unsigned v = chunk(L.a[j], L.pos[j]);
				if (h->vector >> v & 1) {
					L.at[j] = h->kid[rank_x(h->vector, v, hw) - 1];
					L.pos[j] += LPM6_STRIDE;
					block_prefetch(t, L.at[j]);
				} else {
					unsigned nk = hw ? (unsigned)__builtin_popcountll(h->vector)
					                 : popcount64(h->vector);
					L.at[j] += head_units(nk) + rank_x(h->leafvec, v, hw) - 1;
					L.st[j] = LANE_LEAF;
					/* most often prefetched with the block already */
					__builtin_prefetch(pleaf(t, L.at[j]));
				}
				continue;
			}
			case LANE_LEAF: {
				const struct lpm6_leaf *l = pleaf(t, L.at[j]);
				found[i] = l->has_val;
				val[i] = l->val;
				if (!l->tail || !key_holds(l->tk, l->tplen, L.a[j]))
					break;
				if (l->tflags & LPM6_T_VAL) {
					found[i] = true;
					val[i] = l->tval;
				}
				/* below the copied node: on in the trie from its child */
				if (!(l->tflags & LPM6_T_KIDS))
					break;
				L.at[j] = l->tail;
				L.st[j] = LANE_KIDS;
				__builtin_prefetch(&t->n[L.at[j]]);
				continue;
			}
			case LANE_KIDS: {
				const struct lpm6_node *nd = &t->n[L.at[j]];
				L.at[j] = nd->child[bit_at(L.a[j], nd->plen)];
				if (!L.at[j])
					break;
				L.st[j] = LANE_TAIL;
				__builtin_prefetch(&t->n[L.at[j]]);
				continue;
			}
			case LANE_TAIL: {
				const struct lpm6_node *nd = &t->n[L.at[j]];
				if (!node_holds(nd, L.a[j]))
					break;
				if (nd->has_val) {
					found[i] = true;
					val[i] = nd->val;
				}
				if (nd->plen == 128 ||
				    !(L.at[j] = nd->child[bit_at(L.a[j], nd->plen)]))
					break;
				__builtin_prefetch(&t->n[L.at[j]]);
				continue;
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
	       (size_t)t->bk.cap * LPM6_UNIT;
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
