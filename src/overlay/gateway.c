/*
 * The gateway slave: IPv6 in UDP/IPv4 between sites' gateways (wire.h gives the format
 * and the crypto). Peers are static for now: each has a public key, the prefixes it serves
 * (its routes in the master, and the only inner sources accepted from it) and maybe an
 * endpoint. A peer behind NAT needs none: its authenticated packets (keepalives at least)
 * teach us the mapping, and only a packet newer than any seen may move it, so a replay
 * cannot redirect a site. Forged, replayed and malformed packets are dropped and counted.
 *
 * I/O is batched: packets from the site are sealed as the master hands them over and queued;
 * at the end of the master's loop pass (gw_flush) one sendmmsg sends the queue, each run of
 * equal-sized packets to one peer as one UDP GSO datagram (UDP_SEGMENT, the kernel cuts it);
 * the IPv4 side is read with recvmmsg. Outer packets carry DF: a send the path MTU refuses
 * (EMSGSIZE, its MTU from the socket's error queue) lowers the peer's tunnel MTU, and a later
 * packet bigger than that is answered with ICMPv6 packet too big (ov_master_too_big).
 */
#define _GNU_SOURCE /* sendmmsg, recvmmsg */
#include "gateway.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "addrwatch.h"
#include "fpload.h"
#include "wire.h"
#include "peak/util.h"

enum {
	GW_LOST_RELAYS = 4,     /* relays remembered per peer as not hearing it */
	GW_LOST_TELL_MS = 100,  /* one OVW_RELAY_LOST per requesting peer this often at most */
	GW_LOST_MS = 10000,     /* a relay that said so is no relay to that peer this long */
	GW_EP_TELL_MS = 100,    /* a keepalive on an endpoint change at most this often per peer */
	GW_FLAP_LOG_MS = 10000, /* a flapping peer logged at most this often */
};

struct gw_peer {
	const struct ov_peer_conf *conf;
	uint8_t prk[32];
	struct ovw_aead tx;
	uint64_t tx_counter;
	bool has_ep, ep_seen; /* ep_seen: ep is where its authenticated packets come from */
	struct sockaddr_in ep;
	bool rx_any;
	uint64_t rx_epoch;
	uint64_t rx_taken, rx_top; /* in rx_epoch: packets taken, highest counter + 1 */
	struct ovw_aead rx;
	struct ovw_replay replay;
	uint64_t last_tx_ms, last_rx_ms;
	uint64_t try_ms;    /* our first packet sent to it directly since its last (0: none) */
	unsigned mtu;       /* largest inner packet the path carries; 0: OVW_INNER_MAX */
	uint64_t mtu_at_ms; /* when mtu was learned: it is forgotten GW_MTU_MS later */
	uint64_t rx_packets, tx_packets; /* atomic: read by the metrics thread */
	int has_ep_pub;                  /* has_ep, for the metrics thread */
	struct sockaddr_in told;         /* our address as this peer last told it (OVW_MAPPING) */
	uint64_t told_ms;                /* when; 0: never */
	bool peer_edm;                   /* its NAT maps per endpoint (its DHT record says) */
	bool unpunchable;    /* no hole can be punched (see unpunchable): relayed, or unreachable */
	bool one_sided_told; /* unpunchable with one NAT endpoint-dependent: logged once */
	int unpunchable_pub; /* unpunchable and no relay: for the metrics thread */
	uint32_t nat_via;    /* unpunchable: the peer relaying to it (GW_DIRECT: none found) */
	bool no_relay_told;  /* unpunchable and no relay: warned once */
	uint64_t relayed_rx_ms; /* its last packet relayed to us by another peer (OVW_RELAYED) */
	uint32_t via;           /* GW_DIRECT, or the peer that relays our packets to this one */
	uint64_t out_packets;   /* packets from the site to this peer, relayed or not */
	/* relays that told us lately that they do not hear this peer (OVW_RELAY_LOST): none
	 * of them relays to it for GW_LOST_MS after */
	uint32_t lost_via[GW_LOST_RELAYS];
	uint64_t lost_ms[GW_LOST_RELAYS]; /* 0: a free slot */
	uint64_t lost_told_ms;            /* our last OVW_RELAY_LOST to this peer */
	/* roaming (roam_damped): the endpoint it left last (seen; else zero) and when, its last
	 * packet from ep, its last return to ep_prev, the last keepalive told of a change */
	struct sockaddr_in ep_prev;
	uint64_t ep_moved_ms, ep_heard_ms, flap_ms, ep_told_ms, flap_logged_ms;
	uint64_t flaps;       /* returns to ep_prev while ep lived (each was a switch once) */
	bool at_prev;         /* its last packet came from ep_prev: the next one there is no flap */
	bool ep_tell_pending; /* a change not told yet (GW_EP_TELL_MS): told at a tick */
	bool told_settled;    /* told is its first report lately, or as its last (take_mapping) */
};

/* A peer the DHT slave found (gw_peer_learn): its configuration is ours to keep. */
struct gw_learned {
	struct ov_peer_conf conf;
	struct prefix prefixes[OVC_DHT_PREFIXES];
};

/* A packet from an unknown sender, held while the DHT slave looks the sender up. */
struct gw_held {
	uint8_t id[OVW_ID_LEN];
	struct sockaddr_in from;
	uint64_t at_ms;
	size_t len; /* 0: a free slot */
	uint8_t pkt[OVW_PKT_MAX];
};

enum {
	GW_HELD = 8,          /* packets held from unknown senders (the oldest goes first) */
	GW_HELD_MS = 3000,    /* and for how long */
	GW_BATCH = 64,        /* packets queued before a flush */
	GW_RX_BATCH = 16,     /* datagrams per recvmmsg */
	GW_RX_BUF = 65536,    /* one datagram: with UDP GRO, up to 64 KiB of glued packets */
	GW_GSO_BYTES = 65000, /* payload of one UDP GSO datagram at most (IPv4's 64 KiB) */
	GW_OUTER = 20 + 8 + OVW_HDR_LEN + OVW_TAG_LEN, /* IPv4, UDP and our header and tag */
	GW_MTU_MS = 600000, /* a learned path MTU is tried higher again after 10 min (RFC 8201) */
	GW_SOCKBUF_BYTES = 4 << 20, /* absorbs a burst while the loop decrypts */
	GW_ADDR_TELL_MS = 100,      /* address changes told to every peer at most this often */
	GW_ADDR_RETRY_MS = 2000,    /* and tried again this long while no keepalive leaves */
	D_MALFORMED = 0,
	D_UNKNOWN_PEER,
	D_AUTH,
	D_REPLAY,
	D_INNER,
	D_SOURCE,
	D_RELAY,
	D_RELAYED,
	D_PLAIN, /* an OVW_DATA_PLAIN from a peer we do not mark trusted */
	D_NREASONS,
};

static const char *const drop_names[D_NREASONS] = {
    "malformed", "unknown_peer", "auth",    "replay",          "inner",
    "source",    "relay",        "relayed", "plain_untrusted",
};

struct gw {
	struct ov_slave slave;
	const struct ov_conf *conf;
	struct ov_master *m;
	struct gw_peer *peers;
	size_t npeers; /* configured, then learned; published to the metrics thread (release) */
	size_t npeers_conf, cap;
	struct gw_learned *learned; /* GW_MAX_LEARNED, for peers[npeers_conf..] */
	void (*resolve)(void *arg, const uint8_t id[OVW_ID_LEN]);
	void *resolve_arg;
	struct gw_held *held; /* GW_HELD, with the DHT slave only */
	unsigned held_next;
	void (*on_mapping)(void *arg, const struct sockaddr_in *mapping);
	void *mapping_arg;
	bool has_mapping;
	/* the resiliency slave: probes and their echoes go to it; relays are served */
	void (*on_probe)(void *arg, uint32_t cookie, uint8_t type,
	                 const uint8_t body[OVW_PROBE_LEN], uint64_t now_ms);
	void *probe_arg;
	void (*on_linkstate)(void *arg, uint32_t cookie, const uint8_t *body, size_t n,
	                     uint64_t now_ms);
	void *linkstate_arg;
	/* the multicast slave: membership announcements and packets to multicast groups */
	void (*on_members)(void *arg, uint32_t cookie, const uint8_t *body, size_t n);
	void (*on_mcast)(void *arg, uint32_t cookie, const uint8_t *pkt, size_t n);
	void (*on_tree)(void *arg, uint32_t cookie, const uint8_t *body, size_t n);
	void *mcast_arg;
	struct sockaddr_in mapping;      /* our address as the last peer to tell us sees it */
	struct sockaddr_in mapping_prev; /* the one before (zero: none) */
	uint64_t mapping_ms;             /* when mapping changed last */
	uint64_t moved_ms;               /* when a peer told us a new address of ours (0: never) */
	bool edm;    /* our NAT maps per endpoint: two peers see one address, other ports */
	int edm_pub; /* edm, for the metrics thread */
	uint8_t pub[32];
	uint64_t epoch;
	struct ovw_aead fresh; /* a new epoch's key, kept only if it opens the packet (a new
	                        * handle per new epoch: one allocation per peer restart) */
	int fd;
	int nlfd;                /* rtnetlink: our IPv4 addresses (addrwatch.h), or -1 */
	uint64_t addr_told_ms;   /* the last time an address change was told to every peer */
	uint64_t addr_change_ms; /* the last change read */
	bool addr_pending;       /* a change came within GW_ADDR_TELL_MS of that: told at a tick */
	struct log_limit rl_send, rl_drop;
	uint64_t drops[D_NREASONS];
	/* sealed packets waiting for gw_flush, to peers[txpeer[i]] */
	uint8_t (*txbuf)[OVW_PKT_MAX];
	uint16_t txlen[GW_BATCH];
	uint32_t txpeer[GW_BATCH];
	unsigned ntx;
	struct ov_fp *fp; /* the kernel fast path (fpload.h), NULL: user space only */
	uint64_t rx, tx, tx_err, no_endpoint, ka_tx, ka_rx, ep_changes, learned_n, held_n,
	    mapping_rx, mapping_changes, too_big, pmtu_changes, tx_calls, rx_calls, unpunchable_n,
	    probes, relay_tx, relay_fwd, relay_rx, probe_tx, probe_rx, nat_relay_tx, relay_lost_tx,
	    relay_lost_rx, addr_changes, plain_rx, plain_tx, ep_flaps, mapping_flaps;
};

/* Counters have one writer, the loop's thread: a relaxed load and store (no locked
 * read-modify-write on the packet path), whole 64-bit values for the metrics thread. */
#define CNT_ADD(p, f, v)                                                                           \
	__atomic_store_n(&(p)->f, __atomic_load_n(&(p)->f, __ATOMIC_RELAXED) + (v),                \
	                 __ATOMIC_RELAXED)
#define CNT_GET(p, f) __atomic_load_n(&(p)->f, __ATOMIC_RELAXED)

/* A packet went to p directly at now: the first since p's last one starts the try (see
 * unpunchable). */
static void note_try(struct gw_peer *p, uint64_t now)
{
	if (!p->try_ms || p->try_ms <= p->last_rx_ms)
		p->try_ms = now;
}

