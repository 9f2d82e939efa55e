/* The Kubernetes API client: lists, watches, the object copies (kube.h). */
#include "kube.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <sys/stat.h>

#include "../etcd/curl_load.h"
#include "../etcd/etcd.h" /* etcd_printable */
#include "../sys/log.h"
#include "peak/util.h"

const char *kube_who = "controller";

void kube_log_as(const char *who)
{
	kube_who = who;
}

/* ---- the watch stream's lines ---- */

void kube_lines_fini(struct kube_lines *l)
{
	free(l->p);
	*l = (struct kube_lines){0};
}

int kube_lines_feed(struct kube_lines *l, const char *p, size_t n, size_t max,
                    int (*fn)(void *arg, const char *line, size_t len), void *arg)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		if (!l->skipping && l->len + take > max) {
			int r = fn(arg, NULL, l->len + take);
			l->skipping = true;
			l->len = 0;
			if (r)
				return r;
		}
		if (!l->skipping) {
			if (l->len + take > l->cap) {
				size_t cap = l->cap ? l->cap : 4096;
				while (cap < l->len + take)
					cap *= 2;
				char *q = realloc(l->p, cap);
				if (!q)
					return -ENOMEM;
				l->p = q;
				l->cap = cap;
			}
			if (take) /* (memcpy from the stream; p is never NULL here) */
				memcpy(l->p + l->len, p, take);
			l->len += take;
		}
		if (!nl)
			return 0;
		p += take + 1;
		n -= take + 1;
		bool skipped = l->skipping;
		size_t len = l->len;
		l->skipping = false;
		l->len = 0;
		if (!skipped && len) {
			int r = fn(arg, l->p, len);
			if (r)
				return r;
		}
	}
	return 0;
}

/* ---- objects ---- */

/* Whether s is a name the API allows for a namespace or an object: 1..63 bytes (253 for
 * the dotted names of objects) of lower-case letters, digits, '-' and '.'. */
static bool name_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return false;
	return true;
}

bool kube_obj_key(json_t *o, char *out, size_t cap, const char **why)
{
	json_t *md = json_object_get(o, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	*why = NULL;
	if (!json_is_object(o) || !json_is_object(md))
		*why = "no metadata";
	else if (!name_ok(ns, 63))
		*why = "metadata.namespace is not a namespace name";
	else if (!name_ok(name, 63))
		*why = "metadata.name is not a name of 1 to 63 of [a-z0-9.-]";
	if (*why) {
		snprintf(out, cap, "?");
		return false;
	}
	snprintf(out, cap, "%s/%s", ns, name);
	return true;
}

static void rv_set(char rv[static KUBE_RV_MAX], json_t *o)
{
	const char *v =
	    json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
	if (v && *v && strlen(v) < KUBE_RV_MAX && !strpbrk(v, "&?#/ %\"\\"))
		snprintf(rv, KUBE_RV_MAX, "%s", v);
}

enum kube_ev kube_event_apply(json_t *objs, const char *what, char rv[static KUBE_RV_MAX],
                              const char *line, size_t len, json_t *ch[2])
{
	json_error_t je;
	json_t *ev = json_loadb(line, len, 0, &je);
	json_t *obj = json_object_get(ev, "object");
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *why = NULL;
	char key[160], buf[96];
	enum kube_ev ret = KUBE_EV_BAD;
	if (!json_is_object(ev) || !type || !json_is_object(obj)) {
		etcd_printable(buf, sizeof(buf), line, len);
		KLOG(LOG_WARNING, "%s watch: not an event: '%s'", what, buf);
		goto out;
	}
	if (!strcmp(type, "BOOKMARK")) {
		rv_set(rv, obj);
		ret = KUBE_EV_NONE;
		goto out;
	}
	if (!strcmp(type, "ERROR")) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		const char *msg = json_string_value(json_object_get(obj, "message"));
		etcd_printable(buf, sizeof(buf), msg ? msg : "?", msg ? strlen(msg) : 1);
		KLOG(LOG_INFO, "%s watch: ERROR %lld (%s): listing again", what, (long long)code,
		     buf);
		ret = KUBE_EV_RELIST;
		goto out;
	}
	bool del = !strcmp(type, "DELETED");
	if (!del && strcmp(type, "ADDED") && strcmp(type, "MODIFIED")) {
		etcd_printable(buf, sizeof(buf), type, strlen(type));
		KLOG(LOG_WARNING, "%s watch: unknown event type '%s'", what, buf);
		goto out;
	}
	if (!kube_obj_key(obj, key, sizeof(key), &why)) {
		json_t *md = json_object_get(obj, "metadata");
		const char *n = json_string_value(json_object_get(md, "name"));
		etcd_printable(buf, sizeof(buf), n ? n : "?", n ? strlen(n) : 1);
		KLOG(LOG_WARNING, "%s %s '%s' refused: %s", type, what, buf, why);
		goto out;
	}
	rv_set(rv, obj);
	if (ch)
		ch[0] = json_incref(json_object_get(objs, key));
	if (del)
		json_object_del(objs, key);
	else
		json_object_set(objs, key, obj);
	if (ch)
		ch[1] = del ? NULL : json_incref(obj);
	ret = KUBE_EV_CHANGED;
out:
	json_decref(ev);
	return ret;
}

