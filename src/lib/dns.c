#include "peak/dns.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- names ---- */

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

int dns_name_parse(const char *s, struct dns_name *n)
{
	size_t len = 0, lab = 0; /* lab: offset of the current label's length byte */
	const char *p = s;

	if (!strcmp(s, ".")) {
		n->len = 1;
		n->wire[0] = 0;
		return 0;
	}
	if (!*s)
		return -EINVAL;
	n->wire[0] = 0;
	len = 1;
	while (*p) {
		if (*p == '.') {
			if (len - lab - 1 == 0)
				return -EINVAL; /* empty label */
			p++;
			if (!*p)
				break; /* the final dot of an absolute name */
			lab = len;
			if (len >= DNS_NAME_MAX - 1)
				return -EINVAL;
			n->wire[len++] = 0;
			continue;
		}
		uint8_t c;
		if (*p == '\\') {
			p++;
			if (p[0] >= '0' && p[0] <= '9') {
				if (!(p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9'))
					return -EINVAL;
				unsigned v = (unsigned)((p[0] - '0') * 100 + (p[1] - '0') * 10 +
				                        (p[2] - '0'));
				if (v > 255)
					return -EINVAL;
				c = (uint8_t)v;
				p += 3;
			} else if (*p) {
				c = (uint8_t)*p++;
			} else {
				return -EINVAL;
			}
		} else {
			c = (uint8_t)*p++;
		}
		if (len - lab - 1 >= DNS_LABEL_MAX || len >= DNS_NAME_MAX - 1)
			return -EINVAL;
		n->wire[len++] = c;
		n->wire[lab]++;
	}
	if (n->wire[lab] == 0)
		return -EINVAL;
	n->wire[len++] = 0; /* root */
	n->len = (uint8_t)len;
	return 0;
}

int dns_name_print(const struct dns_name *n, char *out, size_t cap)
{
	size_t o = 0;
	char tmp[8];
	if (n->len <= 1) {
		if (cap < 2)
			return -ENOSPC;
		memcpy(out, ".", 2);
		return 1;
	}
	for (size_t i = 0; i < n->len && n->wire[i];) {
		uint8_t l = n->wire[i++];
		for (uint8_t k = 0; k < l; k++, i++) {
			uint8_t c = n->wire[i];
			size_t tl;
			if (c <= 0x20 || c >= 0x7f)
				tl = (size_t)snprintf(tmp, sizeof(tmp), "\\%03u", c);
			else if (strchr(".\\\"();@$", c))
				tl = (size_t)snprintf(tmp, sizeof(tmp), "\\%c", c);
			else
				tl = (size_t)snprintf(tmp, sizeof(tmp), "%c", c);
			if (o + tl >= cap)
				return -ENOSPC;
			memcpy(out + o, tmp, tl);
			o += tl;
		}
		if (o + 1 >= cap)
			return -ENOSPC;
		out[o++] = '.';
	}
	out[o] = '\0';
	return (int)o;
}

void dns_name_lower(struct dns_name *n)
{
	for (size_t i = 0; i < n->len; i++)
		n->wire[i] = lower(n->wire[i]);
}

bool dns_name_eq(const struct dns_name *a, const struct dns_name *b)
{
	if (a->len != b->len)
		return false;
	for (size_t i = 0; i < a->len; i++)
		if (lower(a->wire[i]) != lower(b->wire[i]))
			return false;
	return true;
}

unsigned dns_name_labels(const struct dns_name *n)
{
	unsigned k = 0;
	for (size_t i = 0; i < n->len && n->wire[i]; i += n->wire[i] + 1u)
		k++;
	return k;
}

bool dns_name_under(const struct dns_name *name, const struct dns_name *zone)
{
	if (zone->len > name->len)
		return false;
	/* Walk name's labels until the remaining suffix is as long as zone: it must start on a
	 * label boundary and match. */
	size_t i = 0;
	while (name->len - i > zone->len)
		i += name->wire[i] + 1u;
	if (name->len - i != zone->len)
		return false;
	for (size_t k = 0; k < zone->len; k++)
		if (lower(name->wire[i + k]) != lower(zone->wire[k]))
			return false;
	return true;
}

int dns_name_read(const uint8_t *msg, size_t len, struct cur *c, struct dns_name *out)
{
	if (c->err || c->p < msg || (size_t)(c->p - msg) > len)
		return -EBADMSG;
	size_t pos = (size_t)(c->p - msg); /* where we read now */
	size_t seg = pos;                  /* start of the current run of labels */
	size_t end = 0;                    /* where the stored name ends, once known */
	size_t o = 0;
	unsigned hops = 0;

	for (;;) {
		if (pos >= len)
			return -EBADMSG;
		uint8_t l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return -EBADMSG;
			size_t target = (size_t)(l & 0x3f) << 8 | msg[pos + 1];
			if (!end)
				end = pos + 2;
			/* Strictly backward from the start of this run: offsets decrease on each
			 * jump, so there is no loop and at most len jumps; also bounded. */
			if (target >= seg || ++hops > DNS_MAX_HOPS)
				return -EBADMSG;
			pos = seg = target;
			continue;
		}
		if (l & 0xc0)
			return -EBADMSG; /* 0x40 and 0x80 label types are not defined */
		if (l > len - pos - 1 || o + l + 1u > DNS_NAME_MAX)
			return -EBADMSG;
		out->wire[o++] = l;
		memcpy(out->wire + o, msg + pos + 1, l);
		o += l;
		pos += l + 1u;
		if (!l)
			break;
	}
	if (!end)
		end = pos;
	out->len = (uint8_t)o;
	size_t used = end - (size_t)(c->p - msg);
	cur_skip(c, used);
	return c->err ? -EBADMSG : 0;
}

/* ---- reading ---- */

int dns_reader_init(struct dns_reader *r, const uint8_t *msg, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->msg = msg;
	r->len = len;
	r->c = cur_make(msg, len);
	r->hdr.id = cur_u16(&r->c);
	r->hdr.flags = cur_u16(&r->c);
	r->hdr.qdcount = cur_u16(&r->c);
	r->hdr.ancount = cur_u16(&r->c);
	r->hdr.nscount = cur_u16(&r->c);
	r->hdr.arcount = cur_u16(&r->c);
	r->left[DNS_S_QUESTION] = r->hdr.qdcount;
	r->left[DNS_S_ANSWER] = r->hdr.ancount;
	r->left[DNS_S_AUTHORITY] = r->hdr.nscount;
	r->left[DNS_S_ADDITIONAL] = r->hdr.arcount;
	return r->c.err ? -EBADMSG : 0;
}

int dns_reader_question(struct dns_reader *r, struct dns_question *q)
{
	if (!r->left[DNS_S_QUESTION])
		return -ENOENT;
	if (dns_name_read(r->msg, r->len, &r->c, &q->name))
		return -EBADMSG;
	q->type = cur_u16(&r->c);
	q->class = cur_u16(&r->c);
	if (r->c.err)
		return -EBADMSG;
	r->left[DNS_S_QUESTION]--;
	return 0;
}

int dns_reader_rr(struct dns_reader *r, struct dns_rr *rr)
{
	struct dns_question q;
	while (r->left[DNS_S_QUESTION]) {
		int e = dns_reader_question(r, &q);
		if (e)
			return e;
	}
	enum dns_section s = DNS_S_ANSWER;
	while (s <= DNS_S_ADDITIONAL && !r->left[s])
		s++;
	if (s > DNS_S_ADDITIONAL)
		return -ENOENT;
	if (dns_name_read(r->msg, r->len, &r->c, &rr->name))
		return -EBADMSG;
	rr->type = cur_u16(&r->c);
	rr->class = cur_u16(&r->c);
	rr->ttl = cur_u32(&r->c);
	rr->rdlen = cur_u16(&r->c);
	rr->rdoff = r->len - r->c.left;
	rr->rdata = cur_ptr(&r->c, rr->rdlen);
	rr->section = s;
	if (r->c.err)
		return -EBADMSG;
	r->left[s]--;
	return 0;
}

size_t dns_reader_trailing(const struct dns_reader *r)
{
	return r->c.left;
}

/* A cursor over a record's rdata that still lets names point back into the message. */
static struct cur rdata_cur(const struct dns_rr *rr)
{
	return cur_make(rr->rdata, rr->rdlen);
}

int dns_rdata_name(const uint8_t *msg, size_t len, const struct dns_rr *rr, struct dns_name *out)
{
	struct cur c = rdata_cur(rr);
	/* dns_name_read checks against the whole message; the rdata cursor then checks the
	 * name did not run past the rdata. */
	if (dns_name_read(msg, len, &c, out) || c.left)
		return -EBADMSG;
	return 0;
}

int dns_rdata_soa(const uint8_t *msg, size_t len, const struct dns_rr *rr, struct dns_soa *soa)
{
	struct cur c = rdata_cur(rr);
	if (dns_name_read(msg, len, &c, &soa->mname) || dns_name_read(msg, len, &c, &soa->rname))
		return -EBADMSG;
	soa->serial = cur_u32(&c);
	soa->refresh = cur_u32(&c);
	soa->retry = cur_u32(&c);
	soa->expire = cur_u32(&c);
	soa->minimum = cur_u32(&c);
	return c.err || c.left ? -EBADMSG : 0;
}

int dns_rdata_txt(const struct dns_rr *rr, char *out, size_t cap, size_t *outlen)
{
	struct cur c = rdata_cur(rr);
	size_t o = 0;
	int n = 0;
	if (!rr->rdlen)
		return -EBADMSG; /* TXT holds at least one character-string */
	while (c.left) {
		uint8_t l = cur_u8(&c);
		const uint8_t *s = cur_ptr(&c, l);
		if (c.err)
			return -EBADMSG;
		size_t k = cap && o < cap - 1 ? cap - 1 - o : 0;
		if (k > l)
			k = l;
		if (k)
			memcpy(out + o, s, k);
		o += k;
		n++;
	}
	if (cap)
		out[o] = '\0';
	if (outlen)
		*outlen = o;
	return n;
}

int dns_edns_parse(const struct dns_rr *rr, struct dns_edns *e)
{
	memset(e, 0, sizeof(*e));
	if (rr->type != DNS_T_OPT || rr->name.len != 1)
		return -EBADMSG;
	e->present = true;
	e->udp_size = rr->class;
	e->ext_rcode = (uint8_t)(rr->ttl >> 24);
	e->version = (uint8_t)(rr->ttl >> 16);
	e->do_bit = rr->ttl & EDNS_DO;
	struct cur c = rdata_cur(rr);
	for (unsigned guard = 0; c.left && guard < 65535; guard++) {
		uint16_t code = cur_u16(&c), olen = cur_u16(&c);
		struct cur o = cur_make(cur_ptr(&c, olen), olen);
		if (c.err)
			return -EBADMSG;
		if (code != EDNS_OPT_ECS)
			continue;
		if (e->has_ecs)
			return -EBADMSG; /* one ECS option per message */
		struct dns_ecs *x = &e->ecs;
		memset(x, 0, sizeof(*x));
		x->family = cur_u16(&o);
		x->source = cur_u8(&o);
		x->scope = cur_u8(&o);
		if (o.err)
			return -EBADMSG;
		unsigned bits = x->family == 1 ? 32 : x->family == 2 ? 128 : 0;
		if (!bits || x->source > bits || x->scope > bits)
			return -EBADMSG;
		/* RFC 7871 6: exactly ceil(SOURCE/8) octets, no bits past SOURCE. */
		if (o.left != (x->source + 7u) / 8u)
			return -EBADMSG;
		cur_bytes(&o, x->addr, o.left);
		uint8_t m[16];
		memcpy(m, x->addr, 16);
		for (unsigned b = x->source; b < 128; b++)
			m[b / 8] &= (uint8_t) ~(1u << (7 - b % 8));
		if (memcmp(m, x->addr, 16))
			return -EBADMSG;
		e->has_ecs = true;
	}
	return c.err ? -EBADMSG : 0;
}

int dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *q)
{
	struct dns_reader r;
	struct dns_rr rr;
	memset(q, 0, sizeof(*q));
	if (dns_reader_init(&r, msg, len))
		return -EBADMSG;
	q->hdr = r.hdr;
	if (r.hdr.flags & DNS_F_QR)
		return -EBADMSG; /* a response: never answer it */
	if (r.hdr.qdcount != 1)
		return DNS_R_FORMERR;
	if (dns_reader_question(&r, &q->q)) {
		q->q.name.len = 0;
		return DNS_R_FORMERR;
	}
	for (;;) {
		int e = dns_reader_rr(&r, &rr);
		if (e == -ENOENT)
			break;
		if (e)
			return DNS_R_FORMERR;
		if (rr.type != DNS_T_OPT)
			continue;
		if (rr.section != DNS_S_ADDITIONAL || q->edns.present)
			return DNS_R_FORMERR; /* RFC 6891 6.1.1 */
		if (dns_edns_parse(&rr, &q->edns)) {
			q->edns.present = true; /* answer FORMERR with an OPT */
			return DNS_R_FORMERR;
		}
	}
	return dns_reader_trailing(&r) ? DNS_R_FORMERR : 0;
}

