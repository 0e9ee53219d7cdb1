/*
 * handoff — the life of a handoff: escalation (the atomic commit of
 * DESIGN invariant 3), the Flex pipeline's results, agent and customer
 * messages in the Flex conversation, hand-back by every path (invariant 6),
 * the no-agent policy, and the events of webhooks, operator and timers.
 * See core.h.
 */
#include "core.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zmq.h>

#include "backoff.h"
#include "clock.h"
#include "kv.h"
#include "log.h"
#include "xalloc.h"

/* *dst becomes a copy of v, or NULL when v is NULL or empty. */
static void handoff_replace(char **dst, const char *v)
{
	free(*dst);
	*dst = v && *v ? xstrdup(v) : NULL;
}

/* Customer turns waiting behind an AI job move into history, in order: a
 * mode change must not strand them in `pend`. */
static int handoff_drain_pend(struct batch *b, const char *key, struct conv_rec *c)
{
	struct hist_rec h;
	int rc;
	while ((rc = store_pend_pop(b->st, b->txn, key, c, &h)) == 0) {
		rc = store_hist_append(b->st, b->txn, key, c, &h);
		hist_rec_release(&h);
		if (rc)
			return rc;
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* AI answers still waiting in the outbox (say, behind a Twilio outage) must
 * not reach a customer who is being handed to a person. Sends already in
 * flight cannot be recalled, nor can one back in the queue whose last
 * attempt may have reached Twilio (its egress died): withdrawn, it would be
 * a message Twilio has and history does not; left in the outbox, it is
 * reconciled (found and recorded, or sent as the in-flight one would be). */
static int handoff_cancel_ai_sends(struct batch *b, const char *key)
{
	uint64_t ids[HANDOFF_CANCEL_MAX];
	size_t n = dispatch_queued_ids(b->x->disp, JOB_SEND, key, ids, HANDOFF_CANCEL_MAX);
	for (size_t i = 0; i < n; i++) {
		struct job_rec j;
		int rc = store_job_get(b->st, b->txn, ids[i], &j);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc)
			return rc;
		bool ai = j.op && !strcmp(j.op, OP_AI_REPLY);
		job_rec_release(&j);
		uint64_t uncertain = 0;
		dispatch_attempt(b->x->disp, ids[i], NULL, &uncertain);
		if (!ai || uncertain)
			continue;
		if ((rc = job_finish(b, ids[i])))
			return rc;
		struct log_ids lids = { .conv = key, .job = ids[i] };
		log_emit(LOG_INFO, &lids, "escalating: unsent AI reply withdrawn from the outbox");
	}
	return 0;
}

/* Every mode change goes through here: the modes index feeds the timers. */
static int handoff_set_mode(struct batch *b, const char *key, struct conv_rec *c,
			   enum conv_mode mode)
{
	c->mode = mode;
	return store_modes_sync(b->st, b->txn, key, c);
}

/* Queues a customer turn for the agent's Flex conversation. It waits in the
 * conversation's flex lane behind the handoff, so it arrives after the
 * history and in order. */
int handoff_forward(struct batch *b, const char *key, uint64_t seq)
{
	struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = clock_wall_ms(),
			     .op = OP_FORWARD, .hseq = seq };
	uint64_t id;
	return job_add(b, &j, &id, 0);
}

