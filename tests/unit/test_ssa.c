/* SSA: descriptor parsing, every SPEC.md vector, every filter verdict, and compute/check
 * agreement over random inputs. */
#include "test.h"

#include <errno.h>

#include "peak/ssa.h"

#define K "000102030405060708090a0b0c0d0e0f"
#define S "f0e0d0c0b0a090807060504030201000"

static void space(struct ssa_space *sp, const char *desc, const char *pfx)
{
	struct ssa_desc d;
	struct prefix p;
	char err[SSA_ERRLEN] = "";
	int r = ssa_desc_parse(desc, strlen(desc), &d, err, sizeof(err));
	if (r)
		fail_msg("descriptor '%s': %s", desc, err);
	assert_int_equal(prefix_parse(pfx, false, &p), 0);
	r = ssa_space_init(sp, &d, &p, 1, err, sizeof(err));
	if (r)
		fail_msg("space: %s", err);
}

static void addr(const char *s, uint8_t out[16])
{
	uint8_t fam;
	assert_int_equal(addr_parse(s, &fam, out), 0);
}

static void vector(const char *desc, const char *obj, uint8_t r, uint8_t i, uint64_t t,
                   const char *secret, const char *want)
{
	struct ssa_space sp;
	uint8_t src[16], out[16], sec[16];
	char got[ADDR_STRLEN];
	space(&sp, desc, "2001:db8:5::/64");
	addr("2001:db8:aa:bb::1", src);
	struct ssa_req q = {.src = src, .index = i, .replica = r, .time = t};
	if (obj) {
		q.object = (const uint8_t *)obj;
		q.object_len = strlen(obj);
	}
	if (secret) {
		assert_int_equal(ssa_key_parse(secret, 32, sec), 0);
		q.secret = sec;
	}
	assert_int_equal(ssa_compute(&sp, &q, out), 0);
	assert_string_equal(addr_print(PEAK_AFI_IP6, out, got), want);
	assert_int_equal(ssa_check(&sp, src, out, t, q.secret), SSA_PASS);
}

static void test_vectors(void **state)
{
	(void)state;
	vector("v=ssa1; key=" K "; slice=78; select=src; host=src", NULL, 0, 0, 0, NULL,
	       "2001:db8:5:0:a94a:ac01:8d:78fe");
	vector("v=ssa1; key=" K "; slice=78; select=src; host=src; fanout=4", NULL, 0, 3, 0, NULL,
	       "2001:db8:5:0:a5:2379:4097:c03");
	vector("v=ssa1; key=" K "; slice=78; select=obj; host=src", "videos/cat.mp4", 0, 0, 0, NULL,
	       "2001:db8:5:0:a7b:4da0:eb5d:78fb");
	vector("v=ssa1; key=" K "; slice=78; select=obj; host=src", "videos/cat.mp4", 1, 0, 0, NULL,
	       "2001:db8:5:0:e9ef:75ef:c305:fbf5");
	vector("v=ssa1; key=" K "; slice=78; select=hop; host=hop; period=30", NULL, 0, 0,
	       1767225600, S, "2001:db8:5:0:94fa:aa89:ed7e:ea37");
	vector("v=ssa1; key=" K "; slice=78; select=src; host=src; pow=12; nonce=16", NULL, 0, 0, 0,
	       NULL, "2001:db8:5:0:a949:8d:78fe:1541");
}

static void test_spec_checks(void **state)
{
	(void)state;
	struct ssa_space sp;
	uint8_t src[16], dst[16], other[16];
	space(&sp, "v=ssa1; key=" K "; slice=78; select=src; host=src", "2001:db8:5::/64");
	addr("2001:db8:aa:bb::1", src);
	addr("2001:db8:5:0:a94a:ac01:8d:78fe", dst);
	addr("2001:db8:aa:bc::1", other);
	assert_int_equal(ssa_check(&sp, src, dst, 0, NULL), SSA_PASS);
	assert_int_not_equal(ssa_check(&sp, other, dst, 0, NULL), SSA_PASS);
	addr("2001:db8:5::1", dst);
	assert_int_equal(ssa_check(&sp, src, dst, 0, NULL), SSA_REJECT_SLICE);
	addr("2001:db8:7::1", dst);
	assert_int_equal(ssa_check(&sp, src, dst, 0, NULL), SSA_OUTSIDE);
}

