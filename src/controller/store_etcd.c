/*
 * The etcd store: etcd v3 through its JSON gateway (etcd 3.4: /v3/kv/range, /v3/kv/txn,
 * /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke, /v3/watch; keys and values base64, int64
 * fields as strings) with libcurl and jansson. Key layout under PREFIX (default /peak/):
 *   PREFIX svc/NAME   one service's live state: its map ("map NAME", "ep ...", "end"), a
 *                     "weight" line per endpoint and "health NAME ID down" per endpoint down;
 *                     the control lines of include/peak/ctlproto.h, as the file store keeps
 *   PREFIX leader     the leading controller's id, under its lease
 *   PREFIX nodes/NODE the leader's id, under a lease of the agent TTL per node whose agent
 *                     is connected to the leader: renewed while the link lasts, so the key
 *                     vanishes the TTL after the link dropped (or the leader died)
 * Writes are transactions guarded by revisions: each service key's mod_revision must be the
 * one last loaded or written, and the leader key's create_revision the one this controller
 * created, so a controller that lost the lead, or raced another writer, writes nothing.
 * Values that do not parse as one service's lines are refused with a log line and never
 * adopted; keys elsewhere under the prefix are not read.
 * Every request is synchronous, on the controller's loop, bounded by a timeout of a quarter
 * of the lease, except the watch stream (/v3/watch), which a standby reads without
 * blocking at every interval.
 */
#define _GNU_SOURCE /* strchrnul */
#include "store.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sys/log.h"
#include "controller.h"
#include "ctl.h"

enum {
	ETCD_RESP_MAX_B = 64 << 20,  /* a reply larger than this is refused */
	ETCD_VALUE_MAX_B = 16 << 20, /* one service's value */
	ETCD_KEY_MAX = 512,
	ETCD_TTL_DEF_S = 2,
	ETCD_URLS_MAX = 8,
	ETCD_TICK_MS = 250, /* the controller's loop may call the store this late (POLL_TICK_MS) */
};

struct ekey {
	char *key;   /* the whole key (PREFIX svc/NAME) */
	int64_t rev; /* its mod_revision as last loaded or written */
	char *text;  /* the value we wrote last (NULL: not ours, or not known) */
	size_t len;
};

/* A lease this leader holds for a connected agent's node. */
struct enode {
	char node[CTL_ID_MAX];
	int64_t lease; /* 0: none held */
};

struct store_etcd {
	struct store st;
	CURL *curl;
	struct curl_slist *hdr;
	char urls[ETCD_URLS_MAX][256]; /* --etcd: the members' client URLs */
	unsigned nurls, cur;           /* the member in use: the next on a failure */
	const char *url;               /* urls[cur] */
	char prefix[256];
	char id[160];
	unsigned ttl_s;
	int64_t lease;       /* 0: none granted */
	int64_t leader_rev;  /* the leader key's create_revision while leading, else 0 */
	uint64_t renewed_ms; /* when the last keepalive that etcd answered was sent */
	struct ekey *keys;   /* every key under PREFIX svc/ as last seen */
	unsigned nkeys;
	bool down; /* the last request failed (logged once per streak) */
	struct text resp;
	int64_t rev;      /* the store's revision at the last load: the watch resumes after it */
	CURLM *wm;        /* the watch stream (a standby's), driven without blocking */
	CURL *wh;         /* NULL: no stream */
	char *wbody;      /* its request, alive as long as the transfer */
	struct text wbuf; /* what the stream sent that is not a whole line yet */
	unsigned agent_ttl_s;
	struct enode nodes[MAX_AGENTS]; /* the leases held for connected agents' nodes */
	unsigned nnodes;
	char (*alive)[CTL_ID_MAX]; /* nodes registered at the last read of PREFIX nodes/ */
	unsigned nalive;
};

/* ---- requests ---- */

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	struct text *t = arg;
	if (t->len + sz * n > ETCD_RESP_MAX_B)
		return 0; /* curl fails the transfer */
	ctlr_text_add(t, p, sz * n);
	return t->err ? 0 : sz * n;
}

/* An int64 field of the gateway's JSON (a string, or a number), 0 when absent. */
static int64_t jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

/* POSTs req (consumed) to the gateway's path, on the member in use and, if it does not
 * answer (or answers 5xx, e.g. without quorum), on the next ones in turn: each try is
 * bounded by the timeout. Returns the reply's JSON object or NULL (the failure logged
 * once per streak of failures). */
