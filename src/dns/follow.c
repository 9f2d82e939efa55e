/* peak dns's etcd follower (follow.h). */
#include "follow.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../controller/store.h" /* store_rec_check: the records' checks */
#include "../etcd/etcd.h"
#include "../k8s/kube.h"
#include "../sys/log.h"

enum { FOLLOW_VALUE_MAX_B = 16 << 20 }; /* one service's value, as the controller's */

struct dns_follow {
	struct kube *kube;                     /* --store kubernetes (then cl is unused) */
	char kpath[160], ksel[128], kkey[160]; /* the collection, selector, "NS/NAME" */
	json_t *kseen; /* the ConfigMap's data as last applied (NULL: none yet) */
	struct etcd cl;
	char pre[ETCD_KEY_MAX]; /* PREFIX svc/ */
	int64_t rev;            /* the revision of the last read: the watch resumes after it */
	bool have;              /* a read succeeded since the last change */
	bool resync;            /* the read under way follows a compaction or cancel */
	char who[16];           /* the log lines' source: "dns", or "agent" */
	unsigned long reads;    /* whole reads (the first, and after a compaction or cancel) */
	unsigned long refused;  /* records refused (etcd_rec_decode) */
};

struct dns_follow *dns_follow_open(const char *urls, const char *prefix, char *err, size_t errlen)
{
	return dns_follow_open_as("dns", urls, prefix, err, errlen);
}

