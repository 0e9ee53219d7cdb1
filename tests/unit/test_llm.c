/*
 * test_llm — ai-worker/llm: request building for the Anthropic Messages
 * and OpenAI chat-completions APIs (URL, headers, JSON body, role mapping
 * and merging), and classification/parsing of their responses (OK, tool
 * escalation, MALFORMED, RETRY, FATAL) without ever leaking the API key.
 * Media: image and document blocks for both providers (bytes checked after
 * base64), merged turns around blocks, notes, fallback and transcript
 * texts, and blocks refused where an API takes none.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "llm.h"

#define API_KEY "sk-test-SECRET-0123456789"

#define TAG "[ESCALAR]"
#define PROMPT "Be kind. \"Quoted\"\nSecond line."

static const struct llm_cfg ANTHROPIC = {
	.provider = LLM_ANTHROPIC,
	.esc_mode = LLM_ESC_STRUCTURED,
	.tag = TAG,
	.base_url = "https://api.anthropic.com",
	.model = "claude-sonnet-4-5",
	.api_key = API_KEY,
	.anthropic_version = "2023-06-01",
	.max_tokens = 300,
};

static const struct llm_cfg ANTHROPIC_TAG = {
	.provider = LLM_ANTHROPIC,
	.esc_mode = LLM_ESC_TAG,
	.tag = TAG,
	.base_url = "https://api.anthropic.com",
	.model = "claude-sonnet-4-5",
	.api_key = API_KEY,
	.anthropic_version = "2023-06-01",
	.max_tokens = 300,
};

static const struct llm_cfg OPENAI = {
	.provider = LLM_OPENAI,
	.esc_mode = LLM_ESC_STRUCTURED,
	.tag = TAG,
	.base_url = "http://127.0.0.1:11434",
	.model = "llama3",
	.api_key = API_KEY,
	.anthropic_version = "2023-06-01",
	.max_tokens = 128,
};

static const struct llm_cfg OPENAI_TAG = {
	.provider = LLM_OPENAI,
	.esc_mode = LLM_ESC_TAG,
	.tag = TAG,
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
	job->prompt = strdup(PROMPT);
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

/* The system prompt is the job's prompt followed by how to escalate. */
static void assert_system(const char *sys, const char *prompt, const char *must_have)
{
	assert_non_null(sys);
	if (strncmp(sys, prompt, strlen(prompt)) != 0)
		fail_msg("system prompt '%s' does not start with '%s'", sys, prompt);
	assert_true(strlen(sys) > strlen(prompt));
	if (!strstr(sys + strlen(prompt), must_have))
		fail_msg("system prompt '%s' lacks '%s'", sys, must_have);
}

static void assert_no_key(const struct llm_reply *r)
{
	if (r->error)
		assert_null(strstr(r->error, API_KEY));
	if (r->text)
		assert_null(strstr(r->text, API_KEY));
}

/* Runs llm_parse on a NUL-terminated body from an exactly sized heap copy. */
static enum llm_outcome parse(const struct llm_cfg *cfg, long status, const char *body,
			      struct llm_reply *out)
{
	size_t n = strlen(body);
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, body, n);
	enum llm_outcome oc = llm_parse(cfg, status, copy, n, out);
	free(copy);
	assert_no_key(out);
	return oc;
}