static json_t *call(struct store_etcd *e, const char *path, json_t *req)
{
	char url[sizeof(e->urls[0]) + 64], *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_t *r = NULL;
	long code = 0;
	const char *why = "out of memory";
	json_decref(req);
	for (unsigned a = 0; body && a < e->nurls; a++) {
		if (a) {
			e->cur = (e->cur + 1) % e->nurls;
			e->url = e->urls[e->cur];
		}
		e->resp.len = 0;
		e->resp.err = 0;
		code = 0;
		snprintf(url, sizeof(url), "%s%s", e->url, path);
		curl_easy_setopt(e->curl, CURLOPT_URL, url);
		curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body);
		CURLcode cc = curl_easy_perform(e->curl);
		if (cc != CURLE_OK) {
			why = curl_easy_strerror(cc);
			continue;
		}
		curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 500) {
			why = "an HTTP error status";
			continue;
		}
		if (code != 200) {
			why = "an HTTP error status";
			break;
		}
		json_error_t je;
		r = json_loadb(e->resp.p ? e->resp.p : "", e->resp.len, 0, &je);
		if (!json_is_object(r)) {
			json_decref(r);
			r = NULL;
			why = "a reply that is not a JSON object";
		}
		break;
	}
	if (!r && !e->down)
		log_msg(LOG_WARNING, "controller: etcd %s%s: %s (code %ld)", e->url, path, why,
		        code);
	if (r && e->down)
		log_msg(LOG_INFO, "controller: etcd %s answers again", e->url);
	e->down = !r;
	free(body);
	return r;
}

static json_t *jkey(const char *k, size_t n)
{
	char *s = store_b64_enc(k, n);
	json_t *j = s ? json_string(s) : NULL;
	free(s);
	return j;
}

/* A range request over every key beginning with pre. */
static json_t *range_req(const char *pre, bool keys_only)
{
	char end[ETCD_KEY_MAX];
	size_t n = strlen(pre);
	memcpy(end, pre, n);
	end[n - 1]++; /* pre ends in '/': the range ends before '0' */
	json_t *r = json_object();
	json_object_set_new(r, "key", jkey(pre, n));
	json_object_set_new(r, "range_end", jkey(end, n));
	if (keys_only)
		json_object_set_new(r, "keys_only", json_true());
	return r;
}

/* ---- the service records ---- */

static void keys_clear(struct store_etcd *e)
{
	for (unsigned i = 0; i < e->nkeys; i++) {
		free(e->keys[i].key);
		free(e->keys[i].text);
	}
	free(e->keys);
	e->keys = NULL;
	e->nkeys = 0;
}

static struct ekey *key_find(struct store_etcd *e, const char *k)
{
	for (unsigned i = 0; i < e->nkeys; i++)
		if (!strcmp(e->keys[i].key, k))
			return &e->keys[i];
	return NULL;
}

static struct ekey *key_add(struct store_etcd *e, const char *k)
{
	struct ekey *x = key_find(e, k), *nk;
	if (x)
		return x;
	if (!(nk = realloc(e->keys, (e->nkeys + 1) * sizeof(*nk))))
		return NULL;
	e->keys = nk;
	x = &e->keys[e->nkeys];
	*x = (struct ekey){.key = strdup(k)};
	if (!x->key)
		return NULL;
	e->nkeys++;
	return x;
}

/* Replaces the known keys by the kvs of a range reply (keys and mod_revisions only). */
static int keys_from(struct store_etcd *e, json_t *kvs)
{
	size_t i;
	json_t *kv;
	keys_clear(e);
	json_array_foreach(kvs, i, kv)
	{
		size_t kl;
		const char *k64 = json_string_value(json_object_get(kv, "key"));
		char *k = k64 ? store_b64_dec(k64, ETCD_KEY_MAX, &kl) : NULL;
		struct ekey *x = k && strlen(k) == kl ? key_add(e, k) : NULL;
		free(k);
		if (!x)
			continue; /* a key with a NUL or too long: not ours, never written */
		x->rev = jint(kv, "mod_revision");
	}
	return 0;
}

