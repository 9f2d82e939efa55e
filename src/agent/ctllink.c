/* peak agent: the link to the controller. --controller may name several (the controllers of one
 * etcd-backed cluster, only the leader of which listens): the agent connects to one at a time,
 * and when that fails or the link is lost it tries the next at once; after a whole round of
 * failures it waits the backoff. Every line in and out goes through the control-line
 * grammar (peak/ctlproto.h); with --key-file the hello answers the controller's challenge with
 * the key's tag and carries a nonce of ours, and nothing from the controller is taken until its
 * "welcome" proves the key on that nonce (peak/ctlauth.h). ctl_line handles one line from the
 * controller. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../sys/log.h"
#include "../sys/net.h"

enum {
	LOG_LINE_MAX = 80, /* bytes of a refused line quoted in the log */
	EP_IDX_MIN = 32,   /* endpoints of a map from which its ep lines are found by an index */
	/* The backoff's ceiling with several controllers, and with one for a while after a
	 * link that was up is lost: a takeover is expected (the lease TTL, 2 s by default; an
	 * address every controller shares is bound by whichever leads), and a refused connect
	 * costs a standby nothing. */
	CTL_BACKOFF_SEVERAL_MAX_MS = 500,
	/* How long after a lost link a takeover is expected: the longest lease TTL (60 s). */
	CTL_TAKEOVER_WINDOW_MS = 60000,
};

/* How many addresses --controller gives (checked by the command line: 1 to AGENT_CTLS_MAX). */
static unsigned ctl_naddr(const struct agent *a)
{
	unsigned n = 1;
	for (const char *p = a->o->controller; (p = strchr(p, ',')); p++)
		n++;
	return n;
}

/* The address in use, for the log and connect. */
static const char *ctl_at(const struct agent *a, char out[static AGENT_CTL_ADDR_MAX])
{
	if (addr_list_at(a->o->controller, a->ctl_cur, out, AGENT_CTL_ADDR_MAX))
		snprintf(out, AGENT_CTL_ADDR_MAX, "?");
	return out;
}

/* After a failure at the address in use: moves to the next one and returns how long to wait
 * before trying it: nothing while the round (every address once since a link was last up)
 * is not over, else the backoff, which then doubles up to CTL_BACKOFF_MAX_MS (with several
 * addresses, or within CTL_TAKEOVER_WINDOW_MS of losing a link that was up,
 * CTL_BACKOFF_SEVERAL_MAX_MS: a controller that died is replaced by a standby once its
 * lease expires, and with 5 s an agent could find the new leader seconds after it leads).
 * With one address every failure ends a round. */
static unsigned ctl_next(struct agent *a)
{
	unsigned n = ctl_naddr(a), wait = 0;
	bool takeover = a->ctl_lost_ms && peak_mono_ms() - a->ctl_lost_ms < CTL_TAKEOVER_WINDOW_MS;
	unsigned max = n > 1 || takeover ? CTL_BACKOFF_SEVERAL_MAX_MS : CTL_BACKOFF_MAX_MS;
	a->ctl_cur = (a->ctl_cur + 1) % n;
	if (++a->ctl_failed < n)
		return 0;
	a->ctl_failed = 0;
	wait = a->backoff_ms > max ? max : a->backoff_ms;
	a->backoff_ms = wait * 2 > max ? max : wait * 2;
	return wait;
}

/* A link is up at the address in use: the next failure starts a fresh round there. */
static void ctl_took(struct agent *a)
{
	a->link = LINK_UP;
	a->backoff_ms = CTL_BACKOFF_MIN_MS;
	a->ctl_failed = 0;
}

/* Frees a map's blocks (m->nep lists) and empties it. */
static void map_free(struct svc_map *m)
{
	for (unsigned e = 0; m->blocks && e < m->nep; e++)
		free(m->blocks[e]);
	free(m->blocks);
	free(m->nblocks);
	memset(m, 0, sizeof(*m));
}

/* Frees the n maps of v (one per service of the configuration they came with). */
void maps_free(struct svc_map *v, unsigned n)
{
	for (unsigned i = 0; v && i < n; i++)
		map_free(&v[i]);
	free(v);
}

/* Forgets the map being received, if any: on a new map line, a new connection, a reload
 * (cur_svc indexes the configuration) and at exit. */
void ctl_map_reset(struct agent *a)
{
	map_free(&a->pending);
	free(a->pend_ep);
	a->pend_ep = NULL;
	a->pend_nep = 0;
	free(a->pend_idx);
	a->pend_idx = NULL;
	a->cur_svc = -1;
}

/* Closes the controller link (if open), forgets what it was receiving, and says so in the
 * metrics; the next attempt is at retry_ms. */
void ctl_drop(struct agent *a, uint64_t retry_ms)
{
	if (a->ctl >= 0)
		close(a->ctl);
	a->ctl = -1;
	a->link = LINK_DOWN;
	a->inlen = 0;
	a->retry_ms = retry_ms;
	ctl_map_reset(a);
	ctlrt_reset(&a->rt); /* the next link sends them again, before each map */
	pthread_mutex_lock(&a->st.lock);
	a->st.controller_up = false;
	pthread_mutex_unlock(&a->st.lock);
}

