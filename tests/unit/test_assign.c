/* Slice assignment: balance, minimal movement, route aggregation, a randomized recount,
 * and a comparison with hashed schemes (rendezvous and Maglev). */
#include "test.h"

#include <errno.h>
#include <stdlib.h>

#include "peak/assign.h"
#include "peak/siphash.h"

/* Recounts the owner array and checks every invariant; returns the snapshot's counts. */
static void check_invariants(const struct assign *a)
{
	uint32_t *cnt = calloc(a->nep ? a->nep : 1, sizeof(*cnt));
	uint64_t wsum = 0;
	for (uint32_t i = 0; i < a->nslices; i++) {
		assert_true(a->owner[i] >= 0 && (unsigned)a->owner[i] < a->nep);
		assert_true(a->ep[a->owner[i]].live);
		cnt[a->owner[i]]++;
	}
	for (unsigned i = 0; i < a->nep; i++)
		if (a->ep[i].live)
			wsum += a->ep[i].weight;
	for (unsigned i = 0; i < a->nep; i++) {
		assert_int_equal(cnt[i], a->ep[i].count);
		assert_int_equal(a->ep[i].count, a->ep[i].target);
		if (!a->ep[i].live) {
			assert_int_equal(cnt[i], 0);
			continue;
		}
		/* within one slice of the exact proportional share */
		double exact = (double)a->nslices * a->ep[i].weight / (double)wsum;
		assert_true(cnt[i] + 1.0 > exact && cnt[i] - 1.0 < exact);
	}
	free(cnt);
}

/* Slices whose owner differs between two snapshots. */
static uint32_t diff(const int32_t *x, const int32_t *y, uint32_t n)
{
	uint32_t d = 0;
	for (uint32_t i = 0; i < n; i++)
		d += x[i] != y[i];
	return d;
}

