/*
 * test_llm — ai-worker/llm: request building for the Anthropic Messages
 * and OpenAI chat-completions APIs (URL, headers, JSON body, role mapping
 * and merging), and classification/parsing of their responses (OK, tool
 * escalation, MALFORMED, RETRY, FATAL) without ever leaking the API key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "llm.h"

#define API_KEY "sk-test-SECRET-0123456789"

static const struct llm_cfg ANTHROPIC = {
	.provider = LLM_ANTHROPIC,
	.base_url = "https://api.anthropic.com",
	.model = "claude-sonnet-4-5",
	.api_key = API_KEY,
	.anthropic_version = "2023-06-01",
	.max_tokens = 300,
};

static const struct llm_cfg OPENAI = {
	.provider = LLM_OPENAI,
	.base_url = "http://127.0.0.1:11434",
	.model = "llama3",
	.api_key = API_KEY,
	.anthropic_version = "2023-06-01",
	.max_tokens = 128,
};

/* A job whose history starts with an AI greeting and has runs of one role. */
static void make_job(struct envelope *job)
{
	memset(job, 0, sizeof(*job));
	job->type = ENV_JOB_AI;
	job->conv = strdup("whatsapp:+1|whatsapp:+2");
	job->prompt = strdup("Be kind. \"Quoted\"\nSecond line.");
	env_add_turn(job, ROLE_AI, "Welcome!", 1);
	env_add_turn(job, ROLE_CUSTOMER, "Hola", 2);
	env_add_turn(job, ROLE_CUSTOMER, "\xc2\xbfHorario?", 3);
	env_add_turn(job, ROLE_AI, "9-18", 4);
	env_add_turn(job, ROLE_AGENT, "I'm Ana", 5);
	env_add_turn(job, ROLE_SYSTEM, "customer is VIP", 6);
	env_add_turn(job, ROLE_CUSTOMER, "gracias", 7);
}

static json_t *load_json(const char *s)
{
	json_error_t err;
	json_t *root = json_loads(s, 0, &err);
	if (!root)
		fail_msg("invalid JSON (%s): %s", err.text, s);
	return root;
}

static void assert_msg(json_t *msgs, size_t i, const char *role, const char *content)
{
	json_t *m = json_array_get(msgs, i);
	assert_true(json_is_object(m));
	assert_int_equal(json_object_size(m), 2);
	const char *r = json_string_value(json_object_get(m, "role"));
	const char *c = json_string_value(json_object_get(m, "content"));
	assert_non_null(r);
	assert_non_null(c);
	assert_string_equal(r, role);
	assert_string_equal(c, content);
}

static void assert_no_key(const struct llm_reply *r)
{
	if (r->error)
		assert_null(strstr(r->error, API_KEY));
	if (r->text)
		assert_null(strstr(r->text, API_KEY));
}

/* Runs llm_parse on a NUL-terminated body from an exactly sized heap copy. */
static enum llm_outcome parse(enum llm_provider p, long status, const char *body,
			      struct llm_reply *out)
{
	size_t n = strlen(body);
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, body, n);
	enum llm_outcome oc = llm_parse(p, status, copy, n, out);
	free(copy);
	assert_no_key(out);
	return oc;
}

static void expect_outcome(enum llm_provider p, long status, const char *body,
			   enum llm_outcome want)
{
	struct llm_reply r;
	enum llm_outcome oc = parse(p, status, body, &r);
	if (oc != want)
		fail_msg("status %ld body '%s': outcome %d, want %d", status, body, oc, want);
	if (want != LLM_OK) {
		assert_non_null(r.error);
		assert_true(r.error[0] != '\0');
	}
	llm_reply_release(&r);
}

/* --- building --- */

