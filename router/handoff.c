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
static int handoff_drain_pend(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c)
{
	struct hist_rec h;
	int rc;
	while ((rc = store_pend_pop(&r->st, txn, key, c, &h)) == 0) {
		rc = store_hist_append(&r->st, txn, key, c, &h);
		hist_rec_release(&h);
		if (rc)
			return rc;
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* AI answers still waiting in the outbox (say, behind a Twilio outage) must
 * not reach a customer who is being handed to a person. Sends already in
 * flight cannot be recalled. */
static int handoff_cancel_ai_sends(struct router *r, MDB_txn *txn, const char *key)
{
	uint64_t ids[HANDOFF_CANCEL_MAX];
	size_t n = dispatch_queued_ids(r->disp, JOB_SEND, key, ids, HANDOFF_CANCEL_MAX);
	for (size_t i = 0; i < n; i++) {
		struct job_rec j;
		int rc = store_job_get(&r->st, txn, ids[i], &j);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc)
			return rc;
		bool ai = j.op && !strcmp(j.op, OP_AI_REPLY);
		job_rec_release(&j);
		if (!ai)
			continue;
		if ((rc = store_job_del(&r->st, txn, ids[i])))
			return rc;
		router_fx_push(r, FX_DONE)->id = ids[i];
		struct log_ids lids = { .conv = key, .job = ids[i] };
		log_emit(LOG_INFO, &lids, "escalating: unsent AI reply withdrawn from the outbox");
	}
	return 0;
}

/* Every mode change goes through here: the modes index feeds the timers. */
static int handoff_set_mode(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
			   enum conv_mode mode)
{
	c->mode = mode;
	return store_modes_sync(&r->st, txn, key, c);
}

/* Queues a customer turn for the agent's Flex conversation. It waits in the
 * conversation's flex lane behind the handoff, so it arrives after the
 * history and in order. */
int handoff_forward(struct router *r, MDB_txn *txn, const char *key, uint64_t seq)
{
	struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = clock_wall_ms(),
			     .op = OP_FORWARD, .hseq = seq };
	uint64_t id;
	return router_job_add(r, txn, &j, &id);
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
static char *handoff_holding_message(const struct router *r, const char *key, uint64_t *opens)
{
	const struct config *cfg = router_cfg(r, key);
	const struct hours *h = router_hours(r, key);
	uint64_t now = clock_wall_ms();
	char next[32];

	*opens = 0;
	if (hours_open(h, now, cfg->business_utc_offset_min))
		return xstrdup(cfg->handoff_holding_message);
	*opens = hours_next_open(h, now, cfg->business_utc_offset_min, next, sizeof(next));
	return handoff_expand(cfg->handoff_closed_message, cfg->business_hours, next);
}

static uint64_t handoff_first(const struct router *r, uint64_t last)
{
	if (!strcmp(r->cfg->handoff_history, "all"))
		return 1;
	uint64_t n = strtoull(r->cfg->handoff_history, NULL, 10);
	return last > n ? last - n + 1 : 1;
}

/*
 * The atomic handoff (DESIGN invariant 3), inside the caller's transaction:
 * mode escalating, waiting customer turns moved into history, the holding
 * message queued, and the Flex job recorded with the history range the
 * agent will see. A conversation already escalating or human is left alone.
 */
int handoff_escalate(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
			   const char *trigger, const char *reason, const char *summary)
{
	struct log_ids ids = { .conv = key };
	int rc;

	if (c->mode != MODE_AI)
		return 0;
	if ((rc = handoff_drain_pend(r, txn, key, c)) || (rc = handoff_cancel_ai_sends(r, txn, key)))
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
	const struct config *ncfg = router_cfg(r, key);
	uint64_t last = c->seq, opens = 0, now = clock_wall_ms();
	char *hold = handoff_holding_message(r, key, &opens);
	/* Outside business hours with handoff.after_hours=queue the task is
	 * created at the opening, not now when no one would take it. */
	bool queue = opens > now && !strcmp(ncfg->handoff_after_hours, "queue");
	struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = now,
			     .op = OP_HANDOFF, .hfrom = handoff_first(r, last), .upto = last,
			     .trigger = (char *)trigger, .reason = (char *)reason,
			     .summary = (char *)summary, .not_before = queue ? opens : 0 };
	rc = router_job_add_at(r, txn, &j, &c->handoff_job,
			       queue ? clock_mono_ms() + (opens - now) : 0);
	if (rc == 0 && *hold) {
		struct hist_rec hm = { .role = ROLE_AI, .text = hold, .ts = now };
		if ((rc = store_hist_append(&r->st, txn, key, c, &hm)) == 0)
			rc = outbox_queue(r, txn, key, c, hold, c->seq, false, 0);
	}
	free(hold);
	if (rc)
		return rc;
	c->queued_until = queue ? opens : 0;
	if (queue) {
		char iso[40];
		clock_iso8601(opens, iso, sizeof(iso));
		char *d = xasprintf("until %s (business hours %s)", iso, ncfg->business_hours);
		rc = store_tl_add(&r->st, txn, key, c, "handoff_queued", d);
		free(d);
		if (rc)
			return rc;
	}
	char *detail = xasprintf("%s: %s", trigger, reason ? reason : "");
	rc = store_tl_add(&r->st, txn, key, c, "escalated", detail);
	free(detail);
	if (rc || (rc = handoff_set_mode(r, txn, key, c, MODE_ESCALATING)))
		return rc;
	c->escalations++;
	c->esc_at = clock_wall_ms();
	c->last_activity = c->esc_at;
	c->accepted_at = c->first_agent_at = c->no_agent_done = 0;
	free(c->esc_trigger);
	free(c->esc_reason);
	c->esc_trigger = xstrdup(trigger);
	c->esc_reason = xstrdup(reason ? reason : "");
	r->stat_escalations++;
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
int handoff_back(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
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
	rc = store_hist_append(&r->st, txn, key, c, &h);
	free(note);
	if (rc || (rc = store_tl_add(&r->st, txn, key, c, "handed_back", path)) ||
	    (rc = handoff_set_mode(r, txn, key, c, MODE_AI)))
		return rc;
	if (close_flex && (c->flex_ch || c->flex_kd)) {
		/* The close carries the SIDs it closes: a new escalation may
		 * replace the conversation's before it runs. */
		struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = now,
				     .op = OP_CLOSE, .ch = c->flex_ch, .kd = c->flex_kd,
				     .uo = c->flex_uo };
		uint64_t id;
		if ((rc = router_job_add(r, txn, &j, &id)))
			return rc;
	}
	metrics_inc(&RM_HANDBACKS, metrics_label_in(path, RM_HANDBACKS.init[0]), NULL);
	log_emit(LOG_INFO, &ids, "handed back to the AI (%s)", path);
	return 0;
}

