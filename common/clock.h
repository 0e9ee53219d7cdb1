/*
 * clock — wall and monotonic time in milliseconds.
 *
 * Wall time (clock_wall_ms) is what we store and show; monotonic time
 * (clock_mono_ms) is what timers and deadlines use, so that a clock step
 * never fires or starves a timer.
 */
#ifndef BATON_CLOCK_H
#define BATON_CLOCK_H

#include <stdint.h>
#include <stddef.h>

uint64_t clock_wall_ms(void);
uint64_t clock_mono_ms(void);
/** Monotonic microseconds, for measuring work. */
uint64_t clock_mono_us(void);
/** Format wall ms as ISO-8601 UTC with milliseconds into buf (>= 25 bytes). */
void clock_iso8601(uint64_t wall_ms, char *buf, size_t len);

#endif