static void test_build_anthropic(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_request req;
	make_job(&job);
	llm_build(&ANTHROPIC, &job, &req);

	assert_string_equal(req.url, "https://api.anthropic.com/v1/messages");
	assert_non_null(req.headers[0]);
	assert_non_null(req.headers[1]);
	assert_null(req.headers[2]);
	assert_string_equal(req.headers[0], "x-api-key: " API_KEY);
	assert_string_equal(req.headers[1], "anthropic-version: 2023-06-01");
	assert_non_null(req.body);
	assert_int_equal(req.body_len, strlen(req.body));
	assert_null(strstr(req.body, API_KEY));

	json_t *root = load_json(req.body);
	assert_string_equal(json_string_value(json_object_get(root, "model")), "claude-sonnet-4-5");
	assert_int_equal(json_integer_value(json_object_get(root, "max_tokens")), 300);
	assert_string_equal(json_string_value(json_object_get(root, "system")),
			    "Be kind. \"Quoted\"\nSecond line.");
	json_t *msgs = json_object_get(root, "messages");
	assert_true(json_is_array(msgs));
	/* leading assistant greeting dropped; runs merged; agent/system marked */
	assert_int_equal(json_array_size(msgs), 3);
	assert_msg(msgs, 0, "user", "Hola\n\xc2\xbfHorario?");
	assert_msg(msgs, 1, "assistant", "9-18\n(human agent) I'm Ana");
	assert_msg(msgs, 2, "user", "[note] customer is VIP\ngracias");
	json_decref(root);
	llm_request_release(&req);
	assert_null(req.url);
	assert_null(req.body);
	env_release(&job);
}

static void test_build_anthropic_only_assistant(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_request req;
	memset(&job, 0, sizeof(job));
	job.type = ENV_JOB_AI;
	env_add_turn(&job, ROLE_AI, "a", 1);
	env_add_turn(&job, ROLE_AGENT, "b", 2);
	llm_build(&ANTHROPIC, &job, &req);
	json_t *root = load_json(req.body);
	/* no prompt: system is "" */
	assert_string_equal(json_string_value(json_object_get(root, "system")), "");
	json_t *msgs = json_object_get(root, "messages");
	/* never an empty conversation */
	assert_int_equal(json_array_size(msgs), 1);
	assert_msg(msgs, 0, "user", "(no message)");
	json_decref(root);
	llm_request_release(&req);
	env_release(&job);
}

static void test_build_anthropic_alternates(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_request req;
	memset(&job, 0, sizeof(job));
	job.type = ENV_JOB_AI;
	job.prompt = strdup("p");
	env_add_turn(&job, ROLE_CUSTOMER, "1", 1);
	env_add_turn(&job, ROLE_AI, "2", 2);
	env_add_turn(&job, ROLE_CUSTOMER, "3", 3);
	env_add_turn(&job, ROLE_AI, "4", 4);
	env_add_turn(&job, ROLE_CUSTOMER, "5", 5);
	llm_build(&ANTHROPIC, &job, &req);
	json_t *root = load_json(req.body);
	json_t *msgs = json_object_get(root, "messages");
	assert_int_equal(json_array_size(msgs), 5);
	for (size_t i = 0; i < 5; i++) {
		char want[2] = { (char)('1' + i), 0 };
		assert_msg(msgs, i, i % 2 ? "assistant" : "user", want);
	}
	json_decref(root);
	llm_request_release(&req);
	env_release(&job);
}

static void test_build_openai(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_request req;
	make_job(&job);
	llm_build(&OPENAI, &job, &req);

	assert_string_equal(req.url, "http://127.0.0.1:11434/v1/chat/completions");
	assert_non_null(req.headers[0]);
	assert_string_equal(req.headers[0], "Authorization: Bearer " API_KEY);
	assert_null(req.headers[1]);
	assert_null(strstr(req.body, API_KEY));
	assert_int_equal(req.body_len, strlen(req.body));

	json_t *root = load_json(req.body);
	assert_string_equal(json_string_value(json_object_get(root, "model")), "llama3");
	assert_int_equal(json_integer_value(json_object_get(root, "max_tokens")), 128);
	assert_null(json_object_get(root, "system"));
	json_t *msgs = json_object_get(root, "messages");
	assert_int_equal(json_array_size(msgs), 5);
	assert_msg(msgs, 0, "system", "Be kind. \"Quoted\"\nSecond line.");
	/* the leading assistant turn is kept for OpenAI */
	assert_msg(msgs, 1, "assistant", "Welcome!");
	assert_msg(msgs, 2, "user", "Hola\n\xc2\xbfHorario?");
	assert_msg(msgs, 3, "assistant", "9-18\n(human agent) I'm Ana");
	assert_msg(msgs, 4, "user", "[note] customer is VIP\ngracias");
	json_decref(root);
	llm_request_release(&req);
	env_release(&job);
}

/* --- Anthropic responses --- */

