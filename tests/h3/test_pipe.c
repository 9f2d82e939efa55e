/* The ingress's byte queue against a naive flat buffer: random writes, hand-outs and
 * acknowledgements with a fixed seed; every vector handed out must hold the bytes at its
 * offset, and chunks must be freed as they are acknowledged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pipe.h"

enum { TOTAL = 4 * 1024 * 1024 };

static uint8_t byte_at(uint64_t off)
{
	return (uint8_t)(off * 2654435761u >> 13);
}

static size_t chunks(const struct h3_pipe *p)
{
	size_t n = 0;
	for (const struct h3_pipe_chunk *c = p->head; c; c = c->next)
		n++;
	return n;
}

static void test_random_against_flat(void **state)
{
	(void)state;
	struct h3_pipe p = {0};
	static uint8_t in[70000];
	uint64_t written = 0, sent = 0, acked = 0;
	srand(7);
	while (acked < TOTAL) {
		int op = rand() % 3;
		if (op == 0 && written < TOTAL) {
			size_t n = (size_t)rand() % sizeof(in);
			if (n > TOTAL - written)
				n = TOTAL - written;
			for (size_t i = 0; i < n; i++)
				in[i] = byte_at(written + i);
			assert_int_equal(h3_pipe_write(&p, in, n), 0);
			written += n;
		} else if (op == 1) {
			nghttp3_vec v[4];
			size_t max = (size_t)rand() % 50000 + 1;
			size_t k = h3_pipe_peek(&p, v, 1 + (size_t)rand() % 4, max);
			size_t got = 0;
			for (size_t i = 0; i < k; i++) {
				for (size_t j = 0; j < v[i].len; j++)
					assert_int_equal(v[i].base[j], byte_at(sent + got + j));
				got += v[i].len;
			}
			assert_true(got <= max);
			assert_true(got <= written - sent);
			sent += got;
		} else if (sent > acked) {
			uint64_t n = (uint64_t)rand() % (sent - acked) + 1;
			h3_pipe_ack(&p, n);
			acked += n;
		}
		assert_int_equal(h3_pipe_unsent(&p), written - sent);
		assert_int_equal(h3_pipe_held(&p), written - acked);
		/* what is held, rounded up to whole chunks, plus the chunk being filled */
		assert_true(chunks(&p) <= (written - acked) / H3_PIPE_CHUNK + 2);
	}
	assert_true(chunks(&p) <= 1);
	h3_pipe_free(&p);
	assert_null(p.head);
	assert_int_equal(h3_pipe_held(&p), 0);
}

static void test_free_drops_everything(void **state)
{
	(void)state;
	struct h3_pipe p = {0};
	static uint8_t buf[100000];
	assert_int_equal(h3_pipe_write(&p, buf, sizeof(buf)), 0);
	assert_int_equal(chunks(&p), (sizeof(buf) + H3_PIPE_CHUNK - 1) / H3_PIPE_CHUNK);
	h3_pipe_free(&p);
	assert_null(p.head);
	assert_int_equal(h3_pipe_unsent(&p), 0);
	/* and it can be written again */
	assert_int_equal(h3_pipe_write(&p, buf, 10), 0);
	nghttp3_vec v[2];
	assert_int_equal(h3_pipe_peek(&p, v, 2, 100), 1);
	assert_int_equal(v[0].len, 10);
	h3_pipe_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_against_flat),
	    cmocka_unit_test(test_free_drops_everything),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