static void drop(struct gw *g, int why, const struct sockaddr_in *from)
{
	char a[INET_ADDRSTRLEN];
	CNT_ADD(g, drops[why], 1);
	log_rl(&g->rl_drop, LOG_DEBUG, "overlay: gateway: dropped a packet from %s:%u: %s",
	       inet_ntop(AF_INET, &from->sin_addr, a, sizeof(a)), ntohs(from->sin_port),
	       drop_names[why]);
}

/* Seals and sends one packet of type to p; counts. */
static int send_to(struct gw *g, struct gw_peer *p, uint8_t type, const uint8_t *inner, size_t n)
{
	uint8_t out[OVW_PKT_MAX];
	struct ovw_hdr h = {.type = type, .epoch = g->epoch, .counter = p->tx_counter};
	memcpy(h.id, g->pub, OVW_ID_LEN);
	long len = ovw_seal(&h, &p->tx, inner, n, out, sizeof(out));
	if (len < 0)
		return (int)len;
	p->tx_counter++;
	p->last_tx_ms = peak_mono_ms();
	note_try(p, p->last_tx_ms);
	ssize_t w =
	    sendto(g->fd, out, (size_t)len, 0, (const struct sockaddr *)&p->ep, sizeof(p->ep));
	if (w != len) {
		int e = w == -1 ? errno : EIO;
		CNT_ADD(g, tx_err, 1);
		log_rl(&g->rl_send, LOG_WARNING, "overlay: gateway: send to %s: %s", p->conf->name,
		       strerror(e));
		return -e;
	}
	CNT_ADD(g, tx, 1);
	CNT_ADD(p, tx_packets, 1);
	return 0;
}

static bool same_ep(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
	return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

/* A keepalive; to a peer whose packets come from p->ep, one that tells it that address (its
 * public mapping when it is behind NAT). */
static int send_keepalive(struct gw *g, struct gw_peer *p)
{
	uint8_t m[OVW_MAPPING_LEN];
	if (!p->ep_seen)
		return send_to(g, p, OVW_KEEPALIVE, NULL, 0);
	memcpy(m, &p->ep.sin_addr, 4);
	memcpy(m + 4, &p->ep.sin_port, 2);
	return send_to(g, p, OVW_MAPPING, m, sizeof(m));
}

/* What the peers that told us our address lately (within three keepalive periods) say of
 * our NAT: 1 if two see the same address with different ports (it gives each destination
 * its own mapping: endpoint-dependent, RFC 4787 §4.1, so a mapping one peer saw is no use to
 * another), else 0 if two see the same address and port (endpoint-independent), -1 if no
 * two peers tell (the last verdict stands: a peer we send data to sends no keepalives).
 * Only settled reports count (told_settled): a peer whose reports alternate between two
 * mappings (it hears us on two live paths, or it flaps between two endpoints of ours) would
 * flip the verdict with each. */
static int nat_edm(const struct gw *g, uint64_t now)
{
	uint64_t fresh_ms = 3ULL * g->conf->keepalive_s * 1000;
	int v = -1;
	for (size_t i = 0; i < g->npeers; i++) {
		const struct gw_peer *p = &g->peers[i];
		if (!p->told_ms || now - p->told_ms > fresh_ms || !p->told_settled)
			continue;
		for (size_t j = i + 1; j < g->npeers; j++) {
			const struct gw_peer *q = &g->peers[j];
			if (!q->told_ms || now - q->told_ms > fresh_ms || !q->told_settled ||
			    q->told.sin_addr.s_addr != p->told.sin_addr.s_addr)
				continue;
			if (q->told.sin_port != p->told.sin_port)
				return 1;
			v = 0;
		}
	}
	return v;
}

/* A peer told us how it sees our address. Behind an endpoint-dependent NAT every peer sees
 * another port: the DHT slave is told only when the address or that kind changes (a new
 * port per peer and keepalive would republish every second). A report that differs from the
 * peer's last fresh one is unsettled: it counts for no NAT verdict (nat_edm), and it moves
 * our mapping only to a new address (we moved: at once), not to another port (taken at the
 * peer's next report, if the same) nor back to the address we left within GW_FLAP_MS; such
 * reports are counted as mapping flaps. */
static void take_mapping(struct gw *g, struct gw_peer *p, const uint8_t m[OVW_MAPPING_LEN])
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	memcpy(&a.sin_addr, m, 4);
	memcpy(&a.sin_port, m + 4, 2);
	CNT_ADD(g, mapping_rx, 1);
	if (!a.sin_port)
		return;
	uint64_t now = peak_mono_ms();
	bool fresh = p->told_ms && now - p->told_ms <= 3ULL * g->conf->keepalive_s * 1000;
	p->told_settled = !fresh || same_ep(&p->told, &a);
	p->told = a;
	p->told_ms = now;
	bool was_edm = g->edm;
	int v = nat_edm(g, now);
	if (v >= 0)
		g->edm = v;
	__atomic_store_n(&g->edm_pub, g->edm, __ATOMIC_RELAXED);
	if (g->edm != was_edm)
		log_msg(LOG_INFO, "overlay: gateway: our NAT %s",
		        g->edm ? "maps ports per destination (endpoint-dependent): sites behind "
		                 "such a NAT too are out of reach without a relay"
		               : "keeps one mapping for every destination again");
	bool same_addr = g->has_mapping && a.sin_addr.s_addr == g->mapping.sin_addr.s_addr;
	if (same_addr && g->edm == was_edm && (g->edm || a.sin_port == g->mapping.sin_port))
		return;
	if (!p->told_settled && g->edm == was_edm &&
	    (same_addr || (a.sin_addr.s_addr == g->mapping_prev.sin_addr.s_addr &&
	                   now - g->mapping_ms < GW_FLAP_MS))) {
		CNT_ADD(g, mapping_flaps, 1);
		return;
	}
	if (g->has_mapping && !same_addr) { /* we moved: every peer hears from the new address
		                             * now, not at its next keepalive (it roams on it) */
		g->moved_ms = now;
		for (size_t i = 0; i < g->npeers; i++)
			if (&g->peers[i] != p && g->peers[i].has_ep &&
			    !send_keepalive(g, &g->peers[i]))
				CNT_ADD(g, ka_tx, 1);
	}
	char s[INET_ADDRSTRLEN];
	log_msg(LOG_INFO, "overlay: gateway: peer %s sees us at %s:%u", p->conf->name,
	        inet_ntop(AF_INET, &a.sin_addr, s, sizeof(s)), ntohs(a.sin_port));
	if (g->has_mapping)
		g->mapping_prev = g->mapping;
	g->mapping = a;
	g->mapping_ms = now;
	g->has_mapping = true;
	CNT_ADD(g, mapping_changes, 1);
	if (g->on_mapping)
		g->on_mapping(g->mapping_arg, &a);
}

/* True if the gateway forwards OVW_RELAY packets and accepts OVW_RELAYED ones: with the
 * resiliency slave, or with the DHT slave (every peer certified by the authority), which
 * relays for pairs of sites whose NATs cannot be punched (see nat_relay). */
static bool relays(const struct gw *g)
{
	return g->on_probe || g->conf->dht.enabled;
}

/* True if a packet from origin relayed by p (OVW_RELAYED) is taken: with the resiliency
 * slave from any known site through any (a RON relay is trusted with the source); with the
 * DHT slave alone only through a peer that can relay (its NAT is not endpoint-dependent, as
 * nat_relay_usable asks: a site behind such a NAT is nobody's relay) and from a site that may
 * be out of direct reach (our NAT or its maps per endpoint, as unpunchable asks) and that we
 * do not hear directly lately, so a certified site cannot speak for one that reaches us
 * directly. (Not unpunchable itself: with one NAT endpoint-dependent, the far site may judge
 * first that the hole cannot be punched.) Others are dropped as D_RELAYED (a source no peer
 * serves as D_SOURCE). */
static bool relayed_ok(const struct gw *g, const struct gw_peer *p, const struct gw_peer *origin,
                       uint64_t now)
{
	return g->on_probe ||
	       (g->conf->dht.enabled && !p->peer_edm && (g->edm || origin->peer_edm) &&
	        !gw_peer_heard_within(origin->last_rx_ms, now, g->conf->keepalive_s));
}

/* True if relay q told us in the last GW_LOST_MS (OVW_RELAY_LOST) that it does not hear p:
 * no relay to p till then (the next packet through it asks again) or till a packet of p's
 * comes through it (then the far site, which takes the lowest usable id too, is back on it). */
static bool relay_lost(const struct gw_peer *p, uint32_t q, uint64_t now)
{
	for (int i = 0; i < GW_LOST_RELAYS; i++)
		if (p->lost_ms[i] && p->lost_via[i] == q &&
		    (p->lost_ms[i] >= now || now - p->lost_ms[i] < GW_LOST_MS))
			return true;
	return false;
}

/* Marks relay q as not hearing p (its own slot, a free one, else the oldest). */
static void relay_lost_set(struct gw_peer *p, uint32_t q, uint64_t now)
{
	int k = 0;
	for (int i = 0; i < GW_LOST_RELAYS; i++) {
		if (p->lost_ms[i] && p->lost_via[i] == q) {
			k = i;
			break;
		}
		if (p->lost_ms[i] < p->lost_ms[k])
			k = i;
	}
	p->lost_via[k] = q;
	p->lost_ms[k] = now;
}

static void relay_lost_clear(struct gw_peer *p, uint32_t q)
{
	for (int i = 0; i < GW_LOST_RELAYS; i++)
		if (p->lost_via[i] == q)
			p->lost_ms[i] = 0;
}

/* True if q can relay to a peer that both NATs keep us from: its DHT record says its NAT
 * keeps one mapping for every destination (DHR_F_EDM clear, so the far site's packets get
 * through to it too), and it was heard lately (gw_peer_heard_within, the rule the
 * resiliency slave's relay_usable applies too: a silent relay is replaced). */
static bool nat_relay_usable(const struct gw *g, const struct gw_peer *q, uint64_t now)
{
	return !q->peer_edm && q->has_ep &&
	       gw_peer_heard_within(q->last_rx_ms, now, g->conf->keepalive_s);
}

/* The relay for p (unpunchable): the usable peer (not p, and that did not tell us lately it
 * does not hear p: relay_lost) with the lowest sender id, so that
 * both sites of the pair pick the same one without talking once they know the same relays
 * (till then each end relays its own packets through its own). On the packet path (!rescan)
 * the current one is kept while usable; the timer rescans, so a lower id that became
 * usable is taken there. GW_DIRECT if none. */
static uint32_t nat_relay(struct gw *g, const struct gw_peer *p, uint64_t now, bool rescan)
{
	if (!rescan && p->nat_via < g->npeers && nat_relay_usable(g, &g->peers[p->nat_via], now) &&
	    !relay_lost(p, p->nat_via, now))
		return p->nat_via;
	uint32_t best = GW_DIRECT;
	for (size_t j = 0; j < g->npeers; j++) {
		const struct gw_peer *q = &g->peers[j];
		if (q == p || !nat_relay_usable(g, q, now) || relay_lost(p, (uint32_t)j, now))
			continue;
		if (best == GW_DIRECT || memcmp(q->conf->pub, g->peers[best].conf->pub, 32) < 0)
			best = (uint32_t)j;
	}
	return best;
}

