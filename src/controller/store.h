#pragma once
/*
 * The controller's datastore: where the live state (each service's assignment, weights and
 * health, as the control lines state.c writes) is kept so that a restarted controller, or
 * a standby taking over, adopts it and moves nothing. One table of operations, chosen with
 * --store:
 *   file  the state file (CONFIG.state, or --state FILE|none), written atomically; the only
 *         writer, so always the leader, nothing to watch
 *   etcd  an etcd v3 cluster through its JSON gateway (store_etcd.c): one key per service
 *         under the prefix, written in transactions guarded by revisions; a lease and a
 *         leader key elect one controller among several
 *   kubernetes  the Kubernetes API (store_kube.c): a coordination.k8s.io/v1 Lease elects
 *         the leader, a ConfigMap holds one key per service, both written with
 *         resourceVersion-guarded updates
 * Every operation runs on the controller's loop thread and is bounded in time.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct controller_opts;

/* One service's part of the live state: its name and its control lines (map ... end,
 * weight, health down), not NUL-terminated. */
struct store_rec {
	const char *name;
	const char *text;
	size_t len;
};

struct store;

/* What follow passes for one changed service record: the name its key holds and its lines
 * as they are stored now, or text NULL when no record of that name is (deleted, or refused
 * with a log line): the service then has no stored state, as a full load would find. A
 * load's text holds exactly the records follow would pass. Returns 0 or -errno (the
 * caller's copy is then unknown: follow asks for a load). */
typedef int (*store_change_fn)(void *arg, const char *name, const char *text, size_t len);

enum {
	STORE_CHANGED = 1,
	STORE_RELOAD = 2,
};

struct store_ops {
	const char *name;
	/* Loads the stored state: every service's lines concatenated into *text (malloc'ed,
	 * NUL-terminated, *len without the NUL), or *text NULL when nothing is stored. Values
	 * that are corrupt or foreign are refused with a log line and left out. Remembers the
	 * revisions save compares against. Returns 0 or -errno (the store is unreachable). */
	int (*load)(struct store *st, char **text, size_t *len);
	/* Saves the n records of the live state (only what changed may be written), guarded:
	 * nothing is written unless the stored values are the ones last loaded or saved and
	 * this controller still leads. Returns 0, -ESTALE (another writer: nothing written;
	 * the caller checks leadership) or -errno. */
	int (*save)(struct store *st, const struct store_rec *r, unsigned n);
	/* Returns 1 if the stored state changed since the last load or save (the caller then
	 * loads it again), 0 if not, -errno if the store did not answer. */
	int (*watch)(struct store *st);
	/* A standby's incremental watch, in place of watch when not NULL (etcd): passes each
	 * service record changed since the last load or follow to fn, in revision order, so
	 * the caller updates its copy with no read. Returns STORE_CHANGED (fn was called),
	 * STORE_RELOAD (the changes cannot be followed: a compaction, a gap, a parse error,
	 * fn failed, or this controller led since the last load: the caller loads afresh; so
	 * again until a load succeeds), 0 (nothing changed) or -errno (the store did not
	 * answer: the watch resumes after the last change passed). */
	int (*follow)(struct store *st, store_change_fn fn, void *arg);
	/* The socket whose readability means follow has changes to pass now (the watch
	 * stream's), or -1: a standby polls it beside its interval. NULL: none. */
	int (*watch_fd)(struct store *st);
	/* Whether the state last loaded, with the changes follow passed since, is the stored
	 * state now (one small request): a standby taking the lead adopts its copy with no
	 * read. Returns 1, 0 (not, or not known) or -errno. NULL: always 0. */
	int (*current)(struct store *st);
	/* Keeps this controller's lease alive and campaigns for leadership. Returns 1 (this
	 * controller leads), 0 (a standby) or -errno (the store did not answer: not leading). */
	int (*keepalive)(struct store *st);
	/* The agents' liveness; NULL in a store without leases (the file store: an agent's
	 * link may drop for any time, nothing moves). Keeps the registration of each of the n
	 * nodes whose agents are connected here alive (a key per node under a lease of the
	 * agent TTL, granted when first seen, renewed at every call), lets the others' expire,
	 * then reads whose registrations are alive (node_alive). Called by the leader at every
	 * interval, and by a standby with n 0 (it only reads). Returns 0 or -errno (the store
	 * did not answer: what is alive is unknown). */
	int (*nodes_renew)(struct store *st, const char *const *nodes, unsigned n);
	/* Whether node's registration was alive at the last nodes_renew that succeeded. */
	bool (*node_alive)(const struct store *st, const char *node);
	/* Whether node's registration was alive at any nodes_renew since the store opened: a
	 * node never seen registered (its agent has not connected since) is not judged. */
	bool (*node_known)(const struct store *st, const char *node);
	/* The interval in ms at which watch and keepalive are called. */
	unsigned (*interval_ms)(const struct store *st);
	void (*free)(struct store *st);
};

struct store {
	const struct store_ops *ops;
	int64_t term; /* while leading: changes whenever the lead was lost and won again */
};

/* Opens the store that o names (o->store: "file" or NULL, "etcd" or "kubernetes"). config is the
 * configuration path (the file store's default CONFIG.state). Returns the store, or NULL
 * with the reason in err (bad options: the caller exits 2). */
struct store *store_open(const struct controller_opts *o, char *err, size_t errlen);

struct store *store_file_open(const char *path);
struct store *store_etcd_open(const struct controller_opts *o, char *err, size_t errlen);
/* store_kube.c: a Lease elects the leader, a ConfigMap keeps the state (no network here). */
struct store *store_kube_open(const struct controller_opts *o, char *err, size_t errlen);

/* store_rec.c: what reads untrusted bytes. */

/* Checks that text (n bytes, from a store: untrusted) is one service's part of the state
 * as ctlr_svc_text writes it, for the service name: "map NAME", "ep" lines, "end", then
 * "weight", "health" and "add" (an endpoint added at run time) lines of NAME only, every
 * line in the control grammar and ended by '\n'. Whether it fits the configuration is adopt's
 * business (state.c). Returns 0, -ENOMEM, or -EBADMSG with the reason in why. */
int store_rec_check(const char *name, const char *text, size_t n, char *why, size_t cap);

/* base64 of s (n bytes), malloc'ed and NUL-terminated; NULL: no memory. */
char *store_b64_enc(const char *s, size_t n);

/* Decodes s (padded base64, NUL-terminated) into a malloc'ed NUL-terminated buffer of
 * *len bytes; NULL if s is not base64, decodes to more than max bytes, or no memory. */
char *store_b64_dec(const char *s, size_t max, size_t *len);
