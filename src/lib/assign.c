#include "peak/assign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A growable list of blocks. */
struct blist {
	struct assign_block *v;
	size_t n, cap;
};

static int blist_push(struct blist *l, uint32_t start, uint8_t log2)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 64;
		struct assign_block *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n].start = start;
	l->v[l->n].log2 = log2;
	l->n++;
	return 0;
}

/* Calls the visitor with the maximal aligned blocks covering [start, end). */
static int cover_run(uint32_t start, uint32_t end, unsigned maxlog, struct blist *l)
{
	while (start < end) {
		unsigned k = 0;
		while (k < maxlog && !(start & ((2u << k) - 1)) &&
		       ((uint64_t)start + (2u << k)) <= end)
			k++;
		if (blist_push(l, start, (uint8_t)k))
			return -ENOMEM;
		start += 1u << k;
	}
	return 0;
}

/* The slot's slices as aligned blocks, in slice order. */
static int slot_blocks(const struct assign *a, int32_t slot, struct blist *l)
{
	l->n = 0;
	for (uint32_t i = 0; i < a->nslices;) {
		if (a->owner[i] != slot) {
			i++;
			continue;
		}
		uint32_t j = i;
		while (j < a->nslices && a->owner[j] == slot)
			j++;
		if (cover_run(i, j, a->block_bits, l))
			return -ENOMEM;
		i = j;
	}
	return 0;
}

/* Moves blocks holding want slices from src to dst, splitting a block when none fits.
 * prefer_large picks the largest fitting block first (receivers get few, large blocks);
 * otherwise the smallest (donors give away their fragments first). */
static int take(struct blist *src, uint32_t want, bool prefer_large, struct blist *dst)
{
	while (want) {
		size_t best = SIZE_MAX, smallest = SIZE_MAX;
		for (size_t i = 0; i < src->n; i++) {
			uint32_t sz = 1u << src->v[i].log2;
			if (smallest == SIZE_MAX || src->v[i].log2 < src->v[smallest].log2)
				smallest = i;
			if (sz > want)
				continue;
			if (best == SIZE_MAX || (prefer_large ? src->v[i].log2 > src->v[best].log2
			                                      : src->v[i].log2 < src->v[best].log2))
				best = i;
		}
		if (smallest == SIZE_MAX)
			return -EINVAL; /* cannot happen: callers never ask for more than held */
		if (best == SIZE_MAX) {
			/* Every block is larger than what is wanted: halve the smallest. */
			struct assign_block *b = &src->v[smallest];
			b->log2--;
			if (blist_push(src, b->start + (1u << b->log2), b->log2))
				return -ENOMEM;
			continue;
		}
		struct assign_block b = src->v[best];
		src->v[best] = src->v[--src->n];
		if (blist_push(dst, b.start, b.log2))
			return -ENOMEM;
		want -= 1u << b.log2;
	}
	return 0;
}

static int blk_cmp(const void *x, const void *y)
{
	const struct assign_block *a = x, *b = y;
	return a->start < b->start ? -1 : a->start > b->start;
}

/* Merges buddy blocks of a free pool so receivers get blocks as large as possible. */
static void pool_merge(struct blist *p, unsigned maxlog)
{
	if (p->n < 2)
		return; /* also: qsort of an empty (NULL) array is undefined */
	qsort(p->v, p->n, sizeof(*p->v), blk_cmp);
	size_t top = 0;
	for (size_t i = 0; i < p->n; i++) {
		p->v[top++] = p->v[i];
		while (top >= 2) {
			struct assign_block *x = &p->v[top - 2], *y = &p->v[top - 1];
			if (x->log2 != y->log2 || x->log2 >= maxlog ||
			    x->start & ((2u << x->log2) - 1) ||
			    x->start + (1u << x->log2) != y->start)
				break;
			x->log2++;
			top--;
		}
	}
	p->n = top;
}

struct cand {
	uint64_t rem;
	unsigned slot;
	bool sticky;
};

