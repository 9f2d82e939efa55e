/* The etcd v3 JSON gateway client (etcd.h). */
#define _GNU_SOURCE /* strchrnul */
#include "etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "peak/util.h"

#include "../controller/store.h" /* store_b64_enc: base64, with the records' checks */
#include "../sys/log.h"
#include "curl_load.h"

static void buf_add(struct etcd_buf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n > ETCD_RESP_MAX_B) {
		b->err = -E2BIG;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	struct etcd_buf *b = arg;
	buf_add(b, p, sz * n);
	return b->err ? 0 : sz * n; /* 0: curl fails the transfer */
}

int64_t etcd_jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}

json_t *etcd_jkey(const char *k, size_t n)
{
	char *s = store_b64_enc(k, n);
	json_t *j = s ? json_string(s) : NULL;
	free(s);
	return j;
}

json_t *etcd_range_req(const char *pre, bool keys_only)
{
	char end[ETCD_KEY_MAX];
	size_t n = strlen(pre);
	memcpy(end, pre, n);
	end[n - 1]++; /* pre ends in '/': the range ends before '0' */
	json_t *r = json_object();
	json_object_set_new(r, "key", etcd_jkey(pre, n));
	json_object_set_new(r, "range_end", etcd_jkey(end, n));
	if (keys_only)
		json_object_set_new(r, "keys_only", json_true());
	return r;
}

void etcd_printable(char *out, size_t cap, const char *s, size_t n)
{
	size_t k = 0;
	for (; k < n && k + 1 < cap && k < 80; k++)
		out[k] = (unsigned char)s[k] >= 0x20 && (unsigned char)s[k] < 0x7f ? s[k] : '?';
	out[k] = 0;
}

json_t *etcd_call(struct etcd *e, const char *path, json_t *req)
{
	char url[ETCD_URL_MAX + 64], *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
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
		log_msg(LOG_WARNING, "%s: etcd %s%s: %s (code %ld)", e->who, e->url, path, why,
		        code);
	if (r && e->down)
		log_msg(LOG_INFO, "%s: etcd %s answers again", e->who, e->url);
	e->down = !r;
	free(body);
	return r;
}

long etcd_range_pages(struct etcd *e, const char *pre, int64_t min_rev, unsigned page,
                      etcd_kv_fn fn, void *arg, int64_t *rev, unsigned *pages)
{
	char mr[32], at[32] = "";
	char *from = NULL; /* the next page's first key (NULL: the prefix) */
	size_t fromlen = 0;
	long n = 0;
	*rev = 0;
	*pages = 0;
	for (bool more = true; more; (*pages)++) {
		json_t *req = etcd_range_req(pre, false), *r, *kv;
		size_t i;
		if (!req) {
			n = -ENOMEM;
			break;
		}
		if (from)
			json_object_set_new(req, "key", etcd_jkey(from, fromlen));
		if (min_rev > 0) {
			snprintf(mr, sizeof(mr), "%" PRId64, min_rev);
			json_object_set_new(req, "min_mod_revision", json_string(mr));
		}
		if (at[0]) /* the later pages: the first page's revision */
			json_object_set_new(req, "revision", json_string(at));
		json_object_set_new(req, "limit", json_integer(page));
		if (!(r = etcd_call(e, "/v3/kv/range", req))) {
			n = -EIO; /* (compacted past the first page's revision too) */
			break;
		}
		json_t *kvs = json_object_get(r, "kvs");
		json_array_foreach(kvs, i, kv)
		{
			fn(arg, kv);
			n++;
		}
		if (!at[0]) {
			*rev = etcd_jint(json_object_get(r, "header"), "revision");
			snprintf(at, sizeof(at), "%" PRId64, *rev);
		}
		more = json_is_true(json_object_get(r, "more")) && json_array_size(kvs);
		if (more) { /* the next page starts just after the last key */
			const char *k64 = json_string_value(
			    json_object_get(json_array_get(kvs, json_array_size(kvs) - 1), "key"));
			size_t kl = 0;
			char *k = k64 ? store_b64_dec(k64, ETCD_KEY_MAX - 1, &kl) : NULL;
			free(from);
			from = k ? realloc(k, kl + 1) : NULL;
			if (!from) {
				free(k);
				json_decref(r);
				n = k ? -ENOMEM : -EIO;
				break;
			}
			from[kl] = '\0'; /* (the key's successor: the key and a NUL byte) */
			fromlen = kl + 1;
		}
		json_decref(r);
	}
	free(from);
	return n;
}

