/* Fuzzes the overlay's TSO and USO cutting and GSO merging (src/overlay/io.h): the input is a
 * 2-byte MSS and a TCP/IPv6 or UDP/IPv6 super-packet. Every segment cut from a TCP one must
 * carry a checksum that verifies and its payload length; their payloads put together must be
 * the original's; and merged again they must give that payload back. Every datagram cut from
 * a UDP one must carry a UDP checksum that verifies (never 0) and its payload and UDP lengths,
 * and their payloads put together must be the original's. Then the input itself goes
 * through the merger as if it were packets from peers. The word-at-a-time checksum must agree
 * with RFC 1071's 16 bits at a time on the input from each of its first 8 offsets. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "io.h"

/* RFC 1071's sum, 16 bits at a time: the reference for ovio_csum_add. */
static uint64_t csum_naive(uint64_t sum, const uint8_t *p, size_t n)
{
	for (; n >= 2; p += 2, n -= 2)
		sum += (uint32_t)(p[0] << 8 | p[1]);
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (size_t at = 0; at < 8 && at <= size; at++)
		if (ovio_csum_fold(ovio_csum_add(at, data + at, size - at)) !=
		    ovio_csum_fold(csum_naive(at, data + at, size - at)))
			__builtin_trap(); /* the checksums differ */
	static uint8_t seg[OVIO_MERGE_MAX], payload[OVIO_MERGE_MAX];
	static struct ovio_merge mg, raw;
	if (size < 2)
		return 0;
	size_t mss = (size_t)(data[0] << 8 | data[1]);
	const uint8_t *pkt = data + 2;
	size_t n = size - 2, off = 0, got = 0, nseg = 0;
	long k;
	bool merged_all = true;
	mg.len = 0;
	while ((k = ovio_tso_next(pkt, n, mss, &off, seg, sizeof(seg))) > 0) {
		size_t len = (size_t)k, hl = 40 + (size_t)(seg[52] >> 4) * 4;
		if (len < hl || (size_t)(seg[4] << 8 | seg[5]) != len - 40)
			__builtin_trap();
		uint64_t sum = ovio_csum_add(ovio_csum_pseudo(seg + 8, seg + 24, len - 40, 6),
		                             seg + 40, len - 40);
		if (ovio_csum_fold(sum) != 0)
			__builtin_trap(); /* a checksum that does not verify */
		memcpy(payload + got, seg + hl, len - hl);
		got += len - hl;
		if (nseg++ == 0)
			ovio_merge_start(&mg, seg, len);
		else if (!ovio_merge_add(&mg, seg, len))
			merged_all = false;
	}
	if (k == 0) {
		size_t hl = 40 + (size_t)(pkt[52] >> 4) * 4;
		if (got != n - hl || memcmp(payload, pkt + hl, got))
			__builtin_trap(); /* the payloads together are not the original's */
		if (merged_all && nseg > 1) {
			struct virtio_net_hdr h;
			ovio_merge_finish(&mg, &h);
			if (mg.len != n || memcmp(mg.pkt + hl, pkt + hl, got) ||
			    h.gso_type != VIRTIO_NET_HDR_GSO_TCPV6 || h.gso_size != mss)
				__builtin_trap(); /* merged again, not what was cut */
		}
	}
	/* the same bytes as a UDP super-packet */
	off = got = 0;
	while ((k = ovio_uso_next(pkt, n, mss, &off, seg, sizeof(seg))) > 0) {
		size_t len = (size_t)k;
		if (len < 48 || (size_t)(seg[4] << 8 | seg[5]) != len - 40 ||
		    (size_t)(seg[44] << 8 | seg[45]) != len - 40 || len - 48 > mss ||
		    (!seg[46] && !seg[47]))
			__builtin_trap();
		uint64_t sum = ovio_csum_add(ovio_csum_pseudo(seg + 8, seg + 24, len - 40, 17),
		                             seg + 40, len - 40);
		if (ovio_csum_fold(sum) != 0)
			__builtin_trap(); /* a UDP checksum that does not verify */
		memcpy(payload + got, seg + 48, len - 48);
		got += len - 48;
	}
	if (k == 0 && (got != n - 48 || memcmp(payload, pkt + 48, got)))
		__builtin_trap(); /* the payloads together are not the original's */
	/* the input as packets: 2-byte length, then that many bytes, repeated */
	raw.len = 0;
	for (size_t i = 0; i + 2 <= size;) {
		size_t len = (size_t)(data[i] << 8 | data[i + 1]);
		i += 2;
		if (len > size - i)
			len = size - i;
		if (!ovio_merge_add(&raw, data + i, len) && len <= OVIO_MERGE_MAX)
			ovio_merge_start(&raw, data + i, len);
		i += len;
	}
	if (raw.len) {
		struct virtio_net_hdr h;
		ovio_merge_finish(&raw, &h);
	}
	return 0;
}