static void test_verdicts(void **state)
{
	(void)state;
	struct ssa_space sp;
	uint8_t src[16], dst[16], bad[16];
	addr("2001:db8:aa:bb::1", src);

	/* host: right slice, one host bit flipped */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=src; host=src", "2001:db8:5::/64");
	addr("2001:db8:5:0:a94a:ac01:8d:78fe", dst);
	memcpy(bad, dst, 16);
	bad[15] ^= 1;
	assert_int_equal(ssa_check(&sp, src, bad, 0, NULL), SSA_REJECT_HOST);
	/* slice: a different slice */
	memcpy(bad, dst, 16);
	bad[8] ^= 0x80;
	assert_int_equal(ssa_check(&sp, src, bad, 0, NULL), SSA_REJECT_SLICE);
	/* one changed source bit: the slice no longer matches */
	uint8_t src2[16];
	memcpy(src2, src, 16);
	src2[7] ^= 1;
	assert_int_equal(ssa_check(&sp, src2, dst, 0, NULL), SSA_REJECT_SLICE);
	/* bits below the /64 of the source are not part of the rule */
	src2[7] ^= 1;
	src2[15] ^= 0xff;
	assert_int_equal(ssa_check(&sp, src2, dst, 0, NULL), SSA_PASS);

	/* fanout: index 4 of fanout=4 */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=src; host=src; fanout=4",
	      "2001:db8:5::/64");
	addr("2001:db8:5:0:a5:2379:4097:c03", dst);
	assert_int_equal(ssa_check(&sp, src, dst, 0, NULL), SSA_PASS);
	memcpy(bad, dst, 16);
	bad[15] = 4;
	assert_int_equal(ssa_check(&sp, src, bad, 0, NULL), SSA_REJECT_FANOUT);

	/* pow: the address with the nonce zeroed has too few zero bits */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=src; host=src; pow=12; nonce=16",
	      "2001:db8:5::/64");
	addr("2001:db8:5:0:a949:8d:78fe:1541", dst);
	assert_int_equal(ssa_check(&sp, src, dst, 0, NULL), SSA_PASS);
	memcpy(bad, dst, 16);
	bad[14] = bad[15] = 0;
	assert_int_equal(ssa_check(&sp, src, bad, 0, NULL), SSA_REJECT_POW);

	/* rand: anything inside the prefix conforms */
	space(&sp, "v=ssa1; slice=78", "2001:db8:5::/64");
	addr("2001:db8:5::1", dst);
	assert_int_equal(ssa_check(&sp, src, dst, 0, NULL), SSA_PASS);
}

static void test_hop_window(void **state)
{
	(void)state;
	struct ssa_space sp;
	uint8_t src[16], dst[16], sec[16];
	uint64_t t = 1767225600;
	space(&sp, "v=ssa1; key=" K "; slice=78; select=hop; host=hop; period=30",
	      "2001:db8:5::/64");
	addr("2001:db8:aa:bb::1", src);
	addr("2001:db8:5:0:94fa:aa89:ed7e:ea37", dst);
	ssa_key_parse(S, 32, sec);
	assert_int_equal(ssa_check(&sp, src, dst, t, sec), SSA_PASS);
	assert_int_equal(ssa_check(&sp, src, dst, t + 30, sec), SSA_PASS);     /* e+1: skew 1 */
	assert_int_equal(ssa_check(&sp, src, dst, t - 30, sec), SSA_PASS);     /* e-1 */
	assert_int_not_equal(ssa_check(&sp, src, dst, t + 60, sec), SSA_PASS); /* stale */
	assert_int_equal(ssa_check(&sp, src, dst, t, NULL), -EINVAL);
	uint8_t wrong[16] = {0};
	assert_int_not_equal(ssa_check(&sp, src, dst, t, wrong), SSA_PASS);
	/* skew=0: only the current epoch */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=hop; host=hop; period=30; skew=0",
	      "2001:db8:5::/64");
	assert_int_equal(ssa_check(&sp, src, dst, t, sec), SSA_PASS);
	assert_int_not_equal(ssa_check(&sp, src, dst, t + 30, sec), SSA_PASS);
	/* time 0 with skew: no underflow */
	assert_true(ssa_check(&sp, src, dst, 0, sec) >= 0);
}

