/* The gateway slave run whole against a stand-in master on loopback UDP (gw_harness.h):
 * shared by the gateway's unit tests and its regression tests. */
#include "gw_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../src/sys/metrics.h"
#include "peak/util.h"
#include "slave_probe.h"

/* the stand-in master */
int gw_fd = -1;
unsigned input_calls;
uint8_t last_input_src[16];

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

uint8_t g_priv[32], g_pub[32];
struct sockaddr_in g_addr;
struct ov_conf conf;
struct ov_slave *gw;
static uint64_t seed = 0x5eed0f0e1a7ULL;

void site_init(struct site *x, uint8_t n)
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
void learn(struct site *x, bool edm)
{
	assert_int_equal(gw_peer_learn(gw, x->pub, &x->addr, edm, &x->pfx, 1, &x->cookie), 0);
}

/* An IPv6 packet from fd00:s::2 to fd00:d::2 (8 bytes of UDP). */
size_t ip6(uint8_t pkt[48], uint8_t s, uint8_t d)
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
void send_g(struct site *x, uint8_t type, const uint8_t *body, size_t n)
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
long recv_wait(struct site *x, uint8_t type, uint8_t body[OVW_INNER_MAX], unsigned wait_ms)
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

long recv_type(struct site *x, uint8_t type, uint8_t body[OVW_INNER_MAX])
{
	return recv_wait(x, type, body, 5000);
}

/* Empties x's socket. */
void drain(struct site *x)
{
	uint8_t b[OVW_PKT_MAX];
	while (recv(x->fd, b, sizeof(b), MSG_DONTWAIT) > 0)
		;
}

unsigned long long metric(const char *name)
{
	return slave_metric(gw, name);
}

bool show_has(const char *text)
{
	return slave_show_has(gw, text);
}

int setup(void **state)
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

int teardown(void **state)
{
	(void)state;
	gw->ops->detach(gw);
	gw_free(gw);
	gw = NULL;
	gw_fd = -1;
	return 0;
}

/* G sends the site's packet for O and flushes; returns the output's result. */
int output_to(struct site *o)
{
	uint8_t pkt[48];
	int r = gw->ops->output(gw, o->cookie, pkt, ip6(pkt, 0xa, o->n));
	gw->ops->flush(gw);
	return r;
}

/* The endpoint G sends x to, as `show peers` says it: "ADDR:PORT" into out. */
void endpoint_of(struct site *x, char *out, size_t cap)
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
