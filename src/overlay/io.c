#include "io.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Sums the 32-bit halves of 64-bit words in host order into four independent 64-bit sums
 * (no carries to chase; none overflows below 1 GiB) and turns the folded 16-bit result into
 * big-endian words' terms at the end: RFC 1071 §2(B), the sum is byte-order independent up to
 * a swap. The 16-bit loop it replaces took 15% of a sending gateway's cycles
 * (bench/overlay/profile.py); this is about 7 times faster on 1400 bytes. */
uint64_t ovio_csum_add(uint64_t sum, const uint8_t *p, size_t n)
{
	uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
	for (; n >= 32; p += 32, n -= 32) {
		uint64_t w[4];
		memcpy(w, p, sizeof(w));
		a0 += (w[0] & 0xffffffff) + (w[0] >> 32);
		a1 += (w[1] & 0xffffffff) + (w[1] >> 32);
		a2 += (w[2] & 0xffffffff) + (w[2] >> 32);
		a3 += (w[3] & 0xffffffff) + (w[3] >> 32);
	}
	uint64_t acc = a0 + a1 + a2 + a3;
	for (; n >= 4; p += 4, n -= 4) {
		uint32_t w;
		memcpy(&w, p, sizeof(w));
		acc += w;
	}
	if (n >= 2) {
		uint16_t w;
		memcpy(&w, p, sizeof(w));
		acc += w;
		p += 2;
		n -= 2;
	}
	acc = (acc & 0xffffffff) + (acc >> 32);
	acc = (acc & 0xffffffff) + (acc >> 32);
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	acc = (uint16_t)(acc << 8 | acc >> 8);
#endif
	sum += acc;
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

uint16_t ovio_csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

uint64_t ovio_csum_pseudo(const uint8_t src[16], const uint8_t dst[16], size_t n, uint8_t nh)
{
	uint64_t sum = ovio_csum_add(ovio_csum_add(0, src, 16), dst, 16);
	return sum + (n >> 16) + (n & 0xffff) + nh;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

long ovio_tso_next(const uint8_t *pkt, size_t n, size_t mss, size_t *off, uint8_t *out, size_t cap)
{
	if (n < 60 || pkt[0] >> 4 != 6 || pkt[6] != 6 || !mss)
		return -EBADMSG;
	size_t thl = (size_t)(pkt[52] >> 4) * 4, hl = 40 + thl;
	if (thl < 20 || hl > n)
		return -EBADMSG;
	if (*off == SIZE_MAX)
		return 0; /* all written (a packet without payload is one segment) */
	size_t at = hl + *off;
	size_t chunk = n - at < mss ? n - at : mss;
	if (hl + chunk > cap)
		return -EBADMSG;
	bool last = at + chunk >= n;
	memcpy(out, pkt, hl);
	memcpy(out + hl, pkt + at, chunk);
	size_t plen = thl + chunk;
	out[4] = (uint8_t)(plen >> 8);
	out[5] = (uint8_t)plen;
	uint32_t s = be32(pkt + 44) + (uint32_t)*off;
	for (int i = 0; i < 4; i++)
		out[44 + i] = (uint8_t)(s >> (24 - 8 * i));
	if (!last)
		out[53] &= (uint8_t)~0x09; /* FIN, PSH */
	if (*off)
		out[53] &= (uint8_t)~0x80; /* CWR */
	out[56] = out[57] = 0;
	uint16_t c = ovio_csum_fold(
	    ovio_csum_add(ovio_csum_pseudo(out + 8, out + 24, plen, 6), out + 40, plen));
	out[56] = (uint8_t)(c >> 8);
	out[57] = (uint8_t)c;
	*off = last ? SIZE_MAX : *off + chunk;
	return (long)(40 + plen);
}

long ovio_uso_next(const uint8_t *pkt, size_t n, size_t size, size_t *off, uint8_t *out, size_t cap)
{
	if (n < 48 || pkt[0] >> 4 != 6 || pkt[6] != 17 || !size)
		return -EBADMSG;
	if (*off == SIZE_MAX)
		return 0; /* all written (a datagram without payload is one segment) */
	size_t at = 48 + *off;
	size_t chunk = n - at < size ? n - at : size;
	if (48 + chunk > cap)
		return -EBADMSG;
	memcpy(out, pkt, 48);
	memcpy(out + 48, pkt + at, chunk);
	size_t ulen = 8 + chunk;
	out[4] = out[44] = (uint8_t)(ulen >> 8);
	out[5] = out[45] = (uint8_t)ulen;
	out[46] = out[47] = 0;
	uint16_t c = ovio_csum_fold(
	    ovio_csum_add(ovio_csum_pseudo(out + 8, out + 24, ulen, 17), out + 40, ulen));
	if (!c)
		c = 0xffff; /* zero means none, which IPv6 forbids (RFC 8200 §8.1) */
	out[46] = (uint8_t)(c >> 8);
	out[47] = (uint8_t)c;
	*off = at + chunk >= n ? SIZE_MAX : *off + chunk;
	return (long)(40 + ulen);
}

/* The TCP payload's offset in pkt if it is a segment that may be merged, else 0. */
static size_t mergeable(const uint8_t *pkt, size_t len)
{
	if (len < 60 || pkt[0] >> 4 != 6 || pkt[6] != 6)
		return 0;
	size_t hl = 40 + (size_t)(pkt[52] >> 4) * 4;
	if (hl < 60 || hl >= len || (pkt[53] & (uint8_t)~0x08) != 0x10 || pkt[58] || pkt[59])
		return 0;
	return hl;
}

bool ovio_merge_add(struct ovio_merge *o, const uint8_t *pkt, size_t len)
{
	size_t hl = mergeable(pkt, len), pay = len - hl;
	if (!hl || !o->len || o->closed || (size_t)(o->pkt[52] >> 4) * 4 + 40 != hl ||
	    memcmp(o->pkt, pkt, 4) || o->pkt[7] != pkt[7] || memcmp(o->pkt + 8, pkt + 8, 32) ||
	    memcmp(o->pkt + 40, pkt + 40, 4) || memcmp(o->pkt + 48, pkt + 48, 4) ||
	    memcmp(o->pkt + 54, pkt + 54, 2) || memcmp(o->pkt + 60, pkt + 60, hl - 60) ||
	    be32(pkt + 44) != o->next_seq || pay > o->seg || o->len + pay > sizeof(o->pkt))
		return false;
	memcpy(o->pkt + o->len, pkt + hl, pay);
	o->len += pay;
	o->nseg++;
	o->next_seq += (uint32_t)pay;
	if (pay < o->seg || pkt[53] & 0x08) {
		o->pkt[53] |= pkt[53] & 0x08;
		o->closed = true;
	}
	return true;
}

void ovio_merge_start(struct ovio_merge *o, const uint8_t *pkt, size_t len)
{
	size_t hl = mergeable(pkt, len);
	memcpy(o->pkt, pkt, len);
	o->len = len;
	o->nseg = 1;
	o->closed = !hl || pkt[53] & 0x08;
	o->seg = hl ? len - hl : 0;
	o->next_seq = hl ? be32(pkt + 44) + (uint32_t)(len - hl) : 0;
}

void ovio_merge_finish(struct ovio_merge *o, struct virtio_net_hdr *h)
{
	memset(h, 0, sizeof(*h));
	if (o->nseg < 2)
		return;
	size_t plen = o->len - 40, thl = (size_t)(o->pkt[52] >> 4) * 4;
	o->pkt[4] = (uint8_t)(plen >> 8);
	o->pkt[5] = (uint8_t)plen;
	uint16_t c = (uint16_t)~ovio_csum_fold(ovio_csum_pseudo(o->pkt + 8, o->pkt + 24, plen, 6));
	o->pkt[56] = (uint8_t)(c >> 8);
	o->pkt[57] = (uint8_t)c;
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
	h->hdr_len = (uint16_t)(40 + thl);
	h->gso_size = (uint16_t)o->seg;
	h->csum_start = 40;
	h->csum_offset = 16;
}
