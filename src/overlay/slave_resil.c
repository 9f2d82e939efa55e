/*
 * The resiliency slave: RON-style path probing between gateways (Andersen et al., "Resilient
 * Overlay Networks", SOSP 2001), with one intermediate gateway when a direct path dies.
 *
 * A peer is judged only while the site uses it (it sent the peer packets in the last
 * RS_IN_USE_MS): then its authenticated packets, whatever their kind, show that the path from
 * it works, and when it has been silent for half of dead-ms the slave probes it (OVW_PROBE,
 * echoed as OVW_PROBE_ACK). Silent for dead-ms with two probes unanswered (or for twice dead-ms
 * when the probe budget ran out), the path is down: the gateway sends the site's packets for
 * that peer through the live peer of lowest probe RTT (OVW_RELAY; the relay forwards them as
 * OVW_RELAYED), and the slave probes the direct path every RS_DOWN_PROBE_MS until a probe comes
 * back, then sends directly again. A probe's 8 bytes are the prober's clock in us (the echo
 * gives the RTT) and a flag saying the prober has the receiver's path down and hears nothing
 * from it: a path that fails one way only is then given up by both ends. Idle peers are probed
 * every RS_IDLE_PROBE_MS for their RTT (every second until it is first measured).
 *
 * A down path comes back when a probe of ours is echoed, or when the peer probes us without the
 * flag while we have it down (its probe came, and it hears us). A path that was degraded when
 * it went down (a lossy path is silent for dead-ms now and then) comes back degraded, still
 * relayed: only its probe window sends it direct again.
 *
 * Probes and echoes a gateway sends to a peer are paid from two token buckets of that peer,
 * each a quarter of the configured budget (so at most budget bits/s for the pair, each packet
 * counted at its IPv4 size, RS_PROBE_WIRE bytes), RS_BURST_PROBES of burst each: echoes have
 * their own bucket so that a peer's probes, within its budget, are always answered. Data and
 * the gateway's own keepalives are not probes and are not counted.
 * Every probe but the silence probes leaves RS_SILENCE_PROBES in the probe bucket: the two a
 * peer in use that falls silent needs to be given up after dead-ms. (Without it, the probes
 * that follow a failure, a down path's every 250 ms and the ones on going down and coming
 * back, spent the bucket to its last token, and a peer that died again seconds later was given
 * up only after twice dead-ms: tests/regress/test_overlay_resil_second_failure_in_dead_ms.c.)
 * A down path is then probed on as the bucket refills; it also comes back on the peer's own
 * unflagged probe (a restarted gateway probes its peers at once). A peer in use that is quiet
 * now and then (it answers in bursts) still spends the reserve on its silence probes, one per
 * quiet spell: when the budget then holds the second silence probe back, one unanswered for
 * dead-ms / 5 gives the path up; with none sent at all, twice dead-ms of silence does.
 *
 * A path that still answers but loses or delays a share of its packets is degraded: while the
 * site uses a peer, the slave also probes it whenever the probe bucket holds more than
 * RS_RESERVE_PROBES (so silence can still be probed at once), and keeps the outcome of the
 * last probes (pathstat.h: the newest PS_MIN resolved are judged): lost (no echo within RS_LOST_MS)
 * or late (an RTT more than late-ms above the window's lowest; probes to an idle peer are not
 * counted, and a peer coming into use starts afresh). With PS_MIN of them resolved and degraded-pct
 * percent or more lost or late, the peer's packets go through the live, undegraded peer of
 * lowest RTT; the direct path is probed on, and once fewer than half of degraded-pct percent
 * of the window are bad the packets go direct again (the gap between the two shares keeps a
 * path near the threshold from flapping). With no such relay the packets stay direct. How fast
 * a share is seen depends on the budget: at the default 1000 bit/s a gateway sends a peer one
 * probe per 2.56 s once its burst is spent (about 40 s for a window), at 16000 bit/s six a
 * second.
 *
 * Loss reports see a lossy path within a second at any budget, from the data itself: each
 * gateway counts, per peer, the packets that peer sent it directly (their counters say how
 * many were sent, the replay window which arrived). Once RS_LOSS_MIN were sent since its last
 * count, if degraded-pct percent or more of them were lost it tells the sender (OVW_LOSS,
 * RS_REPORT_COPIES times RS_REPORT_MS apart, as the report crosses the lossy path too; paid
 * from the echo bucket, whose burst is full on a path that was quiet); else it counts afresh
 * (also after RS_LOSS_SPAN_MS with fewer, and after a silence of dead-ms / 2: the packets
 * sent during a cut show at its end, and are no loss of the path then). A sender told so of a
 * peer it uses relays it at once, as for a bad probe window, with that window emptied: only
 * probes sent since can send it direct again. Each direction is judged by its own losses.
 *
 * A stall of the slave's own (the daemon not scheduled, its ticks more than RS_STALL_MS apart,
 * as on a loaded host) says nothing of the paths: their packets waited in the socket, unread.
 * Nothing is judged for a tick after it (the queue is read first); a stall of dead-ms / 2 or
 * more also starts the silence afresh (the peers may have had nothing to send us, as we sent
 * nothing); the probes in flight across it are forgotten (their loss or RTT is ours); and a
 * peer's flag saying it hears nothing from us is not taken for two down-probe periods (it was
 * true while we slept, and the peer hears us again once our packets go out). The peers' flags
 * are not taken for dead-ms after start either (a restart's stale flags).
 *
 * A relay that does not hear the destination lately answers our relayed packets with
 * OVW_RELAY_LOST instead of forwarding them (gateway.c): it is then no relay to that peer
 * (gw_relay_reaches) and the next usable one is taken, or none.
 *
 * Link-state (RON's routing exchange): every RS_LS_MS, and RS_LS_CHANGED_MS after the set of
 * peers it lists changed, the slave tells each live peer (OVW_LINKSTATE, wire.h) the RTT (the
 * lowest of 30 s) and probe loss of its paths to its other live peers whose paths are neither
 * down nor relayed: a complete list, or parts of OVW_LS_MAX when there are more. A report is
 * paid from that peer's probe bucket (its bytes at IPv4 size) keeping the two silence probes,
 * before the quality probes, so probes and reports together stay within the budget. Reports
 * are kept RS_LS_TTL_MS per reporter (RS_LS_KEEP entries; a complete one replaces the last).
 * The relay for a peer is the usable one of lowest (our RTT to it + its reported RTT to the
 * peer) among those listing the peer without loss of degraded-pct; a relay whose fresh complete
 * list leaves the peer out is never taken; with no listing relay at all, the old rule (the
 * usable relay of lowest smoothed RTT, reports or not) stands.
 *
 * A path in use whose RTT grows as a whole (no share late, so not degraded) is "slow": when
 * RS_SLOW_VOTES answered probes in a row, over RS_SLOW_HOLD_MS at least, find it above the
 * best relayed estimate (that sum) by RS_SLOW_PCT percent and RS_SLOW_US, its packets go
 * through that relay; as many finding it within half of both margins send them direct again
 * (between the two nothing moves). A relay that carries a peer in use is in use itself (its
 * silence is judged), and a peer relayed for its RTT or losses goes direct when its relay is
 * no longer usable, in use or not.
 */
