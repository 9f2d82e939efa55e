#include "dhtrec.h"

#include <errno.h>
#include <string.h>

#include <nettle/eddsa.h>
#include <nettle/hmac.h>

static const char cert_ctx[] = "peak-ov-cert-v1";
static const uint8_t magic[4] = {'P', 'K', 'O', '1'};
static const char key_ctx[8] = {'p', 'e', 'a', 'k', '-', 'o', 'v', '1'};

void dhr_sign_key(const uint8_t priv[static 32], uint8_t seed[static 32], uint8_t pub[static 32])
{
	static const char label[] = "peak-overlay-sign-v1";
	struct hmac_sha256_ctx h;
	hmac_sha256_set_key(&h, 32, priv);
	hmac_sha256_update(&h, sizeof(label) - 1, (const uint8_t *)label);
	hmac_sha256_digest(&h, 32, seed);
	memset(&h, 0, sizeof(h));
	ed25519_sha512_public_key(pub, seed);
}

void dhr_ed_pub(const uint8_t seed[static 32], uint8_t pub[static 32])
{
	ed25519_sha512_public_key(pub, seed);
}

/* The bytes the authority signs (at most 15 + 64 + 1 + 17 * 16). */
static size_t cert_msg(const struct dhr_cert *c, uint8_t *out)
{
	size_t n = 0;
	memcpy(out, cert_ctx, sizeof(cert_ctx) - 1);
	n += sizeof(cert_ctx) - 1;
	memcpy(out + n, c->x_pub, 32);
	memcpy(out + n + 32, c->ed_pub, 32);
	n += 64;
	out[n++] = c->nprefixes;
	for (unsigned i = 0; i < c->nprefixes && i < DHR_MAX_PREFIXES; i++) {
		out[n++] = c->prefixes[i].len;
		memcpy(out + n, c->prefixes[i].addr, 16);
		n += 16;
	}
	return n;
}

void dhr_cert_sign(struct dhr_cert *c, const uint8_t auth_seed[static 32])
{
	uint8_t msg[16 + 64 + 1 + 17 * DHR_MAX_PREFIXES], pub[32];
	ed25519_sha512_public_key(pub, auth_seed);
	size_t n = cert_msg(c, msg);
	ed25519_sha512_sign(pub, auth_seed, n, msg, c->sig);
}

bool dhr_cert_verify(const struct dhr_cert *c, const uint8_t auth_pub[static 32])
{
	uint8_t msg[16 + 64 + 1 + 17 * DHR_MAX_PREFIXES];
	if (!c->nprefixes || c->nprefixes > DHR_MAX_PREFIXES)
		return false;
	size_t n = cert_msg(c, msg);
	return ed25519_sha512_verify(auth_pub, n, msg, c->sig) == 1;
}

static void put_prefix(struct wcur *w, const struct prefix *p)
{
	wcur_u8(w, p->len);
	wcur_bytes(w, p->addr, 16);
}

long dhr_rec_write(const struct dhr_rec *r, const uint8_t seed[static 32], uint8_t *out, size_t cap)
{
	const struct dhr_cert *c = &r->cert;
	if (!r->nloc || r->nloc > DHR_MAX_LOC || !c->nprefixes || c->nprefixes > DHR_MAX_PREFIXES ||
	    r->prefix.len > 128 || (r->flags & ~DHR_F_KNOWN) ||
	    ((r->flags & DHR_F_LEFT) && !(r->flags & DHR_F_GROUP)) ||
	    ((r->flags & DHR_F_GROUP) && r->group[0] != 0xff) ||
	    ((r->flags & DHR_F_ANYCAST) && (r->flags & (DHR_F_GROUP | DHR_F_LEFT))))
		return -EINVAL;
	struct wcur w = wcur_make(out, cap);
	wcur_bytes(&w, magic, 4);
	put_prefix(&w, &r->prefix);
	wcur_u32(&w, (uint32_t)(r->time_s >> 32));
	wcur_u32(&w, (uint32_t)r->time_s);
	wcur_bytes(&w, c->x_pub, 32);
	wcur_bytes(&w, c->ed_pub, 32);
	wcur_u8(&w, (uint8_t)(r->flags | r->nloc));
	for (unsigned i = 0; i < r->nloc; i++) {
		wcur_bytes(&w, &r->loc[i].sin_addr, 4);
		wcur_bytes(&w, &r->loc[i].sin_port, 2); /* already big-endian */
	}
	if (r->flags & DHR_F_GROUP)
		wcur_bytes(&w, r->group, 16);
	wcur_u8(&w, c->nprefixes);
	for (unsigned i = 0; i < c->nprefixes; i++)
		put_prefix(&w, &c->prefixes[i]);
	wcur_bytes(&w, c->sig, DHR_SIG_LEN);
	if (!wcur_room(&w, DHR_SIG_LEN))
		return w.err;
	ed25519_sha512_sign(c->ed_pub, seed, w.len, out, out + w.len);
	return (long)(w.len + DHR_SIG_LEN);
}

