/*
 * llm — JSON for the Anthropic and OpenAI-compatible APIs; see llm.h.
 *
 * Parsing is defensive: a response is data from the network, so every
 * field is checked for its type before use and a surprise becomes
 * LLM_MALFORMED with a reason, never a crash.
 */
#include "llm.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "media.h"
#include "xalloc.h"

/* Reply bodies are bounded by max_tokens, error messages are not: cut them. */
#define LLM_ERROR_MAX 300

static const char *llm_role(enum env_role r)
{
	return (r == ROLE_AI || r == ROLE_AGENT) ? "assistant" : "user";
}

/* *text, then "\n" and part when both have something: a turn's lines. */
static void llm_append(char **text, const char *part)
{
	char *joined;
	if (!part || !*part)
		return;
	joined = **text ? xasprintf("%s\n%s", *text, part) : xstrdup(part);
	free(*text);
	*text = joined;
}

/*
 * A content block for the bytes of v: Anthropic image or document with a
 * base64 source, OpenAI-compatible image_url with a data: URL. NULL when
 * the provider takes no such block or the bytes cannot be encoded; the
 * caller writes the item's note instead.
 */
static json_t *llm_block(const struct llm_cfg *cfg, const struct llm_item *v)
{
	bool pdf = v->kind == LLM_ITEM_PDF;
	if (!v->data || !v->ctype || (pdf && cfg->provider != LLM_ANTHROPIC) ||
	    v->len > (size_t)INT_MAX / 4 * 3 - 3)
		return NULL;
	/* OpenAI's data: URL is the same base64 after a prefix: one buffer. */
	char *prefix = cfg->provider == LLM_ANTHROPIC ? xstrdup("")
						       : xasprintf("data:%s;base64,", v->ctype);
	size_t plen = strlen(prefix);
	char *buf = xmalloc(plen + 4 * ((v->len + 2) / 3) + 1);
	memcpy(buf, prefix, plen);
	int n = EVP_EncodeBlock((unsigned char *)buf + plen, (const unsigned char *)v->data,
				(int)v->len);
	json_t *data = json_stringn(buf, plen + (size_t)n), *block = NULL;
	if (data && cfg->provider == LLM_ANTHROPIC)
		block = json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", pdf ? "document" : "image",
				  "source", "type", "base64", "media_type", v->ctype, "data", data);
	else if (data)
		block = json_pack("{s:s, s:{s:o}}", "type", "image_url", "image_url", "url", data);
	free(buf);
	free(prefix);
	return block;
}

/*
 * The text of turn t for the model: its body (marked when it is a voice
 * note's transcript), each media item's view that is not a block, then a
 * location or button as words. Blocks go to blocks when the turn may
 * carry them (user role), in item order.
 */
static char *llm_turn_text(const struct llm_cfg *cfg, const struct env_turn *t,
			   const struct llm_turn_media *tm, json_t *blocks)
{
	static const struct llm_item note = { .kind = LLM_ITEM_NOTE };
	struct media_msg m;
	char *text, *out;

	text = t->transcript && t->text && *t->text
		       ? xasprintf("(voice note transcript) %s", t->text)
		       : xstrdup(t->text ? t->text : "");
	if (t->media && media_from_json(t->media, &m) == 0) {
		for (size_t i = 0; i < m.nitems; i++) {
			const struct llm_item *v = tm ? &tm->items[i] : &note;
			json_t *block = NULL;
			char *part = NULL;
			if ((v->kind == LLM_ITEM_IMAGE || v->kind == LLM_ITEM_PDF) &&
			    !strcmp(llm_role(t->role), "user"))
				block = llm_block(cfg, v);
			if (block)
				json_array_append_new(blocks, block);
			else if (v->kind == LLM_ITEM_TEXT)
				llm_append(&text, v->text);
			else if (!(t->transcript && media_kind_of(m.items[i].ctype) == MEDIA_AUDIO))
				/* A transcribed voice note is its text already. */
				part = media_item_note(&m.items[i], NULL);
			llm_append(&text, part);
			free(part);
		}
		char *extra = media_text(&m);
		llm_append(&text, extra);
		free(extra);
		media_release(&m);
	}
	switch (t->role) {
	case ROLE_AGENT: out = xasprintf("(human agent) %s", text); break;
	case ROLE_SYSTEM: out = xasprintf("[note] %s", text); break;
	default: return text;
	}
	free(text);
	return out;
}

