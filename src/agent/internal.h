#pragma once
/* peak agent's insides, shared by its files (one concern each):
 *   agent.c    the run loop, configuration load, reload, the filter, one cleanup path
 *   routes.c   the routes a node wants, local failover and drain, the sync (netlink)
 *   health.c   health checks and the watches on the pods' server processes (pidfds)
 *   ctllink.c  the controller link: connect, the challenge and hello (ctlauth), lines in
 *              and out through the control-line grammar (ctlproto), maps
 *   podload.c  the pods' load (connections, CPU, saturation) reported to the controller
 *   storewatch.c --store etcd: the service records the controllers store, followed (by
 *              a thread of its own)
 *   stats.c    the metrics endpoint's view
 *   bird.c     the BIRD 2 configuration */
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "agent.h"
#include "peak/ctlauth.h"
#include "peak/ctlproto.h"
#include "peak/ctlrt.h"
#include "peak/util.h"
#include "../sys/log.h"
#include "../sys/metrics.h"
#include "../filter/handover.h"

/* A pod's saturation as podload.c measures it (has: the accept queue was read). */
struct pod_sat {
	bool has;
	uint64_t throttled_ns;    /* CPU time its cgroup was throttled (a counter; 0: none) */
	uint32_t queued, backlog; /* its listener's accept queue now, and the queue's limit */
};

/* What the metrics endpoint shows; written by the agent's loop, read by the endpoint's
 * thread, both under the lock. */
struct agent_stats {
	pthread_mutex_t lock;
	uint64_t syncs, sync_errors, added, deleted, checks_ok, checks_failed, fast_downs;
	uint64_t conns_reset; /* connections of down pods reset once their slices moved */
	size_t routes, failover;
	double last_sync_ms;
	bool controller_up;
	struct filter_handle *filter; /* the node's XDP filter, when the config asks for one */
	const struct peak_config *cfg;
	const char *node;
	bool *healthy;       /* per local endpoint (the agent's hc order) */
	uint64_t *conns;     /* per local endpoint: established connections */
	uint64_t *cpu_ns;    /* per local endpoint: CPU time of the pod's processes */
	uint64_t *app;       /* per local endpoint: its own load figure (UINT64_MAX: none) */
	struct pod_sat *sat; /* per local endpoint: its saturation */
	uint64_t *slices;    /* per local endpoint */
	int (*who)[2];       /* per local endpoint: service, endpoint index */
	unsigned n;
	uint64_t ho_started, ho_completed, ho_active; /* handovers (handover.c) */
	uint64_t ho_packets[HC_N];                    /* the tc program's counters */
	/* --store etcd (storewatch.c): records applied, the same as in force, refused (by the
	 * check of their lines or by the agent), held while the link was up; whole reads */
	uint64_t st_applied, st_same, st_refused, st_held, st_reads;
	bool store; /* --store etcd: the metrics above are shown */
};

enum {
	HC_PROBES = 8,     /* checks in flight per endpoint at most (timeout over period) */
	HC_REPLY_MAX = 64, /* bytes of a check's reply read at once (the first one is enough) */
};

/* One check: a connection to the endpoint's port and, with a request configured, the
 * request sent on it; answered when the first byte of a reply (or an orderly close) comes
 * back before due_ms. */
struct hc_probe {
	int fd;               /* the connection, or -1 (slot free, or finished) */
	bool sent;            /* connected and the request sent: waiting for the reply */
	bool done, ok;        /* finished (answered, or failed at once) and not judged yet */
	uint64_t start_ms;    /* 0: slot free */
	uint64_t due_ms;      /* judged a miss if not answered by then */
	uint64_t conn_due_ms; /* or if not connected by then (0: no such limit) */
};

struct hc {
	int svc, ep;                   /* a local endpoint */
	const char *req;               /* the check's request (NUL-terminated), or NULL */
	struct hc_probe pr[HC_PROBES]; /* the checks in flight */
	unsigned fails, oks;           /* misses / answers in a row */
	bool up;
	uint64_t next_ms; /* when the next check starts */
	uint32_t rng;     /* xorshift state for the jitter of the period */
	int pidfd;        /* the process holding the endpoint's listening socket, or -1 */
	pid_t pid;        /* that process while pidfd watches it, else 0 */
	uint64_t find_ms; /* when to look for that process (again) */
	/* At the last miss: that process's CPU time and when it was read (0: not read), to tell
	 * a busy pod (it runs, its answers are late) from an unresponsive one (health.c). */
	uint64_t miss_cpu_ns, miss_ms;
	bool miss_ran;        /* the verdict of that reading: the pod ran since the one before */
	uint64_t row_ms;      /* when the first check of the current row of misses started */
	bool reset_due;       /* down: its connections are reset once its slices are routed
	                       * elsewhere (hc_reset_moved) */
	bool busy_logged;     /* this row of misses was logged as a busy pod's */
	unsigned unconnected; /* misses of the current row whose connection never completed */
	/* The pod's CPU time as a counter: the sum over its live processes drops when one
	 * exits, so only the rises of that sum are added up (an exited process's last
	 * interval is lost; the counter never goes down). */
	uint64_t cpu_seen, cpu_total;
	int app_err; /* the last read of its --app-load-dir figure: 0 or -errno (logged once) */
};

