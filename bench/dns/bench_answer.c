/* The DNS server's answer path without sockets: nanoseconds per query for static answers
 * and steered AAAA, on one core. Shows what the server itself costs, apart from the
 * kernel's UDP path. Usage: bench_answer CONFIG [SECONDS] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "answer.h"
#include "peak/config.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t query(uint8_t *buf, const char *name, uint16_t type, bool ecs)
{
	struct dns_writer w;
	struct dns_name n;
	struct dns_ecs e = {2, 64, 0, {0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0xbb}};
	dns_name_parse(name, &n);
	dns_writer_init(&w, buf, 512, 0x1234, DNS_F_RD);
	dns_writer_question(&w, &n, type, DNS_C_IN);
	if (ecs)
		dns_writer_opt(&w, 1232, 0, 0, false, &e);
	return (size_t)dns_writer_finish(&w);
}

int main(int argc, char **argv)
{
	struct peak_config *cfg;
	struct dnsd_dyn dyn = {0};
	char err[CFG_ERRLEN];
	if (argc < 2 || config_load(argv[1], &cfg, err, sizeof(err))) {
		fprintf(stderr, "usage: bench_answer CONFIG [SECONDS] (%s)\n", argc < 2 ? "" : err);
		return 2;
	}
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	struct dns_state *st = dns_state_build(cfg, &dyn, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	static struct dnsd_stats stats;
	struct dnsd_ctx cx = {.rng = 1, .now = 1767225600, .stats = &stats};
	struct dnsd_client cl = {.addr = {0x20, 0x01, 0x0d, 0xb8, 0, 1}, .v6 = true};
	struct {
		const char *what, *name;
		uint16_t type;
		bool ecs;
	} cases[] = {
	    {"SOA (static)", "svc.example.", DNS_T_SOA, false},
	    {"APL (static)", "api.svc.example.", DNS_T_APL, false},
	    {"NXDOMAIN", "nope.svc.example.", DNS_T_A, false},
	    {"AAAA steered", "api.svc.example.", DNS_T_AAAA, false},
	    {"AAAA steered + ECS", "api.svc.example.", DNS_T_AAAA, true},
	};
	uint8_t q[512], out[DNSD_UDP_MAX];
	printf("%-22s %12s %10s\n", "query", "answers/s", "ns/query");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t ql = query(q, cases[c].name, cases[c].type, cases[c].ecs);
		uint64_t n = 0, sink = 0;
		double t0 = now(), t1;
		do {
			for (int k = 0; k < 1000; k++, n++)
				sink += dnsd_answer(st, &cx, q, ql, &cl, false, out, sizeof(out));
		} while ((t1 = now()) - t0 < secs);
		printf("%-22s %12.0f %10.0f\n", cases[c].what, n / (t1 - t0), (t1 - t0) * 1e9 / n);
		if (!sink)
			return 1;
	}
	dns_state_free(st);
	dnsd_dyn_fini(&dyn);
	steer_counters_free();
	return 0;
}
