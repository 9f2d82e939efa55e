#pragma once
/* peak dns: the authoritative, steering DNS server's event loops. */
#include <stdbool.h>
#include <sys/socket.h>

enum { DNSD_MAX_LISTEN = 16 };

struct kube_opts;

struct dnsd_opts {
	const char *config;
	struct sockaddr_storage listen[DNSD_MAX_LISTEN];
	socklen_t listen_len[DNSD_MAX_LISTEN];
	unsigned nlisten;
	unsigned threads;             /* UDP workers */
	const char *control;          /* Unix socket path, or NULL */
	unsigned control_mode;        /* its permission bits (default 0660) */
	long control_group;           /* its group id, or -1 to keep ours */
	const char *metrics;          /* ADDR:PORT, or NULL */
	unsigned tcp_idle_ms;         /* close TCP connections idle this long, or whose query (or
	                               * answer) has not gone through whole this long after it began */
	unsigned tcp_max;             /* simultaneous TCP connections */
	const char *etcd;             /* --store etcd: follow the stored state there (follow.h) */
	const char *etcd_prefix;      /* its keys' prefix (NULL: "/peak/") */
	const struct kube_opts *kube; /* --store kubernetes: follow the ConfigMap (follow.h) */
	const char *kube_namespace;   /* its namespace (NULL: the service account's) */
	const char *kube_cm;          /* its name (NULL: peak-controller) */
	const struct kube_opts *source_kube; /* --source kubernetes: services from the API
	                                      * (kube.h), the file giving the zone, or NULL */
};

/* Loads the configuration, binds, serves until SIGINT or SIGTERM. Returns 0 on a clean
 * stop, 2 when the configuration is invalid or unreadable, 1 when anything else failed (a
 * socket, the control socket, a thread); the reason is logged. */
int dnsd_run(const struct dnsd_opts *o);
