/* Endpoints added and removed at run time through the control socket ("add", "del",
 * "batch N": see ctl.h), without a reload: the file is the base, and an endpoint added here
 * is kept in the live state and in its service's stored record (an "add" line, the marker)
 * until a "del" removes it, or until the file itself lists its id (then the file's entry
 * is the endpoint and the marker goes). A reload, a restart and a standby taking over all
 * keep them: a reload carries them from the live services into the new configuration, an
 * adoption from the stored records. */
#define _GNU_SOURCE /* memmem */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peak/ctlrt.h"
#include "../sys/log.h"
#include "steer.h"

/* One line of a batch as received. */
struct rt_line {
	int svc; /* index in c->svc (-1: not found; the error is recorded) */
	bool add;
	unsigned no; /* 1-based, in the batch */
	struct cfg_endpoint ep;
};

struct rt_batch {
	uint32_t want, have, cap;
	struct rt_line *l;      /* grown as lines come (a batch announces up to 1,000,000) */
	char err[CTL_TEXT_MAX]; /* the first error, "" when none */
};

void ctlr_batch_free(struct rt_batch *b)
{
	if (!b)
		return;
	free(b->l);
	free(b);
}

/* ---- composing a service's endpoints: the file's, then those added at run time ---- */

/* Appends the endpoints of add (n) whose ids s does not list to a copy of s's endpoints;
 * the file's (line > 0) always, the run-time ones of s only if keep. Returns 0 with the
 * array in *out (malloc'ed) and its length in *nout, or -ENOMEM. */
static int compose(const struct cfg_service *s, bool keep, const struct cfg_endpoint *add,
                   unsigned n, struct cfg_endpoint **out, unsigned *nout)
{
	struct cfg_endpoint *ep = malloc((s->nep + n ? s->nep + n : 1) * sizeof(*ep));
	unsigned k = 0;
	if (!ep)
		return -ENOMEM;
	for (unsigned e = 0; e < s->nep; e++)
		if (keep || s->ep[e].line)
			ep[k++] = s->ep[e];
	for (unsigned j = 0; j < n; j++) {
		bool dup = false;
		for (unsigned e = 0; e < k && !dup; e++)
			dup = !strcmp(ep[e].id, add[j].id);
		if (!dup)
			ep[k++] = add[j];
	}
	*out = ep;
	*nout = k;
	return 0;
}

/* Whether two endpoint lists are the same (ids, addresses, weights, nodes, marks). */
static bool eps_same(const struct cfg_endpoint *a, unsigned na, const struct cfg_endpoint *b,
                     unsigned nb)
{
	if (na != nb)
		return false;
	for (unsigned e = 0; e < na; e++)
		if (strcmp(a[e].id, b[e].id) || memcmp(a[e].addr, b[e].addr, 16) ||
		    a[e].weight != b[e].weight || strcmp(a[e].node, b[e].node) ||
		    !a[e].line != !b[e].line)
			return false;
	return true;
}

static void ep_from_msg(struct cfg_endpoint *ep, const struct ctl_msg *m)
{
	*ep = (struct cfg_endpoint){.weight = m->weight, .line = 0};
	ctlr_copy(ep->id, sizeof(ep->id), m->id);
	ctlr_copy(ep->node, sizeof(ep->node), m->node);
	memcpy(ep->addr, m->addr, 16);
}

int ctlr_rt_reload_merge(struct peak_config *cfg, const struct peak_config *old, const int *from)
{
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *o = from[i] >= 0 ? &old->svc[from[i]] : NULL;
		struct cfg_service *s = &cfg->svc[i];
		unsigned nrt = 0, k;
		for (unsigned e = 0; o && e < o->nep; e++)
			nrt += !o->ep[e].line;
		if (!nrt)
			continue;
		struct cfg_endpoint *rt = malloc(nrt * sizeof(*rt)), *ep;
		if (!rt)
			return -ENOMEM;
		k = 0;
		for (unsigned e = 0; e < o->nep; e++) {
			if (o->ep[e].line)
				continue;
			if (ctlr_ep_index(s, o->ep[e].id) >= 0) {
				char name[DNS_NAME_STRLEN];
				dns_name_print(&s->name, name, sizeof(name));
				log_msg(
				    LOG_INFO,
				    "controller: %s %s: added at run time, now in the file: the "
				    "file's entry is kept",
				    name, o->ep[e].id);
				continue;
			}
			rt[k++] = o->ep[e];
		}
		int r = compose(s, true, rt, k, &ep, &nrt);
		free(rt);
		if (r)
			return r;
		free(s->ep);
		s->ep = ep;
		s->nep = nrt;
	}
	return 0;
}

