/* peak dns's etcd follower (follow.h). */
#include "follow.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../controller/store.h" /* store_rec_check, store_b64_dec: the records' checks */
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
};

struct dns_follow *dns_follow_open(const char *urls, const char *prefix, char *err, size_t errlen)
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
	if (etcd_open(&f->cl, "dns", urls, FOLLOW_TIMEOUT_MS, err, errlen)) {
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

/* Reads the records under PREFIX svc/ written since the last read (every one at the
 * first), calling fn with each that passes the check. Only those: at 10,000 services a read
 * of them all took seconds for every change of one. Every record changed after the last
 * read has a mod_revision past it (compacted or not), so none is missed. Returns 0 or
 * -EIO (or -ENOMEM). */
static int follow_read(struct dns_follow *f, dns_follow_fn fn, void *arg)
{
	json_t *req = etcd_range_req(f->pre, false), *r, *kv;
	size_t i, pl = strlen(f->pre);
	char rev[32];
	if (!req)
		return -ENOMEM;
	if (f->rev > 0) {
		snprintf(rev, sizeof(rev), "%" PRId64, f->rev + 1);
		json_object_set_new(req, "min_mod_revision", json_string(rev));
	}
	if (!(r = etcd_call(&f->cl, "/v3/kv/range", req)))
		return -EIO;
	json_t *kvs = json_object_get(r, "kvs");
	json_array_foreach(kvs, i, kv)
	{
		size_t kl = 0, vl = 0;
		char why[128], shown[96];
		const char *k64 = json_string_value(json_object_get(kv, "key"));
		const char *v64 = json_string_value(json_object_get(kv, "value"));
		char *k = k64 ? store_b64_dec(k64, ETCD_KEY_MAX, &kl) : NULL;
		char *v = store_b64_dec(v64 ? v64 : "", FOLLOW_VALUE_MAX_B, &vl);
		bool key_ok = k && strlen(k) == kl && kl > pl && !strncmp(k, f->pre, pl);
		etcd_printable(shown, sizeof(shown), k ? k : "?", k ? kl : 1);
		int err = !key_ok ? (snprintf(why, sizeof(why), "not a key of this prefix"), -1)
		          : !v    ? (snprintf(why, sizeof(why), "not base64, or over %d bytes",
		                              FOLLOW_VALUE_MAX_B),
                                  -1)
		                  : store_rec_check(k + pl, v, vl, why, sizeof(why));
		if (err)
			log_msg(LOG_WARNING, "dns: etcd: %s: refused: %s", shown, why);
		else
			fn(arg, k + pl, v, vl);
		free(k);
		free(v);
	}
	f->rev = etcd_jint(json_object_get(r, "header"), "revision");
	json_decref(r);
	return 0;
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
		int w = etcd_watch(&f->cl, f->pre, f->rev);
		if (w <= 0)
			return w;
		f->have = false; /* a change: read afresh (again at the next tick if this fails) */
	}
	int r = follow_read(f, fn, arg);
	if (r)
		return r;
	f->have = true;
	return 1;
}
