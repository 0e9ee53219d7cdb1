/*
 * transcribe — one voice note to text through an OpenAI-compatible
 * transcription API (OpenAI, whisper.cpp's server, faster-whisper...).
 *
 * POST {transcribe.base_url}/v1/audio/transcriptions as multipart/form-data:
 * "file" (the audio, named voice.<ext> after its content type, which the
 * API needs to tell the format), "model" (transcribe.model) and
 * "response_format" json; Bearer transcribe.api_key when one is set;
 * transcribe.timeout_ms. The answer is {"text": "..."}.
 *
 * The transcript is cut to TRANSCRIBE_CHARS_MAX characters (the router
 * keeps no longer one). Results passed to done are borrowed for the
 * callback only; the key is never logged nor put in an error text.
 */
#ifndef BATON_TRANSCRIBE_H
#define BATON_TRANSCRIBE_H

#include <stddef.h>

#include "config.h"
#include "httpc.h"

/* 8,000 characters are at most 32,000 bytes: within router/voice.c's bound. */
#define TRANSCRIBE_CHARS_MAX 8000

enum transcribe_outcome {
	TR_OK,
	TR_HTTP,      /* an answer other than 200 */
	TR_TIMEOUT,   /* transcribe.timeout_ms passed */
	TR_TRANSPORT, /* no answer (connection refused, reset...) */
	TR_MALFORMED, /* a 200 without a "text" string */
	TR_EMPTY,     /* a transcript with nothing in it (silence, noise) */
	TR_OUTCOMES
};

struct transcribe_cfg {
	const char *base_url; /* "" = off */
	const char *model;
	const char *api_key;  /* "" = none */
	long timeout_ms;
};

struct transcribe_result {
	enum transcribe_outcome oc;
	const char *text; /* TR_OK: the transcript (UTF-8, not empty) */
	const char *why;  /* otherwise: what went wrong, for the log */
};

typedef void transcribe_done_fn(const struct transcribe_result *r, void *arg);

/** The settings of cfg; borrows cfg. */
void transcribe_config(const struct config *cfg, struct transcribe_cfg *out);

/**
 * Start transcribing len bytes of audio of type ctype (the bytes are
 * copied). 0: started, done runs exactly once later. -1: not started
 * (done never runs).
 */
int transcribe_start(struct httpc *h, const struct transcribe_cfg *cfg, const char *data,
		     size_t len, const char *ctype, transcribe_done_fn *done, void *arg);

/**
 * Read an HTTP answer (status 0 = none). TR_OK with *text (malloc'd,
 * caller frees), or another outcome with *why (malloc'd). Never fails on
 * any input (a fuzz target holds it to that).
 */
enum transcribe_outcome transcribe_parse(long status, const char *body, size_t len, char **text,
					 char **why);

/** Metric label of an outcome: ok, http, timeout, transport, malformed, empty. */
const char *transcribe_outcome_name(enum transcribe_outcome oc);

#endif
