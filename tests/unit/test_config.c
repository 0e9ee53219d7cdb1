/*
 * test_config — common/config: built-in defaults, environment overrides,
 * config file parsing and validation (errors name the setting), precedence
 * (env over file), derived endpoints and the secret-masking config_dump.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "confcheck.h"
#include "testenv.h"

struct fixture {
	char dir[64];
	char path[128];
	char err[1024];
	struct config cfg;
};

/* No BATON_* variable is left (testenv.h). */
static void clear_baton_env(void)
{
	testenv_clear_baton();
	for (char **e = environ; e && *e; e++)
		assert_false(strncmp(*e, "BATON_", 6) == 0);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	strcpy(fx->dir, "/tmp/baton-test-config-XXXXXX");
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/baton.conf", fx->dir);
	clear_baton_env();
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	config_release(&fx->cfg);
	clear_baton_env();
	unlink(fx->path);
	static const char *const extra[] = { "prompt.txt", "other.conf", "secret",
					     "twilio.auth_token" };
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		char p[160];
		snprintf(p, sizeof(p), "%s/%s", fx->dir, extra[i]);
		unlink(p);
	}
	assert_int_equal(rmdir(fx->dir), 0);
	free(fx);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Loads a config file with the given text; returns config_load's result. */
static int load_text(struct fixture *fx, const char *text)
{
	write_file(fx->path, text);
	fx->err[0] = '\0';
	return config_load(&fx->cfg, fx->path, fx->err, sizeof(fx->err));
}

/* Asserts the load failed and the message contains every given word. */
static void assert_err_has(struct fixture *fx, const char *a, const char *b)
{
	if (!strstr(fx->err, a) || (b && !strstr(fx->err, b)))
		fail_msg("error '%s' lacks '%s'/'%s'", fx->err, a, b ? b : "");
	/* a failed load leaves nothing allocated */
	assert_null(fx->cfg.state_dir);
	assert_null(fx->cfg.llm_api_key);
}

static char *dump_to_string(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	config_dump(cfg, f);
	assert_int_equal(fclose(f), 0);
	assert_non_null(buf);
	return buf;
}

static void test_defaults(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), 0);
	struct config *c = &fx->cfg;
	assert_string_equal(c->state_dir, "var");
	assert_string_equal(c->router_ingress_endpoint, "ipc://var/ingress.ipc");
	assert_string_equal(c->router_work_endpoint, "ipc://var/work.ipc");
	assert_int_equal(c->worker_heartbeat_ms, 1000);
	assert_int_equal(c->worker_timeout_ms, 3000);
	assert_string_equal(c->http_bind, "127.0.0.1");
	assert_int_equal(c->http_port, 18080);
	assert_string_equal(c->public_url, "http://127.0.0.1:18080");
	assert_int_equal(c->http_max_body, 65536);
	assert_int_equal(c->http_max_params, 256);
	/* No secret and no SID has a default outside sandbox mode. */
	assert_false(c->sandbox);
	assert_string_equal(c->twilio_account_sid, "");
	assert_string_equal(c->twilio_auth_token, "");
	assert_string_equal(c->twilio_api_base, "https://api.twilio.com");
	assert_string_equal(c->flex_workspace_sid, "");
	assert_string_equal(c->twilio_whatsapp_from, "");
	assert_true(c->twilio_validate_signature);
	assert_int_equal(c->llm_provider, CONFIG_LLM_ANTHROPIC);
	assert_string_equal(c->llm_base_url, "https://api.anthropic.com");
	assert_string_equal(c->llm_model, "claude-sonnet-4-5");
	assert_string_equal(c->llm_api_key, "");
	assert_string_equal(c->llm_anthropic_version, "2023-06-01");
	assert_int_equal(c->llm_max_tokens, 512);
	assert_int_equal(c->llm_retries, 2);
	assert_non_null(strstr(c->ai_system_prompt, "Clinica Sol"));
	assert_string_equal(c->ai_system_prompt_file, "");
	assert_string_equal(c->ai_escalation_tag, "[ESCALAR]");
	assert_int_equal(c->ai_escalation_mode, CONFIG_ESCALATION_STRUCTURED);
	assert_int_equal(c->ai_on_failure, CONFIG_ON_FAILURE_ESCALATE);
	assert_non_null(strstr(c->escalation_phrases, "humano"));
	assert_int_equal(c->handoff_history, CONFIG_HISTORY_10);
	assert_int_equal(c->handoff_history, 10); /* the value is the count */
	assert_int_equal(c->handoff_inject, CONFIG_INJECT_MESSAGES);
	assert_int_equal(c->handoff_max_attempts, 3);
	assert_string_equal(c->flex_task_channel, "chat");
	assert_int_equal(c->flex_credit, 32);
	assert_int_equal(c->ai_history, 20);
	assert_int_equal(c->egress_credit, 64);
	assert_int_equal(c->lmdb_map_size_mb, 1024);
	assert_true(c->lmdb_sync);
	assert_int_equal(c->router_batch, 256);
	assert_int_equal(c->log_level, LOG_INFO);
	assert_true(c->log_mask_phone);
}

