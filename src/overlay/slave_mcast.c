/*
 * The multicast slave: IPv6 multicast between sites. On the site's LAN (a packet socket on the
 * configured interface, a filter passing only packets to multicast addresses) it is the MLD
 * querier (RFC 3810 §7, MLDv1 listeners too, RFC 2710): General Queries every query-interval
 * (robustness of them a quarter interval apart at start), a listener's group kept for the
 * Multicast Address Listening Interval (robustness * query interval + response interval)
 * after its last report, and a leave (TO_IN({}), done) answered with robustness
 * Multicast-Address-Specific Queries one second apart: the group goes when no report comes
 * back within them. It does not elect among queriers: it queries even if another router
 * does.
 *
 * Membership between sites: a site tells every peer of its gateway which groups (those that
 * cross sites, mcast.h) it has listeners of, in authenticated OVW_MEMBERS announcements: at
 * once on a join or leave, and all of them again every announce seconds; a peer's group not
 * announced again within three announce periods and a second is dropped (every site must use
 * the same announce period). With the DHT slave, membership is published there as well
 * (dht.h): a site with listeners puts its signed group record under the group's key
 * (republished, and a leave record when the last listener goes), and a gateway sending to a
 * group looks its members up every MC_DHT_TTL_MS while it sends (a member found lives twice
 * that), learning them as peers: sites that know no peer find each other's members.
 *
 * Forwarding: a packet a host sends to a group that crosses sites with hop limit above 1
 * leaves with its hop limit one less (the overlay is one hop), as one OVW_DATA copy to each
 * member site's gateway (head-end replication through the gateway slave's batch: relays and
 * path MTU as for unicast), or, for a group of more than tree-above member sites, through a
 * distribution tree of member gateways: the member list is cut into tree-fanout parts
 * (mc_tree_part), the first site of each part gets the packet with the rest of its part in an
 * OVW_MCAST_TREE packet and does the same with it (a site with none left gets it alone), so
 * each gateway sends at most tree-fanout copies and a packet reaches every member in about
 * log_fanout(members) overlay hops. Its source must belong to a site the receiver knows. A
 * site the sender cannot send a tree packet to (its packets are relayed, or the list does not
 * fit its path MTU) gets a plain copy and the next site of its part is tried; a forwarder
 * cannot send it a plain copy (the source is not the forwarder's: the peer would refuse it),
 * so that site misses the packet (counted); a site a forwarder does not know (no peer for its
 * id) is counted, and the forwarder looks the group's members up in the DHT so the next
 * packets reach it. The tree is rebuilt per packet from the member list (no
 * state). A gateway hands a group's packet from a peer to its LAN only if it has listeners of
 * the group. Groups and members live in dynamic arrays (no fixed limits; a linear scan of the
 * groups per packet).
 */
#include "slave_mcast.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "dht.h"
#include "gateway.h"
#include "io.h"
#include "mcast.h"
#include "wire.h"
#include "peak/util.h"

enum {
	MC_LLQI_MS = 1000,       /* Last Listener Query Interval (RFC 3810 §9.8) */
	MC_RX_BATCH = 64,        /* packets read from the LAN per readable call */
	MC_SOCKBUF = 4 << 20,    /* absorbs a burst while the loop seals copies */
	MC_HOLD_SLACK_MS = 1000, /* a peer's group lives 3 announce periods and this */
	MC_DHT_TTL_MS = 5000,    /* a group sent to is looked up in the DHT this often */
};

struct mc_member {
	uint32_t cookie;            /* the gateway's peer */
	uint8_t id[MC_TREE_ID_LEN]; /* its sender id, for distribution trees */
	uint64_t expires_ms;        /* monotonic */
};

struct mc_group {
	uint8_t addr[16];
	uint64_t local_until_ms; /* listeners on our LAN until then (0: none) */
	bool announced;          /* peers were told we listen */
	unsigned llq_left;       /* specific queries still to send after a leave */
	uint64_t next_llq_ms;
	uint64_t published_ms; /* our group record last put in the DHT */
	uint64_t lookup_ms;    /* the DHT lookup of its members is due again then */
	struct mc_member *members;
	size_t nmembers, cap;
};

