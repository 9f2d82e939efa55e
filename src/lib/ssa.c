#include "peak/ssa.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "peak/siphash.h"
#include "peak/util.h"

static const char *const rule_names[] = {"rand", "src", "obj", "hop"};

const char *ssa_rule_name(unsigned rule)
{
	return rule < 4 ? rule_names[rule] : "?";
}

int ssa_key_parse(const char *hex, size_t len, uint8_t key[static 16])
{
	if (len != 32)
		return -EINVAL;
	for (size_t i = 0; i < 16; i++) {
		int hi = peak_hexval(hex[2 * i]), lo = peak_hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* Descriptor fields: one row each, so parsing, ranges and defaults come from one table. */
enum field {
	F_V,
	F_SLICE,
	F_SELECT,
	F_HOST,
	F_FANOUT,
	F_POW,
	F_NONCE,
	F_PERIOD,
	F_SKEW,
	F_REPLICAS,
	F_KEY
};
static const struct {
	const char *name;
	uint32_t min, max;
} fields[] = {
    [F_V] = {"v", 0, 0},
    [F_SLICE] = {"slice", 0, 128},
    [F_SELECT] = {"select", 0, 3},
    [F_HOST] = {"host", 0, 3},
    [F_FANOUT] = {"fanout", 1, 255},
    [F_POW] = {"pow", 0, SSA_MAX_POW_BITS},
    [F_NONCE] = {"nonce", 1, 64},
    [F_PERIOD] = {"period", 1, 86400},
    [F_SKEW] = {"skew", 0, 4},
    [F_REPLICAS] = {"replicas", 1, SSA_MAX_REPLICAS},
    [F_KEY] = {"key", 0, 0},
};
enum { NFIELDS = sizeof(fields) / sizeof(fields[0]) };

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trims white space around [*b, *e). */
static void trim(const char **b, const char **e)
{
	while (*b < *e && is_space(**b))
		(*b)++;
	while (*e > *b && is_space((*e)[-1]))
		(*e)--;
}

static bool parse_u32(const char *b, const char *e, uint32_t *out)
{
	uint64_t v = 0;
	if (b == e || e - b > 10)
		return false;
	for (; b < e; b++) {
		if (*b < '0' || *b > '9')
			return false;
		v = v * 10 + (uint64_t)(*b - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool tok_eq(const char *b, const char *e, const char *lit)
{
	size_t n = strlen(lit);
	return (size_t)(e - b) == n && memcmp(b, lit, n) == 0;
}

static int parse_rule(const char *b, const char *e, bool host)
{
	for (unsigned r = 0; r < 4; r++)
		if (tok_eq(b, e, rule_names[r]) && !(host && r == SSA_OBJ))
			return (int)r;
	return -1;
}

void ssa_desc_init(struct ssa_desc *d)
{
	/* padding too: descriptors are compared with memcmp (a compound literal leaves the
	 * bytes after 'replicas' undefined, and clang does leave them) */
	memset(d, 0, sizeof(*d));
	*d = (struct ssa_desc){
	    .select = SSA_RAND,
	    .host = SSA_RAND,
	    .fanout = 1,
	    .nonce = SSA_DEF_NONCE_BITS,
	    .period = SSA_DEF_PERIOD_S,
	    .skew = SSA_DEF_SKEW_EPOCHS,
	    .replicas = 1,
	};
}

static int set_field(struct ssa_desc *d, int f, const char *vb, const char *ve, char *err,
                     size_t errlen)
{
	uint32_t v = 0;
	int r;
	switch (f) {
	case F_V:
		if (!tok_eq(vb, ve, "ssa1"))
			return peak_errf(err, errlen, "unsupported version '%.*s' (want ssa1)",
			                 (int)(ve - vb), vb);
		return 0;
	case F_SELECT:
	case F_HOST:
		r = parse_rule(vb, ve, f == F_HOST);
		if (r < 0)
			return peak_errf(err, errlen, "bad value '%.*s' for %s (want %s)",
			                 (int)(ve - vb), vb, fields[f].name,
			                 f == F_HOST ? "rand, src or hop"
			                             : "rand, src, obj or hop");
		if (f == F_HOST)
			d->host = (uint8_t)r;
		else
			d->select = (uint8_t)r;
		return 0;
	case F_KEY:
		if (ssa_key_parse(vb, (size_t)(ve - vb), d->key))
			return peak_errf(err, errlen, "key must be 32 hex digits");
		d->has_key = true;
		return 0;
	}
	if (f == F_POW && parse_u32(vb, ve, &v) && v > fields[f].max)
		return peak_errf(err, errlen,
		                 "pow=%u is above the limit of %u bits (about 2^%u hashes per "
		                 "address for a client)",
		                 v, fields[f].max, v);
	if (!parse_u32(vb, ve, &v) || v < fields[f].min || v > fields[f].max)
		return peak_errf(err, errlen, "bad value '%.*s' for %s (want %u..%u)",
		                 (int)(ve - vb), vb, fields[f].name, fields[f].min, fields[f].max);
	if (f == F_SLICE)
		d->slice = (uint8_t)v;
	else if (f == F_FANOUT)
		d->fanout = (uint8_t)v;
	else if (f == F_POW)
		d->pow = (uint8_t)v;
	else if (f == F_NONCE)
		d->nonce = (uint8_t)v;
	else if (f == F_PERIOD)
		d->period = v;
	else if (f == F_SKEW)
		d->skew = (uint8_t)v;
	else if (f == F_REPLICAS)
		d->replicas = (uint8_t)v;
	return 0;
}

static int field_index(const char *nb, const char *ne)
{
	for (int i = 0; i < NFIELDS; i++)
		if (tok_eq(nb, ne, fields[i].name))
			return i;
	return -1;
}

int ssa_desc_set(struct ssa_desc *d, const char *name, const char *value, char *err, size_t errlen)
{
	int f = field_index(name, name + strlen(name));
	if (f < 0)
		return peak_errf(err, errlen, "unknown descriptor field '%s'", name);
	return set_field(d, f, value, value + strlen(value), err, errlen);
}

int ssa_desc_validate(const struct ssa_desc *d, char *err, size_t errlen)
{
	/* SPEC.md 3 requires the key unless both rules are rand; the proof of work hashes with
	 * it too, so pow > 0 needs it as well. */
	if (!d->has_key && (d->select != SSA_RAND || d->host != SSA_RAND))
		return peak_errf(err, errlen, "key required for select=%s host=%s",
		                 ssa_rule_name(d->select), ssa_rule_name(d->host));
	if (!d->has_key && d->pow)
		return peak_errf(err, errlen, "key required when pow > 0");
	return 0;
}

int ssa_desc_parse(const char *s, size_t len, struct ssa_desc *d, char *err, size_t errlen)
{
	struct ssa_desc out;
	bool seen[NFIELDS] = {0};
	const char *p = s, *end = s + len;

	ssa_desc_init(&out);
	if (len > 4096)
		return peak_errf(err, errlen, "descriptor too long (%zu bytes)", len);
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *ie = semi ? semi : end;
		const char *nb = p, *ne;
		p = semi ? semi + 1 : end;
		trim(&nb, &ie);
		if (nb == ie)
			continue; /* empty item, e.g. a trailing ';' */
		const char *eq = memchr(nb, '=', (size_t)(ie - nb));
		if (!eq)
			return peak_errf(err, errlen, "item '%.*s' is not name=value",
			                 (int)(ie - nb), nb);
		ne = eq;
		const char *vb = eq + 1, *ve = ie;
		trim(&nb, &ne);
		trim(&vb, &ve);
		if (nb == ne)
			return peak_errf(err, errlen, "item '%.*s' has no name", (int)(ie - nb),
			                 nb);
		for (const char *q = nb; q < ne; q++)
			if (*q >= 'A' && *q <= 'Z')
				return peak_errf(err, errlen, "field name '%.*s' is not lower case",
				                 (int)(ne - nb), nb);
		int f = field_index(nb, ne);
		if (f < 0)
			continue; /* unknown names are ignored (forward compatibility) */
		if (seen[f])
			return peak_errf(err, errlen, "field '%s' repeated", fields[f].name);
		seen[f] = true;
		int r = set_field(&out, f, vb, ve, err, errlen);
		if (r)
			return r;
	}
	if (!seen[F_V])
		return peak_errf(err, errlen, "missing v=ssa1");
	if (!seen[F_SLICE])
		return peak_errf(err, errlen, "missing slice");
	int r = ssa_desc_validate(&out, err, errlen);
	if (r)
		return r;
	*d = out;
	return 0;
}

int ssa_desc_print(const struct ssa_desc *d, char *out, size_t cap)
{
	char buf[SSA_DESC_STRLEN];
	int n = snprintf(buf, sizeof(buf), "v=ssa1; slice=%u; select=%s; host=%s", d->slice,
	                 ssa_rule_name(d->select), ssa_rule_name(d->host));
	if (d->fanout != 1)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "; fanout=%u", d->fanout);
	if (d->pow)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "; pow=%u", d->pow);
	if (d->nonce != SSA_DEF_NONCE_BITS)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "; nonce=%u", d->nonce);
	if (d->period != SSA_DEF_PERIOD_S)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "; period=%u", d->period);
	if (d->skew != SSA_DEF_SKEW_EPOCHS)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "; skew=%u", d->skew);
	if (d->replicas != 1)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "; replicas=%u", d->replicas);
	if (d->has_key) {
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "; key=");
		for (int i = 0; i < 16; i++)
			n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%02x", d->key[i]);
	}
	if ((size_t)n >= cap)
		return -ENOSPC;
	memcpy(out, buf, (size_t)n + 1);
	return n;
}

