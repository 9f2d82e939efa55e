/*
 * The Kubernetes store (--store kubernetes): leader election through a coordination.k8s.io/v1
 * Lease and the live state in a ConfigMap, both named --kube-lease (default peak-controller)
 * in --kube-namespace, through the API client of src/k8s (kube_call: bearer token, CA, a 401
 * re-reads the token).
 *
 * The Lease (GET/POST/PUT /apis/coordination.k8s.io/v1/namespaces/NS/leases[/NAME]):
 * spec.holderIdentity is the leader's id (HOST/PID LISTEN), leaseDurationSeconds the
 * --lease-ttl, acquireTime and renewTime RFC 3339 MicroTimes, leaseTransitions counts the
 * takeovers and is this leader's term. Every write is a PUT of the object last read, its
 * metadata.resourceVersion unchanged, so the API server refuses it (409 Conflict) if anyone
 * wrote in between: two controllers never both win a takeover. As client-go's
 * leaderelection does, expiry is judged on this controller's own clock, never on the
 * holder's timestamps (clocks differ): a lease is expired when its resourceVersion has not
 * changed for leaseDurationSeconds since this controller first saw that version, or when
 * holderIdentity is empty (a leader that stopped released it). The leader renews every
 * quarter of the lease and gives the lead up by itself before a standby could judge the
 * lease expired (renewals that keep failing: see kube_keepalive).
 *
 * The ConfigMap (GET/POST/PUT /api/v1/namespaces/NS/configmaps[/NAME]): one data key per
 * service, its name (a ConfigMap key: [-._a-zA-Z0-9], as service names are), its value the
 * service's control lines as the file store keeps them; the annotations peak.dev/leader and
 * peak.dev/term say who wrote it last, in which term. A save PUTs the whole ConfigMap with
 * the resourceVersion last read or written: a 409 means another writer; if the stored term
 * is a later one and the Lease no longer names this controller in its term, the lead was
 * lost (nothing written, -ESTALE), else (an operator's edit, even of the term annotation:
 * terms come from the Lease) the live state is written over it once. The first save of a term is
 * written even when the data did not change, so an old leader's late write fails on the
 * resourceVersion. Values that are not one service's lines (store_rec_check) are refused with a log
 * line, never adopted. A ConfigMap holds at most 1 MiB (the API's limit): the state of some
 * thousands of services; a larger one is refused by the API server and logged at every save.
 * Agents' liveness: a Lease per node (as the kubelet's node heartbeats in kube-node-lease),
 * named NAME-node-NODE in the namespace, labelled peak.dev/node-of=NAME, holderIdentity the
 * node's name, leaseDurationSeconds the --agent-ttl (default the --lease-ttl). The leader
 * renews (PUT, guarded by resourceVersion) or creates the Lease of every node whose agent
 * is connected to it at every interval, and lists them all (labelSelector); a standby only
 * lists. As with the leader's Lease, a node's Lease is alive while its resourceVersion
 * changed less than its leaseDurationSeconds ago on this controller's own clock. A node
 * whose name cannot be part of a Lease's name (a DNS subdomain) is never judged (logged).
 * Every request is synchronous, on the controller's loop, bounded by a quarter of the lease.
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../etcd/etcd.h" /* etcd_printable */
#include "../k8s/kube.h"
#include "../sys/log.h"
#include "controller.h"
#include "ctl.h"

enum {
	KSTORE_TTL_DEF_S = 15,        /* Kubernetes' own controllers' lease (client-go's default) */
	KSTORE_TICK_MS = 250,         /* the controller's loop may call the store this late */
	KSTORE_STANDBY_MS = 500,      /* a standby reads the lease at least this often */
	KSTORE_VALUE_MAX_B = 1 << 20, /* a ConfigMap's data: the API's limit */
	KSTORE_DURATION_MAX_S = 3600, /* a holder's leaseDurationSeconds beyond: not believed */
};

