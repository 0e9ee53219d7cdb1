/*
 * since — batonctl's --since: a duration back from now, or an ISO-8601
 * time parsed with strptime(3) and timegm(3); see ctl.h.
 */
#include "ctl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int since_duration(const char *s, uint64_t *ms)
{
	uint64_t total = 0;
	if (!*s)
		return -1;
	while (*s) {
		if (!isdigit((unsigned char)*s))
			return -1;
		char *end;
		unsigned long long n = strtoull(s, &end, 10);
		uint64_t unit;
		switch (*end) {
		case 's': unit = 1000ull; break;
		case 'm': unit = 60 * 1000ull; break;
		case 'h': unit = 3600 * 1000ull; break;
		case 'd': unit = 86400 * 1000ull; break;
		case 'w': unit = 7 * 86400 * 1000ull; break;
		default: return -1;
		}
		/* A century back is far enough, and keeps the sum from overflowing. */
		if (n > 100ull * 366 * 86400 * 1000 / unit)
			return -1;
		total += n * unit;
		s = end + 1;
	}
	*ms = total;
	return 0;
}

/* Milliseconds after a seconds field: ".5", ".123456" (cut to ms). */
static const char *since_fraction(const char *p, uint64_t *ms)
{
	uint64_t v = 0, scale = 100;
	if (*p != '.' || !isdigit((unsigned char)p[1]))
		return p;
	for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
		v += (uint64_t)(*p - '0') * scale;
	*ms = v;
	return p;
}

/* "Z", "+HH:MM", "-HH:MM" or nothing (UTC) into *off (seconds east); NULL when bad. */
static const char *since_zone(const char *p, long *off)
{
	*off = 0;
	if (*p == 'Z')
		return p + 1;
	if (*p != '+' && *p != '-')
		return p;
	struct tm z = { 0 };
	/* glibc's %z takes +HH:MM, +HHMM and +HH; a zone is four digits here. */
	if (strlen(p) != 6 || p[3] != ':')
		return NULL;
	const char *end = strptime(p, "%z", &z);
	if (!end || *end)
		return NULL;
	*off = z.tm_gmtoff;
	return end;
}

static int since_iso(const char *s, uint64_t *ms)
{
	/* The longest first: strptime stops where a format ends. */
	static const char *const formats[] = { "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
					       "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d" };
	if (strlen(s) < 10 || !isdigit((unsigned char)s[0]) || s[4] != '-' || s[7] != '-')
		return -1;
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		struct tm tm = { 0 };
		uint64_t frac = 0;
		long off = 0;
		const char *p = strptime(s, formats[i], &tm);
		if (!p)
			continue;
		bool with_time = i < 4;
		if (i < 2)
			p = since_fraction(p, &frac);
		if (with_time && !(p = since_zone(p, &off)))
			return -1;
		if (*p)
			continue;
		int mday = tm.tm_mday, mon = tm.tm_mon;
		time_t t = timegm(&tm);
		/* timegm normalises 2026-02-31 into March: that is not a date. */
		if (t < 0 || tm.tm_mday != mday || tm.tm_mon != mon || tm.tm_year < 70)
			return -1;
		t -= off;
		if (t < 0)
			return -1;
		*ms = (uint64_t)t * 1000u + frac;
		return 0;
	}
	return -1;
}

int ctl_parse_since(const char *s, uint64_t now_ms, uint64_t *out)
{
	uint64_t v;
	if (!s)
		return -1;
	if (since_duration(s, &v) == 0) {
		*out = v >= now_ms ? 1 : now_ms - v; /* 1: everything, 0 would mean "no filter" */
		return 0;
	}
	if (since_iso(s, &v) == 0) {
		*out = v ? v : 1;
		return 0;
	}
	return -1;
}