/* ---- the client ---- */

struct reply {
	char *p;
	size_t len, cap;
	bool big; /* past KUBE_LINE_MAX */
};

static size_t on_reply(char *p, size_t sz, size_t n, void *arg)
{
	struct reply *b = arg;
	size_t k = sz * n;
	if (b->len + k + 1 > KUBE_LINE_MAX) {
		b->big = true;
		return 0;
	}
	if (b->len + k + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + k + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return 0;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, k);
	b->len += k;
	b->p[b->len] = 0;
	return k;
}

struct res {
	struct kube *k;
	const char *what; /* "services" */
	const char *path; /* "/api/v1/services" */
	const char *sel;  /* a selector ending in '&' ("fieldSelector=...&"), or "" */
	json_t *objs;     /* "NAMESPACE/NAME" -> object */
	char rv[KUBE_RV_MAX];
	bool listed;    /* listed at least once */
	bool need_list; /* list (again) before watching */
	uint64_t next;  /* no request before this (backoff) */
	unsigned backoff;
	CURL *wh; /* the watch, or NULL */
	struct curl_slist *whdr;
	struct kube_lines lines;
	bool relist; /* an event asked for a list */
	bool changed;
	bool got; /* the watch delivered something (resets the backoff) */
};

struct kube {
	char api[KUBE_URL_MAX];
	char token_file[512], ca_file[512], secret_dir[512];
	bool https;
	char token[KUBE_TOKEN_MAX];
	struct timespec token_mtime;
	off_t token_size;
	bool token_read;
	CURL *curl;
	CURLM *m;
	struct res res[2]; /* services, endpointslices; or the one collection of kube_open_one */
	unsigned nres;
	struct kube_drain *drain, *pdrain; /* the last kube_config's, the one before */
	unsigned ndrain, npdrain;
	bool announced;  /* the first sync was logged */
	json_t *refused; /* the Services left out by the last kube_config, and why */
	json_t *secrets; /* "NAMESPACE/NAME" -> {data, at}: Secrets read lately */
};

