#pragma once
/* peak agent: programs one node's routes so that the slices each local endpoint owns reach
 * its pod, and makes each local pod accept its services' whole ranges (AnyIP). */
#include <stdbool.h>
#include <stddef.h>

#include "../sys/route.h"
#include "peak/config.h"

struct kube_opts;

struct agent_opts {
	const char *config;
	const char *node;
	unsigned table;            /* routing table for slice routes (default: main) */
	bool once;                 /* sync once and exit */
	unsigned interval_ms;      /* resync period (repairs drift) */
	const char *controller;    /* peak controllers: ADDR:PORT[,ADDR:PORT...], or NULL */
	const char *key_file;      /* the key shared with the controller (ctlauth.h), or NULL */
	unsigned hc_interval_ms;   /* health checks: mean period (each jittered +-25%) */
	unsigned hc_fast_ms;       /* their period while an endpoint's health is changing */
	unsigned hc_timeout_ms;    /* a check not answered within it is a miss */
	unsigned hc_connect_ms;    /* a check not even connected within it is a miss (0: only
	                            * hc_timeout_ms); the pod's kernel completes handshakes */
	unsigned hc_down, hc_up;   /* consecutive misses / answers that change health */
	const char *hc_request;    /* sent on each check's connection; the first byte back
	                            * answers it. NULL or "": the connect alone answers */
	const char *metrics;       /* Prometheus endpoint ADDR:PORT, or NULL */
	const char *filter_object; /* the XDP filter's BPF object, or NULL for the default */
	bool no_handover;          /* ignore the controller's handovers (no forwarding) */
	const char *handover_dev;  /* where the handover program goes (NULL: the device of the
	                            * controller link's local address) */
	const char *etcd;          /* --store etcd: etcd's client URLs, or NULL (storewatch.c) */
	const char *etcd_prefix;   /* the controllers' --etcd-prefix (NULL: "/peak/") */
	const char *app_load_dir;  /* pods' own load figures: DIR/ENDPOINT-ID (podload.c), or
	                            * NULL */
	/* --source kubernetes: services and endpoints from the API (kube.h), the file giving
	 * the zone and nodes; NULL: all from the file */
	const struct kube_opts *kube;
};

enum {
	AGENT_CTLS_MAX = 8,      /* addresses in --controller */
	AGENT_CTL_ADDR_MAX = 80, /* bytes of one, with its NUL */
};

/* A slice map received from the controller: per endpoint of the service, its blocks. */
struct svc_map {
	bool have;
	unsigned nep;                 /* the service's endpoints when the map was made */
	struct assign_block **blocks; /* per endpoint index (nep lists) */
	size_t *nblocks;
};

/* Whether the blocks of a controller's "ep" line all lie in the service's space sp: each
 * inside one of its prefixes (assign_block_prefix) and below its slice count. The grammar
 * (ctlproto.h) has checked their syntax and alignment already; this is what only the
 * agent, which knows the service, can check. True for n == 0 (the endpoint owns nothing). */
bool agent_blocks_fit(const struct ssa_space *sp, const struct assign_block *b, size_t n);

/* The routes a node wants: for each endpoint on the node, its slices aggregated into the
 * fewest prefixes, via the endpoint's address. The slices come from maps[i] when the
 * controller sent one for service i (maps may be NULL), else from config_service_assign.
 * Sorted by rt6_cmp; *out is malloc'ed. Returns 0 or -errno. */
int agent_node_routes(const struct peak_config *cfg, const char *node, const struct svc_map *maps,
                      struct rt6 **out, size_t *n);

/* Local failover: each route via a local endpoint that down() says is down is pointed at a
 * live local endpoint of the same service instead (spread over them; every pod accepts
 * its services' whole ranges), so a dead pod's slices are served as soon as the node
 * knows, before the controller and BGP move them. Routes stay sorted (only gateways
 * change). Returns how many routes were re-pointed. */
size_t agent_failover(const struct peak_config *cfg, const char *node,
                      bool (*down)(unsigned svc, unsigned ep, void *arg), void *arg,
                      struct rt6 *routes, size_t n);

enum { DRAIN_MS = 3000 }; /* more than BGP takes here to move a slice to another node */

struct drain {
	struct rt6 rt;
	uint64_t until_ms;
};

/* What local failover and drain keep from one sync to the next; all zero at first. */
struct agent_drain {
	struct rt6 *fo; /* the routes the last sync failed over */
	size_t nfo;
	struct drain *drain; /* failed-over routes the map has taken away, still kept */
	size_t ndrain;
};

/* Local failover (agent_failover) on the wanted routes *want (sorted), then the drain: a
 * failed-over route that the controller's new map takes off this node stays, via a live
 * local pod, until DRAIN_MS after now_ms, so that packets the router still sends here while
 * BGP moves the slices to another node are served rather than lost (make before break; the
 * agent keeps them in the main table, not in an announced --table: routes.c, drained_apart).
 * *want (malloc'ed) grows by the drained routes and stays sorted; *moved counts the routes
 * re-pointed; d carries the state to the next call. Pure: the clock and health come in as
 * now_ms and down(). Returns 0 or -ENOMEM. */
int agent_failover_drain(const struct peak_config *cfg, const char *node,
                         bool (*down)(unsigned svc, unsigned ep, void *arg), void *arg,
                         struct agent_drain *d, uint64_t now_ms, struct rt6 **want, size_t *n,
                         size_t *moved);

/* Whether dst is a draining route of d. */
bool agent_drain_has(const struct agent_drain *d, const struct prefix *dst);

/* Frees d's state and empties it. */
void agent_drain_fini(struct agent_drain *d);

/* Makes the table's PEAK routes equal want (want sorted, one per destination): only the
 * difference is applied. Reports what changed through added/deleted. Returns 0 or -errno. */
int agent_sync(unsigned table, const struct rt6 *want, size_t nwant, size_t *added,
               size_t *deleted);

/* BGP announcement through BIRD 2: what the generated configuration needs. */
struct bird_opts {
	const char *node;
	const char *router_id; /* dotted quad */
	const char *neighbor;  /* the router's IPv6 address */
	unsigned local_as, peer_as;
	unsigned table; /* the kernel table the agent writes and BIRD learns from */
};

/* Writes a BIRD 2 configuration that learns PEAK's routes (protocol 0xa5) from the kernel
 * table and exports exactly those over BGP with next hop self. Returns 0 or -errno. */
int agent_bird_config(const char *path, const struct bird_opts *b);

/* What the agent needs of a configuration beyond its schema: node is one of its nodes (when
 * it lists any), and each service with an endpoint on node can be assigned slices
 * (config_service_assign; otherwise the node would route none of them, silently). path
 * names the file in messages. Returns 0, or -EINVAL (-ENOMEM) with "PATH:LINE: reason" in
 * err. */
int agent_config_check(const struct peak_config *cfg, const char *path, const char *node, char *err,
                       size_t errlen);

/* agent_run's results, the process's exit status: run-time failures (a sync that failed
 * with --once, the metrics endpoint or the filter that cannot start, no memory) are 1; a
 * configuration that does not load or does not know the node is bad input, 2, as a usage
 * error is. */
enum { AGENT_EXIT_OK = 0, AGENT_EXIT_FAIL = 1, AGENT_EXIT_CONFIG = 2 };

/* Runs the agent. Returns an AGENT_EXIT_ status (the reason logged). */
int agent_run(const struct agent_opts *o);
