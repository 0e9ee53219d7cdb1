/*
 * aimedia — what the model gets of the media in one AI job's turns: the
 * downloads and transcriptions a job needs before its LLM call, all in
 * flight at once on the worker's httpc, and the view of every item for
 * llm_build (llm.h).
 *
 * Which items are fetched: those of the customer turns since the last AI
 * or agent turn (the messages this answer is for). Older turns were seen
 * by an earlier answer: their items stay notes (and a voice note that was
 * transcribed then is its text already), so a conversation with photos
 * does not download them all again on every turn. Of those recent items:
 *  - images, when ai.images is on: a block when they are at most
 *    ai.image_max_bytes, otherwise ai.image_fallback (also when off: not
 *    fetched);
 *  - PDFs, for Anthropic (OpenAI-compatible chat takes no documents: a note);
 *  - voice notes (audio types) of a turn not yet transcribed, when
 *    transcribe.base_url is set: fetched and transcribed; the transcript
 *    is the item's text for the model and is reported for history
 *    (aimedia_transcripts). One that cannot be (no transcription, download
 *    or transcription failed) reads "could not be transcribed";
 *  - anything else (video, other files): a note.
 * At most AIMEDIA_FETCH_MAX items per job, AIMEDIA_BLOCK_BYTES bytes of
 * blocks in all (the APIs bound a request's size): the rest are notes.
 *
 * An item that cannot be had (host or type not allowed, HTTP error,
 * timeout, too large, bytes not of their type) becomes its note with
 * mediafetch's reason, logged with the job's ids; the job goes on.
 * Counted: baton_media_fetches_total (mediafetch.h) and
 * baton_ai_transcriptions_total{outcome}, one per voice note that needed
 * a transcript.
 *
 * Ownership: struct aimedia owns everything it hands out (views, bytes)
 * until aimedia_free; the job given to aimedia_new is borrowed for the call.
 */
#ifndef BATON_AIMEDIA_H
#define BATON_AIMEDIA_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "envelope.h"
#include "httpc.h"
#include "llm.h"
#include "log.h"
#include "mediafetch.h"
#include "transcribe.h"

#define AIMEDIA_FETCH_MAX 10 /* one WhatsApp message's worth */
/* Under Anthropic's 32 MB request once base64 grows it by a third. */
#define AIMEDIA_BLOCK_BYTES (20u * 1024 * 1024)

struct aimedia_cfg {
	struct mediafetch_cfg fetch;
	struct transcribe_cfg transcribe;
	enum llm_provider provider;
	bool images;
	size_t image_max_bytes;
	const char *image_fallback;
};

/** The settings of cfg for provider; borrows cfg. */
void aimedia_config(const struct config *cfg, enum llm_provider provider,
		    struct aimedia_cfg *out);
/** Register the metric families (once per process, before the first job). */
void aimedia_metrics_register(void);

struct aimedia;

typedef void aimedia_done_fn(void *arg);

/**
 * Plan job's media (no I/O). cfg is borrowed until aimedia_free. Every
 * item starts as a note; aimedia_start fills in the rest.
 */
struct aimedia *aimedia_new(const struct aimedia_cfg *cfg, const struct envelope *job);
/** Whether the plan has downloads to make (aimedia_start will wait for them). */
bool aimedia_wants(const struct aimedia *m);
/**
 * Start every download. true: some are in flight and done(arg) runs
 * exactly once when all have ended (done may free m; it is m's last act).
 * false: nothing to wait for; done never runs.
 */
bool aimedia_start(struct aimedia *m, struct httpc *h, aimedia_done_fn *done, void *arg);

/** The view of every turn's items (job->nturns of them), for llm_build. */
const struct llm_turn_media *aimedia_views(const struct aimedia *m);
/** [{"seq":N,"text":"..."}] of the voice notes transcribed, or NULL (caller frees). */
char *aimedia_transcripts(const struct aimedia *m);
/** Whether a voice note the answer is for could not be transcribed. */
bool aimedia_voice_unheard(const struct aimedia *m);

void aimedia_free(struct aimedia **m);

#endif