/* True if p cannot be reached directly and it has not answered lately: both NATs map per
 * endpoint (no port of ours it knows works, nor one of its that we know: known at once), or
 * one does and our packets to it went unanswered for as long as a peer is heard (then the
 * other NAT filters by port, RFC 4787 §5: the port the first maps toward the second cannot
 * be known, so the second never lets its packets in; found by trying). Keepalives still go
 * out, so a path that opens anyway (a NAT misjudged) is taken. Then p->nat_via is the peer
 * that relays to it (nat_relay), or GW_DIRECT if none is usable: p is unreachable when both
 * NATs map per endpoint, else tried directly. Logs the first time, each change of relay, and
 * once when there is none. rescan: as for nat_relay. */
static bool unpunchable(struct gw *g, struct gw_peer *p, uint64_t now, bool rescan)
{
	unsigned ka = g->conf->keepalive_s;
	bool both = g->edm && p->peer_edm;
	/* (with the DHT slave only: without it no peer relays for NATs, see relayed_ok) */
	bool tried = g->conf->dht.enabled && (g->edm || p->peer_edm) && p->try_ms &&
	             !gw_peer_heard_within(p->try_ms, now, ka);
	bool u = (both || tried) && !gw_peer_heard_within(p->last_rx_ms, now, ka);
	if (u && !p->unpunchable && both)
		log_msg(LOG_INFO,
		        "overlay: gateway: peer %s: its NAT and ours both map ports per "
		        "destination (endpoint-dependent), so no hole can be punched",
		        p->conf->name);
	else if (u && !p->unpunchable && !p->one_sided_told) {
		log_msg(LOG_INFO,
		        "overlay: gateway: peer %s: no answer to our packets, and %s NAT maps "
		        "ports per destination (endpoint-dependent): the other filters by port, so "
		        "no hole can be punched",
		        p->conf->name, g->edm ? "our" : "its");
		p->one_sided_told = true;
	}
	p->unpunchable = u;
	uint32_t via = u ? nat_relay(g, p, now, rescan) : GW_DIRECT;
	if (via != p->nat_via && via != GW_DIRECT) {
		log_msg(LOG_INFO, "overlay: gateway: peer %s is relayed via %s", p->conf->name,
		        g->peers[via].conf->name);
		p->no_relay_told = false;
	} else if (u && both && via == GW_DIRECT && !p->no_relay_told) {
		log_msg(LOG_WARNING,
		        "overlay: gateway: peer %s is unreachable: no hole can be punched and no "
		        "relay is usable (a peer whose NAT is not endpoint-dependent, heard from "
		        "lately)",
		        p->conf->name);
		p->no_relay_told = true;
	}
	p->nat_via = via;
	__atomic_store_n(&p->unpunchable_pub, u && both && via == GW_DIRECT, __ATOMIC_RELAXED);
	return u;
}

static void gw_flush(struct ov_slave *s);

/* Tells the fast path where trusted peer p is now: encapsulated to its endpoint while it is
 * reached directly, left to user space while relayed or without one. */
static void fp_sync(struct gw *g, struct gw_peer *p)
{
	if (!g->fp || !p->conf->trusted)
		return;
	bool direct = p->has_ep && p->via == GW_DIRECT;
	int r = fp_peer_endpoint(g->fp, (uint32_t)(p - g->peers), direct ? &p->ep : NULL);
	if (r)
		log_rl(&g->rl_send, LOG_WARNING, "overlay: gateway: fast path: peer %s: %s",
		       p->conf->name, strerror(-r));
}

/* Seals pkt (an IPv6 packet, len bytes) as a packet of type to peers[cookie] (a valid
 * cookie) and queues it for gw_flush. Returns 0, -EHOSTUNREACH (no endpoint), -EMSGSIZE
 * (over the path MTU: ICMPv6 packet too big sent) or -EINVAL. */
static int queue_packet(struct gw *g, uint32_t cookie, uint8_t type, const uint8_t *pkt, size_t len)
{
	struct gw_peer *p = &g->peers[cookie];
	if (!p->has_ep) {
		CNT_ADD(g, no_endpoint, 1);
		return -EHOSTUNREACH;
	}
	if (p->mtu && len > p->mtu) {
		CNT_ADD(g, too_big, 1);
		ov_master_too_big(g->m, pkt, len, p->mtu);
		return -EMSGSIZE;
	}
	if (g->ntx == GW_BATCH)
		gw_flush(&g->slave);
	struct ovw_hdr h = {.type = type, .epoch = g->epoch, .counter = p->tx_counter};
	memcpy(h.id, g->pub, OVW_ID_LEN);
	long n = type == OVW_DATA_PLAIN
	             ? ovw_plain(&h, pkt, len, g->txbuf[g->ntx], OVW_PKT_MAX)
	             : ovw_seal(&h, &p->tx, pkt, len, g->txbuf[g->ntx], OVW_PKT_MAX);
	if (n < 0)
		return (int)n;
	if (type == OVW_DATA_PLAIN)
		CNT_ADD(g, plain_tx, 1);
	p->tx_counter++;
	g->txlen[g->ntx] = (uint16_t)n;
	g->txpeer[g->ntx] = cookie;
	g->ntx++;
	return 0;
}

static int gw_output(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len)
{
	struct gw *g = s->priv;
	if (cookie >= g->npeers)
		return -EINVAL;
	struct gw_peer *p = &g->peers[cookie];
	p->out_packets++;
	if (p->via != GW_DIRECT && p->via < g->npeers) { /* its direct path is down */
		CNT_ADD(g, relay_tx, 1);
		return queue_packet(g, p->via, OVW_RELAY, pkt, len);
	}
	if ((g->edm || p->peer_edm) && unpunchable(g, p, peak_mono_ms(), false)) {
		if (p->nat_via != GW_DIRECT) { /* the relay forwards it as OVW_RELAYED */
			CNT_ADD(g, nat_relay_tx, 1);
			return queue_packet(g, p->nat_via, OVW_RELAY, pkt, len);
		}
		if (g->edm && p->peer_edm) {
			CNT_ADD(g, unpunchable_n, 1);
			return -EHOSTUNREACH; /* ICMPv6 address unreachable to the sender */
		}
	}
	/* a trusted peer's data in the clear (the fast path, when on, sends most of it) */
	return queue_packet(g, cookie, p->conf->trusted ? OVW_DATA_PLAIN : OVW_DATA, pkt, len);
}

/* The path MTU to addr (an outer packet's whole size) is mtu: the peers there carry inner
 * packets of at most mtu - GW_OUTER from now on (never less than IPv6's 1280). */
static void learn_pmtu(struct gw *g, const struct sockaddr_in *addr, uint32_t mtu)
{
	unsigned inner = mtu > GW_OUTER + 1280 ? mtu - GW_OUTER : 1280;
	if (inner > OVW_INNER_MAX)
		inner = OVW_INNER_MAX;
	for (size_t i = 0; i < g->npeers; i++) {
		struct gw_peer *p = &g->peers[i];
		if (!p->has_ep || p->ep.sin_addr.s_addr != addr->sin_addr.s_addr || p->mtu == inner)
			continue;
		char a[INET_ADDRSTRLEN];
		log_msg(LOG_INFO, "overlay: gateway: path MTU to peer %s (%s) is %u: tunnel MTU %u",
		        p->conf->name, inet_ntop(AF_INET, &addr->sin_addr, a, sizeof(a)), mtu,
		        inner);
		p->mtu = inner;
		p->mtu_at_ms = peak_mono_ms();
		CNT_ADD(g, pmtu_changes, 1);
	}
}

/* Reads the socket's error queue (IP_RECVERR): path MTUs that refused a send, locally or
 * by an ICMP fragmentation needed; other errors (e.g. port unreachable) only empty it. */
static void read_errqueue(struct gw *g)
{
	for (int i = 0; i < GW_BATCH; i++) {
		uint8_t data[64];
		union {
			char buf[CMSG_SPACE(sizeof(struct sock_extended_err) +
			                    sizeof(struct sockaddr_in))];
			struct cmsghdr align;
		} ctl;
		struct sockaddr_in to;
		struct iovec iov = {data, sizeof(data)};
		struct msghdr mh = {.msg_name = &to,
		                    .msg_namelen = sizeof(to),
		                    .msg_iov = &iov,
		                    .msg_iovlen = 1,
		                    .msg_control = ctl.buf,
		                    .msg_controllen = sizeof(ctl.buf)};
		if (recvmsg(g->fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) == -1)
			return;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_RECVERR)
				continue;
			struct sock_extended_err ee;
			memcpy(&ee, CMSG_DATA(c), sizeof(ee));
			if (ee.ee_errno == EMSGSIZE && ee.ee_info && mh.msg_namelen >= sizeof(to) &&
			    to.sin_family == AF_INET)
				learn_pmtu(g, &to, ee.ee_info);
		}
	}
}

/* Sends the queued packets i..j (one peer), one datagram each; counts. */
static void send_each(struct gw *g, unsigned i, unsigned j)
{
	struct gw_peer *p = &g->peers[g->txpeer[i]];
	for (unsigned k = i; k < j; k++) {
		ssize_t w = sendto(g->fd, g->txbuf[k], g->txlen[k], 0,
		                   (const struct sockaddr *)&p->ep, sizeof(p->ep));
		CNT_ADD(g, tx_calls, 1);
		if (w == g->txlen[k]) {
			CNT_ADD(g, tx, 1);
			CNT_ADD(p, tx_packets, 1);
			continue;
		}
		int e = w == -1 ? errno : EIO;
		CNT_ADD(g, tx_err, 1);
		if (e == EMSGSIZE)
			read_errqueue(g);
		log_rl(&g->rl_send, LOG_WARNING, "overlay: gateway: send to %s: %s", p->conf->name,
		       strerror(e));
	}
}

