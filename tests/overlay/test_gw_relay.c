/* The gateway slave's relaying (src/overlay/gateway.c), run whole against a stand-in master
 * on loopback UDP: the test plays the other sites, sealing their packets with the wire
 * format's own functions. No root, no namespaces.
 *
 * - Forged relayed packets: with the DHT slave (no resiliency slave), an OVW_RELAYED packet
 *   is taken only from a peer that can relay (its NAT is not endpoint-dependent) and only for
 *   a site no hole can be punched to; others are dropped and counted as
 *   peak_overlay_gw_dropped_total{reason="relayed"}.
 * - The relay's side: an OVW_RELAY for a site the relay has not heard lately is not forwarded;
 *   the requester gets an OVW_RELAY_LOST naming the site (counted); once the site is heard,
 *   the relay forwards.
 * - The chooser's side: told so, it takes the next usable relay at once, and with none left
 *   the site is unreachable (ICMPv6 address unreachable, `show peers` says why); a packet of
 *   the site's relayed through a relay clears that relay's mark.
 * - A record of a peer behind an endpoint-dependent NAT (learned again, e.g. re-resolved by
 *   the DHT slave when it fell silent) at the address its packets come from keeps the port
 *   they come from (the record's is its mapping toward another peer), heard lately or not;
 *   a record at another address (the site moved) gives the endpoint, port and all.
 * - After a peer told G a new address of G's (G moved), each peer's first packet is answered
 *   at once (it may just have opened its NAT toward G's new address), later ones are not.
 * - One NAT endpoint-dependent (the peer's) and G's packets unanswered: G sends directly
 *   until a peer counts as silent, then through a relay (the other NAT filters by port, so no
 *   hole can be punched); meanwhile it takes the peer's relayed packets (the far end may judge
 *   first); a silent peer whose NAT is not endpoint-dependent either is never relayed; the
 *   peer's own packet brings the direct path back.
 */
#include "../unit/test.h"

#include <poll.h>
#include <unistd.h>

#include "gw_harness.h"
#include "peak/util.h"

/* Two peers tell G the same public address with two ports: G's NAT is endpoint-dependent. */
static void make_g_edm(struct site *a, struct site *b)
{
	uint8_t m[OVW_MAPPING_LEN] = {198, 51, 100, 1, 0x03, 0xe8};
	send_g(a, OVW_MAPPING, m, sizeof(m));
	m[4] = 0x07;
	send_g(b, OVW_MAPPING, m, sizeof(m));
	assert_true(gw_nat_edm(gw));
}

static void test_forged_relayed_dropped(void **state)
{
	(void)state;
	struct site r, s, o, b;
	uint8_t pkt[48];
	site_init(&r, 1), site_init(&s, 2), site_init(&o, 3), site_init(&b, 4);
	learn(&r, false); /* can relay */
	learn(&s, true);  /* behind a symmetric NAT: nobody's relay */
	learn(&o, true);  /* symmetric too and never heard: unpunchable from G */
	learn(&b, false); /* punchable */
	make_g_edm(&r, &b);
	send_g(&s, OVW_KEEPALIVE, NULL, 0);
	gw->ops->timer(gw, peak_mono_ms());

	/* S, which cannot relay, claims to carry O's packet: was taken */
	send_g(&s, OVW_RELAYED, pkt, ip6(pkt, 3, 0xa));
	assert_int_equal(input_calls, 0);
	assert_int_equal(metric("peak_overlay_gw_dropped_total{reason=\"relayed\"}"), 1);
	/* R, a relay, carries O's: taken */
	send_g(&r, OVW_RELAYED, pkt, ip6(pkt, 3, 0xa));
	assert_int_equal(input_calls, 1);
	assert_int_equal(last_input_src[3], 3);
	/* R claims to carry B's, which G reaches directly: dropped */
	send_g(&r, OVW_RELAYED, pkt, ip6(pkt, 4, 0xa));
	assert_int_equal(input_calls, 1);
	assert_int_equal(metric("peak_overlay_gw_dropped_total{reason=\"relayed\"}"), 2);
	/* and a source no peer serves: counted as source */
	send_g(&r, OVW_RELAYED, pkt, ip6(pkt, 9, 0xa));
	assert_int_equal(input_calls, 1);
	assert_int_equal(metric("peak_overlay_gw_dropped_total{reason=\"relayed\"}"), 2);
	assert_int_equal(metric("peak_overlay_gw_dropped_total{reason=\"source\"}"), 1);
	assert_int_equal(metric("peak_overlay_gw_relay_received_total"), 1);
	for (struct site *x = &r; x; x = x == &r ? &s : x == &s ? &o : x == &o ? &b : NULL)
		close(x->fd);
}

