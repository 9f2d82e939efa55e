/* The connection-ID map against a naive list (STYLE.md rule 16): random adds, deletes and
 * lookups with a fixed seed, IDs of every legal length, a table small enough to wrap and to
 * fill, so backward-shift deletion is exercised across the end of the array. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cidmap.h"

enum { NAIVE_MAX = 4096 };

struct naive {
	uint8_t id[NAIVE_MAX][H3_CID_MAX];
	uint8_t len[NAIVE_MAX];
	void *val[NAIVE_MAX];
	size_t n;
};

static void *naive_lookup(const struct naive *v, const uint8_t *id, size_t len)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->len[i] == len && !memcmp(v->id[i], id, len))
			return v->val[i];
	return NULL;
}

static void naive_del(struct naive *v, const uint8_t *id, size_t len)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->len[i] == len && !memcmp(v->id[i], id, len)) {
			v->n--;
			memcpy(v->id[i], v->id[v->n], H3_CID_MAX);
			v->len[i] = v->len[v->n];
			v->val[i] = v->val[v->n];
			return;
		}
}

static uint64_t rng = 16;

static uint32_t rnd(void)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(rng >> 33);
}

/* IDs from a small alphabet so that lookups of absent and present IDs both happen often */
static size_t random_id(uint8_t id[static H3_CID_MAX])
{
	size_t len = rnd() % 4 == 0 ? rnd() % (H3_CID_MAX + 1) : 8;
	for (size_t i = 0; i < len; i++)
		id[i] = (uint8_t)(rnd() % 3);
	return len;
}

static void test_differential(void **state)
{
	static struct naive v;
	static const uint8_t key[16] = {1, 2, 3};
	struct h3_cidmap m;
	(void)state;
	memset(&v, 0, sizeof(v));
	assert_int_equal(h3_cidmap_init(&m, 64, key), 0);
	for (int round = 0; round < 200000; round++) {
		uint8_t id[H3_CID_MAX];
		size_t len = random_id(id);
		void *val = (void *)(uintptr_t)(round + 1);
		switch (rnd() % 3) {
		case 0: {
			int r = h3_cidmap_add(&m, id, len, val);
			if (naive_lookup(&v, id, len)) {
				assert_int_equal(r, -EEXIST);
			} else if (v.n + 1 > m.cap / 4 * 3) {
				assert_int_equal(r, -ENOSPC);
			} else {
				assert_int_equal(r, 0);
				memcpy(v.id[v.n], id, len);
				v.len[v.n] = (uint8_t)len;
				v.val[v.n++] = val;
			}
			break;
		}
		case 1: {
			int want = naive_lookup(&v, id, len) ? 0 : -ENOENT;
			assert_int_equal(h3_cidmap_del(&m, id, len), want);
			naive_del(&v, id, len);
			break;
		}
		default:
			assert_ptr_equal(h3_cidmap_lookup(&m, id, len), naive_lookup(&v, id, len));
		}
		assert_int_equal(m.n, v.n);
	}
	/* everything still there is found, then everything goes */
	for (size_t i = v.n; i-- > 0;) {
		assert_ptr_equal(h3_cidmap_lookup(&m, v.id[i], v.len[i]), v.val[i]);
		assert_int_equal(h3_cidmap_del(&m, v.id[i], v.len[i]), 0);
	}
	assert_int_equal(m.n, 0);
	for (size_t i = 0; i < m.cap; i++)
		assert_null(m.slot[i].val);
	h3_cidmap_fini(&m);
}

static void test_limits(void **state)
{
	static const uint8_t key[16] = {0};
	uint8_t id[H3_CID_MAX + 1] = {0};
	struct h3_cidmap m;
	int x;
	(void)state;
	assert_int_equal(h3_cidmap_init(&m, 1, key), 0);
	assert_int_equal(m.cap, 8);
	assert_int_equal(h3_cidmap_add(&m, id, H3_CID_MAX + 1, &x), -EINVAL);
	assert_int_equal(h3_cidmap_add(&m, id, 4, NULL), -EINVAL);
	assert_null(h3_cidmap_lookup(&m, id, H3_CID_MAX + 1));
	assert_int_equal(h3_cidmap_del(&m, id, H3_CID_MAX + 1), -ENOENT);
	/* a zero-length ID is legal (RFC 9000 §5.1) */
	assert_int_equal(h3_cidmap_add(&m, id, 0, &x), 0);
	assert_ptr_equal(h3_cidmap_lookup(&m, id, 0), &x);
	h3_cidmap_fini(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_differential),
	    cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
