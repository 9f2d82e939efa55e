#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "../filter/loader.h"
#include "../k8s/kube.h"
#include "../sys/log.h"
#include "../sys/notify.h"

int agent_config_check(const struct peak_config *cfg, const char *path, const char *node, char *err,
                       size_t errlen)
{
	bool known = !cfg->nnodes;
	for (unsigned i = 0; i < cfg->nnodes; i++)
		known |= !strcmp(cfg->nodes[i].name, node);
	if (!known) {
		snprintf(err, errlen, "%s:%u: node '%s' is not one of the nodes listed here", path,
		         cfg->nodes[0].line, node);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		bool local = false;
		for (unsigned e = 0; e < s->nep; e++)
			local |= !strcmp(s->ep[e].node, node);
		if (!local)
			continue;
		struct assign a;
		int *slot = malloc(s->nep * sizeof(*slot));
		if (!slot) {
			snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
			return -ENOMEM;
		}
		int r = config_service_assign(s, &a, slot);
		free(slot);
		if (!r) {
			assign_fini(&a);
			continue;
		}
		char name[DNS_NAME_STRLEN];
		dns_name_print(&s->name, name, sizeof(name));
		snprintf(err, errlen,
		         "%s:%u: service %s: its slices cannot be assigned, so node '%s' "
		         "would route none of them: %s",
		         path, s->line, name, node,
		         r == -E2BIG    ? "more slices than an assignment holds (2^24)"
		         : r == -EINVAL ? "every weight is 0"
		                        : strerror(-r));
		return r == -ENOMEM ? r : -EINVAL;
	}
	return 0;
}

_Static_assert(AGENT_PF_FIXED == 3 + KUBE_POLLFDS, "a->pf's fixed entries");

/* Loads and checks the file (agent_config_check), or with --source kubernetes the file's
 * zone and nodes with the cluster's current services (kube_config). Returns 0, or -1
 * (logged). */
static int load(const struct agent *a, struct peak_config **cfg)
{
	const struct agent_opts *o = a->o;
	char err[CFG_ERRLEN + 256];
	*cfg = NULL;
	if (a->kube ? kube_config(a->kube, o->config, cfg, err, sizeof(err))
	            : config_load(o->config, cfg, err, sizeof(err))) {
		log_msg(LOG_ERR, "agent: %s", err);
		return -1;
	}
	if (agent_config_check(*cfg, a->kube ? "kubernetes" : o->config, o->node, err,
	                       sizeof(err))) {
		log_msg(LOG_ERR, "agent: %s", err);
		config_free(*cfg);
		*cfg = NULL;
		return -1;
	}
	bool any = false;
	for (unsigned i = 0; i < (*cfg)->nsvc; i++)
		for (unsigned e = 0; e < (*cfg)->svc[i].nep; e++)
			any |= !strcmp((*cfg)->svc[i].ep[e].node, o->node);
	if (!any && !a->kube) /* (in a cluster, a node may have none of its pods yet) */
		log_msg(LOG_WARNING, "agent: no endpoint of %s is on node '%s'", o->config,
		        o->node);
	return 0;
}

/* The interface the configuration wants this node's filter on, or NULL. */
static const char *filter_dev(const struct peak_config *cfg, const char *node)
{
	for (unsigned i = 0; i < cfg->nnodes; i++)
		if (!strcmp(cfg->nodes[i].name, node) && cfg->nodes[i].filter_dev[0])
			return cfg->nodes[i].filter_dev;
	return NULL;
}

