/* HTTP/1.1 response framing (RFC 9112 sections 4, 6.3); see include/peak/http.h. */
#include "peak/http.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "peak/cur.h"

/* Finds "\r\n\r\n" within the first max bytes; returns the head length or 0. */
size_t http_head_end(const uint8_t *buf, size_t len, size_t max)
{
	size_t n = len < max ? len : max;
	for (size_t i = 3; i < n; i++)
		if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
		    buf[i - 3] == '\r')
			return i + 1;
	return 0;
}

const uint8_t *http_line(struct cur *c, size_t *n)
{
	const uint8_t *p = c->p;
	const uint8_t *nl = c->left ? memchr(p, '\n', c->left) : NULL;
	if (!nl || nl == p || nl[-1] != '\r')
		return NULL;
	*n = (size_t)(nl - p) - 1;
	cur_skip(c, *n + 2);
	return p;
}

bool http_token_is(const uint8_t *p, size_t n, const char *name)
{
	return n == strlen(name) && !strncasecmp((const char *)p, name, n);
}

const uint8_t *http_trim(const uint8_t *p, size_t n, size_t *out)
{
	while (n && (*p == ' ' || *p == '\t'))
		p++, n--;
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	*out = n;
	return p;
}

bool http_list_has(const uint8_t *p, size_t n, const char *token)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && p[j] != ',')
			j++;
		size_t tn;
		const uint8_t *t = http_trim(p + i, j - i, &tn);
		if (http_token_is(t, tn, token))
			return true;
		i = j + 1;
	}
	return false;
}

/* The head of the response in buf[0..len): its length, 0 if it is not all there, or -EBADMSG;
 * a Content-Length of more than digits digits or above max_body is malformed. */
static long resp_head(const uint8_t *buf, size_t len, bool head_req, uint64_t max_body,
                      size_t digits, struct http_resp *out)
{
	size_t hl = http_head_end(buf, len, HTTP_HEAD_MAX);
	if (!hl)
		return len >= HTTP_HEAD_MAX ? -EBADMSG : 0;
	memset(out, 0, sizeof(*out));
	out->head_len = hl;
	struct cur c = cur_make(buf, hl);
	size_t n;
	const uint8_t *s = http_line(&c, &n);
	/* status-line = HTTP-version SP 3DIGIT SP [reason] */
	if (!s || n < 12 || memcmp(s, "HTTP/1.", 7) || (s[7] != '0' && s[7] != '1') ||
	    s[8] != ' ' || s[9] < '1' || s[9] > '5' || s[10] < '0' || s[10] > '9' || s[11] < '0' ||
	    s[11] > '9' || (n > 12 && s[12] != ' '))
		return -EBADMSG;
	out->status = (unsigned)((s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0'));
	bool http10 = s[7] == '0', keep_alive = false, have_len = false;
	for (unsigned i = 0; i < HTTP_HEAD_MAX; i++) {
		s = http_line(&c, &n);
		if (!s)
			return -EBADMSG;
		if (!n)
			break; /* the blank line: the head ends */
		const uint8_t *colon = memchr(s, ':', n);
		if (!colon || colon == s)
			return -EBADMSG;
		size_t name_n = (size_t)(colon - s), vn;
		const uint8_t *v = http_trim(colon + 1, n - name_n - 1, &vn);
		if (http_token_is(s, name_n, "Content-Length")) {
			if (have_len || !vn || vn > digits)
				return -EBADMSG;
			uint64_t body = 0;
			for (size_t k = 0; k < vn; k++) {
				if (v[k] < '0' || v[k] > '9')
					return -EBADMSG;
				body = body * 10 + (uint64_t)(v[k] - '0');
			}
			if (body > max_body)
				return -EBADMSG;
			out->body_len = (size_t)body;
			have_len = true;
		} else if (http_token_is(s, name_n, "Transfer-Encoding")) {
			return -EBADMSG; /* chunked and other codings: unsupported */
		} else if (http_token_is(s, name_n, "Connection")) {
			out->close |= http_list_has(v, vn, "close");
			keep_alive |= http_list_has(v, vn, "keep-alive");
		}
	}
	if (http10 && !keep_alive)
		out->close = true;
	/* no body: HEAD, 1xx, 204, 304 (RFC 9112 6.3) */
	if (head_req || out->status < 200 || out->status == 204 || out->status == 304)
		out->body_len = 0;
	else if (!have_len)
		return -EBADMSG; /* a body delimited by close: not for a load generator */
	return (long)hl;
}

long http_resp_parse(const uint8_t *buf, size_t len, bool head_req, struct http_resp *out)
{
	long hl = resp_head(buf, len, head_req, HTTP_BODY_MAX, 9, out);
	if (hl <= 0)
		return hl;
	if (len - (size_t)hl < out->body_len)
		return 0;
	return (long)((size_t)hl + out->body_len);
}

long http_resp_head_parse(const uint8_t *buf, size_t len, bool head_req, uint64_t max_body,
                          struct http_resp *out)
{
	return resp_head(buf, len, head_req, max_body, 19, out);
}