/* One message being assembled from a run of turns of one role: its text
 * since the last block, and its blocks once a turn brought one. */
struct llm_msg {
	json_t *obj;    /* {"role", "content"}, already in the array */
	char *text;     /* NULL until a turn gave some */
	json_t *blocks; /* NULL: the content is one string */
};

/* Text with nothing but blanks makes no block: Anthropic refuses those. */
static bool llm_blank(const char *s)
{
	for (; s && *s; s++)
		if (*s != ' ' && *s != '\n' && *s != '\t' && *s != '\r')
			return false;
	return true;
}

static void llm_msg_flush(struct llm_msg *m)
{
	if (!llm_blank(m->text))
		json_array_append_new(m->blocks, json_pack("{s:s, s:s}", "type", "text", "text",
							   m->text));
	free(m->text);
	m->text = NULL;
}

static void llm_msg_close(struct llm_msg *m)
{
	if (!m->obj)
		return;
	if (m->blocks) {
		llm_msg_flush(m);
		json_object_set_new(m->obj, "content", m->blocks);
	} else {
		json_object_set_new(m->obj, "content", json_string(m->text ? m->text : ""));
	}
	free(m->text);
	memset(m, 0, sizeof(*m));
}

/* Appends the history as {role, content} messages, merging runs of one role. */
static void llm_messages(const struct llm_cfg *cfg, json_t *arr, const struct envelope *job,
			 const struct llm_turn_media *media, bool skip_leading_assistant)
{
	struct llm_msg cur = { 0 };
	const char *last_role = NULL;
	for (size_t i = 0; i < job->nturns; i++) {
		const char *role = llm_role(job->turns[i].role);
		if (!cur.obj && skip_leading_assistant && !strcmp(role, "assistant"))
			continue;
		json_t *blocks = json_array();
		char *text = llm_turn_text(cfg, &job->turns[i], media ? &media[i] : NULL, blocks);
		if (!cur.obj || strcmp(last_role, role)) {
			llm_msg_close(&cur);
			cur.obj = json_pack("{s:s}", "role", role);
			json_array_append_new(arr, cur.obj);
			last_role = role;
		}
		if (json_array_size(blocks)) {
			/* The turn's blocks, then its text: what it says about them. */
			if (!cur.blocks)
				cur.blocks = json_array();
			llm_msg_flush(&cur);
			json_array_extend(cur.blocks, blocks);
			cur.text = text;
		} else if (cur.text) {
			llm_append(&cur.text, text);
			free(text);
		} else {
			cur.text = text;
		}
		json_decref(blocks);
	}
	llm_msg_close(&cur);
	if (json_array_size(arr) == 0) {
		/* Never send an empty conversation: the APIs reject it. */
		json_t *m = json_object();
		json_object_set_new(m, "role", json_string("user"));
		json_object_set_new(m, "content", json_string("(no message)"));
		json_array_append_new(arr, m);
	}
}

/* The operator's prompt says when to escalate; this says how, per mode. */
static char *llm_system(const struct llm_cfg *cfg, const char *prompt)
{
	const char *how;
	if (cfg->esc_mode == LLM_ESC_TAG)
		return xasprintf("%s\n\nTo hand the conversation to a person, reply with one short "
				 "sentence and append the tag %s at the very end.", prompt, cfg->tag);
	if (cfg->provider == LLM_ANTHROPIC)
		how = "call the escalate_to_human tool with the reason and a one-line summary of "
		      "the conversation, together with one short sentence for the customer.";
	else
		how = "set escalate to true, give the reason and a one-line summary, and put one "
		      "short sentence for the customer in reply. Otherwise escalate is false.";
	return xasprintf("%s\n\nTo hand the conversation to a person, %s", prompt, how);
}

