#pragma once
/*
 * The Kubernetes source of the controller (--source kubernetes): a client of the Kubernetes
 * API with libcurl and jansson that keeps a copy of the cluster's Services and
 * EndpointSlices (discovery.k8s.io/v1), and their translation into the controller's
 * services and endpoints, the structures the YAML configuration produces.
 *
 * The client (kube.c): each resource is listed (paged with limit/continue), then watched
 * from the list's resourceVersion with allowWatchBookmarks; the watch is a chunked stream
 * of one JSON event a line (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR), split into lines
 * whatever the chunks (a line may span any number of them, at most KUBE_LINE_MAX bytes).
 * An ERROR 410 (Gone: the resourceVersion is too old) relists; a broken stream reconnects
 * from the last resourceVersion seen, with a backoff (KUBE_BACKOFF_MIN_MS doubling up to
 * KUBE_BACKOFF_MAX_MS) after failures; a 401 (an expired service-account token) re-reads
 * the token file and tries again at once. The token file is also re-read whenever it
 * changes (the kubelet rotates it). Malformed objects are refused with a log line naming
 * the object; they never reach the translation. Everything runs on the controller's loop
 * thread: a list or a Secret's GET is synchronous, bounded by KUBE_TIMEOUT_MS; the watches
 * never block.
 *
 * The translation (translate.c): a Service is PEAK's when it carries the annotation
 * peak.dev/prefixes. Its annotations (README "Kubernetes"):
 *   peak.dev/prefixes    IPv6 prefixes, separated by commas (required)
 *   peak.dev/slice       the slice length (required)
 *   peak.dev/name        the service's DNS name (default NAME.NAMESPACE.ZONE)
 *   peak.dev/rule        descriptor fields KEY=VALUE separated by commas: select, host,
 *                        fanout, pow, nonce, period, skew (never key: keys are secret)
 *   peak.dev/port        the service port (default the Service's first port)
 *   peak.dev/answers     AAAA answers per response
 *   peak.dev/key-secret  a Secret of the Service's namespace holding the keys: data
 *                        "key" (the descriptor's key, hex) and "hop-secret" (16 bytes as 32
 *                        hex digits), the latter written to a file of mode 0600 in the
 *                        secret directory (the config's secret-file). Never logged.
 * Its endpoints are those of the EndpointSlices labelled kubernetes.io/service-name with
 * its name, addressType IPv6: id the pod's name (targetRef), the first address, node the
 * nodeName. An endpoint that is serving (ready when serving is absent) is an endpoint; one
 * also terminating drains: it stays, marked down, so its slices move before it is gone.
 * A Service whose annotations are invalid is left out with one log line; the others go on.
 */
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/config.h"

enum {
	KUBE_LINE_MAX = 4 << 20, /* a watch line (one event) or a reply larger is refused */
	KUBE_TIMEOUT_MS = 5000,  /* a list page, a Secret's GET */
	KUBE_BACKOFF_MIN_MS = 100,
	KUBE_BACKOFF_MAX_MS = 5000,
	KUBE_WATCH_S = 300, /* timeoutSeconds of a watch: the server ends it, it starts again */
	KUBE_PAGE = 500,    /* limit of a list page */
	KUBE_URL_MAX = 1024,
	KUBE_TOKEN_MAX = 16384,
	KUBE_SECRET_MS = 30000, /* a Secret read is used this long before it is read again */
};

struct kube_opts {
	const char *api;        /* https://HOST:PORT; NULL: from KUBERNETES_SERVICE_HOST/PORT */
	const char *token_file; /* NULL: the service account's */
	const char *ca_file;    /* NULL: the service account's (https only) */
	const char *secret_dir; /* where hop secrets are written; NULL: KUBE_SECRET_DIR */
};

#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_SECRET_DIR "/run/peak/kube"

/* The first word of the module's log lines: the process's role ("controller", the default;
 * "agent", "dns"), so a line says whose view it is. Set once, before any client opens. */
void kube_log_as(const char *who);
extern const char *kube_who;
#define KLOG(lvl, fmt, ...) log_msg(lvl, "%s: kubernetes: " fmt, kube_who, ##__VA_ARGS__)

/* ---- the watch stream's lines (kube.c; pure, fuzzed) ---- */

struct kube_lines {
	char *p;
	size_t len, cap;
	bool skipping; /* a line past KUBE_LINE_MAX: its bytes are dropped up to its '\n' */
};

/* Appends n bytes of a stream to l and calls fn on each whole line (without its '\n',
 * not NUL-terminated) as soon as it is complete. A line longer than max is dropped whole
 * (fn is called once with line NULL and len the bytes seen so far, so the caller logs it).
 * Returns 0, -ENOMEM, or what fn returned when it was not 0 (the rest is not split). */
int kube_lines_feed(struct kube_lines *l, const char *p, size_t n, size_t max,
                    int (*fn)(void *arg, const char *line, size_t len), void *arg);
void kube_lines_fini(struct kube_lines *l);

/* ---- the object copies (kube.c) ---- */

enum kube_ev { KUBE_EV_NONE, KUBE_EV_CHANGED, KUBE_EV_RELIST, KUBE_EV_BAD };

/* Applies one watch event line (untrusted) to objs (a JSON object "NAMESPACE/NAME" ->
 * object) of resource what ("services", "endpointslices"), keeping *rv (the last
 * resourceVersion, KUBE_RV_MAX with its NUL) up to date. Returns KUBE_EV_CHANGED (an
 * object was added, changed or deleted), KUBE_EV_NONE (a bookmark), KUBE_EV_RELIST (ERROR
 * 410 Gone, or another ERROR: list again) or KUBE_EV_BAD (malformed: logged, ignored). */