int ssa_space_init(struct ssa_space *sp, const struct ssa_desc *d, const struct prefix *pfx,
                   unsigned n, char *err, size_t errlen)
{
	char a[PREFIX_STRLEN], b[PREFIX_STRLEN];

	if (n == 0)
		return peak_errf(err, errlen, "no prefixes");
	if (n > SSA_MAX_PREFIXES)
		return peak_errf(err, errlen, "too many prefixes (%u, at most %d)", n,
		                 SSA_MAX_PREFIXES);
	for (unsigned i = 0; i < n; i++) {
		if (pfx[i].family != PEAK_AFI_IP6)
			return peak_errf(err, errlen, "prefix %s is not IPv6",
			                 prefix_print(&pfx[i], a));
		if (pfx[i].len != pfx[0].len)
			return peak_errf(err, errlen, "prefixes of unequal length (%s and %s)",
			                 prefix_print(&pfx[0], a), prefix_print(&pfx[i], b));
		for (unsigned j = 0; j < i; j++)
			if (prefix_contains(&pfx[j], &pfx[i]))
				return peak_errf(err, errlen, "prefix %s repeated",
				                 prefix_print(&pfx[i], a));
	}
	unsigned p = pfx[0].len;
	if (d->slice < p)
		return peak_errf(err, errlen, "slice=%u is shorter than the prefixes (/%u)",
		                 d->slice, p);
	unsigned s = d->slice - p;
	if (s > 32 || ((uint64_t)n << s) > (1ULL << 32))
		return peak_errf(err, errlen, "more than 2^32 slices (%u prefixes of 2^%u)", n, s);
	unsigned fanbits = d->fanout > 1 ? 8 : 0, w = d->pow ? d->nonce : 0;
	unsigned h = 128u - d->slice;
	if (fanbits + w > h)
		return peak_errf(err, errlen,
		                 "no room below slice=%u: %u host bits < fanout %u + nonce %u bits",
		                 d->slice, h, fanbits, w);
	memset(sp, 0, sizeof(*sp));
	memcpy(sp->pfx, pfx, n * sizeof(*pfx));
	sp->n = n;
	sp->p = p;
	sp->s = s;
	sp->hb = h - fanbits - w;
	sp->fanbits = fanbits;
	sp->w = w;
	sp->nslices = (uint64_t)n << s;
	sp->d = *d;
	return 0;
}

