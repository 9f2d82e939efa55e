/* The load generator's histogram: percentiles against a sorted list of the same values,
 * bucket bounds, merging. */
#include <stdlib.h>

#include "test.h"

#include "peak/hist.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The nearest-rank percentile of a sorted list. */
static uint64_t exact(const uint64_t *v, size_t n, double p)
{
	size_t rank = (size_t)((p / 100.0) * (double)n);
	if ((double)rank < p / 100.0 * (double)n)
		rank++;
	if (rank < 1)
		rank = 1;
	return v[rank - 1];
}

static void check_against_sorted(uint64_t *v, size_t n)
{
	static struct hist h;
	hist_init(&h);
	for (size_t i = 0; i < n; i++)
		hist_add(&h, v[i]);
	qsort(v, n, sizeof(*v), cmp_u64);
	static const double ps[] = {0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		uint64_t want = exact(v, n, ps[i]), got = hist_percentile(&h, ps[i]);
		uint64_t diff = got > want ? got - want : want - got;
		/* within half a bucket: 1/128 of the value (exact below 128) */
		if (diff * 128 > want) {
			print_error("p%g: got %llu want %llu\n", ps[i], (unsigned long long)got,
			            (unsigned long long)want);
			fail();
		}
	}
	assert_int_equal(hist_percentile(&h, 100), v[n - 1]);
	assert_int_equal(h.count, n);
	assert_int_equal(h.min, v[0]);
}

static void test_uniform_and_skewed(void **state)
{
	(void)state;
	enum { N = 100000 };
	static uint64_t v[N];
	uint64_t seed = 7;
	for (size_t i = 0; i < N; i++)
		v[i] = 1000 + test_rand(&seed) % 1000000; /* 1 us .. 1 ms */
	check_against_sorted(v, N);
	for (size_t i = 0; i < N; i++) { /* log-normal-ish: a long tail over 6 decades */
		unsigned e = (unsigned)(test_rand(&seed) % 30);
		v[i] = (1ull << e) + test_rand(&seed) % (1ull << e);
	}
	check_against_sorted(v, N);
	for (size_t n = 1; n < 50; n++) { /* small counts: the rank arithmetic */
		for (size_t i = 0; i < n; i++)
			v[i] = test_rand(&seed) % 100000;
		check_against_sorted(v, n);
	}
}

static void test_buckets(void **state)
{
	(void)state;
	for (uint64_t v = 0; v < HIST_EXACT; v++)
		assert_int_equal(hist_bucket_low(hist_bucket(v)), v);
	uint64_t seed = 3;
	for (int i = 0; i < 100000; i++) {
		uint64_t v = test_rand(&seed) >> (test_rand(&seed) % 64);
		unsigned b = hist_bucket(v);
		assert_true(b < HIST_BUCKETS);
		assert_true(hist_bucket_low(b) <= v);
		if (b + 1 < HIST_BUCKETS)
			assert_true(v < hist_bucket_low(b + 1));
	}
	assert_int_equal(hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
	for (unsigned b = 1; b < HIST_BUCKETS; b++) /* bounds increase */
		assert_true(hist_bucket_low(b) > hist_bucket_low(b - 1));
}

static void test_merge_and_empty(void **state)
{
	(void)state;
	static struct hist a, b, all;
	hist_init(&a);
	hist_init(&b);
	hist_init(&all);
	assert_int_equal(hist_percentile(&a, 50), 0);
	assert_true(hist_mean(&a) == 0);
	uint64_t seed = 11;
	for (int i = 0; i < 5000; i++) {
		uint64_t v = test_rand(&seed) % 10000000;
		hist_add(i % 3 ? &a : &b, v);
		hist_add(&all, v);
	}
	hist_merge(&a, &b);
	assert_int_equal(a.count, all.count);
	assert_int_equal(a.min, all.min);
	assert_int_equal(a.max, all.max);
	assert_memory_equal(a.bucket, all.bucket, sizeof(a.bucket));
	for (double p = 1; p <= 100; p += 7)
		assert_int_equal(hist_percentile(&a, p), hist_percentile(&all, p));
	hist_init(&a);
	hist_add(&a, 42);
	hist_add(&a, 44);
	assert_true(hist_mean(&a) == 43);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uniform_and_skewed),
	    cmocka_unit_test(test_buckets),
	    cmocka_unit_test(test_merge_and_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
