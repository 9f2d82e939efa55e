#include "peak/prefix.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned prefix_family_bits(uint8_t family)
{
	return family == PEAK_AFI_IP4 ? 32 : family == PEAK_AFI_IP6 ? 128 : 0;
}

int addr_parse(const char *s, uint8_t *family, uint8_t out[static 16])
{
	memset(out, 0, 16);
	if (strchr(s, ':')) {
		if (inet_pton(AF_INET6, s, out) != 1)
			return -EINVAL;
		*family = PEAK_AFI_IP6;
		return 0;
	}
	if (inet_pton(AF_INET, s, out) != 1)
		return -EINVAL;
	*family = PEAK_AFI_IP4;
	return 0;
}

void prefix_mask_bits(uint8_t addr[static 16], unsigned len)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned lo = i * 8;
		if (len >= lo + 8)
			continue;
		addr[i] &= len > lo ? (uint8_t)(0xff << (8 - (len - lo))) : 0;
	}
}

int prefix_parse(const char *s, bool mask, struct prefix *out)
{
	char buf[PREFIX_STRLEN];
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = '\0';

	const char *l = slash + 1;
	if (*l < '0' || *l > '9' || strlen(l) > 3)
		return -EINVAL;
	unsigned len = 0;
	for (; *l; l++) {
		if (*l < '0' || *l > '9')
			return -EINVAL;
		len = len * 10 + (unsigned)(*l - '0');
	}
	struct prefix p = {0};
	if (addr_parse(buf, &p.family, p.addr))
		return -EINVAL;
	if (len > prefix_family_bits(p.family))
		return -EINVAL;
	p.len = (uint8_t)len;
	uint8_t m[16];
	memcpy(m, p.addr, 16);
	prefix_mask_bits(m, len);
	if (memcmp(m, p.addr, 16)) {
		if (!mask)
			return -EINVAL;
		memcpy(p.addr, m, 16);
	}
	*out = p;
	return 0;
}

/* RFC 5952: lower case, no leading zeros, the longest run (first on a tie) of two or more
 * zero fields becomes "::", a single zero field is not compressed. IPv4-mapped addresses
 * (::ffff:0:0/96) are printed with a dotted quad (section 5). */