static void test_initial(void **state)
{
	(void)state;
	struct assign a;
	uint32_t w[7] = {1, 1, 1, 1, 1, 1, 1};
	assert_int_equal(assign_init(&a, 16384, 14, w, 7), 0);
	check_invariants(&a);
	uint32_t mx = 0, mn = UINT32_MAX;
	for (unsigned i = 0; i < 7; i++) {
		mx = a.ep[i].count > mx ? a.ep[i].count : mx;
		mn = a.ep[i].count < mn ? a.ep[i].count : mn;
		/* one contiguous range aggregates into at most 2 * 14 blocks */
		assert_true(assign_routes(&a, i) <= 28);
	}
	assert_true(mx - mn <= 1);
	assign_fini(&a);
	/* powers of two: one route each */
	uint32_t w4[4] = {1, 1, 1, 1};
	assert_int_equal(assign_init(&a, 16384, 14, w4, 4), 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(assign_routes(&a, i), 1);
	/* deterministic */
	struct assign b;
	assert_int_equal(assign_init(&b, 16384, 14, w4, 4), 0);
	assert_memory_equal(a.owner, b.owner, 16384 * sizeof(*a.owner));
	assign_fini(&a);
	assign_fini(&b);
	/* weighted */
	uint32_t ww[3] = {1, 2, 5};
	assert_int_equal(assign_init(&a, 1000, 10, ww, 3), 0);
	check_invariants(&a);
	assert_int_equal(a.ep[0].count, 125);
	assert_int_equal(a.ep[1].count, 250);
	assert_int_equal(a.ep[2].count, 625);
	assign_fini(&a);
}

static void test_bad_input(void **state)
{
	(void)state;
	struct assign a;
	uint32_t w[2] = {0, 0};
	assert_int_equal(assign_init(&a, 100, 7, w, 2), -EINVAL); /* no weight */
	w[0] = ASSIGN_MAX_WEIGHT + 1;
	assert_int_equal(assign_init(&a, 100, 7, w, 2), -EINVAL);
	w[0] = 1;
	assert_int_equal(assign_init(&a, 0, 7, w, 2), -EINVAL);
	assert_int_equal(assign_init(&a, ASSIGN_MAX_SLICES + 1u, 25, w, 2), -EINVAL);
	assert_int_equal(assign_init(&a, 100, 7, w, 2), 0);
	assert_int_equal(assign_del(&a, 1, NULL), 0);       /* weight 0: holds nothing */
	assert_int_equal(assign_del(&a, 1, NULL), -EINVAL); /* already gone */
	assert_int_equal(assign_del(&a, 0, NULL), -EINVAL); /* the last with weight */
	assert_int_equal(assign_del(&a, 9, NULL), -EINVAL);
	assert_int_equal(assign_set_weight(&a, 0, 0, NULL), -EINVAL);
	check_invariants(&a);
	assert_int_equal(a.ep[0].count, 100);
	assign_fini(&a);
}

static void test_join_leave_minimal(void **state)
{
	(void)state;
	struct assign a;
	uint32_t w[10];
	for (int i = 0; i < 10; i++)
		w[i] = 1;
	assert_int_equal(assign_init(&a, 16384, 14, w, 10), 0);
	int32_t *before = malloc(16384 * sizeof(*before));
	for (int round = 0; round < 20; round++) {
		uint32_t moved;
		memcpy(before, a.owner, 16384 * sizeof(*before));
		int slot = assign_add(&a, 1, &moved);
		assert_true(slot >= 0);
		check_invariants(&a);
		/* a join moves exactly what the newcomer receives */
		assert_int_equal(moved, a.ep[slot].count);
		assert_int_equal(diff(before, a.owner, 16384), moved);
		unsigned live = 0;
		for (unsigned i = 0; i < a.nep; i++)
			live += a.ep[i].live;
		assert_true(moved <= 16384 / live + 1);

		/* a leave moves exactly the leaver's slices */
		unsigned victim = (unsigned)(round * 7) % a.nep;
		while (!a.ep[victim].live)
			victim = (victim + 1) % a.nep;
		uint32_t held = a.ep[victim].count;
		memcpy(before, a.owner, 16384 * sizeof(*before));
		assert_int_equal(assign_del(&a, victim, &moved), 0);
		check_invariants(&a);
		assert_int_equal(moved, held);
		assert_int_equal(diff(before, a.owner, 16384), held);
		for (uint32_t i = 0; i < 16384; i++)
			if (before[i] != a.owner[i])
				assert_int_equal(before[i], (int32_t)victim);
	}
	free(before);
	assign_fini(&a);
}

/* Several joins at once (a scale-up): balanced, and only the newcomers' shares move, each
 * slice from its old owner straight to a newcomer. */
static void test_join_many(void **state)
{
	(void)state;
	struct assign a;
	uint32_t w[100], nw[10];
	for (int i = 0; i < 100; i++)
		w[i] = 1;
	for (int i = 0; i < 10; i++)
		nw[i] = 1 + (i & 1);
	assert_int_equal(assign_init(&a, 16384, 14, w, 100), 0);
	int32_t *before = malloc(16384 * sizeof(*before));
	memcpy(before, a.owner, 16384 * sizeof(*before));
	uint32_t moved = 0, got = 0;
	assert_int_equal(assign_add_many(&a, nw, 0, &moved), -EINVAL);
	int first = assign_add_many(&a, nw, 10, &moved);
	assert_int_equal(first, 100);
	assert_int_equal(a.nep, 110);
	check_invariants(&a);
	for (unsigned k = 100; k < 110; k++)
		got += a.ep[k].count;
	assert_int_equal(moved, got);
	assert_int_equal(diff(before, a.owner, 16384), moved);
	for (uint32_t i = 0; i < 16384; i++)
		if (before[i] != a.owner[i])
			assert_true(a.owner[i] >= 100);
	free(before);
	assign_fini(&a);
}

/* Random joins, leaves and weight changes: after each, a recount matches, the balance holds
 * and the slices that moved are exactly the owners' losses. */
static void test_random_recount(void **state)
{
	(void)state;
	uint64_t seed = 0xa55a5aa5ULL;
	struct assign a;
	uint32_t w[5] = {1, 2, 3, 1, 1};
	const uint32_t T = 4096;
	assert_int_equal(assign_init(&a, T, 12, w, 5), 0);
	int32_t *before = malloc(T * sizeof(*before));
	uint32_t *oldc = malloc(4096 * sizeof(*oldc));
	for (int op = 0; op < 300; op++) {
		memcpy(before, a.owner, T * sizeof(*before));
		for (unsigned i = 0; i < a.nep; i++)
			oldc[i] = a.ep[i].count;
		unsigned live = 0;
		for (unsigned i = 0; i < a.nep; i++)
			live += a.ep[i].live;
		uint32_t moved = 0;
		unsigned kind = (unsigned)(test_rand(&seed) % 3);
		unsigned slot = (unsigned)(test_rand(&seed) % a.nep);
		while (!a.ep[slot].live)
			slot = (slot + 1) % a.nep;
		if (kind == 0 || live < 3) {
			assert_true(assign_add(&a, 1 + (uint32_t)(test_rand(&seed) % 5), &moved) >=
			            0);
		} else if (kind == 1) {
			assert_int_equal(assign_del(&a, slot, &moved), 0);
		} else {
			assert_int_equal(assign_set_weight(&a, slot,
			                                   1 + (uint32_t)(test_rand(&seed) % 5),
			                                   &moved),
			                 0);
		}
		check_invariants(&a);
		uint64_t losses = 0;
		for (unsigned i = 0; i < a.nep; i++) {
			uint32_t o = i < a.nep - (kind == 0 || live < 3) ? oldc[i] : 0;
			if (o > a.ep[i].count)
				losses += o - a.ep[i].count;
		}
		assert_int_equal(moved, losses);
		assert_int_equal(diff(before, a.owner, T), moved);
	}
	free(before);
	free(oldc);
	assign_fini(&a);
}

static void test_blocks_prefixes(void **state)
{
	(void)state;
	struct assign a;
	uint32_t w[3] = {1, 1, 1};
	struct ssa_desc d;
	struct ssa_space sp;
	struct prefix p[2];
	const char *s = "v=ssa1; slice=70";
	ssa_desc_parse(s, strlen(s), &d, NULL, 0);
	prefix_parse("2001:db8:5::/64", false, &p[0]);
	prefix_parse("2001:db8:6::/64", false, &p[1]);
	assert_int_equal(ssa_space_init(&sp, &d, p, 2, NULL, 0), 0);
	assert_int_equal(assign_init(&a, (uint32_t)sp.nslices, sp.s, w, 3), 0);
	for (unsigned e = 0; e < 3; e++) {
		struct assign_block b[64];
		size_t n = assign_blocks(&a, e, b, 64);
		assert_true(n <= 64);
		/* the blocks' prefixes are exactly the endpoint's slices, already minimal: the
		 * generic aggregation of its single slices gives the same list */
		struct prefix from_blocks[64], singles[128];
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			assert_int_equal(assign_block_prefix(&sp, &b[i], &from_blocks[i]), 0);
		for (uint32_t g = 0; g < a.nslices; g++)
			if (a.owner[g] == (int32_t)e) {
				struct assign_block one = {g, 0};
				assign_block_prefix(&sp, &one, &singles[k++]);
			}
		size_t m = prefix_aggregate(singles, k);
		assert_int_equal(m, n);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(prefix_cmp(&singles[i], &from_blocks[i]), 0);
	}
	/* a block never crosses from one prefix into the next */
	struct assign_block bad = {0, 7};
	struct prefix out;
	assert_int_equal(assign_block_prefix(&sp, &bad, &out), -EINVAL);
	assign_fini(&a);
}

/* assign_blocks_all (one pass, used for the controller's maps) against assign_blocks per
 * slot, on maps churned by random weight changes, removals and joins (fixed seed). */
static void test_blocks_all(void **state)
{
	(void)state;
	struct assign a;
	uint32_t w[7] = {1, 2, 3, 1, 5, 1, 2};
	unsigned seed = 18;
	assert_int_equal(assign_init(&a, 4096, 10, w, 7), 0);
	for (int round = 0; round < 40; round++) {
		struct assign_block *all, one[4096];
		int32_t *slot_of;
		size_t n;
		assert_int_equal(assign_blocks_all(&a, &all, &slot_of, &n), 0);
		for (unsigned s = 0; s < a.nep; s++) {
			size_t m = assign_blocks(&a, s, one, 4096), k = 0;
			for (size_t i = 0; i < n; i++) {
				if (slot_of[i] != (int32_t)s)
					continue;
				assert_true(k < m);
				assert_int_equal(all[i].start, one[k].start);
				assert_int_equal(all[i].log2, one[k].log2);
				k++;
			}
			assert_int_equal(k, m);
		}
		uint64_t covered = 0;
		for (size_t i = 0; i < n; i++)
			covered += 1u << all[i].log2;
		assert_int_equal(covered, 4096);
		free(all);
		free(slot_of);
		unsigned s = (unsigned)rand_r(&seed) % a.nep;
		if (round % 5 == 4)
			assign_add(&a, 1 + (uint32_t)rand_r(&seed) % 4, NULL);
		else if (round % 7 == 6 && a.ep[s].live)
			assign_del(&a, s, NULL);
		else if (a.ep[s].live)
			assign_set_weight(&a, s, 1 + (uint32_t)rand_r(&seed) % 9, NULL);
	}
	assign_fini(&a);
}

/* Regression: removing an endpoint that holds no slices left the free pool empty, and
 * pool_merge passed its NULL array to qsort (undefined behaviour; UBSan flagged it). */
static void test_regress_empty_pool_qsort(void **state)
{
	(void)state;
	struct assign a;
	uint32_t w[3] = {1, 0, 1};
	uint32_t moved = 99;
	assert_int_equal(assign_init(&a, 64, 6, w, 3), 0);
	assert_int_equal(assign_del(&a, 1, &moved), 0);
	assert_int_equal(moved, 0);
	assert_int_equal(assign_set_weight(&a, 0, 1, &moved), 0); /* unchanged weight */
	assert_int_equal(moved, 0);
	check_invariants(&a);
	assign_fini(&a);
}

/* ---- hashed schemes, for comparison ---- */

static const uint8_t hkey[16] = {9, 8, 7};

static uint64_t h2(uint32_t a, uint32_t b)
{
	uint32_t m[2] = {a, b};
	return siphash24(hkey, m, sizeof(m));
}

/* Rendezvous (highest random weight): each slice goes to the endpoint id hashing highest. */
static void rendezvous(int32_t *owner, uint32_t T, const uint32_t *ids, unsigned n)
{
	for (uint32_t g = 0; g < T; g++) {
		uint64_t best = 0;
		for (unsigned i = 0; i < n; i++) {
			uint64_t h = h2(g, ids[i]);
			if (i == 0 || h > best) {
				best = h;
				owner[g] = (int32_t)ids[i];
			}
		}
	}
}

/* Maglev (Eisenbud et al., NSDI 2016) with a prime table of M >= T entries; slice g uses
 * entry g. */
static void maglev(int32_t *owner, uint32_t T, uint32_t M, const uint32_t *ids, unsigned n)
{
	int32_t *table = malloc(M * sizeof(*table));
	uint32_t *next = calloc(n, sizeof(*next));
	for (uint32_t j = 0; j < M; j++)
		table[j] = -1;
	uint32_t filled = 0;
	while (filled < M) {
		for (unsigned i = 0; i < n && filled < M; i++) {
			uint32_t off = (uint32_t)(h2(ids[i], 1) % M);
			uint32_t skip = (uint32_t)(h2(ids[i], 2) % (M - 1)) + 1;
			uint32_t c;
			do {
				c = (uint32_t)((off + (uint64_t)next[i] * skip) % M);
				next[i]++;
			} while (table[c] >= 0);
			table[c] = (int32_t)ids[i];
			filled++;
		}
	}
	for (uint32_t g = 0; g < T; g++)
		owner[g] = table[g];
	free(table);
	free(next);
}

static double maxmin(const int32_t *owner, uint32_t T, const uint32_t *ids, unsigned n)
{
	uint32_t mx = 0, mn = UINT32_MAX;
	for (unsigned i = 0; i < n; i++) {
		uint32_t c = 0;
		for (uint32_t g = 0; g < T; g++)
			c += owner[g] == (int32_t)ids[i];
		mx = c > mx ? c : mx;
		mn = c < mn ? c : mn;
	}
	return mn ? (double)mx / mn : 1e9;
}

static void test_against_hashing(void **state)
{
	(void)state;
	const uint32_t T = 16384, M = 16411; /* 16411 is prime */
	const unsigned N = 100;
	uint32_t ids[101], w[101];
	for (unsigned i = 0; i <= N; i++) {
		ids[i] = 1000 + i;
		w[i] = 1;
	}
	int32_t *x = malloc(T * sizeof(*x)), *y = malloc(T * sizeof(*y));

	struct assign a;
	assign_init(&a, T, 14, w, N);
	uint32_t ours_moved;
	double ours_bal;
	uint32_t mx = 0, mn = UINT32_MAX;
	for (unsigned i = 0; i < N; i++) {
		mx = a.ep[i].count > mx ? a.ep[i].count : mx;
		mn = a.ep[i].count < mn ? a.ep[i].count : mn;
	}
	ours_bal = (double)mx / mn;
	assign_add(&a, 1, &ours_moved);
	assign_fini(&a);

	rendezvous(x, T, ids, N);
	double rv_bal = maxmin(x, T, ids, N);
	rendezvous(y, T, ids, N + 1);
	uint32_t rv_moved = diff(x, y, T);

	maglev(x, T, M, ids, N);
	double mg_bal = maxmin(x, T, ids, N);
	maglev(y, T, M, ids, N + 1);
	uint32_t mg_moved = diff(x, y, T);

	print_message("# %u slices, %u -> %u endpoints: ours max/min %.3f moved %u; rendezvous "
	              "%.3f moved %u; maglev %.3f moved %u\n",
	              T, N, N + 1, ours_bal, ours_moved, rv_bal, rv_moved, mg_bal, mg_moved);
	/* ours: counts within 1 of each other, and a join moves only the newcomer's share */
	assert_true(mx - mn <= 1);
	assert_true(ours_moved <= T / (N + 1) + 1);
	/* each hashed scheme either balances worse (by 10% or more) or moves more (1.5x) */
	assert_true(rv_bal > ours_bal * 1.1 || rv_moved > ours_moved * 1.5);
	assert_true(mg_bal > ours_bal * 1.1 || mg_moved > ours_moved * 1.5);
	free(x);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_initial),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_join_leave_minimal),
	    cmocka_unit_test(test_join_many),
	    cmocka_unit_test(test_random_recount),
	    cmocka_unit_test(test_blocks_prefixes),
	    cmocka_unit_test(test_blocks_all),
	    cmocka_unit_test(test_against_hashing),
	    cmocka_unit_test(test_regress_empty_pool_qsort),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
