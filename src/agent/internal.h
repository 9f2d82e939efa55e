#pragma once
/* peak agent's insides, shared by its files (one concern each):
 *   agent.c    the run loop, configuration load, reload, the filter, one cleanup path
 *   routes.c   the routes a node wants, local failover and drain, the sync (netlink)
 *   health.c   health checks and the watches on the pods' server processes (pidfds)
 *   ctllink.c  the controller link: connect, the challenge and hello (ctlauth), lines in
 *              and out through the control-line grammar (ctlproto), maps
 *   podload.c  the pods' load (connections, CPU) reported to the controller
 *   stats.c    the metrics endpoint's view
 *   bird.c     the BIRD 2 configuration */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "agent.h"
#include "peak/ctlauth.h"
#include "peak/ctlproto.h"
#include "peak/util.h"
#include "../sys/log.h"
#include "../sys/metrics.h"

/* What the metrics endpoint shows; written by the agent's loop, read by the endpoint's
 * thread, both under the lock. */
struct agent_stats {
	pthread_mutex_t lock;
	uint64_t syncs, sync_errors, added, deleted, checks_ok, checks_failed, fast_downs;
	size_t routes, failover;
	double last_sync_ms;
	bool controller_up;
	struct filter_handle *filter; /* the node's XDP filter, when the config asks for one */
	const struct peak_config *cfg;
	const char *node;
	bool *healthy;    /* per local endpoint (the agent's hc order) */
	uint64_t *conns;  /* per local endpoint: established connections */
	uint64_t *cpu_ns; /* per local endpoint: CPU time of the pod's processes */
	uint64_t *slices; /* per local endpoint */
	int (*who)[2];    /* per local endpoint: service, endpoint index */
	unsigned n;
};

struct hc {
	int svc, ep; /* a local endpoint */
	int fd;      /* the check in flight, or -1 */
	unsigned fails, oks;
	bool up, started;
	bool ok;          /* the last check's connect completed (judged at next_ms) */
	uint64_t next_ms; /* when the check in flight is judged and the next one starts */
	int pidfd;        /* the process holding the endpoint's listening socket, or -1 */
	uint64_t find_ms; /* when to look for that process (again) */
	/* The pod's CPU time as a counter: the sum over its live processes drops when one
	 * exits, so only the rises of that sum are added up (an exited process's last
	 * interval is lost; the counter never goes down). */
	uint64_t cpu_seen, cpu_total;
};

enum {
	CTL_IN_MAX = 16 * CTL_LINE_MAX, /* the link's input buffer: always room for a whole line */
	CTL_CHALLENGE_MS = 5000,        /* with a key: how long to wait for the challenge, and
	                                 * then again for the controller's welcome */
	CTL_BACKOFF_MIN_MS = 100,
	CTL_BACKOFF_MAX_MS = 5000,
};

/* Where the controller link is. */
enum ctl_link {
	LINK_DOWN = 0,  /* no connection */
	LINK_CHALLENGE, /* connected with a key: waiting for "challenge NONCE" */
	LINK_WELCOME,   /* with a key: hello sent with our nonce; waiting for the controller's
	                 * proof ("welcome PROOF"), nothing else is taken before it */
	LINK_HELLO,     /* hello sent; nothing from the controller since (it may refuse it) */
	LINK_UP,        /* the controller sent a map after the hello (or proved the key): it
	                 * took the hello */
};

struct agent {
	const struct agent_opts *o;
	struct peak_config *cfg;
	struct svc_map *maps;
	struct hc *hc;
	unsigned nhc;
	int ctl; /* controller connection, or -1 */
	enum ctl_link link;
	uint64_t retry_ms;     /* when to try the controller again (link down) */
	uint64_t challenge_ms; /* when to give up waiting for the challenge or the welcome */
	unsigned backoff_ms;   /* the next retry's delay: doubles on each failure, up to 5 s */
	unsigned ctl_cur;      /* the --controller address in use (ctllink.c: ctl_addr) */
	unsigned ctl_failed;   /* addresses that failed since a link was last up (a round) */
	const struct ctlauth_key *key; /* --key-file's key, or NULL: plain hello */
	uint8_t cnonce[CTL_NONCE_LEN]; /* with a key: this connection's challenge */
	uint8_t anonce[CTL_NONCE_LEN]; /* with a key: our nonce the controller must prove on */
	uint8_t in[CTL_IN_MAX];
	size_t inlen;
	int cur_svc; /* the map being received, or -1 */
	struct svc_map pending;
	bool dirty;                  /* routes must be synced */
	struct pollfd *pf;           /* signals, controller, per hc its pidfd, per hc its check */
	struct agent_drain dr;       /* failover and drain, from sync to sync */
	struct agent_stats st;       /* shared with the metrics endpoint's thread */
	struct log_limit rl_refused; /* refused controller lines: logged at most once a second */
};

static inline double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* stats.c: renders the metrics (arg: the struct agent_stats); forgets the endpoints (at exit,
 * or before the configuration they point into goes). */
void agent_stats_render(struct mbuf *b, void *arg);
void agent_stats_clear(struct agent_stats *st);

/* routes.c: one full sync of the node and its pods. Returns 0 or -1 (logged). */
int agent_sync_all(struct agent *a);

/* health.c */
void hc_close(struct hc *h);
bool hc_collect(struct hc *h);
uint64_t hc_round(struct agent *a, uint64_t now);
int hc_setup(struct agent *a, const struct peak_config *old);
void watch_start(struct agent *a, struct hc *h, uint64_t now);
void watch_fired(struct agent *a, unsigned i);
void watch_stop_all(struct agent *a);

/* ctllink.c: the controller link. ctl_tick connects when a retry is due and gives up on a
 * challenge that does not come; ctl_due_ms says when it next needs to run (UINT64_MAX:
 * only on input). ctl_drop closes the link, the next attempt at retry_ms. ctl_health and
 * ctl_load report a local endpoint (index into a->hc), once the hello is sent. */
void maps_free(struct svc_map *v, unsigned n);
void ctl_map_reset(struct agent *a);
void ctl_drop(struct agent *a, uint64_t retry_ms);
void ctl_health(struct agent *a, const struct hc *h);
void ctl_load(struct agent *a, const struct hc *h, uint64_t conns, uint64_t cpu_ns);
void ctl_tick(struct agent *a, uint64_t now);
uint64_t ctl_due_ms(const struct agent *a);
void ctl_read(struct agent *a);

/* podload.c: measures every local pod's load, records it and reports it to the controller. */
void pod_load_round(struct agent *a);