/* Sticky first, then larger remainder, then lower slot: a total, deterministic order. */
static int cand_cmp(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;
	if (a->sticky != b->sticky)
		return a->sticky ? -1 : 1;
	if (a->rem != b->rem)
		return a->rem > b->rem ? -1 : 1;
	return a->slot < b->slot ? -1 : a->slot > b->slot;
}

/* Largest-remainder targets, rounded up preferably for endpoints that already hold more
 * than their floor, so that rounding itself never moves a slice. */
static int compute_targets(struct assign *a)
{
	uint64_t wsum = 0;
	for (unsigned i = 0; i < a->nep; i++)
		if (a->ep[i].live)
			wsum += a->ep[i].weight;
	if (!wsum)
		return -EINVAL;
	uint64_t given = 0;
	for (unsigned i = 0; i < a->nep; i++) {
		struct assign_ep *e = &a->ep[i];
		e->target = e->live ? (uint32_t)((uint64_t)a->nslices * e->weight / wsum) : 0;
		given += e->target;
	}
	uint64_t r = a->nslices - given;
	if (!r)
		return 0;
	struct cand *c = malloc(a->nep * sizeof(*c));
	size_t nc = 0;
	if (!c)
		return -ENOMEM;
	for (unsigned i = 0; i < a->nep; i++) {
		struct assign_ep *e = &a->ep[i];
		uint64_t rem = (uint64_t)a->nslices * e->weight % wsum;
		if (e->live && rem)
			c[nc++] = (struct cand){rem, i, e->count > e->target};
	}
	qsort(c, nc, sizeof(*c), cand_cmp);
	for (size_t k = 0; k < r && k < nc; k++)
		a->ep[c[k].slot].target++;
	free(c);
	return r <= nc ? 0 : -EINVAL;
}

static void set_owner(struct assign *a, const struct assign_block *b, int32_t slot)
{
	for (uint32_t k = 0; k < (1u << b->log2); k++)
		a->owner[b->start + k] = slot;
}

/* Moves the slices that must move, and only those. Every slot's blocks are read in one
 * pass over the map (a pass per slot over the whole map made adding one endpoint to a
 * service of 100 cost 100 passes): a slot's slices change only when its own turn comes. */
static int rebalance(struct assign *a, uint32_t *moved)
{
	struct blist pool = {0}, mine = {0}, got = {0};
	struct assign_block *all = NULL;
	int32_t *slot_of = NULL;
	size_t nall = 0, *first = NULL, *fill = NULL, *order = NULL;
	uint32_t mv = 0;
	int ret = compute_targets(a);
	if (ret)
		goto out;
	ret = -ENOMEM;
	if (assign_blocks_all(a, &all, &slot_of, &nall) ||
	    !(first = calloc(a->nep + 2, sizeof(*first))) ||
	    !(fill = calloc(a->nep + 1, sizeof(*fill))) ||
	    !(order = malloc((nall ? nall : 1) * sizeof(*order))))
		goto out;
	/* slot s holds the blocks all[order[first[s]]] .. all[order[first[s + 1] - 1]] */
	for (size_t k = 0; k < nall; k++)
		if (slot_of[k] >= 0)
			first[slot_of[k] + 1]++;
	for (unsigned s = 0; s < a->nep; s++)
		first[s + 1] += first[s];
	for (size_t k = 0; k < nall; k++)
		if (slot_of[k] >= 0)
			order[first[slot_of[k]] + fill[slot_of[k]]++] = k;
	/* Slices nobody holds (only before the first balance) are free. */
	for (size_t k = 0; k < nall; k++)
		if (slot_of[k] == ASSIGN_NONE && blist_push(&pool, all[k].start, all[k].log2))
			goto out;
	for (unsigned i = 0; i < a->nep; i++) {
		struct assign_ep *e = &a->ep[i];
		if (e->count <= e->target)
			continue;
		size_t from = pool.n;
		mine.n = 0;
		for (size_t k = first[i]; k < first[i + 1]; k++)
			if (blist_push(&mine, all[order[k]].start, all[order[k]].log2))
				goto out;
		if ((ret = take(&mine, e->count - e->target, false, &pool)))
			goto out;
		ret = -ENOMEM;
		for (size_t k = from; k < pool.n; k++)
			set_owner(a, &pool.v[k], ASSIGN_NONE);
		mv += e->count - e->target;
		e->count = e->target;
	}
	ret = 0;
	pool_merge(&pool, a->block_bits);
	for (unsigned i = 0; i < a->nep; i++) {
		struct assign_ep *e = &a->ep[i];
		if (e->count >= e->target)
			continue;
		got.n = 0;
		if ((ret = take(&pool, e->target - e->count, true, &got)))
			goto out;
		for (size_t k = 0; k < got.n; k++)
			set_owner(a, &got.v[k], (int32_t)i);
		e->count = e->target;
	}
	if (moved)
		*moved = mv;
out:
	free(all);
	free(slot_of);
	free(first);
	free(fill);
	free(order);
	free(pool.v);
	free(mine.v);
	free(got.v);
	return ret;
}