static void gw_flush(struct ov_slave *s)
{
	struct gw *g = s->priv;
	struct mmsghdr mm[GW_BATCH];
	struct iovec iov[GW_BATCH];
	unsigned first[GW_BATCH + 1], nm = 0;
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctl[GW_BATCH];
	if (!g->ntx)
		return;
	/* runs: one peer, every packet as long as the first but the last maybe shorter */
	for (unsigned i = 0, j; i < g->ntx; i = j) {
		size_t seg = g->txlen[i], bytes = seg;
		for (j = i + 1;
		     j < g->ntx && g->txpeer[j] == g->txpeer[i] && g->txlen[j - 1] == seg &&
		     g->txlen[j] <= seg && bytes + g->txlen[j] <= GW_GSO_BYTES;
		     j++)
			bytes += g->txlen[j];
		struct gw_peer *p = &g->peers[g->txpeer[i]];
		struct msghdr *mh = &mm[nm].msg_hdr;
		memset(mh, 0, sizeof(*mh));
		for (unsigned k = i; k < j; k++)
			iov[k] = (struct iovec){g->txbuf[k], g->txlen[k]};
		mh->msg_name = &p->ep;
		mh->msg_namelen = sizeof(p->ep);
		mh->msg_iov = &iov[i];
		mh->msg_iovlen = j - i;
		if (j - i > 1) {
			mh->msg_control = ctl[nm].buf;
			mh->msg_controllen = sizeof(ctl[nm].buf);
			struct cmsghdr *c = CMSG_FIRSTHDR(mh);
			c->cmsg_level = SOL_UDP;
			c->cmsg_type = UDP_SEGMENT;
			c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			uint16_t gso = (uint16_t)seg;
			memcpy(CMSG_DATA(c), &gso, sizeof(gso));
		}
		first[nm++] = i;
	}
	first[nm] = g->ntx;
	for (unsigned done = 0; done < nm;) {
		int r = sendmmsg(g->fd, mm + done, nm - done, 0);
		CNT_ADD(g, tx_calls, 1);
		if (r > 0) {
			for (unsigned k = done; k < done + (unsigned)r; k++) {
				struct gw_peer *p = &g->peers[g->txpeer[first[k]]];
				CNT_ADD(g, tx, first[k + 1] - first[k]);
				CNT_ADD(p, tx_packets, first[k + 1] - first[k]);
			}
			done += (unsigned)r;
			continue;
		}
		/* the first unsent datagram failed: one by one, to learn a path MTU (GSO
		 * refuses a segment over it with EINVAL) or count what is lost */
		send_each(g, first[done], first[done + 1]);
		done++;
	}
	uint64_t now = peak_mono_ms();
	for (unsigned i = 0; i < g->ntx; i++) {
		g->peers[g->txpeer[i]].last_tx_ms = now;
		note_try(&g->peers[g->txpeer[i]], now);
	}
	g->ntx = 0;
}

static struct gw_peer *peer_by_id(struct gw *g, const uint8_t id[OVW_ID_LEN])
{
	for (size_t i = 0; i < g->npeers; i++)
		if (!memcmp(g->peers[i].conf->pub, id, OVW_ID_LEN))
			return &g->peers[i];
	return NULL;
}

static bool serves(const struct gw_peer *p, const uint8_t addr[16])
{
	for (size_t i = 0; i < p->conf->nprefixes; i++)
		if (prefix_contains_addr(&p->conf->prefixes[i], addr))
			return true;
	return false;
}

static bool source_allowed(const struct gw_peer *p, const uint8_t *inner)
{
	return serves(p, inner + 8);
}

/* The first peer other than except whose prefixes hold addr (a linear scan: only relayed
 * packets look), or NULL. */
static struct gw_peer *peer_serving(struct gw *g, const uint8_t addr[16],
                                    const struct gw_peer *except)
{
	for (size_t i = 0; i < g->npeers; i++)
		if (&g->peers[i] != except && serves(&g->peers[i], addr))
			return &g->peers[i];
	return NULL;
}

/* Relay q (authenticated) told us it does not hear the site whose sender id is id (an
 * OVW_RELAY_LOST): q relays nothing to that peer while the mark is fresh, and a peer q was
 * relaying to (both NATs endpoint-dependent) gets another relay at once, or none: then it is
 * unreachable, said as when no relay is usable. (The resiliency slave asks gw_relay_reaches.) */
static void take_relay_lost(struct gw *g, struct gw_peer *q, const uint8_t id[OVW_ID_LEN],
                            uint64_t now)
{
	struct gw_peer *far = peer_by_id(g, id);
	uint32_t qi = (uint32_t)(q - g->peers);
	CNT_ADD(g, relay_lost_rx, 1);
	if (!far || far == q)
		return;
	if (!relay_lost(far, qi, now))
		log_msg(LOG_INFO, "overlay: gateway: relay %s does not hear peer %s lately",
		        q->conf->name, far->conf->name);
	relay_lost_set(far, qi, now);
	if (far->nat_via == qi)
		(void)unpunchable(g, far, now, true);
}

/* Tells p where we see it now (an OVW_MAPPING) after its endpoint changed: at once, but
 * at most once per GW_EP_TELL_MS (the rest at a tick: gw_timer), so that two endpoints
 * that answer each keepalive from the other cannot make a storm of them. */
static void ep_tell(struct gw *g, struct gw_peer *p, uint64_t now)
{
	if (p->ep_told_ms && now - p->ep_told_ms < GW_EP_TELL_MS) {
		p->ep_tell_pending = true;
		return;
	}
	p->ep_tell_pending = false;
	p->ep_told_ms = now;
	if (!send_keepalive(g, p))
		CNT_ADD(g, ka_tx, 1);
}

/* True if p's newest packet, authenticated, from `from` (not p->ep) must leave p->ep as it
 * is: `from` is the endpoint p left (ep_prev) within GW_FLAP_MS of that switch or of its
 * last return there, and p->ep was heard within GW_EP_QUIET_MS. Then both are live paths
 * (a NAT that still forwards the old mapping, conntrack that changed a port): switching on
 * each packet, with a keepalive to each new endpoint, made the two gateways roam on every
 * packet. Each return to ep_prev after a packet from p->ep is counted as a flap (taken or
 * not); one left untaken is logged, at most once per GW_FLAP_LOG_MS per peer. A new endpoint (a
 * move) is never damped; the endpoint left is taken again once p->ep falls silent. */
static bool roam_damped(struct gw *g, struct gw_peer *p, const struct sockaddr_in *from,
                        uint64_t now)
{
	if (!p->ep_seen || !same_ep(&p->ep_prev, from) ||
	    (now - p->ep_moved_ms >= GW_FLAP_MS && now - p->flap_ms >= GW_FLAP_MS))
		return false;
	p->flap_ms = now;
	bool damp = now - p->ep_heard_ms < GW_EP_QUIET_MS;
	if (p->at_prev)
		return damp;
	p->at_prev = damp;
	p->flaps++;
	CNT_ADD(g, ep_flaps, 1);
	if (!damp || (p->flap_logged_ms && now - p->flap_logged_ms < GW_FLAP_LOG_MS))
		return damp;
	p->flap_logged_ms = now;
	char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
	log_msg(LOG_WARNING,
	        "overlay: gateway: peer %s is heard at %s:%u and at %s:%u (two live paths?): "
	        "it stays at %s:%u while that is heard (%llu flap(s) so far)",
	        p->conf->name, inet_ntop(AF_INET, &from->sin_addr, a, sizeof(a)),
	        ntohs(from->sin_port), inet_ntop(AF_INET, &p->ep.sin_addr, b, sizeof(b)),
	        ntohs(p->ep.sin_port), b, ntohs(p->ep.sin_port), (unsigned long long)p->flaps);
	return damp;
}

/* One datagram from the IPv4 side, read at now (one clock read per batch). The decoder reads
 * it through the cursor; nothing of the peer's state changes before the packet authenticates. */
static void from_udp(struct gw *g, const uint8_t *pkt, size_t n, const struct sockaddr_in *from,
                     uint64_t now)
{
	static uint8_t inner[OVW_INNER_MAX];
	struct cur c = cur_make(pkt, n);
	struct ovw_hdr h;
	const uint8_t *body;
	size_t body_len;
	CNT_ADD(g, rx, 1);
	if (ovw_parse(&c, &h, &body, &body_len)) {
		drop(g, D_MALFORMED, from);
		return;
	}
	struct gw_peer *p = peer_by_id(g, h.id);
	if (!p) {
		drop(g, D_UNKNOWN_PEER, from);
		if (g->resolve) { /* the DHT slave may find the site (rate-limited there) */
			struct gw_held *k = &g->held[g->held_next++ % GW_HELD];
			memcpy(k->id, h.id, OVW_ID_LEN);
			k->from = *from;
			k->at_ms = now;
			k->len = n;
			memcpy(k->pkt, pkt, n);
			g->resolve(g->resolve_arg, h.id);
		}
		return;
	}
	if (h.type == OVW_DATA_PLAIN) { /* unauthenticated: it changes nothing of the peer's */
		if (!p->conf->trusted)
			drop(g, D_PLAIN, from);
		else if (ovw_inner_check(body, body_len))
			drop(g, D_INNER, from);
		else if (!source_allowed(p, body))
			drop(g, D_SOURCE, from);
		else {
			CNT_ADD(g, plain_rx, 1);
			CNT_ADD(p, rx_packets, 1);
			ov_master_input(g->m, body, body_len);
		}
		return;
	}
	struct ovw_aead *aead = &p->rx;
	bool new_epoch = !p->rx_any || h.epoch > p->rx_epoch;
	if (!new_epoch && (h.epoch < p->rx_epoch || !ovw_replay_fresh(&p->replay, h.counter))) {
		drop(g, D_REPLAY, from);
		return;
	}
	if (new_epoch) {
		uint8_t key[OVW_KEY_LEN];
		ovw_key(p->prk, p->conf->pub, g->pub, h.epoch, key);
		int r = ovw_aead_rekey(&g->fresh, key);
		memset(key, 0, sizeof(key));
		if (r) {
			drop(g, D_AUTH, from);
			return;
		}
		aead = &g->fresh;
	}
	long len = ovw_open(pkt, body_len, aead, inner);
	if (len < 0) {
		drop(g, D_AUTH, from);
		return;
	}
	bool carries_ip = h.type == OVW_DATA || h.type == OVW_RELAY || h.type == OVW_RELAYED;
	if (carries_ip && ovw_inner_check(inner, (size_t)len)) {
		drop(g, D_INNER, from);
		return;
	}
	/* relayed: from a third site, through p, when that site's direct path to us is down;
	 * we trust p (a certified peer) to have checked the source, as a RON relay is trusted.
	 * Served only with the resiliency or DHT slave, like relay requests (relayed_ok). */
	struct gw_peer *origin = NULL; /* a relayed packet's source site */
	if (h.type == OVW_RELAYED
	        ? !(origin = peer_serving(g, inner + 8, p)) || !relayed_ok(g, p, origin, now)
	        : carries_ip && !source_allowed(p, inner)) {
		drop(g, h.type == OVW_RELAYED && origin ? D_RELAYED : D_SOURCE, from);
		return;
	}
	struct gw_peer *next = NULL; /* a relay request's next hop: direct, never relayed again */
	if (h.type == OVW_RELAY && (!relays(g) || !(next = peer_serving(g, inner + 24, p)))) {
		drop(g, D_RELAY, from);
		return;
	}
	/* authentic and new: now the peer's state may change */
	if (new_epoch) { /* the fresh key becomes the peer's, its old one the next fresh */
		struct ovw_aead old = p->rx;
		p->rx = g->fresh;
		g->fresh = old;
		p->rx_epoch = h.epoch;
		p->rx_any = true;
		p->rx_taken = p->rx_top = 0;
		memset(&p->replay, 0, sizeof(p->replay));
	}
	bool newest = !p->replay.any || h.counter > p->replay.top;
	ovw_replay_accept(&p->replay, h.counter);
	p->rx_taken++;
	if (h.counter >= p->rx_top)
		p->rx_top = h.counter + 1;
	/* its first packet since we moved: it may just have opened its NAT toward our new
	 * address (a punch or a re-resolve told it), so it hears us now, not at our next
	 * keepalive; later ones need no answer */
	bool first_since_move = g->moved_ms && p->last_rx_ms < g->moved_ms;
	bool at_ep = p->has_ep && same_ep(&p->ep, from);
	if (at_ep) {
		p->ep_heard_ms = now;
		p->at_prev = false;
	}
	if (newest && !at_ep && !roam_damped(g, p, from, now)) {
		char a[INET_ADDRSTRLEN];
		log_msg(LOG_INFO, "overlay: gateway: peer %s is at %s:%u", p->conf->name,
		        inet_ntop(AF_INET, &from->sin_addr, a, sizeof(a)), ntohs(from->sin_port));
		if (p->has_ep && p->ep_seen)
			p->ep_prev = p->ep;
		else
			memset(&p->ep_prev, 0, sizeof(p->ep_prev));
		p->ep = *from;
		p->has_ep = true;
		p->ep_seen = true;
		p->ep_moved_ms = p->ep_heard_ms = now;
		p->at_prev = false;
		__atomic_store_n(&p->has_ep_pub, 1, __ATOMIC_RELAXED);
		CNT_ADD(g, ep_changes, 1);
		fp_sync(g, p);
		ep_tell(g, p, now); /* tell it at once where we see it */
	} else if (newest) {
		/* at ep, or at the endpoint it left while ep lives (roam_damped): ep stays */
		p->ep_seen = true;
		if (first_since_move && !send_keepalive(g, p))
			CNT_ADD(g, ka_tx, 1);
	}
	CNT_ADD(p, rx_packets, 1);
	p->last_rx_ms = now;
	if (h.type == OVW_PROBE || h.type == OVW_PROBE_ACK || h.type == OVW_LOSS) {
		CNT_ADD(g, probe_rx, 1);
		if (g->on_probe)
			g->on_probe(g->probe_arg, (uint32_t)(p - g->peers), h.type, inner,
			            p->last_rx_ms);
		return;
	}
	if (h.type == OVW_RELAY_LOST) {
		take_relay_lost(g, p, inner, p->last_rx_ms);
		return;
	}
	if (h.type == OVW_LINKSTATE) {
		CNT_ADD(g, probe_rx, 1);
		if (g->on_linkstate)
			g->on_linkstate(g->linkstate_arg, (uint32_t)(p - g->peers), inner,
			                (size_t)len, p->last_rx_ms);
		return;
	}
	if (h.type == OVW_MEMBERS) {
		if (g->on_members)
			g->on_members(g->mcast_arg, (uint32_t)(p - g->peers), inner, (size_t)len);
		return;
	}
	if (h.type == OVW_MCAST_TREE) {
		if (g->on_tree)
			g->on_tree(g->mcast_arg, (uint32_t)(p - g->peers), inner, (size_t)len);
		return;
	}
	if (!carries_ip) {
		CNT_ADD(g, ka_rx, 1);
		if (h.type == OVW_MAPPING)
			take_mapping(g, p, inner);
		return;
	}
	if (h.type == OVW_RELAY &&
	    !gw_peer_heard_within(next->last_rx_ms, p->last_rx_ms, g->conf->keepalive_s)) {
		/* we do not hear the site lately: the packet would be lost; the requester is told
		 * (rate-limited), so that it takes another relay or says the site is unreachable */
		drop(g, D_RELAY, from);
		if (!p->lost_told_ms || p->last_rx_ms - p->lost_told_ms >= GW_LOST_TELL_MS) {
			p->lost_told_ms = p->last_rx_ms;
			if (!send_to(g, p, OVW_RELAY_LOST, next->conf->pub, OVW_ID_LEN))
				CNT_ADD(g, relay_lost_tx, 1);
		}
		return;
	}
	if (h.type == OVW_RELAY) {
		CNT_ADD(g, relay_fwd, 1);
		queue_packet(g, (uint32_t)(next - g->peers), OVW_RELAYED, inner, (size_t)len);
		return;
	}
	if (h.type == OVW_RELAYED) {
		CNT_ADD(g, relay_rx, 1);
		origin->relayed_rx_ms = p->last_rx_ms; /* it answers, if not directly */
		relay_lost_clear(origin, (uint32_t)(p - g->peers)); /* p hears it after all */
	}
	if (inner[24] == 0xff && g->on_mcast) { /* to a group: the multicast slave's */
		g->on_mcast(g->mcast_arg, (uint32_t)((origin ? origin : p) - g->peers), inner,
		            (size_t)len);
		return;
	}
	ov_master_input(g->m, inner, (size_t)len);
}

