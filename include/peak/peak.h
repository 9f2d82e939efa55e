#pragma once
/*
 * libpeak client API: turn a service name into the destination addresses the service's
 * SSA rule gives this client (SPEC.md), and connect to them with Happy Eyeballs timing.
 * The library never prints; errors are negative codes, explained by peak_strerror().
 *
 *	struct peak_resolver *r = peak_resolver_new(NULL, &err);
 *	int fd = peak_connect(r, "api.svc.example.", NULL, 443, 0, &used);
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/typemap.h"

enum {
	PEAK_MAX_SERVERS = 4,
	PEAK_MAX_CANDIDATES = 16,
	PEAK_DESC_MAX = 512,
};

/* Errors, by the step that failed (besides negative errno values for system errors). */
enum peak_error {
	PEAK_E_CONFIG = -2001,   /* bad resolver options or no usable name server */
	PEAK_E_TIMEOUT = -2002,  /* DNS: no server answered in time */
	PEAK_E_NXDOMAIN = -2003, /* DNS: the name does not exist */
	PEAK_E_NODATA = -2004,   /* DNS: the name has neither SSA records nor AAAA */
	PEAK_E_SERVFAIL = -2005, /* DNS: the server failed or refused the query */
	PEAK_E_BADREPLY = -2006, /* DNS: a reply that does not parse or does not match */
	PEAK_E_APL = -2007,      /* APL with negated or IPv4 items, or unequal lengths */
	PEAK_E_DESC = -2008,     /* the descriptor is invalid, or invalid for the prefixes */
	PEAK_E_SECRET = -2009,   /* a hop service, and no secret was given */
	PEAK_E_OBJECT = -2010,   /* select=obj needs an object key */
	PEAK_E_NOROUTE = -2011,  /* no source address toward the service */
	PEAK_E_POW = -2012,      /* the proof of work found no nonce */
	PEAK_E_CONNECT = -2013,  /* every connection attempt failed or timed out */
	PEAK_E_POW_TIME = -2014, /* the proof of work did not finish within the timeout */
	PEAK_E_NOTFOUND = -2015, /* store: no replica has the object */
	PEAK_E_REFUSED = -2016,  /* store: refused (too large, misdirected; see last_detail) */
	PEAK_E_REPLICAS = -2017, /* store: too few replicas stored, or could be reached */
	PEAK_E_TYPES = -2018,    /* the content-type map (_types.NAME) is invalid */
};

struct peak_resolver_opts {
	/* Name servers as "ADDR", "IPV4:PORT" or "[IPV6]:PORT"; none: those of resolv_conf. */
	const char *servers[PEAK_MAX_SERVERS];
	const char *resolv_conf; /* NULL: /etc/resolv.conf */
	unsigned timeout_ms;     /* per DNS attempt, and for the proof of work (0: 1000) */
	unsigned attempts;       /* UDP attempts per server (0: 2) */
	bool no_tcp;             /* do not retry a truncated answer over TCP */
	uint16_t udp_size;       /* EDNS buffer size (0: 1232; below 512: no EDNS) */
	const uint8_t *secret;   /* 16-byte secret of hop services, or NULL; copied */
	unsigned replicas;       /* select=obj: further replicas offered (0: 2) */
	unsigned cache_entries;  /* answers cached for their TTL (0: 256) */
	/* Compute for and send from this source (NULL: what the kernel picks toward the
	 * service); copied. */
	const struct in6_addr *source;
	/* peak_connect: the next candidate's attempt starts this long after the last one
	 * unless that failed first (0: 250; RFC 8305 section 5 bounds it to 100..2000).
	 * Added last: programs built against an older header must be rebuilt. */
	unsigned attempt_delay_ms;
};

/* Which rule produced a candidate. */
enum peak_origin {
	PEAK_ORIGIN_RULE,    /* the rule's address: fanout index 0, replica 0 */
	PEAK_ORIGIN_FANOUT,  /* another fanout index */
	PEAK_ORIGIN_REPLICA, /* another replica of the object */
	PEAK_ORIGIN_RANDOM,  /* a rand rule: another draw */
	PEAK_ORIGIN_AAAA,    /* no SSA records: an AAAA record */
};

struct peak_candidate {
	struct sockaddr_in6 dst; /* with the port */
	struct sockaddr_in6 src; /* the source to bind; :: (any) for AAAA candidates */
	enum peak_origin origin;
	uint8_t index;   /* fanout index */
	uint8_t replica; /* object replica */
};

struct peak_result {
	struct peak_candidate cand[PEAK_MAX_CANDIDATES]; /* best first */
	unsigned n;
	bool ssa;                       /* computed by an SSA rule (false: AAAA fallback) */
	char descriptor[PEAK_DESC_MAX]; /* the descriptor used, if ssa */
};

/* Creates a resolver; opts may be NULL for the defaults. Returns NULL with *err set. */
struct peak_resolver *peak_resolver_new(const struct peak_resolver_opts *opts, int *err);