/* The link failed or the controller ended it: why says how, and said is true when why is
 * the text of the controller's "error:" line. Drops the link and tries the next controller
 * (ctl_next: at once, or after the backoff once every address failed in this round).
 * Between our hello and the controller's first map, an "error:" is a refused hello, and
 * so most likely is a close: the log says so, with the likely fix (the key), since the
 * retries alone will not help. The routes stay (fail static). */
static void ctl_lost(struct agent *a, const char *why, bool said)
{
	const char *hint = a->key ? "is --key-file the controller's key?"
	                          : "a controller with --key-file wants one here too";
	char at[AGENT_CTL_ADDR_MAX], nx[AGENT_CTL_ADDR_MAX], next[AGENT_CTL_ADDR_MAX + 8] = "";
	ctl_at(a, at);
	if (a->link == LINK_UP)
		a->ctl_lost_ms = peak_mono_ms();
	unsigned wait = ctl_next(a);
	if (ctl_naddr(a) > 1)
		snprintf(next, sizeof(next), " at %s", ctl_at(a, nx));
	if ((a->link == LINK_HELLO || a->link == LINK_WELCOME) && said)
		log_msg(LOG_ERR,
		        "agent: %s: controller %s refused the hello: %s (%s); keeping the "
		        "routes, retrying in %u ms%s",
		        a->o->node, at, why, hint, wait, next);
	else if (a->link == LINK_HELLO || a->link == LINK_WELCOME)
		log_msg(LOG_ERR,
		        "agent: %s: controller %s ended the link after the hello, before any "
		        "map (%s): a refused hello? (%s); keeping the routes, retrying in %u ms%s",
		        a->o->node, at, why, hint, wait, next);
	else
		log_msg(LOG_WARNING,
		        "agent: %s: controller gone; keeping the routes, retrying in %u ms%s "
		        "(%s: %s%s)",
		        a->o->node, wait, next, at, said ? "error: " : "", why);
	ctl_drop(a, peak_mono_ms() + wait);
}

/* With a key: whatever answers at --controller did not prove it holds the key (why says
 * how), so it may be anyone: nothing it sent is taken, the link is dropped and retried
 * after the backoff, as for a lost link. The routes stay (fail static). */
static void ctl_unproven(struct agent *a, const char *why)
{
	char at[AGENT_CTL_ADDR_MAX];
	ctl_at(a, at);
	unsigned wait = ctl_next(a);
	log_msg(LOG_ERR,
	        "agent: %s: controller %s did not prove it holds the key (%s): refusing its "
	        "maps (a controller without --key-file, another key, or not the controller); "
	        "keeping the routes, retrying in %u ms",
	        a->o->node, at, why, wait);
	ctl_drop(a, peak_mono_ms() + wait);
}

/* Writes m on the link (blocking, with the socket's short send timeout). A message the
 * grammar refuses (a name it cannot carry) is logged and not sent; a failed send loses the
 * link. Returns 0, or -1 if nothing was sent (the link may be gone then). */
static int ctl_send(struct agent *a, const struct ctl_msg *m)
{
	char line[CTL_LINE_MAX + 1];
	int n = ctl_write(m, line, sizeof(line));
	if (n < 0) {
		log_msg(LOG_ERR, "agent: %s: cannot write a '%s' line for '%s' (%s)", a->o->node,
		        ctl_kind_name(m->kind), m->id, strerror(-n));
		return -1;
	}
	if (a->ctl < 0)
		return -1;
	ssize_t k = send(a->ctl, line, (size_t)n, MSG_NOSIGNAL);
	if (k != n) {
		ctl_lost(a, k == -1 ? strerror(errno) : "a short send", false);
		return -1;
	}
	return 0;
}

/* Fills m's service and endpoint from a local endpoint. */
static void msg_endpoint(const struct agent *a, const struct hc *h, struct ctl_msg *m)
{
	const struct cfg_service *s = &a->cfg->svc[h->svc];
	dns_name_print(&s->name, m->svc, sizeof(m->svc));
	snprintf(m->id, sizeof(m->id), "%s", s->ep[h->ep].id);
}

void ctl_health(struct agent *a, const struct hc *h)
{
	struct ctl_msg m = {.kind = CTL_HEALTH, .up = h->up};
	if (a->ctl < 0 || a->link < LINK_HELLO)
		return; /* the hello reports what is down */
	msg_endpoint(a, h, &m);
	ctl_send(a, &m);
}

void ctl_load(struct agent *a, const struct hc *h, uint64_t conns, uint64_t cpu_ns, uint64_t app,
              const struct pod_sat *sat)
{
	struct ctl_msg m = {.kind = CTL_LOAD,
	                    .conns = conns,
	                    .cpu_ns = cpu_ns,
	                    .has_app = app != UINT64_MAX,
	                    .app = app != UINT64_MAX ? app : 0,
	                    .has_sat = sat->has,
	                    .throttled_ns = sat->throttled_ns,
	                    .queued = sat->queued,
	                    .backlog = sat->backlog};
	if (a->ctl < 0 || a->link < LINK_HELLO)
		return;
	msg_endpoint(a, h, &m);
	ctl_send(a, &m);
}