/* Big-endian encodings of the hashed data (SPEC.md 4). */
static size_t put_be(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	return bytes;
}

/* g for select=src/hop given c64, epoch and index; key is K or S. */
static uint64_t select_value(const struct ssa_space *sp, unsigned rule, const uint8_t *key,
                             const uint8_t *src, uint64_t e, uint8_t i)
{
	uint8_t m[17];
	size_t n = 0;
	memcpy(m, src, 8);
	n = 8;
	if (rule == SSA_HOP)
		n += put_be(m + n, e, 8);
	m[n++] = i;
	return ssa_h64(key, rule == SSA_HOP ? 0x03 : 0x01, m, n) % sp->nslices;
}

/* The 128-bit host value for host=src/hop, as 16 big-endian bytes. */
static void host_value(unsigned rule, const uint8_t *key, const uint8_t *src, uint64_t e,
                       uint32_t g, uint8_t i, uint8_t out[static 16])
{
	uint8_t m[21];
	size_t n = 0;
	memcpy(m, src, 8);
	n = 8;
	if (rule == SSA_HOP)
		n += put_be(m + n, e, 8);
	n += put_be(m + n, g, 4);
	m[n++] = i;
	ssa_h128(key, rule == SSA_HOP ? 0x13 : 0x11, m, n, out);
}

