/*
 * test_rules — router/rules: escalation phrases match whole words, ignoring
 * case and accents, multi-word phrases match the same words in a row, and
 * an empty list never matches.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "rules.h"

static void check(const char *phrases, const char *text, bool want, const char *want_phrase)
{
	struct rules *r = rules_new(phrases);
	const char *m = NULL;
	bool got = rules_match(r, text, &m);
	if (got != want)
		fail_msg("rules_match(\"%s\", \"%s\") = %d, want %d", phrases, text, got, want);
	if (want && want_phrase)
		assert_string_equal(m, want_phrase);
	rules_destroy(&r);
	assert_null(r);
}

static void test_case_and_accents(void **state)
{
	(void)state;
	check("humano", "Quero falar com um HUMANO!", true, "humano");
	check("humano", "um húmano, por favor", true, "humano");
	check("atendente", "ATENDÉNTE", true, "atendente");
	check("persona", "¿Puedo hablar con una Persona?", true, "persona");
}

static void test_whole_words_only(void **state)
{
	(void)state;
	check("human", "I love humanity", false, NULL);
	check("agent", "reagent and agents", false, NULL);
	check("agent", "agent, please", true, "agent");
	check("agent", "(agent)", true, "agent");
}

static void test_phrases_and_lists(void **state)
{
	(void)state;
	check("talk to a person", "can I talk to a   person?", true, "talk to a person");
	check("talk to a person", "talk to person", false, NULL);
	check(" human , humano ,agent", "HUMANO", true, "humano");
	check("", "human", false, NULL);
	check(",,", "human", false, NULL);
}

static void test_fold(void **state)
{
	(void)state;
	char *f = rules_fold("  Olá,  Mundo!! ÇA VA?  ");
	assert_string_equal(f, "ola mundo ca va");
	free(f);
	f = rules_fold("");
	assert_string_equal(f, "");
	free(f);
	/* Invalid UTF-8 must not crash or match anything odd. */
	f = rules_fold("\xff\xfe human \xc3");
	assert_non_null(strstr(f, "human"));
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_case_and_accents),
		cmocka_unit_test(test_whole_words_only),
		cmocka_unit_test(test_phrases_and_lists),
		cmocka_unit_test(test_fold),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
