/*
 * turns — a conversation in ai mode: customer turns in order (one AI job in
 * flight, later messages waiting in `pend`), AI results into history and
 * outbox, send results into history. See core.h.
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

/*
 * Starts the AI turn for the customer message at c->seq. With ai.burst_ms
 * the job waits that long in its lane, so the customer's next fragments
 * can still join it (turns_join_burst).
 */
static int turns_start_ai(struct batch *b, const char *key, struct conv_rec *c,
			  bool wait_burst)
{
	struct job_rec j = { .kind = JOB_AI, .conv = (char *)key, .created = clock_wall_ms(),
			     .upto = c->seq };
	uint64_t at = wait_burst && b->x->cfg->ai_burst_ms > 0 ?
		clock_mono_ms() + (uint64_t)b->x->cfg->ai_burst_ms : 0;
	return job_add(b, &j, &c->ai_job, at);
}

/*
 * A message from a customer whose AI turn has not reached a worker yet
 * (still in its burst wait, or added earlier in this batch): it joins that
 * turn, which will answer everything up to it. *joined tells whether it
 * did; if not, the turn is already being written and the message must
 * wait. Returns 0 or an LMDB error.
 */
static int turns_join_burst(struct batch *b, const char *key, struct conv_rec *c,
			    const struct hist_rec *h, bool *joined)
{
	struct job_rec j;
	int rc;

	*joined = false;
	if (b->x->cfg->ai_burst_ms <= 0 || dispatch_in_flight(b->x->disp, c->ai_job))
		return 0;
	if ((rc = store_job_get(b->st, b->txn, c->ai_job, &j)))
		return rc == MDB_NOTFOUND ? 0 : rc;
	if ((rc = store_hist_append(b->st, b->txn, key, c, h)) == 0) {
		j.upto = c->seq;
		rc = store_job_put(b->st, b->txn, c->ai_job, &j);
	}
	job_rec_release(&j);
	*joined = rc == 0;
	return rc;
}

static bool turns_is_reset(const char *text)
{
	while (*text == ' ')
		text++;
	size_t n = strlen(text);
	while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\n'))
		n--;
	return n == 5 && strncasecmp(text, "reset", 5) == 0;
}

/*
 * A customer message, from the Messaging webhook or (via_flex) seen in the
 * agent's Flex conversation. In ai mode: answered by the AI in turn, or
 * escalated by a rule. Otherwise: history, and forwarded to the agent
 * unless it already is in the Flex conversation.
 */
int turns_customer(struct batch *b, const char *key,
				struct conv_rec *c, const struct hist_rec *h, bool via_flex)
{
	const char *phrase = NULL;
	int rc;
	bool rule = c->mode == MODE_AI && rules_match(b->x->rules, h->text, &phrase);

	metrics_inc(&RM_MESSAGES, conv_mode_name(c->mode), NULL);
	c->turns++;
	c->last_in = h->ts;
	c->updated = clock_wall_ms();
	if (c->window_closed)
		c->window_closed = 0; /* the customer wrote: the window is open again */
	if (c->mode == MODE_AI && c->ai_job) {
		bool joined = false;
		if (!rule && (rc = turns_join_burst(b, key, c, h, &joined)))
			return rc;
		/* Otherwise a reply is being written: this message waits its turn. */
		if (!joined && (rc = store_pend_push(b->st, b->txn, key, c, h)))
			return rc;
	} else if ((rc = store_hist_append(b->st, b->txn, key, c, h))) {
		return rc;
	}
	if (c->mode != MODE_AI) {
		c->last_activity = c->updated;
		if (b->x->cfg->debug_reset_word && turns_is_reset(h->text))
			return handoff_back(b, key, c, "reset", true);
		return via_flex ? 0 : handoff_forward(b, key, c->seq);
	}
	if (rule) {
		char *why = xasprintf("customer wrote '%s'", phrase);
		rc = handoff_escalate(b, key, c, "rule", why, NULL);
		free(why);
		return rc;
	}
	return c->ai_job ? 0 : turns_start_ai(b, key, c, true);
}

