/* peak agent: the load of the local pods. */
#include "internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../sys/route.h"
#include "../sys/sockdiag.h"
#include "peak/util.h"

enum { CG_PATH_MAX = 512, CG_UP_MAX = 8 };

/* Where the kernel's CPU controller shows cgroups: the v1 hierarchy holding "cpu" and the
 * v2 (unified) one, from /proc/self/mountinfo ("" where there is none). On a hybrid host
 * both exist and v2's cpu.stat has no throttling figures (the cpu controller is on v1). */
struct cg_mounts {
	char v1[CG_PATH_MAX], v2[CG_PATH_MAX];
};

static bool opt_has(const char *opts, const char *want)
{
	size_t n = strlen(want);
	for (const char *p = opts; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, want, n) && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

static void cg_mounts_read(struct cg_mounts *m)
{
	char line[1024];
	m->v1[0] = m->v2[0] = '\0';
	FILE *f = fopen("/proc/self/mountinfo", "r");
	while (f && fgets(line, sizeof(line), f)) {
		char root[CG_PATH_MAX], at[CG_PATH_MAX], type[32], opts[256];
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %511s %511s", root, at) != 2 ||
		    sscanf(dash + 3, "%31s %*s %255s", type, opts) != 2 || strcmp(root, "/"))
			continue; /* (a mount of a sub-tree would need its root mapped: not ours) */
		if (!strcmp(type, "cgroup2") && !m->v2[0])
			snprintf(m->v2, sizeof(m->v2), "%s", at);
		else if (!strcmp(type, "cgroup") && opt_has(opts, "cpu") && !m->v1[0])
			snprintf(m->v1, sizeof(m->v1), "%s", at);
	}
	if (f)
		fclose(f);
}

/* The cgroup mounts; when none is visible, mounts them under /sys/fs/cgroup first (once).
 * That is the agent run by 'ip netns exec', whose private mount namespace has a fresh
 * sysfs without them (the testbed's agents); the mounts stay in that namespace (a slave of
 * the host's: nothing propagates back) and go with it. A failure leaves no figure: the
 * throttled time is then reported as 0. */
