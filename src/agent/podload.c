/* peak agent: the load of the local pods. */
#include "internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../sys/route.h"
#include "../sys/sockdiag.h"

/* Load of a pod: the TCP connections of its namespace (tcp_open_count, read from inside it;
 * not /proc/net/tcp6, whose text grows with every TIME_WAIT socket and cost a core per
 * agent under a connection per request; nor a sock_diag dump of established sockets,
 * which walks the kernel's connection table shared by every namespace), and the CPU time
 * of the processes living in that namespace. */
struct load_job {
	uint64_t conns;
};

static int count_conns(void *arg)
{
	struct load_job *j = arg;
	return tcp_open_count(&j->conns);
}

/* CPU nanoseconds of the processes in the network namespace with this inode. */
static uint64_t netns_cpu_ns(unsigned long ino)
{
	uint64_t total = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[300], link[64];
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/net", e->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strtoul(link + 5, NULL, 10) != ino) /* "net:[INODE]" */
			continue;
		snprintf(path, sizeof(path), "/proc/%s/schedstat", e->d_name);
		FILE *fp = fopen(path, "r");
		unsigned long long ns = 0;
		if (fp && fscanf(fp, "%llu", &ns) == 1)
			total += ns;
		if (fp)
			fclose(fp);
	}
	if (d)
		closedir(d);
	return total;
}

/* Measures every local pod's load, records it and reports it to the controller. */
void pod_load_round(struct agent *a)
{
	for (unsigned i = 0; i < a->nhc; i++) {
		const struct cfg_service *s = &a->cfg->svc[a->hc[i].svc];
		const struct cfg_endpoint *ep = &s->ep[a->hc[i].ep];
		if (!ep->netns[0])
			continue;
		struct load_job j = {0};
		char path[300];
		struct stat sb;
		snprintf(path, sizeof(path), "/run/netns/%s", ep->netns);
		/* Our own check must not count as load: collect it if it has connected, and
		 * count again if it connected while we counted (the pod's side of a check
		 * exists only once our side is connected, and is gone once collected). */
		hc_collect(&a->hc[i]);
		int r = netns_run(ep->netns, count_conns, &j);
		for (int tries = 0; !r && tries < 3 && hc_collect(&a->hc[i]); tries++)
			r = netns_run(ep->netns, count_conns, &j);
		if (r || stat(path, &sb))
			continue;
		struct hc *h = &a->hc[i];
		uint64_t now_ns = netns_cpu_ns((unsigned long)sb.st_ino);
		if (now_ns > h->cpu_seen)
			h->cpu_total += now_ns - h->cpu_seen;
		h->cpu_seen = now_ns;
		uint64_t cpu = h->cpu_total;
		pthread_mutex_lock(&a->st.lock);
		if (i < a->st.n) {
			a->st.conns[i] = j.conns;
			a->st.cpu_ns[i] = cpu;
		}
		pthread_mutex_unlock(&a->st.lock);
		ctl_load(a, h, j.conns, cpu);
	}
}
