#include <errno.h>
#include <string.h>

#include "client.h"
#include "peak/cur.h"
#include "peak/siphash.h"

/* Items in APL rdata (RFC 3123 4: 4-byte header, then AFDLENGTH bytes), or -1 if it does
 * not parse; at most APL_MAX_ITEMS. Counts what apl_parse would refuse as too many. */
static int apl_count(const uint8_t *rd, size_t len)
{
	struct cur c = cur_make(rd, len);
	int n = 0;
	while (c.left && n < APL_MAX_ITEMS) {
		cur_skip(&c, 3);
		cur_skip(&c, cur_u8(&c) & 0x7f);
		n++;
	}
	return c.err || c.left ? -1 : n;
}

static int bad(struct answer *a, int err, const char *why)
{
	a->why = why;
	return err;
}

int answer_parse(const uint8_t *msg, size_t len, uint16_t id, const struct dns_name *qname,
                 uint16_t qtype, struct answer *a, struct apl_item *apl, int *napl, char *txt,
                 size_t txtcap, uint8_t (*aaaa)[16], unsigned *naaaa)
{
	struct dns_reader r;
	struct dns_question q;
	struct dns_rr rr;
	bool have_txt = false, too_many = false;
	int e;

	memset(a, 0, sizeof(*a));
	if (napl)
		*napl = 0;
	if (naaaa)
		*naaaa = 0;
	if (txt && txtcap)
		txt[0] = '\0';
	if (dns_reader_init(&r, msg, len))
		return bad(a, PEAK_E_BADREPLY, "shorter than a DNS header");
	if (r.hdr.id != id || !(r.hdr.flags & DNS_F_QR) || r.hdr.qdcount != 1 ||
	    dns_reader_question(&r, &q) || !dns_name_eq(&q.name, qname) || q.type != qtype)
		return bad(a, PEAK_E_BADREPLY, "not a reply to the question asked");
	a->rcode = r.hdr.flags & 0xf;
	a->ttl = UINT32_MAX;
	while ((e = dns_reader_rr(&r, &rr)) == 0) {
		if (rr.section == DNS_S_AUTHORITY && rr.type == DNS_T_SOA && !a->nrr) {
			struct dns_soa soa;
			if (dns_rdata_soa(msg, len, &rr, &soa))
				return bad(a, PEAK_E_BADREPLY,
				           "malformed SOA record in the authority section");
			uint32_t neg = soa.minimum < rr.ttl ? soa.minimum : rr.ttl; /* RFC 2308 */
			if (neg < a->ttl)
				a->ttl = neg;
			continue;
		}
		if (rr.section != DNS_S_ANSWER || rr.type != qtype || !dns_name_eq(&rr.name, qname))
			continue;
		if (rr.ttl < a->ttl || !a->nrr)
			a->ttl = rr.ttl;
		a->nrr++;
		if (qtype == DNS_T_APL) {
			int k = apl_count(rr.rdata, rr.rdlen);
			if (k < 0)
				return bad(a, PEAK_E_BADREPLY, "malformed record");
			a->apl_items += (unsigned)k;
			if (a->apl_items > CLIENT_MAX_APL)
				too_many = true; /* count on, to say how many */
			if (!apl || !napl || too_many)
				continue;
			k = apl_parse(rr.rdata, rr.rdlen, apl + *napl,
			              (size_t)(CLIENT_MAX_APL - *napl));
			if (k < 0)
				return bad(a, PEAK_E_BADREPLY, "malformed record");
			*napl += k;
		} else if (qtype == DNS_T_TXT && txt && !have_txt) {
			int ns = dns_rdata_txt(&rr, txt, txtcap, NULL);
			if (ns < 0)
				return bad(a, PEAK_E_BADREPLY, "malformed record");
			/* the joined strings: rdata less one length byte per string */
			a->txt_len = rr.rdlen - (size_t)ns;
			if (a->txt_len >= txtcap)
				return bad(a, PEAK_E_DESC, "the descriptor is too long");
			have_txt = true;
		} else if (qtype == DNS_T_AAAA && aaaa && naaaa) {
			if (rr.rdlen != 16)
				return bad(a, PEAK_E_BADREPLY, "an AAAA record not of 16 bytes");
			if (*naaaa < PEAK_MAX_CANDIDATES)
				memcpy(aaaa[(*naaaa)++], rr.rdata, 16);
		}
	}
	if (e != -ENOENT)
		return bad(a, PEAK_E_BADREPLY, "a record runs past the end of the message");
	if (too_many)
		return bad(a, PEAK_E_APL, "more APL items than a service has prefixes");
	if (a->ttl == UINT32_MAX)
		a->ttl = 30; /* a negative answer without SOA: cache briefly */
	return 0;
}

int ssa_prefixes_from_apl(const struct apl_item *items, int n, struct prefix *pfx)
{
	if (n <= 0 || n > CLIENT_MAX_APL)
		return PEAK_E_APL;
	for (int i = 0; i < n; i++) {
		if (items[i].negate || items[i].family != PEAK_AFI_IP6 ||
		    apl_item_to_prefix(&items[i], &pfx[i]) || items[i].prefix != items[0].prefix)
			return PEAK_E_APL;
	}
	return n;
}

static void set_sa(struct sockaddr_in6 *sa, const uint8_t a[16], uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin6_family = AF_INET6;
	sa->sin6_port = htons(port);
	memcpy(&sa->sin6_addr, a, 16);
}

static bool seen(const struct peak_result *out, const uint8_t a[16])
{
	for (unsigned i = 0; i < out->n; i++)
		if (!memcmp(&out->cand[i].dst.sin6_addr, a, 16))
			return true;
	return false;
}

