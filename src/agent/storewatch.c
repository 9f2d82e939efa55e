/* peak agent --store etcd: the agent follows the service records the leading controller
 * stores in etcd (PREFIX svc/NAME: its map, its run-time "add" lines, weights and health),
 * with peak dns's follower (src/dns/follow.h: one read, then the watch, resumed after the
 * last event after a broken stream, a fresh read after a compaction or a cancel), and
 * applies each changed record as the link's lines (ctl_record_apply), so that a change a
 * controller stores reaches the agent while its link is down, and an agent that starts
 * while no controller runs routes the stored maps at once.
 * The follower runs on a thread of its own: its requests wait up to FOLLOW_TIMEOUT_MS each
 * (one per member tried), and on the agent's loop a hung etcd delayed the health checks,
 * the pidfd watches and the link by that much (tests/regress/
 * test_agent_hung_etcd_does_not_delay_failover.py). The thread only reads etcd: it queues
 * a copy of each checked record, the newest per service, and makes an eventfd readable;
 * the loop takes them (agent_store_tick) and applies them there, so nothing else of the
 * agent is shared with the thread but the queue (and the metrics, under their lock).
 * The link wins: a record that comes while the link is up (the hello sent; the controller
 * answers it with every map) is held, the newest per service, and applied only once the
 * link is down. The leader sends a change on its links and stores it after, so the link is
 * ahead of the watch, which would only replay the link's maps or put an older one between
 * two of them; once the link is lost, the stored record is what the next leader adopts.
 * A record the same as the map in force is applied once (counted as the same, no sync).
 * Handovers come only from the link (they are not stored). */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../dns/follow.h"
#include "../sys/log.h"

enum {
	STORE_RETRY_MS = 500, /* after etcd did not answer (each request waits up to 1 s) */
};

struct held {
	char *text; /* the newest record of the service that came while the link was up */
	size_t len;
};

/* A record the thread read, waiting for the loop. */
struct rec {
	struct rec *next;
	char *svc; /* its service's name, as in the key */
	char *text;
	size_t len;
};

struct agent_store {
	/* the loop's */
	struct held *held; /* per service of a->cfg */
	unsigned nheld;    /* a->cfg->nsvc when allocated */
	unsigned nwaiting; /* entries of held with a text */
	/* shared: under mu */
	pthread_mutex_t mu;
	struct rec *q, **qtail; /* read, not taken by the loop yet: in order, one per service */
	bool stop;              /* the thread ends */
	bool reread;            /* the thread reads every record afresh (a reload) */
	int ready;              /* eventfd: readable while q may hold records */
	int wake;               /* eventfd: stop or reread was set */
	/* the thread's */
	struct dns_follow *f;
	struct agent_stats *st;       /* the agent's metrics (their lock) */
	const struct agent_opts *o;   /* --etcd, --etcd-prefix, --node */
	unsigned long reads, refused; /* the follower's counts already added to the metrics */
	pthread_t th;
	bool started;
};

/* Whether a controller's link is up: from the hello on (the controller answers it with
 * every map; no map is half received before that). */
static bool link_up(const struct agent *a)
{
	return a->ctl >= 0 && a->link >= LINK_HELLO;
}

static void held_clear(struct agent_store *s)
{
	for (unsigned i = 0; s->held && i < s->nheld; i++) {
		free(s->held[i].text);
		s->held[i].text = NULL;
	}
	s->nwaiting = 0;
}

static void rec_free(struct rec *r)
{
	if (r) {
		free(r->svc);
		free(r->text);
		free(r);
	}
}

static void queue_free(struct rec *q)
{
	while (q) {
		struct rec *n = q->next;
		rec_free(q);
		q = n;
	}
}

static void efd_signal(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one)); /* (full: it is readable anyway) */
	(void)n;
}

static void efd_drain(int fd)
{
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v)); /* (nonblocking: EAGAIN when it was not set) */
	(void)n;
}

/* Applies one record and counts it; a refusal is logged (the lines that caused it were). */
static void apply(struct agent *a, const char *svc, const char *text, size_t len)
{
	int r = ctl_record_apply(a, text, len);
	pthread_mutex_lock(&a->st.lock);
	if (r > 0)
		a->st.st_applied++;
	else if (r == 0)
		a->st.st_same++;
	else
		a->st.st_refused++;
	pthread_mutex_unlock(&a->st.lock);
	if (r > 0)
		log_msg(LOG_INFO, "agent: %s: etcd: map of %s applied from the store", a->o->node,
		        svc);
	else if (r < 0)
		log_msg(
		    LOG_WARNING, "agent: %s: etcd: record of %s refused (%s); keeping its routes",
		    a->o->node, svc, r == -ENOMEM ? strerror(ENOMEM) : "a line the agent refuses");
}

