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

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../src/sys/metrics.h"
#include "gateway.h"
#include "peak/util.h"
#include "wire.h"

/* the stand-in master */
static int gw_fd = -1;
static unsigned input_calls;
static uint8_t last_input_src[16];

int ov_master_input(struct ov_master *m, const uint8_t *pkt, size_t len)
{
	(void)m;
	if (len >= 40)
		memcpy(last_input_src, pkt + 8, 16);
	input_calls++;
	return 0;
}

int ov_master_watch(struct ov_master *m, int fd, struct ov_slave *s)
{
	(void)m, (void)s;
	int dom;
	socklen_t l = sizeof(dom);
	/* the gateway's UDP socket (not its rtnetlink one, which it watches too) */
	if (!getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) && dom == AF_INET)
		gw_fd = fd;
	return 0;
}

void ov_master_unwatch(struct ov_master *m, int fd)
{
	(void)m, (void)fd;
}

int ov_route_add(struct ov_master *m, const struct prefix *p, struct ov_slave *s, uint32_t cookie)
{
	(void)m, (void)p, (void)s, (void)cookie;
	return 0;
}

void ov_master_too_big(struct ov_master *m, const uint8_t *pkt, size_t len, unsigned mtu)
{
	(void)m, (void)pkt, (void)len, (void)mtu;
}

/* a site the test plays: its keys, its socket, its prefix fd00:N::/64 */
struct site {
	uint8_t priv[32], pub[32], prk[32];
	int fd;
	struct sockaddr_in addr;
	uint64_t epoch, counter;
	struct prefix pfx;
	uint32_t cookie;
	uint8_t n;
};

static uint8_t g_priv[32], g_pub[32];
static struct sockaddr_in g_addr;
static struct ov_conf conf;
static struct ov_slave *gw;
static uint64_t seed = 0x5eed0f0e1a7ULL;

static void site_init(struct site *x, uint8_t n)
{
	memset(x, 0, sizeof(*x));
	x->n = n;
	for (int i = 0; i < 32; i += 8) {
		uint64_t v = test_rand(&seed);
		memcpy(x->priv + i, &v, 8);
	}
	ovw_pubkey(x->priv, x->pub);
	assert_int_equal(ovw_prk(x->priv, g_pub, x->prk), 0);
	x->epoch = peak_mono_ns();
	x->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(x->fd != -1);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(x->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t l = sizeof(x->addr);
	assert_int_equal(getsockname(x->fd, (struct sockaddr *)&x->addr, &l), 0);
	char p[32];
	snprintf(p, sizeof(p), "fd00:%x::/64", n);
	assert_int_equal(prefix_parse(p, true, &x->pfx), 0);
}

/* G learns x as the DHT slave would: its locator, its NAT's kind, its prefix. */
static void learn(struct site *x, bool edm)
{
	assert_int_equal(gw_peer_learn(gw, x->pub, &x->addr, edm, &x->pfx, 1, &x->cookie), 0);
}

/* An IPv6 packet from fd00:s::2 to fd00:d::2 (8 bytes of UDP). */
static size_t ip6(uint8_t pkt[48], uint8_t s, uint8_t d)
{
	memset(pkt, 0, 48);
	pkt[0] = 0x60;
	pkt[5] = 8;
	pkt[6] = 17;
	pkt[7] = 64;
	pkt[8] = 0xfd, pkt[11] = s, pkt[23] = 2;
	pkt[24] = 0xfd, pkt[27] = d, pkt[39] = 2;
	return 48;
}

/* x seals body as a packet of type to G and sends it; G reads it. */
static void send_g(struct site *x, uint8_t type, const uint8_t *body, size_t n)
{
	uint8_t key[OVW_KEY_LEN], out[OVW_PKT_MAX];
	struct ovw_aead a = {0};
	struct ovw_hdr h = {.type = type, .epoch = x->epoch, .counter = x->counter++};
	memcpy(h.id, x->pub, OVW_ID_LEN);
	ovw_key(x->prk, x->pub, g_pub, x->epoch, key);
	assert_int_equal(ovw_aead_init(&a, key), 0);
	long len = ovw_seal(&h, &a, body, n, out, sizeof(out));
	ovw_aead_fini(&a);
	assert_true(len > 0);
	assert_int_equal(
	    sendto(x->fd, out, (size_t)len, 0, (struct sockaddr *)&g_addr, sizeof(g_addr)), len);
	gw->ops->readable(gw, gw_fd); /* loopback: queued by the time sendto returned */
}

/* Waits (up to wait_ms) for a packet of type from G at x, dropping others (keepalives,
 * mappings); opens it into body. Returns its plaintext length, or -1 if none came. G's sends
 * on loopback are queued at x before they return, so a short wait shows one did not come. */
static long recv_wait(struct site *x, uint8_t type, uint8_t body[OVW_INNER_MAX], unsigned wait_ms)
{
	uint64_t end = peak_mono_ms() + wait_ms;
	uint8_t pkt[OVW_PKT_MAX];
	for (;;) {
		uint64_t now = peak_mono_ms();
		struct pollfd pfd = {.fd = x->fd, .events = POLLIN};
		if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0)
			return -1;
		ssize_t n = recv(x->fd, pkt, sizeof(pkt), 0);
		struct cur c = cur_make(pkt, n > 0 ? (size_t)n : 0);
		struct ovw_hdr h;
		const uint8_t *b;
		size_t blen;
		if (n <= 0 || ovw_parse(&c, &h, &b, &blen) || h.type != type)
			continue;
		uint8_t key[OVW_KEY_LEN];
		struct ovw_aead a = {0};
		ovw_key(x->prk, g_pub, x->pub, h.epoch, key);
		assert_int_equal(ovw_aead_init(&a, key), 0);
		long l = ovw_open(pkt, blen, &a, body);
		ovw_aead_fini(&a);
		assert_true(l >= 0);
		return l;
	}
}

