/* peak agent: what its metrics endpoint shows. */
#include "internal.h"

#include <stdlib.h>

#include "../filter/loader.h"

/* A Prometheus label value: backslash, double quote and newline escaped (exposition
 * format), whatever the configuration let through. */
static void label_print(struct mbuf *b, const char *v)
{
	char out[2 * DNS_NAME_STRLEN + 1];
	size_t n = 0;
	for (; *v && n + 2 < sizeof(out); v++) {
		if (*v == '\\' || *v == '"' || *v == '\n')
			out[n++] = '\\';
		out[n++] = *v == '\n' ? 'n' : *v;
	}
	out[n] = '\0';
	mbuf_printf(b, "%s", out);
}

enum ep_metric {
	EP_HEALTHY,
	EP_CONNS,
	EP_CPU,
	EP_SLICES,
	EP_THROTTLED,
	EP_QUEUED,
	EP_BACKLOG,
	EP_APP
};

/* One sample of metric per local endpoint, labelled by service and endpoint id. The caller
 * holds st->lock. */
static void per_endpoint(struct mbuf *b, const struct agent_stats *st, const char *metric,
                         enum ep_metric m)
{
	for (unsigned k = 0; st->cfg && k < st->n; k++) {
		if (m == EP_APP && st->app[k] == UINT64_MAX)
			continue; /* (the pod publishes no figure) */
		char name[DNS_NAME_STRLEN];
		const struct cfg_service *s = &st->cfg->svc[st->who[k][0]];
		dns_name_print(&s->name, name, sizeof(name));
		mbuf_printf(b, "%s{service=\"", metric);
		label_print(b, name);
		mbuf_printf(b, "\",endpoint=\"");
		label_print(b, s->ep[st->who[k][1]].id);
		switch (m) {
		case EP_HEALTHY:
			mbuf_printf(b, "\"} %d\n", st->healthy[k]);
			break;
		case EP_CONNS:
			mbuf_printf(b, "\"} %llu\n", (unsigned long long)st->conns[k]);
			break;
		case EP_CPU:
			mbuf_printf(b, "\"} %.3f\n", (double)st->cpu_ns[k] / 1e9);
			break;
		case EP_SLICES:
			mbuf_printf(b, "\"} %llu\n", (unsigned long long)st->slices[k]);
			break;
		case EP_THROTTLED:
			mbuf_printf(b, "\"} %.6f\n", (double)st->sat[k].throttled_ns / 1e9);
			break;
		case EP_QUEUED:
			mbuf_printf(b, "\"} %u\n", st->sat[k].queued);
			break;
		case EP_BACKLOG:
			mbuf_printf(b, "\"} %u\n", st->sat[k].backlog);
			break;
		case EP_APP:
			mbuf_printf(b, "\"} %llu\n", (unsigned long long)st->app[k]);
			break;
		}
	}
}

