/*
 * config — the settings table and its loaders.
 *
 * The table below is the single source of truth: parsing, validation,
 * --help and the masked dump are all driven by it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confcheck.h"
#include "xalloc.h"

/* A config line longer than this is an error, not silently cut. */
#define CONFIG_LINE_MAX 8192
/* A system prompt file bigger than this is almost certainly a mistake. */
#define CONFIG_PROMPT_FILE_MAX (256 * 1024)

enum config_type { CT_STR, CT_INT, CT_LONG, CT_BOOL, CT_ENUM, CT_URL };

/* A word an enum setting takes, and the value its field gets for it. */
struct config_choice {
	const char *name;
	int value;
};

struct config_entry {
	const char *key;
	enum config_type type;
	const char *def;
	long min, max;                       /* CT_INT / CT_LONG bounds */
	const struct config_choice *choices; /* CT_ENUM: the words, NULL-terminated */
	size_t offset;
	bool secret;
	const char *help;
};

#define F(field) offsetof(struct config, field)

/* The words of every CT_ENUM setting, in the order docs and errors list them. */
static const struct config_choice choices_llm_provider[] = {
	{ "anthropic", CONFIG_LLM_ANTHROPIC }, { "openai", CONFIG_LLM_OPENAI }, { NULL, 0 } };
static const struct config_choice choices_escalation_mode[] = {
	{ "structured", CONFIG_ESCALATION_STRUCTURED }, { "tag", CONFIG_ESCALATION_TAG },
	{ NULL, 0 } };
static const struct config_choice choices_on_failure[] = {
	{ "escalate", CONFIG_ON_FAILURE_ESCALATE }, { "apologize", CONFIG_ON_FAILURE_APOLOGIZE },
	{ NULL, 0 } };
static const struct config_choice choices_history[] = {
	{ "10", CONFIG_HISTORY_10 }, { "15", CONFIG_HISTORY_15 }, { "20", CONFIG_HISTORY_20 },
	{ "all", CONFIG_HISTORY_ALL }, { NULL, 0 } };
static const struct config_choice choices_inject[] = {
	{ "messages", CONFIG_INJECT_MESSAGES }, { "transcript", CONFIG_INJECT_TRANSCRIPT },
	{ NULL, 0 } };
static const struct config_choice choices_no_agent[] = {
	{ "wait", CONFIG_NO_AGENT_WAIT }, { "ai", CONFIG_NO_AGENT_AI }, { NULL, 0 } };
static const struct config_choice choices_after_hours[] = {
	{ "create", CONFIG_AFTER_HOURS_CREATE }, { "queue", CONFIG_AFTER_HOURS_QUEUE },
	{ NULL, 0 } };
static const struct config_choice choices_backend[] = {
	{ "lmdb", CONFIG_BACKEND_LMDB }, { "postgres", CONFIG_BACKEND_POSTGRES }, { NULL, 0 } };
static const struct config_choice choices_on_voice[] = {
	{ "note", CONFIG_ON_VOICE_NOTE }, { "escalate", CONFIG_ON_VOICE_ESCALATE }, { NULL, 0 } };
static const struct config_choice choices_log_level[] = {
	{ "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "notice", LOG_NOTICE }, { "warn", LOG_WARN },
	{ "error", LOG_ERROR }, { NULL, 0 } };

/* config_set stores an enum setting through an int: each such field must be one. */
_Static_assert(sizeof(enum config_llm_provider) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_escalation_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_on_failure) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_history) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_inject) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_no_agent) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_after_hours) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_on_voice) == sizeof(int), "enum size");

/* What a business number may set for itself: what its customers read and
 * who answers them. Transport, limits and secrets stay process-wide. */
static const char *const config_number_keys[] = {
	"ai.system_prompt", "ai.system_prompt_file", "ai.apology", "ai.language",
	"handoff.holding_message", "handoff.failure_message", "handoff.closed_message",
	"handoff.no_agent_message", "handoff.no_agent_ai_message", "handoff.after_hours",
	"business.hours", "business.utc_offset_min", "flex.workflow_sid", "flex.task_channel",
	"whatsapp.template_sid", "whatsapp.template_vars", NULL,
};

/* The lines of the file's [number] sections, applied after the base. */
struct config_line {
	char *address, *key, *val, *origin;
};

struct config_lines {
	struct config_line *v;
	size_t n, cap;
};

static void config_lines_release(struct config_lines *ls)
{
	for (size_t i = 0; i < ls->n; i++) {
		free(ls->v[i].address);
		free(ls->v[i].key);
		free(ls->v[i].val);
		free(ls->v[i].origin);
	}
	free(ls->v);
	memset(ls, 0, sizeof(*ls));
}

/* The escalation instruction itself is added by the ai-worker, worded for
 * the configured ai.escalation_mode (tag or tool/JSON field). */
static const char DEFAULT_PROMPT[] =
	"You are the WhatsApp assistant of Clinica Sol, a medical clinic. "
	"Answer in the customer's language, briefly and kindly, only about the "
	"clinic: address, specialties, opening hours and appointments. "
	"Hand the conversation to a person when the customer asks for a human, "
	"complains, or asks something you cannot answer from these facts.";