/* The cache key of a proof-of-work address: a hash of everything it depends on. */
static uint64_t pow_key(const struct cand_req *q, const struct ssa_req *r)
{
	static const uint8_t k[16] = {'p', 'e', 'a', 'k', '-', 'p', 'o', 'w'};
	const struct ssa_space *sp = q->sp;
	bool hop = sp->d.select == SSA_HOP || sp->d.host == SSA_HOP;
	uint64_t e = hop ? r->time / sp->d.period : 0;
	struct siphash_state st;
	siphash_init(&st, k);
	siphash_update(&st, sp->pfx, sp->n * sizeof(sp->pfx[0]));
	const struct ssa_desc *d = &sp->d;
	uint8_t f[8] = {d->slice, d->select, d->host, d->fanout, d->pow, d->nonce, d->skew};
	uint32_t period = d->period;
	siphash_update(&st, f, sizeof(f));
	siphash_update(&st, &period, sizeof(period));
	siphash_update(&st, d->key, sizeof(d->key));
	siphash_update(&st, r->src, 16);
	siphash_update(&st, &r->index, 1);
	siphash_update(&st, &r->replica, 1);
	siphash_update(&st, &e, sizeof(e));
	if (r->object)
		siphash_update(&st, r->object, r->object_len);
	return siphash_final(&st);
}

static int compute(const struct cand_req *q, struct ssa_req *r, uint8_t a[16])
{
	struct pow_cache *pc = q->sp->w ? q->pow : NULL;
	uint64_t key = pc ? pow_key(q, r) : 0;
	for (unsigned i = 0; pc && i < POW_CACHE_N; i++)
		if (pc->used[i] && pc->key[i] == key) {
			memcpy(a, pc->addr[i], 16);
			pc->hits++;
			return 0;
		}
	int e = ssa_compute(q->sp, r, a);
	if (e == -EAGAIN)
		return PEAK_E_POW;
	if (e == -ETIMEDOUT)
		return PEAK_E_POW_TIME;
	if (e)
		return e == -EINVAL ? PEAK_E_DESC : e;
	if (pc) {
		pc->misses++;
		pc->key[pc->next] = key;
		memcpy(pc->addr[pc->next], a, 16);
		pc->used[pc->next] = true;
		pc->next = (pc->next + 1) % POW_CACHE_N;
	}
	return 0;
}

static int add(const struct cand_req *q, struct peak_result *out, struct ssa_req *r,
               enum peak_origin origin)
{
	uint8_t a[16];
	int e = compute(q, r, a);
	if (e)
		return e;
	if (seen(out, a) || out->n == PEAK_MAX_CANDIDATES)
		return 0;
	struct peak_candidate *c = &out->cand[out->n++];
	set_sa(&c->dst, a, q->port);
	set_sa(&c->src, q->src, 0);
	c->origin = origin;
	c->index = r->index;
	c->replica = r->replica;
	return 0;
}

/* A small deterministic generator for rand rules' draws. */
static uint64_t next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ULL;
	uint64_t z = *s;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int candidates_compute(const struct cand_req *q, struct peak_result *out)
{
	const struct ssa_desc *d = &q->sp->d;
	uint64_t s = q->rnd;
	int e;
	out->n = 0;
	out->ssa = true;
	if ((d->select == SSA_HOP || d->host == SSA_HOP) && !q->secret)
		return PEAK_E_SECRET;
	if (d->select == SSA_OBJ && !q->object)
		return PEAK_E_OBJECT;
	struct ssa_req r = {
	    .src = q->src,
	    .object = (const uint8_t *)q->object,
	    .object_len = q->object ? strlen(q->object) : 0,
	    .time = q->now,
	    .secret = q->secret,
	    .pow_stop = q->stop,
	    .pow_arg = q->stop_arg,
	};
	unsigned rounds = d->select == SSA_OBJ                           ? 1 + q->replicas
	                  : d->select == SSA_RAND || d->host == SSA_RAND ? 3
	                                                                 : 1;
	for (unsigned k = 0; k < rounds; k++) {
		for (unsigned i = 0; i < d->fanout && out->n < PEAK_MAX_CANDIDATES; i++) {
			r.index = (uint8_t)i;
			r.replica = d->select == SSA_OBJ ? (uint8_t)k : 0;
			r.rand[0] = next(&s);
			r.rand[1] = next(&s);
			r.rand[2] = next(&s);
			enum peak_origin o = !k && !i               ? PEAK_ORIGIN_RULE
			                     : !k                   ? PEAK_ORIGIN_FANOUT
			                     : d->select == SSA_OBJ ? PEAK_ORIGIN_REPLICA
			                                            : PEAK_ORIGIN_RANDOM;
			if ((e = add(q, out, &r, o)))
				return e == PEAK_E_POW_TIME && out->n ? 0 : e;
		}
	}
	return 0;
}

void candidates_from_aaaa(const uint8_t (*aaaa)[16], unsigned n, uint16_t port,
                          struct peak_result *out)
{
	static const uint8_t any[16];
	out->n = 0;
	out->ssa = false;
	out->descriptor[0] = '\0';
	for (unsigned i = 0; i < n && out->n < PEAK_MAX_CANDIDATES; i++) {
		struct peak_candidate *c = &out->cand[out->n++];
		set_sa(&c->dst, aaaa[i], port);
		set_sa(&c->src, any, 0);
		c->origin = PEAK_ORIGIN_AAAA;
		c->index = c->replica = 0;
	}
}