enum {
	CTL_IN_MAX = 16 * CTL_LINE_MAX, /* the link's input buffer: always room for a whole line */
	CTL_CHALLENGE_MS = 5000,        /* with a key: how long to wait for the challenge, and
	                                 * then again for the controller's welcome */
	CTL_BACKOFF_MIN_MS = 100,
	CTL_BACKOFF_MAX_MS = 5000,
};

/* An endpoint's id and its index in its service's list. */
struct ep_idx {
	const char *id;
	unsigned at;
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
	uint64_t ctl_lost_ms;  /* when a link that was up was last lost (0: never): a takeover
	                        * window follows (ctllink.c: ctl_next) */
	const struct ctlauth_key *key; /* --key-file's key, or NULL: plain hello */
	uint8_t cnonce[CTL_NONCE_LEN]; /* with a key: this connection's challenge */
	uint8_t anonce[CTL_NONCE_LEN]; /* with a key: our nonce the controller must prove on */
	uint8_t in[CTL_IN_MAX];
	size_t inlen;
	int cur_svc; /* the map being received, or -1 */
	struct svc_map pending;
	struct ctlrt rt; /* the add and del lines for the next map (ctllink.c) */
	/* The endpoints of cur_svc the map being received is for, when the add lines before it
	 * change them (else NULL: its endpoints stay): put in force with the map, at its end. */
	struct cfg_endpoint *pend_ep;
	unsigned pend_nep;
	struct ep_idx *pend_idx;     /* that map's endpoints sorted by id, when it has many (ctl_ep
	                              * finds each ep line's in log time), else NULL */
	bool dirty;                  /* routes must be synced */
	struct pollfd *pf;           /* signals, controller, per hc its pidfd, per hc its check */
	struct agent_drain dr;       /* failover and drain, from sync to sync */
	bool drain_main_clean;       /* the main table holds no drained route of ours (routes.c) */
	struct agent_stats st;       /* shared with the metrics endpoint's thread */
	struct log_limit rl_refused; /* refused controller lines: logged at most once a second */
	struct agent_ho *ho;         /* handovers in progress (handover.c), NULL before the first */
	uint64_t refusals;           /* lines and maps refused so far (ctl_refuse and the like) */
	bool from_store;           /* the lines handled are a stored record's (ctl_record_apply) */
	struct agent_store *store; /* --store etcd (storewatch.c), or NULL */
	struct kube *kube;         /* --source kubernetes: the services' source (kube.h), or NULL */
};

/* a->pf: signals, the controller link, the etcd thread's records (storewatch.c), the
 * Kubernetes watches (KUBE_POLLFDS), then per hc its pidfd and its checks */
enum { AGENT_PF_FIXED = 5 };

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

/* podload.c: CPU nanoseconds process pid has run (all its threads), or 0 when it cannot be
 * read; *runnable (if not NULL) says whether one of its threads is running or waiting for a
 * CPU now (state R). */
uint64_t pid_cpu_ns(pid_t pid, bool *runnable);

/* health.c: hc_close ends every check in flight; hc_round judges finished
 * and overdue checks, starts the ones due and returns when it must run next; hc_pollfds
 * fills HC_PROBES entries per endpoint (a->nhc * HC_PROBES) for the checks in flight, and
 * hc_polled advances the checks those entries report on and judges the ones that finished
 * (an answer counts at once), returning whether any did. */
void hc_close(struct hc *h);
uint64_t hc_round(struct agent *a, uint64_t now);
void hc_pollfds(const struct agent *a, struct pollfd *pf);
bool hc_polled(struct agent *a, const struct pollfd *pf);
int hc_setup(struct agent *a, const struct peak_config *old);
/* After a sync: resets the TCP connections (on its service's port, in its namespace) of
 * every local endpoint that went down and no longer has a slice routed to it, so that their
 * clients reconnect at once to the slices' new owners instead of waiting for a reply from a
 * stopped or hung pod until their own timeout. */
