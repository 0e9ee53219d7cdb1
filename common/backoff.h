/*
 * backoff — retry delays: exponential with full jitter, capped, and
 * overridden by the server's Retry-After when it gave one.
 */
#ifndef BATON_BACKOFF_H
#define BATON_BACKOFF_H

#include <stdint.h>

/**
 * Delay before retry number attempt (1 = first retry): a random value in
 * [base*2^(attempt-1)/2, base*2^(attempt-1)], capped at cap_ms. When
 * retry_after_ms >= 0 the server asked for that delay and it wins (still
 * capped, so a hostile value cannot park a job for a day).
 */
uint64_t backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, long retry_after_ms);

#endif