/* Prints s for a log line: at most 80 bytes, anything not printable as '?'. */
static void printable(char *out, size_t cap, const char *s, size_t n)
{
	size_t k = 0;
	for (; k < n && k + 1 < cap && k < 80; k++)
		out[k] = (unsigned char)s[k] >= 0x20 && (unsigned char)s[k] < 0x7f ? s[k] : '?';
	out[k] = 0;
}

static int etcd_load(struct store *st, char **text, size_t *len)
{
	struct store_etcd *e = (struct store_etcd *)st;
	char pre[ETCD_KEY_MAX], why[128];
	struct text t = {0};
	json_t *r, *kv;
	size_t i;
	*text = NULL;
	*len = 0;
	snprintf(pre, sizeof(pre), "%ssvc/", e->prefix);
	if (!(r = call(e, "/v3/kv/range", range_req(pre, false))))
		return -EIO;
	json_t *kvs = json_object_get(r, "kvs");
	keys_from(e, kvs);
	e->rev = jint(json_object_get(r, "header"), "revision");
	json_array_foreach(kvs, i, kv)
	{
		size_t kl = 0, vl = 0;
		const char *k64 = json_string_value(json_object_get(kv, "key"));
		const char *v64 = json_string_value(json_object_get(kv, "value"));
		char *k = k64 ? store_b64_dec(k64, ETCD_KEY_MAX, &kl) : NULL;
		char *v = store_b64_dec(v64 ? v64 : "", ETCD_VALUE_MAX_B, &vl);
		char shown[96];
		printable(shown, sizeof(shown), k ? k : "?", k ? kl : 1);
		bool key_ok =
		    k && strlen(k) == kl && kl > strlen(pre) && !strncmp(k, pre, strlen(pre));
		int err = !key_ok ? (snprintf(why, sizeof(why), "not a key of this prefix"), -1)
		          : !v    ? (snprintf(why, sizeof(why), "not base64, or over %d bytes",
		                              ETCD_VALUE_MAX_B),
                                  -1)
		                  : store_rec_check(k + strlen(pre), v, vl, why, sizeof(why));
		struct ekey *x;
		if (err) {
			log_msg(LOG_WARNING, "controller: etcd: %s: refused: %s", shown, why);
		} else {
			ctlr_text_add(&t, v, vl);
			if ((x = key_find(e, k)) && !x->text) { /* a save leaves it as it is */
				x->text = v;
				x->len = vl;
				v = NULL;
			}
		}
		free(k);
		free(v);
	}
	json_decref(r);
	if (t.err) {
		free(t.p);
		return t.err;
	}
	if (t.len) {
		ctlr_text_add(&t, "", 1);
		if (t.err) {
			free(t.p);
			return t.err;
		}
		*text = t.p;
		*len = t.len - 1;
	}
	return 0;
}

/* One transaction writing the changed records, guarded by the revisions. Returns 1 (it
 * succeeded), 0 (a compare failed: *fail holds the failure branch's range replies), or
 * -errno. */
