#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <time.h>

#include "peak/util.h"

static int min_level = LOG_INFO;

void log_set_level(int level)
{
	min_level = level;
}

static void vlog(int level, const char *fmt, va_list ap, uint64_t suppressed)
{
	static const char *const names[] = {"emerg",   "alert",  "crit", "error",
	                                    "warning", "notice", "info", "debug"};
	char line[1024], ts[32];
	struct timespec now;
	struct tm tm;
	if (level > min_level)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	int n = snprintf(line, sizeof(line), "%s.%03ldZ %s ", ts, now.tv_nsec / 1000000,
	                 names[level & 7]);
	if (n > 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (suppressed && n > 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, " (%llu similar suppressed)",
		         (unsigned long long)suppressed);
	fprintf(stderr, "%s\n", line); /* one write per line: lines of threads do not mix */
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, fmt, ap, 0);
	va_end(ap);
}

void log_rl(struct log_limit *rl, int level, const char *fmt, ...)
{
	uint64_t s = peak_mono_ms() / 1000;
	uint64_t last = __atomic_load_n(&rl->last_s, __ATOMIC_RELAXED);
	if (last == s || !__atomic_compare_exchange_n(&rl->last_s, &last, s, false,
	                                              __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	vlog(level, fmt, ap, __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED));
	va_end(ap);
}

int signals_fd(int hup)
{
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (hup)
		sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	int fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	return fd == -1 ? -errno : fd;
}