struct store_kube {
	struct store st;
	struct kube *k;
	char ns[64], name[64];
	char lease_path[256], cm_path[256]; /* the objects; their collections end before '/NAME' */
	char id[160];
	unsigned ttl_s;
	long timeout_ms;
	/* the Lease as last read or written */
	json_t *lease;         /* the object (NULL: none read yet, or 404) */
	char lrv[KUBE_RV_MAX]; /* its resourceVersion */
	uint64_t observed_ms;  /* when this controller first saw lrv (its own clock) */
	bool leading;
	uint64_t renewed_ms; /* when the last renewal the API answered was sent */
	/* the ConfigMap */
	bool cm_exists;
	char crv[KUBE_RV_MAX]; /* its resourceVersion as last read or written */
	json_t *written;       /* its data as last written or loaded (the good keys) */
	int64_t cm_term;       /* its peak.dev/term as last read or written */
	/* the nodes' Leases */
	unsigned agent_ttl_s;
	struct knode *nodes; /* every node whose Lease was ever listed or written */
	unsigned nnodes;
	char nodes_path[256]; /* the Leases' collection, with the label selector */
	json_t *ignored;      /* name -> resourceVersion of the foreign Leases logged */
};

/* A node's Lease as last listed or written. */
struct knode {
	char node[CTL_ID_MAX];
	json_t *obj;          /* the Lease (NULL: not in the last list) */
	char rv[KUBE_RV_MAX]; /* its resourceVersion */
	uint64_t seen_ms;     /* when this controller first saw rv (its own clock) */
	uint64_t dur_ms;      /* its leaseDurationSeconds (sane, else the agent TTL) */
	bool alive, known;    /* alive at the last nodes_renew; at any */
	bool bad_name;        /* not part of a Lease's name: logged once */
	bool listed;          /* (in the list being read) */
	bool held;            /* its holderIdentity is its node (else: not alive) */
};

enum { KSTORE_NODES_MAX = 4096 }; /* the nodes' Leases kept (a cluster's nodes at most) */

/* ---- helpers ---- */