/* Nobody took the handoff in time (or the task was canceled). */
static int handoff_no_agent(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
			   const char *why)
{
	struct log_ids ids = { .conv = key };
	int rc;
	if (c->mode == MODE_AI || c->no_agent_done)
		return 0;
	c->no_agent_done = clock_wall_ms();
	if ((rc = store_tl_add(&r->st, txn, key, c, "no_agent", why)))
		return rc;
	const struct config *ncfg = router_cfg(r, key);
	bool back = !strcmp(r->cfg->handoff_no_agent_policy, "ai");
	const char *msg = back ? ncfg->handoff_no_agent_ai_message : ncfg->handoff_no_agent_message;
	log_emit(LOG_WARN, &ids, "no agent (%s): %s", why, back ? "back to the AI" : "telling the "
		 "customer, still waiting");
	if (*msg) {
		struct hist_rec h = { .role = ROLE_AI, .text = (char *)msg, .ts = clock_wall_ms() };
		if ((rc = store_hist_append(&r->st, txn, key, c, &h)) ||
		    (rc = outbox_queue(r, txn, key, c, msg, c->seq, false, 0)))
			return rc;
	}
	return back ? handoff_back(r, txn, key, c, "no_agent", true) : 0;
}

/* A handoff attempt failed: retry the (idempotent) pipeline, or give up
 * after handoff.max_attempts and give the conversation back to the AI. */
