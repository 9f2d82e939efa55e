/* The control-line grammar (include/peak/ctlproto.h): one parser and one writer for every
 * line of the controller, agent and DNS control links. */
#include "peak/ctlproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "peak/cur.h"
#include "peak/dns.h"

enum { U64_DIGITS_MAX = 20, HEX_NONCE = 2 * CTL_NONCE_LEN, HEX_TAG = 2 * CTL_TAG_LEN };

static const char *const kind_names[] = {
    [CTL_NONE] = "?",
    [CTL_CHALLENGE] = "challenge",
    [CTL_HELLO] = "hello",
    [CTL_WELCOME] = "welcome",
    [CTL_HEALTH] = "health",
    [CTL_LOAD] = "load",
    [CTL_WEIGHT] = "weight",
    [CTL_MAP] = "map",
    [CTL_EP] = "ep",
    [CTL_END] = "end",
    [CTL_STATUS] = "status",
    [CTL_RELOAD] = "reload",
    [CTL_OK] = "ok",
    [CTL_ERROR] = "error:",
    [CTL_HANDOVER] = "handover",
    [CTL_ADD] = "add",
    [CTL_DEL] = "del",
    [CTL_BATCH] = "batch",
};

_Static_assert(CTL_WEIGHT_MAX == 1000000, "the weight's range in usage[] below");

/* What a line of each kind must look like: the reason given when one does not parse. */
static const char *const usage[] = {
    [CTL_NONE] = "unknown command",
    [CTL_CHALLENGE] = "expected 'challenge NONCE' (32 lowercase hex digits)",
    [CTL_HELLO] = "expected 'hello NODE [TAG [NONCE]]' (TAG: 64, NONCE: 32 lowercase hex "
                  "digits)",
    [CTL_WELCOME] = "expected 'welcome TAG' (64 lowercase hex digits)",
    [CTL_HEALTH] = "expected 'health SERVICE ENDPOINT up|down'",
    [CTL_LOAD] = "expected 'load SERVICE ENDPOINT CONNECTIONS CPU_NS [APP] [sat THROTTLED_NS "
                 "QUEUED BACKLOG]' (decimal, no sign; QUEUED and BACKLOG 32-bit)",
    [CTL_WEIGHT] = "expected 'weight SERVICE ENDPOINT N' (N a decimal in 0..1000000)",
    [CTL_MAP] = "expected 'map SERVICE'",
    [CTL_EP] = "expected 'ep ENDPOINT START/LOG2 ...' (aligned blocks, at most 64)",
    [CTL_END] = "expected 'end' alone",
    [CTL_STATUS] = "expected 'status' alone",
    [CTL_RELOAD] = "expected 'reload' alone",
    [CTL_OK] = "expected 'ok' alone",
    [CTL_ERROR] = "expected 'error: TEXT' (printable, at most 255 bytes)",
    [CTL_HANDOVER] = "expected 'handover SERVICE OLD NEW MS START/LOG2 ...' (MS in 1..600000, "
                     "1 to 64 aligned blocks, OLD and NEW differ)",
    [CTL_ADD] = "expected 'add SERVICE ENDPOINT ADDRESS WEIGHT [NODE]' (ADDRESS an IPv6 "
                "address, WEIGHT a decimal in 0..1000000)",
    [CTL_DEL] = "expected 'del SERVICE ENDPOINT'",
    [CTL_BATCH] = "expected 'batch N' (N a decimal in 1..1000000)",
};

_Static_assert(CTL_BATCH_MAX == 1000000, "the batch's range in usage[] above");

const char *ctl_kind_name(enum ctl_kind k)
{
	return (unsigned)k < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[k] : "?";
}

long ctl_line_split(const uint8_t *buf, size_t len, size_t *linelen)
{
	size_t scan = len < CTL_LINE_MAX ? len : CTL_LINE_MAX;
	const uint8_t *nl = memchr(buf, '\n', scan);
	if (nl) {
		*linelen = (size_t)(nl - buf);
		return (long)(*linelen + 1);
	}
	return len >= CTL_LINE_MAX ? -EMSGSIZE : 0;
}

/* A token: the bytes up to the next space or the end. Sets the cursor's error if it is
 * empty, longer than max or holds a byte outside 0x21..0x7e. The token is not consumed
 * with its separator; next_sep does that. */
