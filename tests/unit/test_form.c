/*
 * test_form — common/form: strict application/x-www-form-urlencoded
 * parsing ('+', %XX, order and repeats kept, bad escapes and escaped NUL
 * rejected, parameter limit), form_get, and form_append round trips.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"

/* Parses a NUL-terminated body from an exactly sized heap copy (no NUL after it). */
static int parse(const char *body, size_t max, struct form *f)
{
	size_t n = strlen(body);
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, body, n);
	int rc = form_parse(copy, n, max, f);
	free(copy);
	return rc;
}

static void assert_param(const struct form *f, size_t i, const char *name, const char *value)
{
	assert_true(i < f->n);
	assert_string_equal(f->params[i].name, name);
	assert_string_equal(f->params[i].value, value);
}

static void expect_error(const char *body, size_t max, int want)
{
	struct form f;
	int rc = parse(body, max, &f);
	if (rc != want)
		fail_msg("'%s': got %d, want %d", body, rc, want);
	assert_int_equal(f.n, 0);
	assert_null(f.params);
}

static void test_simple(void **state)
{
	(void)state;
	struct form f;
	assert_int_equal(parse("a=1&b=two&c=3", 16, &f), FORM_EOK);
	assert_int_equal(f.n, 3);
	assert_param(&f, 0, "a", "1");
	assert_param(&f, 1, "b", "two");
	assert_param(&f, 2, "c", "3");
	form_release(&f);
	assert_int_equal(f.n, 0);
	assert_null(f.params);
}

static void test_empty_body(void **state)
{
	(void)state;
	struct form f;
	assert_int_equal(parse("", 16, &f), FORM_EOK);
	assert_int_equal(f.n, 0);
	assert_null(form_get(&f, "a"));
	form_release(&f);
}

static void test_plus_and_escapes(void **state)
{
	(void)state;
	struct form f;
	assert_int_equal(parse("Body=Hello+world%21&From=whatsapp%3A%2B14155550100"
			       "&Caf%C3%A9=%c3%a9t%C3%A9&pct=100%25&plus=%2B",
			       16, &f),
			 FORM_EOK);
	assert_int_equal(f.n, 5);
	assert_param(&f, 0, "Body", "Hello world!");
	assert_param(&f, 1, "From", "whatsapp:+14155550100");
	assert_param(&f, 2, "Caf\xc3\xa9", "\xc3\xa9t\xc3\xa9");
	assert_param(&f, 3, "pct", "100%");
	assert_param(&f, 4, "plus", "+");
	form_release(&f);
}

static void test_repeated_names_in_order(void **state)
{
	(void)state;
	struct form f;
	assert_int_equal(parse("Digits=5678&x=1&Digits=1234&Digits=1234", 16, &f), FORM_EOK);
	assert_int_equal(f.n, 4);
	assert_param(&f, 0, "Digits", "5678");
	assert_param(&f, 1, "x", "1");
	assert_param(&f, 2, "Digits", "1234");
	assert_param(&f, 3, "Digits", "1234");
	/* form_get returns the first */
	assert_string_equal(form_get(&f, "Digits"), "5678");
	form_release(&f);
}

static void test_empty_value_and_no_equals(void **state)
{
	(void)state;
	struct form f;
	assert_int_equal(parse("a=&flag&b==x&c=1=2", 16, &f), FORM_EOK);
	assert_int_equal(f.n, 4);
	assert_param(&f, 0, "a", "");
	assert_param(&f, 1, "flag", "");
	assert_param(&f, 2, "b", "=x");
	assert_param(&f, 3, "c", "1=2");
	form_release(&f);
}

static void test_empty_segments_tolerated(void **state)
{
	(void)state;
	struct form f;
	assert_int_equal(parse("&a=1&&b=2&", 2, &f), FORM_EOK);
	assert_int_equal(f.n, 2);
	assert_param(&f, 0, "a", "1");
	assert_param(&f, 1, "b", "2");
	form_release(&f);
}

static void test_bad_escapes(void **state)
{
	(void)state;
	expect_error("a=%G1", 16, FORM_EENCODING);
	expect_error("a=%1G", 16, FORM_EENCODING);
	expect_error("a=%", 16, FORM_EENCODING);
	expect_error("a=%4", 16, FORM_EENCODING);
	expect_error("a=x%4&b=1", 16, FORM_EENCODING);
	expect_error("a=x%&b=1", 16, FORM_EENCODING);
	expect_error("ok=1&b%ZZ=1", 16, FORM_EENCODING);
	expect_error("a=%%41", 16, FORM_EENCODING);
	expect_error("a=% 1", 16, FORM_EENCODING);
}

