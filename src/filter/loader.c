#include "loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "filter.skel.h"
#include "peak/util.h"

/* BPF_FS_MAGIC from linux/magic.h; the TC filters' handle and priority (ours, so detach
 * removes only them). */
enum { BPFFS_MAGIC = 0xcafe4a11, TC_HANDLE = 1, TC_PRIORITY = 0x5045 };

static bool is_bpffs(void)
{
	struct statfs fs;
	return statfs("/sys/fs/bpf", &fs) == 0 && (unsigned long)fs.f_type == BPFFS_MAGIC;
}

/* Mounts the BPF filesystem at /sys/fs/bpf when it is missing (as bpftool does), but only
 * when our parent shares our mount namespace, so that the mount outlives this process: under
 * 'ip netns exec' (a private mount namespace of its own) it would vanish, and the pins too. */
static bool mount_bpffs(void)
{
	char parent[64];
	struct stat self, up;
	snprintf(parent, sizeof(parent), "/proc/%d/ns/mnt", (int)getppid());
	if (stat("/proc/self/ns/mnt", &self) || stat(parent, &up) || self.st_ino != up.st_ino ||
	    self.st_dev != up.st_dev)
		return false;
	return mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") == 0 && is_bpffs();
}

static int pin_dir(const char *ifname, char *dir, size_t cap)
{
	struct stat st;
	if (!is_bpffs() && !mount_bpffs())
		return -ENOTDIR;
	/* interfaces of the same name live in different namespaces: tell them apart */
	if (stat("/proc/self/ns/net", &st))
		return -errno;
	mkdir("/sys/fs/bpf/peak", 0700);
	snprintf(dir, cap, "/sys/fs/bpf/peak/%lu-%s", (unsigned long)st.st_ino, ifname);
	return 0;
}

/* Removes the pins in dir and dir itself: a filter's, or stale ones of a namespace that was
 * deleted without a detach (namespace inode numbers are reused). */