/* now (the wall clock) as a MicroTime, "2006-01-02T15:04:05.000000Z". */
static void micro_time(char out[static 32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

/* The metadata.resourceVersion of o into rv, or "" (absent, or not a plain token). */
static void rv_of(json_t *o, char rv[static KUBE_RV_MAX])
{
	const char *v =
	    json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
	rv[0] = 0;
	if (v && strlen(v) < KUBE_RV_MAX && !strpbrk(v, "&?#/ %\"\\"))
		snprintf(rv, KUBE_RV_MAX, "%s", v);
}

/* Whether s names a ConfigMap key: 1..253 of [-._a-zA-Z0-9]. */
static bool cm_key_ok(const char *s)
{
	size_t n = strlen(s);
	return n && n <= 253 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") == n;
}

/* ---- the Lease ---- */

/* Keeps o (a reference taken) as the lease last seen; a new resourceVersion is observed
 * now. */
static void lease_seen(struct store_kube *s, json_t *o, uint64_t now)
{
	char rv[KUBE_RV_MAX];
	rv_of(o, rv);
	if (strcmp(rv, s->lrv) || !s->lease) {
		snprintf(s->lrv, sizeof(s->lrv), "%s", rv);
		s->observed_ms = now;
	}
	json_decref(s->lease);
	s->lease = o;
}

/* The lease's spec fields (untrusted): holder ("" none; "?" not a string of a sane size),
 * its duration in ms (ours when absent or absurd), its transitions. */
static void lease_spec(const struct store_kube *s, char holder[static 160], uint64_t *dur_ms,
                       int64_t *trans)
{
	json_t *sp = json_object_get(s->lease, "spec");
	json_t *h = json_object_get(sp, "holderIdentity");
	json_int_t d = json_integer_value(json_object_get(sp, "leaseDurationSeconds"));
	json_int_t t = json_integer_value(json_object_get(sp, "leaseTransitions"));
	const char *hv = json_string_value(h);
	if (!h || json_is_null(h))
		holder[0] = 0;
	else if (!hv || strlen(hv) >= 160 || json_string_length(h) != strlen(hv))
		snprintf(holder, 160, "?");
	else
		snprintf(holder, 160, "%s", hv);
	*dur_ms = (d >= 1 && d <= KSTORE_DURATION_MAX_S ? (uint64_t)d : s->ttl_s) * 1000;
	*trans = t >= 0 ? t : 0;
}

/* A Lease spec with this controller as holder. */
static json_t *spec_ours(const struct store_kube *s, int64_t trans, const char *acquired)
{
	char now[32];
	micro_time(now);
	return json_pack("{s:s,s:i,s:s,s:s,s:I}", "holderIdentity", s->id, "leaseDurationSeconds",
	                 (int)s->ttl_s, "acquireTime", acquired ? acquired : now, "renewTime", now,
	                 "leaseTransitions", (json_int_t)trans);
}

/* PUTs the lease last read with spec (taken over), guarded by its resourceVersion. Returns
 * 200 (the reply kept as the lease), 409 (someone wrote in between), another status or
 * -errno. */
static long lease_put(struct store_kube *s, json_t *spec, uint64_t now)
{
	json_t *body = json_deep_copy(s->lease), *out = NULL;
	if (!body || !spec || json_object_set_new(body, "spec", spec)) {
		json_decref(body);
		return -ENOMEM;
	}
	long code = kube_call(s->k, "PUT", s->lease_path, body, s->timeout_ms, &out);
	if (code == 200)
		lease_seen(s, out, now);
	else
		json_decref(out);
	return code;
}

/* Creates the lease with this controller as holder. Returns 201 (created: leading), 409
 * (another was first), another status or -errno. */
static long lease_create(struct store_kube *s, uint64_t now)
{
	char coll[256];
	json_t *out = NULL;
	snprintf(coll, sizeof(coll), "%.*s", (int)(strrchr(s->lease_path, '/') - s->lease_path),
	         s->lease_path);
	json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion",
	                         "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name",
	                         s->name, "namespace", s->ns, "spec", spec_ours(s, 0, NULL));
	if (!body)
		return -ENOMEM;
	long code = kube_call(s->k, "POST", coll, body, s->timeout_ms, &out);
	if (code == 201 || code == 200) {
		lease_seen(s, out, now);
		return 201;
	}
	json_decref(out);
	return code;
}

/* Reads the lease. Returns 200 (kept), 404 (none: s->lease NULL), another status or
 * -errno. */
static long lease_get(struct store_kube *s, uint64_t now)
{
	json_t *out = NULL;
	long code = kube_call(s->k, "GET", s->lease_path, NULL, s->timeout_ms, &out);
	if (code == 200 && !json_is_object(json_object_get(out, "spec")))
		json_object_set_new(out, "spec", json_object()); /* (a Lease with no spec yet) */
	if (code == 200)
		lease_seen(s, out, now);
	else
		json_decref(out);
	if (code == 404) {
		json_decref(s->lease);
		s->lease = NULL;
		s->lrv[0] = 0;
	}
	return code;
}

static void lead_won(struct store_kube *s, uint64_t sent, const char *how)
{
	char holder[160];
	uint64_t dur;
	int64_t trans;
	lease_spec(s, holder, &dur, &trans);
	s->leading = true;
	s->renewed_ms = sent;
	s->st.term = trans + 1; /* (never 0: a term the controller has not seen yet) */
	log_msg(LOG_INFO,
	        "controller: kubernetes: %s leads (Lease %s/%s %s, leaseTransitions %" PRId64 ")",
	        s->id, s->ns, s->name, how, trans);
}

static unsigned kube_interval_ms(const struct store *st);

/* True if the Lease, read now, still names this controller in its term: terms come only
 * from Lease takeovers (resourceVersion-guarded), so a ConfigMap claiming a later term while
 * this holds was not written by a leader (an operator's edit). */
static bool lease_still_ours(struct store_kube *s)
{
	char holder[160];
	uint64_t dur;
	int64_t trans;
	if (lease_get(s, ctlr_now_ms()) != 200)
		return false;
	lease_spec(s, holder, &dur, &trans);
	return !strcmp(holder, s->id) && trans + 1 == s->st.term;
}

/* Renews the lead, or campaigns (see the top of the file). */
static int kube_keepalive(struct store *st)
{
	struct store_kube *s = (struct store_kube *)st;
	uint64_t now = ctlr_now_ms(), dur;
	char holder[160];
	int64_t trans;
	long code;
	if (s->leading) {
		char *acq = NULL;
		lease_spec(s, holder, &dur, &trans);
		const char *a = json_string_value(
		    json_object_get(json_object_get(s->lease, "spec"), "acquireTime"));
		acq = a ? strdup(a) : NULL;
		code = lease_put(s, spec_ours(s, trans, acq), now);
		free(acq);
		if (code == 200) {
			s->renewed_ms = now;
			return 1;
		}
		if (code == 409 || code == 404) {
			/* someone wrote the lease: ours only if it still names us (an operator's
			 * edit of its labels), then renewed at the next interval */
			if (lease_get(s, now) == 200) {
				lease_spec(s, holder, &dur, &trans);
				if (!strcmp(holder, s->id) && trans + 1 == s->st.term)
					return 1;
			}
			log_msg(LOG_WARNING,
			        "controller: kubernetes: Lease %s/%s written by another "
			        "(HTTP %ld): the lead is lost",
			        s->ns, s->name, code);
			s->leading = false;
			return 0;
		}
		/* the API did not answer: the lead is kept only while the next try, failing in
		 * full, still ends before a standby could judge the lease expired (it counts the
		 * lease from when it saw the last renewal, which is after it was sent) */
		uint64_t worst = KSTORE_TICK_MS + kube_interval_ms(st) + (uint64_t)s->timeout_ms;
		if (now - s->renewed_ms + worst < s->ttl_s * 1000ull)
			return 1;
		log_msg(LOG_WARNING,
		        "controller: kubernetes: Lease %s/%s not renewed for %" PRIu64
		        " ms: the lead is given up",
		        s->ns, s->name, now - s->renewed_ms);
		s->leading = false;
		return -EIO;
	}
	code = lease_get(s, now);
	if (code == 404) {
		code = lease_create(s, now);
		if (code == 201) {
			lead_won(s, now, "created");
			return 1;
		}
		return code == 409 ? 0 : -EIO;
	}
	if (code != 200)
		return -EIO;
	lease_spec(s, holder, &dur, &trans);
	bool ours = !strcmp(holder, s->id); /* (a renewal whose reply was lost) */
	bool expired = !holder[0] || now - s->observed_ms >= dur;
	if (!ours && !expired)
		return 0;
	const char *a =
	    json_string_value(json_object_get(json_object_get(s->lease, "spec"), "acquireTime"));
	char *acq = ours && a ? strdup(a) : NULL;
	code = lease_put(s, spec_ours(s, ours ? trans : trans + 1, acq), now);
	free(acq);
	if (code == 200) {
		if (!ours && holder[0])
			log_msg(LOG_INFO,
			        "controller: kubernetes: Lease %s/%s of '%s' not renewed for "
			        "%" PRIu64 " ms: taking over",
			        s->ns, s->name, holder, dur);
		lead_won(s, now, ours ? "renewed" : "taken over");
		return 1;
	}
	if (code == 409)
		log_msg(LOG_INFO,
		        "controller: kubernetes: Lease %s/%s: another controller was first "
		        "(409 Conflict)",
		        s->ns, s->name);
	return code == 409 ? 0 : -EIO;
}

static unsigned kube_interval_ms(const struct store *st)
{
	const struct store_kube *s = (const struct store_kube *)st;
	unsigned ka = s->ttl_s * 1000 / 4;
	/* a standby reads the lease often enough that takeover follows expiry closely */
	return s->leading || ka < KSTORE_STANDBY_MS ? ka : KSTORE_STANDBY_MS;
}

/* ---- the ConfigMap ---- */

/* Reads the ConfigMap. Returns 200 (*out the object, the caller's), 404, another status or
 * -errno. Keeps its resourceVersion and term. */
static long cm_get(struct store_kube *s, json_t **out)
{
	long code = kube_call(s->k, "GET", s->cm_path, NULL, s->timeout_ms, out);
	if (code == 200) {
		rv_of(*out, s->crv);
		s->cm_exists = true;
		const char *t = json_string_value(json_object_get(
		    json_object_get(json_object_get(*out, "metadata"), "annotations"),
		    "peak.dev/term"));
		s->cm_term = t ? strtoll(t, NULL, 10) : 0;
	} else if (code == 404) {
		s->cm_exists = false;
		s->crv[0] = 0;
		s->cm_term = 0;
	}
	return code;
}

static int kube_load(struct store *st, char **text, size_t *len)
{
	struct store_kube *s = (struct store_kube *)st;
	struct text t = {0};
	json_t *cm = NULL, *good = json_object(), *v;
	const char *key;
	char why[128], shown[96];
	int ret = -EIO;
	bool refused = false;
	*text = NULL;
	*len = 0;
	if (!good)
		return -ENOMEM;
	long code = cm_get(s, &cm);
	if (code == 404) {
		ret = 0;
		goto out;
	}
	if (code != 200)
		goto out;
	json_t *data = json_object_get(cm, "data");
	refused = data && !json_is_object(data) && !json_is_null(data);
	if (refused)
		log_msg(LOG_WARNING,
		        "controller: kubernetes: ConfigMap %s/%s: data is not an "
		        "object: refused",
		        s->ns, s->name);
	json_object_foreach(json_is_object(data) ? data : NULL, key, v)
	{
		const char *val = json_string_value(v);
		size_t vl = val ? json_string_length(v) : 0;
		etcd_printable(shown, sizeof(shown), key, strlen(key));
		int err = !val ? (snprintf(why, sizeof(why), "not a string"), -1)
		          : vl > KSTORE_VALUE_MAX_B
		              ? (snprintf(why, sizeof(why), "too large"), -1)
		              : store_rec_check(key, val, vl, why, sizeof(why));
		if (err) {
			log_msg(LOG_WARNING,
			        "controller: kubernetes: ConfigMap %s/%s: %s: refused: %s", s->ns,
			        s->name, shown, why);
			refused = true;
			continue;
		}
		ctlr_text_add(&t, val, vl);
		json_object_set(good, key, v);
	}
	if (t.err) {
		ret = t.err;
		goto out;
	}
	if (t.len) {
		ctlr_text_add(&t, "", 1);
		if (t.err) {
			ret = t.err;
			goto out;
		}
		*text = t.p;
		*len = t.len - 1;
		t.p = NULL;
	}
	json_decref(s->written);
	s->written = refused ? NULL : good; /* (a refused value: the next save replaces it) */
	if (!refused)
		good = NULL;
	ret = 0;
out:
	free(t.p);
	json_decref(cm);
	json_decref(good);
	return ret;
}

/* Writes data (a reference taken) as the ConfigMap's, guarded by its resourceVersion.
 * Returns 1 (written), 0 (409: another writer), or -errno. */
static int cm_write(struct store_kube *s, json_t *data)
{
	char term[24], coll[256];
	json_t *out = NULL;
	snprintf(term, sizeof(term), "%" PRId64, s->st.term);
	json_t *body =
	    json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s}},s:O}", "apiVersion", "v1", "kind",
	              "ConfigMap", "metadata", "name", s->name, "namespace", s->ns, "annotations",
	              "peak.dev/leader", s->id, "peak.dev/term", term, "data", data);
	if (!body)
		return -ENOMEM;
	if (s->cm_exists)
		json_object_set_new(json_object_get(body, "metadata"), "resourceVersion",
		                    json_string(s->crv));
	snprintf(coll, sizeof(coll), "%.*s", (int)(strrchr(s->cm_path, '/') - s->cm_path),
	         s->cm_path);
	long code = s->cm_exists ? kube_call(s->k, "PUT", s->cm_path, body, s->timeout_ms, &out)
	                         : kube_call(s->k, "POST", coll, body, s->timeout_ms, &out);
	if (code == 200 || code == 201) {
		rv_of(out, s->crv);
		s->cm_exists = true;
		s->cm_term = s->st.term;
		json_decref(s->written);
		s->written = json_incref(data);
		json_decref(out);
		return 1;
	}
	json_decref(out);
	if (code == 409 || (code == 404 && s->cm_exists))
		return 0;
	if (code > 0)
		log_msg(LOG_WARNING, "controller: kubernetes: ConfigMap %s/%s: HTTP %ld", s->ns,
		        s->name, code);
	return code > 0 ? -EIO : (int)code;
}