static const struct config_entry config_table[] = {
	{ "sandbox", CT_BOOL, "false", 0, 0, NULL, F(sandbox), false,
	  "run against the sandbox (the fakes of make demo and the tests): settings left unset "
	  "take the sandbox's loopback URLs, SIDs and secrets, and placeholder values are "
	  "accepted; said loudly at start; never in production" },
	{ "state.dir", CT_STR, "var", 0, 0, NULL, F(state_dir), false,
	  "directory for the LMDB environment and ipc sockets (with state.backend = postgres: "
	  "each process's cache of the database)" },
	{ "state.backend", CT_ENUM, "lmdb", 0, 0, choices_backend, F(state_backend), false,
	  "where the state lives: lmdb (one host, one router) or postgres (the database is the "
	  "state, routers on several hosts take over from each other)" },
	{ "postgres.dsn", CT_STR, "", 0, 0, NULL, F(postgres_dsn), false,
	  "libpq connection string of the database (state.backend = postgres), e.g. \"host=db1,db2 "
	  "dbname=baton user=baton target_session_attrs=read-write\"; no password in it" },
	{ "postgres.password", CT_STR, "", 0, 0, NULL, F(postgres_password), true,
	  "the database user's password (empty: libpq's PGPASSFILE or ~/.pgpass)" },
	{ "postgres.password_file", CT_STR, "", 0, 0, NULL, F(postgres_password_file), false,
	  "read postgres.password from this file (mode 0600 or stricter)" },
	{ "router.lease_ms", CT_INT, "3000", 500, 600000, NULL, F(router_lease_ms), false,
	  "state.backend = postgres: how long the active router's lease lasts unrenewed; a standby "
	  "takes over this long after the active one stops answering" },
	{ "router.cache_dir", CT_STR, "", 0, 0, NULL, F(router_cache_dir), false,
	  "state.backend = postgres: where this router keeps its LMDB cache of the database and "
	  "its router.health file (empty = state.dir); routers of one host need one each" },
	{ "router.ingress_bind", CT_STR, "", 0, 0, NULL, F(router_ingress_bind), false,
	  "the endpoint this router binds for ingress when router.ingress_endpoint lists every "
	  "router of an active/standby set (empty = router.ingress_endpoint)" },
	{ "router.work_bind", CT_STR, "", 0, 0, NULL, F(router_work_bind), false,
	  "the endpoint this router binds for workers when router.work_endpoint lists every "
	  "router (empty = router.work_endpoint)" },
	{ "router.ingress_endpoint", CT_STR, "", 0, 0, NULL, F(router_ingress_endpoint), false,
	  "ZeroMQ endpoint where the router takes webhooks from ingress (default ipc://STATE_DIR/ingress.ipc)" },
	{ "router.work_endpoint", CT_STR, "", 0, 0, NULL, F(router_work_endpoint), false,
	  "ZeroMQ endpoint where workers (ai, egress, flex) connect (default ipc://STATE_DIR/work.ipc)" },
	{ "zmq.server_public_key", CT_STR, "", 0, 0, NULL, F(zmq_server_public_key), false,
	  "the router's CURVE public key (Z85, 40 characters, from batonctl keygen): every process "
	  "needs it when an endpoint is tcp://" },
	{ "zmq.server_secret_key", CT_STR, "", 0, 0, NULL, F(zmq_server_secret_key), true,
	  "the router's CURVE secret key (router only)" },
	{ "zmq.server_secret_key_file", CT_STR, "", 0, 0, NULL, F(zmq_server_secret_key_file), false,
	  "read zmq.server_secret_key from this file (mode 0600 or stricter)" },
	{ "zmq.public_key", CT_STR, "", 0, 0, NULL, F(zmq_public_key), false,
	  "this process's CURVE public key (ingress and workers over tcp://)" },
	{ "zmq.secret_key", CT_STR, "", 0, 0, NULL, F(zmq_secret_key), true,
	  "this process's CURVE secret key (ingress and workers over tcp://)" },
	{ "zmq.secret_key_file", CT_STR, "", 0, 0, NULL, F(zmq_secret_key_file), false,
	  "read zmq.secret_key from this file (mode 0600 or stricter)" },
	{ "zmq.allowed_keys", CT_STR, "", 0, 0, NULL, F(zmq_allowed_keys), false,
	  "router: the CURVE public keys allowed to connect over tcp://, comma-separated; any "
	  "other is refused and logged" },
	{ "zmq.insecure_tcp", CT_BOOL, "false", 0, 0, NULL, F(zmq_insecure_tcp), false,
	  "plain tcp:// without CURVE, allowed only for loopback endpoints (tests, one host)" },
	{ "worker.heartbeat_ms", CT_INT, "1000", 50, 60000, NULL, F(worker_heartbeat_ms), false,
	  "how often a worker tells the router it is alive and how many jobs it can hold" },
	{ "worker.timeout_ms", CT_INT, "3000", 100, 600000, NULL, F(worker_timeout_ms), false,
	  "a worker silent this long is presumed dead and its jobs are re-dispatched" },

	{ "http.bind", CT_STR, "127.0.0.1", 0, 0, NULL, F(http_bind), false,
	  "address ingress listens on" },
	{ "http.port", CT_INT, "18080", 0, 65535, NULL, F(http_port), false,
	  "port ingress listens on (0 = any free port, logged when ready)" },
	{ "http.share_port", CT_BOOL, "false", 0, 0, NULL, F(http_share_port), false,
	  "several baton-ingress processes listen on http.port together (SO_REUSEPORT; scripts/baton "
	  "and baton-ingress@ set it). Off, a second process on the port fails to start instead of "
	  "silently taking part of the webhooks" },
	{ "http.public_url", CT_URL, "http://127.0.0.1:18080", 0, 0, NULL, F(public_url), false,
	  "base URL Twilio is configured to call (scheme://host[:port]); signatures are checked against it" },
	{ "http.max_body", CT_LONG, "65536", 1024, 16 * 1024 * 1024, NULL, F(http_max_body), false,
	  "largest webhook body accepted, bytes (larger: 413)" },
	{ "http.ack_timeout_ms", CT_INT, "5000", 100, 14000, NULL, F(http_ack_timeout_ms), false,
	  "how long ingress waits for the router to make a message durable before answering 503" },
	{ "http.conn_timeout_s", CT_INT, "10", 1, 300, NULL, F(http_conn_timeout_s), false,
	  "idle connection timeout, seconds (slow clients are cut off)" },
	{ "http.head_timeout_s", CT_INT, "5", 1, 300, NULL, F(http_head_timeout_s), false,
	  "time a connection has to send a complete request head, from its opening or its "
	  "previous request, seconds (slowloris clients are cut off)" },
	{ "http.per_ip_limit", CT_INT, "256", 0, 100000, NULL, F(http_per_ip_limit), false,
	  "most connections one address may hold (0 = no limit; behind a proxy every request "
	  "comes from the proxy: raise it or leave the limit to the proxy)" },
	{ "http.max_params", CT_INT, "256", 16, 10000, NULL, F(http_max_params), false,
	  "most form parameters accepted in one webhook (more: 400)" },

	{ "twilio.account_sid", CT_STR, "", 0, 0, NULL, F(twilio_account_sid), false,
	  "Twilio Account SID (AC + 32 hex digits)" },
	{ "twilio.auth_token", CT_STR, "", 0, 0, NULL, F(twilio_auth_token), true,
	  "Twilio auth token: signs webhooks (ingress) and, without an API key, authenticates REST "
	  "calls (egress, flex-worker)" },
	{ "twilio.auth_token_file", CT_STR, "", 0, 0, NULL, F(twilio_auth_token_file), false,
	  "read twilio.auth_token from this file (mode 0600 or stricter)" },
	{ "twilio.api_key_sid", CT_STR, "", 0, 0, NULL, F(twilio_api_key_sid), false,
	  "Twilio API key (SK + 32 hex digits) for REST calls instead of the auth token, as Twilio "
	  "recommends in production; webhooks are still signed with the auth token" },
	{ "twilio.api_key_secret", CT_STR, "", 0, 0, NULL, F(twilio_api_key_secret), true,
	  "secret of twilio.api_key_sid" },
	{ "twilio.api_key_secret_file", CT_STR, "", 0, 0, NULL, F(twilio_api_key_secret_file), false,
	  "read twilio.api_key_secret from this file (mode 0600 or stricter)" },
	{ "twilio.api_base", CT_URL, "https://api.twilio.com", 0, 0, NULL, F(twilio_api_base), false,
	  "Twilio REST API base" },
	{ "twilio.conversations_base", CT_URL, "https://conversations.twilio.com", 0, 0, NULL,
	  F(twilio_conversations_base), false, "Twilio Conversations API base" },
	{ "twilio.flex_base", CT_URL, "https://flex-api.twilio.com", 0, 0, NULL, F(twilio_flex_base),
	  false, "Twilio Flex API base" },
	{ "twilio.taskrouter_base", CT_URL, "https://taskrouter.twilio.com", 0, 0, NULL,
	  F(twilio_taskrouter_base), false, "Twilio TaskRouter API base" },
	{ "twilio.mcs_base", CT_URL, "https://mcs.us1.twilio.com", 0, 0, NULL, F(twilio_mcs_base),
	  false, "Twilio Media Content Service base: media attached to the agent's Flex conversation "
	  "is uploaded there" },
	{ "twilio.whatsapp_from", CT_STR, "", 0, 0, NULL, F(twilio_whatsapp_from), false,
	  "our WhatsApp sender (whatsapp:+E164); empty = the number the customer wrote to" },
	{ "twilio.validate_signature", CT_BOOL, "true", 0, 0, NULL, F(twilio_validate_signature), false,
	  "check X-Twilio-Signature on every webhook (never turn off in production)" },

	{ "llm.provider", CT_ENUM, "anthropic", 0, 0, choices_llm_provider, F(llm_provider), false,
	  "LLM API flavour: anthropic (Messages API) or openai (chat completions, also Ollama/vLLM/llama.cpp)" },
	{ "llm.base_url", CT_URL, "https://api.anthropic.com", 0, 0, NULL, F(llm_base_url), false,
	  "LLM API base (https://api.openai.com for OpenAI; http://localhost:11434 for Ollama)" },
	{ "llm.model", CT_STR, "claude-sonnet-4-5", 0, 0, NULL, F(llm_model), false, "model name" },
	{ "llm.api_key", CT_STR, "", 0, 0, NULL, F(llm_api_key), true,
	  "LLM API key (required for an https:// llm.base_url; a local http:// server may need none)" },
	{ "llm.api_key_file", CT_STR, "", 0, 0, NULL, F(llm_api_key_file), false,
	  "read llm.api_key from this file (mode 0600 or stricter)" },
	{ "llm.anthropic_version", CT_STR, "2023-06-01", 0, 0, NULL, F(llm_anthropic_version), false,
	  "anthropic-version header" },
	{ "llm.timeout_ms", CT_INT, "30000", 100, 600000, NULL, F(llm_timeout_ms), false,
	  "timeout of one LLM call" },
	{ "llm.max_tokens", CT_INT, "512", 1, 64000, NULL, F(llm_max_tokens), false,
	  "max_tokens of each reply" },
	{ "llm.retries", CT_INT, "2", 0, 10, NULL, F(llm_retries), false,
	  "retries of a failed LLM call (429, 5xx, 529, timeouts) with backoff" },

	{ "llm.retry_deadline_ms", CT_INT, "60000", 0, 600000, NULL, F(llm_retry_deadline_ms), false,
	  "total time one AI job may spend retrying before the give-up policy (ai.on_failure)" },
	{ "ai.system_prompt", CT_STR, DEFAULT_PROMPT, 0, 0, NULL, F(ai_system_prompt), false,
	  "system prompt of the assistant" },
	{ "ai.system_prompt_file", CT_STR, "", 0, 0, NULL, F(ai_system_prompt_file), false,
	  "file holding the system prompt (overrides ai.system_prompt)" },
	{ "ai.history", CT_INT, "20", 1, 1000, NULL, F(ai_history), false,
	  "how many history turns each AI job carries" },
	{ "ai.escalation_tag", CT_STR, "[ESCALAR]", 0, 0, NULL, F(ai_escalation_tag), false,
	  "tag the model appends to ask for a human; always stripped before the customer sees the text" },
	{ "ai.apology", CT_STR,
	  "Sorry, I could not process your message right now. Please try again in a moment.", 0, 0,
	  NULL, F(ai_apology), false, "sent when the AI gives a malformed answer or fails for good" },
	{ "ai.worker_credit", CT_INT, "256", 1, 100000, NULL, F(ai_worker_credit), false,
	  "LLM calls one ai-worker keeps in flight" },
	{ "ai.language", CT_STR, "", 0, 0, NULL, F(ai_language), false,
	  "language of this number's customers (e.g. es, pt-BR): set as the Flex task's language "
	  "attribute so agents who speak it get the task; empty = not set" },
	{ "ai.max_parts", CT_INT, "5", 1, 100, NULL, F(ai_max_parts), false,
	  "most WhatsApp messages one answer becomes (1600 characters each); a longer answer is "
	  "cut at a sentence or word with an ellipsis" },
	{ "ai.burst_ms", CT_INT, "0", 0, 60000, NULL, F(ai_burst_ms), false,
	  "wait this long after a customer message before the AI answers, so a burst of messages "
	  "gets one reply that sees them all (0 = answer each message in turn)" },

	{ "ai.escalation_mode", CT_ENUM, "structured", 0, 0, choices_escalation_mode,
	  F(ai_escalation_mode), false, "how the model asks for a human: structured (Anthropic tool escalate_to_human / "
		 "OpenAI JSON schema {reply, escalate, reason}) or tag (ai.escalation_tag in the text)" },
	{ "ai.on_failure", CT_ENUM, "escalate", 0, 0, choices_on_failure, F(ai_on_failure), false,
	  "when the LLM fails for good (timeouts, 5xx after retries, refused): escalate with reason "
	  "ai_unavailable, or send ai.apology" },
	{ "escalation.phrases", CT_STR,
	  "human,humano,humana,agent,agente,atendente,persona,pessoa,operator,operador,representative",
	  0, 0, NULL, F(escalation_phrases), false,
	  "comma-separated words or phrases that escalate at once, before the AI (whole words, case "
	  "and accents ignored); empty = none" },
	{ "escalation.on_voice", CT_ENUM, "note", 0, 0, choices_on_voice, F(escalation_on_voice),
	  false, "a voice note that cannot be transcribed (no transcribe.base_url, or it failed): the "
	  "AI answers from a note saying so (note), or the conversation goes to a person (escalate)" },

	{ "media.allow_hosts", CT_STR, "api.twilio.com,*.twilio.com,*.twiliocdn.com", 0, 0, NULL,
	  F(media_allow_hosts), false,
	  "hosts baton fetches customer media from, with the Twilio credentials (comma-separated; "
	  "*.example.com matches its subdomains); a media URL elsewhere is not fetched and the "
	  "turn goes on as text" },
	{ "media.redirect_hosts", CT_STR, "*.twiliocdn.com,s3-external-1.amazonaws.com", 0, 0, NULL,
	  F(media_redirect_hosts), false,
	  "hosts a media download may also be redirected to, never sent credentials, never a "
	  "first URL (Twilio redirects to mms.twiliocdn.com, media stored before HTTP auth to "
	  "s3-external-1.amazonaws.com, a host every S3 bucket shares)" },
	{ "media.types", CT_STR,
	  "image/jpeg,image/png,image/webp,image/gif,audio/ogg,audio/mpeg,audio/mp4,audio/amr,"
	  "application/pdf", 0, 0, NULL, F(media_types), false,
	  "content types baton fetches (comma-separated); others are described to the AI and the "
	  "agent as text" },
	{ "media.max_bytes", CT_LONG, "5242880", 1024, 104857600, NULL, F(media_max_bytes), false,
	  "largest media item fetched (Twilio's limit is 5 MB per message); larger: not fetched" },
	{ "media.timeout_ms", CT_INT, "10000", 100, 600000, NULL, F(media_timeout_ms), false,
	  "timeout of one media download or upload" },
	{ "ai.images", CT_BOOL, "true", 0, 0, NULL, F(ai_images), false,
	  "send customers' photos to the model as image content (off: ai.image_fallback instead, "
	  "for models without vision)" },
	{ "ai.image_max_bytes", CT_LONG, "5242880", 1024, 104857600, NULL, F(ai_image_max_bytes),
	  false, "largest image given to the model; larger ones become ai.image_fallback" },
	{ "ai.image_fallback", CT_STR, "(the customer sent a photo)", 0, 0, NULL,
	  F(ai_image_fallback), false, "what the model reads instead of a photo it cannot see" },
	{ "transcribe.base_url", CT_STR, "", 0, 0, NULL, F(transcribe_base_url), false,
	  "OpenAI-compatible transcription API base (POST {base}/v1/audio/transcriptions: OpenAI, "
	  "whisper.cpp's server...); empty = voice notes are not transcribed" },
	{ "transcribe.model", CT_STR, "whisper-1", 0, 0, NULL, F(transcribe_model), false,
	  "transcription model name" },
	{ "transcribe.api_key", CT_STR, "", 0, 0, NULL, F(transcribe_api_key), true,
	  "transcription API key (Bearer); a local server may need none" },
	{ "transcribe.api_key_file", CT_STR, "", 0, 0, NULL, F(transcribe_api_key_file), false,
	  "read transcribe.api_key from this file (mode 0600 or stricter)" },
	{ "transcribe.timeout_ms", CT_INT, "30000", 100, 600000, NULL, F(transcribe_timeout_ms),
	  false, "timeout of one transcription call" },

	{ "handoff.holding_message", CT_STR, "Your conversation is being transferred to our team.", 0,
	  0, NULL, F(handoff_holding_message), false, "sent to the customer when the handoff starts" },
	{ "handoff.failure_message", CT_STR,
	  "Sorry, we could not reach our team right now. I am still here to help.", 0, 0, NULL,
	  F(handoff_failure_message), false,
	  "sent when the Flex handoff fails for good and the conversation returns to the AI" },
	{ "handoff.history", CT_ENUM, "10", 0, 0, choices_history, F(handoff_history), false,
	  "how many history messages the agent sees in Flex" },
	{ "handoff.inject", CT_ENUM, "messages", 0, 0, choices_inject, F(handoff_inject), false,
	  "history into Flex as one message per turn with its author, or one transcript message" },
	{ "handoff.max_attempts", CT_INT, "3", 1, 100, NULL, F(handoff_max_attempts), false,
	  "Flex pipeline attempts before giving up (customer told, conversation back to ai)" },
	{ "handoff.retry_base_ms", CT_INT, "1000", 10, 600000, NULL, F(handoff_retry_base_ms), false,
	  "first delay between Flex pipeline attempts; doubles per attempt up to 30 s" },
	{ "handoff.accept_timeout_s", CT_INT, "300", 0, 86400, NULL, F(handoff_accept_timeout_s), false,
	  "a handoff no agent has accepted after this long follows handoff.no_agent_policy (0 = never)" },
	{ "handoff.no_agent_policy", CT_ENUM, "wait", 0, 0, choices_no_agent,
	  F(handoff_no_agent_policy), false,
	  "no agent accepted in time, or the task was canceled: wait (tell the customer, keep "
	  "waiting) or ai (back to the assistant with a message)" },
	{ "handoff.no_agent_message", CT_STR,
	  "All our agents are busy right now. A person will answer you as soon as possible.", 0, 0,
	  NULL, F(handoff_no_agent_message), false, "sent under the wait policy" },
	{ "handoff.no_agent_ai_message", CT_STR,
	  "Our team is not available right now, so I will keep helping you here.", 0, 0, NULL,
	  F(handoff_no_agent_ai_message), false, "sent under the ai policy" },
	{ "handoff.human_timeout_s", CT_INT, "0", 0, 30 * 86400, NULL, F(handoff_human_timeout_s),
	  false, "hand back to the AI after this long without a message in human mode (0 = never)" },
	{ "handoff.closed_message", CT_STR,
	  "Our team is available %h. A person will answer you as soon as we open.", 0, 0, NULL,
	  F(handoff_closed_message), false,
	  "holding message outside business.hours (%h is replaced by the hours, %n by the next "
	  "opening, e.g. mon 08:00)" },
	{ "handoff.after_hours", CT_ENUM, "create", 0, 0, choices_after_hours, F(handoff_after_hours),
	  false, "an escalation outside business.hours: create the Flex task at once, or queue the "
		 "handoff until the next opening (the customer is told when a person will answer)" },
	{ "business.hours", CT_STR, "", 0, 0, NULL, F(business_hours), false,
	  "when agents work, e.g. \"mon-fri 08:00-19:00; sat 08:00-13:00\" (empty = always)" },
	{ "business.utc_offset_min", CT_INT, "0", -720, 840, NULL, F(business_utc_offset_min), false,
	  "the business hours' time zone as minutes from UTC (e.g. -180 for Sao Paulo)" },
	{ "whatsapp.window_s", CT_INT, "86400", 1, 7 * 86400, NULL, F(whatsapp_window_s), false,
	  "WhatsApp customer-service window: free-form messages only this long after the "
	  "customer's last message" },
	{ "whatsapp.template_sid", CT_STR, "", 0, 0, NULL, F(whatsapp_template_sid), false,
	  "approved template (ContentSid HX...) sent outside the window; empty = do not send, "
	  "mark the conversation window_closed" },
	{ "whatsapp.template_vars", CT_STR, "{\"1\":\"%t\"}", 0, 0, NULL, F(whatsapp_template_vars),
	  false, "ContentVariables JSON of the template; %t is replaced by the message text" },
	{ "admin.token", CT_STR, "", 0, 0, NULL, F(admin_token), true,
	  "bearer token of the /admin endpoints (empty = admin endpoints off)" },
	{ "admin.token_file", CT_STR, "", 0, 0, NULL, F(admin_token_file), false,
	  "read admin.token from this file (mode 0600 or stricter)" },
	{ "console.bind", CT_STR, "127.0.0.1", 0, 0, NULL, F(console_bind), false,
	  "address baton-console listens on (the operator console; put a TLS proxy in front "
	  "before opening it beyond loopback)" },
	{ "console.port", CT_INT, "18081", 0, 65535, NULL, F(console_port), false,
	  "port of baton-console (0 = any free port, logged when ready)" },
	{ "console.token", CT_STR, "", 0, 0, NULL, F(console_token), true,
	  "operator console (baton-console, under /console): the token operators log in with "
	  "(sent as a bearer token; empty = no console, baton-console refuses to start)" },
	{ "console.token_file", CT_STR, "", 0, 0, NULL, F(console_token_file), false,
	  "read console.token from this file (mode 0600 or stricter)" },
	{ "console.user", CT_STR, "", 0, 0, NULL, F(console_user), false,
	  "console: user name for HTTP basic auth, with console.password (both empty = basic "
	  "auth off)" },
	{ "console.password", CT_STR, "", 0, 0, NULL, F(console_password), true,
	  "console: password for HTTP basic auth, with console.user" },
	{ "console.password_file", CT_STR, "", 0, 0, NULL, F(console_password_file), false,
	  "read console.password from this file (mode 0600 or stricter)" },
	{ "debug.reset_word", CT_BOOL, "false", 0, 0, NULL, F(debug_reset_word), false,
	  "a customer typing 'reset' hands the conversation back (debugging only)" },
	{ "debug.core_dumps", CT_BOOL, "false", 0, 0, NULL, F(debug_core_dumps), false,
	  "allow core dumps (off: a dump would hold the secrets in memory)" },
	{ "flex.workspace_sid", CT_STR, "", 0, 0, NULL, F(flex_workspace_sid), false,
	  "TaskRouter workspace of Flex (WS + 32 hex digits)" },
	{ "flex.workflow_sid", CT_STR, "", 0, 0, NULL, F(flex_workflow_sid), false,
	  "TaskRouter workflow that routes handoff tasks (WW + 32 hex digits)" },
	{ "flex.task_channel", CT_STR, "chat", 0, 0, NULL, F(flex_task_channel), false,
	  "task channel unique name of handoff tasks" },
	{ "flex.bot_author", CT_STR, "baton", 0, 0, NULL, F(flex_bot_author), false,
	  "author of the AI's messages injected into Flex (agents see it)" },
	{ "flex.credit", CT_INT, "32", 1, 100000, NULL, F(flex_credit), false,
	  "Flex jobs one flex-worker keeps in flight" },
	{ "flex.timeout_ms", CT_INT, "15000", 100, 120000, NULL, F(flex_timeout_ms), false,
	  "timeout of one Conversations/Flex call" },
	{ "flex.retry_deadline_ms", CT_INT, "30000", 0, 3600000, NULL, F(flex_retry_deadline_ms),
	  false, "how long one pipeline attempt retries 429/5xx before reporting failure" },

	{ "egress.credit", CT_INT, "64", 1, 100000, NULL, F(egress_credit), false,
	  "Twilio sends one egress process keeps in flight" },
	{ "egress.timeout_ms", CT_INT, "15000", 100, 120000, NULL, F(egress_timeout_ms), false,
	  "timeout of one Twilio Messages call" },
	{ "egress.retry_deadline_ms", CT_INT, "60000", 0, 3600000, NULL, F(egress_retry_deadline_ms),
	  false, "how long egress retries 429/5xx before handing the job back to the router; "
		 "a reconciliation reads an unreadable list again this long from its first look, "
		 "then sends" },
	{ "egress.reconcile", CT_BOOL, "true", 0, 0, NULL, F(egress_reconcile), false,
	  "before sending again a message whose earlier attempt may have reached Twilio (a worker "
	  "died, a timeout), list what Twilio already sent and record that instead of sending twice" },
	{ "egress.reconcile_settle_ms", CT_INT, "2000", 0, 600000, NULL,
	  F(egress_reconcile_settle_ms), false,
	  "how long after the doubtful attempt the list is read: Twilio lists a new message a "
	  "little after accepting it" },

	{ "lmdb.map_size_mb", CT_LONG, "1024", 1, 1024L * 1024, NULL, F(lmdb_map_size_mb), false,
	  "LMDB map size (the most state the router can hold), MiB" },
	{ "lmdb.max_map_size_mb", CT_LONG, "16384", 1, 1024L * 1024, NULL, F(lmdb_max_map_size_mb),
	  false, "the LMDB map grows at run time, doubling, up to this size, MiB (at or below "
	  "lmdb.map_size_mb: no growth)" },
	{ "lmdb.high_water_pct", CT_INT, "90", 10, 99, NULL, F(lmdb_high_water_pct), false,
	  "new customer messages get 503 once the store holds this share of its largest map, so "
	  "the rest stays for results, hand-backs and purges, %" },
	{ "lmdb.min_free_mb", CT_INT, "64", 0, 1024 * 1024, NULL, F(lmdb_min_free_mb), false,
	  "new customer messages get 503 when less than this much room is left on the state "
	  "directory's disk (free space plus LMDB's free pages), MiB" },
	{ "lmdb.sync", CT_BOOL, "true", 0, 0, NULL, F(lmdb_sync), false,
	  "fsync every commit (true) or leave flushing to the OS (false: a host crash can lose the last commits)" },
	{ "dedupe.keep_s", CT_INT, "604800", 0, 365 * 86400, NULL, F(dedupe_keep_s), false,
	  "how long the router remembers a MessageSid to drop Twilio's retries of it (0 = for "
	  "ever); older entries are pruned a few thousand a second" },
	{ "router.batch", CT_INT, "256", 1, 100000, NULL, F(router_batch), false,
	  "most messages the router applies in one LMDB transaction (group commit)" },

	{ "capture.dir", CT_STR, "", 0, 0, NULL, F(capture_dir), false,
	  "directory where ingress appends every accepted webhook to capture files for replay "
	  "(empty = capture off)" },
	{ "capture.max_mb", CT_INT, "64", 1, 65536, NULL, F(capture_max_mb), false,
	  "size at which a capture file is closed and the next one started, MiB" },

	{ "log.level", CT_ENUM, "info", 0, 0, choices_log_level, F(log_level), false,
	  "lowest level logged (notice: only start/stop lines, warnings and errors)" },
	{ "log.mask_phone", CT_BOOL, "true", 0, 0, NULL, F(log_mask_phone), false,
	  "mask customer phone numbers in logs" },
	{ "metrics.interval_ms", CT_INT, "2000", 0, 3600000, NULL, F(metrics_interval_ms), false,
	  "how often every process writes its Prometheus metrics to STATE_DIR/metrics for ingress's "
	  "GET /metrics (0 = off: /metrics shows ingress's own only)" },
	{ "metrics.token", CT_STR, "", 0, 0, NULL, F(metrics_token), true,
	  "bearer token GET /metrics requires (empty = no authentication)" },
	{ "metrics.token_file", CT_STR, "", 0, 0, NULL, F(metrics_token_file), false,
	  "read metrics.token from this file (mode 0600 or stricter)" },
};

