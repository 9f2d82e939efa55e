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
 * blocking at every interval. The requests and the stream are src/etcd's (etcd.h), shared
 * with peak dns's follower.
 * A standby follows the state as peak dns does: one read at start, then the watch's events
 * (put and delete, in revision order) update its copy of the keys and are handed to the
 * controller one record each (follow), with no read; it reads afresh only when the watch
 * cannot resume (a compaction, a cancel, an event out of order or not parsed). Taking the
 * lead, it checks in one small request that nothing under the prefix changed past the
 * revision its copy holds (current) before it adopts that copy instead of reading it.
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../etcd/etcd.h"
#include "../sys/log.h"
#include "peak/dns.h"
#include "controller.h"
#include "ctl.h"

enum {
	ETCD_VALUE_MAX_B = 16 << 20, /* one service's value */
	/* One transaction's share of a save, inside etcd's defaults (--max-txn-ops 128 compares
	 * or puts; --max-request-bytes 1.5 MiB): a state of thousands of services is saved in
	 * several transactions, each guarded by the lead and its keys' revisions. */
	ETCD_TXN_PUTS = 100,
	ETCD_TXN_BYTES = 1 << 20,
	ETCD_TTL_DEF_S = 2,
	ETCD_TICK_MS = 250, /* the controller's loop may call the store this late (POLL_TICK_MS) */
	ETCD_LOAD_PAGE = 100, /* keys in one read request of a load */
};

struct ekey {
	char *key;   /* the whole key (PREFIX svc/NAME) */
	int64_t rev; /* its mod_revision as last loaded or written */
	char *text;  /* the value we wrote or followed last (NULL: not ours, refused, not known) */
	size_t len;
	uint32_t fold; /* a hash of its service name, any case (0: no name): see key_aliased */
};

/* A lease this leader holds for a connected agent's node. */
struct enode {
	char node[CTL_ID_MAX];
	int64_t lease; /* 0: none held */
};

struct store_etcd {
	struct store st;
	struct etcd cl; /* --etcd: the members, requests, the watch stream */
	char prefix[256];
	char id[160];
	unsigned ttl_s;
	int64_t lease;       /* 0: none granted */
	int64_t leader_rev;  /* the leader key's create_revision while leading, else 0 */
	uint64_t renewed_ms; /* when the last keepalive that etcd answered was sent */
	struct ekey *keys;   /* every key under PREFIX svc/ as last seen */
	unsigned nkeys;
	uint32_t *kidx; /* keys by hash (index + 1; 0: empty): a save finds 10,000 in O(1) */
	uint32_t kmask;
	int64_t rev;    /* the revision the copy of the keys is at: the watch resumes after it */
	bool rev_event; /* rev is an event's (another of the same transaction may follow) */
	bool need_load; /* the copy is not known to follow the store (follow: STORE_RELOAD) */
	bool led;       /* this controller led since the last load (its writes are in the copy) */
	unsigned agent_ttl_s;
	struct enode nodes[MAX_AGENTS]; /* the leases held for connected agents' nodes */
	unsigned nnodes;
	char (*alive)[CTL_ID_MAX]; /* nodes registered at the last read of PREFIX nodes/ */
	unsigned nalive;
	char (*known)[CTL_ID_MAX]; /* nodes registered at any read */
	unsigned nknown;
};

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
	free(e->kidx);
	e->kidx = NULL;
	e->kmask = 0;
}

static uint32_t key_hash(const char *k)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *k; k++)
		h = (h ^ (uint8_t)*k) * 16777619u;
	return h;
}

/* Puts keys[i] in the index, growing it to twice the keys. Returns 0 or -ENOMEM. */
static int key_index(struct store_etcd *e, unsigned i)
{
	if (2u * (e->nkeys + 1) > e->kmask) {
		uint32_t cap = e->kmask ? 2 * (e->kmask + 1) : 64;
		while (cap < 4u * (e->nkeys + 1))
			cap *= 2;
		uint32_t *nx = calloc(cap, sizeof(*nx));
		if (!nx)
			return -ENOMEM;
		free(e->kidx);
		e->kidx = nx;
		e->kmask = cap - 1;
		for (unsigned k = 0; k < e->nkeys; k++) {
			uint32_t h = key_hash(e->keys[k].key) & e->kmask;
			while (e->kidx[h])
				h = (h + 1) & e->kmask;
			e->kidx[h] = k + 1;
		}
		if (i < e->nkeys)
			return 0; /* (it was among them) */
	}
	uint32_t h = key_hash(e->keys[i].key) & e->kmask;
	while (e->kidx[h])
		h = (h + 1) & e->kmask;
	e->kidx[h] = i + 1;
	return 0;
}