void etcd_watch_stop(struct etcd *e)
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

int etcd_watch_fd(struct etcd *e)
{
	fd_set r, w, x;
	int max = -1;
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_ZERO(&x);
	/* (CURLINFO_ACTIVESOCKET knows no socket of a transfer under way) */
	if (!e->wh || curl_multi_fdset(e->wm, &r, &w, &x, &max) != CURLM_OK)
		return -1;
	for (int fd = 0; fd <= max; fd++)
		if (FD_ISSET(fd, &r))
			return fd;
	return -1;
}

/* Starts a watch of the keys beginning with pre from the revision after after (/v3/watch:
 * one JSON object a line, for as long as the transfer lasts). Returns 0 or -ENOMEM. */
static int watch_start(struct etcd *e, const char *pre, int64_t after)
{
	char url[ETCD_URL_MAX + 16], rev[32];
	snprintf(url, sizeof(url), "%s/v3/watch", e->url);
	snprintf(rev, sizeof(rev), "%" PRId64, after + 1);
	json_t *cr = etcd_range_req(pre, false);
	json_object_set_new(cr, "start_revision", json_string(rev));
	json_t *req = json_pack("{s:o}", "create_request", cr);
	e->wbody = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!e->wbody || !(e->wh = curl_easy_init())) {
		etcd_watch_stop(e);
		return -ENOMEM;
	}
	curl_easy_setopt(e->wh, CURLOPT_URL, url);
	curl_easy_setopt(e->wh, CURLOPT_POSTFIELDS, e->wbody);
	curl_easy_setopt(e->wh, CURLOPT_HTTPHEADER, e->hdr);
	curl_easy_setopt(e->wh, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e->wh, CURLOPT_WRITEDATA, &e->wbuf);
	curl_easy_setopt(e->wh, CURLOPT_CONNECTTIMEOUT_MS, e->timeout_ms);
	curl_easy_setopt(e->wh, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->wh, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e->wh, CURLOPT_NOPROXY, "*");
	if (curl_multi_add_handle(e->wm, e->wh) != CURLM_OK) {
		etcd_watch_stop(e);
		return -ENOMEM;
	}
	return 0;
}

/* Whether line m (one JSON object of the stream) ends the watch: a compaction, a cancel,
 * an error, or not a result; logged. */
static bool watch_ended(const char *who, json_t *m, int64_t after)
{
	json_t *res = json_object_get(m, "result");
	if (json_is_object(res) && etcd_jint(res, "compact_revision") <= 0 &&
	    !json_is_true(json_object_get(res, "canceled")))
		return false;
	json_t *er = json_object_get(m, "error");
	const char *why =
	    json_string_value(json_is_object(er) ? json_object_get(er, "message") : er);
	char shown[96];
	etcd_printable(shown, sizeof(shown), why ? why : "?", why ? strlen(why) : 1);
	if (!json_is_object(res))
		log_msg(LOG_INFO, "%s: etcd: the watch ended: %s: reading the state afresh", who,
		        shown);
	else if (etcd_jint(res, "compact_revision") > 0)
		log_msg(LOG_INFO,
		        "%s: etcd: history compacted past revision %" PRId64
		        ": reading the state afresh",
		        who, after);
	else
		log_msg(LOG_INFO, "%s: etcd: the watch was cancelled: reading the state afresh",
		        who);
	return true;
}