/* The controller took the hello (without a key: it is sent; with one: the controller proved
 * the key). Reports the endpoints that are down (the controller assumes the others are up). */
static void ctl_ready(struct agent *a)
{
	pthread_mutex_lock(&a->st.lock);
	a->st.controller_up = true;
	pthread_mutex_unlock(&a->st.lock);
	char at[AGENT_CTL_ADDR_MAX];
	for (unsigned i = 0; i < a->nhc && a->ctl >= 0; i++)
		if (!a->hc[i].up)
			ctl_health(a, &a->hc[i]);
	if (a->ctl >= 0) /* else a send failed: dropped, retried after the backoff */
		log_msg(LOG_INFO, "agent: %s: connected to controller %s%s", a->o->node,
		        ctl_at(a, at),
		        a->key ? " (hello with the key's tag; the controller proved the key)" : "");
}

/* Says hello: plain without a key. With one (nonce: the challenge), with the key's tag for
 * the challenge and a fresh nonce of ours; then waits for the controller's welcome. */
static void ctl_hello(struct agent *a, const uint8_t *nonce)
{
	struct ctl_msg m = {.kind = CTL_HELLO};
	snprintf(m.id, sizeof(m.id), "%s", a->o->node);
	if (a->key && nonce) {
		if (ctlauth_nonce(a->anonce)) {
			ctl_lost(a, "no random bytes for our nonce", false);
			return;
		}
		memcpy(a->cnonce, nonce, CTL_NONCE_LEN);
		memcpy(m.nonce, a->anonce, CTL_NONCE_LEN);
		ctlauth_tag(a->key, nonce, a->o->node, m.tag);
		m.has_tag = m.has_nonce = true;
	}
	int sent = ctl_send(a, &m);
	explicit_bzero(m.tag, sizeof(m.tag));
	if (sent) {
		if (a->ctl >= 0) /* refused by the grammar: never retry faster than the backoff */
			ctl_lost(a, "no hello", false);
		return;
	}
	if (m.has_nonce) {
		a->link = LINK_WELCOME;
		a->challenge_ms = peak_mono_ms() + CTL_CHALLENGE_MS;
		return;
	}
	a->link = LINK_HELLO;
	ctl_ready(a);
}

/* With a key, the first line after our hello: the controller's proof, checked in constant
 * time. Anything else, or a wrong proof, drops the link before any map is taken. */
static void ctl_welcome(struct agent *a, const struct ctl_msg *m)
{
	char why[64];
	if (m->kind == CTL_ERROR) {
		ctl_lost(a, m->text, true); /* a refused hello: the hint names the key */
		return;
	}
	if (m->kind != CTL_WELCOME) {
		snprintf(why, sizeof(why), "'%s' before its welcome", ctl_kind_name(m->kind));
		ctl_unproven(a, why);
		return;
	}
	if (!ctlauth_proof_check(a->key, a->anonce, a->cnonce, a->o->node, m->tag)) {
		ctl_unproven(a, "a wrong proof in its welcome");
		return;
	}
	ctl_took(a); /* it took our hello: it proved it */
	ctl_ready(a);
}

/* Connects to the controller in use (blocking, at most 200 ms: a standby does not listen,
 * a host that is gone does not answer). With a key the hello waits for the challenge (at
 * most CTL_CHALLENGE_MS); without one it goes at once. */
static void ctl_connect(struct agent *a, uint64_t now)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct timeval tv = {0, 200000};
	char at[AGENT_CTL_ADDR_MAX];
	int fd = -1;
	if (sockaddr_parse(ctl_at(a, at), &ss, &sl)) /* checked by the command line */
		goto fail;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(fd, (struct sockaddr *)&ss, sl) == -1)
		goto fail;
	a->ctl = fd;
	a->inlen = 0;
	ctl_map_reset(a);
	ctlrt_reset(&a->rt);
	if (a->key) {
		a->link = LINK_CHALLENGE;
		a->challenge_ms = now + CTL_CHALLENGE_MS;
		return;
	}
	ctl_hello(a, NULL);
	return;
fail:
	if (fd != -1)
		close(fd);
	/* Keep the last routes (fail static) and try the next controller (backoff up to 5 s
	 * once every one failed). */
	a->retry_ms = now + ctl_next(a);
}

void ctl_tick(struct agent *a, uint64_t now)
{
	ho_tick(a, now); /* handovers outlive the link that brought them */
	if (!a->o->controller)
		return;
	if (a->ctl < 0 && now >= a->retry_ms)
		ctl_connect(a, now);
	else if (a->ctl >= 0 && a->link == LINK_CHALLENGE && now >= a->challenge_ms)
		ctl_lost(a, "no challenge in time", false);
	else if (a->ctl >= 0 && a->link == LINK_WELCOME && now >= a->challenge_ms)
		ctl_unproven(a, "no welcome in time");
}

