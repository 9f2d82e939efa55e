#include "answer.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "peak/siphash.h"
#include "peak/ssa.h"

static enum dq_type qtype_index(uint16_t t)
{
	switch (t) {
	case DNS_T_A:
		return DQ_A;
	case DNS_T_AAAA:
		return DQ_AAAA;
	case DNS_T_APL:
		return DQ_APL;
	case DNS_T_TXT:
		return DQ_TXT;
	case DNS_T_SOA:
		return DQ_SOA;
	case DNS_T_NS:
		return DQ_NS;
	case DNS_T_ANY:
		return DQ_ANY;
	default:
		return DQ_OTHER;
	}
}

/* Bytes the OPT record of the reply takes. */
static size_t opt_size(const struct dns_query *q)
{
	if (!q->edns.present)
		return 0;
	return 11 + (q->edns.has_ecs ? 8u + (q->edns.ecs.source + 7u) / 8u : 0);
}

/* Largest reply: 512 without EDNS, the client's buffer size (RFC 6891 6.2.5, at least 512,
 * at most what we send) with it, a whole TCP message over TCP. */
static size_t reply_limit(const struct dns_query *q, bool tcp, size_t cap)
{
	size_t lim = tcp ? DNSD_TCP_MAX : DNS_UDP_MIN;
	if (!tcp && q->edns.present && q->edns.udp_size > DNS_UDP_MIN)
		lim = q->edns.udp_size > DNSD_UDP_MAX ? DNSD_UDP_MAX : q->edns.udp_size;
	return lim < cap ? lim : cap;
}

struct reply {
	struct dns_writer w;
	struct dns_mark after_question;
	const struct dns_query *q;
	size_t limit;
	uint8_t ecs_scope;
	uint16_t rcode;
};

static void reply_start(struct reply *r, const struct dns_query *q, bool tcp, uint8_t *out,
                        size_t cap, uint16_t rcode, bool aa, bool question)
{
	uint16_t flags = DNS_F_QR | (q->hdr.flags & (0x7800 | DNS_F_RD | DNS_F_CD)) | (rcode & 0xf);
	if (aa)
		flags |= DNS_F_AA;
	r->q = q;
	r->limit = reply_limit(q, tcp, cap);
	r->rcode = rcode;
	r->ecs_scope = 0;
	/* Room for the OPT record is kept back so that truncation never drops it. */
	dns_writer_init(&r->w, out, r->limit - opt_size(q), q->hdr.id, flags);
	if (question && q->q.name.len)
		dns_writer_question(&r->w, &q->q.name, q->q.type, q->q.class);
	r->after_question = dns_writer_mark(&r->w);
}

/* Adds a pre-encoded tail (the sections after the question). */
static void reply_tail(struct reply *r, const struct dns_state *st, const struct dz_tail *t)
{
	dns_writer_bytes(&r->w, st->arena + t->off, t->len);
	r->w.counts[DNS_S_ANSWER] = (uint16_t)(r->w.counts[DNS_S_ANSWER] + t->an);
	r->w.counts[DNS_S_AUTHORITY] = (uint16_t)(r->w.counts[DNS_S_AUTHORITY] + t->ns);
	r->w.counts[DNS_S_ADDITIONAL] = (uint16_t)(r->w.counts[DNS_S_ADDITIONAL] + t->ar);
}

static size_t reply_finish(struct reply *r, struct dnsd_ctx *cx)
{
	uint8_t *buf = r->w.w.p;
	if (r->w.w.err) {
		/* Over the limit: only the question, with TC (RFC 2181 9). */
		dns_writer_rollback(&r->w, &r->after_question);
		uint16_t flags = (uint16_t)(buf[2] << 8 | buf[3]) | DNS_F_TC;
		dns_writer_set_flags(&r->w, flags);
		DNSD_INC(cx->stats->truncated);
	}
	if (r->q->edns.present) {
		struct dns_ecs ecs = r->q->edns.ecs;
		ecs.scope = r->ecs_scope;
		r->w.w.cap = r->limit; /* the kept-back room */
		dns_writer_opt(&r->w, DNSD_UDP_MAX, (uint8_t)(r->rcode >> 4), 0, r->q->edns.do_bit,
		               r->q->edns.has_ecs ? &ecs : NULL);
	}
	int len = dns_writer_finish(&r->w);
	unsigned rc = r->rcode == DNS_R_BADVERS ? DR_BADVERS : r->rcode < DR_BADVERS ? r->rcode : 0;
	DNSD_INC(cx->stats->rcode[rc]);
	return len > 0 ? (size_t)len : 0;
}