static struct ekey *key_find(struct store_etcd *e, const char *k)
{
	if (!e->kidx)
		return NULL;
	for (uint32_t h = key_hash(k) & e->kmask; e->kidx[h]; h = (h + 1) & e->kmask)
		if (!strcmp(e->keys[e->kidx[h] - 1].key, k))
			return &e->keys[e->kidx[h] - 1];
	return NULL;
}

/* A hash of the service name that key k names, folded to lower case; 0: none. */
static uint32_t key_fold(const struct store_etcd *e, const char *k)
{
	size_t pl = strlen(e->prefix);
	struct dns_name n;
	if (strncmp(k, e->prefix, pl) || strncmp(k + pl, "svc/", 4) ||
	    dns_name_parse(k + pl + 4, &n))
		return 0;
	dns_name_lower(&n);
	uint32_t h = 2166136261u;
	for (unsigned i = 0; i < n.len; i++)
		h = (h ^ n.wire[i]) * 16777619u;
	return h | 1;
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
	*x = (struct ekey){.key = strdup(k), .fold = key_fold(e, k)};
	if (!x->key || key_index(e, e->nkeys)) {
		free(x->key);
		x->key = NULL;
		return NULL;
	}
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
		x->rev = etcd_jint(kv, "mod_revision");
	}
	return 0;
}

/* A load's records (etcd_range_pages): each key known with its revision, each record that
 * passes the check added to the text and kept as the key's value. */
struct eload {
	struct store_etcd *e;
	const char *pre;
	struct text t;
};

static void on_load_kv(void *arg, json_t *kv)
{
	struct eload *x = arg;
	struct etcd_rec rec;
	struct ekey *k;
	int err = etcd_rec_decode(x->e->cl.who, kv, x->pre, ETCD_VALUE_MAX_B, false, &rec);
	if (!rec.key || !(k = key_add(x->e, rec.key))) {
		if (rec.key) /* (a key with a NUL or too long: not ours, never written) */
			x->t.err = -ENOMEM;
		etcd_rec_free(&rec);
		return;
	}
	k->rev = rec.mod_rev;
	if (!err) {
		ctlr_text_add(&x->t, rec.val, rec.vlen);
		free(k->text); /* (NULL: keys_clear before the first page) */
		k->text = rec.val;
		k->len = rec.vlen;
		rec.val = NULL;
	}
	etcd_rec_free(&rec);
}

/* Reads PREFIX svc/ in pages of ETCD_LOAD_PAGE keys at one revision (etcd_range_pages: one
 * request for 10,000 services of 100 endpoints outgrew ETCD_RESP_MAX_B). */
static int etcd_load(struct store *st, char **text, size_t *len)
{
	struct store_etcd *e = (struct store_etcd *)st;
	char pre[ETCD_KEY_MAX];
	struct eload x = {.e = e, .pre = pre};
	unsigned pages;
	int64_t rev;
	*text = NULL;
	*len = 0;
	snprintf(pre, sizeof(pre), "%ssvc/", e->prefix);
	e->need_load = true; /* (until this load is whole) */
	keys_clear(e);
	long n = etcd_range_pages(&e->cl, pre, 0, ETCD_LOAD_PAGE, on_load_kv, &x, &rev, &pages);
	if (n < 0 || x.t.err) {
		free(x.t.p);
		return n < 0 ? (int)n : x.t.err;
	}
	etcd_watch_stop(&e->cl); /* a stream from before: the next starts after this read */
	e->rev = rev;
	e->rev_event = false;
	if (x.t.len) {
		ctlr_text_add(&x.t, "", 1);
		if (x.t.err) {
			free(x.t.p);
			return x.t.err;
		}
		*text = x.t.p;
		*len = x.t.len - 1;
	}
	e->need_load = false;
	e->led = e->leader_rev != 0;
	if (!e->led) /* a standby follows from this read: its stream at once (etcd.h) */
		etcd_watch_open(&e->cl, pre, e->rev);
	return 0;
}