#define CONFIG_N (sizeof(config_table) / sizeof(config_table[0]))

static void *config_field(struct config *cfg, const struct config_entry *e)
{
	return (char *)cfg + e->offset;
}

static const void *config_cfield(const struct config *cfg, const struct config_entry *e)
{
	return (const char *)cfg + e->offset;
}

static void config_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void config_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void config_env_name(const char *key, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "BATON_");
	for (const char *p = key; *p && o + 1 < len; p++)
		buf[o++] = (*p == '.') ? '_' : (char)toupper((unsigned char)*p);
	buf[o] = '\0';
}

static int config_parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	return -1;
}

/* Strings the config owns: freed, copied and wiped as such. */
static bool config_is_string(const struct config_entry *e)
{
	return e->type == CT_STR || e->type == CT_URL;
}

static const struct config_choice *config_choice_find(const struct config_choice *c,
							const char *v)
{
	for (; c->name; c++)
		if (!strcmp(c->name, v))
			return c;
	return NULL;
}

/* The word of an enum setting's value ("?" cannot happen: config_set stored it). */
static const char *config_choice_name(const struct config_choice *c, int value)
{
	for (; c->name; c++)
		if (c->value == value)
			return c->name;
	return "?";
}

/* The words joined by sep into out: "anthropic, openai". */
static void config_choice_list(const struct config_choice *c, const char *sep, char *out,
			       size_t len)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; c[i].name && o < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%s", i ? sep : "", c[i].name);
}