static void test_env_overrides(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_HTTP_PORT", "9000", 1);
	setenv("BATON_LLM_PROVIDER", "openai", 1);
	setenv("BATON_LMDB_SYNC", "off", 1);
	setenv("BATON_LLM_BASE_URL", "https://api.openai.com//", 1);
	setenv("BATON_STATE_DIR", "/tmp/baton-st", 1);
	setenv("BATON_LMDB_MAP_SIZE_MB", "16", 1);
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), 0);
	assert_int_equal(fx->cfg.http_port, 9000);
	assert_int_equal(fx->cfg.llm_provider, CONFIG_LLM_OPENAI);
	assert_false(fx->cfg.lmdb_sync);
	/* URL bases lose trailing slashes (they are joined with "/path") */
	assert_string_equal(fx->cfg.llm_base_url, "https://api.openai.com");
	assert_int_equal(fx->cfg.lmdb_map_size_mb, 16);
	/* derived endpoints follow the state dir */
	assert_string_equal(fx->cfg.router_ingress_endpoint, "ipc:///tmp/baton-st/ingress.ipc");
	assert_string_equal(fx->cfg.router_work_endpoint, "ipc:///tmp/baton-st/work.ipc");
}

static void test_env_bad_value(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_HTTP_PORT", "90x", 1);
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), -1);
	assert_err_has(fx, "http.port", "BATON_HTTP_PORT");
	setenv("BATON_HTTP_PORT", "", 1);
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), -1);
	assert_err_has(fx, "http.port", NULL);
}

static void test_explicit_endpoints_kept(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_ROUTER_INGRESS_ENDPOINT", "tcp://127.0.0.1:5555", 1);
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), 0);
	assert_string_equal(fx->cfg.router_ingress_endpoint, "tcp://127.0.0.1:5555");
	assert_string_equal(fx->cfg.router_work_endpoint, "ipc://var/work.ipc");
}

static void test_file_parsing(void **state)
{
	struct fixture *fx = *state;
	int rc = load_text(fx,
			   "# a comment line\n"
			   "\n"
			   "   # indented comment\n"
			   "http.port=8081\n"
			   "  http.bind   =   0.0.0.0  \n"
			   "ai.apology = \"Line one\\nLine \\\"two\\\" back\\\\slash\"\n"
			   "llm.model = \"  spaced  \"\n"
			   "twilio.validate_signature = no\n"
			   "llm.provider = openai\n"
			   "http.public_url = https://bot.example.com/\n"
			   "state.dir = /srv/baton\n"
			   "log.level = debug\n"
			   "http.max_body = 1048576\n"
			   "ai.escalation_tag = [HUMAN]\n"
			   "egress.retry_deadline_ms = 0\n");
	if (rc != 0)
		fail_msg("load failed: %s", fx->err);
	struct config *c = &fx->cfg;
	assert_int_equal(c->http_port, 8081);
	assert_string_equal(c->http_bind, "0.0.0.0");
	assert_string_equal(c->ai_apology, "Line one\nLine \"two\" back\\slash");
	assert_string_equal(c->llm_model, "  spaced  ");
	assert_false(c->twilio_validate_signature);
	assert_int_equal(c->llm_provider, CONFIG_LLM_OPENAI);
	assert_string_equal(c->public_url, "https://bot.example.com");
	assert_string_equal(c->state_dir, "/srv/baton");
	assert_string_equal(c->router_ingress_endpoint, "ipc:///srv/baton/ingress.ipc");
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_int_equal(c->http_max_body, 1048576);
	assert_string_equal(c->ai_escalation_tag, "[HUMAN]");
	assert_int_equal(c->egress_retry_deadline_ms, 0);
	/* untouched settings keep their defaults */
	assert_int_equal(c->llm_max_tokens, 512);
}