/* Writes the low hb bits of a 128-bit big-endian value at bit offset off. */
static void put_low_bits(uint8_t addr[static 16], unsigned off, unsigned hb,
                         const uint8_t v[static 16])
{
	uint64_t hi = addr_get_bits(v, 0, 64), lo = addr_get_bits(v, 64, 64);
	if (hb > 64) {
		addr_set_bits(addr, off, hb - 64, hi);
		addr_set_bits(addr, off + hb - 64, 64, lo);
	} else {
		addr_set_bits(addr, off, hb, lo);
	}
}

/* Leading zero bits of H64(K, 0x04, src128 || dst128) are at least d. */
static bool pow_ok(const uint8_t *key, unsigned d, const uint8_t *src, const uint8_t *dst)
{
	if (d == 0)
		return true;
	uint8_t m[32];
	memcpy(m, src, 16);
	memcpy(m + 16, dst, 16);
	uint64_t h = ssa_h64(key, 0x04, m, 32);
	return d >= 64 ? h == 0 : (h >> (64 - d)) == 0;
}

/* Lays out prefix, slice and host fields for slice g; host value from v (may be NULL
 * for zero). */
static void layout(const struct ssa_space *sp, uint64_t g, const uint8_t *v, uint8_t out[static 16])
{
	memcpy(out, sp->pfx[g >> sp->s].addr, 16);
	addr_set_bits(out, sp->p, sp->s, g & ((1ULL << sp->s) - 1));
	if (v)
		put_low_bits(out, sp->d.slice, sp->hb, v);
}

int ssa_compute(const struct ssa_space *sp, const struct ssa_req *r, uint8_t out[static 16])
{
	const struct ssa_desc *d = &sp->d;
	uint64_t e = r->time / d->period;
	uint64_t g;

	if (r->index >= d->fanout)
		return -EINVAL;
	if ((d->select == SSA_HOP || d->host == SSA_HOP) && !r->secret)
		return -EINVAL;
	if (d->select == SSA_OBJ && !r->object)
		return -EINVAL;

	switch (d->select) {
	case SSA_SRC:
		g = select_value(sp, SSA_SRC, d->key, r->src, 0, r->index);
		break;
	case SSA_HOP:
		g = select_value(sp, SSA_HOP, r->secret, r->src, e, r->index);
		break;
	case SSA_OBJ: {
		struct siphash_state st; /* H64(K, 0x02, u8(r) || object_key) */
		uint8_t pre[2] = {0x02, r->replica};
		siphash_init(&st, d->key);
		siphash_update(&st, pre, 2);
		siphash_update(&st, r->object, r->object_len);
		g = siphash_final(&st) % sp->nslices;
		break;
	}
	default:
		g = r->rand[0] % sp->nslices;
	}

	return ssa_compute_slice(sp, r, g, out);
}

int ssa_compute_slice(const struct ssa_space *sp, const struct ssa_req *r, uint64_t g,
                      uint8_t out[static 16])
{
	const struct ssa_desc *d = &sp->d;
	uint64_t e = r->time / d->period;
	uint8_t hv[16];

	if (g >= sp->nslices || r->index >= d->fanout || (d->host == SSA_HOP && !r->secret))
		return -EINVAL;
	switch (d->host) {
	case SSA_SRC:
		host_value(SSA_SRC, d->key, r->src, 0, (uint32_t)g, r->index, hv);
		break;
	case SSA_HOP:
		host_value(SSA_HOP, r->secret, r->src, e, (uint32_t)g, r->index, hv);
		break;
	default:
		for (int i = 0; i < 8; i++) {
			hv[i] = (uint8_t)(r->rand[1] >> (56 - 8 * i));
			hv[8 + i] = (uint8_t)(r->rand[2] >> (56 - 8 * i));
		}
	}
	layout(sp, g, hv, out);
	if (sp->fanbits)
		addr_set_bits(out, 128 - sp->w - 8, 8, r->index);
	if (!sp->w)
		return 0;
	uint64_t limit = sp->w >= 64 ? UINT64_MAX : (1ULL << sp->w) - 1;
	for (uint64_t nonce = 0;; nonce++) {
		addr_set_bits(out, 128 - sp->w, sp->w, nonce);
		if (pow_ok(d->key, d->pow, r->src, out))
			return 0;
		if (nonce == limit)
			return -EAGAIN;
		if (r->pow_stop && (nonce + 1) % SSA_POW_CHECK_NONCES == 0 &&
		    r->pow_stop(r->pow_arg))
			return -ETIMEDOUT;
	}
}