/* Reads the token file again if it changed (or force). Returns 0 or -errno (logged). */
static int token_load(struct kube *k, bool force)
{
	struct stat st;
	if (!k->token_file[0])
		return 0;
	if (stat(k->token_file, &st) == -1) {
		int err = -errno;
		KLOG(LOG_WARNING, "token %s: %s", k->token_file, strerror(-err));
		return err;
	}
	if (!force && k->token_read && st.st_mtim.tv_sec == k->token_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == k->token_mtime.tv_nsec && st.st_size == k->token_size)
		return 0;
	FILE *f = fopen(k->token_file, "re");
	if (!f)
		return -errno;
	size_t n = fread(k->token, 1, sizeof(k->token) - 1, f);
	fclose(f);
	while (n && (k->token[n - 1] == '\n' || k->token[n - 1] == '\r' || k->token[n - 1] == ' '))
		n--;
	k->token[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k->token[i] <= 0x20 || (unsigned char)k->token[i] >= 0x7f) {
			KLOG(LOG_WARNING, "token %s: not a bearer token", k->token_file);
			k->token[0] = 0;
			break;
		}
	if (k->token_read)
		KLOG(LOG_INFO, "token %s read again", k->token_file);
	k->token_mtime = st.st_mtim;
	k->token_size = st.st_size;
	k->token_read = true;
	return 0;
}

/* The request headers (Accept, and the bearer token): a list to free, or NULL. */
static struct curl_slist *headers(struct kube *k)
{
	struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
	if (h && k->token[0]) {
		char *a = malloc(strlen(k->token) + 32);
		struct curl_slist *h2 = NULL;
		if (a) {
			sprintf(a, "Authorization: Bearer %s", k->token);
			h2 = curl_slist_append(h, a);
			explicit_bzero(a, strlen(a));
			free(a);
		}
		if (!h2) {
			curl_slist_free_all(h);
			return NULL;
		}
		h = h2;
	}
	return h;
}

static void easy_setup(struct kube *k, CURL *h, const char *url, struct curl_slist *hdr)
{
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)KUBE_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	if (k->https && k->ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, k->ca_file);
}

long kube_call(struct kube *k, const char *method, const char *path, json_t *body, long timeout_ms,
               json_t **out)
{
	char url[KUBE_URL_MAX + 2048];
	struct reply b = {0};
	long code = -EIO;
	char *text = NULL;
	*out = NULL;
	if (body && !(text = json_dumps(body, JSON_COMPACT))) {
		json_decref(body);
		return -ENOMEM;
	}
	json_decref(body);
	snprintf(url, sizeof(url), "%s%s", k->api, path);
	for (int attempt = 0; attempt < 2; attempt++) {
		token_load(k, attempt > 0);
		struct curl_slist *hdr = headers(k), *h2;
		if (hdr && text && (h2 = curl_slist_append(hdr, "Content-Type: application/json")))
			hdr = h2;
		if (!hdr) {
			code = -ENOMEM;
			break;
		}
		b.len = 0;
		b.big = false;
		curl_easy_reset(k->curl);
		easy_setup(k, k->curl, url, hdr);
		curl_easy_setopt(k->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
		curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, on_reply);
		curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, &b);
		if (text)
			curl_easy_setopt(k->curl, CURLOPT_POSTFIELDS, text);
		if (strcmp(method, text ? "POST" : "GET"))
			curl_easy_setopt(k->curl, CURLOPT_CUSTOMREQUEST, method);
		CURLcode cc = curl_easy_perform(k->curl);
		curl_slist_free_all(hdr);
		if (cc != CURLE_OK) {
			KLOG(LOG_WARNING, "%s %s: %s", method, path,
			     b.big ? "reply too large" : curl_easy_strerror(cc));
			code = b.big ? -E2BIG : -EIO;
			break;
		}
		curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &code);
		if (code == 401 && !attempt) {
			KLOG(LOG_INFO,
			     "%s %s: 401: reading the token "
			     "again",
			     method, path);
			continue;
		}
		if (code >= 200 && code < 300) {
			json_error_t je;
			*out = json_loadb(b.p ? b.p : "", b.len, 0, &je);
			if (!json_is_object(*out)) {
				json_decref(*out);
				*out = NULL;
				KLOG(LOG_WARNING, "%s %s: not a JSON object", method, path);
				code = -EBADMSG;
			}
		}
		break;
	}
	free(b.p);
	free(text);
	return code;
}