static void test_escaped_nul(void **state)
{
	(void)state;
	expect_error("a=x%00y", 16, FORM_EENCODING);
	expect_error("a%00=1", 16, FORM_EENCODING);
	/* a raw NUL byte inside the body is refused as well */
	struct form f;
	static const char raw[] = { 'a', '=', 'x', '\0', 'y' };
	assert_int_equal(form_parse(raw, sizeof(raw), 16, &f), FORM_EENCODING);
	assert_int_equal(f.n, 0);
}

static void test_empty_name(void **state)
{
	(void)state;
	expect_error("=x", 16, FORM_EENCODING);
	expect_error("a=1&=x", 16, FORM_EENCODING);
	expect_error("=", 16, FORM_EENCODING);
}

static void test_too_many(void **state)
{
	(void)state;
	struct form f;
	assert_int_equal(parse("a=1&b=2&c=3", 3, &f), FORM_EOK);
	assert_int_equal(f.n, 3);
	form_release(&f);
	expect_error("a=1&b=2&c=3&d=4", 3, FORM_ETOOMANY);
	expect_error("a=1", 0, FORM_ETOOMANY);

	/* many parameters (past the initial array growth) */
	size_t n = 100;
	char *body = malloc(n * 8 + 1), *p = body;
	assert_non_null(body);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%sp%zu=%zu", i ? "&" : "", i, i);
	assert_int_equal(parse(body, n, &f), FORM_EOK);
	assert_int_equal(f.n, n);
	assert_param(&f, 99, "p99", "99");
	assert_param(&f, 16, "p16", "16");
	form_release(&f);
	assert_int_equal(parse(body, n - 1, &f), FORM_ETOOMANY);
	free(body);
}

static void test_form_get(void **state)
{
	(void)state;
	struct form f;
	assert_int_equal(parse("From=a&To=b&Body=", 16, &f), FORM_EOK);
	assert_string_equal(form_get(&f, "From"), "a");
	assert_string_equal(form_get(&f, "To"), "b");
	assert_string_equal(form_get(&f, "Body"), "");
	assert_null(form_get(&f, "from")); /* names are case-sensitive */
	assert_null(form_get(&f, "Missing"));
	form_release(&f);
}

static void test_append_roundtrip(void **state)
{
	(void)state;
	static const char *const pairs[][2] = {
		{ "To", "whatsapp:+14155550100" },
		{ "Body", "a b+c&d=e%f?g/h#i" },
		{ "Caf\xc3\xa9 name", "ol\xc3\xa1 \xf0\x9f\x98\x80 \xe2\x82\xac" },
		{ "Empty", "" },
		{ "Lines", "one\ntwo\r\nthree\t~-._" },
	};
	size_t np = sizeof(pairs) / sizeof(pairs[0]);
	char *buf = NULL;
	for (size_t i = 0; i < np; i++)
		form_append(&buf, pairs[i][0], pairs[i][1]);
	assert_non_null(buf);
	/* the encoded body has no raw separators or spaces inside values */
	assert_null(strchr(buf, ' '));
	assert_null(strchr(buf, '\n'));
	assert_null(strchr(buf, '+'));
	size_t amps = 0, eqs = 0;
	for (const char *p = buf; *p; p++) {
		amps += *p == '&';
		eqs += *p == '=';
	}
	assert_int_equal(amps, np - 1);
	assert_int_equal(eqs, np);

	struct form f;
	assert_int_equal(parse(buf, 16, &f), FORM_EOK);
	assert_int_equal(f.n, np);
	for (size_t i = 0; i < np; i++)
		assert_param(&f, i, pairs[i][0], pairs[i][1]);
	form_release(&f);
	free(buf);
}

static void test_append_first_has_no_ampersand(void **state)
{
	(void)state;
	char *buf = NULL;
	form_append(&buf, "a", "1");
	assert_string_equal(buf, "a=1");
	form_append(&buf, "b", "x y");
	assert_string_equal(buf, "a=1&b=x%20y");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_empty_body),
		cmocka_unit_test(test_plus_and_escapes),
		cmocka_unit_test(test_repeated_names_in_order),
		cmocka_unit_test(test_empty_value_and_no_equals),
		cmocka_unit_test(test_empty_segments_tolerated),
		cmocka_unit_test(test_bad_escapes),
		cmocka_unit_test(test_escaped_nul),
		cmocka_unit_test(test_empty_name),
		cmocka_unit_test(test_too_many),
		cmocka_unit_test(test_form_get),
		cmocka_unit_test(test_append_roundtrip),
		cmocka_unit_test(test_append_first_has_no_ampersand),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