int turns_inbound(struct batch *b, struct item *it)
{
	struct envelope *env = &it->env;
	struct log_ids ids = { .sid = env->sid };
	struct conv_rec c;
	char *key = NULL;
	int rc;

	if (strlen(env->sid) > ROUTER_SID_MAX || strlen(env->from) > ROUTER_ADDR_MAX ||
	    strlen(env->to) > ROUTER_ADDR_MAX) {
		log_emit(LOG_WARN, &ids, "refused inbound message: id or address too long");
		batch_ack(b, it, ST_FAILED, "id or address too long");
		return 0;
	}
	rc = store_seen_get(b->st, b->txn, env->sid);
	if (rc == 0) {
		log_emit(LOG_INFO, &ids, "duplicate delivery acknowledged, not processed again");
		b->x->stats.dups++;
		metrics_inc(&RM_DUPLICATES, NULL, NULL);
		batch_ack(b, it, ST_DUPLICATE, NULL);
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return rc;

	key = convkey_join(env->from, env->to);
	ids.conv = key;
	rc = store_conv_get(b->st, b->txn, key, &c);
	if (rc == MDB_NOTFOUND) {
		memset(&c, 0, sizeof(c));
		c.mode = MODE_AI;
		c.created = clock_wall_ms();
		c.customer = xstrdup(env->from);
		c.business = xstrdup(env->to);
	} else if (rc) {
		goto out;
	}
	if (env->name && *env->name) {
		free(c.name);
		c.name = xstrdup(env->name);
	}
	struct hist_rec h = { .role = ROLE_CUSTOMER, .text = env->body, .ts = env->ts,
			      .sid = env->sid, .nmedia = env->nmedia, .media = env->media };
	if ((rc = turns_customer(b, key, &c, &h, false)))
		goto out;
	if ((rc = store_conv_put(b->st, b->txn, key, &c)) ||
	    (rc = store_seen_put(b->st, b->txn, env->sid, env->ts)))
		goto out;
	b->x->stats.msgs++;
	log_emit(LOG_INFO, &ids, "customer message stored (mode %s)", conv_mode_name(c.mode));
	batch_ack(b, it, ST_OK, NULL);
out:
	conv_rec_release(&c);
	free(key);
	return rc;
}

/*
 * After an AI turn ends: the next waiting customer message gets its turn.
 * With ai.burst_ms every waiting message joins that one turn: they
 * arrived while the last reply was written, which is the burst.
 */
static int turns_next(struct batch *b, const char *key, struct conv_rec *c)
{
	struct hist_rec h;
	int rc, moved = 0;

	do {
		rc = store_pend_pop(b->st, b->txn, key, c, &h);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc)
			return rc;
		rc = store_hist_append(b->st, b->txn, key, c, &h);
		hist_rec_release(&h);
		if (rc)
			return rc;
		moved++;
	} while (b->x->cfg->ai_burst_ms > 0);
	if (moved && c->mode == MODE_AI)
		return turns_start_ai(b, key, c, false);
	return 0;
}

int turns_result_ai(struct batch *b, struct item *it)
{
	struct envelope *env = &it->env;
	struct job_rec j;
	struct conv_rec c;
	struct log_ids ids = { .job = env->id };
	int rc = batch_job_of(b, env, JOB_AI, &j);

	if (rc)
		return rc == BATCH_STALE ? 0 : rc;
	ids.conv = j.conv;
	if ((rc = store_conv_get(b->st, b->txn, j.conv, &c))) {
		log_emit(LOG_ERROR, &ids, "AI job without conversation: %s", mdb_strerror(rc));
		job_rec_release(&j);
		return rc == MDB_NOTFOUND ? job_finish(b, env->id) : rc;
	}
	if ((rc = job_finish(b, env->id)))
		goto out;
	if (c.ai_job != env->id) {
		/* Superseded: the conversation escalated (or an agent took over)
		 * while this answer was being written. */
		log_emit(LOG_INFO, &ids, "dropped AI reply: no longer the conversation's turn (%s mode)",
			 conv_mode_name(c.mode));
		goto out;
	}
	c.ai_job = 0;
	if ((rc = voice_store_transcripts(b, j.conv, env->transcripts)))
		goto out;

	const char *text = env->text;
	bool failed_for_good = env->status == ST_RETRY || env->status == ST_FAILED;
	if (c.mode == MODE_AI && env->status == ST_OK && env->escalate) {
		log_emit(LOG_INFO, &ids, "model asked to escalate (%s, reason: %s)",
			 env->trigger ? env->trigger : "tag", env->reason ? env->reason : "none given");
		rc = handoff_escalate(b, j.conv, &c, env->trigger ? env->trigger : "tag",
				     env->reason && *env->reason ? env->reason : "model asked for a human",
				     env->summary);
		if (rc)
			goto out;
		text = NULL; /* the holding message speaks for the handoff */
	} else if (c.mode == MODE_AI && failed_for_good &&
		   b->x->cfg->ai_on_failure == CONFIG_ON_FAILURE_ESCALATE) {
		log_emit(LOG_WARN, &ids, "AI unavailable (%s): escalating",
			 env->err ? env->err : "no detail");
		if ((rc = handoff_escalate(b, j.conv, &c, "ai_failure", "ai_unavailable", NULL)))
			goto out;
		text = NULL;
	} else if (env->status != ST_OK) {
		log_emit(LOG_WARN, &ids, "AI failed (%s): sending the apology",
			 env->err ? env->err : "no detail");
		text = rctx_cfg(b->x, j.conv)->ai_apology;
	}
	if (c.mode != MODE_AI && text) {
		log_emit(LOG_INFO, &ids, "dropped AI reply: conversation is in %s mode",
			 conv_mode_name(c.mode));
	} else if (text && *text) {
		struct hist_rec h = { .role = ROLE_AI, .text = (char *)text, .ts = clock_wall_ms(),
				      .escalate = env->escalate };
		if ((rc = store_hist_append(b->st, b->txn, j.conv, &c, &h)) ||
		    (rc = outbox_queue(b, j.conv, &c, text, c.seq, env->status == ST_OK,
					  env->id)))
			goto out;
		log_emit(LOG_INFO, &ids, "AI reply recorded and queued for sending");
	}
	if (c.mode == MODE_AI && (rc = turns_next(b, j.conv, &c)))
		goto out;
	c.updated = clock_wall_ms();
	rc = store_conv_put(b->st, b->txn, j.conv, &c);
out:
	conv_rec_release(&c);
	job_rec_release(&j);
	return rc;
}

