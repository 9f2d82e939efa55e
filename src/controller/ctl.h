#pragma once
/*
 * The controller's private parts, shared by its files: controller.c (the run loop, health,
 * weights, reloads, agents, metrics), link.c (per-peer output queues and line input, the
 * peak dns exchange), state.c (maps as text, saving the state and adopting it), store_*.c
 * (the datastores behind store.h) and control.c (the operator's control socket).
 * Everything runs on the loop's thread; the metrics thread reads the services under
 * ctl.lock.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controller.h"
#include "peak/assign.h"
#include "peak/config.h"
#include "peak/ctlauth.h"
#include "peak/ctlproto.h"
#include "steer.h"
#include "store.h"

enum {
	MAX_AGENTS = 64,
	MAX_CLIENTS = 8,      /* operator connections on the control socket at once */
	OUTQ_MAX_B = 8 << 20, /* bytes queued for one peer, some still waiting, before it is
	                       * dropped (one message to an empty queue is taken whole) */
	DRAIN_MS = 5000,      /* a peer whose queue made no progress this long is dropped */
	HELLO_MS = 10000,     /* a peer must say a valid hello within this */
	CLIENT_MS = 5000,     /* an operator client's whole exchange */
	DNS_MS = 2000,        /* one notification to peak dns: connect, send, reply */
	DNS_QUEUE_MAX = 1024, /* notifications waiting for peak dns */
	STALE_UP_MS = 2000,   /* see adopt(): the grace for a saved "down" after a hello */
	LOG_BURST = 10,       /* peer-caused log lines per second */
	POLL_TICK_MS = 250,
	AGENT_TTL_DEF_S = 2, /* --agent-ttl */
};

enum { STEER_RATE_MIN_MS = 200 }; /* CPU rates are taken over at least this long */

/* What the agents last reported of one endpoint, for steering (steer_ctl.c). */
struct steer_load {
	uint64_t at_ms;            /* when the last report came (0: none yet) */
	uint64_t rate_ms, rate_ns; /* the CPU counter at the start of the rate's window */
	uint64_t cpu_ns_s;         /* CPU ns per second over the last window, */
	uint64_t win_ms;           /* which began then */
	bool has_cpu;
	bool has_app;
	uint64_t app;
	uint64_t rate_thr;    /* the throttled counter at the start of the rate's window */
	bool has_thr;         /* thr_pm is known (the agent reports saturation; two reports) */
	uint32_t thr_pm;      /* per mille of the last window's wall time the pod was throttled */
	bool has_queue;       /* the last report had an accept queue figure (BACKLOG > 0) */
	uint32_t queue_pm;    /* its fill, per mille of the backlog */
	uint8_t backoff;      /* steering: probes in a row that ended in a saturated shed */
	struct steer_mem mem; /* steering: what the step remembers between rounds (steer.h) */
};

struct csvc {
	const struct cfg_service *s;
	struct assign a;
	bool have;
	bool adopted; /* the assignment came from the store (else the initial one) */
	int *slot;    /* per endpoint: assignment slot, -1 when out */
	bool *healthy;
	uint32_t *weight;         /* per endpoint: the weight the assignment and peak dns hold:
	                           * the live weight (config, or the operator's); while
	                           * steering, the effective weight on the fine scale (steer.h) */
	bool steer;               /* --steer metrics: weight is effective, ceil the live one */
	uint32_t *ceil;           /* per endpoint, steering: the live weight (the ceiling) */
	struct steer_load *load;  /* per endpoint: the agents' reports as steering reads them */
	uint8_t *reason;          /* per endpoint: enum steer_reason of its last change */
	uint32_t *quiet;          /* per endpoint: steering rounds since its weight changed */
	uint64_t steer_ms;        /* the last steering round that read fresh reports */
	uint64_t changed_ms;      /* the last steering change (what came before is stale) */
	uint64_t *stale;          /* per endpoint: a saved "down" not yet confirmed: bring it up at
	                           * this time (0: none, UINT64_MAX: its agent has not said hello) */
	uint64_t *conns, *cpu_ns; /* per endpoint: the last load its agent reported */
	char name[DNS_NAME_STRLEN];
	/* The service's record as saved (ctlr_svc_text), kept between saves so that a save
	 * writes out only the services that changed; rec_ok false: it must be written anew
	 * (ctlr_svc_dirty after any change of its map, weights or health). */
	char *rec;
	size_t reclen;
	bool rec_ok;
};

