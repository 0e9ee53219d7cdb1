/*
 * transcribe — voice notes to text through an OpenAI-compatible
 * transcription API; see transcribe.h.
 *
 * The answer is data from the network: every field is checked for its
 * type, and anything unexpected is an outcome with a reason, never a crash.
 */
#include "transcribe.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "xalloc.h"

/* An answer is {"text": ...} of at most a few KiB; an error body is cut. */
#define TRANSCRIBE_RESPONSE_MAX (256u * 1024)
#define TRANSCRIBE_ERROR_MAX 200

static const char *const tr_names[TR_OUTCOMES] = {
	[TR_OK] = "ok",		      [TR_HTTP] = "http",	  [TR_TIMEOUT] = "timeout",
	[TR_TRANSPORT] = "transport", [TR_MALFORMED] = "malformed", [TR_EMPTY] = "empty",
};

/* File name extensions by content type: the API tells formats by them. */
static const struct {
	const char *ctype, *ext;
} tr_exts[] = {
	{ "audio/ogg", "ogg" },	 { "audio/opus", "ogg" }, { "audio/mpeg", "mp3" },
	{ "audio/mp4", "m4a" },	 { "audio/aac", "m4a" },  { "audio/amr", "amr" },
	{ "audio/wav", "wav" },	 { "audio/x-wav", "wav" }, { "audio/webm", "webm" },
	{ "audio/flac", "flac" },
};

const char *transcribe_outcome_name(enum transcribe_outcome oc)
{
	return (unsigned)oc < TR_OUTCOMES ? tr_names[oc] : "unknown";
}

void transcribe_config(const struct config *cfg, struct transcribe_cfg *out)
{
	out->base_url = cfg->transcribe_base_url;
	out->model = cfg->transcribe_model;
	out->api_key = cfg->transcribe_api_key;
	out->timeout_ms = cfg->transcribe_timeout_ms;
}

static const char *tr_ext(const char *ctype)
{
	size_t n = ctype ? strcspn(ctype, "; ") : 0;
	for (size_t i = 0; i < sizeof(tr_exts) / sizeof(tr_exts[0]); i++)
		if (strlen(tr_exts[i].ctype) == n && !strncasecmp(ctype, tr_exts[i].ctype, n))
			return tr_exts[i].ext;
	return "ogg"; /* WhatsApp's voice notes are Ogg/Opus */
}

/* error.message of an error body (OpenAI's shape), cut; NULL when none. */
static char *tr_error_text(const char *body, size_t len)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *err = json_object_get(root, "error");
	const char *msg = json_is_object(err) ? json_string_value(json_object_get(err, "message"))
					      : json_string_value(err);
	char *out = NULL;
	if (msg) {
		size_t n = strlen(msg);
		size_t cut = utf8_prefix(msg, n, TRANSCRIBE_ERROR_MAX);
		out = xasprintf("%.*s%s", (int)cut, msg, cut < n ? "..." : "");
	}
	json_decref(root);
	return out;
}

enum transcribe_outcome transcribe_parse(long status, const char *body, size_t len, char **text,
					 char **why)
{
	json_error_t jerr;
	*text = *why = NULL;
	if (status == 0) {
		*why = xstrdup("no HTTP answer");
		return TR_TRANSPORT;
	}
	if (status != 200) {
		char *msg = tr_error_text(body, len);
		*why = xasprintf("HTTP %ld%s%s", status, msg ? ": " : "", msg ? msg : "");
		free(msg);
		return TR_HTTP;
	}
	json_t *root = json_loadb(body, len, 0, &jerr);
	json_t *t = json_object_get(root, "text");
	if (!json_is_string(t)) {
		*why = xasprintf("answer has no \"text\" string%s%s", root ? "" : ": ",
				 root ? "" : jerr.text);
		json_decref(root);
		return TR_MALFORMED;
	}
	/* jansson refuses \u0000 and ill-formed UTF-8: the text is clean. */
	const char *s = json_string_value(t);
	size_t n = json_string_length(t);
	while (n && strchr(" \t\r\n", s[n - 1]))
		n--;
	while (n && strchr(" \t\r\n", *s)) {
		s++;
		n--;
	}
	if (!n) {
		*why = xstrdup("the transcript is empty");
		json_decref(root);
		return TR_EMPTY;
	}
	*text = xstrndup(s, utf8_prefix(s, n, TRANSCRIBE_CHARS_MAX));
	json_decref(root);
	return TR_OK;
}

struct tr_call {
	transcribe_done_fn *done;
	void *arg;
};

static void tr_done(const struct httpc_resp *resp, void *arg)
{
	struct tr_call *c = arg;
	struct transcribe_result r = { 0 };
	char *text = NULL, *why = NULL;

	if (resp->too_big) {
		r.oc = TR_MALFORMED;
		why = xstrdup("answer too large");
	} else if (resp->curl_code == CURLE_OPERATION_TIMEDOUT) {
		r.oc = TR_TIMEOUT;
		why = xstrdup("timed out");
	} else if (resp->curl_code) {
		r.oc = TR_TRANSPORT;
		why = xasprintf("transfer to %s failed: %s", resp->url, resp->error);
	} else {
		r.oc = transcribe_parse(resp->status, resp->body, resp->body_len, &text, &why);
	}
	r.text = text;
	r.why = why;
	c->done(&r, c->arg);
	free(text);
	free(why);
	free(c);
}

int transcribe_start(struct httpc *h, const struct transcribe_cfg *cfg, const char *data,
		     size_t len, const char *ctype, transcribe_done_fn *done, void *arg)
{
	if (!cfg->base_url || !*cfg->base_url)
		return -1;
	struct tr_call *c = xcalloc(1, sizeof(*c));
	char *url = xasprintf("%s/v1/audio/transcriptions", cfg->base_url);
	char *fname = xasprintf("voice.%s", tr_ext(ctype));
	/* httpc copies headers and parts: nothing here outlives the start. */
	char *auth = cfg->api_key && *cfg->api_key
			     ? xasprintf("Authorization: Bearer %s", cfg->api_key)
			     : NULL;
	const char *headers[2] = { auth, NULL };
	c->done = done;
	c->arg = arg;
	const struct httpc_part parts[] = {
		{ .name = "file", .data = data, .len = len, .filename = fname, .type = ctype },
		{ .name = "model", .data = cfg->model, .len = strlen(cfg->model) },
		{ .name = "response_format", .data = "json", .len = 4 },
	};
	struct httpc_req req = { .method = "POST", .url = url, .headers = headers,
				 .timeout_ms = cfg->timeout_ms,
				 .max_response = TRANSCRIBE_RESPONSE_MAX, .parts = parts,
				 .nparts = sizeof(parts) / sizeof(parts[0]) };
	int rc = httpc_start(h, &req, 0, tr_done, c);
	free(url);
	free(fname);
	free(auth);
	if (rc < 0)
		free(c);
	return rc;
}
