#pragma once
/*
 * The multicast slave's pure parts (slave_mcast.c runs them): MLD messages a site's hosts
 * send (MLDv1, RFC 2710; MLDv2, RFC 3810), the General and Multicast-Address-Specific Queries
 * the gateway sends as the LAN's querier, which groups cross sites, and the membership
 * announcement one gateway sends another over the overlay (OVW_MEMBERS). No I/O: fuzzed and
 * unit-tested.
 *
 * Only any-source multicast is kept: a listener of a group gets every source's packets. An
 * MLDv2 record that wants any source (IS_EX, TO_EX, or IS_IN/TO_IN/ALLOW with sources) is a
 * join; TO_IN or IS_IN with no source (RFC 3810 §6.1: "leave") is a leave; BLOCK is ignored.
 *
 * A membership announcement (the body of an OVW_MEMBERS packet, at most OVW_INNER_MAX bytes;
 * a site's groups take as many packets as they need) is a list of 17-byte entries:
 *	0  u8  MC_OP_JOIN (the site has listeners of the group) or MC_OP_LEAVE (none any more)
 *	1  16  the group, one that crosses sites (mc_crosses)
 *
 * A distribution tree packet (the body of an OVW_MCAST_TREE packet: a packet to a group of
 * many member sites goes to a few of them, each passing it on to its share of the rest):
 *	0  u8  n, the number of site ids that follow (0..MC_TREE_MAX_IDS)
 *	1  8n  the sender ids (wire.h) of the member sites the receiver passes the packet on to
 *	   ... the IPv6 packet to the group (at least its fixed header)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	MC_OP_LEAVE = 0,
	MC_OP_JOIN = 1,
	MC_ENTRY_LEN = 17,
	MC_QUERY_LEN = 40 + 8 + 28, /* IPv6, hop-by-hop with router alert, MLDv2 query */
	MC_MAX_RESP_MS = 32767,     /* the largest Maximum Response Code written as is */
	MC_TREE_ID_LEN = 8,         /* a site's sender id (OVW_ID_LEN) */
	MC_TREE_MAX_IDS = 255,
};

/* True if addr is a multicast group forwarded between sites: scope (RFC 4291 §2.7) larger
 * than site-local (5) and not reserved (0xf), e.g. ff08:: organization, ff0e:: global. Groups
 * of link-local or site-local scope (ff02::, ff05::) stay on the site. */
bool mc_crosses(const uint8_t addr[16]);

/* The Ethernet address an IPv6 multicast packet to group goes to (RFC 2464 §7). */
void mc_mac(const uint8_t group[16], uint8_t mac[6]);

/* Called for each group an MLD message speaks of: joined true (a listener is there) or false
 * (a listener left: the querier asks whether any is left). */
typedef void (*mc_group_fn)(void *arg, const uint8_t group[16], bool joined);

/* Parses an IPv6 packet (len bytes, through the project's cursor) as an MLD report or done:
 * an optional hop-by-hop header, then ICMPv6 with a valid checksum, a link-local or
 * unspecified source, hop limit 1. fn is called for every record of a multicast group
 * (after the whole message checked out: on an error it is never called). Returns the number
 * of calls, 0 for a message that is not a report or done (a query, another ICMPv6 type),
 * -EBADMSG (malformed, bad checksum) or -EPERM (not link-local, hop limit not 1). */
int mc_mld_parse(const uint8_t *pkt, size_t len, mc_group_fn fn, void *arg);

/* Writes an MLDv2 query from link-local src to ff02::1 (General Query, group NULL) or to
 * group (Multicast-Address-Specific) into out (MC_QUERY_LEN bytes): hop limit 1, router
 * alert, Maximum Response Delay max_resp_ms (at most MC_MAX_RESP_MS), robustness qrv (1..7),
 * query interval qqi_s (1..31744, encoded as RFC 3810 §5.1.9 says). Returns MC_QUERY_LEN. */
size_t mc_query_build(uint8_t out[static MC_QUERY_LEN], const uint8_t src[static 16],
                      const uint8_t *group, unsigned max_resp_ms, unsigned qrv, unsigned qqi_s);

/* Parses an announcement body (n bytes): every entry checked first (op, a group that crosses
 * sites, n a multiple of MC_ENTRY_LEN and not 0), then fn called for each. Returns the number
 * of entries or -EBADMSG. */
int mc_members_parse(const uint8_t *b, size_t n, mc_group_fn fn, void *arg);

/* Appends one entry to an announcement being written (at buf + *len, room up to cap).
 * Returns false (nothing written) if there is no room for it. */
bool mc_members_add(uint8_t *buf, size_t cap, size_t *len, const uint8_t group[static 16],
                    bool joined);

/* Parses a distribution tree packet's body (n bytes, through the cursor): *ids points at
 * *nids ids of MC_TREE_ID_LEN bytes, *pkt at the packet (*pktlen bytes, at least 40; not
 * checked further). Returns 0 or -EBADMSG (truncated, no packet). */
int mc_tree_parse(const uint8_t *b, size_t n, const uint8_t **ids, size_t *nids,
                  const uint8_t **pkt, size_t *pktlen);

/* Writes a distribution tree packet's body into out (cap bytes): nids ids (at most
 * MC_TREE_MAX_IDS, MC_TREE_ID_LEN bytes each, one after the other) and the packet (len
 * bytes). Returns its length, or 0 if it does not fit or nids is too large. */
size_t mc_tree_build(uint8_t *out, size_t cap, const uint8_t *ids, size_t nids, const uint8_t *pkt,
                     size_t len);

/* How a list of n sites is cut into parts (1..n) subtrees: part k (0..parts-1) is
 * [*start, *end), the sizes differing by at most one, in list order. */
void mc_tree_part(size_t n, size_t parts, size_t k, size_t *start, size_t *end);