/* A prefix (length, then 16 address bytes) with the bits past its length zero. */
static void get_prefix(struct cur *c, struct prefix *p)
{
	memset(p, 0, sizeof(*p));
	p->family = PEAK_AFI_IP6;
	p->len = cur_u8(c);
	cur_bytes(c, p->addr, 16);
	if (c->err)
		return;
	uint8_t m[16];
	memcpy(m, p->addr, 16);
	if (p->len > 128) {
		c->err = -EBADMSG;
		return;
	}
	prefix_mask_bits(m, p->len);
	if (memcmp(m, p->addr, 16))
		c->err = -EBADMSG;
}

int dhr_rec_parse(struct cur *c, const uint8_t auth_pub[static 32], uint64_t now_s,
                  struct dhr_rec *r)
{
	const uint8_t *start = c->p;
	memset(r, 0, sizeof(*r));
	const uint8_t *mg = cur_ptr(c, 4);
	if (mg && memcmp(mg, magic, 4))
		return -EBADMSG;
	get_prefix(c, &r->prefix);
	r->time_s = (uint64_t)cur_u32(c) << 32;
	r->time_s |= cur_u32(c);
	cur_bytes(c, r->cert.x_pub, 32);
	cur_bytes(c, r->cert.ed_pub, 32);
	uint8_t fl = cur_u8(c);
	r->nloc = fl & 0x0f;
	r->flags = fl & 0xf0;
	if (!c->err && (!r->nloc || r->nloc > DHR_MAX_LOC || (r->flags & ~DHR_F_KNOWN)))
		return -EBADMSG;
	for (unsigned i = 0; i < r->nloc && !c->err; i++) {
		r->loc[i].sin_family = AF_INET;
		cur_bytes(c, &r->loc[i].sin_addr, 4);
		cur_bytes(c, &r->loc[i].sin_port, 2);
		if (!c->err && !r->loc[i].sin_port)
			return -EBADMSG;
	}
	if (r->flags & DHR_F_GROUP) {
		cur_bytes(c, r->group, 16);
		if (!c->err && r->group[0] != 0xff)
			return -EBADMSG;
	} else if (r->flags & DHR_F_LEFT) {
		return -EBADMSG;
	}
	if ((r->flags & DHR_F_ANYCAST) && (r->flags & DHR_F_GROUP))
		return -EBADMSG;
	r->cert.nprefixes = cur_u8(c);
	if (!c->err && (!r->cert.nprefixes || r->cert.nprefixes > DHR_MAX_PREFIXES))
		return -EBADMSG;
	for (unsigned i = 0; i < r->cert.nprefixes && !c->err; i++)
		get_prefix(c, &r->cert.prefixes[i]);
	cur_bytes(c, r->cert.sig, DHR_SIG_LEN);
	size_t signed_len = (size_t)(c->p - start);
	const uint8_t *sig = cur_ptr(c, DHR_SIG_LEN);
	if (c->err)
		return c->err;
	if (c->left)
		return -EBADMSG; /* trailing bytes */
	if (!dhr_cert_verify(&r->cert, auth_pub))
		return -EPERM;
	if (ed25519_sha512_verify(r->cert.ed_pub, signed_len, start, sig) != 1)
		return -EACCES;
	bool inside = false;
	for (unsigned i = 0; i < r->cert.nprefixes; i++)
		inside |= prefix_contains(&r->cert.prefixes[i], &r->prefix);
	if (!inside)
		return -ERANGE;
	if (r->time_s + DHR_MAX_AGE_S < now_s || r->time_s > now_s + DHR_MAX_SKEW_S)
		return -ESTALE;
	return 0;
}

