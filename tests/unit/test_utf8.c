/*
 * test_utf8 — common/utf8: utf8_valid accepts well-formed UTF-8 (1 to 4
 * bytes, boundaries of each range) and rejects overlongs, surrogates,
 * code points above U+10FFFF, truncated sequences, stray continuation
 * bytes and bytes that never occur in UTF-8. utf8_prefix counts
 * characters, not bytes, never cuts inside a well-formed character (a
 * 4-byte one at the boundary of a WhatsApp part included), and moves on
 * through ill-formed bytes (overlongs, surrogates, truncated sequences).
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
	INVALID("\xf0\x80\xa0\x80");  /* U+0800 in 4 bytes */
	INVALID("\xe0\x81\x81");      /* 'A' in 3 bytes */
	INVALID("ok \xc1\x81 ok");     /* 'A' in 2 bytes, inside text */
}

static void test_surrogates(void **state)
{
	(void)state;
	INVALID("\xed\xa0\x80");  /* U+D800 */
	INVALID("\xed\xaf\xbf");  /* U+DBFF */
	INVALID("\xed\xb0\x80");  /* U+DC00 */
	INVALID("\xed\xbf\xbf");  /* U+DFFF */
	INVALID("\xed\xa0\xbd\xed\xb8\x80"); /* CESU-8 pair */
	INVALID("ok \xed\xb2\x80 ok");       /* a lone low surrogate inside text */
	INVALID("\xf0\x9f\x98\x80\xed\xa0\x80"); /* after a good 4-byte character */
	/* Noncharacters are well-formed UTF-8: not this check's business. */
	VALID("\xef\xbf\xbe");                /* U+FFFE */
	VALID("\xef\xb7\x90");                /* U+FDD0 */
	VALID("\xf4\x8f\xbf\xbe");            /* U+10FFFE */
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

/* utf8_prefix over an exactly sized heap copy, so ASan sees any over-read. */
static size_t prefix(const char *s, size_t n, size_t max)
{
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	size_t r = utf8_prefix(copy, n, max);
	free(copy);
	return r;
}

#define PREFIX(lit, max) prefix(lit, sizeof(lit) - 1, max)

/*
 * Every cut of s[0..n), for max from 0 on, lands on one of the byte
 * offsets in at (ascending, ending with n), each one character further
 * than the last until n: no cut inside a character, none skipped.
 */
static void cuts_are(const char *s, size_t n, const size_t *at, size_t nat)
{
	for (size_t max = 0; max <= nat + 1; max++)
		assert_int_equal(prefix(s, n, max), max < nat ? at[max] : n);
}

#define CUTS(lit, ...) do { \
		static const size_t at_[] = { __VA_ARGS__ }; \
		cuts_are(lit, sizeof(lit) - 1, at_, sizeof(at_) / sizeof(at_[0])); \
	} while (0)

static void test_prefix_counts_characters(void **state)
{
	(void)state;
	assert_int_equal(PREFIX("hello", 3), 3);
	assert_int_equal(PREFIX("hello", 5), 5);
	assert_int_equal(PREFIX("hello", 99), 5);
	assert_int_equal(PREFIX("hello", 0), 0);
	assert_int_equal(PREFIX("", 10), 0);
	/* an embedded NUL is one character like any other */
	assert_int_equal(prefix("a\0b", 3, 2), 2);
	/* é (2 bytes), € (3), 😀 (4): each one character */
	CUTS("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 0, 2, 5, 9);
	CUTS("Caf\xc3\xa9!", 0, 1, 2, 3, 5, 6);
}

static void test_prefix_four_bytes_at_the_boundary(void **state)
{
	(void)state;
	/* The character at the cut is a 4-byte one: it is in or out whole. */
	CUTS("aaa\xf0\x9f\x98\x80" "b", 0, 1, 2, 3, 7, 8);
	CUTS("\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 0, 4, 8);
	/* A WhatsApp part: 1599 ASCII characters and an emoji are 1600 characters. */
	enum { PART = 1600 };
	char buf[PART + 8];
	memset(buf, 'a', PART - 1);
	memcpy(buf + PART - 1, "\xf0\x9f\x98\x80" "b", 5);
	size_t n = PART - 1 + 5;
	assert_int_equal(prefix(buf, n, PART - 1), PART - 1);
	assert_int_equal(prefix(buf, n, PART), PART + 3);
	assert_int_equal(prefix(buf, n, PART + 1), n);
	/* Emoji only: 1600 of them are 6400 bytes, never 6401 or 6399. */
	char emoji[4 * (PART + 1)];
	for (size_t i = 0; i < PART + 1; i++)
		memcpy(emoji + 4 * i, "\xf0\x9f\x98\x80", 4);
	assert_int_equal(prefix(emoji, sizeof(emoji), PART), 4 * PART);
	assert_int_equal(prefix(emoji, sizeof(emoji), PART - 1), 4 * (PART - 1));
	/* n itself cuts the emoji: the cut never reaches past n. */
	assert_int_equal(prefix("a\xf0\x9f\x98\x80", 3, 1), 1);
	assert_true(prefix("a\xf0\x9f\x98\x80", 3, 2) <= 3);
	assert_true(prefix("a\xf0\x9f\x98\x80", 3, 2) > 1);
}

/*
 * Ill-formed bytes count as characters of their own (U+FFFD each) and are
 * stepped over: a cut moves on by at least a byte each time and still
 * never splits the well-formed character that follows.
 */
static void test_prefix_through_ill_formed(void **state)
{
	(void)state;
	const char *const bad[] = {
		"\xc0\xaf",          /* overlong '/' */
		"\xe0\x80\xaf",      /* overlong in 3 bytes */
		"\xf0\x80\x80\xaf",  /* overlong in 4 bytes */
		"\xed\xa0\x80",      /* surrogate U+D800 */
		"\xed\xbf\xbf",      /* surrogate U+DFFF */
		"\xf4\x90\x80\x80",  /* above U+10FFFF */
		"\xf0\x9f\x98",      /* truncated 4-byte */
		"\xe2\x82",          /* truncated 3-byte */
		"\x80\xbf",          /* stray continuations */
		"\xff\xfe",
	};
	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		char s[32];
		size_t bl = strlen(bad[b]);
		/* the bad bytes, then an emoji, then 'z' */
		memcpy(s, bad[b], bl);
		memcpy(s + bl, "\xf0\x9f\x98\x80z", 5);
		size_t n = bl + 5, last = 0;
		for (size_t max = 1; max <= n + 1; max++) {
			size_t r = prefix(s, n, max);
			assert_true(r <= n);
			assert_true(r > last || r == n);
			/* never inside the emoji */
			assert_false(r > bl && r < bl + 4);
			last = r;
		}
		assert_int_equal(last, n);
		assert_false(valid(s, n));
	}
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
		cmocka_unit_test(test_prefix_counts_characters),
		cmocka_unit_test(test_prefix_four_bytes_at_the_boundary),
		cmocka_unit_test(test_prefix_through_ill_formed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