static void test_file_unknown_key(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "http.port = 1\nhttp.prot = 2\n"), -1);
	assert_err_has(fx, "http.prot", ":2");
}

static void test_file_bad_int(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "http.port = 80a\n"), -1);
	assert_err_has(fx, "http.port", "not a number");
	assert_int_equal(load_text(fx, "llm.max_tokens = \n"), -1);
	assert_err_has(fx, "llm.max_tokens", NULL);
	assert_int_equal(load_text(fx, "lmdb.map_size_mb = 99999999999999999999999\n"), -1);
	assert_err_has(fx, "lmdb.map_size_mb", NULL);
}

static void test_file_out_of_range(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "http.port = 70000\n"), -1);
	assert_err_has(fx, "http.port", "70000");
	assert_int_equal(load_text(fx, "http.port = -1\n"), -1);
	assert_err_has(fx, "http.port", NULL);
	/* a value past INT_MAX for an int setting is out of range, not truncated */
	assert_int_equal(load_text(fx, "http.port = 4294985376\n"), -1);
	assert_err_has(fx, "http.port", NULL);
	assert_int_equal(load_text(fx, "llm.retries = 11\n"), -1);
	assert_err_has(fx, "llm.retries", NULL);
	/* the bounds themselves are accepted */
	assert_int_equal(load_text(fx, "http.port = 65535\nllm.retries = 0\n"), 0);
	assert_int_equal(fx->cfg.http_port, 65535);
	assert_int_equal(fx->cfg.llm_retries, 0);
}

static void test_file_bad_enum(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "llm.provider = foo\n"), -1);
	assert_err_has(fx, "llm.provider", "foo");
	/* a prefix of a choice is not a choice */
	assert_int_equal(load_text(fx, "llm.provider = open\n"), -1);
	assert_err_has(fx, "llm.provider", "(did you mean openai?)");
	assert_int_equal(load_text(fx, "log.level = INFO\n"), -1);
	assert_err_has(fx, "log.level", NULL);
	assert_int_equal(load_text(fx, "ai.escalation_mode = tool\n"), -1);
	/* the message names the setting, the word, where it came from and every allowed word */
	assert_err_has(fx, "ai.escalation_mode: 'tool' is not one of structured, tag", ":1)");
	assert_int_equal(load_text(fx, "handoff.history = 12\n"), -1);
	assert_err_has(fx, "handoff.history", "10, 15, 20, all");
	/* a near miss gets the word meant, case included; a far one gets none */
	assert_int_equal(load_text(fx, "handoff.inject = transcripts\n"), -1);
	assert_err_has(fx, "handoff.inject", "(did you mean transcript?)");
	assert_int_equal(load_text(fx, "llm.provider = OpenAI\n"), -1);
	assert_err_has(fx, "'OpenAI'", "(did you mean openai?)");
	assert_int_equal(load_text(fx, "handoff.no_agent_policy = human\n"), -1);
	assert_err_has(fx, "handoff.no_agent_policy", "wait, ai");
	assert_null(strstr(fx->err, "did you mean"));
	/* every choice of an enum is accepted, into its enum */
	assert_int_equal(load_text(fx, "ai.escalation_mode = tag\nhandoff.history = all\n"
				       "ai.on_failure = apologize\nhandoff.inject = transcript\n"
				       "handoff.no_agent_policy = ai\nhandoff.after_hours = queue\n"
				       "log.level = error\nllm.provider = openai\n"), 0);
	assert_int_equal(fx->cfg.ai_escalation_mode, CONFIG_ESCALATION_TAG);
	assert_int_equal(fx->cfg.handoff_history, CONFIG_HISTORY_ALL);
	assert_int_equal(fx->cfg.ai_on_failure, CONFIG_ON_FAILURE_APOLOGIZE);
	assert_int_equal(fx->cfg.handoff_inject, CONFIG_INJECT_TRANSCRIPT);
	assert_int_equal(fx->cfg.handoff_no_agent_policy, CONFIG_NO_AGENT_AI);
	assert_int_equal(fx->cfg.handoff_after_hours, CONFIG_AFTER_HOURS_QUEUE);
	assert_int_equal(fx->cfg.log_level, LOG_ERROR);
	assert_int_equal(fx->cfg.llm_provider, CONFIG_LLM_OPENAI);
	config_release(&fx->cfg);
	assert_int_equal(load_text(fx, "handoff.history = 15\nlog.level = notice\n"), 0);
	assert_int_equal(fx->cfg.handoff_history, 15);
	assert_int_equal(fx->cfg.log_level, LOG_NOTICE);
}

