/* The resiliency slave against a stand-in gateway and a fake clock (resil_harness.h). */
#include "resil_harness.h"

#include <errno.h>
#include <stdlib.h>

#include "master.h"
#include "slave_resil.h"

struct rh_peer rh_peers[RH_PEERS];
size_t rh_npeers;
struct rh_sent rh_sent[RH_SENT];
size_t rh_nsent;
uint64_t rh_now_ms;

static uint64_t rtt_of[RH_PEERS]; /* ms, per peer: its echoes come back this late */
static struct {
	uint32_t cookie;
	uint8_t body[OVW_PROBE_LEN];
	uint64_t due_ms;
} echoes[256];
static size_t nechoes;
static struct ov_conf conf;
static struct ov_slave gw_stub;
static void (*probe_cb)(void *, uint32_t, uint8_t, const uint8_t[OVW_PROBE_LEN], uint64_t);
static void *probe_arg;
static void (*ls_cb)(void *, uint32_t, const uint8_t *, size_t, uint64_t);
static void *ls_arg;

static uint64_t fake_ns(void)
{
	return rh_now_ms * 1000000;
}

/* the stand-in master and gateway */
int ov_master_watch(struct ov_master *m, int fd, struct ov_slave *s)
{
	(void)m, (void)fd, (void)s;
	return 0;
}

void ov_master_unwatch(struct ov_master *m, int fd)
{
	(void)m, (void)fd;
}

size_t gw_peer_count(struct ov_slave *s)
{
	(void)s;
	return rh_npeers;
}

int gw_peer_info(struct ov_slave *s, uint32_t cookie, struct gw_peer_info *info)
{
	(void)s;
	if (cookie >= rh_npeers)
		return -ENOENT;
	memset(info, 0, sizeof(*info));
	info->name = rh_peers[cookie].name;
	memcpy(info->id, rh_peers[cookie].id, OVW_ID_LEN);
	info->has_ep = rh_peers[cookie].has_ep;
	info->last_rx_ms = rh_peers[cookie].last_rx_ms;
	info->out_packets = rh_peers[cookie].out_packets;
	info->via = rh_peers[cookie].via;
	return 0;
}

bool gw_relay_reaches(struct ov_slave *s, uint32_t relay, uint32_t cookie, uint64_t now_ms)
{
	(void)s, (void)relay, (void)cookie, (void)now_ms;
	return true;
}

int gw_set_via(struct ov_slave *s, uint32_t cookie, uint32_t via)
{
	(void)s;
	if (cookie >= rh_npeers || via == cookie || (via != GW_DIRECT && via >= rh_npeers))
		return -EINVAL;
	rh_peers[cookie].via = via;
	return 0;
}

static int record(uint32_t cookie, uint8_t type, const uint8_t *body, size_t n)
{
	if (cookie >= rh_npeers || n > OVW_LS_BODY_MAX)
		return -EINVAL;
	if (!rh_peers[cookie].has_ep)
		return -EHOSTUNREACH;
	assert_true(rh_nsent < RH_SENT);
	struct rh_sent *x = &rh_sent[rh_nsent++];
	x->cookie = cookie;
	x->type = type;
	memcpy(x->body, body, n);
	x->n = n;
	x->at_ms = rh_now_ms;
	return 0;
}

int gw_probe_send(struct ov_slave *s, uint32_t cookie, uint8_t type,
                  const uint8_t body[static OVW_PROBE_LEN])
{
	(void)s;
	return record(cookie, type, body, OVW_PROBE_LEN);
}

void gw_set_probe_cb(struct ov_slave *s,
                     void (*fn)(void *arg, uint32_t cookie, uint8_t type,
                                const uint8_t body[OVW_PROBE_LEN], uint64_t now_ms),
                     void *arg)
{
	(void)s;
	probe_cb = fn;
	probe_arg = arg;
}

int gw_linkstate_send(struct ov_slave *s, uint32_t cookie, const uint8_t *body, size_t n)
{
	(void)s;
	if (!n || n > OVW_LS_BODY_MAX)
		return -EINVAL;
	return record(cookie, OVW_LINKSTATE, body, n);
}

void gw_set_linkstate_cb(struct ov_slave *s,
                         void (*fn)(void *arg, uint32_t cookie, const uint8_t *body, size_t n,
                                    uint64_t now_ms),
                         void *arg)
{
	(void)s;
	ls_cb = fn;
	ls_arg = arg;
}

