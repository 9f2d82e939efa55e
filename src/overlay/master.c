#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../sys/notify.h"
#include "peak/lpm6.h"
#include "io.h"
#include "wire.h"
#include "peak/util.h"

#ifndef TUN_F_USO4 /* Linux 6.2's, newer than Debian 12's headers */
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

struct ov_route {
	struct ov_slave *s; /* NULL: a free slot */
	uint32_t cookie;
};

struct ov_watch {
	int fd;
	struct ov_slave *s;
};

enum {
	OV_MAX_WATCH = 16,
	OV_BATCH = 64, /* packets read per wakeup before other descriptors get a turn */
	ICMP6_ERR_MAX = 1280,
	ICMP6_NO_ROUTE = 0,     /* destination unreachable codes, RFC 4443 §3.1 */
	ICMP6_ADDR_UNREACH = 3, /* an ICMPv6 error never exceeds the minimum MTU (RFC 4443 §2.4) */
	ICMP6_UNREACH = 1,
	ICMP6_TOO_BIG = 2,
	EV_TUN = 0,
	EV_SIG = 1,
	EV_TIMER = 2,
	EV_WATCH = 3,
};

enum { SLOT = 2048, TUN_READ_MAX = sizeof(struct virtio_net_hdr) + 65536 };

struct ov_master {
	struct ov_master_conf conf;
	struct lpm6 *lpm;
	struct ov_route *routes;
	uint32_t nroutes, caproutes;
	uint32_t *freer; /* free route slots, a stack */
	uint32_t nfreer;
	struct ov_slave *slaves[OV_MAX_SLAVES];
	unsigned nslaves, attached;
	struct ov_watch watch[OV_MAX_WATCH];
	unsigned nwatch;
	int tun, ep, tfd;
	double tokens;
	uint64_t tokens_ms;
	struct log_limit rl_write, rl_out;
	/* counters: written by the loop, read by the metrics thread (__atomic) */
	bool tso;               /* the TUN device hands us TCP super-packets (TUN_F_TSO6) */
	bool uso;               /* and UDP ones (TUN_F_USO6) */
	struct ovio_merge *out; /* what ov_master_input queued for the TUN device */
	void (*tap)(void *arg, bool to_site, const uint8_t *pkt, size_t len);
	void *tap_arg;
	uint64_t tun_writes;
	uint64_t tun_reads, tun_gso, tun_uso;
	/* busy-poll: passes that polled without sleeping; of them, those that found work */
	uint64_t busy_polls, busy_hits;
	uint64_t tun_rx, tun_rx_bad, tun_tx, tun_tx_err, no_route, icmp_sent, icmp_limited,
	    icmp_too_big, slave_err, nroutes_live;
};

/* Counters have one writer, the loop's thread: a relaxed load and store (no locked
 * read-modify-write on the packet path), whole 64-bit values for the metrics thread. */
#define CNT_ADD(m, f, v)                                                                           \
	__atomic_store_n(&(m)->f, __atomic_load_n(&(m)->f, __ATOMIC_RELAXED) + (v),                \
	                 __ATOMIC_RELAXED)
#define CNT_GET(m, f) __atomic_load_n(&(m)->f, __ATOMIC_RELAXED)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct ov_master *ov_master_new(const struct ov_master_conf *conf)
{
	struct ov_master *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->conf = *conf;
	m->tun = m->ep = m->tfd = -1;
	m->tokens = conf->icmp_rate;
	m->lpm = lpm6_new();
	m->out = malloc(sizeof(*m->out));
	if (!m->lpm || !m->out) {
		lpm6_free(m->lpm);
		free(m->out);
		free(m);
		return NULL;
	}
	m->out->len = 0;
	return m;
}

void ov_master_free(struct ov_master *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < m->attached; i++)
		if (m->slaves[i]->ops->detach)
			m->slaves[i]->ops->detach(m->slaves[i]);
	if (m->tun != -1)
		close(m->tun);
	if (m->ep != -1)
		close(m->ep);
	if (m->tfd != -1)
		close(m->tfd);
	lpm6_free(m->lpm);
	m->lpm = NULL;
	free(m->routes);
	m->routes = NULL;
	free(m->freer);
	m->freer = NULL;
	free(m->out);
	m->out = NULL;
	free(m);
}

