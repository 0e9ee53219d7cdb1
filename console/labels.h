/*
 * labels — what an operator reads in a transcript that the store does not
 * say outright: which ai turns are baton's own messages (the holding
 * message, closed hours, no agent, failure, apology: the customer gets
 * them from the same number, but the AI did not write them), and what a
 * hand-back was ("Handed back to the AI — task completed, after 12 min with
 * Marta"), told from the timeline. A system turn is the router's note to
 * the LLM: its wording is instructions, so its text never leaves here.
 */
#ifndef BATON_LABELS_H
#define BATON_LABELS_H

#include <jansson.h>

#include "config.h"

/**
 * Label the turns of doc, a convview document (its "history" and
 * "timeline"): every turn gets "kind" — "message", "holding" or "notice"
 * (with "setting": the config key whose text it is), "handback" (with a
 * line as "text" and "handback": {path, agent, escalated_ms,
 * agent_since_ms, at_ms}) or "note" (any other system turn, text hidden).
 * cfg is the settings of the conversation's number (config_for); a turn
 * sent under settings since changed shows as the AI's.
 */
void labels_apply(const struct config *cfg, json_t *doc);

#endif