static int ep_reserve(struct assign *a, unsigned n)
{
	if (n <= a->cap)
		return 0;
	unsigned nc = a->cap ? a->cap : 16;
	while (nc < n)
		nc *= 2;
	struct assign_ep *v = realloc(a->ep, nc * sizeof(*v));
	if (!v)
		return -ENOMEM;
	a->ep = v;
	a->cap = nc;
	return 0;
}

int assign_init(struct assign *a, uint32_t nslices, unsigned block_bits, const uint32_t *weights,
                unsigned n)
{
	memset(a, 0, sizeof(*a));
	if (!nslices || nslices > ASSIGN_MAX_SLICES || block_bits > 32 || n > ASSIGN_MAX_ENDPOINTS)
		return -EINVAL;
	uint64_t wsum = 0;
	for (unsigned i = 0; i < n; i++) {
		if (weights[i] > ASSIGN_MAX_WEIGHT)
			return -EINVAL;
		wsum += weights[i];
	}
	if (!wsum)
		return -EINVAL;
	a->nslices = nslices;
	a->block_bits = block_bits;
	a->owner = malloc(nslices * sizeof(*a->owner));
	if (!a->owner || ep_reserve(a, n)) {
		assign_fini(a);
		return -ENOMEM;
	}
	a->nep = n;
	for (unsigned i = 0; i < n; i++)
		a->ep[i] = (struct assign_ep){.weight = weights[i], .live = true};
	compute_targets(a);
	uint32_t at = 0;
	for (unsigned i = 0; i < n; i++) {
		for (uint32_t k = 0; k < a->ep[i].target; k++)
			a->owner[at++] = (int32_t)i;
		a->ep[i].count = a->ep[i].target;
	}
	return 0;
}

int assign_copy(struct assign *dst, const struct assign *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->owner = malloc(src->nslices * sizeof(*dst->owner));
	dst->ep = malloc((src->cap ? src->cap : 1) * sizeof(*dst->ep));
	if (!dst->owner || !dst->ep) {
		assign_fini(dst);
		return -ENOMEM;
	}
	memcpy(dst->owner, src->owner, src->nslices * sizeof(*dst->owner));
	memcpy(dst->ep, src->ep, src->nep * sizeof(*dst->ep));
	dst->nslices = src->nslices;
	dst->block_bits = src->block_bits;
	dst->nep = src->nep;
	dst->cap = src->cap ? src->cap : 1;
	return 0;
}

void assign_fini(struct assign *a)
{
	free(a->owner);
	a->owner = NULL;
	free(a->ep);
	a->ep = NULL;
	a->nep = a->cap = 0;
}

int assign_add(struct assign *a, uint32_t weight, uint32_t *moved)
{
	if (weight > ASSIGN_MAX_WEIGHT || a->nep >= ASSIGN_MAX_ENDPOINTS)
		return -EINVAL;
	if (ep_reserve(a, a->nep + 1))
		return -ENOMEM;
	a->ep[a->nep] = (struct assign_ep){.weight = weight, .live = true};
	a->nep++;
	int ret = rebalance(a, moved);
	if (ret) {
		a->nep--;
		return ret;
	}
	return (int)a->nep - 1;
}