/* ---- writing ---- */

void dns_writer_init(struct dns_writer *dw, uint8_t *buf, size_t cap, uint16_t id, uint16_t flags)
{
	memset(dw, 0, sizeof(*dw));
	dw->w = wcur_make(buf, cap);
	wcur_u16(&dw->w, id);
	wcur_u16(&dw->w, flags);
	for (int i = 0; i < 4; i++)
		wcur_u16(&dw->w, 0);
}

void dns_writer_attach(struct dns_writer *dw, uint8_t *buf, size_t cap, size_t len)
{
	memset(dw, 0, sizeof(*dw));
	dw->w = wcur_make(buf, cap);
	if (len < DNS_HDR_LEN || len > cap) {
		dw->w.err = -EMSGSIZE;
		return;
	}
	dw->w.len = len;
	for (int i = 0; i < 4; i++)
		dw->counts[i] = (uint16_t)(buf[4 + 2 * i] << 8 | buf[5 + 2 * i]);
	/* Every label suffix of the question's name (uncompressed at offset 12 in a query)
	 * can be pointed to. */
	size_t at = DNS_HDR_LEN;
	while (dw->counts[DNS_S_QUESTION] && at < len && buf[at] && buf[at] <= DNS_LABEL_MAX &&
	       dw->ncomp < DNS_COMP_MAX) {
		dw->comp[dw->ncomp++] = (uint16_t)at;
		at += buf[at] + 1u;
	}
}

