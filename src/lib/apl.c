#include "peak/apl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peak/cur.h"
#include "peak/util.h"

/* Address bytes of a known family, 0 for unknown families. */
static unsigned afd_max(uint16_t family)
{
	return family == PEAK_AFI_IP4 ? 4 : family == PEAK_AFI_IP6 ? 16 : 0;
}

int apl_parse(const uint8_t *rdata, size_t len, struct apl_item *items, size_t cap)
{
	struct cur c = cur_make(rdata, len);
	size_t n = 0;

	for (size_t guard = 0; c.left && guard < APL_MAX_ITEMS; guard++) {
		struct apl_item it = {0};
		it.family = cur_u16(&c);
		it.prefix = cur_u8(&c);
		uint8_t nl = cur_u8(&c);
		it.negate = nl & 0x80;
		uint8_t afdlen = nl & 0x7f;
		if (c.err)
			return -EBADMSG;
		unsigned max = afd_max(it.family);
		if (max) {
			/* RFC 3123 4.1/4.2: AFDLENGTH at most 4 / 16, prefix at most 32 / 128. */
			if (afdlen > max || it.prefix > max * 8)
				return -EBADMSG;
			cur_bytes(&c, it.afd, afdlen);
			prefix_mask_bits(it.afd, it.prefix);
		} else {
			it.afdlen = afdlen;
			cur_bytes(&c, it.afd, afdlen);
		}
		if (c.err)
			return -EBADMSG;
		if (n == cap)
			return -E2BIG;
		items[n++] = it;
	}
	return c.left ? -E2BIG : (int)n;
}