/* On the loop: a checked record of service svc (text taken over), applied or held. */
static void on_record(struct agent *a, const char *svc, char *text, size_t len)
{
	struct agent_store *s = a->store;
	int i = ctl_svc_index(a, svc);
	if (i < 0 || (unsigned)i >= s->nheld) {
		free(text);
		return; /* a service this node's file does not have */
	}
	if (!link_up(a)) {
		if (s->held[i].text) { /* older than this one */
			free(s->held[i].text);
			s->held[i].text = NULL;
			s->nwaiting--;
		}
		apply(a, svc, text, len);
		free(text);
		return;
	}
	if (!s->held[i].text)
		s->nwaiting++;
	pthread_mutex_lock(&a->st.lock);
	a->st.st_held++;
	pthread_mutex_unlock(&a->st.lock);
	free(s->held[i].text);
	s->held[i] = (struct held){text, len};
}

/* dns_follow's callback, on the thread: queues a copy of the record (replacing an older
 * one of the same service the loop has not taken yet). */
static void on_read(void *arg, const char *svc, const char *text, size_t len)
{
	struct agent_store *s = arg;
	struct rec *r = calloc(1, sizeof(*r));
	if (!r || !(r->svc = strdup(svc)) || !(r->text = malloc(len + 1))) {
		rec_free(r);
		log_msg(LOG_ERR, "agent: %s: etcd: record of %s dropped: %s", s->o->node, svc,
		        strerror(ENOMEM));
		return;
	}
	memcpy(r->text, text, len);
	r->text[len] = '\0';
	r->len = len;
	pthread_mutex_lock(&s->mu);
	struct rec **p = &s->q;
	while (*p && strcmp((*p)->svc, svc))
		p = &(*p)->next;
	if (*p) { /* an older record of the service: this one in its place */
		free((*p)->text);
		(*p)->text = r->text;
		(*p)->len = r->len;
		r->text = NULL;
		rec_free(r);
	} else {
		*s->qtail = r;
		s->qtail = &r->next;
	}
	pthread_mutex_unlock(&s->mu);
	efd_signal(s->ready);
}

/* The thread: follows etcd (at every FOLLOW_TICK_MS, or when the watch's socket is
 * readable; STORE_RETRY_MS after a failure) until stop. */
static void *store_main(void *arg)
{
	struct agent_store *s = arg;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		bool stop = s->stop, reread = s->reread;
		s->reread = false;
		pthread_mutex_unlock(&s->mu);
		if (stop)
			break;
		if (reread) { /* the new file's services: every record again */
			char err[256];
			dns_follow_free(s->f);
			if (!(s->f = dns_follow_open_as("agent", s->o->etcd, s->o->etcd_prefix, err,
			                                sizeof(err)))) {
				log_msg(LOG_ERR,
				        "agent: %s: etcd: not followed after the reload (%s); "
				        "trying again",
				        s->o->node, err);
				pthread_mutex_lock(&s->mu);
				s->reread = true; /* (out of memory: after STORE_RETRY_MS) */
				pthread_mutex_unlock(&s->mu);
			}
			s->reads = s->refused = 0;
		}
		int r = s->f ? dns_follow_step(s->f, on_read, s) : -ENOMEM;
		if (s->f) {
			unsigned long reads, refused;
			dns_follow_counts(s->f, &reads, &refused);
			pthread_mutex_lock(&s->st->lock);
			s->st->st_reads += reads - s->reads;
			s->st->st_refused += refused - s->refused;
			pthread_mutex_unlock(&s->st->lock);
			s->reads = reads;
			s->refused = refused;
		}
		struct pollfd pf[2] = {{.fd = s->wake, .events = POLLIN},
		                       {.fd = s->f ? dns_follow_fd(s->f) : -1, .events = POLLIN}};
		if (poll(pf, 2, r < 0 ? STORE_RETRY_MS : FOLLOW_TICK_MS) > 0 && pf[0].revents)
			efd_drain(s->wake);
	}
	return NULL;
}

