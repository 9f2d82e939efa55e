/* Connection-ID map: open addressing, linear probing, backward-shift deletion. */
#include "cidmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "peak/siphash.h"

int h3_cidmap_init(struct h3_cidmap *m, size_t cap, const uint8_t key[static 16])
{
	size_t c = 8;
	while (c < cap && c < ((size_t)1 << 30))
		c <<= 1;
	memset(m, 0, sizeof(*m));
	m->slot = calloc(c, sizeof(*m->slot));
	if (!m->slot)
		return -ENOMEM;
	m->cap = c;
	memcpy(m->key, key, 16);
	return 0;
}

void h3_cidmap_fini(struct h3_cidmap *m)
{
	free(m->slot);
	m->slot = NULL;
	m->cap = m->n = 0;
}

static size_t home(const struct h3_cidmap *m, const uint8_t *id, size_t len)
{
	return (size_t)siphash24(m->key, id, len) & (m->cap - 1);
}

static bool same(const struct h3_cidmap_slot *s, const uint8_t *id, size_t len)
{
	return s->val && s->len == len && !memcmp(s->id, id, len);
}

/* The slot holding id, or the free slot ending its probe run; cap probes at most. */
static size_t find(const struct h3_cidmap *m, const uint8_t *id, size_t len)
{
	size_t i = home(m, id, len);
	for (size_t k = 0; k < m->cap; k++, i = (i + 1) & (m->cap - 1))
		if (!m->slot[i].val || same(&m->slot[i], id, len))
			return i;
	return m->cap;
}

int h3_cidmap_add(struct h3_cidmap *m, const uint8_t *id, size_t len, void *val)
{
	if (len > H3_CID_MAX || !val)
		return -EINVAL;
	size_t i = find(m, id, len);
	if (i < m->cap && m->slot[i].val)
		return -EEXIST;
	if (i == m->cap || m->n + 1 > m->cap / 4 * 3)
		return -ENOSPC;
	m->slot[i].val = val;
	m->slot[i].len = (uint8_t)len;
	memcpy(m->slot[i].id, id, len);
	m->n++;
	return 0;
}

int h3_cidmap_del(struct h3_cidmap *m, const uint8_t *id, size_t len)
{
	if (len > H3_CID_MAX)
		return -ENOENT;
	size_t i = find(m, id, len);
	if (i == m->cap || !m->slot[i].val)
		return -ENOENT;
	/* backward shift: pull later members of the run into the hole when their home
	 * position does not lie cyclically in (hole, j] */
	size_t mask = m->cap - 1, hole = i;
	for (size_t j = (i + 1) & mask; m->slot[j].val; j = (j + 1) & mask) {
		size_t h = home(m, m->slot[j].id, m->slot[j].len);
		if (((j - h) & mask) >= ((j - hole) & mask)) {
			m->slot[hole] = m->slot[j];
			hole = j;
		}
	}
	memset(&m->slot[hole], 0, sizeof(m->slot[hole]));
	m->n--;
	return 0;
}

void *h3_cidmap_lookup(const struct h3_cidmap *m, const uint8_t *id, size_t len)
{
	if (len > H3_CID_MAX || !m->cap)
		return NULL;
	size_t i = find(m, id, len);
	return i == m->cap ? NULL : m->slot[i].val;
}