void agent_stats_render(struct mbuf *b, void *arg)
{
	struct agent_stats *st = arg;
	pthread_mutex_lock(&st->lock);
	mbuf_printf(
	    b,
	    "# HELP peak_agent_slice_routes Slice routes installed.\n"
	    "# TYPE peak_agent_slice_routes gauge\npeak_agent_slice_routes %zu\n"
	    "# HELP peak_agent_failover_routes Slice routes of a local endpoint that is down, "
	    "pointed at a live local one.\n"
	    "# TYPE peak_agent_failover_routes gauge\npeak_agent_failover_routes %zu\n"
	    "# HELP peak_agent_fast_downs_total Endpoints marked down at once because the "
	    "process holding their listening socket exited.\n"
	    "# TYPE peak_agent_fast_downs_total counter\npeak_agent_fast_downs_total %llu\n"
	    "# HELP peak_agent_connections_reset_total Connections of down endpoints reset once "
	    "their slices were routed elsewhere (their clients reconnect to the new owners).\n"
	    "# TYPE peak_agent_connections_reset_total counter\n"
	    "peak_agent_connections_reset_total %llu\n"
	    "# HELP peak_agent_syncs_total Route syncs, by result.\n"
	    "# TYPE peak_agent_syncs_total counter\n"
	    "peak_agent_syncs_total{result=\"ok\"} %llu\n"
	    "peak_agent_syncs_total{result=\"error\"} %llu\n"
	    "# HELP peak_agent_route_changes_total Routes added (or replaced) and deleted.\n"
	    "# TYPE peak_agent_route_changes_total counter\n"
	    "peak_agent_route_changes_total{op=\"add\"} %llu\n"
	    "peak_agent_route_changes_total{op=\"delete\"} %llu\n"
	    "# HELP peak_agent_last_sync_seconds How long the last sync took.\n"
	    "# TYPE peak_agent_last_sync_seconds gauge\npeak_agent_last_sync_seconds %.6f\n"
	    "# HELP peak_agent_health_checks_total Health checks, by result.\n"
	    "# TYPE peak_agent_health_checks_total counter\n"
	    "peak_agent_health_checks_total{result=\"ok\"} %llu\n"
	    "peak_agent_health_checks_total{result=\"fail\"} %llu\n"
	    "# HELP peak_agent_controller_connected 1 while connected to the controller.\n"
	    "# TYPE peak_agent_controller_connected gauge\n"
	    "peak_agent_controller_connected %d\n"
	    "# HELP peak_agent_endpoint_healthy 1 if the local endpoint passes its checks.\n"
	    "# TYPE peak_agent_endpoint_healthy gauge\n",
	    st->routes, st->failover, (unsigned long long)st->fast_downs,
	    (unsigned long long)st->conns_reset, (unsigned long long)(st->syncs - st->sync_errors),
	    (unsigned long long)st->sync_errors, (unsigned long long)st->added,
	    (unsigned long long)st->deleted, st->last_sync_ms / 1e3,
	    (unsigned long long)st->checks_ok, (unsigned long long)st->checks_failed,
	    st->controller_up);
	per_endpoint(b, st, "peak_agent_endpoint_healthy", EP_HEALTHY);
	if (st->store)
		mbuf_printf(
		    b,
		    "# HELP peak_agent_store_records_total Service records from etcd (--store "
		    "etcd), by what became of them: applied, the same as the map in force, "
		    "refused, held (they came while the link was up: applied once it is down).\n"
		    "# TYPE peak_agent_store_records_total counter\n"
		    "peak_agent_store_records_total{result=\"applied\"} %llu\n"
		    "peak_agent_store_records_total{result=\"same\"} %llu\n"
		    "peak_agent_store_records_total{result=\"refused\"} %llu\n"
		    "peak_agent_store_records_total{result=\"held\"} %llu\n"
		    "# HELP peak_agent_store_reads_total Whole reads of the records (the first, "
		    "and one after each compaction or cancelled watch).\n"
		    "# TYPE peak_agent_store_reads_total counter\n"
		    "peak_agent_store_reads_total %llu\n",
		    (unsigned long long)st->st_applied, (unsigned long long)st->st_same,
		    (unsigned long long)st->st_refused, (unsigned long long)st->st_held,
		    (unsigned long long)st->st_reads);
	mbuf_printf(b, "# HELP peak_agent_endpoint_connections TCP connections in the pod's "
	               "namespace.\n# TYPE peak_agent_endpoint_connections gauge\n");
	per_endpoint(b, st, "peak_agent_endpoint_connections", EP_CONNS);
	mbuf_printf(b, "# HELP peak_agent_endpoint_cpu_seconds_total CPU time of the pod's "
	               "processes.\n# TYPE peak_agent_endpoint_cpu_seconds_total counter\n");
	per_endpoint(b, st, "peak_agent_endpoint_cpu_seconds_total", EP_CPU);
	mbuf_printf(b, "# HELP peak_agent_endpoint_throttled_seconds_total CPU time the pod's "
	               "cgroup was throttled (its CPU quota used up).\n"
	               "# TYPE peak_agent_endpoint_throttled_seconds_total counter\n");
	per_endpoint(b, st, "peak_agent_endpoint_throttled_seconds_total", EP_THROTTLED);
	mbuf_printf(b, "# HELP peak_agent_endpoint_accept_queue Connections waiting in the "
	               "accept queue of the pod's listener.\n"
	               "# TYPE peak_agent_endpoint_accept_queue gauge\n");
	per_endpoint(b, st, "peak_agent_endpoint_accept_queue", EP_QUEUED);
	mbuf_printf(b, "# HELP peak_agent_endpoint_accept_backlog The limit of that queue "
	               "(listen()'s backlog; 0: no listener seen).\n"
	               "# TYPE peak_agent_endpoint_accept_backlog gauge\n");
	per_endpoint(b, st, "peak_agent_endpoint_accept_backlog", EP_BACKLOG);
	mbuf_printf(b, "# HELP peak_agent_endpoint_app_load The pod's own load figure "
	               "(--app-load-dir), for the pods that publish one.\n"
	               "# TYPE peak_agent_endpoint_app_load gauge\n");
	per_endpoint(b, st, "peak_agent_endpoint_app_load", EP_APP);
	uint64_t fp[FC_N], fb[FC_N];
	if (st->filter && !filter_handle_stats(st->filter, fp, fb)) {
		mbuf_printf(b, "# HELP peak_agent_filter_packets_total XDP filter classes and "
		               "reject reasons.\n"
		               "# TYPE peak_agent_filter_packets_total counter\n");
		for (unsigned c = 0; c < FC_N; c++)
			mbuf_printf(b, "peak_agent_filter_packets_total{verdict=\"%s\"} %llu\n",
			            filter_counter_name(c), (unsigned long long)fp[c]);
		mbuf_printf(b, "# HELP peak_agent_filter_bytes_total Bytes by XDP filter verdict.\n"
		               "# TYPE peak_agent_filter_bytes_total counter\n");
		for (unsigned c = 0; c < FC_N; c++)
			mbuf_printf(b, "peak_agent_filter_bytes_total{verdict=\"%s\"} %llu\n",
			            filter_counter_name(c), (unsigned long long)fb[c]);
	}
	struct filter_sigtab tab;
	uint64_t hits[FILTER_MAX_SIGNATURES];
	if (st->filter && !filter_handle_sigs(st->filter, &tab, hits)) {
		mbuf_printf(b,
		            "# HELP peak_agent_filter_signature_hits_total Packets each installed "
		            "signature matched, by slot.\n"
		            "# TYPE peak_agent_filter_signature_hits_total counter\n");
		for (unsigned k = 0; k < FILTER_MAX_SIGNATURES; k++)
			if (tab.used[k])
				mbuf_printf(
				    b, "peak_agent_filter_signature_hits_total{slot=\"%u\"} %llu\n",
				    k, (unsigned long long)hits[k]);
	}
	mbuf_printf(b, "# HELP peak_agent_endpoint_slices Slices routed to the local endpoint.\n"
	               "# TYPE peak_agent_endpoint_slices gauge\n");
	per_endpoint(b, st, "peak_agent_endpoint_slices", EP_SLICES);
	static const char *const ways[HC_N] = {"to_old_local", "to_new_local", "to_old_node",
	                                       "to_new_node",  "received",     "error"};
	mbuf_printf(b,
	            "# HELP peak_agent_handovers_total Slice handovers, started and completed "
	            "(by the deadline or the old owner's last connection on the slices).\n"
	            "# TYPE peak_agent_handovers_total counter\n"
	            "peak_agent_handovers_total{event=\"started\"} %llu\n"
	            "peak_agent_handovers_total{event=\"completed\"} %llu\n"
	            "# HELP peak_agent_handovers_active Handover windows open now.\n"
	            "# TYPE peak_agent_handovers_active gauge\npeak_agent_handovers_active %llu\n"
	            "# HELP peak_agent_handover_packets_total Packets of moved slices the handover "
	            "program steered: to a local pod, encapsulated to the other owner's node, "
	            "received encapsulated.\n"
	            "# TYPE peak_agent_handover_packets_total counter\n",
	            (unsigned long long)st->ho_started, (unsigned long long)st->ho_completed,
	            (unsigned long long)st->ho_active);
	for (unsigned c = 0; c < HC_N; c++)
		mbuf_printf(b, "peak_agent_handover_packets_total{way=\"%s\"} %llu\n", ways[c],
		            (unsigned long long)st->ho_packets[c]);
	pthread_mutex_unlock(&st->lock);
}

/* Forgets the endpoints (at exit, or before the configuration they point into goes). */
void agent_stats_clear(struct agent_stats *st)
{
	pthread_mutex_lock(&st->lock);
	st->cfg = NULL;
	st->n = 0;
	free(st->healthy);
	free(st->slices);
	free(st->who);
	free(st->conns);
	free(st->cpu_ns);
	free(st->sat);
	free(st->app);
	st->sat = NULL;
	st->app = NULL;
	st->healthy = NULL;
	st->slices = NULL;
	st->who = NULL;
	st->conns = st->cpu_ns = NULL;
	pthread_mutex_unlock(&st->lock);
}