struct ov_slave *rh_make(size_t n, unsigned budget_bps, unsigned degraded_pct)
{
	assert_true(n <= RH_PEERS);
	memset(rh_peers, 0, sizeof(rh_peers));
	memset(&conf, 0, sizeof(conf));
	rh_nsent = nechoes = 0;
	rh_npeers = n;
	rh_now_ms = 1000000;
	for (size_t i = 0; i < n; i++) {
		snprintf(rh_peers[i].name, sizeof(rh_peers[i].name), "%c", (int)('b' + i));
		memset(rh_peers[i].id, (int)(0xb0 + 0x10 * i), OVW_ID_LEN);
		rh_peers[i].has_ep = true;
		rh_peers[i].last_rx_ms = rh_now_ms;
		rh_peers[i].via = GW_DIRECT;
		rtt_of[i] = 10;
	}
	conf.keepalive_s = 1;
	conf.resil.enabled = true;
	conf.resil.dead_ms = 600;
	conf.resil.budget_bps = budget_bps;
	conf.resil.degraded_pct = degraded_pct;
	conf.resil.late_ms = 250;
	char err[256];
	struct ov_slave *s = resil_new(&conf, &gw_stub, err, sizeof(err));
	assert_non_null(s);
	resil_set_clock(s, fake_ns);
	assert_int_equal(s->ops->attach(s, NULL), 0);
	return s;
}

void rh_free(struct ov_slave *s)
{
	s->ops->detach(s);
	resil_free(s);
}

void rh_set_rtt(uint32_t i, unsigned rtt_ms)
{
	rtt_of[i] = rtt_ms;
}

void rh_echo(uint32_t i, const uint8_t body[OVW_PROBE_LEN], unsigned rtt_ms)
{
	assert_true(nechoes < sizeof(echoes) / sizeof(echoes[0]));
	echoes[nechoes].cookie = i;
	memcpy(echoes[nechoes].body, body, OVW_PROBE_LEN);
	echoes[nechoes].due_ms = rh_now_ms + rtt_ms;
	nechoes++;
}

void rh_probe_from(uint32_t i, bool flag)
{
	uint8_t body[OVW_PROBE_LEN] = {flag ? 0x80 : 0, 0, 0, 0, 0, 0, 0, 1};
	rh_peers[i].last_rx_ms = rh_now_ms;
	probe_cb(probe_arg, i, OVW_PROBE, body, rh_now_ms);
}

void rh_linkstate(uint32_t i, const uint8_t *body, size_t n)
{
	rh_peers[i].last_rx_ms = rh_now_ms;
	ls_cb(ls_arg, i, body, n, rh_now_ms);
}

void rh_run(struct ov_slave *s, unsigned ms, unsigned live, unsigned in_use)
{
	for (unsigned t = 0; t < ms; t++) {
		rh_now_ms++;
		for (size_t k = 0; k < nechoes;) { /* due echoes of live peers */
			if (echoes[k].due_ms > rh_now_ms) {
				k++;
				continue;
			}
			uint32_t i = echoes[k].cookie;
			uint8_t body[OVW_PROBE_LEN];
			memcpy(body, echoes[k].body, OVW_PROBE_LEN);
			echoes[k] = echoes[--nechoes];
			if (live >> i & 1) {
				rh_peers[i].last_rx_ms = rh_now_ms;
				probe_cb(probe_arg, i, OVW_PROBE_ACK, body, rh_now_ms);
			}
		}
		if (rh_now_ms % 50)
			continue;
		for (size_t i = 0; i < rh_npeers; i++) {
			if (in_use >> i & 1)
				rh_peers[i].out_packets++;
			/* it answers the site's packets; else its keepalives, every second */
			if ((live >> i & 1) && ((in_use >> i & 1) || !(rh_now_ms % 1000)))
				rh_peers[i].last_rx_ms = rh_now_ms;
		}
		size_t from = rh_nsent;
		resil_tick(s);
		for (size_t k = from; k < rh_nsent; k++)
			if (rh_sent[k].type == OVW_PROBE && (live >> rh_sent[k].cookie & 1))
				rh_echo(rh_sent[k].cookie, rh_sent[k].body,
				        (unsigned)rtt_of[rh_sent[k].cookie]);
	}
}

size_t rh_count(size_t from, uint32_t i, uint8_t type)
{
	size_t c = 0;
	for (size_t k = from; k < rh_nsent; k++)
		c += rh_sent[k].cookie == i && rh_sent[k].type == type;
	return c;
}