static void config_choice_hint(const struct config_choice *c, const char *v, char *out,
			       size_t len);

/* Sets one setting from its text; `origin` says where it came from for the message. */
static int config_set(struct config *cfg, const struct config_entry *e, const char *v,
		      const char *origin, char *err, size_t errlen)
{
	void *f = config_field(cfg, e);
	char *end = NULL;
	long n;

	switch (e->type) {
	case CT_INT:
	case CT_LONG:
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno || end == v || *end != '\0') {
			config_errf(err, errlen, "%s: '%s' is not a number (from %s)", e->key, v, origin);
			return -1;
		}
		if (n < e->min || n > e->max) {
			config_errf(err, errlen, "%s: %ld is out of range %ld..%ld (from %s)", e->key,
				    n, e->min, e->max, origin);
			return -1;
		}
		if (e->type == CT_INT)
			*(int *)f = (int)n;
		else
			*(long *)f = n;
		return 0;
	case CT_BOOL:
		if (config_parse_bool(v, (bool *)f) < 0) {
			config_errf(err, errlen, "%s: '%s' is not a boolean (true/false) (from %s)",
				    e->key, v, origin);
			return -1;
		}
		return 0;
	case CT_ENUM: {
		const struct config_choice *c = config_choice_find(e->choices, v);
		if (!c) {
			char words[256], hint[160];
			config_choice_list(e->choices, ", ", words, sizeof(words));
			config_choice_hint(e->choices, v, hint, sizeof(hint));
			config_errf(err, errlen, "%s: '%s' is not one of %s (from %s)%s", e->key, v,
				    words, origin, hint);
			return -1;
		}
		*(int *)f = c->value;
		return 0;
	}
	case CT_URL:
		if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8)) {
			config_errf(err, errlen, "%s: '%s' is not an http(s) URL (from %s)", e->key, v,
				    origin);
			return -1;
		}
		break;
	case CT_STR:
		break;
	}
	char **s = f;
	free(*s);
	*s = xstrdup(v);
	if (e->type == CT_URL) {
		/* Bases are joined with paths that start with '/'. */
		size_t l = strlen(*s);
		while (l > 0 && (*s)[l - 1] == '/')
			(*s)[--l] = '\0';
	}
	return 0;
}