static const uint8_t *tok(struct cur *c, size_t max, size_t *n)
{
	size_t k = 0;
	while (k < c->left && c->p[k] != ' ')
		k++;
	if (!k || k > max) {
		c->err = -EBADMSG;
		return NULL;
	}
	const uint8_t *p = cur_ptr(c, k);
	for (size_t i = 0; p && i < k; i++)
		if (p[i] < 0x21 || p[i] > 0x7e) {
			c->err = -EBADMSG;
			return NULL;
		}
	*n = k;
	return p;
}

/* Consumes the single space before the next token. */
static void sep(struct cur *c)
{
	if (cur_u8(c) != ' ')
		c->err = -EBADMSG;
}

static bool tok_is(const uint8_t *p, size_t n, const char *s)
{
	return p && n == strlen(s) && !memcmp(p, s, n);
}

/* Whether the next token is s (not consumed). */
static bool peek_is(const struct cur *c, const char *s)
{
	size_t n = strlen(s);
	return c->left >= n && !memcmp(c->p, s, n) && (c->left == n || c->p[n] == ' ');
}

/* A decimal number in [0, max]: digits only, no leading zero, no overflow. */
static uint64_t num(struct cur *c, uint64_t max)
{
	size_t n = 0;
	const uint8_t *p = tok(c, U64_DIGITS_MAX, &n);
	uint64_t v = 0;
	if (!p)
		return 0;
	if (n > 1 && p[0] == '0')
		goto bad;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			goto bad;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (max - d) / 10)
			goto bad;
		v = v * 10 + d;
	}
	return v;
bad:
	c->err = -EBADMSG;
	return 0;
}

static int hexval(uint8_t h)
{
	if (h >= '0' && h <= '9')
		return h - '0';
	if (h >= 'a' && h <= 'f')
		return h - 'a' + 10;
	return -1;
}

/* Exactly 2 * len lowercase hex digits into out. */
static void hex(struct cur *c, uint8_t *out, size_t len)
{
	size_t n = 0;
	const uint8_t *p = tok(c, 2 * len, &n);
	if (!p || n != 2 * len) {
		c->err = -EBADMSG;
		return;
	}
	for (size_t i = 0; i < len; i++) {
		int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			c->err = -EBADMSG;
			return;
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
}

static bool id_ok(const char *s, size_t n)
{
	if (!n || n >= CTL_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)s[i] < 0x21 || (uint8_t)s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
			return false;
	return true;
}

static bool svc_ok(const char *s, size_t n)
{
	struct dns_name dn;
	if (!n || n >= CTL_SVC_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)s[i] < 0x21 || (uint8_t)s[i] > 0x7e)
			return false;
	return dns_name_parse(s, &dn) == 0;
}

static void id(struct cur *c, char out[static CTL_ID_MAX])
{
	size_t n = 0;
	const uint8_t *p = tok(c, CTL_ID_MAX - 1, &n);
	if (!p)
		return;
	memcpy(out, p, n);
	out[n] = '\0';
	if (!id_ok(out, n))
		c->err = -EBADMSG;
}

static void svc(struct cur *c, char out[static CTL_SVC_MAX])
{
	size_t n = 0;
	const uint8_t *p = tok(c, CTL_SVC_MAX - 1, &n);
	if (!p)
		return;
	memcpy(out, p, n);
	out[n] = '\0';
	if (!svc_ok(out, n))
		c->err = -EBADMSG;
}

/* An IPv6 address in presentation form (inet_pton's). */
static void addr6(struct cur *c, uint8_t out[static 16])
{
	char a[INET6_ADDRSTRLEN];
	size_t n = 0;
	const uint8_t *p = tok(c, sizeof(a) - 1, &n);
	if (!p)
		return;
	memcpy(a, p, n);
	a[n] = '\0';
	if (inet_pton(AF_INET6, a, out) != 1)
		c->err = -EBADMSG;
}

/* START/LOG2: an aligned block inside the largest assignment. */
static void block(struct cur *c, struct assign_block *b)
{
	size_t n = 0, slash = 0;
	const uint8_t *p = tok(c, 2 * U64_DIGITS_MAX + 1, &n);
	if (!p)
		return;
	while (slash < n && p[slash] != '/')
		slash++;
	if (slash == n) {
		c->err = -EBADMSG;
		return;
	}
	struct cur a = cur_make(p, slash), l = cur_make(p + slash + 1, n - slash - 1);
	uint64_t start = num(&a, CTL_SLICES_MAX - 1), log2 = num(&l, 24);
	if (a.err || a.left || l.err || l.left || start & ((1ull << log2) - 1) ||
	    start + (1ull << log2) > CTL_SLICES_MAX) {
		c->err = -EBADMSG;
		return;
	}
	b->start = (uint32_t)start;
	b->log2 = (uint8_t)log2;
}