int ov_master_add_slave(struct ov_master *m, struct ov_slave *s)
{
	if (m->nslaves == OV_MAX_SLAVES)
		return -ENOSPC;
	m->slaves[m->nslaves++] = s;
	return 0;
}

int ov_route_add(struct ov_master *m, const struct prefix *p, struct ov_slave *s, uint32_t cookie)
{
	if (p->family != PEAK_AFI_IP6 || p->len > 128)
		return -EINVAL;
	uint32_t idx;
	if (lpm6_get(m->lpm, p->addr, p->len, &idx)) {
		m->routes[idx].s = s;
		m->routes[idx].cookie = cookie;
		return 0;
	}
	if (m->nfreer) {
		idx = m->freer[--m->nfreer];
	} else {
		if (m->nroutes == OV_MAX_ROUTES)
			return -ENOSPC;
		if (m->nroutes == m->caproutes) {
			uint32_t cap = m->caproutes ? 2 * m->caproutes : 64;
			struct ov_route *r = realloc(m->routes, cap * sizeof(*r));
			if (!r)
				return -ENOMEM;
			m->routes = r;
			uint32_t *f = realloc(m->freer, cap * sizeof(*f));
			if (!f)
				return -ENOMEM;
			m->freer = f;
			m->caproutes = cap;
		}
		idx = m->nroutes++;
	}
	int r = lpm6_add(m->lpm, p->addr, p->len, idx);
	if (r < 0) {
		m->freer[m->nfreer++] = idx;
		return r;
	}
	m->routes[idx].s = s;
	m->routes[idx].cookie = cookie;
	CNT_ADD(m, nroutes_live, 1);
	return 0;
}

int ov_route_del(struct ov_master *m, const struct prefix *p)
{
	uint32_t idx;
	if (p->family != PEAK_AFI_IP6 || !lpm6_get(m->lpm, p->addr, p->len, &idx))
		return -ENOENT;
	int r = lpm6_del(m->lpm, p->addr, p->len);
	if (r)
		return r;
	m->routes[idx].s = NULL;
	m->freer[m->nfreer++] = idx;
	CNT_ADD(m, nroutes_live, (uint64_t)-1);
	return 0;
}

int ov_master_watch(struct ov_master *m, int fd, struct ov_slave *s)
{
	unsigned i = 0;
	while (i < m->nwatch && m->watch[i].s) /* a slot unwatch freed, or a new one */
		i++;
	if (i == OV_MAX_WATCH)
		return -ENOSPC;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = EV_WATCH + i};
	if (epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		return -errno;
	m->watch[i].fd = fd;
	m->watch[i].s = s;
	if (i == m->nwatch)
		m->nwatch++;
	return 0;
}

void ov_master_unwatch(struct ov_master *m, int fd)
{
	for (unsigned i = 0; i < m->nwatch; i++)
		if (m->watch[i].s && m->watch[i].fd == fd) {
			epoll_ctl(m->ep, EPOLL_CTL_DEL, fd, NULL);
			m->watch[i].s = NULL;
			m->watch[i].fd = -1;
		}
}

int ov_route_add_named(struct ov_master *m, const struct prefix *p, const char *name)
{
	for (unsigned i = 0; i < m->nslaves; i++) {
		struct ov_slave *s = m->slaves[i];
		uint32_t cookie;
		if (s->ops->cookie_of && !s->ops->cookie_of(s, name, &cookie))
			return ov_route_add(m, p, s, cookie);
	}
	return -ENOENT;
}

struct show_ctx {
	struct ov_master *m;
	struct mbuf *b;
};

static int show_route(const uint8_t prefix[16], unsigned plen, uint32_t idx, void *arg)
{
	struct show_ctx *x = arg;
	struct prefix p = {.family = PEAK_AFI_IP6, .len = (uint8_t)plen};
	char ps[PREFIX_STRLEN], owner[128] = "-";
	memcpy(p.addr, prefix, 16);
	struct ov_route *r = &x->m->routes[idx];
	if (!r->s)
		return 0;
	if (r->s->ops->describe)
		r->s->ops->describe(r->s, r->cookie, owner, sizeof(owner));
	mbuf_printf(x->b, "%s %s %s\n", prefix_print(&p, ps), r->s->ops->name, owner);
	return 0;
}

void ov_master_show_routes(struct ov_master *m, struct mbuf *b)
{
	struct show_ctx x = {m, b};
	lpm6_walk(m->lpm, show_route, &x);
}

