/* peak agent: slice handover with forwarding (the program and its maps: src/filter/handover.h).
 * A controller's "handover SERVICE OLD NEW MS BLOCKS" line that names an endpoint of this
 * node fills the tc program's maps before the map that moves the slices is applied. The
 * window ends, on the old owner's node, as soon as the old owner's pod holds no connection
 * on the slices any more; and on both nodes at the deadline, unless the old owner's
 * connections are still carrying packets: the deadline (MS) is honoured only for idle
 * flows. Past it, a handover lasts while the program delivered a packet to the old owner
 * within the last MS (both nodes see the same packets: the new owner's node forwards them
 * to the old one's), and at most HO_LINGER_MAX_MS, so a long-lived connection outlives the
 * window instead of being reset by the new owner once its node forgets it; and on the new
 * owner's node not before the routes lead there (one more window at most). The program is
 * attached to the node's uplink (the device of the controller link's local address, or
 * --handover-dev) while a handover is open, and taken off when none is, so that packets pay
 * nothing for it outside handovers. */
#define _GNU_SOURCE
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <libmnl/libmnl.h>
#include <linux/net_namespace.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../sys/route.h"
#include "../sys/sockdiag.h"
#include "../filter/handover.h"
#include "handover.skel.h"

enum {
	HO_CHECK_MS = 100,     /* how often the old owner's connections on the slices are counted */
	HO_COUNTERS_MS = 1000, /* how often the program's counters are read for the metrics */
	HO_LINGER_MAX_MS = 3600 * 1000, /* the longest a handover lasts past its deadline while
	                                 * the old owner's connections are active */
};

/* One handover; it keeps what it needs of the configuration (a reload may replace it). */
struct ho_entry {
	bool used;
	char old_id[CFG_ID_MAX], new_id[CFG_ID_MAX];
	char netns[CFG_ID_MAX]; /* the old owner's pod, when it is here: its connections are
	                         * counted to end the window early */
	unsigned slice_len;
	bool old_local;
	bool new_only;    /* the new owner's pod is here and the old one's is not */
	bool routes_told; /* the wait for the routes was logged */
	uint64_t deadline_ms, check_ms;
	uint64_t idle_ms;   /* past the deadline: how long the old owner's traffic may pause */
	uint64_t stamp;     /* the program's old_seen_ns as last read */
	uint64_t active_ms; /* when the agent last saw that stamp move (0: never) */
	struct prefix *pfx;
	size_t npfx;
};

struct agent_ho {
	struct handover_bpf *skel;
	int ifindex;
	bool attached;
	uint64_t counters_ms; /* when the counters are read next */
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;
	struct ho_entry ent[HO_MAX];
};

/* The namespace id the node's namespace gives the named one (assigning one if it has none),
 * for bpf_skc_lookup_tcp. Returns it (>= 0) or -errno. */
static int nsid_of(const char *netns)
{
	char path[PATH_MAX], buf[8192];
	int fd = -1, ret = -EIO;
	struct mnl_socket *nl = NULL;
	snprintf(path, sizeof(path), "/run/netns/%s", netns);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		ret = -errno;
		goto out;
	}
	if (!(nl = mnl_socket_open(NETLINK_ROUTE)) || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID)) {
		ret = -errno;
		goto out;
	}
	for (int round = 0; round < 2; round++) {
		/* first ask; if it has no id, have one allocated (NETNSA_NSID -1), ask again */
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		nlh->nlmsg_type = round ? RTM_NEWNSID : RTM_GETNSID;
		nlh->nlmsg_flags = NLM_F_REQUEST | (round ? NLM_F_ACK : 0);
		nlh->nlmsg_seq = (unsigned)time(NULL) + (unsigned)round;
		struct rtgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
		g->rtgen_family = AF_UNSPEC;
		mnl_attr_put_u32(nlh, NETNSA_FD, (uint32_t)fd);
		if (round)
			mnl_attr_put_u32(nlh, NETNSA_NSID, (uint32_t)-1);
		if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
			ret = -errno;
			goto out;
		}
		ssize_t k = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (k < (ssize_t)NLMSG_LENGTH(sizeof(struct rtgenmsg))) {
			ret = k < 0 ? -errno : -EPROTO;
			goto out;
		}
		struct nlmsghdr *r = (struct nlmsghdr *)buf;
		if (r->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(r);
			if (e->error) {
				ret = e->error;
				goto out;
			}
			continue; /* the id is assigned: ask again */
		}
		struct nlattr *at;
		mnl_attr_for_each(at, r, sizeof(struct rtgenmsg))
		{
			if (mnl_attr_get_type(at) == NETNSA_NSID) {
				int32_t id = (int32_t)mnl_attr_get_u32(at);
				if (id >= 0) {
					ret = id;
					goto out;
				}
			}
		}
		if (round) /* assigned and still none */
			break;
	}
	ret = -ENOENT;
