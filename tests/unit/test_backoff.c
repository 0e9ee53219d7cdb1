/*
 * test_backoff — common/backoff: exponential delay with full jitter in
 * [d/2, d], d = min(base * 2^(attempt-1), cap); attempt 0 counts as 1;
 * a server's Retry-After wins but is still capped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

#define SAMPLES 2000

static uint64_t expected_d(unsigned attempt, uint64_t base, uint64_t cap)
{
	uint64_t d = base;
	for (unsigned i = 1; i < attempt; i++) {
		d *= 2;
		if (d >= cap)
			return cap;
	}
	return d < cap ? d : cap;
}

/* Samples backoff_ms many times: all within [d/2, d], and the jitter spreads. */
static void check_range(unsigned attempt, uint64_t base, uint64_t cap)
{
	uint64_t d = expected_d(attempt ? attempt : 1, base, cap);
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < SAMPLES; i++) {
		uint64_t v = backoff_ms(attempt, base, cap, -1);
		if (v < d / 2 || v > d)
			fail_msg("attempt %u base %llu cap %llu: %llu outside [%llu, %llu]", attempt,
				 (unsigned long long)base, (unsigned long long)cap,
				 (unsigned long long)v, (unsigned long long)(d / 2),
				 (unsigned long long)d);
		if (v < lo)
			lo = v;
		if (v > hi)
			hi = v;
	}
	/* with a range this wide, 2000 samples are not all the same value */
	if (d - d / 2 >= 10)
		assert_true(hi > lo);
}

static void test_attempts_1_to_10(void **state)
{
	(void)state;
	for (unsigned a = 1; a <= 10; a++)
		check_range(a, 100, 30000);
	for (unsigned a = 1; a <= 10; a++)
		check_range(a, 250, 60000);
}

static void test_cap(void **state)
{
	(void)state;
	/* 100 * 2^9 = 51200 > 5000: capped */
	check_range(10, 100, 5000);
	for (int i = 0; i < SAMPLES; i++) {
		uint64_t v = backoff_ms(30, 1000, 8000, -1);
		assert_true(v >= 4000 && v <= 8000);
	}
	/* a very large attempt number neither overflows nor escapes the cap */
	for (int i = 0; i < SAMPLES; i++) {
		uint64_t v = backoff_ms(1000, 1000, 60000, -1);
		assert_true(v >= 30000 && v <= 60000);
	}
	/* base above the cap is capped at once */
	for (int i = 0; i < SAMPLES; i++) {
		uint64_t v = backoff_ms(1, 10000, 3000, -1);
		assert_true(v >= 1500 && v <= 3000);
	}
}

static void test_attempt_zero_is_one(void **state)
{
	(void)state;
	for (int i = 0; i < SAMPLES; i++) {
		uint64_t v = backoff_ms(0, 400, 30000, -1);
		assert_true(v >= 200 && v <= 400);
	}
	check_range(0, 400, 30000);
}

static void test_small_values(void **state)
{
	(void)state;
	/* d = 1: half is 0, so the delay is 0 exactly */
	for (int i = 0; i < 100; i++)
		assert_true(backoff_ms(1, 1, 100, -1) == 0);
	assert_true(backoff_ms(1, 0, 100, -1) == 0);
	/* d = 3: [1, 3] */
	for (int i = 0; i < SAMPLES; i++) {
		uint64_t v = backoff_ms(1, 3, 100, -1);
		assert_true(v >= 1 && v <= 3);
	}
}

static void test_retry_after_wins(void **state)
{
	(void)state;
	assert_true(backoff_ms(1, 100, 30000, 5000) == 5000);
	assert_true(backoff_ms(7, 100, 30000, 1234) == 1234);
	assert_true(backoff_ms(3, 100, 30000, 0) == 0);
	/* capped, so a hostile Retry-After cannot park a job for a day */
	assert_true(backoff_ms(1, 100, 30000, 86400000L) == 30000);
	assert_true(backoff_ms(1, 100, 30000, 30000) == 30000);
	/* negative means "none": back to exponential */
	uint64_t v = backoff_ms(1, 100, 30000, -1);
	assert_true(v >= 50 && v <= 100);
	v = backoff_ms(1, 100, 30000, -5000);
	assert_true(v >= 50 && v <= 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attempts_1_to_10),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_attempt_zero_is_one),
		cmocka_unit_test(test_small_values),
		cmocka_unit_test(test_retry_after_wins),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
