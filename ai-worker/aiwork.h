/*
 * aiwork — the ai-worker's job handler: one LLM call per AI job, with
 * retries, then a RESULT_AI to the router.
 *
 * Before the call, the media of the turns the answer is for are fetched
 * and voice notes transcribed (aimedia.h), all at once; the call waits
 * for every one to end (each has its own timeout). Transcripts go back
 * in the result's transcripts field, whatever its status, for history.
 * A voice note that could not be transcribed with escalation.on_voice =
 * escalate ends the job without a call: ST_OK, escalate, trigger "voice".
 * A worker stopping mid-download treats the job as any call in flight
 * (worker.h): it finishes within the grace period or is re-dispatched.
 *
 * Outcomes reported to the router: ST_OK with the reply text (escalation
 * tag stripped, escalate=true when it was there or the model called the
 * escalation tool), ST_MALFORMED (an answer we could not read), ST_FAILED
 * (a 4xx a retry cannot fix) or ST_RETRY (still failing after
 * llm.retries retries). The router decides what the customer sees.
 */
#ifndef BATON_AIWORK_H
#define BATON_AIWORK_H

#include "aimedia.h"
#include "config.h"
#include "llm.h"
#include "worker.h"

struct aiwork {
	const struct config *cfg;
	struct llm_cfg llm;
	struct aimedia_cfg media;
	unsigned long calls, retries, failures;
};

void aiwork_init(struct aiwork *a, const struct config *cfg);
/** worker_job_fn for ENV_JOB_AI. */
void aiwork_job(struct worker *w, const struct envelope *job, void *arg);

#endif
