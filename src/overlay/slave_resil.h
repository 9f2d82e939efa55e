#pragma once
/* The resiliency slave (slave_resil.c): probes the paths to the gateway slave's peers and,
 * while a direct path is down, sends that peer's packets through another gateway. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "master.h"
#include "ovconf.h"

/* A resiliency slave for conf->resil (copied) working with gateway slave gw (borrowed; it
 * outlives this slave). Returns NULL with the reason in err. */
struct ov_slave *resil_new(const struct ov_conf *conf, struct ov_slave *gw, char *err,
                           size_t errlen);

/* Frees a slave from resil_new (detached or never attached); NULL is allowed. */
void resil_free(struct ov_slave *s);

/* The resiliency slave's view of the gateway peer of cookie: its direct path is down (being
 * relayed), and the path's RTT in us: the lowest probe RTT of the last 30 s, which a busy
 * host's stalls do not raise (0: not measured yet). Returns 0 or -ENOENT. Loop thread. */
int resil_peer(struct ov_slave *s, uint32_t cookie, bool *down, uint32_t *rtt_us);

/* Tests: the slave reads time from now_ns (a monotonic clock in ns) instead of peak_mono_ns.
 * Call before attaching it. */
void resil_set_clock(struct ov_slave *s, uint64_t (*now_ns)(void));

/* Tests: runs one tick (the 50 ms timer's work) at the slave's clock now. */
void resil_tick(struct ov_slave *s);
