/*
 * pipeline — flex-worker's job handler: the Twilio Flex handoff and the
 * forwarding of customer messages into the agent's conversation.
 *
 * Handoff, each step resumable and idempotent, so that a retry (by this or
 * another worker, after a crash too) creates nothing twice:
 *   1. list the customer's conversations and close every one not closed
 *      (Flex takes only a new conversation), except our own from an
 *      earlier attempt, recognised by its UniqueName;
 *   2. create the conversation, UniqueName "baton-<job>-<created>" (an
 *      earlier attempt's one is fetched instead);
 *   3. inject the history, skipping turns already there (each injected
 *      message carries {"baton_job","baton_turn"} in its Attributes);
 *      this runs BEFORE the customer joins, so old turns are not
 *      delivered to the customer's WhatsApp again;
 *   4. add the customer (messaging binding address = customer, proxy =
 *      our number) unless already a participant;
 *   5. create the Flex Interaction (whatsapp, initiated by customer, media
 *      channel = the conversation) unless the conversation's Attributes
 *      already name one, then write its SIDs into those Attributes.
 * A crash between the Interaction's creation and the mark is caught on
 * retry by looking up Flex's task for the conversation in TaskRouter
 * (EvaluateTaskAttributes conversationSid == CH), which names the
 * Interaction.
 *
 * What the customer sent beyond text reaches the agent: a turn with media
 * items becomes one message per item (Conversations takes one MediaSid per
 * message), the turn's text on the first. Each item is fetched from
 * Twilio and uploaded to the Media Content Service (flexmedia.h) into the
 * conversation's chat service, then posted as the message's MediaSid. An
 * item that cannot be fetched or uploaded becomes a note in the message
 * ("[photo (image/jpeg): could not be attached]") and the job goes on. A
 * media message's Attributes add {"baton_item": k} for items after the
 * first, so that a retry finds each one and posts only what is missing (a
 * crash between the upload and the post leaves an unused Media resource
 * at Twilio, never a second message). Within an attempt the MediaSid is
 * kept for a retried post, and a post whose outcome is unknown (timeout,
 * lost answer, or a refusal after curl sent it again by itself) is checked
 * at MCS first: GET .../Media/{ME} names the message it went with (a
 * message list can lag behind); a message Twilio refused with its media
 * (and that did not go) is posted again with the note instead. Location
 * and button are text.
 *
 * handoff.inject=transcript: the one transcript message shows every item
 * as a note (media_text_view); the items then follow as messages of their
 * own, each with its note as caption, in history order (Attributes: turn
 * 0, item 1..n after the transcript's item 0).
 *
 * Forward (human mode): the customer's message goes into the agent's
 * conversation the same way, one message per media item (a voice note is
 * an audio MediaSid the agent can play), Attributes {"baton_seq"} plus
 * {"baton_item"}, checked against the conversation's last 50 messages
 * before posting. No transcription here: a transcript the AI made is
 * already in a history turn's text.
 *
 * Within one attempt 429/5xx/network errors are retried with backoff
 * until flex.retry_deadline_ms; the result is then ST_RETRY. Other 4xx
 * end the attempt with ST_FAILED and Twilio's error code. The router
 * decides about further attempts.
 */
#ifndef BATON_PIPELINE_H
#define BATON_PIPELINE_H

#include "config.h"
#include "flexmedia.h"
#include "worker.h"

struct flexwork {
	const struct config *cfg;
	struct flexmedia_cfg media; /* borrows cfg */
	unsigned long handoffs, forwards, retries, failures;
};

void flexwork_init(struct flexwork *fw, const struct config *cfg);
/** worker_job_fn for ENV_JOB_FLEX. */
void flexwork_job(struct worker *w, const struct envelope *job, void *arg);

#endif