/* GETs path (kube_call) with the lists' timeout. */
static long get_json(struct kube *k, const char *path, json_t **out)
{
	return kube_call(k, "GET", path, NULL, KUBE_TIMEOUT_MS, out);
}

static void watch_stop(struct res *r)
{
	if (r->wh) {
		curl_multi_remove_handle(r->k->m, r->wh);
		curl_easy_cleanup(r->wh);
		r->wh = NULL;
	}
	curl_slist_free_all(r->whdr);
	r->whdr = NULL;
	r->lines.len = 0;
	r->lines.skipping = false;
}

static void backoff(struct res *r)
{
	r->backoff = r->backoff ? r->backoff * 2 : KUBE_BACKOFF_MIN_MS;
	if (r->backoff > KUBE_BACKOFF_MAX_MS)
		r->backoff = KUBE_BACKOFF_MAX_MS;
	r->next = peak_mono_ms() + r->backoff;
}

/* Lists r (every page) into a fresh copy, which replaces the old one. Returns 0 or -1
 * (logged; a backoff set). */
static int list(struct res *r)
{
	struct kube *k = r->k;
	json_t *objs = json_object();
	char path[2048], cont[1024] = "", key[160];
	const char *why;
	int ret = -1;
	if (!objs)
		goto out;
	for (unsigned page = 0; page < 100000; page++) {
		json_t *l = NULL;
		char *esc = cont[0] ? curl_easy_escape(k->curl, cont, 0) : NULL;
		snprintf(path, sizeof(path), "%s?%slimit=%d%s%s", r->path, r->sel, KUBE_PAGE,
		         esc ? "&continue=" : "", esc ? esc : "");
		curl_free(esc);
		long code = get_json(k, path, &l);
		if (code != 200) {
			if (code > 0)
				KLOG(LOG_WARNING, "list %s: HTTP %ld", r->what, code);
			json_decref(l);
			goto out;
		}
		json_t *items = json_object_get(l, "items"), *it;
		size_t i;
		if (!json_is_array(items) && !json_is_null(items) && items) {
			KLOG(LOG_WARNING, "list %s: no items", r->what);
			json_decref(l);
			goto out;
		}
		json_array_foreach(items, i, it)
		{
			if (!kube_obj_key(it, key, sizeof(key), &why)) {
				KLOG(LOG_WARNING, "list %s: item %zu refused: %s", r->what, i, why);
				continue;
			}
			json_object_set(objs, key, it);
		}
		json_t *md = json_object_get(l, "metadata");
		const char *c = json_string_value(json_object_get(md, "continue"));
		rv_set(r->rv, l);
		bool more = c && *c && strlen(c) < sizeof(cont);
		if (more)
			snprintf(cont, sizeof(cont), "%s", c);
		json_decref(l);
		if (!more)
			break;
	}
	json_decref(r->objs);
	r->objs = objs;
	objs = NULL;
	r->listed = true;
	r->need_list = false;
	r->changed = true;
	r->backoff = 0;
	KLOG(LOG_INFO, "listed %zu %s at resourceVersion %s", json_object_size(r->objs), r->what,
	     r->rv);
	ret = 0;
out:
	json_decref(objs);
	if (ret)
		backoff(r);
	return ret;
}

/* Whether a change of object o (of r; NULL: none) can change the translation: a Service
 * annotated peak.dev/prefixes, or an EndpointSlice of such a Service. The others (most of
 * a cluster's) are kept but apply nothing. */