/* The dump prints an enum setting as its word. */
static void test_dump_enum_words(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_HANDOFF_HISTORY", "all", 1);
	setenv("BATON_LOG_LEVEL", "warn", 1);
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), 0);
	char *out = dump_to_string(&fx->cfg);
	assert_non_null(strstr(out, "handoff.history = \"all\"\n"));
	assert_non_null(strstr(out, "log.level = \"warn\"\n"));
	assert_non_null(strstr(out, "llm.provider = \"anthropic\"\n"));
	assert_non_null(strstr(out, "handoff.after_hours = \"create\"\n"));
	free(out);
}

static void test_file_bad_bool(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "lmdb.sync = maybe\n"), -1);
	assert_err_has(fx, "lmdb.sync", "maybe");
	assert_int_equal(load_text(fx, "lmdb.sync = 1\nlog.mask_phone = off\n"), 0);
	assert_true(fx->cfg.lmdb_sync);
	assert_false(fx->cfg.log_mask_phone);
}

static void test_file_bad_url(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "llm.base_url = ftp://example.com\n"), -1);
	assert_err_has(fx, "llm.base_url", "ftp://example.com");
	assert_int_equal(load_text(fx, "llm.base_url = api.anthropic.com\n"), -1);
	assert_err_has(fx, "llm.base_url", NULL);
}

static void test_file_syntax_errors(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "http.port 8080\n"), -1);
	assert_err_has(fx, ":1", "key = value");
	assert_int_equal(load_text(fx, "ai.apology = \"no end\n"), -1);
	assert_err_has(fx, "ai.apology", "unterminated");
	assert_int_equal(load_text(fx, "ai.apology = \"\n"), -1);
	assert_err_has(fx, "ai.apology", NULL);
	/* missing file */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nope.conf", fx->dir);
	assert_int_equal(config_load(&fx->cfg, missing, fx->err, sizeof(fx->err)), -1);
	assert_err_has(fx, missing, NULL);
}

static void test_file_long_line(void **state)
{
	struct fixture *fx = *state;
	size_t n = 9000;
	char *text = malloc(n + 32);
	assert_non_null(text);
	strcpy(text, "llm.model = ");
	memset(text + strlen(text), 'm', n);
	strcpy(text + 12 + n, "\n");
	assert_int_equal(load_text(fx, text), -1);
	assert_err_has(fx, "longer", NULL);
	free(text);
}

static void test_env_wins_over_file(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_HTTP_PORT", "9000", 1);
	assert_int_equal(load_text(fx, "http.port = 8081\nhttp.bind = 10.0.0.1\n"), 0);
	assert_int_equal(fx->cfg.http_port, 9000);
	assert_string_equal(fx->cfg.http_bind, "10.0.0.1");
	/* a bad environment value fails even when the file's value is good */
	config_release(&fx->cfg);
	setenv("BATON_LLM_PROVIDER", "bogus", 1);
	assert_int_equal(load_text(fx, "llm.provider = openai\n"), -1);
	assert_err_has(fx, "llm.provider", "BATON_LLM_PROVIDER");
}