/* The client's /64 as the service will see it: Client Subnet when it carries an IPv6
 * prefix, else the transport source. Sets *scope to the ECS scope the answer has. */
static void client_c64(const struct dns_query *q, const struct dnsd_client *cl, bool binds,
                       uint8_t c[16], uint8_t *scope)
{
	memset(c, 0, 16);
	*scope = 0;
	if (q->edns.has_ecs && q->edns.ecs.family == 2 && q->edns.ecs.source > 0) {
		memcpy(c, q->edns.ecs.addr, 8);
		*scope = binds ? 64 : 0;
		return;
	}
	if (cl->v6)
		memcpy(c, cl->addr, 16);
}

/* ---- proof of work: a bounded search, and a cache per worker ---- */

struct dnsd_pow_entry {
	uint64_t serial; /* of the state the address was made in; 0: empty */
	uint64_t epoch;  /* for hop rules, else 0 */
	uint32_t svc;
	uint32_t slot; /* fanout index, or 256 + endpoint for rules that draw endpoints */
	uint8_t src[16];
	uint8_t addr[16];
};

int dnsd_ctx_pow_init(struct dnsd_ctx *cx)
{
	if (getrandom(cx->pow_key, sizeof(cx->pow_key), 0) != (ssize_t)sizeof(cx->pow_key))
		memcpy(cx->pow_key, &cx->rng, sizeof(cx->rng));
	cx->pow_cache = calloc(DNSD_POW_CACHE, sizeof(*cx->pow_cache));
	return cx->pow_cache ? 0 : -ENOMEM;
}

void dnsd_ctx_fini(struct dnsd_ctx *cx)
{
	free(cx->pow_cache);
	cx->pow_cache = NULL;
}

static struct dnsd_pow_entry *pow_slot(struct dnsd_ctx *cx, const struct dnsd_pow_entry *k)
{
	uint64_t h = siphash24(cx->pow_key, k, offsetof(struct dnsd_pow_entry, addr));
	return &cx->pow_cache[h & (DNSD_POW_CACHE - 1)];
}

/* Looks the key up; on a hit copies the address into out. */
static bool pow_cache_get(struct dnsd_ctx *cx, const struct dnsd_pow_entry *k, uint8_t out[16])
{
	if (!cx->pow_cache)
		return false;
	const struct dnsd_pow_entry *e = pow_slot(cx, k);
	if (memcmp(e, k, offsetof(struct dnsd_pow_entry, addr)))
		return false;
	memcpy(out, e->addr, 16);
	return true;
}

static void pow_cache_put(struct dnsd_ctx *cx, const struct dnsd_pow_entry *k,
                          const uint8_t addr[16])
{
	if (!cx->pow_cache)
		return;
	struct dnsd_pow_entry *e = pow_slot(cx, k);
	memcpy(e, k, offsetof(struct dnsd_pow_entry, addr));
	memcpy(e->addr, addr, 16);
}

/* Searches the nonce field of addr (zero on entry) counting up from 0, as ssa_compute does,
 * so the answer is the address 'peak ssa compute' gives: the first nonce with
 * H64(K, 0x04, src128 || dst128) starting with pow zero bits (SPEC.md section 6). Spends
 * at most DNSD_POW_MAX_TRIES hashes and what is left of the worker's budget this second.
 * Returns true with the nonce in addr, false if it was not found within that. */
