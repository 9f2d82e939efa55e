#include "sockdiag.h"

#include <dirent.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h> /* struct tcp_info */
#include <stddef.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "route.h" /* nl_dump_retry */

enum {
	NL_BUF = 32768,
	TCPF_LISTEN_BIT = 1u << 10, /* 1 << TCP_LISTEN */
};

typedef int (*diag_fn)(const struct inet_diag_msg *m, void *data);

struct diag_walk {
	diag_fn fn;
	void *data;
	bool stop; /* fn asked to end the walk */
	bool intr; /* the kernel flagged the dump interrupted */
};

static int diag_cb(const struct nlmsghdr *nlh, void *data)
{
	struct diag_walk *w = data;
	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) {
		w->intr = true; /* (libmnl 1.0.4 checks this before the callback) */
		return MNL_CB_ERROR;
	}
	if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
		return MNL_CB_OK;
	w->stop = w->fn(mnl_nlmsg_get_payload(nlh), w->data) != 0;
	return w->stop ? MNL_CB_STOP : MNL_CB_OK;
}

/* Calls fn for each TCP socket of the current namespace in the given states (a TCPF_*
 * mask), IPv6 then IPv4, until fn returns non-zero. Returns 0, -EINTR if the kernel flagged
 * the dump interrupted (fn has seen part of a changing table: start again), or -errno. */
static int diag_dump_ext(uint32_t states, uint8_t ext, diag_fn fn, void *data)
{
	int ret = 0;
	static const uint8_t families[] = {AF_INET6, AF_INET};
	struct diag_walk w = {fn, data, false};
	struct mnl_socket *nl = mnl_socket_open(NETLINK_SOCK_DIAG);
	char *buf = malloc(NL_BUF);
	if (!nl || !buf || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		goto out;
	}
	for (size_t f = 0; f < sizeof(families) && !ret && !w.stop; f++) {
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
		req->sdiag_family = families[f];
		req->sdiag_protocol = IPPROTO_TCP;
		req->idiag_states = states;
		req->idiag_ext = ext;
		unsigned seq = (unsigned)time(NULL) + (unsigned)f;
		nlh->nlmsg_seq = seq;
		if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
			ret = -errno;
			break;
		}
		unsigned pid = mnl_socket_get_portid(nl);
		for (;;) {
			ssize_t k = mnl_socket_recvfrom(nl, buf, NL_BUF);
			if (k < 0) {
				ret = -errno;
				break;
			}
			errno = 0;
			int r = mnl_cb_run(buf, (size_t)k, seq, pid, diag_cb, &w);
			if (r == MNL_CB_STOP)
				break; /* the dump's end, or fn's (the rest is left unread) */
			if (r < 0) {
				ret = w.intr ? -EINTR : errno ? -errno : -EPROTO;
				break;
			}
		}
	}
out:
	if (nl)
		mnl_socket_close(nl);
	free(buf);
	return ret;
}

/* diag_dump_ext with no extensions asked for. */
static int diag_dump(uint32_t states, diag_fn fn, void *data)
{
	return diag_dump_ext(states, 0, fn, data);
}

static int count_one(const struct inet_diag_msg *m, void *data)
{
	(void)m;
	++*(uint64_t *)data;
	return 0;
}