static int kube_save(struct store *st, const struct store_rec *r, unsigned n)
{
	struct store_kube *s = (struct store_kube *)st;
	json_t *data = json_object(), *cm = NULL;
	int ret = -ESTALE;
	if (!s->leading)
		goto out;
	ret = -EAGAIN; /* (a lease this old may be another's by now: saved once renewed) */
	if (ctlr_now_ms() - s->renewed_ms >= s->ttl_s * 1000ull)
		goto out;
	ret = -ENOMEM;
	if (!data)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		if (!cm_key_ok(r[i].name)) {
			log_msg(
			    LOG_WARNING,
			    "controller: kubernetes: service %s: not a ConfigMap key: not saved",
			    r[i].name);
			continue;
		}
		json_t *v = json_stringn(r[i].text, r[i].len);
		if (!v || json_object_set_new(data, r[i].name, v))
			goto out;
	}
	if (s->cm_exists && s->cm_term == s->st.term && json_equal(data, s->written)) {
		ret = 0;
		goto out;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		int k = cm_write(s, data);
		if (k != 0) {
			ret = k == 1 ? 0 : k;
			goto out;
		}
		/* 409: who wrote? A later term: the lead was lost. Else an operator (or a value
		 * refused at load): the live state is written over it, once. */
		long code = cm_get(s, &cm);
		json_decref(cm);
		cm = NULL;
		if (code != 200 && code != 404) {
			ret = -EIO;
			goto out;
		}
		if (s->cm_term > s->st.term && !lease_still_ours(s)) {
			log_msg(LOG_WARNING,
			        "controller: kubernetes: ConfigMap %s/%s written in a later term "
			        "(%" PRId64 ", this one %" PRId64 "): the lead was lost, nothing "
			        "written",
			        s->ns, s->name, s->cm_term, s->st.term);
			s->leading = false;
			ret = -ESTALE;
			goto out;
		}
		if (s->cm_term > s->st.term)
			log_msg(LOG_WARNING,
			        "controller: kubernetes: ConfigMap %s/%s says term %" PRId64
			        ", but the Lease still names this controller in term %" PRId64
			        ": no leader wrote it; writing the live state over it",
			        s->ns, s->name, s->cm_term, s->st.term);
		else
			log_msg(LOG_WARNING,
			        "controller: kubernetes: ConfigMap %s/%s was written by another "
			        "writer (409 Conflict): writing the live state over it",
			        s->ns, s->name);
	}
	ret = -ESTALE;