static void test_parse_anthropic_text(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_ANTHROPIC, 200,
			       "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\","
			       "\"content\":[{\"type\":\"text\",\"text\":\"Ol\\u00e1! Abrimos \\u00e0s 9h.\"}],"
			       "\"stop_reason\":\"end_turn\"}",
			       &r),
			 LLM_OK);
	assert_non_null(r.text);
	assert_string_equal(r.text, "Ol\xc3\xa1! Abrimos \xc3\xa0s 9h.");
	assert_false(r.tool_escalate);
	assert_null(r.reason);
	assert_null(r.summary);
	assert_null(r.error);
	llm_reply_release(&r);
	assert_null(r.text);
}

static void test_parse_anthropic_multiple_blocks(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_ANTHROPIC, 200,
			       "{\"content\":[{\"type\":\"text\",\"text\":\"First.\"},"
			       "{\"type\":\"thinking\",\"thinking\":\"hmm\"},"
			       "{\"text\":\"no type: skipped\"},"
			       "{\"type\":\"text\",\"text\":\"Second.\"},"
			       "{\"type\":\"text\",\"text\":42}]}",
			       &r),
			 LLM_OK);
	assert_string_equal(r.text, "First.\nSecond.");
	assert_false(r.tool_escalate);
	llm_reply_release(&r);
}

static void test_parse_anthropic_tool_use(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_ANTHROPIC, 200,
			       "{\"content\":[{\"type\":\"text\",\"text\":\"One moment.\"},"
			       "{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"escalate_to_human\","
			       "\"input\":{\"reason\":\"asks for a person\",\"summary\":\"wants to book\"}}],"
			       "\"stop_reason\":\"tool_use\"}",
			       &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	assert_string_equal(r.text, "One moment.");
	assert_non_null(r.reason);
	assert_string_equal(r.reason, "asks for a person");
	assert_non_null(r.summary);
	assert_string_equal(r.summary, "wants to book");
	llm_reply_release(&r);

	/* a tool call alone (no text) is a valid answer */
	assert_int_equal(parse(LLM_ANTHROPIC, 200,
			       "{\"content\":[{\"type\":\"tool_use\",\"name\":\"escalate_to_human\","
			       "\"input\":{}}]}",
			       &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	assert_string_equal(r.text, "");
	assert_null(r.reason);
	assert_null(r.summary);
	llm_reply_release(&r);
}

static void test_parse_anthropic_other_tool_ignored(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_ANTHROPIC, 200,
			       "{\"content\":[{\"type\":\"text\",\"text\":\"Hi\"},"
			       "{\"type\":\"tool_use\",\"name\":\"get_weather\",\"input\":{\"reason\":\"x\"}}]}",
			       &r),
			 LLM_OK);
	assert_false(r.tool_escalate);
	assert_null(r.reason);
	llm_reply_release(&r);
	/* escalate_to_human whose input is not an object does not count */
	expect_outcome(LLM_ANTHROPIC, 200,
		       "{\"content\":[{\"type\":\"tool_use\",\"name\":\"escalate_to_human\","
		       "\"input\":\"please\"}]}",
		       LLM_MALFORMED);
	/* another tool and no text: nothing to send */
	expect_outcome(LLM_ANTHROPIC, 200,
		       "{\"content\":[{\"type\":\"tool_use\",\"name\":\"get_weather\",\"input\":{}}]}",
		       LLM_MALFORMED);
}

static void test_parse_anthropic_malformed(void **state)
{
	(void)state;
	expect_outcome(LLM_ANTHROPIC, 200, "{\"content\":\"Hello\"}", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "{\"content\":{\"type\":\"text\"}}", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "{\"foo\":1}", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "not json at all", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "{\"content\":[{\"type\":\"text\",\"text\":\"Hel", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "[1,2,3]", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "\"just a string\"", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "{\"content\":[]}", LLM_MALFORMED);
	expect_outcome(LLM_ANTHROPIC, 200, "{\"content\":[{\"type\":\"text\",\"text\":\"\"}]}",
		       LLM_MALFORMED);
	/* the OpenAI shape is not an Anthropic reply */
	expect_outcome(LLM_ANTHROPIC, 200,
		       "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}",
		       LLM_MALFORMED);

	struct llm_reply r;
	assert_int_equal(parse(LLM_ANTHROPIC, 200, "{\"content\":[]}", &r), LLM_MALFORMED);
	assert_non_null(strstr(r.error, "no text"));
	llm_reply_release(&r);
	/* trailing garbage after the object is not JSON either */
	assert_int_equal(parse(LLM_ANTHROPIC, 200,
			       "{\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]} trailing", &r),
			 LLM_MALFORMED);
	llm_reply_release(&r);
}