void dns_writer_set_flags(struct dns_writer *dw, uint16_t flags)
{
	if (dw->w.len >= 4) {
		dw->w.p[2] = (uint8_t)(flags >> 8);
		dw->w.p[3] = (uint8_t)flags;
	}
}

/* True if the name stored at off in our own buffer equals wire[0..] case-insensitively. */
static bool comp_match(const struct dns_writer *dw, uint16_t off, const uint8_t *wire, size_t n)
{
	struct dns_name have;
	struct cur c = cur_make(dw->w.p + off, dw->w.len - off);
	if (dns_name_read(dw->w.p, dw->w.len, &c, &have) || have.len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(have.wire[i]) != lower(wire[i]))
			return false;
	return true;
}

void dns_writer_name(struct dns_writer *dw, const struct dns_name *n, bool compress)
{
	size_t i = 0;
	while (i < n->len && n->wire[i]) {
		if (compress) {
			for (unsigned k = 0; k < dw->ncomp; k++) {
				if (comp_match(dw, dw->comp[k], n->wire + i, n->len - i)) {
					wcur_u16(&dw->w, (uint16_t)(0xc000 | dw->comp[k]));
					return;
				}
			}
			if (dw->w.len < 0x4000 && dw->ncomp < DNS_COMP_MAX && !dw->w.err)
				dw->comp[dw->ncomp++] = (uint16_t)dw->w.len;
		}
		uint8_t l = n->wire[i];
		wcur_bytes(&dw->w, n->wire + i, l + 1u);
		i += l + 1u;
	}
	wcur_u8(&dw->w, 0);
}

