#pragma once
/*
 * Bounds-checked reading and writing of untrusted or size-limited byte buffers.
 * A cursor carries a sticky error: after the first short read or write every further
 * access returns 0 / does nothing, so callers test the error once at the end
 * (the pattern of Knot's wire_ctx.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Reading cursor over untrusted bytes. err is 0 or -EBADMSG (truncated). */
struct cur {
	const uint8_t *p;
	size_t left;
	int err;
};

static inline struct cur cur_make(const uint8_t *p, size_t n)
{
	struct cur c = {p, n, 0};
	return c;
}

/* True if n more bytes can be read; otherwise sets the sticky error. */
static inline bool cur_need(struct cur *c, size_t n)
{
	if (c->err)
		return false;
	if (n > c->left) {
		c->err = -EBADMSG;
		c->left = 0;
		return false;
	}
	return true;
}

static inline uint8_t cur_u8(struct cur *c)
{
	if (!cur_need(c, 1))
		return 0;
	uint8_t v = c->p[0];
	c->p++;
	c->left--;
	return v;
}

static inline uint16_t cur_u16(struct cur *c)
{
	if (!cur_need(c, 2))
		return 0;
	uint16_t v = (uint16_t)(c->p[0] << 8 | c->p[1]);
	c->p += 2;
	c->left -= 2;
	return v;
}

static inline uint32_t cur_u32(struct cur *c)
{
	if (!cur_need(c, 4))
		return 0;
	uint32_t v =
	    (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 | c->p[3];
	c->p += 4;
	c->left -= 4;
	return v;
}

/* Returns a pointer to the next n bytes and consumes them, or NULL (error set). */
static inline const uint8_t *cur_ptr(struct cur *c, size_t n)
{
	if (!cur_need(c, n))
		return NULL;
	const uint8_t *p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

/* Copies n bytes out; on a short read writes zeros and sets the error. */
static inline void cur_bytes(struct cur *c, void *dst, size_t n)
{
	const uint8_t *p = cur_ptr(c, n);
	if (p)
		memcpy(dst, p, n);
	else if (n)
		memset(dst, 0, n);
}

static inline void cur_skip(struct cur *c, size_t n)
{
	(void)cur_ptr(c, n);
}

/* Writing cursor into a caller's buffer. err is 0 or -EMSGSIZE (out of room). */
struct wcur {
	uint8_t *p;
	size_t cap;
	size_t len;
	int err;
};

static inline struct wcur wcur_make(uint8_t *p, size_t cap)
{
	struct wcur w = {p, cap, 0, 0};
	return w;
}

static inline bool wcur_room(struct wcur *w, size_t n)
{
	if (w->err)
		return false;
	if (n > w->cap - w->len) {
		w->err = -EMSGSIZE;
		return false;
	}
	return true;
}

static inline void wcur_u8(struct wcur *w, uint8_t v)
{
	if (wcur_room(w, 1))
		w->p[w->len++] = v;
}

static inline void wcur_u16(struct wcur *w, uint16_t v)
{
	if (!wcur_room(w, 2))
		return;
	w->p[w->len++] = (uint8_t)(v >> 8);
	w->p[w->len++] = (uint8_t)v;
}

static inline void wcur_u32(struct wcur *w, uint32_t v)
{
	if (!wcur_room(w, 4))
		return;
	for (int sh = 24; sh >= 0; sh -= 8)
		w->p[w->len++] = (uint8_t)(v >> sh);
}

static inline void wcur_bytes(struct wcur *w, const void *src, size_t n)
{
	if (!wcur_room(w, n))
		return;
	if (n)
		memcpy(w->p + w->len, src, n);
	w->len += n;
}

/* Overwrites a 16-bit value at an offset already written (e.g. a length field). */
static inline void wcur_put_u16_at(struct wcur *w, size_t off, uint16_t v)
{
	if (w->err || off + 2 > w->len)
		return;
	w->p[off] = (uint8_t)(v >> 8);
	w->p[off + 1] = (uint8_t)v;
}