out:
	if (nl)
		mnl_socket_close(nl);
	if (fd != -1)
		close(fd);
	return ret;
}

/* The interface that holds addr (onlink false: an address of this node), or on whose subnet
 * it lies (onlink true: a pod's address, not our own), or 0. */
static unsigned iface_of(const uint8_t addr[16], bool onlink)
{
	struct ifaddrs *ifa = NULL;
	unsigned idx = 0;
	if (getifaddrs(&ifa))
		return 0;
	for (struct ifaddrs *i = ifa; i && !idx; i = i->ifa_next) {
		if (!i->ifa_addr || !i->ifa_netmask || i->ifa_addr->sa_family != AF_INET6)
			continue;
		const uint8_t *a = ((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr.s6_addr;
		const uint8_t *m = ((struct sockaddr_in6 *)i->ifa_netmask)->sin6_addr.s6_addr;
		bool same = !memcmp(a, addr, 16), in = onlink && !same;
		for (int b = 0; b < 16 && in; b++)
			in = (a[b] & m[b]) == (addr[b] & m[b]);
		if (onlink ? in : same)
			idx = if_nametoindex(i->ifa_name);
	}
	freeifaddrs(ifa);
	return idx;
}

/* Loads the program and attaches it to the uplink: --handover-dev, else the device of the
 * controller link's local address, which is also the outer source of what it forwards. */
static int ho_attach(struct agent *a, struct agent_ho *h)
{
	struct sockaddr_in6 sa = {0};
	socklen_t sl = sizeof(sa);
	struct ho_cfg cfg = {0};
	uint32_t zero = 0;
	int ret;
	if (a->ctl < 0 || getsockname(a->ctl, (struct sockaddr *)&sa, &sl) ||
	    sa.sin6_family != AF_INET6)
		return -ENOTCONN;
	memcpy(cfg.src, sa.sin6_addr.s6_addr, 16);
	h->ifindex = a->o->handover_dev ? (int)if_nametoindex(a->o->handover_dev)
	                                : (int)iface_of(cfg.src, false);
	if (h->ifindex <= 0)
		return -ENODEV;
	if (!h->skel && !(h->skel = handover_bpf__open_and_load()))
		return errno ? -errno : -EINVAL;
	if (bpf_map_update_elem(bpf_map__fd(h->skel->maps.ho_conf), &zero, &cfg, BPF_ANY)) {
		ret = -errno;
		goto fail;
	}
	h->hook = (struct bpf_tc_hook){
	    .sz = sizeof(h->hook), .ifindex = h->ifindex, .attach_point = BPF_TC_INGRESS};
	ret = bpf_tc_hook_create(&h->hook);
	if (ret && ret != -EEXIST)
		goto fail;
	h->opts = (struct bpf_tc_opts){.sz = sizeof(h->opts),
	                               .handle = 0xa5,
	                               .priority = 0xa5,
	                               .prog_fd = bpf_program__fd(h->skel->progs.handover),
	                               .flags = BPF_TC_F_REPLACE};
	if ((ret = bpf_tc_attach(&h->hook, &h->opts)))
		goto fail;
	h->attached = true;
	log_msg(LOG_INFO, "agent: %s: handover program on ifindex %d (tc ingress)", a->o->node,
	        h->ifindex);
	return 0;
fail:
	handover_bpf__destroy(h->skel);
	h->skel = NULL;
	return ret;
}

/* Takes the program off the uplink (its maps stay loaded for the next handover). The clsact
 * qdisc stays: the XDP filter's tc programs may share it, and empty it costs a packet next
 * to nothing. */
static void ho_detach(struct agent *a, struct agent_ho *h)
{
	if (!h->attached)
		return;
	h->opts.flags = h->opts.prog_fd = h->opts.prog_id = 0;
	bpf_tc_detach(&h->hook, &h->opts);
	h->attached = false;
	log_msg(LOG_INFO, "agent: %s: handover program off ifindex %d", a->o->node, h->ifindex);
}

/* Adds (add) or removes the program's keys of e's slices: one key per slice, all of the
 * slice length, so that a later handover of a slice replaces exactly its key (blocks of
 * different sizes would leave a stale, more specific key winning the longest match). A
 * removal leaves a slice whose key a later handover (another index) took over. Returns 0,
 * or -ENOSPC when the map was full (those slices are not forwarded). */
static int slice_keys(struct agent_ho *h, const struct ho_entry *e, unsigned slice_len, uint32_t i,
                      bool add)
{
	int fd = bpf_map__fd(h->skel->maps.ho_slices), ret = 0;
	for (size_t k = 0; k < e->npfx; k++) {
		unsigned bits = slice_len > e->pfx[k].len ? slice_len - e->pfx[k].len : 0;
		for (uint64_t n = 0; n < (1ull << bits); n++) {
			struct ho_key key = {.plen = slice_len};
			memcpy(key.addr, e->pfx[k].addr, 16);
			/* n into the bits just above the slice boundary (big-endian) */
			for (unsigned b = 0; b < bits; b++)
				if (n >> b & 1) {
					unsigned pos =
					    slice_len - 1 - b; /* bit index from the left */
					key.addr[pos / 8] |= (uint8_t)(0x80 >> (pos % 8));
				}
			uint32_t idx;
			if (add) {
				if (bpf_map_update_elem(fd, &key, &i, BPF_ANY))
					ret = -ENOSPC;
			} else if (!bpf_map_lookup_elem(fd, &key, &idx) && idx == i) {
				bpf_map_delete_elem(fd, &key);
			}
		}
	}
	return ret;
}

static void entry_end(struct agent *a, struct agent_ho *h, unsigned i, const char *why)
{
	struct ho_entry *e = &h->ent[i];
	struct ho_ep zero = {0};
	slice_keys(h, e, e->slice_len, i, false);
	bpf_map_update_elem(bpf_map__fd(h->skel->maps.ho_eps), &i, &zero, BPF_ANY);
	log_msg(LOG_INFO, "agent: %s: handover %s -> %s ended (%s)", a->o->node, e->old_id,
	        e->new_id, why);
	free(e->pfx);
	*e = (struct ho_entry){0};
	pthread_mutex_lock(&a->st.lock);
	a->st.ho_completed++;
	a->st.ho_active--;
	pthread_mutex_unlock(&a->st.lock);
}

/* Reads handover i's stamp (the program's last delivery to the old owner) and returns when,
 * in the agent's clock, it was last seen to move: 0 if never. The stamp is only compared with
 * itself: the program's clock need not be the one peak_mono_ms reads. */
/* Whether a packet for handover i's slices came to this node's program by the routes. */
static bool routed_here(struct agent_ho *h, uint32_t i)
{
	struct ho_ep v;
	return !bpf_map_lookup_elem(bpf_map__fd(h->skel->maps.ho_eps), &i, &v) && v.routed_ns;
}

static uint64_t old_active_ms(struct agent_ho *h, uint32_t i, uint64_t now)
{
	struct ho_entry *e = &h->ent[i];
	struct ho_ep v;
	if (!bpf_map_lookup_elem(bpf_map__fd(h->skel->maps.ho_eps), &i, &v) &&
	    v.old_seen_ns != e->stamp) {
		e->stamp = v.old_seen_ns;
		e->active_ms = now;
	}
	return e->active_ms;
}

/* The slot of the handover past its deadline whose old owner was served the longest ago,
 * or HO_MAX when every handover is still inside its window. */
static unsigned ho_oldest_lingering(struct agent_ho *h)
{
	uint64_t now = peak_mono_ms(), best_seen = UINT64_MAX;
	unsigned best = HO_MAX;
	for (unsigned i = 0; i < HO_MAX; i++) {
		if (!h->ent[i].used || now < h->ent[i].deadline_ms)
			continue;
		uint64_t seen = old_active_ms(h, i, now);
		if (seen < best_seen) {
			best_seen = seen;
			best = i;
		}
	}
	return best;
}

void ho_line(struct agent *a, const struct ctl_msg *m)
{
	int svc = a->o->no_handover ? -1 : ctl_svc_index(a, m->svc);
	if (svc < 0)
		return; /* off, or a service this node's file does not have */
	const struct cfg_service *s = &a->cfg->svc[svc];
	struct cfg_endpoint to, tn; /* a pod the next map adds (the lines before it name it) */
	const struct cfg_endpoint *po = ctl_ep_lookup(a, (unsigned)svc, m->id, &to),
	                          *pn = ctl_ep_lookup(a, (unsigned)svc, m->to, &tn);
	if (!po || !pn || !agent_blocks_fit(&s->space, m->blocks, m->nblocks)) {
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: handover %s -> %s of %s refused: unknown endpoint or bad block",
		       a->o->node, m->id, m->to, m->svc);
		return;
	}
	bool ol = !strcmp(po->node, a->o->node), nl = !strcmp(pn->node, a->o->node);
	if (!ol && !nl)
		return; /* the two other nodes forward; nothing passes here */
	if (!a->ho && !(a->ho = calloc(1, sizeof(*a->ho))))
		return;
	struct agent_ho *h = a->ho;
	int r = 0;
	if (!h->attached && (r = ho_attach(a, h))) {
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: handover %s -> %s: cannot attach the tc program: %s", a->o->node,
		       m->id, m->to, strerror(-r));
		return;
	}
	unsigned i = 0;
	while (i < HO_MAX && h->ent[i].used)
		i++;
	if (i == HO_MAX && (i = ho_oldest_lingering(h)) < HO_MAX)
		entry_end(a, h, i, "its slot taken by a new handover");
	if (i == HO_MAX) {
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: handover %s -> %s: %u at once already", a->o->node, m->id, m->to,
		       HO_MAX);
		return;
	}
	struct ho_entry *e = &h->ent[i];
	struct ho_ep v = {.old_nsid = -1, .new_nsid = -1, .live = 1};
	memcpy(v.old_addr, po->addr, 16);
	memcpy(v.new_addr, pn->addr, 16);
	if (ol) {
		v.old_ifindex = iface_of(v.old_addr, true);
		v.old_nsid = po->netns[0] ? nsid_of(po->netns) : -1;
	}
	if (nl) {
		v.new_ifindex = iface_of(v.new_addr, true);
		v.new_nsid = pn->netns[0] ? nsid_of(pn->netns) : -1;
	}
	if ((ol && !v.old_ifindex) || (nl && !v.new_ifindex)) {
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: handover %s -> %s: a local pod's address is on no link here",
		       a->o->node, m->id, m->to);
		return;
	}
	uint64_t nslices = 0;
	for (unsigned k = 0; k < m->nblocks; k++)
		nslices += 1ull << m->blocks[k].log2;
	if (nslices > HO_MAX_SLICES) { /* one key per slice: it would not fit */
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: handover %s -> %s: %llu slices, more than the program holds "
		       "(%u): not forwarded",
		       a->o->node, m->id, m->to, (unsigned long long)nslices,
		       (unsigned)HO_MAX_SLICES);
		return;
	}
	if (!(e->pfx = calloc(m->nblocks, sizeof(*e->pfx))))
		return;
	for (unsigned k = 0; k < m->nblocks; k++)
		if (!assign_block_prefix(&s->space, &m->blocks[k], &e->pfx[e->npfx]))
			e->npfx++;
	e->used = true;
	snprintf(e->old_id, sizeof(e->old_id), "%s", po->id);
	snprintf(e->new_id, sizeof(e->new_id), "%s", pn->id);
	snprintf(e->netns, sizeof(e->netns), "%s", ol ? po->netns : "");
	e->slice_len = s->space.d.slice;
	e->old_local = ol && po->netns[0];
	e->new_only = nl && !ol;
	e->routes_told = false;
	e->deadline_ms = peak_mono_ms() + m->ms;
	e->idle_ms = m->ms;
	e->check_ms = peak_mono_ms() + HO_CHECK_MS;
	bpf_map_update_elem(bpf_map__fd(h->skel->maps.ho_eps), &i, &v, BPF_ANY);
	if (slice_keys(h, e, s->space.d.slice, i, true))
		log_rl(&a->rl_refused, LOG_WARNING,
		       "agent: %s: handover %s -> %s: more slices in handover than the program "
		       "holds (%u): some are not forwarded",
		       a->o->node, m->id, m->to, (unsigned)HO_MAX_SLICES);
	pthread_mutex_lock(&a->st.lock);
	a->st.ho_started++;
	a->st.ho_active++;
	pthread_mutex_unlock(&a->st.lock);
	log_msg(LOG_INFO,
	        "agent: %s: handover %s -> %s started: %zu prefixes, %u ms (%s; slot %u, "
	        "netns ids %d %d)",
	        a->o->node, m->id, m->to, e->npfx, m->ms,
	        ol && nl ? "both here"
	        : ol     ? "old owner here"
	                 : "new owner here",
	        i, v.old_nsid, v.new_nsid);
}

