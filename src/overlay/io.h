#pragma once
/*
 * Cutting and merging TCP/IPv6 packets for the overlay's batched TUN I/O (pure code: no I/O,
 * fuzzed). A TCP super-packet the kernel hands over (TSO, IFF_VNET_HDR) is cut into segments
 * as a NIC would; consecutive segments of one flow are merged into one super-packet the kernel
 * cuts again (GSO), the reverse. A UDP super-packet (USO) is cut the same way.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_net.h>

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4 /* newer than Debian 12's headers (Linux 6.2's USO) */
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

/* Adds n bytes at p to a one's complement sum (RFC 1071) as big-endian 16-bit words; n is
 * even but for the last call. */
uint64_t ovio_csum_add(uint64_t sum, const uint8_t *p, size_t n);

/* The folded and complemented sum: the checksum field's value. */
uint16_t ovio_csum_fold(uint64_t sum);

/* The IPv6 pseudo-header's sum (RFC 8200 §8.1) for an upper-layer message of n bytes. */
uint64_t ovio_csum_pseudo(const uint8_t src[16], const uint8_t dst[16], size_t n, uint8_t nh);

/* Writes the next segment of a TCP/IPv6 super-packet (pkt, n bytes: an IPv6 header with TCP
 * next, the TCP header at 40, then payload) into out (cap bytes): *off is 0 before the first
 * call and advanced (SIZE_MAX after the last). Each segment carries mss payload bytes (the last
 * fewer), its payload length, its sequence number (RFC 9293), FIN and PSH on the last segment only,
 * CWR on the first only, and a full TCP checksum. Returns its length, 0 when all were written, or
 * -EBADMSG (not such a packet, mss 0, a segment over cap). */
long ovio_tso_next(const uint8_t *pkt, size_t n, size_t mss, size_t *off, uint8_t *out, size_t cap);

/* The same for a UDP/IPv6 super-packet (USO, VIRTIO_NET_HDR_GSO_UDP_L4: an IPv6 header with
 * UDP next, the UDP header at 40, then payload): datagrams of size payload bytes (the last
 * fewer), each with its payload and UDP lengths and a full UDP checksum (0xffff for a zero
 * sum, RFC 8200 §8.1), as the kernel's UDP GSO cuts them (RFC 768). Returns as ovio_tso_next. */
long ovio_uso_next(const uint8_t *pkt, size_t n, size_t size, size_t *off, uint8_t *out,
                   size_t cap);

enum { OVIO_MERGE_MAX = 65535 + 40 };

/* Segments of one flow being merged: the first one's headers, then every payload. */
struct ovio_merge {
	uint8_t pkt[OVIO_MERGE_MAX];
	size_t len; /* 0: empty */
	size_t seg; /* the first segment's payload length: the GSO size */
	unsigned nseg;
	bool closed; /* a shorter or a PSH segment came (or not TCP): nothing more is appended */
	uint32_t next_seq;
};

/* Appends packet pkt (len bytes) to o if it is the next segment of o's flow: TCP/IPv6, no
 * extension headers, flags ACK or ACK PSH, no urgent data, the same addresses, traffic class,
 * flow label, hop limit, ports, ack, window and options, the sequence number that follows,
 * payload no longer than the first's. Returns true if appended. */
bool ovio_merge_add(struct ovio_merge *o, const uint8_t *pkt, size_t len);

/* Starts o with pkt (len bytes, at most OVIO_MERGE_MAX; any packet). */
void ovio_merge_start(struct ovio_merge *o, const uint8_t *pkt, size_t len);

/* Makes o's packet whole for the TUN device and fills h: one packet stays as it came (h all
 * zero); several get their payload length, the pseudo-header's sum in the checksum field and
 * a TCPV6 GSO header with the checksum left to the kernel. o->len stays; empty o afterwards
 * with o->len = 0. */
void ovio_merge_finish(struct ovio_merge *o, struct virtio_net_hdr *h);
