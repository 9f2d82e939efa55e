/* Media types and their patterns (include/peak/mediatype.h). */
#include "peak/mediatype.h"

#include <string.h>

#include "peak/cur.h"

bool media_tchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char lower(uint8_t c)
{
	return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

static bool ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

bool media_type_split(const char *v, size_t n, struct media_type *m)
{
	struct cur c = cur_make((const uint8_t *)v, n);
	while (c.left && ows(c.p[0]))
		cur_u8(&c);
	m->t = (const char *)c.p;
	m->tl = 0;
	while (c.left && media_tchar(c.p[0])) {
		cur_u8(&c);
		m->tl++;
	}
	if (!m->tl || !c.left || c.p[0] != '/')
		return false;
	cur_u8(&c);
	m->s = (const char *)c.p;
	m->sl = 0;
	while (c.left && media_tchar(c.p[0])) {
		cur_u8(&c);
		m->sl++;
	}
	while (c.left && ows(c.p[0]))
		cur_u8(&c);
	return m->sl && (!c.left || c.p[0] == ';');
}

bool media_pattern_make(const struct media_type *m, char *out, size_t cap)
{
	if ((memchr(m->t, '*', m->tl) && (m->tl != 1 || m->sl != 1 || *m->s != '*')) ||
	    (memchr(m->s, '*', m->sl) && m->sl != 1) || m->tl + 1 + m->sl >= cap)
		return false;
	size_t o = 0;
	for (size_t i = 0; i < m->tl; i++)
		out[o++] = lower((uint8_t)m->t[i]);
	out[o++] = '/';
	for (size_t i = 0; i < m->sl; i++)
		out[o++] = lower((uint8_t)m->s[i]);
	out[o] = 0;
	return true;
}

static bool eq_lower(const char *pat, size_t pl, const char *v, size_t vl)
{
	if (pl != vl)
		return false;
	for (size_t i = 0; i < pl; i++)
		if (pat[i] != lower((uint8_t)v[i]))
			return false;
	return true;
}

int media_pattern_rank(const char *pat, const struct media_type *m)
{
	const char *slash = strchr(pat, '/');
	if (!slash)
		return -1;
	size_t ptl = (size_t)(slash - pat), psl = strlen(slash + 1);
	bool tany = ptl == 1 && pat[0] == '*', sany = psl == 1 && slash[1] == '*';
	if (!(tany || eq_lower(pat, ptl, m->t, m->tl)) ||
	    !(sany || eq_lower(slash + 1, psl, m->s, m->sl)))
		return -1;
	return tany ? 2 : sany ? 1 : 0;
}
