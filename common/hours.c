/* hours — parse and test business hours; see hours.h. */
#include "hours.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const hours_days[7] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

static int hours_day(const char **p)
{
	for (int d = 0; d < 7; d++)
		if (strncasecmp(*p, hours_days[d], 3) == 0) {
			*p += 3;
			return d;
		}
	return -1;
}

static int hours_time(const char **p)
{
	int hh, mm, n = 0;
	if (sscanf(*p, "%2d:%2d%n", &hh, &mm, &n) != 2 || n < 4 || hh < 0 || hh > 24 || mm < 0 ||
	    mm > 59 || (hh == 24 && mm))
		return -1;
	*p += n;
	return hh * 60 + mm;
}

static void hours_skip(const char **p)
{
	while (**p == ' ' || **p == '\t')
		(*p)++;
}

int hours_parse(const char *spec, struct hours *h, const char **why)
{
	const char *p = spec;
	memset(h, 0, sizeof(*h));
	hours_skip(&p);
	if (!*p) {
		h->always = true;
		return 0;
	}
	while (*p) {
		hours_skip(&p);
		int d1 = hours_day(&p), d2 = d1;
		if (d1 < 0) {
			*why = "expected a day (mon, tue, ...)";
			return -1;
		}
		if (*p == '-') {
			p++;
			if ((d2 = hours_day(&p)) < 0) {
				*why = "expected a day after '-'";
				return -1;
			}
		}
		do {
			hours_skip(&p);
			int from = hours_time(&p);
			if (from < 0 || *p++ != '-') {
				*why = "expected HH:MM-HH:MM";
				return -1;
			}
			int to = hours_time(&p);
			if (to <= from) {
				*why = "a time range must end after it starts";
				return -1;
			}
			for (int d = d1;; d = (d + 1) % 7) {
				if (h->n[d] == HOURS_RANGES_MAX) {
					*why = "too many ranges on one day";
					return -1;
				}
				h->from[d][h->n[d]] = from;
				h->to[d][h->n[d]++] = to;
				if (d == d2)
					break;
			}
			hours_skip(&p);
		} while (*p == ',' && p++);
		hours_skip(&p);
		if (*p == ';')
			p++;
		else if (*p) {
			*why = "expected ';' between day groups";
			return -1;
		}
	}
	return 0;
}

bool hours_open(const struct hours *h, uint64_t wall_ms, int utc_offset_min)
{
	if (h->always)
		return true;
	long long mins = (long long)(wall_ms / 60000) + utc_offset_min;
	long long days = mins / 1440;
	int minute = (int)(mins % 1440);
	int dow = (int)((days + 4) % 7); /* 1970-01-01 was a Thursday */
	for (int i = 0; i < h->n[dow]; i++)
		if (minute >= h->from[dow][i] && minute < h->to[dow][i])
			return true;
	return false;
}

uint64_t hours_next_open(const struct hours *h, uint64_t wall_ms, int utc_offset_min,
			 char *when, size_t whenlen)
{
	if (hours_open(h, wall_ms, utc_offset_min)) {
		if (when && whenlen)
			snprintf(when, whenlen, "now");
		return wall_ms;
	}
	long long mins = (long long)(wall_ms / 60000) + utc_offset_min;
	long long today = mins / 1440;
	int minute = (int)(mins % 1440);
	/* Eight days: today's later ranges, the six days after, and today's
	 * earlier ranges a week on. */
	for (int ahead = 0; ahead <= 7; ahead++) {
		int dow = (int)((today + ahead + 4) % 7);
		int best = -1;
		for (int i = 0; i < h->n[dow]; i++) {
			int from = h->from[dow][i];
			if ((ahead > 0 || from > minute) && (best < 0 || from < best))
				best = from;
		}
		if (best < 0)
			continue;
		long long at = (today + ahead) * 1440 + best - utc_offset_min; /* UTC minutes */
		if (when && whenlen)
			snprintf(when, whenlen, "%s %02d:%02d", hours_days[dow], best / 60, best % 60);
		return (uint64_t)at * 60000u;
	}
	if (when && whenlen)
		snprintf(when, whenlen, "never");
	return 0;
}