enum { KUBE_RV_MAX = 64 };
enum kube_ev kube_event_apply(json_t *objs, const char *what, char rv[static KUBE_RV_MAX],
                              const char *line, size_t len, json_t *ch[2]);
/* (ch, when not NULL, gets for KUBE_EV_CHANGED the object before and after the event,
 * NULL where there is none, each a reference for the caller.) */

/* The key "NAMESPACE/NAME" of object o into out, or false (with why) if its metadata is
 * malformed: names must be 1..63 bytes of [a-z0-9.-] (RFC 1123, what the API allows). */
bool kube_obj_key(json_t *o, char *out, size_t cap, const char **why);

/* ---- the translation (translate.c) ---- */

/* Fetches Secret ns/name's data (a JSON object of base64 strings), or NULL (logged). */
typedef json_t *(*kube_secret_fn)(void *arg, const char *ns, const char *name);

struct kube_drain {
	char svc[DNS_NAME_STRLEN];
	char ep[CFG_ID_MAX];
};

/* Appends to cfg (whose zone names the default domain) a service for every PEAK Service
 * of services whose annotations are valid, with the endpoints of slices (both JSON
 * objects as kept by the client), logging one line per invalid Service: refused (a JSON
 * object "NAMESPACE/NAME" -> reason, kept by the caller) has the Services refused last
 * time, so a reason is logged once, not at every change of others. *drain gets the
 * malloc'ed list of the endpoints that drain (*ndrain of them). secret fetches keys
 * (NULL: a Service naming a Secret is refused); secret_dir is where hop secrets go.
 * Returns 0 or -ENOMEM. */
int kube_translate(struct peak_config *cfg, json_t *services, json_t *slices, kube_secret_fn secret,
                   void *arg, const char *secret_dir, json_t *refused, struct kube_drain **drain,
                   unsigned *ndrain);

/* ---- the client (kube.c) ---- */

struct kube;

/* Sets up the client (reaching nothing yet). Returns it, or NULL with the reason in err
 * (bad options or environment: the caller exits 2). */
struct kube *kube_open(const struct kube_opts *o, char *err, size_t errlen);
void kube_free(struct kube *k);

/* A client that lists and watches one collection only (peak dns follows the controller's
 * ConfigMap with it): what names it in logs, path is the collection
 * ("/api/v1/namespaces/NS/configmaps"), sel a query selector ending in '&'
 * ("fieldSelector=metadata.name%3DNAME&") or "", all three kept by the caller for the
 * client's life. kube_poll returns 1 when an object of it changed; kube_objs has them. */
struct kube *kube_open_one(const struct kube_opts *o, const char *what, const char *path,
                           const char *sel, char *err, size_t errlen);

/* The copy of the first collection: "NAMESPACE/NAME" -> object (borrowed). */
json_t *kube_objs(const struct kube *k);

/* One synchronous request (the controller's Kubernetes store, store_kube.c): method (GET,
 * PUT, POST) on path (with its query) with body (a JSON object sent as the request's body,
 * taken over: freed here; NULL: none), bounded by timeout_ms. Returns the HTTP status, with
 * the reply's JSON object in *out for a 2xx (the caller's; NULL otherwise), or -errno (not
 * reached, -E2BIG a reply over KUBE_LINE_MAX, -EBADMSG a 2xx that is not a JSON object),
 * logged. A 401 re-reads the token file and tries once more. */
long kube_call(struct kube *k, const char *method, const char *path, json_t *body, long timeout_ms,
               json_t **out);

/* Drives the lists and watches without blocking longer than a list. Returns 1 when the
 * cluster's view changed since the last call (and both resources are listed), 0 if not. */
int kube_poll(struct kube *k);

enum { KUBE_POLLFDS = 2 };

/* The watches' sockets for the caller's poll (POLLIN), so an event wakes it at once:
 * fills pf[0..KUBE_POLLFDS-1], fd -1 where there is none (curl_multi_fdset: a socket
 * past FD_SETSIZE is left out, and then waits for the caller's own tick). */
void kube_pollfds(struct kube *k, struct pollfd pf[static KUBE_POLLFDS]);

/* Makes the next kube_poll that finds both resources listed return 1. */
void kube_touch(struct kube *k);

/* Whether both resources were listed at least once. */
bool kube_synced(const struct kube *k);

/* Polls k (kube_poll) until both resources are listed or ms pass. Returns kube_synced. */
bool kube_wait_synced(struct kube *k, unsigned ms);

/* The current view as a configuration: base (read from the file, its services dropped)
 * with the cluster's services appended (kube_translate), and the draining endpoints.
 * Returns 0, -ENOMEM, or the base file's error with the reason in err. */
int kube_config(struct kube *k, const char *base, struct peak_config **out, char *err,
                size_t errlen);

/* Whether endpoint ep of service svc drains in the last kube_config (prev: in the one
 * before it). */
bool kube_draining(const struct kube *k, const char *svc, const char *ep, bool prev);

/* Whether s names an object or a namespace for the Lease and ConfigMap: 1..63 of [a-z0-9-],
 * not beginning or ending with '-' (RFC 1123 labels, what the API allows for both). */
bool kube_name_ok(const char *s);

/* Checks the --kube-namespace (may be NULL) and --kube-lease names given to a command: 0, or
 * -1 with the option and the reason in err. */
int kube_names_check(const char *ns, const char *name, char *err, size_t errlen);

/* The namespace into ns: given (--kube-namespace; checked by the caller), else the service
 * account's (in a pod, when no API URL was given), else "default". */
void kube_namespace(const char *given, bool api_given, char ns[static 64]);