struct scan_want {
	const struct name_index *x;
	int want; /* a service index, or -1: every service */
};

/* ctlrt_scan's service: its index in x, or 0 for the wanted one alone (its list). */
static int scan_svc(const struct dns_name *n, void *arg)
{
	const struct scan_want *w = arg;
	int i = ctlr_index_find(w->x, n);
	if (w->want < 0)
		return i;
	return i == w->want ? 0 : -1;
}

/* The "add" lines of text (len bytes) naming service index want of x (all services when
 * want < 0) appended to the per-service lists adds[i] / nadd[i] (adds[0] for want >= 0),
 * which must start empty. Linear in the lines (ctlrt_scan grows the lists geometrically:
 * one realloc per add made 20,000 adds in one service quadratic). */
static int scan_adds(const struct name_index *x, int want, const char *text, size_t len,
                     struct cfg_endpoint **adds, unsigned *nadd)
{
	struct scan_want w = {x, want};
	return ctlrt_scan(text, len, scan_svc, &w, adds, nadd);
}

int ctlr_rt_adopt_eps(const struct ctl *c, const char *state, size_t len,
                      struct cfg_endpoint ***out, unsigned **nout)
{
	unsigned n = c->cfg->nsvc;
	struct cfg_endpoint **adds = NULL, **eps = NULL;
	unsigned *nadd = NULL, *neps = NULL;
	bool any = false;
	int r = -ENOMEM;
	*out = NULL;
	*nout = NULL;
	for (unsigned i = 0; i < n && !any; i++)
		for (unsigned e = 0; e < c->cfg->svc[i].nep && !any; e++)
			any = !c->cfg->svc[i].ep[e].line;
	if (!any && (!state ||
	             !(len >= 4 && (!memcmp(state, "add ", 4) || memmem(state, len, "\nadd ", 5)))))
		return 0; /* nothing added at run time, here or in the store */
	adds = calloc(n ? n : 1, sizeof(*adds));
	nadd = calloc(n ? n : 1, sizeof(*nadd));
	eps = calloc(n ? n : 1, sizeof(*eps));
	neps = calloc(n ? n : 1, sizeof(*neps));
	if (!adds || !nadd || !eps || !neps || !c->idx.slot ||
	    (r = scan_adds(&c->idx, -1, state, len, adds, nadd)))
		goto out;
	r = -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		const struct cfg_service *s = &c->cfg->svc[i];
		struct cfg_endpoint *ep;
		unsigned k;
		if (compose(s, false, adds[i], nadd[i], &ep, &k))
			goto out;
		if (eps_same(ep, k, s->ep, s->nep))
			free(ep);
		else {
			eps[i] = ep;
			neps[i] = k;
		}
	}
	*out = eps;
	*nout = neps;
	eps = NULL;
	neps = NULL;
	r = 0;
out:
	for (unsigned i = 0; adds && i < n; i++)
		free(adds[i]);
	for (unsigned i = 0; eps && i < n; i++)
		free(eps[i]);
	free(adds);
	free(nadd);
	free(eps);
	free(neps);
	return r;
}

int ctlr_rt_record_eps(const struct ctl *c, unsigned i, const char *text, size_t len,
                       struct cfg_endpoint **out, unsigned *nout)
{
	const struct cfg_service *s = &c->cfg->svc[i];
	struct cfg_endpoint *adds = NULL;
	unsigned nadd = 0;
	int r = c->idx.slot ? scan_adds(&c->idx, (int)i, text, len, &adds, &nadd) : -ENOMEM;
	*out = NULL;
	if (!r && (r = compose(s, false, adds, nadd, out, nout)) == 0 &&
	    eps_same(*out, *nout, s->ep, s->nep)) {
		free(*out);
		*out = NULL;
	}
	free(adds);
	return r;
}

