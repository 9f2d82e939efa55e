#pragma once
/*
 * A client of etcd v3 through its JSON gateway (etcd 3.4: keys and values base64, int64
 * fields as strings), with libcurl and jansson, shared by the controller's store
 * (src/controller/store_etcd.c) and peak dns's follower (src/dns/follow.c):
 *   - requests (etcd_call): synchronous, each bounded by the timeout, tried on the member
 *     in use and, if it does not answer (or answers 5xx, e.g. without quorum), on the next
 *     ones in turn;
 *   - one watch stream (etcd_watch) of a key range, driven without blocking: the caller
 *     polls it at its own interval, and as soon as its socket (etcd_watch_fd) is readable;
 *     the events hand the caller the new values, and it reads the range afresh only when
 *     the watch says so (compaction, cancel).
 * Everything runs on the caller's thread. Log lines begin with the caller's name (who).
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	ETCD_RESP_MAX_B = 64 << 20, /* a reply (or a watch line) larger than this is refused */
	ETCD_KEY_MAX = 512,
	ETCD_URLS_MAX = 8,
	ETCD_URL_MAX = 256,
	ETCD_WATCH_SEND_MS = 100, /* etcd_watch's bound on sending a new stream's request */
};

struct etcd_buf {
	char *p;
	size_t len, cap;
	int err; /* -ENOMEM, or -E2BIG past ETCD_RESP_MAX_B: sticky until cleared */
};

struct etcd {
	const char *who; /* "controller", "dns" */
	CURL *curl;
	struct curl_slist *hdr;
	char urls[ETCD_URLS_MAX][ETCD_URL_MAX]; /* the members' client URLs */
	unsigned nurls, cur;                    /* the member in use: the next on a failure */
	const char *url;                        /* urls[cur] */
	long timeout_ms;
	bool down; /* the last request failed (logged once per streak) */
	struct etcd_buf resp;
	CURLM *wm;            /* the watch stream, driven without blocking */
	CURL *wh;             /* NULL: no stream */
	char *wbody;          /* its request, alive as long as the transfer */
	struct etcd_buf wbuf; /* what the stream sent that is not a whole line yet */
};

/* Sets up e for urls (http://ADDR:PORT[,...], up to ETCD_URLS_MAX), each request bounded
 * by timeout_ms. Returns 0, or -EINVAL (bad urls) / -ENOMEM with the reason in err; e is
 * then closed. */
int etcd_open(struct etcd *e, const char *who, const char *urls, long timeout_ms, char *err,
              size_t errlen);

/* Ends the watch and frees what e holds (e may be zeroed or half open). */
void etcd_close(struct etcd *e);

/* POSTs req (consumed; NULL is "out of memory") to the gateway's path. Returns the reply's
 * JSON object (the caller's) or NULL, the failure logged once per streak of failures. */
json_t *etcd_call(struct etcd *e, const char *path, json_t *req);

/* An int64 field of the gateway's JSON (a string, or a number), 0 when absent. */
int64_t etcd_jint(json_t *o, const char *k);

/* The JSON string of key k (n bytes) in base64; NULL: no memory. */
json_t *etcd_jkey(const char *k, size_t n);

/* A range request over every key beginning with pre (which ends in '/'). */
json_t *etcd_range_req(const char *pre, bool keys_only);

/* Called by etcd_range_pages with each kv of a page (untrusted), in key order. */
typedef void (*etcd_kv_fn)(void *arg, json_t *kv);

/* Reads the keys beginning with pre (with min_rev > 0, only those whose mod_revision is
 * min_rev or later: every key changed since a read at min_rev - 1, compacted or not) in
 * pages of page keys, every page at the revision of the first (one consistent view), so
 * each request stays small and within the timeout however many keys there are (one read
 * of 1000 services of 100 endpoints, about 10 MB of JSON, outlasted a 1 s bound on a
 * loaded machine; 10,000 outgrow ETCD_RESP_MAX_B). Passes each kv to fn. *rev gets that
 * revision, *pages the requests made. Returns the kvs passed, or -EIO (a request failed,
 * or the view was compacted meanwhile: fn saw the pages before) or -ENOMEM. */
long etcd_range_pages(struct etcd *e, const char *pre, int64_t min_rev, unsigned page,
                      etcd_kv_fn fn, void *arg, int64_t *rev, unsigned *pages);