struct mcs {
	struct ov_slave slave;
	const struct ov_conf *conf;
	const struct ov_mcast_conf *mc;
	struct ov_master *m;
	struct ov_slave *gw;
	struct ov_slave *dht; /* NULL: membership through announcements only */
	int fd, ifindex;
	uint8_t ll[16]; /* the interface's link-local address: the queries' source */
	bool has_ll;
	struct mc_group *groups;
	size_t ngroups, cap;
	unsigned startup_left; /* startup General Queries still to send */
	uint64_t next_query_ms, next_announce_ms;
	struct log_limit rl;
	uint8_t mac[6]; /* the interface's Ethernet address */
	uint8_t buf[sizeof(struct virtio_net_hdr) + ETH_HLEN + OVW_INNER_MAX + 64];
	uint8_t tree[OVW_INNER_MAX]; /* a tree packet's body being written */
	uint8_t *ids;                /* a group's member ids, for its tree */
	uint32_t *cookies;           /* and their peers', in the same order */
	size_t ids_cap;              /* members both have room for */
	/* atomic: the metrics thread reads them */
	uint64_t lan_bad, reports, mld_bad, queries, lan_rx, lan_no_members, hop_limit, copies,
	    copy_err, peer_rx, delivered, not_listened, deliver_err, announce_tx, announce_rx,
	    announce_bad, local_groups, member_entries, lookups, lookup_busy, tree_tx, tree_err,
	    tree_rx, tree_bad, tree_unknown;
};

#define CNT_ADD(p, f, v) __atomic_fetch_add(&(p)->f, (v), __ATOMIC_RELAXED)
#define CNT_GET(p, f) __atomic_load_n(&(p)->f, __ATOMIC_RELAXED)
#define CNT_SET(p, f, v) __atomic_store_n(&(p)->f, (v), __ATOMIC_RELAXED)

static uint64_t mali_ms(const struct mcs *c)
{
	return (uint64_t)c->mc->robustness * c->mc->query_s * 1000 + c->mc->response_ms;
}

static struct mc_group *group_find(struct mcs *c, const uint8_t addr[16])
{
	for (size_t i = 0; i < c->ngroups; i++)
		if (!memcmp(c->groups[i].addr, addr, 16))
			return &c->groups[i];
	return NULL;
}

static struct mc_group *group_get(struct mcs *c, const uint8_t addr[16])
{
	struct mc_group *g = group_find(c, addr);
	if (g)
		return g;
	if (c->ngroups == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 8;
		struct mc_group *n = realloc(c->groups, cap * sizeof(*n));
		if (!n)
			return NULL;
		c->groups = n;
		c->cap = cap;
	}
	g = &c->groups[c->ngroups++];
	memset(g, 0, sizeof(*g));
	memcpy(g->addr, addr, 16);
	return g;
}

static void sync_gauges(struct mcs *c, uint64_t now)
{
	uint64_t local = 0, members = 0;
	for (size_t i = 0; i < c->ngroups; i++) {
		local += c->groups[i].local_until_ms > now;
		members += c->groups[i].nmembers;
	}
	CNT_SET(c, local_groups, local);
	CNT_SET(c, member_entries, members);
}

/* Tells every peer with an endpoint about group g (joined or left). */
static void announce_one(struct mcs *c, const uint8_t group[16], bool joined)
{
	uint8_t body[MC_ENTRY_LEN];
	size_t len = 0;
	mc_members_add(body, sizeof(body), &len, group, joined);
	size_t n = gw_peer_count(c->gw);
	for (size_t i = 0; i < n; i++)
		if (!gw_members_send(c->gw, (uint32_t)i, body, len))
			CNT_ADD(c, announce_tx, 1);
}

/* Every group we have listeners of, to every peer, in as many announcements as it takes. */
static void announce_all(struct mcs *c, uint64_t now)
{
	uint8_t body[OVW_INNER_MAX];
	size_t len = 0, npeers = gw_peer_count(c->gw);
	for (size_t i = 0; i <= c->ngroups; i++) {
		bool last = i == c->ngroups;
		if (!last && c->groups[i].local_until_ms <= now)
			continue;
		if (last || !mc_members_add(body, sizeof(body), &len, c->groups[i].addr, true)) {
			for (size_t k = 0; len && k < npeers; k++)
				if (!gw_members_send(c->gw, (uint32_t)k, body, len))
					CNT_ADD(c, announce_tx, 1);
			len = 0;
			if (!last)
				mc_members_add(body, sizeof(body), &len, c->groups[i].addr, true);
		}
	}
}

/* Sends pkt (an IPv6 packet) on the LAN to Ethernet address mac, behind the (empty) virtio
 * header the socket wants. 0 or -1. */
static int lan_send(struct mcs *c, const uint8_t *pkt, size_t len, const uint8_t mac[6])
{
	struct virtio_net_hdr h = {0};
	uint8_t eth[ETH_HLEN];
	memcpy(eth, mac, 6);
	memcpy(eth + 6, c->mac, 6);
	eth[12] = ETH_P_IPV6 >> 8;
	eth[13] = ETH_P_IPV6 & 0xff;
	struct sockaddr_ll to = {
	    .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IPV6), .sll_ifindex = c->ifindex};
	struct iovec iov[3] = {{&h, sizeof(h)}, {eth, sizeof(eth)}, {(void *)pkt, len}};
	struct msghdr msg = {
	    .msg_name = &to, .msg_namelen = sizeof(to), .msg_iov = iov, .msg_iovlen = 3};
	return sendmsg(c->fd, &msg, 0) == (ssize_t)(sizeof(h) + sizeof(eth) + len) ? 0 : -1;
}