struct agent_store *agent_store_open(struct agent *a)
{
	char err[256];
	struct agent_store *s = calloc(1, sizeof(*s));
	if (!s) {
		log_msg(LOG_ERR, "agent: %s", strerror(ENOMEM));
		return NULL;
	}
	pthread_mutex_init(&s->mu, NULL);
	s->qtail = &s->q;
	s->st = &a->st;
	s->o = a->o;
	s->ready = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->ready < 0 || s->wake < 0) {
		log_msg(LOG_ERR, "agent: --store etcd: eventfd: %s", strerror(errno));
		goto fail;
	}
	if (!(s->held = calloc(a->cfg->nsvc ? a->cfg->nsvc : 1, sizeof(*s->held)))) {
		log_msg(LOG_ERR, "agent: %s", strerror(ENOMEM));
		goto fail;
	}
	s->nheld = a->cfg->nsvc;
	if (!(s->f =
	          dns_follow_open_as("agent", a->o->etcd, a->o->etcd_prefix, err, sizeof(err)))) {
		log_msg(LOG_ERR, "agent: --store etcd: %s", err);
		goto fail;
	}
	/* (signals are blocked here: the thread inherits the mask, the loop takes them) */
	int e = pthread_create(&s->th, NULL, store_main, s);
	if (e) {
		log_msg(LOG_ERR, "agent: --store etcd: thread: %s", strerror(e));
		goto fail;
	}
	s->started = true;
	pthread_mutex_lock(&a->st.lock);
	a->st.store = true;
	pthread_mutex_unlock(&a->st.lock);
	return s;
fail:
	agent_store_free(s);
	return NULL;
}

void agent_store_free(struct agent_store *s)
{
	if (!s)
		return;
	if (s->started) { /* (waits for a request under way: at most its timeout per member) */
		pthread_mutex_lock(&s->mu);
		s->stop = true;
		pthread_mutex_unlock(&s->mu);
		efd_signal(s->wake);
		pthread_join(s->th, NULL);
	}
	held_clear(s);
	free(s->held);
	queue_free(s->q);
	dns_follow_free(s->f);
	if (s->ready >= 0)
		close(s->ready);
	if (s->wake >= 0)
		close(s->wake);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int agent_store_fd(const struct agent *a)
{
	return a->store ? a->store->ready : -1;
}

uint64_t agent_store_due_ms(const struct agent *a)
{
	const struct agent_store *s = a->store;
	return s && s->nwaiting && !link_up(a) ? 0 : UINT64_MAX;
}

void agent_store_reset(struct agent *a)
{
	struct agent_store *s = a->store;
	if (!s)
		return;
	struct held *h = calloc(a->cfg->nsvc ? a->cfg->nsvc : 1, sizeof(*h));
	held_clear(s);
	if (h) { /* (else the old table: services past it are left out until the next reload) */
		free(s->held);
		s->held = h;
		s->nheld = a->cfg->nsvc;
	} else {
		log_msg(LOG_ERR, "agent: %s: etcd: %s", a->o->node, strerror(ENOMEM));
		if (s->nheld > a->cfg->nsvc)
			s->nheld = a->cfg->nsvc;
	}
	pthread_mutex_lock(&s->mu);
	struct rec *q = s->q;
	s->q = NULL;
	s->qtail = &s->q;
	s->reread = true; /* the new file's services: read afresh */
	pthread_mutex_unlock(&s->mu);
	queue_free(q);
	efd_signal(s->wake);
}

void agent_store_tick(struct agent *a, uint64_t now, bool readable)
{
	struct agent_store *s = a->store;
	(void)now;
	if (!s)
		return;
	if (s->nwaiting && !link_up(a)) { /* the link is lost: what it held back, in order */
		for (unsigned i = 0; i < s->nheld && i < a->cfg->nsvc; i++) {
			struct held h = s->held[i];
			char name[DNS_NAME_STRLEN];
			if (!h.text)
				continue;
			s->held[i].text = NULL;
			dns_name_print(&a->cfg->svc[i].name, name, sizeof(name));
			apply(a, name, h.text, h.len);
			free(h.text);
		}
		s->nwaiting = 0;
	}
	if (!readable)
		return;
	efd_drain(s->ready);
	pthread_mutex_lock(&s->mu);
	struct rec *q = s->q;
	s->q = NULL;
	s->qtail = &s->q;
	pthread_mutex_unlock(&s->mu);
	while (q) {
		struct rec *n = q->next;
		on_record(a, q->svc, q->text, q->len); /* (takes the text) */
		free(q->svc);
		free(q);
		q = n;
	}
}