static void test_relay_tells_it_lost_the_site(void **state)
{
	(void)state;
	struct site a, f;
	uint8_t pkt[48], body[OVW_INNER_MAX];
	site_init(&a, 1), site_init(&f, 2);
	learn(&a, false);
	learn(&f, false); /* F's locator known, F silent */
	drain(&f);
	send_g(&a, OVW_RELAY, pkt, ip6(pkt, 1, 2));
	long n = recv_type(&a, OVW_RELAY_LOST, body);
	assert_int_equal(n, OVW_ID_LEN);
	assert_memory_equal(body, f.pub, OVW_ID_LEN);
	assert_int_equal(recv_wait(&f, OVW_RELAYED, body, 200), -1); /* not forwarded */
	assert_int_equal(metric("peak_overlay_gw_relay_lost_sent_total"), 1);
	assert_int_equal(metric("peak_overlay_gw_relay_forwarded_total"), 0);
	/* F is heard: now G relays */
	send_g(&f, OVW_KEEPALIVE, NULL, 0);
	send_g(&a, OVW_RELAY, pkt, ip6(pkt, 1, 2));
	gw->ops->flush(gw);
	assert_int_equal(recv_type(&f, OVW_RELAYED, body), 48);
	assert_memory_equal(body, pkt, 48);
	assert_int_equal(metric("peak_overlay_gw_relay_forwarded_total"), 1);
	assert_int_equal(metric("peak_overlay_gw_relay_lost_sent_total"), 1);
	close(a.fd), close(f.fd);
}

static void test_chooser_moves_then_unreachable(void **state)
{
	(void)state;
	struct site r1, r2, o;
	uint8_t body[OVW_INNER_MAX], pkt[48];
	site_init(&r1, 1), site_init(&r2, 2), site_init(&o, 3);
	learn(&r1, false), learn(&r2, false), learn(&o, true);
	make_g_edm(&r1, &r2); /* and both relays heard */
	gw->ops->timer(gw, peak_mono_ms());
	struct site *lo = memcmp(r1.pub, r2.pub, 32) < 0 ? &r1 : &r2, *hi = lo == &r1 ? &r2 : &r1;
	drain(lo), drain(hi);
	assert_int_equal(output_to(&o), 0);
	assert_int_equal(recv_type(lo, OVW_RELAY, body), 48); /* the lowest id relays */

	/* lo has lost O: G moves to hi at once (was: kept sending through lo) */
	uint8_t id[OVW_ID_LEN];
	memcpy(id, o.pub, OVW_ID_LEN);
	send_g(lo, OVW_RELAY_LOST, id, sizeof(id));
	drain(lo), drain(hi);
	assert_int_equal(output_to(&o), 0);
	assert_int_equal(recv_type(hi, OVW_RELAY, body), 48);
	assert_int_equal(recv_wait(lo, OVW_RELAY, body, 200), -1);
	assert_true(show_has("state relayed via "));

	/* hi too: no relay reaches O, which is unreachable, and said so */
	send_g(hi, OVW_RELAY_LOST, id, sizeof(id));
	assert_int_equal(output_to(&o), -EHOSTUNREACH);
	assert_true(show_has("state unreachable:both-nats-endpoint-dependent"));
	assert_int_equal(metric("peak_overlay_gw_relay_lost_received_total"), 2);
	assert_int_equal(metric("peak_overlay_gw_unpunchable_total"), 1);

	/* a packet of O's comes through lo after all: lo relays to O again */
	send_g(lo, OVW_RELAYED, pkt, ip6(pkt, 3, 0xa));
	assert_int_equal(input_calls, 1);
	drain(lo);
	assert_int_equal(output_to(&o), 0);
	assert_int_equal(recv_type(lo, OVW_RELAY, body), 48);
	close(r1.fd), close(r2.fd), close(o.fd);
}

static void test_edm_peer_keeps_its_port(void **state)
{
	(void)state;
	struct site x, decoy;
	char want[32], got[32];
	site_init(&x, 1), site_init(&decoy, 2);
	learn(&x, true);
	send_g(&x, OVW_KEEPALIVE, NULL, 0); /* its packets come from x.addr */
	snprintf(want, sizeof(want), "127.0.0.1:%u", ntohs(x.addr.sin_port));
	endpoint_of(&x, got, sizeof(got));
	assert_string_equal(got, want);
	/* its record says its NAT's port toward another peer (the decoy's): heard lately, no
	 * probe goes there (was: one per record) */
	struct sockaddr_in rec = x.addr;
	rec.sin_port = decoy.addr.sin_port;
	unsigned long long probes = metric("peak_overlay_gw_locator_probes_total");
	assert_int_equal(gw_peer_learn(gw, x.pub, &rec, true, &x.pfx, 1, &x.cookie), 0);
	assert_int_equal(metric("peak_overlay_gw_locator_probes_total"), probes);
	endpoint_of(&x, got, sizeof(got));
	assert_string_equal(got, want);
	/* silent (three keepalive periods and more: the state says so), the same record keeps
	 * the port (was: the endpoint moved to the record's port, where its NAT drops us) */
	uint64_t end = peak_mono_ms() + 10000;
	while (!show_has("state waiting") && peak_mono_ms() < end)
		poll(NULL, 0, 100);
	assert_true(show_has("state waiting"));
	assert_int_equal(gw_peer_learn(gw, x.pub, &rec, true, &x.pfx, 1, &x.cookie), 0);
	endpoint_of(&x, got, sizeof(got));
	assert_string_equal(got, want);
	drain(&decoy);
	uint8_t pkt[48], body[OVW_INNER_MAX];
	assert_int_equal(gw->ops->output(gw, x.cookie, pkt, ip6(pkt, 0xa, 1)), 0);
	gw->ops->flush(gw);
	assert_int_equal(recv_type(&x, OVW_DATA, body), 48);
	assert_int_equal(recv_wait(&decoy, OVW_DATA, body, 200), -1);
	/* the site moved (another address): the record's endpoint is taken whole */
	rec.sin_addr.s_addr = htonl(0x7f000002);
	assert_int_equal(gw_peer_learn(gw, x.pub, &rec, true, &x.pfx, 1, &x.cookie), 0);
	snprintf(want, sizeof(want), "127.0.0.2:%u", ntohs(decoy.addr.sin_port));
	endpoint_of(&x, got, sizeof(got));
	assert_string_equal(got, want);
	close(x.fd), close(decoy.fd);
}