static const struct config_entry *config_find(const char *key)
{
	for (size_t i = 0; i < CONFIG_N; i++)
		if (strcmp(config_table[i].key, key) == 0)
			return &config_table[i];
	return NULL;
}

/* Edit distance of a and b (bounded inputs: setting names). */
static size_t config_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	size_t d[65], prev;
	for (size_t j = 0; j <= lb; j++)
		d[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = d[0];
		d[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = d[j];
			size_t best = prev + (tolower((unsigned char)a[i - 1]) !=
					      tolower((unsigned char)b[j - 1]));
			if (d[j] + 1 < best)
				best = d[j] + 1;
			if (d[j - 1] + 1 < best)
				best = d[j - 1] + 1;
			d[j] = best;
			prev = cur;
		}
	}
	return d[lb];
}

/* " (did you mean best?)" when best, d edits from what was written, is
 * near enough to be what was meant; else "". */
static void config_hint(const char *written, const char *best, size_t d, char *out, size_t len)
{
	out[0] = '\0';
	if (best && d <= 3 && d * 3 <= strlen(written))
		snprintf(out, len, " (did you mean %s?)", best);
}

/* The hint for an unknown key or variable: the nearest known one. */
static void config_suggest(const char *name, bool env, char *out, size_t len)
{
	char cand[128], best[128] = "";
	size_t bestd = 99;
	for (size_t i = 0; i < CONFIG_N; i++) {
		if (env)
			config_env_name(config_table[i].key, cand, sizeof(cand));
		else
			snprintf(cand, sizeof(cand), "%s", config_table[i].key);
		size_t d = config_distance(name, cand);
		if (d < bestd) {
			bestd = d;
			snprintf(best, sizeof(best), "%s", cand);
		}
	}
	config_hint(name, best, bestd, out, len);
}

/* The hint for a word an enum setting does not take: the nearest it does.
 * Case is ignored ("OpenAI" gets "openai"), and a word that starts the
 * other, three letters at least, is as near as one typo ("warning" gets
 * "warn", "open" gets "openai"). */
static void config_choice_hint(const struct config_choice *c, const char *v, char *out,
			       size_t len)
{
	const char *best = NULL;
	size_t bestd = 99, vl = strlen(v);
	for (; c->name; c++) {
		size_t cl = strlen(c->name), shorter = vl < cl ? vl : cl;
		size_t d = config_distance(v, c->name);
		if (shorter >= 3 && d > 1 && !strncasecmp(v, c->name, shorter))
			d = 1;
		if (d < bestd) {
			bestd = d;
			best = c->name;
		}
	}
	config_hint(v, best, bestd, out, len);
}

static char *config_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Unquotes "..." in place with \n, \" and \\ escapes; the closing quote
 * must be the last character and not escaped. */
static int config_unquote(char *v)
{
	size_t o = 0, i = 1;
	for (; v[i] && v[i] != '"'; i++) {
		if (v[i] == '\\' && v[i + 1]) {
			i++;
			v[o++] = v[i] == 'n' ? '\n' : v[i];
		} else {
			v[o++] = v[i];
		}
	}
	if (v[i] != '"' || v[i + 1] != '\0')
		return -1;
	v[o] = '\0';
	return 0;
}

bool config_per_number(const char *key)
{
	for (size_t i = 0; config_number_keys[i]; i++)
		if (!strcmp(config_number_keys[i], key))
			return true;
	return false;
}

/* "[number ADDRESS]": 1 with *address set (malloc'd), 0 if not a section
 * line, -1 if malformed. */
static int config_section(const char *s, char **address)
{
	size_t n = strlen(s);
	if (s[0] != '[')
		return 0;
	if (n < 3 || s[n - 1] != ']' || strncmp(s, "[number ", 8) != 0)
		return -1;
	const char *a = s + 8;
	while (*a == ' ')
		a++;
	size_t l = (size_t)(s + n - 1 - a);
	while (l > 0 && a[l - 1] == ' ')
		l--;
	if (l == 0 || l > 200 || memchr(a, '|', l) || memchr(a, ' ', l))
		return -1;
	*address = xstrndup(a, l);
	return 1;
}

static int config_load_file(struct config *cfg, const char *path, struct config_lines *sections,
			    bool *explicit, char *err, size_t errlen)
{
	char line[CONFIG_LINE_MAX], origin[512];
	int lineno = 0, rc = -1;
	char *address = NULL; /* the [number] section we are in, if any */
	FILE *f = fopen(path, "r");

	if (!f) {
		config_errf(err, errlen, "config file '%s': %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			config_errf(err, errlen, "%s:%d: line longer than %d bytes", path, lineno,
				    CONFIG_LINE_MAX);
			goto fail;
		}
		char *s = config_trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *sec = NULL;
		int is_sec = config_section(s, &sec);
		if (is_sec < 0) {
			config_errf(err, errlen, "%s:%d: expected '[number whatsapp:+E164]'", path,
				    lineno);
			goto fail;
		}
		if (is_sec) {
			free(address);
			address = sec;
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			config_errf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
			goto fail;
		}
		*eq = '\0';
		char *key = config_trim(s), *val = config_trim(eq + 1);
		const struct config_entry *e = config_find(key);
		if (!e) {
			char hint[160];
			config_suggest(key, false, hint, sizeof(hint));
			config_errf(err, errlen, "%s:%d: unknown setting '%s'%s", path, lineno, key, hint);
			goto fail;
		}
		if (*val == '"' && config_unquote(val) < 0) {
			config_errf(err, errlen, "%s:%d: %s: unterminated quoted value", path, lineno, key);
			goto fail;
		}
		snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
		if (address) {
			if (!config_per_number(key)) {
				config_errf(err, errlen, "%s:%d: %s cannot be set per number (only in the "
					    "base settings, before the first [number] section)",
					    path, lineno, key);
				goto fail;
			}
			if (sections->n == sections->cap) {
				sections->cap = sections->cap ? 2 * sections->cap : 16;
				sections->v = xrealloc(sections->v, sections->cap * sizeof(*sections->v));
			}
			sections->v[sections->n++] = (struct config_line){
				.address = xstrdup(address), .key = xstrdup(key), .val = xstrdup(val),
				.origin = xstrdup(origin) };
			continue;
		}
		if (config_set(cfg, e, val, origin, err, errlen) < 0)
			goto fail;
		explicit[e - config_table] = true;
	}
	rc = 0;
