/*
 * The DHT slave on OpenDHT (its C API, opendht/opendht_c.h of 2.4.12). OpenDHT runs its
 * own threads; its callbacks only fill the get buffer of the get that asked (under get_mu)
 * and mark it dirty (then wake the loop through an eventfd), so everything else, routes, the
 * gateway's peers, the queues, the search, happens on the loop's thread. A get buffer is
 * taken by the loop at dht_runner_get and given back once the loop has seen its end.
 * A prefix lookup may have several gets in flight (dhr_par: a hit is taken at its first
 * value, and once one of its gets has been unanswered DHT_SPEC_MS the steps that assume
 * "absent" run beside it); a lookup that ends leaves its superseded gets running, ignored,
 * and asks OpenDHT to stop them. A get's absent answer comes only with its end, which under
 * churn waits for OpenDHT to give up on dead nodes (1 s each), so a lookup answers early
 * (dhr_par_answer: routes its packets) once each step is answered or its get has gone
 * DHT_ASSUME_MS without a hit, runs on to its end and corrects that answer if the end
 * differs; an id lookup learns the site at its first record. OpenDHT's threads are joined
 * (dht_runner_delete) before anything is freed.
 */
#include "dht.h"

#include <arpa/inet.h>
#include <errno.h>
#include <opendht/opendht_c.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/metrics.h"
#include "dhtrec.h"
#include "gateway.h"
#include "wire.h"
#include "peak/util.h"

enum {
	/* a peer silent two keepalive periods and DHT_SILENT_SLACK_MS is looked up again by its
	 * id (re-resolved), then again after twice as long each time, up to DHT_RERESOLVE_MAX_MS */
	DHT_SILENT_SLACK_MS = 500,
	DHT_RERESOLVE_MAX_MS = 60000,
	DHT_RERESOLVE_SLOTS = 16, /* lookups they may hold at once: the others stay for packets */
};

enum {
	DHT_MAX_LOOKUPS = 64,               /* in flight at once */
	DHT_GET_BUFS = 4 * DHT_MAX_LOOKUPS, /* gets in flight at once, all lookups */
	DHT_SPEC_MS = 100, /* a prefix lookup's get unanswered this long: it speculates */
	/* a prefix lookup's get without a hit this long is taken as absent for an early answer
	 * (corrected at the lookup's end if wrong): longer than a healthy DHT's gets take, shorter
	 * than OpenDHT's 1 s wait for a dead node */
	DHT_ASSUME_MS = 600,
	DHT_MAX_VALUES = 16,     /* verified records kept per get; more are counted, ignored */
	DHT_QUEUE_BYTES = 16384, /* packets held per lookup */
	DHT_MAX_ROUTES = 4096,   /* mappings cached (routes added to the master) */
	DHT_NEG_MAX = 1024,      /* misses remembered */
	DHT_REPUBLISH_S = 300,   /* OpenDHT keeps a value 10 minutes */
	DHT_RETRY_MS = 1000,     /* a failed put (e.g. no node known yet) is retried */
	DHT_ID_RATE = 20,        /* id lookups started per second at most (any sender id) */
	DHT_INBOX = 32,          /* records heard on our id key, waiting for the loop */
	DHT_MOVE_PUNCHES = 256,  /* sites told our new address when it changes, at most */
	DHT_GROUP_MAX_AGE_S = 3 * DHT_GROUP_REPUBLISH_S, /* a member not republished is gone */
	DHT_ANSWER_MS = 3000, /* a mapping whose site has not answered in this time plus two
	                       * keepalive periods is dropped */
	R_MALFORMED = 0,
	R_CERT,
	R_SIG,
	R_UNCERTIFIED,
	R_STALE,
	R_NREASONS,
};

static const char *const refuse_names[R_NREASONS] = {
    "malformed", "certificate", "signature", "uncertified", "stale",
};

/* One get in flight (see the top). */
struct dht_get {
	struct dhts *d;
	/* the loop's */
	struct dht_lookup *l; /* NULL: free */
	uint32_t gen;         /* l->gen when asked: the lookup ended since if it differs */
	uint32_t id;          /* the search step's (prefix lookups) */
	uint32_t seq;         /* l->seq when asked (prefix lookups: the debug lines') */
	int len;              /* the probed prefix length (prefix lookups), else -1 */
	uint64_t start_ms;
	unsigned seen; /* recs handed to the search */
	/* under d->get_mu */
	uint64_t first_ms; /* when its first verified value came (0: none yet) */
	bool assumed;      /* the loop's: taken as absent (DHT_ASSUME_MS without a hit) */
	bool dirty, done, stop;
	bool is_group; /* is_group: group_keep fills l->grecs */
	struct dhr_rec recs[DHT_MAX_VALUES];
	unsigned nrec, refused[R_NREASONS], extra;
};

struct dht_lookup {
	bool used, is_id;
	uint32_t gen;         /* bumped at each start: tells its gets from an earlier one's */
	uint32_t seq;         /* the slave's lookup count when it started (debug lines) */
	bool slow;            /* a get of it went unanswered DHT_SPEC_MS: speculate */
	bool answered;        /* answered early: routed (early), or an id lookup's site learned */
	struct dhr_rec early; /* a prefix lookup's early answer */
	uint64_t id_time_s;   /* an id lookup's newest record learned */
	uint64_t start_ms;
	bool is_group;         /* a multicast group's member sites (grecs, not recs) */
	uint8_t group[16];     /* is_group, not is_anycast */
	bool is_anycast;       /* is_group too: an anycast prefix's member sites */
	struct prefix aprefix; /* is_anycast */
	struct dhr_rec *grecs; /* is_group: the newest verified record of each site */
	size_t ngrecs, gcap;
	bool gnomem;
	bool reresolve;  /* is_id, for a known silent peer: only a newer record is taken */
	uint32_t cookie; /* reresolve: the gateway's peer */
	uint8_t id[8];
	struct dhr_par par;             /* a prefix lookup's search */
	uint8_t dst[16];                /* a prefix lookup's destination */
	uint8_t queue[DHT_QUEUE_BYTES]; /* packets: u16 length, bytes */
	size_t qlen;
};

struct dht_route {
	struct prefix p;
	uint32_t cookie;     /* the gateway's peer */
	uint64_t learned_ms; /* 0 once the peer answered */
	uint64_t expires_ms; /* 0: a free slot */
};

/* What the slave knows of each of the gateway's peers (by cookie) to look a silent one up
 * again: the newest record of its taken, and when to re-resolve it next. */
struct dht_peer {
	uint64_t rec_s;      /* the newest record's time (0: none) */
	uint64_t next_ms;    /* the next re-resolve (0: not silent) */
	uint64_t backoff_ms; /* the wait after that one */
	bool busy;           /* a re-resolve in flight */
};

struct dht_neg {
	bool is_id;
	uint8_t addr[16];
	uint64_t expires_ms;
};

struct dhts {
	struct ov_slave slave;
	const struct ov_conf *conf;
	const struct ov_dht_conf *dc;
	struct ov_master *m;
	struct ov_slave *gw;
	dht_runner *runner;
	int efd, tfd;           /* tfd: the next DHT_SPEC_MS deadline of a get */
	uint64_t tfd_at_ms;     /* when tfd fires (0: disarmed) */
	pthread_mutex_t get_mu; /* the get buffers' callback halves */
	struct dht_get *getbufs;
	unsigned gets_busy;
	/* records put under our id key by sites that want to reach us (hole punching): filled
	 * by OpenDHT's listen callback, emptied by the loop, under inbox_mu */
	pthread_mutex_t inbox_mu;
	struct dhr_rec inbox[DHT_INBOX];
	unsigned ninbox, inbox_lost;
	dht_op_token *listen;
	bool mu_ready, get_mu_ready, has_mapping;
	struct sockaddr_in mapping; /* our public address, as a peer sees it */
	struct dht_lookup *lookups;
	struct dht_route *routes;
	struct dht_peer *peers; /* npeers: the gateway's configured and learned peers */
	size_t npeers;
	unsigned reresolving; /* re-resolves in flight */
	uint32_t lookup_seq;  /* lookups started */
	struct dht_neg neg[DHT_NEG_MAX];
	unsigned neg_next;
	uint8_t seed[32], ed_pub[32], x_pub[32];
	struct dhr_cert cert;
	uint64_t next_publish_ms, next_bootstrap_ms, last_pub_s;
	int put_failed; /* atomic: a put of the last round failed */
	double id_tokens;
	uint64_t id_tokens_ms;
	struct log_limit rl_refused, rl_learn;
	dht_group_fn group_fn; /* the multicast slave's */
	void *group_arg;
	dht_anycast_fn anycast_fn; /* the anycast slave's */
	void *anycast_arg;
	uint64_t next_anycast_ms; /* the next put of the anycast records */
	/* counters (atomic: the metrics thread reads them) */
	uint64_t lookups_found, lookups_missed, lookups_gave_up, gets, accepted,
	    refused[R_NREASONS], puts_ok, puts_failed, queued, queue_drops, busy_drops, neg_hits,
	    id_lookups, routes_learned, routes_expired, learn_errors, punch_puts, punch_heard,
	    routes_silent, locators, move_punches, reresolves, reresolved, group_puts,
	    group_lookups, group_members, spec_gets, superseded_gets, anycast_puts, anycast_lookups,
	    anycast_members, early_answers, corrected_answers;
};

