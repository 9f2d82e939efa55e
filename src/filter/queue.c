#include "queue.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Runs tc with the arguments (NULL-terminated); 0 or -EINVAL with the command in err. */
static int tc(char *err, size_t errlen, char *const argv[])
{
	pid_t pid;
	int st = 0;
	int r = posix_spawnp(&pid, "tc", NULL, NULL, argv, environ);
	if (r) {
		snprintf(err, errlen, "cannot run tc (iproute2): %s", strerror(r));
		return -r;
	}
	if (waitpid(pid, &st, 0) == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		size_t n = (size_t)snprintf(err, errlen, "tc failed:");
		for (int i = 1; argv[i] && n < errlen; i++)
			n += (size_t)snprintf(err + n, errlen - n, " %s", argv[i]);
		return -EINVAL;
	}
	return 0;
}

/* The rate scaled by num/den in tc syntax ("100mbit" * 1/10 = "10000kbit"), or -EINVAL. */
static int rate_part(const char *rate, unsigned num, unsigned den, char out[static 32])
{
	static const struct {
		const char *unit;
		double bits;
	} units[] = {{"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9}, {"bit", 1}};
	char *end;
	double v = strtod(rate, &end);
	for (size_t k = 0; v > 0 && k < sizeof(units) / sizeof(units[0]); k++)
		if (!strcasecmp(end, units[k].unit)) {
			double bits = v * units[k].bits * num / den;
			snprintf(out, 32, "%.0fbit", bits < 8 ? 8 : bits);
			return 0;
		}
	return -EINVAL;
}

int filter_queue_install(const char *dev, const char *rate, unsigned bad_limit, char *err,
                         size_t errlen)
{
	char *d = (char *)dev, *r_ = (char *)rate, part[3][32], lim[3][16], id[3][16], leaf[3][16];
	static const unsigned share[3] = {1, 10, 100}; /* assured: rate / share */
	unsigned limits[3] = {QUEUE_LIMIT_KNOWN, QUEUE_LIMIT_ASSUMED,
	                      bad_limit ? bad_limit : QUEUE_LIMIT_BAD};
	int r;
	for (int c = 0; c < 3; c++)
		if (rate_part(rate, 1, share[c], part[c])) {
			snprintf(err, errlen,
			         "rate '%s' is not a number with bit, kbit, mbit or gbit", rate);
			return -EINVAL;
		}
	char *root[] = {"tc",     "qdisc", "replace", "dev",     d,   "root",
	                "handle", "5045:", "htb",     "default", "2", NULL};
	char *top[] = {"tc",      "class", "replace", "dev", d,      "parent", "5045:", "classid",
	               "5045:10", "htb",   "rate",    r_,    "ceil", r_,       NULL};
	if ((r = tc(err, errlen, root)) || (r = tc(err, errlen, top)))
		return r;
	for (int c = 0; c < 3; c++) {
		char prio[2] = {(char)('0' + c), 0};
		snprintf(id[c], sizeof(id[c]), "5045:%d", c + 1);
		snprintf(leaf[c], sizeof(leaf[c]), "%x:", 0x5046 + c);
		snprintf(lim[c], sizeof(lim[c]), "%u", limits[c]);
		char *cls[] = {"tc",      "class",   "replace", "dev", d,      "parent",
		               "5045:10", "classid", id[c],     "htb", "rate", part[c],
		               "ceil",    r_,        "prio",    prio,  NULL};
		char *fifo[] = {"tc",     "qdisc", "replace", "dev",   d,      "parent", id[c],
		                "handle", leaf[c], "pfifo",   "limit", lim[c], NULL};
		if ((r = tc(err, errlen, cls)) || (r = tc(err, errlen, fifo)))
			return r;
	}
	return 0;
}

int filter_queue_remove(const char *dev, char *err, size_t errlen)
{
	char *del[] = {"tc", "qdisc", "del", "dev", (char *)dev, "root", NULL};
	return tc(err, errlen, del);
}
