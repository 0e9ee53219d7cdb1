/*
 * voice — transcripts of customers' voice notes into history.
 *
 * A worker that transcribed a voice note (the ai-worker before it asks
 * the model, the flex-worker before it forwards to the agent) sends the
 * text back with its result. Stored as the turn's text and marked as a
 * transcript, so the AI's later turns, the agent's thread, batonctl show
 * and the console all read the same words. A transcript never replaces
 * what the customer typed: it is added after it.
 */
#include "core.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "media.h"
#include "xalloc.h"

/* Longest transcript kept, in bytes: a minute of speech is about 1 KiB. */
#define VOICE_TEXT_MAX (32u * 1024)

/* Whether history turn h is a customer's message carrying audio. */
static bool voice_has_audio(const struct hist_rec *h)
{
	struct media_msg m;
	bool audio = false;
	if (h->role != ROLE_CUSTOMER || !h->media || media_from_json(h->media, &m))
		return false;
	for (size_t i = 0; i < m.nitems && !audio; i++)
		audio = media_kind_of(m.items[i].ctype) == MEDIA_AUDIO;
	media_release(&m);
	return audio;
}

static int voice_store_one(struct batch *b, const char *conv, uint64_t seq, const char *text)
{
	struct hist_rec h;
	struct log_ids ids = { .conv = conv };
	int rc = store_hist_get(b->st, b->txn, conv, seq, &h);
	if (rc == MDB_NOTFOUND)
		return 0; /* purged meanwhile */
	if (rc)
		return rc;
	if (h.transcript || !voice_has_audio(&h)) {
		/* Already stored (a retried result), or not a voice note: a
		 * worker may not rewrite any other turn. */
		if (!h.transcript)
			log_emit(LOG_WARN, &ids, "transcript for turn %llu ignored: no voice note there",
				 (unsigned long long)seq);
		hist_rec_release(&h);
		return 0;
	}
	char *joined = h.text && *h.text ? xasprintf("%s\n%s", h.text, text) : xstrdup(text);
	free(h.text);
	h.text = joined;
	h.transcript = true;
	rc = store_hist_put(b->st, b->txn, conv, seq, &h);
	hist_rec_release(&h);
	return rc;
}

int voice_store_transcripts(struct batch *b, const char *conv, const char *json)
{
	struct log_ids ids = { .conv = conv };
	if (!json || !*json)
		return 0;
	json_t *arr = json_loads(json, 0, NULL);
	int rc = 0;
	if (!json_is_array(arr)) {
		log_emit(LOG_WARN, &ids, "unreadable transcripts in a worker's result: ignored");
		goto out;
	}
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		json_t *seq = json_object_get(v, "seq"), *text = json_object_get(v, "text");
		/* jansson already refused bad UTF-8 and \u0000 (no JSON_ALLOW_NUL). */
		if (!json_is_integer(seq) || json_integer_value(seq) <= 0 || !json_is_string(text) ||
		    json_string_length(text) > VOICE_TEXT_MAX) {
			log_emit(LOG_WARN, &ids, "a malformed transcript in a worker's result: ignored");
			continue;
		}
		if ((rc = voice_store_one(b, conv, (uint64_t)json_integer_value(seq),
					  json_string_value(text))))
			break;
	}
out:
	json_decref(arr);
	return rc;
}
