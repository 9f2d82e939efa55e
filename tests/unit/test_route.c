/* The route diff: what to add, replace and delete, against a naive comparison. */
#include "test.h"

#include <stdlib.h>

#include "route.h"

static void mk(struct rt6 *r, unsigned dst, unsigned via)
{
	memset(r, 0, sizeof(*r));
	r->dst.family = PEAK_AFI_IP6;
	r->dst.len = 72;
	r->dst.addr[0] = 0x20;
	r->dst.addr[1] = 0x01;
	r->dst.addr[8] = (uint8_t)dst;
	r->via[15] = (uint8_t)via;
}

static void test_diff_examples(void **state)
{
	(void)state;
	struct rt6 have[3], want[3], add[3], del[3];
	size_t na, nd;
	mk(&have[0], 1, 1);
	mk(&have[1], 2, 1);
	mk(&have[2], 3, 1);
	mk(&want[0], 2, 1); /* unchanged */
	mk(&want[1], 3, 2); /* same destination, new gateway: replaced, not deleted */
	mk(&want[2], 4, 1); /* new */
	rt6_diff(have, 3, want, 3, add, &na, del, &nd);
	assert_int_equal(na, 2);
	assert_int_equal(nd, 1);
	assert_int_equal(add[0].dst.addr[8], 3);
	assert_int_equal(add[0].via[15], 2);
	assert_int_equal(add[1].dst.addr[8], 4);
	assert_int_equal(del[0].dst.addr[8], 1);
	rt6_diff(have, 3, have, 3, add, &na, del, &nd);
	assert_int_equal(na + nd, 0);
	rt6_diff(have, 3, want, 0, add, &na, del, &nd);
	assert_int_equal(nd, 3);
	assert_int_equal(na, 0);
}

static void test_diff_random(void **state)
{
	(void)state;
	uint64_t seed = 77;
	for (int round = 0; round < 500; round++) {
		struct rt6 have[64], want[64], add[64], del[64];
		size_t nh = 0, nw = 0, na, nd;
		int hv[256], wv[256]; /* gateway per destination, 0: none */
		for (int d = 0; d < 256; d++) {
			hv[d] = test_rand(&seed) % 4 == 0 ? 1 + (int)(test_rand(&seed) % 3) : 0;
			wv[d] = test_rand(&seed) % 4 == 0 ? 1 + (int)(test_rand(&seed) % 3) : 0;
			if (nh == 64)
				hv[d] = 0;
			if (nw == 64)
				wv[d] = 0;
			if (hv[d])
				mk(&have[nh++], (unsigned)d, (unsigned)hv[d]);
			if (wv[d])
				mk(&want[nw++], (unsigned)d, (unsigned)wv[d]);
		}
		qsort(have, nh, sizeof(*have), rt6_cmp);
		qsort(want, nw, sizeof(*want), rt6_cmp);
		rt6_diff(have, nh, want, nw, add, &na, del, &nd);
		size_t want_add = 0, want_del = 0;
		for (int d = 0; d < 256; d++) {
			want_add += wv[d] && wv[d] != hv[d];
			want_del += hv[d] && !wv[d];
		}
		assert_int_equal(na, want_add);
		assert_int_equal(nd, want_del);
		for (size_t i = 0; i < na; i++)
			assert_int_equal(add[i].via[15], wv[add[i].dst.addr[8]]);
		for (size_t i = 0; i < nd; i++)
			assert_int_equal(wv[del[i].dst.addr[8]], 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_diff_examples),
	    cmocka_unit_test(test_diff_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