out:
	json_decref(data);
	return ret;
}

/* A standby follows the ConfigMap by its resourceVersion (one GET per interval). */
static int kube_watch(struct store *st)
{
	struct store_kube *s = (struct store_kube *)st;
	char before[KUBE_RV_MAX];
	bool existed = s->cm_exists;
	json_t *cm = NULL;
	snprintf(before, sizeof(before), "%s", s->crv);
	long code = cm_get(s, &cm);
	json_decref(cm);
	if (code != 200 && code != 404)
		return -EIO;
	return existed != s->cm_exists || strcmp(before, s->crv) ? 1 : 0;
}

/* ---- the nodes' Leases ---- */

/* Whether s is a DNS subdomain (RFC 1123): a Lease's name. */
static bool subdomain_ok(const char *s)
{
	size_t n = strlen(s);
	return n && n <= 253 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") == n &&
	       strchr(".-", s[0]) == NULL && strchr(".-", s[n - 1]) == NULL;
}

/* The node's entry (added when absent and add; NULL: none, or full). */
static struct knode *knode_of(struct store_kube *s, const char *node, bool add)
{
	for (unsigned i = 0; i < s->nnodes; i++)
		if (!strcmp(s->nodes[i].node, node))
			return &s->nodes[i];
	if (!add || s->nnodes == KSTORE_NODES_MAX || strlen(node) >= CTL_ID_MAX)
		return NULL;
	struct knode *g = realloc(s->nodes, (s->nnodes + 1) * sizeof(*g));
	if (!g)
		return NULL;
	s->nodes = g;
	g = &s->nodes[s->nnodes++];
	*g = (struct knode){0};
	snprintf(g->node, sizeof(g->node), "%s", node);
	return g;
}

