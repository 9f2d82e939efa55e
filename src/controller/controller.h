#pragma once
/*
 * peak controller: the single authority for slice assignments and weights. Agents connect
 * over TCP; every line on the link is in the control grammar (include/peak/ctlproto.h):
 *   controller -> agent   "challenge NONCE" on accept; "welcome PROOF" after a hello that
 *                         carries the agent's nonce (the controller's proof of the key);
 *                         "map SERVICE", then "ep ID START/LOG2 ..." per endpoint holding
 *                         slices, then "end": the whole map of one service
 *   agent -> controller   "hello NODE [TAG [NONCE]]" first (TAG required with a key file,
 *                         include/peak/ctlauth.h), then "health SERVICE ENDPOINT up|down",
 *                         "load SERVICE ENDPOINT CONNECTIONS CPU_NANOSECONDS"
 * A health or weight change moves only the slices it must (assign_del / assign_add /
 * assign_set_weight), is sent to every agent and, with --dns-control, to peak dns, and is
 * saved to the store (the state file, or etcd), from which a restarted controller adopts the
 * live assignment. With etcd several controllers run: one leads (it alone listens for
 * agents, pushes maps and writes), the others are hot standbys (src/controller/store.h).
 * Every peer's output is queued and sent without blocking; a peer that stops reading is
 * dropped, so it never delays the others, peak dns or a signal.
 */
#include <stdbool.h>

#include "../k8s/kube.h"

struct controller_opts {
	const char *config;
	const char *listen;      /* ADDR:PORT */
	const char *dns_control; /* peak dns control socket, or NULL */
	const char *metrics;     /* Prometheus endpoint ADDR:PORT, or NULL */
	const char *key_file;    /* the agents' shared key, or NULL (no authentication) */
	const char *control;     /* the operator's control socket, or NULL */
	const char *state;       /* state file; NULL: CONFIG.state; "none": no state file */
	const char *store;       /* "file" (or NULL), "etcd" or "kubernetes" (store.h) */
	const char *etcd;        /* etcd's client URL, http://ADDR:PORT */
	const char *etcd_prefix; /* the keys' prefix (NULL: "/peak/") */
	unsigned lease_ttl_s;    /* the leader's lease (0: 2 s in etcd, 15 s in Kubernetes) */
	unsigned agent_ttl_s;    /* etcd: an agent's registration outlives its link this long
	                          * (0: 2 s); then its node's endpoints go down */

	bool steer_metrics;         /* --steer metrics: effective weights from the agents' load
	                             * reports (steer.h); else the live weights alone (static) */
	unsigned steer_interval_ms; /* --steer-interval (0: STEER_INTERVAL_DEF_MS) */
	const char *source;         /* "file" (or NULL: services from the config) or "kubernetes"
	                             * (src/k8s/kube.h: the config gives the zone and nodes) */
	struct kube_opts kube;      /* kubernetes: the API's URL, token, CA and secrets' dir
	                             * (NULL each: in-cluster defaults) */
	const char *kube_namespace; /* --store kubernetes: the Lease's and ConfigMap's (NULL:
	                             * the service account's, else "default") */
	const char *kube_lease;     /* their name (NULL: "peak-controller") */
	unsigned handover_ms;       /* --handover-ms: how long two endpoints forward (0: 5000) */
	bool no_handover; /* --no-handover: slices move without telling agents to forward */
};

/* Serves until SIGINT or SIGTERM; SIGHUP reloads the configuration. Returns 0 after a
 * signal, 2 when the input is bad (configuration, key file, --listen), 1 on a run-time
 * failure (sockets, memory); the reason is logged. */
int controller_run(const struct controller_opts *o);

/* --check: loads and checks the configuration (and the key file if given) and the store
 * options (without reaching the store), printing "FILE:LINE: reason" or the option's
 * fault to stderr. Returns 0 or 2. */
int controller_check(const struct controller_opts *o);