static void unpin_dir(const char *dir)
{
	char path[256 + 256 + 2];
	DIR *d = opendir(dir);
	for (struct dirent *e; d && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

/* libbpf's messages, less the kernel's complaint when the clsact qdisc already exists
 * (which is fine: the TC programs join it). */
static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char msg[1024];
	if (level == LIBBPF_DEBUG)
		return 0;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	return strstr(msg, "Exclusivity flag on") ? 0 : fputs(msg, stderr);
}

static int fail(char *err, size_t errlen, int e, const char *what, const char *arg)
{
	if (e == -ENOTDIR)
		snprintf(
		    err, errlen,
		    "no BPF filesystem at /sys/fs/bpf, and it cannot be mounted from here (not "
		    "root, or a private mount namespace: 'ip netns exec' hides /sys/fs/bpf, use "
		    "nsenter --net=/run/netns/NAME)");
	else
		snprintf(err, errlen, "%s%s: %s", what, arg, strerror(-e));
	return e;
}

void filter_svc_fill(struct filter_svc *v, const struct ssa_space *sp, unsigned pfx_index,
                     const uint8_t *secret)
{
	memset(v, 0, sizeof(*v));
	v->p = (uint8_t)sp->p;
	v->slice = sp->d.slice;
	v->s = (uint8_t)sp->s;
	v->hb = (uint8_t)sp->hb;
	v->fanbits = (uint8_t)sp->fanbits;
	v->w = (uint8_t)sp->w;
	v->select = sp->d.select;
	v->host = sp->d.host;
	v->fanout = sp->d.fanout;
	v->pow = sp->d.pow;
	v->skew = sp->d.skew;
	v->period = sp->d.period;
	v->pfx_index = pfx_index;
	v->nslices = sp->nslices;
	memcpy(v->key, sp->d.key, 16);
	if (secret)
		memcpy(v->secret, secret, 16);
	filter_svc_derive(v);
}

/* The map entries of a configuration, one per service prefix. */
static int fill(int map, const struct peak_config *cfg, bool prune, char *err, size_t errlen)
{
	struct filter_key keys[FILTER_MAX_PREFIXES];
	size_t nk = 0;
	for (unsigned i = 0; i < cfg->nsvc; i++) {
		const struct cfg_service *s = &cfg->svc[i];
		const struct ssa_space *sp = &s->space;
		struct filter_svc v;
		filter_svc_fill(&v, sp, 0, NULL);
		v.svc_id = i;
		filter_svc_set_rate(&v, s->rate, s->burst);
		if (sp->d.select == SSA_HOP || sp->d.host == SSA_HOP) {
			int r = peak_secret_read(s->secret_file, v.secret);
			if (r)
				return fail(err, errlen, r < 0 ? r : -EINVAL, "secret file ",
				            s->secret_file);
		}
		for (unsigned p = 0; p < sp->n; p++) {
			if (nk == FILTER_MAX_PREFIXES)
				return fail(err, errlen, -E2BIG, "too many service prefixes", "");
			struct filter_key *k = &keys[nk++];
			memset(k, 0, sizeof(*k));
			k->prefixlen = sp->p;
			memcpy(k->addr, sp->pfx[p].addr, 16);
			v.pfx_index = p;
			if (bpf_map_update_elem(map, k, &v, BPF_ANY))
				return fail(err, errlen, -errno, "services map", "");
		}
		memset(v.secret, 0, sizeof(v.secret));
	}
	if (!prune)
		return 0;
	struct filter_key cur, next;
	bool have = false;
	while (bpf_map_get_next_key(map, have ? &cur : NULL, &next) == 0) {
		bool keep = false;
		for (size_t k = 0; k < nk && !keep; k++)
			keep = !memcmp(&keys[k], &next, sizeof(next));
		cur = next;
		have = true;
		if (!keep) {
			bpf_map_delete_elem(map, &next);
			have = false; /* restart the walk: the key we stood on is gone */
		}
	}
	return 0;
}

struct filter_handle {
	struct bpf_object *obj;
	int ifindex, services, counters;
	enum filter_mode hook; /* native or generic */
	char dir[256];         /* its pins */
};

/* Attaches (or, prog_fd -1, detaches) one of our TC programs on the interface. */
static int tc_set(int ifindex, enum bpf_tc_attach_point where, int prog_fd)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = where);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = TC_HANDLE, .priority = TC_PRIORITY);
	if (prog_fd < 0)
		return bpf_tc_detach(&hook, &o);
	int r = bpf_tc_hook_create(&hook);
	if (r && r != -EEXIST)
		return r;
	o.prog_fd = prog_fd;
	o.flags = BPF_TC_F_REPLACE;
	return bpf_tc_attach(&hook, &o);
}

/* Takes the XDP program and both TC programs off the interface (whatever is there). */
static int detach_all(int ifindex)
{
	tc_set(ifindex, BPF_TC_INGRESS, -1);
	tc_set(ifindex, BPF_TC_EGRESS, -1);
	/* both hooks: flags 0 would mean the native one only, where the driver has one */
	int r = bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL);
	int g = bpf_xdp_detach(ifindex, XDP_FLAGS_SKB_MODE, NULL);
	return r && g ? r : 0;
}

static int prog_fd(struct bpf_object *obj, const char *name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(obj, name);
	return p ? bpf_program__fd(p) : -1;
}

static const char *const mode_names[] = {"auto", "native", "generic"};
enum { NMODES = sizeof(mode_names) / sizeof(mode_names[0]) };

const char *filter_mode_name(enum filter_mode mode)
{
	return (unsigned)mode < NMODES ? mode_names[mode] : "?";
}

int filter_mode_parse(const char *s, enum filter_mode *mode)
{
	for (unsigned m = 0; m < NMODES; m++)
		if (!strcmp(s, mode_names[m])) {
			*mode = (enum filter_mode)m;
			return 0;
		}
	return -EINVAL;
}