#define CNT_ADD(p, f, v) __atomic_fetch_add(&(p)->f, (v), __ATOMIC_RELAXED)
#define CNT_GET(p, f) __atomic_load_n(&(p)->f, __ATOMIC_RELAXED)

static int refuse_reason(int e)
{
	switch (e) {
	case -EPERM:
		return R_CERT;
	case -EACCES:
		return R_SIG;
	case -ERANGE:
		return R_UNCERTIFIED;
	case -ESTALE:
		return R_STALE;
	default:
		return R_MALFORMED;
	}
}

/* OpenDHT's thread, under get_mu (the group lookup's grecs are its own until done): a
 * verified group record,
 * kept if it is the newest of its site so far (a site puts one every DHT_GROUP_REPUBLISH_S:
 * the get returns all those OpenDHT still holds). No fixed limit: one per member site. */
static void group_keep(struct dht_lookup *l, const struct dhr_rec *r)
{
	for (size_t i = 0; i < l->ngrecs; i++)
		if (!memcmp(l->grecs[i].cert.x_pub, r->cert.x_pub, 32)) {
			if (r->time_s > l->grecs[i].time_s)
				l->grecs[i] = *r;
			return;
		}
	if (l->ngrecs == l->gcap) {
		size_t cap = l->gcap ? 2 * l->gcap : 16;
		struct dhr_rec *n = realloc(l->grecs, cap * sizeof(*n));
		if (!n) {
			l->gnomem = true;
			return;
		}
		l->grecs = n;
		l->gcap = cap;
	}
	l->grecs[l->ngrecs++] = *r;
}

/* OpenDHT's thread: one value of a get. Checked here (pure code), kept if it verifies; the
 * loop is woken for a prefix lookup's (a hit ends its step). False (stop the get) once the
 * loop has no use for it. */
static bool on_value(const dht_value *v, void *arg)
{
	struct dht_get *g = arg;
	struct dhts *d = g->d;
	dht_data_view dv = dht_value_get_data(v);
	struct dhr_rec r;
	struct cur c = cur_make(dv.data, dv.size);
	int e = dv.size > DHR_REC_MAX
	            ? -EBADMSG
	            : dhr_rec_parse(&c, d->dc->authority, (uint64_t)time(NULL), &r);
	bool wake = false, go_on;
	pthread_mutex_lock(&d->get_mu);
	go_on = !g->stop;
	if (!e && g->is_group) {
		const struct dht_lookup *l = g->l;
		if (l->is_anycast ? (r.flags & DHR_F_ANYCAST) && !prefix_cmp(&r.prefix, &l->aprefix)
		                  : (r.flags & DHR_F_GROUP) && !memcmp(r.group, l->group, 16))
			group_keep(g->l, &r);
	} else if (!e && (r.flags & (DHR_F_GROUP | DHR_F_ANYCAST))) {
		/* a group or anycast record under a prefix or id key: ignored */
	} else if (e) {
		g->refused[refuse_reason(e)]++;
	} else if (g->nrec < DHT_MAX_VALUES) {
		if (!g->first_ms)
			g->first_ms = peak_mono_ms();
		g->recs[g->nrec++] = r;
		wake = !g->dirty;
		g->dirty = true;
	} else {
		g->extra++;
	}
	pthread_mutex_unlock(&d->get_mu);
	uint64_t one = 1;
	if (wake && write(d->efd, &one, sizeof(one)) != sizeof(one)) {
		/* the counter is already non-zero: the loop wakes anyway */
	}
	return go_on;
}

/* OpenDHT's thread: the get is over; hand the buffer back to the loop. */
static void on_get_done(bool ok, void *arg)
{
	(void)ok; /* a get that reached no node simply found nothing */
	struct dht_get *g = arg;
	pthread_mutex_lock(&g->d->get_mu);
	g->done = g->dirty = true;
	pthread_mutex_unlock(&g->d->get_mu);
	uint64_t one = 1;
	if (write(g->d->efd, &one, sizeof(one)) != sizeof(one)) {
		/* the counter is already non-zero: the loop wakes anyway */
	}
}

static void on_put_done(bool ok, void *arg)
{
	struct dhts *d = arg;
	if (ok) {
		CNT_ADD(d, puts_ok, 1);
	} else {
		CNT_ADD(d, puts_failed, 1);
		__atomic_store_n(&d->put_failed, 1, __ATOMIC_RELAXED);
	}
}

/* OpenDHT's thread: a value under our id key (our own records, and those of sites that
 * want to reach us). Verified here, queued for the loop. */
static bool on_listen(const dht_value *v, bool expired, void *arg)
{
	struct dhts *d = arg;
	if (expired)
		return true;
	dht_data_view dv = dht_value_get_data(v);
	struct dhr_rec r;
	struct cur c = cur_make(dv.data, dv.size);
	int e = dv.size > DHR_REC_MAX
	            ? -EBADMSG
	            : dhr_rec_parse(&c, d->dc->authority, (uint64_t)time(NULL), &r);
	if (e) {
		CNT_ADD(d, refused[refuse_reason(e)], 1);
		return true;
	}
	pthread_mutex_lock(&d->inbox_mu);
	if (d->ninbox < DHT_INBOX)
		d->inbox[d->ninbox++] = r;
	else
		d->inbox_lost++;
	pthread_mutex_unlock(&d->inbox_mu);
	uint64_t one = 1;
	if (write(d->efd, &one, sizeof(one)) != sizeof(one)) {
		/* the counter is already non-zero: the loop wakes anyway */
	}
	return true;
}

static void punch(struct dhts *d, const uint8_t x_pub[static 32]);

/* The gateway learned our public mapping: publish it now. When its address changed (we
 * moved, or our NAT did), every peer the gateway has an endpoint for (not only the sites we
 * route to: an idle pair's routes expire after cache-ttl while its keepalives go on) gets
 * our new record under its id key: one behind a NAT that filters by address hears it and
 * sends to our new address, which lets our packets in again (and the gateway's roaming does
 * the rest). */
static void on_mapping(void *arg, const struct sockaddr_in *m)
{
	struct dhts *d = arg;
	bool moved = d->has_mapping && d->mapping.sin_addr.s_addr != m->sin_addr.s_addr;
	d->mapping = *m;
	d->has_mapping = true;
	d->next_publish_ms = 0; /* the next tick republishes */
	if (!moved)
		return;
	size_t n = gw_peer_count(d->gw);
	unsigned ndone = 0;
	for (size_t i = 0; i < n && ndone < DHT_MOVE_PUNCHES; i++) {
		struct gw_peer_info info;
		uint8_t pub[32];
		if (gw_peer_info(d->gw, (uint32_t)i, &info) || !info.has_ep ||
		    gw_peer_pub(d->gw, (uint32_t)i, pub))
			continue;
		ndone++;
		punch(d, pub);
		CNT_ADD(d, move_punches, 1);
	}
}

/* A free get buffer (NULL if none). */
static struct dht_get *get_new(struct dhts *d)
{
	for (unsigned i = 0; i < DHT_GET_BUFS; i++)
		if (!d->getbufs[i].l)
			return &d->getbufs[i];
	return NULL;
}

/* Arms tfd for at_ms if that is sooner than it fires now. */
static void spec_arm(struct dhts *d, uint64_t at_ms)
{
	if (d->tfd == -1 || (d->tfd_at_ms && d->tfd_at_ms <= at_ms))
		return;
	struct itimerspec its = {
	    .it_value = {(time_t)(at_ms / 1000), (long)(at_ms % 1000) * 1000000}};
	if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		d->tfd_at_ms = at_ms;
}

/* Starts a get of key for l in buffer g (from get_new); id: the search step's. */
static void dht_get(struct dhts *d, struct dht_lookup *l, struct dht_get *g,
                    const uint8_t key[DHR_KEY_LEN], uint32_t id)
{
	dht_infohash h;
	dht_infohash_get(&h, key, DHR_KEY_LEN);
	g->l = l;
	g->gen = l->gen;
	g->id = id;
	g->seq = l->seq;
	g->len = !l->is_id && !l->is_group ? key[9] : -1; /* dhr_key_prefix: the length */
	g->start_ms = peak_mono_ms();
	g->seen = 0;
	pthread_mutex_lock(&d->get_mu); /* (no callback of this buffer runs: it was free) */
	g->first_ms = 0;
	g->assumed = false;
	g->dirty = g->done = g->stop = false;
	g->is_group = l->is_group;
	g->nrec = g->extra = 0;
	memset(g->refused, 0, sizeof(g->refused));
	pthread_mutex_unlock(&d->get_mu);
	d->gets_busy++;
	CNT_ADD(d, gets, 1);
	if (!l->is_id && !l->is_group)
		spec_arm(d, g->start_ms + (l->slow ? DHT_ASSUME_MS : DHT_SPEC_MS));
	dht_runner_get(d->runner, &h, on_value, on_get_done, g);
}

