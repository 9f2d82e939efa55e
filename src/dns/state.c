#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "peak/apl.h"
#include "peak/siphash.h"
#include "peak/util.h"

/* ---- steering counters: a grow-only registry, so counters survive state swaps ----
 *
 * A counter is an id. Each worker has its own cells, in chunks of STEER_CHUNK counters
 * allocated before the id is handed out (so a worker never sees an id without its cell), and
 * only for the workers that exist: no two workers write one cache line but at a chunk's
 * edges, and a counter costs 8 bytes per worker. The names live in one grow-only text buffer
 * (a service's name once for all its endpoints); a hash over (service, endpoint) finds an
 * id in constant time. */

enum { STEER_CHUNK = 1024, STEER_CHUNKS = 4096, STEER_MAX = STEER_CHUNK * STEER_CHUNKS };

struct steer_entry {
	uint32_t svc_off, ep_off; /* into names */
	uint64_t hash;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned reg_workers = DNSD_MAX_WORKERS;
static uint64_t *reg_cells[DNSD_MAX_WORKERS][STEER_CHUNKS];
static struct steer_entry *reg;
static uint32_t nreg, capreg;
static uint32_t *reg_index; /* open addressing: id + 1, 0 empty */
static uint32_t reg_imask;
static char *reg_names;
static size_t reg_names_len, reg_names_cap;
static uint32_t reg_last_svc = UINT32_MAX; /* the service name added last */

uint64_t *steer_cell(unsigned worker, uint32_t id)
{
	return &reg_cells[worker][id / STEER_CHUNK][id % STEER_CHUNK];
}

void steer_counters_init(unsigned nworkers)
{
	pthread_mutex_lock(&reg_lock);
	if (!nreg && nworkers && nworkers <= DNSD_MAX_WORKERS)
		reg_workers = nworkers;
	pthread_mutex_unlock(&reg_lock);
}

static uint64_t steer_hash(const char *service, const char *endpoint)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over service NUL endpoint */
	for (const char *p = service;; p++) {
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
		if (!*p)
			break;
	}
	for (const char *p = endpoint; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static int names_add(const char *str, uint32_t *off)
{
	size_t n = strlen(str) + 1;
	if (reg_names_len + n > UINT32_MAX)
		return -ENOMEM;
	if (reg_names_len + n > reg_names_cap) {
		size_t nc = reg_names_cap ? 2 * reg_names_cap : 4096;
		while (nc < reg_names_len + n)
			nc *= 2;
		char *nv = realloc(reg_names, nc);
		if (!nv)
			return -ENOMEM;
		reg_names = nv;
		reg_names_cap = nc;
	}
	memcpy(reg_names + reg_names_len, str, n);
	*off = (uint32_t)reg_names_len;
	reg_names_len += n;
	return 0;
}

static int index_grow(void)
{
	uint32_t size = reg_index ? 2 * (reg_imask + 1) : 1024;
	uint32_t *ni = calloc(size, sizeof(*ni));
	if (!ni)
		return -ENOMEM;
	for (uint32_t id = 0; id < nreg; id++) {
		uint32_t i = (uint32_t)reg[id].hash & (size - 1);
		while (ni[i])
			i = (i + 1) & (size - 1);
		ni[i] = id + 1;
	}
	free(reg_index);
	reg_index = ni;
	reg_imask = size - 1;
	return 0;
}

/* The id of (service, endpoint)'s counter, made on first use. Returns 0 or -ENOMEM. */
static int steer_counter_get(const char *service, const char *endpoint, uint32_t *out)
{
	int ret = -ENOMEM;
	uint64_t h = steer_hash(service, endpoint);
	pthread_mutex_lock(&reg_lock);
	if (reg_index)
		for (uint32_t i = (uint32_t)h & reg_imask; reg_index[i]; i = (i + 1) & reg_imask) {
			const struct steer_entry *x = &reg[reg_index[i] - 1];
			if (x->hash == h && !strcmp(reg_names + x->svc_off, service) &&
			    !strcmp(reg_names + x->ep_off, endpoint)) {
				*out = reg_index[i] - 1;
				ret = 0;
				goto out;
			}
		}
	if (nreg == STEER_MAX)
		goto out;
	if (nreg == capreg) {
		uint32_t nc = capreg ? 2 * capreg : 64;
		struct steer_entry *nv = realloc(reg, nc * sizeof(*nv));
		if (!nv)
			goto out;
		reg = nv;
		capreg = nc;
	}
	if ((2 * (nreg + 1) > (reg_index ? reg_imask + 1 : 0)) && index_grow())
		goto out;
	if (nreg % STEER_CHUNK == 0)
		for (unsigned w = 0; w < reg_workers; w++)
			if (!reg_cells[w][nreg / STEER_CHUNK] &&
			    !(reg_cells[w][nreg / STEER_CHUNK] =
			          calloc(STEER_CHUNK, sizeof(uint64_t))))
				goto out;
	struct steer_entry *x = &reg[nreg];
	x->hash = h;
	if (reg_last_svc != UINT32_MAX && !strcmp(reg_names + reg_last_svc, service))
		x->svc_off = reg_last_svc;
	else if (names_add(service, &x->svc_off))
		goto out;
	reg_last_svc = x->svc_off;
	if (names_add(endpoint, &x->ep_off))
		goto out;
	uint32_t i = (uint32_t)h & reg_imask;
	while (reg_index[i])
		i = (i + 1) & reg_imask;
	reg_index[i] = nreg + 1;
	*out = nreg++;
	ret = 0;
out:
	pthread_mutex_unlock(&reg_lock);
	return ret;
}

void steer_counters_each(void (*fn)(const struct steer_counter *c, uint64_t total, void *arg),
                         void *arg)
{
	pthread_mutex_lock(&reg_lock);
	for (uint32_t id = 0; id < nreg; id++) {
		uint64_t t = 0;
		for (unsigned w = 0; w < reg_workers; w++)
			t += __atomic_load_n(steer_cell(w, id), __ATOMIC_RELAXED);
		struct steer_counter c = {reg_names + reg[id].svc_off, reg_names + reg[id].ep_off};
		fn(&c, t, arg);
	}
	pthread_mutex_unlock(&reg_lock);
}

void steer_counters_free(void)
{
	pthread_mutex_lock(&reg_lock);
	for (unsigned w = 0; w < DNSD_MAX_WORKERS; w++)
		for (unsigned k = 0; k < STEER_CHUNKS && reg_cells[w][k]; k++) {
			free(reg_cells[w][k]);
			reg_cells[w][k] = NULL;
		}
	free(reg);
	reg = NULL;
	nreg = capreg = 0;
	free(reg_index);
	reg_index = NULL;
	reg_imask = 0;
	free(reg_names);
	reg_names = NULL;
	reg_names_len = reg_names_cap = 0;
	reg_last_svc = UINT32_MAX;
	pthread_mutex_unlock(&reg_lock);
}

/* ---- live state: health, weights and the slice assignment per service ---- */

/* The assignment map of a packed sd, expanded (the caller's to free), or NULL. */
static int32_t *runs_expand(const struct dnsd_svc_dyn *sd)
{
	int32_t *owner = malloc((sd->a.nslices ? sd->a.nslices : 1) * sizeof(*owner));
	if (!owner)
		return NULL;
	for (uint32_t r = 0; r < sd->nruns; r++) {
		uint32_t end = r + 1 < sd->nruns ? sd->run_start[r + 1] : sd->a.nslices;
		for (uint32_t g = sd->run_start[r]; g < end; g++)
			owner[g] = sd->run_slot[r];
	}
	return owner;
}

/* Expands the map for a change. Returns 0 or -ENOMEM (sd unchanged). */
static int dyn_unpack(struct dnsd_svc_dyn *sd)
{
	if (!sd->have_assign || sd->a.owner)
		return 0;
	if (!(sd->a.owner = runs_expand(sd)))
		return -ENOMEM;
	free(sd->run_start);
	free(sd->run_slot);
	sd->run_start = NULL;
	sd->run_slot = NULL;
	sd->nruns = 0;
	return 0;
}

/* Keeps the map as runs until the next change. Returns 0 or -ENOMEM (sd then stays
 * expanded, which is as good, only larger). */
static int dyn_pack(struct dnsd_svc_dyn *sd)
{
	if (!sd->have_assign || !sd->a.owner)
		return 0;
	uint32_t n = 0;
	for (uint32_t g = 0; g < sd->a.nslices; g++)
		n += !g || sd->a.owner[g] != sd->a.owner[g - 1];
	uint32_t *start = malloc((n ? n : 1) * sizeof(*start));
	int32_t *slot = malloc((n ? n : 1) * sizeof(*slot));
	if (!start || !slot) {
		free(start);
		free(slot);
		return -ENOMEM;
	}
	n = 0;
	for (uint32_t g = 0; g < sd->a.nslices; g++)
		if (!g || sd->a.owner[g] != sd->a.owner[g - 1]) {
			start[n] = g;
			slot[n++] = sd->a.owner[g];
		}
	free(sd->a.owner);
	sd->a.owner = NULL;
	sd->run_start = start;
	sd->run_slot = slot;
	sd->nruns = n;
	return 0;
}

static void svc_dyn_free(struct dnsd_svc_dyn *sd)
{
	free(sd->run_start);
	free(sd->run_slot);
	if (sd->have_assign)
		assign_fini(&sd->a);
	free(sd->ep);
	free(sd->slot_ep);
	memset(sd, 0, sizeof(*sd));
}

void dnsd_dyn_fini(struct dnsd_dyn *dyn)
{
	for (unsigned i = 0; i < dyn->nsvc; i++)
		svc_dyn_free(&dyn->svc[i]);
	free(dyn->svc);
	dyn->svc = NULL;
	dyn->nsvc = 0;
}

/* Records which endpoint each assignment slot belongs to. */
static int slot_map(struct dnsd_svc_dyn *sd)
{
	unsigned n = sd->have_assign ? sd->a.nep : 0;
	int *m = malloc((n ? n : 1) * sizeof(*m));
	if (!m)
		return -ENOMEM;
	for (unsigned s = 0; s < n; s++)
		m[s] = -1;
	for (unsigned e = 0; e < sd->nep; e++)
		if (sd->ep[e].slot >= 0 && (unsigned)sd->ep[e].slot < n)
			m[sd->ep[e].slot] = (int)e;
	free(sd->slot_ep);
	sd->slot_ep = m;
	sd->nslot_ep = n;
	return 0;
}

/* Brings the assignment in line with health and weights: healthy endpoints join, sick ones
 * leave (the last one with weight cannot leave: then nobody healthy is left anyway), and
 * weights follow. Joins come first so that leaves find somewhere to go. */
static int svc_dyn_settle(struct dnsd_svc_dyn *sd)
{
	if (!sd->have_assign)
		return slot_map(sd);
	if (dyn_unpack(sd))
		return -ENOMEM;
	for (unsigned e = 0; e < sd->nep; e++) {
		struct dnsd_ep_dyn *d = &sd->ep[e];
		if (d->healthy && d->slot < 0) {
			int s = assign_add(&sd->a, d->weight, NULL);
			if (s < 0)
				return s;
			d->slot = s;
		}
	}
	for (unsigned e = 0; e < sd->nep; e++) {
		struct dnsd_ep_dyn *d = &sd->ep[e];
		if (d->slot >= 0 && sd->a.ep[d->slot].weight != d->weight)
			(void)assign_set_weight(&sd->a, (unsigned)d->slot, d->weight, NULL);
	}
	for (unsigned e = 0; e < sd->nep; e++) {
		struct dnsd_ep_dyn *d = &sd->ep[e];
		if (!d->healthy && d->slot >= 0 && assign_del(&sd->a, (unsigned)d->slot, NULL) == 0)
			d->slot = -1;
	}
	int r = slot_map(sd);
	(void)dyn_pack(sd);
	return r;
}

/* A fresh assignment (config_service_assign, as 'peak plan' shows it), then the unhealthy
 * endpoints leave. */
static int svc_dyn_assign_fresh(struct dnsd_svc_dyn *sd, const struct cfg_service *s)
{
	if (!s->nep) { /* nothing to assign (and s->ep may be NULL) */
		if (sd->have_assign)
			assign_fini(&sd->a);
		sd->have_assign = false;
		return slot_map(sd);
	}
	int *slot = malloc(s->nep * sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	if (sd->have_assign)
		assign_fini(&sd->a);
	sd->have_assign = false;
	for (unsigned e = 0; e < sd->nep; e++)
		sd->ep[e].slot = -1;
	/* Weights in force may differ from the file's (run-time overrides). */
	struct cfg_service tmp = *s;
	struct cfg_endpoint *eps = malloc((s->nep ? s->nep : 1) * sizeof(*eps));
	if (!eps) {
		free(slot);
		return -ENOMEM;
	}
	memcpy(eps, s->ep, s->nep * sizeof(*eps));
	for (unsigned e = 0; e < s->nep; e++)
		eps[e].weight = sd->ep[e].weight;
	tmp.ep = eps;
	int r = config_service_assign(&tmp, &sd->a, slot);
	free(eps);
	if (r == -ENOMEM) {
		free(slot);
		return r;
	}
	if (r) { /* no endpoints, too many slices or every weight 0: nothing to steer to */
		free(slot);
		return slot_map(sd);
	}
	sd->have_assign = true;
	for (unsigned e = 0; e < s->nep; e++)
		sd->ep[e].slot = slot[e];
	free(slot);
	return svc_dyn_settle(sd);
}

static uint64_t svc_name_hash(const struct dns_name *n)
{
	struct dns_name l = *n;
	dns_name_lower(&l);
	uint64_t h = 0xcbf29ce484222325ULL;
	for (unsigned i = 0; i < l.len; i++)
		h = (h ^ l.wire[i]) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

/* An index of dyn's services by name (open addressing: service index + 1, 0 empty), the
 * caller's to free; NULL for -ENOMEM. */
static uint32_t *dyn_index(const struct dnsd_dyn *dyn, uint32_t *mask)
{
	uint32_t size = 16;
	while (size < 2 * dyn->nsvc)
		size *= 2;
	uint32_t *ix = calloc(size, sizeof(*ix));
	if (!ix)
		return NULL;
	for (unsigned j = 0; j < dyn->nsvc; j++) {
		uint32_t i = (uint32_t)svc_name_hash(&dyn->svc[j].name) & (size - 1);
		while (ix[i])
			i = (i + 1) & (size - 1);
		ix[i] = j + 1;
	}
	*mask = size - 1;
	return ix;
}

/* The last service of dyn named name (as a linear search from the start would pick), or
 * NULL. */
static const struct dnsd_svc_dyn *dyn_find(const struct dnsd_dyn *dyn, const uint32_t *ix,
                                           uint32_t mask, const struct dns_name *name)
{
	const struct dnsd_svc_dyn *found = NULL;
	for (uint32_t i = (uint32_t)svc_name_hash(name) & mask; ix[i]; i = (i + 1) & mask) {
		const struct dnsd_svc_dyn *x = &dyn->svc[ix[i] - 1];
		if (dns_name_eq(&x->name, name) && (!found || x > found))
			found = x;
	}
	return found;
}

/* The index of endpoint id in sd, or -1; hint is where it usually is (the same place in the
 * file as before), looked at first. Endpoint ids are unique within a service (config.c). */
static int ep_find(const struct dnsd_svc_dyn *sd, const char *id, unsigned hint)
{
	if (hint < sd->nep && !strcmp(sd->ep[hint].id, id))
		return (int)hint;
	for (unsigned k = 0; k < sd->nep; k++)
		if (!strcmp(sd->ep[k].id, id))
			return (int)k;
	return -1;
}

/* A reload's shortcut for a service whose endpoints did not change: when old (packed) has
 * the same endpoints in the same order and sd (their health, slots and weights taken from
 * old) would settle to nothing, sd takes a copy of old's runs as they are, which is what
 * expanding, copying, settling and packing them again gives. Returns 0 (done), 1 (not
 * such a service: the caller takes the long way) or -ENOMEM. */
static int svc_dyn_copy_packed(struct dnsd_svc_dyn *sd, const struct dnsd_svc_dyn *old)
{
	if (!old->have_assign || old->a.owner || old->nep != sd->nep)
		return 1;
	for (unsigned e = 0; e < sd->nep; e++) {
		const struct dnsd_ep_dyn *d = &sd->ep[e];
		if (strcmp(old->ep[e].id, d->id) || (d->healthy != (d->slot >= 0)) ||
		    (d->slot >= 0 &&
		     ((unsigned)d->slot >= old->a.nep || old->a.ep[d->slot].weight != d->weight)))
			return 1;
	}
	struct assign a = old->a;
	a.cap = old->a.cap ? old->a.cap : 1;
	a.ep = malloc(a.cap * sizeof(*a.ep));
	uint32_t *start = malloc((old->nruns ? old->nruns : 1) * sizeof(*start));
	int32_t *slot = malloc((old->nruns ? old->nruns : 1) * sizeof(*slot));
	if (!a.ep || !start || !slot) {
		free(a.ep);
		free(start);
		free(slot);
		return -ENOMEM;
	}
	memcpy(a.ep, old->a.ep, old->a.nep * sizeof(*a.ep));
	memcpy(start, old->run_start, old->nruns * sizeof(*start));
	memcpy(slot, old->run_slot, old->nruns * sizeof(*slot));
	sd->a = a;
	sd->have_assign = true;
	sd->run_start = start;
	sd->run_slot = slot;
	sd->nruns = old->nruns;
	return slot_map(sd);
}

/* Matches dyn to cfg by service name and endpoint id into out, leaving dyn untouched.
 * Health marks and slices are kept; a weight set at run time stays until the file changes
 * that endpoint's weight. */
static int dyn_sync(const struct dnsd_dyn *dyn, const struct peak_config *cfg, struct dnsd_dyn *out)
{
	uint32_t omask = 0;
	uint32_t *oidx = dyn_index(dyn, &omask);
	struct dnsd_svc_dyn *nsvc = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*nsvc));
	if (!nsvc || !oidx) {
		free(nsvc);
		free(oidx);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		struct dnsd_svc_dyn *sd = &nsvc[i];
		const struct dnsd_svc_dyn *old = dyn_find(dyn, oidx, omask, &s->name);
		unsigned nrt = 0; /* endpoints added at run time the file does not list: kept */
		for (unsigned k = 0; old && k < old->nep; k++)
			nrt += old->ep[k].rt;
		sd->name = s->name;
		sd->ep = calloc(s->nep + nrt ? s->nep + nrt : 1, sizeof(*sd->ep));
		if (!sd->ep)
			goto nomem;
		sd->nep = s->nep;
		for (unsigned e = 0; e < s->nep; e++) {
			struct dnsd_ep_dyn *d = &sd->ep[e];
			snprintf(d->id, sizeof(d->id), "%s", s->ep[e].id);
			d->healthy = true;
			d->weight = d->cfg_weight = s->ep[e].weight;
			d->slot = -1;
			int k = old ? ep_find(old, d->id, e) : -1;
			if (k >= 0) {
				d->healthy = old->ep[k].healthy;
				d->slot = old->ep[k].slot;
				if (old->ep[k].cfg_weight == d->cfg_weight)
					d->weight = old->ep[k].weight;
			}
		}
		for (unsigned k = 0; nrt && k < old->nep; k++)
			if (old->ep[k].rt && ep_find(sd, old->ep[k].id, k) < 0)
				sd->ep[sd->nep++] = old->ep[k];
		bool same_space = old && old->have_assign && old->a.nslices == s->space.nslices &&
		                  old->a.block_bits == s->space.s;
		if (!same_space) {
			if (svc_dyn_assign_fresh(sd, s))
				goto nomem;
			continue;
		}
		int cp = svc_dyn_copy_packed(sd, old);
		if (cp < 0)
			goto nomem;
		if (!cp)
			continue;
		/* Keep the slices: endpoints that left the file leave the assignment. */
		struct assign from = old->a;
		int32_t *owner = old->a.owner ? NULL : runs_expand(old);
		if (owner)
			from.owner = owner;
		int r = from.owner ? assign_copy(&sd->a, &from) : -ENOMEM;
		free(owner);
		if (r)
			goto nomem;
		sd->have_assign = true;
		for (unsigned k = 0; k < old->nep; k++) {
			bool kept = ep_find(sd, old->ep[k].id, k) >= 0;
			if (!kept && old->ep[k].slot >= 0)
				(void)assign_del(&sd->a, (unsigned)old->ep[k].slot, NULL);
		}
		if (svc_dyn_settle(sd))
			goto nomem;
	}
	out->svc = nsvc;
	out->nsvc = cfg->nsvc;
	free(oidx);
	return 0;
nomem:
	free(oidx);
	for (unsigned i = 0; i < cfg->nsvc; i++)
		svc_dyn_free(&nsvc[i]);
	free(nsvc);
	return -ENOMEM;
}

int dnsd_svc_ep_add_many(struct dnsd_svc_dyn *sd, const char (*ep)[CFG_ID_MAX],
                         const uint32_t *weight, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		if (weight[k] > ASSIGN_MAX_WEIGHT || !memchr(ep[k], 0, CFG_ID_MAX))
			return -EINVAL;
		if (ep_find(sd, ep[k], 0) >= 0)
			return -EEXIST;
		for (unsigned j = 0; j < k; j++)
			if (!strcmp(ep[j], ep[k]))
				return -EEXIST;
	}
	if (!n)
		return 0;
	struct dnsd_ep_dyn *g = realloc(sd->ep, (sd->nep + n) * sizeof(*g));
	if (!g)
		return -ENOMEM;
	sd->ep = g;
	if (sd->have_assign && dyn_unpack(sd))
		return -ENOMEM;
	/* one rebalance for all of them, as the controller's batch makes it (runtime.c) */
	int first = sd->have_assign ? assign_add_many(&sd->a, weight, n, NULL) : -1;
	if (first < -1) {
		(void)dyn_pack(sd);
		return first;
	}
	for (unsigned k = 0; k < n; k++) {
		struct dnsd_ep_dyn *d = &sd->ep[sd->nep++];
		*d = (struct dnsd_ep_dyn){.healthy = true,
		                          .weight = weight[k],
		                          .cfg_weight = weight[k],
		                          .slot = first >= 0 ? first + (int)k : -1,
		                          .rt = true};
		snprintf(d->id, sizeof(d->id), "%s", ep[k]);
	}
	sd->changed = true;
	return svc_dyn_settle(sd);
}

int dnsd_svc_ep_add(struct dnsd_svc_dyn *sd, const char *ep, uint32_t weight)
{
	char id[1][CFG_ID_MAX] = {""};
	if (strlen(ep) >= CFG_ID_MAX)
		return -EINVAL;
	memcpy(id[0], ep, strlen(ep) + 1);
	return dnsd_svc_ep_add_many(sd, id, &weight, 1);
}

int dnsd_svc_ep_del(struct dnsd_svc_dyn *sd, const char *ep)
{
	int e = ep_find(sd, ep, 0);
	if (e < 0)
		return -ENOENT;
	if (!sd->ep[e].rt)
		return -EPERM;
	if (sd->ep[e].slot >= 0) {
		if (dyn_unpack(sd))
			return -ENOMEM;
		int r = assign_del(&sd->a, (unsigned)sd->ep[e].slot, NULL);
		if (r) {
			(void)dyn_pack(sd);
			return r;
		}
	}
	memmove(&sd->ep[e], &sd->ep[e + 1], (sd->nep - (unsigned)e - 1) * sizeof(*sd->ep));
	sd->nep--;
	sd->changed = true;
	return svc_dyn_settle(sd);
}

struct dnsd_svc_dyn *dnsd_dyn_svc(struct dnsd_dyn *dyn, const struct dns_name *svc)
{
	for (unsigned i = 0; i < dyn->nsvc; i++)
		if (dns_name_eq(&dyn->svc[i].name, svc))
			return &dyn->svc[i];
	return NULL;
}

int dnsd_dyn_set(struct dnsd_dyn *dyn, const struct dns_name *svc, const char *ep, int health,
                 long weight)
{
	if (weight > ASSIGN_MAX_WEIGHT)
		return -EINVAL;
	for (unsigned i = 0; i < dyn->nsvc; i++) {
		struct dnsd_svc_dyn *sd = &dyn->svc[i];
		if (!dns_name_eq(&sd->name, svc))
			continue;
		for (unsigned e = 0; e < sd->nep; e++) {
			if (strcmp(sd->ep[e].id, ep))
				continue;
			if (health >= 0)
				sd->ep[e].healthy = health;
			if (weight >= 0)
				sd->ep[e].weight = (uint32_t)weight;
			sd->changed = true;
			return svc_dyn_settle(sd);
		}
	}
	return -ENOENT;
}

/* ---- building the serving state ---- */

struct builder {
	struct dns_state *st;
	size_t arena_cap;
	unsigned nodes_cap;
	uint32_t *bidx; /* the nodes by name while they are made: node index + 1, 0 empty */
	uint32_t bmask;
	/* which services' records each node carries, in service order: svc * 4 + role */
	int *mhead, *mtail; /* per node: first and last match, -1 none */
	int *mnext;         /* per match */
	uint32_t *mval;
	uint8_t scratch[65535];
	char *err;
	size_t errlen;
};

static uint64_t name_hash(const struct dns_state *st, const struct dns_name *n);

static int bidx_grow(struct builder *b)
{
	uint32_t size = b->bidx ? 2 * (b->bmask + 1) : 64;
	uint32_t *ni = calloc(size, sizeof(*ni));
	if (!ni)
		return -ENOMEM;
	for (unsigned n = 0; n < b->st->nnodes; n++) {
		uint32_t i = (uint32_t)name_hash(b->st, &b->st->nodes[n].name) & (size - 1);
		while (ni[i])
			i = (i + 1) & (size - 1);
		ni[i] = n + 1;
	}
	free(b->bidx);
	b->bidx = ni;
	b->bmask = size - 1;
	return 0;
}

/* The index of the node for name (lower-cased), made if new; -ENOMEM. */
static int node_get(struct builder *b, const struct dns_name *name)
{
	struct dns_state *st = b->st;
	struct dns_name n = *name;
	dns_name_lower(&n);
	if (2 * (st->nnodes + 1) > (b->bidx ? b->bmask + 1 : 0) && bidx_grow(b))
		return -ENOMEM;
	uint32_t i = (uint32_t)name_hash(st, &n) & b->bmask;
	for (; b->bidx[i]; i = (i + 1) & b->bmask) {
		const struct dz_node *x = &st->nodes[b->bidx[i] - 1];
		if (x->name.len == n.len && !memcmp(x->name.wire, n.wire, n.len))
			return (int)b->bidx[i] - 1;
	}
	if (st->nnodes == b->nodes_cap) {
		unsigned nc = b->nodes_cap ? 2 * b->nodes_cap : 16;
		struct dz_node *nv = realloc(st->nodes, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		st->nodes = nv;
		b->nodes_cap = nc;
	}
	struct dz_node *nd = &st->nodes[st->nnodes];
	memset(nd, 0, sizeof(*nd));
	nd->name = n;
	nd->svc = -1;
	b->bidx[i] = st->nnodes + 1;
	return (int)st->nnodes++;
}

/* Adds the node and every empty non-terminal between it and the apex. */
static int node_with_parents(struct builder *b, const struct dns_name *name)
{
	int idx = node_get(b, name);
	if (idx < 0)
		return idx;
	struct dns_name p = *name;
	while (p.len > b->st->zone.len) {
		unsigned l = p.wire[0] + 1u;
		memmove(p.wire, p.wire + l, p.len - l);
		p.len = (uint8_t)(p.len - l);
		if (node_get(b, &p) < 0)
			return -ENOMEM;
	}
	return idx;
}

/* Appends what the writer put after the question to the arena as a node's tail. */
static int tail_save(struct builder *b, struct dns_writer *w, const struct dz_node *nd,
                     struct dz_tail *t)
{
	int len = dns_writer_finish(w);
	if (len < 0)
		return peak_errf(b->err, b->errlen, "an answer does not fit a DNS message");
	size_t start = DNS_HDR_LEN + nd->name.len + 4u;
	size_t n = (size_t)len - start;
	struct dns_state *st = b->st;
	if (st->arena_len + n > b->arena_cap) {
		size_t nc = b->arena_cap ? 2 * b->arena_cap : 4096;
		while (nc < st->arena_len + n)
			nc *= 2;
		uint8_t *na = realloc(st->arena, nc);
		if (!na)
			return -ENOMEM;
		st->arena = na;
		b->arena_cap = nc;
	}
	memcpy(st->arena + st->arena_len, b->scratch + start, n);
	t->off = (uint32_t)st->arena_len;
	t->len = (uint16_t)n;
	t->an = w->counts[DNS_S_ANSWER];
	t->ns = w->counts[DNS_S_AUTHORITY];
	t->ar = w->counts[DNS_S_ADDITIONAL];
	t->present = true;
	st->arena_len += n;
	return 0;
}

static void tail_begin(struct builder *b, struct dns_writer *w, const struct dz_node *nd,
                       uint16_t type)
{
	dns_writer_init(w, b->scratch, sizeof(b->scratch), 0, 0);
	dns_writer_question(w, &nd->name, type, DNS_C_IN);
}

static void write_soa(struct builder *b, struct dns_writer *w, enum dns_section s, uint32_t ttl)
{
	const struct peak_config *c = b->st->cfg;
	dns_writer_rr_begin(w, s, &b->st->zone, DNS_T_SOA, DNS_C_IN, ttl);
	dns_writer_soa_rdata(w, &c->soa);
	dns_writer_rr_end(w);
}

static void write_glue(struct builder *b, struct dns_writer *w, enum dns_section s,
                       const struct dns_name *host)
{
	const struct peak_config *c = b->st->cfg;
	for (unsigned i = 0; i < c->nns; i++) {
		if (!c->ns[i].has_addr || !dns_name_eq(&c->ns[i].name, host))
			continue;
		dns_writer_rr_begin(w, s, &c->ns[i].name, DNS_T_AAAA, DNS_C_IN, c->ttl.ns);
		dns_writer_bytes(w, c->ns[i].addr, 16);
		dns_writer_rr_end(w);
		return;
	}
}

static bool has_glue(const struct peak_config *c, const struct dns_name *host)
{
	for (unsigned i = 0; i < c->nns; i++)
		if (c->ns[i].has_addr && dns_name_eq(&c->ns[i].name, host))
			return true;
	return false;
}

/* leaf.NAME into out; -ENAMETOOLONG when it does not fit a domain name. */
static int svc_leaf(const struct dns_name *name, const char *leaf, struct dns_name *out)
{
	if (dns_name_parse(leaf, out) || out->len - 1u + name->len > DNS_NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(out->wire + out->len - 1, name->wire, name->len);
	out->len = (uint8_t)(out->len - 1 + name->len);
	return 0;
}

static int encode_node(struct builder *b, struct dz_node *nd)
{
	struct dns_state *st = b->st;
	const struct peak_config *c = st->cfg;
	struct dns_writer w;
	int r = 0;
	bool apex = dns_name_eq(&nd->name, &st->zone);

	tail_begin(b, &w, nd, DNS_T_SOA);
	write_soa(b, &w, DNS_S_AUTHORITY, st->neg_ttl);
	if ((r = tail_save(b, &w, nd, &nd->tail[DZ_NODATA])))
		return r;
	if (apex) {
		tail_begin(b, &w, nd, DNS_T_SOA);
		write_soa(b, &w, DNS_S_ANSWER, c->ttl.soa);
		if ((r = tail_save(b, &w, nd, &nd->tail[DZ_SOA])))
			return r;
		tail_begin(b, &w, nd, DNS_T_NS);
		for (unsigned i = 0; i < c->nns; i++) {
			dns_writer_rr_begin(&w, DNS_S_ANSWER, &nd->name, DNS_T_NS, DNS_C_IN,
			                    c->ttl.ns);
			dns_writer_name(&w, &c->ns[i].name, true);
			dns_writer_rr_end(&w);
		}
		for (unsigned i = 0; i < c->nns; i++)
			if (dns_name_under(&c->ns[i].name, &st->zone))
				write_glue(b, &w, DNS_S_ADDITIONAL, &c->ns[i].name);
		if ((r = tail_save(b, &w, nd, &nd->tail[DZ_NS])))
			return r;
	}
	if (has_glue(c, &nd->name)) {
		tail_begin(b, &w, nd, DNS_T_AAAA);
		write_glue(b, &w, DNS_S_ANSWER, &nd->name);
		if ((r = tail_save(b, &w, nd, &nd->tail[DZ_AAAA])))
			return r;
	}
	for (int m = b->mhead[nd - st->nodes]; m >= 0; m = b->mnext[m]) {
		unsigned i = b->mval[m];
		const struct cfg_service *s = &c->svc[i];
		struct dns_name ssa;
		if (dns_name_eq(&s->name, &nd->name)) {
			uint8_t rd[4 + 20 * SSA_MAX_PREFIXES];
			struct apl_item it;
			size_t rl = 0;
			for (unsigned p = 0; p < s->space.n; p++) {
				apl_item_from_prefix(&it, &s->space.pfx[p]);
				int k = apl_write(&it, 1, rd + rl, sizeof(rd) - rl);
				if (k < 0) {
					char name[DNS_NAME_STRLEN];
					dns_name_print(&s->name, name, sizeof(name));
					return peak_errf(b->err, b->errlen,
					                 "service %s: cannot encode its APL: %s",
					                 name, strerror(-k));
				}
				rl += (size_t)k;
			}
			tail_begin(b, &w, nd, DNS_T_APL);
			dns_writer_rr_begin(&w, DNS_S_ANSWER, &nd->name, DNS_T_APL, DNS_C_IN,
			                    c->ttl.apl);
			dns_writer_bytes(&w, rd, rl);
			dns_writer_rr_end(&w);
			if ((r = tail_save(b, &w, nd, &nd->tail[DZ_APL])))
				return r;
			nd->svc = (int)i;
		}
		dns_name_parse("_ssa", &ssa);
		if (ssa.len - 1u + s->name.len <= DNS_NAME_MAX) {
			memcpy(ssa.wire + ssa.len - 1, s->name.wire, s->name.len);
			ssa.len = (uint8_t)(ssa.len - 1 + s->name.len);
		}
		/* the content-type map (typemap.h) beside the descriptor: TXT _types.NAME */
		struct dns_name types;
		if (s->types[0] && svc_leaf(&s->name, "_types", &types) == 0 &&
		    dns_name_eq(&types, &nd->name)) {
			tail_begin(b, &w, nd, DNS_T_TXT);
			dns_writer_rr_begin(&w, DNS_S_ANSWER, &nd->name, DNS_T_TXT, DNS_C_IN,
			                    c->ttl.txt);
			dns_writer_txt_rdata(&w, s->types, strlen(s->types));
			dns_writer_rr_end(&w);
			if ((r = tail_save(b, &w, nd, &nd->tail[DZ_TXT])))
				return r;
			continue;
		}
		if (dns_name_eq(&ssa, &nd->name)) {
			char text[SSA_DESC_STRLEN];
			int tl = ssa_desc_print(&s->space.d, text, sizeof(text));
			tail_begin(b, &w, nd, DNS_T_TXT);
			dns_writer_rr_begin(&w, DNS_S_ANSWER, &nd->name, DNS_T_TXT, DNS_C_IN,
			                    c->ttl.txt);
			dns_writer_txt_rdata(&w, text, (size_t)tl);
			dns_writer_rr_end(&w);
			if ((r = tail_save(b, &w, nd, &nd->tail[DZ_TXT])))
				return r;
		}
	}
	/* RFC 8482: ANY gets one RRset, the first of these the node has. */
	static const enum dz_slot pref[] = {DZ_SOA, DZ_APL, DZ_TXT, DZ_AAAA, DZ_NS};
	nd->tail[DZ_ANY] = nd->tail[DZ_NODATA];
	for (size_t k = 0; k < sizeof(pref) / sizeof(pref[0]); k++)
		if (nd->tail[pref[k]].present) {
			nd->tail[DZ_ANY] = nd->tail[pref[k]];
			break;
		}
	return 0;
}

static uint64_t name_hash(const struct dns_state *st, const struct dns_name *n)
{
	return siphash24(st->hkey, n->wire, n->len);
}

const struct dz_node *dns_state_lookup(const struct dns_state *st, const struct dns_name *n)
{
	uint32_t i = (uint32_t)name_hash(st, n) & st->imask;
	for (uint32_t probe = 0; probe <= st->imask; probe++, i = (i + 1) & st->imask) {
		uint32_t v = st->index[i];
		if (!v)
			return NULL;
		const struct dz_node *nd = &st->nodes[v - 1];
		if (nd->name.len == n->len && !memcmp(nd->name.wire, n->wire, n->len))
			return nd;
	}
	return NULL;
}

static int build_index(struct dns_state *st)
{
	uint32_t size = 16;
	while (size < 2 * st->nnodes)
		size *= 2;
	if (!(st->index = calloc(size, sizeof(*st->index))))
		return -ENOMEM;
	st->imask = size - 1;
	for (unsigned n = 0; n < st->nnodes; n++) {
		uint32_t i = (uint32_t)name_hash(st, &st->nodes[n].name) & st->imask;
		while (st->index[i])
			i = (i + 1) & st->imask;
		st->index[i] = n + 1;
	}
	return 0;
}

static void svc_free(struct dz_svc *v);

/* The endpoint (index into the service's endpoints) of assignment slot, or -1. */
static int32_t slot_ep(const struct dnsd_svc_dyn *sd, int32_t slot)
{
	return slot >= 0 && (unsigned)slot < sd->nslot_ep ? sd->slot_ep[slot] : -1;
}

/* sd's map in segments of one holder: the runs when packed, else slice by slice. Segment i
 * starts at slice *start and is held by endpoint (not slot) returned. i < seg_count(sd). */
static uint32_t seg_count(const struct dnsd_svc_dyn *sd)
{
	return sd->a.owner ? sd->a.nslices : sd->nruns;
}

static int32_t seg_get(const struct dnsd_svc_dyn *sd, uint32_t i, uint32_t *start)
{
	*start = sd->a.owner ? i : sd->run_start[i];
	return slot_ep(sd, sd->a.owner ? sd->a.owner[i] : sd->run_slot[i]);
}

static void builder_free(struct builder *b)
{
	if (!b)
		return;
	free(b->bidx);
	free(b->mhead);
	free(b->mtail);
	free(b->mnext);
	free(b->mval);
	free(b);
}

/* Builds service i's tables from its live state sd into st->svc[i] (a reference held by
 * st). Returns 0 or -errno with the reason in b->err. */
static int build_service(struct builder *b, unsigned i, const struct dnsd_svc_dyn *sd)
{
	struct dns_state *st = b->st;
	const struct cfg_service *s = &st->cfg->svc[i];
	struct dz_svc *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->ref = 1;
	v->index = i;
	st->svc[i] = v;
	char name[DNS_NAME_STRLEN];
	dns_name_print(&s->name, name, sizeof(name));
	v->cfg = s;
	v->space = s->space;
	v->space_nopow = s->space;
	v->space_nopow.d.pow = 0; /* the nonce field stays (w), found by the server's search */
	v->ttl = st->cfg->ttl.aaaa;
	v->answers = s->answers;
	const struct ssa_desc *d = &s->space.d;
	v->slice_by_rule = d->select == SSA_SRC || d->select == SSA_HOP;
	v->binds_src = v->slice_by_rule || d->host == SSA_SRC || d->host == SSA_HOP;
	if (d->select == SSA_HOP || d->host == SSA_HOP) {
		int r = peak_secret_read(s->secret_file, v->secret);
		if (r)
			return peak_errf(
			    b->err, b->errlen,
			    "service %s: cannot read a 32-hex-digit secret from %s: %s", name,
			    s->secret_file, r == -EINVAL ? "not 32 hex digits" : strerror(-r));
		v->has_secret = true;
	}
	unsigned nep = v->nep = sd->nep; /* the file's, then those added at run time */
	v->counter = calloc(nep ? nep : 1, sizeof(*v->counter));
	v->ep_first = calloc(nep + 1, sizeof(*v->ep_first));
	v->ep_nslice = calloc(nep ? nep : 1, sizeof(*v->ep_nslice));
	v->cand_ep = calloc(nep ? nep : 1, sizeof(*v->cand_ep));
	v->cand_cum = calloc(nep ? nep : 1, sizeof(*v->cand_cum));
	if (!v->counter || !v->ep_first || !v->ep_nslice || !v->cand_ep || !v->cand_cum)
		return -ENOMEM;
	for (unsigned e = 0; e < nep; e++)
		if (steer_counter_get(name, sd->ep[e].id, &v->counter[e]))
			return -ENOMEM;
	if (!sd->have_assign)
		return 0;
	v->nslices = sd->a.nslices;
	uint32_t nruns = 0, nseg = seg_count(sd), g;
	int32_t prev = INT32_MIN;
	for (uint32_t k = 0; k < nseg; k++) {
		int32_t e = seg_get(sd, k, &g);
		nruns += e != prev;
		prev = e;
	}
	v->run_start = malloc((nruns ? nruns : 1) * sizeof(*v->run_start));
	v->run_ep = malloc((nruns ? nruns : 1) * sizeof(*v->run_ep));
	v->ep_runs = malloc((nruns ? nruns : 1) * sizeof(*v->ep_runs));
	v->ep_cum = malloc((nruns ? nruns : 1) * sizeof(*v->ep_cum));
	uint32_t *fill = calloc(nep ? nep : 1, sizeof(*fill));
	if (!v->run_start || !v->run_ep || !v->ep_runs || !v->ep_cum || !fill) {
		free(fill);
		return -ENOMEM;
	}
	prev = INT32_MIN;
	for (uint32_t k = 0; k < nseg; k++) {
		int32_t e = seg_get(sd, k, &g);
		if (e != prev) {
			v->run_start[v->nruns] = g;
			v->run_ep[v->nruns++] = e;
			if (e >= 0)
				fill[e]++; /* runs per endpoint, for now */
		}
		prev = e;
	}
	for (uint32_t r = 0; r < v->nruns; r++) {
		uint32_t end = r + 1 < v->nruns ? v->run_start[r + 1] : v->nslices;
		if (v->run_ep[r] >= 0)
			v->ep_nslice[v->run_ep[r]] += end - v->run_start[r];
	}
	for (unsigned e = 0; e < nep; e++) {
		v->ep_first[e + 1] = v->ep_first[e] + fill[e];
		fill[e] = 0;
	}
	for (uint32_t r = 0; r < v->nruns; r++) {
		int32_t e = v->run_ep[r];
		if (e < 0)
			continue;
		uint32_t end = r + 1 < v->nruns ? v->run_start[r + 1] : v->nslices;
		uint32_t k = v->ep_first[e] + fill[e]++;
		v->ep_runs[k] = r;
		v->ep_cum[k] = (k > v->ep_first[e] ? v->ep_cum[k - 1] : 0) + end - v->run_start[r];
	}
	free(fill);
	uint64_t cum = 0;
	for (unsigned e = 0; e < nep; e++)
		if (sd->ep[e].healthy && sd->ep[e].weight && v->ep_nslice[e]) {
			cum += sd->ep[e].weight;
			v->cand_ep[v->ncand] = e;
			v->cand_cum[v->ncand++] = cum;
		}
	/* Nobody healthy: steer by the slices as they are rather than answer nothing. */
	if (!v->ncand)
		for (unsigned e = 0; e < nep; e++)
			if (v->ep_nslice[e]) {
				cum += v->ep_nslice[e];
				v->cand_ep[v->ncand] = e;
				v->cand_cum[v->ncand++] = cum;
			}
	return 0;
}

static void svc_free(struct dz_svc *v)
{
	if (!v || __atomic_sub_fetch(&v->ref, 1, __ATOMIC_ACQ_REL))
		return;
	free(v->run_start);
	free(v->run_ep);
	free(v->ep_runs);
	free(v->ep_cum);
	free(v->ep_first);
	free(v->ep_nslice);
	free(v->cand_ep);
	free(v->cand_cum);
	free(v->counter);
	free(v);
}

static void shared_free(struct dz_shared *sh)
{
	if (!sh || __atomic_sub_fetch(&sh->ref, 1, __ATOMIC_ACQ_REL))
		return;
	free(sh->nodes);
	free(sh->index);
	free(sh->arena);
	config_free(sh->cfg);
	free(sh);
}

void dns_state_free(struct dns_state *st)
{
	if (!st)
		return;
	for (unsigned i = 0; st->svc && i < st->nsvc; i++)
		svc_free(st->svc[i]);
	free(st->svc);
	if (st->shared)
		shared_free(st->shared);
	else { /* a state that failed before it was complete */
		free(st->nodes);
		free(st->index);
		free(st->arena);
	}
	free(st);
}

static uint64_t state_serial;

struct dns_state *dns_state_update(const struct dns_state *old, struct dnsd_dyn *dyn, char *err,
                                   size_t errlen)
{
	struct builder *b = calloc(1, sizeof(*b));
	struct dns_state *st = NULL;
	int r = -ENOMEM;
	if (dyn->nsvc != old->nsvc) {
		snprintf(err, errlen, "the live state does not match the serving state");
		free(b);
		return NULL;
	}
	if (!b || !(st = malloc(sizeof(*st))))
		goto fail;
	*st = *old;
	__atomic_add_fetch(&st->shared->ref, 1, __ATOMIC_ACQ_REL);
	if (!(st->svc = calloc(old->nsvc ? old->nsvc : 1, sizeof(*st->svc))))
		goto fail;
	for (unsigned i = 0; i < old->nsvc; i++)
		if (!dyn->svc[i].changed) {
			st->svc[i] = old->svc[i];
			__atomic_add_fetch(&st->svc[i]->ref, 1, __ATOMIC_ACQ_REL);
		}
	b->st = st;
	b->err = err;
	b->errlen = errlen;
	for (unsigned i = 0; i < old->nsvc; i++)
		if (dyn->svc[i].changed && (r = build_service(b, i, &dyn->svc[i])))
			goto fail;
	for (unsigned i = 0; i < dyn->nsvc; i++)
		dyn->svc[i].changed = false;
	st->serial = ++state_serial;
	builder_free(b);
	return st;
fail:
	if (r == -ENOMEM && err && errlen)
		snprintf(err, errlen, "out of memory building the serving state");
	dns_state_free(st);
	builder_free(b);
	return NULL;
}

struct dns_state *dns_state_build(struct peak_config *cfg, struct dnsd_dyn *dyn, char *err,
                                  size_t errlen)
{
	struct builder *b = calloc(1, sizeof(*b));
	struct dns_state *st = calloc(1, sizeof(*st));
	struct dnsd_dyn nd = {0};
	int r = -ENOMEM;
	if (!b || !st)
		goto fail;
	b->st = st;
	b->err = err;
	b->errlen = errlen;
	st->cfg = cfg;
	st->zone = cfg->zone;
	dns_name_lower(&st->zone);
	st->neg_ttl = cfg->ttl.soa < cfg->soa.minimum ? cfg->ttl.soa : cfg->soa.minimum;
	if (getrandom(st->hkey, sizeof(st->hkey), 0) != (ssize_t)sizeof(st->hkey))
		goto fail;
	if ((r = dyn_sync(dyn, cfg, &nd)))
		goto fail;
	if ((r = node_get(b, &st->zone)) < 0)
		goto fail;
	for (unsigned i = 0; i < cfg->nns; i++)
		if (has_glue(cfg, &cfg->ns[i].name) &&
		    dns_name_under(&cfg->ns[i].name, &st->zone) &&
		    (r = node_with_parents(b, &cfg->ns[i].name)) < 0)
			goto fail;
	/* (node, service) pairs: the nodes that carry each service's records */
	uint32_t *pair = malloc((3 * (size_t)cfg->nsvc + 1) * 2 * sizeof(*pair));
	unsigned npair = 0;
	r = -ENOMEM;
	if (!pair)
		goto fail;
	r = 0; /* (a zone with no services: the loop leaves it so) */
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		struct dns_name ssa;
		dns_name_parse("_ssa", &ssa);
		if ((r = node_with_parents(b, &cfg->svc[i].name)) < 0)
			break;
		pair[2 * npair] = (uint32_t)r;
		pair[2 * npair++ + 1] = i;
		if (ssa.len - 1u + cfg->svc[i].name.len > DNS_NAME_MAX)
			continue; /* no room for the _ssa label: the service gets no TXT */
		memcpy(ssa.wire + ssa.len - 1, cfg->svc[i].name.wire, cfg->svc[i].name.len);
		ssa.len = (uint8_t)(ssa.len - 1 + cfg->svc[i].name.len);
		if ((r = node_get(b, &ssa)) < 0)
			break;
		pair[2 * npair] = (uint32_t)r;
		pair[2 * npair++ + 1] = i;
		if (cfg->svc[i].types[0] && svc_leaf(&cfg->svc[i].name, "_types", &ssa) == 0) {
			if ((r = node_get(b, &ssa)) < 0)
				break;
			pair[2 * npair] = (uint32_t)r;
			pair[2 * npair++ + 1] = i;
		}
	}
	b->mhead = malloc((st->nnodes + 1) * sizeof(*b->mhead));
	b->mtail = malloc((st->nnodes + 1) * sizeof(*b->mtail));
	b->mnext = malloc((npair + 1) * sizeof(*b->mnext));
	b->mval = malloc((npair + 1) * sizeof(*b->mval));
	if (r < 0 || !b->mhead || !b->mtail || !b->mnext || !b->mval) {
		free(pair);
		r = r < 0 ? r : -ENOMEM;
		goto fail;
	}
	for (unsigned n = 0; n < st->nnodes; n++)
		b->mhead[n] = b->mtail[n] = -1;
	for (unsigned m = 0; m < npair; m++) { /* appended in service order */
		uint32_t n = pair[2 * m];
		b->mval[m] = pair[2 * m + 1];
		b->mnext[m] = -1;
		if (b->mtail[n] >= 0)
			b->mnext[b->mtail[n]] = (int)m;
		else
			b->mhead[n] = (int)m;
		b->mtail[n] = (int)m;
	}
	free(pair);
	for (unsigned n = 0; n < st->nnodes; n++)
		if ((r = encode_node(b, &st->nodes[n])))
			goto fail;
	if ((r = build_index(st)))
		goto fail;
	st->svc = calloc(cfg->nsvc ? cfg->nsvc : 1, sizeof(*st->svc));
	if (!st->svc)
		goto fail;
	st->nsvc = cfg->nsvc;
	for (unsigned i = 0; i < cfg->nsvc; i++)
		if ((r = build_service(b, i, &nd.svc[i])))
			goto fail;
	if (!(st->shared = calloc(1, sizeof(*st->shared))))
		goto fail;
	*st->shared = (struct dz_shared){1, cfg, st->arena, st->nodes, st->index};
	st->serial = ++state_serial;
	dnsd_dyn_fini(dyn);
	*dyn = nd;
	builder_free(b);
	return st;
fail:
	dnsd_dyn_fini(&nd);
	if (r == -ENOMEM && err && errlen)
		snprintf(err, errlen, "out of memory building the serving state");
	dns_state_free(st); /* never with shared set: cfg stays the caller's */
	builder_free(b);
	return NULL;
}