#include "slave_resil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "peak/util.h"
#include "gateway.h"
#include "pathstat.h"

enum {
	RS_TICK_MS = 50,
	RS_STALL_MS = 4 * RS_TICK_MS, /* ticks this far apart: the slave itself was stalled */
	RS_IN_USE_MS = 3000,          /* a peer sent packets this recently is judged */
	RS_DOWN_PROBE_MS = 250,       /* a down path is probed this often (tokens allowing) */
	RS_IDLE_PROBE_MS = 10000,     /* an idle peer, for its RTT */
	RS_PROBE_WIRE = 20 + 8 + OVW_HDR_LEN + OVW_PROBE_LEN + OVW_TAG_LEN, /* 80 bytes */
	RS_BURST_PROBES = 8,
	RS_RESERVE_PROBES = 5,     /* kept in the bucket by the quality probes, for silence */
	RS_SILENCE_PROBES = 2,     /* kept by every probe but the silence probes (the two a
	                            * silent peer needs to be given up after dead-ms) */
	RS_USE_PROBE_MS = 100,     /* quality probes of a peer in use at most this often */
	RS_LOST_MS = 1000,         /* a probe not echoed within this is lost */
	RS_MIN_RTT_WIN_MS = 30000, /* the path RTT: the lowest sample this recent (3 idle probes) */
	RS_LOSS_MIN = 50,          /* packets sent to us counted before a loss verdict */
	RS_LOSS_SPAN_MS = 2000,    /* fewer in this long: counted afresh */
	RS_REPORT_MS = 100,        /* loss reports to a peer at most this often */
	RS_REPORT_COPIES = 3,      /* a bad count is reported this many times (the path loses) */
	RS_MAX_PEERS = OVC_MAX_PEERS + 256, /* configured and learned (GW_MAX_LEARNED) */
	RS_LS_MS = 10000,                   /* link-state reports to each live peer this often */
	RS_LS_CHANGED_MS = 1000, /* sooner when the peers we hear changed, at most this often */
	RS_LS_TTL_MS = 35000,    /* a peer's report this old is forgotten (3 periods and more) */
	RS_LS_KEEP = 32,         /* entries kept per reporter (a big mesh reports in parts) */
	RS_LS_WIRE = 20 + 8 + OVW_HDR_LEN + 2 + OVW_TAG_LEN, /* a report's bytes but its entries */
	RS_SLOW_PCT = 25,       /* the direct RTT above the relayed estimate by this share */
	RS_SLOW_US = 5000,      /* and this much is clearly slower; half of both is back */
	RS_SLOW_VOTES = 3,      /* probes in a row saying so */
	RS_SLOW_HOLD_MS = 1000, /* over this long at least, to move (either way) */
};

/* what a peer reported of its path to another (its link-state, OVW_LINKSTATE) */
struct rs_ls {
	uint32_t dest; /* the other peer's cookie */
	uint32_t rtt_us;
	uint8_t loss_pct;
	uint64_t at_ms; /* 0: an empty slot */
};

#define RS_FLAG_DOWN (1ULL << 63)

struct rs_peer {
	bool down;
	bool degraded;      /* not down, but relayed for its losses or delays (p->relay) */
	bool down_degraded; /* down, and degraded when it went down: comes back degraded */
	bool no_relay_said; /* degraded with no relay: said once */
	uint32_t relay;     /* while down or degraded: the relay in use, or GW_DIRECT (none live) */
	uint64_t out_seen;  /* gw_peer_info's out_packets at the last tick */
	uint64_t in_use_until, last_probe_ms, down_at_ms, last_ack_ms, last_heard_ms;
	unsigned unanswered; /* probes sent since the peer was last heard */
	bool silence_held;   /* the last silence probe was held by the budget */
	bool peer_has_us_down;
	uint64_t up_probe_ms; /* when the peer last probed us without the flag */
	double tokens[2];     /* bytes: probes, echoes */
	uint64_t tokens_ms[2];
	uint32_t srtt_us;         /* 0: not measured */
	struct ps_minrtt min_rtt; /* the path's RTT, for anycast's nearest member */
	struct pathstat ps;       /* the last probes' outcomes */
	/* the peer's packets to us since the count began (gw_peer_info's rx_*): epoch, taken,
	 * counter top, when; our last report to it; its last report to us (lost, sent, when) */
	uint64_t lc_epoch, lc_taken, lc_top, lc_ms, lc_heard_ms, report_tx_ms;
	uint32_t report_got, report_sent; /* its last report to us */
	uint8_t body_tx[OVW_PROBE_LEN];   /* our last report to it */
	unsigned copies_left;             /* of it, still to send */
	uint64_t report_rx_ms;
	/* link-state: its reports to us (RS_LS_KEEP, allocated at the first), when the last
	 * came and the last complete one; our last report to it, what it listed, where the next
	 * part starts (more live peers than a report holds) */
	struct rs_ls *ls;
	uint64_t ls_rx_ms, ls_complete_ms, ls_tx_ms, ls_sig;
	uint32_t ls_cursor;
	size_t ls_wanted; /* bytes of a report due to it, not paid yet (quality probes wait) */
	/* the RTT verdict: relayed because the relay's path is clearly faster (with degraded
	 * set), and the probes in a row that said the other state is better, since when */
	bool slow;
	unsigned slow_votes;
	uint64_t slow_since_ms;
};

struct rs {
	struct ov_slave slave;
	struct ov_slave *gw;
	struct ov_master *m;
	struct ov_resil_conf conf;
	unsigned keepalive_s;  /* a peer not heard within 3 of these is no relay */
	struct rs_peer *peers; /* RS_MAX_PEERS */
	struct rs_listed {     /* RS_MAX_PEERS: the peers our link-state lists, this tick */
		uint32_t k;
		struct ovw_ls_entry e;
	} * listed;
	size_t nlisted;
	int tfd;
	uint64_t (*now_ns)(void); /* the clock: peak_mono_ns, or a test's */
	uint64_t listen_ms;       /* attached, or the end of our last long stall (own_stall) */
	uint64_t last_tick_ms;    /* the last tick, or the end of a stall (own_stall) */
	uint64_t judge_from_ms;   /* after a stall: what it queued is read first */
	uint64_t flags_from_ms;   /* peers' "we hear nothing from you" flags are taken from then */
	/* counters: the loop writes, the metrics thread reads (__atomic) */
	uint64_t downs, ups, probes, acks, limited, no_relay, relayed_now, degrades, recovers,
	    stalls, reports_tx, reports_rx, ls_tx, ls_tx_bytes, ls_rx, ls_bad, slows, slow_backs;
};

#define CNT_ADD(p, f, v) __atomic_fetch_add(&(p)->f, (v), __ATOMIC_RELAXED)
#define CNT_GET(p, f) __atomic_load_n(&(p)->f, __ATOMIC_RELAXED)

enum { B_PROBE = 0, B_ECHO = 1 };

/* Refills p's bucket k up to now. */
static void refill(struct rs *r, struct rs_peer *p, int k, uint64_t now)
{
	double rate = (double)r->conf.budget_bps / 4 / 8 / 1000; /* bytes per ms */
	double cap = (double)RS_BURST_PROBES * RS_PROBE_WIRE;
	if (now > p->tokens_ms[k])
		p->tokens[k] += (double)(now - p->tokens_ms[k]) * rate;
	p->tokens_ms[k] = now;
	if (p->tokens[k] > cap)
		p->tokens[k] = cap;
}