/* text with every %h replaced by the hours and %n by the next opening. Caller frees. */
static char *handoff_expand(const char *text, const char *hours, const char *next)
{
	size_t cap = strlen(text) + 1, n = 0;
	for (const char *p = text; *p; p++)
		if (p[0] == '%' && (p[1] == 'h' || p[1] == 'n'))
			cap += strlen(hours) + strlen(next);
	char *out = xmalloc(cap);
	for (const char *p = text; *p; p++) {
		if (p[0] == '%' && (p[1] == 'h' || p[1] == 'n')) {
			const char *v = p[1] == 'h' ? hours : next;
			memcpy(out + n, v, strlen(v));
			n += strlen(v);
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	return out;
}

/*
 * The holding message of the conversation's number, or outside its
 * business hours the closed message with the hours (%h) and the next
 * opening (%n) in it. *opens gets the wall ms of the next opening when
 * closed, 0 when open. Caller frees.
 */
static char *handoff_holding_message(const struct rctx *x, const char *key, uint64_t *opens)
{
	const struct config *cfg = rctx_cfg(x, key);
	const struct hours *h = rctx_hours(x, key);
	uint64_t now = clock_wall_ms();
	char next[32];

	*opens = 0;
	if (hours_open(h, now, cfg->business_utc_offset_min))
		return xstrdup(cfg->handoff_holding_message);
	*opens = hours_next_open(h, now, cfg->business_utc_offset_min, next, sizeof(next));
	return handoff_expand(cfg->handoff_closed_message, cfg->business_hours, next);
}

static uint64_t handoff_first(const struct rctx *x, uint64_t last)
{
	if (x->cfg->handoff_history == CONFIG_HISTORY_ALL)
		return 1;
	uint64_t n = (uint64_t)x->cfg->handoff_history; /* the enum's value is the count */
	return last > n ? last - n + 1 : 1;
}

/*
 * The atomic handoff (DESIGN invariant 3), inside the caller's transaction:
 * mode escalating, waiting customer turns moved into history, the holding
 * message queued, and the Flex job recorded with the history range the
 * agent will see. A conversation already escalating or human is left alone.
 */
int handoff_escalate(struct batch *b, const char *key, struct conv_rec *c,
			   const char *trigger, const char *reason, const char *summary)
{
	struct log_ids ids = { .conv = key };
	int rc;

	if (c->mode != MODE_AI)
		return 0;
	if ((rc = handoff_drain_pend(b, key, c)) || (rc = handoff_cancel_ai_sends(b, key)))
		return rc;
	/* The AI job in flight is no longer this conversation's: its answer is
	 * dropped even if the conversation is handed back before it arrives. */
	c->ai_job = 0;
	/* A new handoff: nothing of the previous one may match its events. */
	handoff_replace(&c->flex_ch, NULL);
	handoff_replace(&c->flex_mb, NULL);
	handoff_replace(&c->flex_kd, NULL);
	handoff_replace(&c->flex_uo, NULL);
	handoff_replace(&c->flex_wt, NULL);
	handoff_replace(&c->agent, NULL);
	const struct config *ncfg = rctx_cfg(b->x, key);
	uint64_t last = c->seq, opens = 0, now = clock_wall_ms();
	char *hold = handoff_holding_message(b->x, key, &opens);
	/* Outside business hours with handoff.after_hours=queue the task is
	 * created at the opening, not now when no one would take it. */
	bool queue = opens > now && ncfg->handoff_after_hours == CONFIG_AFTER_HOURS_QUEUE;
	struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = now,
			     .op = OP_HANDOFF, .hfrom = handoff_first(b->x, last), .upto = last,
			     .trigger = (char *)trigger, .reason = (char *)reason,
			     .summary = (char *)summary, .not_before = queue ? opens : 0 };
	rc = job_add(b, &j, &c->handoff_job,
			       queue ? clock_mono_ms() + (opens - now) : 0);
	if (rc == 0 && *hold) {
		struct hist_rec hm = { .role = ROLE_AI, .text = hold, .ts = now };
		if ((rc = store_hist_append(b->st, b->txn, key, c, &hm)) == 0)
			rc = outbox_queue(b, key, c, hold, c->seq, false, 0);
	}
	free(hold);
	if (rc)
		return rc;
	c->queued_until = queue ? opens : 0;
	if (queue) {
		char iso[40];
		clock_iso8601(opens, iso, sizeof(iso));
		char *d = xasprintf("until %s (business hours %s)", iso, ncfg->business_hours);
		rc = store_tl_add(b->st, b->txn, key, c, "handoff_queued", d);
		free(d);
		if (rc)
			return rc;
	}
	char *detail = xasprintf("%s: %s", trigger, reason ? reason : "");
	rc = store_tl_add(b->st, b->txn, key, c, "escalated", detail);
	free(detail);
	if (rc || (rc = handoff_set_mode(b, key, c, MODE_ESCALATING)))
		return rc;
	c->escalations++;
	c->esc_at = clock_wall_ms();
	c->last_activity = c->esc_at;
	c->accepted_at = c->first_agent_at = c->no_agent_done = 0;
	free(c->esc_trigger);
	free(c->esc_reason);
	c->esc_trigger = xstrdup(trigger);
	c->esc_reason = xstrdup(reason ? reason : "");
	b->x->stats.escalations++;
	metrics_inc(&RM_ESCALATIONS, metrics_label_in(trigger, RM_ESCALATIONS.init[0]), NULL);
	ids.job = c->handoff_job;
	log_emit(LOG_INFO, &ids, "escalating: trigger %s, reason '%s'; handoff job recorded with "
		 "history %llu..%llu", trigger, reason ? reason : "",
		 (unsigned long long)j.hfrom, (unsigned long long)last);
	return 0;
}

/*
 * Hand-back to the AI (DESIGN invariant 6), in the caller's transaction:
 * a system turn closes the human stretch (so the AI answers next with the
 * whole context and knows the transfer is over), mode ai, timeline entry.
 * A hand-back of a conversation already in ai mode does nothing, so every
 * path (close event, task completed, timeout, operator) is idempotent.
 * close_flex asks flex-worker to close the Flex side too (baton-initiated
 * paths), so the customer's next message comes back to our webhook.
 */
int handoff_back(struct batch *b, const char *key, struct conv_rec *c,
			   const char *path, bool close_flex)
{
	struct log_ids ids = { .conv = key };
	char from[32], to[32];
	int rc;

	if (c->mode == MODE_AI)
		return 0;
	/* Still escalating: the pipeline runs on; its result, no longer the
	 * conversation's handoff, closes what it created (handoff_result). */
	c->handoff_job = 0;
	uint64_t now = clock_wall_ms();
	clock_iso8601(c->esc_at ? c->esc_at : now, from, sizeof(from));
	clock_iso8601(now, to, sizeof(to));
	from[16] = to[16] = '\0'; /* YYYY-MM-DDTHH:MM */
	char *note = xasprintf("The human stretch is over: %s handled this conversation from %s "
			       "to %s UTC and it ended by %s. You are the assistant again: answer "
			       "the customer's next message with everything above in mind, agent "
			       "messages included, and do not say you are transferring them.",
			       c->agent && *c->agent ? c->agent : "our team", from + 0, to + 0,
			       path);
	struct hist_rec h = { .role = ROLE_SYSTEM, .text = note, .ts = now };
	rc = store_hist_append(b->st, b->txn, key, c, &h);
	free(note);
	if (rc || (rc = store_tl_add(b->st, b->txn, key, c, "handed_back", path)) ||
	    (rc = handoff_set_mode(b, key, c, MODE_AI)))
		return rc;
	if (close_flex && (c->flex_ch || c->flex_kd)) {
		/* The close carries the SIDs it closes: a new escalation may
		 * replace the conversation's before it runs. */
		struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = now,
				     .op = OP_CLOSE, .ch = c->flex_ch, .kd = c->flex_kd,
				     .uo = c->flex_uo };
		uint64_t id;
		if ((rc = job_add(b, &j, &id, 0)))
			return rc;
	}
	metrics_inc(&RM_HANDBACKS, metrics_label_in(path, RM_HANDBACKS.init[0]), NULL);
	log_emit(LOG_INFO, &ids, "handed back to the AI (%s)", path);
	return 0;
}

