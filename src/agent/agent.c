#include "agent.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "../sys/log.h"

struct rtvec {
	struct rt6 *v;
	size_t n, cap;
};

static int rtvec_push(struct rtvec *r, const struct rt6 *x)
{
	if (r->n == r->cap) {
		size_t nc = r->cap ? 2 * r->cap : 64;
		struct rt6 *nv = realloc(r->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		r->v = nv;
		r->cap = nc;
	}
	r->v[r->n++] = *x;
	return 0;
}

int agent_node_routes(const struct peak_config *cfg, const char *node, struct rt6 **out, size_t *n)
{
	struct rtvec rv = {0};
	struct assign_block *blocks = NULL;
	int *slot = NULL, ret = 0;
	*out = NULL;
	*n = 0;
	for (unsigned i = 0; i < cfg->nsvc && !ret; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		struct assign a;
		bool local = false;
		for (unsigned e = 0; e < s->nep; e++)
			local |= !strcmp(s->ep[e].node, node);
		if (!local)
			continue;
		free(slot);
		if (!(slot = malloc(s->nep * sizeof(*slot)))) {
			ret = -ENOMEM;
			break;
		}
		int r = config_service_assign(s, &a, slot);
		if (r == -ENOMEM) {
			ret = r;
			break;
		}
		if (r)
			continue; /* no slices to route (logged by the caller's check) */
		for (unsigned e = 0; e < s->nep && !ret; e++) {
			if (strcmp(s->ep[e].node, node))
				continue;
			size_t nb = assign_blocks(&a, (unsigned)slot[e], NULL, 0);
			struct assign_block *nbv = realloc(blocks, (nb ? nb : 1) * sizeof(*nbv));
			if (!nbv) {
				ret = -ENOMEM;
				break;
			}
			blocks = nbv;
			assign_blocks(&a, (unsigned)slot[e], blocks, nb);
			for (size_t k = 0; k < nb && !ret; k++) {
				struct rt6 rt = {0};
				assign_block_prefix(&s->space, &blocks[k], &rt.dst);
				memcpy(rt.via, s->ep[e].addr, 16);
				ret = rtvec_push(&rv, &rt);
			}
		}
		assign_fini(&a);
	}
	free(slot);
	free(blocks);
	if (ret) {
		free(rv.v);
		return ret;
	}
	if (rv.n > 1)
		qsort(rv.v, rv.n, sizeof(*rv.v), rt6_cmp);
	*out = rv.v;
	*n = rv.n;
	return 0;
}

int agent_sync(unsigned table, const struct rt6 *want, size_t nwant, size_t *added, size_t *deleted)
{
	struct rt6 *have = NULL, *add = NULL, *del = NULL;
	size_t nhave = 0;
	int ret = rt6_dump(table, &have, &nhave);
	*added = *deleted = 0;
	if (ret)
		return ret;
	add = malloc((nwant ? nwant : 1) * sizeof(*add));
	del = malloc((nhave ? nhave : 1) * sizeof(*del));
	if (!add || !del) {
		ret = -ENOMEM;
		goto out;
	}
	rt6_diff(have, nhave, want, nwant, add, added, del, deleted);
	ret = rt6_apply(table, add, *added, del, *deleted);
out:
	free(have);
	free(add);
	free(del);
	return ret;
}

/* AnyIP in a pod: one local route per prefix of each service the pod serves. */
struct pod_job {
	const struct rt6 *want;
	size_t n, added, deleted;
};

static int pod_sync(void *arg)
{
	struct pod_job *j = arg;
	return agent_sync(RT_TABLE_PEAK_LOCAL, j->want, j->n, &j->added, &j->deleted);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* One full sync of the node and its pods. Returns 0 or -1 (logged). */
static int sync_all(const struct agent_opts *o, const struct peak_config *cfg)
{
	struct rt6 *want = NULL;
	size_t n = 0, added, deleted;
	struct timespec t0;
	int ret = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = agent_node_routes(cfg, o->node, &want, &n);
	if (!r)
		r = agent_sync(o->table, want, n, &added, &deleted);
	free(want);
	if (r) {
		log_msg(LOG_ERR, "agent: %s: slice routes: %s", o->node, strerror(-r));
		return -1;
	}
	log_msg(LOG_INFO, "agent: %s: %zu slice routes (+%zu -%zu) in %.1f ms", o->node, n, added,
	        deleted, ms_since(&t0));
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		struct rt6 local[SSA_MAX_PREFIXES];
		for (unsigned p = 0; p < s->space.n; p++) {
			memset(&local[p], 0, sizeof(local[p]));
			local[p].dst = s->space.pfx[p];
			local[p].local = true;
		}
		qsort(local, s->space.n, sizeof(local[0]), rt6_cmp);
		for (unsigned e = 0; e < s->nep; e++) {
			if (strcmp(s->ep[e].node, o->node) || !s->ep[e].netns[0])
				continue;
			/* A pod may serve several services: its wanted set is their union. */
			struct rtvec all = {0};
			for (unsigned j = 0; j < cfg->nsvc; j++)
				for (unsigned k = 0; k < cfg->svc[j].nep; k++)
					if (!strcmp(cfg->svc[j].ep[k].netns, s->ep[e].netns))
						for (unsigned p = 0; p < cfg->svc[j].space.n; p++) {
							struct rt6 rt = {
							    .dst = cfg->svc[j].space.pfx[p],
							    .local = true};
							rtvec_push(&all, &rt);
						}
			if (all.n > 1)
				qsort(all.v, all.n, sizeof(*all.v), rt6_cmp);
			size_t u = 0; /* the same prefix listed by several endpoints: once */
			for (size_t k = 0; k < all.n; k++)
				if (!u || rt6_cmp(&all.v[u - 1], &all.v[k]))
					all.v[u++] = all.v[k];
			struct pod_job j = {all.v, u, 0, 0};
			r = netns_run(s->ep[e].netns, pod_sync, &j);
			free(all.v);
			if (r) {
				log_msg(LOG_ERR, "agent: %s: pod %s (netns %s): AnyIP routes: %s",
				        o->node, s->ep[e].id, s->ep[e].netns, strerror(-r));
				ret = -1;
				continue;
			}
			if (j.added || j.deleted)
				log_msg(LOG_INFO,
				        "agent: %s: pod %s: AnyIP for %zu prefixes (+%zu -%zu)",
				        o->node, s->ep[e].id, u, j.added, j.deleted);
		}
	}
	return ret;
}

static int load(const struct agent_opts *o, struct peak_config **cfg)
{
	char err[CFG_ERRLEN];
	if (config_load(o->config, cfg, err, sizeof(err))) {
		log_msg(LOG_ERR, "agent: %s", err);
		return -1;
	}
	bool known = !(*cfg)->nnodes, any = false;
	for (unsigned i = 0; i < (*cfg)->nnodes; i++)
		known |= !strcmp((*cfg)->nodes[i].name, o->node);
	for (unsigned i = 0; i < (*cfg)->nsvc; i++)
		for (unsigned e = 0; e < (*cfg)->svc[i].nep; e++)
			any |= !strcmp((*cfg)->svc[i].ep[e].node, o->node);
	if (!known) {
		log_msg(LOG_ERR, "agent: node '%s' is not in the nodes of %s", o->node, o->config);
		config_free(*cfg);
		*cfg = NULL;
		return -1;
	}
	if (!any)
		log_msg(LOG_WARNING, "agent: no endpoint of %s is on node '%s'", o->config,
		        o->node);
	return 0;
}

int agent_run(const struct agent_opts *o)
{
	struct peak_config *cfg = NULL;
	if (load(o, &cfg))
		return 1;
	int bad = sync_all(o, cfg);
	if (o->once) {
		config_free(cfg);
		return bad ? 1 : 0;
	}
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	for (;;) {
		struct pollfd pf = {.fd = sfd, .events = POLLIN};
		int k = poll(&pf, 1, (int)o->interval_ms);
		if (k > 0) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo != SIGHUP) {
				log_msg(LOG_INFO, "agent: stopping; routes stay as they are");
				break;
			}
			struct peak_config *n = NULL;
			if (load(o, &n)) {
				log_msg(LOG_ERR,
				        "agent: reload refused, keeping the previous state");
				continue;
			}
			config_free(cfg);
			cfg = n;
			log_msg(LOG_INFO, "agent: reloaded %s", o->config);
		}
		sync_all(o, cfg); /* also repairs routes changed behind our back */
	}
	close(sfd);
	config_free(cfg);
	return 0;
}