static void send_lan(struct mcs *c, const uint8_t *pkt, size_t len, const uint8_t group[16])
{
	uint8_t mac[6];
	mc_mac(group, mac);
	if (lan_send(c, pkt, len, mac)) {
		CNT_ADD(c, deliver_err, 1);
		log_rl(&c->rl, LOG_WARNING, "overlay: multicast: send on %s: %s", c->mc->interface,
		       strerror(errno));
	} else {
		CNT_ADD(c, delivered, 1);
	}
}

/* The interface's link-local address, looked up until it has one. */
static bool link_local(struct mcs *c)
{
	struct ifaddrs *ifa, *i;
	if (c->has_ll || getifaddrs(&ifa))
		return c->has_ll;
	for (i = ifa; i && !c->has_ll; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET6 ||
		    strcmp(i->ifa_name, c->mc->interface))
			continue;
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)i->ifa_addr;
		if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr)) {
			memcpy(c->ll, &a->sin6_addr, 16);
			c->has_ll = true;
		}
	}
	freeifaddrs(ifa);
	return c->has_ll;
}

static void query(struct mcs *c, const uint8_t *group)
{
	static const uint8_t all_nodes[16] = {0xff, 0x02, [15] = 1};
	uint8_t q[MC_QUERY_LEN];
	if (!link_local(c))
		return;
	/* a specific query asks for an answer within the Last Listener Query Interval */
	mc_query_build(q, c->ll, group, group ? MC_LLQI_MS : c->mc->response_ms, c->mc->robustness,
	               c->mc->query_s);
	uint8_t mac[6];
	mc_mac(group ? group : all_nodes, mac);
	if (!lan_send(c, q, sizeof(q), mac))
		CNT_ADD(c, queries, 1);
	else
		log_rl(&c->rl, LOG_WARNING, "overlay: multicast: query on %s: %s", c->mc->interface,
		       strerror(errno));
}

/* Puts our group record (a join or a leave) in the DHT, when there is one. */
static void publish(struct mcs *c, struct mc_group *g, bool joined, uint64_t now)
{
	if (!c->dht)
		return;
	int e = dht_group_publish(c->dht, g->addr, joined);
	if (e)
		log_rl(&c->rl, LOG_WARNING, "overlay: multicast: group record not put: %s",
		       strerror(-e));
	g->published_ms = now;
}

/* Adds or refreshes the peer of cookie as a member of g until expires_ms (not sooner than
 * it had); a new member's sender id is looked up once. */
static void member_set(struct mcs *c, struct mc_group *g, uint32_t cookie, uint64_t expires_ms)
{
	size_t i = 0;
	while (i < g->nmembers && g->members[i].cookie != cookie)
		i++;
	if (i == g->nmembers) {
		if (g->nmembers == g->cap) {
			size_t cap = g->cap ? 2 * g->cap : 4;
			struct mc_member *m = realloc(g->members, cap * sizeof(*m));
			if (!m)
				return;
			g->members = m;
			g->cap = cap;
		}
		struct mc_member *m = &g->members[g->nmembers++];
		uint8_t pub[32] = {0};
		(void)gw_peer_pub(c->gw, cookie, pub); /* unknown: a zero id no forwarder knows */
		m->cookie = cookie;
		memcpy(m->id, pub, MC_TREE_ID_LEN);
		m->expires_ms = 0;
	}
	if (g->members[i].expires_ms < expires_ms)
		g->members[i].expires_ms = expires_ms;
}

/* The DHT slave's callback: the member sites of a group we send to. */
static void on_group_members(void *arg, const uint8_t group[16], const uint32_t *cookies, size_t n)
{
	struct mcs *c = arg;
	uint64_t now = peak_mono_ms();
	struct mc_group *g = group_get(c, group);
	if (!g)
		return;
	for (size_t i = 0; i < n; i++)
		member_set(c, g, cookies[i], now + 2 * MC_DHT_TTL_MS);
	sync_gauges(c, now);
}

/* mc_mld_parse's callback: a listener on our LAN reported (joined) or left a group. */
static void on_report(void *arg, const uint8_t group[16], bool joined)
{
	struct mcs *c = arg;
	if (!mc_crosses(group))
		return; /* link- and site-scope groups stay here: nothing to do */
	uint64_t now = peak_mono_ms();
	struct mc_group *g = joined ? group_get(c, group) : group_find(c, group);
	if (!g || g->local_until_ms <= now) {
		if (!g && joined)
			log_rl(&c->rl, LOG_ERR, "overlay: multicast: out of memory");
		if (!g || !joined)
			return;
	}
	if (!joined) { /* is any listener left? ask robustness times, then drop the group */
		uint64_t llqt = (uint64_t)c->mc->robustness * MC_LLQI_MS;
		if (g->local_until_ms > now + llqt)
			g->local_until_ms = now + llqt;
		query(c, g->addr);
		g->llq_left = c->mc->robustness - 1;
		g->next_llq_ms = now + MC_LLQI_MS;
		return;
	}
	g->local_until_ms = now + mali_ms(c);
	g->llq_left = 0;
	if (!g->announced) {
		char a[INET6_ADDRSTRLEN];
		log_msg(LOG_INFO, "overlay: multicast: listeners of %s on %s",
		        inet_ntop(AF_INET6, group, a, sizeof(a)), c->mc->interface);
		g->announced = true;
		announce_one(c, g->addr, true);
		publish(c, g, true, now);
		/* put again 5 s later, in case this put reached no DHT node yet */
		g->published_ms = now - (DHT_GROUP_REPUBLISH_S - 5) * 1000ULL;
	}
	sync_gauges(c, now);
}

