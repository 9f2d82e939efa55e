/* The parts of the stores that read untrusted bytes, kept apart so that a fuzz target
 * compiles them alone (tests/fuzz/fuzz_storerec.c): the check of one stored service
 * record, and base64 (RFC 4648 §4) for etcd's JSON gateway. */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peak/ctlproto.h"
#include "peak/dns.h"

/* ---- base64 (RFC 4648 §4), for the gateway's bytes fields ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *store_b64_enc(const char *s, size_t n)
{
	char *o = malloc(4 * ((n + 2) / 3) + 1), *q = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(uint8_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)(uint8_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= (uint8_t)s[i + 2];
		*q++ = b64[v >> 18 & 63];
		*q++ = b64[v >> 12 & 63];
		*q++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*q++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*q = 0;
	return o;
}

static int b64_val(char ch)
{
	const char *p = ch ? strchr(b64, ch) : NULL;
	return p ? (int)(p - b64) : -1;
}

char *store_b64_dec(const char *s, size_t max, size_t *len)
{
	size_t n = strlen(s), k = 0;
	char *o;
	if (n % 4 || n / 4 * 3 > max + 2 || !(o = malloc(n / 4 * 3 + 1)))
		return NULL;
	for (size_t i = 0; i < n; i += 4) {
		int a = b64_val(s[i]), b = b64_val(s[i + 1]), c = b64_val(s[i + 2]),
		    d = b64_val(s[i + 3]);
		bool last = i + 4 == n;
		if (a < 0 || b < 0 || (c < 0 && !(last && s[i + 2] == '=' && s[i + 3] == '=')) ||
		    (d < 0 && !(last && s[i + 3] == '='))) {
			free(o);
			return NULL;
		}
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 |
		             (uint32_t)(c < 0 ? 0 : c) << 6 | (uint32_t)(d < 0 ? 0 : d);
		o[k++] = (char)(v >> 16);
		if (c >= 0)
			o[k++] = (char)(v >> 8 & 255);
		if (d >= 0)
			o[k++] = (char)(v & 255);
	}
	o[k] = 0;
	*len = k;
	return o;
}

int store_rec_check(const char *name, const char *text, size_t n, char *why, size_t cap)
{
	struct ctl_msg *m = malloc(sizeof(*m));
	struct dns_name want, got;
	enum { MAP, EPS, TAIL } at = MAP;
	int ret = -EBADMSG;
	size_t off = 0, ll;
	unsigned line = 0;
	if (!m) {
		snprintf(why, cap, "out of memory");
		return -ENOMEM;
	}
	if (dns_name_parse(name, &want)) {
		snprintf(why, cap, "the key does not end in a service name");
		goto out;
	}
	while (off < n) {
		long k = ctl_line_split((const uint8_t *)text + off, n - off, &ll);
		line++;
		if (k <= 0) {
			snprintf(why, cap, "line %u: %s", line,
			         k ? "longer than a control line" : "no newline at the end");
			goto out;
		}
		if (ctl_parse(text + off, ll, m)) {
			snprintf(why, cap, "line %u: not a control line", line);
			goto out;
		}
		off += (size_t)k;
		bool named = m->kind == CTL_MAP || m->kind == CTL_WEIGHT || m->kind == CTL_HEALTH ||
		             m->kind == CTL_ADD;
		if (named && (dns_name_parse(m->svc, &got) || !dns_name_eq(&got, &want))) {
			snprintf(why, cap, "line %u: another service's line", line);
			goto out;
		}
		bool ok = (at == MAP && m->kind == CTL_MAP) ||
		          (at == EPS && (m->kind == CTL_EP || m->kind == CTL_END)) ||
		          (at == TAIL &&
		           (m->kind == CTL_WEIGHT || m->kind == CTL_HEALTH || m->kind == CTL_ADD));
		if (!ok) {
			snprintf(why, cap, "line %u: '%s' out of place", line,
			         ctl_kind_name(m->kind));
			goto out;
		}
		at = m->kind == CTL_MAP ? EPS : m->kind == CTL_END ? TAIL : at;
	}
	if (at != TAIL) {
		snprintf(why, cap, "%s", at == MAP ? "empty" : "a map without its end");
		goto out;
	}
	ret = 0;
out:
	free(m);
	return ret;
}