/* The locators published: the public mapping peers told us first, when it differs from the
 * configured one (behind NAT, the configured one only works from the same side). */
static void fill_locators(struct dhts *d, struct dhr_rec *r)
{
	r->nloc = 0;
	r->flags = gw_nat_edm(d->gw) ? DHR_F_EDM : 0;
	if (d->has_mapping && (d->mapping.sin_addr.s_addr != d->dc->locator.sin_addr.s_addr ||
	                       d->mapping.sin_port != d->dc->locator.sin_port))
		r->loc[r->nloc++] = d->mapping;
	r->loc[r->nloc++] = d->dc->locator;
}

/* Puts this site's record (its first prefix) under the id key of the site with X25519 key
 * x_pub: that site listens there and, hearing it, sends to us too, so that two gateways
 * behind NAT open their mappings toward each other at the same time. */
static void punch(struct dhts *d, const uint8_t x_pub[static 32])
{
	struct dhr_rec r;
	uint8_t buf[DHR_REC_MAX], key[DHR_KEY_LEN];
	memset(&r, 0, sizeof(r));
	r.cert = d->cert;
	r.time_s = (uint64_t)time(NULL);
	r.prefix = d->dc->prefixes[0];
	fill_locators(d, &r);
	long n = dhr_rec_write(&r, d->seed, buf, sizeof(buf));
	if (n < 0)
		return;
	dhr_key_id(x_pub, key);
	dht_infohash h;
	dht_infohash_get(&h, key, DHR_KEY_LEN);
	dht_value *v = dht_value_new(buf, (size_t)n);
	if (!v)
		return;
	dht_runner_put(d->runner, &h, v, on_put_done, d, false);
	dht_value_unref(v);
	CNT_ADD(d, punch_puts, 1);
}

/* Signs and puts every record of this site under all its keys (non-permanent puts:
 * republished every DHT_REPUBLISH_S, sooner after a failure). */
static void publish(struct dhts *d)
{
	struct dhr_rec r;
	uint8_t buf[DHR_REC_MAX], keys[DHR_MAX_KEYS][DHR_KEY_LEN];
	__atomic_store_n(&d->put_failed, 0, __ATOMIC_RELAXED);
	memset(&r, 0, sizeof(r));
	r.cert = d->cert;
	/* each round newer than the last, even within one second: a lookup keeps the newest
	 * record of a prefix, and a round after a new mapping must win */
	r.time_s = (uint64_t)time(NULL);
	if (r.time_s <= d->last_pub_s)
		r.time_s = d->last_pub_s + 1;
	d->last_pub_s = r.time_s;
	fill_locators(d, &r);
	__atomic_store_n(&d->locators, r.nloc, __ATOMIC_RELAXED);
	for (size_t i = 0; i < d->dc->nprefixes; i++) {
		r.prefix = d->dc->prefixes[i];
		long n = dhr_rec_write(&r, d->seed, buf, sizeof(buf));
		if (n < 0) {
			log_msg(LOG_ERR, "overlay: dht: cannot write a record: %s",
			        strerror((int)-n));
			continue;
		}
		size_t nk = dhr_pub_keys(&r.prefix, d->x_pub, keys);
		for (size_t k = 0; k < nk; k++) {
			dht_infohash h;
			dht_infohash_get(&h, keys[k], DHR_KEY_LEN);
			dht_value *v = dht_value_new(buf, (size_t)n);
			if (!v)
				continue;
			dht_runner_put(d->runner, &h, v, on_put_done, d, false);
			dht_value_unref(v);
		}
	}
}

/* Puts this site's anycast record of each prefix it serves (dht.anycast) under the prefix's
 * anycast key; again every DHT_GROUP_REPUBLISH_S (lookups take records of the last three
 * periods, as for groups) and after a failed put. */
static void anycast_publish(struct dhts *d)
{
	for (size_t i = 0; i < d->dc->nanycast; i++) {
		struct dhr_rec r;
		uint8_t buf[DHR_REC_MAX], key[DHR_KEY_LEN];
		memset(&r, 0, sizeof(r));
		r.cert = d->cert;
		r.time_s = (uint64_t)time(NULL);
		r.prefix = d->dc->anycast[i];
		fill_locators(d, &r);
		r.flags |= DHR_F_ANYCAST;
		long n = dhr_rec_write(&r, d->seed, buf, sizeof(buf));
		if (n < 0) {
			log_msg(LOG_ERR, "overlay: dht: cannot write an anycast record: %s",
			        strerror((int)-n));
			continue;
		}
		dhr_key_anycast(&r.prefix, key);
		dht_infohash h;
		dht_infohash_get(&h, key, DHR_KEY_LEN);
		dht_value *v = dht_value_new(buf, (size_t)n);
		if (!v)
			continue;
		dht_runner_put(d->runner, &h, v, on_put_done, d, false);
		dht_value_unref(v);
		CNT_ADD(d, anycast_puts, 1);
	}
}

static void bootstrap(struct dhts *d)
{
	for (size_t i = 0; i < d->dc->nbootstrap; i++) {
		char host[INET_ADDRSTRLEN], port[8];
		inet_ntop(AF_INET, &d->dc->bootstrap[i].sin_addr, host, sizeof(host));
		snprintf(port, sizeof(port), "%u", ntohs(d->dc->bootstrap[i].sin_port));
		dht_runner_bootstrap(d->runner, host, port);
	}
}

static bool neg_cached(struct dhts *d, bool is_id, const uint8_t *addr, size_t n, uint64_t now)
{
	for (unsigned i = 0; i < DHT_NEG_MAX; i++) {
		struct dht_neg *e = &d->neg[i];
		if (e->expires_ms > now && e->is_id == is_id && !memcmp(e->addr, addr, n))
			return true;
	}
	return false;
}

static void neg_add(struct dhts *d, bool is_id, const uint8_t *addr, size_t n)
{
	struct dht_neg *e = &d->neg[d->neg_next++ % DHT_NEG_MAX];
	memset(e, 0, sizeof(*e));
	e->is_id = is_id;
	memcpy(e->addr, addr, n);
	e->expires_ms = peak_mono_ms() + (uint64_t)d->dc->negative_ttl_s * 1000;
}

static struct dht_lookup *lookup_new(struct dhts *d)
{
	for (unsigned i = 0; i < DHT_MAX_LOOKUPS; i++)
		if (!d->lookups[i].used) {
			struct dht_lookup *l = &d->lookups[i];
			l->used = true;
			l->gen++;
			l->seq = ++d->lookup_seq;
			l->slow = l->answered = false;
			l->id_time_s = 0;
			l->start_ms = peak_mono_ms();
			l->is_id = false;
			l->is_group = false;
			l->is_anycast = false;
			l->ngrecs = 0;
			l->gnomem = false;
			l->reresolve = false;
			l->qlen = 0;
			return l;
		}
	return NULL;
}

/* Remembers that p was routed from the DHT (to the gateway's peer cookie) until the cache
 * TTL runs out, or sooner if the site does not answer (a stale locator, or a NAT not punched
 * yet; dht_timer checks): the next packet then looks it up again. */
static void route_cache(struct dhts *d, const struct prefix *p, uint32_t cookie)
{
	uint64_t now = peak_mono_ms();
	struct dht_route *free_slot = NULL;
	uint64_t exp = now + (uint64_t)d->dc->cache_ttl_s * 1000;
	for (unsigned i = 0; i < DHT_MAX_ROUTES; i++) {
		struct dht_route *r = &d->routes[i];
		if (r->expires_ms && !prefix_cmp(&r->p, p)) {
			r->expires_ms = exp;
			r->cookie = cookie;
			r->learned_ms = now;
			return;
		}
		if (!r->expires_ms && !free_slot)
			free_slot = r;
	}
	if (!free_slot) { /* full: the oldest mapping goes first */
		free_slot = &d->routes[0];
		for (unsigned i = 1; i < DHT_MAX_ROUTES; i++)
			if (d->routes[i].expires_ms < free_slot->expires_ms)
				free_slot = &d->routes[i];
		ov_route_del(d->m, &free_slot->p);
	}
	free_slot->p = *p;
	free_slot->expires_ms = exp;
	free_slot->cookie = cookie;
	free_slot->learned_ms = now;
}

/* A verified record: the gateway learns the site, the prefix is routed to it. */
/* True if p is one of this site's anycast prefixes: one the anycast slave routes, or one this
 * site serves itself (its packets for it stay here, not at another member). */
static bool is_anycast(const struct dhts *d, const struct prefix *p)
{
	for (size_t i = 0; i < d->conf->nanycast; i++)
		if (!prefix_cmp(&d->conf->anycast[i].prefix, p))
			return true;
	for (size_t i = 0; i < d->dc->nanycast; i++)
		if (!prefix_cmp(&d->dc->anycast[i], p))
			return true;
	return false;
}

static bool is_search(const struct dht_lookup *l)
{
	return l->used && !l->is_id && !l->is_group;
}

static void queue_flush(struct dhts *d, struct dht_lookup *l, bool routed);