/* With the DHT slave, the group of addr (made if new) whose members are looked up there now
 * and then while we send to it (every MC_DHT_TTL_MS); else the group if known. */
static struct mc_group *lookup_members(struct mcs *c, const uint8_t addr[16])
{
	struct mc_group *g = group_find(c, addr);
	if (!c->dht)
		return g;
	uint64_t now = peak_mono_ms();
	if (!g)
		g = group_get(c, addr);
	if (g && now >= g->lookup_ms) {
		g->lookup_ms = now + MC_DHT_TTL_MS;
		int e = dht_group_lookup(c->dht, g->addr);
		if (e && e != -EALREADY)
			CNT_ADD(c, lookup_busy, 1);
		else if (!e)
			CNT_ADD(c, lookups, 1);
	}
	return g;
}

/* A plain copy of pkt to the site of cookie (relays and path MTU as for unicast). */
static void copy(struct mcs *c, uint32_t cookie, const uint8_t *pkt, size_t n)
{
	if (c->gw->ops->output(c->gw, cookie, pkt, n))
		CNT_ADD(c, copy_err, 1);
	else
		CNT_ADD(c, copies, 1);
}

/* g's member sites' ids and peers into c->ids and c->cookies (in member order). False if
 * out of memory. */
static bool member_ids(struct mcs *c, const struct mc_group *g)
{
	if (g->nmembers > c->ids_cap) {
		size_t cap = 2 * g->nmembers;
		uint8_t *ids = realloc(c->ids, cap * MC_TREE_ID_LEN);
		if (ids)
			c->ids = ids;
		uint32_t *cookies = ids ? realloc(c->cookies, cap * sizeof(*cookies)) : NULL;
		if (!cookies)
			return false;
		c->cookies = cookies;
		c->ids_cap = cap;
	}
	for (size_t i = 0; i < g->nmembers; i++) {
		memcpy(c->ids + i * MC_TREE_ID_LEN, g->members[i].id, MC_TREE_ID_LEN);
		c->cookies[i] = g->members[i].cookie;
	}
	return true;
}

/* Passes pkt (n bytes, to a group) on to the sites of ids (nids ids) through the
 * distribution tree: the list cut into tree-fanout parts (more if a part's list would not fit
 * beside the packet), each part's first site we reach directly gets an OVW_MCAST_TREE packet
 * with the rest of its part (a part of one: with none). A site that cannot take one (relayed,
 * over its MTU) gets a plain copy if the packet is our site's (origin: a forwarded packet's
 * source is not ours, and a peer takes plain packets only from the sites they belong to), and
 * the next site of its part is tried. cookies: the sites' peers in the same order (the
 * sender's members), or NULL (a forwarder's list: looked up by id). Returns how many sites
 * were not known as peers. */
static size_t tree_send(struct mcs *c, const uint8_t *ids, const uint32_t *cookies, size_t nids,
                        const uint8_t *pkt, size_t n, bool origin)
{
	size_t room = n < OVW_INNER_MAX ? (OVW_INNER_MAX - 1 - n) / MC_TREE_ID_LEN : 0;
	size_t per = (room < MC_TREE_MAX_IDS ? room : MC_TREE_MAX_IDS) + 1; /* sites a part */
	size_t parts = c->mc->tree_fanout < nids ? c->mc->tree_fanout : nids, unknown = 0;
	if ((nids + per - 1) / per > parts)
		parts = (nids + per - 1) / per;
	for (size_t k = 0; k < parts; k++) {
		size_t s, e;
		mc_tree_part(nids, parts, k, &s, &e);
		for (; s < e; s++) {
			uint32_t cookie = cookies ? cookies[s] : 0;
			if (!cookies && gw_peer_find(c->gw, ids + s * MC_TREE_ID_LEN, &cookie)) {
				unknown++;
				continue;
			}
			if (origin && s + 1 == e) { /* a leaf of ours: the plain path */
				copy(c, cookie, pkt, n);
				break;
			}
			size_t len =
			    mc_tree_build(c->tree, sizeof(c->tree), ids + (s + 1) * MC_TREE_ID_LEN,
			                  e - s - 1, pkt, n);
			if (len && !gw_tree_send(c->gw, cookie, c->tree, len)) {
				CNT_ADD(c, tree_tx, 1);
				break;
			}
			CNT_ADD(c, tree_err, 1);
			if (origin)
				copy(c, cookie, pkt, n);
		}
	}
	if (unknown)
		CNT_ADD(c, tree_unknown, unknown);
	return unknown;
}