void ov_master_show_slaves(struct ov_master *m, struct mbuf *b)
{
	for (unsigned i = 0; i < m->attached; i++)
		if (m->slaves[i]->ops->show)
			m->slaves[i]->ops->show(m->slaves[i], b);
}

/* Writes what is queued: one packet as it is, several segments as one TCP GSO packet whose
 * checksum the kernel completes (the field holds the pseudo-header's sum). Counts. */
static void tun_out_flush(struct ov_master *m)
{
	struct ovio_merge *o = m->out;
	struct virtio_net_hdr h;
	if (!o->len)
		return;
	ovio_merge_finish(o, &h);
	struct iovec iov[2] = {{&h, sizeof(h)}, {o->pkt, o->len}};
	ssize_t w = writev(m->tun, iov, 2);
	CNT_ADD(m, tun_writes, 1);
	if (w == (ssize_t)(sizeof(h) + o->len)) {
		CNT_ADD(m, tun_tx, o->nseg);
	} else {
		int e = w == -1 ? errno : EIO;
		CNT_ADD(m, tun_tx_err, o->nseg);
		log_rl(&m->rl_write, LOG_WARNING, "overlay: write to %s: %s", m->conf.tun,
		       strerror(e));
	}
	o->len = 0;
}

/* Queues pkt for the TUN device: merged with the queued segments of its flow if it is their
 * next, else after writing them (io.h). */
int ov_master_input(struct ov_master *m, const uint8_t *pkt, size_t len)
{
	if (m->tap)
		m->tap(m->tap_arg, true, pkt, len);
	if (ovio_merge_add(m->out, pkt, len))
		return 0;
	tun_out_flush(m);
	if (len > sizeof(m->out->pkt))
		return -EMSGSIZE;
	ovio_merge_start(m->out, pkt, len);
	return 0;
}

/* The Internet checksum over the IPv6 pseudo-header and an ICMPv6 message (RFC 4443 §2.3,
 * RFC 8200 §8.1). */
static uint16_t icmp6_csum(const uint8_t src[16], const uint8_t dst[16], const uint8_t *msg,
                           size_t n)
{
	return ovio_csum_fold(ovio_csum_add(ovio_csum_pseudo(src, dst, n, 58), msg, n));
}

/* Takes one token of the ICMPv6 error budget if there is one. */
static bool icmp_token(struct ov_master *m)
{
	uint64_t t = now_ms();
	double rate = m->conf.icmp_rate;
	m->tokens += (double)(t - m->tokens_ms) * rate / 1000.0;
	m->tokens_ms = t;
	if (m->tokens > rate)
		m->tokens = rate;
	if (m->tokens < 1.0)
		return false;
	m->tokens -= 1.0;
	return true;
}

/* Sends the ICMPv6 error type/code with the 4-byte field param (RFC 4443 §3.1 destination
 * unreachable: unused, 0; §3.2 packet too big: the MTU) to the source of pkt, quoting as much
 * of it as fits in the minimum MTU, unless RFC 4443 §2.4 (e) forbids it (the packet is an
 * ICMPv6 error, went to a multicast address (except packet too big, §2.4 (e.3)), or its
 * source is unspecified or multicast) or the rate limit is reached. Returns true if sent. */
static bool icmp_error(struct ov_master *m, const uint8_t *pkt, size_t len, uint8_t type,
                       uint8_t code, uint32_t param)
{
	const uint8_t *src = pkt + 8;
	static const uint8_t unspec[16];
	if (src[0] == 0xff || (pkt[24] == 0xff && type != ICMP6_TOO_BIG) ||
	    !memcmp(src, unspec, 16))
		return false;
	if (pkt[6] == 58 && len > 40 && pkt[40] < 128)
		return false; /* an ICMPv6 error message (no extension headers looked through) */
	if (!icmp_token(m)) {
		CNT_ADD(m, icmp_limited, 1);
		return false;
	}
	uint8_t out[ICMP6_ERR_MAX];
	size_t quote = len;
	if (quote > ICMP6_ERR_MAX - 48)
		quote = ICMP6_ERR_MAX - 48;
	size_t plen = 8 + quote;
	memset(out, 0, 48);
	out[0] = 0x60;
	out[4] = (uint8_t)(plen >> 8);
	out[5] = (uint8_t)plen;
	out[6] = 58;
	out[7] = 64;
	memcpy(out + 8, m->conf.address, 16);
	memcpy(out + 24, src, 16);
	out[40] = type;
	out[41] = code;
	for (int i = 0; i < 4; i++)
		out[44 + i] = (uint8_t)(param >> (24 - 8 * i));
	memcpy(out + 48, pkt, quote);
	uint16_t c = icmp6_csum(out + 8, out + 24, out + 40, plen);
	out[42] = (uint8_t)(c >> 8);
	out[43] = (uint8_t)c;
	return !ov_master_input(m, out, 40 + plen);
}