/* Nobody took the handoff in time (or the task was canceled). */
int handoff_no_agent(struct batch *b, const char *key, struct conv_rec *c,
			   const char *why)
{
	struct log_ids ids = { .conv = key };
	int rc;
	if (c->mode == MODE_AI || c->no_agent_done)
		return 0;
	c->no_agent_done = clock_wall_ms();
	if ((rc = store_tl_add(b->st, b->txn, key, c, "no_agent", why)))
		return rc;
	const struct config *ncfg = rctx_cfg(b->x, key);
	bool back = b->x->cfg->handoff_no_agent_policy == CONFIG_NO_AGENT_AI;
	const char *msg = back ? ncfg->handoff_no_agent_ai_message : ncfg->handoff_no_agent_message;
	log_emit(LOG_WARN, &ids, "no agent (%s): %s", why, back ? "back to the AI" : "telling the "
		 "customer, still waiting");
	if (*msg) {
		struct hist_rec h = { .role = ROLE_AI, .text = (char *)msg, .ts = clock_wall_ms() };
		if ((rc = store_hist_append(b->st, b->txn, key, c, &h)) ||
		    (rc = outbox_queue(b, key, c, msg, c->seq, false, 0)))
			return rc;
	}
	return back ? handoff_back(b, key, c, "no_agent", true) : 0;
}

/* A handoff attempt failed: retry the (idempotent) pipeline, or give up
 * after handoff.max_attempts and give the conversation back to the AI. */
