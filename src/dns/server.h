#pragma once
/* peak dns: the authoritative, steering DNS server's event loops. */
#include <stdbool.h>
#include <sys/socket.h>

enum { DNSD_MAX_LISTEN = 16 };

struct dnsd_opts {
	const char *config;
	struct sockaddr_storage listen[DNSD_MAX_LISTEN];
	socklen_t listen_len[DNSD_MAX_LISTEN];
	unsigned nlisten;
	unsigned threads;     /* UDP workers */
	const char *control;  /* Unix socket path, or NULL */
	const char *metrics;  /* ADDR:PORT, or NULL */
	unsigned tcp_idle_ms; /* close idle TCP connections after this */
	unsigned tcp_max;     /* simultaneous TCP connections */
};

/* Loads the configuration, binds, serves until SIGINT or SIGTERM. Returns 0 on a clean
 * stop, 1 when the configuration or a socket could not be set up (the reason logged). */
int dnsd_run(const struct dnsd_opts *o);

/* Sends one command line to a running server's control socket and prints the reply.
 * Returns 0 if the server answered "ok", 1 if it answered an error, 2 if it could not be
 * reached. */
int dnsd_ctl(const char *path, const char *line);
