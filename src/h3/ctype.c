/* Content-type patterns: lists of media type patterns, through include/peak/mediatype.h. */
#include "ctype.h"

#include <errno.h>
#include <string.h>

#include "peak/mediatype.h"

int h3_ctype_set_parse(struct h3_ctype_set *set, const char *list)
{
	memset(set, 0, sizeof(*set));
	const char *p = list;
	for (;;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		struct media_type m;
		if (set->n == H3_CTYPE_MAX || n >= H3_CTYPE_LEN || !media_type_split(p, n, &m))
			return -EINVAL;
		/* nothing but white space may follow the subtype in a pattern */
		for (const char *q = m.s + m.sl; q < p + n; q++)
			if (*q != ' ' && *q != '\t')
				return -EINVAL;
		if (!media_pattern_make(&m, set->pat[set->n], H3_CTYPE_LEN))
			return -EINVAL;
		set->n++;
		if (!e)
			return 0;
		p = e + 1;
	}
}

bool h3_ctype_set_match(const struct h3_ctype_set *set, const char *v, size_t n)
{
	struct media_type m;
	if (!media_type_split(v, n, &m))
		return false;
	for (size_t k = 0; k < set->n; k++)
		if (media_pattern_rank(set->pat[k], &m) >= 0)
			return true;
	return false;
}
