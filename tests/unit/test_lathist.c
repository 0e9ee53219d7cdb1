/*
 * test_lathist — common/lathist: percentiles within 1/16 of the exact
 * value, never below it; empty histogram; huge values land in the last
 * bucket without overflow.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "lathist.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_empty_is_zero(void **state)
{
	struct lathist h = { 0 };
	assert_int_equal(lathist_quantile(&h, 0.5), 0);
	assert_int_equal(lathist_quantile(&h, 0.99), 0);
}

static void test_small_values_are_exact(void **state)
{
	struct lathist h = { 0 };
	for (uint64_t v = 0; v < 16; v++)
		lathist_record(&h, v);
	assert_int_equal(h.count, 16);
	assert_int_equal(lathist_quantile(&h, 1.0), 15);
	assert_int_equal(lathist_quantile(&h, 0.5), 7);
}

/* Against the exact percentile of a spread of values over six decades. */
static void test_quantiles_within_a_sixteenth(void **state)
{
	enum { N = 20000 };
	static uint64_t v[N];
	struct lathist h = { 0 };
	srand(7);
	for (int i = 0; i < N; i++) {
		v[i] = (uint64_t)rand() % 1000 * (uint64_t)(1 + rand() % 1000);
		lathist_record(&h, v[i]);
	}
	qsort(v, N, sizeof(v[0]), cmp_u64);
	const double qs[] = { 0.5, 0.9, 0.99, 0.999 };
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		uint64_t exact = v[(size_t)(qs[i] * N + 0.5) - 1];
		uint64_t got = lathist_quantile(&h, qs[i]);
		if (got < exact || got > exact + exact / 16 + 1)
			fail_msg("q%.3f: got %llu, exact %llu", qs[i], (unsigned long long)got,
				 (unsigned long long)exact);
	}
	assert_int_equal(lathist_quantile(&h, 1.0), v[N - 1]);
}

static void test_huge_values_do_not_overflow(void **state)
{
	struct lathist h = { 0 };
	lathist_record(&h, UINT64_MAX / 4);
	lathist_record(&h, 1);
	assert_int_equal(h.max_us, UINT64_MAX / 4);
	assert_int_equal(lathist_quantile(&h, 1.0), UINT64_MAX / 4);
	lathist_reset(&h);
	assert_int_equal(h.count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_is_zero),
		cmocka_unit_test(test_small_values_are_exact),
		cmocka_unit_test(test_quantiles_within_a_sixteenth),
		cmocka_unit_test(test_huge_values_do_not_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