/* Keeps o (a reference taken) as x's Lease; a new resourceVersion is seen now. */
static void knode_seen(struct store_kube *s, struct knode *x, json_t *o, uint64_t now)
{
	char rv[KUBE_RV_MAX];
	rv_of(o, rv);
	if (!x->obj || strcmp(rv, x->rv)) {
		snprintf(x->rv, sizeof(x->rv), "%s", rv);
		x->seen_ms = now;
	}
	json_int_t d =
	    json_integer_value(json_object_get(json_object_get(o, "spec"), "leaseDurationSeconds"));
	x->dur_ms = (d >= 1 && d <= KSTORE_DURATION_MAX_S ? (uint64_t)d : s->agent_ttl_s) * 1000;
	json_decref(x->obj);
	x->obj = o;
}

/* Lists the nodes' Leases. Returns 0 or -EIO. A Lease whose name or holder is not a
 * node's (an operator's, a foreign one) is refused with a log line. */
static int nodes_list(struct store_kube *s, uint64_t now)
{
	json_t *l = NULL, *it;
	char pre[96];
	size_t i, pl = (size_t)snprintf(pre, sizeof(pre), "%s-node-", s->name);
	long code = kube_call(s->k, "GET", s->nodes_path, NULL, s->timeout_ms, &l);
	if (code != 200) {
		json_decref(l);
		return -EIO;
	}
	for (unsigned j = 0; j < s->nnodes; j++)
		s->nodes[j].listed = false;
	json_t *items = json_object_get(l, "items");
	json_array_foreach(json_is_array(items) ? items : NULL, i, it)
	{
		const char *n =
		    json_string_value(json_object_get(json_object_get(it, "metadata"), "name"));
		const char *h = json_string_value(
		    json_object_get(json_object_get(it, "spec"), "holderIdentity"));
		char shown[96], rv[KUBE_RV_MAX];
		bool named = n && !strncmp(n, pre, pl) && strlen(n + pl) < CTL_ID_MAX;
		bool held = named && h && !strcmp(n + pl, h);
		struct knode *x = named ? knode_of(s, n + pl, true) : NULL;
		rv_of(it, rv);
		const char *was = x ? (x->obj ? x->rv : NULL)
		                    : json_string_value(json_object_get(s->ignored, n ? n : ""));
		bool fresh = !was || strcmp(rv, was); /* (before was is replaced) */
		if (!x && n && s->ignored)
			json_object_set_new(s->ignored, n, json_string(rv));
		if (!held && fresh) { /* once per version */
			etcd_printable(shown, sizeof(shown), n ? n : "?", n ? strlen(n) : 1);
			log_msg(LOG_WARNING,
			        "controller: kubernetes: Lease %s/%s: not a node's (name "
			        "%s-node-NODE, holderIdentity NODE): %s",
			        s->ns, shown, s->name,
			        x ? "not alive (written over while the node's agent is connected)"
			          : "ignored");
		}
		if (x) {
			knode_seen(s, x, json_incref(it), now);
			x->listed = true;
			x->held = held;
		}
	}
	json_decref(l);
	for (unsigned j = 0; j < s->nnodes; j++) { /* deleted: created again if connected */
		if (!s->nodes[j].listed) {
			json_decref(s->nodes[j].obj);
			s->nodes[j].obj = NULL;
		}
	}
	return 0;
}