static void test_parse_retry_statuses(void **state)
{
	(void)state;
	static const long retry[] = { 408, 409, 429, 500, 502, 503, 504, 529 };
	const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
			   "\"message\":\"Overloaded\"}}";
	for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++) {
		expect_outcome(LLM_ANTHROPIC, retry[i], body, LLM_RETRY);
		expect_outcome(LLM_OPENAI, retry[i], "<html>bad gateway</html>", LLM_RETRY);
	}
	struct llm_reply r;
	assert_int_equal(parse(LLM_ANTHROPIC, 529, body, &r), LLM_RETRY);
	assert_non_null(strstr(r.error, "529"));
	assert_non_null(strstr(r.error, "overloaded_error"));
	assert_non_null(strstr(r.error, "Overloaded"));
	assert_null(r.text);
	llm_reply_release(&r);
}

static void test_parse_status_zero(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(llm_parse(LLM_ANTHROPIC, 0, NULL, 0, &r), LLM_RETRY);
	assert_non_null(r.error);
	assert_null(r.text);
	llm_reply_release(&r);
	assert_int_equal(llm_parse(LLM_OPENAI, 0, "", 0, &r), LLM_RETRY);
	llm_reply_release(&r);
}

static void test_parse_fatal_statuses(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_ANTHROPIC, 401,
			       "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
			       "\"message\":\"invalid x-api-key\"}}",
			       &r),
			 LLM_FATAL);
	assert_non_null(strstr(r.error, "401"));
	assert_non_null(strstr(r.error, "authentication_error"));
	assert_non_null(strstr(r.error, "invalid x-api-key"));
	llm_reply_release(&r);

	assert_int_equal(parse(LLM_ANTHROPIC, 400,
			       "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
			       "\"message\":\"messages: roles must alternate\"}}",
			       &r),
			 LLM_FATAL);
	assert_non_null(strstr(r.error, "invalid_request_error"));
	assert_non_null(strstr(r.error, "roles must alternate"));
	llm_reply_release(&r);

	/* a body that is not JSON still gives a useful error */
	assert_int_equal(parse(LLM_ANTHROPIC, 403, "Forbidden", &r), LLM_FATAL);
	assert_non_null(strstr(r.error, "403"));
	llm_reply_release(&r);
	expect_outcome(LLM_ANTHROPIC, 404, "{}", LLM_FATAL);
	expect_outcome(LLM_OPENAI, 402, "{\"message\":\"billing\"}", LLM_FATAL);
}

static void test_parse_error_text_is_cut(void **state)
{
	(void)state;
	size_t n = 5000;
	char *body = malloc(n + 100);
	assert_non_null(body);
	strcpy(body, "{\"error\":{\"type\":\"x\",\"message\":\"");
	size_t o = strlen(body);
	memset(body + o, 'm', n);
	strcpy(body + o + n, "\"}}");
	struct llm_reply r;
	assert_int_equal(parse(LLM_ANTHROPIC, 400, body, &r), LLM_FATAL);
	assert_true(strlen(r.error) < 400);
	assert_non_null(strstr(r.error, "..."));
	llm_reply_release(&r);
	free(body);
}

/* --- OpenAI responses --- */

static void test_parse_openai_text(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_OPENAI, 200,
			       "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":"
			       "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi \\u20ac\"},"
			       "\"finish_reason\":\"stop\"}]}",
			       &r),
			 LLM_OK);
	assert_string_equal(r.text, "Hi \xe2\x82\xac");
	assert_false(r.tool_escalate);
	assert_null(r.error);
	llm_reply_release(&r);
}

static void test_parse_openai_tool_call(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_OPENAI, 200,
			       "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null,"
			       "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":"
			       "{\"name\":\"escalate_to_human\",\"arguments\":"
			       "\"{\\\"reason\\\":\\\"angry customer\\\",\\\"summary\\\":\\\"refund\\\"}\"}}]}}]}",
			       &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	assert_string_equal(r.text, "");
	assert_non_null(r.reason);
	assert_string_equal(r.reason, "angry customer");
	assert_non_null(r.summary);
	assert_string_equal(r.summary, "refund");
	llm_reply_release(&r);
}