static uint64_t link_due_ms(const struct agent *a)
{
	if (!a->o->controller)
		return UINT64_MAX;
	if (a->ctl < 0)
		return a->retry_ms;
	return a->link == LINK_CHALLENGE || a->link == LINK_WELCOME ? a->challenge_ms : UINT64_MAX;
}

uint64_t ctl_due_ms(const struct agent *a)
{
	uint64_t l = link_due_ms(a), h = ho_due_ms(a);
	return l < h ? l : h;
}

/* Logs a controller line the agent refuses, at most once a second (the rest are counted and
 * reported with the next message): a broken or hostile peer must not flood the log. The
 * line is quoted with its bytes outside printable ASCII as '?'. */
static void ctl_refuse(struct agent *a, const char *why, const char *line, size_t len)
{
	char q[LOG_LINE_MAX + 1];
	size_t n = len < LOG_LINE_MAX ? len : LOG_LINE_MAX;
	for (size_t i = 0; i < n; i++)
		q[i] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
	q[n] = '\0';
	a->refusals++;
	log_rl(&a->rl_refused, LOG_WARNING, "agent: %s: %s line refused (%s): '%s'%s; line ignored",
	       a->o->node, a->from_store ? "stored" : "controller", why, q, len > n ? "..." : "");
}

static int ep_idx_cmp(const void *pa, const void *pb)
{
	return strcmp(((const struct ep_idx *)pa)->id, ((const struct ep_idx *)pb)->id);
}

/* An ep line of the map being received: its blocks are added to the endpoint's. A line
 * naming an endpoint the service does not have, or a block outside the service's space,
 * is refused whole. */
static void ctl_ep(struct agent *a, const struct ctl_msg *m, const char *line, size_t len)
{
	const struct cfg_service *s = &a->cfg->svc[a->cur_svc];
	const struct cfg_endpoint *ep = a->pend_ep ? a->pend_ep : s->ep;
	unsigned nep = a->pend_ep ? a->pend_nep : s->nep;
	int e = -1;
	if (a->pend_idx) {
		struct ep_idx key = {m->id, 0},
		              *f = bsearch(&key, a->pend_idx, nep, sizeof(key), ep_idx_cmp);
		e = f ? (int)f->at : -1;
	}
	for (unsigned k = 0; !a->pend_idx && k < nep && e < 0; k++)
		if (!strcmp(ep[k].id, m->id))
			e = (int)k;
	if (e < 0) {
		ctl_refuse(a, "unknown endpoint", line, len);
		return;
	}
	if (!agent_blocks_fit(&s->space, m->blocks, m->nblocks)) {
		ctl_refuse(a, "bad block", line, len);
		return;
	}
	size_t have = a->pending.nblocks[e];
	if (have + m->nblocks > s->space.nslices) { /* a map holds each slice once */
		ctl_refuse(a, "more blocks than the service has slices", line, len);
		return;
	}
	struct assign_block *nv =
	    realloc(a->pending.blocks[e], (have + m->nblocks + 1) * sizeof(*nv));
	if (!nv) {
		ctl_refuse(a, "no memory", line, len);
		return;
	}
	a->pending.blocks[e] = nv;
	memcpy(nv + have, m->blocks, m->nblocks * sizeof(*nv));
	a->pending.nblocks[e] = have + m->nblocks;
}

int ctl_svc_index(const struct agent *a, const char *svc)
{
	struct dns_name n;
	if (dns_name_parse(svc, &n))
		return -1;
	for (unsigned i = 0; i < a->cfg->nsvc; i++)
		if (dns_name_eq(&a->cfg->svc[i].name, &n))
			return (int)i;
	return -1;
}

const struct cfg_endpoint *ctl_ep_lookup(const struct agent *a, unsigned svc, const char *id,
                                         struct cfg_endpoint *tmp)
{
	const struct cfg_service *s = &a->cfg->svc[svc];
	char name[DNS_NAME_STRLEN];
	for (unsigned e = 0; e < s->nep; e++)
		if (!strcmp(s->ep[e].id, id))
			return &s->ep[e];
	dns_name_print(&s->name, name, sizeof(name));
	if (!a->rt.n || !ctlrt_for(&a->rt, name))
		return NULL;
	for (uint32_t j = a->rt.n; j-- > 0;) { /* the last line naming it */
		const struct ctlrt_line *l = &a->rt.l[j];
		if (strcmp(l->id, id))
			continue;
		if (l->del)
			return NULL;
		*tmp = (struct cfg_endpoint){.weight = l->weight};
		memcpy(tmp->id, l->id, sizeof(tmp->id));
		memcpy(tmp->node, l->node, sizeof(tmp->node));
		memcpy(tmp->addr, l->addr, 16);
		return tmp;
	}
	return NULL;
}

/* An add or del line: collected for the next map of its service (ctlrt.h). A line naming a
 * service this node's file does not have, or an address no pod has, is refused. */
static void ctl_rt_line(struct agent *a, const struct ctl_msg *m, const char *line, size_t len)
{
	uint32_t dropped = 0;
	const char *why = NULL;
	if (ctl_svc_index(a, m->svc) < 0) {
		ctl_refuse(a, "unknown service", line, len);
		return;
	}
	int r = ctlrt_take(&a->rt, m, &dropped, &why);
	if (dropped)
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: %u add/del lines came with no map of their service: dropped",
		       a->o->node, dropped);
	if (r)
		ctl_refuse(a, why, line, len);
}

