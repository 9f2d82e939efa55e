#pragma once
/*
 * The engine of peak load: HTTP/1.1 requests from many emulated clients, each with its own
 * source and destination address, closed loop (a fixed number of connections, each sending
 * its next request when the previous one is answered) or open loop (a fixed rate, latency
 * counted from when each request was due, so a stalled server is not hidden).
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "peak/hist.h"

/* What went wrong with one attempt. */
enum load_err {
	LOAD_E_REFUSED,  /* connect: refused (the port is closed: RST) */
	LOAD_E_CONNECT,  /* connect: unreachable, no route, no address */
	LOAD_E_RESET,    /* the connection was reset after it was set up */
	LOAD_E_EOF,      /* closed before the response was complete */
	LOAD_E_TIMEOUT,  /* no complete response within the timeout */
	LOAD_E_HTTP,     /* the response does not parse (or is chunked) */
	LOAD_E_STATUS,   /* a status other than 2xx */
	LOAD_E_OVERLOAD, /* open loop: a client's queue of due requests overflowed */
	LOAD_E_COUNT,
};

enum { LOAD_MAX_DST = 4 };

/* One emulated client: where it sends from (:: lets the kernel pick) and to: dst[0] first,
 * a retry to the next one in turn (e.g. a service's other fanout addresses). */
struct load_client {
	struct sockaddr_in6 src, dst[LOAD_MAX_DST];
	unsigned ndst; /* 1..LOAD_MAX_DST */
};

struct load_opts {
	const struct load_client *clients;
	unsigned nclients;
	unsigned concurrency;    /* closed loop: connections (0: open loop, one per client) */
	double rate;             /* open loop: requests per second over all clients */
	double duration_s;       /* how long requests are started */
	unsigned threads;        /* event loops (clients are dealt out among them) */
	bool new_conn;           /* a new connection per request (else keep-alive) */
	unsigned timeout_ms;     /* per attempt */
	unsigned retries;        /* further attempts after a connection-level failure */
	unsigned retry_delay_ms; /* wait before each further attempt (0: at once) */
	const char *request;     /* the request bytes, sent as they are */
	bool head;               /* the request is a HEAD (responses have no body) */
	unsigned timeline_ms;    /* width of the timeline's intervals */
	bool progress;           /* a line on stderr every second */
};

/* Service gaps as clients see them: from the start of a connection's (closed loop) or
 * client's (open loop) first failed request to the end of its next successful one. */
struct load_outage {
	unsigned still_down; /* connections (closed loop) or clients still in a gap at the end */
	struct hist gap;     /* ns */
	double first_fail_s, last_fail_s; /* completion times of failed requests, from start */
};

/* One failed attempt (the first LOAD_FAIL_LOG of a run, by when they failed), to read a
 * failure against what the cluster did then: which connection slot and client, which of
 * the client's destinations, which try of its request. */
enum { LOAD_FAIL_LOG = 256 };
struct load_fail {
	uint64_t start_ns, end_ns; /* the attempt's start and failure, from the run's start */
	unsigned slot, client;     /* the connection slot; the client (index into clients) */
	uint8_t dst_index, try_no; /* the client's destination; 1 first attempt, 2 first retry */
	uint8_t err;               /* enum load_err */
};

struct load_result {
	struct hist latency; /* ns, successful requests */
	uint64_t sent;       /* requests started (first attempts) */
	uint64_t ok, failed; /* requests: succeeded, failed after every retry */
	uint64_t retried;    /* further attempts made */
	uint64_t unfinished; /* in flight when the run ended (neither ok nor failed) */
	uint64_t connections;
	uint64_t err[LOAD_E_COUNT]; /* per attempt */
	double elapsed_s, cpu_s;    /* wall time of the run; CPU seconds of this process */
	unsigned timeline_n;        /* intervals */
	uint64_t *timeline_ok, *timeline_failed; /* per interval, by completion time */
	struct load_outage outage;
	double start_unix;       /* wall clock at the run's start (seconds since the epoch) */
	struct load_fail *fails; /* the first failed attempts, by failure time */
	unsigned nfails;         /* entries in fails (at most LOAD_FAIL_LOG) */
	uint64_t fails_dropped;  /* failed attempts beyond those */
};

/* Runs the load and fills res (whose timeline arrays the caller frees with
 * load_result_fini). Returns 0, or -errno if the threads or event loops could not start. */
int load_run(const struct load_opts *o, struct load_result *res);

/* Frees what load_run allocated in res. */
void load_result_fini(struct load_result *res);

/* The short name of an error kind ("refused", "connect", ...). */
const char *load_err_name(enum load_err e);

/* A legacy client's lookup, as a stub resolver on the client's own host makes it: one AAAA
 * query for name (RD set), sent from src (NULL or ::: the kernel's choice) to server over
 * UDP, up to 3 tries of timeout_ms each. The answer's AAAA records of name, in order, go to
 * out (at most max); *ttl gets their least TTL. No SSA computation: the addresses are what
 * the server's steering chose. Returns how many were written (at least 1), -ENOENT (an error
 * rcode, or no AAAA), -EMSGSIZE (truncated), -ETIMEDOUT, -EINVAL (not a name) or -errno. */
int load_aaaa_lookup(const struct sockaddr_in6 *server, const struct in6_addr *src,
                     const char *name, unsigned timeout_ms, struct in6_addr *out, unsigned max,
                     uint32_t *ttl);