static bool pow_search(const struct ssa_space *sp, struct dnsd_ctx *cx, const uint8_t src[16],
                       uint8_t addr[16])
{
	unsigned w = sp->w, d = sp->d.pow;
	uint64_t nmax = w >= 64 ? UINT64_MAX : (1ULL << w) - 1; /* the nonce field's mask too */
	uint8_t m[33];
	struct siphash_state pre, st;
	uint64_t lo = 0, tries = 0;
	bool found = false;

	if (cx->now != cx->pow_sec) {
		cx->pow_sec = cx->now;
		cx->pow_left = DNSD_POW_BUDGET;
	}
	uint64_t limit = cx->pow_left < DNSD_POW_MAX_TRIES ? cx->pow_left : DNSD_POW_MAX_TRIES;
	m[0] = 0x04;
	memcpy(m + 1, src, 16);
	memcpy(m + 17, addr, 16);
	for (int i = 0; i < 8; i++)
		lo = lo << 8 | m[25 + i];
	/* The nonce (at most 64 bits) lies in the last 8 bytes of dst (m[25..32]): the first
	 * 24 bytes are hashed once, the 9 after them for each try. */
	siphash_init(&pre, sp->d.key);
	siphash_update(&pre, m, 24);
	for (uint64_t nonce = 0; tries < limit; nonce++) {
		uint64_t v = (lo & ~nmax) | nonce;
		uint8_t tail[9];
		tail[0] = m[24];
		for (int i = 0; i < 8; i++)
			tail[1 + i] = (uint8_t)(v >> (56 - 8 * i));
		st = pre;
		siphash_update(&st, tail, 9);
		uint64_t h = siphash_final(&st);
		tries++;
		if (d >= 64 ? h == 0 : (h >> (64 - d)) == 0) {
			for (int i = 0; i < 8; i++)
				addr[8 + i] = tail[1 + i];
			found = true;
			break;
		}
		if (nonce == nmax)
			break;
	}
	cx->pow_left -= tries;
	DNSD_ADD(cx->stats->pow_hashes, tries);
	return found;
}

/* Finishes addr (nonce field zero) for the proof of work, from the cache or by a search,
 * and caches what a search found. Returns false if the address could not be had (no nonce
 * within the cap or the budget). */
static bool pow_finish(const struct dz_svc *v, struct dnsd_ctx *cx,
                       const struct dnsd_pow_entry *key, uint8_t addr[16])
{
	if (pow_cache_get(cx, key, addr)) {
		DNSD_INC(cx->stats->pow[DP_CACHED]);
		return true;
	}
	if (!pow_search(&v->space, cx, key->src, addr)) {
		DNSD_INC(cx->stats->pow[DP_REFUSED]);
		return false;
	}
	DNSD_INC(cx->stats->pow[DP_SEARCHED]);
	pow_cache_put(cx, key, addr);
	return true;
}

/* Steered AAAA answers (one per distinct endpoint): for rules that fix the slice, the rule's
 * address for each fanout index; otherwise endpoints drawn by weight (as many as there are
 * candidates, up to max), a random slice of each, host bits by the rule. With pow, each address's
 * nonce comes from pow_finish. Returns how many addresses were written; *refused tells whether some
 * were left out for the budget. */