static long recv_type(struct site *x, uint8_t type, uint8_t body[OVW_INNER_MAX])
{
	return recv_wait(x, type, body, 5000);
}

/* Empties x's socket. */
static void drain(struct site *x)
{
	uint8_t b[OVW_PKT_MAX];
	while (recv(x->fd, b, sizeof(b), MSG_DONTWAIT) > 0)
		;
}

static unsigned long long metric(const char *name)
{
	struct mbuf b = {0};
	gw->ops->stats(gw, &b);
	const char *p = b.p ? strstr(b.p, name) : NULL;
	unsigned long long v = ~0ULL;
	size_t nl = strlen(name);
	while (p && (p[nl] != ' ' || (p != b.p && p[-1] != '\n')))
		p = strstr(p + 1, name);
	if (p)
		v = strtoull(p + nl + 1, NULL, 10);
	free(b.p);
	return v;
}

static bool show_has(const char *text)
{
	struct mbuf b = {0};
	gw->ops->show(gw, &b);
	bool r = b.p && strstr(b.p, text);
	free(b.p);
	return r;
}

static int setup(void **state)
{
	(void)state;
	memset(&conf, 0, sizeof(conf));
	for (int i = 0; i < 32; i++)
		g_priv[i] = (uint8_t)(0x40 + i);
	memcpy(conf.priv, g_priv, 32);
	ovw_pubkey(g_priv, g_pub);
	conf.keepalive_s = 1;
	conf.listen.sin_family = AF_INET;
	conf.listen.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	conf.dht.enabled = true; /* learned peers; relays for unpunchable pairs */
	char err[256];
	gw = gw_new(&conf, err, sizeof(err));
	assert_non_null(gw);
	assert_int_equal(gw->ops->attach(gw, NULL), 0);
	socklen_t l = sizeof(g_addr);
	assert_int_equal(getsockname(gw_fd, (struct sockaddr *)&g_addr, &l), 0);
	input_calls = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gw->ops->detach(gw);
	gw_free(gw);
	gw = NULL;
	gw_fd = -1;
	return 0;
}

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

/* G sends the site's packet for O and flushes; returns the output's result. */
static int output_to(struct site *o)
{
	uint8_t pkt[48];
	int r = gw->ops->output(gw, o->cookie, pkt, ip6(pkt, 0xa, o->n));
	gw->ops->flush(gw);
	return r;
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

/* The endpoint G sends x to, as `show peers` says it: "ADDR:PORT" into out. */
static void endpoint_of(struct site *x, char *out, size_t cap)
{
	struct mbuf b = {0};
	char name[32], *p;
	snprintf(name, sizeof(name), "peer dht-%02x%02x%02x%02x ", x->pub[0], x->pub[1], x->pub[2],
	         x->pub[3]);
	gw->ops->show(gw, &b);
	assert_non_null(b.p);
	assert_non_null(p = strstr(b.p, name));
	p += strlen(name);
	size_t n = strcspn(p, " ");
	assert_true(n < cap);
	memcpy(out, p, n);
	out[n] = 0;
	free(b.p);
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
