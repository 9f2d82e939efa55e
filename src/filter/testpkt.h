#pragma once
/* Packets for BPF_PROG_TEST_RUN, shared by the filter's fixture tests and its benchmark. */
#include <stdint.h>
#include <string.h>

enum { TESTPKT_TCP_LEN = 14 + 40 + 20 };

/* Writes an Ethernet + IPv6 + TCP segment (20-byte header, no payload, hop limit 64) with
 * the given ports and flags into p[TESTPKT_TCP_LEN]; returns its length. */
static inline size_t testpkt_tcp(uint8_t *p, const uint8_t src[16], const uint8_t dst[16],
                                 uint16_t sport, uint16_t dport, uint8_t flags)
{
	memset(p, 0, TESTPKT_TCP_LEN);
	p[12] = 0x86; /* ethertype IPv6 */
	p[13] = 0xdd;
	p[14] = 0x60;
	p[19] = 20; /* payload length */
	p[20] = 6;  /* TCP */
	p[21] = 64;
	memcpy(p + 22, src, 16);
	memcpy(p + 38, dst, 16);
	p[54] = (uint8_t)(sport >> 8);
	p[55] = (uint8_t)sport;
	p[56] = (uint8_t)(dport >> 8);
	p[57] = (uint8_t)dport;
	p[66] = 0x50; /* data offset: 5 words */
	p[67] = flags;
	return TESTPKT_TCP_LEN;
}