static void icmp_unreach(struct ov_master *m, const uint8_t *pkt, size_t len, uint8_t code)
{
	if (icmp_error(m, pkt, len, ICMP6_UNREACH, code, 0))
		CNT_ADD(m, icmp_sent, 1);
}

void ov_master_too_big(struct ov_master *m, const uint8_t *pkt, size_t len, unsigned mtu)
{
	if (icmp_error(m, pkt, len, ICMP6_TOO_BIG, 0, mtu < 1280 ? 1280 : mtu))
		CNT_ADD(m, icmp_too_big, 1);
}

/* Hands a packet from the site to the owner of the route lookup found (or answers
 * ICMPv6 unreachable). */
static void dispatch(struct ov_master *m, const uint8_t *pkt, size_t len, bool found, uint32_t idx)
{
	if (!found || !m->routes[idx].s) {
		CNT_ADD(m, no_route, 1);
		icmp_unreach(m, pkt, len, ICMP6_NO_ROUTE);
		return;
	}
	struct ov_route *r = &m->routes[idx];
	int e = r->s->ops->output(r->s, r->cookie, pkt, len);
	if (e == -EHOSTUNREACH) /* the owner cannot reach it now (e.g. no peer endpoint yet) */
		icmp_unreach(m, pkt, len, ICMP6_ADDR_UNREACH);
	if (e) {
		CNT_ADD(m, slave_err, 1);
		log_rl(&m->rl_out, LOG_DEBUG, "overlay: %s: output: %s", r->s->ops->name,
		       strerror(-e));
	}
}

void ov_master_output(struct ov_master *m, const uint8_t *pkt, size_t len)
{
	uint32_t idx;
	bool found = lpm6_lookup(m->lpm, pkt + 24, &idx, NULL);
	dispatch(m, pkt, len, found, idx);
}

void ov_master_unreach(struct ov_master *m, const uint8_t *pkt, size_t len)
{
	CNT_ADD(m, no_route, 1);
	icmp_unreach(m, pkt, len, ICMP6_NO_ROUTE);
}

static int tun_open(struct ov_master *m)
{
	struct ifreq ifr;
	int ret, sock = -1, fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1) {
		ret = -errno;
		log_msg(LOG_ERR, "overlay: /dev/net/tun: %s", strerror(-ret));
		goto out;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", m->conf.tun);
	if (ioctl(fd, TUNSETIFF, &ifr) == -1) {
		ret = -errno;
		log_msg(LOG_ERR, "overlay: TUNSETIFF %s: %s", m->conf.tun, strerror(-ret));
		goto out;
	}
	/* TCP super-packets of up to 64 KiB in one read, cut here (tun_drain), and checksums
	 * left to us; without the offloads (an older kernel), one packet a read as before */
	int hsz = (int)sizeof(struct virtio_net_hdr);
	if (ioctl(fd, TUNSETVNETHDRSZ, &hsz) == -1) {
		ret = -errno;
		log_msg(LOG_ERR, "overlay: TUNSETVNETHDRSZ %s: %s", m->conf.tun, strerror(-ret));
		goto out;
	}
	/* UDP super-packets too (USO, Linux 6.2; the kernel takes USO4 and USO6 only together) */
	unsigned off = TUN_F_CSUM | TUN_F_TSO6 | TUN_F_TSO_ECN;
	m->uso = ioctl(fd, TUNSETOFFLOAD, off | TUN_F_USO4 | TUN_F_USO6) == 0;
	m->tso = m->uso || ioctl(fd, TUNSETOFFLOAD, off) == 0;
	if (m->tso && !m->uso)
		log_msg(LOG_INFO, "overlay: %s: no USO offload: %s", m->conf.tun, strerror(errno));
	if (!m->tso)
		log_msg(LOG_WARNING, "overlay: %s: no TSO offload: %s", m->conf.tun,
		        strerror(errno));
	sock = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock == -1) {
		ret = -errno;
		goto out;
	}
	ifr.ifr_mtu = (int)m->conf.mtu;
	if (ioctl(sock, SIOCSIFMTU, &ifr) == -1) {
		ret = -errno;
		log_msg(LOG_ERR, "overlay: %s: MTU %u: %s", m->conf.tun, m->conf.mtu,
		        strerror(-ret));
		goto out;
	}
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) == -1 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(sock, SIOCSIFFLAGS, &ifr) == -1)) {
		ret = -errno;
		log_msg(LOG_ERR, "overlay: %s: up: %s", m->conf.tun, strerror(-ret));
		goto out;
	}
	m->tun = fd;
	fd = -1;
	ret = 0;