/* ---- the agents: the lines before a map ---- */

void ctlr_rt_text(const struct csvc *v, const struct cfg_endpoint *gone, unsigned ngone,
                  struct text *t)
{
	struct ctl_msg *m = NULL;
	bool any = false;
	for (unsigned e = 0; e < v->s->nep && !any; e++)
		any = !v->s->ep[e].line;
	for (unsigned e = 0; e < ngone && !any; e++)
		any = !gone[e].line;
	if (!any)
		return; /* (the common case: no allocation) */
	if (!(m = calloc(1, sizeof(*m)))) {
		t->err = -ENOMEM;
		return;
	}
	ctlr_copy(m->svc, sizeof(m->svc), v->name);
	m->kind = CTL_DEL;
	for (unsigned e = 0; e < ngone && !t->err; e++) {
		if (gone[e].line)
			continue;
		ctlr_copy(m->id, sizeof(m->id), gone[e].id);
		ctlr_text_msg(t, m);
	}
	m->kind = CTL_ADD;
	for (unsigned e = 0; e < v->s->nep && !t->err; e++) {
		const struct cfg_endpoint *ep = &v->s->ep[e];
		if (ep->line)
			continue;
		ctlr_copy(m->id, sizeof(m->id), ep->id);
		ctlr_copy(m->node, sizeof(m->node), ep->node);
		memcpy(m->addr, ep->addr, 16);
		m->weight = ep->weight;
		ctlr_text_msg(t, m);
	}
	free(m);
}

/* ---- the control socket: add, del and batch ---- */

