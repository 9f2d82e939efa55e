/* Content-type patterns. */
#include "ctype.h"

#include <errno.h>
#include <string.h>

/* RFC 9110 §5.6.2 tchar */
static bool tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Splits the media type of v[n] into type and subtype spans; false if it is not
 * OWS token "/" token OWS [";" ...]. */
static bool split(const char *v, size_t n, const char **t, size_t *tl, const char **s, size_t *sl)
{
	size_t i = 0;
	while (i < n && (v[i] == ' ' || v[i] == '\t'))
		i++;
	*t = v + i;
	while (i < n && tchar(v[i]))
		i++;
	*tl = (size_t)(v + i - *t);
	if (!*tl || i >= n || v[i] != '/')
		return false;
	i++;
	*s = v + i;
	while (i < n && tchar(v[i]))
		i++;
	*sl = (size_t)(v + i - *s);
	if (!*sl)
		return false;
	while (i < n && (v[i] == ' ' || v[i] == '\t'))
		i++;
	return i == n || v[i] == ';';
}

int h3_ctype_set_parse(struct h3_ctype_set *set, const char *list)
{
	memset(set, 0, sizeof(*set));
	const char *p = list;
	for (;;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *t, *s;
		size_t tl, sl;
		if (set->n == H3_CTYPE_MAX || n >= H3_CTYPE_LEN || !split(p, n, &t, &tl, &s, &sl) ||
		    memchr(t, ';', (size_t)(s + sl - t)))
			return -EINVAL;
		/* "*" is a whole type or subtype, never part of one; "*" type needs "*" subtype */
		if ((memchr(t, '*', tl) && (tl != 1 || sl != 1 || *s != '*')) ||
		    (memchr(s, '*', sl) && sl != 1))
			return -EINVAL;
		/* nothing but white space may follow the subtype in a pattern */
		for (const char *q = s + sl; q < p + n; q++)
			if (*q != ' ' && *q != '\t')
				return -EINVAL;
		char *o = set->pat[set->n++];
		for (size_t i = 0; i < tl; i++)
			*o++ = lower(t[i]);
		*o++ = '/';
		for (size_t i = 0; i < sl; i++)
			*o++ = lower(s[i]);
		*o = 0;
		if (!e)
			return 0;
		p = e + 1;
	}
}

static bool eq(const char *pat, size_t pl, const char *v, size_t vl)
{
	if (pl != vl)
		return false;
	for (size_t i = 0; i < pl; i++)
		if (pat[i] != lower(v[i]))
			return false;
	return true;
}

bool h3_ctype_set_match(const struct h3_ctype_set *set, const char *v, size_t n)
{
	const char *t, *s;
	size_t tl, sl;
	if (!split(v, n, &t, &tl, &s, &sl))
		return false;
	for (size_t k = 0; k < set->n; k++) {
		const char *p = set->pat[k], *slash = strchr(p, '/');
		size_t ptl = (size_t)(slash - p), psl = strlen(slash + 1);
		bool tok = (ptl == 1 && p[0] == '*') || eq(p, ptl, t, tl);
		bool sok = (psl == 1 && slash[1] == '*') || eq(slash + 1, psl, s, sl);
		if (tok && sok)
			return true;
	}
	return false;
}
