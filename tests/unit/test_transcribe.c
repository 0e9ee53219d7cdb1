/*
 * test_transcribe — ai-worker/transcribe: reading a transcription API's
 * answer (the text, trimmed and bounded; errors, empty and malformed
 * answers) and the metric names of its outcomes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "transcribe.h"

static enum transcribe_outcome parse(long status, const char *body, char **text, char **why)
{
	/* An exactly sized heap copy: the parser must not read past len. */
	size_t n = strlen(body);
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, body, n);
	enum transcribe_outcome oc = transcribe_parse(status, copy, n, text, why);
	free(copy);
	return oc;
}

static void test_ok(void **state)
{
	(void)state;
	char *text, *why;
	assert_int_equal(parse(200, "{\"text\":\"  Ol\\u00e1, tenho febre.\\n\"}", &text, &why), TR_OK);
	assert_string_equal(text, "Ol\xc3\xa1, tenho febre.");
	assert_null(why);
	free(text);
	/* verbose_json answers carry more: only text matters. */
	assert_int_equal(parse(200, "{\"task\":\"transcribe\",\"language\":\"english\",\"duration\":2.5,"
				    "\"text\":\"Hi\",\"segments\":[]}", &text, &why), TR_OK);
	assert_string_equal(text, "Hi");
	free(text);
}

static void test_cut(void **state)
{
	(void)state;
	/* 9,000 two-byte characters: cut at TRANSCRIBE_CHARS_MAX characters, never mid-character. */
	size_t n = 9000;
	char *body = malloc(2 * n + 16);
	assert_non_null(body);
	strcpy(body, "{\"text\":\"");
	char *p = body + strlen(body);
	for (size_t i = 0; i < n; i++) {
		*p++ = '\xc3';
		*p++ = '\xa9';
	}
	strcpy(p, "\"}");
	char *text, *why;
	assert_int_equal(parse(200, body, &text, &why), TR_OK);
	assert_int_equal(strlen(text), 2 * TRANSCRIBE_CHARS_MAX);
	free(text);
	free(body);
}

static void test_failures(void **state)
{
	(void)state;
	char *text, *why;
	assert_int_equal(parse(200, "{\"text\":\" \\n\\t\"}", &text, &why), TR_EMPTY);
	assert_null(text);
	assert_non_null(why);
	free(why);
	assert_int_equal(parse(200, "{\"text\":42}", &text, &why), TR_MALFORMED);
	assert_null(text);
	free(why);
	assert_int_equal(parse(200, "not json", &text, &why), TR_MALFORMED);
	free(why);
	assert_int_equal(parse(200, "{\"text\":\"a\\u0000b\"}", &text, &why), TR_MALFORMED);
	free(why);
	assert_int_equal(parse(400, "{\"error\":{\"message\":\"Invalid file format. Supported "
				    "formats: ['flac', 'ogg']\",\"type\":\"invalid_request_error\"}}",
			       &text, &why), TR_HTTP);
	assert_null(text);
	assert_string_equal(why, "HTTP 400: Invalid file format. Supported formats: ['flac', 'ogg']");
	free(why);
	assert_int_equal(parse(502, "<html>bad gateway</html>", &text, &why), TR_HTTP);
	assert_string_equal(why, "HTTP 502");
	free(why);
	assert_int_equal(parse(0, "", &text, &why), TR_TRANSPORT);
	free(why);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(transcribe_outcome_name(TR_OK), "ok");
	assert_string_equal(transcribe_outcome_name(TR_EMPTY), "empty");
	assert_string_equal(transcribe_outcome_name(TR_OUTCOMES), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