static int handoff_failed(struct batch *b, const struct envelope *env,
				 struct job_rec *j, struct conv_rec *c, const struct log_ids *ids)
{
	int rc;
	uint64_t d = 0;
	if (j->attempts + 1 < b->x->cfg->handoff_max_attempts) {
		if ((rc = job_retry(b, env->id, j, (uint64_t)b->x->cfg->handoff_retry_base_ms,
				    ROUTER_FLEX_RETRY_CAP_MS, &d)))
			return rc;
		log_emit(LOG_WARN, ids, "handoff attempt %lld failed (Twilio %lld: %s): retry in %llu ms",
			 (long long)j->attempts, (long long)env->code, env->err ? env->err : "",
			 (unsigned long long)d);
		return 0;
	}
	log_emit(LOG_ERROR, ids, "handoff failed for good after %lld attempts (Twilio %lld: %s): "
		 "conversation back to ai", (long long)j->attempts + 1, (long long)env->code,
		 env->err ? env->err : "");
	if ((rc = job_finish(b, env->id)))
		return rc;
	metrics_inc(&RM_HANDOFFS_FAILED, NULL, NULL);
	c->handoff_job = 0;
	c->handoff_failures++;
	c->err_code = env->code;
	rctx_set_str(&c->err, env->err ? env->err : "handoff failed");
	if ((rc = store_tl_add(b->st, b->txn, j->conv, c, "handoff_failed", c->err)))
		return rc;
	if (c->mode == MODE_ESCALATING && (rc = handoff_set_mode(b, j->conv, c, MODE_AI)))
		return rc;
	if (c->flex_ch) {
		/* The attempt may have bound the customer to a conversation without a
		 * task: close it, or their messages would go where nobody reads. */
		struct job_rec cj = { .kind = JOB_FLEX, .conv = j->conv, .created = clock_wall_ms(),
				      .op = OP_CLOSE, .ch = c->flex_ch };
		uint64_t id;
		if ((rc = job_add(b, &cj, &id, 0)))
			return rc;
	}
	const char *msg = rctx_cfg(b->x, j->conv)->handoff_failure_message;
	if (*msg) {
		struct hist_rec h = { .role = ROLE_AI, .text = (char *)msg, .ts = clock_wall_ms() };
		if ((rc = store_hist_append(b->st, b->txn, j->conv, c, &h)) ||
		    (rc = outbox_queue(b, j->conv, c, msg, c->seq, false, env->id)))
			return rc;
	}
	return 0;
}

/* The result of a forward or close job: retried while Twilio says so and
 * attempts remain, else finished (logged when it failed). */
static int handoff_job_end(struct batch *b, const struct envelope *env,
			   struct job_rec *j, const struct log_ids *ids)
{
	if (env->status == ST_RETRY && j->attempts + 1 < b->x->cfg->handoff_max_attempts)
		return job_retry(b, env->id, j, (uint64_t)b->x->cfg->handoff_retry_base_ms,
				 ROUTER_FLEX_RETRY_CAP_MS, NULL);
	if (env->status != ST_OK)
		log_emit(LOG_ERROR, ids, "could not %s (Twilio %lld: %s)",
			 j->op && !strcmp(j->op, OP_CLOSE) ? "close the Flex side"
							   : "forward a customer message to Flex",
			 (long long)env->code, env->err ? env->err : "");
	return job_finish(b, env->id);
}