struct flows_job {
	const struct ho_entry *e;
	uint64_t n;
};

static bool in_slices(const uint8_t addr[16], void *arg)
{
	const struct ho_entry *e = arg;
	for (size_t k = 0; k < e->npfx; k++)
		if (prefix_contains_addr(&e->pfx[k], addr))
			return true;
	return false;
}

static int count_flows(void *arg)
{
	struct flows_job *j = arg;
	return tcp6_count_local(in_slices, (void *)j->e, &j->n);
}

/* Sums the program's per-CPU counters into the metrics. */
static void ho_counters(struct agent *a, struct agent_ho *h)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t sum[HC_N] = {0};
	if (ncpu <= 0)
		return;
	uint64_t *v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return;
	for (uint32_t c = 0; c < HC_N; c++) {
		if (bpf_map_lookup_elem(bpf_map__fd(h->skel->maps.ho_counters), &c, v))
			continue;
		for (int k = 0; k < ncpu; k++)
			sum[c] += v[k];
	}
	free(v);
	pthread_mutex_lock(&a->st.lock);
	memcpy(a->st.ho_packets, sum, sizeof(sum));
	pthread_mutex_unlock(&a->st.lock);
}

static bool ho_any_open(const struct agent_ho *h)
{
	for (unsigned i = 0; i < HO_MAX; i++)
		if (h->ent[i].used)
			return true;
	return false;
}

