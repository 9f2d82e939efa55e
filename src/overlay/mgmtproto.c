#include "mgmtproto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "peak/cur.h"

enum { TOKEN_MAX = PREFIX_STRLEN, MAX_TOKENS = 4 };

/* Splits the line into at most MAX_TOKENS tokens of printable ASCII other than space.
 * Returns the token count or -EBADMSG (empty token, control byte, too many or too long). */
static int tokens(struct cur *c, char tok[MAX_TOKENS][TOKEN_MAX + 1])
{
	int nt = 0;
	size_t len = 0;
	while (c->left) {
		uint8_t b = cur_u8(c);
		if (b == '\n') {
			if (c->left)
				return -EBADMSG; /* one line only */
			break;
		}
		if (b == ' ') {
			if (!len)
				return -EBADMSG;
			tok[nt++][len] = '\0';
			len = 0;
			continue;
		}
		if (b < 0x21 || b > 0x7e || nt == MAX_TOKENS || len == TOKEN_MAX)
			return -EBADMSG;
		tok[nt][len++] = (char)b;
	}
	if (!len)
		return -EBADMSG; /* empty line or a trailing space */
	tok[nt++][len] = '\0';
	return c->err ? c->err : nt;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > MG_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

static bool prefix_tok(const char *s, struct prefix *p)
{
	char canon[PREFIX_STRLEN];
	if (prefix_parse(s, false, p) || p->family != PEAK_AFI_IP6)
		return false;
	/* canonical text only, so a request writes back to the same bytes */
	return !strcmp(prefix_print(p, canon), s);
}

int mg_parse(const uint8_t *line, size_t n, struct mg_req *r)
{
	char tok[MAX_TOKENS][TOKEN_MAX + 1];
	memset(r, 0, sizeof(*r));
	if (n > MG_LINE_MAX)
		return -EBADMSG;
	struct cur c = cur_make(line, n);
	int nt = tokens(&c, tok);
	if (nt < 0)
		return nt;
	struct mg_req q;
	memset(&q, 0, sizeof(q)); /* padding too: requests compare with memcmp */
	if (nt == 2 && !strcmp(tok[0], "show")) {
		if (!strcmp(tok[1], "routes"))
			q.kind = MG_SHOW_ROUTES;
		else if (!strcmp(tok[1], "peers"))
			q.kind = MG_SHOW_PEERS;
		else if (!strcmp(tok[1], "counters"))
			q.kind = MG_SHOW_COUNTERS;
	} else if (nt == 4 && !strcmp(tok[0], "route") && !strcmp(tok[1], "add")) {
		if (prefix_tok(tok[2], &q.prefix) && name_ok(tok[3])) {
			strcpy(q.peer, tok[3]);
			q.kind = MG_ROUTE_ADD;
		}
	} else if (nt == 3 && !strcmp(tok[0], "route") && !strcmp(tok[1], "del")) {
		if (prefix_tok(tok[2], &q.prefix))
			q.kind = MG_ROUTE_DEL;
	}
	if (q.kind == MG_NONE)
		return -EBADMSG;
	*r = q;
	return 0;
}

int mg_write(const struct mg_req *r, char *out, size_t cap)
{
	char p[PREFIX_STRLEN];
	int k;
	switch (r->kind) {
	case MG_SHOW_ROUTES:
		k = snprintf(out, cap, "show routes\n");
		break;
	case MG_SHOW_PEERS:
		k = snprintf(out, cap, "show peers\n");
		break;
	case MG_SHOW_COUNTERS:
		k = snprintf(out, cap, "show counters\n");
		break;
	case MG_ROUTE_ADD:
		k = snprintf(out, cap, "route add %s %s\n", prefix_print(&r->prefix, p), r->peer);
		break;
	case MG_ROUTE_DEL:
		k = snprintf(out, cap, "route del %s\n", prefix_print(&r->prefix, p));
		break;
	default:
		return -EINVAL;
	}
	if (k < 0 || (size_t)k >= cap)
		return -EMSGSIZE;
	return k;
}