static int learn(struct dhts *d, const struct dhr_rec *r)
{
	if (!memcmp(r->cert.x_pub, d->x_pub, 32))
		return -ELOOP; /* ours (under our own id key, or our prefix): nothing to learn */
	char ps[PREFIX_STRLEN];
	uint32_t cookie;
	int e;
	if (!r->prefix.len) {
		e = -EINVAL; /* ::/0 would replace the route to this slave */
	} else if (!(e = gw_peer_learn(d->gw, r->cert.x_pub, &r->loc[0], r->flags & DHR_F_EDM,
	                               r->cert.prefixes, r->cert.nprefixes, &cookie))) {
		/* a member's own record of an anycast prefix (e.g. under its id key) must not
		 * replace the anycast slave's route: the site is learned, the prefix not routed */
		if (is_anycast(d, &r->prefix))
			return 0;
		e = ov_route_add(d->m, &r->prefix, d->gw, cookie);
	}
	if (e) {
		CNT_ADD(d, learn_errors, 1);
		log_rl(&d->rl_learn, LOG_WARNING, "overlay: dht: cannot route %s: %s",
		       prefix_print(&r->prefix, ps), strerror(-e));
		return e;
	}
	if (cookie < d->npeers && r->time_s > d->peers[cookie].rec_s)
		d->peers[cookie].rec_s = r->time_s;
	route_cache(d, &r->prefix, cookie);
	CNT_ADD(d, routes_learned, 1);
	log_msg(LOG_INFO, "overlay: dht: %s -> %s", prefix_print(&r->prefix, ps),
	        inet_ntoa(r->loc[0].sin_addr));
	/* the packets of prefix lookups still running whose destination is routed now (e.g. by
	 * an id lookup of the site a reply goes to) go at once: the lookups go on and route a
	 * longer prefix if they find one */
	for (unsigned i = 0; i < DHT_MAX_LOOKUPS; i++) {
		struct dht_lookup *l = &d->lookups[i];
		if (is_search(l) && l->qlen && prefix_contains_addr(&r->prefix, l->dst))
			queue_flush(d, l, true);
	}
	return 0;
}

/* l's queued packets go out (routed now) or get ICMPv6 no route. */
static void queue_flush(struct dhts *d, struct dht_lookup *l, bool routed)
{
	for (size_t off = 0; off + 2 <= l->qlen;) {
		size_t n = (size_t)(l->queue[off] << 8 | l->queue[off + 1]);
		const uint8_t *p = l->queue + off + 2;
		if (routed)
			ov_master_output(d->m, p, n);
		else
			ov_master_unreach(d->m, p, n);
		off += 2 + n;
	}
	l->qlen = 0;
}

/* The lookup is over: its packets go out (routed now) or get ICMPv6 no route. */
static void lookup_end(struct dhts *d, struct dht_lookup *l, bool routed)
{
	queue_flush(d, l, routed);
	l->used = false;
	if (l->is_id || l->is_group)
		return;
	CNT_ADD(d, spec_gets, l->par.spec);
	CNT_ADD(d, superseded_gets, l->par.superseded);
	pthread_mutex_lock(&d->get_mu); /* its superseded gets still running: stop them */
	for (unsigned i = 0; i < DHT_GET_BUFS; i++)
		if (d->getbufs[i].l == l && d->getbufs[i].gen == l->gen)
			d->getbufs[i].stop = true;
	pthread_mutex_unlock(&d->get_mu);
}

/* A re-resolve's get is done: the silent peer's newest record, if newer than the one we
 * hold, gives the gateway its locator (gw_peer_learn: an old record never moves a peer
 * back, and a peer heard lately gets one keepalive there instead). */
static void reresolved(struct dhts *d, struct dht_lookup *l, const struct dhr_rec *recs,
                       unsigned nrec)
{
	struct dht_peer *q = l->cookie < d->npeers ? &d->peers[l->cookie] : NULL;
	const struct dhr_rec *best = NULL;
	uint8_t pub[32];
	d->reresolving--;
	if (q)
		q->busy = false;
	if (!q || gw_peer_pub(d->gw, l->cookie, pub))
		return;
	for (unsigned i = 0; i < nrec; i++)
		if (!memcmp(recs[i].cert.x_pub, pub, 32) && recs[i].time_s > q->rec_s &&
		    (!best || recs[i].time_s > best->time_s))
			best = &recs[i];
	if (!best)
		return;
	uint32_t cookie;
	int e = gw_peer_learn(d->gw, pub, &best->loc[0], best->flags & DHR_F_EDM,
	                      best->cert.prefixes, best->cert.nprefixes, &cookie);
	if (e) {
		CNT_ADD(d, learn_errors, 1);
		return;
	}
	q->rec_s = best->time_s;
	CNT_ADD(d, reresolved, 1);
	char a[INET_ADDRSTRLEN];
	log_msg(LOG_INFO, "overlay: dht: silent peer dht-%02x%02x%02x%02x re-resolved: %s:%u",
	        pub[0], pub[1], pub[2], pub[3],
	        inet_ntop(AF_INET, &best->loc[0].sin_addr, a, sizeof(a)),
	        ntohs(best->loc[0].sin_port));
}

/* A group lookup's get is done: each site whose newest record is a join, signed within
 * DHT_GROUP_MAX_AGE_S, is a member; the gateway learns it as a peer (its locator, its
 * certified prefixes as sources); the multicast slave gets the members' cookies (the anycast
 * slave, for an anycast prefix's lookup: its records are joins). */
static void group_found(struct dhts *d, struct dht_lookup *l)
{
	uint64_t now_s = (uint64_t)time(NULL);
	uint32_t *cookies = l->ngrecs ? malloc(l->ngrecs * sizeof(*cookies)) : NULL;
	size_t n = 0;
	if (l->gnomem)
		log_rl(&d->rl_learn, LOG_ERR, "overlay: dht: group lookup: out of memory");
	for (size_t i = 0; i < l->ngrecs && (cookies || !l->ngrecs); i++) {
		const struct dhr_rec *r = &l->grecs[i];
		uint32_t cookie;
		if ((r->flags & DHR_F_LEFT) || r->time_s + DHT_GROUP_MAX_AGE_S < now_s ||
		    !memcmp(r->cert.x_pub, d->x_pub, 32))
			continue;
		int e = gw_peer_learn(d->gw, r->cert.x_pub, &r->loc[0], r->flags & DHR_F_EDM,
		                      r->cert.prefixes, r->cert.nprefixes, &cookie);
		if (e) {
			CNT_ADD(d, learn_errors, 1);
			continue;
		}
		cookies[n++] = cookie;
	}
	if (l->is_anycast) {
		CNT_ADD(d, anycast_members, n);
		if (d->anycast_fn)
			d->anycast_fn(d->anycast_arg, &l->aprefix, cookies, n);
	} else {
		CNT_ADD(d, group_members, n);
		if (d->group_fn)
			d->group_fn(d->group_arg, l->group, cookies, n);
	}
	free(cookies);
}

/* True if a and b are the same record (a site's prefix, signed at one time). */
static bool same_rec(const struct dhr_rec *a, const struct dhr_rec *b)
{
	return !prefix_cmp(&a->prefix, &b->prefix) && a->time_s == b->time_s &&
	       !memcmp(a->cert.x_pub, b->cert.x_pub, 32);
}

/* One debug line for a prefix lookup's answer (the churn bench reads them). */
static void search_log(const struct dht_lookup *l, const char *what, const char *tail)
{
	char a[INET6_ADDRSTRLEN];
	log_msg(LOG_DEBUG,
	        "overlay: dht: lookup %s: %s in %llu ms, %u gets (%u speculative), #%u%s",
	        inet_ntop(AF_INET6, l->dst, a, sizeof(a)), what,
	        (unsigned long long)(peak_mono_ms() - l->start_ms), l->par.issued, l->par.spec,
	        l->seq, tail);
}

/* A prefix lookup answers before its end (dhr_par_answer): its answer is learned and its
 * packets go; the lookup runs on to its end (search_end), which corrects a wrong answer. */
static void search_early(struct dhts *d, struct dht_lookup *l, const struct dhr_search *r)
{
	search_log(l, "found", ", early");
	CNT_ADD(d, lookups_found, 1);
	CNT_ADD(d, early_answers, 1);
	if (learn(d, &r->best)) {
		lookup_end(d, l, false); /* the end would learn nothing more */
		return;
	}
	punch(d, r->best.cert.x_pub);
	l->answered = true;
	l->early = r->best;
	queue_flush(d, l, true);
}

/* A prefix lookup's search is over: learn its answer (or remember the miss), then the
 * packets go. After an early answer, only a different record is learned (a longer prefix,
 * or a newer record: corrected). */
