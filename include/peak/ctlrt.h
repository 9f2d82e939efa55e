#pragma once
/*
 * A service's endpoints added at run time, as a node agent learns them on its controller
 * link (ctlproto.h): before each map of a service the controller sends one "add" line per
 * endpoint of that service added at run time (the whole set, not a change) and a "del"
 * line for each one removed since; both take effect with that map's "end". Pure code: the
 * agent collects the lines here, then composes the service's endpoints from its file's
 * and these (the file wins on an id it lists).
 */
#include <stdbool.h>
#include <stdint.h>

#include "peak/assign.h"
#include "peak/config.h"
#include "peak/ctlproto.h"

enum {
	CTLRT_MAX = ASSIGN_MAX_ENDPOINTS, /* lines collected for one map, and endpoints a service
	                                   * may have in all */
};

struct ctlrt_line {
	char id[CTL_ID_MAX];
	char node[CTL_ID_MAX];
	uint8_t addr[16];
	uint32_t weight;
	bool del;
	uint32_t seq; /* order of arrival: the last line naming an id wins */
};

/* The lines collected since the last map: all for one service (svc, in presentation form
 * as the lines name it; "" when none). */
struct ctlrt {
	char svc[CTL_SVC_MAX];
	struct ctlrt_line *l;
	uint32_t n, cap;
};

/* Takes an add or del line m for the next map. A line for another service than the lines
 * collected so far drops those (*dropped says how many) and starts over with it. Returns 0,
 * -EINVAL for an address no pod has (unspecified, loopback, multicast, link-local, mapped
 * IPv4) or a line of another kind, -E2BIG past CTLRT_MAX lines, -ENOMEM; *why then says
 * what (static text) and nothing is taken. */
int ctlrt_take(struct ctlrt *r, const struct ctl_msg *m, uint32_t *dropped, const char **why);

/* Whether the lines collected are for the service named svc (a DNS name in presentation
 * form; compared as names, case aside). True when none are collected. */
bool ctlrt_for(const struct ctlrt *r, const char *svc);

/* Composes a service's endpoints: the file's (those of ep[0..nep) with line > 0, in order),
 * then one per id the lines collected add last (line 0, sorted by id), less the ids the
 * file lists (*shadowed counts those) and those a later del removes. The lines are used up
 * (r is empty after). Returns 0 with *out malloc'ed (*nout entries), -E2BIG if the service
 * would pass CTLRT_MAX endpoints, or -ENOMEM. */
int ctlrt_compose(struct ctlrt *r, const struct cfg_endpoint *ep, unsigned nep,
                  struct cfg_endpoint **out, unsigned *nout, unsigned *shadowed);

/* Reads the add lines of a controller's stored record or state (text, len bytes: lines
 * that do not begin "add " are skipped unparsed, as is an add line the grammar refuses) and
 * appends each as an endpoint (line 0) to adds[i], nadd[i], where i = svc_of(its service,
 * arg); a line for which svc_of returns < 0 is skipped. The arrays grow geometrically (so
 * thousands of adds in one service cost linear time): each must be empty (NULL, 0) or
 * grown by this function only. Returns 0 or -ENOMEM (what was appended stays). */
int ctlrt_scan(const char *text, size_t len, int (*svc_of)(const struct dns_name *n, void *arg),
               void *arg, struct cfg_endpoint **adds, unsigned *nadd);

/* Drops the lines collected (r stays usable). */
void ctlrt_reset(struct ctlrt *r);

/* Frees r's memory and empties it. */
void ctlrt_free(struct ctlrt *r);