static int txn_write(struct store_etcd *e, const struct store_rec *r, unsigned n, json_t **fail)
{
	char k[ETCD_KEY_MAX], lk[ETCD_KEY_MAX], pre[ETCD_KEY_MAX];
	json_t *req = json_object(), *cmp = json_array(), *ok = json_array(), *no = json_array();
	bool *put = calloc(n ? n : 1, sizeof(*put));
	unsigned nput = 0;
	int ret = -ENOMEM;
	if (!req || !cmp || !ok || !no || !put)
		goto out;
	snprintf(lk, sizeof(lk), "%sleader", e->prefix);
	snprintf(pre, sizeof(pre), "%ssvc/", e->prefix);
	char rev[32];
	snprintf(rev, sizeof(rev), "%" PRId64, e->leader_rev);
	json_array_append_new(cmp,
	                      json_pack("{s:o,s:s,s:s,s:s}", "key", jkey(lk, strlen(lk)), "target",
	                                "CREATE", "result", "EQUAL", "create_revision", rev));
	for (unsigned i = 0; i < n; i++) {
		snprintf(k, sizeof(k), "%s%s", pre, r[i].name);
		struct ekey *x = key_find(e, k);
		if (x && x->text && x->len == r[i].len && !memcmp(x->text, r[i].text, r[i].len))
			continue;
		char *v = store_b64_enc(r[i].text, r[i].len);
		if (!v)
			goto out;
		snprintf(rev, sizeof(rev), "%" PRId64, x ? x->rev : 0);
		json_array_append_new(cmp, json_pack("{s:o,s:s,s:s,s:s}", "key", jkey(k, strlen(k)),
		                                     "target", "MOD", "result", "EQUAL",
		                                     "mod_revision", rev));
		json_array_append_new(ok, json_pack("{s:{s:o,s:s}}", "request_put", "key",
		                                    jkey(k, strlen(k)), "value", v));
		free(v);
		put[i] = true;
		nput++;
	}
	if (!nput) {
		ret = 1;
		goto out;
	}
	json_array_append_new(no,
	                      json_pack("{s:{s:o}}", "request_range", "key", jkey(lk, strlen(lk))));
	json_array_append_new(no, json_pack("{s:o}", "request_range", range_req(pre, true)));
	json_object_set_new(req, "compare", cmp);
	json_object_set_new(req, "success", ok);
	json_object_set_new(req, "failure", no);
	cmp = ok = no = NULL;
	json_t *res = call(e, "/v3/kv/txn", req);
	req = NULL;
	if (!res) {
		ret = -EIO;
		goto out;
	}
	if (!json_is_true(json_object_get(res, "succeeded"))) {
		*fail = res;
		ret = 0;
		goto out;
	}
	int64_t at = jint(json_object_get(res, "header"), "revision");
	json_decref(res);
	ret = 1;
	for (unsigned i = 0; i < n; i++) {
		struct ekey *x;
		snprintf(k, sizeof(k), "%s%s", pre, r[i].name);
		if (!put[i] || !(x = key_add(e, k)))
			continue;
		free(x->text);
		x->rev = at;
		x->len = r[i].len;
		if ((x->text = malloc(r[i].len ? r[i].len : 1)))
			memcpy(x->text, r[i].text, r[i].len);
	}
out:
	json_decref(req);
	json_decref(cmp);
	json_decref(ok);
	json_decref(no);
	free(put);
	return ret;
}

static int etcd_save(struct store *st, const struct store_rec *r, unsigned n)
{
	struct store_etcd *e = (struct store_etcd *)st;
	json_t *fail = NULL;
	int ret = -ESTALE;
	if (!e->leader_rev)
		return -ESTALE;
	for (int attempt = 0; attempt < 2; attempt++) {
		int k = txn_write(e, r, n, &fail);
		if (k < 0)
			return k;
		if (k == 1)
			return 0;
		/* A compare failed: the lead lost, or a service key written by someone else
		 * (a foreign or corrupt value). The live state wins over the latter: the known
		 * revisions are refreshed and it is written once more. */
		json_t *res = json_object_get(fail, "responses");
		json_t *lead = json_object_get(
		    json_object_get(json_array_get(res, 0), "response_range"), "kvs");
		json_t *svcs = json_object_get(
		    json_object_get(json_array_get(res, 1), "response_range"), "kvs");
		int64_t lrev = jint(json_array_get(lead, 0), "create_revision");
		if (lrev != e->leader_rev) {
			log_msg(LOG_WARNING,
			        "controller: etcd: the lead was lost: nothing written");
			e->leader_rev = 0;
			json_decref(fail);
			return -ESTALE;
		}
		log_msg(LOG_WARNING,
		        "controller: etcd: a service key under %ssvc/ was written by "
		        "another writer: writing the live state over it",
		        e->prefix);
		keys_from(e, svcs);
		json_decref(fail);
		fail = NULL;
	}
	return ret;
}

/* Ends the watch stream (the next etcd_watch starts another). */
static void watch_stop(struct store_etcd *e)
{
	if (e->wh) {
		curl_multi_remove_handle(e->wm, e->wh);
		curl_easy_cleanup(e->wh);
		e->wh = NULL;
	}
	free(e->wbody);
	e->wbody = NULL;
	e->wbuf.len = 0;
	e->wbuf.err = 0;
}

/* Starts a watch of PREFIX svc/ from the revision after the last load (/v3/watch: one
 * JSON object a line, for as long as the transfer lasts). Returns 0 or -ENOMEM. */