fail:
	free(address);
	fclose(f);
	return rc;
}

static int config_read_prompt(struct config *cfg, char *err, size_t errlen)
{
	FILE *f = fopen(cfg->ai_system_prompt_file, "r");
	if (!f) {
		config_errf(err, errlen, "ai.system_prompt_file: cannot open '%s': %s",
			    cfg->ai_system_prompt_file, strerror(errno));
		return -1;
	}
	char *buf = xmalloc(CONFIG_PROMPT_FILE_MAX + 1);
	size_t n = fread(buf, 1, CONFIG_PROMPT_FILE_MAX + 1, f);
	fclose(f);
	if (n > CONFIG_PROMPT_FILE_MAX) {
		free(buf);
		config_errf(err, errlen, "ai.system_prompt_file: '%s' is larger than %d bytes",
			    cfg->ai_system_prompt_file, CONFIG_PROMPT_FILE_MAX);
		return -1;
	}
	buf[n] = '\0';
	free(cfg->ai_system_prompt);
	cfg->ai_system_prompt = buf;
	return 0;
}

/* Cross-field checks and derived defaults, after every source is applied. */
static int config_finish(struct config *cfg, char *err, size_t errlen)
{
	if (cfg->router_ingress_endpoint[0] == '\0') {
		free(cfg->router_ingress_endpoint);
		cfg->router_ingress_endpoint = xasprintf("ipc://%s/ingress.ipc", cfg->state_dir);
	}
	if (cfg->router_work_endpoint[0] == '\0') {
		free(cfg->router_work_endpoint);
		cfg->router_work_endpoint = xasprintf("ipc://%s/work.ipc", cfg->state_dir);
	}
	if (cfg->ai_system_prompt_file[0] && config_read_prompt(cfg, err, errlen) < 0)
		return -1;
	if (cfg->worker_timeout_ms <= cfg->worker_heartbeat_ms) {
		config_errf(err, errlen, "worker.timeout_ms (%d) must be larger than worker.heartbeat_ms (%d)",
			    cfg->worker_timeout_ms, cfg->worker_heartbeat_ms);
		return -1;
	}
	if (cfg->ai_escalation_tag[0] == '\0') {
		config_errf(err, errlen, "ai.escalation_tag: must not be empty");
		return -1;
	}
	if (!cfg->console_user[0] != !cfg->console_password[0]) {
		config_errf(err, errlen, "console.user and console.password: set both or neither");
		return -1;
	}
	if (strchr(cfg->console_user, ':')) {
		config_errf(err, errlen, "console.user: basic auth user names cannot contain ':'");
		return -1;
	}
	return 0;
}

/* dst = a deep copy of src's settings, without its numbers. */
static void config_clone(struct config *dst, const struct config *src)
{
	memcpy(dst, src, sizeof(*dst));
	dst->numbers = NULL;
	dst->nnumbers = 0;
	for (size_t i = 0; i < CONFIG_N; i++) {
		const struct config_entry *e = &config_table[i];
		if (config_is_string(e)) {
			char **d = config_field(dst, e);
			*d = xstrdup(*(char *const *)config_cfield(src, e));
		}
	}
}

/* Each [number] section: the finished base, with the section's lines applied. */
static int config_build_numbers(struct config *cfg, const struct config_lines *ls, char *err,
				size_t errlen)
{
	for (size_t i = 0; i < ls->n; i++) {
		const struct config_line *l = &ls->v[i];
		struct config_number *num = NULL;
		for (size_t k = 0; k < cfg->nnumbers; k++)
			if (!strcmp(cfg->numbers[k].address, l->address))
				num = &cfg->numbers[k];
		if (!num) {
			cfg->numbers = xrealloc(cfg->numbers, (cfg->nnumbers + 1) * sizeof(*cfg->numbers));
			num = &cfg->numbers[cfg->nnumbers++];
			num->address = xstrdup(l->address);
			config_clone(&num->cfg, cfg);
		}
		if (config_set(&num->cfg, config_find(l->key), l->val, l->origin, err, errlen) < 0)
			return -1;
		if (!strcmp(l->key, "ai.system_prompt_file") && l->val[0] &&
		    config_read_prompt(&num->cfg, err, errlen) < 0)
			return -1;
	}
	return 0;
}

const struct config *config_for(const struct config *cfg, const char *business)
{
	if (!business || !cfg->nnumbers)
		return cfg;
	for (size_t i = 0; i < cfg->nnumbers; i++)
		if (!strcmp(cfg->numbers[i].address, business))
			return &cfg->numbers[i].cfg;
	return cfg;
}

/*
 * What the sandbox (the fakes of make demo and the tests, on loopback)
 * gives the settings left unset in sandbox mode. Outside it none of these
 * values is accepted for a secret or a SID (confcheck.c).
 */
static const struct {
	const char *key, *value;
} config_sandbox[] = {
	{ "twilio.account_sid", "AC00000000000000000000000000000000" },
	{ "twilio.auth_token", "sandbox_token" },
	{ "twilio.api_base", "http://127.0.0.1:18081" },
	{ "twilio.conversations_base", "http://127.0.0.1:18081" },
	{ "twilio.flex_base", "http://127.0.0.1:18081" },
	{ "twilio.taskrouter_base", "http://127.0.0.1:18081" },
	{ "twilio.mcs_base", "http://127.0.0.1:18081" },
	{ "media.allow_hosts", "127.0.0.1" },
	{ "llm.base_url", "http://127.0.0.1:18082" },
	{ "transcribe.base_url", "http://127.0.0.1:18082" },
	{ "llm.api_key", "sandbox-key" },
	{ "transcribe.api_key", "sandbox-key" }, /* the fake LLM transcribes too */
	{ "flex.workspace_sid", "WS00000000000000000000000000000000" },
	{ "flex.workflow_sid", "WW00000000000000000000000000000000" },
};

const char *config_router_store_dir(const struct config *cfg)
{
	if (cfg->state_backend == CONFIG_BACKEND_POSTGRES && cfg->router_cache_dir[0])
		return cfg->router_cache_dir;
	return cfg->state_dir;
}

const char *config_rest_user(const struct config *cfg)
{
	return cfg->twilio_api_key_sid[0] ? cfg->twilio_api_key_sid : cfg->twilio_account_sid;
}

const char *config_rest_secret(const struct config *cfg)
{
	return cfg->twilio_api_key_sid[0] ? cfg->twilio_api_key_secret : cfg->twilio_auth_token;
}

const char *config_sandbox_value(const char *key)
{
	for (size_t i = 0; i < sizeof(config_sandbox) / sizeof(config_sandbox[0]); i++)
		if (!strcmp(config_sandbox[i].key, key))
			return config_sandbox[i].value;
	return NULL;
}

/* BATON_ variables that are not settings: tools and tests read them. */
static const char *const config_env_other[] = { "BATON_CONFIG", "BATON_BIN", "BATON_KEEP",
						 "BATON_TEST_ARTIFACTS", NULL };

/* A BATON_ variable that names no setting is a typo that would be ignored. */
static int config_check_env(char *err, size_t errlen)
{
	extern char **environ;
	char name[128], env[128];
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, "BATON_", 6))
			continue;
		const char *eq = strchr(*e, '=');
		size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		memcpy(name, *e, n);
		name[n] = '\0';
		bool known = false;
		for (size_t i = 0; config_env_other[i] && !known; i++)
			known = !strcmp(name, config_env_other[i]);
		for (size_t i = 0; i < CONFIG_N && !known; i++) {
			config_env_name(config_table[i].key, env, sizeof(env));
			known = !strcmp(name, env);
		}
		if (!known) {
			char hint[160];
			config_suggest(name, true, hint, sizeof(hint));
			config_errf(err, errlen, "unknown environment variable %s%s", name, hint);
			return -1;
		}
	}
	return 0;
}

