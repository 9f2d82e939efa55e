#pragma once
/*
 * peak dns --store etcd: a replica that follows the controller's live state in etcd instead
 * of being told by the controller (--dns-control). It reads the keys PREFIX svc/NAME the
 * leading controller writes (src/controller/store_etcd.c: one service's map, "weight" and
 * "health ... down" lines) in pages, then follows them through /v3/watch (src/etcd),
 * applying the values the watch's events carry (no read per change: at 1000 services a
 * read per change cost each replica 60-100 ms), and reads the ones written since the last
 * read only after a compaction or a cancelled watch. A broken stream resumes after the last
 * event applied.
 * Every value is checked as the controller checks it (store_rec_check) before any of it is
 * used; a value refused is logged and left out, so its service keeps what it had.
 * Runs on peak dns's main thread; every request is bounded by FOLLOW_TIMEOUT_MS.
 *
 * peak dns --store kubernetes follows the ConfigMap the leading controller --store
 * kubernetes writes (src/controller/store_kube.c: one data key per service, its value the
 * same lines) instead: it lists the namespace's configmaps with the field selector
 * metadata.name=NAME, then watches them from the list's resourceVersion (the client of
 * src/k8s: bookmarks, a relist on 410 Gone, a reconnect with backoff from the last
 * resourceVersion after a broken stream, a 401 re-reads the token). At every change of the
 * ConfigMap, the keys whose values changed are checked and applied as etcd's records are.
 */
#include <stddef.h>

enum {
	FOLLOW_TICK_MS = 50,      /* the watch is read this often (and when readable) */
	FOLLOW_TIMEOUT_MS = 1000, /* one request to etcd */
	FOLLOW_PAGE = 100,        /* records in one read request */
};

struct dns_follow;

/* Follows etcd at urls (http://ADDR:PORT[,...]) under prefix (NULL: "/peak/"; it must
 * begin and end with '/'). Nothing is read yet. Returns NULL with the reason in err. */
struct dns_follow *dns_follow_open(const char *urls, const char *prefix, char *err, size_t errlen);

/* dns_follow_open for another part (peak agent --store etcd): who begins its log lines. */
struct dns_follow *dns_follow_open_as(const char *who, const char *urls, const char *prefix,
                                      char *err, size_t errlen);

struct kube_opts;

/* Follows ConfigMap name (NULL: "peak-controller", the controllers' --kube-lease) of
 * namespace ns (NULL: the service account's, else "default") through the API o names.
 * Nothing is read yet. Returns NULL with the reason in err (bad options). */
struct dns_follow *dns_follow_kube_open(const struct kube_opts *o, const char *ns, const char *name,
                                        char *err, size_t errlen);

void dns_follow_free(struct dns_follow *f);

/* Called with each service's checked record: its name (as in the key) and its lines. */
typedef void (*dns_follow_fn)(void *arg, const char *svc, const char *text, size_t len);

/* The socket whose readability means dns_follow_step has news now (the etcd watch
 * stream), or -1 (none yet, or --store kubernetes): poll it beside the tick. */
int dns_follow_fd(struct dns_follow *f);

/* At every tick, and when dns_follow_fd is readable: reads every record (calling fn for
 * each) at the first call ("following PREFIX svc/ from revision R" logged), then calls fn
 * with each record the watch's events carry, and reads the records written since the last
 * read after a compaction or a cancelled watch. Returns 1 when fn was given records, 0 when
 * nothing changed, -errno when etcd did not answer (tried again at the next tick; logged
 * once per streak). Kubernetes: never blocks longer than a list. */
int dns_follow_step(struct dns_follow *f, dns_follow_fn fn, void *arg);

/* etcd: the whole reads so far (the first, and one after each compaction or cancelled
 * watch) and the records refused (corrupt, foreign, not one service's lines). */
void dns_follow_counts(const struct dns_follow *f, unsigned long *reads, unsigned long *refused);