void dns_writer_question(struct dns_writer *dw, const struct dns_name *n, uint16_t type,
                         uint16_t class)
{
	dns_writer_name(dw, n, true);
	wcur_u16(&dw->w, type);
	wcur_u16(&dw->w, class);
	if (!dw->w.err)
		dw->counts[DNS_S_QUESTION]++;
}

void dns_writer_rr_begin(struct dns_writer *dw, enum dns_section s, const struct dns_name *n,
                         uint16_t type, uint16_t class, uint32_t ttl)
{
	dns_writer_name(dw, n, true);
	wcur_u16(&dw->w, type);
	wcur_u16(&dw->w, class);
	wcur_u32(&dw->w, ttl);
	dw->rr_len_off = dw->w.len;
	dw->rr_section = s;
	wcur_u16(&dw->w, 0);
}

void dns_writer_rr_end(struct dns_writer *dw)
{
	if (dw->w.err)
		return;
	size_t rdlen = dw->w.len - dw->rr_len_off - 2;
	if (rdlen > 0xffff) {
		dw->w.err = -EMSGSIZE;
		return;
	}
	wcur_put_u16_at(&dw->w, dw->rr_len_off, (uint16_t)rdlen);
	dw->counts[dw->rr_section]++;
}

void dns_writer_bytes(struct dns_writer *dw, const void *p, size_t n)
{
	wcur_bytes(&dw->w, p, n);
}