/* One of our IPv4 addresses or routes changed (a roaming host, a reconnecting router;
 * event: a change was just read, else a tick retrying): a keepalive to every peer we have
 * an endpoint for, at once, from wherever the kernel now sends. A peer that hears it from a
 * new endpoint follows us and answers at once with our mapping (from_udp), so we learn our
 * new address in a round trip instead of at a peer's next keepalive, and the DHT slave
 * republishes it. Bursts are told once per GW_ADDR_TELL_MS (the rest at a tick), and while
 * no keepalive can leave (the address came, its route not yet) it is tried again at the
 * next change read or tick for GW_ADDR_RETRY_MS. */
static void addr_changed(struct gw *g, uint64_t now, bool event)
{
	if (event)
		g->addr_change_ms = now;
	if (g->addr_told_ms && now - g->addr_told_ms < GW_ADDR_TELL_MS) {
		g->addr_pending = true;
		return;
	}
	g->addr_pending = false;
	unsigned told = 0, tried = 0;
	for (size_t i = 0; i < g->npeers; i++) {
		if (!g->peers[i].has_ep)
			continue;
		tried++;
		if (!send_keepalive(g, &g->peers[i])) {
			CNT_ADD(g, ka_tx, 1);
			told++;
		}
	}
	if (tried && !told && now - g->addr_change_ms < GW_ADDR_RETRY_MS) {
		g->addr_pending =
		    true; /* the next change read (its route?) or a tick tries again */
		return;
	}
	g->addr_told_ms = now;
	if (tried)
		log_msg(LOG_INFO,
		        "overlay: gateway: an IPv4 address or route of ours changed: told %u of %u "
		        "peer(s)",
		        told, tried);
}

/* Reads up to GW_RX_BATCH datagrams with one recvmmsg (epoll is level-triggered: more are
 * read on its next pass), then takes them in order. With UDP GRO a datagram may be several
 * of a peer's packets glued (all as long as the first, the last maybe shorter; the cmsg gives
 * the length): each is taken alone. An error pending on the socket (IP_RECVERR) empties the
 * error queue. */
static void gw_readable(struct ov_slave *s, int fd)
{
	struct gw *g = s->priv;
	if (fd == g->nlfd) {
		int n = addrwatch_read(fd);
		if (n > 0) {
			CNT_ADD(g, addr_changes, (uint64_t)n);
			addr_changed(g, peak_mono_ms(), true);
		} else if (n < 0) {
			log_msg(LOG_WARNING,
			        "overlay: gateway: address watch: %s; no longer watched",
			        strerror(-n));
			ov_master_unwatch(g->m, fd);
			close(g->nlfd);
			g->nlfd = -1;
		}
		return;
	}
	static uint8_t buf[GW_RX_BATCH][GW_RX_BUF];
	static struct sockaddr_in from[GW_RX_BATCH];
	static union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl[GW_RX_BATCH];
	struct mmsghdr mm[GW_RX_BATCH];
	struct iovec iov[GW_RX_BATCH];
	for (int i = 0; i < GW_RX_BATCH; i++) {
		iov[i] = (struct iovec){buf[i], sizeof(buf[i])};
		mm[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
		                                .msg_namelen = sizeof(from[i]),
		                                .msg_iov = &iov[i],
		                                .msg_iovlen = 1,
		                                .msg_control = ctl[i].buf,
		                                .msg_controllen = sizeof(ctl[i].buf)};
	}
	int n = recvmmsg(fd, mm, GW_RX_BATCH, MSG_DONTWAIT, NULL);
	CNT_ADD(g, rx_calls, 1);
	if (n == -1) { /* an error returned or nothing to read: EPOLLERR may be why we woke */
		read_errqueue(g);
		return;
	}
	uint64_t now = peak_mono_ms();
	for (int i = 0; i < n; i++) {
		struct msghdr *mh = &mm[i].msg_hdr;
		size_t len = mm[i].msg_len, seg = len;
		if (mh->msg_namelen != sizeof(from[i]) || from[i].sin_family != AF_INET)
			continue;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
			if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
				int v;
				memcpy(&v, CMSG_DATA(c), sizeof(v));
				if (v > 0)
					seg = (size_t)v;
			}
		if (mh->msg_flags & MSG_TRUNC)
			seg = len = OVW_PKT_MAX + 1; /* too big to be ours: one malformed */
		for (size_t off = 0; off < len; off += seg) {
			size_t k = len - off < seg ? len - off : seg;
			if (k > OVW_PKT_MAX) {
				CNT_ADD(g, rx, 1);
				drop(g, D_MALFORMED, &from[i]);
				continue;
			}
			from_udp(g, buf[i] + off, k, &from[i], now);
		}
	}
}

static void gw_timer(struct ov_slave *s, uint64_t now)
{
	struct gw *g = s->priv;
	uint64_t every = (uint64_t)g->conf->keepalive_s * 1000;
	if (g->addr_pending && now - g->addr_told_ms >= GW_ADDR_TELL_MS)
		addr_changed(g, now, false);
	for (size_t i = 0; i < g->npeers; i++) {
		struct gw_peer *p = &g->peers[i];
		if (p->mtu && now - p->mtu_at_ms > GW_MTU_MS)
			p->mtu = 0;
		if (p->ep_tell_pending && now - p->ep_told_ms >= GW_EP_TELL_MS)
			ep_tell(g, p, now);
		(void)unpunchable(g, p, now, true);
		if (!p->has_ep || (p->last_tx_ms && now - p->last_tx_ms < every))
			continue;
		if (!send_keepalive(g, p))
			CNT_ADD(g, ka_tx, 1);
	}
}

/* Says which peers are trusted (their data is not encrypted) and, with fast-path: auto,
 * loads the kernel fast path for them; if it does not load, user space carries them. */
static void fp_start(struct gw *g)
{
	size_t ntrusted = 0;
	char err[256];
	for (size_t i = 0; i < g->npeers; i++)
		if (g->peers[i].conf->trusted) {
			ntrusted++;
			log_msg(LOG_WARNING,
			        "overlay: gateway: peer %s is trusted: data to and from it is NOT "
			        "encrypted (OVW_DATA_PLAIN)",
			        g->peers[i].conf->name);
		}
	if (!ntrusted || !g->conf->fast_path)
		return;
	struct ov_fp *fp =
	    fp_open(g->conf->tun, &g->conf->listen, g->pub, g->epoch, err, sizeof(err));
	if (!fp) {
		log_msg(LOG_WARNING,
		        "overlay: gateway: fast path off, user space carries trusted "
		        "peers: %s",
		        err);
		return;
	}
	for (size_t i = 0; i < g->npeers; i++) {
		struct gw_peer *p = &g->peers[i];
		if (!p->conf->trusted)
			continue;
		int r = fp_peer_add(fp, (uint32_t)i, p->conf->pub, p->conf->prefixes,
		                    p->conf->nprefixes);
		if (r) {
			log_msg(
			    LOG_WARNING,
			    "overlay: gateway: fast path off, user space carries trusted peers: "
			    "peer %s: %s",
			    p->conf->name, strerror(-r));
			fp_close(fp);
			return;
		}
	}
	__atomic_store_n(&g->fp, fp, __ATOMIC_RELEASE); /* the metrics thread reads it */
	for (size_t i = 0; i < g->npeers; i++)
		fp_sync(g, &g->peers[i]);
	log_msg(LOG_INFO,
	        "overlay: gateway: fast path on for %zu trusted peer(s): BPF on %s and %u "
	        "uplink(s)",
	        ntrusted, g->conf->tun, fp_uplinks(g->fp));
}