/* A packet from the LAN to a multicast address (the socket's filter): MLD, or a packet to a
 * group that crosses sites: one copy to each member site, or through the distribution tree. */
static void from_lan(struct mcs *c, uint8_t *pkt, size_t n)
{
	if (n < 40 || pkt[0] >> 4 != 6)
		return;
	size_t plen = (size_t)pkt[4] << 8 | pkt[5];
	if (40 + plen > n)
		return;
	n = 40 + plen; /* without the Ethernet padding */
	if (pkt[6] == 0 || pkt[6] == 58) {
		int r = mc_mld_parse(pkt, n, on_report, c);
		if (r < 0)
			CNT_ADD(c, mld_bad, 1);
		if (r != 0) {
			if (r > 0)
				CNT_ADD(c, reports, 1);
			return;
		}
	}
	if (!mc_crosses(pkt + 24))
		return;
	CNT_ADD(c, lan_rx, 1);
	if (pkt[7] <= 1) {
		CNT_ADD(c, hop_limit, 1);
		return;
	}
	pkt[7]--;
	struct mc_group *g = lookup_members(c, pkt + 24);
	if (!g || !g->nmembers) {
		CNT_ADD(c, lan_no_members, 1);
		return;
	}
	if (c->mc->tree_above && g->nmembers > c->mc->tree_above && member_ids(c, g)) {
		tree_send(c, c->ids, c->cookies, g->nmembers, pkt, n, true);
		return;
	}
	for (size_t i = 0; i < g->nmembers; i++)
		copy(c, g->members[i].cookie, pkt, n);
}

static void mc_readable(struct ov_slave *s, int fd)
{
	struct mcs *c = s->priv;
	const size_t vh = sizeof(struct virtio_net_hdr) + ETH_HLEN;
	for (unsigned i = 0; i < MC_RX_BATCH; i++) {
		ssize_t r = recv(fd, c->buf, sizeof(c->buf), MSG_DONTWAIT | MSG_TRUNC);
		if (r < 0)
			return;
		if ((size_t)r > sizeof(c->buf) || (size_t)r < vh + 40) {
			CNT_ADD(c, lan_bad, 1); /* larger than the overlay carries, or runt */
			continue;
		}
		struct virtio_net_hdr h;
		memcpy(&h, c->buf, sizeof(h));
		uint8_t *pkt = c->buf + vh;
		size_t n = (size_t)r - vh;
		if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
			CNT_ADD(c, lan_bad, 1);
			continue;
		}
		/* a host on the same machine (veth) leaves the checksum to the device: the field
		 * holds the pseudo-header's sum; complete it, as the TUN path does (master.c) */
		if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
			/* csum_start counts from the Ethernet header */
			size_t start = (size_t)h.csum_start - ETH_HLEN, at = start + h.csum_offset;
			if (h.csum_start < ETH_HLEN + 40 || at + 2 > n) {
				CNT_ADD(c, lan_bad, 1);
				continue;
			}
			uint16_t ck = ovio_csum_fold(ovio_csum_add(0, pkt + start, n - start));
			if (!ck && pkt[6] == 17)
				ck = 0xffff; /* UDP sends a zero sum as all ones (RFC 8200 §8.1) */
			pkt[at] = (uint8_t)(ck >> 8);
			pkt[at + 1] = (uint8_t)ck;
		}
		from_lan(c, pkt, n);
	}
}

/* The gateway's callback: a peer's packet to a multicast address. */
static void on_mcast(void *arg, uint32_t cookie, const uint8_t *pkt, size_t n)
{
	struct mcs *c = arg;
	(void)cookie;
	CNT_ADD(c, peer_rx, 1);
	struct mc_group *g = mc_crosses(pkt + 24) ? group_find(c, pkt + 24) : NULL;
	if (!g || g->local_until_ms <= peak_mono_ms() || !pkt[7]) {
		CNT_ADD(c, not_listened, 1);
		return;
	}
	send_lan(c, pkt, n, g->addr);
}

/* The gateway's callback: a peer's distribution tree packet: delivered here as a group's
 * packet from the site its source belongs to (one of our peers: any other is refused), and
 * passed on to the sites it lists. */