/* Attaches, updates or leaves the node's filter as the configuration says. */
static int filter_sync(struct agent *a)
{
	const struct agent_opts *o = a->o;
	const struct peak_config *cfg = a->cfg;
	char err[512];
	const char *dev = filter_dev(cfg, o->node);
	if (!dev)
		return 0;
	pthread_mutex_lock(&a->st.lock);
	struct filter_handle *h = a->st.filter;
	pthread_mutex_unlock(&a->st.lock);
	if (h) {
		if (filter_handle_update(h, cfg, err, sizeof(err))) {
			log_msg(LOG_ERR, "agent: %s: filter update: %s", o->node, err);
			return -1;
		}
		return 0;
	}
	h = filter_open(dev, o->filter_object, cfg, FILTER_MODE_AUTO, err, sizeof(err));
	if (!h) {
		log_msg(LOG_ERR, "agent: %s: filter on %s: %s", o->node, dev, err);
		return -1;
	}
	pthread_mutex_lock(&a->st.lock);
	a->st.filter = h;
	pthread_mutex_unlock(&a->st.lock);
	log_msg(LOG_INFO, "agent: %s: XDP filter attached to %s (%s hook)", o->node, dev,
	        filter_handle_hook(h));
	if (!filter_handle_pinned(h))
		log_msg(LOG_WARNING,
		        "agent: %s: the filter on %s is not pinned, so 'peak filter' commands "
		        "cannot reach it: %s",
		        o->node, dev, err);
	return 0;
}

/* SIGHUP: loads the file again and starts over from it. The controller's maps in force
 * stay for the services whose slices did not change (maps_carry), and so do the endpoints
 * it added at run time (rt_eps_carry), until the controller sends them again. Everything the new
 * configuration needs is allocated before the old state goes: a file that does not load, or no
 * memory, leaves the agent as it was. Returns 0 or -1 (logged). */
static int reload(struct agent *a)
{
	struct peak_config *n = NULL, *old = a->cfg;
	struct svc_map *maps = NULL, *old_maps = a->maps;
	unsigned kept = 0, planned = 0;
	if (load(a, &n) || rt_eps_carry(old, n))
		goto refused;
	if (!(maps = calloc(n->nsvc ? n->nsvc : 1, sizeof(*maps))))
		goto refused;
	a->cfg = n;
	if (hc_setup(a, old)) { /* it left the old checks (and st) as they were */
		a->cfg = old;
		goto refused;
	}
	ctl_map_reset(a); /* cur_svc indexes the old configuration */
	maps_carry(old, old_maps, n, maps, a->o->node, &kept, &planned);
	a->maps = maps;
	maps_free(old_maps, old->nsvc);
	if (kept || planned)
		log_msg(LOG_INFO,
		        "agent: %s: reload: the controller's maps of %u services kept until it "
		        "sends them again; %u routed by the node's own plan (new, or their "
		        "slices changed)",
		        a->o->node, kept, planned);
	config_free(old); /* nothing points into it now: hc_setup moved st to the new one */
	return 0;
refused:
	free(maps);
	config_free(n);
	log_msg(LOG_ERR, "agent: reload refused, keeping the previous state");
	return -1;
}

/* Where the services come from, for the log and the service manager. */
static const char *source_name(const struct agent *a)
{
	return a->kube ? "kubernetes" : a->o->config;
}

/* Starts over from the configuration read again (SIGHUP) or from the cluster's new view
 * (--source kubernetes): reload (the controller's maps of unchanged services kept), then
 * the controller's and the store's maps asked for again, the new endpoints' checks
 * started. Returns 0 or -1 (refused, logged). */
static int restart(struct agent *a, uint64_t *next_hc)
{
	const struct agent_opts *o = a->o;
	notify_reloading();
	if (reload(a)) {
		notify_ready("node %s: reload refused, serving %s as before", o->node,
		             source_name(a));
		return -1;
	}
	/* The controller sends every map again after a hello (those of new services too);
	 * until then the maps kept by reload route their services. */
	if (a->ctl >= 0)
		ctl_drop(a, 0);
	agent_store_reset(a); /* the stored maps again, for the new file's services */
	*next_hc = 0;         /* the new endpoints' checks start now */
	a->dirty = true;
	filter_sync(a);
	if (a->kube)
		log_msg(LOG_INFO, "agent: kubernetes: %u services applied", a->cfg->nsvc);
	else
		log_msg(LOG_INFO, "agent: reloaded %s", o->config);
	notify_ready("node %s: %u services from %s", o->node, a->cfg->nsvc, source_name(a));
	return 0;
}

