/*
 * llm — request building and response parsing for the two LLM APIs.
 *
 * Anthropic Messages API (POST {base}/v1/messages, x-api-key,
 * anthropic-version) and OpenAI-compatible chat completions (POST
 * {base}/v1/chat/completions, Bearer key; also Ollama, vLLM, llama.cpp).
 * History turns map to roles: customer -> user, ai -> assistant, agent ->
 * assistant marked as the human agent, system -> user marked as a note;
 * consecutive turns of one role are merged, as Anthropic requires.
 *
 * Media: what each item of a customer's turn becomes is decided by the
 * caller (aimedia.h fetches, transcribes and checks) and passed in as a
 * view per item. Images and PDFs given as bytes become content blocks: a
 * message whose turns carry any becomes an array of blocks (each turn's
 * blocks, then its text), otherwise its content stays one string.
 * Anthropic: image and document blocks (base64 source); OpenAI-compatible:
 * image_url parts with a data: URL, and a PDF is a note (those APIs take
 * no documents in chat). A turn whose text is a voice-note transcript is
 * marked "(voice note transcript)"; locations and buttons are text
 * (media_text). Only user-role turns carry blocks (assistant messages
 * cannot): elsewhere a block is its note.
 *
 * No I/O here. Strings in results are owned by the caller (*_release).
 */
#ifndef BATON_LLM_H
#define BATON_LLM_H

#include <stdbool.h>
#include <stddef.h>

#include "envelope.h"
#include "media.h"

enum llm_provider { LLM_ANTHROPIC, LLM_OPENAI };

/*
 * How the model asks for a human. LLM_ESC_TAG: the prompt asks for the tag
 * at the end of the text. LLM_ESC_STRUCTURED: Anthropic gets the tool
 * escalate_to_human{reason, summary}; OpenAI-compatible endpoints get a
 * JSON-schema reply {reply, escalate, reason, summary}. A reply that
 * ignores the structure is still delivered as text, never as raw JSON.
 */
enum llm_esc_mode { LLM_ESC_STRUCTURED, LLM_ESC_TAG };

#define LLM_ESC_TOOL "escalate_to_human"

struct llm_cfg {
	enum llm_provider provider;
	enum llm_esc_mode esc_mode;
	const char *tag;
	const char *base_url;
	const char *model;
	const char *api_key;
	const char *anthropic_version;
	int max_tokens;
};

struct llm_request {
	char *url;
	char *body;
	size_t body_len;
	char *headers[4]; /* NULL-terminated "Name: value"; holds the key: never log */
};

enum llm_outcome {
	LLM_OK,        /* reply parsed */
	LLM_RETRY,     /* transient: 408, 409, 429, 5xx, 529, network; retry with backoff */
	LLM_FATAL,     /* 4xx that a retry will not fix (auth, bad request, billing) */
	LLM_MALFORMED, /* 200 we cannot read: bad JSON, wrong shape, no text */
};

struct llm_reply {
	char *text;     /* concatenated text blocks; may be "" with a tool call */
	bool tool_escalate; /* tool call or JSON field escalate=true */
	char *reason;
	char *summary;
	char *error;    /* what went wrong, for logs (never contains the key) */
};

/*
 * What one media item of a turn becomes. LLM_ITEM_NOTE (zero, the
 * default): media_item_note without a reason. LLM_ITEM_TEXT: text in its
 * place (a transcript, ai.image_fallback, a note saying why the item
 * could not be read). LLM_ITEM_IMAGE / LLM_ITEM_PDF: the bytes as a
 * content block, base64-encoded here.
 */
enum llm_item_kind { LLM_ITEM_NOTE, LLM_ITEM_TEXT, LLM_ITEM_IMAGE, LLM_ITEM_PDF };

struct llm_item {
	enum llm_item_kind kind;
	const char *text;  /* LLM_ITEM_TEXT */
	const char *ctype; /* IMAGE, PDF: what the bytes are (image/jpeg...) */
	const char *data;  /* IMAGE, PDF: the bytes */
	size_t len;
};

/* The views of one turn's items, by the item's index in its media. */
struct llm_turn_media {
	struct llm_item items[MEDIA_ITEMS_MAX];
};

/**
 * Build the HTTP request for a job (ENV_JOB_AI). media: job->nturns
 * views, or NULL (every item a note); borrowed for the call only.
 */
void llm_build(const struct llm_cfg *cfg, const struct envelope *job,
	       const struct llm_turn_media *media, struct llm_request *out);
void llm_request_release(struct llm_request *r);

/** Classify and parse an HTTP outcome (status 0 = transfer failed). */
enum llm_outcome llm_parse(const struct llm_cfg *cfg, long status, const char *body, size_t len,
			   struct llm_reply *out);
void llm_reply_release(struct llm_reply *r);

#endif