/* The "inuse" count of a line of /proc/thread-self/net/sockstat[6] ("TCP: inuse 3 ..."). */
static int sockstat_inuse(const char *path, const char *tag, uint64_t *out)
{
	char line[256];
	size_t n = strlen(tag);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	int ret = -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (!strncmp(line, tag, n) && sscanf(line + n, " inuse %llu", &v) == 1) {
			*out = v;
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* One try of counting the listeners (nl_dump_retry: from zero each time). */
static int count_listeners(void *arg)
{
	uint64_t *n = arg;
	*n = 0;
	return diag_dump(TCPF_LISTEN_BIT, count_one, n);
}

int tcp_open_count(uint64_t *out)
{
	uint64_t v4 = 0, v6 = 0, listeners = 0;
	int r = sockstat_inuse("/proc/thread-self/net/sockstat", "TCP:", &v4);
	if (!r)
		r = sockstat_inuse("/proc/thread-self/net/sockstat6", "TCP6:", &v6);
	if (!r)
		r = nl_dump_retry(count_listeners, &listeners);
	if (r)
		return r;
	*out = v4 + v6 > listeners ? v4 + v6 - listeners : 0;
	return 0;
}

struct want_port {
	uint16_t port; /* network order */
	uint64_t ino;
};

static int match_port(const struct inet_diag_msg *m, void *data)
{
	struct want_port *w = data;
	if (m->id.idiag_sport != w->port)
		return 0;
	w->ino = m->idiag_inode;
	return 1;
}

/* One try of finding the listener (nl_dump_retry). */
static int find_listener(void *arg)
{
	struct want_port *w = arg;
	w->ino = 0;
	return diag_dump(TCPF_LISTEN_BIT, match_port, w);
}

int tcp_listener_inode(uint16_t port, uint64_t *ino)
{
	struct want_port w = {htons(port), 0};
	int r = nl_dump_retry(find_listener, &w);
	if (r)
		return r;
	if (!w.ino)
		return -ENOENT;
	*ino = w.ino;
	return 0;
}

struct want_queue {
	uint16_t port; /* network order */
	unsigned listeners;
	uint64_t queued, backlog;
};

static int add_queue(const struct inet_diag_msg *m, void *data)
{
	struct want_queue *w = data;
	if (m->id.idiag_sport == w->port) {
		w->listeners++;
		w->queued += m->idiag_rqueue;  /* of a listener: its accept queue now */
		w->backlog += m->idiag_wqueue; /* of a listener: the queue's limit */
	}
	return 0;
}

/* One try of adding up the listeners' queues (nl_dump_retry: from zero each time). */
static int sum_queues(void *arg)
{
	struct want_queue *w = arg;
	w->listeners = 0;
	w->queued = w->backlog = 0;
	return diag_dump(TCPF_LISTEN_BIT, add_queue, w);
}

int tcp_accept_queue(uint16_t port, uint32_t *queued, uint32_t *backlog)
{
	struct want_queue w = {.port = htons(port)};
	int r = nl_dump_retry(sum_queues, &w);
	if (r)
		return r;
	if (!w.listeners)
		return -ENOENT;
	*queued = w.queued > UINT32_MAX ? UINT32_MAX : (uint32_t)w.queued;
	*backlog = w.backlog > UINT32_MAX ? UINT32_MAX : (uint32_t)w.backlog;
	return 0;
}

pid_t socket_owner(uint64_t ino)
{
	char want[48], path[300], link[48];
	snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)ino);
	size_t wl = strlen(want);
	DIR *proc = opendir("/proc");
	if (!proc)
		return -errno;
	pid_t found = -ENOENT;
	struct dirent *p;
	while (found < 0 && (p = readdir(proc))) {
		char *end;
		long pid = strtol(p->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
		DIR *fds = opendir(path);
		if (!fds)
			continue; /* gone meanwhile, or not ours to read */
		struct dirent *f;
		while ((f = readdir(fds))) {
			if (f->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%ld/fd/%s", pid, f->d_name);
			ssize_t n = readlink(path, link, sizeof(link));
			if (n == (ssize_t)wl && !memcmp(link, want, wl)) {
				found = (pid_t)pid;
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

struct local_count {
	bool (*want)(const uint8_t addr[16], void *arg);
	void *arg;
	uint64_t n;
};

static int count_local(const struct inet_diag_msg *m, void *data)
{
	struct local_count *lc = data;
	if (m->idiag_family == AF_INET6 && lc->want((const uint8_t *)m->id.idiag_src, lc->arg))
		lc->n++;
	return 0;
}

int tcp6_count_local(bool (*want)(const uint8_t addr[16], void *arg), void *arg, uint64_t *out)
{
	/* every state but LISTEN, TIME_WAIT and CLOSE: a connection someone still holds */
	uint32_t states = ((1u << 12) - 1) & ~(TCPF_LISTEN_BIT | 1u << 6 | 1u << 7 | 1u);
	struct local_count lc = {want, arg, 0};
	int ret = diag_dump(states, count_local, &lc);
	*out = lc.n;
	return ret;
}

/* The answer to a lookup of one socket: its state, or the kernel's error. */
struct one_state {
	int state; /* -1 until a message about the socket came */
};

static int one_cb(const struct nlmsghdr *nlh, void *data)
{
	struct one_state *o = data;
	if (nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
		o->state = ((const struct inet_diag_msg *)mnl_nlmsg_get_payload(nlh))->idiag_state;
	return MNL_CB_STOP;
}

int tcp6_conn_state(const uint8_t local[16], uint16_t lport, const uint8_t remote[16],
                    uint16_t rport, int *state)
{
	int ret = 0;
	char buf[1024];
	struct mnl_socket *nl = mnl_socket_open(NETLINK_SOCK_DIAG);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		goto out;
	}
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh->nlmsg_flags = NLM_F_REQUEST; /* one socket, found by its hash: no table walk */
	nlh->nlmsg_seq = (unsigned)time(NULL);
	struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = AF_INET6;
	req->sdiag_protocol = IPPROTO_TCP;
	req->idiag_states = ~0u;
	req->id.idiag_sport = htons(lport);
	req->id.idiag_dport = htons(rport);
	memcpy(req->id.idiag_src, local, 16);
	memcpy(req->id.idiag_dst, remote, 16);
	req->id.idiag_cookie[0] = req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		ret = -errno;
		goto out;
	}
	ssize_t k = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (k < 0) {
		ret = -errno;
		goto out;
	}
	struct one_state o = {-1};
	errno = 0;
	int r = mnl_cb_run(buf, (size_t)k, nlh->nlmsg_seq, mnl_socket_get_portid(nl), one_cb, &o);
	if (r < 0)
		ret = errno ? -errno : -EPROTO; /* ENOENT: no such socket */
	else if (o.state < 0)
		ret = -ENOENT;
	else
		*state = o.state;
out:
	if (nl)
		mnl_socket_close(nl);
	return ret;
}

enum {
	DESTROY_BATCH = 16384, /* connections collected per dump */
	DESTROY_DUMPS = 3,     /* dumps while one was interrupted or filled the batch */
	/* the states tcp_abort sends a reset in: established, SYN-RECV, FIN-WAIT-1/2, CLOSE-WAIT */
	TCPF_ABORTABLE = 1u << 1 | 1u << 3 | 1u << 4 | 1u << 5 | 1u << 8,
};

/* A connection to destroy: its position in the batch, and how long ago it last received
 * data (ms; UINT32_MAX: not known). */
struct destroy_order {
	uint32_t idle_ms, i;
};

struct destroy_batch {
	uint16_t port; /* network order; 0: any */
	bool (*want)(const uint8_t addr[16], void *arg);
	void *arg;
	struct inet_diag_sockid *ids;
	uint8_t *fam;
	struct destroy_order *order;
	size_t n;
};

static int info_attr(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == INET_DIAG_INFO &&
	    mnl_attr_get_payload_len(a) >=
	        offsetof(struct tcp_info, tcpi_last_data_recv) + sizeof(uint32_t)) {
		const struct tcp_info *ti = mnl_attr_get_payload(a);
		*(uint32_t *)data = ti->tcpi_last_data_recv;
	}
	return MNL_CB_OK;
}

static int destroy_collect(const struct inet_diag_msg *m, void *data)
{
	struct destroy_batch *b = data;
	if (b->n == DESTROY_BATCH)
		return 1; /* full: these first, then another dump */
	if ((!b->port || m->id.idiag_sport == b->port) &&
	    (!b->want ||
	     (m->idiag_family == AF_INET6 && b->want((const uint8_t *)m->id.idiag_src, b->arg)))) {
		/* m is the payload of its message (diag_cb): the tcp_info attribute follows */
		const struct nlmsghdr *nlh =
		    (const struct nlmsghdr *)((const char *)m - MNL_NLMSG_HDRLEN);
		uint32_t idle = UINT32_MAX;
		mnl_attr_parse(nlh, sizeof(*m), info_attr, &idle);
		b->order[b->n] = (struct destroy_order){idle, (uint32_t)b->n};
		b->ids[b->n] = m->id;
		b->fam[b->n++] = m->idiag_family;
	}
	return 0;
}

static int order_cmp(const void *x, const void *y)
{
	const struct destroy_order *a = x, *b = y;
	return a->idle_ms != b->idle_ms ? (a->idle_ms < b->idle_ms ? -1 : 1)
	                                : (a->i < b->i ? -1 : a->i > b->i);
}

/* One SOCK_DESTROY on nl, and the kernel's acknowledgement. Returns 0 or -errno (-ENOENT:
 * the connection was gone already). */
static int destroy_one(struct mnl_socket *nl, char *buf, uint8_t fam,
                       const struct inet_diag_sockid *id)
{
	static unsigned seq;
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = SOCK_DESTROY;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = ++seq + (unsigned)time(NULL);
	struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = fam;
	req->sdiag_protocol = IPPROTO_TCP;
	req->idiag_states = ~0u;
	req->id = *id;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t k = mnl_socket_recvfrom(nl, buf, NL_BUF);
		if (k < 0)
			return -errno;
		errno = 0;
		int r = mnl_cb_run(buf, (size_t)k, nlh->nlmsg_seq, mnl_socket_get_portid(nl), NULL,
		                   NULL);
		if (r == MNL_CB_STOP)
			return 0;
		if (r < 0)
			return errno ? -errno : -EPROTO;
	}
}

int tcp_destroy(uint16_t port, bool (*want)(const uint8_t addr[16], void *arg), void *arg,
                unsigned *done)
{
	struct destroy_batch b = {htons(port), want, arg, NULL, NULL, 0};
	struct mnl_socket *nl = NULL;
	char *buf = malloc(NL_BUF);
	int ret = -ENOMEM;
	*done = 0;
	b.ids = malloc(DESTROY_BATCH * sizeof(*b.ids));
	b.fam = malloc(DESTROY_BATCH);
	b.order = malloc(DESTROY_BATCH * sizeof(*b.order));
	if (!buf || !b.ids || !b.fam || !b.order)
		goto out;
	nl = mnl_socket_open(NETLINK_SOCK_DIAG);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		goto out;
	}
	for (unsigned d = 0; d < DESTROY_DUMPS; d++) {
		b.n = 0;
		int dumped =
		    diag_dump_ext(TCPF_ABORTABLE, 1 << (INET_DIAG_INFO - 1), destroy_collect, &b);
		if (dumped && dumped != -EINTR) {
			ret = dumped;
			goto out;
		}
		/* the connections that received data last go first: the clients whose requests
		 * wait now, before the idle ones and those whose peers are long gone (a pod can
		 * hold hundreds: each reset takes its turn) */
		qsort(b.order, b.n, sizeof(*b.order), order_cmp);
		for (size_t j = 0; j < b.n; j++) {
			size_t k = b.order[j].i;
			int r = destroy_one(nl, buf, b.fam[k], &b.ids[k]);
			if (!r)
				++*done;
			else if (r != -ENOENT) {
				ret = r;
				goto out;
			}
		}
		if (dumped != -EINTR && b.n < DESTROY_BATCH)
			break;
	}
	ret = 0;
out:
	if (nl)
		mnl_socket_close(nl);
	free(b.ids);
	free(b.fam);
	free(b.order);
	free(buf);
	return ret;
}