static void on_tree(void *arg, uint32_t cookie, const uint8_t *body, size_t n)
{
	struct mcs *c = arg;
	const uint8_t *ids, *pkt;
	size_t nids, len;
	(void)cookie; /* the forwarder: the packet is the site's of its source */
	CNT_ADD(c, tree_rx, 1);
	uint32_t origin;
	if (mc_tree_parse(body, n, &ids, &nids, &pkt, &len) || ovw_inner_check(pkt, len) ||
	    !mc_crosses(pkt + 24) || gw_peer_by_source(c->gw, pkt + 8, &origin)) {
		CNT_ADD(c, tree_bad, 1); /* malformed, or not from a site we know */
		return;
	}
	on_mcast(c, origin, pkt, len);
	if (nids && tree_send(c, ids, NULL, nids, pkt, len, false))
		(void)lookup_members(c, pkt + 24); /* the sites we do not know, for the next ones */
}

struct members_ctx {
	struct mcs *c;
	uint32_t cookie;
	uint64_t now;
};

static void on_member(void *arg, const uint8_t group[16], bool joined)
{
	struct members_ctx *x = arg;
	struct mcs *c = x->c;
	struct mc_group *g = joined ? group_get(c, group) : group_find(c, group);
	if (!g)
		return;
	if (!joined) {
		for (size_t i = 0; i < g->nmembers; i++)
			if (g->members[i].cookie == x->cookie) {
				g->members[i] = g->members[--g->nmembers];
				break;
			}
		return;
	}
	member_set(c, g, x->cookie, x->now + 3ULL * c->mc->announce_s * 1000 + MC_HOLD_SLACK_MS);
}

/* The gateway's callback: an authenticated announcement of the peer of cookie. */
static void on_members(void *arg, uint32_t cookie, const uint8_t *body, size_t n)
{
	struct mcs *c = arg;
	struct members_ctx x = {c, cookie, peak_mono_ms()};
	if (mc_members_parse(body, n, on_member, &x) < 0) {
		CNT_ADD(c, announce_bad, 1);
		return;
	}
	CNT_ADD(c, announce_rx, 1);
	sync_gauges(c, x.now);
}

static void mc_timer(struct ov_slave *s, uint64_t now)
{
	struct mcs *c = s->priv;
	if (now >= c->next_query_ms) {
		query(c, NULL);
		if (c->startup_left && c->has_ll)
			c->startup_left--;
		uint64_t every = (uint64_t)c->mc->query_s * 1000;
		c->next_query_ms = now + (c->startup_left ? every / 4 : every);
	}
	for (size_t i = 0; i < c->ngroups;) {
		struct mc_group *g = &c->groups[i];
		if (g->llq_left && now >= g->next_llq_ms && g->local_until_ms > now) {
			query(c, g->addr);
			g->llq_left--;
			g->next_llq_ms = now + MC_LLQI_MS;
		}
		if (g->announced && g->local_until_ms <= now) {
			char a[INET6_ADDRSTRLEN];
			log_msg(LOG_INFO, "overlay: multicast: no listener of %s left on %s",
			        inet_ntop(AF_INET6, g->addr, a, sizeof(a)), c->mc->interface);
			g->announced = false;
			g->local_until_ms = 0;
			announce_one(c, g->addr, false);
			publish(c, g, false, now);
		} else if (g->announced &&
		           now - g->published_ms >= DHT_GROUP_REPUBLISH_S * 1000ULL) {
			publish(c, g, true, now);
		}
		for (size_t k = 0; k < g->nmembers;) {
			if (g->members[k].expires_ms <= now)
				g->members[k] = g->members[--g->nmembers];
			else
				k++;
		}
		if (!g->nmembers && !g->local_until_ms && g->lookup_ms <= now) {
			free(g->members);
			c->groups[i] = c->groups[--c->ngroups];
			continue;
		}
		i++;
	}
	if (now >= c->next_announce_ms) {
		announce_all(c, now);
		c->next_announce_ms = now + (uint64_t)c->mc->announce_s * 1000;
	}
	sync_gauges(c, now);
}

static int mc_attach(struct ov_slave *s, struct ov_master *m)
{
	struct mcs *c = s->priv;
	c->m = m;
	if (!(c->ifindex = (int)if_nametoindex(c->mc->interface))) {
		log_msg(LOG_ERR, "overlay: multicast: interface %s: %s", c->mc->interface,
		        strerror(errno));
		return -ENODEV;
	}
	/* raw (Ethernet headers): a virtio header is only given on raw packet sockets */
	c->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_IPV6));
	if (c->fd < 0)
		goto fail;
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, c->mc->interface, strlen(c->mc->interface));
	if (ioctl(c->fd, SIOCGIFHWADDR, &ifr))
		goto fail;
	memcpy(c->mac, ifr.ifr_hwaddr.sa_data, 6);
	struct sockaddr_ll sl = {
	    .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IPV6), .sll_ifindex = c->ifindex};
	/* only packets to multicast addresses: the destination's first byte is 0xff */
	struct sock_filter code[] = {
	    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, ETH_HLEN + 24),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xff, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, 0xffff),
	    BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
	struct packet_mreq mr = {.mr_ifindex = c->ifindex, .mr_type = PACKET_MR_ALLMULTI};
	int one = 1, buf = MC_SOCKBUF;
	if (setsockopt(c->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) ||
	    bind(c->fd, (struct sockaddr *)&sl, sizeof(sl)) ||
	    setsockopt(c->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) ||
	    setsockopt(c->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) ||
	    setsockopt(c->fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)))
		goto fail;
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	int r = ov_master_watch(m, c->fd, s);
	if (r) {
		errno = -r;
		goto fail;
	}
	gw_set_mcast_cb(c->gw, on_members, on_mcast, c);
	gw_set_mcast_tree_cb(c->gw, on_tree);
	if (c->dht)
		dht_set_group_cb(c->dht, on_group_members, c);
	c->startup_left = c->mc->robustness;
	log_msg(LOG_INFO, "overlay: multicast: querier on %s", c->mc->interface);
	return 0;
