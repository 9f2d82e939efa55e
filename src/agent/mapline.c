#include "mapline.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "peak/cur.h"
#include "peak/prefix.h"

/* A decimal number of 1..10 digits, then stop (consumed) or, if end_ok, the end of the
 * text. Sets c->err to -EBADMSG on anything else. */
static uint64_t dec_read(struct cur *c, uint8_t stop, bool end_ok)
{
	uint64_t v = 0;
	unsigned digits = 0;
	bool lead0 = c->left && c->p[0] == '0';
	while (!c->err && c->left && c->p[0] >= '0' && c->p[0] <= '9') {
		v = v * 10 + (uint64_t)(cur_u8(c) - '0');
		if (++digits > 10)
			break;
	}
	if (!digits || digits > 10 || (lead0 && digits > 1))
		c->err = -EBADMSG;
	else if (!c->left && !end_ok)
		c->err = -EBADMSG;
	else if (c->left && cur_u8(c) != stop)
		c->err = -EBADMSG;
	return v;
}

int mapline_blocks_parse(const char *text, size_t len, const struct ssa_space *sp,
                         struct assign_block *out, size_t max, size_t *n)
{
	struct cur c = cur_make((const uint8_t *)text, len);
	size_t k = 0;
	*n = 0;
	while (c.left && !c.err) {
		uint64_t start = dec_read(&c, '/', false);
		uint64_t log2 = dec_read(&c, ' ', true);
		if (c.err)
			break;
		if (!c.left && text[len - 1] == ' ')
			c.err = -EBADMSG; /* a trailing space: a token is missing */
		struct assign_block b = {(uint32_t)start, (uint8_t)log2};
		struct prefix p;
		if (log2 > MAPLINE_MAX_LOG2 || start > UINT32_MAX || start >= sp->nslices ||
		    assign_block_prefix(sp, &b, &p))
			c.err = -EBADMSG;
		if (c.err)
			break;
		if (k < max)
			out[k] = b;
		k++;
	}
	if (c.err)
		return -EBADMSG;
	*n = k;
	return 0;
}