/* The services of a configuration by name (lower-cased, hashed): lookups in O(1) where a
 * scan of 10,000 services per line or per service made reloads quadratic. */
struct name_index {
	uint32_t *slot; /* service index + 1; 0: empty */
	uint32_t mask;
	const struct peak_config *cfg;
};

struct outq {
	char *p;
	size_t len, off, cap;
	uint64_t since_ms; /* when it last made progress or became non-empty */
};

struct rt_batch;

struct peer {
	int fd;
	bool agent;   /* an agent (else an operator client) */
	bool hello;   /* agents: said a valid hello */
	bool closing; /* clients: close once the reply is out */
	char node[CTL_ID_MAX];
	uint8_t nonce[CTL_NONCE_LEN];
	uint64_t born_ms;
	char in[CTL_LINE_MAX];
	size_t inlen;
	struct outq q;
	struct rt_batch *batch; /* clients: a batch being received (runtime.c), or NULL */
};

struct dnsq {
	char *line[DNS_QUEUE_MAX];
	unsigned head, n;
	int fd;
	size_t off;
	bool sent;
	uint64_t deadline_ms;
	char reply[CTL_LINE_MAX];
	size_t rlen;
};

struct ctl {
	const struct controller_opts *o;
	pthread_mutex_t lock; /* the metrics thread reads what the loop writes */
	struct peak_config *cfg;
	struct csvc *svc;
	struct peer agents[MAX_AGENTS];
	struct peer clients[MAX_CLIENTS];
	struct dnsq dns;
	struct ctlauth_key key;
	bool auth;
	struct store *store; /* where the live state is kept (store.h) */
	bool leader;         /* this controller leads: it listens for agents, pushes, saves */
	int64_t term;        /* the store's term when this controller took the lead */
	bool stale_store;    /* a save was refused (another writer): check the lead at once */
	bool unsaved;        /* the last save did not reach the store: try again */
	uint64_t store_next; /* when the next keepalive and watch are due */
	uint64_t lead_ms;    /* when this controller took the lead */
	bool nodes_judged;   /* since then, nodes whose registration lapsed were looked for */
	int lfd;             /* the agents' listener while leading, else -1 */

	bool copy_exact;         /* a standby: the services are what a load of the store gives */
	uint64_t store_reads;    /* loads of the whole stored state (metrics; under lock) */
	uint64_t store_changes;  /* records a standby applied from the store's changes (idem) */
	uint64_t reload_rebuilt; /* services reloads built anew (idem; the others were kept) */

	uint64_t log_s;
	unsigned log_n;
	unsigned nagents; /* agents that said hello: written by the loop under lock */

	bool steer;            /* --steer metrics */
	uint64_t steer_next;   /* when the next steering round is due */
	struct kube *kube;     /* --source kubernetes (src/k8s/kube.h), else NULL */
	struct name_index idx; /* c->cfg's services by name (ctlr_svc_find) */
	bool ho_quiet;         /* handovers logged one line per service, not per pair (a
	                        * batch: 1,000 lines of log were a third of its time) */
};

struct kube;

struct text {
	char *p;
	size_t len, cap;
	int err;
};