static int handoff_failed(struct router *r, MDB_txn *txn, const struct envelope *env,
				 struct job_rec *j, struct conv_rec *c, const struct log_ids *ids)
{
	int rc;
	j->attempts++;
	if (j->attempts < r->cfg->handoff_max_attempts) {
		if ((rc = store_job_put(&r->st, txn, env->id, j)))
			return rc;
		uint64_t d = backoff_ms((unsigned)j->attempts, (uint64_t)r->cfg->handoff_retry_base_ms,
					ROUTER_FLEX_RETRY_CAP_MS, -1);
		struct effect *e = router_fx_push(r, FX_RETRY);
		e->id = env->id;
		e->not_before = clock_mono_ms() + d;
		log_emit(LOG_WARN, ids, "handoff attempt %lld failed (Twilio %lld: %s): retry in %llu ms",
			 (long long)j->attempts, (long long)env->code, env->err ? env->err : "",
			 (unsigned long long)d);
		return 0;
	}
	log_emit(LOG_ERROR, ids, "handoff failed for good after %lld attempts (Twilio %lld: %s): "
		 "conversation back to ai", (long long)j->attempts, (long long)env->code,
		 env->err ? env->err : "");
	if ((rc = store_job_del(&r->st, txn, env->id)))
		return rc;
	router_fx_push(r, FX_DONE)->id = env->id;
	metrics_inc(&RM_HANDOFFS_FAILED, NULL, NULL);
	c->handoff_job = 0;
	c->handoff_failures++;
	c->err_code = env->code;
	router_set_str(&c->err, env->err ? env->err : "handoff failed");
	if ((rc = store_tl_add(&r->st, txn, j->conv, c, "handoff_failed", c->err)))
		return rc;
	if (c->mode == MODE_ESCALATING && (rc = handoff_set_mode(r, txn, j->conv, c, MODE_AI)))
		return rc;
	if (c->flex_ch) {
		/* The attempt may have bound the customer to a conversation without a
		 * task: close it, or their messages would go where nobody reads. */
		struct job_rec cj = { .kind = JOB_FLEX, .conv = j->conv, .created = clock_wall_ms(),
				      .op = OP_CLOSE, .ch = c->flex_ch };
		uint64_t id;
		if ((rc = router_job_add(r, txn, &cj, &id)))
			return rc;
	}
	const char *msg = router_cfg(r, j->conv)->handoff_failure_message;
	if (*msg) {
		struct hist_rec h = { .role = ROLE_AI, .text = (char *)msg, .ts = clock_wall_ms() };
		if ((rc = store_hist_append(&r->st, txn, j->conv, c, &h)) ||
		    (rc = outbox_queue(r, txn, j->conv, c, msg, c->seq, false, env->id)))
			return rc;
	}
	return 0;
}

/* The result of a forward or close job: retried while Twilio says so and
 * attempts remain, else finished (logged when it failed). */
static int handoff_job_end(struct router *r, MDB_txn *txn, const struct envelope *env,
			   struct job_rec *j, const struct log_ids *ids)
{
	int rc;
	if (env->status != ST_OK && ++j->attempts < r->cfg->handoff_max_attempts &&
	    env->status == ST_RETRY) {
		if ((rc = store_job_put(&r->st, txn, env->id, j)) == 0) {
			struct effect *e = router_fx_push(r, FX_RETRY);
			e->id = env->id;
			e->not_before = clock_mono_ms() + backoff_ms((unsigned)j->attempts,
								     (uint64_t)r->cfg->handoff_retry_base_ms,
								     ROUTER_FLEX_RETRY_CAP_MS, -1);
		}
		return rc;
	}
	if (env->status != ST_OK)
		log_emit(LOG_ERROR, ids, "could not %s (Twilio %lld: %s)",
			 j->op && !strcmp(j->op, OP_CLOSE) ? "close the Flex side"
							   : "forward a customer message to Flex",
			 (long long)env->code, env->err ? env->err : "");
	if ((rc = store_job_del(&r->st, txn, env->id)) == 0)
		router_fx_push(r, FX_DONE)->id = env->id;
	return rc;
}