static bool matters(struct res *r, json_t *o)
{
	json_t *md = json_object_get(o, "metadata");
	if (!o)
		return false;
	if (r->k->nres == 1)
		return true; /* (kube_open_one: every object of the collection) */
	if (r == &r->k->res[0])
		return json_object_get(json_object_get(md, "annotations"), "peak.dev/prefixes");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *svc = json_string_value(
	    json_object_get(json_object_get(md, "labels"), "kubernetes.io/service-name"));
	char key[160];
	if (!ns || !svc || strlen(ns) > 63 || strlen(svc) > 63)
		return false;
	snprintf(key, sizeof(key), "%.63s/%.63s", ns, svc);
	return matters(&r->k->res[0], json_object_get(r->k->res[0].objs, key));
}

static int on_line(void *arg, const char *line, size_t len)
{
	struct res *r = arg;
	if (!line) {
		KLOG(LOG_WARNING,
		     "%s watch: an event of more than %d bytes "
		     "refused: listing again",
		     r->what, KUBE_LINE_MAX);
		r->relist = true;
		return 0;
	}
	r->got = true;
	json_t *ch[2] = {NULL, NULL};
	enum kube_ev e = kube_event_apply(r->objs, r->what, r->rv, line, len, ch);
	if (e == KUBE_EV_CHANGED && (matters(r, ch[0]) || matters(r, ch[1])))
		r->changed = true;
	else if (e == KUBE_EV_RELIST)
		r->relist = true;
	json_decref(ch[0]);
	json_decref(ch[1]);
	return 0;
}

static size_t on_watch(char *p, size_t sz, size_t n, void *arg)
{
	struct res *r = arg;
	long code = 0;
	if (r->relist)
		return 0; /* the stream is of no use any more: curl ends it */
	curl_easy_getinfo(r->wh, CURLINFO_RESPONSE_CODE, &code);
	if (code != 200)
		return sz * n; /* a Status body (401, 403, 410...): watch_done reads the code */
	if (kube_lines_feed(&r->lines, p, sz * n, KUBE_LINE_MAX, on_line, r))
		return 0;
	return sz * n;
}

