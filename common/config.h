/*
 * config — every setting of every baton process, in one table.
 *
 * Sources, later wins: built-in defaults (which run the sandbox of
 * `make demo`), the config file (`--config FILE` or BATON_CONFIG), then
 * environment variables (BATON_<KEY> with dots as underscores, e.g.
 * http.port -> BATON_HTTP_PORT).
 *
 * File format: one `key = value` per line, `#` starts a comment line,
 * values may be double-quoted with \n, \" and \\ escapes. A line
 * `[number whatsapp:+E164]` starts the section of one business number:
 * the per-number settings below it (prompt, messages, language, hours,
 * Flex workflow; see config_per_number) apply to its conversations only.
 * Sections come after the base settings.
 *
 * config_load() fills a struct config whose strings it owns until
 * config_release(). On any error it writes a message naming the setting
 * into err and returns -1; processes then exit with CONFIG_EXIT (2).
 *
 * A setting that takes one of a fixed set of words is read into an enum
 * below: a word outside the set is a config error naming the setting and
 * the words it takes, so code past the loader never compares strings.
 * The words stay in the table (config.c) for --help, docs/CONFIG.md and
 * the dump.
 */
#ifndef BATON_CONFIG_H
#define BATON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "log.h"

#define CONFIG_EXIT 2

/* llm.provider: anthropic|openai */
enum config_llm_provider { CONFIG_LLM_ANTHROPIC, CONFIG_LLM_OPENAI };
/* ai.escalation_mode: structured|tag */
enum config_escalation_mode { CONFIG_ESCALATION_STRUCTURED, CONFIG_ESCALATION_TAG };
/* ai.on_failure: escalate|apologize */
enum config_on_failure { CONFIG_ON_FAILURE_ESCALATE, CONFIG_ON_FAILURE_APOLOGIZE };
/* handoff.history: 10|15|20|all; the value is the number of messages, 0 for all. */
enum config_history {
	CONFIG_HISTORY_ALL = 0,
	CONFIG_HISTORY_10 = 10,
	CONFIG_HISTORY_15 = 15,
	CONFIG_HISTORY_20 = 20,
};
/* handoff.inject: messages|transcript */
enum config_inject { CONFIG_INJECT_MESSAGES, CONFIG_INJECT_TRANSCRIPT };
/* handoff.no_agent_policy: wait|ai */
enum config_no_agent { CONFIG_NO_AGENT_WAIT, CONFIG_NO_AGENT_AI };
/* handoff.after_hours: create|queue */
enum config_after_hours { CONFIG_AFTER_HOURS_CREATE, CONFIG_AFTER_HOURS_QUEUE };
/* state.backend: lmdb|postgres */
enum config_backend { CONFIG_BACKEND_LMDB, CONFIG_BACKEND_POSTGRES };

enum config_on_voice { CONFIG_ON_VOICE_NOTE, CONFIG_ON_VOICE_ESCALATE };
/* log.level (debug|info|notice|warn|error) is an enum log_level (log.h). */

struct config {
	bool sandbox;

	/* paths and sockets */
	char *state_dir;
	char *router_ingress_endpoint;
	char *router_work_endpoint;
	char *zmq_server_public_key;
	char *zmq_server_secret_key;
	char *zmq_server_secret_key_file;
	char *zmq_public_key;
	char *zmq_secret_key;
	char *zmq_secret_key_file;
	char *zmq_allowed_keys;
	bool zmq_insecure_tcp;
	int worker_heartbeat_ms;
	int worker_timeout_ms;

	/* ingress */
	char *http_bind;
	int http_port;
	bool http_share_port;
	char *public_url;
	long http_max_body;
	int http_ack_timeout_ms;
	int http_conn_timeout_s;
	int http_head_timeout_s;
	int http_per_ip_limit;
	int http_max_params;

	/* Twilio */
	char *twilio_account_sid;
	char *twilio_auth_token;
	char *twilio_auth_token_file;
	char *twilio_api_key_sid;
	char *twilio_api_key_secret;
	char *twilio_api_key_secret_file;
	char *twilio_api_base;
	char *twilio_conversations_base;
	char *twilio_flex_base;
	char *twilio_taskrouter_base;
	char *twilio_mcs_base;
	char *twilio_whatsapp_from;
	bool twilio_validate_signature;

	/* LLM */
	enum config_llm_provider llm_provider;
	char *llm_base_url;
	char *llm_model;
	char *llm_api_key;
	char *llm_api_key_file;
	char *llm_anthropic_version;
	int llm_timeout_ms;
	int llm_max_tokens;
	int llm_retries;
	int llm_retry_deadline_ms;

	/* AI behaviour */
	char *ai_system_prompt;
	char *ai_system_prompt_file;
	int ai_history;
	char *ai_escalation_tag;
	char *ai_apology;
	int ai_worker_credit;
	int ai_max_parts;
	int ai_burst_ms;
	enum config_escalation_mode ai_escalation_mode;
	enum config_on_failure ai_on_failure;
	char *escalation_phrases;
	enum config_on_voice escalation_on_voice;