/* Whether the interface is a veth (its driver's name, from the ethtool ioctl). */
static bool is_veth(const char *ifname)
{
	struct ethtool_drvinfo info = {.cmd = ETHTOOL_GDRVINFO};
	struct ifreq ifr = {.ifr_data = (char *)&info};
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	bool veth = fd >= 0 && ioctl(fd, SIOCETHTOOL, &ifr) == 0 && !strcmp(info.driver, "veth");
	if (fd >= 0)
		close(fd);
	return veth;
}

/* Attaches the XDP program to the hook the mode asks for (see enum filter_mode). */
static int xdp_attach(int ifindex, const char *ifname, int pfd, enum filter_mode mode,
                      enum filter_mode *used)
{
	if (mode == FILTER_MODE_AUTO && is_veth(ifname))
		mode = FILTER_MODE_GENERIC;
	int r = -EOPNOTSUPP;
	if (mode != FILTER_MODE_GENERIC &&
	    !(r = bpf_xdp_attach(ifindex, pfd, XDP_FLAGS_DRV_MODE, NULL)))
		*used = FILTER_MODE_NATIVE;
	else if (mode != FILTER_MODE_NATIVE &&
	         !(r = bpf_xdp_attach(ifindex, pfd, XDP_FLAGS_SKB_MODE, NULL)))
		*used = FILTER_MODE_GENERIC;
	return r;
}

/* Loads the object, fills its services and attaches it to the mode's XDP hook. */
static struct bpf_object *load_attach(const char *ifname, const char *obj_path,
                                      const struct peak_config *cfg, enum filter_mode mode,
                                      enum filter_mode *used, int *ifindex, char *err,
                                      size_t errlen)
{
	int r;
	*ifindex = (int)if_nametoindex(ifname);
	if (!*ifindex) {
		fail(err, errlen, -ENODEV, "interface ", ifname);
		return NULL;
	}
	libbpf_set_print(quiet_print);
	size_t sz;
	const void *elf = filter_bpf__elf_bytes(&sz);
	LIBBPF_OPTS(bpf_object_open_opts, embedded, .object_name = "filter_bpf");
	const char *what = obj_path ? obj_path : "the embedded object";
	struct bpf_object *obj = obj_path ? bpf_object__open_file(obj_path, NULL)
	                                  : bpf_object__open_mem(elf, sz, &embedded);
	if (!obj) {
		fail(err, errlen, -errno, "cannot open ", what);
		return NULL;
	}
	if ((r = bpf_object__load(obj))) {
		bpf_object__close(obj);
		fail(err, errlen, r, "cannot load (root? verifier?) ", what);
		return NULL;
	}
	int pfd = prog_fd(obj, "peak_filter"), cls = prog_fd(obj, "peak_classify"),
	    ans = prog_fd(obj, "peak_answered");
	int map = bpf_object__find_map_fd_by_name(obj, "services");
	if (pfd < 0 || cls < 0 || ans < 0 || map < 0) {
		bpf_object__close(obj);
		fail(err, errlen, -ENOENT, "not PEAK's filter: ", what);
		return NULL;
	}
	if (fill(map, cfg, false, err, errlen)) {
		bpf_object__close(obj);
		return NULL;
	}
	/* the TC programs first: once XDP runs, its classes and the flows must be in use */
	if ((r = tc_set(*ifindex, BPF_TC_INGRESS, cls)) ||
	    (r = tc_set(*ifindex, BPF_TC_EGRESS, ans))) {
		detach_all(*ifindex);
		bpf_object__close(obj);
		fail(err, errlen, r, "cannot attach the TC programs to ", ifname);
		return NULL;
	}
	if ((r = xdp_attach(*ifindex, ifname, pfd, mode, used))) {
		detach_all(*ifindex);
		bpf_object__close(obj);
		fail(err, errlen, r,
		     mode == FILTER_MODE_NATIVE && r == -EOPNOTSUPP
		         ? "no native XDP hook (try --mode generic) on "
		         : "cannot attach to ",
		     ifname);
		return NULL;
	}
	return obj;
}