static void batch_err(struct rt_batch *b, unsigned no, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps the batch's first error, "line N: TEXT". */
static void batch_err(struct rt_batch *b, unsigned no, const char *fmt, ...)
{
	va_list ap;
	if (b->err[0])
		return;
	int k = snprintf(b->err, sizeof(b->err), "line %u: ", no);
	va_start(ap, fmt);
	if (k > 0 && (size_t)k < sizeof(b->err))
		vsnprintf(b->err + k, sizeof(b->err) - (size_t)k, fmt, ap);
	va_end(ap);
}

int ctlr_batch_start(struct peer *p, uint32_t n)
{
	struct rt_batch *b = calloc(1, sizeof(*b));
	uint32_t cap = n < 1024 ? n : 1024;
	if (!b || !(b->l = calloc(cap, sizeof(*b->l)))) {
		free(b);
		return -ENOMEM;
	}
	b->want = n;
	b->cap = cap;
	p->batch = b;
	return 0;
}

bool ctlr_batch_line(struct ctl *c, struct peer *p, const char *line, size_t len)
{
	struct rt_batch *b = p->batch;
	struct ctl_msg *m = malloc(sizeof(*m));
	unsigned no = b->have + 1;
	if (b->have == b->cap) {
		uint32_t nc = b->cap > b->want / 2 ? b->want : 2 * b->cap;
		struct rt_line *g = realloc(b->l, nc * sizeof(*g));
		if (!g) { /* the line is counted, not kept: the batch is refused */
			batch_err(b, no, "out of memory");
			b->have++;
			free(m);
			return b->have == b->want;
		}
		b->l = g;
		b->cap = nc;
	}
	struct rt_line *l = &b->l[b->have++];
	*l = (struct rt_line){0};
	l->svc = -1;
	l->no = no;
	if (!m) {
		batch_err(b, no, "out of memory");
	} else if (ctl_parse(line, len, m)) {
		batch_err(b, no, "%s", m->why);
	} else if (m->kind != CTL_ADD && m->kind != CTL_DEL) {
		batch_err(b, no, "'%s': only add and del lines in a batch", ctl_kind_name(m->kind));
	} else {
		struct csvc *v = ctlr_svc_find(c, m->svc);
		l->add = m->kind == CTL_ADD;
		ep_from_msg(&l->ep, m);
		if (!v)
			batch_err(b, no, "no service %s", m->svc);
		else
			l->svc = (int)(v - c->svc);
	}
	free(m);
	return b->have == b->want;
}

/* Orders lines by service, then endpoint id, then line number. */
static int line_cmp(const void *pa, const void *pb)
{
	const struct rt_line *a = *(const struct rt_line *const *)pa,
	                     *b = *(const struct rt_line *const *)pb;
	if (a->svc != b->svc)
		return a->svc < b->svc ? -1 : 1;
	int r = strcmp(a->ep.id, b->ep.id);
	return r ? r : a->no < b->no ? -1 : a->no > b->no;
}

/* One service's change being made: its new endpoints and per-endpoint arrays. */
struct rt_change {
	unsigned svc;
	unsigned nadd, ndel, first_line;
	struct cfg_endpoint *ep; /* after change_apply: the old ones, nep_old of them */
	unsigned nep, nep_old;
	int *old_of; /* per new endpoint: its index before, -1: added */
	int *new_of; /* per old endpoint: its index after, -1: removed */
	int *slot;
	bool *healthy;
	uint32_t *weight, *ceil, *quiet;
	uint64_t *stale, *conns, *cpu_ns;
	struct steer_load *load;
	uint8_t *reason;
};

static void change_free(struct rt_change *x)
{
	free(x->ep);
	free(x->old_of);
	free(x->new_of);
	free(x->slot);
	free(x->healthy);
	free(x->weight);
	free(x->ceil);
	free(x->quiet);
	free(x->stale);
	free(x->conns);
	free(x->cpu_ns);
	free(x->load);
	free(x->reason);
}

/* Checks one service's lines (sorted by id: a repeated id is next to its first) and builds
 * its change. Returns 0, -EINVAL (the reason in b->err) or -ENOMEM. */
static int change_make(struct ctl *c, struct rt_batch *b, struct rt_line **ls, unsigned n,
                       struct rt_change *x)
{
	struct csvc *v = &c->svc[ls[0]->svc];
	const struct cfg_service *s = v->s;
	bool *gone = calloc(s->nep ? s->nep : 1, sizeof(*gone));
	int ret = -EINVAL;
	if (!gone)
		return -ENOMEM;
	x->svc = (unsigned)ls[0]->svc;
	x->first_line = UINT32_MAX;
	if (!v->have) {
		batch_err(b, ls[0]->no, "service %s has no assignment", v->name);
		goto out;
	}
	for (unsigned j = 0; j < n; j++) {
		const struct rt_line *l = ls[j];
		int e = ctlr_ep_index(s, l->ep.id);
		if (l->no < x->first_line)
			x->first_line = l->no;
		if (j && !strcmp(ls[j - 1]->ep.id, l->ep.id)) {
			batch_err(b, l->no, "endpoint %s of %s named twice in the batch", l->ep.id,
			          v->name);
			goto out;
		}
		if (l->add && e >= 0) {
			batch_err(b, l->no, "endpoint %s of %s exists", l->ep.id, v->name);
			goto out;
		}
		if (!l->add && e < 0) {
			batch_err(b, l->no, "no endpoint %s of %s", l->ep.id, v->name);
			goto out;
		}
		if (!l->add && s->ep[e].line) {
			batch_err(b, l->no,
			          "endpoint %s of %s is in the configuration file: remove it there",
			          l->ep.id, v->name);
			goto out;
		}
		if (l->add)
			x->nadd++;
		else {
			gone[e] = true;
			x->ndel++;
		}
	}
	if (v->a.nep + x->nadd > ASSIGN_MAX_ENDPOINTS) { /* (slots of those gone stay) */
		batch_err(b, x->first_line, "service %s would pass %u endpoints", v->name,
		          (unsigned)ASSIGN_MAX_ENDPOINTS);
		goto out;
	}
	/* someone with weight must be left to hold the slices */
	bool left = false;
	for (unsigned e = 0; e < s->nep && !left; e++)
		left = !gone[e] && v->healthy[e] && v->slot[e] >= 0 && v->weight[e];
	for (unsigned j = 0; j < n && !left; j++)
		left = ls[j]->add && ls[j]->ep.weight;
	if (!left) {
		batch_err(b, x->first_line, "service %s would have no endpoint with weight left",
		          v->name);
		goto out;
	}
	ret = -ENOMEM;
	unsigned nn = s->nep - x->ndel + x->nadd, k = 0, a = nn ? nn : 1;
	x->ep = malloc(a * sizeof(*x->ep));
	x->old_of = malloc(a * sizeof(*x->old_of));
	x->new_of = malloc((s->nep ? s->nep : 1) * sizeof(*x->new_of));
	x->slot = malloc(a * sizeof(*x->slot));
	x->healthy = malloc(a * sizeof(*x->healthy));
	x->weight = malloc(a * sizeof(*x->weight));
	x->ceil = malloc(a * sizeof(*x->ceil));
	x->quiet = calloc(a, sizeof(*x->quiet));
	x->stale = calloc(a, sizeof(*x->stale));
	x->conns = calloc(a, sizeof(*x->conns));
	x->cpu_ns = calloc(a, sizeof(*x->cpu_ns));
	x->load = calloc(a, sizeof(*x->load));
	x->reason = calloc(a, sizeof(*x->reason));
	if (!x->ep || !x->old_of || !x->new_of || !x->slot || !x->healthy || !x->weight ||
	    !x->ceil || !x->quiet || !x->stale || !x->conns || !x->cpu_ns || !x->load || !x->reason)
		goto out;
	for (unsigned e = 0; e < s->nep; e++) {
		x->new_of[e] = gone[e] ? -1 : (int)k;
		if (gone[e])
			continue;
		x->ep[k] = s->ep[e];
		x->old_of[k] = (int)e;
		x->slot[k] = v->slot[e];
		x->healthy[k] = v->healthy[e];
		x->weight[k] = v->weight[e];
		x->ceil[k] = v->ceil[e];
		x->quiet[k] = v->quiet[e];
		x->stale[k] = v->stale[e];
		x->conns[k] = v->conns[e];
		x->cpu_ns[k] = v->cpu_ns[e];
		x->load[k] = v->load[e];
		x->reason[k] = v->reason[e];
		k++;
	}
	for (unsigned j = 0; j < n; j++) {
		if (!ls[j]->add)
			continue;
		x->ep[k] = ls[j]->ep;
		x->old_of[k] = -1;
		x->slot[k] = -1;
		x->healthy[k] = true;
		x->ceil[k] = ls[j]->ep.weight;
		x->weight[k] = v->steer ? steer_fine(ls[j]->ep.weight) : ls[j]->ep.weight;
		k++;
	}
	x->nep = k;
	x->nep_old = s->nep;
	ret = 0;
out:
	free(gone);
	return ret;
}

/* Puts a checked change in force: the new endpoints join the assignment, the removed ones
 * leave (only their slices, and the new ones' shares, move), the service's arrays are
 * swapped. The caller holds the lock. Returns the slices moved. */
static uint32_t change_apply(struct ctl *c, struct rt_change *x, struct ho_snap *snap)
{
	struct csvc *v = &c->svc[x->svc];
	struct cfg_service *s = &c->cfg->svc[x->svc];
	uint32_t moved = 0, mv = 0, *w = malloc((x->nep ? x->nep : 1) * sizeof(*w));
	unsigned n = 0;
	for (unsigned e = 0; w && e < x->nep; e++) /* the newcomers join in one rebalance */
		if (x->old_of[e] < 0)
			w[n++] = x->weight[e];
	int first = !w ? -ENOMEM : n ? assign_add_many(&v->a, w, n, &moved) : 0;
	free(w);
	if (first < 0)
		log_msg(LOG_ERR, "controller: %s: %u endpoints cannot join the assignment: %s",
		        v->name, x->nadd, strerror(-first));
	for (unsigned e = 0, k = 0; first >= 0 && e < x->nep; e++)
		if (x->old_of[e] < 0)
			x->slot[e] = first + (int)k++;
	for (unsigned e = 0; e < s->nep; e++) {
		if (x->new_of[e] >= 0 || v->slot[e] < 0)
			continue;
		mv = 0;
		int r = assign_del(&v->a, (unsigned)v->slot[e], &mv);
		if (r)
			log_msg(LOG_ERR, "controller: %s %s: cannot leave the assignment: %s",
			        v->name, s->ep[e].id, strerror(-r));
		moved += mv;
	}
	for (unsigned k = 0; k < snap->nslots; k++) /* the snapshot's endpoints, renumbered */
		if (snap->ep_of[k] >= 0)
			snap->ep_of[k] = x->new_of[snap->ep_of[k]];
#define SWAP(f)                                                                                    \
	do {                                                                                       \
		__typeof__(v->f) t_ = v->f;                                                        \
		v->f = x->f;                                                                       \
		x->f = t_;                                                                         \
	} while (0)
	SWAP(slot);
	SWAP(healthy);
	SWAP(weight);
	SWAP(ceil);
	SWAP(quiet);
	SWAP(stale);
	SWAP(conns);
	SWAP(cpu_ns);
	SWAP(load);
	SWAP(reason);
#undef SWAP
	struct cfg_endpoint *old = s->ep;
	s->ep = x->ep;
	s->nep = x->nep;
	x->ep = old;
	return moved;
}

/* Tells peak dns (--dns-control) what a change did: adds with their live weight, dels. */
static void change_tell(struct ctl *c, const struct rt_change *x)
{
	const struct csvc *v = &c->svc[x->svc];
	struct ctl_msg *m = calloc(1, sizeof(*m));
	if (!m || !c->o->dns_control) {
		free(m);
		return;
	}
	ctlr_copy(m->svc, sizeof(m->svc), v->name);
	for (unsigned e = 0; e < v->s->nep; e++) { /* (x holds the old arrays now) */
		if (x->old_of[e] >= 0)
			continue;
		m->kind = CTL_ADD;
		ctlr_copy(m->id, sizeof(m->id), v->s->ep[e].id);
		memcpy(m->addr, v->s->ep[e].addr, 16);
		ctlr_copy(m->node, sizeof(m->node), v->s->ep[e].node);
		m->weight = v->weight[e];
		ctlr_dns_tell(c, m);
	}
	for (unsigned e = 0; e < x->nep_old; e++) {
		if (x->new_of[e] >= 0)
			continue;
		m->kind = CTL_DEL;
		ctlr_copy(m->id, sizeof(m->id), x->ep[e].id);
		ctlr_dns_tell(c, m);
	}
	free(m);
}

/* Tells the agents, before the handovers of a change, the endpoints it removed and the
 * service's run-time endpoints now (the map after it says them again): a handover may
 * name a pod the change added, and an agent knows it from these lines. */
static void change_tell_agents(struct ctl *c, const struct rt_change *x)
{
	struct csvc *v = &c->svc[x->svc];
	struct cfg_endpoint *gone = malloc((x->nep_old ? x->nep_old : 1) * sizeof(*gone));
	struct text t = {0};
	unsigned ngone = 0;
	if (!gone)
		return; /* the map says it all the same; only the handovers to newcomers fail */
	for (unsigned e = 0; e < x->nep_old; e++) /* (x holds the old endpoints now) */
		if (x->new_of[e] < 0)
			gone[ngone++] = x->ep[e];
	ctlr_rt_text(v, gone, ngone, &t);
	for (int i = 0; i < MAX_AGENTS && !t.err && t.len; i++) {
		struct peer *p = &c->agents[i];
		if (p->fd >= 0 && p->hello)
			ctlr_peer_send(c, p, t.p, t.len);
	}
	free(t.p);
	free(gone);
}

/* Replies "error: TEXT" to an operator client. */
static void reply_error(struct ctl *c, struct peer *p, const char *text)
{
	struct ctl_msg m = {.kind = CTL_ERROR};
	char line[CTL_LINE_MAX + 1];
	ctlr_copy(m.text, sizeof(m.text), text);
	for (char *q = m.text; *q; q++)
		if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
			*q = '?';
	int n = ctl_write(&m, line, sizeof(line));
	if (n > 0)
		ctlr_peer_send(c, p, line, (size_t)n);
}

/* Checks the whole batch, then applies it: every service's change is checked and built
 * before any is put in force, so a refused line leaves everything as it was. */
static int batch_apply(struct ctl *c, struct rt_batch *b, unsigned *nsvc, unsigned *nadd,
                       unsigned *ndel)
{
	struct rt_line **ls = malloc((b->have ? b->have : 1) * sizeof(*ls));
	struct rt_change *x = NULL;
	unsigned nx = 0;
	int ret = -ENOMEM;
	if (!ls)
		goto out;
	for (uint32_t j = 0; j < b->have; j++)
		ls[j] = &b->l[j];
	qsort(ls, b->have, sizeof(*ls), line_cmp);
	unsigned groups = 0;
	for (uint32_t j = 0; j < b->have; j++)
		groups += !j || ls[j]->svc != ls[j - 1]->svc;
	if (!(x = calloc(groups ? groups : 1, sizeof(*x))))
		goto out;
	for (uint32_t j = 0; j < b->have;) {
		uint32_t k = j;
		while (k < b->have && ls[k]->svc == ls[j]->svc)
			k++;
		if ((ret = change_make(c, b, ls + j, k - j, &x[nx++])))
			goto out;
		j = k;
	}
	/* every line checked, every array allocated: from here it is put in force */
	struct ho_snap *snap = calloc(nx ? nx : 1, sizeof(*snap));
	uint32_t *moved = calloc(nx ? nx : 1, sizeof(*moved));
	if (!snap || !moved) {
		free(snap);
		free(moved);
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < nx; i++)
		(void)ctlr_handover_snap(&c->svc[x[i].svc], &snap[i]); /* none: no handovers */
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < nx; i++)
		moved[i] = change_apply(c, &x[i], &snap[i]);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < nx; i++) {
		struct csvc *v = &c->svc[x[i].svc];
		ctlr_svc_dirty(v);
		log_msg(LOG_INFO,
		        "controller: %s: %u endpoints added, %u removed at run time: %u slices "
		        "moved",
		        v->name, x[i].nadd, x[i].ndel, moved[i]);
		change_tell_agents(c, &x[i]);
		c->ho_quiet = true;
		ctlr_handover_send(c, v, &snap[i], -1);
		c->ho_quiet = false;
		ctlr_handover_free(&snap[i]);
		ctlr_send_map(c, v, NULL);
		change_tell(c, &x[i]);
		*nadd += x[i].nadd;
		*ndel += x[i].ndel;
	}
	*nsvc = nx;
	free(snap);
	free(moved);
	ctlr_state_save(c);
	ret = 0;