/* Whether handover e (slot i), past its deadline, is over: the old owner's connections
 * on the slices carried no packet for its idle time (or never did), or it lingered
 * HO_LINGER_MAX_MS; on the new owner's node not before a packet for the slices came by the
 * routes, for one more window at most (a slice nobody uses sees none). Returns why, or
 * NULL. */
static const char *linger_over(struct agent *a, struct ho_entry *e, uint32_t i, uint64_t now)
{
	struct agent_ho *h = a->ho;
	uint64_t seen = old_active_ms(h, i, now);
	if (now >= e->deadline_ms + HO_LINGER_MAX_MS)
		return "the old owner's connections outlived the longest linger";
	/* the new owner's node, before any packet for the slices came by the routes: they
	 * still lead to the old owner's node (BGP slower than the window), where the old
	 * connections' packets still arrive; ending here now would leave them to be reset by
	 * the new owner once the routes move */
	if (e->new_only && !routed_here(h, i) && now < e->deadline_ms + e->idle_ms) {
		if (!e->routes_told) {
			e->routes_told = true;
			log_msg(
			    LOG_INFO,
			    "agent: %s: handover %s -> %s: past its deadline, no packet for the "
			    "slices came here by the routes yet: waiting for them (one more window "
			    "at "
			    "most)",
			    a->o->node, e->old_id, e->new_id);
		}
		return NULL;
	}
	if (!seen || now - seen >= e->idle_ms)
		return seen > e->deadline_ms
		           ? "the old owner's connections went idle past the deadline"
		           : "deadline";
	return NULL;
}

