#pragma once
/*
 * Live assignment: a pod started with --controller learns its service's slice map from the
 * controller, as a node agent does (peak/ctlproto.h: challenge, hello NODE [TAG NONCE],
 * welcome with a key; then map SERVICE, ep ID START/LOG2 ..., end after every change). It
 * sends nothing after its hello: it reports no health and no load, so the controller counts
 * it as an agent of node NODE with no endpoints. A thread keeps the link (with several
 * addresses, the next at once when one fails or its link is lost; STORE_CTL_RETRY_MS after
 * a round where every one failed) and hands each complete map of the
 * pod's service to the event loop, which moves to it (server.c: a slice the pod gained is
 * pulled from its old owner, and read through until then).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "peak/config.h"
#include "peak/ctlauth.h"
#include "../sys/log.h"

enum {
	STORE_CTL_RETRY_MS = 500, /* the wait after a round of every address failing */
	STORE_CTLS_MAX = 8,       /* addresses in --controller */
	STORE_CTL_ADDR_MAX = 80,  /* bytes of one, with its NUL */
};

struct store_ctl {
	/* set before store_ctl_start; read-only while it runs */
	const char *addr; /* the controllers' ADDR:PORT, comma-separated (checked: 1..8) */
	const struct ctlauth_key *key; /* the key shared with it, or NULL */
	const char *node;              /* the node name the hello carries */
	const struct cfg_service *svc; /* the pod's service */
	uint32_t nslices;              /* its slice count */
	/* the latest complete map not yet taken: per slice the owning endpoint's index in
	 * svc->ep, or -1 (malloc'ed; NULL when none is waiting) */
	pthread_mutex_t mu;
	int32_t *map;
	int efd; /* readable while a map waits */
	atomic_uint_fast64_t maps, links;
	struct log_limit rl; /* a controller that refuses every link is logged once a second */
	atomic_bool stop;
	pthread_t thread;
	bool started;
};

/* Starts the link's thread (signals must already be blocked). Returns 0 or -errno. */
int store_ctl_start(struct store_ctl *c);

/* Takes the waiting map (the caller frees it), or NULL; clears the eventfd. */
int32_t *store_ctl_take(struct store_ctl *c);

/* Stops the thread (within STORE_CTL_RETRY_MS) and frees what it holds. Safe when never
 * started. */
void store_ctl_stop(struct store_ctl *c);
