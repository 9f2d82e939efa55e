/* UDP for the QUIC endpoints: datagrams sent with GSO come back, on a bound socket, coalesced
 * (UDP GRO) with their size, and split one by one on a socket without it; the batched reader
 * (h3_udp_read) cuts two flows' messages into their datagrams, counts them and stops when told. */
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

struct collected {
	size_t n, stop_after;
	uint8_t first[2 * SEGS]; /* each datagram's first byte: its index in its batch, plus 1 */
	size_t len[2 * SEGS];
};

static int collect(void *arg, const struct h3_addr *to, const struct h3_addr *from,
                   const uint8_t *p, size_t n)
{
	struct collected *c = arg;
	(void)to, (void)from;
	assert_true(c->n < 2 * SEGS);
	for (size_t i = 1; i < n; i++)
		assert_int_equal(p[i], p[0]); /* one datagram, not a piece of two */
	c->first[c->n] = p[0];
	c->len[c->n++] = n;
	return c->stop_after && c->n == c->stop_after;
}

static void test_read_splits_and_counts(void **state)
{
	(void)state;
	static uint8_t p[65536];
	struct h3_addr a;
	struct h3_udp_reader rd;
	struct collected c = {0};
	size_t len;
	int fd = bound(&a);
	assert_int_equal(h3_udp_reader_init(&rd, 8), 0);
	int tx1 = send_batch(&a, p, &len), tx2 = send_batch(&a, p, &len);
	for (int i = 0; i < 1000 && c.n < 2 * SEGS; i++)
		if (h3_udp_read(&rd, fd, &a, 64, collect, &c) == 0)
			usleep(1000);
	/* two flows: two GRO messages, each cut into its SEGS datagrams in order */
	assert_int_equal(c.n, 2 * SEGS);
	for (size_t i = 0; i < 2 * SEGS; i++) {
		assert_int_equal(c.first[i], i % SEGS + 1);
		assert_int_equal(c.len[i], i % SEGS == SEGS - 1 ? SEG / 2 : SEG);
	}
	assert_int_equal(rd.st.dgrams, 2 * SEGS);
	assert_int_equal(rd.st.msgs, 2);
	assert_true(rd.st.calls >= 1 && rd.st.calls <= 2);
	assert_int_equal(rd.st.bytes, 2 * len);
	/* a callback's stop ends the read at once */
	int tx3 = send_batch(&a, p, &len);
	c = (struct collected){.stop_after = 3};
	ssize_t r = 0;
	for (int i = 0; i < 1000 && r == 0; i++)
		if ((r = h3_udp_read(&rd, fd, &a, 64, collect, &c)) == 0)
			usleep(1000);
	assert_int_equal(r, 3);
	assert_int_equal(c.n, 3);
	h3_udp_reader_fini(&rd);
	close(tx1);
	close(tx2);
	close(tx3);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gro_coalesces),
	    cmocka_unit_test(test_without_gro_one_each),
	    cmocka_unit_test(test_read_splits_and_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