static json_t *llm_esc_schema(bool with_reply)
{
	json_t *props = json_object();
	if (with_reply) {
		json_object_set_new(props, "reply", json_pack("{s:s}", "type", "string"));
		json_object_set_new(props, "escalate", json_pack("{s:s}", "type", "boolean"));
	}
	json_object_set_new(props, "reason", json_pack("{s:s, s:s}", "type", "string",
							"description", "why a person is needed"));
	json_object_set_new(props, "summary", json_pack("{s:s, s:s}", "type", "string",
							 "description", "one-line summary for the agent"));
	json_t *req = with_reply ? json_pack("[s,s,s,s]", "reply", "escalate", "reason", "summary")
				 : json_pack("[s]", "reason");
	json_t *schema = json_pack("{s:s, s:o, s:o}", "type", "object", "properties", props,
				   "required", req);
	if (with_reply)
		json_object_set_new(schema, "additionalProperties", json_false());
	return schema;
}

void llm_build(const struct llm_cfg *cfg, const struct envelope *job,
	       const struct llm_turn_media *media, struct llm_request *out)
{
	json_t *root = json_object(), *msgs = json_array();
	char *system = llm_system(cfg, job->prompt ? job->prompt : "");

	memset(out, 0, sizeof(*out));
	json_object_set_new(root, "model", json_string(cfg->model));
	json_object_set_new(root, "max_tokens", json_integer(cfg->max_tokens));
	if (cfg->provider == LLM_ANTHROPIC) {
		json_object_set_new(root, "system", json_string(system));
		llm_messages(cfg, msgs, job, media, true);
		if (cfg->esc_mode == LLM_ESC_STRUCTURED) {
			json_t *tool = json_pack("{s:s, s:s, s:o}", "name", LLM_ESC_TOOL, "description",
						 "Hand the conversation to a human agent of the team.",
						 "input_schema", llm_esc_schema(false));
			json_object_set_new(root, "tools", json_pack("[o]", tool));
			json_object_set_new(root, "tool_choice", json_pack("{s:s}", "type", "auto"));
		}
		out->url = xasprintf("%s/v1/messages", cfg->base_url);
		out->headers[0] = xasprintf("x-api-key: %s", cfg->api_key);
		out->headers[1] = xasprintf("anthropic-version: %s", cfg->anthropic_version);
	} else {
		json_t *sys = json_object();
		json_object_set_new(sys, "role", json_string("system"));
		json_object_set_new(sys, "content", json_string(system));
		json_array_append_new(msgs, sys);
		llm_messages(cfg, msgs, job, media, false);
		if (cfg->esc_mode == LLM_ESC_STRUCTURED) {
			json_t *js = json_pack("{s:s, s:b, s:o}", "name", "reply", "strict", 1, "schema",
					       llm_esc_schema(true));
			json_object_set_new(root, "response_format",
					    json_pack("{s:s, s:o}", "type", "json_schema", "json_schema", js));
		}
		out->url = xasprintf("%s/v1/chat/completions", cfg->base_url);
		out->headers[0] = xasprintf("Authorization: Bearer %s", cfg->api_key);
	}
	json_object_set_new(root, "messages", msgs);
	out->body = json_dumps(root, JSON_COMPACT);
	out->body_len = strlen(out->body);
	json_decref(root);
	free(system);
}

void llm_request_release(struct llm_request *r)
{
	free(r->url);
	free(r->body);
	for (size_t i = 0; i < sizeof(r->headers) / sizeof(r->headers[0]); i++)
		free(r->headers[i]);
	memset(r, 0, sizeof(*r));
}

void llm_reply_release(struct llm_reply *r)
{
	free(r->text);
	free(r->reason);
	free(r->summary);
	free(r->error);
	memset(r, 0, sizeof(*r));
}

static char *llm_cut(const char *s)
{
	size_t n = strlen(s);
	return n > LLM_ERROR_MAX ? xasprintf("%.*s...", LLM_ERROR_MAX, s) : xstrdup(s);
}

/* Replaces every occurrence of secret in s (a self-hosted server may echo
 * the key it refused) so that error text can be logged. */
static void llm_mask(char *s, const char *secret)
{
	size_t n = secret ? strlen(secret) : 0;
	char *p;
	if (n < 4)
		return;
	while ((p = strstr(s, secret))) {
		memset(p, '*', 8 < n ? 8 : n);
		memmove(p + (8 < n ? 8 : n), p + n, strlen(p + n) + 1);
	}
}

