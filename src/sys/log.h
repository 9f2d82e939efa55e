#pragma once
/* Daemon logging: one line per message on stderr, "TIME LEVEL source: text". Nothing a
 * remote packet can cause is logged per packet: such events are counted in metrics. */
#include <syslog.h>

/* Minimum level printed (LOG_DEBUG shows all); default LOG_INFO. */
void log_set_level(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Blocks SIGINT and SIGTERM (and SIGHUP if hup) in the calling thread and the threads it
 * starts later, ignores SIGPIPE, and returns a signalfd that reads them, or -errno. */
int signals_fd(int hup);
