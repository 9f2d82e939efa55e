/* peak plan: a configuration's slice assignment, its balance and routes, and what
 * adding or removing endpoints moves. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "peak/assign.h"
#include "peak/config.h"

static const char plan_help[] =
    "usage: peak plan --config FILE [--service NAME] [--remove ID ...] [--add ID[:WEIGHT] ...]\n"
    "                 [--summary]\n"
    "\n"
    "Prints, per service, each endpoint's slice count, share and routes after aggregation,\n"
    "the max/min ratio of slices per unit of weight, and the total number of routes. The\n"
    "initial map orders endpoints by id, so it does not depend on their order in the file.\n"
    "--remove and --add (repeatable, applied in the order given) show how many slices each\n"
    "change moves, against the least any assignment must move, and the table after them.\n"
    "\n"
    "  --config FILE   the PEAK YAML configuration\n"
    "  --service NAME  only this service\n"
    "  --remove ID     remove an endpoint\n"
    "  --add ID[:W]    add an endpoint with weight W (default 1)\n"
    "  --summary       print only the summary lines, not one line per endpoint\n";

enum { MAX_CHANGES = 64 };

struct change {
	bool add;
	char id[CFG_ID_MAX];
	uint32_t weight;
};

struct plan_ep {
	char id[CFG_ID_MAX];
	int slot;
};

static int ep_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cfg_endpoint *)a)->id, ((const struct cfg_endpoint *)b)->id);
}

static void print_table(const struct assign *a, const struct plan_ep *eps, unsigned n, bool summary)
{
	double maxr = 0, minr = 0;
	size_t routes = 0, maxroutes = 0;
	unsigned live = 0;
	if (!summary)
		printf("  %-20s %8s %8s %8s %7s\n", "endpoint", "weight", "slices", "share",
		       "routes");
	for (unsigned i = 0; i < n; i++) {
		const struct assign_ep *e = &a->ep[eps[i].slot];
		if (!e->live)
			continue;
		live++;
		size_t r = assign_routes(a, (unsigned)eps[i].slot);
		routes += r;
		if (r > maxroutes)
			maxroutes = r;
		if (e->weight) {
			double ratio = (double)e->count / e->weight;
			if (!maxr || ratio > maxr)
				maxr = ratio;
			if (!minr || ratio < minr)
				minr = ratio;
		}
		if (!summary)
			printf("  %-20s %8u %8u %7.3f%% %7zu\n", eps[i].id, e->weight, e->count,
			       100.0 * e->count / a->nslices, r);
	}
	printf("  balance: %u endpoints, max/min slices per weight %.4f; routes: %zu in all, "
	       "%zu at most per endpoint\n",
	       live, minr > 0 ? maxr / minr : 0.0, routes, maxroutes);
}

static int plan_service(const struct cfg_service *s, const struct change *ch, unsigned nch,
                        bool summary)
{
	char name[DNS_NAME_STRLEN];
	struct assign a;
	struct plan_ep *eps = NULL;
	struct cfg_endpoint *sorted = NULL;
	int *slots = NULL;
	unsigned n = s->nep, cap = s->nep + nch;
	int ret = EXIT_USAGE;

	dns_name_print(&s->name, name, sizeof(name));
	printf("service %s: %llu slices (/%u in %u prefix%s), %u endpoints\n", name,
	       (unsigned long long)s->space.nslices, s->space.d.slice, s->space.n,
	       s->space.n == 1 ? "" : "es", s->nep);
	if (s->space.nslices > ASSIGN_MAX_SLICES) {
		fprintf(stderr,
		        "peak plan: %s: %llu slices, more than the %d an assignment holds\n", name,
		        (unsigned long long)s->space.nslices, ASSIGN_MAX_SLICES);
		return EXIT_USAGE;
	}
	if (!n) {
		printf("  no endpoints\n");
		return 0;
	}
	sorted = malloc(n * sizeof(*sorted));
	eps = calloc(cap, sizeof(*eps));
	slots = malloc(n * sizeof(*slots));
	if (!sorted || !eps || !slots) {
		fprintf(stderr, "peak plan: out of memory\n");
		goto out;
	}
	memcpy(sorted, s->ep, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), ep_cmp); /* print in id order */
	for (unsigned i = 0; i < n; i++)
		memcpy(eps[i].id, sorted[i].id, CFG_ID_MAX);
	if (config_service_assign(s, &a, slots)) {
		fprintf(stderr, "peak plan: %s: every endpoint has weight 0\n", name);
		goto out;
	}
	for (unsigned e = 0; e < n; e++)
		for (unsigned i = 0; i < n; i++)
			if (!strcmp(eps[i].id, s->ep[e].id))
				eps[i].slot = slots[e];
	print_table(&a, eps, n, summary);
	for (unsigned c = 0; c < nch; c++) {
		uint32_t moved = 0;
		int found = -1;
		for (unsigned i = 0; i < n; i++)
			if (!strcmp(eps[i].id, ch[c].id) && a.ep[eps[i].slot].live)
				found = (int)i;
		if (ch[c].add) {
			if (found >= 0) {
				fprintf(stderr, "peak plan: --add %s: endpoint exists\n", ch[c].id);
				goto fini;
			}
			int slot = assign_add(&a, ch[c].weight, &moved);
			if (slot < 0) {
				fprintf(stderr, "peak plan: --add %s: cannot add\n", ch[c].id);
				goto fini;
			}
			memcpy(eps[n].id, ch[c].id, CFG_ID_MAX);
			eps[n++].slot = slot;
			printf(
			    "add %s (weight %u): %u slices moved (%.3f%%); the least possible is "
			    "what it receives: %u\n",
			    ch[c].id, ch[c].weight, moved, 100.0 * moved / a.nslices,
			    a.ep[slot].count);
		} else {
			if (found < 0) {
				fprintf(stderr, "peak plan: --remove %s: no such endpoint\n",
				        ch[c].id);
				goto fini;
			}
			uint32_t held = a.ep[eps[found].slot].count;
			if (assign_del(&a, (unsigned)eps[found].slot, &moved)) {
				fprintf(stderr,
				        "peak plan: --remove %s: it is the last endpoint "
				        "with weight\n",
				        ch[c].id);
				goto fini;
			}
			printf("remove %s: %u slices moved (%.3f%%); the least possible is what it "
			       "held: %u\n",
			       ch[c].id, moved, 100.0 * moved / a.nslices, held);
		}
		print_table(&a, eps, n, summary);
	}
	ret = 0;