static void test_parse_openai_tool_bad_arguments(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_OPENAI, 200,
			       "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":"
			       "{\"name\":\"escalate_to_human\",\"arguments\":\"{reason: oops\"}}]}}]}",
			       &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	assert_null(r.reason);
	assert_null(r.summary);
	llm_reply_release(&r);

	/* arguments missing altogether: still an escalation */
	assert_int_equal(parse(LLM_OPENAI, 200,
			       "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":"
			       "{\"name\":\"escalate_to_human\"}}]}}]}",
			       &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	llm_reply_release(&r);

	/* another function is not an escalation */
	expect_outcome(LLM_OPENAI, 200,
		       "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":"
		       "{\"name\":\"lookup\",\"arguments\":\"{}\"}}]}}]}",
		       LLM_MALFORMED);
}

static void test_parse_openai_malformed(void **state)
{
	(void)state;
	expect_outcome(LLM_OPENAI, 200, "{\"id\":\"x\"}", LLM_MALFORMED);
	expect_outcome(LLM_OPENAI, 200, "{\"choices\":[]}", LLM_MALFORMED);
	expect_outcome(LLM_OPENAI, 200, "{\"choices\":{}}", LLM_MALFORMED);
	expect_outcome(LLM_OPENAI, 200, "{\"choices\":[{\"text\":\"legacy\"}]}", LLM_MALFORMED);
	expect_outcome(LLM_OPENAI, 200, "{\"choices\":[{\"message\":\"hi\"}]}", LLM_MALFORMED);
	expect_outcome(LLM_OPENAI, 200, "{\"choices\":[{\"message\":{\"content\":5}}]}",
		       LLM_MALFORMED);
	expect_outcome(LLM_OPENAI, 200, "{\"choices\":[{\"message\":{\"content\":\"\"}}]}",
		       LLM_MALFORMED);
	expect_outcome(LLM_OPENAI, 200, "{\"choices\":[{\"message\":{\"content\":null}}]}",
		       LLM_MALFORMED);
	expect_outcome(LLM_OPENAI, 200, "{\"choices\":[{\"message\":{\"content\":\"tru", LLM_MALFORMED);
	/* the Anthropic shape is not an OpenAI reply */
	expect_outcome(LLM_OPENAI, 200, "{\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]}",
		       LLM_MALFORMED);
}

static void test_parse_openai_error(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(LLM_OPENAI, 401,
			       "{\"error\":{\"message\":\"Incorrect API key provided: sk-test-***6789.\","
			       "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
			       &r),
			 LLM_FATAL);
	assert_non_null(strstr(r.error, "invalid_request_error"));
	assert_non_null(strstr(r.error, "Incorrect API key"));
	llm_reply_release(&r);
	assert_int_equal(parse(LLM_OPENAI, 429,
			       "{\"error\":{\"message\":\"Rate limit\",\"type\":\"rate_limit_exceeded\"}}",
			       &r),
			 LLM_RETRY);
	assert_non_null(strstr(r.error, "rate_limit_exceeded"));
	llm_reply_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_anthropic),
		cmocka_unit_test(test_build_anthropic_only_assistant),
		cmocka_unit_test(test_build_anthropic_alternates),
		cmocka_unit_test(test_build_openai),
		cmocka_unit_test(test_parse_anthropic_text),
		cmocka_unit_test(test_parse_anthropic_multiple_blocks),
		cmocka_unit_test(test_parse_anthropic_tool_use),
		cmocka_unit_test(test_parse_anthropic_other_tool_ignored),
		cmocka_unit_test(test_parse_anthropic_malformed),
		cmocka_unit_test(test_parse_retry_statuses),
		cmocka_unit_test(test_parse_status_zero),
		cmocka_unit_test(test_parse_fatal_statuses),
		cmocka_unit_test(test_parse_error_text_is_cut),
		cmocka_unit_test(test_parse_openai_text),
		cmocka_unit_test(test_parse_openai_tool_call),
		cmocka_unit_test(test_parse_openai_tool_bad_arguments),
		cmocka_unit_test(test_parse_openai_malformed),
		cmocka_unit_test(test_parse_openai_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
