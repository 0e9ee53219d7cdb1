/*
 * convview — a conversation as JSON: the one schema batonctl (show,
 * conversations, export), the console and exports all print.
 *
 * Record (convview_record):
 *   key                  "customer|business" (convkey.h)
 *   customer             masked as in the logs (all but the last 4 digits),
 *                        in clear with CONVVIEW_CLEAR (exports)
 *   business, name       the business address; the WhatsApp profile name or null
 *   mode                 "ai" | "escalating" | "human": where messages go
 *   state                "ai" | "waiting" (not in ai mode, no agent yet) |
 *                        "with_agent" (an agent accepted the task or wrote)
 *   created_ms, updated_ms, last_customer_message_ms, last_activity_ms
 *                        wall-clock milliseconds (null when never)
 *   customer_turns, messages, waiting_turns, escalations, handoff_failures
 *   escalation           null until the first escalation, then the last one:
 *                        {trigger, reason, at_ms, queued_until_ms,
 *                        accepted_at_ms, agent_since_ms, waited_ms, agent}
 *   flex                 null, or the last handoff's SIDs: {conversation,
 *                        participant, interaction, channel, task}
 *   window_closed_ms     when the 24 h window last blocked a message, or null
 *   last_error           null or {code, message}: the last Twilio error seen
 * Timeline entry (convview_event): {at_ms, event, detail}.
 * Turn (convview_turn): {seq, at_ms, role, text} and, when there is one,
 *   agent, media_count (attachments), media (what the message carried:
 *   media.h's document {type, items [{url, ct}], loc, btn}), media_text
 *   (the same as text: one note per item, the location, the button), transcript
 *   (true: text is the voice note's transcript), message_sid (inbound),
 *   sent_sids (outbound, comma-separated), escalate (true).
 * Document (convview_document): the record plus "timeline" and "history"
 *   (the newest entries/turns, oldest first) and their totals.
 *
 * Text read from the store that is not UTF-8 becomes U+FFFD: a view never
 * fails on a record. Every function returns a new reference (json_decref).
 */
#ifndef BATON_CONVVIEW_H
#define BATON_CONVVIEW_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The customer's address in clear (exports for the right of access). */
#define CONVVIEW_CLEAR 1u

/** "ai", "waiting" or "with_agent" (see above). */
const char *convview_state(const struct conv_rec *c);
/** When a person took this stretch over (accepted, or first wrote), 0 = nobody yet. */
uint64_t convview_agent_since(const struct conv_rec *c);

json_t *convview_record(const char *key, const struct conv_rec *c, unsigned flags);
json_t *convview_event(const struct tl_rec *t);
json_t *convview_turn(uint64_t seq, const struct hist_rec *h);
/**
 * The record with its newest max_events timeline entries and max_turns
 * turns (0 = all), read in txn. Entries or turns that cannot be read are
 * left out.
 */
json_t *convview_document(struct store *st, MDB_txn *txn, const char *key,
			  const struct conv_rec *c, unsigned flags, size_t max_events,
			  size_t max_turns);

/** A string, null for NULL, U+FFFD for text that is not UTF-8. */
json_t *convview_str(const char *s);
/** Milliseconds, null for 0. */
json_t *convview_ms(uint64_t ms);

#endif
