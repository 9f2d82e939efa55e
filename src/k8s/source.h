#pragma once
/*
 * The controller's side of --source kubernetes (source.c): the cluster's view applied as a
 * reload is (ctlr_reload), moving only the slices it must. An endpoint that leaves (its
 * pod deleted, or no longer serving) is first marked down, so only its slices move; its
 * lines are then left out of the live state the new services adopt. An endpoint that
 * drains (terminating, still serving) stays, marked down; it comes up again if it stops
 * draining. Runs on the controller's loop thread.
 */
#include <stddef.h>

#include "../controller/ctl.h"
#include "peak/config.h"

/* The configuration of the cluster's current view (kube_config). Returns 0 or -errno with
 * the reason in err. */
int ksrc_config(struct ctl *c, struct peak_config **out, char *err, size_t errlen);

/* Before next replaces the running configuration: marks down every endpoint that next no
 * longer has (each moving only its slices). */
void ksrc_before(struct ctl *c, const struct peak_config *next);

/* Leaves out of t (the live state as control lines, NUL-terminated, t->len with the NUL)
 * the weight and health lines of endpoints that next does not have. */
void ksrc_filter(const struct peak_config *next, struct text *t);

/* After the swap: endpoints that drain go down, those that stopped draining come up. */
void ksrc_after(struct ctl *c);