out:
	if (fd != -1)
		close(fd);
	if (sock != -1)
		close(sock);
	return ret;
}

/* Packets read from the TUN device, waiting for one batched route lookup. */
struct tun_batch {
	uint8_t buf[OV_BATCH][SLOT], dst[OV_BATCH][16];
	size_t len[OV_BATCH];
	uint32_t idx[OV_BATCH];
	bool found[OV_BATCH];
	size_t n;
};

/* Looks the batch's destinations up at once (the walks overlap their cache misses), then
 * hands the packets on in order. */
static void batch_run(struct ov_master *m, struct tun_batch *b)
{
	lpm6_lookup_batch(m->lpm, (const uint8_t(*)[16])b->dst, b->n, b->idx, b->found);
	for (size_t i = 0; i < b->n; i++)
		dispatch(m, b->buf[i], b->len[i], b->found[i], b->idx[i]);
	b->n = 0;
}

/* The next free slot, the batch run first if it is full. */
static uint8_t *batch_slot(struct ov_master *m, struct tun_batch *b)
{
	if (b->n == OV_BATCH)
		batch_run(m, b);
	return b->buf[b->n];
}

/* Takes the packet in the next slot (len bytes) if it is a well-formed IPv6 packet. */
static void batch_take(struct ov_master *m, struct tun_batch *b, size_t len)
{
	uint8_t *p = b->buf[b->n];
	if (ovw_inner_check(p, len)) {
		CNT_ADD(m, tun_rx_bad, 1);
		return;
	}
	CNT_ADD(m, tun_rx, 1);
	if (m->tap)
		m->tap(m->tap_arg, false, p, len);
	memcpy(b->dst[b->n], p + 24, 16);
	b->len[b->n++] = len;
}

/* Reads up to OV_BATCH times from the TUN device. Each read is a virtio-net header and a
 * packet: a TCP super-packet (TSO) is cut into segments, a UDP one (USO) into datagrams (io.h); a
 * packet whose checksum the kernel left to us (NEEDS_CSUM: the field holds the pseudo-header's sum)
 * gets it. The TUN MTU is at most OVW_INNER_MAX, so a packet never exceeds a slot; a longer one is
 * malformed. */
static void tun_drain(struct ov_master *m)
{
	static struct tun_batch b;
	static uint8_t raw[TUN_READ_MAX];
	const size_t vh = sizeof(struct virtio_net_hdr);
	for (int k = 0; k < OV_BATCH; k++) {
		ssize_t r = read(m->tun, raw, sizeof(raw));
		if (r <= 0)
			break;
		CNT_ADD(m, tun_reads, 1);
		struct virtio_net_hdr h;
		memcpy(&h, raw, sizeof(h));
		const uint8_t *pkt = raw + vh;
		size_t n = (size_t)r < vh ? 0 : (size_t)r - vh;
		uint8_t gso = h.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
		if (gso == VIRTIO_NET_HDR_GSO_TCPV6 || gso == VIRTIO_NET_HDR_GSO_UDP_L4) {
			bool tcp = gso == VIRTIO_NET_HDR_GSO_TCPV6;
			if (tcp)
				CNT_ADD(m, tun_gso, 1);
			else
				CNT_ADD(m, tun_uso, 1);
			size_t off = 0;
			long sk = h.csum_start == 40 ? 1 : -EBADMSG;
			while (sk > 0 &&
			       (sk = (tcp ? ovio_tso_next : ovio_uso_next)(
			            pkt, n, h.gso_size, &off, batch_slot(m, &b), SLOT)) > 0)
				batch_take(m, &b, (size_t)sk);
			if (sk < 0)
				CNT_ADD(m, tun_rx_bad, 1);
			continue;
		}
		if (gso != VIRTIO_NET_HDR_GSO_NONE || n >= SLOT || n < 40) {
			CNT_ADD(m, tun_rx_bad, 1);
			continue;
		}
		uint8_t *o = batch_slot(m, &b);
		memcpy(o, pkt, n);
		if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
			size_t at = (size_t)h.csum_start + h.csum_offset;
			if (h.csum_start < 40 || at + 2 > n) {
				CNT_ADD(m, tun_rx_bad, 1);
				continue;
			}
			uint16_t c =
			    ovio_csum_fold(ovio_csum_add(0, o + h.csum_start, n - h.csum_start));
			o[at] = (uint8_t)(c >> 8);
			o[at + 1] = (uint8_t)c;
		}
		batch_take(m, &b, n);
	}
	if (b.n)
		batch_run(m, &b);
}