static char *addr6_print(const uint8_t a[static 16], char out[static ADDR_STRLEN])
{
	uint16_t f[8];
	for (int i = 0; i < 8; i++)
		f[i] = (uint16_t)(a[2 * i] << 8 | a[2 * i + 1]);
	int best = -1, bestlen = 0;
	for (int i = 0; i < 8;) {
		if (f[i]) {
			i++;
			continue;
		}
		int j = i;
		while (j < 8 && !f[j])
			j++;
		if (j - i > bestlen) {
			best = i;
			bestlen = j - i;
		}
		i = j;
	}
	if (bestlen < 2)
		best = -1;
	bool mapped = !f[0] && !f[1] && !f[2] && !f[3] && !f[4] && f[5] == 0xffff;
	int nf = mapped ? 6 : 8;
	char *o = out;
	for (int i = 0; i < nf; i++) {
		if (i == best) {
			o += sprintf(o, "::");
			i += bestlen - 1;
			continue;
		}
		if (o != out && o[-1] != ':')
			*o++ = ':';
		o += sprintf(o, "%x", f[i]);
	}
	if (mapped) {
		if (o[-1] != ':')
			*o++ = ':';
		sprintf(o, "%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
	} else {
		*o = '\0';
	}
	return out;
}

char *addr_print(uint8_t family, const uint8_t addr[static 16], char out[static ADDR_STRLEN])
{
	if (family == PEAK_AFI_IP6)
		return addr6_print(addr, out);
	snprintf(out, ADDR_STRLEN, "%u.%u.%u.%u", addr[0], addr[1], addr[2], addr[3]);
	return out;
}

char *prefix_print(const struct prefix *p, char out[static PREFIX_STRLEN])
{
	char a[ADDR_STRLEN];
	snprintf(out, PREFIX_STRLEN, "%s/%u", addr_print(p->family, p->addr, a), p->len);
	return out;
}

static bool bits_equal(const uint8_t *a, const uint8_t *b, unsigned len)
{
	unsigned full = len / 8, rest = len % 8;
	if (memcmp(a, b, full))
		return false;
	if (!rest)
		return true;
	uint8_t m = (uint8_t)(0xff << (8 - rest));
	return ((a[full] ^ b[full]) & m) == 0;
}

bool prefix_contains_addr(const struct prefix *p, const uint8_t addr[static 16])
{
	return bits_equal(p->addr, addr, p->len);
}

bool prefix_contains(const struct prefix *outer, const struct prefix *inner)
{
	return outer->family == inner->family && outer->len <= inner->len &&
	       bits_equal(outer->addr, inner->addr, outer->len);
}

int prefix_cmp(const struct prefix *a, const struct prefix *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	int c = memcmp(a->addr, b->addr, 16);
	if (c)
		return c < 0 ? -1 : 1;
	return a->len == b->len ? 0 : a->len < b->len ? -1 : 1;
}

/* The address as one big-endian 128-bit integer (gcc and clang both have the type). */
typedef unsigned __int128 u128;

static u128 load128(const uint8_t a[static 16])
{
	u128 v = 0;
	for (int i = 0; i < 16; i++)
		v = v << 8 | a[i];
	return v;
}

static void store128(uint8_t a[static 16], u128 v)
{
	for (int i = 15; i >= 0; i--, v >>= 8)
		a[i] = (uint8_t)v;
}

uint64_t addr_get_bits(const uint8_t addr[static 16], unsigned off, unsigned nbits)
{
	if (!nbits)
		return 0;
	u128 v = load128(addr) >> (128 - off - nbits);
	return (uint64_t)v & (nbits == 64 ? UINT64_MAX : (1ULL << nbits) - 1);
}

void addr_set_bits(uint8_t addr[static 16], unsigned off, unsigned nbits, uint64_t v)
{
	if (!nbits)
		return;
	unsigned sh = 128 - off - nbits;
	u128 m = (u128)(nbits == 64 ? UINT64_MAX : (1ULL << nbits) - 1);
	u128 a = load128(addr);
	a = (a & ~(m << sh)) | (((u128)v & m) << sh);
	store128(addr, a);
}

int prefix_slice(const struct prefix *p, unsigned sublen, uint64_t index, struct prefix *out)
{
	unsigned bits = prefix_family_bits(p->family);
	if (sublen < p->len || sublen > bits || sublen - p->len > 63)
		return -EINVAL;
	unsigned s = sublen - p->len;
	if (index >> s)
		return -EINVAL;
	*out = *p;
	out->len = (uint8_t)sublen;
	addr_set_bits(out->addr, p->len, s, index);
	return 0;
}

static int prefix_qcmp(const void *a, const void *b)
{
	return prefix_cmp(a, b);
}

/* The sibling of p: same length, last bit flipped. */
static bool prefix_is_sibling_pair(const struct prefix *a, const struct prefix *b)
{
	if (a->family != b->family || a->len != b->len || a->len == 0)
		return false;
	unsigned bit = a->len - 1u;
	if ((a->addr[bit / 8] >> (7 - bit % 8)) & 1)
		return false; /* a must be the lower half */
	return bits_equal(a->addr, b->addr, bit) && ((b->addr[bit / 8] >> (7 - bit % 8)) & 1);
}

size_t prefix_aggregate(struct prefix *v, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		prefix_mask_bits(v[i].addr, v[i].len);
	qsort(v, n, sizeof(*v), prefix_qcmp);
	/* Sorted by address then length: a prefix covering later ones comes first, so one pass
	 * drops the covered ones. Then merge sibling pairs on a stack, in address order: a
	 * merge can only enable a merge with the element below it. */
	size_t top = 0;
	for (size_t i = 0; i < n; i++) {
		if (top && prefix_contains(&v[top - 1], &v[i]))
			continue;
		v[top++] = v[i];
		while (top >= 2 && prefix_is_sibling_pair(&v[top - 2], &v[top - 1])) {
			top--;
			v[top - 1].len--;
		}
	}
	return top;
}