/* Frees a resolver and forgets its secret. */
void peak_resolver_free(struct peak_resolver *r);

/* Changes the source later resolves compute for and send from (NULL: what the kernel
 * picks), as opts->source does; cached answers are kept, so many emulated clients can share
 * one resolver. */
void peak_resolver_set_source(struct peak_resolver *r, const struct in6_addr *source);

/* Resolves name (an absolute or relative domain name) for an optional object key and a
 * port: queries APL NAME and TXT _ssa.NAME in parallel (answers cached for their TTL),
 * validates them (SPEC.md 2, 3), finds the source address the kernel uses toward the
 * service (remembered per prefix for a second, forgotten when a connect of peak_connect or
 * the store calls fails) and computes the candidates for it: the rule's address first, then other
 * fanout indexes or replicas. With no APL or no descriptor it uses the name's AAAA records.
 * Proof-of-work addresses are cached per source and epoch; the search for them gets
 * timeout_ms in all (the candidates found by then are kept; none: PEAK_E_POW_TIME). Returns
 * 0 or a negative error. */
int peak_resolve(struct peak_resolver *r, const char *name, const char *object, uint16_t port,
                 struct peak_result *out);

/* Resolves, then connects a TCP socket with Happy Eyeballs timing (RFC 8305): each attempt
 * bound to its candidate's source, the next one started 250 ms later or as soon as the
 * previous fails. timeout_ms bounds the whole connect (0: 5000). Returns the connected
 * socket (blocking mode) and, if used is not NULL, the candidate that connected; or a
 * negative error saying which step failed. */
int peak_connect(struct peak_resolver *r, const char *name, const char *object, uint16_t port,
                 unsigned timeout_ms, struct peak_candidate *used);

/* Reads the content-type map of name: the TXT record at _types.NAME (typemap.h; cached for
 * its TTL like the other answers) into m. Entries naming "@" are left as they are (they mean
 * name itself). Returns 0, PEAK_E_NODATA (no map published) or another negative error; for
 * PEAK_E_TYPES peak_last_detail() says what is wrong with the map. */
int peak_resolve_types(struct peak_resolver *r, const char *name, struct typemap *m);

/* The system error behind the last PEAK_E_CONNECT or PEAK_E_NOROUTE (0 if none). */
int peak_last_errno(const struct peak_resolver *r);

/* Details of the last error, e.g. why a descriptor is invalid ("" if none). */
const char *peak_last_detail(const struct peak_resolver *r);

/* A message for an error code (peak's or -errno). */
const char *peak_strerror(int err);

/* The name of an origin ("rule", "fanout", "replica", "random", "aaaa"). */
const char *peak_origin_name(enum peak_origin o);

/*
 * Object store calls, for select=obj services served by `peak store serve` (README "Object
 * store"): resolve name for the key, then walk the key's replica addresses (replicas=R in
 * the rule: a put is acknowledged by a majority of R distinct pods, a get reads from the
 * first that has the object, a delete reaches all R). Bodies stream, of any size. Each
 * returns 0 or a negative error: the resolver's, PEAK_E_NOTFOUND, PEAK_E_REFUSED,
 * PEAK_E_REPLICAS or -errno; peak_last_detail says more.
 */
struct peak_store_opts {
	uint16_t port;       /* the service port (0: 80) */
	unsigned timeout_ms; /* each connect, send and receive (0: 5000) */
	/* called with a line per replica tried (what a CLI's --verbose shows), or NULL */
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
	/* a connection per request; by default the resolver keeps connections to the pods
	 * and reuses them for later calls of the same source (to the pod the address leads
	 * to, learned from its X-Peak-Routes), as long as the pod keeps them */
	bool no_keepalive;
};

/* Stores the contents of fd (a regular file, read from offset 0 with sendfile, or any
 * readable fd, copied first to an unnamed temp file) as key's object; o may be NULL. */
int peak_store_put(struct peak_resolver *r, const char *name, const char *key, int fd,
                   const struct peak_store_opts *o);

/* Stores buf[0..len) as key's object; o may be NULL. */
int peak_store_put_buf(struct peak_resolver *r, const char *name, const char *key, const void *buf,
                       size_t len, const struct peak_store_opts *o);

/* Writes key's object to fd as it arrives. A reply cut short is fetched again from the
 * next replica if fd is seekable (it is truncated back), else it fails. */
int peak_store_get(struct peak_resolver *r, const char *name, const char *key, int fd,
                   const struct peak_store_opts *o);

/* Reads key's object into a new malloc'd buffer (*out, length *len; free it); an object
 * over max bytes fails with -EFBIG. */
int peak_store_get_buf(struct peak_resolver *r, const char *name, const char *key, void **out,
                       size_t *len, size_t max, const struct peak_store_opts *o);

/* Deletes key's object from every replica; PEAK_E_NOTFOUND if none had it. */
int peak_store_delete(struct peak_resolver *r, const char *name, const char *key,
                      const struct peak_store_opts *o);
