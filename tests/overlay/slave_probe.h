#pragma once
/* What a slave says of itself, for the overlay's unit harnesses (gw_harness, resil_harness). */
#include <stdbool.h>

#include "slave.h"

/* The slave's metric name (with its labels) as its stats say now; ~0 if absent. */
unsigned long long slave_metric(struct ov_slave *s, const char *name);

/* True if the slave's show output holds text. */
bool slave_show_has(struct ov_slave *s, const char *text);