static int watch_start(struct store_etcd *e)
{
	char pre[ETCD_KEY_MAX], url[sizeof(e->urls[0]) + 16], rev[32];
	snprintf(pre, sizeof(pre), "%ssvc/", e->prefix);
	snprintf(url, sizeof(url), "%s/v3/watch", e->url);
	snprintf(rev, sizeof(rev), "%" PRId64, e->rev + 1);
	json_t *cr = range_req(pre, false);
	json_object_set_new(cr, "start_revision", json_string(rev));
	json_t *req = json_pack("{s:o}", "create_request", cr);
	e->wbody = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!e->wbody || !(e->wh = curl_easy_init())) {
		watch_stop(e);
		return -ENOMEM;
	}
	curl_easy_setopt(e->wh, CURLOPT_URL, url);
	curl_easy_setopt(e->wh, CURLOPT_POSTFIELDS, e->wbody);
	curl_easy_setopt(e->wh, CURLOPT_HTTPHEADER, e->hdr);
	curl_easy_setopt(e->wh, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e->wh, CURLOPT_WRITEDATA, &e->wbuf);
	curl_easy_setopt(e->wh, CURLOPT_CONNECTTIMEOUT_MS, (long)e->ttl_s * 1000 / 4);
	curl_easy_setopt(e->wh, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->wh, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e->wh, CURLOPT_NOPROXY, "*");
	if (curl_multi_add_handle(e->wm, e->wh) != CURLM_OK) {
		watch_stop(e);
		return -ENOMEM;
	}
	return 0;
}

/* Reads what the watch stream has (never blocking): 1 when an event under PREFIX svc/
 * came, the watch was cancelled (compacted past its revision: the caller reads afresh,
 * and the next watch starts after that read) or the stream ended cleanly; 0 when nothing
 * changed; -EIO when the stream broke (it restarts from the last load's revision, so
 * nothing is missed). */
static int etcd_watch(struct store *st)
{
	struct store_etcd *e = (struct store_etcd *)st;
	int running = 0, changed = 0, msgs;
	bool restart = false;
	size_t off = 0;
	if (!e->wh && watch_start(e))
		return -ENOMEM;
	curl_multi_perform(e->wm, &running);
	for (char *nl; e->wbuf.p && (nl = memchr(e->wbuf.p + off, '\n', e->wbuf.len - off));) {
		size_t n = (size_t)(nl - (e->wbuf.p + off));
		json_t *m = json_loadb(e->wbuf.p + off, n, 0, NULL);
		json_t *res = json_object_get(m, "result");
		if (!json_is_object(res) || jint(res, "compact_revision") > 0 ||
		    json_is_true(json_object_get(res, "canceled"))) {
			changed = 1; /* an error, or compacted: read afresh, watch again */
			restart = true;
			json_t *er = json_object_get(m, "error");
			const char *why = json_string_value(
			    json_is_object(er) ? json_object_get(er, "message") : er);
			char shown[96];
			printable(shown, sizeof(shown), why ? why : "?", why ? strlen(why) : 1);
			if (!json_is_object(res))
				log_msg(LOG_INFO,
				        "controller: etcd: the watch ended: %s: reading the state "
				        "afresh",
				        shown);
			else if (jint(res, "compact_revision") > 0)
				log_msg(LOG_INFO,
				        "controller: etcd: history compacted past revision %" PRId64
				        ": reading the state afresh",
				        e->rev);
		} else if (json_array_size(json_object_get(res, "events"))) {
			changed = 1;
		}
		json_decref(m);
		off += n + 1;
	}
	if (off) {
		memmove(e->wbuf.p, e->wbuf.p + off, e->wbuf.len - off);
		e->wbuf.len -= off;
	}
	if (!running) {
		CURLMsg *cm = curl_multi_info_read(e->wm, &msgs);
		bool ok = cm && cm->msg == CURLMSG_DONE && cm->data.result == CURLE_OK;
		if (!ok && !e->down)
			log_msg(LOG_WARNING, "controller: etcd %s/v3/watch: the stream broke",
			        e->url);
		changed = ok ? 1 : -EIO;
		restart = true;
	}
	if (restart)
		watch_stop(e);
	return changed;
}

/* Grants a lease of ttl seconds. Returns its id, or 0 (etcd did not grant it). */
static int64_t lease_new(struct store_etcd *e, unsigned ttl)
{
	char s[16];
	int64_t id;
	snprintf(s, sizeof(s), "%u", ttl);
	json_t *r = call(e, "/v3/lease/grant", json_pack("{s:s}", "TTL", s));
	if (!r)
		return 0;
	id = jint(r, "ID");
	json_decref(r);
	return id;
}