/* Pins the maps and the XDP program under dir (stale pins removed first), so that
 * 'peak filter' commands find the filter. On failure no pin is left. */
static int pin_all(struct bpf_object *obj, const char *dir, char *err, size_t errlen)
{
	char path[320];
	int r;
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "peak_filter");
	unpin_dir(dir);
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/prog", dir);
	if ((r = bpf_object__pin_maps(obj, dir)) || bpf_program__pin(prog, path)) {
		r = r ? r : -errno;
		bpf_object__unpin_maps(obj, dir);
		rmdir(dir);
		return fail(err, errlen, r, "cannot pin under ", dir);
	}
	return 0;
}

int filter_attach(const char *ifname, const char *obj_path, const struct peak_config *cfg,
                  enum filter_mode mode, enum filter_mode *used, char *err, size_t errlen)
{
	char dir[256];
	int ifindex, r;
	enum filter_mode hook;
	if ((r = pin_dir(ifname, dir, sizeof(dir))))
		return fail(err, errlen, r, "/proc/self/ns/net", "");
	struct bpf_object *obj =
	    load_attach(ifname, obj_path, cfg, mode, &hook, &ifindex, err, errlen);
	if (!obj)
		return -EINVAL;
	if (used)
		*used = hook;
	if ((r = pin_all(obj, dir, err, errlen))) {
		detach_all(ifindex);
		bpf_object__close(obj);
		return r;
	}
	bpf_object__close(obj); /* the pins and the attachment keep it alive */
	return 0;
}

struct filter_handle *filter_open(const char *ifname, const char *obj_path,
                                  const struct peak_config *cfg, enum filter_mode mode, char *err,
                                  size_t errlen)
{
	struct filter_handle *h = calloc(1, sizeof(*h));
	if (!h) {
		fail(err, errlen, -ENOMEM, "", "");
		return NULL;
	}
	if (!(h->obj =
	          load_attach(ifname, obj_path, cfg, mode, &h->hook, &h->ifindex, err, errlen))) {
		free(h);
		return NULL;
	}
	/* pinned when it can be, so that 'peak filter' commands reach it; without a BPF
	 * filesystem (under 'ip netns exec') it works all the same, unpinned */
	err[0] = '\0';
	int r = pin_dir(ifname, h->dir, sizeof(h->dir));
	if (r)
		fail(err, errlen, r, "/proc/self/ns/net", "");
	if (r || pin_all(h->obj, h->dir, err, errlen))
		h->dir[0] = '\0';
	h->services = bpf_object__find_map_fd_by_name(h->obj, "services");
	h->counters = bpf_object__find_map_fd_by_name(h->obj, "counters");
	return h;
}

int filter_handle_update(struct filter_handle *h, const struct peak_config *cfg, char *err,
                         size_t errlen)
{
	return fill(h->services, cfg, true, err, errlen);
}

static int sum_counters(int map, uint64_t packets[FC_N], uint64_t bytes[FC_N])
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v = calloc(ncpu > 0 ? (size_t)ncpu : 1, sizeof(*v));
	int r = v && ncpu > 0 ? 0 : -ENOMEM;
	for (__u32 c = 0; !r && c < 2 * FC_N; c++) {
		if (bpf_map_lookup_elem(map, &c, v)) {
			r = -errno;
			break;
		}
		uint64_t sum = 0;
		for (int i = 0; i < ncpu; i++)
			sum += v[i];
		if (c < FC_N)
			packets[c] = sum;
		else
			bytes[c - FC_N] = sum;
	}
	free(v);
	return r;
}

int filter_handle_stats(struct filter_handle *h, uint64_t packets[FC_N], uint64_t bytes[FC_N])
{
	return sum_counters(h->counters, packets, bytes);
}