/* Whether two endpoint lists are the same (ids, addresses, weights, nodes, origin). */
static bool eps_same(const struct cfg_endpoint *x, unsigned nx, const struct cfg_endpoint *y,
                     unsigned ny)
{
	if (nx != ny)
		return false;
	for (unsigned e = 0; e < nx; e++)
		if (strcmp(x[e].id, y[e].id) || memcmp(x[e].addr, y[e].addr, 16) ||
		    x[e].weight != y[e].weight || strcmp(x[e].node, y[e].node) ||
		    !x[e].line != !y[e].line)
			return false;
	return true;
}

/* At a map line for service index i: composes its endpoints from the file's and the add
 * and del lines collected (ctlrt_compose); a change waits in a->pend_ep for the map's end.
 * Returns 0, or -1 if the map must be refused (logged). */
static int map_endpoints(struct agent *a, unsigned i, const char *svc)
{
	const struct cfg_service *s = &a->cfg->svc[i];
	struct cfg_endpoint *ep = NULL;
	unsigned nep = 0, shadowed = 0;
	if (!ctlrt_for(&a->rt, svc)) {
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: %u add/del lines of %s came with no map of theirs: dropped",
		       a->o->node, a->rt.n, a->rt.svc);
		ctlrt_reset(&a->rt);
	}
	int r = ctlrt_compose(&a->rt, s->ep, s->nep, &ep, &nep, &shadowed);
	if (r) {
		a->refusals++;
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: map of %s refused: %s; keeping its routes", a->o->node, svc,
		       r == -E2BIG ? "too many endpoints (run-time ones included)" : strerror(-r));
		return -1;
	}
	if (shadowed)
		log_rl(&a->rl_refused, LOG_INFO,
		       "agent: %s: %s: %u endpoints added at run time are in the file too: the "
		       "file's entries are kept",
		       a->o->node, svc, shadowed);
	if (eps_same(ep, nep, s->ep, s->nep)) {
		free(ep);
		return 0;
	}
	a->pend_ep = ep;
	a->pend_nep = nep;
	return 0;
}

/* At the end of a map that changes service i's endpoints: logs the endpoints that come and
 * go (this node's one by one, the others' counted: a scale-up may add thousands), and puts the new
 * list in force (hc_rebuild). Returns 0 or -ENOMEM (nothing changed). */
static int map_endpoints_apply(struct agent *a, unsigned i)
{
	const struct cfg_service *s = &a->cfg->svc[i];
	struct ep_idx *old = malloc((s->nep ? s->nep : 1) * sizeof(*old));
	int *old_of = malloc((a->pend_nep ? a->pend_nep : 1) * sizeof(*old_of));
	bool *kept = calloc(s->nep ? s->nep : 1, sizeof(*kept));
	char name[DNS_NAME_STRLEN], addr[INET6_ADDRSTRLEN];
	unsigned far_added = 0, far_removed = 0;
	int ret = -ENOMEM;
	if (!old || !old_of || !kept)
		goto out;
	for (unsigned e = 0; e < s->nep; e++)
		old[e] = (struct ep_idx){s->ep[e].id, e};
	qsort(old, s->nep, sizeof(*old), ep_idx_cmp);
	dns_name_print(&s->name, name, sizeof(name));
	for (unsigned e = 0; e < a->pend_nep; e++) {
		const struct cfg_endpoint *n = &a->pend_ep[e];
		struct ep_idx key = {n->id, 0},
		              *f = bsearch(&key, old, s->nep, sizeof(*old), ep_idx_cmp);
		const struct cfg_endpoint *o = f ? &s->ep[f->at] : NULL;
		old_of[e] = -1;
		if (o && !memcmp(o->addr, n->addr, 16) && !strcmp(o->node, n->node) &&
		    !o->line == !n->line) {
			old_of[e] = (int)f->at;
			kept[f->at] = true;
			continue;
		}
		if (strcmp(n->node, a->o->node)) { /* another node's: counted, not listed */
			far_added++;
			continue;
		}
		inet_ntop(AF_INET6, n->addr, addr, sizeof(addr));
		log_msg(LOG_INFO,
		        "agent: %s: %s %s: added at run time (%s, weight %u, node %s): local, "
		        "routed here",
		        a->o->node, name, n->id, addr, n->weight, n->node);
	}
	for (unsigned e = 0; e < s->nep; e++) {
		if (kept[e])
			continue;
		if (strcmp(s->ep[e].node, a->o->node))
			far_removed++;
		else
			log_msg(LOG_INFO, "agent: %s: %s %s: removed%s", a->o->node, name,
			        s->ep[e].id, s->ep[e].line ? "" : " (it was added at run time)");
	}
	if (far_added || far_removed)
		log_msg(LOG_INFO,
		        "agent: %s: %s: %u endpoints of other nodes added at run time, %u removed",
		        a->o->node, name, far_added, far_removed);
	if ((ret = hc_rebuild(a, i, a->pend_ep, a->pend_nep, old_of)) == 0) {
		a->pend_ep = NULL; /* taken */
		a->pend_nep = 0;
	}
out:
	free(old);
	free(old_of);
	free(kept);
	return ret;
}