/* Starts the watch of r from its resourceVersion. Returns 0 or -ENOMEM. */
static int watch_start(struct res *r)
{
	struct kube *k = r->k;
	char url[KUBE_URL_MAX + 256];
	token_load(k, false);
	snprintf(url, sizeof(url),
	         "%s%s?%swatch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d",
	         k->api, r->path, r->sel, r->rv, KUBE_WATCH_S);
	if (!(r->whdr = headers(k)) || !(r->wh = curl_easy_init())) {
		watch_stop(r);
		return -ENOMEM;
	}
	easy_setup(k, r->wh, url, r->whdr);
	curl_easy_setopt(r->wh, CURLOPT_WRITEFUNCTION, on_watch);
	curl_easy_setopt(r->wh, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->wh, CURLOPT_PRIVATE, r);
	/* a stalled stream (no byte, not even a bookmark, for twice the server's timeout) */
	curl_easy_setopt(r->wh, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(r->wh, CURLOPT_LOW_SPEED_TIME, (long)KUBE_WATCH_S * 2);
	r->got = false;
	if (curl_multi_add_handle(k->m, r->wh) != CURLM_OK) {
		watch_stop(r);
		return -ENOMEM;
	}
	return 0;
}

/* A watch ended: why, and what next (relist, or watch again after a backoff). */
static void watch_done(struct res *r, CURLcode cc)
{
	long code = 0;
	curl_easy_getinfo(r->wh, CURLINFO_RESPONSE_CODE, &code);
	bool relist = r->relist;
	watch_stop(r);
	r->relist = false;
	if (relist) {
		r->need_list = true;
		r->next = peak_mono_ms();
		return;
	}
	if (code == 401) {
		KLOG(LOG_INFO, "%s watch: 401: reading the token again", r->what);
		token_load(r->k, true);
		if (r->backoff < KUBE_BACKOFF_MIN_MS) { /* once at once, then backing off */
			r->backoff = KUBE_BACKOFF_MIN_MS / 2;
			r->next = peak_mono_ms();
			return;
		}
	} else if (code == 410) {
		KLOG(LOG_INFO, "%s watch: 410 Gone: listing again", r->what);
		r->need_list = true;
		r->next = peak_mono_ms();
		return;
	} else if (cc == CURLE_OK && code == 200 && r->got) {
		/* the server ended the watch (timeoutSeconds): watch again at once (one that
		 * ends before sending anything backs off, so a server doing so is not hammered) */
		r->backoff = 0;
		r->next = peak_mono_ms();
		return;
	} else {
		KLOG(LOG_WARNING,
		     "%s watch broke (%s, HTTP %ld): "
		     "again from resourceVersion %s",
		     r->what, curl_easy_strerror(cc), code, r->rv);
	}
	if (r->got)
		r->backoff = 0;
	backoff(r);
}

void kube_pollfds(struct kube *k, struct pollfd pf[static KUBE_POLLFDS])
{
	fd_set r, w, x;
	int max = -1, n = 0;
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_ZERO(&x);
	for (int i = 0; i < KUBE_POLLFDS; i++)
		pf[i] = (struct pollfd){.fd = -1, .events = POLLIN};
	if (curl_multi_fdset(k->m, &r, &w, &x, &max) != CURLM_OK)
		return;
	for (int fd = 0; fd <= max && n < KUBE_POLLFDS; fd++)
		if (FD_ISSET(fd, &r))
			pf[n++].fd = fd;
}

void kube_touch(struct kube *k)
{
	k->res[0].changed = true;
}

bool kube_synced(const struct kube *k)
{
	for (unsigned i = 0; i < k->nres; i++)
		if (!k->res[i].listed)
			return false;
	return true;
}

bool kube_wait_synced(struct kube *k, unsigned ms)
{
	uint64_t end = peak_mono_ms() + ms;
	while (!kube_synced(k) && peak_mono_ms() < end) {
		kube_poll(k);
		if (!kube_synced(k))
			poll(NULL, 0, 20);
	}
	return kube_synced(k);
}

int kube_poll(struct kube *k)
{
	uint64_t now = peak_mono_ms();
	int running = 0, msgs;
	for (unsigned i = 0; i < k->nres; i++) {
		struct res *r = &k->res[i];
		if (r->wh || now < r->next)
			continue;
		if (r->need_list && list(r))
			continue;
		if (watch_start(r))
			backoff(r);
	}
	curl_multi_perform(k->m, &running);
	for (CURLMsg *cm; (cm = curl_multi_info_read(k->m, &msgs));) {
		struct res *r = NULL;
		if (cm->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(cm->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r && r->wh == cm->easy_handle)
			watch_done(r, cm->data.result);
	}
	for (unsigned i = 0; i < k->nres; i++) {
		struct res *r = &k->res[i];
		if (r->wh && r->relist) { /* ERROR 410 inside the stream */
			watch_stop(r);
			r->relist = false;
			r->need_list = true;
			r->next = now;
		}
	}
	if (!kube_synced(k) || !(k->res[0].changed || k->res[1].changed))
		return 0;
	if (!k->announced && k->nres == 2)
		KLOG(LOG_INFO, "services and endpointslices listed");
	k->announced = true;
	k->res[0].changed = k->res[1].changed = false;
	return 1;
}

/* Secret ns/name's data through the API (kube_secret_fn). */
/* Secret ns/name's data through the API (kube_secret_fn), read again at most every
 * KUBE_SECRET_MS (Secrets are not watched: RBAC grants only get); a failure is not kept. */
static json_t *secret_get(void *arg, const char *ns, const char *name)
{
	struct kube *k = arg;
	char path[256], key[160];
	json_t *s = NULL;
	uint64_t now = peak_mono_ms();
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	json_t *c = json_object_get(k->secrets, key);
	if (c && now - (uint64_t)json_integer_value(json_object_get(c, "at")) < KUBE_SECRET_MS)
		return json_incref(json_object_get(c, "data"));
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", ns, name);
	long code = get_json(k, path, &s);
	json_object_del(k->secrets, key);
	if (code != 200) { /* the Service's "left out" line says it, once */
		json_decref(s);
		return NULL;
	}
	json_t *d = json_object_get(s, "data");
	if (json_is_object(d))
		json_object_set_new(k->secrets, key,
		                    json_pack("{s:O,s:I}", "data", d, "at", (json_int_t)now));
	json_incref(d);
	json_decref(s);
	return d;
}

int kube_config(struct kube *k, const char *base, struct peak_config **out, char *err,
                size_t errlen)
{
	struct peak_config *cfg = NULL;
	int ret = config_load(base, &cfg, err, errlen);
	if (ret)
		return ret;
	for (unsigned i = 0; i < cfg->nsvc; i++)
		free(cfg->svc[i].ep);
	free(cfg->svc);
	cfg->svc = NULL;
	cfg->nsvc = 0;
	free(k->pdrain);
	k->pdrain = k->drain;
	k->npdrain = k->ndrain;
	k->drain = NULL;
	k->ndrain = 0;
	ret = kube_translate(cfg, k->res[0].objs, k->res[1].objs, secret_get, k, k->secret_dir,
	                     k->refused, &k->drain, &k->ndrain);
	if (ret) {
		snprintf(err, errlen, "kubernetes: %s", strerror(-ret));
		config_free(cfg);
		return ret;
	}
	*out = cfg;
	return 0;
}

bool kube_draining(const struct kube *k, const char *svc, const char *ep, bool prev)
{
	const struct kube_drain *d = prev ? k->pdrain : k->drain;
	for (unsigned i = 0, n = prev ? k->npdrain : k->ndrain; i < n; i++)
		if (!strcasecmp(d[i].svc, svc) && !strcmp(d[i].ep, ep))
			return true;
	return false;
}

void kube_free(struct kube *k)
{
	if (!k)
		return;
	for (unsigned i = 0; i < 2; i++) {
		if (k->res[i].k)
			watch_stop(&k->res[i]);
		kube_lines_fini(&k->res[i].lines);
		json_decref(k->res[i].objs);
	}
	if (k->m)
		curl_multi_cleanup(k->m);
	if (k->curl)
		curl_easy_cleanup(k->curl);
	explicit_bzero(k->token, sizeof(k->token));
	free(k->drain);
	free(k->pdrain);
	json_decref(k->refused);
	json_decref(k->secrets);
	free(k);
}

/* kube_open and kube_open_one: the client of the nres collections of what, path, sel. */
static struct kube *open_res(const struct kube_opts *o, unsigned nres, const char *const what[],
                             const char *const path[], const char *const sel[], char *err,
                             size_t errlen)
{
	struct kube *k = calloc(1, sizeof(*k));
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	if (k && curl_load()) {
		snprintf(err, errlen,
		         "kubernetes: cannot load libcurl (" CURL_SONAME
		         "): install Debian's libcurl4");
		goto fail;
	}
	if (!k || curl_global_init(CURL_GLOBAL_DEFAULT) || !(k->curl = curl_easy_init()) ||
	    !(k->m = curl_multi_init())) {
		snprintf(err, errlen, "kubernetes: cannot set up libcurl");
		goto fail;
	}
	if (o->api) {
		size_t n = strlen(o->api);
		if ((strncmp(o->api, "http://", 7) && strncmp(o->api, "https://", 8)) ||
		    n >= sizeof(k->api) || strpbrk(o->api, " ?#\"\\")) {
			snprintf(err, errlen, "--kube-api: '%.128s' is not http(s)://HOST:PORT",
			         o->api);
			goto fail;
		}
		snprintf(k->api, sizeof(k->api), "%.*s", (int)(n - (o->api[n - 1] == '/')), o->api);
	} else if (host && *host && strlen(host) < 256 && !strpbrk(host, " /?#[]\"\\")) {
		bool v6 = strchr(host, ':') != NULL;
		snprintf(k->api, sizeof(k->api), "https://%s%s%s:%.8s", v6 ? "[" : "", host,
		         v6 ? "]" : "", port && *port ? port : "443");
	} else {
		snprintf(err, errlen,
		         "kubernetes: neither --kube-api nor KUBERNETES_SERVICE_HOST (not in a "
		         "cluster?)");
		goto fail;
	}
	k->https = !strncmp(k->api, "https://", 8);
	/* the service account's files in a pod; with --kube-api only what is given (no
	 * token: anonymous; no CA: the system's) */
	snprintf(k->token_file, sizeof(k->token_file), "%s",
	         o->token_file ? o->token_file
	         : o->api      ? ""
	                       : KUBE_SA_DIR "/token");
	snprintf(k->ca_file, sizeof(k->ca_file), "%s",
	         o->ca_file ? o->ca_file
	         : o->api   ? ""
	                    : KUBE_SA_DIR "/ca.crt");
	const char *sd = o->secret_dir ? o->secret_dir : KUBE_SECRET_DIR;
	if (strlen(sd) >= 256 || sd[0] != '/' || strpbrk(sd, " \"\\'\n#:")) {
		snprintf(err, errlen, "--kube-secret-dir: '%.128s' is not an absolute path", sd);
		goto fail;
	}
	snprintf(k->secret_dir, sizeof(k->secret_dir), "%s", sd);
	k->nres = nres;
	for (unsigned i = 0; i < nres; i++)
		k->res[i] = (struct res){.k = k,
		                         .what = what[i],
		                         .path = path[i],
		                         .sel = sel[i],
		                         .objs = json_object(),
		                         .need_list = true};
	if (!k->res[0].objs || (nres > 1 && !k->res[1].objs) || !(k->refused = json_object()) ||
	    !(k->secrets = json_object())) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return k;
fail:
	kube_free(k);
	return NULL;
}

struct kube *kube_open(const struct kube_opts *o, char *err, size_t errlen)
{
	static const char *const what[2] = {"services", "endpointslices"};
	static const char *const path[2] = {"/api/v1/services",
	                                    "/apis/discovery.k8s.io/v1/endpointslices"};
	static const char *const sel[2] = {"", ""};
	return open_res(o, 2, what, path, sel, err, errlen);
}

struct kube *kube_open_one(const struct kube_opts *o, const char *what, const char *path,
                           const char *sel, char *err, size_t errlen)
{
	return open_res(o, 1, &what, &path, &sel, err, errlen);
}

json_t *kube_objs(const struct kube *k)
{
	return k->res[0].objs;
}

bool kube_name_ok(const char *s)
{
	size_t n = strlen(s);
	return n && n <= 63 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n &&
	       s[0] != '-' && s[n - 1] != '-';
}

int kube_names_check(const char *ns, const char *name, char *err, size_t errlen)
{
	if (ns && !kube_name_ok(ns)) {
		snprintf(err, errlen, "--kube-namespace: '%.64s' is not a namespace name", ns);
		return -1;
	}
	if (!kube_name_ok(name)) {
		snprintf(err, errlen, "--kube-lease: '%.64s' is not a name of 1..63 of [a-z0-9-]",
		         name);
		return -1;
	}
	return 0;
}

void kube_namespace(const char *given, bool api_given, char ns[static 64])
{
	FILE *f;
	snprintf(ns, 64, "default");
	if (given) {
		snprintf(ns, 64, "%.63s", given);
		return;
	}
	if (api_given || !(f = fopen(KUBE_SA_DIR "/namespace", "re")))
		return;
	char buf[80];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	buf[strcspn(buf, "\r\n ")] = 0;
	if (kube_name_ok(buf))
		snprintf(ns, 64, "%.63s", buf);
}
