/* HTTP/1.1 request heads of the object store (RFC 9112 sections 3, 5, 6); see req.h. */
#include "req.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "peak/cur.h"
#include "peak/http.h"
#include "peak/util.h"

int store_key_check(const uint8_t *key, size_t len)
{
	if (!len || len > STORE_KEY_MAX || memchr(key, '/', len) || memchr(key, 0, len))
		return -EINVAL;
	if ((len == 1 && key[0] == '.') || (len == 2 && key[0] == '.' && key[1] == '.'))
		return -EINVAL;
	return 0;
}

void store_key_encode(const uint8_t *key, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (size_t i = 0; i < len && n + 4 < cap; i++) {
		uint8_t b = key[i];
		if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
		    b == '-' || b == '.' || b == '_' || b == '~') {
			out[n++] = (char)b;
		} else {
			out[n++] = '%';
			out[n++] = hex[b >> 4];
			out[n++] = hex[b & 15];
		}
	}
	out[n] = 0;
}

/* Percent-decodes the target's key (RFC 3986 2.1) into out. Returns 0 or -400. */
static int key_decode(struct cur *c, struct store_req *out)
{
	out->key_len = 0;
	while (c->left && !c->err) {
		uint8_t b = cur_u8(c);
		if (b == '%') {
			int hi = peak_hexval((char)cur_u8(c)), lo = peak_hexval((char)cur_u8(c));
			if (c->err || hi < 0 || lo < 0)
				return -400;
			b = (uint8_t)(hi << 4 | lo);
		} else if (b == '?' || b == '#' || b <= ' ' || b >= 0x7f) {
			return -400; /* no query, no fragment, no raw controls or 8-bit bytes */
		}
		if (out->key_len == STORE_KEY_MAX)
			return -400;
		out->key[out->key_len++] = b;
	}
	return c->err || store_key_check(out->key, out->key_len) ? -400 : 0;
}

/* The listing's query (after=NAME&limit=N, either order, each at most once). -400 if bad. */
static int list_query(struct cur *c, struct store_req *out)
{
	bool seen_after = false, seen_limit = false;
	out->list = true;
	out->list_limit = STORE_LIST_DEF;
	if (!c->left)
		return 0;
	if (cur_u8(c) != '?')
		return -400;
	for (unsigned i = 0; i < 2 && c->left; i++) {
		const uint8_t *p = c->p;
		size_t n = 0;
		while (n < c->left && p[n] != '&')
			n++;
		cur_skip(c, n);
		if (c->left)
			cur_skip(c, 1); /* the '&' */
		if (n >= 6 && !memcmp(p, "after=", 6) && !seen_after && n - 6 < STORE_NAME_MAX) {
			for (size_t k = 6; k < n; k++)
				if (!((p[k] >= '0' && p[k] <= '9') ||
				      (p[k] >= 'a' && p[k] <= 'f') || p[k] == '-'))
					return -400;
			memcpy(out->list_after, p + 6, n - 6);
			out->list_after[n - 6] = 0;
			seen_after = true;
		} else if (n > 6 && n <= 10 && !memcmp(p, "limit=", 6) && !seen_limit) {
			unsigned v = 0;
			for (size_t k = 6; k < n; k++) {
				if (p[k] < '0' || p[k] > '9')
					return -400;
				v = v * 10 + (unsigned)(p[k] - '0');
			}
			if (!v || v > STORE_LIST_MAX)
				return -400;
			out->list_limit = v;
			seen_limit = true;
		} else {
			return -400;
		}
	}
	return c->left || c->err ? -400 : 0;
}

int store_key_decode(const uint8_t *s, size_t n, uint8_t out[static STORE_KEY_MAX], size_t *len)
{
	struct store_req r;
	struct cur c = cur_make(s, n);
	if (key_decode(&c, &r))
		return -EINVAL;
	memcpy(out, r.key, r.key_len);
	*len = r.key_len;
	return 0;
}

static const struct {
	const char *name;
	enum store_method m;
} methods[] = {
    {"GET", STORE_GET}, {"HEAD", STORE_HEAD}, {"PUT", STORE_PUT}, {"DELETE", STORE_DELETE}};

