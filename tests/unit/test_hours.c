/*
 * test_hours — router/hours: business-hours specs parse (day ranges, split
 * shifts, wrap-around ranges) or fail with a reason, and hours_open
 * answers for a given instant and UTC offset.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "hours.h"

/* 2026-11-23 was a Monday. */
#define MON_0000_UTC 1795392000000ull
#define MIN 60000ull
#define DAY (1440 * MIN)

static void test_empty_is_always_open(void **state)
{
	(void)state;
	struct hours h;
	const char *why = NULL;
	assert_int_equal(hours_parse("  ", &h, &why), 0);
	assert_true(h.always);
	assert_true(hours_open(&h, MON_0000_UTC + 3 * 60 * MIN, 0));
}

static void test_weekdays_and_saturday(void **state)
{
	(void)state;
	struct hours h;
	const char *why = NULL;
	assert_int_equal(hours_parse("mon-fri 08:00-19:00; sat 08:00-13:00", &h, &why), 0);
	assert_false(hours_open(&h, MON_0000_UTC + 7 * 60 * MIN + 59 * MIN, 0)); /* Mon 07:59 */
	assert_true(hours_open(&h, MON_0000_UTC + 8 * 60 * MIN, 0));             /* Mon 08:00 */
	assert_false(hours_open(&h, MON_0000_UTC + 19 * 60 * MIN, 0));           /* Mon 19:00 */
	assert_true(hours_open(&h, MON_0000_UTC + 4 * DAY + 18 * 60 * MIN, 0));  /* Fri 18:00 */
	assert_true(hours_open(&h, MON_0000_UTC + 5 * DAY + 12 * 60 * MIN, 0));  /* Sat 12:00 */
	assert_false(hours_open(&h, MON_0000_UTC + 5 * DAY + 14 * 60 * MIN, 0)); /* Sat 14:00 */
	assert_false(hours_open(&h, MON_0000_UTC + 6 * DAY + 10 * 60 * MIN, 0)); /* Sun 10:00 */
}

static void test_offset_and_split_shift(void **state)
{
	(void)state;
	struct hours h;
	const char *why = NULL;
	assert_int_equal(hours_parse("MON 09:00-12:00, 14:00-18:00", &h, &why), 0);
	/* 12:00 UTC is 09:00 at UTC-3. */
	assert_true(hours_open(&h, MON_0000_UTC + 12 * 60 * MIN, -180));
	assert_false(hours_open(&h, MON_0000_UTC + 12 * 60 * MIN, 0));
	assert_false(hours_open(&h, MON_0000_UTC + 13 * 60 * MIN, 0));
	assert_true(hours_open(&h, MON_0000_UTC + 15 * 60 * MIN, 0));
	/* A range across the week's end. */
	assert_int_equal(hours_parse("sat-sun 10:00-11:00", &h, &why), 0);
	assert_true(hours_open(&h, MON_0000_UTC + 6 * DAY + 10 * 60 * MIN, 0));
	assert_false(hours_open(&h, MON_0000_UTC + 10 * 60 * MIN, 0));
}

static void test_errors(void **state)
{
	(void)state;
	struct hours h;
	const char *bad[] = { "monday 08:00-19:00", "mon 8-19", "mon 19:00-08:00", "mon 25:00-26:00",
			      "mon 08:00-19:00 sat 08:00-12:00", "mon-xyz 08:00-09:00" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;
		if (hours_parse(bad[i], &h, &why) != -1)
			fail_msg("'%s' parsed", bad[i]);
		assert_non_null(why);
	}
}

/* The next opening: later today, another day, past the week's end, with an offset. */
static void test_next_open(void **state)
{
	(void)state;
	struct hours h;
	const char *why = NULL;
	char when[32];
	assert_int_equal(hours_parse("mon-fri 08:00-19:00; sat 08:00-13:00", &h, &why), 0);
	/* Mon 06:00 -> Mon 08:00 */
	assert_int_equal(hours_next_open(&h, MON_0000_UTC + 6 * 60 * MIN, 0, when, sizeof(when)),
			 MON_0000_UTC + 8 * 60 * MIN);
	assert_string_equal(when, "mon 08:00");
	/* Open now: now. */
	assert_int_equal(hours_next_open(&h, MON_0000_UTC + 9 * 60 * MIN, 0, when, sizeof(when)),
			 MON_0000_UTC + 9 * 60 * MIN);
	assert_string_equal(when, "now");
	/* Mon 20:00 -> Tue 08:00 */
	assert_int_equal(hours_next_open(&h, MON_0000_UTC + 20 * 60 * MIN, 0, NULL, 0),
			 MON_0000_UTC + DAY + 8 * 60 * MIN);
	/* Sat 14:00 -> next Mon 08:00, across Sunday and the week's end */
	assert_int_equal(hours_next_open(&h, MON_0000_UTC + 5 * DAY + 14 * 60 * MIN, 0, when,
					 sizeof(when)),
			 MON_0000_UTC + 7 * DAY + 8 * 60 * MIN);
	assert_string_equal(when, "mon 08:00");
	/* At UTC-3, 08:00 local is 11:00 UTC. Mon 10:00 UTC is 07:00 local. */
	assert_int_equal(hours_next_open(&h, MON_0000_UTC + 10 * 60 * MIN + 30 * MIN, -180, NULL, 0),
			 MON_0000_UTC + 11 * 60 * MIN);
	/* One day a week, asked just after it closed: a week on. */
	assert_int_equal(hours_parse("wed 10:00-11:00", &h, &why), 0);
	assert_int_equal(hours_next_open(&h, MON_0000_UTC + 2 * DAY + 11 * 60 * MIN, 0, when,
					 sizeof(when)),
			 MON_0000_UTC + 9 * DAY + 10 * 60 * MIN);
	assert_string_equal(when, "wed 10:00");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_is_always_open),
		cmocka_unit_test(test_weekdays_and_saturday),
		cmocka_unit_test(test_offset_and_split_shift),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_next_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