static void test_config_env_file(void **state)
{
	struct fixture *fx = *state;
	write_file(fx->path, "http.port = 8123\n");
	setenv("BATON_CONFIG", fx->path, 1);
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), 0);
	assert_int_equal(fx->cfg.http_port, 8123);
	config_release(&fx->cfg);
	/* an explicit file argument wins over BATON_CONFIG */
	char other[160];
	snprintf(other, sizeof(other), "%s/other.conf", fx->dir);
	write_file(other, "http.port = 8124\n");
	assert_int_equal(config_load(&fx->cfg, other, fx->err, sizeof(fx->err)), 0);
	assert_int_equal(fx->cfg.http_port, 8124);
}

static void test_cross_field_checks(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "worker.heartbeat_ms = 3000\nworker.timeout_ms = 3000\n"), -1);
	assert_err_has(fx, "worker.timeout_ms", "worker.heartbeat_ms");
	assert_int_equal(load_text(fx, "ai.escalation_tag = \"\"\n"), -1);
	assert_err_has(fx, "ai.escalation_tag", NULL);
}

static void test_prompt_file(void **state)
{
	struct fixture *fx = *state;
	char prompt[160], text[256];
	snprintf(prompt, sizeof(prompt), "%s/prompt.txt", fx->dir);
	write_file(prompt, "Be brief.\nSecond line.\n");
	snprintf(text, sizeof(text), "ai.system_prompt = ignored\nai.system_prompt_file = %s\n", prompt);
	assert_int_equal(load_text(fx, text), 0);
	assert_string_equal(fx->cfg.ai_system_prompt, "Be brief.\nSecond line.\n");
	config_release(&fx->cfg);
	unlink(prompt);
	assert_int_equal(load_text(fx, text), -1);
	assert_err_has(fx, "ai.system_prompt_file", prompt);
}

static void test_dump_masks_secrets(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_TWILIO_AUTH_TOKEN", "tw-secret-AAAA1111", 1);
	setenv("BATON_LLM_API_KEY", "sk-secret-BBBB2222", 1);
	setenv("BATON_AI_APOLOGY", "Sorry \"friend\"\nbye", 1);
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), 0);
	assert_string_equal(fx->cfg.twilio_auth_token, "tw-secret-AAAA1111");
	char *out = dump_to_string(&fx->cfg);
	assert_null(strstr(out, "tw-secret-AAAA1111"));
	assert_null(strstr(out, "sk-secret-BBBB2222"));
	assert_null(strstr(out, "AAAA1111"));
	assert_non_null(strstr(out, "twilio.auth_token = \"********\"\n"));
	assert_non_null(strstr(out, "llm.api_key = \"********\"\n"));
	/* everything else is printed, strings quoted and escaped */
	assert_non_null(strstr(out, "http.port = 18080\n"));
	assert_non_null(strstr(out, "lmdb.sync = true\n"));
	assert_non_null(strstr(out, "state.dir = \"var\"\n"));
	assert_non_null(strstr(out, "ai.apology = \"Sorry \\\"friend\\\"\\nbye\"\n"));
	free(out);
}

static void test_dump_empty_secret(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_LLM_API_KEY", "", 1);
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), 0);
	char *out = dump_to_string(&fx->cfg);
	assert_non_null(strstr(out, "llm.api_key = \"\"\n"));
	free(out);
}

static void test_help_lists_settings(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	config_help(f, CONF_ALL);
	fclose(f);
	assert_non_null(strstr(buf, "BATON_HTTP_PORT"));
	assert_non_null(strstr(buf, "BATON_LLM_API_KEY"));
	assert_non_null(strstr(buf, "(none)"));
	assert_null(strstr(buf, "sandbox-key"));
	assert_null(strstr(buf, "sandbox_token"));
	free(buf);
}