/* One transaction writing the changed records of r[from..n), guarded by the revisions, as
 * many as etcd's default limits take in one request (ETCD_TXN_PUTS records, ETCD_TXN_BYTES
 * of values, at least one record): *end gets where the next transaction starts. Returns 1
 * (it succeeded), 0 (a compare failed: *fail holds the failure branch's range replies), or
 * -errno. */
static int txn_write(struct store_etcd *e, const struct store_rec *r, unsigned n, unsigned from,
                     unsigned *end, json_t **fail)
{
	char k[ETCD_KEY_MAX], lk[ETCD_KEY_MAX], pre[ETCD_KEY_MAX];
	json_t *req = json_object(), *cmp = json_array(), *ok = json_array(), *no = json_array();
	bool *put = calloc(n ? n : 1, sizeof(*put));
	*end = n;
	unsigned nput = 0;
	int ret = -ENOMEM;
	if (!req || !cmp || !ok || !no || !put)
		goto out;
	snprintf(lk, sizeof(lk), "%sleader", e->prefix);
	snprintf(pre, sizeof(pre), "%ssvc/", e->prefix);
	char rev[32];
	snprintf(rev, sizeof(rev), "%" PRId64, e->leader_rev);
	json_array_append_new(cmp, json_pack("{s:o,s:s,s:s,s:s}", "key", etcd_jkey(lk, strlen(lk)),
	                                     "target", "CREATE", "result", "EQUAL",
	                                     "create_revision", rev));
	size_t bytes = 0;
	unsigned i = from;
	for (; i < n; i++) {
		snprintf(k, sizeof(k), "%s%s", pre, r[i].name);
		struct ekey *x = key_find(e, k);
		if (x && x->text && x->len == r[i].len && !memcmp(x->text, r[i].text, r[i].len))
			continue;
		if (nput && (nput == ETCD_TXN_PUTS || bytes + r[i].len * 4 / 3 > ETCD_TXN_BYTES))
			break; /* the next transaction's */
		bytes += r[i].len * 4 / 3;
		char *v = store_b64_enc(r[i].text, r[i].len);
		if (!v)
			goto out;
		snprintf(rev, sizeof(rev), "%" PRId64, x ? x->rev : 0);
		json_array_append_new(cmp, json_pack("{s:o,s:s,s:s,s:s}", "key",
		                                     etcd_jkey(k, strlen(k)), "target", "MOD",
		                                     "result", "EQUAL", "mod_revision", rev));
		json_array_append_new(ok, json_pack("{s:{s:o,s:s}}", "request_put", "key",
		                                    etcd_jkey(k, strlen(k)), "value", v));
		free(v);
		put[i] = true;
		nput++;
	}
	*end = i;
	if (!nput) {
		ret = 1;
		goto out;
	}
	json_array_append_new(
	    no, json_pack("{s:{s:o}}", "request_range", "key", etcd_jkey(lk, strlen(lk))));
	json_array_append_new(no, json_pack("{s:o}", "request_range", etcd_range_req(pre, true)));
	json_object_set_new(req, "compare", cmp);
	json_object_set_new(req, "success", ok);
	json_object_set_new(req, "failure", no);
	cmp = ok = no = NULL;
	json_t *res = etcd_call(&e->cl, "/v3/kv/txn", req);
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
	int64_t at = etcd_jint(json_object_get(res, "header"), "revision");
	json_decref(res);
	ret = 1;
	for (i = from; i < *end; i++) {
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
	for (unsigned from = 0, attempt = 0; attempt < 2;) {
		unsigned end;
		int k = txn_write(e, r, n, from, &end, &fail);
		if (k < 0)
			return k;
		if (k == 1 && end >= n)
			return 0;
		if (k == 1) { /* that part is written; the rest in the next transaction */
			from = end;
			continue;
		}
		attempt++;
		/* A compare failed: the lead lost, or a service key written by someone else
		 * (a foreign or corrupt value). The live state wins over the latter: the known
		 * revisions are refreshed and it is written once more. */
		json_t *res = json_object_get(fail, "responses");
		json_t *lead = json_object_get(
		    json_object_get(json_array_get(res, 0), "response_range"), "kvs");
		json_t *svcs = json_object_get(
		    json_object_get(json_array_get(res, 1), "response_range"), "kvs");
		int64_t lrev = etcd_jint(json_array_get(lead, 0), "create_revision");
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

/* Follows PREFIX svc/ (etcd.h: etcd_watch) from the revision of the last load. */
static int etcd_watch_svc(struct store *st)
{
	struct store_etcd *e = (struct store_etcd *)st;
	char pre[ETCD_KEY_MAX];
	snprintf(pre, sizeof(pre), "%ssvc/", e->prefix);
	int r = etcd_watch(&e->cl, pre, e->rev, NULL, NULL);
	return r > 0 ? 1 : r; /* (the standby follows the events instead: etcd_follow) */
}

/* Whether another key's record names x's service too (in another case, say): a load
 * hands the caller both, so neither's change is one record's. */
static bool key_aliased(const struct store_etcd *e, const struct ekey *x)
{
	size_t pl = strlen(e->prefix) + 4;
	struct dns_name a, b;
	if (!x->fold || dns_name_parse(x->key + pl, &a))
		return false;
	for (unsigned i = 0; i < e->nkeys; i++) {
		const struct ekey *y = &e->keys[i];
		if (y != x && y->text && y->fold == x->fold && !dns_name_parse(y->key + pl, &b) &&
		    dns_name_eq(&a, &b))
			return true;
	}
	return false;
}

struct efollow {
	struct store_etcd *e;
	store_change_fn fn;
	void *arg;
	const char *pre;
	unsigned n;
	const char *lost; /* why the changes cannot be followed (NULL: they can) */
};

/* One watch event: the copy of its key updated, then its record (or none) handed to the
 * caller; past one that cannot be followed, nothing more (the caller reads afresh). */
static void on_event(void *arg, json_t *kv, bool deleted)
{
	struct efollow *x = arg;
	struct store_etcd *e = x->e;
	struct etcd_rec r;
	struct ekey *k = NULL;
	if (x->lost)
		return;
	int err = etcd_rec_decode(e->cl.who, kv, x->pre, ETCD_VALUE_MAX_B, deleted, &r);
	if (err == -ENOMEM)
		x->lost = "out of memory";
	else if (!r.key)
		x->lost = "an event without a key of ours";
	else if (r.mod_rev <= 0 || r.mod_rev < e->rev || (r.mod_rev == e->rev && !e->rev_event))
		x->lost = "an event out of revision order";
	else if (!(k = deleted ? key_find(e, r.key) : key_add(e, r.key)) && !deleted)
		x->lost = "out of memory";
	if (x->lost) {
		etcd_rec_free(&r);
		return;
	}
	e->rev = r.mod_rev;
	e->rev_event = true;
	x->n++;
	if (!k) { /* a delete of a key the copy does not hold: nothing changes */
		etcd_rec_free(&r);
		return;
	}
	free(k->text);
	k->text = r.val; /* (NULL: deleted or refused) */
	k->len = r.vlen;
	k->rev = deleted ? 0 : r.mod_rev; /* (0 as for a key never written: save's compare) */
	r.val = NULL;
	if (r.name && k->fold && key_aliased(e, k))
		x->lost = "two keys name one service";
	else if (r.name && x->fn(x->arg, r.name, k->text, k->len))
		x->lost = "a change not applied";
	etcd_rec_free(&r);
}

static int etcd_follow(struct store *st, store_change_fn fn, void *arg)
{
	struct store_etcd *e = (struct store_etcd *)st;
	char pre[ETCD_KEY_MAX];
	struct efollow x = {.e = e, .fn = fn, .arg = arg, .pre = pre};
	if (e->need_load || e->led)
		return STORE_RELOAD;
	snprintf(pre, sizeof(pre), "%ssvc/", e->prefix);
	int w = etcd_watch(&e->cl, pre, e->rev, on_event, &x);
	if (x.lost) {
		log_msg(LOG_INFO,
		        "controller: etcd: the changes past revision %" PRId64
		        " cannot be followed (%s): reading the state afresh",
		        e->rev, x.lost);
		etcd_watch_stop(&e->cl);
	}
	if (x.lost || w == ETCD_WATCH_RESYNC) {
		e->need_load = true;
		return STORE_RELOAD;
	}
	if (x.n)
		return STORE_CHANGED; /* (a broken stream resumes after the last event) */
	return w < 0 ? w : 0;
}

static int etcd_follow_fd(struct store *st)
{
	struct store_etcd *e = (struct store_etcd *)st;
	return e->need_load || e->led ? -1 : etcd_watch_fd(&e->cl);
}

/* One transaction of two ranges of PREFIX svc/ at one revision: the keys written past the
 * copy's revision (none if it is current), and how many keys there are (as many as the
 * copy holds: none deleted past it). */
static int etcd_current(struct store *st)
{
	struct store_etcd *e = (struct store_etcd *)st;
	char pre[ETCD_KEY_MAX], rev[32];
	unsigned live = 0;
	if (e->need_load || !e->rev)
		return 0;
	snprintf(pre, sizeof(pre), "%ssvc/", e->prefix);
	snprintf(rev, sizeof(rev), "%" PRId64, e->rev + 1);
	json_t *newer = etcd_range_req(pre, true), *all = etcd_range_req(pre, false);
	json_object_set_new(newer, "min_mod_revision", json_string(rev));
	json_object_set_new(all, "count_only", json_true());
	json_t *r = etcd_call(&e->cl, "/v3/kv/txn",
	                      json_pack("{s:[{s:o},{s:o}]}", "success", "request_range", newer,
	                                "request_range", all));
	if (!r)
		return -EIO;
	json_t *res = json_object_get(r, "responses");
	json_t *r0 = json_object_get(json_array_get(res, 0), "response_range");
	json_t *r1 = json_object_get(json_array_get(res, 1), "response_range");
	int64_t n = etcd_jint(r1, "count");
	bool ok = json_is_object(r0) && json_is_object(r1) &&
	          !json_array_size(json_object_get(r0, "kvs"));
	json_decref(r);
	for (unsigned i = 0; i < e->nkeys; i++)
		live += e->keys[i].rev > 0;
	return ok && n == (int64_t)live;
}

/* Grants a lease of ttl seconds. Returns its id, or 0 (etcd did not grant it). */
static int64_t lease_new(struct store_etcd *e, unsigned ttl)
{
	char s[16];
	int64_t id;
	snprintf(s, sizeof(s), "%u", ttl);
	json_t *r = etcd_call(&e->cl, "/v3/lease/grant", json_pack("{s:s}", "TTL", s));
	if (!r)
		return 0;
	id = etcd_jint(r, "ID");
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
	json_t *r = etcd_call(&e->cl, "/v3/lease/keepalive", json_pack("{s:s}", "ID", s));
	if (!r)
		return -EIO;
	int alive = etcd_jint(json_object_get(r, "result"), "TTL") > 0;
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
	r = v ? etcd_call(&e->cl, "/v3/kv/put",
	                  json_pack("{s:o,s:s,s:s}", "key", etcd_jkey(k, strlen(k)), "value", v,
	                            "lease", id))
	      : NULL;
	free(v);
	if (!r) {
		x->lease = 0; /* granted for nothing: it runs out */
		return -EIO;
	}
	json_decref(r);
	return 0;
}

static bool etcd_node_known(const struct store *st, const char *node)
{
	const struct store_etcd *e = (const struct store_etcd *)st;
	for (unsigned i = 0; i < e->nknown; i++)
		if (!strcmp(e->known[i], node))
			return true;
	return false;
}

/* Reads which nodes are registered (the keys under PREFIX nodes/), and adds them to those
 * known. Returns 0, -EIO or -ENOMEM. */
static int nodes_read(struct store_etcd *e)
{
	char pre[ETCD_KEY_MAX];
	json_t *r, *kv;
	size_t i, pl;
	snprintf(pre, sizeof(pre), "%snodes/", e->prefix);
	pl = strlen(pre);
	if (!(r = etcd_call(&e->cl, "/v3/kv/range", etcd_range_req(pre, true))))
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
	for (unsigned j = 0; j < n; j++) {
		if (etcd_node_known(&e->st, nv[j]))
			continue;
		char(*grown)[CTL_ID_MAX] = realloc(e->known, (e->nknown + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		e->known = grown;
		memcpy(e->known[e->nknown++], nv[j], CTL_ID_MAX);
	}
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
		if (!(r = etcd_call(&e->cl, "/v3/lease/keepalive", json_pack("{s:s}", "ID", id)))) {
			/* etcd may be electing its own leader: the lease outlives that (etcd
			 * extends leases on a new raft leader), so the lead is kept if the next
			 * try, failing in full (every member timing out), still ends before the
			 * lease could expire: no two leaders, however etcd is cut off. */
			uint64_t worst = ETCD_TICK_MS + etcd_interval_ms(st) +
			                 (uint64_t)e->cl.nurls * e->ttl_s * 1000 / 4;
			if (e->leader_rev &&
			    ctlr_now_ms() - e->renewed_ms + worst < e->ttl_s * 1000ull)
				return 1;
			e->leader_rev = 0;
			return -EIO;
		}
		e->renewed_ms = sent;
		bool alive = etcd_jint(json_object_get(r, "result"), "TTL") > 0;
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
	                        "compare", "key", etcd_jkey(lk, strlen(lk)), "target", "CREATE",
	                        "result", "EQUAL", "create_revision", "0", "success", "request_put",
	                        "key", etcd_jkey(lk, strlen(lk)), "value", v ? v : "", "lease", id,
	                        "failure", "request_range", "key", etcd_jkey(lk, strlen(lk)));
	free(v);
	if (!(r = etcd_call(&e->cl, "/v3/kv/txn", req)))
		return -EIO;
	if (json_is_true(json_object_get(r, "succeeded"))) {
		e->leader_rev = etcd_jint(json_object_get(r, "header"), "revision");
	} else {
		json_t *kv = json_array_get(
		    json_object_get(
		        json_object_get(json_array_get(json_object_get(r, "responses"), 0),
		                        "response_range"),
		        "kvs"),
		    0);
		if (etcd_jint(kv, "lease") == e->lease) /* ours already (a reply lost on the way) */
			e->leader_rev = etcd_jint(kv, "create_revision");
	}
	json_decref(r);
	if (!e->leader_rev)
		return 0;
	e->led = true;           /* from now its copy holds its writes: a load before following */
	etcd_watch_stop(&e->cl); /* a leader is the writer: it watches nothing */
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
	if (e->lease && e->cl.curl) {
		char id[32];
		snprintf(id, sizeof(id), "%" PRId64, e->lease);
		json_decref(etcd_call(&e->cl, "/v3/lease/revoke", json_pack("{s:s}", "ID", id)));
	}
	keys_clear(e);
	free(e->alive);
	free(e->known);
	etcd_close(&e->cl);
	free(e);
}

static const struct store_ops etcd_ops = {
    .name = "etcd",
    .load = etcd_load,
    .save = etcd_save,
    .watch = etcd_watch_svc,
    .follow = etcd_follow,
    .watch_fd = etcd_follow_fd,
    .current = etcd_current,
    .keepalive = etcd_keepalive,
    .nodes_renew = etcd_nodes_renew,
    .node_alive = etcd_node_alive,
    .node_known = etcd_node_known,
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
	if (!(e = calloc(1, sizeof(*e)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->st.ops = &etcd_ops;
	e->need_load = true; /* (nothing read yet) */
	e->ttl_s = o->lease_ttl_s ? o->lease_ttl_s : ETCD_TTL_DEF_S;
	if (etcd_open(&e->cl, "controller", o->etcd, (long)e->ttl_s * 1000 / 4, err, errlen)) {
		etcd_free(&e->st);
		return NULL;
	}
	snprintf(e->prefix, sizeof(e->prefix), "%s", pre);
	e->agent_ttl_s = o->agent_ttl_s ? o->agent_ttl_s : ETCD_TTL_DEF_S;
	if (e->agent_ttl_s * 2 < e->ttl_s) { /* renewed at every interval, a quarter of ttl_s */
		snprintf(err, errlen, "--agent-ttl %u is less than half of --lease-ttl %u",
		         e->agent_ttl_s, e->ttl_s);
		etcd_free(&e->st);
		return NULL;
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(e->id, sizeof(e->id), "%s/%d %s", host, (int)getpid(), o->listen);
	return &e->st;
}
