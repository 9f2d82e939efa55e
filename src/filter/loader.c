#include "loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "peak/util.h"

/* BPF_FS_MAGIC from linux/magic.h */
enum { BPFFS_MAGIC = 0xcafe4a11 };

static int pin_dir(const char *ifname, char *dir, size_t cap)
{
	struct stat st;
	struct statfs fs;
	if (statfs("/sys/fs/bpf", &fs) || (unsigned long)fs.f_type != BPFFS_MAGIC)
		return -ENOTDIR;
	/* interfaces of the same name live in different namespaces: tell them apart */
	if (stat("/proc/self/ns/net", &st))
		return -errno;
	mkdir("/sys/fs/bpf/peak", 0700);
	snprintf(dir, cap, "/sys/fs/bpf/peak/%lu-%s", (unsigned long)st.st_ino, ifname);
	return 0;
}

static int fail(char *err, size_t errlen, int e, const char *what, const char *arg)
{
	if (e == -ENOTDIR)
		snprintf(err, errlen,
		         "no BPF filesystem at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf; "
		         "'ip netns exec' hides it: use nsenter --net=/run/netns/NAME)");
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
};

/* Loads the object, fills its services and attaches it (native XDP, generic if refused). */
static struct bpf_object *load_attach(const char *ifname, const char *obj_path,
                                      const struct peak_config *cfg, int *ifindex, char *err,
                                      size_t errlen)
{
	int r;
	*ifindex = (int)if_nametoindex(ifname);
	if (!*ifindex) {
		fail(err, errlen, -ENODEV, "interface ", ifname);
		return NULL;
	}
	struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
	if (!obj) {
		fail(err, errlen, -errno, "cannot open ", obj_path);
		return NULL;
	}
	if ((r = bpf_object__load(obj))) {
		bpf_object__close(obj);
		fail(err, errlen, r, "cannot load (root? verifier?) ", obj_path);
		return NULL;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "peak_filter");
	int pfd = prog ? bpf_program__fd(prog) : -1;
	int map = bpf_object__find_map_fd_by_name(obj, "services");
	if (pfd < 0 || map < 0) {
		bpf_object__close(obj);
		fail(err, errlen, -ENOENT, "not PEAK's filter: ", obj_path);
		return NULL;
	}
	if (fill(map, cfg, false, err, errlen)) {
		bpf_object__close(obj);
		return NULL;
	}
	r = bpf_xdp_attach(*ifindex, pfd, XDP_FLAGS_DRV_MODE, NULL);
	if (r)
		r = bpf_xdp_attach(*ifindex, pfd, XDP_FLAGS_SKB_MODE, NULL);
	if (r) {
		bpf_object__close(obj);
		fail(err, errlen, r, "cannot attach to ", ifname);
		return NULL;
	}
	return obj;
}

int filter_attach(const char *ifname, const char *obj_path, const struct peak_config *cfg,
                  char *err, size_t errlen)
{
	char dir[256], path[320];
	int ifindex, r;
	if ((r = pin_dir(ifname, dir, sizeof(dir))))
		return fail(err, errlen, r, "/proc/self/ns/net", "");
	struct bpf_object *obj = load_attach(ifname, obj_path, cfg, &ifindex, err, errlen);
	if (!obj)
		return -EINVAL;
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "peak_filter");
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/prog", dir);
	unlink(path);
	if ((r = bpf_object__pin_maps(obj, dir)) || bpf_program__pin(prog, path)) {
		r = r ? r : -errno;
		bpf_xdp_detach(ifindex, 0, NULL);
		bpf_object__unpin_maps(obj, dir);
		rmdir(dir);
		bpf_object__close(obj);
		return fail(err, errlen, r, "cannot pin under ", dir);
	}
	bpf_object__close(obj); /* the pins and the attachment keep it alive */
	return 0;
}

struct filter_handle *filter_open(const char *ifname, const char *obj_path,
                                  const struct peak_config *cfg, char *err, size_t errlen)
{
	struct filter_handle *h = calloc(1, sizeof(*h));
	if (!h) {
		fail(err, errlen, -ENOMEM, "", "");
		return NULL;
	}
	if (!(h->obj = load_attach(ifname, obj_path, cfg, &h->ifindex, err, errlen))) {
		free(h);
		return NULL;
	}
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
	if (detach)
		bpf_xdp_detach(h->ifindex, 0, NULL);
	bpf_object__close(h->obj);
	free(h);
}

int filter_detach(const char *ifname, char *err, size_t errlen)
{
	char dir[256], path[320];
	unsigned ifindex = if_nametoindex(ifname);
	int r;
	if (!ifindex)
		return fail(err, errlen, -ENODEV, "interface ", ifname);
	if ((r = pin_dir(ifname, dir, sizeof(dir))))
		return fail(err, errlen, r, "/proc/self/ns/net", "");
	r = bpf_xdp_detach((int)ifindex, 0, NULL);
	static const char *const pins[] = {"prog", "services", "counters", "clock"};
	for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, pins[i]);
		unlink(path);
	}
	rmdir(dir);
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
	static const char *const n[] = {"outside",      "pass",        "reject_fanout",
	                                "reject_slice", "reject_host", "reject_pow",
	                                "not_ipv6",     "malformed"};
	return c < FC_N ? n[c] : "?";
}

void filter_default_object(char *buf, size_t cap)
{
	ssize_t n = readlink("/proc/self/exe", buf, cap > 32 ? cap - 32 : 0);
	buf[n > 0 ? n : 0] = '\0';
	char *slash = strrchr(buf, '/');
	char *at = slash ? slash + 1 : buf;
	snprintf(at, cap - (size_t)(at - buf), "filter.bpf.o");
}