static void test_release_zeroes(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(config_load(&fx->cfg, NULL, fx->err, sizeof(fx->err)), 0);
	config_release(&fx->cfg);
	assert_null(fx->cfg.state_dir);
	assert_int_equal(fx->cfg.http_port, 0);
	config_release(&fx->cfg); /* twice is harmless */
}

/* [number] sections override the per-number settings of one business number. */
static void test_number_sections(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "handoff.holding_message = base hold\n"
				       "flex.workflow_sid = WWbase\n"
				       "[number whatsapp:+15550001111]\n"
				       "ai.system_prompt = \"You are the shop.\"\n"
				       "ai.language = en\n"
				       "flex.workflow_sid = WWshop\n"
				       "[number whatsapp:+15550002222]\n"
				       "handoff.holding_message = Un momento\n"
				       "business.hours = mon-fri 09:00-18:00\n"
				       "handoff.after_hours = queue\n"), 0);
	const struct config *base = &fx->cfg;
	assert_int_equal(base->nnumbers, 2);
	const struct config *shop = config_for(base, "whatsapp:+15550001111");
	const struct config *clinic = config_for(base, "whatsapp:+15550002222");
	assert_ptr_not_equal(shop, base);
	assert_string_equal(shop->ai_system_prompt, "You are the shop.");
	assert_string_equal(shop->ai_language, "en");
	assert_string_equal(shop->flex_workflow_sid, "WWshop");
	assert_string_equal(shop->handoff_holding_message, "base hold"); /* inherited */
	assert_string_equal(clinic->handoff_holding_message, "Un momento");
	assert_string_equal(clinic->flex_workflow_sid, "WWbase");
	assert_int_equal(clinic->handoff_after_hours, CONFIG_AFTER_HOURS_QUEUE);
	assert_string_equal(clinic->business_hours, "mon-fri 09:00-18:00");
	/* unknown numbers and NULL get the base */
	assert_ptr_equal(config_for(base, "whatsapp:+19999999999"), base);
	assert_ptr_equal(config_for(base, NULL), base);
	assert_string_equal(base->ai_language, "");
	char *out = dump_to_string(base);
	assert_non_null(strstr(out, "[number whatsapp:+15550001111]\nai.system_prompt = \"You are the shop.\"\n"));
	assert_non_null(strstr(out, "[number whatsapp:+15550002222]"));
	free(out);
}