void filter_close(struct filter_handle *h, bool detach)
{
	if (!h)
		return;
	if (detach) {
		detach_all(h->ifindex);
		if (h->dir[0])
			unpin_dir(h->dir);
	}
	bpf_object__close(h->obj);
	free(h);
}

int filter_detach(const char *ifname, char *err, size_t errlen)
{
	char dir[256];
	unsigned ifindex = if_nametoindex(ifname);
	int r;
	if (!ifindex)
		return fail(err, errlen, -ENODEV, "interface ", ifname);
	if ((r = pin_dir(ifname, dir, sizeof(dir))))
		return fail(err, errlen, r, "/proc/self/ns/net", "");
	r = detach_all((int)ifindex);
	unpin_dir(dir);
	return r ? fail(err, errlen, r, "cannot detach from ", ifname) : 0;
}

static int open_pin(const char *ifname, const char *name, char *err, size_t errlen)
{
	char dir[256], path[320];
	int r = pin_dir(ifname, dir, sizeof(dir));
	if (r)
		return fail(err, errlen, r, "/proc/self/ns/net", "");
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = bpf_obj_get(path);
	if (fd < 0)
		return fail(err, errlen, -errno, "no PEAK filter attached to ", ifname);
	return fd;
}

int filter_update(const char *ifname, const struct peak_config *cfg, char *err, size_t errlen)
{
	int map = open_pin(ifname, "services", err, errlen);
	if (map < 0)
		return map;
	int r = fill(map, cfg, true, err, errlen);
	close(map);
	return r;
}

int filter_stats(const char *ifname, uint64_t packets[FC_N], uint64_t bytes[FC_N], char *err,
                 size_t errlen)
{
	int map = open_pin(ifname, "counters", err, errlen);
	if (map < 0)
		return map;
	int r = sum_counters(map, packets, bytes);
	close(map);
	return r ? fail(err, errlen, r, "counters of ", ifname) : 0;
}

const char *filter_counter_name(unsigned c)
{
	static const char *const n[] = {"outside",      "known_good",    "assumed_good",
	                                "possibly_bad", "reject_fanout", "reject_slice",
	                                "reject_host",  "reject_pow",    "reject_signature",
	                                "not_ipv6",     "malformed"};
	_Static_assert(sizeof(n) / sizeof(n[0]) == FC_N, "a name per counter");
	return c < FC_N ? n[c] : "?";
}

/* Writes the signature table; hits of slot (when slot >= 0) start again from 0. */
static int sigtab_write(int map, int hits, const struct filter_sigtab *tab, int slot)
{
	__u32 z = 0;
	if (bpf_map_update_elem(map, &z, tab, BPF_ANY))
		return -errno;
	if (slot < 0)
		return 0;
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *zero = calloc(ncpu > 0 ? (size_t)ncpu : 1, sizeof(*zero));
	__u32 k = (__u32)slot;
	int r = zero && !bpf_map_update_elem(hits, &k, zero, BPF_ANY) ? 0 : -ENOMEM;
	free(zero);
	return r;
}

/* Opens the pinned signature table and its hit counters. */
static int sig_open(const char *ifname, int *map, int *hits, struct filter_sigtab *tab, char *err,
                    size_t errlen)
{
	__u32 z = 0;
	*map = open_pin(ifname, "signatures", err, errlen);
	if (*map < 0)
		return *map;
	*hits = open_pin(ifname, "sighits", err, errlen);
	if (*hits < 0) {
		close(*map);
		return *hits;
	}
	if (bpf_map_lookup_elem(*map, &z, tab)) {
		int r = -errno;
		close(*map);
		close(*hits);
		return fail(err, errlen, r, "signature table of ", ifname);
	}
	return 0;
}