static int gw_attach(struct ov_slave *s, struct ov_master *m)
{
	struct gw *g = s->priv;
	int ret;
	g->m = m;
	g->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (g->fd == -1)
		return -errno;
	if (bind(g->fd, (const struct sockaddr *)&g->conf->listen, sizeof(g->conf->listen)) == -1) {
		ret = -errno;
		log_msg(LOG_ERR, "overlay: gateway: bind: %s", strerror(-ret));
		return ret;
	}
	/* the default 208 KiB overflowed under one TCP flow (UdpRcvbufErrors, 10% loss):
	 * ask for more, past rmem_max when privileged; a smaller buffer still works */
	int sz = GW_SOCKBUF_BYTES;
	if (setsockopt(g->fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) == -1)
		(void)setsockopt(g->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (setsockopt(g->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) == -1)
		(void)setsockopt(g->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	/* DF on every outer packet, and the path MTU a send exceeds in the error queue:
	 * the tunnel's MTU follows the path's instead of the kernel fragmenting */
	int on = 1, pmtud = IP_PMTUDISC_DO;
	if (setsockopt(g->fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtud, sizeof(pmtud)) == -1 ||
	    setsockopt(g->fd, IPPROTO_IP, IP_RECVERR, &on, sizeof(on)) == -1)
		return -errno;
	/* a peer's UDP GSO datagrams may arrive whole (no per-packet work in the kernel); an
	 * older kernel without UDP GRO hands them one by one */
	(void)setsockopt(g->fd, SOL_UDP, UDP_GRO, &on, sizeof(on));
	if ((ret = ov_master_watch(m, g->fd, s)))
		return ret;
	/* our own address changes, told to the peers at once (without: at the next keepalive) */
	if ((g->nlfd = addrwatch_open()) < 0 || ov_master_watch(m, g->nlfd, s)) {
		log_msg(LOG_WARNING,
		        "overlay: gateway: cannot watch our IPv4 addresses (%s): peers learn a "
		        "change at the next keepalive",
		        strerror(g->nlfd < 0 ? -g->nlfd : EMFILE));
		if (g->nlfd >= 0)
			close(g->nlfd);
		g->nlfd = -1;
	}
	for (size_t i = 0; i < g->npeers; i++) {
		const struct ov_peer_conf *pc = g->peers[i].conf;
		for (size_t k = 0; k < pc->nprefixes; k++)
			if ((ret = ov_route_add(m, &pc->prefixes[k], s, (uint32_t)i)))
				return ret;
	}
	fp_start(g);
	gw_timer(s, peak_mono_ms()); /* first keepalives at once, to open NAT mappings */
	return 0;
}

static void gw_detach(struct ov_slave *s)
{
	struct gw *g = s->priv;
	fp_detach(g->fp); /* unloaded in gw_free: the metrics thread may read its counters */
	if (g->fd != -1)
		close(g->fd);
	g->fd = -1;
	if (g->nlfd != -1)
		close(g->nlfd);
	g->nlfd = -1;
}

static void gw_stats(struct ov_slave *s, struct mbuf *b)
{
	struct gw *g = s->priv;
	mbuf_printf(b,
	            "# TYPE peak_overlay_gw_rx_packets_total counter\n"
	            "peak_overlay_gw_rx_packets_total %llu\n"
	            "# TYPE peak_overlay_gw_tx_packets_total counter\n"
	            "peak_overlay_gw_tx_packets_total %llu\n"
	            "# TYPE peak_overlay_gw_tx_errors_total counter\n"
	            "peak_overlay_gw_tx_errors_total %llu\n"
	            "# TYPE peak_overlay_gw_no_endpoint_total counter\n"
	            "peak_overlay_gw_no_endpoint_total %llu\n"
	            "# TYPE peak_overlay_gw_keepalives_sent_total counter\n"
	            "peak_overlay_gw_keepalives_sent_total %llu\n"
	            "# TYPE peak_overlay_gw_keepalives_received_total counter\n"
	            "peak_overlay_gw_keepalives_received_total %llu\n"
	            "# TYPE peak_overlay_gw_endpoint_changes_total counter\n"
	            "peak_overlay_gw_endpoint_changes_total %llu\n"
	            "# TYPE peak_overlay_gw_dropped_total counter\n",
	            (unsigned long long)CNT_GET(g, rx), (unsigned long long)CNT_GET(g, tx),
	            (unsigned long long)CNT_GET(g, tx_err),
	            (unsigned long long)CNT_GET(g, no_endpoint),
	            (unsigned long long)CNT_GET(g, ka_tx), (unsigned long long)CNT_GET(g, ka_rx),
	            (unsigned long long)CNT_GET(g, ep_changes));
	for (int i = 0; i < D_NREASONS; i++)
		mbuf_printf(b, "peak_overlay_gw_dropped_total{reason=\"%s\"} %llu\n", drop_names[i],
		            (unsigned long long)CNT_GET(g, drops[i]));
	size_t np = __atomic_load_n(&g->npeers, __ATOMIC_ACQUIRE);
	mbuf_printf(
	    b,
	    "# TYPE peak_overlay_gw_learned_peers_total counter\n"
	    "peak_overlay_gw_learned_peers_total %llu\n"
	    "# TYPE peak_overlay_gw_held_packets_total counter\n"
	    "peak_overlay_gw_held_packets_total %llu\n"
	    "# TYPE peak_overlay_gw_mappings_received_total counter\n"
	    "peak_overlay_gw_mappings_received_total %llu\n"
	    "# TYPE peak_overlay_gw_mapping_changes_total counter\n"
	    "peak_overlay_gw_mapping_changes_total %llu\n"
	    "# TYPE peak_overlay_gw_too_big_total counter\n"
	    "peak_overlay_gw_too_big_total %llu\n"
	    "# TYPE peak_overlay_gw_pmtu_changes_total counter\n"
	    "peak_overlay_gw_pmtu_changes_total %llu\n"
	    "# TYPE peak_overlay_gw_send_calls_total counter\n"
	    "peak_overlay_gw_send_calls_total %llu\n"
	    "# TYPE peak_overlay_gw_receive_calls_total counter\n"
	    "peak_overlay_gw_receive_calls_total %llu\n"
	    "# TYPE peak_overlay_gw_unpunchable_total counter\n"
	    "peak_overlay_gw_unpunchable_total %llu\n"
	    "# TYPE peak_overlay_gw_nat_endpoint_dependent gauge\n"
	    "peak_overlay_gw_nat_endpoint_dependent %d\n"
	    "# TYPE peak_overlay_gw_locator_probes_total counter\n"
	    "peak_overlay_gw_locator_probes_total %llu\n"
	    "# TYPE peak_overlay_gw_relay_sent_total counter\n"
	    "peak_overlay_gw_relay_sent_total %llu\n"
	    "# TYPE peak_overlay_gw_relay_forwarded_total counter\n"
	    "peak_overlay_gw_relay_forwarded_total %llu\n"
	    "# TYPE peak_overlay_gw_relay_received_total counter\n"
	    "peak_overlay_gw_relay_received_total %llu\n"
	    "# TYPE peak_overlay_gw_nat_relayed_total counter\n"
	    "peak_overlay_gw_nat_relayed_total %llu\n"
	    "# TYPE peak_overlay_gw_relay_lost_sent_total counter\n"
	    "peak_overlay_gw_relay_lost_sent_total %llu\n"
	    "# TYPE peak_overlay_gw_relay_lost_received_total counter\n"
	    "peak_overlay_gw_relay_lost_received_total %llu\n"
	    "# TYPE peak_overlay_gw_probes_sent_total counter\n"
	    "peak_overlay_gw_probes_sent_total %llu\n"
	    "# TYPE peak_overlay_gw_probes_received_total counter\n"
	    "peak_overlay_gw_probes_received_total %llu\n"
	    "# TYPE peak_overlay_gw_address_changes_total counter\n"
	    "peak_overlay_gw_address_changes_total %llu\n",
	    (unsigned long long)CNT_GET(g, learned_n), (unsigned long long)CNT_GET(g, held_n),
	    (unsigned long long)CNT_GET(g, mapping_rx),
	    (unsigned long long)CNT_GET(g, mapping_changes),
	    (unsigned long long)CNT_GET(g, too_big), (unsigned long long)CNT_GET(g, pmtu_changes),
	    (unsigned long long)CNT_GET(g, tx_calls), (unsigned long long)CNT_GET(g, rx_calls),
	    (unsigned long long)CNT_GET(g, unpunchable_n),
	    __atomic_load_n(&g->edm_pub, __ATOMIC_RELAXED), (unsigned long long)CNT_GET(g, probes),
	    (unsigned long long)CNT_GET(g, relay_tx), (unsigned long long)CNT_GET(g, relay_fwd),
	    (unsigned long long)CNT_GET(g, relay_rx), (unsigned long long)CNT_GET(g, nat_relay_tx),
	    (unsigned long long)CNT_GET(g, relay_lost_tx),
	    (unsigned long long)CNT_GET(g, relay_lost_rx), (unsigned long long)CNT_GET(g, probe_tx),
	    (unsigned long long)CNT_GET(g, probe_rx), (unsigned long long)CNT_GET(g, addr_changes));
	mbuf_printf(b,
	            "# TYPE peak_overlay_gw_plain_received_total counter\n"
	            "peak_overlay_gw_plain_received_total %llu\n"
	            "# TYPE peak_overlay_gw_plain_sent_total counter\n"
	            "peak_overlay_gw_plain_sent_total %llu\n"
	            "# TYPE peak_overlay_gw_endpoint_flaps_total counter\n"
	            "peak_overlay_gw_endpoint_flaps_total %llu\n"
	            "# TYPE peak_overlay_gw_mapping_flaps_total counter\n"
	            "peak_overlay_gw_mapping_flaps_total %llu\n",
	            (unsigned long long)CNT_GET(g, plain_rx),
	            (unsigned long long)CNT_GET(g, plain_tx),
	            (unsigned long long)CNT_GET(g, ep_flaps),
	            (unsigned long long)CNT_GET(g, mapping_flaps));
	struct ov_fp *fp = __atomic_load_n(&g->fp, __ATOMIC_ACQUIRE);
	if (fp) {
		static const char *const fc_names[FC_N] = {
		    "tx_packets", "tx_bytes", "tx_pass",           "tx_error", "rx_packets",
		    "rx_bytes",   "rx_pass",  "rx_dropped_source", "rx_error"};
		uint64_t v[FC_N];
		fp_counters(fp, v);
		mbuf_printf(b, "# TYPE peak_overlay_fastpath_total counter\n");
		for (int i = 0; i < FC_N; i++)
			mbuf_printf(b, "peak_overlay_fastpath_total{counter=\"%s\"} %llu\n",
			            fc_names[i], (unsigned long long)v[i]);
	}
	mbuf_printf(b, "# TYPE peak_overlay_peer_rx_packets_total counter\n");
	for (size_t i = 0; i < np; i++) {
		char l[METRICS_LABEL_MAX];
		mbuf_printf(b, "peak_overlay_peer_rx_packets_total{peer=\"%s\"} %llu\n",
		            metrics_label(l, sizeof(l), g->peers[i].conf->name),
		            (unsigned long long)CNT_GET(&g->peers[i], rx_packets));
	}
	mbuf_printf(b, "# TYPE peak_overlay_peer_tx_packets_total counter\n");
	for (size_t i = 0; i < np; i++) {
		char l[METRICS_LABEL_MAX];
		mbuf_printf(b, "peak_overlay_peer_tx_packets_total{peer=\"%s\"} %llu\n",
		            metrics_label(l, sizeof(l), g->peers[i].conf->name),
		            (unsigned long long)CNT_GET(&g->peers[i], tx_packets));
	}
	mbuf_printf(b, "# TYPE peak_overlay_peer_unreachable gauge\n");
	for (size_t i = 0; i < np; i++) {
		char l[METRICS_LABEL_MAX];
		mbuf_printf(b,
		            "peak_overlay_peer_unreachable{peer=\"%s\",reason=\"both-nats-endpoint-"
		            "dependent\"} %d\n",
		            metrics_label(l, sizeof(l), g->peers[i].conf->name),
		            __atomic_load_n(&g->peers[i].unpunchable_pub, __ATOMIC_RELAXED));
	}
	mbuf_printf(b, "# TYPE peak_overlay_peer_endpoint_known gauge\n");
	for (size_t i = 0; i < np; i++) {
		char l[METRICS_LABEL_MAX];
		mbuf_printf(b, "peak_overlay_peer_endpoint_known{peer=\"%s\"} %d\n",
		            metrics_label(l, sizeof(l), g->peers[i].conf->name),
		            __atomic_load_n(&g->peers[i].has_ep_pub, __ATOMIC_RELAXED));
	}
}

static int gw_cookie_of(struct ov_slave *s, const char *name, uint32_t *cookie)
{
	struct gw *g = s->priv;
	for (size_t i = 0; i < g->npeers; i++)
		if (!strcmp(g->peers[i].conf->name, name)) {
			*cookie = (uint32_t)i;
			return 0;
		}
	return -ENOENT;
}

static void gw_describe(struct ov_slave *s, uint32_t cookie, char *out, size_t cap)
{
	struct gw *g = s->priv;
	snprintf(out, cap, "%s", cookie < g->npeers ? g->peers[cookie].conf->name : "?");
}

/* One line per peer: "peer NAME ENDPOINT|- rx N tx N last-rx-ms N|- state STATE", STATE one
 * of answering (an authenticated packet in the last three keepalive periods), waiting (not
 * yet, or not lately), "relayed via NAME" (no hole can be punched: see unpunchable) or
 * unreachable:both-nats-endpoint-dependent (so, and no relay is usable); then
 * "nat endpoint-dependent|endpoint-independent|unknown" for our own NAT, as peers see it. */
static void gw_show(struct ov_slave *s, struct mbuf *b)
{
	struct gw *g = s->priv;
	uint64_t now = peak_mono_ms();
	for (size_t i = 0; i < g->npeers; i++) {
		struct gw_peer *p = &g->peers[i];
		char a[INET_ADDRSTRLEN + 8] = "-", age[24] = "-";
		if (p->has_ep) {
			char ip[INET_ADDRSTRLEN];
			snprintf(a, sizeof(a), "%s:%u",
			         inet_ntop(AF_INET, &p->ep.sin_addr, ip, sizeof(ip)),
			         ntohs(p->ep.sin_port));
		}
		if (p->last_rx_ms)
			snprintf(age, sizeof(age), "%llu",
			         (unsigned long long)(now - p->last_rx_ms));
		const char *state = "waiting", *via = "";
		bool u = unpunchable(g, p, now, false);
		if (u && p->nat_via != GW_DIRECT) {
			state = "relayed via ";
			via = g->peers[p->nat_via].conf->name;
		} else if (u && g->edm && p->peer_edm)
			state = "unreachable:both-nats-endpoint-dependent";
		else if (gw_peer_heard_within(p->last_rx_ms, now, g->conf->keepalive_s))
			state = "answering";
		mbuf_printf(b, "peer %s %s rx %llu tx %llu last-rx-ms %s state %s%s\n",
		            p->conf->name, a, (unsigned long long)p->rx_packets,
		            (unsigned long long)p->tx_packets, age, state, via);
	}
	if (g->fp) {
		uint64_t v[FC_N];
		fp_counters(g->fp, v);
		mbuf_printf(b,
		            "fastpath on tx %llu tx-bytes %llu tx-pass %llu rx %llu rx-bytes %llu "
		            "rx-pass %llu rx-dropped-source %llu errors %llu\n",
		            (unsigned long long)v[FC_TX_PACKETS],
		            (unsigned long long)v[FC_TX_BYTES], (unsigned long long)v[FC_TX_PASS],
		            (unsigned long long)v[FC_RX_PACKETS],
		            (unsigned long long)v[FC_RX_BYTES], (unsigned long long)v[FC_RX_PASS],
		            (unsigned long long)v[FC_RX_SOURCE],
		            (unsigned long long)(v[FC_TX_ERROR] + v[FC_RX_ERROR]));
	}
	mbuf_printf(b, "nat %s\n",
	            g->edm           ? "endpoint-dependent"
	            : g->has_mapping ? "endpoint-independent"
	                             : "unknown");
}

/* The pair's prk, our sending key for p and its receiving context (keyed with the sending
 * key until its first packet brings an epoch: allocated here, so that the packet path
 * allocates nothing). p->conf set, p->tx and p->rx empty. 0, -EINVAL for our own key or one
 * of low order, or -ENOMEM (p's contexts then empty). */
static int peer_keys(struct gw *g, struct gw_peer *p)
{
	if (!memcmp(p->conf->pub, g->pub, 32) || ovw_prk(g->conf->priv, p->conf->pub, p->prk))
		return -EINVAL;
	uint8_t key[OVW_KEY_LEN];
	ovw_key(p->prk, g->pub, p->conf->pub, g->epoch, key);
	int ret = ovw_aead_init(&p->tx, key);
	if (!ret && (ret = ovw_aead_init(&p->rx, key)))
		ovw_aead_fini(&p->tx);
	memset(key, 0, sizeof(key));
	return ret;
}

int gw_peer_learn(struct ov_slave *s, const uint8_t pub[static 32], const struct sockaddr_in *ep,
                  bool ep_edm, const struct prefix *sources, size_t nsources, uint32_t *cookie)
{
	struct gw *g = s->priv;
	struct gw_peer *p = NULL;
	bool fresh = false;
	if (nsources > OVC_DHT_PREFIXES || !memcmp(pub, g->pub, 32))
		return -EINVAL;
	for (size_t i = 0; i < g->npeers && !p; i++)
		if (!memcmp(g->peers[i].conf->pub, pub, 32))
			p = &g->peers[i];
	if (!p) {
		if (peer_by_id(g, pub))
			return -EEXIST; /* another key with the same sender id */
		if (g->npeers == g->cap)
			return -ENOSPC;
		struct gw_learned *l = &g->learned[g->npeers - g->npeers_conf];
		memset(l, 0, sizeof(*l));
		snprintf(l->conf.name, sizeof(l->conf.name), "dht-%02x%02x%02x%02x", pub[0], pub[1],
		         pub[2], pub[3]);
		memcpy(l->conf.pub, pub, 32);
		l->conf.prefixes = l->prefixes;
		p = &g->peers[g->npeers];
		memset(p, 0, sizeof(*p));
		p->conf = &l->conf;
		p->via = GW_DIRECT;
		p->nat_via = GW_DIRECT;
		int ret = peer_keys(g, p);
		if (ret)
			return ret;
		__atomic_store_n(&g->npeers, g->npeers + 1, __ATOMIC_RELEASE);
		CNT_ADD(g, learned_n, 1);
		log_msg(LOG_INFO, "overlay: gateway: learned peer %s from the DHT", l->conf.name);
		fresh = true;
	}
	size_t idx = (size_t)(p - g->peers);
	p->peer_edm = ep_edm;
	if (idx >= g->npeers_conf) { /* a learned peer's sources: what its certificate allows */
		struct gw_learned *l = &g->learned[idx - g->npeers_conf];
		memcpy(l->prefixes, sources, nsources * sizeof(*sources));
		l->conf.nprefixes = nsources;
	}
	/* the DHT's locator only when the peer's own packets have not told us better lately;
	 * else, if it differs, one keepalive goes there: if the site moved, our NAT (one that
	 * filters by address) now lets its packets from there in, and it roams on them */
	uint64_t now = peak_mono_ms();
	bool heard = gw_peer_heard_within(p->last_rx_ms, now, g->conf->keepalive_s), moved = false;
	struct sockaddr_in rec = *ep;
	/* a record's port is where its NAT mapped the packets of the peer that told the site
	 * its mapping; an endpoint-dependent NAT maps ours elsewhere: the port its packets came
	 * from stays ours while its address is the record's (else a re-resolved record would
	 * point us at another peer's mapping, and our NAT would drop the site's packets) */
	if (ep_edm && p->has_ep && p->ep_seen && p->ep.sin_addr.s_addr == rec.sin_addr.s_addr)
		rec.sin_port = p->ep.sin_port;
	ep = &rec;
	if (p->has_ep && heard &&
	    (p->ep.sin_addr.s_addr != ep->sin_addr.s_addr || p->ep.sin_port != ep->sin_port)) {
		struct sockaddr_in cur = p->ep;
		p->ep = *ep;
		p->ep.sin_family = AF_INET;
		if (!send_to(g, p, OVW_KEEPALIVE, NULL, 0)) {
			CNT_ADD(g, ka_tx, 1);
			CNT_ADD(g, probes, 1);
		}
		p->ep = cur;
	} else if (!p->has_ep || !heard) {
		if (!p->has_ep || p->ep.sin_addr.s_addr != ep->sin_addr.s_addr ||
		    p->ep.sin_port != ep->sin_port) {
			char a[INET_ADDRSTRLEN];
			log_msg(LOG_INFO, "overlay: gateway: peer %s is at %s:%u (DHT)",
			        p->conf->name, inet_ntop(AF_INET, &ep->sin_addr, a, sizeof(a)),
			        ntohs(ep->sin_port));
			CNT_ADD(g, ep_changes, 1);
			moved = p->last_rx_ms != 0;
		}
		p->ep = *ep;
		p->ep.sin_family = AF_INET;
		p->has_ep = true;
		p->ep_seen = false;
		__atomic_store_n(&p->has_ep_pub, 1, __ATOMIC_RELAXED);
		fp_sync(g, p);
		/* a peer we talked to moved: a keepalive there now opens our NAT toward it (the
		 * timer's would come up to a keepalive period later) */
		if (moved && !send_to(g, p, OVW_KEEPALIVE, NULL, 0))
			CNT_ADD(g, ka_tx, 1);
	}
	*cookie = (uint32_t)idx;
	if (fresh) /* its packets that arrived while it was looked up: take them now */
		for (unsigned i = 0; i < GW_HELD; i++) {
			static uint8_t copy[OVW_PKT_MAX];
			struct gw_held *k = &g->held[i];
			if (!k->len || memcmp(k->id, pub, OVW_ID_LEN))
				continue;
			size_t n = k->len;
			k->len = 0;
			if (peak_mono_ms() - k->at_ms > GW_HELD_MS)
				continue;
			memcpy(copy, k->pkt, n);
			CNT_ADD(g, held_n, 1);
			CNT_ADD(g, rx, (uint64_t)-1); /* counted when it arrived */
			from_udp(g, copy, n, &k->from, peak_mono_ms());
		}
	return 0;
}

int gw_peer_pub(struct ov_slave *s, uint32_t cookie, uint8_t pub[static 32])
{
	struct gw *g = s->priv;
	if (cookie >= g->npeers)
		return -ENOENT;
	memcpy(pub, g->peers[cookie].conf->pub, 32);
	return 0;
}

bool gw_nat_edm(struct ov_slave *s)
{
	struct gw *g = s->priv;
	return g->edm;
}

bool gw_peer_answered(struct ov_slave *s, uint32_t cookie, uint64_t since_ms)
{
	struct gw *g = s->priv;
	return cookie < g->npeers && (g->peers[cookie].last_rx_ms >= since_ms ||
	                              g->peers[cookie].relayed_rx_ms >= since_ms);
}

void gw_set_mapping_cb(struct ov_slave *s, void (*fn)(void *arg, const struct sockaddr_in *m),
                       void *arg)
{
	struct gw *g = s->priv;
	g->on_mapping = fn;
	g->mapping_arg = arg;
}

int gw_peer_info(struct ov_slave *s, uint32_t cookie, struct gw_peer_info *info)
{
	struct gw *g = s->priv;
	if (cookie >= g->npeers)
		return -ENOENT;
	const struct gw_peer *p = &g->peers[cookie];
	info->name = p->conf->name;
	memcpy(info->id, p->conf->pub, OVW_ID_LEN);
	info->has_ep = p->has_ep;
	info->last_rx_ms = p->last_rx_ms;
	info->out_packets = p->out_packets;
	info->via = p->via;
	info->rx_epoch = p->rx_epoch;
	info->rx_taken = p->rx_taken;
	info->rx_top = p->rx_top;
	return 0;
}

bool gw_relay_reaches(struct ov_slave *s, uint32_t relay, uint32_t cookie, uint64_t now_ms)
{
	struct gw *g = s->priv;
	return cookie >= g->npeers || !relay_lost(&g->peers[cookie], relay, now_ms);
}

size_t gw_peer_count(struct ov_slave *s)
{
	struct gw *g = s->priv;
	return g->npeers;
}

int gw_set_via(struct ov_slave *s, uint32_t cookie, uint32_t via)
{
	struct gw *g = s->priv;
	if (cookie >= g->npeers || via == cookie || (via != GW_DIRECT && via >= g->npeers))
		return -EINVAL;
	g->peers[cookie].via = via;
	fp_sync(g, &g->peers[cookie]);
	return 0;
}

int gw_probe_send(struct ov_slave *s, uint32_t cookie, uint8_t type,
                  const uint8_t body[static OVW_PROBE_LEN])
{
	struct gw *g = s->priv;
	if (cookie >= g->npeers || (type != OVW_PROBE && type != OVW_PROBE_ACK && type != OVW_LOSS))
		return -EINVAL;
	struct gw_peer *p = &g->peers[cookie];
	if (!p->has_ep)
		return -EHOSTUNREACH;
	int r = send_to(g, p, type, body, OVW_PROBE_LEN);
	if (!r)
		CNT_ADD(g, probe_tx, 1);
	return r;
}

void gw_set_probe_cb(struct ov_slave *s,
                     void (*fn)(void *arg, uint32_t cookie, uint8_t type,
                                const uint8_t body[OVW_PROBE_LEN], uint64_t now_ms),
                     void *arg)
{
	struct gw *g = s->priv;
	g->on_probe = fn;
	g->probe_arg = arg;
}

int gw_linkstate_send(struct ov_slave *s, uint32_t cookie, const uint8_t *body, size_t n)
{
	struct gw *g = s->priv;
	if (cookie >= g->npeers || !n || n > OVW_LS_BODY_MAX)
		return -EINVAL;
	struct gw_peer *p = &g->peers[cookie];
	if (!p->has_ep)
		return -EHOSTUNREACH;
	int r = send_to(g, p, OVW_LINKSTATE, body, n);
	if (!r)
		CNT_ADD(g, probe_tx, 1);
	return r;
}

void gw_set_linkstate_cb(struct ov_slave *s,
                         void (*fn)(void *arg, uint32_t cookie, const uint8_t *body, size_t n,
                                    uint64_t now_ms),
                         void *arg)
{
	struct gw *g = s->priv;
	g->on_linkstate = fn;
	g->linkstate_arg = arg;
}

void gw_set_mcast_cb(struct ov_slave *s,
                     void (*members)(void *arg, uint32_t cookie, const uint8_t *body, size_t n),
                     void (*mcast)(void *arg, uint32_t cookie, const uint8_t *pkt, size_t n),
                     void *arg)
{
	struct gw *g = s->priv;
	g->on_members = members;
	g->on_mcast = mcast;
	g->mcast_arg = arg;
}

void gw_set_mcast_tree_cb(struct ov_slave *s,
                          void (*tree)(void *arg, uint32_t cookie, const uint8_t *body, size_t n))
{
	struct gw *g = s->priv;
	g->on_tree = tree;
}

/* The peer of cookie, for a body of n bytes (1..OVW_INNER_MAX) sent to it: 0 (*pp set),
 * -EINVAL or -EHOSTUNREACH (no endpoint). */
static int peer_to_send(struct gw *g, uint32_t cookie, size_t n, struct gw_peer **pp)
{
	if (cookie >= g->npeers || !n || n > OVW_INNER_MAX)
		return -EINVAL;
	*pp = &g->peers[cookie];
	return (*pp)->has_ep ? 0 : -EHOSTUNREACH;
}

int gw_tree_send(struct ov_slave *s, uint32_t cookie, const uint8_t *body, size_t n)
{
	struct gw *g = s->priv;
	struct gw_peer *p;
	int e = peer_to_send(g, cookie, n, &p);
	if (e)
		return e;
	if (p->via != GW_DIRECT ||
	    ((g->edm || p->peer_edm) && unpunchable(g, p, peak_mono_ms(), false)))
		return -EAGAIN; /* relayed: the relay forwards data only */
	if (p->mtu && n > p->mtu)
		return -EMSGSIZE; /* checked here: queue_packet would answer the body as a packet */
	return queue_packet(g, cookie, OVW_MCAST_TREE, body, n);
}

int gw_peer_by_source(struct ov_slave *s, const uint8_t addr[static 16], uint32_t *cookie)
{
	struct gw *g = s->priv;
	for (size_t i = 0; i < g->npeers; i++)
		if (serves(&g->peers[i], addr)) {
			*cookie = (uint32_t)i;
			return 0;
		}
	return -ENOENT;
}

int gw_peer_find(struct ov_slave *s, const uint8_t id[static OVW_ID_LEN], uint32_t *cookie)
{
	struct gw *g = s->priv;
	struct gw_peer *p = peer_by_id(g, id);
	if (!p)
		return -ENOENT;
	*cookie = (uint32_t)(p - g->peers);
	return 0;
}

int gw_members_send(struct ov_slave *s, uint32_t cookie, const uint8_t *body, size_t n)
{
	struct gw *g = s->priv;
	struct gw_peer *p;
	int e = peer_to_send(g, cookie, n, &p);
	return e ? e : send_to(g, p, OVW_MEMBERS, body, n);
}

void gw_set_resolver(struct ov_slave *s, void (*fn)(void *arg, const uint8_t id[8]), void *arg)
{
	struct gw *g = s->priv;
	g->resolve = fn;
	g->resolve_arg = arg;
}

static const struct ov_slave_ops gw_ops = {
    .name = "gateway",
    .attach = gw_attach,
    .detach = gw_detach,
    .output = gw_output,
    .readable = gw_readable,
    .flush = gw_flush,
    .timer = gw_timer,
    .stats = gw_stats,
    .cookie_of = gw_cookie_of,
    .describe = gw_describe,
    .show = gw_show,
};

struct ov_slave *gw_new(const struct ov_conf *conf, char *err, size_t errlen)
{
	struct gw *g = calloc(1, sizeof(*g));
	struct timespec ts;
	size_t cap = conf->npeers + (conf->dht.enabled ? GW_MAX_LEARNED : 0);
	if (!g || (cap && !(g->peers = calloc(cap, sizeof(*g->peers)))) ||
	    (conf->dht.enabled && !(g->learned = calloc(GW_MAX_LEARNED, sizeof(*g->learned))))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	g->cap = cap;
	g->npeers_conf = conf->npeers;
	if (!(g->txbuf = calloc(GW_BATCH, sizeof(*g->txbuf)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (conf->dht.enabled && !(g->held = calloc(GW_HELD, sizeof(*g->held)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	g->slave.ops = &gw_ops;
	g->slave.priv = g;
	g->conf = conf;
	g->fd = g->nlfd = -1;
	ovw_pubkey(conf->priv, g->pub);
	if (ovw_aead_init(&g->fresh, g->pub)) { /* any key: rekeyed before each use */
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* the epoch: the start time in ns, so it grows across restarts (see wire.h) */
	clock_gettime(CLOCK_REALTIME, &ts);
	g->epoch = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	for (size_t i = 0; i < conf->npeers; i++) {
		struct gw_peer *p = &g->peers[i];
		p->conf = &conf->peers[i];
		p->via = GW_DIRECT;
		p->nat_via = GW_DIRECT;
		g->npeers = i; /* the peers keyed so far: what gw_free releases */
		int r = peer_keys(g, p);
		if (r) {
			snprintf(err, errlen, "peer %s: %s", p->conf->name,
			         r == -ENOMEM ? "out of memory"
			                      : "unusable public key (our own, or of low order)");
			goto fail;
		}
		if (p->conf->has_endpoint) {
			p->ep = p->conf->endpoint;
			p->has_ep = true;
			p->has_ep_pub = 1;
		}
	}
	g->npeers = conf->npeers;
	return &g->slave;
fail:
	if (g)
		gw_free(&g->slave);
	return NULL;
}

void gw_free(struct ov_slave *s)
{
	if (!s)
		return;
	struct gw *g = s->priv;
	fp_close(g->fp);
	if (g->fd != -1)
		close(g->fd);
	ovw_aead_fini(&g->fresh);
	if (g->peers) {
		for (size_t i = 0; i < g->npeers; i++) {
			ovw_aead_fini(&g->peers[i].tx);
			ovw_aead_fini(&g->peers[i].rx);
		}
		memset(g->peers, 0, g->cap * sizeof(*g->peers)); /* keys */
		free(g->peers);
		g->peers = NULL;
	}
	free(g->learned);
	g->learned = NULL;
	free(g->held);
	g->held = NULL;
	free(g->txbuf);
	g->txbuf = NULL;
	free(g);
}