static void bad_desc(const char *s, const char *why)
{
	struct ssa_desc d;
	char err[SSA_ERRLEN] = "";
	assert_int_equal(ssa_desc_parse(s, strlen(s), &d, err, sizeof(err)), -EINVAL);
	if (!strstr(err, why))
		fail_msg("'%s': error '%s' lacks '%s'", s, err, why);
}

static void test_desc_errors(void **state)
{
	(void)state;
	bad_desc("slice=78", "missing v=ssa1");
	bad_desc("v=ssa1", "missing slice");
	bad_desc("v=ssa2; slice=78", "unsupported version");
	bad_desc("v=ssa1; slice=129", "bad value '129' for slice");
	bad_desc("v=ssa1; slice=-1", "bad value");
	bad_desc("v=ssa1; slice=78; slice=80", "repeated");
	bad_desc("v=ssa1; slice=78; select=foo", "for select");
	bad_desc("v=ssa1; slice=78; host=obj", "for host");
	bad_desc("v=ssa1; slice=78; fanout=0", "fanout");
	bad_desc("v=ssa1; slice=78; fanout=256", "fanout");
	bad_desc("v=ssa1; slice=78; pow=65; key=" K, "pow");
	/* proof of work above the cap: one spoofed TXT record must not make clients search
	 * for hours (pow=60 kept 'peak resolve --timeout 1000' running past 25 s) */
	bad_desc("v=ssa1; slice=78; pow=29; key=" K, "pow=29 is above the limit of 28 bits");
	bad_desc("v=ssa1; slice=78; pow=60; nonce=64; key=" K, "above the limit of 28 bits");
	bad_desc("v=ssa1; slice=78; pow=64; key=" K, "above the limit of 28 bits");
	bad_desc("v=ssa1; slice=78; nonce=0", "nonce");
	bad_desc("v=ssa1; slice=78; period=0", "period");
	bad_desc("v=ssa1; slice=78; period=86401", "period");
	bad_desc("v=ssa1; slice=78; skew=5", "skew");
	bad_desc("v=ssa1; slice=78; key=00", "32 hex");
	bad_desc("v=ssa1; slice=78; key=000102030405060708090a0b0c0d0e0g", "32 hex");
	bad_desc("v=ssa1; slice=78; select=src", "key required");
	bad_desc("v=ssa1; slice=78; pow=4", "key required");
	bad_desc("v=ssa1; slice", "not name=value");
	bad_desc("v=ssa1; =3; slice=78", "no name");
	bad_desc("V=ssa1; slice=78", "lower case");
	bad_desc("v=ssa1; slice=99999999999", "bad value");
}