/* ---- the old owner's idle connections at the window's end ----
 * Past the deadline the window lasts while the old owner's connections carry packets; once
 * they are idle for its time it ends, and a connection still open on the old pod (an idle
 * keep-alive client) would hear nothing until its client sends again: that packet goes to
 * the new owner, which resets it, and the client's request fails. So at that end the
 * old owner's node resets the old pod's connections on the moved slices at once (sock_diag
 * SOCK_DESTROY in its namespace): the idle client's keep-alive connection closes while it
 * is idle, and its next request opens a new one, to the new owner. */
struct idle_job {
	const struct ho_entry *e;
	unsigned done;
};

static int idle_run(void *arg)
{
	struct idle_job *j = arg;
	return tcp_destroy(0, in_slices, (void *)j->e, &j->done);
}

static void idle_reset(struct agent *a, const struct ho_entry *e)
{
	struct idle_job j = {e, 0};
	int r = netns_run(e->netns, idle_run, &j);
	pthread_mutex_lock(&a->st.lock);
	a->st.conns_reset += j.done;
	pthread_mutex_unlock(&a->st.lock);
	if (r)
		log_msg(LOG_WARNING, "agent: %s: handover %s -> %s: resetting idle connections: %s",
		        a->o->node, e->old_id, e->new_id, strerror(-r));
	if (j.done)
		log_msg(LOG_INFO,
		        "agent: %s: handover %s -> %s: %u idle connections of the old owner on the "
		        "moved slices reset (their clients reconnect to the new owner)",
		        a->o->node, e->old_id, e->new_id, j.done);
}