fail:
	r = -errno;
	log_msg(LOG_ERR, "overlay: multicast: packet socket on %s: %s", c->mc->interface,
	        strerror(errno));
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	return r;
}

static void mc_detach(struct ov_slave *s)
{
	struct mcs *c = s->priv;
	gw_set_mcast_cb(c->gw, NULL, NULL, NULL);
	gw_set_mcast_tree_cb(c->gw, NULL);
	if (c->dht)
		dht_set_group_cb(c->dht, NULL, NULL);
	if (c->fd >= 0) {
		ov_master_unwatch(c->m, c->fd);
		close(c->fd);
		c->fd = -1;
	}
}

static int mc_output(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len)
{
	(void)s, (void)cookie, (void)pkt, (void)len;
	return -EHOSTUNREACH; /* it owns no route */
}

static void mc_stats(struct ov_slave *s, struct mbuf *b)
{
	struct mcs *c = s->priv;
	mbuf_printf(
	    b,
	    "# HELP peak_overlay_mcast_reports_total MLD reports and dones taken from the LAN.\n"
	    "# TYPE peak_overlay_mcast_reports_total counter\n"
	    "peak_overlay_mcast_reports_total %llu\n"
	    "# HELP peak_overlay_mcast_mld_refused_total MLD messages refused (malformed, bad "
	    "checksum, not link-local, hop limit not 1).\n"
	    "# TYPE peak_overlay_mcast_mld_refused_total counter\n"
	    "peak_overlay_mcast_mld_refused_total %llu\n"
	    "# HELP peak_overlay_mcast_queries_total MLD queries sent on the LAN.\n"
	    "# TYPE peak_overlay_mcast_queries_total counter\n"
	    "peak_overlay_mcast_queries_total %llu\n"
	    "# HELP peak_overlay_mcast_lan_packets_total Packets from the LAN to groups that "
	    "cross sites, by what became of them.\n"
	    "# TYPE peak_overlay_mcast_lan_packets_total counter\n"
	    "peak_overlay_mcast_lan_packets_total{result=\"forwarded\"} %llu\n"
	    "peak_overlay_mcast_lan_packets_total{result=\"no_members\"} %llu\n"
	    "peak_overlay_mcast_lan_packets_total{result=\"hop_limit\"} %llu\n"
	    "peak_overlay_mcast_lan_packets_total{result=\"malformed\"} %llu\n"
	    "# HELP peak_overlay_mcast_copies_total Copies sent to member sites.\n"
	    "# TYPE peak_overlay_mcast_copies_total counter\n"
	    "peak_overlay_mcast_copies_total{result=\"ok\"} %llu\n"
	    "peak_overlay_mcast_copies_total{result=\"failed\"} %llu\n"
	    "# HELP peak_overlay_mcast_tree_packets_total Distribution tree packets: sent, not "
	    "sent (a plain copy instead), received, refused (malformed).\n"
	    "# TYPE peak_overlay_mcast_tree_packets_total counter\n"
	    "peak_overlay_mcast_tree_packets_total{result=\"sent\"} %llu\n"
	    "peak_overlay_mcast_tree_packets_total{result=\"not_sent\"} %llu\n"
	    "peak_overlay_mcast_tree_packets_total{result=\"received\"} %llu\n"
	    "peak_overlay_mcast_tree_packets_total{result=\"refused\"} %llu\n"
	    "# HELP peak_overlay_mcast_tree_unknown_total Sites a tree packet listed that this "
	    "gateway knows no peer for (skipped).\n"
	    "# TYPE peak_overlay_mcast_tree_unknown_total counter\n"
	    "peak_overlay_mcast_tree_unknown_total %llu\n"
	    "# HELP peak_overlay_mcast_peer_packets_total Group packets from peers, by what "
	    "became of them.\n"
	    "# TYPE peak_overlay_mcast_peer_packets_total counter\n"
	    "peak_overlay_mcast_peer_packets_total{result=\"delivered\"} %llu\n"
	    "peak_overlay_mcast_peer_packets_total{result=\"no_listener\"} %llu\n"
	    "peak_overlay_mcast_peer_packets_total{result=\"failed\"} %llu\n"
	    "# HELP peak_overlay_mcast_announcements_total Membership announcements.\n"
	    "# TYPE peak_overlay_mcast_announcements_total counter\n"
	    "peak_overlay_mcast_announcements_total{dir=\"tx\"} %llu\n"
	    "peak_overlay_mcast_announcements_total{dir=\"rx\"} %llu\n"
	    "peak_overlay_mcast_announcements_total{dir=\"refused\"} %llu\n"
	    "# HELP peak_overlay_mcast_dht_lookups_total Member lookups of groups sent to "
	    "(started, or refused: no lookup slot free).\n"
	    "# TYPE peak_overlay_mcast_dht_lookups_total counter\n"
	    "peak_overlay_mcast_dht_lookups_total{result=\"started\"} %llu\n"
	    "peak_overlay_mcast_dht_lookups_total{result=\"busy\"} %llu\n"
	    "# HELP peak_overlay_mcast_local_groups Groups with listeners on the LAN.\n"
	    "# TYPE peak_overlay_mcast_local_groups gauge\n"
	    "peak_overlay_mcast_local_groups %llu\n"
	    "# HELP peak_overlay_mcast_members Member sites known, summed over the groups.\n"
	    "# TYPE peak_overlay_mcast_members gauge\n"
	    "peak_overlay_mcast_members %llu\n",
	    (unsigned long long)CNT_GET(c, reports), (unsigned long long)CNT_GET(c, mld_bad),
	    (unsigned long long)CNT_GET(c, queries), (unsigned long long)CNT_GET(c, lan_rx),
	    (unsigned long long)CNT_GET(c, lan_no_members),
	    (unsigned long long)CNT_GET(c, hop_limit), (unsigned long long)CNT_GET(c, lan_bad),
	    (unsigned long long)CNT_GET(c, copies), (unsigned long long)CNT_GET(c, copy_err),
	    (unsigned long long)CNT_GET(c, tree_tx), (unsigned long long)CNT_GET(c, tree_err),
	    (unsigned long long)CNT_GET(c, tree_rx), (unsigned long long)CNT_GET(c, tree_bad),
	    (unsigned long long)CNT_GET(c, tree_unknown), (unsigned long long)CNT_GET(c, delivered),
	    (unsigned long long)CNT_GET(c, not_listened),
	    (unsigned long long)CNT_GET(c, deliver_err),
	    (unsigned long long)CNT_GET(c, announce_tx),
	    (unsigned long long)CNT_GET(c, announce_rx),
	    (unsigned long long)CNT_GET(c, announce_bad), (unsigned long long)CNT_GET(c, lookups),
	    (unsigned long long)CNT_GET(c, lookup_busy),
	    (unsigned long long)CNT_GET(c, local_groups),
	    (unsigned long long)CNT_GET(c, member_entries));
}

