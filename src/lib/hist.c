/* Log-bucketed histogram; see include/peak/hist.h. */
#include "peak/hist.h"

#include <math.h>
#include <string.h>

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned hist_bucket(uint64_t v)
{
	if (v < HIST_EXACT)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* v in [2^e, 2^(e+1)), e >= 7 */
	unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & 63u;
	return HIST_EXACT + (e - 7) * 64 + sub;
}

uint64_t hist_bucket_low(unsigned b)
{
	if (b < HIST_EXACT)
		return b;
	unsigned e = (b - HIST_EXACT) / 64 + 7, sub = (b - HIST_EXACT) % 64;
	return (uint64_t)(64 + sub) << (e - HIST_SUB_BITS);
}

/* The width of a bucket (1 for the exact ones). */
static uint64_t bucket_width(unsigned b)
{
	return b < HIST_EXACT ? 1 : (uint64_t)1 << ((b - HIST_EXACT) / 64 + 7 - HIST_SUB_BITS);
}

void hist_add(struct hist *h, uint64_t v)
{
	h->bucket[hist_bucket(v)]++;
	h->count++;
	h->sum += (double)v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		dst->bucket[b] += src->bucket[b];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	if (!h->count)
		return 0;
	double r = ceil(p / 100.0 * (double)h->count);
	uint64_t rank = r < 1 ? 1 : r > (double)h->count ? h->count : (uint64_t)r;
	if (rank == h->count)
		return h->max; /* known exactly */
	uint64_t seen = 0;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->bucket[b];
		if (seen >= rank) {
			uint64_t v = hist_bucket_low(b) + bucket_width(b) / 2;
			return v < h->min ? h->min : v > h->max ? h->max : v;
		}
	}
	return h->max;
}

double hist_mean(const struct hist *h)
{
	return h->count ? h->sum / (double)h->count : 0;
}
