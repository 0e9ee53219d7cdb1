/*
 * lathist — log-linear latency buckets; see lathist.h.
 *
 * A value v >= LATHIST_SUB falls in the power-of-two range of its top bit
 * and, inside it, in one of LATHIST_SUB equal steps; smaller values have a
 * bucket each. A bucket's reported value is its upper bound, so
 * percentiles never flatter the figures.
 */
#include "lathist.h"

#include <string.h>

static unsigned lathist_index(uint64_t v)
{
	if (v < LATHIST_SUB)
		return (unsigned)v;
	unsigned top = 63u - (unsigned)__builtin_clzll(v); /* >= 4 */
	unsigned step = (unsigned)((v >> (top - 4)) & (LATHIST_SUB - 1));
	unsigned i = (top - 3) * LATHIST_SUB + step;
	return i < LATHIST_BUCKETS ? i : LATHIST_BUCKETS - 1;
}

static uint64_t lathist_upper(unsigned i)
{
	if (i < LATHIST_SUB)
		return i;
	unsigned top = i / LATHIST_SUB + 3, step = i % LATHIST_SUB;
	return ((uint64_t)(LATHIST_SUB + step + 1) << (top - 4)) - 1;
}

void lathist_record(struct lathist *h, uint64_t us)
{
	h->count++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
	h->bucket[lathist_index(us)]++;
}

uint64_t lathist_quantile(const struct lathist *h, double q)
{
	if (!h->count)
		return 0;
	uint64_t want = (uint64_t)(q * (double)h->count + 0.5), seen = 0;
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < LATHIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want) {
			if (i == LATHIST_BUCKETS - 1)
				return h->max_us; /* the catch-all bucket has no upper bound */
			uint64_t up = lathist_upper(i);
			return up < h->max_us ? up : h->max_us;
		}
	}
	return h->max_us;
}

uint64_t lathist_bucket_upper(unsigned i)
{
	return lathist_upper(i);
}

void lathist_reset(struct lathist *h)
{
	memset(h, 0, sizeof(*h));
}