/* Orders service indices by name, case-insensitively (the order dns_name_eq agrees with:
 * length bytes of labels are below 'A', so folding the letters leaves them alone). */
static int svc_name_cmp(const struct dns_name *x, const struct dns_name *y)
{
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	for (unsigned k = 0; k < x->len; k++) {
		int cx = x->wire[k] >= 'A' && x->wire[k] <= 'Z' ? x->wire[k] + 32 : x->wire[k];
		int cy = y->wire[k] >= 'A' && y->wire[k] <= 'Z' ? y->wire[k] + 32 : y->wire[k];
		if (cx != cy)
			return cx < cy ? -1 : 1;
	}
	return 0;
}

struct svc_at {
	const struct dns_name *name;
	unsigned at;
};

static int svc_at_cmp(const void *pa, const void *pb)
{
	return svc_name_cmp(((const struct svc_at *)pa)->name, ((const struct svc_at *)pb)->name);
}

/* Whether a controller's map of service o still means the same slices in service n: the
 * same slice count and bits per prefix (a map names slices by number, as the controller's
 * reload keeps an assignment: ctlr_svc_same). Prefixes of the same size may change: the
 * routes follow the new ones, as the controller's next map does. */
static bool map_shape_same(const struct cfg_service *o, const struct cfg_service *n)
{
	return o->space.nslices == n->space.nslices && o->space.s == n->space.s;
}

/* Moves the controller's map om of old service o to service n of the new configuration,
 * endpoint by endpoint id (the map's blocks are per endpoint index, and indices change
 * when endpoints come and go): an endpoint that left takes its blocks with it (no route
 * for them here until the controller's next map: no other pod of this node was given
 * them), one that came owns nothing yet. The block lists move (om keeps the rest).
 * Returns 0, or -ENOMEM with om as it was and *nm empty. */
static int map_carry(const struct cfg_service *o, struct svc_map *om, const struct cfg_service *n,
                     struct svc_map *nm)
{
	struct ep_idx *idx = malloc((o->nep ? o->nep : 1) * sizeof(*idx));
	*nm = (struct svc_map){.nep = n->nep};
	nm->blocks = calloc(n->nep ? n->nep : 1, sizeof(*nm->blocks));
	nm->nblocks = calloc(n->nep ? n->nep : 1, sizeof(*nm->nblocks));
	if (!idx || !nm->blocks || !nm->nblocks || om->nep != o->nep) {
		free(idx);
		free(nm->blocks);
		free(nm->nblocks);
		*nm = (struct svc_map){0};
		return -ENOMEM;
	}
	for (unsigned e = 0; e < o->nep; e++)
		idx[e] = (struct ep_idx){o->ep[e].id, e};
	qsort(idx, o->nep, sizeof(*idx), ep_idx_cmp);
	for (unsigned e = 0; e < n->nep; e++) {
		struct ep_idx key = {n->ep[e].id, 0},
		              *f = bsearch(&key, idx, o->nep, sizeof(*idx), ep_idx_cmp);
		if (!f)
			continue;
		nm->blocks[e] = om->blocks[f->at];
		nm->nblocks[e] = om->nblocks[f->at];
		om->blocks[f->at] = NULL;
		om->nblocks[f->at] = 0;
	}
	free(idx);
	nm->have = true;
	return 0;
}

/* After a reload: the controller's maps in force (from the link or the store) of the old
 * configuration's services carried over to the new one's (maps) for every service of the
 * same name and shape (map_shape_same), so their routes stay as the controller made them
 * until it sends the maps again. The others (new services, changed slices, no memory)
 * have no map, so the node routes its own plan for them, as before the controller's
 * first map: every agent computes the same from the same file. The old maps' block lists
 * move (they are freed after). *kept and *planned count the services of each kind among
 * those with a local endpoint. */
void maps_carry(const struct peak_config *old, struct svc_map *old_maps,
                const struct peak_config *n, struct svc_map *maps, const char *node, unsigned *kept,
                unsigned *planned)
{
	struct svc_at *idx = NULL;
	unsigned nidx = 0;
	*kept = *planned = 0;
	for (unsigned j = 0; j < old->nsvc; j++)
		nidx += old_maps[j].have;
	if (nidx && !(idx = malloc(nidx * sizeof(*idx))))
		log_msg(LOG_ERR, "agent: reload: %s: the controller's maps are not kept",
		        strerror(ENOMEM));
	nidx = 0;
	for (unsigned j = 0; idx && j < old->nsvc; j++)
		if (old_maps[j].have)
			idx[nidx++] = (struct svc_at){&old->svc[j].name, j};
	if (idx)
		qsort(idx, nidx, sizeof(*idx), svc_at_cmp);
	for (unsigned i = 0; i < n->nsvc; i++) {
		const struct cfg_service *s = &n->svc[i];
		bool local = false;
		for (unsigned e = 0; e < s->nep && !local; e++)
			local = !strcmp(s->ep[e].node, node);
		struct svc_at key = {&s->name, 0},
		              *f = idx ? bsearch(&key, idx, nidx, sizeof(*idx), svc_at_cmp) : NULL;
		if (f && map_shape_same(&old->svc[f->at], s) &&
		    !map_carry(&old->svc[f->at], &old_maps[f->at], s, &maps[i])) {
			*kept += local;
			continue;
		}
		*planned += local && nidx;
	}
	free(idx);
}