void ov_master_set_tap(struct ov_master *m,
                       void (*fn)(void *arg, bool to_site, const uint8_t *pkt, size_t len),
                       void *arg)
{
	m->tap = fn;
	m->tap_arg = arg;
}

int ov_master_run(struct ov_master *m, int sigfd)
{
	int ret;
	m->ep = epoll_create1(EPOLL_CLOEXEC);
	if (m->ep == -1)
		return -errno;
	if ((ret = tun_open(m)))
		return ret;
	m->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (m->tfd == -1)
		return -errno;
	struct itimerspec its = {.it_interval = {0, OV_TICK_MS * 1000000L},
	                         .it_value = {0, OV_TICK_MS * 1000000L}};
	if (timerfd_settime(m->tfd, 0, &its, NULL) == -1)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = EV_TUN};
	if (epoll_ctl(m->ep, EPOLL_CTL_ADD, m->tun, &ev) == -1)
		return -errno;
	ev.data.u32 = EV_SIG;
	if (epoll_ctl(m->ep, EPOLL_CTL_ADD, sigfd, &ev) == -1)
		return -errno;
	ev.data.u32 = EV_TIMER;
	if (epoll_ctl(m->ep, EPOLL_CTL_ADD, m->tfd, &ev) == -1)
		return -errno;
	m->tokens_ms = now_ms();
	for (unsigned i = 0; i < m->nslaves; i++) {
		struct ov_slave *s = m->slaves[i];
		if ((ret = s->ops->attach(s, m))) {
			log_msg(LOG_ERR, "overlay: slave %s: %s", s->ops->name, strerror(-ret));
			return ret;
		}
		m->attached++;
	}
	log_msg(LOG_INFO, "overlay: ready on %s (mtu %u), %u slave(s), %llu route(s)", m->conf.tun,
	        m->conf.mtu, m->nslaves, (unsigned long long)CNT_GET(m, nroutes_live));
	notify_ready("%s up (mtu %u), %u slave(s)", m->conf.tun, m->conf.mtu, m->nslaves);
	/* busy-poll: after a pass that did something, poll without sleeping for busy_poll_us,
	 * so that the next packet (a reply, most often) finds the loop awake instead of
	 * waiting for a wake-up; then sleep as usual */
	uint64_t spin_until = 0;
	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(m->ep, evs, 16, spin_until ? 0 : -1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (spin_until) {
			CNT_ADD(m, busy_polls, 1);
			if (!n) {
				if ((peak_mono_ns() / 1000) >= spin_until)
					spin_until = 0;
				continue;
			}
			CNT_ADD(m, busy_hits, 1);
		}
		for (int i = 0; i < n; i++) {
			uint32_t what = evs[i].data.u32;
			if (what == EV_TUN) {
				tun_drain(m);
			} else if (what == EV_SIG) {
				struct signalfd_siginfo si;
				if (read(sigfd, &si, sizeof(si)) != sizeof(si))
					continue;
				if (si.ssi_signo == SIGHUP) {
					log_msg(LOG_INFO, "overlay: SIGHUP: reload is not "
					                  "supported yet, ignored");
					continue;
				}
				log_msg(LOG_INFO, "overlay: signal %u, exiting", si.ssi_signo);
				notify_stopping();
				return 0;
			} else if (what == EV_TIMER) {
				uint64_t ticks;
				if (read(m->tfd, &ticks, sizeof(ticks)) != sizeof(ticks))
					continue;
				uint64_t t = now_ms();
				for (unsigned k = 0; k < m->attached; k++)
					if (m->slaves[k]->ops->timer)
						m->slaves[k]->ops->timer(m->slaves[k], t);
			} else if (what - EV_WATCH < m->nwatch && m->watch[what - EV_WATCH].s) {
				struct ov_watch *w = &m->watch[what - EV_WATCH];
				w->s->ops->readable(w->s, w->fd);
			}
		}
		for (unsigned k = 0; k < m->attached; k++)
			if (m->slaves[k]->ops->flush)
				m->slaves[k]->ops->flush(m->slaves[k]);
		tun_out_flush(m);
		if (m->conf.busy_poll_us)
			spin_until = (peak_mono_ns() / 1000) + m->conf.busy_poll_us;
	}
}