int ctl_parse(const char *line, size_t len, struct ctl_msg *m)
{
	struct cur c = cur_make((const uint8_t *)line, len);
	size_t n = 0;
	enum ctl_kind kind;
	memset(m, 0, sizeof(*m));
	if (len >= CTL_LINE_MAX)
		goto bad;
	const uint8_t *k = tok(&c, 16, &n);
	if (tok_is(k, n, "challenge")) {
		m->kind = CTL_CHALLENGE;
		sep(&c);
		hex(&c, m->nonce, CTL_NONCE_LEN);
	} else if (tok_is(k, n, "hello")) {
		m->kind = CTL_HELLO;
		sep(&c);
		id(&c, m->id);
		if (!c.err && c.left) {
			sep(&c);
			hex(&c, m->tag, CTL_TAG_LEN);
			m->has_tag = true;
		}
		if (!c.err && c.left) {
			sep(&c);
			hex(&c, m->nonce, CTL_NONCE_LEN);
			m->has_nonce = true;
		}
	} else if (tok_is(k, n, "welcome")) {
		m->kind = CTL_WELCOME;
		sep(&c);
		hex(&c, m->tag, CTL_TAG_LEN);
	} else if (tok_is(k, n, "health") || tok_is(k, n, "load") || tok_is(k, n, "weight")) {
		m->kind = k[0] == 'h' ? CTL_HEALTH : k[0] == 'l' ? CTL_LOAD : CTL_WEIGHT;
		sep(&c);
		svc(&c, m->svc);
		sep(&c);
		id(&c, m->id);
		sep(&c);
		if (m->kind == CTL_HEALTH) {
			const uint8_t *w = tok(&c, 4, &n);
			m->up = tok_is(w, n, "up");
			if (!m->up && !tok_is(w, n, "down"))
				c.err = -EBADMSG;
		} else if (m->kind == CTL_LOAD) {
			m->conns = num(&c, UINT64_MAX);
			sep(&c);
			m->cpu_ns = num(&c, UINT64_MAX);
			/* [APP] [sat THROTTLED_NS QUEUED BACKLOG]: APP is digits, never "sat" */
			bool more = !c.err && c.left;
			if (more)
				sep(&c);
			if (more && !peek_is(&c, "sat")) {
				m->app = num(&c, UINT64_MAX);
				m->has_app = true;
				more = !c.err && c.left;
				if (more)
					sep(&c);
			}
			if (more && !c.err) {
				const uint8_t *w = tok(&c, 3, &n);
				if (!tok_is(w, n, "sat"))
					goto bad;
				sep(&c);
				m->throttled_ns = num(&c, UINT64_MAX);
				sep(&c);
				m->queued = (uint32_t)num(&c, UINT32_MAX);
				sep(&c);
				m->backlog = (uint32_t)num(&c, UINT32_MAX);
				m->has_sat = true;
			}
		} else {
			m->weight = (uint32_t)num(&c, CTL_WEIGHT_MAX);
		}
	} else if (tok_is(k, n, "map")) {
		m->kind = CTL_MAP;
		sep(&c);
		svc(&c, m->svc);
	} else if (tok_is(k, n, "ep")) {
		m->kind = CTL_EP;
		sep(&c);
		id(&c, m->id);
		while (!c.err && c.left) {
			if (m->nblocks == CTL_EP_BLOCKS_MAX)
				goto bad;
			sep(&c);
			block(&c, &m->blocks[m->nblocks++]);
		}
	} else if (tok_is(k, n, "handover")) {
		m->kind = CTL_HANDOVER;
		sep(&c);
		svc(&c, m->svc);
		sep(&c);
		id(&c, m->id);
		sep(&c);
		id(&c, m->to);
		sep(&c);
		m->ms = (uint32_t)num(&c, CTL_HANDOVER_MS_MAX);
		if (!c.err && (!m->ms || !strcmp(m->id, m->to)))
			goto bad;
		while (!c.err && c.left) {
			if (m->nblocks == CTL_EP_BLOCKS_MAX)
				goto bad;
			sep(&c);
			block(&c, &m->blocks[m->nblocks++]);
		}
		if (!c.err && !m->nblocks)
			goto bad;
	} else if (tok_is(k, n, "add") || tok_is(k, n, "del")) {
		m->kind = k[0] == 'a' ? CTL_ADD : CTL_DEL;
		sep(&c);
		svc(&c, m->svc);
		sep(&c);
		id(&c, m->id);
		if (m->kind == CTL_ADD) {
			sep(&c);
			addr6(&c, m->addr);
			sep(&c);
			m->weight = (uint32_t)num(&c, CTL_WEIGHT_MAX);
			if (!c.err && c.left) {
				sep(&c);
				id(&c, m->node);
			}
		}
	} else if (tok_is(k, n, "batch")) {
		m->kind = CTL_BATCH;
		sep(&c);
		m->count = (uint32_t)num(&c, CTL_BATCH_MAX);
		if (!c.err && !m->count)
			goto bad;
	} else if (tok_is(k, n, "end")) {
		m->kind = CTL_END;
	} else if (tok_is(k, n, "status")) {
		m->kind = CTL_STATUS;
	} else if (tok_is(k, n, "reload")) {
		m->kind = CTL_RELOAD;
	} else if (tok_is(k, n, "ok")) {
		m->kind = CTL_OK;
	} else if (tok_is(k, n, "error:")) {
		m->kind = CTL_ERROR;
		sep(&c);
		if (!c.err && (!c.left || c.left >= CTL_TEXT_MAX))
			goto bad;
		for (size_t i = 0; !c.err && i < c.left; i++)
			if (c.p[i] < 0x20 || c.p[i] > 0x7e)
				goto bad;
		cur_bytes(&c, m->text, c.left);
	} else {
		goto bad;
	}
	if (c.err || c.left)
		goto bad;
	return 0;
bad:
	kind = m->kind;
	memset(m, 0, sizeof(*m));
	m->why = kind == CTL_NONE ? "unknown command" : usage[kind];
	return -EBADMSG;
}