void dhr_key_prefix(const uint8_t addr[static 16], unsigned len, uint8_t key[static DHR_KEY_LEN])
{
	memcpy(key, key_ctx, 8);
	key[8] = 'p';
	key[9] = (uint8_t)len;
	memcpy(key + 10, addr, 16);
	prefix_mask_bits(key + 10, len);
}

void dhr_key_group(const uint8_t group[static 16], uint8_t key[static DHR_KEY_LEN])
{
	memcpy(key, key_ctx, 8);
	key[8] = 'g';
	key[9] = 0;
	memcpy(key + 10, group, 16);
}

void dhr_key_anycast(const struct prefix *p, uint8_t key[static DHR_KEY_LEN])
{
	dhr_key_prefix(p->addr, p->len, key);
	key[8] = 'a';
}

void dhr_key_id(const uint8_t id[static 8], uint8_t key[static DHR_KEY_LEN])
{
	memset(key, 0, DHR_KEY_LEN);
	memcpy(key, key_ctx, 8);
	key[8] = 'i';
	memcpy(key + 10, id, 8);
}

/* The length up to addr's last set bit (0 for ::): the walk's key length for addr. */
static unsigned walk_len(const uint8_t addr[static 16])
{
	for (int i = 15; i >= 0; i--)
		if (addr[i])
			return (unsigned)(i * 8 + 8 - __builtin_ctz(addr[i]));
	return 0;
}

static size_t add_key(uint8_t keys[][DHR_KEY_LEN], size_t n, const uint8_t key[DHR_KEY_LEN])
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(keys[i], key, DHR_KEY_LEN))
			return n;
	memcpy(keys[n], key, DHR_KEY_LEN);
	return n + 1;
}