/* --source kubernetes: opens the client and waits up to KUBE_SYNC_MS for the first lists,
 * so the agent starts with the cluster's services (an API that does not answer yet leaves
 * it with none: they come when it does). Returns 0, or -1 (bad options, logged). */
static int kube_start(struct agent *a)
{
	enum { KUBE_SYNC_MS = 10000 };
	char err[512];
	kube_log_as("agent");
	if (!(a->kube = kube_open(a->o->kube, err, sizeof(err)))) {
		log_msg(LOG_ERR, "agent: %s", err);
		return -1;
	}
	if (!kube_wait_synced(a->kube, KUBE_SYNC_MS))
		log_msg(LOG_WARNING,
		        "agent: kubernetes: the API did not answer in %d s: starting with no "
		        "services",
		        KUBE_SYNC_MS / 1000);
	return 0;
}

int agent_run(const struct agent_opts *o)
{
	struct agent a = {.o = o,
	                  .ctl = -1,
	                  .backoff_ms = CTL_BACKOFF_MIN_MS,
	                  .cur_svc = -1,
	                  .st = {.lock = PTHREAD_MUTEX_INITIALIZER}};
	struct metrics_srv *ms = NULL;
	struct ctlauth_key key = {0};
	int ret = AGENT_EXIT_FAIL, sfd = -1;
	/* Before any thread starts (the metrics endpoint's): threads inherit the signal mask,
	 * and one started with SIGHUP and SIGTERM unblocked would take them and die of them. */
	if (!o->once && (sfd = signals_fd(1)) < 0) {
		log_msg(LOG_ERR, "agent: signals: %s", strerror(-sfd));
		goto out;
	}
	if (o->key_file) {
		char err[CTLAUTH_ERRLEN];
		if (ctlauth_key_load(o->key_file, &key, err, sizeof(err))) {
			log_msg(LOG_ERR, "agent: %s", err);
			ret = AGENT_EXIT_CONFIG;
			goto out;
		}
		a.key = &key;
	} else if (o->controller && !o->once) {
		log_msg(LOG_WARNING,
		        "agent: no --key-file: the hello to the controller at %s carries no tag "
		        "(a controller with --key-file refuses it; one without trusts any peer)",
		        o->controller);
	}
	if (o->kube && kube_start(&a)) {
		ret = AGENT_EXIT_CONFIG;
		goto out;
	}
	if (load(&a, &a.cfg)) {
		ret = AGENT_EXIT_CONFIG;
		goto out;
	}
	if (!(a.maps = calloc(a.cfg->nsvc ? a.cfg->nsvc : 1, sizeof(*a.maps))) ||
	    hc_setup(&a, NULL)) {
		log_msg(LOG_ERR, "agent: %s", strerror(ENOMEM));
		goto out;
	}
	if (!o->once && o->metrics && !(ms = metrics_start(o->metrics, agent_stats_render, &a.st)))
		goto out;
	int bad = agent_sync_all(&a);
	if (o->once) {
		ret = bad ? AGENT_EXIT_FAIL : AGENT_EXIT_OK;
		goto out;
	}
	if (filter_sync(&a))
		goto out;
	if (o->etcd && !(a.store = agent_store_open(&a)))
		goto out;
	notify_ready("node %s: %u services from %s", o->node, a.cfg->nsvc, source_name(&a));
	uint64_t next_sync = peak_mono_ms() + o->interval_ms, next_hc = peak_mono_ms();
	for (bool run = true; run;) {
		uint64_t now = peak_mono_ms();
		ctl_tick(&a, now);
		agent_store_tick(&a, now, false);
		if (now >= next_hc) {
			next_hc = hc_round(&a, now);
			for (unsigned i = 0; i < a.nhc; i++)
				watch_start(&a, &a.hc[i], now);
		}
		if (a.dirty || now >= next_sync) {
			/* a full sync also repairs routes changed behind our back */
			agent_sync_all(&a);
			hc_reset_moved(&a); /* after the routes moved: clients reconnect to them */
			if (now >= next_sync)
				pod_load_round(&a);
			a.dirty = false;
			next_sync = now + o->interval_ms;
		}
		uint64_t until = next_hc < next_sync ? next_hc : next_sync;
		for (size_t k = 0; k < a.dr.ndrain; k++)
			if (a.dr.drain[k].until_ms < until)
				until = a.dr.drain[k].until_ms;
		if (a.dr.ndrain && until <= now)
			a.dirty = true; /* a drained route's time is up */
		if (ctl_due_ms(&a) < until)
			until = ctl_due_ms(&a);
		if (agent_store_due_ms(&a) < until)
			until = agent_store_due_ms(&a);
		struct pollfd *pf = a.pf;
		pf[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pf[1] = (struct pollfd){.fd = a.ctl, .events = POLLIN};
		pf[2] = (struct pollfd){.fd = agent_store_fd(&a), .events = POLLIN};
		pf[3] = pf[4] = (struct pollfd){.fd = -1};
		if (a.kube) /* a watch's event wakes the loop */
			kube_pollfds(a.kube, pf + 3);
		for (unsigned i = 0; i < a.nhc; i++)
			pf[AGENT_PF_FIXED + i] =
			    (struct pollfd){.fd = a.hc[i].pidfd, .events = POLLIN};
		hc_pollfds(&a, pf + AGENT_PF_FIXED + a.nhc);
		int k = poll(pf, AGENT_PF_FIXED + (1 + HC_PROBES) * a.nhc,
		             until > now ? (int)(until - now) : 0);
		if (a.kube && kube_poll(a.kube) == 1) {
			restart(&a, &next_hc);
			continue; /* (it may have replaced a.pf: the fds are polled again) */
		}
		if (k <= 0)
			continue;
		hc_polled(&a, pf + AGENT_PF_FIXED + a.nhc); /* answers count at once */
		for (unsigned i = 0; i < a.nhc; i++)
			if (pf[AGENT_PF_FIXED + i].revents && a.hc[i].pidfd >= 0)
				watch_fired(&a, i);
		/* (a map that adds or removes a local endpoint replaces a.pf: read it first) */
		short sig = pf[0].revents, stored = pf[2].revents;
		if (pf[1].revents)
			ctl_read(&a);
		if (stored)
			agent_store_tick(&a, peak_mono_ms(), true);
		if (sig) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo != SIGHUP) {
				log_msg(LOG_INFO, "agent: stopping; routes stay as they are");
				notify_stopping();
				run = false;
				continue;
			}
			if (a.kube)
				kube_touch(a.kube); /* the cluster's view applied again */
			else
				restart(&a, &next_hc);
		}
	}
	ret = AGENT_EXIT_OK;
out:
	metrics_stop(ms);
	pthread_mutex_lock(&a.st.lock);
	filter_close(a.st.filter, false); /* the filter stays attached, like the routes */
	a.st.filter = NULL;
	pthread_mutex_unlock(&a.st.lock);
	agent_stats_clear(&a.st);
	for (unsigned i = 0; i < a.nhc; i++)
		hc_close(&a.hc[i]);
	watch_stop_all(&a);
	ho_fini(&a); /* forwarding ends with the agent (routes stay, as they are) */
	agent_store_free(a.store);
	kube_free(a.kube);
	ctl_drop(&a, 0);
	if (sfd >= 0)
		close(sfd);
	maps_free(a.maps, a.cfg ? a.cfg->nsvc : 0);
	ctl_map_reset(&a);
	ctlrt_free(&a.rt);
	ctlauth_key_wipe(&key);
	free(a.hc);
	free(a.pf);
	agent_drain_fini(&a.dr);
	config_free(a.cfg);
	return ret;
}