struct dns_follow *dns_follow_open_as(const char *who, const char *urls, const char *prefix,
                                      char *err, size_t errlen)
{
	struct dns_follow *f;
	const char *pre = prefix ? prefix : "/peak/";
	size_t n = strlen(pre);
	if (!n || pre[0] != '/' || pre[n - 1] != '/' || n + 5 > ETCD_KEY_MAX) {
		snprintf(err, errlen, "--etcd-prefix: '%.64s' must begin and end with '/'", pre);
		return NULL;
	}
	if (!(f = calloc(1, sizeof(*f)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(f->who, sizeof(f->who), "%s", who);
	if (etcd_open(&f->cl, f->who, urls, FOLLOW_TIMEOUT_MS, err, errlen)) {
		free(f);
		return NULL;
	}
	snprintf(f->pre, sizeof(f->pre), "%ssvc/", pre);
	return f;
}

struct dns_follow *dns_follow_kube_open(const struct kube_opts *o, const char *ns, const char *name,
                                        char *err, size_t errlen)
{
	struct dns_follow *f;
	char nsb[64];
	const char *cm = name ? name : "peak-controller";
	if (kube_names_check(ns, cm, err, errlen))
		return NULL;
	if (!(f = calloc(1, sizeof(*f)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	kube_namespace(ns, o->api != NULL, nsb);
	snprintf(f->kpath, sizeof(f->kpath), "/api/v1/namespaces/%s/configmaps", nsb);
	snprintf(f->ksel, sizeof(f->ksel), "fieldSelector=metadata.name%%3D%s&", cm);
	snprintf(f->kkey, sizeof(f->kkey), "%s/%s", nsb, cm);
	if (!(f->kube = kube_open_one(o, "configmaps", f->kpath, f->ksel, err, errlen))) {
		free(f);
		return NULL;
	}
	return f;
}

void dns_follow_free(struct dns_follow *f)
{
	if (!f)
		return;
	if (f->kube) {
		kube_free(f->kube);
		json_decref(f->kseen);
	} else {
		etcd_close(&f->cl);
	}
	free(f);
}

/* --store kubernetes: applies the ConfigMap's keys whose values changed since the last
 * step (all of them at the first), each checked as the controller checks it; a refused
 * one is logged once per value. A ConfigMap deleted leaves every service as it was, as a
 * key deleted does (the controller never deletes a service's key while it serves it). */
static int follow_kube_step(struct dns_follow *f, dns_follow_fn fn, void *arg)
{
	if (kube_poll(f->kube) != 1)
		return 0;
	json_t *cm = json_object_get(kube_objs(f->kube), f->kkey), *v;
	json_t *data = json_object_get(cm, "data");
	const char *key;
	char why[128], shown[96];
	if (data && !json_is_object(data) && !json_is_null(data)) {
		log_msg(LOG_WARNING,
		        "dns: kubernetes: ConfigMap %s: data is not an object: refused", f->kkey);
		return 1;
	}
	json_object_foreach(json_is_object(data) ? data : NULL, key, v)
	{
		if (json_equal(v, json_object_get(f->kseen, key)))
			continue;
		const char *val = json_string_value(v);
		size_t vl = val ? json_string_length(v) : 0;
		etcd_printable(shown, sizeof(shown), key, strlen(key));
		int err =
		    !val ? (snprintf(why, sizeof(why), "not a string"), -1)
		    : vl > FOLLOW_VALUE_MAX_B
		        ? (snprintf(why, sizeof(why), "over %d bytes", FOLLOW_VALUE_MAX_B), -1)
		        : store_rec_check(key, val, vl, why, sizeof(why));
		if (err)
			log_msg(LOG_WARNING, "dns: kubernetes: ConfigMap %s: %s: refused: %s",
			        f->kkey, shown, why);
		else
			fn(arg, key, val, vl);
	}
	json_decref(f->kseen);
	f->kseen = json_is_object(data) ? json_incref(data) : NULL;
	return 1;
}

/* One record from etcd (a range's kv, or a watch event's): decoded and checked as the
 * controller checks it (etcd_rec_decode), passed to fn, or refused with a log line. */
static void kv_apply(struct dns_follow *f, json_t *kv, dns_follow_fn fn, void *arg)
{
	struct etcd_rec r;
	int err = etcd_rec_decode(f->who, kv, f->pre, FOLLOW_VALUE_MAX_B, false, &r);
	if (!err)
		fn(arg, r.name, r.val, r.vlen);
	else if (err == -EBADMSG)
		f->refused++;
	etcd_rec_free(&r);
}

/* A read's records (etcd_range_pages): each applied as kv_apply does. */
struct follow_rd {
	struct dns_follow *f;
	dns_follow_fn fn;
	void *arg;
};

static void on_kv(void *arg, json_t *kv)
{
	struct follow_rd *x = arg;
	kv_apply(x->f, kv, x->fn, x->arg);
}

/* Reads the records under PREFIX svc/ written since the last read (every one at the
 * first), calling fn with each that passes the check, in pages of FOLLOW_PAGE records all
 * read at the revision of the first page (etcd_range_pages), so each request stays small
 * and within FOLLOW_TIMEOUT_MS however many services there are: one read of 1000
 * services of 100 endpoints (about 10 MB of JSON) outlasted the bound on a loaded machine,
 * and was tried again and again while the replica answered from its configuration. Only
 * the records changed since the last read: every one changed after it has a mod_revision
 * past it (compacted or not), so none is missed. Returns 0 or -EIO (or -ENOMEM). */
static int follow_read(struct dns_follow *f, dns_follow_fn fn, void *arg)
{
	struct follow_rd x = {.f = f, .fn = fn, .arg = arg};
	int64_t top;
	unsigned pages;
	long n = etcd_range_pages(&f->cl, f->pre, f->rev > 0 ? f->rev + 1 : 0, FOLLOW_PAGE, on_kv,
	                          &x, &top, &pages);
	if (n < 0)
		return (int)n;
	bool first = !f->rev || f->resync;
	f->resync = false;
	f->rev = top;
	if (first)
		f->reads++;
	/* The stream from the read's revision at once, not at the next tick: a change stored
	 * before etcd registers the watch comes only at etcd's next pass over late watchers
	 * (if it cannot start here, the next tick's etcd_watch starts it). */
	etcd_watch_open(&f->cl, f->pre, f->rev);
	if (first)
		log_msg(LOG_INFO,
		        "%s: etcd: following %s from revision %" PRId64
		        " (%ld records read in %u requests)",
		        f->who, f->pre, top, n, pages);
	return 0;
}

/* The watch's events: each record's new value is applied as a read's would be, and the
 * watch resumes after it. */
struct follow_ev {
	struct dns_follow *f;
	dns_follow_fn fn;
	void *arg;
	unsigned n;
};

static void on_event(void *arg, json_t *kv, bool deleted)
{
	struct follow_ev *x = arg;
	int64_t r = etcd_jint(kv, "mod_revision");
	if (!deleted) /* (the controller never deletes a service's key while it serves it) */
		kv_apply(x->f, kv, x->fn, x->arg);
	if (r > x->f->rev)
		x->f->rev = r;
	x->n++;
}

int dns_follow_fd(struct dns_follow *f)
{
	return f->kube || !f->have ? -1 : etcd_watch_fd(&f->cl);
}

int dns_follow_step(struct dns_follow *f, dns_follow_fn fn, void *arg)
{
	if (f->kube)
		return follow_kube_step(f, fn, arg);
	if (f->have) {
		struct follow_ev x = {.f = f, .fn = fn, .arg = arg};
		int w = etcd_watch(&f->cl, f->pre, f->rev, on_event, &x);
		if (x.n && w != ETCD_WATCH_RESYNC)
			return 1; /* the events' values are applied (a broken stream resumes) */
		if (w <= 0)
			return w;
		f->have = false; /* compacted or cancelled: read afresh (again at the next tick
		                  * if this fails) */
		f->resync = true;
	}
	int r = follow_read(f, fn, arg);
	if (r)
		return r;
	f->have = true;
	return 1;
}

void dns_follow_counts(const struct dns_follow *f, unsigned long *reads, unsigned long *refused)
{
	*reads = f->reads;
	*refused = f->refused;
}