/* What etcd_watch found. */
enum {
	ETCD_WATCH_EVENTS = 1, /* events came, each passed to the caller's fn */
	ETCD_WATCH_RESYNC = 2, /* cancelled (compacted past after) or ended: read afresh */
};

/* Called by etcd_watch with each event, in revision order: the gateway's kv object (key and
 * value base64, mod_revision; untrusted) and whether it is a DELETE. */
typedef void (*etcd_event_fn)(void *arg, json_t *kv, bool deleted);

/* Splits p (n bytes the watch stream sent; untrusted) into its whole lines, each one JSON
 * object of the gateway, and passes each event to fn (if not NULL) in order, up to a line
 * that ends the watch (a compaction past after, a cancel, an error, not a watch result, or
 * an event without its kv: its events are not passed, nor any after it; logged as who).
 * *used gets the bytes of the lines read. Returns ETCD_WATCH_RESYNC (such a line came),
 * ETCD_WATCH_EVENTS (events were passed) or 0. No I/O: tests/fuzz/fuzz_etcdwatch.c. */
int etcd_watch_split(const char *who, const char *p, size_t n, int64_t after, etcd_event_fn fn,
                     void *arg, size_t *used);

/* One record of a key range, as a range's kv or a watch event's carries it, decoded. */
struct etcd_rec {
	char *key;        /* the whole key, NUL-terminated (NULL: not base64, a NUL, too long) */
	size_t klen;      /* its bytes */
	const char *name; /* the key past pre (NULL: the key is not under pre) */
	char *val;        /* the value, checked, NUL-terminated (NULL: refused, or a DELETE) */
	size_t vlen;      /* its bytes */
	int64_t mod_rev;  /* its mod_revision (a DELETE's: the revision of the delete) */
};

/* Decodes kv (untrusted) into r: the key, which must be pre followed by a service's name,
 * and (unless deleted) the value, at most max bytes, checked as that service's lines
 * (store_rec_check, as the controller writes them). A refused record is logged as "WHO:
 * etcd: KEY: refused: WHY". Returns 0 (r->val is the record, or NULL for a DELETE),
 * -EBADMSG (refused: r->val NULL) or -ENOMEM; r is then to free with etcd_rec_free.
 * Shared by the controller's store and peak dns's follower, so both refuse alike. */
int etcd_rec_decode(const char *who, json_t *kv, const char *pre, size_t max, bool deleted,
                    struct etcd_rec *r);
void etcd_rec_free(struct etcd_rec *r);

/* Reads what the watch stream of the keys beginning with pre has, never blocking, starting
 * the stream (after revision after) when there is none (then waiting until its request is
 * sent, at most ETCD_WATCH_SEND_MS), and passes each event to fn (if not NULL): the caller
 * applies the values the events carry, with no read. Returns
 * ETCD_WATCH_EVENTS, ETCD_WATCH_RESYNC (the caller reads afresh, and the next watch starts
 * after that read; events before it in the stream were passed), 0 when nothing changed,
 * -EIO when the stream broke (events before the break were passed; it restarts from after,
 * which the caller moves past each event it applied, so nothing is missed), -ENOMEM. */
int etcd_watch(struct etcd *e, const char *pre, int64_t after, etcd_event_fn fn, void *arg);

/* Starts the watch stream as etcd_watch does, if there is none, and returns once its request
 * is sent (at most ETCD_WATCH_SEND_MS), reading nothing: a follower calls it right after its
 * read, since etcd registers the watch when the request arrives and sends a change stored
 * before then only at its next pass over such late watchers (every 100 ms). 0 or -ENOMEM. */
int etcd_watch_open(struct etcd *e, const char *pre, int64_t after);

/* The watch stream's socket, for the caller's poll (readable: call etcd_watch now), or -1
 * while there is none, it is not connected yet or its number is FD_SETSIZE or more (libcurl
 * 7.88 names it through an fd_set): then only the caller's interval. */
int etcd_watch_fd(struct etcd *e);

/* Ends the watch stream (the next etcd_watch starts another). */
void etcd_watch_stop(struct etcd *e);

/* s (n bytes, untrusted) for a log line: at most 80 bytes, anything not printable as '?'. */
void etcd_printable(char *out, size_t cap, const char *s, size_t n);