static void search_end(struct dhts *d, struct dht_lookup *l, const struct dhr_search *r)
{
	bool routed = false;
	if (l->answered) {
		bool same = !r->found || same_rec(&r->best, &l->early);
		search_log(l, same ? "confirmed" : "corrected", ", after an early answer");
		if (!same) {
			CNT_ADD(d, corrected_answers, 1);
			if (!learn(d, &r->best))
				punch(d, r->best.cert.x_pub);
		}
		lookup_end(d, l, true); /* the early answer's route, or the new one */
		return;
	}
	search_log(l, r->found ? "found" : "none", "");
	if (r->found) {
		CNT_ADD(d, lookups_found, 1);
		routed = !learn(d, &r->best);
		if (routed)
			punch(d, r->best.cert.x_pub);
	} else {
		if (r->gets >= DHR_MAX_GETS)
			CNT_ADD(d, lookups_gave_up, 1);
		else
			CNT_ADD(d, lookups_missed, 1);
		neg_add(d, false, l->dst, 16);
	}
	lookup_end(d, l, routed);
}

/* Starts the gets l's search wants (speculative ones only while a quarter of the buffers
 * stays free: one for each lookup's next step), then ends l if its search is over. */
static void search_pump(struct dhts *d, struct dht_lookup *l)
{
	uint8_t key[DHR_KEY_LEN];
	uint32_t id;
	struct dht_get *g;
	if (l->slow)
		dhr_par_speculate(&l->par);
	while ((g = get_new(d)) &&
	       dhr_par_want(&l->par, DHT_GET_BUFS - d->gets_busy > DHT_MAX_LOOKUPS, key, &id))
		dht_get(d, l, g, key, id);
	const struct dhr_search *r = dhr_par_result(&l->par);
	if (r)
		search_end(d, l, r);
	else if (!l->answered && (r = dhr_par_answer(&l->par)))
		search_early(d, l, r);
}

/* An id lookup's new values (recs, n), and its get's end if done: the site's records are
 * learned as they come (none older than one learned already), so the gateway's packets held
 * for it go at its first record, not at the get's end (which waits for OpenDHT to give up on
 * dead nodes); a miss is remembered at the end. */
static void id_take(struct dhts *d, struct dht_lookup *l, const struct dhr_rec *recs, unsigned n,
                    bool done)
{
	for (unsigned i = 0; i < n; i++) {
		if (memcmp(recs[i].cert.x_pub, l->id, 8) || recs[i].time_s < l->id_time_s ||
		    learn(d, &recs[i]))
			continue;
		if (!l->answered)
			log_msg(LOG_DEBUG,
			        "overlay: dht: id lookup dht-%02x%02x%02x%02x: found in %llu ms",
			        l->id[0], l->id[1], l->id[2], l->id[3],
			        (unsigned long long)(peak_mono_ms() - l->start_ms));
		l->answered = true;
		l->id_time_s = recs[i].time_s;
	}
	if (!done)
		return;
	log_msg(LOG_DEBUG, "overlay: dht: id lookup dht-%02x%02x%02x%02x: ended in %llu ms",
	        l->id[0], l->id[1], l->id[2], l->id[3],
	        (unsigned long long)(peak_mono_ms() - l->start_ms));
	if (l->answered) {
		CNT_ADD(d, lookups_found, 1);
	} else {
		CNT_ADD(d, lookups_missed, 1);
		neg_add(d, true, l->id, 8);
	}
	lookup_end(d, l, l->answered);
}

/* New values (recs, n) of get g, and its end if done: the search takes them; an id lookup
 * learns them (id_take); a re-resolve or group lookup ends with its get. */
static void get_event(struct dhts *d, struct dht_get *g, const struct dhr_rec *recs, unsigned n,
                      bool done)
{
	struct dht_lookup *l = g->l;
	bool mine = l->used && l->gen == g->gen;
	if (done) {
		for (int i = 0; i < R_NREASONS; i++)
			if (g->refused[i]) {
				CNT_ADD(d, refused[i], g->refused[i]);
				log_rl(&d->rl_refused, LOG_WARNING,
				       "overlay: dht: refused %u value(s) from the DHT: %s",
				       g->refused[i], refuse_names[i]);
			}
		g->l = NULL;
		d->gets_busy--;
	}
	if (!mine)
		return; /* its lookup has ended: a superseded get */
	CNT_ADD(d, accepted, n);
	if (is_search(l)) {
		bool known = (!n || dhr_par_value(&l->par, g->id, recs, n)) &&
		             (!done || dhr_par_done(&l->par, g->id));
		if (!known && !done) {
			pthread_mutex_lock(&d->get_mu);
			g->stop = true; /* superseded: OpenDHT may stop it */
			pthread_mutex_unlock(&d->get_mu);
		}
		search_pump(d, l);
		return;
	}
	if (l->is_id && !l->reresolve) {
		id_take(d, l, recs, n, done);
		return;
	}
	if (!done)
		return;
	if (l->is_group) {
		group_found(d, l);
		lookup_end(d, l, false);
		return;
	}
	if (l->reresolve) {
		reresolved(d, l, recs, n);
		lookup_end(d, l, false);
		return;
	}
}

/* A prefix lookup's get g ended (first_ms: its first value's time, 0 if none): one debug
 * line with its times from its lookup's start, for the churn bench (dht_churn.py). */
static void get_log(const struct dht_get *g, uint64_t first_ms)
{
	const struct dht_lookup *l = g->l;
	bool mine = l->used && l->gen == g->gen;
	char first[24] = "-";
	if (first_ms)
		snprintf(first, sizeof(first), "%llu",
		         (unsigned long long)(first_ms - g->start_ms));
	log_msg(
	    LOG_DEBUG,
	    "overlay: dht: lookup #%u get /%d: started at %llu ms, %u value(s), first in %s ms, "
	    "ended in %llu ms%s",
	    g->seq, g->len, (unsigned long long)(mine ? g->start_ms - l->start_ms : 0), g->nrec,
	    first, (unsigned long long)(peak_mono_ms() - g->start_ms), mine ? "" : " (superseded)");
}

/* tfd fired: each prefix lookup with a get unanswered DHT_SPEC_MS (no value yet) speculates
 * from now on; a get of a lookup not answered yet that has gone DHT_ASSUME_MS without a hit
 * is assumed absent (dhr_par_assume: the lookup may answer early). tfd is armed again for
 * the next such deadline. */
static void spec_check(struct dhts *d)
{
	uint64_t now = peak_mono_ms(), next = 0;
	d->tfd_at_ms = 0;
	for (unsigned i = 0; i < DHT_GET_BUFS; i++) {
		struct dht_get *g = &d->getbufs[i];
		uint64_t at = 0;
		if (!g->l || !is_search(g->l) || g->l->gen != g->gen)
			continue;
		struct dht_lookup *l = g->l;
		if (!l->slow && !g->seen) {
			if (now >= g->start_ms + DHT_SPEC_MS) {
				l->slow = true;
				search_pump(d, l);
			} else {
				at = g->start_ms + DHT_SPEC_MS;
			}
		}
		if (!g->assumed && g->l == l && l->used && l->gen == g->gen && !l->answered) {
			if (now >= g->start_ms + DHT_ASSUME_MS) {
				g->assumed = true;
				if (dhr_par_assume(&l->par, g->id)) {
					l->slow = true;
					search_pump(d, l);
				}
			} else if (!at) {
				at = g->start_ms + DHT_ASSUME_MS;
			}
		}
		if (at && (!next || at < next))
			next = at;
	}
	if (next)
		spec_arm(d, next);
}

static void dht_readable(struct ov_slave *s, int fd)
{
	struct dhts *d = s->priv;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	if (fd == d->tfd) {
		spec_check(d);
		return;
	}
	struct dhr_rec in[DHT_INBOX];
	unsigned nin, lost;
	pthread_mutex_lock(&d->inbox_mu);
	nin = d->ninbox;
	memcpy(in, d->inbox, nin * sizeof(in[0]));
	lost = d->inbox_lost;
	d->ninbox = d->inbox_lost = 0;
	pthread_mutex_unlock(&d->inbox_mu);
	for (unsigned i = 0; i < nin; i++)
		if (memcmp(in[i].cert.x_pub, d->x_pub, 32)) {
			CNT_ADD(d, punch_heard, 1);
			learn(d, &in[i]); /* the gateway's next keepalive goes out to it */
		}
	if (lost)
		log_rl(&d->rl_refused, LOG_WARNING,
		       "overlay: dht: %u record(s) on our id key "
		       "dropped (inbox full)",
		       lost);
	unsigned busy = d->gets_busy;
	for (unsigned i = 0; i < DHT_GET_BUFS; i++) {
		struct dht_get *g = &d->getbufs[i];
		static struct dhr_rec recs[DHT_MAX_VALUES]; /* the loop's thread only */
		unsigned n = 0;
		uint64_t first_ms;
		bool done;
		if (!g->l)
			continue;
		pthread_mutex_lock(&d->get_mu);
		if (!g->dirty) {
			pthread_mutex_unlock(&d->get_mu);
			continue;
		}
		g->dirty = false;
		done = g->done;
		first_ms = g->first_ms;
		/* re-resolves and group lookups take their values at the end */
		if (done || is_search(g->l) || (g->l->is_id && !g->l->reresolve)) {
			n = g->nrec - g->seen;
			memcpy(recs, g->recs + g->seen, n * sizeof(recs[0]));
			g->seen = g->nrec;
		}
		pthread_mutex_unlock(&d->get_mu);
		if (done && g->len >= 0)
			get_log(g, first_ms);
		get_event(d, g, recs, n, done);
	}
	if (d->gets_busy < busy) /* buffers freed: steps that waited for one may start */
		for (unsigned i = 0; i < DHT_MAX_LOOKUPS; i++)
			if (is_search(&d->lookups[i]))
				search_pump(d, &d->lookups[i]);
}

