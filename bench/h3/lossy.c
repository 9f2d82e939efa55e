/* A lossy, delayed path in user space, in C: bench/h3/lossy.py's twin without the Python
 * relay's own 2-13 ms of processing (that jitter is as large as the stalls the benchmark
 * looks for). Same command line, same output, same drop log:
 *
 *   lossy --dev NAME [--loss PCT] [--delay-ms MS] [--seed N] [--queue N] [--drops FILE]
 *
 * Opens a TUN device (no packet information) and writes every packet it reads back into it
 * after --delay-ms, dropping --loss percent at random first. Prints 'lossy: ready DEV ...'
 * once the device exists; on SIGTERM or SIGINT one line 'lossy: {json}' with its counters
 * (received, dropped, overflow, sent, write_errors, queued) and exits 0. With --drops FILE it
 * writes one line per packet dropped at random: 'T_NS SRC DST PROTO LEN DPORT' (see
 * lossy.py). The delay is constant, so the order is kept; at most --queue packets wait. */
#define _GNU_SOURCE /* ppoll */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

enum {
	SLOT = 2048, /* bytes kept per packet: the path's MTU is 1500 */
	HEAD = 44,   /* bytes of a dropped packet kept for the log: IPv6, then the ports */
};

struct drop {
	uint64_t t;
	uint8_t head[HEAD];
	uint16_t hlen;
	uint32_t len;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: a seeded, reproducible stream of drops */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static void drop_line(FILE *f, const struct drop *d)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	if (d->hlen < 40 || d->head[0] >> 4 != 6 ||
	    !inet_ntop(AF_INET6, d->head + 8, src, sizeof(src)) ||
	    !inet_ntop(AF_INET6, d->head + 24, dst, sizeof(dst))) {
		fprintf(f, "%" PRIu64 " - - - %" PRIu32 " -\n", d->t, d->len);
		return;
	}
	uint8_t proto = d->head[6];
	if ((proto == 6 || proto == 17) && d->hlen >= HEAD)
		fprintf(f, "%" PRIu64 " %s %s %u %" PRIu32 " %u\n", d->t, src, dst, proto, d->len,
		        (unsigned)(d->head[42] << 8 | d->head[43]));
	else
		fprintf(f, "%" PRIu64 " %s %s %u %" PRIu32 " -\n", d->t, src, dst, proto, d->len);
}

static int usage(void)
{
	fprintf(stderr, "usage: lossy --dev NAME [--loss PCT] [--delay-ms MS] [--seed N] "
	                "[--queue N] [--drops FILE]\n"
	                "  --loss 0..100, --delay-ms >= 0, --queue >= 1, --dev up to 15 "
	                "characters\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *dev = NULL, *drops_path = NULL;
	double loss = 1.0, delay_ms = 5.0;
	uint64_t seed = 0, queue = 50000;
	bool seeded = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;
		if (!v)
			return usage();
		if (!strcmp(a, "--dev"))
			dev = v;
		else if (!strcmp(a, "--loss"))
			loss = strtod(v, &end);
		else if (!strcmp(a, "--delay-ms"))
			delay_ms = strtod(v, &end);
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, &end, 10), seeded = true;
		else if (!strcmp(a, "--queue"))
			queue = strtoull(v, &end, 10);
		else if (!strcmp(a, "--drops"))
			drops_path = v;
		else
			return usage();
		if (end && (*end || end == v))
			return usage();
		i++;
	}
	if (!dev || strlen(dev) > 15 || !(loss >= 0 && loss <= 100) || !(delay_ms >= 0) ||
	    queue < 1 || queue > 1000000)
		return usage();
	if (!seeded)
		seed = now_ns() ^ (uint64_t)getpid() << 32;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (fd == -1 || ioctl(fd, TUNSETIFF, &ifr) == -1) {
		perror("lossy: /dev/net/tun");
		return 1;
	}
	uint8_t *slots = malloc(queue * SLOT); /* pages are touched only as the queue grows */
	uint64_t *due = malloc(queue * sizeof(*due));
	uint32_t *lens = malloc(queue * sizeof(*lens));
	size_t ndrops = 0, cap = 0;
	struct drop *drops = NULL;
	if (!slots || !due || !lens) {
		fprintf(stderr, "lossy: out of memory\n");
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: ppoll returns */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* p as a threshold on 64-bit draws: loss 100 drops everything */
	uint64_t thresh =
	    loss >= 100 ? UINT64_MAX : (uint64_t)(loss / 100 * 18446744073709551616.0);
	uint64_t delay = (uint64_t)(delay_ms * 1e6);
	uint64_t n_recv = 0, n_drop = 0, n_over = 0, n_sent = 0, n_werr = 0;
	size_t head = 0, len = 0; /* the queue: a ring of slots */
	printf("lossy: ready %s loss %g%% delay %g ms\n", dev, loss, delay_ms);
	fflush(stdout);
	while (!stop) {
		uint64_t now = now_ns();
		struct timespec ts = {0, 200000000}, *tp = &ts;
		if (len) {
			uint64_t w = due[head] > now ? due[head] - now : 0;
			ts.tv_sec = (time_t)(w / 1000000000u);
			ts.tv_nsec = (long)(w % 1000000000u);
		}
		struct pollfd p = {fd, POLLIN, 0};
		if (ppoll(&p, 1, tp, NULL) == -1 && errno != EINTR)
			break;
		now = now_ns();
		for (;;) {
			size_t tail = (head + len) % queue;
			uint8_t *buf = slots + tail * SLOT, spill[SLOT];
			bool full = len == queue;
			ssize_t n = read(fd, full ? spill : buf, SLOT);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			n_recv++;
			if (thresh && (loss >= 100 || rng_next(&seed) < thresh)) {
				n_drop++;
				if (drops_path) {
					if (ndrops == cap) {
						size_t nc = cap ? 2 * cap : 4096;
						struct drop *nd = realloc(drops, nc * sizeof(*nd));
						if (!nd)
							continue; /* counted, not logged */
						drops = nd;
						cap = nc;
					}
					struct drop *d = &drops[ndrops++];
					d->t = now;
					d->len = (uint32_t)n;
					d->hlen = (uint16_t)(n < HEAD ? n : HEAD);
					memcpy(d->head, full ? spill : buf, d->hlen);
				}
			} else if (full) {
				n_over++;
			} else {
				due[tail] = now + delay;
				lens[tail] = (uint32_t)n;
				len++;
			}
		}
		now = now_ns();
		while (len && due[head] <= now) {
			if (write(fd, slots + head * SLOT, lens[head]) == (ssize_t)lens[head])
				n_sent++;
			else
				n_werr++;
			head = (head + 1) % queue;
			len--;
		}
	}
	if (drops_path) {
		FILE *f = fopen(drops_path, "we");
		if (!f) {
			perror(drops_path);
		} else {
			for (size_t i = 0; i < ndrops; i++)
				drop_line(f, &drops[i]);
			fclose(f);
		}
	}
	printf("lossy: {\"received\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"overflow\": %" PRIu64
	       ", \"sent\": %" PRIu64 ", \"write_errors\": %" PRIu64 ", \"queued\": %zu}\n",
	       n_recv, n_drop, n_over, n_sent, n_werr, len);
	fflush(stdout);
	free(drops);
	free(slots);
	free(due);
	free(lens);
	close(fd);
	return 0;
}