int filter_sig_add(const char *ifname, const struct filter_sig *g, char *err, size_t errlen)
{
	struct filter_sigtab tab;
	int map, hits, slot = -1, r = sig_open(ifname, &map, &hits, &tab, err, errlen);
	if (r)
		return r;
	for (int k = FILTER_MAX_SIGNATURES - 1; k >= 0; k--) {
		if (tab.used[k] && !memcmp(&tab.sig[k], g, sizeof(*g))) {
			snprintf(err, errlen, "the same signature is already in slot %d", k);
			r = -EEXIST;
			goto out;
		}
		if (!tab.used[k])
			slot = k;
	}
	if (slot < 0) {
		snprintf(err, errlen, "all %d signature slots are in use", FILTER_MAX_SIGNATURES);
		r = -ENOSPC;
		goto out;
	}
	/* the signature first, unused; then it goes live (the filter reads without a lock) */
	tab.sig[slot] = *g;
	if ((r = sigtab_write(map, hits, &tab, slot)))
		goto fail;
	tab.used[slot] = 1;
	if (tab.n < (unsigned)slot + 1)
		tab.n = (unsigned)slot + 1;
	if ((r = sigtab_write(map, hits, &tab, -1)))
		goto fail;
	r = slot;
	goto out;
fail:
	fail(err, errlen, r, "signature table of ", ifname);
out:
	close(map);
	close(hits);
	return r;
}

int filter_sig_del(const char *ifname, unsigned slot, char *err, size_t errlen)
{
	struct filter_sigtab tab;
	int map, hits, r = sig_open(ifname, &map, &hits, &tab, err, errlen);
	if (r)
		return r;
	if (slot >= FILTER_MAX_SIGNATURES || !tab.used[slot]) {
		snprintf(err, errlen, "no signature in slot %u", slot);
		r = -ENOENT;
		goto out;
	}
	tab.used[slot] = 0;
	while (tab.n && !tab.used[tab.n - 1])
		tab.n--;
	if (!(r = sigtab_write(map, hits, &tab, -1))) {
		memset(&tab.sig[slot], 0, sizeof(tab.sig[slot]));
		r = sigtab_write(map, hits, &tab, -1);
	}
	if (r)
		fail(err, errlen, r, "signature table of ", ifname);
out:
	close(map);
	close(hits);
	return r;
}

/* Sums each slot's per-CPU hits. */
static void sig_hits(int hmap, uint64_t hits[FILTER_MAX_SIGNATURES])
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v = calloc(ncpu > 0 ? (size_t)ncpu : 1, sizeof(*v));
	for (__u32 k = 0; k < FILTER_MAX_SIGNATURES; k++) {
		hits[k] = 0;
		if (!v || bpf_map_lookup_elem(hmap, &k, v))
			continue;
		for (int i = 0; i < ncpu; i++)
			hits[k] += v[i];
	}
	free(v);
}

int filter_sig_list(const char *ifname, struct filter_sigtab *tab,
                    uint64_t hits[FILTER_MAX_SIGNATURES], char *err, size_t errlen)
{
	int map, hmap, r = sig_open(ifname, &map, &hmap, tab, err, errlen);
	if (r)
		return r;
	sig_hits(hmap, hits);
	close(map);
	close(hmap);
	return 0;
}

bool filter_handle_pinned(const struct filter_handle *h)
{
	return h->dir[0] != '\0';
}

const char *filter_handle_hook(const struct filter_handle *h)
{
	return filter_mode_name(h->hook);
}

int filter_handle_sigs(struct filter_handle *h, struct filter_sigtab *tab,
                       uint64_t hits[FILTER_MAX_SIGNATURES])
{
	__u32 z = 0;
	int map = bpf_object__find_map_fd_by_name(h->obj, "signatures");
	int hmap = bpf_object__find_map_fd_by_name(h->obj, "sighits");
	if (map < 0 || hmap < 0)
		return -ENOENT;
	if (bpf_map_lookup_elem(map, &z, tab))
		return -errno;
	sig_hits(hmap, hits);
	return 0;
}