static void test_number_section_errors(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load_text(fx, "[number whatsapp:+1555]\nhttp.port = 9\n"), -1);
	assert_err_has(fx, "http.port", "per number");
	assert_int_equal(load_text(fx, "[numbers x]\n"), -1);
	assert_err_has(fx, ":1:", "[number");
	assert_int_equal(load_text(fx, "[number ]\n"), -1);
	assert_err_has(fx, ":1:", NULL);
	assert_int_equal(load_text(fx, "[number whatsapp:+1555]\nhandoff.after_hours = later\n"), -1);
	assert_err_has(fx, "handoff.after_hours", "later");
	assert_int_equal(load_text(fx, "[number whatsapp:+1555]\nbogus.key = 1\n"), -1);
	assert_err_has(fx, "bogus.key", NULL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* Sandbox mode fills what is left unset with the fakes' values, nothing else. */
static void test_sandbox_defaults(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_SANDBOX", "true", 1);
	setenv("BATON_LLM_API_KEY", "my-own-key", 1);
	assert_int_equal(load_text(fx, "twilio.api_base = http://127.0.0.1:9\n"), 0);
	assert_true(fx->cfg.sandbox);
	assert_string_equal(fx->cfg.twilio_auth_token, "sandbox_token");
	assert_string_equal(fx->cfg.twilio_account_sid, "AC00000000000000000000000000000000");
	assert_string_equal(fx->cfg.twilio_api_base, "http://127.0.0.1:9");
	assert_string_equal(fx->cfg.twilio_conversations_base, "http://127.0.0.1:18081");
	assert_string_equal(fx->cfg.llm_api_key, "my-own-key");
	assert_string_equal(config_sandbox_value("llm.api_key"), "sandbox-key");
	assert_null(config_sandbox_value("http.port"));
}

/* A misspelt variable or key is an error that names the nearest one. */
static void test_unknown_names_did_you_mean(void **state)
{
	struct fixture *fx = *state;
	setenv("BATON_HTTP_PROT", "8080", 1);
	assert_int_equal(load_text(fx, ""), -1);
	assert_err_has(fx, "BATON_HTTP_PROT", "did you mean BATON_HTTP_PORT?");
	unsetenv("BATON_HTTP_PROT");
	setenv("BATON_TOTALLY_UNRELATED_THING", "1", 1);
	assert_int_equal(load_text(fx, ""), -1);
	assert_err_has(fx, "BATON_TOTALLY_UNRELATED_THING", NULL);
	assert_null(strstr(fx->err, "did you mean"));
	unsetenv("BATON_TOTALLY_UNRELATED_THING");
	setenv("BATON_BIN", "/x", 1); /* tools' own variables are not settings */
	assert_int_equal(load_text(fx, ""), 0);
	config_release(&fx->cfg);
	unsetenv("BATON_BIN");
	assert_int_equal(load_text(fx, "twilio.auth_tokn = x\n"), -1);
	assert_err_has(fx, "twilio.auth_tokn", "did you mean twilio.auth_token?");
}

/* Secrets from files: mode checked, newline dropped, never set twice. */
static void test_secret_files(void **state)
{
	struct fixture *fx = *state;
	char secret[200], conf[400];
	snprintf(secret, sizeof(secret), "%s/secret", fx->dir);
	write_file(secret, "s3cr3t-from-file\n");
	chmod(secret, 0644);
	snprintf(conf, sizeof(conf), "twilio.auth_token_file = %s\n", secret);
	assert_int_equal(load_text(fx, conf), -1);
	assert_err_has(fx, "twilio.auth_token", "chmod 600");
	chmod(secret, 0600);
	assert_int_equal(load_text(fx, conf), 0);
	assert_string_equal(fx->cfg.twilio_auth_token, "s3cr3t-from-file");
	config_release(&fx->cfg);
	snprintf(conf, sizeof(conf), "twilio.auth_token_file = %s\ntwilio.auth_token = x\n", secret);
	assert_int_equal(load_text(fx, conf), -1);
	assert_err_has(fx, "twilio.auth_token", "keep one");
	/* systemd's LoadCredential: $CREDENTIALS_DIRECTORY/<setting> */
	char cred[200];
	snprintf(cred, sizeof(cred), "%s/twilio.auth_token", fx->dir);
	write_file(cred, "from-credential");
	chmod(cred, 0400);
	setenv("CREDENTIALS_DIRECTORY", fx->dir, 1);
	assert_int_equal(load_text(fx, ""), 0);
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_string_equal(fx->cfg.twilio_auth_token, "from-credential");
	/* A process keeps only the secrets it uses. */
	static const char *const keep[] = { "llm.api_key", NULL };
	config_drop_secrets(&fx->cfg, keep);
	assert_string_equal(fx->cfg.twilio_auth_token, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_defaults),
		T(test_env_overrides),
		T(test_env_bad_value),
		T(test_explicit_endpoints_kept),
		T(test_file_parsing),
		T(test_file_unknown_key),
		T(test_file_bad_int),
		T(test_file_out_of_range),
		T(test_file_bad_enum),
		T(test_dump_enum_words),
		T(test_file_bad_bool),
		T(test_file_bad_url),
		T(test_file_syntax_errors),
		T(test_file_long_line),
		T(test_env_wins_over_file),
		T(test_config_env_file),
		T(test_cross_field_checks),
		T(test_prompt_file),
		T(test_dump_masks_secrets),
		T(test_dump_empty_secret),
		T(test_help_lists_settings),
		T(test_release_zeroes),
		T(test_number_sections),
		T(test_number_section_errors),
		T(test_sandbox_defaults),
		T(test_unknown_names_did_you_mean),
		T(test_secret_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