static unsigned steer(const struct dns_state *st, const struct dz_svc *v, struct dnsd_ctx *cx,
                      const uint8_t c[16], uint8_t out[][16], unsigned max, bool *refused)
{
	struct ssa_req r = {.src = c, .time = cx->now, .secret = v->has_secret ? v->secret : NULL};
	const struct ssa_space *sp = &v->space_nopow;
	bool pow = v->space.w > 0;
	struct dnsd_pow_entry key;
	unsigned n = 0;
	int chosen[DNSD_ANSWER_MAX];
	*refused = false;
	if (!v->nslices || !v->ncand)
		return 0;
	if (max > DNSD_ANSWER_MAX)
		max = DNSD_ANSWER_MAX;
	if (pow) {
		memset(&key, 0, sizeof(key));
		key.serial = st->serial;
		key.svc = v->index;
		key.epoch = v->space.d.select == SSA_HOP || v->space.d.host == SSA_HOP
		                ? cx->now / v->space.d.period
		                : 0;
		memcpy(key.src, c, 16);
	}
	if (v->slice_by_rule) {
		unsigned k = max < v->space.d.fanout ? max : v->space.d.fanout;
		for (unsigned i = 0; i < k; i++) {
			r.index = (uint8_t)i;
			r.rand[1] = dnsd_rand(cx);
			r.rand[2] = dnsd_rand(cx);
			if (ssa_compute(sp, &r, out[n]))
				continue;
			if (pow) {
				key.slot = i;
				if (!pow_finish(v, cx, &key, out[n])) {
					*refused = true; /* one failed search per query at most */
					break;
				}
			}
			int64_t g = ssa_slice_of(sp, out[n]);
			int32_t owner = g >= 0 ? dz_svc_owner(v, (uint32_t)g) : -1;
			if (owner >= 0)
				DNSD_INC(*steer_cell(cx->worker, v->counter[owner]));
			n++;
		}
		return n;
	}
	uint64_t total = v->cand_cum[v->ncand - 1];
	/* Draws by weight, then (past the draws) the candidates not drawn, in order: with two
	 * endpoints and two answers the draws alone left one out of 128 answers with one
	 * address, and a legacy client with no second address to fail over to. */
	for (unsigned attempt = 0; n < max && attempt < 4 * max + v->ncand; attempt++) {
		unsigned lo = 0, hi = v->ncand - 1;
		if (attempt >= 4 * max) {
			lo = attempt - 4 * max;
		} else {
			uint64_t x = dnsd_rand(cx) % total;
			while (lo < hi) { /* first cumulative weight above x */
				unsigned mid = (lo + hi) / 2;
				if (v->cand_cum[mid] > x)
					hi = mid;
				else
					lo = mid + 1;
			}
		}
		int e = (int)v->cand_ep[lo];
		bool dup = false;
		for (unsigned k = 0; k < n; k++)
			dup |= chosen[k] == e;
		if (dup)
			continue;
		uint32_t g = dz_svc_nth_slice(v, (unsigned)e, dnsd_rand(cx) % v->ep_nslice[e]);
		r.index = (uint8_t)(v->space.d.fanout > 1 ? dnsd_rand(cx) % v->space.d.fanout : 0);
		r.rand[1] = dnsd_rand(cx);
		r.rand[2] = dnsd_rand(cx);
		if (ssa_compute_slice(sp, &r, g, out[n]))
			continue;
		if (pow) {
			/* One address per endpoint and client: a cached one stays valid as long
			 * as the state (and so the endpoint's slices) does. */
			key.slot = 256u + (uint32_t)e;
			if (!pow_finish(v, cx, &key, out[n])) {
				*refused = true; /* one failed search per query at most */
				break;
			}
		}
		DNSD_INC(*steer_cell(cx->worker, v->counter[e]));
		chosen[n++] = e;
	}
	return n;
}

