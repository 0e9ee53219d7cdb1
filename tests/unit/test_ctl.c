/*
 * test_ctl — ctl/since: batonctl's --since parsing. Durations count back
 * from now (s, m, h, d, w, and sums such as 1h30m); ISO-8601 dates and
 * times are UTC unless they carry an offset; anything else is refused,
 * including dates that do not exist.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ctl.h"

/* 2026-11-23T00:00:00Z */
#define NOW 1795392000000ull
#define SEC 1000ull
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

static uint64_t since(const char *s)
{
	uint64_t v = 0;
	assert_int_equal(ctl_parse_since(s, NOW, &v), 0);
	return v;
}

static void refused(const char *s)
{
	uint64_t v = 12345;
	assert_int_equal(ctl_parse_since(s, NOW, &v), -1);
	assert_true(v == 12345);
}

static void test_durations(void **state)
{
	(void)state;
	assert_true(since("90s") == NOW - 90 * SEC);
	assert_true(since("30m") == NOW - 30 * MIN);
	assert_true(since("1h") == NOW - HOUR);
	assert_true(since("2d") == NOW - 2 * DAY);
	assert_true(since("1w") == NOW - 7 * DAY);
	assert_true(since("1h30m") == NOW - HOUR - 30 * MIN);
	assert_true(since("0s") == NOW);
	/* Further back than 1970: everything (1, not 0, which means no filter). */
	assert_true(since("36500d") == 1);
}

static void test_iso(void **state)
{
	(void)state;
	assert_true(since("2026-11-23") == NOW);
	assert_true(since("2026-11-22") == NOW - DAY);
	assert_true(since("2026-11-23T10:30") == NOW + 10 * HOUR + 30 * MIN);
	assert_true(since("2026-11-23T10:30:15Z") == NOW + 10 * HOUR + 30 * MIN + 15 * SEC);
	assert_true(since("2026-11-23 10:30:15") == NOW + 10 * HOUR + 30 * MIN + 15 * SEC);
	assert_true(since("2026-11-23T10:30:15.250Z") == NOW + 10 * HOUR + 30 * MIN + 15 * SEC + 250);
	assert_true(since("2026-11-23T10:30+02:00") == NOW + 8 * HOUR + 30 * MIN);
	assert_true(since("2026-11-23T10:30-03:00") == NOW + 13 * HOUR + 30 * MIN);
	assert_true(since("2024-02-29") > 0); /* a leap day exists */
}

static void test_refused(void **state)
{
	(void)state;
	refused("");
	refused("h");
	refused("1");
	refused("1x");
	refused("-1h");
	refused("1h ");
	refused("1.5h");
	refused("99999999999999999999d");
	refused("2026-13-01");
	refused("2026-02-30");
	refused("2025-02-29");
	refused("2026-11-23T25:00");
	refused("2026-11-23T10");
	refused("2026-11-23T10:30+2");
	refused("26-11-23");
	refused("2026-11-23x");
	refused("yesterday");
	assert_int_equal(ctl_parse_since(NULL, NOW, &(uint64_t){ 0 }), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_iso),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