void ov_master_stats(struct ov_master *m, struct mbuf *b)
{
	mbuf_printf(
	    b,
	    "# TYPE peak_overlay_tun_rx_packets_total counter\n"
	    "peak_overlay_tun_rx_packets_total %llu\n"
	    "# TYPE peak_overlay_tun_reads_total counter\n"
	    "peak_overlay_tun_reads_total %llu\n"
	    "# TYPE peak_overlay_tun_rx_gso_total counter\n"
	    "peak_overlay_tun_rx_gso_total %llu\n"
	    "# TYPE peak_overlay_busy_polls_total counter\n"
	    "peak_overlay_busy_polls_total %llu\n"
	    "# TYPE peak_overlay_busy_poll_hits_total counter\n"
	    "peak_overlay_busy_poll_hits_total %llu\n"
	    "# TYPE peak_overlay_tun_rx_uso_total counter\n"
	    "peak_overlay_tun_rx_uso_total %llu\n"
	    "# TYPE peak_overlay_tun_rx_malformed_total counter\n"
	    "peak_overlay_tun_rx_malformed_total %llu\n"
	    "# TYPE peak_overlay_tun_tx_packets_total counter\n"
	    "peak_overlay_tun_tx_packets_total %llu\n"
	    "# TYPE peak_overlay_tun_writes_total counter\n"
	    "peak_overlay_tun_writes_total %llu\n"
	    "# TYPE peak_overlay_tun_tx_errors_total counter\n"
	    "peak_overlay_tun_tx_errors_total %llu\n"
	    "# TYPE peak_overlay_no_route_total counter\n"
	    "peak_overlay_no_route_total %llu\n"
	    "# TYPE peak_overlay_icmp_unreach_sent_total counter\n"
	    "peak_overlay_icmp_unreach_sent_total %llu\n"
	    "# TYPE peak_overlay_icmp_unreach_limited_total counter\n"
	    "peak_overlay_icmp_unreach_limited_total %llu\n"
	    "# TYPE peak_overlay_icmp_too_big_sent_total counter\n"
	    "peak_overlay_icmp_too_big_sent_total %llu\n"
	    "# TYPE peak_overlay_slave_output_errors_total counter\n"
	    "peak_overlay_slave_output_errors_total %llu\n"
	    "# TYPE peak_overlay_routes gauge\n"
	    "peak_overlay_routes %llu\n",
	    (unsigned long long)CNT_GET(m, tun_rx), (unsigned long long)CNT_GET(m, tun_reads),
	    (unsigned long long)CNT_GET(m, tun_gso), (unsigned long long)CNT_GET(m, busy_polls),
	    (unsigned long long)CNT_GET(m, busy_hits), (unsigned long long)CNT_GET(m, tun_uso),
	    (unsigned long long)CNT_GET(m, tun_rx_bad), (unsigned long long)CNT_GET(m, tun_tx),
	    (unsigned long long)CNT_GET(m, tun_writes), (unsigned long long)CNT_GET(m, tun_tx_err),
	    (unsigned long long)CNT_GET(m, no_route), (unsigned long long)CNT_GET(m, icmp_sent),
	    (unsigned long long)CNT_GET(m, icmp_limited),
	    (unsigned long long)CNT_GET(m, icmp_too_big), (unsigned long long)CNT_GET(m, slave_err),
	    (unsigned long long)CNT_GET(m, nroutes_live));
	for (unsigned i = 0; i < m->nslaves; i++)
		if (m->slaves[i]->ops->stats)
			m->slaves[i]->ops->stats(m->slaves[i], b);
}