/* link.c: time, text, peer queues and input, the peak dns exchange */
uint64_t ctlr_now_ms(void);
void ctlr_copy(char *dst, size_t cap, const char *src);
bool ctlr_log_ok(struct ctl *c);
void ctlr_text_add(struct text *t, const char *s, size_t n);
void ctlr_text_msg(struct text *t, const struct ctl_msg *m);
void ctlr_peer_close(struct peer *p);
int ctlr_peer_flush(struct peer *p, uint64_t now);
int ctlr_peer_send(struct ctl *c, struct peer *p, const char *s, size_t n);
void ctlr_agent_drop(struct ctl *c, struct peer *a, const char *why);
int ctlr_agent_welcome(struct ctl *c, struct peer *a, const struct ctl_msg *hello);
void ctlr_peer_read(struct ctl *c, struct peer *p,
                    int (*fn)(struct ctl *, struct peer *, const char *, size_t));
void ctlr_dns_pop(struct dnsq *d);
void ctlr_dns_tell(struct ctl *c, const struct ctl_msg *m);
void ctlr_dns_step(struct ctl *c, short revents, uint64_t now);

/* state.c: maps as text, the state file, adoption */
void ctlr_map_text(const struct csvc *v, struct text *t);
void ctlr_svc_text(const struct csvc *v, struct text *t);
int ctlr_state_text(const struct ctl *c, struct text *t);
void ctlr_state_save(struct ctl *c);
int ctlr_file_read(const char *path, char **out, size_t *len);
int ctlr_ep_index(const struct cfg_service *s, const char *id);
/* ctlr_ep_index trying hint first (endpoints mostly keep their order): O(1) when it hits. */
int ctlr_ep_index_at(const struct cfg_service *s, const char *id, int hint);
/* Indexes cfg's services by name (x is rebuilt; cfg must outlive it). Returns 0 or
 * -ENOMEM (x is then empty and ctlr_index_find finds nothing). */
int ctlr_index_build(struct name_index *x, const struct peak_config *cfg);
void ctlr_index_fini(struct name_index *x);
/* The index in x->cfg of the service named n (any case), or -1. */
int ctlr_index_find(const struct name_index *x, const struct dns_name *n);
/* Marks v's saved record stale: the next save writes it anew. */
void ctlr_svc_dirty(struct csvc *v);
void ctlr_svcs_free(struct csvc *svc, unsigned n);
/* Builds every service of cfg from the saved state (see state.c). Returns NULL when out
 * of memory. */
struct csvc *ctlr_svcs_build(const struct peak_config *cfg, const char *state, size_t len,
                             bool steer);
/* The same, leaving the services with skip[i] zeroed for the caller to fill (a reload
 * moves the live ones it keeps there). */
struct csvc *ctlr_svcs_build_some(const struct peak_config *cfg, const char *state, size_t len,
                                  bool steer, const bool *skip);
/* Whether a reload may keep the live service built for a as b (ctlr_svc_same in state.c):
 * same name, slices, endpoint ids in order and weights. */
bool ctlr_svc_same(const struct cfg_service *a, const struct cfg_service *b);

/* steer_ctl.c: metrics-based steering in the controller (steer.h has the step) */
void ctlr_load_report(struct csvc *v, unsigned e, const struct ctl_msg *m, uint64_t now);
void ctlr_steer_tick(struct ctl *c, uint64_t now);
uint32_t ctlr_steer_rescale(uint32_t eff, uint32_t old_ceil, uint32_t new_ceil);
/* An endpoint's saturation as steering reads it, per mille (steer.h): the larger of its
 * last window's throttled time and its accept queue's fill; 0 when not reported. */
uint32_t ctlr_saturation(const struct steer_load *l);

/* handover.c: the slices that move between live endpoints, told to the agents before the
 * map that moves them. A snapshot of the assignment before a change: */