/* error.message / error.type of either API's error body, if it has one. */
static char *llm_error_text(long status, const char *body, size_t len)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *err = root ? json_object_get(root, "error") : NULL;
	const char *type = NULL, *msg = NULL;
	if (json_is_object(err)) {
		type = json_string_value(json_object_get(err, "type"));
		msg = json_string_value(json_object_get(err, "message"));
	} else if (root) {
		msg = json_string_value(json_object_get(root, "message"));
	}
	char *cut = llm_cut(msg ? msg : "");
	char *out = xasprintf("HTTP %ld%s%s%s%s", status, type ? " " : "", type ? type : "",
			      msg ? ": " : "", cut);
	free(cut);
	json_decref(root);
	return out;
}

static void llm_tool_input(json_t *input, struct llm_reply *out)
{
	const char *reason = json_string_value(json_object_get(input, "reason"));
	const char *summary = json_string_value(json_object_get(input, "summary"));
	out->tool_escalate = true;
	if (reason && !out->reason)
		out->reason = xstrdup(reason);
	if (summary && !out->summary)
		out->summary = xstrdup(summary);
}

static enum llm_outcome llm_parse_anthropic(json_t *root, struct llm_reply *out)
{
	json_t *content = json_object_get(root, "content");
	if (!json_is_array(content)) {
		out->error = xstrdup("response has no content array");
		return LLM_MALFORMED;
	}
	char *text = xstrdup("");
	size_t i;
	json_t *block;
	json_array_foreach(content, i, block) {
		const char *type = json_string_value(json_object_get(block, "type"));
		if (!type)
			continue;
		if (!strcmp(type, "text")) {
			const char *t = json_string_value(json_object_get(block, "text"));
			if (t) {
				char *j = xasprintf("%s%s%s", text, *text ? "\n" : "", t);
				free(text);
				text = j;
			}
		} else if (!strcmp(type, "tool_use")) {
			const char *name = json_string_value(json_object_get(block, "name"));
			json_t *input = json_object_get(block, "input");
			if (name && !strcmp(name, LLM_ESC_TOOL) && json_is_object(input))
				llm_tool_input(input, out);
		}
	}
	out->text = text;
	return LLM_OK;
}

/*
 * A JSON-schema reply: {"reply", "escalate", "reason", "summary"}. Content
 * that is not JSON is a model ignoring the format: its text is the reply.
 * JSON without a "reply" string is refused, so that no raw JSON ever
 * reaches the customer.
 */