static int dht_output(struct ov_slave *s, uint32_t cookie, const uint8_t *pkt, size_t len)
{
	struct dhts *d = s->priv;
	(void)cookie;
	const uint8_t *dst = pkt + 24;
	if (dst[0] == 0xff)
		return -ENETUNREACH; /* multicast is nobody's prefix (RFC 4291 §2.7) */
	if (neg_cached(d, false, dst, 16, peak_mono_ms())) {
		CNT_ADD(d, neg_hits, 1);
		ov_master_unreach(d->m, pkt, len);
		return 0;
	}
	struct dht_lookup *l = NULL;
	for (unsigned i = 0; i < DHT_MAX_LOOKUPS && !l; i++)
		if (is_search(&d->lookups[i]) && !memcmp(d->lookups[i].dst, dst, 16))
			l = &d->lookups[i];
	if (!l) {
		if (!(l = lookup_new(d))) {
			CNT_ADD(d, busy_drops, 1);
			return -ENOBUFS;
		}
		memcpy(l->dst, dst, 16);
		if (d->dc->lookup == DHR_LENGTHS) {
			struct dhr_lens lens;
			memcpy(lens.m, d->dc->lengths, sizeof(lens.m));
			dhr_par_init_lengths(&l->par, dst, &lens);
		} else {
			dhr_par_init(&l->par, dst, (enum dhr_mode)d->dc->lookup);
		}
		search_pump(d, l); /* (no free buffer: it starts when one is freed) */
	}
	if (len > 0xffff || l->qlen + 2 + len > sizeof(l->queue)) {
		CNT_ADD(d, queue_drops, 1);
		return -ENOBUFS;
	}
	l->queue[l->qlen] = (uint8_t)(len >> 8);
	l->queue[l->qlen + 1] = (uint8_t)len;
	memcpy(l->queue + l->qlen + 2, pkt, len);
	l->qlen += 2 + len;
	CNT_ADD(d, queued, 1);
	return 0;
}

/* True if an id lookup may start now (DHT_ID_RATE a second; the caller takes the token). */
static bool id_token(struct dhts *d, uint64_t now)
{
	d->id_tokens += (double)(now - d->id_tokens_ms) * DHT_ID_RATE / 1000.0;
	d->id_tokens_ms = now;
	if (d->id_tokens > DHT_ID_RATE)
		d->id_tokens = DHT_ID_RATE;
	return d->id_tokens >= 1.0;
}

/* The gateway got a packet from an unknown sender id: look the site up (rate-limited, one
 * lookup per id at a time, misses remembered). */
static void resolve_id(void *arg, const uint8_t id[8])
{
	struct dhts *d = arg;
	uint64_t now = peak_mono_ms();
	if (neg_cached(d, true, id, 8, now))
		return;
	for (unsigned i = 0; i < DHT_MAX_LOOKUPS; i++)
		if (d->lookups[i].used && d->lookups[i].is_id && !memcmp(d->lookups[i].id, id, 8))
			return;
	if (!id_token(d, now))
		return;
	struct dht_get *g = get_new(d);
	struct dht_lookup *l = g ? lookup_new(d) : NULL;
	if (!l)
		return;
	d->id_tokens -= 1.0;
	l->is_id = true;
	memcpy(l->id, id, 8);
	uint8_t key[DHR_KEY_LEN];
	dhr_key_id(id, key);
	CNT_ADD(d, id_lookups, 1);
	dht_get(d, l, g, key, 0);
}

/* Looks each peer the gateway has an endpoint for and heard from once, but not for two
 * keepalive periods and DHT_SILENT_SLACK_MS, up again by its id: an idle peer that moved,
 * whose packets our NAT drops, is found at its new locator (reresolved). Again after twice
 * the wait each time, up to DHT_RERESOLVE_MAX_MS, while it stays silent; a packet of its
 * (authenticated, direct or relayed) starts over. Shares the id lookups' rate limit, and
 * holds at most DHT_RERESOLVE_SLOTS lookups at once. */
static void reresolve_silent(struct dhts *d, uint64_t now)
{
	uint64_t silent_ms = 2000ULL * d->conf->keepalive_s + DHT_SILENT_SLACK_MS;
	size_t n = gw_peer_count(d->gw);
	for (size_t i = 0; i < n && i < d->npeers; i++) {
		struct dht_peer *q = &d->peers[i];
		struct gw_peer_info info;
		if (gw_peer_info(d->gw, (uint32_t)i, &info) || !info.has_ep || !info.last_rx_ms ||
		    q->busy)
			continue;
		if (now < silent_ms || gw_peer_answered(d->gw, (uint32_t)i, now - silent_ms)) {
			q->next_ms = 0; /* heard lately */
			continue;
		}
		if (!q->next_ms) { /* silent from now on: the first look-up at once */
			q->next_ms = now;
			q->backoff_ms = silent_ms;
		}
		if (now < q->next_ms)
			continue;
		uint8_t pub[32];
		if (d->reresolving >= DHT_RERESOLVE_SLOTS)
			return;
		if (gw_peer_pub(d->gw, (uint32_t)i, pub) || !id_token(d, now))
			continue;
		struct dht_get *g = get_new(d);
		struct dht_lookup *l = g ? lookup_new(d) : NULL;
		if (!l)
			return;
		d->reresolving++;
		d->id_tokens -= 1.0;
		l->is_id = l->reresolve = true;
		l->cookie = (uint32_t)i;
		memcpy(l->id, pub, 8);
		q->busy = true;
		q->next_ms = now + q->backoff_ms;
		q->backoff_ms = q->backoff_ms * 2 > DHT_RERESOLVE_MAX_MS ? DHT_RERESOLVE_MAX_MS
		                                                         : q->backoff_ms * 2;
		uint8_t key[DHR_KEY_LEN];
		dhr_key_id(pub, key);
		CNT_ADD(d, reresolves, 1);
		dht_get(d, l, g, key, 0);
	}
}

static void dht_timer(struct ov_slave *s, uint64_t now)
{
	struct dhts *d = s->priv;
	bool failed = __atomic_load_n(&d->put_failed, __ATOMIC_RELAXED);
	if (failed && d->next_publish_ms > now + DHT_RETRY_MS) /* publish() clears failed */
		d->next_publish_ms = now + DHT_RETRY_MS;
	if (now >= d->next_publish_ms) {
		if (failed && now >= d->next_bootstrap_ms) { /* maybe no node answered yet */
			bootstrap(d);
			d->next_bootstrap_ms = now + 2 * DHT_RETRY_MS;
		}
		publish(d);
		d->next_publish_ms = now + DHT_REPUBLISH_S * 1000;
		d->next_anycast_ms = now; /* a retry or a new mapping: these too */
	}
	if (d->dc->nanycast && now >= d->next_anycast_ms) {
		anycast_publish(d);
		d->next_anycast_ms = now + DHT_GROUP_REPUBLISH_S * 1000;
	}
	reresolve_silent(d, now);
	uint64_t answer_ms = DHT_ANSWER_MS + 2000ULL * d->conf->keepalive_s;
	for (unsigned i = 0; i < DHT_MAX_ROUTES; i++) {
		struct dht_route *r = &d->routes[i];
		if (!r->expires_ms)
			continue;
		if (r->learned_ms && gw_peer_answered(d->gw, r->cookie, r->learned_ms))
			r->learned_ms = 0;
		bool silent = r->learned_ms && now - r->learned_ms >= answer_ms;
		if (r->expires_ms <= now || silent) {
			ov_route_del(d->m, &r->p); /* looked up again on the next packet */
			r->expires_ms = 0;
			if (silent)
				CNT_ADD(d, routes_silent, 1);
			else
				CNT_ADD(d, routes_expired, 1);
		}
	}
}