/* "mcast GROUP local yes|no members NAME,NAME|-" per group known. */
static void mc_show(struct ov_slave *s, struct mbuf *b)
{
	struct mcs *c = s->priv;
	uint64_t now = peak_mono_ms();
	for (size_t i = 0; i < c->ngroups; i++) {
		const struct mc_group *g = &c->groups[i];
		char a[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, g->addr, a, sizeof(a));
		mbuf_printf(b, "mcast %s local %s members ", a,
		            g->local_until_ms > now ? "yes" : "no");
		for (size_t k = 0; k < g->nmembers; k++) {
			struct gw_peer_info info;
			if (gw_peer_info(c->gw, g->members[k].cookie, &info))
				continue;
			mbuf_printf(b, "%s%s", k ? "," : "", info.name);
		}
		mbuf_printf(b, "%s\n", g->nmembers ? "" : "-");
	}
}

static const struct ov_slave_ops mc_ops = {
    .name = "multicast",
    .attach = mc_attach,
    .detach = mc_detach,
    .output = mc_output,
    .readable = mc_readable,
    .timer = mc_timer,
    .stats = mc_stats,
    .show = mc_show,
};

struct ov_slave *mcast_new(const struct ov_conf *conf, struct ov_slave *gw, struct ov_slave *dht,
                           char *err, size_t errlen)
{
	struct mcs *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->slave.ops = &mc_ops;
	c->slave.priv = c;
	c->conf = conf;
	c->mc = &conf->mcast;
	c->gw = gw;
	c->dht = dht;
	c->fd = -1;
	return &c->slave;
}

void mcast_free(struct ov_slave *s)
{
	if (!s)
		return;
	struct mcs *c = s->priv;
	if (c->fd >= 0)
		close(c->fd);
	for (size_t i = 0; i < c->ngroups; i++)
		free(c->groups[i].members);
	free(c->groups);
	free(c->ids);
	free(c->cookies);
	free(c);
}
