/* sd_notify(3) wrappers: see notify.h. */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

enum { NOTIFY_STATUS_MAX = 256 };

/* sd_notify returns > 0 when sent, 0 when NOTIFY_SOCKET is unset, -errno on failure. The
 * environment is kept (unset_environment 0): the daemons notify more than once. */
static int send_state(const char *state)
{
	int r = sd_notify(0, state);
	return r < 0 ? r : 0;
}

int notify_ready(const char *fmt, ...)
{
	char msg[sizeof("READY=1\nSTATUS=") + NOTIFY_STATUS_MAX];
	int n = snprintf(msg, sizeof(msg), "READY=1\nSTATUS=");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap); /* a long status is cut */
	va_end(ap);
	return send_state(msg);
}

int notify_reloading(void)
{
	char msg[64];
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	             (unsigned long long)ts.tv_nsec / 1000ULL);
	return send_state(msg);
}

int notify_stopping(void)
{
	return send_state("STOPPING=1");
}
