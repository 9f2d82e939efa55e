/* Regression: the anycast slave's health check kept its own copy of the "heard lately" rule,
 * `!last_rx_ms || now - last_rx_ms > quiet_ms`, without the `last_rx_ms >= now` guard of the
 * two relay choices (slave_resil.c relay_usable, gateway.c nat_relay_usable). A member whose
 * last packet is stamped after `now` (now read before the packet came) made the unsigned
 * difference wrap to about 2^64 ms: the member read as silent for ages, so unhealthy. New
 * flows were refused it, live flows moved off it, and with it the only member the packet got
 * -EHOSTUNREACH (ICMPv6 address unreachable to the host) although the member had just
 * spoken. (The other direction cannot happen: a stamp in the past only reads as older.)
 * With today's callers `now` is read on the loop thread right before the check, so the wrap
 * was latent; the rule now lives once, gw_peer_heard_within (gateway.h), used by all three.
 *
 * The real slave_anycast.c runs here against a stand-in gateway and resiliency slave whose
 * member was heard 2 s "after" now (and, as controls, one heard 1 s ago and one silent). */
#include "../unit/test.h"

#include <errno.h>
#include <stdlib.h>

#include "dht.h"
#include "gateway.h"
#include "peak/util.h"
#include "slave_anycast.h"
#include "slave_resil.h"

static int64_t heard_offset_ms; /* the members' last_rx_ms relative to the clock; 0: never */
static bool never_heard;
static uint32_t sent_to = UINT32_MAX; /* the member cookie the anycast slave sent to */

int gw_peer_info(struct ov_slave *s, uint32_t cookie, struct gw_peer_info *info)
{
	(void)s;
	memset(info, 0, sizeof(*info));
	info->name = cookie ? "c" : "b";
	info->has_ep = true;
	info->via = GW_DIRECT;
	info->last_rx_ms = never_heard ? 0 : (uint64_t)((int64_t)peak_mono_ms() + heard_offset_ms);
	return cookie < 2 ? 0 : -ENOENT;
}

int resil_peer(struct ov_slave *s, uint32_t cookie, bool *down, uint32_t *srtt_us)
{
	(void)s;
	*down = false;
	*srtt_us = 100 + cookie; /* b is nearer */
	return 0;
}

/* no prefix here takes its members from the DHT: these are never called */
void dht_set_anycast_cb(struct ov_slave *s, dht_anycast_fn fn, void *arg)
{
	(void)s, (void)fn, (void)arg;
}

int dht_anycast_lookup(struct ov_slave *s, const struct prefix *p)
{
	(void)s, (void)p;
	return -EAGAIN;
}

int ov_route_add(struct ov_master *m, const struct prefix *p, struct ov_slave *s, uint32_t cookie)
{
	(void)m, (void)p, (void)s, (void)cookie;
	return 0;
}

static int fake_output(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len)
{
	(void)s, (void)pkt, (void)len;
	sent_to = cookie;
	return 0;
}

static const struct ov_slave_ops fake_ops = {.name = "fake", .output = fake_output};
static struct ov_slave fake_gw = {.ops = &fake_ops}, fake_rs = {.ops = &fake_ops};

static struct prefix pfx[2][2];
static struct ov_conf conf;

static struct ov_slave *make(void)
{
	memset(&conf, 0, sizeof(conf));
	static struct ov_peer_conf peers[2];
	memset(peers, 0, sizeof(peers));
	conf.keepalive_s = 1;
	for (int i = 0; i < 2; i++) {
		snprintf(peers[i].name, sizeof(peers[i].name), "%s", i ? "c" : "b");
		assert_int_equal(prefix_parse(i ? "fd00:c::/64" : "fd00:b::/64", true, &pfx[i][0]),
		                 0);
		assert_int_equal(prefix_parse("fd00:ac::/64", true, &pfx[i][1]), 0);
		peers[i].prefixes = pfx[i];
		peers[i].nprefixes = 2;
	}
	conf.peers = peers;
	conf.npeers = 2;
	conf.nanycast = 1;
	assert_int_equal(prefix_parse("fd00:ac::/64", true, &conf.anycast[0].prefix), 0);
	strcpy(conf.anycast[0].sites[0], "b");
	strcpy(conf.anycast[0].sites[1], "c");
	conf.anycast[0].nsites = 2;
	char err[256];
	struct ov_slave *s = anycast_new(&conf, &fake_gw, &fake_rs, NULL, err, sizeof(err));
	assert_non_null(s);
	return s;
}

/* A UDP packet from fd00:a::2 to fd00:ac::1. */
static size_t packet(uint8_t pkt[48])
{
	memset(pkt, 0, 48);
	pkt[0] = 0x60;
	pkt[5] = 8; /* payload length */
	pkt[6] = 17;
	pkt[7] = 64;
	uint8_t src[16] = {0xfd, 0, 0, 0xa, [15] = 2}, dst[16] = {0xfd, 0, 0, 0xac, [15] = 1};
	memcpy(pkt + 8, src, 16);
	memcpy(pkt + 24, dst, 16);
	pkt[40] = 0x30, pkt[42] = 0x30; /* ports */
	return 48;
}

static int send_one(struct ov_slave *s)
{
	uint8_t pkt[48];
	size_t n = packet(pkt);
	sent_to = UINT32_MAX;
	return s->ops->output(s, 0, pkt, n);
}

static void test_member_stamped_after_now_is_healthy(void **state)
{
	(void)state;
	struct ov_slave *s = make();
	never_heard = false;
	heard_offset_ms = 2000; /* was: -EHOSTUNREACH, "silent for 2^64 ms" */
	assert_int_equal(send_one(s), 0);
	assert_int_equal(sent_to, 0); /* the nearer member */
	anycast_free(s);
}

static void test_member_heard_lately_and_silent(void **state)
{
	(void)state;
	struct ov_slave *s = make();
	never_heard = false;
	heard_offset_ms = -1000; /* heard 1 s ago: healthy */
	assert_int_equal(send_one(s), 0);
	assert_int_equal(sent_to, 0);
	heard_offset_ms = -10000; /* 10 s with 1 s keepalives: unhealthy, no member left */
	assert_int_equal(send_one(s), -EHOSTUNREACH);
	never_heard = true;
	assert_int_equal(send_one(s), -EHOSTUNREACH);
	anycast_free(s);
}

static void test_helper_bounds(void **state)
{
	(void)state;
	/* keepalive 2 s: 6 s and the slack */
	assert_false(gw_peer_heard_within(0, 5000, 2));
	assert_true(gw_peer_heard_within(5000, 5000, 2));
	assert_true(gw_peer_heard_within(5001, 5000, 2));
	assert_true(gw_peer_heard_within(UINT64_MAX, 5000, 2));
	assert_true(gw_peer_heard_within(10000, 10000 + 6000 + GW_HEARD_SLACK_MS, 2));
	assert_false(gw_peer_heard_within(10000, 10000 + 6000 + GW_HEARD_SLACK_MS + 1, 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_member_stamped_after_now_is_healthy),
	    cmocka_unit_test(test_member_heard_lately_and_silent),
	    cmocka_unit_test(test_helper_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
