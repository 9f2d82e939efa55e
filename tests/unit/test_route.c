/* The route diff: what to add, replace and delete, against a naive comparison. */
#include "test.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
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

/* Appends one message of a route dump's answer at *off: a PEAK route to 2001:db8:0:0:N::/72
 * in the main table, or NLMSG_DONE. */
static void put_msg(char *buf, size_t *off, bool done, uint8_t n, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf + *off);
	nlh->nlmsg_type = done ? NLMSG_DONE : RTM_NEWROUTE;
	nlh->nlmsg_flags = (uint16_t)(NLM_F_MULTI | flags);
	nlh->nlmsg_seq = 7;
	if (done) {
		int *zero = mnl_nlmsg_put_extra_header(nlh, sizeof(int));
		*zero = 0;
	} else {
		struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
		uint8_t dst[16] = {0x20, 0x01, 0x0d, 0xb8, [8] = n};
		rtm->rtm_family = AF_INET6;
		rtm->rtm_dst_len = 72;
		rtm->rtm_table = RT_TABLE_PEAK_MAIN;
		rtm->rtm_protocol = RTPROT_PEAK;
		rtm->rtm_type = RTN_UNICAST;
		mnl_attr_put(nlh, RTA_DST, 16, dst);
	}
	*off += NLMSG_ALIGN(nlh->nlmsg_len);
}

/* A dump the kernel flags NLM_F_DUMP_INTR (the table changed while it was read) is not
 * taken as complete: the feed says -EINTR, on a route message or on NLMSG_DONE. */
static void test_dump_feed(void **state)
{
	(void)state;
	char buf[4096];
	size_t off = 0;
	struct rt6_dump_ctx d = {.table = RT_TABLE_PEAK_MAIN};
	put_msg(buf, &off, false, 1, 0);
	put_msg(buf, &off, false, 2, 0);
	assert_int_equal(rt6_dump_feed(&d, buf, off, 7, 0), 0); /* more to come */
	assert_int_equal(d.n, 2);
	off = 0;
	put_msg(buf, &off, false, 3, 0);
	put_msg(buf, &off, true, 0, 0);
	assert_int_equal(rt6_dump_feed(&d, buf, off, 7, 0), 1); /* complete */
	assert_int_equal(d.n, 3);
	assert_int_equal(d.v[2].dst.addr[8], 3);
	assert_int_equal(d.v[2].dst.len, 72);
	free(d.v);

	d = (struct rt6_dump_ctx){.table = RT_TABLE_PEAK_MAIN};
	off = 0;
	put_msg(buf, &off, false, 1, 0);
	put_msg(buf, &off, false, 2, NLM_F_DUMP_INTR);
	assert_int_equal(rt6_dump_feed(&d, buf, off, 7, 0), -EINTR);
	off = 0;
	put_msg(buf, &off, true, 0, NLM_F_DUMP_INTR);
	assert_int_equal(rt6_dump_feed(&d, buf, off, 7, 0), -EINTR);
	free(d.v);

	/* another table's routes are skipped; a wrong sequence number is an error */
	d = (struct rt6_dump_ctx){.table = RT_TABLE_PEAK_LOCAL};
	off = 0;
	put_msg(buf, &off, false, 1, 0);
	put_msg(buf, &off, true, 0, 0);
	assert_int_equal(rt6_dump_feed(&d, buf, off, 7, 0), 1);
	assert_int_equal(d.n, 0);
	assert_int_equal(rt6_dump_feed(&d, buf, off, 8, 0), -EPROTO);
	free(d.v);
}

static int tries_left_intr;
static unsigned tries;

static int fake_dump(void *arg)
{
	(void)arg;
	tries++;
	return tries_left_intr-- > 0 ? -EINTR : 0;
}

static int failing_dump(void *arg)
{
	(void)arg;
	tries++;
	return -ENOBUFS;
}

/* Interrupted dumps are read again, a bounded number of times; other errors are not. */
static void test_dump_retry(void **state)
{
	(void)state;
	tries = 0;
	tries_left_intr = 2;
	assert_int_equal(nl_dump_retry(fake_dump, NULL), 0);
	assert_int_equal(tries, 3);
	tries = 0;
	tries_left_intr = 1000;
	assert_int_equal(nl_dump_retry(fake_dump, NULL), -EINTR);
	assert_int_equal(tries, NL_DUMP_TRIES);
	tries = 0;
	assert_int_equal(nl_dump_retry(failing_dump, NULL), -ENOBUFS);
	assert_int_equal(tries, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_diff_examples),
	    cmocka_unit_test(test_diff_random),
	    cmocka_unit_test(test_dump_feed),
	    cmocka_unit_test(test_dump_retry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