size_t dnsd_answer(const struct dns_state *st, struct dnsd_ctx *cx, const uint8_t *qbuf,
                   size_t qlen, const struct dnsd_client *cl, bool tcp, uint8_t *out, size_t cap)
{
	struct dns_query q;
	struct reply r;
	int pr = dns_query_parse(qbuf, qlen, &q);

	if (tcp)
		DNSD_INC(cx->stats->tcp);
	else
		DNSD_INC(cx->stats->udp);
	if (pr < 0 || cap < DNS_UDP_MIN) {
		DNSD_INC(cx->stats->dropped);
		return 0; /* not a query: never answer it */
	}
	if (q.edns.has_ecs)
		DNSD_INC(cx->stats->ecs);
	if (pr == DNS_R_FORMERR) {
		/* The question is echoed only when it parsed; the OPT only if well formed. */
		struct dns_query fq = q;
		if (fq.edns.present && (fq.edns.version || fq.edns.has_ecs))
			fq.edns.has_ecs = false;
		reply_start(&r, &fq, tcp, out, cap, DNS_R_FORMERR, false,
		            fq.hdr.qdcount == 1 && fq.q.name.len);
		return reply_finish(&r, cx);
	}
	DNSD_INC(cx->stats->qtype[qtype_index(q.q.type)]);
	if (dns_opcode(q.hdr.flags) != 0) {
		reply_start(&r, &q, tcp, out, cap, DNS_R_NOTIMP, false, true);
		return reply_finish(&r, cx);
	}
	if (q.edns.present && q.edns.version > 0) {
		/* RFC 6891 6.1.3: BADVERS, and our version (0) in the OPT. */
		reply_start(&r, &q, tcp, out, cap, DNS_R_BADVERS, false, true);
		return reply_finish(&r, cx);
	}
	struct dns_name lname = q.q.name;
	for (unsigned i = 0; i < lname.len; i++)
		if (lname.wire[i] >= 'A' && lname.wire[i] <= 'Z')
			lname.wire[i] = (uint8_t)(lname.wire[i] + 32);
	if ((q.q.class != DNS_C_IN && q.q.class != DNS_C_ANY) ||
	    !dns_name_under(&lname, &st->zone) || q.q.type == 251 || q.q.type == 252) {
		/* Outside our zone, another class, or a zone transfer (not offered). */
		reply_start(&r, &q, tcp, out, cap, DNS_R_REFUSED, false, true);
		return reply_finish(&r, cx);
	}
	const struct dz_node *nd = dns_state_lookup(st, &lname);
	if (!nd) {
		reply_start(&r, &q, tcp, out, cap, DNS_R_NXDOMAIN, true, true);
		/* The apex's SOA, written afresh: the qname differs from every node's. */
		dns_writer_rr_begin(&r.w, DNS_S_AUTHORITY, &st->zone, DNS_T_SOA, DNS_C_IN,
		                    st->neg_ttl);
		dns_writer_soa_rdata(&r.w, &st->cfg->soa);
		dns_writer_rr_end(&r.w);
		return reply_finish(&r, cx);
	}
	reply_start(&r, &q, tcp, out, cap, DNS_R_NOERROR, true, true);
	const struct dz_tail *t = NULL;
	switch (q.q.type) {
	case DNS_T_SOA:
		t = &nd->tail[DZ_SOA];
		break;
	case DNS_T_NS:
		t = &nd->tail[DZ_NS];
		break;
	case DNS_T_APL:
		t = &nd->tail[DZ_APL];
		break;
	case DNS_T_TXT:
		t = &nd->tail[DZ_TXT];
		break;
	case DNS_T_ANY:
		t = &nd->tail[DZ_ANY];
		break;
	case DNS_T_AAAA:
		if (nd->svc >= 0) {
			const struct dz_svc *v = st->svc[nd->svc];
			uint8_t c[16], addrs[DNSD_ANSWER_MAX][16];
			bool refused;
			client_c64(&q, cl, v->binds_src, c, &r.ecs_scope);
			unsigned n = steer(st, v, cx, c, addrs, v->answers, &refused);
			if (!n && refused) {
				/* Over the proof-of-work budget: try again later (RFC 2308 7.1
				 * lets resolvers cache this only briefly). */
				reply_start(&r, &q, tcp, out, cap, DNS_R_SERVFAIL, false, true);
				return reply_finish(&r, cx);
			}
			for (unsigned i = 0; i < n; i++) {
				dns_writer_rr_begin(&r.w, DNS_S_ANSWER, &q.q.name, DNS_T_AAAA,
				                    DNS_C_IN, v->ttl);
				dns_writer_bytes(&r.w, addrs[i], 16);
				dns_writer_rr_end(&r.w);
			}
			if (n)
				return reply_finish(&r, cx);
		}
		t = &nd->tail[DZ_AAAA];
		break;
	}
	if (!t || !t->present)
		t = &nd->tail[DZ_NODATA];
	reply_tail(&r, st, t);
	return reply_finish(&r, cx);
}
