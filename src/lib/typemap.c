/* The content-type map published at _types.NAME (typemap.h). */
#include "peak/typemap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "peak/cur.h"
#include "peak/mediatype.h"

static char lower(uint8_t c)
{
	return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

static bool ws(uint8_t c)
{
	return c == ' ' || c == '\t';
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
	va_list ap;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* One item of the text (between ';'), trimmed, as a span. */
struct span {
	const uint8_t *p;
	size_t n;
};

/* Takes the next item from c: the bytes up to ';' or the end, white space trimmed. The
 * cursor moves past the ';'. */
static struct span next_item(struct cur *c)
{
	struct span s = {c->p, 0};
	while (c->left && c->p[0] != ';') {
		cur_u8(c);
		s.n++;
	}
	if (c->left)
		cur_u8(c); /* the ';' */
	while (s.n && ws(s.p[0])) {
		s.p++;
		s.n--;
	}
	while (s.n && ws(s.p[s.n - 1]))
		s.n--;
	return s;
}

/* Checks and copies the pattern p[n] lower case into out (TYPEMAP_PAT_LEN): the whole item
 * is the pattern, with no white space or parameters in it. */
static bool pattern_take(const uint8_t *p, size_t n, char out[static TYPEMAP_PAT_LEN])
{
	struct media_type m;
	return media_type_split((const char *)p, n, &m) && m.t == (const char *)p &&
	       m.s + m.sl == (const char *)p + n && media_pattern_make(&m, out, TYPEMAP_PAT_LEN);
}

static bool name_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

/* Checks and copies the target p[n] into e->name and e->key. Returns NULL or what is wrong. */
static const char *target_take(const uint8_t *p, size_t n, struct typemap_entry *e)
{
	const uint8_t *hash = memchr(p, '#', n);
	size_t nl = hash ? (size_t)(hash - p) : n;
	if (!nl)
		return "an empty target name";
	if (nl == 1 && p[0] == '@') {
		strcpy(e->name, "@");
	} else {
		if (nl >= TYPEMAP_NAME_LEN - 1)
			return "a target name over 254 characters";
		if (p[0] == '.' && nl > 1)
			return "a target name starting with '.'";
		for (size_t i = 0; i < nl; i++) {
			if (!name_char(p[i]))
				return "a target name with a character other than letters, "
				       "digits, '-', '_' and '.'";
			if (p[i] == '.' && i + 1 < nl && p[i + 1] == '.')
				return "a target name with an empty label";
			if (p[i] != '.' && (i == 0 || p[i - 1] == '.')) {
				size_t l = 0;
				while (i + l < nl && p[i + l] != '.')
					l++;
				if (l > 63)
					return "a target name with a label over 63 characters";
			}
			e->name[i] = lower(p[i]);
		}
		e->name[nl] = 0;
	}
	e->key[0] = 0;
	if (hash) {
		size_t kl = n - nl - 1;
		if (!kl || kl >= TYPEMAP_KEY_LEN)
			return "an object key of 0 or over 127 characters";
		for (size_t i = 0; i < kl; i++) {
			uint8_t c = hash[1 + i];
			if (c <= 0x20 || c >= 0x7f || c == '#' || c == ';')
				return "an object key with a character other than visible ASCII "
				       "(no '#' or ';')";
			e->key[i] = (char)c;
		}
		e->key[kl] = 0;
	}
	return NULL;
}

int typemap_parse(const char *text, size_t len, struct typemap *m, char *err, size_t errlen)
{
	struct cur c = cur_make((const uint8_t *)text, len);
	memset(m, 0, sizeof(*m));
	if (len >= TYPEMAP_TEXT_MAX)
		return fail(err, errlen, "%zu characters, more than %d", len, TYPEMAP_TEXT_MAX - 1);
	struct span v = next_item(&c);
	if (v.n != 8 || memcmp(v.p, "v=types1", 8))
		return fail(err, errlen, "does not start with 'v=types1'");
	/* every item consumes at least its ';': at most len items */
	for (size_t item = 2; c.left && item <= len; item++) {
		struct span s = next_item(&c);
		if (!s.n)
			continue; /* "a;;b" or a trailing ';' */
		const uint8_t *eq = memchr(s.p, '=', s.n);
		if (!eq)
			return fail(err, errlen, "item %zu: no '='", item);
		size_t kl = (size_t)(eq - s.p);
		while (kl && ws(s.p[kl - 1]))
			kl--;
		if (!memchr(s.p, '/', kl)) {
			/* a field for later versions; the version itself only first */
			if (kl == 1 && s.p[0] == 'v')
				return fail(err, errlen, "item %zu: 'v' given again", item);
			continue;
		}
		if (m->n == TYPEMAP_MAX)
			return fail(err, errlen, "more than %d entries", TYPEMAP_MAX);
		struct typemap_entry *e = &m->e[m->n];
		if (!pattern_take(s.p, kl, e->pat))
			return fail(err, errlen,
			            "item %zu: not a media type pattern (type/subtype, type/*, "
			            "*/*)",
			            item);
		for (unsigned k = 0; k < m->n; k++)
			if (!strcmp(m->e[k].pat, e->pat))
				return fail(err, errlen, "item %zu: pattern %s given twice", item,
				            e->pat);
		const uint8_t *t = eq + 1;
		size_t tn = s.n - (size_t)(t - s.p);
		while (tn && ws(t[0])) {
			t++;
			tn--;
		}
		const char *why = target_take(t, tn, e);
		if (why)
			return fail(err, errlen, "item %zu (%s): %s", item, e->pat, why);
		m->n++;
	}
	if (c.err)
		return fail(err, errlen, "truncated");
	return 0;
}

int typemap_print(const struct typemap *m, char *out, size_t cap)
{
	size_t at = 0;
	int k = snprintf(out, cap, "v=types1");
	if (k < 0 || (size_t)k >= cap)
		return -ENOSPC;
	at = (size_t)k;
	for (unsigned i = 0; i < m->n; i++) {
		const struct typemap_entry *e = &m->e[i];
		k = snprintf(out + at, cap - at, "; %s=%s%s%s", e->pat, e->name,
		             e->key[0] ? "#" : "", e->key);
		if (k < 0 || (size_t)k >= cap - at)
			return -ENOSPC;
		at += (size_t)k;
	}
	return (int)at;
}

const struct typemap_entry *typemap_lookup(const struct typemap *m, const char *v, size_t n)
{
	struct media_type mt;
	if (!media_type_split(v, n, &mt))
		return NULL;
	const struct typemap_entry *best = NULL;
	int best_rank = 3;
	for (unsigned k = 0; k < m->n; k++) {
		int rank = media_pattern_rank(m->e[k].pat, &mt);
		if (rank >= 0 && rank < best_rank) {
			best = &m->e[k];
			best_rank = rank;
		}
	}
	return best;
}