struct ho_snap {
	int32_t *owner; /* slice -> slot, before */
	int *ep_of;     /* slot -> endpoint index, before (-1: none) */
	uint32_t nslices;
	unsigned nslots;
};
enum { HANDOVER_DEF_MS = 5000 }; /* --handover-ms */
/* Takes the snapshot (empty when v has no map yet). Returns 0 or -ENOMEM (then the change
 * goes out without handovers). */
int ctlr_handover_snap(const struct csvc *v, struct ho_snap *s);
void ctlr_handover_free(struct ho_snap *s);
/* Compares the snapshot with v's assignment now and sends every agent one handover per
 * (old, new) pair of endpoints whose slices moved, unless --no-handover: only where the
 * old owner is healthy, or is gone_ep (an endpoint being drained, -1: none), since a dead
 * pod has no connections to hand over. Call it before sending the map. Returns the pairs. */
unsigned ctlr_handover_send(struct ctl *c, struct csvc *v, const struct ho_snap *s, int gone_ep);

/* control.c: the operator's control socket */
int ctlr_client_line(struct ctl *c, struct peer *p, const char *line, size_t len);
int ctlr_control_listen(const char *path);
void ctlr_client_accept(struct ctl *c, int lfd);

/* runtime.c: endpoints added and removed at run time (add, del, batch N) */
/* Starts receiving a batch of n lines on p. Returns 0 or -ENOMEM. */
int ctlr_batch_start(struct peer *p, uint32_t n);
/* Takes one line of p's batch (its errors are kept for the reply). Returns true when the
 * batch is whole: the caller then calls ctlr_batch_finish. */
bool ctlr_batch_line(struct ctl *c, struct peer *p, const char *line, size_t len);
/* Checks and applies p's batch all or nothing, replies, and ends it (also for a batch cut
 * short). Returns 0, or -1 if p was closed. */
int ctlr_batch_finish(struct ctl *c, struct peer *p);
void ctlr_batch_free(struct rt_batch *b);
/* A reload: appends to each service of cfg the endpoints its live namesake in old
 * (from[i], -1: none) had added at run time, unless cfg lists their ids. 0 or -ENOMEM. */
int ctlr_rt_reload_merge(struct peak_config *cfg, const struct peak_config *old, const int *from);
/* An adoption of the stored state: per service of c->cfg, the endpoints it must have (the
 * file's, then those the state's "add" lines name), or NULL where they are the ones it
 * has; *out NULL when no service changes. Returns 0 or -ENOMEM. */
int ctlr_rt_adopt_eps(const struct ctl *c, const char *state, size_t len,
                      struct cfg_endpoint ***out, unsigned **nout);
/* The same for service i alone from its record (text NULL: none). */
int ctlr_rt_record_eps(const struct ctl *c, unsigned i, const char *text, size_t len,
                       struct cfg_endpoint **out, unsigned *nout);

/* The lines that go before service v's map on the agent links (ctlrt.h): a "del" for each
 * of gone[0..ngone) added at run time, then an "add" for each endpoint of v added at run
 * time (its configured weight, node and address: the whole set), appended to t. */
void ctlr_rt_text(const struct csvc *v, const struct cfg_endpoint *gone, unsigned ngone,
                  struct text *t);

/* controller.c */
void ctlr_send_map(struct ctl *c, struct csvc *v, struct peer *only);
/* Sends v's map after a move between v's same endpoints (snap: the assignment before it) to
 * every agent, the nodes that give slices to another node last. */
void ctlr_send_map_moved(struct ctl *c, struct csvc *v, const struct ho_snap *snap);
struct csvc *ctlr_svc_find(struct ctl *c, const char *name);
int ctlr_health(struct ctl *c, struct csvc *v, unsigned e, bool up);
int ctlr_drain(struct ctl *c, struct csvc *v, unsigned e);
bool ctlr_last_up(const struct csvc *v, unsigned e);
int ctlr_weight(struct ctl *c, struct csvc *v, unsigned e, uint32_t w);
int ctlr_reload(struct ctl *c, char *err, size_t errlen);
