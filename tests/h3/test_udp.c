/* UDP for the QUIC endpoints: datagrams sent with GSO come back, on a bound socket, coalesced
 * (UDP GRO) with their size, and split one by one on a socket without it. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "udp.h"

enum { SEG = 1200, SEGS = 10 };

/* Sends SEGS datagrams of SEG bytes (the last SEG / 2) in one GSO send from a socket
 * connected to the bound socket, and returns that socket (to close). */
static int send_batch(const struct h3_addr *to, uint8_t *p, size_t *len)
{
	struct h3_addr local;
	int fd = h3_udp_connect(to, &local);
	assert_true(fd >= 0);
	*len = (SEGS - 1) * SEG + SEG / 2;
	for (size_t i = 0; i < *len; i++)
		p[i] = (uint8_t)(i / SEG + 1);
	assert_int_equal(h3_udp_send(fd, NULL, to, p, *len, SEG), 0);
	return fd;
}

static int bound(struct h3_addr *a)
{
	assert_int_equal(h3_addr_parse("[::1]:0", a), 0);
	int fd = h3_udp_bind(a);
	assert_true(fd >= 0);
	a->len = sizeof(a->ss);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a->ss, &a->len), 0);
	return fd;
}

static void test_gro_coalesces(void **state)
{
	(void)state;
	static uint8_t p[65536], buf[65536];
	struct h3_addr a, from, to;
	size_t len, seg = 99;
	int fd = bound(&a);
	int tx = send_batch(&a, p, &len);
	ssize_t n = -EAGAIN;
	for (int i = 0; i < 1000 && n == -EAGAIN; i++) {
		n = h3_udp_recv(fd, buf, sizeof(buf), &from, &to, &a, &seg);
		if (n == -EAGAIN)
			usleep(1000);
	}
	/* the whole batch in one read, and each datagram's size */
	assert_int_equal(n, (ssize_t)len);
	assert_int_equal(seg, SEG);
	assert_memory_equal(buf, p, len);
	assert_int_equal(h3_udp_recv(fd, buf, sizeof(buf), &from, &to, &a, &seg), -EAGAIN);
	close(tx);
	close(fd);
}

static void test_without_gro_one_each(void **state)
{
	(void)state;
	static uint8_t p[65536], buf[65536];
	struct h3_addr a, from, to;
	size_t len, seg = 99;
	setenv("PEAK_H3_NO_GRO", "1", 1);
	int fd = bound(&a);
	unsetenv("PEAK_H3_NO_GRO");
	int tx = send_batch(&a, p, &len);
	size_t got = 0;
	for (int i = 0; i < 1000 && got < len; i++) {
		ssize_t n = h3_udp_recv(fd, buf, sizeof(buf), &from, &to, &a, &seg);
		if (n == -EAGAIN) {
			usleep(1000);
			continue;
		}
		assert_int_equal(n, got + SEG <= len ? SEG : len - got);
		assert_int_equal(seg, 0); /* a single datagram */
		assert_memory_equal(buf, p + got, (size_t)n);
		got += (size_t)n;
	}
	assert_int_equal(got, len);
	close(tx);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gro_coalesces),
	    cmocka_unit_test(test_without_gro_one_each),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