int64_t ssa_slice_of(const struct ssa_space *sp, const uint8_t addr[static 16])
{
	for (unsigned i = 0; i < sp->n; i++)
		if (prefix_contains_addr(&sp->pfx[i], addr))
			return (int64_t)((uint64_t)i << sp->s | addr_get_bits(addr, sp->p, sp->s));
	return -1;
}

/* Host value field of dst equals the low hb bits of the rule's value. */
static bool host_matches(const struct ssa_space *sp, const uint8_t *dst, const uint8_t *v)
{
	uint8_t want[16] = {0};
	put_low_bits(want, 0, sp->hb, v);
	unsigned off = sp->d.slice, hb = sp->hb;
	if (hb > 64)
		return addr_get_bits(dst, off, hb - 64) == addr_get_bits(want, 0, hb - 64) &&
		       addr_get_bits(dst, off + hb - 64, 64) == addr_get_bits(want, hb - 64, 64);
	return addr_get_bits(dst, off, hb) == addr_get_bits(want, 0, hb);
}

int ssa_check(const struct ssa_space *sp, const uint8_t src[static 16],
              const uint8_t dst[static 16], uint64_t t, const uint8_t *secret)
{
	const struct ssa_desc *d = &sp->d;
	bool hop = d->select == SSA_HOP || d->host == SSA_HOP;
	if (hop && !secret)
		return -EINVAL;
	int64_t gs = ssa_slice_of(sp, dst);
	if (gs < 0)
		return SSA_OUTSIDE;
	uint64_t g = (uint64_t)gs;
	uint8_t i = 0;
	if (sp->fanbits) {
		i = (uint8_t)addr_get_bits(dst, 128 - sp->w - 8, 8);
		if (i >= d->fanout)
			return SSA_REJECT_FANOUT;
	}

	/* For hop rules steps 3 and 4 pass if one epoch of the window satisfies both: the
	 * client derives both fields from the same epoch. */
	uint64_t e = t / d->period;
	uint64_t lo = e, hi = e;
	if (hop) {
		lo = e >= d->skew ? e - d->skew : 0;
		hi = e > UINT64_MAX - d->skew ? UINT64_MAX : e + d->skew;
	}
	int verdict = SSA_REJECT_SLICE;
	for (uint64_t step = 0; step <= hi - lo; step++) {
		uint64_t ep = lo + step;
		if (d->select == SSA_SRC || d->select == SSA_HOP) {
			const uint8_t *k = d->select == SSA_HOP ? secret : d->key;
			if (select_value(sp, d->select, k, src, ep, i) != g)
				continue;
		}
		if (d->host == SSA_SRC || d->host == SSA_HOP) {
			uint8_t hv[16];
			const uint8_t *k = d->host == SSA_HOP ? secret : d->key;
			host_value(d->host, k, src, ep, (uint32_t)g, i, hv);
			if (!host_matches(sp, dst, hv)) {
				verdict = SSA_REJECT_HOST;
				continue;
			}
		}
		verdict = SSA_PASS;
		break;
	}
	if (verdict != SSA_PASS)
		return verdict;
	if (sp->w && !pow_ok(d->key, d->pow, src, dst))
		return SSA_REJECT_POW;
	return SSA_PASS;
}

const char *ssa_verdict_name(int v)
{
	static const char *const names[] = {"pass", "outside", "fanout", "slice", "host", "pow"};
	return v >= 0 && v < 6 ? names[v] : "error";
}