void ho_tick(struct agent *a, uint64_t now)
{
	struct agent_ho *h = a->ho;
	unsigned ended = 0;
	if (!h || !h->attached)
		return;
	for (unsigned i = 0; i < HO_MAX; i++) {
		struct ho_entry *e = &h->ent[i];
		if (!e->used)
			continue;
		const char *why = NULL;
		bool past = now >= e->deadline_ms;
		if (!past && (!e->old_local || now < e->check_ms))
			continue;
		if (past && now < e->check_ms)
			continue;
		e->check_ms = now + HO_CHECK_MS;
		if (past)
			why = linger_over(a, e, i, now);
		if (!why && e->old_local) {
			struct flows_job j = {e, 0};
			int r = netns_run(e->netns, count_flows, &j);
			if (r == -EINTR)
				r = netns_run(e->netns, count_flows, &j);
			if (!r && !j.n)
				why = "the old owner's connections on the slices ended";
		}
		if (why && past && e->old_local)
			idle_reset(a, e);
		if (why) {
			entry_end(a, h, i, why);
			ended++;
		}
	}
	if (ended || now >= h->counters_ms) {
		ho_counters(a, h);
		h->counters_ms = now + HO_COUNTERS_MS;
	}
	if (ended && !ho_any_open(h))
		ho_detach(a, h);
}

void ho_endpoint_down(struct agent *a, const char *id)
{
	struct agent_ho *h = a->ho;
	unsigned ended = 0;
	if (!h || !h->attached)
		return;
	for (unsigned i = 0; i < HO_MAX; i++) {
		struct ho_entry *e = &h->ent[i];
		if (e->used && (!strcmp(e->old_id, id) || !strcmp(e->new_id, id))) {
			entry_end(a, h, i, "an owner went down");
			ended++;
		}
	}
	if (ended)
		ho_counters(a, h);
	if (ended && !ho_any_open(h))
		ho_detach(a, h);
}

uint64_t ho_due_ms(const struct agent *a)
{
	uint64_t due = UINT64_MAX, now = peak_mono_ms();
	if (!a->ho)
		return due;
	for (unsigned i = 0; i < HO_MAX; i++) {
		const struct ho_entry *e = &a->ho->ent[i];
		if (!e->used)
			continue;
		/* the deadline; the flow count (old owner here) before it, and every check past it
		 */
		uint64_t t = e->deadline_ms;
		if (now >= e->deadline_ms || (e->old_local && e->check_ms < t))
			t = e->check_ms;
		if (t < due)
			due = t;
	}
	return due;
}

void ho_fini(struct agent *a)
{
	struct agent_ho *h = a->ho;
	if (!h)
		return;
	for (unsigned i = 0; i < HO_MAX; i++)
		free(h->ent[i].pfx);
	ho_detach(a, h);
	handover_bpf__destroy(h->skel);
	free(h);
	a->ho = NULL;
}
