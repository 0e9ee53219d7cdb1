/*
 * test_utf8 — common/utf8: utf8_valid accepts well-formed UTF-8 (1 to 4
 * bytes, boundaries of each range) and rejects overlongs, surrogates,
 * code points above U+10FFFF, truncated sequences, stray continuation
 * bytes and bytes that never occur in UTF-8.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* Checks n bytes from an exactly sized heap copy, so ASan sees any over-read. */
static bool valid(const char *s, size_t n)
{
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	bool ok = utf8_valid(copy, n);
	free(copy);
	return ok;
}

#define VALID(lit) assert_true(valid(lit, sizeof(lit) - 1))
#define INVALID(lit) assert_false(valid(lit, sizeof(lit) - 1))

static void test_ascii(void **state)
{
	(void)state;
	VALID("");
	VALID("hello, world");
	VALID("\x01\x7f tab\tnewline\n");
	/* n counts bytes: an embedded NUL is an ASCII character */
	assert_true(valid("a\0b", 3));
	/* only the first n bytes are looked at */
	assert_true(valid("ok\xff", 2));
}

static void test_multibyte_valid(void **state)
{
	(void)state;
	VALID("\xc2\x80");          /* U+0080, smallest 2-byte */
	VALID("\xc3\xa9");          /* é */
	VALID("\xdf\xbf");          /* U+07FF, largest 2-byte */
	VALID("\xe0\xa0\x80");      /* U+0800, smallest 3-byte */
	VALID("\xe2\x82\xac");      /* € */
	VALID("\xed\x9f\xbf");      /* U+D7FF, just below the surrogates */
	VALID("\xee\x80\x80");      /* U+E000, just above the surrogates */
	VALID("\xef\xbf\xbf");      /* U+FFFF */
	VALID("\xf0\x90\x80\x80");  /* U+10000, smallest 4-byte */
	VALID("\xf0\x9f\x98\x80");  /* 😀 */
	VALID("\xf4\x8f\xbf\xbf");  /* U+10FFFF, the largest code point */
	VALID("Caf\xc3\xa9 \xe2\x82\xac" "5 \xf0\x9f\x98\x80!");
}

static void test_overlong(void **state)
{
	(void)state;
	INVALID("\xc0\xaf");          /* '/' in 2 bytes */
	INVALID("\xc1\xbf");
	INVALID("\xc0\x80");          /* NUL in 2 bytes */
	INVALID("\xe0\x80\xaf");      /* '/' in 3 bytes */
	INVALID("\xe0\x9f\xbf");      /* U+07FF in 3 bytes */
	INVALID("\xf0\x80\x80\xaf");  /* '/' in 4 bytes */
	INVALID("\xf0\x8f\xbf\xbf");  /* U+FFFF in 4 bytes */
}

static void test_surrogates(void **state)
{
	(void)state;
	INVALID("\xed\xa0\x80");  /* U+D800 */
	INVALID("\xed\xaf\xbf");  /* U+DBFF */
	INVALID("\xed\xb0\x80");  /* U+DC00 */
	INVALID("\xed\xbf\xbf");  /* U+DFFF */
	INVALID("\xed\xa0\xbd\xed\xb8\x80"); /* CESU-8 pair */
}

static void test_above_max(void **state)
{
	(void)state;
	INVALID("\xf4\x90\x80\x80");  /* U+110000 */
	INVALID("\xf4\xbf\xbf\xbf");
	INVALID("\xf5\x80\x80\x80");
	INVALID("\xf7\xbf\xbf\xbf");
	INVALID("\xf8\x88\x80\x80\x80");  /* old 5-byte form */
	INVALID("\xfc\x84\x80\x80\x80\x80");
}

static void test_truncated(void **state)
{
	(void)state;
	INVALID("\xc3");
	INVALID("\xe2\x82");
	INVALID("\xe2");
	INVALID("\xf0\x9f\x98");
	INVALID("\xf0\x9f");
	INVALID("\xf0");
	INVALID("abc\xe2\x82");
	/* cut short by n, not by the bytes */
	assert_false(valid("\xe2\x82\xac", 2));
	assert_false(valid("\xf0\x9f\x98\x80", 3));
	/* a sequence interrupted by ASCII */
	INVALID("\xe2\x82" "a");
	INVALID("\xc3" "a");
	INVALID("\xf0\x9f" "ab");
}

static void test_stray_bytes(void **state)
{
	(void)state;
	INVALID("\x80");
	INVALID("\xbf");
	INVALID("a\x80z");
	INVALID("\xc3\xa9\xa9");  /* one continuation too many */
	INVALID("\xff");
	INVALID("\xfe");
	INVALID("ok\xff");
	INVALID("\xe2\xc3\xa9");  /* lead byte where a continuation belongs */
	INVALID("\xe2\x82\xc0");
	INVALID("\xf0\x9f\x98\x41");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_multibyte_valid),
		cmocka_unit_test(test_overlong),
		cmocka_unit_test(test_surrogates),
		cmocka_unit_test(test_above_max),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_stray_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
