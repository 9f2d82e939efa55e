#pragma once
/*
 * peak controller: the source of truth for slice assignments. Agents connect over TCP and
 * speak lines:
 *   agent -> controller   "hello NODE", "health SERVICE ENDPOINT up|down",
 *                         "load SERVICE ENDPOINT CONNECTIONS CPU_NANOSECONDS"
 *   controller -> agent   "map SERVICE", then "ep ID START/LOG2 ..." per endpoint holding
 *                         slices, then "end": the whole map of one service
 * A health change moves only the slices it must (assign_del / assign_add), is sent to every
 * agent and, with --dns-control, to peak dns.
 */
struct controller_opts {
	const char *config;
	const char *listen;      /* ADDR:PORT */
	const char *dns_control; /* peak dns control socket, or NULL */
	const char *metrics;     /* Prometheus endpoint ADDR:PORT, or NULL */
};

/* Serves until SIGINT or SIGTERM. Returns 0, or 1 on a configuration or socket error. */
int controller_run(const struct controller_opts *o);