void dns_writer_u8(struct dns_writer *dw, uint8_t v)
{
	wcur_u8(&dw->w, v);
}

void dns_writer_u16(struct dns_writer *dw, uint16_t v)
{
	wcur_u16(&dw->w, v);
}

void dns_writer_u32(struct dns_writer *dw, uint32_t v)
{
	wcur_u32(&dw->w, v);
}

void dns_writer_txt_rdata(struct dns_writer *dw, const char *text, size_t len)
{
	size_t off = 0;
	do {
		size_t k = len - off > 255 ? 255 : len - off;
		wcur_u8(&dw->w, (uint8_t)k);
		wcur_bytes(&dw->w, text + off, k);
		off += k;
	} while (off < len);
}

void dns_writer_soa_rdata(struct dns_writer *dw, const struct dns_soa *soa)
{
	dns_writer_name(dw, &soa->mname, true);
	dns_writer_name(dw, &soa->rname, true);
	wcur_u32(&dw->w, soa->serial);
	wcur_u32(&dw->w, soa->refresh);
	wcur_u32(&dw->w, soa->retry);
	wcur_u32(&dw->w, soa->expire);
	wcur_u32(&dw->w, soa->minimum);
}

void dns_writer_opt(struct dns_writer *dw, uint16_t udp_size, uint8_t ext_rcode, uint8_t version,
                    bool do_bit, const struct dns_ecs *ecs)
{
	static const struct dns_name root = {1, {0}};
	uint32_t ttl = (uint32_t)ext_rcode << 24 | (uint32_t)version << 16 | (do_bit ? EDNS_DO : 0);
	dns_writer_rr_begin(dw, DNS_S_ADDITIONAL, &root, DNS_T_OPT, udp_size, ttl);
	if (ecs) {
		unsigned n = (ecs->source + 7u) / 8u;
		uint8_t a[16];
		memcpy(a, ecs->addr, 16);
		for (unsigned b = ecs->source; b < 128; b++)
			a[b / 8] &= (uint8_t) ~(1u << (7 - b % 8));
		wcur_u16(&dw->w, EDNS_OPT_ECS);
		wcur_u16(&dw->w, (uint16_t)(4 + n));
		wcur_u16(&dw->w, ecs->family);
		wcur_u8(&dw->w, ecs->source);
		wcur_u8(&dw->w, ecs->scope);
		wcur_bytes(&dw->w, a, n);
	}
	dns_writer_rr_end(dw);
}

struct dns_mark dns_writer_mark(const struct dns_writer *dw)
{
	struct dns_mark m = {dw->w.len, dw->ncomp, {0}};
	memcpy(m.counts, dw->counts, sizeof(m.counts));
	return m;
}

void dns_writer_rollback(struct dns_writer *dw, const struct dns_mark *m)
{
	dw->w.len = m->len;
	dw->w.err = 0;
	dw->ncomp = m->ncomp;
	memcpy(dw->counts, m->counts, sizeof(dw->counts));
}

int dns_writer_finish(struct dns_writer *dw)
{
	if (dw->w.err)
		return dw->w.err;
	for (int i = 0; i < 4; i++)
		wcur_put_u16_at(&dw->w, 4 + 2 * (size_t)i, dw->counts[i]);
	return (int)dw->w.len;
}
