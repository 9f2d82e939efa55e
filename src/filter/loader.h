#pragma once
/* Loading the XDP filter onto an interface and driving it: services from a configuration,
 * counters, in-place updates. Program and maps are pinned under /sys/fs/bpf/peak/ so later
 * commands find them. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filter.h"
#include "peak/config.h"

/* The filter's value for prefix pfx_index of a service's space (secret may be NULL). */
void filter_svc_fill(struct filter_svc *v, const struct ssa_space *sp, unsigned pfx_index,
                     const uint8_t *secret);

/* Which XDP hook the filter goes on. Auto: the driver's (native) hook, generic where the
 * driver has none, and generic on veth, whose native hook copies every cloned skb (all
 * locally sent TCP) and reschedules it through NAPI, which costs conforming traffic more. */
enum filter_mode { FILTER_MODE_AUTO, FILTER_MODE_NATIVE, FILTER_MODE_GENERIC };

/* "auto", "native" or "generic" to a mode; -EINVAL for anything else. */
int filter_mode_parse(const char *s, enum filter_mode *mode);

/* A mode's name: "auto", "native" or "generic". */
const char *filter_mode_name(enum filter_mode mode);

/* Loads obj_path (NULL: the object built into this binary by bpftool's skeleton, from
 * filter.bpf.c), fills the services from cfg (hop secrets read from their files),
 * attaches it to the interface's XDP hook of the mode and pins it. Returns 0 or -errno
 * with the reason in err; *used (may be NULL) gets the hook used, native or generic. */
int filter_attach(const char *ifname, const char *obj_path, const struct peak_config *cfg,
                  enum filter_mode mode, enum filter_mode *used, char *err, size_t errlen);

/* A filter the calling process holds: for the agent, which attaches the filter of its
 * node and keeps it in line with its configuration ('peak filter' commands work on it
 * too, through its pins). */
struct filter_handle;

/* Loads, attaches and pins as filter_attach does, and keeps the object open. NULL with the
 * reason in err. When it cannot pin (no BPF filesystem) the filter still runs: err then
 * says why (else it is empty) and filter_handle_pinned is false. */
struct filter_handle *filter_open(const char *ifname, const char *obj_path,
                                  const struct peak_config *cfg, enum filter_mode mode, char *err,
                                  size_t errlen);

/* Rewrites the services in place, as filter_update. 0 or -errno. */
int filter_handle_update(struct filter_handle *h, const struct peak_config *cfg, char *err,
                         size_t errlen);

/* Sums the counters, as filter_stats. 0 or -errno. */
int filter_handle_stats(struct filter_handle *h, uint64_t packets[FC_N], uint64_t bytes[FC_N]);

/* Whether the handle's filter is pinned (reachable by 'peak filter' commands). */
bool filter_handle_pinned(const struct filter_handle *h);

/* The XDP hook the handle's filter is on: "native" or "generic". */
const char *filter_handle_hook(const struct filter_handle *h);

/* The signature table and each slot's hits, as filter_sig_list. 0 or -errno. */
int filter_handle_sigs(struct filter_handle *h, struct filter_sigtab *tab,
                       uint64_t hits[FILTER_MAX_SIGNATURES]);

/* Closes the handle; the filter stays attached (and pinned) unless detach is true. */
void filter_close(struct filter_handle *h, bool detach);

/* Detaches PEAK's filter from the interface and removes its pins. 0 or -errno. */
int filter_detach(const char *ifname, char *err, size_t errlen);

/* Replaces the services of an attached filter with those of cfg, entry by entry: unchanged
 * prefixes are overwritten in place (never absent), removed ones deleted. 0 or -errno. */
int filter_update(const char *ifname, const struct peak_config *cfg, char *err, size_t errlen);

/* Sums the per-CPU counters of an attached filter: packets[FC_N], bytes[FC_N]. */
int filter_stats(const char *ifname, uint64_t packets[FC_N], uint64_t bytes[FC_N], char *err,
                 size_t errlen);

/* Installs a signature in the first free slot of the filter on ifname; conforming packets
 * that match it are classed possibly bad (or dropped, action FSIG_DROP). Returns the slot,
 * -EEXIST (the same signature is installed), -ENOSPC or another -errno. */
int filter_sig_add(const char *ifname, const struct filter_sig *g, char *err, size_t errlen);

/* Removes the signature in slot. 0, -ENOENT (no such signature) or -errno. */
int filter_sig_del(const char *ifname, unsigned slot, char *err, size_t errlen);

/* Reads the signature table and the packets each slot matched. 0 or -errno. */
int filter_sig_list(const char *ifname, struct filter_sigtab *tab,
                    uint64_t hits[FILTER_MAX_SIGNATURES], char *err, size_t errlen);

/* A counter's name ("pass", "outside", "reject_slice", ...). */
const char *filter_counter_name(unsigned c);