size_t dhr_pub_keys(const struct prefix *p, const uint8_t x_pub[static 32],
                    uint8_t keys[static DHR_MAX_KEYS][DHR_KEY_LEN])
{
	uint8_t k[DHR_KEY_LEN];
	size_t n = 0;
	dhr_key_prefix(p->addr, p->len, k);
	n = add_key(keys, n, k);
	dhr_key_prefix(p->addr, walk_len(p->addr), k);
	n = add_key(keys, n, k);
	/* the markers: every length the binary search probes below len on its way to len */
	int lo = 0, hi = 128;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (mid == p->len)
			break;
		if (mid < p->len) {
			dhr_key_prefix(p->addr, (unsigned)mid, k);
			n = add_key(keys, n, k);
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	dhr_key_id(x_pub, k);
	return add_key(keys, n, k);
}

void dhr_search_init(struct dhr_search *s, const uint8_t dst[static 16], enum dhr_mode mode)
{
	memset(s, 0, sizeof(*s));
	memcpy(s->dst, dst, 16);
	memcpy(s->cur, dst, 16);
	s->mode = mode;
	s->lo = 0;
	s->hi = 128;
	s->probe = -1;
}

void dhr_search_init_lengths(struct dhr_search *s, const uint8_t dst[static 16],
                             const struct dhr_lens *lens)
{
	dhr_search_init(s, dst, DHR_LENGTHS);
	s->lens = *lens;
}

bool dhr_search_next(struct dhr_search *s, uint8_t key[static DHR_KEY_LEN])
{
	if (s->done)
		return false;
	if (s->gets >= DHR_MAX_GETS) {
		s->done = true;
		return false;
	}
	if (s->mode == DHR_WALK) {
		dhr_key_prefix(s->cur, walk_len(s->cur), key);
	} else if (s->mode == DHR_LENGTHS) {
		while (s->hi >= 0 && !dhr_lens_has(&s->lens, (unsigned)s->hi))
			s->hi--;
		if (s->hi < 0) {
			s->done = true;
			return false;
		}
		s->probe = s->hi;
		dhr_key_prefix(s->dst, (unsigned)s->probe, key);
	} else {
		/* a range exhausted: backtrack into one a marker made us leave, if it may
		 * still hold something longer than the best match so far */
		while (s->lo > s->hi) {
			if (!s->nstack) {
				s->done = true;
				return false;
			}
			s->nstack--;
			s->lo = s->stack[s->nstack][0];
			s->hi = s->stack[s->nstack][1];
			if (s->found && s->hi <= s->best.prefix.len)
				s->lo = s->hi + 1;
		}
		s->probe = (s->lo + s->hi) / 2;
		dhr_key_prefix(s->dst, (unsigned)s->probe, key);
	}
	s->gets++;
	return true;
}

/* Takes r as the best match if it holds dst and is longer (or as long and newer). */
static void consider(struct dhr_search *s, const struct dhr_rec *r)
{
	if (!prefix_contains_addr(&r->prefix, s->dst))
		return;
	if (s->found && (r->prefix.len < s->best.prefix.len ||
	                 (r->prefix.len == s->best.prefix.len && r->time_s <= s->best.time_s)))
		return;
	s->best = *r;
	s->found = true;
}

/* True if r is a marker or record for the binary search's probe: dst's prefix at the
 * probed length is under it. */
static bool probe_hit(const struct dhr_search *s, const struct dhr_rec *r)
{
	if (s->mode != DHR_BSEARCH || r->prefix.len < s->probe)
		return false;
	struct prefix at = {.family = PEAK_AFI_IP6, .len = (uint8_t)s->probe};
	memcpy(at.addr, r->prefix.addr, 16);
	prefix_mask_bits(at.addr, (unsigned)s->probe);
	return prefix_contains_addr(&at, s->dst);
}

/* The search after its probe's answer (hit: bsearch only; the walk looks at s->found). */
static void advance(struct dhr_search *s, bool hit)
{
	if (s->mode == DHR_LENGTHS) { /* longest first: a match ends it */
		if (s->found)
			s->done = true;
		else
			s->hi = s->probe - 1;
		return;
	}
	if (s->mode == DHR_WALK) {
		unsigned l = walk_len(s->cur);
		if (s->found || !l) {
			s->done = true;
			return;
		}
		s->cur[(l - 1) / 8] &= (uint8_t) ~(0x80u >> ((l - 1) % 8));
		return;
	}
	if (hit) {
		if (s->lo <= s->probe - 1) {
			s->stack[s->nstack][0] = (uint8_t)s->lo;
			s->stack[s->nstack][1] = (uint8_t)(s->probe - 1);
			s->nstack++;
		}
		s->lo = s->probe + 1;
	} else {
		s->hi = s->probe - 1;
	}
}

void dhr_search_feed(struct dhr_search *s, const struct dhr_rec *recs, size_t n)
{
	if (s->done)
		return;
	bool hit = false;
	for (size_t i = 0; i < n; i++) {
		consider(s, &recs[i]);
		hit |= probe_hit(s, &recs[i]);
	}
	advance(s, hit);
}

/* Takes step 0's search (just initialized) as the lookup's first step. */
static void par_start(struct dhr_par *p)
{
	struct dhr_step *t = &p->step[0];
	/* a new search has a first key, but for lengths of which none is listed */
	t->st = dhr_search_next(&t->s, t->key) ? DHR_ST_WANT : DHR_ST_END;
	p->n = 1;
}

void dhr_par_init(struct dhr_par *p, const uint8_t dst[static 16], enum dhr_mode mode)
{
	memset(p, 0, sizeof(*p));
	dhr_search_init(&p->step[0].s, dst, mode);
	par_start(p);
}

void dhr_par_init_lengths(struct dhr_par *p, const uint8_t dst[static 16],
                          const struct dhr_lens *lens)
{
	memset(p, 0, sizeof(*p));
	dhr_search_init_lengths(&p->step[0].s, dst, lens);
	par_start(p);
}

static bool answered(const struct dhr_step *t)
{
	return t->st == DHR_ST_ABSENT || t->st == DHR_ST_HIT;
}

/* Appends the successor of the last step, answered as it is or, unanswered, absent. */
static void extend(struct dhr_par *p)
{
	struct dhr_step *t = &p->step[p->n - 1], *u = &p->step[p->n];
	u->s = t->s;
	u->open = u->assumed = false;
	advance(&u->s, t->st == DHR_ST_HIT);
	u->st = dhr_search_next(&u->s, u->key) ? DHR_ST_WANT : DHR_ST_END;
	p->n++;
}

/* Drops the steps after i (a changed answer of step i: they assumed another). */
static void cut(struct dhr_par *p, unsigned i)
{
	for (unsigned j = i + 1; j < p->n; j++)
		if (p->step[j].open)
			p->superseded++;
	p->n = i + 1;
}

/* The first steps answered and ended leave; an answered last step gets its successor. */
static void settle(struct dhr_par *p)
{
	for (;;) {
		unsigned k = 0;
		while (k + 1 < p->n && answered(&p->step[k]) && !p->step[k].open)
			k++;
		if (k) {
			memmove(p->step, p->step + k, (p->n - k) * sizeof(p->step[0]));
			p->n -= k;
		}
		if (p->n == DHR_PAR_MAX || !answered(&p->step[p->n - 1]))
			return;
		extend(p);
	}
}

bool dhr_par_want(struct dhr_par *p, bool spec_ok, uint8_t key[static DHR_KEY_LEN], uint32_t *id)
{
	bool spec = false;
	for (unsigned i = 0; i < p->n; i++) {
		struct dhr_step *t = &p->step[i];
		if (t->st == DHR_ST_WANT) {
			if (spec && !spec_ok)
				return false;
			t->st = DHR_ST_WAIT;
			t->open = true;
			t->id = ++p->next_id;
			memcpy(key, t->key, DHR_KEY_LEN);
			*id = t->id;
			p->issued++;
			p->spec += spec;
			return true;
		}
		spec |= t->st == DHR_ST_WAIT;
	}
	return false;
}

unsigned dhr_par_speculate(struct dhr_par *p)
{
	unsigned added = 0, wanted = 0;
	for (unsigned i = 0; i < p->n; i++)
		wanted += p->step[i].st == DHR_ST_WANT;
	for (;;) {
		uint8_t st = p->step[p->n - 1].st;
		if (p->n == DHR_PAR_MAX || (st != DHR_ST_WAIT && st != DHR_ST_WANT) ||
		    p->issued + wanted >= DHR_MAX_GETS)
			return added;
		extend(p);
		added++;
		wanted += p->step[p->n - 1].st == DHR_ST_WANT;
	}
}

static int find_step(const struct dhr_par *p, uint32_t id)
{
	for (unsigned i = 0; i < p->n; i++)
		if (p->step[i].open && p->step[i].id == id)
			return (int)i;
	return -1;
}

bool dhr_par_value(struct dhr_par *p, uint32_t id, const struct dhr_rec *recs, size_t n)
{
	int i = find_step(p, id);
	if (i < 0)
		return false;
	struct dhr_step *t = &p->step[i];
	bool found = t->s.found, hit = false;
	unsigned len = t->s.best.prefix.len;
	for (size_t k = 0; k < n; k++) {
		consider(&t->s, &recs[k]);
		hit |= probe_hit(&t->s, &recs[k]);
	}
	/* the walk and the lengths end at their first match: a record holding the destination
	 * answers the step (a probing step's own values gave it: one found before ended it) */
	hit |= t->s.mode != DHR_BSEARCH && t->s.found;
	/* the steps after it hold if they assumed its answer and the best match's length
	 * (backtracking prunes by it): then they only take the records too */
	if ((hit && t->st == DHR_ST_WAIT) || t->s.found != found ||
	    (found && t->s.best.prefix.len != len)) {
		if (hit)
			t->st = DHR_ST_HIT;
		cut(p, (unsigned)i);
		settle(p);
		return true;
	}
	for (unsigned j = (unsigned)i + 1; j < p->n; j++)
		for (size_t k = 0; k < n; k++)
			consider(&p->step[j].s, &recs[k]);
	return true;
}

bool dhr_par_done(struct dhr_par *p, uint32_t id)
{
	int i = find_step(p, id);
	if (i < 0)
		return false;
	struct dhr_step *t = &p->step[i];
	t->open = false;
	if (t->st == DHR_ST_WAIT)
		t->st = DHR_ST_ABSENT;
	settle(p);
	return true;
}

const struct dhr_search *dhr_par_result(const struct dhr_par *p)
{
	return p->step[0].st == DHR_ST_END ? &p->step[0].s : NULL;
}

bool dhr_par_assume(struct dhr_par *p, uint32_t id)
{
	int i = find_step(p, id);
	if (i < 0 || p->step[i].st != DHR_ST_WAIT)
		return false;
	p->step[i].assumed = true;
	return true;
}

const struct dhr_search *dhr_par_answer(const struct dhr_par *p)
{
	for (unsigned i = 0; i + 1 < p->n; i++) {
		const struct dhr_step *t = &p->step[i];
		if (!answered(t) && !(t->st == DHR_ST_WAIT && t->assumed))
			return NULL;
	}
	const struct dhr_step *e = &p->step[p->n - 1];
	return e->st == DHR_ST_END && e->s.found ? &e->s : NULL;
}