int assign_add_many(struct assign *a, const uint32_t *weight, unsigned n, uint32_t *moved)
{
	unsigned first = a->nep;
	if (!n || n > ASSIGN_MAX_ENDPOINTS || a->nep > ASSIGN_MAX_ENDPOINTS - n)
		return -EINVAL;
	for (unsigned k = 0; k < n; k++)
		if (weight[k] > ASSIGN_MAX_WEIGHT)
			return -EINVAL;
	if (ep_reserve(a, a->nep + n))
		return -ENOMEM;
	for (unsigned k = 0; k < n; k++)
		a->ep[a->nep++] = (struct assign_ep){.weight = weight[k], .live = true};
	int ret = rebalance(a, moved);
	if (ret) {
		a->nep = first;
		return ret;
	}
	return (int)first;
}

int assign_del(struct assign *a, unsigned slot, uint32_t *moved)
{
	if (slot >= a->nep || !a->ep[slot].live)
		return -EINVAL;
	a->ep[slot].live = false;
	int ret = rebalance(a, moved);
	if (ret == -EINVAL)
		a->ep[slot].live = true; /* it was the last endpoint with weight */
	return ret;
}

int assign_set_weight(struct assign *a, unsigned slot, uint32_t weight, uint32_t *moved)
{
	if (slot >= a->nep || !a->ep[slot].live || weight > ASSIGN_MAX_WEIGHT)
		return -EINVAL;
	uint32_t old = a->ep[slot].weight;
	a->ep[slot].weight = weight;
	int ret = rebalance(a, moved);
	if (ret == -EINVAL)
		a->ep[slot].weight = old;
	return ret;
}

size_t assign_blocks(const struct assign *a, unsigned slot, struct assign_block *out, size_t cap)
{
	struct blist l = {0};
	if (slot_blocks(a, (int32_t)slot, &l)) {
		free(l.v);
		return 0;
	}
	size_t n = l.n;
	if (out && n && cap) /* an empty list has no array (l.v NULL): nothing to copy */
		memcpy(out, l.v, (n < cap ? n : cap) * sizeof(*out));
	free(l.v);
	return n;
}

int assign_blocks_all(const struct assign *a, struct assign_block **out, int32_t **slot_of,
                      size_t *n)
{
	struct blist l = {0};
	int32_t *so = NULL;
	size_t socap = 0;
	*out = NULL;
	*slot_of = NULL;
	*n = 0;
	for (uint32_t i = 0, j; i < a->nslices; i = j) {
		size_t from = l.n;
		for (j = i + 1; j < a->nslices && a->owner[j] == a->owner[i];)
			j++;
		if (cover_run(i, j, a->block_bits, &l))
			goto fail;
		if (l.n > socap) {
			int32_t *ns = realloc(so, l.cap * sizeof(*ns));
			if (!ns)
				goto fail;
			so = ns;
			socap = l.cap;
		}
		for (size_t k = from; k < l.n; k++)
			so[k] = a->owner[i];
	}
	*out = l.v;
	*slot_of = so;
	*n = l.n;
	return 0;
fail:
	free(l.v);
	free(so);
	return -ENOMEM;
}

size_t assign_routes(const struct assign *a, unsigned slot)
{
	return assign_blocks(a, slot, NULL, 0);
}

int assign_block_prefix(const struct ssa_space *sp, const struct assign_block *b,
                        struct prefix *out)
{
	uint64_t pi = (uint64_t)b->start >> sp->s;
	if (pi >= sp->n || b->log2 > sp->s || b->start & ((1u << b->log2) - 1))
		return -EINVAL;
	uint64_t local = b->start & ((1ULL << sp->s) - 1);
	int r = prefix_slice(&sp->pfx[pi], sp->d.slice, local, out);
	if (r)
		return r;
	out->len = (uint8_t)(out->len - b->log2);
	return 0;
}