static int dht_attach(struct ov_slave *s, struct ov_master *m)
{
	struct dhts *d = s->priv;
	int ret;
	d->m = m;
	d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->efd == -1)
		return -errno;
	if ((ret = ov_master_watch(m, d->efd, s)))
		return ret;
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->tfd == -1)
		return -errno;
	if ((ret = ov_master_watch(m, d->tfd, s)))
		return ret;
	struct prefix all = {.family = PEAK_AFI_IP6, .len = 0};
	if ((ret = ov_route_add(m, &all, s, 0)))
		return ret;
	dht_runner_config cfg;
	dht_runner_config_default(&cfg);
	cfg.dht_config.node_config.network = d->dc->network;
	cfg.threaded = true;
	cfg.log = false;
	if (!(d->runner = dht_runner_new()))
		return -ENOMEM;
	if ((ret = dht_runner_run_config(d->runner, (in_port_t)d->dc->port, &cfg))) {
		log_msg(LOG_ERR, "overlay: dht: OpenDHT on port %u: %s", d->dc->port,
		        strerror(ret > 0 ? ret : -ret));
		return ret > 0 ? -ret : ret ? ret : -EIO;
	}
	bootstrap(d);
	uint8_t idk[DHR_KEY_LEN];
	dht_infohash ih;
	dhr_key_id(d->x_pub, idk);
	dht_infohash_get(&ih, idk, DHR_KEY_LEN);
	d->listen = dht_runner_listen(d->runner, &ih, on_listen, NULL, d);
	d->id_tokens = DHT_ID_RATE;
	d->id_tokens_ms = peak_mono_ms();
	publish(d);
	d->next_publish_ms = peak_mono_ms() + DHT_REPUBLISH_S * 1000;
	dht_infohash nid = dht_runner_get_node_id(d->runner);
	log_msg(
	    LOG_INFO, "overlay: dht: OpenDHT %s on port %u, network %u, node %s, %zu prefix(es)",
	    dht_version(), d->dc->port, d->dc->network, dht_infohash_print(&nid), d->dc->nprefixes);
	return 0;
}

static void dht_detach(struct ov_slave *s)
{
	struct dhts *d = s->priv;
	if (d->runner) { /* joins OpenDHT's threads: no callback runs after this */
		if (d->listen)
			dht_op_token_delete(d->listen);
		d->listen = NULL;
		dht_runner_delete(d->runner);
		d->runner = NULL;
	}
	if (d->efd != -1) {
		ov_master_unwatch(d->m, d->efd);
		close(d->efd);
		d->efd = -1;
	}
	if (d->tfd != -1) {
		ov_master_unwatch(d->m, d->tfd);
		close(d->tfd);
		d->tfd = -1;
	}
}

static void dht_stats(struct ov_slave *s, struct mbuf *b)
{
	struct dhts *d = s->priv;
	mbuf_printf(
	    b,
	    "# TYPE peak_overlay_dht_lookups_total counter\n"
	    "peak_overlay_dht_lookups_total{result=\"found\"} %llu\n"
	    "peak_overlay_dht_lookups_total{result=\"miss\"} %llu\n"
	    "peak_overlay_dht_lookups_total{result=\"gave_up\"} %llu\n"
	    "# TYPE peak_overlay_dht_id_lookups_total counter\n"
	    "peak_overlay_dht_id_lookups_total %llu\n"
	    "# TYPE peak_overlay_dht_gets_total counter\n"
	    "peak_overlay_dht_gets_total %llu\n"
	    "# TYPE peak_overlay_dht_values_accepted_total counter\n"
	    "peak_overlay_dht_values_accepted_total %llu\n"
	    "# TYPE peak_overlay_dht_puts_total counter\n"
	    "peak_overlay_dht_puts_total{result=\"ok\"} %llu\n"
	    "peak_overlay_dht_puts_total{result=\"failed\"} %llu\n"
	    "# TYPE peak_overlay_dht_queued_packets_total counter\n"
	    "peak_overlay_dht_queued_packets_total %llu\n"
	    "# TYPE peak_overlay_dht_dropped_packets_total counter\n"
	    "peak_overlay_dht_dropped_packets_total{reason=\"queue_full\"} %llu\n"
	    "peak_overlay_dht_dropped_packets_total{reason=\"busy\"} %llu\n"
	    "# TYPE peak_overlay_dht_negative_hits_total counter\n"
	    "peak_overlay_dht_negative_hits_total %llu\n"
	    "# TYPE peak_overlay_dht_routes_learned_total counter\n"
	    "peak_overlay_dht_routes_learned_total %llu\n"
	    "# TYPE peak_overlay_dht_routes_expired_total counter\n"
	    "peak_overlay_dht_routes_expired_total %llu\n"
	    "# TYPE peak_overlay_dht_learn_errors_total counter\n"
	    "peak_overlay_dht_learn_errors_total %llu\n"
	    "# TYPE peak_overlay_dht_locators gauge\n"
	    "peak_overlay_dht_locators %llu\n"
	    "# TYPE peak_overlay_dht_routes_silent_total counter\n"
	    "peak_overlay_dht_routes_silent_total %llu\n"
	    "# TYPE peak_overlay_dht_punch_puts_total counter\n"
	    "peak_overlay_dht_punch_puts_total %llu\n"
	    "# TYPE peak_overlay_dht_punch_heard_total counter\n"
	    "peak_overlay_dht_punch_heard_total %llu\n"
	    "# TYPE peak_overlay_dht_move_punches_total counter\n"
	    "peak_overlay_dht_move_punches_total %llu\n"
	    "# TYPE peak_overlay_dht_reresolves_total counter\n"
	    "peak_overlay_dht_reresolves_total %llu\n"
	    "# TYPE peak_overlay_dht_reresolved_newer_total counter\n"
	    "peak_overlay_dht_reresolved_newer_total %llu\n"
	    "# TYPE peak_overlay_dht_values_refused_total counter\n",
	    (unsigned long long)CNT_GET(d, lookups_found),
	    (unsigned long long)CNT_GET(d, lookups_missed),
	    (unsigned long long)CNT_GET(d, lookups_gave_up),
	    (unsigned long long)CNT_GET(d, id_lookups), (unsigned long long)CNT_GET(d, gets),
	    (unsigned long long)CNT_GET(d, accepted), (unsigned long long)CNT_GET(d, puts_ok),
	    (unsigned long long)CNT_GET(d, puts_failed), (unsigned long long)CNT_GET(d, queued),
	    (unsigned long long)CNT_GET(d, queue_drops), (unsigned long long)CNT_GET(d, busy_drops),
	    (unsigned long long)CNT_GET(d, neg_hits),
	    (unsigned long long)CNT_GET(d, routes_learned),
	    (unsigned long long)CNT_GET(d, routes_expired),
	    (unsigned long long)CNT_GET(d, learn_errors), (unsigned long long)CNT_GET(d, locators),
	    (unsigned long long)CNT_GET(d, routes_silent),
	    (unsigned long long)CNT_GET(d, punch_puts), (unsigned long long)CNT_GET(d, punch_heard),
	    (unsigned long long)CNT_GET(d, move_punches),
	    (unsigned long long)CNT_GET(d, reresolves), (unsigned long long)CNT_GET(d, reresolved));
	mbuf_printf(
	    b,
	    "# HELP peak_overlay_dht_group_puts_total Multicast group records put "
	    "(joins and leaves).\n"
	    "# TYPE peak_overlay_dht_group_puts_total counter\n"
	    "peak_overlay_dht_group_puts_total %llu\n"
	    "# HELP peak_overlay_dht_group_lookups_total Multicast group member lookups.\n"
	    "# TYPE peak_overlay_dht_group_lookups_total counter\n"
	    "peak_overlay_dht_group_lookups_total %llu\n"
	    "# HELP peak_overlay_dht_group_members_total Member sites the group lookups "
	    "found, summed.\n"
	    "# TYPE peak_overlay_dht_group_members_total counter\n"
	    "peak_overlay_dht_group_members_total %llu\n"
	    "# HELP peak_overlay_dht_speculative_gets_total Gets of prefix lookups started "
	    "while an earlier get of the same search was unanswered.\n"
	    "# TYPE peak_overlay_dht_speculative_gets_total counter\n"
	    "peak_overlay_dht_speculative_gets_total %llu\n"
	    "# HELP peak_overlay_dht_superseded_gets_total Gets whose answer a prefix "
	    "lookup no longer needed when they were still running.\n"
	    "# TYPE peak_overlay_dht_superseded_gets_total counter\n"
	    "peak_overlay_dht_superseded_gets_total %llu\n"
	    "# HELP peak_overlay_dht_early_answers_total Prefix lookups answered before their "
	    "end: every step answered or its get assumed absent after %d ms.\n"
	    "# TYPE peak_overlay_dht_early_answers_total counter\n"
	    "peak_overlay_dht_early_answers_total %llu\n"
	    "# HELP peak_overlay_dht_corrected_answers_total Early answers the lookup's end "
	    "replaced (a longer prefix or a newer record).\n"
	    "# TYPE peak_overlay_dht_corrected_answers_total counter\n"
	    "peak_overlay_dht_corrected_answers_total %llu\n"
	    "# HELP peak_overlay_dht_anycast_puts_total Anycast member records put "
	    "(prefixes this site serves).\n"
	    "# TYPE peak_overlay_dht_anycast_puts_total counter\n"
	    "peak_overlay_dht_anycast_puts_total %llu\n"
	    "# HELP peak_overlay_dht_anycast_lookups_total Anycast member lookups.\n"
	    "# TYPE peak_overlay_dht_anycast_lookups_total counter\n"
	    "peak_overlay_dht_anycast_lookups_total %llu\n"
	    "# HELP peak_overlay_dht_anycast_members_total Member sites the anycast "
	    "lookups found.\n"
	    "# TYPE peak_overlay_dht_anycast_members_total counter\n"
	    "peak_overlay_dht_anycast_members_total %llu\n",
	    (unsigned long long)CNT_GET(d, group_puts),
	    (unsigned long long)CNT_GET(d, group_lookups),
	    (unsigned long long)CNT_GET(d, group_members),
	    (unsigned long long)CNT_GET(d, spec_gets),
	    (unsigned long long)CNT_GET(d, superseded_gets), DHT_ASSUME_MS,
	    (unsigned long long)CNT_GET(d, early_answers),
	    (unsigned long long)CNT_GET(d, corrected_answers),
	    (unsigned long long)CNT_GET(d, anycast_puts),
	    (unsigned long long)CNT_GET(d, anycast_lookups),
	    (unsigned long long)CNT_GET(d, anycast_members));
	for (int i = 0; i < R_NREASONS; i++)
		mbuf_printf(b, "peak_overlay_dht_values_refused_total{reason=\"%s\"} %llu\n",
		            refuse_names[i], (unsigned long long)CNT_GET(d, refused[i]));
}