static void cg_mounts_find(struct cg_mounts *m)
{
	static bool tried;
	static const char *const v1opts[] = {"cpu", "cpu,cpuacct"};
	const char *root = "/sys/fs/cgroup";
	cg_mounts_read(m);
	if (m->v1[0] || m->v2[0] || tried)
		return;
	tried = true;
	if (mount("peak-cgroup", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")) {
		log_msg(LOG_WARNING,
		        "agent: no cgroup mount, and none can be made at %s: %s "
		        "(pods' throttled time not reported)",
		        root, strerror(errno));
		return;
	}
	if (!mkdir("/sys/fs/cgroup/cpu", 0755))
		for (size_t k = 0; k < sizeof(v1opts) / sizeof(v1opts[0]); k++)
			if (!mount("cgroup", "/sys/fs/cgroup/cpu", "cgroup",
			           MS_NOSUID | MS_NODEV | MS_NOEXEC, v1opts[k]))
				break;
	if (!mkdir("/sys/fs/cgroup/unified", 0755))
		mount("cgroup2", "/sys/fs/cgroup/unified", "cgroup2",
		      MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	cg_mounts_read(m);
	log_msg(LOG_INFO,
	        "agent: cgroups mounted in the agent's mount namespace (v1 cpu: %s, "
	        "v2: %s)",
	        m->v1[0] ? "yes" : "no", m->v2[0] ? "yes" : "no");
}

/* The value of key in a cpu.stat file (0 if the file or the key is not there). */
static uint64_t cpu_stat(const char *dir, const char *cg, const char *key)
{
	char path[2 * CG_PATH_MAX + 16], line[128];
	size_t n = strlen(key);
	unsigned long long v = 0;
	snprintf(path, sizeof(path), "%s%s/cpu.stat", dir, cg);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ' ' && sscanf(line + n, "%llu", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* The CPU time process pid's cgroup was throttled, in ns: cgroup v2's throttled_usec,
 * else v1's throttled_time, of its cgroup or of the ancestor that throttled most (a
 * quota may sit on the pod's cgroup above its containers'), the root excluded. */
static uint64_t cg_throttled_ns(const struct cg_mounts *m, pid_t pid)
{
	char path[64], line[CG_PATH_MAX + 64], v1[CG_PATH_MAX] = "", v2[CG_PATH_MAX] = "";
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f)) { /* "ID:CONTROLLERS:PATH" */
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		c2[strcspn(c2 + 1, "\n") + 1] = '\0';
		if (c1 + 1 == c2)
			snprintf(v2, sizeof(v2), "%s", c2 + 1);
		else if (opt_has(c1 + 1, "cpu"))
			snprintf(v1, sizeof(v1), "%s", c2 + 1);
	}
	if (f)
		fclose(f);
	uint64_t best = 0;
	for (int v = 0; v < 2; v++) {
		char *cg = v ? v1 : v2;
		const char *dir = v ? m->v1 : m->v2;
		for (int up = 0; dir[0] && cg[0] == '/' && cg[1] && up < CG_UP_MAX; up++) {
			uint64_t t = v ? cpu_stat(dir, cg, "throttled_time")
			               : cpu_stat(dir, cg, "throttled_usec") * 1000;
			if (t > best)
				best = t;
			char *slash = strrchr(cg, '/');
			if (slash == cg)
				break;
			*slash = '\0';
		}
	}
	return best;
}

/* The PID a pidfd refers to (its fdinfo's "Pid:" line), or 0. */
static pid_t pidfd_pid(int pidfd)
{
	char path[64], line[128];
	int pid = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	FILE *f = pidfd >= 0 ? fopen(path, "r") : NULL;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %d", &pid) == 1)
			break;
	if (f)
		fclose(f);
	return pid > 0 ? (pid_t)pid : 0;
}

/* Load of a pod: the TCP connections of its namespace (tcp_open_count, read from inside it;
 * not /proc/net/tcp6, whose text grows with every TIME_WAIT socket and cost a core per
 * agent under a connection per request; nor a sock_diag dump of established sockets,
 * which walks the kernel's connection table shared by every namespace), and the CPU time
 * of the processes living in that namespace. Its saturation, which neither shows (a pod
 * held to a CPU quota does less work, not more, and holds no more connections): the time
 * its cgroup was throttled (of the process holding its listening socket, else of one
 * process of the namespace), and the accept queue of its listener on the service port (a
 * pod that keeps up holds it near 0). */
struct load_job {
	uint16_t port;
	const uint8_t *pod_addr; /* the address the agent's checks connect to */
	unsigned nown;           /* the agent's checks in flight: their local ports and address */
	uint16_t own_port[HC_PROBES];
	uint8_t own_addr[HC_PROBES][16];
	uint64_t conns;
	struct pod_sat sat;
};

/* Which of the agent's checks in flight the pod holds the other end of, a bit each: a
 * socket of the pod's namespace counted as in use (hashed: not a half-open request, not
 * TIME_WAIT or closed) whose peer is that check. */
static unsigned own_held(const struct load_job *j)
{
	unsigned held = 0;
	for (unsigned k = 0; k < j->nown; k++) {
		int st;
		if (tcp6_conn_state(j->pod_addr, j->port, j->own_addr[k], j->own_port[k], &st))
			continue;
		if (st != TCP_SYN_RECV && st != TCP_TIME_WAIT && st != TCP_CLOSE &&
		    st != TCP_LISTEN)
			held |= 1u << k;
	}
	return held;
}

/* Counts the pod's connections but the agent's own checks, found by their exact addresses
 * and ports before and after the count; -EAGAIN when a check came or went meanwhile. */
static int count_conns(void *arg)
{
	struct load_job *j = arg;
	unsigned before = own_held(j);
	int r = tcp_open_count(&j->conns);
	if (r)
		return r;
	if (own_held(j) != before)
		return -EAGAIN;
	unsigned own = (unsigned)__builtin_popcount(before);
	j->conns = j->conns > own ? j->conns - own : 0;
	/* (no listener yet, or a failed dump: no queue figure, BACKLOG 0, not a failure) */
	if (tcp_accept_queue(j->port, &j->sat.queued, &j->sat.backlog))
		j->sat.queued = j->sat.backlog = 0;
	j->sat.has = true;
	return 0;
}

/* The local address and port of each check of h in flight (its connect has bound them). */
static void own_checks(const struct hc *h, struct load_job *j)
{
	j->nown = 0;
	for (unsigned k = 0; k < HC_PROBES; k++) {
		struct sockaddr_in6 sa;
		socklen_t sl = sizeof(sa);
		if (h->pr[k].fd < 0 || getsockname(h->pr[k].fd, (struct sockaddr *)&sa, &sl) ||
		    sa.sin6_family != AF_INET6)
			continue;
		j->own_port[j->nown] = ntohs(sa.sin6_port);
		memcpy(j->own_addr[j->nown], &sa.sin6_addr, 16);
		j->nown++;
	}
}

uint64_t pid_cpu_ns(pid_t pid, bool *runnable)
{
	char path[64];
	uint64_t total = 0;
	bool run = false;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[300], line[512];
		unsigned long long ns = 0;
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		FILE *fp = fopen(p, "r");
		if (fp && fscanf(fp, "%llu", &ns) == 1)
			total += ns;
		if (fp)
			fclose(fp);
		if (!runnable || run)
			continue;
		/* stat: "TID (COMM) STATE ...", COMM may hold spaces and parentheses */
		snprintf(p, sizeof(p), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
		fp = fopen(p, "r");
		size_t n = fp ? fread(line, 1, sizeof(line) - 1, fp) : 0;
		if (fp)
			fclose(fp);
		line[n] = '\0';
		char *close = strrchr(line, ')');
		run = close && close[1] == ' ' && close[2] == 'R';
	}
	if (d)
		closedir(d);
	if (runnable)
		*runnable = run;
	return total;
}

/* CPU nanoseconds of the processes in the network namespace with this inode; *first is
 * one of them (0 if none). */
static uint64_t netns_cpu_ns(unsigned long ino, pid_t *first)
{
	*first = 0;
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
		if (!*first)
			*first = (pid_t)atoi(e->d_name);
		total += pid_cpu_ns((pid_t)atoi(e->d_name), NULL);
	}
	if (d)
		closedir(d);
	return total;
}

