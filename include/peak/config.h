#pragma once
/*
 * The PEAK configuration: one YAML file declaring a zone, its name servers and its services
 * (prefixes, descriptor fields, endpoints). Every key is a row of a schema table with its
 * type, range and default; every error names the file, the line and what is wrong.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/assign.h"
#include "peak/dns.h"
#include "peak/prefix.h"
#include "peak/ssa.h"
#include "peak/typemap.h"

enum {
	CFG_ID_MAX = 64,    /* endpoint ids and node names, with NUL */
	CFG_PATH_MAX = 256, /* secret-file paths, with NUL */
	CFG_MAX_NS = 16,
	CFG_ERRLEN = 512,
	CFG_MAX_FILE_BYTES = 256 << 20, /* 10,000 services of 100 endpoints take ~45 MB */
};

struct cfg_endpoint {
	char id[CFG_ID_MAX];
	uint8_t addr[16]; /* the pod's IPv6 address */
	uint32_t weight;
	char node[CFG_ID_MAX];  /* empty if not given */
	char netns[CFG_ID_MAX]; /* the pod's network namespace, empty if not given */
	unsigned line;
};

struct cfg_service {
	struct dns_name name;
	struct ssa_space space;         /* prefixes and descriptor, validated together */
	char secret_file[CFG_PATH_MAX]; /* hop secret, read by the part that needs it */
	uint32_t port;                  /* service port for health checks and clients */
	uint32_t answers;               /* AAAA answers per response */
	uint32_t rate;  /* filter: packets/s per source /64 before possibly bad (0: no limit) */
	uint32_t burst; /* filter: bucket size in packets (0: one second of rate) */
	struct cfg_endpoint *ep;
	unsigned nep;
	unsigned line;
	char types[TYPEMAP_TEXT_MAX]; /* the content-type map (typemap.h) in canonical text,
	                               * published at _types.NAME; "" when none */
};

struct cfg_ns {
	struct dns_name name;
	uint8_t addr[16];
	bool has_addr;
};

struct cfg_node {
	char name[CFG_ID_MAX];
	uint8_t addr[16];
	bool has_addr;
	char filter_dev[CFG_ID_MAX]; /* interface the agent puts the XDP filter on, or empty */
	unsigned line;
};

struct cfg_ttl {
	uint32_t soa, ns, apl, txt, aaaa;
};

struct peak_config {
	struct dns_name zone;
	struct dns_soa soa;
	struct cfg_ns ns[CFG_MAX_NS];
	unsigned nns;
	struct cfg_ttl ttl;
	struct cfg_node *nodes;
	unsigned nnodes;
	struct cfg_service *svc;
	unsigned nsvc;
};

/* Parses a configuration from a buffer; name is used in messages. Returns 0 and a config
 * to free with config_free, or -EINVAL with "NAME:LINE: reason" in err. */
int config_parse(const char *name, const uint8_t *buf, size_t len, struct peak_config **out,
                 char *err, size_t errlen);

/* Reads and parses a file (at most CFG_MAX_FILE_BYTES). Returns as config_parse, or
 * -errno with the reason in err when the file cannot be read. */
int config_load(const char *path, struct peak_config **out, char *err, size_t errlen);

void config_free(struct peak_config *c);

/* The initial slice assignment of a service, as every part computes it: endpoints ordered
 * by id hold consecutive ranges by weight (assign_init). slot[e] (s->nep entries) gets the
 * assignment slot of s->ep[e]. Returns 0, -E2BIG (more slices than an assignment holds),
 * -ENOENT (no endpoints), -EINVAL (every weight is 0) or -ENOMEM. */
int config_service_assign(const struct cfg_service *s, struct assign *a, int *slot);

/* The service with this name (case-insensitive), or NULL. */
const struct cfg_service *config_service(const struct peak_config *c, const struct dns_name *n);