int etcd_watch_split(const char *who, const char *p, size_t n, int64_t after, etcd_event_fn fn,
                     void *arg, size_t *used)
{
	int changed = 0;
	size_t off = 0;
	for (const char *nl; off < n && (nl = memchr(p + off, '\n', n - off));) {
		size_t len = (size_t)(nl - (p + off));
		json_t *m = json_loadb(p + off, len, 0, NULL), *evs, *ev;
		off += len + 1;
		if (watch_ended(who, m, after)) {
			json_decref(m);
			changed = ETCD_WATCH_RESYNC;
			break;
		}
		evs = json_object_get(json_object_get(m, "result"), "events");
		size_t i, bad = json_array_size(evs);
		json_array_foreach(evs, i, ev) /* every event whole, or the line is not used */
		{
			if (!json_is_object(json_object_get(ev, "kv"))) {
				bad = i;
				break;
			}
		}
		if (bad < json_array_size(evs) || (evs && !json_is_array(evs))) {
			log_msg(LOG_INFO,
			        "%s: etcd: a watch event without its kv: reading the state "
			        "afresh",
			        who);
			json_decref(m);
			changed = ETCD_WATCH_RESYNC;
			break;
		}
		json_array_foreach(evs, i, ev)
		{
			const char *ty = json_string_value(json_object_get(ev, "type"));
			changed = ETCD_WATCH_EVENTS;
			if (fn)
				fn(arg, json_object_get(ev, "kv"), ty && !strcmp(ty, "DELETE"));
		}
		json_decref(m);
	}
	*used = off;
	return changed;
}

/* Drives a stream just started until its request is sent (curl then waits for the reply:
 * etcd_watch_fd gives its socket), for at most ETCD_WATCH_SEND_MS. etcd registers the watch
 * when the request arrives; a change made between the caller's read and then is sent only
 * at etcd's next pass over such late watchers (every 100 ms). Left to the caller's
 * interval, connect and request took one or two ticks (50 ms each for peak dns): the first
 * change after a replica's start reached it ~200 ms late. */
static void watch_send(struct etcd *e, int *running)
{
	uint64_t end = peak_mono_ms() + ETCD_WATCH_SEND_MS;
	while (*running && etcd_watch_fd(e) == -1) {
		uint64_t now = peak_mono_ms();
		if (now >= end)
			break;
		curl_multi_wait(e->wm, NULL, 0, (int)(end - now), NULL);
		curl_multi_perform(e->wm, running);
	}
}

int etcd_watch_open(struct etcd *e, const char *pre, int64_t after)
{
	int running = 0;
	if (e->wh)
		return 0;
	if (watch_start(e, pre, after))
		return -ENOMEM;
	curl_multi_perform(e->wm, &running);
	watch_send(e, &running);
	return 0;
}

int etcd_watch(struct etcd *e, const char *pre, int64_t after, etcd_event_fn fn, void *arg)
{
	int running = 0, changed, msgs;
	size_t used = 0;
	if (etcd_watch_open(e, pre, after))
		return -ENOMEM;
	curl_multi_perform(e->wm, &running);
	changed = etcd_watch_split(e->who, e->wbuf.p ? e->wbuf.p : "", e->wbuf.len, after, fn, arg,
	                           &used);
	bool restart = changed == ETCD_WATCH_RESYNC;
	if (used) {
		memmove(e->wbuf.p, e->wbuf.p + used, e->wbuf.len - used);
		e->wbuf.len -= used;
	}
	if (!running && !restart) {
		CURLMsg *cm = curl_multi_info_read(e->wm, &msgs);
		bool ok = cm && cm->msg == CURLMSG_DONE && cm->data.result == CURLE_OK;
		if (!ok && !e->down)
			log_msg(LOG_WARNING, "%s: etcd %s/v3/watch: the stream broke", e->who,
			        e->url);
		changed = ok ? ETCD_WATCH_RESYNC : -EIO;
		restart = true;
	}
	if (restart)
		etcd_watch_stop(e);
	return changed;
}