static void test_first_packet_since_move_answered(void **state)
{
	(void)state;
	struct site a, x;
	uint8_t body[OVW_INNER_MAX];
	site_init(&a, 1), site_init(&x, 2);
	learn(&a, false), learn(&x, false);
	send_g(&x, OVW_KEEPALIVE, NULL, 0);
	uint64_t t = peak_mono_ms();
	while (peak_mono_ms() <= t) /* the move comes a millisecond later at least */
		poll(NULL, 0, 1);
	uint8_t m[OVW_MAPPING_LEN] = {198, 51, 100, 1, 0x03, 0xe8};
	send_g(&a, OVW_MAPPING, m, sizeof(m));
	m[3] = 2; /* A sees G at another address: G moved */
	send_g(&a, OVW_MAPPING, m, sizeof(m));
	drain(&x); /* the keepalives G sends every peer on a move */
	send_g(&x, OVW_KEEPALIVE, NULL, 0);
	assert_int_equal(recv_wait(&x, OVW_MAPPING, body, 1000), OVW_MAPPING_LEN);
	send_g(&x, OVW_KEEPALIVE, NULL, 0);
	assert_int_equal(recv_wait(&x, OVW_MAPPING, body, 200), -1);
	close(a.fd), close(x.fd);
}

static void test_one_sided_relayed_after_trying(void **state)
{
	(void)state;
	struct site r, o, b;
	uint8_t body[OVW_INNER_MAX], pkt[48];
	site_init(&r, 1), site_init(&o, 2), site_init(&b, 3);
	learn(&r, false); /* can relay */
	learn(&o, true);  /* behind a symmetric NAT; G's NAT filters by port: O never hears G */
	learn(&b, false); /* silent too, but no NAT of the pair maps per destination */
	send_g(&r, OVW_KEEPALIVE, NULL, 0);
	assert_false(gw_nat_edm(gw));
	drain(&r), drain(&o);
	assert_int_equal(output_to(&o), 0); /* tried directly first */
	assert_int_equal(recv_type(&o, OVW_DATA, body), 48);
	assert_int_equal(recv_wait(&r, OVW_RELAY, body, 200), -1);
	/* O's packet relayed by R before G judges: taken (was: dropped, both NATs had to be
	 * endpoint-dependent) */
	send_g(&r, OVW_RELAYED, pkt, ip6(pkt, 2, 0xa));
	assert_int_equal(input_calls, 1);
	assert_int_equal(metric("peak_overlay_gw_dropped_total{reason=\"relayed\"}"), 0);
	/* unanswered for three keepalive periods and the slack, R heard meanwhile: relayed */
	uint64_t end = peak_mono_ms() + 10000;
	while (!show_has("state relayed via ") && peak_mono_ms() < end) {
		send_g(&r, OVW_KEEPALIVE, NULL, 0);
		gw->ops->timer(gw, peak_mono_ms());
		poll(NULL, 0, 200);
	}
	assert_true(show_has("state relayed via "));
	drain(&r), drain(&o), drain(&b);
	assert_int_equal(output_to(&o), 0);
	assert_int_equal(recv_type(&r, OVW_RELAY, body), 48);
	assert_int_equal(recv_wait(&o, OVW_DATA, body, 200), -1);
	assert_int_equal(metric("peak_overlay_gw_nat_relayed_total"), 1);
	/* B, as silent, goes direct: no NAT of that pair maps per destination */
	assert_int_equal(output_to(&b), 0);
	assert_int_equal(recv_type(&b, OVW_DATA, body), 48);
	/* O is heard directly after all: direct again */
	send_g(&o, OVW_KEEPALIVE, NULL, 0);
	drain(&r), drain(&o);
	assert_int_equal(output_to(&o), 0);
	assert_int_equal(recv_type(&o, OVW_DATA, body), 48);
	assert_int_equal(recv_wait(&r, OVW_RELAY, body, 200), -1);
	close(r.fd), close(o.fd), close(b.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_forged_relayed_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_relay_tells_it_lost_the_site, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chooser_moves_then_unreachable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_edm_peer_keeps_its_port, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_first_packet_since_move_answered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_one_sided_relayed_after_trying, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
