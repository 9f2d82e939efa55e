#pragma once
/* The class queue toward the pods (issue 6): an HTB qdisc whose three leaf classes take the
 * filter's classes (the skb priority the TC ingress program sets is their class id) and
 * serve them in order: known good, assumed good, possibly bad. Set up with iproute2's tc.
 * (This kernel has HTB but no prio qdisc; HTB also gives the queue a rate, which it needs to
 * be the bottleneck where the order matters.) */
#include <stddef.h>

/* Leaf queue limits in packets, in class order: the possibly-bad class is the shortest and
 * last served, so it is the first to drop when the link backs up. */
enum { QUEUE_LIMIT_KNOWN = 1000, QUEUE_LIMIT_ASSUMED = 1000, QUEUE_LIMIT_BAD = 100 };

/* Replaces the root qdisc of dev with the class queue at rate (tc syntax: "100mbit", the
 * link's or the pod's capacity): HTB handle 5045:, class 5045:1 known good (assured the
 * whole rate, priority 0), 5045:2 assumed good (a tenth assured, priority 1; also what
 * comes without a class), 5045:3 possibly bad (a hundredth assured, priority 2), each
 * borrowing up to the rate in priority order, each with a pfifo (bad_limit packets for the
 * last, 0: QUEUE_LIMIT_BAD). 0, or -errno with the failing tc command in err. */
int filter_queue_install(const char *dev, const char *rate, unsigned bad_limit, char *err,
                         size_t errlen);

/* Deletes the root qdisc of dev (back to the device's default). 0 or -errno. */
int filter_queue_remove(const char *dev, char *err, size_t errlen);
