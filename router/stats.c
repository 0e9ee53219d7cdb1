/*
 * stats — the metrics the router's modules count inside a batch. They are
 * counted as the batch applies and kept only when it commits (metrics.h
 * stages them), so a batch that rolls back leaves no trace in them.
 */
#include "core.h"

static const char *const rm_modes[] = { "ai", "escalating", "human", NULL };
static const char *const rm_triggers[] = { "rule", "tool", "tag", "ai_failure", "voice",
					   "operator", NULL };
static const char *const rm_paths[] = { "agent_closed", "task_completed", "operator",
					"inactivity_timeout", "no_agent", "reset", NULL };

const struct metric_def RM_MESSAGES = {
	"baton_router_customer_messages_total", METRIC_COUNTER,
	"Customer messages stored, by the conversation's mode when they arrived.", { "mode" },
	{ rm_modes } };
const struct metric_def RM_DUPLICATES = {
	"baton_router_duplicate_webhooks_total", METRIC_COUNTER,
	"Deliveries of a MessageSid already stored: acknowledged, not processed again.", { NULL },
	{ NULL } };
const struct metric_def RM_ESCALATIONS = {
	"baton_router_escalations_total", METRIC_COUNTER,
	"Escalations to a person, by trigger: rule (escalation.phrases), tool or tag (the model), "
	"ai_failure (the AI failed for good), voice (a voice note that could not be transcribed, "
	"escalation.on_voice=escalate), operator.", { "trigger" }, { rm_triggers } };
const struct metric_def RM_HANDBACKS = {
	"baton_router_handbacks_total", METRIC_COUNTER,
	"Conversations handed back to the AI, by path.", { "path" }, { rm_paths } };
const struct metric_def RM_HANDOFFS_FAILED = {
	"baton_router_handoffs_failed_total", METRIC_COUNTER,
	"Handoffs given up after handoff.max_attempts (the conversation went back to the AI).",
	{ NULL }, { NULL } };
const struct metric_def RM_REPLIES_CUT = {
	"baton_router_replies_cut_total", METRIC_COUNTER,
	"Answers longer than ai.max_parts WhatsApp messages, cut with an ellipsis.", { NULL },
	{ NULL } };

void stats_register(void)
{
	static const struct metric_def *const defs[] = {
		&RM_MESSAGES, &RM_DUPLICATES, &RM_ESCALATIONS, &RM_HANDBACKS, &RM_HANDOFFS_FAILED,
		&RM_REPLIES_CUT, NULL };
	metrics_register(defs);
}