/* Renews (or creates) node's Lease. Returns 0 (written, or 409: another writer, tried
 * again at the next interval) or -EIO. */
static int node_renew(struct store_kube *s, struct knode *x, uint64_t now)
{
	char name[320], nowt[32], coll[256];
	json_t *out = NULL, *body;
	snprintf(name, sizeof(name), "%s-node-%s", s->name, x->node);
	if (!subdomain_ok(name)) {
		if (!x->bad_name)
			log_msg(LOG_WARNING,
			        "controller: kubernetes: node %s: '%s' is not a Lease name: its "
			        "agent's liveness is not kept",
			        x->node, name);
		x->bad_name = true;
		return 0;
	}
	micro_time(nowt);
	json_t *spec = json_pack("{s:s,s:i,s:s}", "holderIdentity", x->node, "leaseDurationSeconds",
	                         (int)s->agent_ttl_s, "renewTime", nowt);
	snprintf(coll, sizeof(coll), "%.*s", (int)strcspn(s->nodes_path, "?"), s->nodes_path);
	if (x->obj) {
		char path[600];
		body = json_deep_copy(x->obj);
		if (!body || !spec || json_object_set_new(body, "spec", spec)) {
			json_decref(body);
			return -EIO;
		}
		snprintf(path, sizeof(path), "%s/%s", coll, name);
		long code = kube_call(s->k, "PUT", path, body, s->timeout_ms, &out);
		if (code == 200) {
			knode_seen(s, x, out, now);
			x->held = true;
			return 0;
		}
		json_decref(out);
		return code == 409 || code == 404 ? 0 : -EIO; /* (404: deleted; created next) */
	}
	body = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:o}", "apiVersion",
	                 "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", name,
	                 "namespace", s->ns, "labels", "peak.dev/node-of", s->name, "spec", spec);
	if (!body)
		return -EIO;
	long code = kube_call(s->k, "POST", coll, body, s->timeout_ms, &out);
	if (code == 201 || code == 200) {
		knode_seen(s, x, out, now);
		x->held = true;
		return 0;
	}
	json_decref(out);
	return code == 409 ? 0 : -EIO;
}

static int kube_nodes_renew(struct store *st, const char *const *nodes, unsigned n)
{
	struct store_kube *s = (struct store_kube *)st;
	uint64_t now = ctlr_now_ms();
	int r = nodes_list(s, now);
	for (unsigned j = 0; !r && j < n; j++) {
		struct knode *x = knode_of(s, nodes[j], true);
		if (x)
			r = node_renew(s, x, ctlr_now_ms());
	}
	if (r)
		return r;
	now = ctlr_now_ms();
	for (unsigned j = 0; j < s->nnodes; j++) {
		struct knode *x = &s->nodes[j];
		x->alive = x->obj && x->held && now - x->seen_ms < x->dur_ms;
		x->known |= x->alive;
	}
	return 0;
}