fini:
	assign_fini(&a);
out:
	free(sorted);
	free(eps);
	free(slots);
	return ret;
}

int cmd_plan(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, 0, 'c'},
	    {"service", required_argument, 0, 's'},
	    {"remove", required_argument, 0, 'r'},
	    {"add", required_argument, 0, 'a'},
	    {"summary", no_argument, 0, 'S'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	const char *path = NULL, *only = NULL;
	struct change ch[MAX_CHANGES];
	unsigned nch = 0;
	bool summary = false;
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 's':
			only = optarg;
			break;
		case 'r':
		case 'a': {
			if (nch == MAX_CHANGES)
				cli_usage_error("plan", "more than %d changes", MAX_CHANGES);
			struct change *x = &ch[nch++];
			char *colon = strchr(optarg, ':');
			size_t idlen = colon ? (size_t)(colon - optarg) : strlen(optarg);
			x->add = c == 'a';
			x->weight = 1;
			if (!idlen || idlen >= CFG_ID_MAX)
				cli_usage_error("plan", "bad endpoint id '%s'", optarg);
			memcpy(x->id, optarg, idlen);
			x->id[idlen] = '\0';
			if (colon && !x->add)
				cli_usage_error("plan", "--remove takes an id, not '%s'", optarg);
			if (colon)
				x->weight = (uint32_t)cli_u64("plan", "--add weight", colon + 1, 1,
				                              ASSIGN_MAX_WEIGHT);
			break;
		}
		case 'S':
			summary = true;
			break;
		case 'h':
			fputs(plan_help, stdout);
			return 0;
		default:
			cli_usage_error("plan", "unknown or incomplete option '%s' (see --help)",
			                argv[optind - 1]);
		}
	}
	if (optind < argc)
		cli_usage_error("plan", "unexpected argument '%s'", argv[optind]);
	if (!path)
		cli_usage_error("plan", "--config is required");

	struct peak_config *cfg;
	char err[CFG_ERRLEN];
	if (config_load(path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "peak plan: %s\n", err);
		return EXIT_USAGE;
	}
	int ret = 0;
	bool any = false;
	struct dns_name want;
	if (only && dns_name_parse(only, &want)) {
		config_free(cfg);
		cli_usage_error("plan", "--service: '%s' is not a domain name", only);
	}
	for (unsigned i = 0; i < cfg->nsvc && !ret; i++) {
		if (only && !dns_name_eq(&cfg->svc[i].name, &want))
			continue;
		any = true;
		ret = plan_service(&cfg->svc[i], ch, nch, summary);
	}
	if (only && !any) {
		fprintf(stderr, "peak plan: no service '%s' in %s\n", only, path);
		ret = EXIT_USAGE;
	}
	config_free(cfg);
	return ret;
}