/* A secret's file: ours (or root's), no access for group or others, small. */
static int config_read_secret(const char *key, const char *path, char **out, char *err,
			      size_t errlen)
{
	char buf[4097];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		config_errf(err, errlen, "%s: cannot open '%s': %s", key, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		config_errf(err, errlen, "%s: '%s' is not a regular file", key, path);
		close(fd);
		return -1;
	}
	if (st.st_mode & 077) {
		config_errf(err, errlen, "%s: '%s' is open to other users (mode %04o): chmod 600 it",
			    key, path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		config_errf(err, errlen, "%s: '%s' belongs to another user (uid %u)", key, path,
			    (unsigned)st.st_uid);
		close(fd);
		return -1;
	}
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || n >= (ssize_t)sizeof(buf)) {
		config_errf(err, errlen, "%s: cannot read '%s' (empty, unreadable or over 4 KiB)", key,
			    path);
		return -1;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	free(*out);
	*out = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/*
 * Secrets from files: KEY_file names one, or systemd's LoadCredential puts
 * one at $CREDENTIALS_DIRECTORY/KEY. A secret set twice is an error.
 */
static int config_secret_files(struct config *cfg, bool *explicit, char *err, size_t errlen)
{
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	char fkey[128];
	for (size_t i = 0; i < CONFIG_N; i++) {
		const struct config_entry *e = &config_table[i];
		if (!e->secret)
			continue;
		snprintf(fkey, sizeof(fkey), "%s_file", e->key);
		const struct config_entry *fe = config_find(fkey);
		const char *path = fe ? *(char *const *)config_cfield(cfg, fe) : "";
		char *cred = NULL;
		if (!path[0] && creds && *creds && !explicit[i]) {
			cred = xasprintf("%s/%s", creds, e->key);
			if (access(cred, F_OK) == 0)
				path = cred;
		}
		if (path[0] && explicit[i] && path != cred) {
			config_errf(err, errlen, "%s: set both directly and by %s; keep one", e->key, fkey);
			free(cred);
			return -1;
		}
		int rc = path[0] ? config_read_secret(e->key, path, config_field(cfg, e), err, errlen) : 0;
		if (path[0] && rc == 0)
			explicit[i] = true;
		free(cred);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int config_load(struct config *cfg, const char *file, char *err, size_t errlen)
{
	char env[128], origin[160];
	struct config_lines sections = { 0 };
	bool explicit[CONFIG_N] = { false };

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < CONFIG_N; i++)
		if (config_set(cfg, &config_table[i], config_table[i].def, "default", err, errlen) < 0)
			goto fail;
	if (config_check_env(err, errlen) < 0)
		goto fail;
	if (!file)
		file = getenv("BATON_CONFIG");
	if (file && *file && config_load_file(cfg, file, &sections, explicit, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < CONFIG_N; i++) {
		config_env_name(config_table[i].key, env, sizeof(env));
		const char *v = getenv(env);
		if (!v)
			continue;
		snprintf(origin, sizeof(origin), "environment %s", env);
		if (config_set(cfg, &config_table[i], v, origin, err, errlen) < 0)
			goto fail;
		explicit[i] = true;
	}
	if (config_secret_files(cfg, explicit, err, errlen) < 0)
		goto fail;
	if (cfg->sandbox)
		for (size_t i = 0; i < CONFIG_N; i++) {
			const char *v = config_sandbox_value(config_table[i].key);
			if (v && !explicit[i] &&
			    config_set(cfg, &config_table[i], v, "sandbox", err, errlen) < 0)
				goto fail;
		}
	if (config_finish(cfg, err, errlen) < 0)
		goto fail;
	if (config_build_numbers(cfg, &sections, err, errlen) < 0)
		goto fail;
	config_lines_release(&sections);
	return 0;
fail:
	config_lines_release(&sections);
	config_release(cfg);
	return -1;
}

/* The environment block keeps a secret passed as BATON_X=... for the
 * process's life (and /proc/PID/environ shows it): wipe the value in place. */
static void config_wipe_env(const char *key)
{
	extern char **environ;
	char name[128];
	config_env_name(key, name, sizeof(name));
	size_t n = strlen(name);
	for (char **e = environ; e && *e; e++)
		if (!strncmp(*e, name, n) && (*e)[n] == '=')
			explicit_bzero(*e + n + 1, strlen(*e + n + 1));
}

void config_drop_secrets(struct config *cfg, const char *const *keep)
{
	for (size_t i = 0; i < CONFIG_N; i++) {
		const struct config_entry *e = &config_table[i];
		if (e->secret)
			config_wipe_env(e->key);
		bool kept = false;
		for (size_t k = 0; keep && keep[k] && !kept; k++)
			kept = !strcmp(keep[k], e->key);
		if (!e->secret || kept)
			continue;
		char **v = config_field(cfg, e);
		explicit_bzero(*v, strlen(*v));
		free(*v);
		*v = xstrdup("");
		for (size_t n = 0; n < cfg->nnumbers; n++) {
			char **nv = config_field(&cfg->numbers[n].cfg, e);
			explicit_bzero(*nv, strlen(*nv));
			free(*nv);
			*nv = xstrdup("");
		}
	}
}

void config_release(struct config *cfg)
{
	for (size_t i = 0; i < cfg->nnumbers; i++) {
		free(cfg->numbers[i].address);
		config_release(&cfg->numbers[i].cfg);
	}
	free(cfg->numbers);
	for (size_t i = 0; i < CONFIG_N; i++) {
		const struct config_entry *e = &config_table[i];
		if (config_is_string(e)) {
			char **s = config_field(cfg, e);
			free(*s);
			*s = NULL;
		}
	}
	memset(cfg, 0, sizeof(*cfg));
}

static void config_dump_entry(const struct config *cfg, const struct config_entry *e, FILE *out)
{
	const void *f = config_cfield(cfg, e);
	fprintf(out, "%s = ", e->key);
	switch (e->type) {
	case CT_INT:
		fprintf(out, "%d\n", *(const int *)f);
		break;
	case CT_LONG:
		fprintf(out, "%ld\n", *(const long *)f);
		break;
	case CT_BOOL:
		fprintf(out, "%s\n", *(const bool *)f ? "true" : "false");
		break;
	case CT_ENUM:
		fprintf(out, "\"%s\"\n", config_choice_name(e->choices, *(const int *)f));
		break;
	default: {
		const char *s = *(char *const *)f;
		if (e->secret) {
			fprintf(out, "\"%s\"\n", s[0] ? "********" : "");
			break;
		}
		fputc('"', out);
		for (const char *p = s; *p; p++) {
			if (*p == '\n')
				fputs("\\n", out);
			else if (*p == '"' || *p == '\\')
				fprintf(out, "\\%c", *p);
			else
				fputc(*p, out);
		}
		fputs("\"\n", out);
	}
	}
}

void config_dump(const struct config *cfg, FILE *out)
{
	for (size_t i = 0; i < CONFIG_N; i++)
		config_dump_entry(cfg, &config_table[i], out);
	/* Each number's effective per-number settings, inherited ones included. */
	for (size_t n = 0; n < cfg->nnumbers; n++) {
		fprintf(out, "\n[number %s]\n", cfg->numbers[n].address);
		for (size_t i = 0; i < CONFIG_N; i++)
			if (config_per_number(config_table[i].key))
				config_dump_entry(&cfg->numbers[n].cfg, &config_table[i], out);
	}
}

/*
 * Which processes read each setting (for --help): exact keys first, then
 * prefixes ending in '.'; the first match wins. A setting not listed is
 * everyone's.
 */
static const struct {
	const char *key;
	unsigned roles;
} config_readers[] = {
	{ "router.ingress_endpoint", CONF_ROUTER | CONF_INGRESS | CONF_REPLAY | CONF_CONSOLE },
	{ "router.work_endpoint", CONF_ROUTER | CONF_AI | CONF_EGRESS | CONF_FLEX },
	{ "router.batch", CONF_ROUTER },
	{ "router.lease_ms", CONF_ROUTER },
	{ "router.ingress_bind", CONF_ROUTER },
	{ "router.cache_dir", CONF_ROUTER },
	{ "router.work_bind", CONF_ROUTER },
	{ "state.backend", CONF_ROUTER | CONF_CTL | CONF_CONSOLE },
	{ "postgres.", CONF_ROUTER | CONF_CTL | CONF_CONSOLE },
	{ "zmq.server_secret_key", CONF_ROUTER },
	{ "zmq.server_secret_key_file", CONF_ROUTER },
	{ "zmq.allowed_keys", CONF_ROUTER },
	{ "zmq.public_key", CONF_INGRESS | CONF_AI | CONF_EGRESS | CONF_FLEX | CONF_REPLAY |
				CONF_CONSOLE },
	{ "zmq.secret_key", CONF_INGRESS | CONF_AI | CONF_EGRESS | CONF_FLEX | CONF_REPLAY |
				CONF_CONSOLE },
	{ "zmq.secret_key_file", CONF_INGRESS | CONF_AI | CONF_EGRESS | CONF_FLEX | CONF_REPLAY |
				CONF_CONSOLE },
	{ "http.bind", CONF_INGRESS | CONF_CTL | CONF_REPLAY },
	{ "http.port", CONF_INGRESS | CONF_CTL | CONF_REPLAY },
	{ "http.share_port", CONF_INGRESS },
	{ "http.public_url", CONF_INGRESS | CONF_REPLAY },
	{ "http.ack_timeout_ms", CONF_INGRESS | CONF_REPLAY | CONF_CONSOLE },
	{ "http.max_params", CONF_INGRESS | CONF_REPLAY },
	/* Media URLs are fetched with the account's credentials by the ai-worker
	 * (what the model sees) and the console (thumbnails). */
	{ "twilio.account_sid", CONF_INGRESS | CONF_EGRESS | CONF_FLEX | CONF_REPLAY | CONF_AI |
				       CONF_CONSOLE },
	{ "twilio.auth_token", CONF_INGRESS | CONF_EGRESS | CONF_FLEX | CONF_REPLAY | CONF_AI |
				      CONF_CONSOLE },
	{ "twilio.auth_token_file", CONF_INGRESS | CONF_EGRESS | CONF_FLEX | CONF_REPLAY | CONF_AI |
					   CONF_CONSOLE },
	{ "twilio.api_key_sid", CONF_EGRESS | CONF_FLEX | CONF_AI | CONF_CONSOLE },
	{ "twilio.api_key_secret", CONF_EGRESS | CONF_FLEX | CONF_AI | CONF_CONSOLE },
	{ "twilio.api_key_secret_file", CONF_EGRESS | CONF_FLEX | CONF_AI | CONF_CONSOLE },
	{ "twilio.mcs_base", CONF_FLEX },
	{ "twilio.api_base", CONF_EGRESS },
	{ "twilio.conversations_base", CONF_FLEX },
	{ "twilio.flex_base", CONF_FLEX },
	{ "twilio.taskrouter_base", CONF_FLEX },
	{ "twilio.whatsapp_from", CONF_INGRESS | CONF_ROUTER },
	{ "twilio.validate_signature", CONF_INGRESS },
	{ "ai.escalation_tag", CONF_AI },
	/* The console tells baton's own messages from the AI's by their text. */
	{ "ai.apology", CONF_ROUTER | CONF_CONSOLE },
	{ "handoff.holding_message", CONF_ROUTER | CONF_CONSOLE },
	{ "handoff.closed_message", CONF_ROUTER | CONF_CONSOLE },
	{ "handoff.no_agent_message", CONF_ROUTER | CONF_CONSOLE },
	{ "handoff.no_agent_ai_message", CONF_ROUTER | CONF_CONSOLE },
	{ "handoff.failure_message", CONF_ROUTER | CONF_CONSOLE },
	{ "ai.worker_credit", CONF_AI },
	{ "ai.escalation_mode", CONF_AI },
	{ "ai.language", CONF_FLEX },
	{ "ai.images", CONF_AI },
	{ "ai.image_max_bytes", CONF_AI },
	{ "ai.image_fallback", CONF_AI },
	{ "escalation.on_voice", CONF_AI },
	{ "media.", CONF_AI | CONF_FLEX | CONF_CONSOLE },
	{ "transcribe.", CONF_AI | CONF_FLEX },
	{ "handoff.inject", CONF_FLEX },
	{ "admin.token", CONF_INGRESS | CONF_CTL | CONF_REPLAY },
	{ "admin.token_file", CONF_INGRESS | CONF_CTL | CONF_REPLAY },
	{ "flex.workspace_sid", CONF_INGRESS | CONF_FLEX | CONF_REPLAY },
	{ "flex.bot_author", CONF_ROUTER | CONF_FLEX },
	{ "debug.reset_word", CONF_ROUTER },
	{ "metrics.token", CONF_INGRESS },
	{ "metrics.token_file", CONF_INGRESS },
	{ "worker.", CONF_ROUTER | CONF_AI | CONF_EGRESS | CONF_FLEX },
	{ "http.", CONF_INGRESS },
	{ "twilio.", CONF_FLEX | CONF_EGRESS },
	{ "llm.", CONF_AI },
	{ "ai.", CONF_ROUTER },
	{ "escalation.", CONF_ROUTER },
	{ "handoff.", CONF_ROUTER },
	{ "business.", CONF_ROUTER },
	{ "whatsapp.", CONF_ROUTER },
	{ "console.", CONF_CONSOLE },
	{ "flex.", CONF_FLEX },
	{ "egress.", CONF_EGRESS },
	{ "lmdb.", CONF_ROUTER },
	{ "dedupe.", CONF_ROUTER },
	{ "capture.", CONF_INGRESS | CONF_CONSOLE },
};

unsigned config_readers_of(const char *key)
{
	for (size_t i = 0; i < sizeof(config_readers) / sizeof(config_readers[0]); i++) {
		const char *k = config_readers[i].key;
		size_t n = strlen(k);
		if (k[n - 1] == '.' ? !strncmp(key, k, n) : !strcmp(key, k))
			return config_readers[i].roles;
	}
	return CONF_ALL;
}

void config_help(FILE *out, unsigned roles)
{
	char env[128];
	fprintf(out, "Settings%s (file key, environment variable, default):\n"
		     "A config file may end with [number whatsapp:+E164] sections setting the ones\n"
		     "marked [per number] for one business number's conversations.\n",
		roles == CONF_ALL ? " of every process" : " this process reads (--help-all: every one)");
	for (size_t i = 0; i < CONFIG_N; i++) {
		const struct config_entry *e = &config_table[i];
		if (!(config_readers_of(e->key) & roles))
			continue;
		config_env_name(e->key, env, sizeof(env));
		const char *def = e->def;
		fprintf(out, "  %-28s %-34s default: %.40s%s\n      %s%s\n", e->key, env,
			e->secret ? "(none)" : (def[0] ? def : "(empty)"),
			strlen(def) > 40 && !e->secret ? "..." : "", e->help,
			config_per_number(e->key) ? " [per number]" : "");
	}
}

/* A Markdown cell: pipes escaped, newlines as \n, so one setting is one row. */
static void config_md_cell(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
}

void config_reference(FILE *out)
{
	char env[128];
	fprintf(out, "| setting | environment | default | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; i < CONFIG_N; i++) {
		const struct config_entry *e = &config_table[i];
		config_env_name(e->key, env, sizeof(env));
		fprintf(out, "| `%s` | `%s` | ", e->key, env);
		if (e->secret)
			fputs("(none)", out);
		else if (!e->def[0])
			fputs("(empty)", out);
		else {
			fputc('`', out);
			config_md_cell(out, e->def);
			fputc('`', out);
		}
		fputs(" | ", out);
		config_md_cell(out, e->help);
		if (e->type == CT_ENUM) {
			char words[256];
			config_choice_list(e->choices, "|", words, sizeof(words));
			fprintf(out, " One of `%s`.", words);
		}
		else if (e->type == CT_INT || e->type == CT_LONG)
			fprintf(out, " Range %ld..%ld.", e->min, e->max);
		if (config_per_number(e->key))
			fputs(" **Per number.**", out);
		fputs(" |\n", out);
	}
}

int config_from_args(struct config *cfg, int argc, char **argv, const char *proc,
		     unsigned roles, const char *usage)
{
	const char *file = NULL;
	bool check = false;
	char err[1024];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc) {
			file = argv[++i];
		} else if (!strcmp(argv[i], "--check-config")) {
			check = true;
		} else if (!strcmp(argv[i], "--config-reference")) {
			config_reference(stdout);
			return 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ||
			   !strcmp(argv[i], "--help-all")) {
			fprintf(stdout, "usage: %s [--config FILE] [--check-config] [--config-reference] "
				"[--help] [--help-all]\n%s\n\n",
				proc, usage);
			config_help(stdout, strcmp(argv[i], "--help-all") ? roles : CONF_ALL);
			return 1;
		} else {
			fprintf(stderr, "%s: unknown option '%s' (try --help)\n", proc, argv[i]);
			exit(CONFIG_EXIT);
		}
	}
	if (config_load(cfg, file, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: config error: %s\n", proc, err);
		exit(CONFIG_EXIT);
	}
	if (check) {
		/* Every process's checks: 0 here means every one of them starts. */
		if (confcheck(cfg, CONF_ALL, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s: config error: %s\n", proc, err);
			config_release(cfg);
			exit(CONFIG_EXIT);
		}
		config_dump(cfg, stdout);
		config_release(cfg);
		return 1;
	}
	return 0;
}