int turns_result_send(struct batch *b, struct item *it)
{
	struct envelope *env = &it->env;
	struct job_rec j;
	struct log_ids ids = { .job = env->id, .sid = env->sid };
	int rc = batch_job_of(b, env, JOB_SEND, &j);

	if (rc)
		return rc == BATCH_STALE ? 0 : rc;
	ids.conv = j.conv;
	if (env->status == ST_OK && env->sid && *env->sid) {
		/* A SID recorded before belongs to another send: a reconciling
		 * egress took an older message with the same words for this one.
		 * It looks again without it. */
		char *owner = NULL;
		rc = store_idx_get(b->st, b->txn, "sm", env->sid, &owner);
		free(owner);
		if (rc == 0) {
			char *ex = j.exclude ? xasprintf("%s,%s", j.exclude, env->sid) : xstrdup(env->sid);
			free(j.exclude);
			j.exclude = ex;
			log_emit(LOG_WARN, &ids, "the message found for this send was recorded for another "
				 "one: looking again without it");
			rc = job_again(b, env->id, &j);
			job_rec_release(&j);
			return rc;
		}
		if (rc != MDB_NOTFOUND) {
			job_rec_release(&j);
			return rc;
		}
		rc = 0;
	}
	if (env->status == ST_OK) {
		struct hist_rec h;
		rc = store_hist_get(b->st, b->txn, j.conv, j.hseq, &h);
		if (rc == 0) {
			char *m = h.msid ? xasprintf("%s,%s", h.msid, env->sid ? env->sid : "")
					 : xstrdup(env->sid ? env->sid : "");
			free(h.msid);
			h.msid = m;
			rc = store_hist_put(b->st, b->txn, j.conv, j.hseq, &h);
			hist_rec_release(&h);
		} else if (rc == MDB_NOTFOUND) {
			rc = 0;
		}
		if (rc == 0 && env->sid && *env->sid)
			rc = store_idx_put(b->st, b->txn, "sm", env->sid, j.conv);
		if (rc == 0 && (rc = job_finish(b, env->id)) == 0)
			log_emit(LOG_INFO, &ids, "message sent");
	} else if (env->status == ST_RETRY) {
		/* The attempt may have reached Twilio: the next one looks first. */
		if (env->reconcile)
			dispatch_set_uncertain(b->x->disp, env->id, clock_wall_ms());
		uint64_t delay = 0;
		if ((rc = job_retry(b, env->id, &j, ROUTER_RETRY_BASE_MS, ROUTER_RETRY_CAP_MS,
				    &delay)) == 0)
			log_emit(LOG_WARN, &ids, "send failed for now (%s): retry %lld in %llu ms",
				 env->err ? env->err : "", (long long)j.attempts,
				 (unsigned long long)delay);
	} else {
		struct conv_rec c;
		log_emit(LOG_ERROR, &ids, "send failed for good: Twilio error %lld: %s",
			 (long long)env->code, env->err ? env->err : "");
		rc = store_conv_get(b->st, b->txn, j.conv, &c);
		if (rc == 0) {
			c.err_code = env->code;
			free(c.err);
			c.err = xstrdup(env->err ? env->err : "send failed");
			if (env->code == TWILIO_ERR_WINDOW)
				rc = outbox_window_closed(b, j.conv, &c, "Twilio error 63016");
			if (rc == 0)
				rc = store_conv_put(b->st, b->txn, j.conv, &c);
			conv_rec_release(&c);
		} else if (rc == MDB_NOTFOUND) {
			rc = 0;
		}
		if (rc == 0)
			rc = job_finish(b, env->id);
	}
	job_rec_release(&j);
	return rc;
}