static void put_str(struct wcur *w, const char *s)
{
	wcur_bytes(w, s, strlen(s));
}

static void put_u64(struct wcur *w, uint64_t v)
{
	char b[U64_DIGITS_MAX + 1]; /* (by hand: snprintf was most of a map's text) */
	size_t n = sizeof(b);
	do {
		b[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n);
	wcur_bytes(w, b + n, sizeof(b) - n);
}

static void put_hex(struct wcur *w, const uint8_t *p, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		wcur_u8(w, (uint8_t)digits[p[i] >> 4]);
		wcur_u8(w, (uint8_t)digits[p[i] & 15]);
	}
}

int ctl_write(const struct ctl_msg *m, char *out, size_t cap)
{
	uint8_t line[CTL_LINE_MAX];
	struct wcur w = wcur_make(line, sizeof(line));
	size_t idn = strnlen(m->id, CTL_ID_MAX), svcn = strnlen(m->svc, CTL_SVC_MAX);
	bool need_id = m->kind == CTL_HELLO || m->kind == CTL_HEALTH || m->kind == CTL_LOAD ||
	               m->kind == CTL_WEIGHT || m->kind == CTL_EP || m->kind == CTL_HANDOVER ||
	               m->kind == CTL_ADD || m->kind == CTL_DEL;
	bool need_svc = m->kind == CTL_HEALTH || m->kind == CTL_LOAD || m->kind == CTL_WEIGHT ||
	                m->kind == CTL_MAP || m->kind == CTL_HANDOVER || m->kind == CTL_ADD ||
	                m->kind == CTL_DEL;
	if (m->kind == CTL_NONE || (unsigned)m->kind > CTL_BATCH ||
	    (need_id && !id_ok(m->id, idn)) || (need_svc && !svc_ok(m->svc, svcn)))
		return -EINVAL;
	put_str(&w, ctl_kind_name(m->kind));
	if (need_svc) {
		wcur_u8(&w, ' ');
		put_str(&w, m->svc);
	}
	if (need_id) {
		wcur_u8(&w, ' ');
		put_str(&w, m->id);
	}
	switch (m->kind) {
	case CTL_CHALLENGE:
		wcur_u8(&w, ' ');
		put_hex(&w, m->nonce, CTL_NONCE_LEN);
		break;
	case CTL_HELLO:
		if (m->has_nonce && !m->has_tag)
			return -EINVAL; /* the nonce follows the tag */
		if (m->has_tag) {
			wcur_u8(&w, ' ');
			put_hex(&w, m->tag, CTL_TAG_LEN);
		}
		if (m->has_nonce) {
			wcur_u8(&w, ' ');
			put_hex(&w, m->nonce, CTL_NONCE_LEN);
		}
		break;
	case CTL_WELCOME:
		wcur_u8(&w, ' ');
		put_hex(&w, m->tag, CTL_TAG_LEN);
		break;
	case CTL_HEALTH:
		put_str(&w, m->up ? " up" : " down");
		break;
	case CTL_LOAD:
		wcur_u8(&w, ' ');
		put_u64(&w, m->conns);
		wcur_u8(&w, ' ');
		put_u64(&w, m->cpu_ns);
		if (m->has_app) {
			wcur_u8(&w, ' ');
			put_u64(&w, m->app);
		}
		if (m->has_sat) {
			put_str(&w, " sat ");
			put_u64(&w, m->throttled_ns);
			wcur_u8(&w, ' ');
			put_u64(&w, m->queued);
			wcur_u8(&w, ' ');
			put_u64(&w, m->backlog);
		}
		break;
	case CTL_WEIGHT:
		if (m->weight > CTL_WEIGHT_MAX)
			return -EINVAL;
		wcur_u8(&w, ' ');
		put_u64(&w, m->weight);
		break;
	case CTL_ADD: {
		char a[INET6_ADDRSTRLEN];
		size_t nn = strnlen(m->node, CTL_ID_MAX);
		if (m->weight > CTL_WEIGHT_MAX || (nn && !id_ok(m->node, nn)) ||
		    !inet_ntop(AF_INET6, m->addr, a, sizeof(a)))
			return -EINVAL;
		wcur_u8(&w, ' ');
		put_str(&w, a);
		wcur_u8(&w, ' ');
		put_u64(&w, m->weight);
		if (nn) {
			wcur_u8(&w, ' ');
			put_str(&w, m->node);
		}
		break;
	}
	case CTL_BATCH:
		if (!m->count || m->count > CTL_BATCH_MAX)
			return -EINVAL;
		wcur_u8(&w, ' ');
		put_u64(&w, m->count);
		break;
	case CTL_HANDOVER:
		if (!id_ok(m->to, strnlen(m->to, CTL_ID_MAX)) || !strcmp(m->id, m->to) || !m->ms ||
		    m->ms > CTL_HANDOVER_MS_MAX || !m->nblocks)
			return -EINVAL;
		wcur_u8(&w, ' ');
		put_str(&w, m->to);
		wcur_u8(&w, ' ');
		put_u64(&w, m->ms);
		__attribute__((fallthrough)); /* the blocks, as an ep line's */
	case CTL_EP:
		if (m->nblocks > CTL_EP_BLOCKS_MAX)
			return -EINVAL;
		for (unsigned i = 0; i < m->nblocks; i++) {
			const struct assign_block *b = &m->blocks[i];
			if (b->log2 > 24 || b->start & ((1u << b->log2) - 1) ||
			    (uint64_t)b->start + (1u << b->log2) > CTL_SLICES_MAX)
				return -EINVAL;
			wcur_u8(&w, ' ');
			put_u64(&w, b->start);
			wcur_u8(&w, '/');
			put_u64(&w, b->log2);
		}
		break;
	case CTL_ERROR: {
		size_t n = strnlen(m->text, CTL_TEXT_MAX);
		if (!n || n >= CTL_TEXT_MAX)
			return -EINVAL;
		for (size_t i = 0; i < n; i++)
			if ((uint8_t)m->text[i] < 0x20 || (uint8_t)m->text[i] > 0x7e)
				return -EINVAL;
		wcur_u8(&w, ' ');
		wcur_bytes(&w, m->text, n);
		break;
	}
	default:
		break;
	}
	wcur_u8(&w, '\n');
	if (w.err)
		return -EINVAL; /* longer than a line may be */
	if (w.len > cap)
		return -EMSGSIZE;
	memcpy(out, line, w.len);
	if (w.len < cap)
		out[w.len] = '\0';
	return (int)w.len;
}
