/*
 * test_escalate — ai-worker/escalate: esc_strip finds the escalation tag
 * anywhere in a model reply (any ASCII case, repeated), removes it, tidies
 * the space it leaves and trims the result; text without the tag is left
 * untouched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "escalate.h"

#define TAG "[ESCALAR]"

/* Runs esc_strip on a heap copy of in; checks the result and the return value. */
static void check(const char *in, const char *want, bool want_found)
{
	char *buf = strdup(in);
	assert_non_null(buf);
	bool found = esc_strip(buf, TAG);
	if (found != want_found || strcmp(buf, want) != 0)
		fail_msg("esc_strip(\"%s\") = \"%s\" (%d), want \"%s\" (%d)", in, buf, found, want,
			 want_found);
	free(buf);
}

static void test_tag_at_end(void **state)
{
	(void)state;
	check("I will get a person for you. [ESCALAR]", "I will get a person for you.", true);
	check("Okay[ESCALAR]", "Okay", true);
}

static void test_tag_at_start(void **state)
{
	(void)state;
	check("[ESCALAR] One moment please.", "One moment please.", true);
	check("[ESCALAR]One moment.", "One moment.", true);
}

static void test_tag_mid_text(void **state)
{
	(void)state;
	check("a [ESCALAR] b", "a b", true);
	check("a\t[ESCALAR]\tb", "a\tb", true);
	check("a [ESCALAR]b", "a b", true);
}

static void test_repeated(void **state)
{
	(void)state;
	check("[ESCALAR] hi [ESCALAR]", "hi", true);
	check("a [ESCALAR] [ESCALAR] b", "a b", true);
	check("a [ESCALAR][ESCALAR] b", "a b", true);
	check("[ESCALAR][ESCALAR][ESCALAR]", "", true);
}

static void test_case_insensitive(void **state)
{
	(void)state;
	check("Wait [escalar]", "Wait", true);
	check("Wait [Escalar] now", "Wait now", true);
	check("Wait [eScAlAr]", "Wait", true);
}

static void test_adjacent_punctuation(void **state)
{
	(void)state;
	check("Sure [ESCALAR].", "Sure.", true);
	check("Sure [ESCALAR]!", "Sure!", true);
	check("Sure, [ESCALAR], yes", "Sure, yes", true);
	check("[ESCALAR]. Hello", "Hello", true);
	check("Hi\n[ESCALAR]\nBye", "Hi\nBye", true);
}

static void test_only_tag(void **state)
{
	(void)state;
	check("[ESCALAR]", "", true);
	check("  [ESCALAR]  ", "", true);
	check("\n[escalar]\n", "", true);
}

static void test_no_tag(void **state)
{
	(void)state;
	check("Hello there", "Hello there", false);
	/* without a tag nothing is trimmed either */
	check("  spaced out \n", "  spaced out \n", false);
	check("", "", false);
	check("[ESCALA] almost", "[ESCALA] almost", false);
	check("ESCALAR without brackets", "ESCALAR without brackets", false);
}

static void test_newlines_trimmed(void **state)
{
	(void)state;
	check("\n\nHello\n[ESCALAR]\n", "Hello", true);
	check("Line one\nLine two\n\n[ESCALAR]", "Line one\nLine two", true);
	check("\t Hi [ESCALAR] \r\n", "Hi", true);
}

static void test_utf8_text_kept(void **state)
{
	(void)state;
	check("Ol\xc3\xa1! Um atendente vai falar com voc\xc3\xaa. [ESCALAR]",
	      "Ol\xc3\xa1! Um atendente vai falar com voc\xc3\xaa.", true);
}

static void test_other_tag_and_empty_tag(void **state)
{
	(void)state;
	char buf[] = "Need a human <<HUMAN>>";
	assert_true(esc_strip(buf, "<<human>>"));
	assert_string_equal(buf, "Need a human");
	char buf2[] = "text [ESCALAR]";
	assert_false(esc_strip(buf2, ""));
	assert_string_equal(buf2, "text [ESCALAR]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tag_at_end),
		cmocka_unit_test(test_tag_at_start),
		cmocka_unit_test(test_tag_mid_text),
		cmocka_unit_test(test_repeated),
		cmocka_unit_test(test_case_insensitive),
		cmocka_unit_test(test_adjacent_punctuation),
		cmocka_unit_test(test_only_tag),
		cmocka_unit_test(test_no_tag),
		cmocka_unit_test(test_newlines_trimmed),
		cmocka_unit_test(test_utf8_text_kept),
		cmocka_unit_test(test_other_tag_and_empty_tag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