/* The request line: method SP request-target SP HTTP-version (RFC 9112 3). */
static long request_line(const uint8_t *s, size_t n, struct store_req *out)
{
	const uint8_t *sp1 = memchr(s, ' ', n);
	if (!sp1 || sp1 == s)
		return -400;
	size_t mn = (size_t)(sp1 - s), rest = n - mn - 1;
	const uint8_t *t = sp1 + 1;
	const uint8_t *sp2 = memchr(t, ' ', rest);
	if (!sp2 || sp2 == t)
		return -400;
	size_t tn = (size_t)(sp2 - t), vn = rest - tn - 1;
	const uint8_t *v = sp2 + 1;
	if (vn != 8 || memcmp(v, "HTTP/1.", 7) || v[7] < '0' || v[7] > '9')
		return vn >= 5 && !memcmp(v, "HTTP/", 5) ? -505 : -400;
	out->close = v[7] == '0'; /* HTTP/1.0: no keep-alive unless asked (below) */
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (mn == strlen(methods[i].name) && !memcmp(s, methods[i].name, mn))
			out->method = methods[i].m;
	bool list = tn >= 3 && !memcmp(t, "/s/", 3);
	if (!list && (tn < 3 || memcmp(t, "/o/", 3)))
		return out->method ? -404 : -405;
	if (!out->method || (list && out->method != STORE_GET))
		return -405;
	struct cur k = cur_make(t + 3, tn - 3);
	return list ? list_query(&k, out) : key_decode(&k, out);
}

long store_req_parse(const uint8_t *buf, size_t len, uint64_t max_body, struct store_req *out)
{
	size_t hl = http_head_end(buf, len, STORE_HEAD_MAX);
	if (!hl)
		return len >= STORE_HEAD_MAX ? -431 : 0;
	memset(out, 0, sizeof(*out));
	out->head_len = hl;
	struct cur c = cur_make(buf, hl);
	size_t n;
	const uint8_t *s = http_line(&c, &n);
	if (!s)
		return -400;
	long r = request_line(s, n, out);
	if (r)
		return r;
	bool keep_alive = false, conn_close = false;
	for (unsigned i = 0;; i++) {
		s = http_line(&c, &n);
		if (!s || i > STORE_HEADERS_MAX)
			return -400;
		if (!n)
			break;
		const uint8_t *colon = memchr(s, ':', n);
		if (!colon || colon == s || memchr(s, ' ', (size_t)(colon - s)))
			return -400; /* no white space before the colon (RFC 9112 5.1) */
		size_t nn = (size_t)(colon - s), vn;
		const uint8_t *v = http_trim(colon + 1, n - nn - 1, &vn);
		if (http_token_is(s, nn, "Content-Length")) {
			if (out->has_len || !vn || vn > 19)
				return -400;
			uint64_t body = 0;
			for (size_t k = 0; k < vn; k++) {
				if (v[k] < '0' || v[k] > '9')
					return -400;
				body = body * 10 + (uint64_t)(v[k] - '0');
			}
			out->body_len = body;
			out->has_len = true;
		} else if (http_token_is(s, nn, "Transfer-Encoding")) {
			return -501;
		} else if (http_token_is(s, nn, "Connection")) {
			conn_close |= http_list_has(v, vn, "close");
			keep_alive |= http_list_has(v, vn, "keep-alive");
		} else if (http_token_is(s, nn, "Expect")) {
			if (!http_token_is(v, vn, "100-continue"))
				return -400; /* RFC 9110 10.1.1 says 417; 400 is as clear */
			out->expect_100 = true;
		} else if (http_token_is(s, nn, "X-Peak-Acked")) {
			if (out->acked_len + 1 + vn > sizeof(out->acked))
				return -431;
			if (out->acked_len)
				out->acked[out->acked_len++] = ',';
			memcpy(out->acked + out->acked_len, v, vn);
			out->acked_len += vn;
		}
	}
	if (keep_alive)
		out->close = false;
	out->close |= conn_close;
	if (out->method == STORE_PUT && !out->has_len)
		return -411;
	if (out->method == STORE_PUT && out->body_len > max_body)
		return -413;
	if (out->method != STORE_PUT && out->body_len)
		return -400; /* bodies only on PUT */
	return (long)hl;
}

const char *store_status_text(unsigned status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 208:
		return "Already Reported";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 421:
		return "Misdirected Request";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}
