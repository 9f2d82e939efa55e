/* The anycast slave's members from the DHT (slave_anycast.c) against a stand-in gateway,
 * resiliency slave and DHT slave: a prefix configured without sites looks its members up
 * (at its first timer tick and at a packet while it has none), takes the members a lookup
 * names (each keeps its slot and name), sends new flows to the nearest, and moves a flow off
 * a member the next lookup no longer names; a member named again gets its old slot back and
 * new flows, while the moved flow stays where it went. */
#include "../unit/test.h"

#include <errno.h>
#include <stdlib.h>

#include "../../src/sys/metrics.h"
#include "dht.h"
#include "gateway.h"
#include "peak/util.h"
#include "slave_anycast.h"
#include "slave_resil.h"

static uint32_t sent_to = UINT32_MAX;
static unsigned lookups;
static dht_anycast_fn members_fn;
static void *members_arg;
static const char *const names[3] = {"dht-00", "dht-01", "dht-02"};

int gw_peer_info(struct ov_slave *s, uint32_t cookie, struct gw_peer_info *info)
{
	(void)s;
	memset(info, 0, sizeof(*info));
	if (cookie >= 3)
		return -ENOENT;
	info->name = names[cookie];
	info->has_ep = true;
	info->via = GW_DIRECT;
	info->last_rx_ms = peak_mono_ms();
	return 0;
}

int resil_peer(struct ov_slave *s, uint32_t cookie, bool *down, uint32_t *rtt_us)
{
	(void)s;
	*down = false;
	*rtt_us = 100 + 10 * cookie; /* cookie 0 is the nearest */
	return 0;
}

void dht_set_anycast_cb(struct ov_slave *s, dht_anycast_fn fn, void *arg)
{
	(void)s;
	members_fn = fn;
	members_arg = arg;
}

int dht_anycast_lookup(struct ov_slave *s, const struct prefix *p)
{
	(void)s, (void)p;
	lookups++;
	return 0;
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
static struct ov_slave fake_gw = {.ops = &fake_ops}, fake_rs = {.ops = &fake_ops},
                       fake_dht = {.ops = &fake_ops};
static struct ov_conf conf;

/* A UDP packet from fd00:a::2 port sport to fd00:ac::1; returns what output returned. */
static int send_flow(struct ov_slave *s, uint8_t sport)
{
	uint8_t pkt[48] = {0x60, [5] = 8, [6] = 17, [7] = 64};
	uint8_t src[16] = {0xfd, 0, 0, 0xa, [15] = 2}, dst[16] = {0xfd, 0, 0, 0xac, [15] = 1};
	memcpy(pkt + 8, src, 16);
	memcpy(pkt + 24, dst, 16);
	pkt[40] = 0x30, pkt[41] = sport, pkt[42] = 0x30; /* ports */
	sent_to = UINT32_MAX;
	return s->ops->output(s, 0, pkt, sizeof(pkt));
}

static void tell(const uint32_t *cookies, size_t n)
{
	members_fn(members_arg, &conf.anycast[0].prefix, cookies, n);
}

static void test_members_from_the_dht(void **state)
{
	(void)state;
	memset(&conf, 0, sizeof(conf));
	conf.keepalive_s = 1;
	conf.nanycast = 1;
	assert_int_equal(prefix_parse("fd00:ac::/64", true, &conf.anycast[0].prefix), 0);
	char err[256];
	assert_null(anycast_new(&conf, &fake_gw, &fake_rs, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "no DHT"));
	struct ov_slave *s = anycast_new(&conf, &fake_gw, &fake_rs, &fake_dht, err, sizeof(err));
	assert_non_null(s);
	assert_non_null(members_fn);
	s->ops->timer(s, peak_mono_ms()); /* the first lookup */
	assert_int_equal(lookups, 1);
	assert_int_equal(send_flow(s, 1), -EHOSTUNREACH); /* none yet: another lookup waits 1 s */
	assert_int_equal(lookups, 1);

	const uint32_t two[] = {2, 1};
	tell(two, 2);
	assert_int_equal(send_flow(s, 1), 0);
	assert_int_equal(sent_to, 1); /* the nearer of the two */
	/* a nearer site joins: the flow stays, a new flow goes there */
	const uint32_t three[] = {2, 1, 0};
	tell(three, 3);
	assert_int_equal(send_flow(s, 1), 0);
	assert_int_equal(sent_to, 1);
	assert_int_equal(send_flow(s, 2), 0);
	assert_int_equal(sent_to, 0);
	/* 1 is no longer named: its flow moves to the nearest left */
	const uint32_t gone[] = {0, 2};
	tell(gone, 2);
	assert_int_equal(send_flow(s, 1), 0);
	assert_int_equal(sent_to, 0);
	/* 0 gone too, 1 back: flows on 0 move to 1 */
	const uint32_t back[] = {1, 2};
	tell(back, 2);
	assert_int_equal(send_flow(s, 2), 0);
	assert_int_equal(sent_to, 1);

	/* every site ever named kept its slot: three counters, names as the gateway gives them */
	struct mbuf b = {0};
	s->ops->stats(s, &b);
	const char *mem = b.p;
	assert_non_null(mem);
	assert_non_null(strstr(mem, "packets_total{prefix=\"fd00:ac::/64\",site=\"dht-02\"} 0\n"));
	assert_non_null(strstr(mem, "packets_total{prefix=\"fd00:ac::/64\",site=\"dht-01\"} 3\n"));
	assert_non_null(strstr(mem, "packets_total{prefix=\"fd00:ac::/64\",site=\"dht-00\"} 2\n"));
	b.len = 0;
	s->ops->show(s, &b);
	assert_string_equal(b.p, "anycast fd00:ac::/64 dht-02 healthy rtt-us 120\n"
	                         "anycast fd00:ac::/64 dht-01 healthy rtt-us 110\n");
	tell(NULL, 0);
	b.len = 0;
	s->ops->show(s, &b);
	assert_string_equal(b.p, "anycast fd00:ac::/64 - no-members\n");
	free(b.p);
	anycast_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_members_from_the_dht),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