/* Grants this controller's lease. Returns 0 or -EIO. */
static int lease_grant(struct store_etcd *e)
{
	e->lease = lease_new(e, e->ttl_s);
	return e->lease ? 0 : -EIO;
}

/* ---- the agents' registrations ---- */

/* Renews lease id. Returns 1 (alive), 0 (expired) or -EIO. */
static int lease_renew(struct store_etcd *e, int64_t id)
{
	char s[32];
	snprintf(s, sizeof(s), "%" PRId64, id);
	json_t *r = call(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", s));
	if (!r)
		return -EIO;
	int alive = jint(json_object_get(r, "result"), "TTL") > 0;
	json_decref(r);
	return alive;
}

/* Writes PREFIX nodes/NODE under a new lease of the agent TTL. Returns 0 or -EIO. */
static int node_register(struct store_etcd *e, struct enode *x)
{
	char k[ETCD_KEY_MAX], id[32];
	json_t *r;
	if (!(x->lease = lease_new(e, e->agent_ttl_s)))
		return -EIO;
	snprintf(k, sizeof(k), "%snodes/%s", e->prefix, x->node);
	snprintf(id, sizeof(id), "%" PRId64, x->lease);
	char *v = store_b64_enc(e->id, strlen(e->id));
	r = v ? call(e, "/v3/kv/put",
	             json_pack("{s:o,s:s,s:s}", "key", jkey(k, strlen(k)), "value", v, "lease", id))
	      : NULL;
	free(v);
	if (!r) {
		x->lease = 0; /* granted for nothing: it runs out */
		return -EIO;
	}
	json_decref(r);
	return 0;
}

/* Reads which nodes are registered (the keys under PREFIX nodes/). Returns 0 or -EIO. */
static int nodes_read(struct store_etcd *e)
{
	char pre[ETCD_KEY_MAX];
	json_t *r, *kv;
	size_t i, pl;
	snprintf(pre, sizeof(pre), "%snodes/", e->prefix);
	pl = strlen(pre);
	if (!(r = call(e, "/v3/kv/range", range_req(pre, true))))
		return -EIO;
	json_t *kvs = json_object_get(r, "kvs");
	char(*nv)[CTL_ID_MAX] = calloc(json_array_size(kvs) + 1, sizeof(*nv));
	unsigned n = 0;
	if (!nv) {
		json_decref(r);
		return -ENOMEM;
	}
	json_array_foreach(kvs, i, kv)
	{
		size_t kl;
		const char *k64 = json_string_value(json_object_get(kv, "key"));
		char *k = k64 ? store_b64_dec(k64, ETCD_KEY_MAX, &kl) : NULL;
		/* a key with a NUL, or a name no hello could carry, names no node */
		if (k && strlen(k) == kl && kl > pl && kl - pl < CTL_ID_MAX && !strncmp(k, pre, pl))
			memcpy(nv[n++], k + pl, kl - pl + 1);
		free(k);
	}
	json_decref(r);
	free(e->alive);
	e->alive = nv;
	e->nalive = n;
	return 0;
}

static int etcd_nodes_renew(struct store *st, const char *const *nodes, unsigned n)
{
	struct store_etcd *e = (struct store_etcd *)st;
	unsigned k = 0;
	for (unsigned i = 0; i < e->nnodes; i++) { /* the others' leases are left to run out */
		bool here = false;
		for (unsigned j = 0; j < n && !here; j++)
			here = !strcmp(nodes[j], e->nodes[i].node);
		if (here)
			e->nodes[k++] = e->nodes[i];
	}
	e->nnodes = k;
	for (unsigned j = 0; j < n; j++) {
		struct enode *x = NULL;
		int r;
		for (unsigned i = 0; i < e->nnodes && !x; i++)
			if (!strcmp(nodes[j], e->nodes[i].node))
				x = &e->nodes[i];
		if (!x && e->nnodes < MAX_AGENTS && strlen(nodes[j]) < CTL_ID_MAX) {
			x = &e->nodes[e->nnodes++];
			*x = (struct enode){0};
			memcpy(x->node, nodes[j], strlen(nodes[j]) + 1);
		}
		if (!x)
			continue;
		if (x->lease && (r = lease_renew(e, x->lease)) <= 0) {
			if (r < 0)
				return r;
			x->lease = 0; /* expired (the link came back too late): a new one */
		}
		if (!x->lease && node_register(e, x))
			return -EIO;
	}
	return nodes_read(e);
}

static bool etcd_node_alive(const struct store *st, const char *node)
{
	const struct store_etcd *e = (const struct store_etcd *)st;
	for (unsigned i = 0; i < e->nalive; i++)
		if (!strcmp(e->alive[i], node))
			return true;
	return false;
}

static unsigned etcd_interval_ms(const struct store *st);

static int etcd_keepalive(struct store *st)
{
	struct store_etcd *e = (struct store_etcd *)st;
	char lk[ETCD_KEY_MAX], id[32];
	json_t *r;
	if (e->lease) {
		uint64_t sent = ctlr_now_ms();
		snprintf(id, sizeof(id), "%" PRId64, e->lease);
		if (!(r = call(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", id)))) {
			/* etcd may be electing its own leader: the lease outlives that (etcd
			 * extends leases on a new raft leader), so the lead is kept if the next
			 * try, failing in full (every member timing out), still ends before the
			 * lease could expire: no two leaders, however etcd is cut off. */
			uint64_t worst = ETCD_TICK_MS + etcd_interval_ms(st) +
			                 (uint64_t)e->nurls * e->ttl_s * 1000 / 4;
			if (e->leader_rev &&
			    ctlr_now_ms() - e->renewed_ms + worst < e->ttl_s * 1000ull)
				return 1;
			e->leader_rev = 0;
			return -EIO;
		}
		e->renewed_ms = sent;
		bool alive = jint(json_object_get(r, "result"), "TTL") > 0;
		json_decref(r);
		if (!alive) {
			if (e->leader_rev)
				log_msg(LOG_WARNING, "controller: etcd: the lease expired");
			e->lease = 0;
			e->leader_rev = 0;
		}
	}
	if (!e->lease) {
		uint64_t sent = ctlr_now_ms();
		if (lease_grant(e))
			return -EIO;
		e->renewed_ms = sent;
	}
	if (e->leader_rev)
		return 1;
	/* Campaign: the leader key is created under our lease if nobody holds it. */
	snprintf(lk, sizeof(lk), "%sleader", e->prefix);
	snprintf(id, sizeof(id), "%" PRId64, e->lease);
	char *v = store_b64_enc(e->id, strlen(e->id));
	json_t *req = json_pack("{s:[{s:o,s:s,s:s,s:s}],s:[{s:{s:o,s:s,s:s}}],s:[{s:{s:o}}]}",
	                        "compare", "key", jkey(lk, strlen(lk)), "target", "CREATE",
	                        "result", "EQUAL", "create_revision", "0", "success", "request_put",
	                        "key", jkey(lk, strlen(lk)), "value", v ? v : "", "lease", id,
	                        "failure", "request_range", "key", jkey(lk, strlen(lk)));
	free(v);
	if (!(r = call(e, "/v3/kv/txn", req)))
		return -EIO;
	if (json_is_true(json_object_get(r, "succeeded"))) {
		e->leader_rev = jint(json_object_get(r, "header"), "revision");
	} else {
		json_t *kv = json_array_get(
		    json_object_get(
		        json_object_get(json_array_get(json_object_get(r, "responses"), 0),
		                        "response_range"),
		        "kvs"),
		    0);
		if (jint(kv, "lease") == e->lease) /* ours already (a reply lost on the way) */
			e->leader_rev = jint(kv, "create_revision");
	}
	json_decref(r);
	if (!e->leader_rev)
		return 0;
	watch_stop(e); /* a leader is the writer: it watches nothing */
	e->st.term = e->leader_rev;
	log_msg(LOG_INFO, "controller: etcd: %s leads (%sleader, lease %" PRIx64 ")", e->id,
	        e->prefix, (uint64_t)e->lease);
	return 1;
}

static unsigned etcd_interval_ms(const struct store *st)
{
	const struct store_etcd *e = (const struct store_etcd *)st;
	unsigned ka = e->ttl_s * 1000 / 4;
	/* A standby campaigns more often than the leader renews: takeover follows the old
	 * lease's expiry by at most this. */
	return e->leader_rev || ka < 250 ? ka : 250;
}

/* Frees the store; a leader revokes its lease first, so a standby takes over at once
 * rather than after the TTL. */
static void etcd_free(struct store *st)
{
	struct store_etcd *e = (struct store_etcd *)st;
	if (!e)
		return;
	if (e->lease && e->curl) {
		char id[32];
		snprintf(id, sizeof(id), "%" PRId64, e->lease);
		json_decref(call(e, "/v3/lease/revoke", json_pack("{s:s}", "ID", id)));
	}
	keys_clear(e);
	free(e->alive);
	watch_stop(e);
	if (e->wm)
		curl_multi_cleanup(e->wm);
	free(e->wbuf.p);
	if (e->curl)
		curl_easy_cleanup(e->curl);
	curl_slist_free_all(e->hdr);
	free(e->resp.p);
	free(e);
}

static const struct store_ops etcd_ops = {
    .name = "etcd",
    .load = etcd_load,
    .save = etcd_save,
    .watch = etcd_watch,
    .keepalive = etcd_keepalive,
    .nodes_renew = etcd_nodes_renew,
    .node_alive = etcd_node_alive,
    .interval_ms = etcd_interval_ms,
    .free = etcd_free,
};

struct store *store_etcd_open(const struct controller_opts *o, char *err, size_t errlen)
{
	struct store_etcd *e = NULL;
	const char *pre = o->etcd_prefix ? o->etcd_prefix : "/peak/";
	char host[64] = "?";
	if (!o->etcd) {
		snprintf(err, errlen, "--store etcd needs --etcd http://ADDR:PORT[,...]");
		return NULL;
	}
	if (pre[0] != '/' || pre[strlen(pre) - 1] != '/' || strlen(pre) >= sizeof(e->prefix) ||
	    strspn(pre, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.-") !=
	        strlen(pre)) {
		snprintf(err, errlen,
		         "--etcd-prefix: '%.64s' must begin and end with '/' "
		         "(letters, digits, '/', '_', '.', '-')",
		         pre);
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) || !(e = calloc(1, sizeof(*e))) ||
	    !(e->curl = curl_easy_init()) || !(e->wm = curl_multi_init()) ||
	    !(e->hdr = curl_slist_append(NULL, "Content-Type: application/json"))) {
		snprintf(err, errlen, "etcd: cannot set up libcurl");
		etcd_free(e ? &e->st : NULL);
		return NULL;
	}
	e->st.ops = &etcd_ops;
	for (const char *u = o->etcd, *end; *u; u = *end ? end + 1 : end) {
		size_t n = (end = strchrnul(u, ',')) - u;
		if (e->nurls == ETCD_URLS_MAX || n <= 7 || n >= sizeof(e->urls[0]) ||
		    strncmp(u, "http://", 7) || memchr(u, ' ', n)) {
			snprintf(err, errlen,
			         "--etcd: '%.128s' is not up to %d http://ADDR:PORT URLs "
			         "separated by commas",
			         o->etcd, ETCD_URLS_MAX);
			etcd_free(&e->st);
			return NULL;
		}
		memcpy(e->urls[e->nurls], u, n);
		e->urls[e->nurls][n - (u[n - 1] == '/')] = 0;
		e->nurls++;
	}
	if (!e->nurls) {
		snprintf(err, errlen, "--etcd: no URL");
		etcd_free(&e->st);
		return NULL;
	}
	e->url = e->urls[0];
	snprintf(e->prefix, sizeof(e->prefix), "%s", pre);
	e->ttl_s = o->lease_ttl_s ? o->lease_ttl_s : ETCD_TTL_DEF_S;
	e->agent_ttl_s = o->agent_ttl_s ? o->agent_ttl_s : ETCD_TTL_DEF_S;
	if (e->agent_ttl_s * 2 < e->ttl_s) { /* renewed at every interval, a quarter of ttl_s */
		snprintf(err, errlen, "--agent-ttl %u is less than half of --lease-ttl %u",
		         e->agent_ttl_s, e->ttl_s);
		etcd_free(&e->st);
		return NULL;
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(e->id, sizeof(e->id), "%s/%d %s", host, (int)getpid(), o->listen);
	long tmo = (long)e->ttl_s * 1000 / 4;
	curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, e->hdr);
	curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &e->resp);
	curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, tmo);
	curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, tmo);
	curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e->curl, CURLOPT_NOPROXY, "*");
	return &e->st;
}
