/* peak agent --store etcd: the agent follows the service records the leading controller
 * stores in etcd (PREFIX svc/NAME: its map, its run-time "add" lines, weights and health),
 * with peak dns's follower (src/dns/follow.h: one read, then the watch, resumed after the
 * last event after a broken stream, a fresh read after a compaction or a cancel), and
 * applies each changed record as the link's lines (ctl_record_apply), so that a change a
 * controller stores reaches the agent while its link is down, and an agent that starts
 * while no controller runs routes the stored maps at once.
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

#include "../dns/follow.h"
#include "../sys/log.h"

enum {
	STORE_RETRY_MS = 500, /* after etcd did not answer (each request waits up to 1 s) */
};

struct held {
	char *text; /* the newest record of the service that came while the link was up */
	size_t len;
};

struct agent_store {
	struct dns_follow *f;
	uint64_t next_ms;             /* the next step */
	struct held *held;            /* per service of a->cfg */
	unsigned nheld;               /* a->cfg->nsvc when allocated */
	unsigned nwaiting;            /* entries of held with a text */
	unsigned long reads, refused; /* the follower's counts already added to the metrics */
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

/* dns_follow's callback: a checked record of service svc. */
static void on_record(void *arg, const char *svc, const char *text, size_t len)
{
	struct agent *a = arg;
	struct agent_store *s = a->store;
	int i = ctl_svc_index(a, svc);
	if (i < 0)
		return; /* a service this node's file does not have */
	if (!link_up(a)) {
		if (s->held[i].text) { /* older than this one */
			free(s->held[i].text);
			s->held[i].text = NULL;
			s->nwaiting--;
		}
		apply(a, svc, text, len);
		return;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return; /* (the link is up: it has the map) */
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (!s->held[i].text)
		s->nwaiting++;
	pthread_mutex_lock(&a->st.lock);
	a->st.st_held++;
	pthread_mutex_unlock(&a->st.lock);
	free(s->held[i].text);
	s->held[i] = (struct held){copy, len};
}

struct agent_store *agent_store_open(struct agent *a)
{
	char err[256];
	struct agent_store *s = calloc(1, sizeof(*s));
	if (!s || !(s->held = calloc(a->cfg->nsvc ? a->cfg->nsvc : 1, sizeof(*s->held)))) {
		log_msg(LOG_ERR, "agent: %s", strerror(ENOMEM));
		goto fail;
	}
	s->nheld = a->cfg->nsvc;
	if (!(s->f =
	          dns_follow_open_as("agent", a->o->etcd, a->o->etcd_prefix, err, sizeof(err)))) {
		log_msg(LOG_ERR, "agent: --store etcd: %s", err);
		goto fail;
	}
	pthread_mutex_lock(&a->st.lock);
	a->st.store = true;
	pthread_mutex_unlock(&a->st.lock);
	return s;
fail:
	if (s)
		free(s->held);
	free(s);
	return NULL;
}

void agent_store_free(struct agent_store *s)
{
	if (!s)
		return;
	held_clear(s);
	free(s->held);
	dns_follow_free(s->f);
	free(s);
}

int agent_store_fd(const struct agent *a)
{
	return a->store ? dns_follow_fd(a->store->f) : -1;
}

uint64_t agent_store_due_ms(const struct agent *a)
{
	return a->store ? a->store->next_ms : UINT64_MAX;
}

void agent_store_reset(struct agent *a)
{
	struct agent_store *s = a->store;
	if (!s)
		return;
	agent_store_free(s);
	a->store = agent_store_open(a); /* the new file's services; read afresh at the next tick */
	if (!a->store)
		log_msg(LOG_ERR, "agent: %s: etcd: not followed after the reload", a->o->node);
}

void agent_store_tick(struct agent *a, uint64_t now, bool readable)
{
	struct agent_store *s = a->store;
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
	if (!readable && now < s->next_ms)
		return;
	int r = dns_follow_step(s->f, on_record, a);
	unsigned long reads, refused;
	dns_follow_counts(s->f, &reads, &refused);
	pthread_mutex_lock(&a->st.lock);
	a->st.st_reads += reads - s->reads;
	a->st.st_refused += refused - s->refused;
	pthread_mutex_unlock(&a->st.lock);
	s->reads = reads;
	s->refused = refused;
	s->next_ms = now + (r < 0 ? STORE_RETRY_MS : FOLLOW_TICK_MS);
}
