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
#include "../sys/log.h"

enum { FOLLOW_VALUE_MAX_B = 16 << 20 }; /* one service's value, as the controller's */

struct dns_follow {
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

void dns_follow_free(struct dns_follow *f)
{
	if (!f)
		return;
	etcd_close(&f->cl);
	free(f);
}

/* Reads every record under PREFIX svc/, calling fn with each that passes the check.
 * Returns 0 or -EIO. */
static int follow_read(struct dns_follow *f, dns_follow_fn fn, void *arg)
{
	json_t *r = etcd_call(&f->cl, "/v3/kv/range", etcd_range_req(f->pre, false)), *kv;
	size_t i, pl = strlen(f->pre);
	if (!r)
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

int dns_follow_step(struct dns_follow *f, dns_follow_fn fn, void *arg)
{
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