static bool kube_node_alive(const struct store *st, const char *node)
{
	const struct store_kube *s = (const struct store_kube *)st;
	for (unsigned i = 0; i < s->nnodes; i++)
		if (!strcmp(s->nodes[i].node, node))
			return s->nodes[i].alive;
	return false;
}

static bool kube_node_known(const struct store *st, const char *node)
{
	const struct store_kube *s = (const struct store_kube *)st;
	for (unsigned i = 0; i < s->nnodes; i++)
		if (!strcmp(s->nodes[i].node, node))
			return s->nodes[i].known;
	return false;
}

/* Frees the store; a leader releases the lease first (holderIdentity emptied), so a
 * standby takes over at once rather than after the lease. */
static void kube_store_free(struct store *st)
{
	struct store_kube *s = (struct store_kube *)st;
	if (!s)
		return;
	if (s->leading && s->lease) {
		char now[32];
		micro_time(now);
		json_t *spec =
		    json_pack("{s:n,s:i,s:s,s:I}", "holderIdentity", "leaseDurationSeconds", 1,
		              "renewTime", now, "leaseTransitions",
		              json_integer_value(json_object_get(json_object_get(s->lease, "spec"),
		                                                 "leaseTransitions")));
		if (lease_put(s, spec, ctlr_now_ms()) == 200)
			log_msg(LOG_INFO, "controller: kubernetes: Lease %s/%s released", s->ns,
			        s->name);
	}
	json_decref(s->lease);
	json_decref(s->written);
	for (unsigned i = 0; i < s->nnodes; i++)
		json_decref(s->nodes[i].obj);
	free(s->nodes);
	json_decref(s->ignored);
	kube_free(s->k);
	free(s);
}

static const struct store_ops kube_ops = {
    .name = "kubernetes",
    .load = kube_load,
    .save = kube_save,
    .watch = kube_watch,
    .keepalive = kube_keepalive,
    .nodes_renew = kube_nodes_renew,
    .node_alive = kube_node_alive,
    .node_known = kube_node_known,
    .interval_ms = kube_interval_ms,
    .free = kube_store_free,
};

struct store *store_kube_open(const struct controller_opts *o, char *err, size_t errlen)
{
	const struct kube_opts ko = o->kube;
	const char *name = o->kube_lease ? o->kube_lease : "peak-controller";
	char host[64] = "?";
	struct store_kube *s = NULL;
	if (kube_names_check(o->kube_namespace, name, err, errlen))
		return NULL;
	if (!(s = calloc(1, sizeof(*s)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->st.ops = &kube_ops;
	if (!(s->k = kube_open(&ko, err, errlen))) {
		free(s);
		return NULL;
	}
	kube_namespace(o->kube_namespace, o->kube.api != NULL, s->ns);
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->lease_path, sizeof(s->lease_path),
	         "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", s->ns, s->name);
	snprintf(s->cm_path, sizeof(s->cm_path), "/api/v1/namespaces/%s/configmaps/%s", s->ns,
	         s->name);
	s->ttl_s = o->lease_ttl_s ? o->lease_ttl_s : KSTORE_TTL_DEF_S;
	s->timeout_ms = (long)s->ttl_s * 1000 / 4;
	s->agent_ttl_s = o->agent_ttl_s ? o->agent_ttl_s : s->ttl_s;
	if (s->agent_ttl_s * 2 < s->ttl_s) { /* renewed at every interval, a quarter of ttl_s */
		snprintf(err, errlen, "--agent-ttl %u is less than half of --lease-ttl %u",
		         s->agent_ttl_s, s->ttl_s);
		kube_free(s->k);
		free(s);
		return NULL;
	}
	s->ignored = json_object(); /* (NULL: foreign Leases are logged at every list) */
	snprintf(s->nodes_path, sizeof(s->nodes_path),
	         "/apis/coordination.k8s.io/v1/namespaces/%s/"
	         "leases?labelSelector=peak.dev%%2Fnode-of%%3D%s",
	         s->ns, s->name);
	gethostname(host, sizeof(host) - 1);
	snprintf(s->id, sizeof(s->id), "%s/%d %s", host, (int)getpid(), o->listen ? o->listen : "");
	return &s->st;
}