static enum llm_outcome llm_parse_structured(struct llm_reply *out)
{
	const char *t = out->text;
	while (*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r')
		t++;
	if (*t != '{' && *t != '[')
		return LLM_OK;
	json_t *obj = json_loads(t, 0, NULL);
	if (!obj) {
		out->error = xstrdup("reply looks like JSON but does not parse (truncated?)");
		return LLM_MALFORMED;
	}
	const char *reply = json_string_value(json_object_get(obj, "reply"));
	if (!json_is_object(obj) || !reply) {
		json_decref(obj);
		out->error = xstrdup("JSON reply without a \"reply\" string");
		return LLM_MALFORMED;
	}
	char *r = xstrdup(reply);
	free(out->text);
	out->text = r;
	if (json_is_true(json_object_get(obj, "escalate"))) {
		const char *reason = json_string_value(json_object_get(obj, "reason"));
		const char *summary = json_string_value(json_object_get(obj, "summary"));
		out->tool_escalate = true;
		if (reason && *reason && !out->reason)
			out->reason = xstrdup(reason);
		if (summary && *summary && !out->summary)
			out->summary = xstrdup(summary);
	}
	json_decref(obj);
	return LLM_OK;
}

static enum llm_outcome llm_parse_openai(json_t *root, struct llm_reply *out)
{
	json_t *choices = json_object_get(root, "choices");
	json_t *msg = json_object_get(json_array_get(choices, 0), "message");
	if (!json_is_object(msg)) {
		out->error = xstrdup("response has no choices[0].message");
		return LLM_MALFORMED;
	}
	json_t *content = json_object_get(msg, "content");
	if (!json_is_string(content) && !json_is_null(content) && content) {
		out->error = xstrdup("message.content is neither string nor null");
		return LLM_MALFORMED;
	}
	out->text = xstrdup(json_is_string(content) ? json_string_value(content) : "");
	json_t *calls = json_object_get(msg, "tool_calls");
	size_t i;
	json_t *call;
	json_array_foreach(calls, i, call) {
		json_t *fn = json_object_get(call, "function");
		const char *name = json_string_value(json_object_get(fn, "name"));
		const char *args = json_string_value(json_object_get(fn, "arguments"));
		if (!name || strcmp(name, LLM_ESC_TOOL))
			continue;
		/* arguments is a JSON string the model wrote: it may be invalid. */
		json_t *input = args ? json_loads(args, 0, NULL) : NULL;
		if (json_is_object(input))
			llm_tool_input(input, out);
		else
			out->tool_escalate = true;
		json_decref(input);
	}
	return LLM_OK;
}

/*
 * A 200 whose body is an error object ({"type": "error", "error": {...}}):
 * Anthropic answers overloaded_error that way at times, and so do some
 * OpenAI-compatible servers. Overload, rate limits, timeouts and server
 * errors are retried like their HTTP statuses; a request the provider
 * refuses is not.
 */
static bool llm_error_body(json_t *root, struct llm_reply *out, enum llm_outcome *oc)
{
	static const char *const fatal[] = { "invalid_request_error", "authentication_error",
					     "permission_error", "not_found_error",
					     "request_too_large", "billing_error", NULL };
	json_t *err = json_object_get(root, "error");
	const char *top = json_string_value(json_object_get(root, "type"));
	if (!json_is_object(err) && !(top && !strcmp(top, "error")))
		return false;
	const char *type = json_string_value(json_object_get(err, "type"));
	const char *msg = json_string_value(json_object_get(err, "message"));
	char *cut = llm_cut(msg ? msg : "");
	out->error = xasprintf("HTTP 200 with an error: %s%s%s", type ? type : "unknown",
			       msg ? ": " : "", cut);
	free(cut);
	*oc = LLM_RETRY;
	for (size_t i = 0; type && fatal[i]; i++)
		if (!strcmp(type, fatal[i]))
			*oc = LLM_FATAL;
	return true;
}

static enum llm_outcome llm_classify(const struct llm_cfg *cfg, long status, const char *body,
				     size_t len, struct llm_reply *out)
{
	json_error_t jerr;
	enum llm_outcome oc;

	if (status == 0) {
		out->error = xstrdup("no HTTP response");
		return LLM_RETRY;
	}
	if (status != 200) {
		out->error = llm_error_text(status, body, len);
		if (status == 408 || status == 409 || status == 429 || status >= 500)
			return LLM_RETRY;
		return LLM_FATAL;
	}
	json_t *root = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(root)) {
		out->error = xasprintf("response is not a JSON object: %s",
				       root ? "other JSON" : jerr.text);
		json_decref(root);
		return LLM_MALFORMED;
	}
	if (llm_error_body(root, out, &oc)) {
		json_decref(root);
		return oc;
	}
	if (cfg->provider == LLM_ANTHROPIC) {
		oc = llm_parse_anthropic(root, out);
	} else {
		oc = llm_parse_openai(root, out);
		if (oc == LLM_OK && cfg->esc_mode == LLM_ESC_STRUCTURED)
			oc = llm_parse_structured(out);
	}
	json_decref(root);
	if (oc == LLM_OK && !out->text[0] && !out->tool_escalate) {
		out->error = xstrdup("reply has no text");
		oc = LLM_MALFORMED;
	}
	return oc;
}

enum llm_outcome llm_parse(const struct llm_cfg *cfg, long status, const char *body, size_t len,
			   struct llm_reply *out)
{
	memset(out, 0, sizeof(*out));
	enum llm_outcome oc = llm_classify(cfg, status, body, len, out);
	/* One exit: whatever the path, error text (which may quote the body) is
	 * masked before anyone can log it. */
	if (out->error)
		llm_mask(out->error, cfg->api_key);
	return oc;
}