int handoff_result(struct batch *b, struct item *it)
{
	struct envelope *env = &it->env;
	struct job_rec j;
	struct conv_rec c;
	struct log_ids ids = { .job = env->id };
	int rc = batch_job_of(b, env, JOB_FLEX, &j);

	if (rc)
		return rc == BATCH_STALE ? 0 : rc;
	ids.conv = j.conv;
	if ((rc = store_conv_get(b->st, b->txn, j.conv, &c))) {
		/* The conversation was purged: a close (kept on purpose) still ends
		 * its Flex side; anything else just ends. Either way dispatch must
		 * forget the job, or its lane would stay busy. */
		if (rc == MDB_NOTFOUND && env->status == ST_PROGRESS)
			rc = 0; /* its final result ends it */
		else if (rc == MDB_NOTFOUND && j.op && !strcmp(j.op, OP_CLOSE))
			rc = handoff_job_end(b, env, &j, &ids);
		else if (rc == MDB_NOTFOUND)
			rc = job_finish(b, env->id);
		job_rec_release(&j);
		return rc;
	}
	bool handoff = j.op && !strcmp(j.op, OP_HANDOFF);
	if ((rc = voice_store_transcripts(b, j.conv, env->transcripts))) {
		conv_rec_release(&c);
		job_rec_release(&j);
		return rc;
	}
	if (env->status == ST_PROGRESS) {
		/* The conversation exists: agent messages in it can be matched from
		 * now on, even before the pipeline's final result arrives. */
		if (handoff && env->ch) {
			if (c.handoff_job == env->id)
				handoff_replace(&c.flex_ch, env->ch);
			rc = store_idx_put(b->st, b->txn, "ch", env->ch, j.conv);
		}
	} else if (handoff && c.handoff_job != env->id) {
		/* Handed back while the pipeline ran: nothing to record. */
		log_emit(LOG_INFO, &ids, "late handoff result (conversation is %s): closing its Flex side",
			 conv_mode_name(c.mode));
		rc = job_finish(b, env->id);
		if (rc == 0 && env->status == ST_OK && env->ch) {
			struct job_rec cj = { .kind = JOB_FLEX, .conv = j.conv, .created = clock_wall_ms(),
					      .op = OP_CLOSE, .ch = env->ch, .kd = env->kd, .uo = env->uo };
			uint64_t id;
			rc = job_add(b, &cj, &id, 0);
		}
	} else if (handoff && env->status != ST_OK) {
		rc = handoff_failed(b, env, &j, &c, &ids);
	} else if (handoff) {
		/* This handoff's SIDs, all of them: none may stay from an older one. */
		handoff_replace(&c.flex_ch, env->ch);
		handoff_replace(&c.flex_mb, env->mb);
		handoff_replace(&c.flex_kd, env->kd);
		handoff_replace(&c.flex_uo, env->uo);
		handoff_replace(&c.flex_wt, env->wt);
		c.handoff_job = 0;
		if (c.mode == MODE_ESCALATING)
			rc = handoff_set_mode(b, j.conv, &c, MODE_HUMAN);
		if (rc == 0 && env->ch)
			rc = store_idx_put(b->st, b->txn, "ch", env->ch, j.conv);
		if (rc == 0 && env->wt)
			rc = store_idx_put(b->st, b->txn, "wt", env->wt, j.conv);
		if (rc == 0)
			rc = store_tl_add(b->st, b->txn, j.conv, &c, "task_created",
					  env->wt ? env->wt : (env->kd ? env->kd : ""));
		if (rc == 0 && (rc = job_finish(b, env->id)) == 0) {
			log_emit(LOG_INFO, &ids, "handoff done: conversation %s, interaction %s, task %s; "
				 "mode human", env->ch ? env->ch : "?", env->kd ? env->kd : "?",
				 env->wt ? env->wt : "?");
		}
	} else {
		rc = handoff_job_end(b, env, &j, &ids);
	}
	if (rc == 0) {
		c.updated = clock_wall_ms();
		rc = store_conv_put(b->st, b->txn, j.conv, &c);
	}
	conv_rec_release(&c);
	job_rec_release(&j);
	return rc;
}

/* onMessageAdded in a Flex conversation baton knows. */
int handoff_flex_message(struct batch *b, const char *key,
			       struct conv_rec *c, const struct envelope *env)
{
	struct log_ids ids = { .conv = key, .sid = env->sid };
	int rc;
	const char *author = env->from;
	if (!strcmp(author, b->x->cfg->flex_bot_author) || !strcmp(author, "system"))
		return 0; /* our own injected history, or Twilio's: never loop */
	if (c->customer && !strcmp(author, c->customer)) {
		struct hist_rec h = { .role = ROLE_CUSTOMER, .text = env->body, .ts = env->ts,
				      .sid = env->sid };
		return turns_customer(b, key, c, &h, true);
	}
	struct hist_rec h = { .role = ROLE_AGENT, .text = env->body, .ts = env->ts, .sid = env->sid,
			      .who = (char *)author };
	if ((rc = store_hist_append(b->st, b->txn, key, c, &h)))
		return rc;
	rctx_set_str(&c->agent, author);
	c->last_activity = clock_wall_ms();
	if (!c->first_agent_at) {
		c->first_agent_at = c->last_activity;
		if ((rc = store_tl_add(b->st, b->txn, key, c, "first_agent_reply", author)))
			return rc;
	}
	if (c->mode != MODE_HUMAN) {
		/* A person is writing: the bot must not talk over them, whatever the mode. */
		log_emit(LOG_INFO, &ids, "agent %s wrote while in %s mode: taking over", author,
			 conv_mode_name(c->mode));
		if (c->mode == MODE_AI && (rc = store_tl_add(b->st, b->txn, key, c, "agent_takeover",
							      author)))
			return rc;
		if (c->mode == MODE_AI) {
			c->esc_at = c->last_activity;
			c->accepted_at = c->last_activity;
			c->ai_job = 0; /* its answer must not reach a customer a person has */
			if ((rc = handoff_drain_pend(b, key, c)))
				return rc;
		}
		if ((rc = handoff_set_mode(b, key, c, MODE_HUMAN)))
			return rc;
	}
	log_emit(LOG_INFO, &ids, "agent message recorded");
	return 0;
}