int etcd_rec_decode(const char *who, json_t *kv, const char *pre, size_t max, bool deleted,
                    struct etcd_rec *r)
{
	size_t pl = strlen(pre);
	char why[128], shown[96];
	const char *k64 = json_string_value(json_object_get(kv, "key"));
	const char *v64 = json_string_value(json_object_get(kv, "value"));
	int err = 0;
	*r = (struct etcd_rec){.mod_rev = etcd_jint(kv, "mod_revision")};
	r->key = k64 ? store_b64_dec(k64, ETCD_KEY_MAX, &r->klen) : NULL;
	if (r->key && strlen(r->key) != r->klen) { /* a NUL in it: no key of ours */
		free(r->key);
		r->key = NULL;
	}
	if (r->key && r->klen >= pl && !strncmp(r->key, pre, pl))
		r->name = r->key + pl;
	if (!r->name || !r->name[0])
		err = (snprintf(why, sizeof(why), "not a key of this prefix"), -EBADMSG);
	else if (deleted)
		return 0;
	else if (!(r->val = store_b64_dec(v64 ? v64 : "", max, &r->vlen)))
		err = (snprintf(why, sizeof(why), "not base64, or over %zu bytes", max), -EBADMSG);
	else
		err = store_rec_check(r->name, r->val, r->vlen, why, sizeof(why));
	if (!err)
		return 0;
	etcd_printable(shown, sizeof(shown), r->key ? r->key : "?", r->key ? r->klen : 1);
	log_msg(LOG_WARNING, "%s: etcd: %s: refused: %s", who, shown, why);
	free(r->val);
	r->val = NULL;
	r->vlen = 0;
	return err == -ENOMEM ? -ENOMEM : -EBADMSG;
}

void etcd_rec_free(struct etcd_rec *r)
{
	free(r->key);
	free(r->val);
	*r = (struct etcd_rec){0};
}

void etcd_close(struct etcd *e)
{
	etcd_watch_stop(e);
	if (e->wm)
		curl_multi_cleanup(e->wm);
	e->wm = NULL;
	free(e->wbuf.p);
	e->wbuf = (struct etcd_buf){0};
	if (e->curl)
		curl_easy_cleanup(e->curl);
	e->curl = NULL;
	curl_slist_free_all(e->hdr);
	e->hdr = NULL;
	free(e->resp.p);
	e->resp = (struct etcd_buf){0};
}

int etcd_open(struct etcd *e, const char *who, const char *urls, long timeout_ms, char *err,
              size_t errlen)
{
	*e = (struct etcd){.who = who, .timeout_ms = timeout_ms};
	if (curl_load()) {
		snprintf(err, errlen,
		         "etcd: cannot load libcurl (" CURL_SONAME "): install Debian's libcurl4");
		return -ENOENT;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) || !(e->curl = curl_easy_init()) ||
	    !(e->wm = curl_multi_init()) ||
	    !(e->hdr = curl_slist_append(NULL, "Content-Type: application/json"))) {
		snprintf(err, errlen, "etcd: cannot set up libcurl");
		etcd_close(e);
		return -ENOMEM;
	}
	for (const char *u = urls, *end; *u; u = *end ? end + 1 : end) {
		size_t n = (end = strchrnul(u, ',')) - u;
		if (e->nurls == ETCD_URLS_MAX || n <= 7 || n >= sizeof(e->urls[0]) ||
		    strncmp(u, "http://", 7) || memchr(u, ' ', n)) {
			snprintf(err, errlen,
			         "--etcd: '%.128s' is not up to %d http://ADDR:PORT URLs "
			         "separated by commas",
			         urls, ETCD_URLS_MAX);
			etcd_close(e);
			return -EINVAL;
		}
		memcpy(e->urls[e->nurls], u, n);
		e->urls[e->nurls][n - (u[n - 1] == '/')] = 0;
		e->nurls++;
	}
	if (!e->nurls) {
		snprintf(err, errlen, "--etcd: no URL");
		etcd_close(e);
		return -EINVAL;
	}
	e->url = e->urls[0];
	curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, e->hdr);
	curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &e->resp);
	curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e->curl, CURLOPT_NOPROXY, "*");
	return 0;
}
