#pragma once
/*
 * peak dns --store etcd: a replica that follows the controller's live state in etcd instead
 * of being told by the controller (--dns-control). It reads the keys PREFIX svc/NAME the
 * leading controller writes (src/controller/store_etcd.c: one service's map, "weight" and
 * "health ... down" lines), then follows them through /v3/watch (src/etcd), reading them
 * afresh after every change, a compaction or a broken stream. Every value is checked as the
 * controller checks it (store_rec_check) before any of it is used; a value refused is
 * logged and left out, so its service keeps what it had.
 * Runs on peak dns's main thread; every request is bounded by FOLLOW_TIMEOUT_MS.
 */
#include <stddef.h>

enum {
	FOLLOW_TICK_MS = 50,      /* the watch is read this often */
	FOLLOW_TIMEOUT_MS = 1000, /* one request to etcd */
};

struct dns_follow;

/* Follows etcd at urls (http://ADDR:PORT[,...]) under prefix (NULL: "/peak/"; it must
 * begin and end with '/'). Nothing is read yet. Returns NULL with the reason in err. */
struct dns_follow *dns_follow_open(const char *urls, const char *prefix, char *err, size_t errlen);

void dns_follow_free(struct dns_follow *f);

/* Called with each service's checked record: its name (as in the key) and its lines. */
typedef void (*dns_follow_fn)(void *arg, const char *svc, const char *text, size_t len);

/* At every tick: reads the records afresh (calling fn for each) when none were read yet or
 * the watch saw a change. Returns 1 when it read them, 0 when nothing changed, -errno when
 * etcd did not answer (tried again at the next tick; logged once per streak). */
int dns_follow_step(struct dns_follow *f, dns_follow_fn fn, void *arg);
