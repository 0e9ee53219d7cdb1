/*
 * lathist — a fixed-size latency histogram, for the figures a process
 * reports about itself (bench, logs, metrics).
 *
 * Buckets are log-linear over microseconds: 16 linear steps per power of
 * two, so any recorded value is off by at most 1/16 (6%) in a percentile,
 * from 1 us to about 9 hours (larger values share the last bucket). Recording is O(1) and allocation free.
 * No locking: one histogram belongs to one thread.
 */
#ifndef BATON_LATHIST_H
#define BATON_LATHIST_H

#include <stdint.h>

#define LATHIST_SUB 16
#define LATHIST_BUCKETS (32 * LATHIST_SUB)

struct lathist {
	uint64_t count;
	uint64_t sum_us;
	uint64_t max_us;
	uint64_t bucket[LATHIST_BUCKETS];
};

void lathist_record(struct lathist *h, uint64_t us);
/** The value below which a fraction q (0..1) of the records lie; 0 if empty. */
uint64_t lathist_quantile(const struct lathist *h, double q);
void lathist_reset(struct lathist *h);
/** The largest value bucket i holds (0 <= i < LATHIST_BUCKETS - 1; the last has no bound). */
uint64_t lathist_bucket_upper(unsigned i);

#endif