int rt_eps_carry(const struct peak_config *old, struct peak_config *n)
{
	for (unsigned j = 0; j < old->nsvc; j++) {
		const struct cfg_service *o = &old->svc[j];
		struct cfg_service *s = NULL;
		for (unsigned e = 0; e < o->nep; e++) {
			if (o->ep[e].line)
				continue; /* the file's */
			for (unsigned i = 0; !s && i < n->nsvc; i++)
				if (dns_name_eq(&n->svc[i].name, &o->name))
					s = &n->svc[i];
			if (!s)
				break; /* the service left: its endpoints with it */
			bool listed = false;
			for (unsigned k = 0; k < s->nep && !listed; k++)
				listed = !strcmp(s->ep[k].id, o->ep[e].id);
			if (listed) /* the file lists it now: its entry is the endpoint */
				continue;
			struct cfg_endpoint *nv = realloc(s->ep, (s->nep + 1) * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			s->ep = nv;
			s->ep[s->nep++] = o->ep[e];
		}
	}
	return 0;
}

/* One line of a map message. A map line starts a new map and drops any unfinished one
 * (a map with no end, or one cut off when the link dropped). The add and del lines before
 * it are its service's endpoints added at run time: they take effect with it, at its end. */
static void ctl_map_line(struct agent *a, const struct ctl_msg *m, const char *line, size_t len)
{
	struct peak_config *cfg = a->cfg;
	if (m->kind == CTL_MAP) {
		ctl_map_reset(a);
		a->cur_svc = ctl_svc_index(a, m->svc);
		/* a service this node's file does not have: its lines are skipped */
		if (a->cur_svc < 0) {
			ctlrt_reset(&a->rt);
			return;
		}
		if (map_endpoints(a, (unsigned)a->cur_svc, m->svc)) {
			a->cur_svc = -1;
			return;
		}
		unsigned nep = a->pend_ep ? a->pend_nep : cfg->svc[a->cur_svc].nep;
		const struct cfg_endpoint *ep = a->pend_ep ? a->pend_ep : cfg->svc[a->cur_svc].ep;
		/* many endpoints (a scale-up at run time): each ep line found in log time */
		if (nep > EP_IDX_MIN && (a->pend_idx = malloc(nep * sizeof(*a->pend_idx)))) {
			for (unsigned e = 0; e < nep; e++)
				a->pend_idx[e] = (struct ep_idx){ep[e].id, e};
			qsort(a->pend_idx, nep, sizeof(*a->pend_idx), ep_idx_cmp);
		}
		a->pending.blocks = calloc(nep ? nep : 1, sizeof(*a->pending.blocks));
		a->pending.nblocks = calloc(nep ? nep : 1, sizeof(*a->pending.nblocks));
		a->pending.nep = nep;
		if (!a->pending.blocks || !a->pending.nblocks)
			ctl_map_reset(a);
		return;
	}
	if (a->cur_svc < 0)
		return;
	if (m->kind == CTL_EP) {
		ctl_ep(a, m, line, len);
		return;
	}
	/* CTL_END */
	free(a->pend_idx); /* (it points into the lists map_endpoints_apply swaps) */
	a->pend_idx = NULL;
	if (a->pend_ep && map_endpoints_apply(a, (unsigned)a->cur_svc)) {
		a->refusals++;
		log_rl(&a->rl_refused, LOG_WARNING, "agent: %s: map refused: %s", a->o->node,
		       strerror(ENOMEM));
		ctl_map_reset(a);
		return;
	}
	map_free(&a->maps[a->cur_svc]);
	a->maps[a->cur_svc] = a->pending;
	a->maps[a->cur_svc].have = true;
	memset(&a->pending, 0, sizeof(a->pending));
	a->cur_svc = -1;
	a->dirty = true;
}

/* Whether the map being received (no endpoint change with it) is the one in force. */
static bool map_pending_same(const struct agent *a)
{
	const struct svc_map *m = &a->maps[a->cur_svc], *p = &a->pending;
	if (a->pend_ep || !m->have || m->nep != p->nep)
		return false;
	for (unsigned e = 0; e < p->nep; e++)
		if (m->nblocks[e] != p->nblocks[e] ||
		    (p->nblocks[e] &&
		     memcmp(m->blocks[e], p->blocks[e], p->nblocks[e] * sizeof(*p->blocks[e]))))
			return false;
	return true;
}

int ctl_record_apply(struct agent *a, const char *text, size_t len)
{
	struct ctl_msg *m = malloc(sizeof(*m));
	uint64_t refused = a->refusals;
	int ret = -EBADMSG, svc = -1;
	size_t ll;
	long k;
	if (!m)
		return -ENOMEM;
	ctl_map_reset(a);
	ctlrt_reset(&a->rt);
	a->from_store = true;
	/* the add lines first, as the link sends them before the map they go with */
	for (size_t at = 0;
	     at < len && (k = ctl_line_split((const uint8_t *)text + at, len - at, &ll)) > 0;
	     at += (size_t)k) {
		if (ctl_parse(text + at, ll, m))
			goto out; /* (store_rec_check took it: never) */
		if (m->kind == CTL_MAP && (svc = ctl_svc_index(a, m->svc)) < 0) {
			ret = 0; /* a service of other nodes' files: not ours */
			goto out;
		}
		if (m->kind == CTL_ADD || m->kind == CTL_DEL)
			ctl_rt_line(a, m, text + at, ll);
	}
	/* then the map, up to its end */
	for (size_t at = 0; svc >= 0 && at < len && a->refusals == refused &&
	                    (k = ctl_line_split((const uint8_t *)text + at, len - at, &ll)) > 0;
	     at += (size_t)k) {
		if (ctl_parse(text + at, ll, m))
			goto out;
		if (m->kind == CTL_END)
			break;
		if (m->kind == CTL_MAP || m->kind == CTL_EP) {
			ctl_map_line(a, m, text + at, ll);
			if (a->cur_svc < 0) /* (map_endpoints refused it: counted) */
				break;
		}
	}
	if (svc < 0 || a->cur_svc != svc || a->refusals != refused)
		goto out;
	if (map_pending_same(a)) {
		ret = 0;
		goto out;
	}
	m->kind = CTL_END;
	ctl_map_line(a, m, "end", 3);
	ret = a->refusals == refused ? 1 : -EBADMSG;
out:
	free(m);
	ctl_map_reset(a);
	ctlrt_reset(&a->rt);
	a->from_store = false;
	return ret;
}

/* One line from the controller (len bytes, without its '\n'). */
static void ctl_line(struct agent *a, const char *line, size_t len)
{
	struct ctl_msg m;
	if (ctl_parse(line, len, &m)) {
		if (a->link == LINK_CHALLENGE)
			ctl_lost(a, "a malformed line instead of the challenge", false);
		else if (a->link == LINK_WELCOME)
			ctl_unproven(a, "a malformed line instead of its welcome");
		else
			ctl_refuse(a, "not a control line", line, len);
		return;
	}
	if (a->link == LINK_CHALLENGE) {
		if (m.kind == CTL_CHALLENGE)
			ctl_hello(a, m.nonce);
		else if (m.kind == CTL_ERROR)
			ctl_lost(a, m.text, true);
		else
			ctl_lost(a, "no challenge before other lines", false);
		return;
	}
	if (a->link == LINK_WELCOME) {
		ctl_welcome(a, &m);
		return;
	}
	switch (m.kind) {
	case CTL_CHALLENGE:
		/* Without a key the hello went out at connect, plain: the controller sends its
		 * challenge anyway, and takes that hello only if it has no key either. */
		if (a->link != LINK_HELLO || a->key)
			ctl_refuse(a, "a challenge after the hello", line, len);
		break;
	case CTL_ERROR:
		if (a->link == LINK_HELLO)
			ctl_lost(a, m.text, true);
		else
			ctl_refuse(a, "the controller says", line, len);
		break;
	case CTL_MAP:
	case CTL_EP:
	case CTL_END:
		if (a->link == LINK_HELLO)
			ctl_took(a);
		ctl_map_line(a, &m, line, len);
		break;
	case CTL_ADD:
	case CTL_DEL:
		if (a->link == LINK_HELLO)
			ctl_took(a);
		ctl_rt_line(a, &m, line, len);
		break;
	case CTL_HANDOVER:
		/* before the map that moves the slices: forwarding is in place when routes move */
		ho_line(a, &m);
		break;
	default:
		ctl_refuse(a, "not a line a controller sends", line, len);
		break;
	}
}

void ctl_read(struct agent *a)
{
	ssize_t k = recv(a->ctl, a->in + a->inlen, sizeof(a->in) - a->inlen, MSG_DONTWAIT);
	if (k == -1 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (k <= 0) {
		ctl_lost(a, k ? strerror(errno) : "it closed the link", false);
		return;
	}
	a->inlen += (size_t)k;
	/* every complete line, then what is left moves to the front once */
	size_t at = 0, ll = 0;
	long n = 0;
	while (a->ctl >= 0 && (n = ctl_line_split(a->in + at, a->inlen - at, &ll)) > 0) {
		ctl_line(a, (const char *)a->in + at, ll);
		at += (size_t)n;
	}
	if (a->ctl < 0)
		return; /* dropped meanwhile: the buffer is empty */
	if (n < 0) {
		/* what is left cannot fit in CTL_IN_MAX: a broken or hostile peer */
		ctl_lost(a, "a line longer than the grammar allows", false);
		return;
	}
	memmove(a->in, a->in + at, a->inlen - at);
	a->inlen -= at;
}