void hc_reset_moved(struct agent *a);
/* Puts a service's new endpoint list in force (ep, nep entries, malloc'ed: taken over; the
 * old list is freed): under the metrics lock, so the endpoint never sees the two halves.
 * old_of[e] is new endpoint e's index in the old list, or -1 (it is new). The checks, their
 * pidfd watches and metrics of the local endpoints that stay carry on as they were; those
 * of new local endpoints start afresh (up, as at start); those that went end. Returns 0,
 * or -ENOMEM with everything as it was (ep not taken). */
int hc_rebuild(struct agent *a, unsigned svc, struct cfg_endpoint *ep, unsigned nep,
               const int *old_of);
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
void ctl_load(struct agent *a, const struct hc *h, uint64_t conns, uint64_t cpu_ns, uint64_t app,
              const struct pod_sat *sat);
void ctl_tick(struct agent *a, uint64_t now);
uint64_t ctl_due_ms(const struct agent *a);
void ctl_read(struct agent *a);
/* The endpoint id of service svc (index into a->cfg): one it has, else one the add lines
 * collected for the next map name (so a handover sent before that map can name a pod that
 * map adds). Returns it (tmp may be filled and returned), or NULL. */
const struct cfg_endpoint *ctl_ep_lookup(const struct agent *a, unsigned svc, const char *id,
                                         struct cfg_endpoint *tmp);

/* At a reload, before the new configuration n is put in force: appends to its services the
 * endpoints the controller added at run time to the same-named services of old (line 0)
 * that n does not list, as they were, so their checks and the maps' routes to them carry on
 * until the controller's next map composes the list again (its add lines come with it; a
 * del line removes one). Returns 0 or -ENOMEM (n is then to be dropped). */
int rt_eps_carry(const struct peak_config *old, struct peak_config *n);
/* After a reload: moves the controller's maps in force (from the link or the store) of the
 * old configuration's services (old_maps, old->nsvc) to the new one's (maps, zeroed) for
 * every service of the same name and the same slices, matched by endpoint id, so that
 * their routes stay the controller's until it sends the maps again; the other services get
 * no map (the node's own plan). *kept and *planned count services with an endpoint on node
 * of each kind (planned only when some map was in force). */
void maps_carry(const struct peak_config *old, struct svc_map *old_maps,
                const struct peak_config *n, struct svc_map *maps, const char *node, unsigned *kept,
                unsigned *planned);
/* The index of the service named svc in the agent's configuration, or -1. */
int ctl_svc_index(const struct agent *a, const char *svc);
/* Applies one service's stored record (text, len bytes: its map, ep and end lines, then its
 * add, weight and health lines, as store_rec_check accepts them) through the link's own
 * handlers, in the link's order: the add lines, then the map (weight and health lines are
 * the controller's). Only while no map is being received on the link. Any line refused
 * (an unknown endpoint, a block outside the space, ...) refuses the whole record (logged):
 * the map in force stays. Returns 1 (applied), 0 (the same map and endpoints as in force,
 * or a service this node's file does not have), -EBADMSG (refused). */
int ctl_record_apply(struct agent *a, const char *text, size_t len);
/* storewatch.c: --store etcd. agent_store_open starts the thread that follows etcd (NULL
 * with the reason logged); agent_store_fd is readable when that thread has read records;
 * agent_store_tick (readable: that fd was) applies them, holding back the records that
 * come while the link is up until it is not (the link wins), and applies the held ones
 * once the link is down; agent_store_due_ms says when it must run next; agent_store_reset
 * drops what is held and has the thread read afresh (after a reload). None of them waits
 * for etcd; agent_store_free waits for the request under way, if any. */
struct agent_store *agent_store_open(struct agent *a);
void agent_store_free(struct agent_store *s);
int agent_store_fd(const struct agent *a);
void agent_store_tick(struct agent *a, uint64_t now, bool readable);
uint64_t agent_store_due_ms(const struct agent *a);
void agent_store_reset(struct agent *a);
/* handover.c: a controller's handover line (ctllink.c passes it on); ho_tick ends the
 * windows that are over (the deadline, or the old owner's connections on the slices gone)
 * and reads the program's counters; ho_due_ms says when it next needs to run; ho_fini
 * takes the program off and frees everything. */
void ho_line(struct agent *a, const struct ctl_msg *m);
void ho_tick(struct agent *a, uint64_t now);
uint64_t ho_due_ms(const struct agent *a);
/* Ends every handover naming endpoint id as its old or new owner (the endpoint went down
 * here: a dead new owner would refuse the connection starts sent to it until the deadline;
 * a dead old owner has no connections left to keep). Ids are matched in every service. */
void ho_endpoint_down(struct agent *a, const char *id);
void ho_fini(struct agent *a);

/* podload.c: measures every local pod's load, records it and reports it to the controller. */
void pod_load_round(struct agent *a);
