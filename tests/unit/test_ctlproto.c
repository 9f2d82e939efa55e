/* The control-line grammar (include/peak/ctlproto.h), the hello tag and the controller's
 * proof (include/peak/ctlauth.h): every kind round trips, and each class of bad input is refused
 * (signs, overflow, leading zeros, bad hex, extra or missing spaces, long tokens and lines,
 * control bytes, unaligned or oversized blocks). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#include "peak/ctlauth.h"
#include "peak/ctlproto.h"

static int parse(const char *s, struct ctl_msg *m)
{
	return ctl_parse(s, strlen(s), m);
}

/* Parses s, writes the message back and expects the same bytes. */
static void round_trip(const char *s)
{
	struct ctl_msg m;
	char out[CTL_LINE_MAX + 1];
	assert_int_equal(parse(s, &m), 0);
	int n = ctl_write(&m, out, sizeof(out));
	assert_int_equal(n, (int)strlen(s) + 1);
	assert_memory_equal(out, s, strlen(s));
	assert_int_equal(out[n - 1], '\n');
}

static void test_good(void **state)
{
	(void)state;
	struct ctl_msg m;
	assert_int_equal(parse("health api.svc.example. pod-a down", &m), 0);
	assert_int_equal(m.kind, CTL_HEALTH);
	assert_string_equal(m.svc, "api.svc.example.");
	assert_string_equal(m.id, "pod-a");
	assert_false(m.up);
	assert_int_equal(parse("load api.svc.example. pod-a 18446744073709551615 0", &m), 0);
	assert_true(m.conns == UINT64_MAX);
	assert_false(m.has_app);
	assert_int_equal(parse("load api.svc.example. pod-a 1 2 3", &m), 0); /* the app figure */
	assert_true(m.has_app);
	assert_int_equal(m.app, 3);
	assert_false(m.has_sat);
	/* the saturation figures, with and without the app figure */
	assert_int_equal(parse("load api.svc.example. pod-a 1 2 sat 5 6 4294967295", &m), 0);
	assert_true(m.has_sat && !m.has_app);
	assert_true(m.throttled_ns == 5 && m.queued == 6 && m.backlog == UINT32_MAX);
	assert_int_equal(parse("load api.svc.example. pod-a 1 2 3 sat 4 5 6", &m), 0);
	assert_true(m.has_sat && m.has_app && m.app == 3 && m.throttled_ns == 4);
	assert_int_equal(parse("weight a.example p 1000000", &m), 0);
	assert_int_equal(m.weight, 1000000);
	assert_int_equal(parse("ep pod-a 0/6 64/4 16777215/0", &m), 0);
	assert_int_equal(m.nblocks, 3);
	assert_int_equal(m.blocks[1].start, 64);
	assert_int_equal(m.blocks[1].log2, 4);
	assert_int_equal(parse("hello node1", &m), 0);
	assert_false(m.has_tag);
	assert_false(m.has_nonce);
	assert_int_equal(
	    parse("hello node1 00112233445566778899aabbccddeeff00112233445566778899aabb"
	          "ccddeeff 0f0e0d0c0b0a09080706050403020100",
	          &m),
	    0);
	assert_true(m.has_tag && m.has_nonce);
	assert_int_equal(m.tag[1], 0x11);
	assert_int_equal(m.nonce[0], 0x0f);
	assert_int_equal(m.nonce[15], 0x00);
	assert_int_equal(parse("welcome 00112233445566778899aabbccddeeff00112233445566778899aabbcc"
	                       "ddeeff",
	                       &m),
	                 0);
	assert_int_equal(m.kind, CTL_WELCOME);
	assert_int_equal(m.tag[31], 0xff);
	const char *lines[] = {
	    "challenge 000102030405060708090a0b0c0d0e0f",
	    "hello node1",
	    "hello node1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	    "hello node1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
	    "000102030405060708090a0b0c0d0e0f",
	    "welcome 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	    "health api.svc.example. pod-a up",
	    "load api.svc.example. pod-a 0 123456789",
	    "load api.svc.example. pod-a 0 123456789 0",
	    "load api.svc.example. pod-a 7 1 18446744073709551615",
	    "load api.svc.example. pod-a 7 1 sat 0 0 0",
	    "load api.svc.example. pod-a 7 1 9 sat 18446744073709551615 4294967295 4096",
	    "weight api.svc.example. pod-a 0",
	    "map api.svc.example.",
	    "ep pod-a",
	    "ep pod-a 0/24",
	    "end",
	    "status",
	    "reload",
	    "ok",
	    "error: no endpoint x of service y",
	    "handover api.svc.example. n1p1 n2p3 5000 0/6",
	    "handover api.svc.example. n1p1 n2p3 600000 64/4 16777215/0",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		round_trip(lines[i]);
	/* a handover: the slices move from OLD to NEW, forwarding for MS */
	assert_int_equal(parse("handover api.svc.example. n1p1 n2p3 2500 128/7 0/0", &m), 0);
	assert_int_equal(m.kind, CTL_HANDOVER);
	assert_string_equal(m.svc, "api.svc.example.");
	assert_string_equal(m.id, "n1p1");
	assert_string_equal(m.to, "n2p3");
	assert_int_equal(m.ms, 2500);
	assert_int_equal(m.nblocks, 2);
	assert_int_equal(m.blocks[0].start, 128);
	assert_int_equal(m.blocks[0].log2, 7);
}

static void test_bad(void **state)
{
	(void)state;
	struct ctl_msg m;
	const char *bad[] = {
	    "",
	    " ",
	    "health",
	    "health api.svc.example. pod-a",
	    "health api.svc.example. pod-a sideways",
	    "health api.svc.example. pod-a down ",
	    " health api.svc.example. pod-a down",
	    "health  api.svc.example. pod-a down",
	    "health api.svc.example. pod-a down extra",
	    "health api..example. pod-a down",
	    "health api.svc.example. pod\"a down",
	    "health api.svc.example. pod\\a down",
	    "health api.svc.example. pod\ta down",
	    "HEALTH api.svc.example. pod-a down",
	    "load api.svc.example. pod-a -1 -1",
	    "load api.svc.example. pod-a +1 1",
	    "load api.svc.example. pod-a 01 1",
	    "load api.svc.example. pod-a 18446744073709551616 0",
	    "load api.svc.example. pod-a 99999999999999999999 0",
	    "load api.svc.example. pod-a 1",
	    "load api.svc.example. pod-a 1 2 3 4",
	    "load api.svc.example. pod-a 1 2 -3",
	    "load api.svc.example. pod-a 1 2 03",
	    "load api.svc.example. pod-a 1 2 ",
	    "load api.svc.example. pod-a 1 2 18446744073709551616",
	    "load api.svc.example. pod-a 0x10 2",
	    "load api.svc.example. pod-a 1 2 sat",
	    "load api.svc.example. pod-a 1 2 sat 1 2",
	    "load api.svc.example. pod-a 1 2 sat 1 2 3 4",
	    "load api.svc.example. pod-a 1 2 sat 1 2 3 sat 1 2 3",
	    "load api.svc.example. pod-a 1 2 sat 1 4294967296 3",
	    "load api.svc.example. pod-a 1 2 sat 1 2 -3",
	    "load api.svc.example. pod-a 1 2 satx 1 2 3",
	    "load api.svc.example. pod-a 1 2 SAT 1 2 3",
	    "load api.svc.example. pod-a 1 2 3 4 sat 1 2 3",
	    "load api.svc.example. pod-a 1 2 sat 1 2 3 ",
	    "weight api.svc.example. pod-a 1000001",
	    "weight api.svc.example. pod-a -0",
	    "ep pod-a 1/1",
	    "ep pod-a 0/25",
	    "ep pod-a 16777216/0",
	    "ep pod-a 0/",
	    "ep pod-a /3",
	    "ep pod-a 0/3/1",
	    "ep pod-a 4294967296/0",
	    "challenge 000102030405060708090A0B0C0D0E0F",
	    "challenge 000102030405060708090a0b0c0d0e",
	    "challenge 000102030405060708090a0b0c0d0e0f00",
	    "hello node1 0011",
	    "hello node1 zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	    "hello",
	    /* the agent's nonce: only after a tag, exactly 32 lowercase hex digits, last */
	    "hello node1 000102030405060708090a0b0c0d0e0f",
	    "hello node1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
	    "000102030405060708090A0B0C0D0E0F",
	    "hello node1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
	    "000102030405060708090a0b0c0d0e",
	    "hello node1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
	    "000102030405060708090a0b0c0d0e0f00",
	    "hello node1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
	    "000102030405060708090a0b0c0d0e0f ",
	    "hello node1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff  "
	    "000102030405060708090a0b0c0d0e0f",
	    "hello node1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
	    "000102030405060708090a0b0c0d0e0f 00",
	    /* the controller's proof: one tag, nothing else */
	    "welcome",
	    "welcome ",
	    "welcome 0011",
	    "welcome 00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
	    "welcome 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00",
	    "welcome 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
	    "000102030405060708090a0b0c0d0e0f",
	    "welcome  00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	    "end now",
	    "ok ok",
	    "error:",
	    "error: ",
	    "error:text",
	    "unknown",
	    /* handover: a deadline in 1..600000, two different endpoints, 1 to 64 blocks */
	    "handover api.svc.example. a b 1000",
	    "handover api.svc.example. a b 1000 ",
	    "handover api.svc.example. a b 0 0/1",
	    "handover api.svc.example. a b 600001 0/1",
	    "handover api.svc.example. a b 01 0/1",
	    "handover api.svc.example. a a 1000 0/1",
	    "handover api.svc.example. a b 1000 1/1",
	    "handover api.svc.example. a b 1000 0/25",
	    "handover api.svc.example. a 1000 0/1",
	    "handover api..example. a b 1000 0/1",
	    "handover api.svc.example. a b  1000 0/1",
	    "handover api.svc.example. a\\b c 1000 0/1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &m) != -EBADMSG)
			fail_msg("accepted: '%s'", bad[i]);
		assert_int_equal(m.kind, CTL_NONE);
	}
	/* NUL inside, an id of CTL_ID_MAX bytes, more blocks than one line holds */
	assert_int_equal(ctl_parse("end\0", 4, &m), -EBADMSG);
	char line[CTL_LINE_MAX * 2];
	snprintf(line, sizeof(line), "hello %0*d", CTL_ID_MAX, 0);
	assert_int_equal(parse(line, &m), -EBADMSG);
	snprintf(line, sizeof(line), "hello %0*d", CTL_ID_MAX - 1, 0);
	assert_int_equal(parse(line, &m), 0);
	size_t n = (size_t)snprintf(line, sizeof(line), "ep a");
	for (int i = 0; i <= CTL_EP_BLOCKS_MAX; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %d/0", i);
	assert_int_equal(parse(line, &m), -EBADMSG);
	n = (size_t)snprintf(line, sizeof(line), "handover s.example. a b 9");
	for (int i = 0; i <= CTL_EP_BLOCKS_MAX; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %d/0", i);
	assert_int_equal(parse(line, &m), -EBADMSG);
	memset(line, 'a', sizeof(line));
	memcpy(line, "error: ", 7);
	assert_int_equal(ctl_parse(line, CTL_LINE_MAX, &m), -EBADMSG);
}

/* A refused line says what it should have been: the operator reads it in dns-ctl's reply. */
static void test_why(void **state)
{
	(void)state;
	struct ctl_msg m;
	assert_int_equal(parse("frobnicate", &m), -EBADMSG);
	assert_string_equal(m.why, "unknown command");
	assert_int_equal(parse("weight api.svc.example. w1 -3", &m), -EBADMSG);
	assert_int_equal(m.kind, CTL_NONE);
	assert_non_null(strstr(m.why, "0..1000000"));
	assert_int_equal(parse("health api.svc.example. w1 sideways", &m), -EBADMSG);
	assert_non_null(strstr(m.why, "up|down"));
	assert_int_equal(parse("status now", &m), -EBADMSG);
	assert_string_equal(m.why, "expected 'status' alone");
	assert_int_equal(parse("status", &m), 0);
	assert_null(m.why);
}

static void test_write_refuses(void **state)
{
	(void)state;
	char out[CTL_LINE_MAX + 1];
	struct ctl_msg m = {.kind = CTL_HEALTH};
	strcpy(m.svc, "api.svc.example.");
	strcpy(m.id, "pod a");
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL); /* space in an id */
	strcpy(m.id, "pod-a");
	assert_int_equal(ctl_write(&m, out, 10), -EMSGSIZE);
	assert_true(ctl_write(&m, out, sizeof(out)) > 0);
	m = (struct ctl_msg){.kind = CTL_EP, .nblocks = 1, .blocks = {{3, 1}}};
	strcpy(m.id, "pod-a");
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL); /* unaligned */
	m = (struct ctl_msg){.kind = CTL_WEIGHT, .weight = CTL_WEIGHT_MAX + 1};
	strcpy(m.svc, "a.example.");
	strcpy(m.id, "p");
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	m = (struct ctl_msg){.kind = CTL_ERROR};
	strcpy(m.text, "bad\nline");
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	m = (struct ctl_msg){.kind = CTL_HELLO, .has_nonce = true}; /* a nonce needs the tag */
	strcpy(m.id, "node1");
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	m.has_tag = true;
	assert_true(ctl_write(&m, out, sizeof(out)) > 0);
	m = (struct ctl_msg){.kind = (enum ctl_kind)99};
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	/* a handover the parser would refuse: no blocks, no deadline, the same two endpoints */
	m = (struct ctl_msg){.kind = CTL_HANDOVER, .ms = 10, .nblocks = 1};
	strcpy(m.svc, "a.example.");
	strcpy(m.id, "p");
	strcpy(m.to, "q");
	assert_true(ctl_write(&m, out, sizeof(out)) > 0);
	m.nblocks = 0;
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	m.nblocks = 1;
	m.ms = 0;
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	m.ms = CTL_HANDOVER_MS_MAX + 1;
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	m.ms = 10;
	strcpy(m.to, "p");
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	m.to[0] = '\0';
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
}

/* Endpoints added at run time: add, del, batch. */
static void test_runtime_lines(void **state)
{
	(void)state;
	struct ctl_msg m;
	round_trip("add api.svc.example. pod-e 2001:db8:100:2::e 1 node2");
	round_trip("add api.svc.example. pod-e 2001:db8::1 0");
	round_trip("del api.svc.example. pod-e");
	round_trip("batch 1");
	round_trip("batch 1000000");
	assert_int_equal(parse("add api.svc.example. pod-e 2001:db8::1 7 n1", &m), 0);
	assert_int_equal(m.kind, CTL_ADD);
	assert_int_equal(m.weight, 7);
	assert_string_equal(m.node, "n1");
	assert_int_equal(m.addr[0], 0x20);
	assert_int_equal(m.addr[15], 1);
	assert_int_equal(parse("batch 12", &m), 0);
	assert_int_equal(m.count, 12);
	/* ADDRESS in any form inet_pton takes, written back in RFC 5952's (the fuzz target's
	 * one exception to lines writing back byte for byte) */
	char out[CTL_LINE_MAX + 1];
	assert_int_equal(parse("add a.example. p 2001:d001:db8:b8:100:2::e 1 status", &m), 0);
	assert_int_equal(ctl_write(&m, out, sizeof(out)), 53);
	assert_string_equal(out, "add a.example. p 2001:d001:db8:b8:100:2:0:e 1 status\n");
	const char *bad[] = {
	    "add api.svc.example. pod-e 2001:db8::zz 1",
	    "add api.svc.example. pod-e 192.0.2.1 1",
	    "add api.svc.example. pod-e 2001:db8::1",
	    "add api.svc.example. pod-e 2001:db8::1 1000001",
	    "add api.svc.example. pod-e 2001:db8::1 01",
	    "add api.svc.example. pod-e 2001:db8::1 1 node1 extra",
	    "add api.svc.example. pod-e 2001:db8::1 1 ",
	    "del api.svc.example.",
	    "del api.svc.example. pod-e x",
	    "batch 0",
	    "batch 1000001",
	    "batch",
	    "batch -1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], &m), -EBADMSG);
		assert_non_null(m.why);
	}
	assert_int_equal(parse("add api.svc.example. pod-e 2001:db8::zz 1", &m), -EBADMSG);
	assert_non_null(strstr(m.why, "add SERVICE ENDPOINT ADDRESS WEIGHT"));
	m = (struct ctl_msg){.kind = CTL_BATCH, .count = 0};
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
	m = (struct ctl_msg){.kind = CTL_ADD, .weight = 1, .svc = "a.example.", .id = "p"};
	memcpy(m.node, "bad node", 9);
	assert_int_equal(ctl_write(&m, out, sizeof(out)), -EINVAL);
}

static void test_split(void **state)
{
	(void)state;
	size_t ll;
	const uint8_t two[] = "end\nok\n";
	assert_int_equal(ctl_line_split(two, 7, &ll), 4);
	assert_int_equal(ll, 3);
	assert_int_equal(ctl_line_split(two, 3, &ll), 0);
	uint8_t big[CTL_LINE_MAX + 1];
	memset(big, 'a', sizeof(big));
	assert_int_equal(ctl_line_split(big, CTL_LINE_MAX - 1, &ll), 0);
	assert_int_equal(ctl_line_split(big, CTL_LINE_MAX, &ll), -EMSGSIZE);
	big[CTL_LINE_MAX - 1] = '\n';
	assert_int_equal(ctl_line_split(big, sizeof(big), &ll), CTL_LINE_MAX);
	assert_int_equal(ll, CTL_LINE_MAX - 1);
}

/* The tag against one computed independently by Python's hmac:
 * hmac.new(bytes(range(16)), b"peak-ctl-hello-v1\0" + bytes(range(16, 32)) + b"node1",
 * "sha256").hexdigest(). */
static void test_tag(void **state)
{
	(void)state;
	struct ctlauth_key k = {.len = 16};
	uint8_t nonce[CTL_NONCE_LEN], tag[CTL_TAG_LEN];
	for (int i = 0; i < 16; i++) {
		k.k[i] = (uint8_t)i;
		nonce[i] = (uint8_t)(16 + i);
	}
	ctlauth_tag(&k, nonce, "node1", tag);
	assert_true(ctlauth_check(&k, nonce, "node1", tag));
	assert_false(ctlauth_check(&k, nonce, "node2", tag));
	tag[31] ^= 1;
	assert_false(ctlauth_check(&k, nonce, "node1", tag));
	tag[31] ^= 1;
	nonce[0] ^= 1;
	assert_false(ctlauth_check(&k, nonce, "node1", tag));
	char hex[2 * CTL_TAG_LEN + 1];
	for (int i = 0; i < CTL_TAG_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", tag[i]);
	assert_string_equal(hex,
	                    "d44d524c9acdcf2b655c3cc696f79055563569c5aa785cc3f6fc641af9369f6f");
}

/* The controller's proof, against Python's hmac (key 00..0f, the agent's nonce 20..2f, the
 * challenge 10..1f): hmac.new(bytes(range(16)), b"peak-ctl-welcome-v1\0" +
 * bytes(range(32, 48)) + bytes(range(16, 32)) + b"node1", "sha256").hexdigest(). It is never
 * the hello tag of the same bytes (another domain). */
static void test_proof(void **state)
{
	(void)state;
	struct ctlauth_key k = {.len = 16}, other = {.len = 16};
	uint8_t cn[CTL_NONCE_LEN], an[CTL_NONCE_LEN], proof[CTL_TAG_LEN], tag[CTL_TAG_LEN];
	for (int i = 0; i < 16; i++) {
		k.k[i] = (uint8_t)i;
		other.k[i] = (uint8_t)(i + 1);
		cn[i] = (uint8_t)(16 + i);
		an[i] = (uint8_t)(32 + i);
	}
	ctlauth_proof(&k, an, cn, "node1", proof);
	char hex[2 * CTL_TAG_LEN + 1];
	for (int i = 0; i < CTL_TAG_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", proof[i]);
	assert_string_equal(hex,
	                    "c59d695f92ea86c13d5fa3888c5f9c3286a147869e738799ff755a5bc6d0fc6e");
	assert_true(ctlauth_proof_check(&k, an, cn, "node1", proof));
	assert_false(ctlauth_proof_check(&other, an, cn, "node1", proof));
	assert_false(ctlauth_proof_check(&k, an, cn, "node2", proof));
	assert_false(ctlauth_proof_check(&k, cn, an, "node1", proof)); /* nonces swapped */
	proof[0] ^= 0x80;
	assert_false(ctlauth_proof_check(&k, an, cn, "node1", proof));
	proof[0] ^= 0x80;
	an[15] ^= 1;
	assert_false(ctlauth_proof_check(&k, an, cn, "node1", proof));
	an[15] ^= 1;
	ctlauth_tag(&k, an, "node1", tag); /* a hello tag is no proof */
	assert_false(ctlauth_proof_check(&k, an, cn, "node1", tag));
}

static void test_key_file(void **state)
{
	(void)state;
	char path[] = "/tmp/peak-key-XXXXXX", err[CTLAUTH_ERRLEN];
	struct ctlauth_key k;
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789abcdef\n", 17), 17);
	close(fd);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(ctlauth_key_load(path, &k, err, sizeof(err)), 0);
	assert_int_equal(k.len, 16);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(ctlauth_key_load(path, &k, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "chmod 600"));
	assert_null(strstr(err, "0123456789abcdef"));
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(ctlauth_key_load(path, &k, err, sizeof(err)), 0);
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "short\n", 6), 6);
	close(fd);
	assert_int_equal(ctlauth_key_load(path, &k, err, sizeof(err)), -EINVAL);
	assert_int_equal(ctlauth_key_load("/tmp", &k, err, sizeof(err)), -EINVAL);
	unlink(path);
	assert_int_equal(ctlauth_key_load(path, &k, err, sizeof(err)), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),          cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_write_refuses), cmocka_unit_test(test_split),
	    cmocka_unit_test(test_tag),           cmocka_unit_test(test_key_file),
	    cmocka_unit_test(test_why),           cmocka_unit_test(test_proof),
	    cmocka_unit_test(test_runtime_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