	/* media: what customers send beyond text (common/media.h) */
	char *media_allow_hosts;
	char *media_redirect_hosts;
	char *media_types;
	long media_max_bytes;
	int media_timeout_ms;
	bool ai_images;
	long ai_image_max_bytes;
	char *ai_image_fallback;
	char *transcribe_base_url;
	char *transcribe_model;
	char *transcribe_api_key;
	char *transcribe_api_key_file;
	int transcribe_timeout_ms;

	/* handoff and Flex */
	char *handoff_holding_message;
	char *handoff_failure_message;
	enum config_history handoff_history;
	enum config_inject handoff_inject;
	int handoff_max_attempts;
	int handoff_retry_base_ms;
	char *flex_workspace_sid;
	char *flex_workflow_sid;
	char *flex_task_channel;
	char *flex_bot_author;
	int handoff_accept_timeout_s;
	enum config_no_agent handoff_no_agent_policy;
	char *handoff_no_agent_message;
	char *handoff_no_agent_ai_message;
	int handoff_human_timeout_s;
	char *handoff_closed_message;
	char *business_hours;
	enum config_after_hours handoff_after_hours;
	char *ai_language;
	int business_utc_offset_min;
	int whatsapp_window_s;
	char *whatsapp_template_sid;
	char *whatsapp_template_vars;
	char *admin_token;
	char *admin_token_file;
	enum config_backend state_backend;
	char *postgres_dsn;
	char *postgres_password;
	char *postgres_password_file;
	int router_lease_ms;
	char *router_ingress_bind;
	char *router_cache_dir;
	char *router_work_bind;
	char *console_bind;
	int console_port;
	char *console_token;    /* operator console; empty = off */
	char *console_token_file;
	char *console_user;     /* console basic auth; empty = off */
	char *console_password;
	char *console_password_file;
	bool debug_reset_word;
	bool debug_core_dumps;
	int flex_credit;
	int flex_timeout_ms;
	int flex_retry_deadline_ms;

	/* egress */
	int egress_credit;
	int egress_timeout_ms;
	int egress_retry_deadline_ms;
	bool egress_reconcile;
	int egress_reconcile_settle_ms;

	/* router state */
	long lmdb_map_size_mb;
	long lmdb_max_map_size_mb;
	int lmdb_high_water_pct;
	int lmdb_min_free_mb;
	bool lmdb_sync;
	int router_batch;
	int dedupe_keep_s;
	char *capture_dir;
	int capture_max_mb;

	/* logging */
	enum log_level log_level;
	bool log_mask_phone;

	/* metrics */
	int metrics_interval_ms;
	char *metrics_token;
	char *metrics_token_file;

	/* Per business number overrides ([number ADDRESS] sections of the
	 * file): each is a whole config, the base with the section applied. */
	struct config_number *numbers;
	size_t nnumbers;
};

struct config_number {
	char *address; /* "whatsapp:+14155238886" */
	struct config cfg;
};

/** Load defaults, then file, then environment. argv may hold --config FILE. */
int config_load(struct config *cfg, const char *file, char *err, size_t errlen);
/** Basic-auth user and password of Twilio REST calls: the API key (SK...) and
 *  its secret when twilio.api_key_sid is set, else the account and its token. */
const char *config_rest_user(const struct config *cfg);
const char *config_rest_secret(const struct config *cfg);
/** Where the router keeps its LMDB (and router.health): router.cache_dir with
 *  state.backend = postgres when it is set, else state.dir. */
const char *config_router_store_dir(const struct config *cfg);
/** The sandbox's value of a setting (sandbox mode), or NULL. */
const char *config_sandbox_value(const char *key);
/** Wipe and empty every secret not named in keep (NULL-terminated; NULL = none):
 *  a process keeps only the secrets it uses. Secrets passed in the
 *  environment are wiped there too (the loaded copies stay in cfg). */
void config_drop_secrets(struct config *cfg, const char *const *keep);
/** Free every string; cfg is zeroed. */
void config_release(struct config *cfg);
/**
 * The settings for conversations with one business number: its [number]
 * section if the file has one, else cfg itself. business is the address
 * (convkey_business() of a conversation key), or NULL.
 */
const struct config *config_for(const struct config *cfg, const char *business);
/** Whether key may appear in a [number] section. */
bool config_per_number(const char *key);
/** Print the effective settings, secrets masked, one `key = value` a line. */
void config_dump(const struct config *cfg, FILE *out);
/** Which processes read key (enum conf_role bits, confcheck.h). */
unsigned config_readers_of(const char *key);
/** Print the settings the processes of roles read, with env var, default and meaning. */
void config_help(FILE *out, unsigned roles);
/** The same as one Markdown table (docs/CONFIG.md is generated from it). */
void config_reference(FILE *out);
/**
 * Common option handling for every process: --config FILE, --check-config,
 * --help (the settings of roles), --help-all. Loads the config or exits(2) with a clear message. Returns 0 to
 * continue, or 1 when an informational option was handled (caller exits 0).
 */
int config_from_args(struct config *cfg, int argc, char **argv, const char *proc,
		     unsigned roles, const char *usage);

#endif