enum {
	APP_LOAD_MAX_AGE_S = 10, /* a figure file not rewritten for longer is not reported */
	APP_LOAD_MAX_BYTES = 32,
};

/* The pod's own load figure: the file DIR/ID (a regular file, not a link, rewritten within
 * APP_LOAD_MAX_AGE_S) holding a figure (peak_figure_parse). Returns 0 and *v, -ENOENT (the
 * pod publishes none), -ESTALE (too old), -EINVAL (not a figure, or not a regular file), or
 * another -errno. Opened without following links and without blocking (the pod writes the
 * directory: a FIFO there must not stop the agent). */
static int app_load_read(const char *dir, const char *id, uint64_t *v)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, id) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -EINVAL : -errno;
	struct stat sb;
	uint8_t buf[APP_LOAD_MAX_BYTES + 1];
	ssize_t n = -1;
	int r = 0;
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode))
		r = -EINVAL;
	else if (time(NULL) - sb.st_mtime > APP_LOAD_MAX_AGE_S)
		r = -ESTALE;
	else if ((n = read(fd, buf, sizeof(buf))) < 0)
		r = -errno;
	close(fd);
	if (r)
		return r;
	return n > APP_LOAD_MAX_BYTES ? -EINVAL : peak_figure_parse(buf, (size_t)n, v);
}

/* Endpoint h's figure from --app-load-dir (UINT64_MAX: none); logs a change of the file's
 * state (once, not every round). */
static uint64_t app_load(struct agent *a, struct hc *h, const char *id)
{
	uint64_t v = UINT64_MAX;
	if (!a->o->app_load_dir)
		return v;
	int r = app_load_read(a->o->app_load_dir, id, &v);
	if (r != h->app_err) {
		if (!r)
			log_msg(LOG_INFO,
			        "agent: %s: endpoint %s: its load figure is reported (%s/%s)",
			        a->o->node, id, a->o->app_load_dir, id);
		else if (r != -ENOENT)
			log_msg(
			    LOG_WARNING,
			    "agent: %s: endpoint %s: %s/%s: %s; its load figure is not reported",
			    a->o->node, id, a->o->app_load_dir, id,
			    r == -EINVAL   ? "not a figure (a regular file holding decimal digits, "
			                     "at most 9223372036854775807, and a newline)"
			    : r == -ESTALE ? "not rewritten for more than 10 s"
			                   : strerror(-r));
		else if (h->app_err == 0)
			log_msg(LOG_INFO, "agent: %s: endpoint %s: %s/%s is gone; no load figure",
			        a->o->node, id, a->o->app_load_dir, id);
		h->app_err = r;
	}
	return r ? UINT64_MAX : v;
}

/* Measures every local pod's load, records it and reports it to the controller. */
void pod_load_round(struct agent *a)
{
	struct cg_mounts cgm;
	cg_mounts_find(&cgm);
	for (unsigned i = 0; i < a->nhc; i++) {
		const struct cfg_service *s = &a->cfg->svc[a->hc[i].svc];
		const struct cfg_endpoint *ep = &s->ep[a->hc[i].ep];
		if (!ep->netns[0])
			continue;
		char path[300];
		struct stat sb;
		snprintf(path, sizeof(path), "/run/netns/%s", ep->netns);
		/* Our own checks must not count as load: the pod's side of each is looked up by
		 * its addresses and taken off (again if one came or went while we counted). */
		struct load_job j = {.port = (uint16_t)s->port, .pod_addr = ep->addr};
		own_checks(&a->hc[i], &j);
		int r = -EAGAIN;
		for (int tries = 0; tries < 4 && r == -EAGAIN; tries++)
			r = netns_run(ep->netns, count_conns, &j);
		if (r || stat(path, &sb))
			continue;
		struct hc *h = &a->hc[i];
		pid_t pid = 0;
		uint64_t now_ns = netns_cpu_ns((unsigned long)sb.st_ino, &pid);
		pid_t owner = pidfd_pid(h->pidfd);
		if (owner || pid)
			j.sat.throttled_ns = cg_throttled_ns(&cgm, owner ? owner : pid);
		if (now_ns > h->cpu_seen)
			h->cpu_total += now_ns - h->cpu_seen;
		h->cpu_seen = now_ns;
		uint64_t cpu = h->cpu_total, app = app_load(a, h, ep->id);
		pthread_mutex_lock(&a->st.lock);
		if (i < a->st.n) {
			a->st.conns[i] = j.conns;
			a->st.cpu_ns[i] = cpu;
			a->st.sat[i] = j.sat;
			a->st.app[i] = app;
		}
		pthread_mutex_unlock(&a->st.lock);
		ctl_load(a, h, j.conns, cpu, app, &j.sat);
	}
}
