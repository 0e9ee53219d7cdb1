/*
 * hours — business hours: when a person can answer.
 *
 * Format: "mon-fri 08:00-19:00; sat 08:00-13:00" — groups separated by
 * ';', each a day or day range and one or more HH:MM-HH:MM ranges
 * separated by ','. Times are local to the configured UTC offset. An
 * empty specification means always open.
 */
#ifndef BATON_HOURS_H
#define BATON_HOURS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ranges per day: a split shift or two at most in practice. */
#define HOURS_RANGES_MAX 4

struct hours {
	bool always;
	int n[7];                          /* ranges per day, 0 = Sunday */
	int from[7][HOURS_RANGES_MAX], to[7][HOURS_RANGES_MAX]; /* minutes of the day */
};

/** Parse spec into h. 0, or -1 with *why (static text) on a syntax error. */
int hours_parse(const char *spec, struct hours *h, const char **why);
/** Whether wall_ms falls inside the hours, at utc_offset_min from UTC. */
bool hours_open(const struct hours *h, uint64_t wall_ms, int utc_offset_min);
/**
 * The next opening at or after wall_ms (wall ms), or wall_ms itself when
 * open now. 0 when the hours never open (no ranges). If when is given it
 * gets the local day and time of that opening, e.g. "mon 08:00".
 */
uint64_t hours_next_open(const struct hours *h, uint64_t wall_ms, int utc_offset_min,
			 char *when, size_t whenlen);

#endif