int apl_write(const struct apl_item *items, size_t n, uint8_t *out, size_t cap)
{
	struct wcur w = wcur_make(out, cap);
	for (size_t i = 0; i < n; i++) {
		const struct apl_item *it = &items[i];
		unsigned max = afd_max(it->family);
		uint8_t afd[APL_AFD_MAX];
		unsigned len;
		if (max) {
			if (it->prefix > max * 8)
				return -EINVAL;
			memcpy(afd, it->afd, max);
			prefix_mask_bits(afd, it->prefix); /* never write bits past the prefix */
			len = (it->prefix + 7u) / 8u;
			while (len && !afd[len - 1])
				len--; /* RFC 3123 4.1: no trailing zero octets */
		} else {
			if (it->afdlen > APL_AFD_MAX)
				return -EINVAL;
			len = it->afdlen;
			memcpy(afd, it->afd, len);
		}
		wcur_u16(&w, it->family);
		wcur_u8(&w, it->prefix);
		wcur_u8(&w, (uint8_t)((it->negate ? 0x80 : 0) | len));
		wcur_bytes(&w, afd, len);
	}
	return w.err ? w.err : (int)w.len;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* RFC 3597 section 5: "\\# LEN HEX..." with the hex possibly split by white space. */
static int parse_generic(const char *s, struct apl_item *items, size_t cap, char *err,
                         size_t errlen)
{
	uint8_t buf[65535];
	char *end, bad;
	errno = 0;
	unsigned long len = strtoul(s, &end, 10);
	if (end == s || errno || len > sizeof(buf) || (!is_space(*end) && *end))
		return peak_errf(err, errlen, "generic form: bad length");
	long n = peak_hex_decode(end, NULL, buf, len, &bad);
	if (n == -E2BIG)
		return peak_errf(err, errlen, "generic form: more data than its length %lu", len);
	if (n < 0 && bad)
		return peak_errf(err, errlen, "generic form: '%c' is not a hex digit", bad);
	if (n < 0)
		return peak_errf(err, errlen, "generic form: odd number of hex digits");
	if ((unsigned long)n != len)
		return peak_errf(err, errlen, "generic form: %ld bytes of data, length says %lu", n,
		                 len);
	int r = apl_parse(buf, (size_t)n, items, cap);
	if (r == -EBADMSG)
		return peak_errf(err, errlen, "generic form: malformed APL rdata");
	return r;
}

int apl_parse_text(const char *s, struct apl_item *items, size_t cap, char *err, size_t errlen)
{
	size_t n = 0;
	const char *p = s;

	while (is_space(*p))
		p++;
	if (p[0] == '\\' && p[1] == '#' && (is_space(p[2]) || !p[2]))
		return parse_generic(p + 2, items, cap, err, errlen);
	while (*p) {
		const char *b = p;
		while (*p && !is_space(*p))
			p++;
		size_t tl = (size_t)(p - b);
		while (is_space(*p))
			p++;
		char tok[PREFIX_STRLEN + 8];
		if (tl >= sizeof(tok))
			return peak_errf(err, errlen, "item '%.*s' too long", (int)tl, b);
		memcpy(tok, b, tl);
		tok[tl] = '\0';

		struct apl_item it = {0};
		const char *t = tok;
		if (*t == '!') {
			it.negate = true;
			t++;
		}
		if ((t[0] != '1' && t[0] != '2') || t[1] != ':')
			return peak_errf(err, errlen,
			                 "item '%s': want [!]1:IPv4/LEN or [!]2:IPv6/LEN", tok);
		it.family = (uint16_t)(t[0] - '0');
		struct prefix pf;
		if (prefix_parse(t + 2, true, &pf))
			return peak_errf(err, errlen, "item '%s': bad address or prefix length",
			                 tok);
		if (pf.family != it.family)
			return peak_errf(err, errlen, "item '%s': address does not match family %u",
			                 tok, it.family);
		it.prefix = pf.len;
		memcpy(it.afd, pf.addr, 16);
		if (n == cap)
			return -E2BIG;
		items[n++] = it;
	}
	return (int)n;
}

int apl_print(const struct apl_item *items, size_t n, char *out, size_t cap)
{
	size_t len = 0;
	bool opaque = false;
	for (size_t i = 0; i < n; i++)
		opaque |= !afd_max(items[i].family);
	if (opaque) {
		/* Two passes item by item, so no rdata-sized buffer is needed. */
		uint8_t rd[4 + APL_AFD_MAX];
		size_t total = 0;
		for (size_t i = 0; i < n; i++) {
			int rl = apl_write(&items[i], 1, rd, sizeof(rd));
			if (rl < 0)
				return rl;
			total += (size_t)rl;
		}
		int k = snprintf(out, cap, "\\# %zu%s", total, total ? " " : "");
		if (k < 0 || (size_t)k + 2 * total >= cap)
			return -ENOSPC;
		len = (size_t)k;
		for (size_t i = 0; i < n; i++) {
			int rl = apl_write(&items[i], 1, rd, sizeof(rd));
			for (int j = 0; j < rl; j++)
				len += (size_t)snprintf(out + len, cap - len, "%02x", rd[j]);
		}
		return (int)len;
	}
	if (cap)
		out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		struct prefix p;
		char ps[PREFIX_STRLEN];
		apl_item_to_prefix(&items[i], &p);
		int k = snprintf(out + len, cap - len, "%s%s%u:%s", i ? " " : "",
		                 items[i].negate ? "!" : "", items[i].family, prefix_print(&p, ps));
		if (k < 0 || (size_t)k >= cap - len)
			return -ENOSPC;
		len += (size_t)k;
	}
	return (int)len;
}

void apl_item_from_prefix(struct apl_item *it, const struct prefix *p)
{
	memset(it, 0, sizeof(*it));
	it->family = p->family;
	it->prefix = p->len;
	memcpy(it->afd, p->addr, 16);
}

int apl_item_to_prefix(const struct apl_item *it, struct prefix *p)
{
	unsigned max = afd_max(it->family);
	if (!max || it->prefix > max * 8)
		return -EAFNOSUPPORT;
	memset(p, 0, sizeof(*p));
	p->family = (uint8_t)it->family;
	p->len = it->prefix;
	memcpy(p->addr, it->afd, max);
	prefix_mask_bits(p->addr, p->len);
	return 0;
}