int handoff_result(struct router *r, MDB_txn *txn, struct item *it)
{
	struct envelope *env = &it->env;
	struct job_rec j;
	struct conv_rec c;
	struct log_ids ids = { .job = env->id };
	int rc = router_result_job(r, txn, env, JOB_FLEX, &j);

	if (rc)
		return rc == ROUTER_STALE ? 0 : rc;
	ids.conv = j.conv;
	if ((rc = store_conv_get(&r->st, txn, j.conv, &c))) {
		/* The conversation was purged: a close (kept on purpose) still ends
		 * its Flex side; anything else just ends. Either way dispatch must
		 * forget the job, or its lane would stay busy. */
		if (rc == MDB_NOTFOUND && env->status == ST_PROGRESS)
			rc = 0; /* its final result ends it */
		else if (rc == MDB_NOTFOUND && j.op && !strcmp(j.op, OP_CLOSE))
			rc = handoff_job_end(r, txn, env, &j, &ids);
		else if (rc == MDB_NOTFOUND && (rc = store_job_del(&r->st, txn, env->id)) == 0)
			router_fx_push(r, FX_DONE)->id = env->id;
		job_rec_release(&j);
		return rc;
	}
	bool handoff = j.op && !strcmp(j.op, OP_HANDOFF);
	if (env->status == ST_PROGRESS) {
		/* The conversation exists: agent messages in it can be matched from
		 * now on, even before the pipeline's final result arrives. */
		if (handoff && env->ch) {
			if (c.handoff_job == env->id)
				handoff_replace(&c.flex_ch, env->ch);
			rc = store_idx_put(&r->st, txn, "ch", env->ch, j.conv);
		}
	} else if (handoff && c.handoff_job != env->id) {
		/* Handed back while the pipeline ran: nothing to record. */
		log_emit(LOG_INFO, &ids, "late handoff result (conversation is %s): closing its Flex side",
			 conv_mode_name(c.mode));
		if ((rc = store_job_del(&r->st, txn, env->id)) == 0)
			router_fx_push(r, FX_DONE)->id = env->id;
		if (rc == 0 && env->status == ST_OK && env->ch) {
			struct job_rec cj = { .kind = JOB_FLEX, .conv = j.conv, .created = clock_wall_ms(),
					      .op = OP_CLOSE, .ch = env->ch, .kd = env->kd, .uo = env->uo };
			uint64_t id;
			rc = router_job_add(r, txn, &cj, &id);
		}
	} else if (handoff && env->status != ST_OK) {
		rc = handoff_failed(r, txn, env, &j, &c, &ids);
	} else if (handoff) {
		/* This handoff's SIDs, all of them: none may stay from an older one. */
		handoff_replace(&c.flex_ch, env->ch);
		handoff_replace(&c.flex_mb, env->mb);
		handoff_replace(&c.flex_kd, env->kd);
		handoff_replace(&c.flex_uo, env->uo);
		handoff_replace(&c.flex_wt, env->wt);
		c.handoff_job = 0;
		if (c.mode == MODE_ESCALATING)
			rc = handoff_set_mode(r, txn, j.conv, &c, MODE_HUMAN);
		if (rc == 0 && env->ch)
			rc = store_idx_put(&r->st, txn, "ch", env->ch, j.conv);
		if (rc == 0 && env->wt)
			rc = store_idx_put(&r->st, txn, "wt", env->wt, j.conv);
		if (rc == 0)
			rc = store_tl_add(&r->st, txn, j.conv, &c, "task_created",
					  env->wt ? env->wt : (env->kd ? env->kd : ""));
		if (rc == 0 && (rc = store_job_del(&r->st, txn, env->id)) == 0) {
			router_fx_push(r, FX_DONE)->id = env->id;
			log_emit(LOG_INFO, &ids, "handoff done: conversation %s, interaction %s, task %s; "
				 "mode human", env->ch ? env->ch : "?", env->kd ? env->kd : "?",
				 env->wt ? env->wt : "?");
		}
	} else {
		rc = handoff_job_end(r, txn, env, &j, &ids);
	}
	if (rc == 0) {
		c.updated = clock_wall_ms();
		rc = store_conv_put(&r->st, txn, j.conv, &c);
	}
	conv_rec_release(&c);
	job_rec_release(&j);
	return rc;
}

/* The conversation an event is about: by Flex conversation, task, sent
 * message, customer address, or (timers) its key. *key is malloc'd. */
