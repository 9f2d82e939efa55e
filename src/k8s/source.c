/* The controller's side of --source kubernetes (source.h). */
#include "source.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../sys/log.h"
#include "kube.h"

int ksrc_config(struct ctl *c, struct peak_config **out, char *err, size_t errlen)
{
	return kube_config(c->kube, c->o->config, out, err, errlen);
}

/* Whether next has endpoint id in the service named like s. */
static bool has_ep(const struct peak_config *next, const struct dns_name *svc, const char *id)
{
	const struct cfg_service *s = config_service(next, svc);
	return s && ctlr_ep_index(s, id) >= 0;
}

void ksrc_before(struct ctl *c, const struct peak_config *next)
{
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		struct csvc *v = &c->svc[i];
		for (unsigned e = 0; v->have && e < v->s->nep; e++) {
			if (!v->healthy[e] || has_ep(next, &v->s->name, v->s->ep[e].id) ||
			    !config_service(next, &v->s->name))
				continue;
			log_msg(LOG_INFO, "controller: kubernetes: %s %s left: down first", v->name,
			        v->s->ep[e].id);
			pthread_mutex_lock(&c->lock);
			ctlr_health(c, v, e, false);
			pthread_mutex_unlock(&c->lock);
		}
	}
}

void ksrc_filter(const struct peak_config *next, struct text *t)
{
	struct ctl_msg *m = malloc(sizeof(*m));
	size_t in = 0, out = 0, len = t->len ? t->len - 1 : 0;
	if (!m || !t->p)
		goto done;
	while (in < len) {
		size_t ll;
		long k = ctl_line_split((const uint8_t *)t->p + in, len - in, &ll);
		if (k <= 0)
			break;
		bool keep = true;
		struct dns_name n;
		if (!ctl_parse(t->p + in, ll, m) &&
		    (m->kind == CTL_WEIGHT || m->kind == CTL_HEALTH) &&
		    !dns_name_parse(m->svc, &n) && !has_ep(next, &n, m->id))
			keep = false;
		if (keep) {
			memmove(t->p + out, t->p + in, (size_t)k);
			out += (size_t)k;
		}
		in += (size_t)k;
	}
	memmove(t->p + out, t->p + in, len - in + 1); /* what is left, and the NUL */
	t->len = out + (len - in) + 1;
done:
	free(m);
}

void ksrc_after(struct ctl *c)
{
	for (unsigned i = 0; i < c->cfg->nsvc; i++) {
		struct csvc *v = &c->svc[i];
		for (unsigned e = 0; v->have && e < v->s->nep; e++) {
			const char *id = v->s->ep[e].id;
			bool now = kube_draining(c->kube, v->name, id, false);
			bool before = kube_draining(c->kube, v->name, id, true);
			if (now == before && !(now && v->healthy[e]))
				continue;
			/* the last one up stays (ctlr_health would refuse, and log it at
			 * every change: a Service whose pods all terminate) */
			if (now && (!v->healthy[e] || ctlr_last_up(v, e)))
				continue;
			log_msg(LOG_INFO, "controller: kubernetes: %s %s %s", v->name, id,
			        now ? "terminating: draining" : "no longer terminating");
			pthread_mutex_lock(&c->lock);
			ctlr_health(c, v, e, !now);
			pthread_mutex_unlock(&c->lock);
		}
	}
}