static void expect_outcome(const struct llm_cfg *cfg, long status, const char *body,
			   enum llm_outcome want)
{
	struct llm_reply r;
	enum llm_outcome oc = parse(cfg, status, body, &r);
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
	llm_build(&ANTHROPIC, &job, NULL, &req);

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
	assert_system(json_string_value(json_object_get(root, "system")), PROMPT, LLM_ESC_TOOL);
	/* structured mode offers the escalation tool */
	json_t *tools = json_object_get(root, "tools");
	assert_true(json_is_array(tools));
	assert_int_equal(json_array_size(tools), 1);
	json_t *tool = json_array_get(tools, 0);
	assert_string_equal(json_string_value(json_object_get(tool, "name")), "escalate_to_human");
	json_t *schema = json_object_get(tool, "input_schema");
	assert_string_equal(json_string_value(json_object_get(schema, "type")), "object");
	assert_true(json_is_object(json_object_get(json_object_get(schema, "properties"), "reason")));
	assert_true(json_is_object(json_object_get(json_object_get(schema, "properties"), "summary")));
	json_t *req_fields = json_object_get(schema, "required");
	assert_int_equal(json_array_size(req_fields), 1);
	assert_string_equal(json_string_value(json_array_get(req_fields, 0)), "reason");
	assert_string_equal(json_string_value(json_object_get(json_object_get(root, "tool_choice"), "type")),
			    "auto");
	assert_null(json_object_get(root, "response_format"));
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
	llm_build(&ANTHROPIC, &job, NULL, &req);
	json_t *root = load_json(req.body);
	/* no prompt: the system prompt is only the escalation instruction */
	assert_system(json_string_value(json_object_get(root, "system")), "", "escalate_to_human");
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
	llm_build(&ANTHROPIC, &job, NULL, &req);
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

static void test_build_anthropic_tag_mode(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_request req;
	make_job(&job);
	llm_build(&ANTHROPIC_TAG, &job, NULL, &req);
	assert_string_equal(req.url, "https://api.anthropic.com/v1/messages");
	json_t *root = load_json(req.body);
	const char *sys = json_string_value(json_object_get(root, "system"));
	assert_system(sys, PROMPT, "append the tag " TAG " at the very end");
	assert_null(strstr(sys, "escalate_to_human"));
	assert_null(json_object_get(root, "tools"));
	assert_null(json_object_get(root, "tool_choice"));
	assert_int_equal(json_array_size(json_object_get(root, "messages")), 3);
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
	llm_build(&OPENAI, &job, NULL, &req);

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
	json_t *sys = json_array_get(msgs, 0);
	assert_string_equal(json_string_value(json_object_get(sys, "role")), "system");
	assert_system(json_string_value(json_object_get(sys, "content")), PROMPT, "escalate to true");
	/* the leading assistant turn is kept for OpenAI */
	assert_msg(msgs, 1, "assistant", "Welcome!");
	assert_msg(msgs, 2, "user", "Hola\n\xc2\xbfHorario?");
	assert_msg(msgs, 3, "assistant", "9-18\n(human agent) I'm Ana");
	assert_msg(msgs, 4, "user", "[note] customer is VIP\ngracias");
	/* structured mode asks for a JSON-schema reply */
	json_t *rf = json_object_get(root, "response_format");
	assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_schema");
	json_t *js = json_object_get(rf, "json_schema");
	assert_string_equal(json_string_value(json_object_get(js, "name")), "reply");
	assert_true(json_is_true(json_object_get(js, "strict")));
	json_t *schema = json_object_get(js, "schema");
	assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
	json_t *props = json_object_get(schema, "properties");
	assert_string_equal(json_string_value(json_object_get(json_object_get(props, "reply"), "type")),
			    "string");
	assert_string_equal(json_string_value(json_object_get(json_object_get(props, "escalate"), "type")),
			    "boolean");
	assert_int_equal(json_array_size(json_object_get(schema, "required")), 4);
	assert_null(json_object_get(root, "tools"));
	json_decref(root);
	llm_request_release(&req);
	env_release(&job);
}

static void test_build_openai_tag_mode(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_request req;
	make_job(&job);
	llm_build(&OPENAI_TAG, &job, NULL, &req);
	json_t *root = load_json(req.body);
	json_t *msgs = json_object_get(root, "messages");
	assert_int_equal(json_array_size(msgs), 5);
	json_t *sys = json_array_get(msgs, 0);
	assert_string_equal(json_string_value(json_object_get(sys, "role")), "system");
	assert_system(json_string_value(json_object_get(sys, "content")), PROMPT, TAG);
	assert_null(json_object_get(root, "response_format"));
	json_decref(root);
	llm_request_release(&req);
	env_release(&job);
}

/* --- Anthropic responses --- */

static void test_parse_anthropic_text(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(&ANTHROPIC, 200,
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
	assert_int_equal(parse(&ANTHROPIC, 200,
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
	assert_int_equal(parse(&ANTHROPIC, 200,
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
	assert_int_equal(parse(&ANTHROPIC, 200,
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
	assert_int_equal(parse(&ANTHROPIC, 200,
			       "{\"content\":[{\"type\":\"text\",\"text\":\"Hi\"},"
			       "{\"type\":\"tool_use\",\"name\":\"get_weather\",\"input\":{\"reason\":\"x\"}}]}",
			       &r),
			 LLM_OK);
	assert_false(r.tool_escalate);
	assert_null(r.reason);
	llm_reply_release(&r);
	/* escalate_to_human whose input is not an object does not count */
	expect_outcome(&ANTHROPIC, 200,
		       "{\"content\":[{\"type\":\"tool_use\",\"name\":\"escalate_to_human\","
		       "\"input\":\"please\"}]}",
		       LLM_MALFORMED);
	/* another tool and no text: nothing to send */
	expect_outcome(&ANTHROPIC, 200,
		       "{\"content\":[{\"type\":\"tool_use\",\"name\":\"get_weather\",\"input\":{}}]}",
		       LLM_MALFORMED);
}

static void test_parse_anthropic_malformed(void **state)
{
	(void)state;
	expect_outcome(&ANTHROPIC, 200, "{\"content\":\"Hello\"}", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "{\"content\":{\"type\":\"text\"}}", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "{\"foo\":1}", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "not json at all", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "{\"content\":[{\"type\":\"text\",\"text\":\"Hel", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "[1,2,3]", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "\"just a string\"", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "{\"content\":[]}", LLM_MALFORMED);
	expect_outcome(&ANTHROPIC, 200, "{\"content\":[{\"type\":\"text\",\"text\":\"\"}]}",
		       LLM_MALFORMED);
	/* the OpenAI shape is not an Anthropic reply */
	expect_outcome(&ANTHROPIC, 200,
		       "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}",
		       LLM_MALFORMED);

	struct llm_reply r;
	assert_int_equal(parse(&ANTHROPIC, 200, "{\"content\":[]}", &r), LLM_MALFORMED);
	assert_non_null(strstr(r.error, "no text"));
	llm_reply_release(&r);
	/* trailing garbage after the object is not JSON either */
	assert_int_equal(parse(&ANTHROPIC, 200,
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
		expect_outcome(&ANTHROPIC, retry[i], body, LLM_RETRY);
		expect_outcome(&OPENAI_TAG, retry[i], "<html>bad gateway</html>", LLM_RETRY);
	}
	struct llm_reply r;
	assert_int_equal(parse(&ANTHROPIC, 529, body, &r), LLM_RETRY);
	assert_non_null(strstr(r.error, "529"));
	assert_non_null(strstr(r.error, "overloaded_error"));
	assert_non_null(strstr(r.error, "Overloaded"));
	assert_null(r.text);
	llm_reply_release(&r);
}

/* A 200 carrying an error object: overload is retried, a refusal is not. */
static void test_parse_200_with_error_object(void **state)
{
	(void)state;
	const char *overloaded = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
				 "\"message\":\"Overloaded\"}}";
	const char *refused = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
			      "\"message\":\"bad\"}}";
	const char *openai = "{\"error\":{\"message\":\"server busy\",\"type\":\"server_error\"}}";
	struct llm_reply r;
	assert_int_equal(parse(&ANTHROPIC, 200, overloaded, &r), LLM_RETRY);
	assert_non_null(strstr(r.error, "overloaded_error"));
	assert_null(r.text);
	llm_reply_release(&r);
	expect_outcome(&ANTHROPIC_TAG, 200, overloaded, LLM_RETRY);
	expect_outcome(&ANTHROPIC, 200, refused, LLM_FATAL);
	expect_outcome(&OPENAI, 200, openai, LLM_RETRY);
	expect_outcome(&OPENAI_TAG, 200, "{\"type\":\"error\"}", LLM_RETRY);
}

static void test_parse_status_zero(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(llm_parse(&ANTHROPIC, 0, NULL, 0, &r), LLM_RETRY);
	assert_non_null(r.error);
	assert_null(r.text);
	llm_reply_release(&r);
	assert_int_equal(llm_parse(&OPENAI_TAG, 0, "", 0, &r), LLM_RETRY);
	llm_reply_release(&r);
}

static void test_parse_fatal_statuses(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(&ANTHROPIC, 401,
			       "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
			       "\"message\":\"invalid x-api-key\"}}",
			       &r),
			 LLM_FATAL);
	assert_non_null(strstr(r.error, "401"));
	assert_non_null(strstr(r.error, "authentication_error"));
	assert_non_null(strstr(r.error, "invalid x-api-key"));
	llm_reply_release(&r);

	assert_int_equal(parse(&ANTHROPIC, 400,
			       "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
			       "\"message\":\"messages: roles must alternate\"}}",
			       &r),
			 LLM_FATAL);
	assert_non_null(strstr(r.error, "invalid_request_error"));
	assert_non_null(strstr(r.error, "roles must alternate"));
	llm_reply_release(&r);

	/* a body that is not JSON still gives a useful error */
	assert_int_equal(parse(&ANTHROPIC, 403, "Forbidden", &r), LLM_FATAL);
	assert_non_null(strstr(r.error, "403"));
	llm_reply_release(&r);
	expect_outcome(&ANTHROPIC, 404, "{}", LLM_FATAL);
	expect_outcome(&OPENAI_TAG, 402, "{\"message\":\"billing\"}", LLM_FATAL);
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
	assert_int_equal(parse(&ANTHROPIC, 400, body, &r), LLM_FATAL);
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
	assert_int_equal(parse(&OPENAI_TAG, 200,
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
	assert_int_equal(parse(&OPENAI_TAG, 200,
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

	/* the same tool call is understood in structured mode too */
	assert_int_equal(parse(&OPENAI, 200,
			       "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":"
			       "{\"name\":\"escalate_to_human\",\"arguments\":\"{\\\"reason\\\":\\\"r\\\"}\"}}]}}]}",
			       &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	assert_string_equal(r.reason, "r");
	llm_reply_release(&r);
}

static void test_parse_openai_tool_bad_arguments(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(&OPENAI_TAG, 200,
			       "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":"
			       "{\"name\":\"escalate_to_human\",\"arguments\":\"{reason: oops\"}}]}}]}",
			       &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	assert_null(r.reason);
	assert_null(r.summary);
	llm_reply_release(&r);

	/* arguments missing altogether: still an escalation */
	assert_int_equal(parse(&OPENAI_TAG, 200,
			       "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":"
			       "{\"name\":\"escalate_to_human\"}}]}}]}",
			       &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	llm_reply_release(&r);

	/* another function is not an escalation */
	expect_outcome(&OPENAI_TAG, 200,
		       "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":"
		       "{\"name\":\"lookup\",\"arguments\":\"{}\"}}]}}]}",
		       LLM_MALFORMED);
}

static void test_parse_openai_malformed(void **state)
{
	(void)state;
	expect_outcome(&OPENAI_TAG, 200, "{\"id\":\"x\"}", LLM_MALFORMED);
	expect_outcome(&OPENAI_TAG, 200, "{\"choices\":[]}", LLM_MALFORMED);
	expect_outcome(&OPENAI_TAG, 200, "{\"choices\":{}}", LLM_MALFORMED);
	expect_outcome(&OPENAI_TAG, 200, "{\"choices\":[{\"text\":\"legacy\"}]}", LLM_MALFORMED);
	expect_outcome(&OPENAI_TAG, 200, "{\"choices\":[{\"message\":\"hi\"}]}", LLM_MALFORMED);
	expect_outcome(&OPENAI_TAG, 200, "{\"choices\":[{\"message\":{\"content\":5}}]}",
		       LLM_MALFORMED);
	expect_outcome(&OPENAI_TAG, 200, "{\"choices\":[{\"message\":{\"content\":\"\"}}]}",
		       LLM_MALFORMED);
	expect_outcome(&OPENAI_TAG, 200, "{\"choices\":[{\"message\":{\"content\":null}}]}",
		       LLM_MALFORMED);
	expect_outcome(&OPENAI_TAG, 200, "{\"choices\":[{\"message\":{\"content\":\"tru", LLM_MALFORMED);
	/* the Anthropic shape is not an OpenAI reply */
	expect_outcome(&OPENAI_TAG, 200, "{\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]}",
		       LLM_MALFORMED);
}

static void test_parse_openai_error(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse(&OPENAI_TAG, 401,
			       "{\"error\":{\"message\":\"Incorrect API key provided: sk-test-***6789.\","
			       "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
			       &r),
			 LLM_FATAL);
	assert_non_null(strstr(r.error, "invalid_request_error"));
	assert_non_null(strstr(r.error, "Incorrect API key"));
	llm_reply_release(&r);
	assert_int_equal(parse(&OPENAI_TAG, 429,
			       "{\"error\":{\"message\":\"Rate limit\",\"type\":\"rate_limit_exceeded\"}}",
			       &r),
			 LLM_RETRY);
	assert_non_null(strstr(r.error, "rate_limit_exceeded"));
	llm_reply_release(&r);
}

/* An OpenAI reply whose message content is the given JSON-escaped string. */
static enum llm_outcome parse_openai_content(const struct llm_cfg *cfg, const char *content,
					     struct llm_reply *r)
{
	char *body = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);
	assert_non_null(f);
	json_t *root = json_pack("{s:[{s:{s:s,s:s}}]}", "choices", "message", "role", "assistant",
				 "content", content);
	assert_non_null(root);
	assert_int_equal(json_dumpf(root, f, JSON_COMPACT), 0);
	fclose(f);
	json_decref(root);
	enum llm_outcome oc = parse(cfg, 200, body, r);
	free(body);
	return oc;
}

static void test_parse_openai_structured(void **state)
{
	(void)state;
	struct llm_reply r;
	assert_int_equal(parse_openai_content(&OPENAI,
					      "{\"reply\":\"Um momento, por favor.\",\"escalate\":true,"
					      "\"reason\":\"pediu um humano\",\"summary\":\"quer marcar\"}",
					      &r),
			 LLM_OK);
	assert_string_equal(r.text, "Um momento, por favor.");
	assert_true(r.tool_escalate);
	assert_non_null(r.reason);
	assert_string_equal(r.reason, "pediu um humano");
	assert_non_null(r.summary);
	assert_string_equal(r.summary, "quer marcar");
	llm_reply_release(&r);

	/* escalate false: reason and summary are ignored */
	assert_int_equal(parse_openai_content(&OPENAI,
					      "\n {\"reply\":\"Abrimos \\u00e0s 9h.\",\"escalate\":false,"
					      "\"reason\":\"x\",\"summary\":\"y\"}",
					      &r),
			 LLM_OK);
	assert_string_equal(r.text, "Abrimos \xc3\xa0s 9h.");
	assert_false(r.tool_escalate);
	assert_null(r.reason);
	assert_null(r.summary);
	llm_reply_release(&r);

	/* escalate with empty reason/summary: no empty strings passed on */
	assert_int_equal(parse_openai_content(&OPENAI,
					      "{\"reply\":\"\",\"escalate\":true,\"reason\":\"\","
					      "\"summary\":\"\"}",
					      &r),
			 LLM_OK);
	assert_true(r.tool_escalate);
	assert_string_equal(r.text, "");
	assert_null(r.reason);
	assert_null(r.summary);
	llm_reply_release(&r);
}

static void test_parse_openai_structured_ignored_format(void **state)
{
	(void)state;
	struct llm_reply r;
	/* a model that ignores the schema: plain text is the reply */
	assert_int_equal(parse_openai_content(&OPENAI, "Hello! We open at 9.", &r), LLM_OK);
	assert_string_equal(r.text, "Hello! We open at 9.");
	assert_false(r.tool_escalate);
	llm_reply_release(&r);
}

static void test_parse_openai_structured_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{\"reply\":\"Hel",                     /* truncated by max_tokens */
		"{\"escalate\":true,\"reason\":\"x\"}", /* no reply */
		"{\"reply\":42}",                        /* reply not a string */
		"[\"reply\"]",                           /* not an object */
		"{\"reply\":\"ok\"} trailing",           /* not one JSON value */
		"{\"reply\":\"\",\"escalate\":false}",   /* nothing to send */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct llm_reply r;
		enum llm_outcome oc = parse_openai_content(&OPENAI, bad[i], &r);
		if (oc != LLM_MALFORMED)
			fail_msg("content '%s': outcome %d", bad[i], oc);
		assert_non_null(r.error);
		llm_reply_release(&r);
	}
}

/* Found by fuzz_upstream: a body that is not JSON but quotes the key made
 * jansson's error text (and so the log line) carry it. Every path masks. */
static void test_key_never_in_error_text(void **state)
{
	(void)state;
	const char *bodies[] = { "{\"id\": \"msg_1\", \"type\": \"" API_KEY "l\x04{",
				 API_KEY, "{\"error\":{\"message\":\"bad key " API_KEY "\"}}" };
	const struct llm_cfg *cfgs[] = { &ANTHROPIC, &OPENAI, &ANTHROPIC_TAG, &OPENAI_TAG };
	const long statuses[] = { 200, 401, 500 };
	for (size_t b = 0; b < 3; b++)
		for (size_t c = 0; c < 4; c++)
			for (size_t s = 0; s < 3; s++) {
				struct llm_reply r;
				(void)llm_parse(cfgs[c], statuses[s], bodies[b], strlen(bodies[b]), &r);
				if (r.error && strstr(r.error, API_KEY))
					fail_msg("key in error text: %s", r.error);
				llm_reply_release(&r);
			}
}


/* --- media --- */

/* A tiny JPEG's first bytes (magic FF D8 FF), with a NUL and high bytes. */
static const char JPEG[] = "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x02\xfe\xfd";
#define JPEG_LEN (sizeof(JPEG) - 1)
static const char PDF[] = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj";
#define PDF_LEN (sizeof(PDF) - 1)

#define MEDIA_PHOTO "{\"type\":\"image\",\"items\":[{\"url\":\"https://api.twilio.com/m/1\",\"ct\":\"image/jpeg\"}]}"
#define MEDIA_PDF "{\"items\":[{\"url\":\"https://api.twilio.com/m/2\",\"ct\":\"application/pdf\"}]}"
#define MEDIA_VOICE "{\"items\":[{\"url\":\"https://api.twilio.com/m/3\",\"ct\":\"audio/ogg\"}]}"
#define MEDIA_PLACE "{\"loc\":{\"lat\":\"-23.5\",\"lon\":\"-46.6\",\"addr\":\"Av. Paulista 1000\",\"label\":\"Clinic\"},\"btn\":{\"text\":\"Yes, book it\",\"payload\":\"book\"}}"

/* base64 s decoded must be exactly want[0..n). */
static void assert_b64(const char *s, const char *want, size_t n)
{
	assert_non_null(s);
	size_t len = strlen(s);
	unsigned char *out = malloc(len + 1);
	assert_non_null(out);
	int got = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
	assert_true(got >= 0);
	/* DecodeBlock counts the padding as zero bytes. */
	for (size_t i = len; i > 0 && s[i - 1] == '='; i--)
		got--;
	assert_int_equal((size_t)got, n);
	assert_memory_equal(out, want, n);
	free(out);
}

/* A customer says hi, then sends a photo with a caption; views: job->nturns. */
static struct llm_turn_media *photo_job(struct envelope *job, enum llm_item_kind kind)
{
	memset(job, 0, sizeof(*job));
	job->type = ENV_JOB_AI;
	job->prompt = strdup("p");
	env_add_turn_seq(job, ROLE_AI, "Welcome!", 1, 1, NULL);
	env_add_turn_seq(job, ROLE_CUSTOMER, "hi", 2, 2, NULL);
	env_add_turn_seq(job, ROLE_CUSTOMER, "is this a rash?", 3, 3, MEDIA_PHOTO);
	struct llm_turn_media *tm = calloc(job->nturns, sizeof(*tm));
	assert_non_null(tm);
	tm[2].items[0] = (struct llm_item){ .kind = kind, .ctype = "image/jpeg", .data = JPEG,
					    .len = JPEG_LEN };
	return tm;
}

static json_t *build_messages(const struct llm_cfg *cfg, const struct envelope *job,
			      const struct llm_turn_media *tm, json_t **root)
{
	struct llm_request req;
	llm_build(cfg, job, tm, &req);
	*root = load_json(req.body);
	llm_request_release(&req);
	return json_object_get(*root, "messages");
}

static void test_build_anthropic_image(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_turn_media *tm = photo_job(&job, LLM_ITEM_IMAGE);
	json_t *root, *msgs = build_messages(&ANTHROPIC, &job, tm, &root);
	/* The greeting is dropped; both customer turns merge into one message of blocks. */
	assert_int_equal(json_array_size(msgs), 1);
	json_t *content = json_object_get(json_array_get(msgs, 0), "content");
	assert_true(json_is_array(content));
	assert_int_equal(json_array_size(content), 3);
	json_t *b0 = json_array_get(content, 0), *b1 = json_array_get(content, 1),
	       *b2 = json_array_get(content, 2);
	assert_string_equal(json_string_value(json_object_get(b0, "type")), "text");
	assert_string_equal(json_string_value(json_object_get(b0, "text")), "hi");
	assert_string_equal(json_string_value(json_object_get(b1, "type")), "image");
	json_t *src = json_object_get(b1, "source");
	assert_string_equal(json_string_value(json_object_get(src, "type")), "base64");
	assert_string_equal(json_string_value(json_object_get(src, "media_type")), "image/jpeg");
	assert_b64(json_string_value(json_object_get(src, "data")), JPEG, JPEG_LEN);
	/* The caption follows what it speaks of; no note for an item shown. */
	assert_string_equal(json_string_value(json_object_get(b2, "type")), "text");
	assert_string_equal(json_string_value(json_object_get(b2, "text")), "is this a rash?");
	json_decref(root);
	free(tm);
	env_release(&job);
}

static void test_build_openai_image(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_turn_media *tm = photo_job(&job, LLM_ITEM_IMAGE);
	json_t *root, *msgs = build_messages(&OPENAI, &job, tm, &root);
	/* system, assistant greeting, then the customer's merged turns */
	assert_int_equal(json_array_size(msgs), 3);
	assert_msg(msgs, 1, "assistant", "Welcome!");
	json_t *content = json_object_get(json_array_get(msgs, 2), "content");
	assert_int_equal(json_array_size(content), 3);
	json_t *img = json_array_get(content, 1);
	assert_string_equal(json_string_value(json_object_get(img, "type")), "image_url");
	const char *url = json_string_value(json_object_get(json_object_get(img, "image_url"), "url"));
	assert_non_null(url);
	const char *prefix = "data:image/jpeg;base64,";
	assert_int_equal(strncmp(url, prefix, strlen(prefix)), 0);
	assert_b64(url + strlen(prefix), JPEG, JPEG_LEN);
	assert_string_equal(json_string_value(json_object_get(json_array_get(content, 2), "text")),
			    "is this a rash?");
	json_decref(root);
	free(tm);
	env_release(&job);
}

/* A photo without a caption: no empty text block (Anthropic refuses them). */
static void test_build_image_only(void **state)
{
	(void)state;
	struct envelope job;
	memset(&job, 0, sizeof(job));
	job.type = ENV_JOB_AI;
	env_add_turn_seq(&job, ROLE_CUSTOMER, "", 1, 1, MEDIA_PHOTO);
	struct llm_turn_media tm = { .items = { { .kind = LLM_ITEM_IMAGE, .ctype = "image/png",
						  .data = JPEG, .len = JPEG_LEN } } };
	json_t *root, *msgs = build_messages(&ANTHROPIC, &job, &tm, &root);
	json_t *content = json_object_get(json_array_get(msgs, 0), "content");
	assert_int_equal(json_array_size(content), 1);
	json_t *src = json_object_get(json_array_get(content, 0), "source");
	assert_string_equal(json_string_value(json_object_get(src, "media_type")), "image/png");
	json_decref(root);
	env_release(&job);
}

/* Images off or too large: the fallback text stands for the photo; the content stays a string. */
static void test_build_image_fallback(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_turn_media *tm = photo_job(&job, LLM_ITEM_TEXT);
	tm[2].items[0].text = "(the customer sent a photo)";
	for (int p = 0; p < 2; p++) {
		json_t *root, *msgs = build_messages(p ? &OPENAI : &ANTHROPIC, &job, tm, &root);
		assert_msg(msgs, json_array_size(msgs) - 1, "user",
			   "hi\nis this a rash?\n(the customer sent a photo)");
		json_decref(root);
	}
	free(tm);
	env_release(&job);
}

/* Without views (or a note view) every item is its note, as before media. */
static void test_build_media_notes(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_turn_media *tm = photo_job(&job, LLM_ITEM_NOTE);
	json_t *root, *msgs = build_messages(&ANTHROPIC, &job, tm, &root);
	assert_msg(msgs, 0, "user", "hi\nis this a rash?\n[photo (image/jpeg)]");
	json_decref(root);
	msgs = build_messages(&ANTHROPIC, &job, NULL, &root);
	assert_msg(msgs, 0, "user", "hi\nis this a rash?\n[photo (image/jpeg)]");
	json_decref(root);
	free(tm);
	env_release(&job);
}

/* An item that could not be fetched: the note with its reason (aimedia writes it). */
static void test_build_failed_item_note(void **state)
{
	(void)state;
	struct envelope job;
	struct llm_turn_media *tm = photo_job(&job, LLM_ITEM_TEXT);
	tm[2].items[0].text = "[photo (image/jpeg): it could not be downloaded (HTTP 404)]";
	json_t *root, *msgs = build_messages(&OPENAI, &job, tm, &root);
	assert_msg(msgs, 2, "user",
		   "hi\nis this a rash?\n[photo (image/jpeg): it could not be downloaded (HTTP 404)]");
	json_decref(root);
	free(tm);
	env_release(&job);
}

static void test_build_pdf(void **state)
{
	(void)state;
	struct envelope job;
	memset(&job, 0, sizeof(job));
	job.type = ENV_JOB_AI;
	env_add_turn_seq(&job, ROLE_CUSTOMER, "my exam results", 1, 1, MEDIA_PDF);
	struct llm_turn_media tm = { .items = { { .kind = LLM_ITEM_PDF, .ctype = "application/pdf",
						  .data = PDF, .len = PDF_LEN } } };
	json_t *root, *msgs = build_messages(&ANTHROPIC, &job, &tm, &root);
	json_t *content = json_object_get(json_array_get(msgs, 0), "content");
	assert_int_equal(json_array_size(content), 2);
	json_t *doc = json_array_get(content, 0);
	assert_string_equal(json_string_value(json_object_get(doc, "type")), "document");
	json_t *src = json_object_get(doc, "source");
	assert_string_equal(json_string_value(json_object_get(src, "type")), "base64");
	assert_string_equal(json_string_value(json_object_get(src, "media_type")), "application/pdf");
	assert_b64(json_string_value(json_object_get(src, "data")), PDF, PDF_LEN);
	assert_string_equal(json_string_value(json_object_get(json_array_get(content, 1), "text")),
			    "my exam results");
	json_decref(root);
	/* OpenAI-compatible chat takes no documents: the note names it. */
	msgs = build_messages(&OPENAI, &job, &tm, &root);
	assert_msg(msgs, 1, "user", "my exam results\n[PDF document (application/pdf)]");
	json_decref(root);
	env_release(&job);
}

/* Assistant messages carry no images: a block there is its note. */
static void test_build_block_only_for_user(void **state)
{
	(void)state;
	struct envelope job;
	memset(&job, 0, sizeof(job));
	job.type = ENV_JOB_AI;
	env_add_turn_seq(&job, ROLE_CUSTOMER, "hello", 1, 1, NULL);
	env_add_turn_seq(&job, ROLE_AGENT, "here is the map", 2, 2, MEDIA_PHOTO);
	struct llm_turn_media tm[2] = { 0 };
	tm[1].items[0] = (struct llm_item){ .kind = LLM_ITEM_IMAGE, .ctype = "image/jpeg",
					    .data = JPEG, .len = JPEG_LEN };
	json_t *root, *msgs = build_messages(&ANTHROPIC, &job, tm, &root);
	assert_msg(msgs, 1, "assistant", "(human agent) here is the map\n[photo (image/jpeg)]");
	json_decref(root);
	env_release(&job);
}

/* A voice note: transcribed now (a text view), or earlier (the turn's text is the transcript). */
static void test_build_voice_transcript(void **state)
{
	(void)state;
	struct envelope job;
	memset(&job, 0, sizeof(job));
	job.type = ENV_JOB_AI;
	struct env_turn *old = env_add_turn_seq(&job, ROLE_CUSTOMER, "I have a fever", 1, 1,
						MEDIA_VOICE);
	old->transcript = true;
	env_add_turn_seq(&job, ROLE_AI, "Since when?", 2, 2, NULL);
	env_add_turn_seq(&job, ROLE_CUSTOMER, "", 3, 3, MEDIA_VOICE);
	env_add_turn_seq(&job, ROLE_CUSTOMER, "", 4, 4, MEDIA_VOICE);
	struct llm_turn_media tm[4] = { 0 };
	tm[2].items[0] = (struct llm_item){ .kind = LLM_ITEM_TEXT,
					    .text = "(voice note transcript) since Monday" };
	tm[3].items[0] = (struct llm_item){
		.kind = LLM_ITEM_TEXT, .text = "[voice note (audio/ogg): could not be transcribed]" };
	json_t *root, *msgs = build_messages(&OPENAI, &job, tm, &root);
	assert_msg(msgs, 1, "user", "(voice note transcript) I have a fever");
	assert_msg(msgs, 2, "assistant", "Since when?");
	assert_msg(msgs, 3, "user",
		   "(voice note transcript) since Monday\n"
		   "[voice note (audio/ogg): could not be transcribed]");
	json_decref(root);
	env_release(&job);
}

static void test_build_location_button(void **state)
{
	(void)state;
	struct envelope job;
	memset(&job, 0, sizeof(job));
	job.type = ENV_JOB_AI;
	env_add_turn_seq(&job, ROLE_CUSTOMER, "", 1, 1, MEDIA_PLACE);
	json_t *root, *msgs = build_messages(&ANTHROPIC, &job, NULL, &root);
	assert_msg(msgs, 0, "user",
		   "shared a location: Clinic, Av. Paulista 1000 (-23.5, -46.6)\ntapped: Yes, book it");
	json_decref(root);
	env_release(&job);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_anthropic),
		cmocka_unit_test(test_build_anthropic_only_assistant),
		cmocka_unit_test(test_build_anthropic_alternates),
		cmocka_unit_test(test_build_anthropic_tag_mode),
		cmocka_unit_test(test_build_openai),
		cmocka_unit_test(test_build_openai_tag_mode),
		cmocka_unit_test(test_build_anthropic_image),
		cmocka_unit_test(test_build_openai_image),
		cmocka_unit_test(test_build_image_only),
		cmocka_unit_test(test_build_image_fallback),
		cmocka_unit_test(test_build_media_notes),
		cmocka_unit_test(test_build_failed_item_note),
		cmocka_unit_test(test_build_pdf),
		cmocka_unit_test(test_build_block_only_for_user),
		cmocka_unit_test(test_build_voice_transcript),
		cmocka_unit_test(test_build_location_button),
		cmocka_unit_test(test_parse_anthropic_text),
		cmocka_unit_test(test_parse_anthropic_multiple_blocks),
		cmocka_unit_test(test_parse_anthropic_tool_use),
		cmocka_unit_test(test_parse_anthropic_other_tool_ignored),
		cmocka_unit_test(test_parse_anthropic_malformed),
		cmocka_unit_test(test_parse_retry_statuses),
		cmocka_unit_test(test_parse_200_with_error_object),
		cmocka_unit_test(test_parse_status_zero),
		cmocka_unit_test(test_parse_fatal_statuses),
		cmocka_unit_test(test_parse_error_text_is_cut),
		cmocka_unit_test(test_parse_openai_text),
		cmocka_unit_test(test_parse_openai_tool_call),
		cmocka_unit_test(test_parse_openai_tool_bad_arguments),
		cmocka_unit_test(test_parse_openai_malformed),
		cmocka_unit_test(test_parse_openai_error),
		cmocka_unit_test(test_parse_openai_structured),
		cmocka_unit_test(test_parse_openai_structured_ignored_format),
		cmocka_unit_test(test_parse_openai_structured_malformed),
		cmocka_unit_test(test_key_never_in_error_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