/* "dht-route PREFIX ttl-s N" per cached mapping, then "dht lookups-in-flight N" and
 * "dht gets-in-flight N". */
static void dht_show(struct ov_slave *s, struct mbuf *b)
{
	struct dhts *d = s->priv;
	uint64_t now = peak_mono_ms();
	unsigned busy = 0;
	for (unsigned i = 0; i < DHT_MAX_ROUTES; i++) {
		struct dht_route *r = &d->routes[i];
		char ps[PREFIX_STRLEN];
		if (r->expires_ms > now)
			mbuf_printf(b, "dht-route %s ttl-s %llu\n", prefix_print(&r->p, ps),
			            (unsigned long long)((r->expires_ms - now) / 1000));
	}
	for (unsigned i = 0; i < DHT_MAX_LOOKUPS; i++)
		busy += d->lookups[i].used;
	mbuf_printf(b, "dht lookups-in-flight %u\n", busy);
	mbuf_printf(b, "dht gets-in-flight %u\n", d->gets_busy);
}

static void dht_describe(struct ov_slave *s, uint32_t cookie, char *out, size_t cap)
{
	(void)s;
	(void)cookie;
	snprintf(out, cap, "lookup");
}

void dht_set_group_cb(struct ov_slave *s, dht_group_fn fn, void *arg)
{
	struct dhts *d = s->priv;
	d->group_fn = fn;
	d->group_arg = arg;
}

int dht_group_publish(struct ov_slave *s, const uint8_t group[static 16], bool joined)
{
	struct dhts *d = s->priv;
	if (!d->runner)
		return -EAGAIN;
	struct dhr_rec r;
	uint8_t buf[DHR_REC_MAX], key[DHR_KEY_LEN];
	memset(&r, 0, sizeof(r));
	r.cert = d->cert;
	r.time_s = (uint64_t)time(NULL);
	if (r.time_s <= d->last_pub_s) /* a leave must be newer than the join it follows */
		r.time_s = d->last_pub_s + 1;
	d->last_pub_s = r.time_s;
	r.prefix = d->dc->prefixes[0];
	fill_locators(d, &r);
	r.flags |= DHR_F_GROUP | (joined ? 0 : DHR_F_LEFT);
	memcpy(r.group, group, 16);
	long n = dhr_rec_write(&r, d->seed, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	dhr_key_group(group, key);
	dht_infohash h;
	dht_infohash_get(&h, key, DHR_KEY_LEN);
	dht_value *v = dht_value_new(buf, (size_t)n);
	if (!v)
		return -ENOMEM;
	dht_runner_put(d->runner, &h, v, on_put_done, d, false);
	dht_value_unref(v);
	CNT_ADD(d, group_puts, 1);
	return 0;
}

void dht_set_anycast_cb(struct ov_slave *s, dht_anycast_fn fn, void *arg)
{
	struct dhts *d = s->priv;
	d->anycast_fn = fn;
	d->anycast_arg = arg;
}

int dht_anycast_lookup(struct ov_slave *s, const struct prefix *p)
{
	struct dhts *d = s->priv;
	if (!d->runner)
		return -EAGAIN;
	for (unsigned i = 0; i < DHT_MAX_LOOKUPS; i++)
		if (d->lookups[i].used && d->lookups[i].is_anycast &&
		    !prefix_cmp(&d->lookups[i].aprefix, p))
			return -EALREADY;
	struct dht_get *g = get_new(d);
	struct dht_lookup *l = g ? lookup_new(d) : NULL;
	if (!l)
		return -EBUSY;
	l->is_group = l->is_anycast = true;
	l->aprefix = *p;
	uint8_t key[DHR_KEY_LEN];
	dhr_key_anycast(p, key);
	CNT_ADD(d, anycast_lookups, 1);
	dht_get(d, l, g, key, 0);
	return 0;
}

int dht_group_lookup(struct ov_slave *s, const uint8_t group[static 16])
{
	struct dhts *d = s->priv;
	if (!d->runner)
		return -EAGAIN;
	for (unsigned i = 0; i < DHT_MAX_LOOKUPS; i++)
		if (d->lookups[i].used && d->lookups[i].is_group && !d->lookups[i].is_anycast &&
		    !memcmp(d->lookups[i].group, group, 16))
			return -EALREADY;
	struct dht_get *g = get_new(d);
	struct dht_lookup *l = g ? lookup_new(d) : NULL;
	if (!l)
		return -EBUSY;
	l->is_group = true;
	memcpy(l->group, group, 16);
	uint8_t key[DHR_KEY_LEN];
	dhr_key_group(group, key);
	CNT_ADD(d, group_lookups, 1);
	dht_get(d, l, g, key, 0);
	return 0;
}

static const struct ov_slave_ops dht_ops = {
    .name = "dht",
    .attach = dht_attach,
    .detach = dht_detach,
    .output = dht_output,
    .readable = dht_readable,
    .timer = dht_timer,
    .stats = dht_stats,
    .describe = dht_describe,
    .show = dht_show,
};

struct ov_slave *dht_new(const struct ov_conf *conf, struct ov_slave *gw, char *err, size_t errlen)
{
	struct dhts *d = calloc(1, sizeof(*d));
	if (!d || !(d->lookups = calloc(DHT_MAX_LOOKUPS, sizeof(*d->lookups))) ||
	    !(d->routes = calloc(DHT_MAX_ROUTES, sizeof(*d->routes))) ||
	    !(d->getbufs = calloc(DHT_GET_BUFS, sizeof(*d->getbufs))) ||
	    !(d->peers = calloc(conf->npeers + GW_MAX_LEARNED, sizeof(*d->peers)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	d->slave.ops = &dht_ops;
	d->slave.priv = d;
	d->conf = conf;
	d->dc = &conf->dht;
	d->gw = gw;
	d->npeers = conf->npeers + GW_MAX_LEARNED;
	d->efd = d->tfd = -1;
	for (unsigned i = 0; i < DHT_GET_BUFS; i++)
		d->getbufs[i].d = d;
	ovw_pubkey(conf->priv, d->x_pub);
	dhr_sign_key(conf->priv, d->seed, d->ed_pub);
	memcpy(d->cert.x_pub, d->x_pub, 32);
	memcpy(d->cert.ed_pub, d->ed_pub, 32);
	for (size_t i = 0; i < d->dc->nprefixes; i++)
		d->cert.prefixes[i] = d->dc->prefixes[i];
	d->cert.nprefixes = (uint8_t)d->dc->nprefixes;
	memcpy(d->cert.sig, d->dc->certificate, DHR_SIG_LEN);
	if (!dhr_cert_verify(&d->cert, d->dc->authority)) {
		snprintf(err, errlen,
		         "dht: certificate: not the authority's signature over this site's keys "
		         "and prefixes (in this order); make one with peak overlay --certify");
		goto fail;
	}
	gw_set_resolver(gw, resolve_id, d);
	gw_set_mapping_cb(gw, on_mapping, d);
	pthread_mutex_init(&d->inbox_mu, NULL);
	d->mu_ready = true;
	pthread_mutex_init(&d->get_mu, NULL);
	d->get_mu_ready = true;
	return &d->slave;
fail:
	if (d)
		dht_free(&d->slave);
	return NULL;
}

void dht_free(struct ov_slave *s)
{
	if (!s)
		return;
	struct dhts *d = s->priv;
	if (d->runner) {
		if (d->listen)
			dht_op_token_delete(d->listen);
		dht_runner_delete(d->runner);
	}
	d->runner = NULL;
	d->listen = NULL;
	if (d->efd != -1)
		close(d->efd);
	if (d->tfd != -1)
		close(d->tfd);
	if (d->get_mu_ready)
		pthread_mutex_destroy(&d->get_mu);
	if (d->mu_ready)
		pthread_mutex_destroy(&d->inbox_mu);
	memset(d->seed, 0, sizeof(d->seed));
	for (unsigned i = 0; d->lookups && i < DHT_MAX_LOOKUPS; i++)
		free(d->lookups[i].grecs);
	free(d->lookups);
	d->lookups = NULL;
	free(d->getbufs);
	d->getbufs = NULL;
	free(d->routes);
	d->routes = NULL;
	free(d->peers);
	d->peers = NULL;
	free(d);
}