static int handoff_event_conv(struct router *r, MDB_txn *txn, const struct item *it,
			     char **key)
{
	const struct envelope *env = &it->env;
	int rc = MDB_NOTFOUND;
	*key = NULL;
	if (it->synthetic) {
		*key = xstrdup(env->conv);
		return 0;
	}
	if (!strncmp(env->op, "admin_", 6))
		return store_conv_find(&r->st, txn, env->from, env->to, key);
	if (env->wt && (rc = store_idx_get(&r->st, txn, "wt", env->wt, key)) == 0)
		return 0;
	if (env->ch && (rc = store_idx_get(&r->st, txn, "ch", env->ch, key)) == 0)
		return 0;
	if (!strcmp(env->op, EV_MESSAGE_FAILED) && env->sid)
		rc = store_idx_get(&r->st, txn, "sm", env->sid, key);
	return rc;
}

/* onMessageAdded in a Flex conversation baton knows. */
static int handoff_flex_message(struct router *r, MDB_txn *txn, const char *key,
			       struct conv_rec *c, const struct envelope *env)
{
	struct log_ids ids = { .conv = key, .sid = env->sid };
	int rc;
	const char *author = env->from;
	if (!strcmp(author, r->cfg->flex_bot_author) || !strcmp(author, "system"))
		return 0; /* our own injected history, or Twilio's: never loop */
	if (c->customer && !strcmp(author, c->customer)) {
		struct hist_rec h = { .role = ROLE_CUSTOMER, .text = env->body, .ts = env->ts,
				      .sid = env->sid };
		return turns_customer(r, txn, key, c, &h, true);
	}
	struct hist_rec h = { .role = ROLE_AGENT, .text = env->body, .ts = env->ts, .sid = env->sid,
			      .who = (char *)author };
	if ((rc = store_hist_append(&r->st, txn, key, c, &h)))
		return rc;
	router_set_str(&c->agent, author);
	c->last_activity = clock_wall_ms();
	if (!c->first_agent_at) {
		c->first_agent_at = c->last_activity;
		if ((rc = store_tl_add(&r->st, txn, key, c, "first_agent_reply", author)))
			return rc;
	}
	if (c->mode != MODE_HUMAN) {
		/* A person is writing: the bot must not talk over them, whatever the mode. */
		log_emit(LOG_INFO, &ids, "agent %s wrote while in %s mode: taking over", author,
			 conv_mode_name(c->mode));
		if (c->mode == MODE_AI && (rc = store_tl_add(&r->st, txn, key, c, "agent_takeover",
							      author)))
			return rc;
		if (c->mode == MODE_AI) {
			c->esc_at = c->last_activity;
			c->accepted_at = c->last_activity;
			c->ai_job = 0; /* its answer must not reach a customer a person has */
			if ((rc = handoff_drain_pend(r, txn, key, c)))
				return rc;
		}
		if ((rc = handoff_set_mode(r, txn, key, c, MODE_HUMAN)))
			return rc;
	}
	log_emit(LOG_INFO, &ids, "agent message recorded");
	return 0;
}

static bool handoff_is_current(const struct conv_rec *c, const struct envelope *env)
{
	return (env->wt && c->flex_wt && !strcmp(env->wt, c->flex_wt)) ||
	       (env->ch && c->flex_ch && !strcmp(env->ch, c->flex_ch));
}

/* Conversations/TaskRouter/status events, operator commands and timers. */
/* The fields each event needs; a frame without them is dropped, not followed. */
static bool handoff_event_complete(const struct item *it)
{
	const struct envelope *e = &it->env;
	const char *op = e->op;
	if (it->synthetic)
		return e->conv != NULL;
	if (!strcmp(op, EV_MESSAGE_ADDED))
		return e->ch && e->sid && e->from && e->body;
	if (!strcmp(op, EV_CONV_CLOSED))
		return e->ch != NULL;
	if (!strcmp(op, EV_TASK_DONE) || !strcmp(op, EV_TASK_CANCELED) || !strcmp(op, EV_ACCEPTED))
		return e->wt != NULL;
	if (!strcmp(op, EV_MESSAGE_FAILED))
		return e->sid != NULL;
	if (!strcmp(op, EV_ADMIN_HANDBACK) || !strcmp(op, EV_ADMIN_ESCALATE) ||
	    !strcmp(op, EV_ADMIN_PURGE))
		/* Bounded: the address becomes an LMDB key, and a key over LMDB's
		 * limit would fail the whole batch. */
		return e->from && strlen(e->from) <= ROUTER_ADDR_MAX &&
		       (!e->to || strlen(e->to) <= ROUTER_ADDR_MAX);
	return false;
}