out:
	for (unsigned i = 0; x && i < nx; i++)
		change_free(&x[i]);
	free(x);
	free(ls);
	if (ret == -ENOMEM && !b->err[0])
		snprintf(b->err, sizeof(b->err), "out of memory: nothing applied");
	return ret;
}

int ctlr_batch_finish(struct ctl *c, struct peer *p)
{
	struct rt_batch *b = p->batch;
	unsigned nsvc = 0, nadd = 0, ndel = 0;
	char why[CTL_TEXT_MAX];
	p->batch = NULL;
	p->closing = true;
	if (!b->err[0] && !c->leader)
		snprintf(b->err, sizeof(b->err), "a standby: send it to the leading controller");
	if (!b->err[0] && c->kube)
		snprintf(b->err, sizeof(b->err),
		         "--source kubernetes: endpoints come from EndpointSlices");
	if (!b->err[0] && b->have < b->want)
		snprintf(b->err, sizeof(b->err), "the batch ended after %u of its %u lines",
		         b->have, b->want);
	if (b->err[0] || batch_apply(c, b, &nsvc, &nadd, &ndel)) {
		snprintf(why, sizeof(why), "%.200s%s", b->err,
		         strstr(b->err, "nothing applied") ? "" : " (nothing applied)");
		log_msg(LOG_WARNING, "controller: a batch of %u lines refused: %s", b->want, why);
		reply_error(c, p, why);
	} else {
		char row[128];
		int n = snprintf(row, sizeof(row), "added %u, removed %u in %u services\nok\n",
		                 nadd, ndel, nsvc);
		ctlr_peer_send(c, p, row, (size_t)n);
	}
	ctlr_batch_free(b);
	return p->fd >= 0 ? 0 : -1;
}