/* Takes one packet's worth of p's bucket k if it has it and keep probes' worth besides. */
static bool take_token(struct rs *r, struct rs_peer *p, int k, unsigned keep, uint64_t now)
{
	refill(r, p, k, now);
	if (p->tokens[k] < (double)(keep + 1) * RS_PROBE_WIRE) {
		CNT_ADD(r, limited, 1);
		return false;
	}
	p->tokens[k] -= RS_PROBE_WIRE;
	return true;
}

/* Takes bytes from p's probe bucket if it holds keep probes' worth besides (not counted as
 * limited when it does not: a link-state report waits for spare tokens). */
static bool take_spare(struct rs *r, struct rs_peer *p, size_t bytes, unsigned keep, uint64_t now)
{
	refill(r, p, B_PROBE, now);
	if (p->tokens[B_PROBE] < (double)keep * RS_PROBE_WIRE + (double)bytes)
		return false;
	p->tokens[B_PROBE] -= (double)bytes;
	return true;
}

static void put_u64(uint8_t b[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_u64(const uint8_t b[8])
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

/* Probes peer i if its probe bucket holds keep probes' worth besides (RS_SILENCE_PROBES for all
 * but the silence probes, which spend them). Returns false if the budget held it back. */
static bool probe(struct rs *r, uint32_t i, uint64_t now, unsigned keep)
{
	struct rs_peer *p = &r->peers[i];
	uint8_t body[OVW_PROBE_LEN];
	if (!take_token(r, p, B_PROBE, keep, now))
		return false;
	/* the flag: we have the path down and still hear nothing from the peer directly (once
	 * its packets arrive again the flag goes, even before a round trip brings the path up:
	 * a flag kept until then made a peer that was already up give the path up again) */
	bool deaf = p->down && now - p->last_heard_ms >= r->conf.dead_ms;
	uint64_t sent_us = (r->now_ns() / 1000) & ~RS_FLAG_DOWN;
	put_u64(body, sent_us | (deaf ? RS_FLAG_DOWN : 0));
	p->last_probe_ms = now;
	if (!gw_probe_send(r->gw, i, OVW_PROBE, body)) {
		p->unanswered++;
		/* the window judges a path in use (or relayed): an idle peer's probes may go to a
		 * gateway not started yet, and would count as losses of the path */
		if (now < p->in_use_until || p->down || p->degraded)
			ps_sent(&p->ps, sent_us);
		CNT_ADD(r, probes, 1);
	}
	return true;
}

/* Called at each tick and each probe packet: if the last tick is more than RS_STALL_MS ago,
 * we were stalled (see the top comment): nothing is judged for a tick (the packets the stall
 * queued are read first), silence counts from now if it was dead-ms / 2 or longer, the probes
 * in flight are forgotten and the peers' "we hear nothing from you" flags dropped and not
 * taken for two down-probe periods (those sent while we slept arrive first). */
static void own_stall(struct rs *r, uint64_t now)
{
	if (!r->last_tick_ms || now <= r->last_tick_ms + RS_STALL_MS) {
		if (!r->last_tick_ms)
			r->last_tick_ms = now;
		return;
	}
	uint64_t gap = now - r->last_tick_ms;
	log_msg(LOG_INFO, "overlay: resiliency: stalled for %llu ms: the paths are judged afresh",
	        (unsigned long long)gap);
	CNT_ADD(r, stalls, 1);
	if (gap >= r->conf.dead_ms / 2)
		r->listen_ms = now; /* long: the peers may have had nothing to send */
	r->judge_from_ms = now + RS_TICK_MS;
	r->flags_from_ms = now + 2 * RS_DOWN_PROBE_MS;
	r->last_tick_ms = now;
	for (size_t i = 0; i < RS_MAX_PEERS; i++) {
		ps_forget_pending(&r->peers[i].ps);
		r->peers[i].peer_has_us_down = false;
	}
}

/* True if peer j can relay to peer i: not down or degraded, heard lately (gw_peer_heard_within;
 * a peer the site does not send to is never judged down: a dead one is only silent, and was
 * chosen as a relay by its RTT from before it died), and it did not tell us lately that it
 * does not hear i (gw_relay_reaches: our packets through it would be lost). */
static bool relay_usable(struct rs *r, uint32_t j, uint32_t i, size_t n, uint64_t now)
{
	struct gw_peer_info in;
	if (j >= n || r->peers[j].down || r->peers[j].degraded || gw_peer_info(r->gw, j, &in) ||
	    !in.has_ep || !gw_relay_reaches(r->gw, j, i, now))
		return false;
	return gw_peer_heard_within(in.last_rx_ms, now, r->keepalive_s);
}

/* Our RTT to peer q in us for the link-state sums: its lowest of the last 30 s, else the
 * smoothed one (0: not measured). The same kind of figure the peers report. */
static uint32_t rtt_to(const struct rs_peer *q)
{
	return q->min_rtt.us ? q->min_rtt.us : q->srtt_us;
}

/* Peer j's fresh report of its path to peer i, or NULL (not listed lately). */
static const struct rs_ls *ls_of(const struct rs *r, uint32_t j, uint32_t i, uint64_t now)
{
	const struct rs_peer *q = &r->peers[j];
	for (unsigned k = 0; q->ls && k < RS_LS_KEEP; k++) {
		const struct rs_ls *e = &q->ls[k];
		if (e->at_ms && e->dest == i && (e->at_ms >= now || now - e->at_ms < RS_LS_TTL_MS))
			return e;
	}
	return NULL;
}

/* The relay for peer i (relay_usable, not i), RON's way: among the relays whose link-state
 * lists i (not lossy: under degraded-pct), the one of lowest (our RTT to it + its RTT to i);
 * *est_us is that sum (0: no such relay). With none, a relay that did not report lately (a
 * report in parts, an older version) of lowest smoothed RTT; a relay whose fresh complete
 * report leaves i out does not hear it and is never taken. GW_DIRECT: none. */
static uint32_t pick_relay_est(struct rs *r, uint32_t i, size_t n, uint64_t *est_us)
{
	uint32_t best = GW_DIRECT, best_ls = GW_DIRECT;
	uint64_t best_rtt = UINT64_MAX, best_cost = UINT64_MAX;
	uint64_t now = r->now_ns() / 1000000;
	for (uint32_t j = 0; j < n; j++) {
		struct rs_peer *q = &r->peers[j];
		if (j == i || !relay_usable(r, j, i, n, now))
			continue;
		const struct rs_ls *e = ls_of(r, j, i, now);
		if (e) {
			if (r->conf.degraded_pct && e->loss_pct != OVW_LS_LOSS_UNKNOWN &&
			    e->loss_pct >= r->conf.degraded_pct)
				continue;
			uint64_t cost = (uint64_t)(rtt_to(q) ? rtt_to(q) : UINT32_MAX) + e->rtt_us;
			if (cost < best_cost) {
				best_ls = j;
				best_cost = cost;
			}
			continue;
		}
		if (q->ls_complete_ms &&
		    (q->ls_complete_ms >= now || now - q->ls_complete_ms < RS_LS_TTL_MS))
			continue; /* it told us all it hears, and i is not among them */
		uint64_t rtt = q->srtt_us ? q->srtt_us : UINT32_MAX; /* unmeasured: last */
		if (rtt < best_rtt) {
			best = j;
			best_rtt = rtt;
		}
	}
	if (est_us)
		*est_us = best_ls != GW_DIRECT && best_cost < UINT32_MAX ? best_cost : 0;
	return best_ls != GW_DIRECT ? best_ls : best;
}

static uint32_t pick_relay(struct rs *r, uint32_t i, size_t n)
{
	return pick_relay_est(r, i, n, NULL);
}

static void set_relay(struct rs *r, uint32_t i, size_t n, const char *name)
{
	struct rs_peer *p = &r->peers[i];
	uint32_t relay = pick_relay(r, i, n);
	if (relay == p->relay)
		return;
	struct gw_peer_info rin;
	if (relay == GW_DIRECT || gw_peer_info(r->gw, relay, &rin)) {
		CNT_ADD(r, no_relay, 1);
		log_msg(LOG_WARNING,
		        "overlay: resiliency: path to %s is down and no peer can relay", name);
	} else {
		log_msg(LOG_INFO, "overlay: resiliency: path to %s is down: relaying through %s",
		        name, rin.name);
	}
	p->relay = relay;
	gw_set_via(r->gw, i, relay);
}

static void go_down(struct rs *r, uint32_t i, size_t n, const char *name, uint64_t now)
{
	struct rs_peer *p = &r->peers[i];
	if (p->degraded) /* down now: counted as relayed already */
		CNT_ADD(r, relayed_now, (uint64_t)-1);
	p->down_degraded = p->degraded && !p->slow; /* a slow path comes back direct */
	p->degraded = p->slow = false;
	p->slow_votes = 0;
	p->down = true;
	p->down_at_ms = now;
	p->relay = UINT32_MAX - 1; /* none chosen yet */
	CNT_ADD(r, downs, 1);
	CNT_ADD(r, relayed_now, 1);
	set_relay(r, i, n, name);
	probe(r, i, now, RS_SILENCE_PROBES); /* tells the peer at once, if the path works its way */
}

static bool probe(struct rs *r, uint32_t i, uint64_t now, unsigned keep);

static void go_up(struct rs *r, uint32_t i, const char *name, uint64_t now)
{
	struct rs_peer *p = &r->peers[i];
	p->down = false;
	p->unanswered = 0;
	p->silence_held = false;
	p->peer_has_us_down = false;
	CNT_ADD(r, ups, 1);
	if (p->down_degraded) {
		/* a lossy path falls silent for dead-ms now and then: it answers again, still
		 * lossy, and stays relayed; its window (the probes lost while down included)
		 * says when it is good again */
		p->down_degraded = false;
		p->degraded = true;
		probe(r, i, now, RS_SILENCE_PROBES);
		log_msg(LOG_INFO, "overlay: resiliency: path to %s answers again: still degraded",
		        name);
		return;
	}
	p->relay = GW_DIRECT;
	ps_reset(&p->ps); /* the probes lost while down say nothing about the path now */
	gw_set_via(r->gw, i, GW_DIRECT);
	probe(r, i, now, RS_SILENCE_PROBES); /* unflagged: tells the peer, if it has us down */
	CNT_ADD(r, relayed_now, (uint64_t)-1);
	log_msg(LOG_INFO, "overlay: resiliency: path to %s is back: direct", name);
}

/* Peer i, relayed for its RTT (slow), goes direct again (why: for the log). */
static void slow_end(struct rs *r, uint32_t i, const char *name, const char *why)
{
	struct rs_peer *p = &r->peers[i];
	p->slow = p->degraded = false;
	p->slow_votes = 0;
	p->relay = GW_DIRECT;
	gw_set_via(r->gw, i, GW_DIRECT);
	CNT_ADD(r, relayed_now, (uint64_t)-1);
	log_msg(LOG_INFO, "overlay: resiliency: path to %s: %s: direct", name, why);
}

/* The RTT verdict on peer i (in use, not down, not relayed for its losses) from one answered
 * probe of rtt us: RS_SLOW_VOTES probes in a row over RS_SLOW_HOLD_MS at least saying the
 * best relayed estimate (pick_relay_est) is clearly faster (the direct RTT above it by
 * RS_SLOW_PCT percent and RS_SLOW_US) relay it; as many saying the direct path is within
 * half of both margins send it direct again. Between the two thresholds nothing moves. */
static void judge_rtt(struct rs *r, uint32_t i, uint32_t rtt, uint64_t now)
{
	struct rs_peer *p = &r->peers[i];
	if (!r->conf.degraded_pct || p->down || (p->degraded && !p->slow) ||
	    now >= p->in_use_until || now < r->judge_from_ms)
		return;
	size_t n = gw_peer_count(r->gw);
	if (n > RS_MAX_PEERS)
		n = RS_MAX_PEERS;
	uint64_t est;
	uint32_t j = pick_relay_est(r, i, n, &est);
	bool other = !p->slow ? est && rtt > est + est * RS_SLOW_PCT / 100 + RS_SLOW_US
	                      : !est || rtt <= est + est * RS_SLOW_PCT / 200 + RS_SLOW_US / 2;
	if (!other) {
		p->slow_votes = 0;
		return;
	}
	if (!p->slow_votes++)
		p->slow_since_ms = now;
	if (p->slow_votes < RS_SLOW_VOTES || now - p->slow_since_ms < RS_SLOW_HOLD_MS)
		return;
	struct gw_peer_info in, rin;
	if (gw_peer_info(r->gw, i, &in))
		return;
	if (p->slow) {
		char why[96];
		snprintf(why, sizeof(why), "RTT %u us, about the relayed path's %llu us again", rtt,
		         (unsigned long long)est);
		slow_end(r, i, in.name, why);
		CNT_ADD(r, slow_backs, 1);
		return;
	}
	if (gw_peer_info(r->gw, j, &rin))
		return;
	p->slow = p->degraded = true;
	p->slow_votes = 0;
	p->no_relay_said = false;
	p->relay = j;
	gw_set_via(r->gw, i, j);
	CNT_ADD(r, slows, 1);
	CNT_ADD(r, relayed_now, 1);
	log_msg(LOG_INFO,
	        "overlay: resiliency: path to %s is slow (RTT %u us, through %s about %llu us): "
	        "relaying through %s",
	        in.name, rtt, rin.name, (unsigned long long)est, rin.name);
}

/* The degraded verdict on peer i (in use, not down) from its last probes: relays it when a
 * share of them was lost or late, sends direct again when few were. */
static void judge(struct rs *r, uint32_t i, size_t n, const char *name, uint64_t now)
{
	struct rs_peer *p = &r->peers[i];
	struct ps_summary sm;
	ps_summary(&p->ps, r->conf.late_ms * 1000, &sm);
	if (!p->degraded) {
		/* its report of our packets, if fresh */
		bool reported = p->report_rx_ms && p->report_rx_ms + RS_LOST_MS >= now;
		p->report_rx_ms = 0;
		if (reported) {
			sm.lost = p->report_sent - p->report_got; /* for the log */
			sm.resolved = p->report_sent;
			sm.late = 0;
		} else if (!ps_bad_share_at_least(&sm, r->conf.degraded_pct)) {
			return;
		}
		uint32_t relay = pick_relay(r, i, n);
		struct gw_peer_info rin;
		if (relay == GW_DIRECT || gw_peer_info(r->gw, relay, &rin)) {
			if (!p->no_relay_said) {
				CNT_ADD(r, no_relay, 1);
				log_msg(
				    LOG_WARNING,
				    "overlay: resiliency: path to %s is degraded (%u of %u probes "
				    "lost, %u late) and no peer can relay",
				    name, sm.lost, sm.resolved, sm.late);
			}
			p->no_relay_said = true;
			return;
		}
		p->degraded = true;
		p->no_relay_said = false;
		p->relay = relay;
		gw_set_via(r->gw, i, relay);
		CNT_ADD(r, degrades, 1);
		CNT_ADD(r, relayed_now, 1);
		if (reported) /* the window may hold good probes from before the losses */
			ps_reset(&p->ps);
		log_msg(LOG_INFO,
		        "overlay: resiliency: path to %s is degraded (%u of %u %s lost, %u late): "
		        "relaying through %s",
		        name, sm.lost, sm.resolved,
		        reported ? "packets to it, it reports," : "probes", sm.late, rin.name);
		return;
	}
	bool relay_bad = !relay_usable(r, p->relay, i, n, now);
	if (p->slow) { /* relayed for its RTT: judge_rtt sends it back, or its relay's end */
		if (relay_bad)
			slow_end(r, i, name, "its relay is not usable");
		return;
	}
	if ((sm.resolved >= PS_MIN &&
	     !ps_bad_share_at_least(&sm, (r->conf.degraded_pct + 1) / 2)) ||
	    relay_bad) {
		/* good again, or its relay went bad: direct (judged afresh from here) */
		p->degraded = false;
		p->relay = GW_DIRECT;
		gw_set_via(r->gw, i, GW_DIRECT);
		CNT_ADD(r, relayed_now, (uint64_t)-1);
		if (!relay_bad)
			CNT_ADD(r, recovers, 1);
		log_msg(LOG_INFO, "overlay: resiliency: path to %s is %s: direct", name,
		        relay_bad ? "degraded and its relay is not usable" : "good again");
	}
}

static void put_u32(uint8_t b[4], uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (24 - 8 * i));
}

static uint32_t get_u32(const uint8_t b[4])
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Counts peer i's packets to us since the last count (in: its gw_peer_info) and tells it
 * (OVW_LOSS) when degraded-pct percent or more of RS_LOSS_MIN or more were lost. */
static void count_loss(struct rs *r, uint32_t i, const struct gw_peer_info *in, uint64_t now)
{
	struct rs_peer *p = &r->peers[i];
	/* a silence of dead-ms / 2 in the count: the path was cut (or the peer sent nothing
	 * directly); the packets sent meanwhile show at the first one after it, and are not
	 * this path's losses now */
	bool silence = in->last_rx_ms > p->lc_heard_ms + r->conf.dead_ms / 2;
	p->lc_heard_ms = in->last_rx_ms;
	if (in->rx_epoch != p->lc_epoch || in->rx_top < p->lc_top || in->rx_taken < p->lc_taken ||
	    now - p->lc_ms >= RS_LOSS_SPAN_MS || silence) {
		p->lc_epoch = in->rx_epoch; /* a new epoch (counters from 0), or too few: afresh */
		p->lc_taken = in->rx_taken;
		p->lc_top = in->rx_top;
		p->lc_ms = now;
		return;
	}
	bool due = now - p->report_tx_ms >= RS_REPORT_MS;
	if (p->copies_left && due && take_token(r, p, B_ECHO, 0, now)) {
		p->copies_left--; /* a copy of the last report: it crosses the lossy path too */
		p->report_tx_ms = now;
		if (!gw_probe_send(r->gw, i, OVW_LOSS, p->body_tx))
			CNT_ADD(r, reports_tx, 1);
		due = false;
	}
	uint64_t sent = in->rx_top - p->lc_top, taken = in->rx_taken - p->lc_taken;
	if (sent < RS_LOSS_MIN)
		return;
	uint64_t lost = taken < sent ? sent - taken : 0; /* (reordered across the count: none) */
	if (lost * 100 >= (uint64_t)r->conf.degraded_pct * sent) {
		if (!due)
			return; /* counted on till the next report is due */
		put_u32(p->body_tx,
		        (uint32_t)(sent - lost > UINT32_MAX ? UINT32_MAX : sent - lost));
		put_u32(p->body_tx + 4, (uint32_t)(sent > UINT32_MAX ? UINT32_MAX : sent));
		p->copies_left = RS_REPORT_COPIES;
		if (take_token(r, p, B_ECHO, 0, now)) {
			p->copies_left--;
			p->report_tx_ms = now;
			if (!gw_probe_send(r->gw, i, OVW_LOSS, p->body_tx))
				CNT_ADD(r, reports_tx, 1);
		}
	}
	p->lc_taken = in->rx_taken;
	p->lc_top = in->rx_top;
	p->lc_ms = now;
}

/* The peers our link-state lists now into r->listed: each with an endpoint, heard lately, its
 * path neither down nor relayed, its RTT measured; with the share of our last probes to it that
 * were lost. Returns an order-free digest of the set (a change is reported sooner). */
static uint64_t ls_collect(struct rs *r, size_t n, uint64_t now)
{
	uint64_t sig = 0;
	r->nlisted = 0;
	for (uint32_t k = 0; k < n; k++) {
		struct rs_peer *q = &r->peers[k];
		struct gw_peer_info in;
		if (q->down || q->degraded || !rtt_to(q) || gw_peer_info(r->gw, k, &in) ||
		    !in.has_ep || !gw_peer_heard_within(in.last_rx_ms, now, r->keepalive_s))
			continue;
		struct ps_summary sm;
		ps_summary(&q->ps, r->conf.late_ms * 1000, &sm);
		struct rs_listed *l = &r->listed[r->nlisted++];
		l->k = k;
		memcpy(l->e.id, in.id, OVW_ID_LEN);
		l->e.rtt_us = rtt_to(q);
		l->e.loss_pct = sm.resolved ? (uint8_t)(sm.lost * 100 / sm.resolved)
		                            : (uint8_t)OVW_LS_LOSS_UNKNOWN;
		sig += (k + 1) * 0x9E3779B97F4A7C15ULL;
	}
	return sig;
}

/* Sends peer j (live, not down) our link-state (r->listed but j) when due: RS_LS_MS after the
 * last, or RS_LS_CHANGED_MS when the set changed; paid from j's probe bucket, keeping the two
 * silence probes (a due report goes before the quality probes, which wait for it), in parts
 * of OVW_LS_MAX when more are listed. */
static void ls_send(struct rs *r, uint32_t j, uint64_t sig, uint64_t now)
{
	struct rs_peer *q = &r->peers[j];
	size_t live = r->nlisted;
	for (size_t m = 0; m < r->nlisted; m++)
		if (r->listed[m].k == j) {
			sig -= (j + 1) * 0x9E3779B97F4A7C15ULL;
			live--;
		}
	bool due = !q->ls_tx_ms || now - q->ls_tx_ms >= RS_LS_MS ||
	           (sig != q->ls_sig && now - q->ls_tx_ms >= RS_LS_CHANGED_MS);
	q->ls_wanted = 0;
	if (!due)
		return;
	struct ovw_ls_entry e[OVW_LS_MAX];
	size_t ne = 0, m0 = 0;
	while (m0 < r->nlisted && r->listed[m0].k < q->ls_cursor)
		m0++; /* the part after the last one sent */
	uint32_t next = 0;
	for (size_t s = 0; s < r->nlisted && ne < OVW_LS_MAX; s++) {
		const struct rs_listed *l = &r->listed[(m0 + s) % r->nlisted];
		if (l->k == j)
			continue;
		e[ne++] = l->e;
		next = l->k + 1;
	}
	bool complete = live <= OVW_LS_MAX;
	size_t bytes = RS_LS_WIRE + ne * OVW_LS_ENTRY_LEN;
	if (!take_spare(r, q, bytes, RS_SILENCE_PROBES, now)) {
		q->ls_wanted = bytes;
		return;
	}
	uint8_t body[OVW_LS_BODY_MAX];
	long len = ovw_ls_encode(complete ? OVW_LS_COMPLETE : 0, e, ne, body, sizeof(body));
	q->ls_tx_ms = now;
	q->ls_sig = sig;
	q->ls_cursor = complete ? 0 : next;
	if (len > 0 && !gw_linkstate_send(r->gw, j, body, (size_t)len)) {
		CNT_ADD(r, ls_tx, 1);
		CNT_ADD(r, ls_tx_bytes, bytes);
	}
}

/* A peer's link-state report (body, len bytes, untrusted): decoded, its entries mapped to our
 * peers by their ids and kept (a complete list replaces the reporter's entries); a malformed
 * one is dropped and counted. */
static void on_linkstate(void *arg, uint32_t cookie, const uint8_t *body, size_t len, uint64_t now)
{
	struct rs *r = arg;
	struct ovw_ls_entry e[OVW_LS_MAX];
	size_t ne;
	uint8_t flags;
	if (cookie >= RS_MAX_PEERS || ovw_ls_decode(body, len, &flags, e, &ne)) {
		CNT_ADD(r, ls_bad, 1);
		return;
	}
	struct rs_peer *p = &r->peers[cookie];
	if (!p->ls && !(p->ls = calloc(RS_LS_KEEP, sizeof(*p->ls))))
		return;
	CNT_ADD(r, ls_rx, 1);
	p->ls_rx_ms = now;
	if (flags & OVW_LS_COMPLETE) {
		memset(p->ls, 0, RS_LS_KEEP * sizeof(*p->ls));
		p->ls_complete_ms = now;
	}
	size_t n = gw_peer_count(r->gw);
	if (n > RS_MAX_PEERS)
		n = RS_MAX_PEERS;
	for (size_t x = 0; x < ne; x++) {
		uint32_t k = 0;
		struct gw_peer_info in;
		for (; k < n; k++)
			if (!gw_peer_info(r->gw, k, &in) && !memcmp(in.id, e[x].id, OVW_ID_LEN))
				break;
		if (k == n || k == cookie)
			continue; /* not a peer of ours, or the reporter itself */
		struct rs_ls *slot = NULL;
		for (unsigned y = 0; y < RS_LS_KEEP; y++) { /* its entry, else the oldest */
			struct rs_ls *c = &p->ls[y];
			if (c->at_ms && c->dest == k) {
				slot = c;
				break;
			}
			if (!slot || c->at_ms < slot->at_ms)
				slot = c;
		}
		slot->dest = k;
		slot->rtt_us = e[x].rtt_us;
		slot->loss_pct = e[x].loss_pct;
		slot->at_ms = now;
	}
}

/* Our link-state to every live peer whose report is due (ls_send). */
static void ls_round(struct rs *r, size_t n, uint64_t now)
{
	uint64_t sig = ls_collect(r, n, now);
	for (uint32_t j = 0; j < n; j++) {
		struct rs_peer *q = &r->peers[j];
		struct gw_peer_info in;
		if (q->down || gw_peer_info(r->gw, j, &in) || !in.has_ep ||
		    !gw_peer_heard_within(in.last_rx_ms, now, r->keepalive_s))
			continue;
		ls_send(r, j, sig, now);
	}
}

static void tick(struct rs *r, uint64_t now)
{
	size_t n = gw_peer_count(r->gw);
	if (n > RS_MAX_PEERS)
		n = RS_MAX_PEERS;
	uint64_t dead = r->conf.dead_ms;
	uint64_t now_us = r->now_ns() / 1000;
	own_stall(r, now);
	r->last_tick_ms = now;
	bool judging = now >= r->judge_from_ms;
	ls_round(r, n, now);
	for (uint32_t i = 0; i < n; i++) {
		struct rs_peer *p = &r->peers[i];
		struct gw_peer_info in;
		if (gw_peer_info(r->gw, i, &in) || !in.has_ep)
			continue;
		if (in.out_packets != p->out_seen) {
			if (now >= p->in_use_until && !p->degraded && !p->down)
				ps_reset(&p->ps); /* in use again: judged afresh */
			p->out_seen = in.out_packets;
			p->in_use_until = now + RS_IN_USE_MS;
		}
		/* a relay carrying a peer in use is in use too: its silence is judged (a dead relay
		 * is then given up after dead-ms, and the peers it carried move on) */
		if ((p->down || p->degraded) && p->relay < n && now < p->in_use_until &&
		    r->peers[p->relay].in_use_until < p->in_use_until)
			r->peers[p->relay].in_use_until = p->in_use_until;
		if (in.last_rx_ms > p->last_heard_ms) {
			p->last_heard_ms = in.last_rx_ms;
			p->unanswered = 0;
			p->silence_held = false;
		}
		if (!judging)
			continue;
		uint64_t since = p->last_heard_ms > r->listen_ms ? p->last_heard_ms : r->listen_ms;
		uint64_t silent = now - since;
		ps_expire(&p->ps, now_us, (uint64_t)RS_LOST_MS * 1000);
		if (r->conf.degraded_pct)
			count_loss(r, i, &in, now);
		if (p->down) {
			if (p->last_ack_ms > p->down_at_ms || p->up_probe_ms > p->down_at_ms) {
				go_up(r, i, in.name, now);
				continue;
			}
			if (now - p->last_probe_ms >= RS_DOWN_PROBE_MS)
				probe(r, i, now, RS_SILENCE_PROBES);
			if (p->relay == GW_DIRECT || !relay_usable(r, p->relay, i, n, now))
				set_relay(r, i, n, in.name); /* its relay died, or a relay came */
			continue;
		}
		if (p->peer_has_us_down) { /* our packets do not reach it: its probes said so */
			go_down(r, i, n, in.name, now);
			continue;
		}
		if (p->degraded && now >= p->in_use_until && !relay_usable(r, p->relay, i, n, now))
			judge(r, i, n, in.name, now); /* not in use, its relay died: direct */
		if (now < p->in_use_until) {
			/* the probes are the budget's: when it holds the second back (failures
			 * seconds apart spend it), one unanswered for dead-ms / 5 does; with none
			 * sent (stalls on a loaded host look like silence and spend it), twice
			 * dead-ms of silence does */
			bool held = p->silence_held && p->unanswered >= 1 &&
			            now - p->last_probe_ms >= dead / 5;
			if (silent >= dead && (p->unanswered >= 2 || held || silent >= 2 * dead))
				go_down(r, i, n, in.name, now);
			else if (silent >= dead / 2 && now - p->last_probe_ms >= dead / 5)
				p->silence_held = !probe(r, i, now, 0); /* may spend the reserve */
			else if (r->conf.degraded_pct &&
			         now - p->last_probe_ms >= RS_USE_PROBE_MS &&
			         (refill(r, p, B_PROBE, now),
			          p->tokens[B_PROBE] >= (RS_RESERVE_PROBES + 1) * RS_PROBE_WIRE +
			                                    (double)p->ls_wanted))
				probe(r, i, now, RS_RESERVE_PROBES); /* quality: spare tokens */
			if (r->conf.degraded_pct && !p->down)
				judge(r, i, n, in.name, now);
		} else if (now - p->last_probe_ms >= (p->srtt_us ? RS_IDLE_PROBE_MS : 1000)) {
			probe(r, i, now, RS_SILENCE_PROBES);
		}
	}
}

static void on_probe(void *arg, uint32_t cookie, uint8_t type, const uint8_t body[OVW_PROBE_LEN],
                     uint64_t now)
{
	struct rs *r = arg;
	if (cookie >= RS_MAX_PEERS)
		return;
	struct rs_peer *p = &r->peers[cookie];
	uint64_t v = get_u64(body);
	own_stall(r, now);
	if (type == OVW_PROBE) {
		/* the flag is stale if our probes came back lately (the flagged probe was sent
		 * before its sender saw one of our echoes): both ways work; or if it may have been
		 * sent while we were stalled (or not started) */
		if ((v & RS_FLAG_DOWN) && now - p->last_ack_ms > 2 * RS_DOWN_PROBE_MS &&
		    now >= r->flags_from_ms)
			p->peer_has_us_down = true;
		if (!(v & RS_FLAG_DOWN))
			p->up_probe_ms = now;
		if (take_token(r, p, B_ECHO, 0, now) &&
		    !gw_probe_send(r->gw, cookie, OVW_PROBE_ACK, body))
			CNT_ADD(r, acks, 1);
		return;
	}
	if (type == OVW_LOSS) {
		uint32_t got = get_u32(body), sent = get_u32(body + 4);
		CNT_ADD(r, reports_rx, 1);
		if (sent >= RS_LOSS_MIN && got <= sent &&
		    (uint64_t)(sent - got) * 100 >= (uint64_t)r->conf.degraded_pct * sent) {
			p->report_got = got;
			p->report_sent = sent;
			p->report_rx_ms = now;
		}
		return;
	}
	uint64_t sent = v & ~RS_FLAG_DOWN, t = r->now_ns() / 1000;
	p->last_ack_ms = now;
	p->unanswered = 0;
	p->silence_held = false;
	p->peer_has_us_down = false;
	ps_answered(&p->ps, sent, t);
	if (sent <= t && t - sent < 10000000) { /* one of ours, within 10 s */
		uint32_t rtt = (uint32_t)(t - sent);
		p->srtt_us = p->srtt_us ? (7 * p->srtt_us + rtt) / 8 : rtt;
		ps_minrtt_sample(&p->min_rtt, rtt, now, RS_MIN_RTT_WIN_MS);
		judge_rtt(r, cookie, rtt, now);
	}
}

static void rs_readable(struct ov_slave *s, int fd)
{
	struct rs *r = s->priv;
	uint64_t ticks;
	if (read(fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	tick(r, r->now_ns() / 1000000);
}

static int rs_attach(struct ov_slave *s, struct ov_master *m)
{
	struct rs *r = s->priv;
	int ret;
	r->m = m;
	r->listen_ms = r->now_ns() / 1000000;
	r->flags_from_ms = r->listen_ms + r->conf.dead_ms; /* a restart's stale flags */
	for (size_t i = 0; i < RS_MAX_PEERS; i++) {
		r->peers[i].relay = GW_DIRECT;
		for (int k = 0; k < 2; k++) {
			r->peers[i].tokens[k] = (double)RS_BURST_PROBES * RS_PROBE_WIRE;
			r->peers[i].tokens_ms[k] = r->listen_ms;
		}
	}
	r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (r->tfd == -1)
		return -errno;
	struct itimerspec its = {.it_interval = {0, RS_TICK_MS * 1000000L},
	                         .it_value = {0, RS_TICK_MS * 1000000L}};
	if (timerfd_settime(r->tfd, 0, &its, NULL) == -1)
		return -errno;
	if ((ret = ov_master_watch(m, r->tfd, s)))
		return ret;
	gw_set_probe_cb(r->gw, on_probe, r);
	gw_set_linkstate_cb(r->gw, on_linkstate, r);
	log_msg(LOG_INFO, "overlay: resiliency: dead after %u ms, probes at most %u bit/s a pair",
	        r->conf.dead_ms, r->conf.budget_bps);
	return 0;
}

static void rs_detach(struct ov_slave *s)
{
	struct rs *r = s->priv;
	gw_set_probe_cb(r->gw, NULL, NULL);
	gw_set_linkstate_cb(r->gw, NULL, NULL);
	if (r->tfd != -1) {
		ov_master_unwatch(r->m, r->tfd);
		close(r->tfd);
	}
	r->tfd = -1;
}

static int rs_output(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len)
{
	(void)s, (void)cookie, (void)pkt, (void)len;
	return -EINVAL; /* it owns no route */
}

static void rs_stats(struct ov_slave *s, struct mbuf *b)
{
	struct rs *r = s->priv;
	mbuf_printf(
	    b,
	    "# TYPE peak_overlay_resil_paths_down_total counter\n"
	    "peak_overlay_resil_paths_down_total %llu\n"
	    "# TYPE peak_overlay_resil_paths_up_total counter\n"
	    "peak_overlay_resil_paths_up_total %llu\n"
	    "# TYPE peak_overlay_resil_paths_relayed gauge\n"
	    "peak_overlay_resil_paths_relayed %llu\n"
	    "# TYPE peak_overlay_resil_probes_sent_total counter\n"
	    "peak_overlay_resil_probes_sent_total %llu\n"
	    "# TYPE peak_overlay_resil_acks_sent_total counter\n"
	    "peak_overlay_resil_acks_sent_total %llu\n"
	    "# TYPE peak_overlay_resil_budget_limited_total counter\n"
	    "peak_overlay_resil_budget_limited_total %llu\n"
	    "# TYPE peak_overlay_resil_no_relay_total counter\n"
	    "peak_overlay_resil_no_relay_total %llu\n"
	    "# TYPE peak_overlay_resil_paths_degraded_total counter\n"
	    "peak_overlay_resil_paths_degraded_total %llu\n"
	    "# TYPE peak_overlay_resil_paths_recovered_total counter\n"
	    "peak_overlay_resil_paths_recovered_total %llu\n"
	    "# HELP peak_overlay_resil_own_stalls_total Times this daemon was not scheduled for "
	    "over 200 ms (paths then judged afresh).\n"
	    "# TYPE peak_overlay_resil_own_stalls_total counter\n"
	    "peak_overlay_resil_own_stalls_total %llu\n"
	    "# TYPE peak_overlay_resil_loss_reports_sent_total counter\n"
	    "peak_overlay_resil_loss_reports_sent_total %llu\n"
	    "# TYPE peak_overlay_resil_loss_reports_received_total counter\n"
	    "peak_overlay_resil_loss_reports_received_total %llu\n"
	    "# HELP peak_overlay_resil_linkstate_sent_total Link-state reports sent "
	    "(OVW_LINKSTATE).\n"
	    "# TYPE peak_overlay_resil_linkstate_sent_total counter\n"
	    "peak_overlay_resil_linkstate_sent_total %llu\n"
	    "# HELP peak_overlay_resil_linkstate_sent_bytes_total Their bytes at IPv4 size (probe "
	    "budget).\n"
	    "# TYPE peak_overlay_resil_linkstate_sent_bytes_total counter\n"
	    "peak_overlay_resil_linkstate_sent_bytes_total %llu\n"
	    "# TYPE peak_overlay_resil_linkstate_received_total counter\n"
	    "peak_overlay_resil_linkstate_received_total %llu\n"
	    "# HELP peak_overlay_resil_linkstate_dropped_total Malformed link-state reports.\n"
	    "# TYPE peak_overlay_resil_linkstate_dropped_total counter\n"
	    "peak_overlay_resil_linkstate_dropped_total %llu\n"
	    "# HELP peak_overlay_resil_paths_slow_total Paths relayed for a clearly faster relay.\n"
	    "# TYPE peak_overlay_resil_paths_slow_total counter\n"
	    "peak_overlay_resil_paths_slow_total %llu\n"
	    "# TYPE peak_overlay_resil_paths_fast_again_total counter\n"
	    "peak_overlay_resil_paths_fast_again_total %llu\n",
	    (unsigned long long)CNT_GET(r, downs), (unsigned long long)CNT_GET(r, ups),
	    (unsigned long long)CNT_GET(r, relayed_now), (unsigned long long)CNT_GET(r, probes),
	    (unsigned long long)CNT_GET(r, acks), (unsigned long long)CNT_GET(r, limited),
	    (unsigned long long)CNT_GET(r, no_relay), (unsigned long long)CNT_GET(r, degrades),
	    (unsigned long long)CNT_GET(r, recovers), (unsigned long long)CNT_GET(r, stalls),
	    (unsigned long long)CNT_GET(r, reports_tx), (unsigned long long)CNT_GET(r, reports_rx),
	    (unsigned long long)CNT_GET(r, ls_tx), (unsigned long long)CNT_GET(r, ls_tx_bytes),
	    (unsigned long long)CNT_GET(r, ls_rx), (unsigned long long)CNT_GET(r, ls_bad),
	    (unsigned long long)CNT_GET(r, slows), (unsigned long long)CNT_GET(r, slow_backs));
}

/* One line per peer with an endpoint: "path NAME direct|down|slow|degraded via RELAY|- rtt-us N|-
 * probes N lost N late N" (the window of the last probes, resolved ones); then one per fresh
 * link-state entry: "linkstate REPORTER PEER rtt-us N loss-pct N|- age-ms N". */
static void rs_show(struct ov_slave *s, struct mbuf *b)
{
	struct rs *r = s->priv;
	size_t n = gw_peer_count(r->gw);
	for (uint32_t i = 0; i < n && i < RS_MAX_PEERS; i++) {
		struct gw_peer_info in, rin;
		struct rs_peer *p = &r->peers[i];
		char rtt[24] = "-";
		if (gw_peer_info(r->gw, i, &in) || !in.has_ep)
			continue;
		if (p->srtt_us)
			snprintf(rtt, sizeof(rtt), "%u", p->srtt_us);
		const char *via = (p->down || p->degraded) && p->relay != GW_DIRECT &&
		                          !gw_peer_info(r->gw, p->relay, &rin)
		                      ? rin.name
		                      : "-";
		struct ps_summary sm;
		ps_summary(&p->ps, r->conf.late_ms * 1000, &sm);
		mbuf_printf(b, "path %s %s via %s rtt-us %s probes %u lost %u late %u\n", in.name,
		            p->down       ? "down"
		            : p->slow     ? "slow"
		            : p->degraded ? "degraded"
		                          : "direct",
		            via, rtt, sm.resolved, sm.lost, sm.late);
	}
	uint64_t now = r->now_ns() / 1000000;
	for (uint32_t j = 0; j < n && j < RS_MAX_PEERS; j++) {
		struct gw_peer_info jn, kn;
		for (unsigned x = 0; r->peers[j].ls && x < RS_LS_KEEP; x++) {
			const struct rs_ls *e = &r->peers[j].ls[x];
			if (!e->at_ms || ls_of(r, j, e->dest, now) != e ||
			    gw_peer_info(r->gw, j, &jn) || gw_peer_info(r->gw, e->dest, &kn))
				continue;
			char loss[8] = "-";
			if (e->loss_pct != OVW_LS_LOSS_UNKNOWN)
				snprintf(loss, sizeof(loss), "%u", e->loss_pct);
			mbuf_printf(b, "linkstate %s %s rtt-us %u loss-pct %s age-ms %llu\n",
			            jn.name, kn.name, e->rtt_us, loss,
			            (unsigned long long)(now > e->at_ms ? now - e->at_ms : 0));
		}
	}
}

int resil_peer(struct ov_slave *s, uint32_t cookie, bool *down, uint32_t *rtt_us)
{
	struct rs *r = s->priv;
	if (cookie >= RS_MAX_PEERS || cookie >= gw_peer_count(r->gw))
		return -ENOENT;
	*down = r->peers[cookie].down;
	*rtt_us = r->peers[cookie].min_rtt.us;
	return 0;
}

void resil_set_clock(struct ov_slave *s, uint64_t (*now_ns)(void))
{
	((struct rs *)s->priv)->now_ns = now_ns;
}

void resil_tick(struct ov_slave *s)
{
	struct rs *r = s->priv;
	tick(r, r->now_ns() / 1000000);
}

static const struct ov_slave_ops rs_ops = {
    .name = "resiliency",
    .attach = rs_attach,
    .detach = rs_detach,
    .output = rs_output,
    .readable = rs_readable,
    .stats = rs_stats,
    .show = rs_show,
};

struct ov_slave *resil_new(const struct ov_conf *conf, struct ov_slave *gw, char *err,
                           size_t errlen)
{
	struct rs *r = calloc(1, sizeof(*r));
	if (!r || !(r->peers = calloc(RS_MAX_PEERS, sizeof(*r->peers))) ||
	    !(r->listed = calloc(RS_MAX_PEERS, sizeof(*r->listed)))) {
		if (r)
			free(r->peers);
		free(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->slave.ops = &rs_ops;
	r->slave.priv = r;
	r->gw = gw;
	r->conf = conf->resil;
	r->keepalive_s = conf->keepalive_s;
	r->tfd = -1;
	r->now_ns = peak_mono_ns;
	return &r->slave;
}

void resil_free(struct ov_slave *s)
{
	if (!s)
		return;
	struct rs *r = s->priv;
	if (r->tfd != -1)
		close(r->tfd);
	for (size_t i = 0; i < RS_MAX_PEERS; i++)
		free(r->peers[i].ls);
	free(r->peers);
	free(r->listed);
	free(r);
}