int handoff_event(struct router *r, MDB_txn *txn, struct item *it)
{
	struct envelope *env = &it->env;
	struct conv_rec c;
	char *key = NULL;
	const char *op = env->op;
	struct log_ids ids = { .sid = env->sid };
	int rc;

	if (!handoff_event_complete(it)) {
		log_emit(LOG_WARN, &ids, "dropped a '%s' event without the fields it needs", op);
		router_fx_refuse(r, it, ST_FAILED, "event without the fields it needs");
		return 0;
	}

	if (env->sid && !strcmp(op, EV_MESSAGE_ADDED)) {
		if ((rc = store_seen_get(&r->st, txn, env->sid)) == 0) {
			router_fx_ack(r, it, ST_DUPLICATE);
			return 0;
		}
		if (rc != MDB_NOTFOUND)
			return rc;
	}
	rc = handoff_event_conv(r, txn, it, &key);
	if (rc == 0)
		rc = store_conv_get(&r->st, txn, key, &c);
	if (rc == MDB_NOTFOUND) {
		log_emit(LOG_INFO, &ids, "%s for a conversation baton does not know: ignored", op);
		router_fx_refuse(r, it, !strncmp(op, "admin_", 6) ? ST_FAILED : ST_OK,
				 "no such conversation");
		free(key);
		return 0;
	}
	if (rc) {
		free(key);
		return rc;
	}
	ids.conv = key;
	if (!strcmp(op, EV_ADMIN_PURGE)) {
		/* The record is gone afterwards: nothing to write back below. */
		rc = purge_conversation(r, txn, it, key, &c);
		conv_rec_release(&c);
		free(key);
		return rc;
	}
	if (!strcmp(op, EV_MESSAGE_ADDED)) {
		if ((rc = handoff_flex_message(r, txn, key, &c, env)) == 0)
			rc = store_seen_put(&r->st, txn, env->sid, env->ts);
	} else if (!strcmp(op, EV_CONV_CLOSED)) {
		if (handoff_is_current(&c, env))
			rc = handoff_back(r, txn, key, &c, "agent_closed", false);
	} else if (!strcmp(op, EV_TASK_DONE)) {
		if (handoff_is_current(&c, env))
			rc = handoff_back(r, txn, key, &c, "task_completed", false);
	} else if (!strcmp(op, EV_TASK_CANCELED)) {
		if (handoff_is_current(&c, env))
			rc = handoff_no_agent(r, txn, key, &c, "task_canceled");
	} else if (!strcmp(op, EV_ACCEPTED)) {
		if (handoff_is_current(&c, env) && !c.accepted_at) {
			c.accepted_at = clock_wall_ms();
			router_set_str(&c.agent, env->name);
			rc = store_tl_add(&r->st, txn, key, &c, "accepted", env->name ? env->name : "");
		}
	} else if (!strcmp(op, EV_MESSAGE_FAILED)) {
		c.err_code = env->code;
		router_set_str(&c.err, env->reason ? env->reason : "message failed");
		if (env->code == TWILIO_ERR_WINDOW)
			rc = outbox_window_closed(r, txn, key, &c, "Twilio error 63016");
		log_emit(LOG_WARN, &ids, "Twilio reported message failure %lld", (long long)env->code);
	} else if (!strcmp(op, EV_ADMIN_HANDBACK)) {
		rc = handoff_back(r, txn, key, &c, "operator", true);
	} else if (!strcmp(op, EV_ADMIN_ESCALATE)) {
		rc = handoff_escalate(r, txn, key, &c, "operator", env->reason, NULL);
	} else if (!strcmp(op, EV_TIMER_NO_AGENT)) {
		rc = handoff_no_agent(r, txn, key, &c, "accept_timeout");
	} else if (!strcmp(op, EV_TIMER_IDLE)) {
		rc = handoff_back(r, txn, key, &c, "inactivity_timeout", true);
	} else {
		log_emit(LOG_WARN, &ids, "unknown event '%s' ignored", op);
	}
	if (rc == 0) {
		c.updated = clock_wall_ms();
		rc = store_conv_put(&r->st, txn, key, &c);
	}
	if (rc == 0)
		router_fx_ack(r, it, ST_OK);
	conv_rec_release(&c);
	free(key);
	return rc;
}