static void test_desc_parse_print(void **state)
{
	(void)state;
	struct ssa_desc d, e;
	char out[SSA_DESC_STRLEN];
	const char *s = "  v = ssa1 ;slice=78;select=obj; host=src ; fanout=4; pow=8; nonce=20;"
	                " period=60; skew=2; key=" K "; future=thing;; ";
	assert_int_equal(ssa_desc_parse(s, strlen(s), &d, NULL, 0), 0);
	assert_int_equal(d.slice, 78);
	assert_int_equal(d.select, SSA_OBJ);
	assert_int_equal(d.host, SSA_SRC);
	assert_int_equal(d.fanout, 4);
	assert_int_equal(d.pow, 8);
	assert_int_equal(d.nonce, 20);
	assert_int_equal(d.period, 60);
	assert_int_equal(d.skew, 2);
	assert_true(d.has_key);
	int n = ssa_desc_print(&d, out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(ssa_desc_parse(out, (size_t)n, &e, NULL, 0), 0);
	assert_memory_equal(&d, &e, sizeof(d));
	assert_int_equal(ssa_desc_print(&d, out, 10), -ENOSPC);
	/* defaults */
	assert_int_equal(ssa_desc_parse("v=ssa1;slice=64", 15, &d, NULL, 0), 0);
	assert_int_equal(d.select, SSA_RAND);
	assert_int_equal(d.fanout, 1);
	assert_int_equal(d.period, 30);
	assert_int_equal(d.skew, 1);
	assert_int_equal(d.nonce, 32);
	/* key in upper case */
	const char *u = "v=ssa1; slice=78; select=src; key=000102030405060708090A0B0C0D0E0F";
	assert_int_equal(ssa_desc_parse(u, strlen(u), &d, NULL, 0), 0);
	assert_int_equal(d.key[15], 0x0f);
	/* the largest proof of work allowed */
	const char *m = "v=ssa1; slice=78; select=src; pow=28; nonce=64; key=" K;
	assert_int_equal(ssa_desc_parse(m, strlen(m), &d, NULL, 0), 0);
	assert_int_equal(d.pow, SSA_MAX_POW_BITS);
	assert_int_equal(d.nonce, 64);
	char err[SSA_ERRLEN] = "";
	assert_int_equal(ssa_desc_set(&d, "pow", "29", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "limit of 28 bits"));
}

static void test_space_errors(void **state)
{
	(void)state;
	struct ssa_desc d;
	struct ssa_space sp;
	struct prefix p[3];
	char err[SSA_ERRLEN];
	const char *s = "v=ssa1; slice=78; select=src; key=" K;
	ssa_desc_parse(s, strlen(s), &d, NULL, 0);
	prefix_parse("2001:db8:5::/64", false, &p[0]);
	prefix_parse("2001:db8:6::/48", false, &p[1]);
	assert_int_equal(ssa_space_init(&sp, &d, p, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unequal length"));
	prefix_parse("2001:db8:5::/64", false, &p[1]);
	assert_int_equal(ssa_space_init(&sp, &d, p, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "repeated"));
	prefix_parse("10.0.0.0/8", false, &p[1]);
	assert_int_equal(ssa_space_init(&sp, &d, p, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not IPv6"));
	assert_int_equal(ssa_space_init(&sp, &d, p, 0, err, sizeof(err)), -EINVAL);
	d.slice = 60;
	assert_int_equal(ssa_space_init(&sp, &d, p, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "shorter"));
	d.slice = 100; /* 36 slice bits */
	assert_int_equal(ssa_space_init(&sp, &d, p, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "2^32"));
	/* host field too small for fanout + nonce */
	s = "v=ssa1; slice=96; select=src; fanout=2; pow=1; nonce=30; key=" K;
	ssa_desc_parse(s, strlen(s), &d, NULL, 0);
	prefix_parse("2001:db8:5::/64", false, &p[0]);
	assert_int_equal(ssa_space_init(&sp, &d, p, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no room"));
	/* two prefixes: 2 * 2^14 slices */
	s = "v=ssa1; slice=78; select=src; host=src; key=" K;
	ssa_desc_parse(s, strlen(s), &d, NULL, 0);
	prefix_parse("2001:db8:6::/64", false, &p[1]);
	assert_int_equal(ssa_space_init(&sp, &d, p, 2, err, sizeof(err)), 0);
	assert_true(sp.nslices == 32768);
	assert_int_equal(sp.hb, 50);
}

static void test_compute_errors(void **state)
{
	(void)state;
	struct ssa_space sp;
	uint8_t src[16] = {0x20, 0x01}, out[16];
	struct ssa_req q = {.src = src};
	space(&sp, "v=ssa1; key=" K "; slice=78; select=obj; host=src", "2001:db8:5::/64");
	assert_int_equal(ssa_compute(&sp, &q, out), -EINVAL); /* no object */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=hop; host=src", "2001:db8:5::/64");
	assert_int_equal(ssa_compute(&sp, &q, out), -EINVAL); /* no secret */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=src; host=src; fanout=2",
	      "2001:db8:5::/64");
	q.index = 2;
	assert_int_equal(ssa_compute(&sp, &q, out), -EINVAL); /* index >= fanout */
	/* a 1-bit nonce cannot meet 20 bits of work (1 in 2^20 chance per nonce: fixed key) */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=src; host=src; pow=20; nonce=1",
	      "2001:db8:5::/64");
	q.index = 0;
	assert_int_equal(ssa_compute(&sp, &q, out), -EAGAIN);
}

static unsigned stop_calls;

static bool stop_after_3(void *arg)
{
	(void)arg;
	return ++stop_calls >= 3;
}

/* The proof-of-work search asks pow_stop every SSA_POW_CHECK_NONCES nonces and gives up
 * with -ETIMEDOUT when told to: the client's deadline holds inside the search. */
static void test_pow_stop(void **state)
{
	(void)state;
	struct ssa_space sp;
	uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0xbb, [15] = 1}, out[16], a[16];
	struct ssa_req q = {.src = src, .pow_stop = stop_after_3};
	/* 28 bits: about 2^28 nonces; three checks are 3 * 2^14 nonces, (almost) surely short */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=src; host=src; pow=28; nonce=32",
	      "2001:db8:5::/64");
	stop_calls = 0;
	int r = ssa_compute(&sp, &q, out);
	if (r == 0) { /* found within the first 3 * 2^14 nonces: then no stop was needed */
		assert_true(stop_calls < 3);
	} else {
		assert_int_equal(r, -ETIMEDOUT);
		assert_int_equal(stop_calls, 3);
	}
	/* a search that finds its nonce before the first check is not stopped */
	space(&sp, "v=ssa1; key=" K "; slice=78; select=src; host=src; pow=12; nonce=16",
	      "2001:db8:5::/64");
	stop_calls = 2;
	assert_int_equal(ssa_compute(&sp, &q, out), 0);
	q.pow_stop = NULL;
	assert_int_equal(ssa_compute(&sp, &q, a), 0);
	assert_memory_equal(out, a, 16);
}

/* Every rule combination: what compute gives, check passes; a random other destination in
 * the same prefix is rejected unless both rules are rand. */
static void test_random_agreement(void **state)
{
	(void)state;
	uint64_t seed = 0xfeedULL;
	static const char *sel[] = {"rand", "src", "obj", "hop"};
	static const char *host[] = {"rand", "src", "hop"};
	uint8_t sec[16];
	ssa_key_parse(S, 32, sec);
	for (int round = 0; round < 400; round++) {
		char desc[200];
		const char *se = sel[test_rand(&seed) % 4], *ho = host[test_rand(&seed) % 3];
		unsigned fan = 1 + (unsigned)(test_rand(&seed) % 3) * 3;
		unsigned pw = (unsigned)(test_rand(&seed) % 3) * 3;
		unsigned slice = 64 + (unsigned)(test_rand(&seed) % 20);
		snprintf(desc, sizeof(desc),
		         "v=ssa1; key=" K "; slice=%u; select=%s; host=%s; fanout=%u; pow=%u; "
		         "nonce=16",
		         slice, se, ho, fan, pw);
		struct ssa_space sp;
		space(&sp, desc, "2001:db8:5::/64");
		uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8}, out[16];
		for (int i = 4; i < 16; i++)
			src[i] = (uint8_t)test_rand(&seed);
		char obj[16];
		snprintf(obj, sizeof(obj), "o%u", (unsigned)(test_rand(&seed) % 1000));
		uint64_t t = 1700000000 + test_rand(&seed) % 100000000;
		struct ssa_req q = {.src = src,
		                    .index = (uint8_t)(test_rand(&seed) % fan),
		                    .object = (const uint8_t *)obj,
		                    .object_len = strlen(obj),
		                    .time = t,
		                    .secret = sec,
		                    .rand = {test_rand(&seed), test_rand(&seed), test_rand(&seed)}};
		assert_int_equal(ssa_compute(&sp, &q, out), 0);
		assert_int_equal(ssa_check(&sp, src, out, t, sec), SSA_PASS);
		/* A random address passes by chance with probability 2^-(bits the filter
		 * verifies): select=rand/obj verify no slice bits, host=rand no host bits
		 * (SPEC.md 7). Test rejection only where at least 16 bits are verified. */
		unsigned verified = sp.w ? sp.d.pow : 0;
		if (!strcmp(se, "src") || !strcmp(se, "hop"))
			verified += sp.s;
		if (strcmp(ho, "rand"))
			verified += sp.hb;
		if (verified < 16)
			continue;
		uint8_t other[16];
		memcpy(other, out, 16);
		for (int i = 8; i < 16; i++)
			other[i] = (uint8_t)test_rand(&seed);
		if (fan > 1)
			other[15 - (pw ? 2 : 0)] = 0; /* keep the index legal */
		int v = ssa_check(&sp, src, other, t, sec);
		/* a random address passes only by a 2^-12-or-smaller chance; with this seed none */
		assert_int_not_equal(v, SSA_PASS);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),          cmocka_unit_test(test_spec_checks),
	    cmocka_unit_test(test_verdicts),         cmocka_unit_test(test_hop_window),
	    cmocka_unit_test(test_desc_errors),      cmocka_unit_test(test_desc_parse_print),
	    cmocka_unit_test(test_space_errors),     cmocka_unit_test(test_compute_errors),
	    cmocka_unit_test(test_random_agreement), cmocka_unit_test(test_pow_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
