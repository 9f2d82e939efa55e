#pragma once
/*
 * peak store: a content-addressed object store on SSA (issue 20). A pod serves HTTP/1.1 on
 * every address of its service's slices (AnyIP) and keeps the objects whose key hashes
 * (select=obj, replica 0) into a slice the configuration's initial assignment gives it; the
 * client computes the address from the key and goes straight there.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum {
	/* The client frames replies with src/lib/http.c, which refuses bodies over
	 * HTTP_BODY_MAX (16 MiB): a larger default would store what peak store get cannot
	 * fetch. */
	STORE_DEF_MAX_BODY = 16 << 20,
	STORE_DEF_MAX_CONNS = 1024,
	STORE_DEF_TIMEOUT_MS = 10000,
	/* A request or response may take its timeout plus its bytes at this rate (bytes per
	 * millisecond, 64 KB/s), so a slow client is cut off however it trickles. */
	STORE_MIN_RATE_BPMS = 64,
};

struct store_opts {
	const char *config; /* the PEAK configuration file */
	const char *id;     /* this pod's endpoint id in it */
	const char *data;   /* the data directory (created if missing) */
	struct sockaddr_storage listen;
	socklen_t listen_len; /* 0: [::] on the service's port */
	uint64_t max_body;
	unsigned max_conns;
	unsigned timeout_ms;
};

/* Serves until SIGINT or SIGTERM (SIGHUP is logged and ignored). Returns 0, 1 if the pod
 * could not start (port, data directory), or 2 for a bad configuration or id. */
int store_serve(const struct store_opts *o);

/* The on-disk name of key's object in slice g: "SSSSSSSS-" and the SHA-256 of the key in
 * hex (so no key can name a path; the slice prefix lists a slice's objects). */
void store_object_name(uint64_t g, const uint8_t *key, size_t len, char out[static 80]);
