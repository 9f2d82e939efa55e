/* Regression: the QUIC sockets kept the kernel's default buffers (net.core.rmem_default,
 * 208 KiB), which hold three 64 KiB UDP GRO aggregates. A sender's burst within its
 * congestion window (300 KB and more on the bench's veth bed) overflowed the receiving
 * backend's or ingress's socket: Udp6RcvbufErrors rose on a clean path, each drop 44
 * datagrams at once, and the PEAK-direct video connection's qlog showed 619 packets lost of
 * 12,619 sent. Now h3_udp_bind and h3_udp_connect ask for H3_UDP_BUF_BYTES each way. Here a
 * burst of BURST GSO sends of 44 x 1472 bytes (2 MiB) reaches a bound socket that is not read
 * until the burst is over: every datagram must be there. */
#include "../unit/test.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/h3/conn.h"
#include "../../src/h3/udp.h"

enum { SEG = H3_MAX_UDP_PAYLOAD, SEGS = H3_GSO_SEGS, BURST = 32 };

static void test_burst_all_queued(void **state)
{
	(void)state;
	static uint8_t p[SEGS * SEG], buf[65536];
	struct h3_addr a, local, from, to;
	size_t seg = 0, got = 0, want = (size_t)BURST * SEGS * SEG;
	assert_int_equal(h3_addr_parse("[::1]:0", &a), 0);
	int rx = h3_udp_bind(&a);
	assert_true(rx >= 0);
	a.len = sizeof(a.ss);
	assert_int_equal(getsockname(rx, (struct sockaddr *)&a.ss, &a.len), 0);
	int tx = h3_udp_connect(&a, &local);
	assert_true(tx >= 0);
	memset(p, 0x5a, sizeof(p));
	/* a send the sender's own buffer refuses (-EAGAIN) is a loss too */
	for (int i = 0; i < BURST; i++)
		assert_int_equal(h3_udp_send(tx, NULL, &a, p, sizeof(p), SEG), 0);
	/* loopback delivers within the send: all of it is queued (or dropped) by now */
	for (;;) {
		ssize_t n = h3_udp_recv(rx, buf, sizeof(buf), &from, &to, &a, &seg);
		if (n == -EAGAIN)
			break;
		assert_true(n > 0);
		got += (size_t)n;
	}
	assert_int_equal(got, want);
	close(tx);
	close(rx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_all_queued),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
