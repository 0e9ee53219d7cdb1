/*
 * router — apply envelopes to LMDB, acknowledge, dispatch; see router.h.
 *
 * Effects that must wait for the commit (acks, new jobs for dispatch,
 * finished jobs) are collected in r->fx while the transaction runs and
 * carried out after it commits — or turned into 503s and re-dispatches
 * when it does not.
 */
#include "router.h"

#include <errno.h>
#include <stdio.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zmq.h>

#include "backoff.h"
#include "clock.h"
#include "dispatch.h"
#include "hours.h"
#include "kv.h"
#include "envelope.h"
#include "log.h"
#include "rules.h"
#include "store.h"
#include "xalloc.h"
#include "zmqx.h"

/* WhatsApp via Twilio takes at most 1600 characters per message. */
#define ROUTER_BODY_CHARS 1600
/* Bounds on ids that become LMDB keys. */
#define ROUTER_SID_MAX 64
#define ROUTER_ADDR_MAX 128
/* Backoff of a send the egress gave up on (Twilio down): up to 5 min apart. */
#define ROUTER_RETRY_BASE_MS 1000
#define ROUTER_RETRY_CAP_MS (5 * 60 * 1000)
/* Backoff cap between attempts of the Flex pipeline (the first delay is
 * handoff.retry_base_ms); the worker already retried 429/5xx inside each. */
#define ROUTER_FLEX_RETRY_CAP_MS 30000

#define OP_HANDOFF "handoff"
#define OP_FORWARD "forward"
#define OP_CLOSE "close"
/* Synthetic events the router's own timers feed into the next batch. */
#define EV_TIMER_NO_AGENT "timer_no_agent"
#define EV_TIMER_IDLE "timer_idle"
/* Twilio: free-form WhatsApp message outside the 24 h window. */
#define TWILIO_ERR_WINDOW 63016
/* How often the timers look at conversations not in ai mode. */
#define ROUTER_CRON_MS 500

enum fx_type { FX_ACK, FX_ADD, FX_DONE, FX_RETRY };

struct effect {
	enum fx_type type;
	struct zmqx_peer peer; /* FX_ACK */
	uint64_t id;           /* request id (ACK) or job id */
	int status;            /* FX_ACK */
	enum job_kind kind;    /* FX_ADD */
	char *conv;            /* FX_ADD, owned */
	uint64_t not_before;   /* FX_RETRY */
};

struct item {
	bool from_ingress;
	bool synthetic; /* made by the router's timers: no peer, no ack */
	struct zmqx_peer peer;
	struct envelope env;
};

struct router {
	const struct config *cfg;
	struct rules *rules;
	struct hours hours;
	uint64_t next_cron;
	struct store st;
	struct dispatch *disp;
	void *zctx, *ingress, *work;
	struct item *items;
	size_t nitems;
	struct effect *fx;
	size_t nfx, capfx;
	uint64_t stat_msgs, stat_dups, stat_commits, stat_escalations;
};

static struct effect *fx_push(struct router *r, enum fx_type type)
{
	if (r->nfx == r->capfx) {
		r->capfx = r->capfx ? r->capfx * 2 : 64;
		r->fx = xrealloc(r->fx, r->capfx * sizeof(*r->fx));
	}
	struct effect *e = &r->fx[r->nfx++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	return e;
}

static void fx_ack(struct router *r, const struct item *it, int status)
{
	if (it->synthetic)
		return;
	struct effect *e = fx_push(r, FX_ACK);
	e->peer = it->peer;
	e->id = it->env.id;
	e->status = status;
}

static int router_job_add(struct router *r, MDB_txn *txn, const struct job_rec *j, uint64_t *id)
{
	int rc = store_job_add(&r->st, txn, j, id);
	if (rc)
		return rc;
	struct effect *e = fx_push(r, FX_ADD);
	e->id = *id;
	e->kind = j->kind;
	e->conv = xstrdup(j->conv);
	return 0;
}

/* Starts the AI turn for the customer message at c->seq. */
static int router_start_ai(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c)
{
	struct job_rec j = { .kind = JOB_AI, .conv = (char *)key, .created = clock_wall_ms(),
			     .upto = c->seq };
	return router_job_add(r, txn, &j, &c->ai_job);
}

/* Byte length of the longest prefix of s with at most max code points,
 * cut after the last whitespace in it when there is one. */
static size_t router_cut(const char *s, size_t max)
{
	size_t i = 0, chars = 0, last_space = 0;
	while (s[i] && chars < max) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
		if (c == ' ' || c == '\n')
			last_space = i + 1;
		for (size_t k = 0; k < n && s[i]; k++)
			i++;
		chars++;
	}
	if (!s[i])
		return i;
	return last_space ? last_space : i;
}

/* ContentVariables for the window template: %t becomes the text, JSON-escaped. */
static char *router_template_vars(const struct router *r, const char *text)
{
	json_t *js = json_string(text);
	char *q = js ? json_dumps(js, JSON_ENCODE_ANY) : xstrdup("\"\"");
	json_decref(js);
	size_t ql = strlen(q);
	char *esc = xstrndup(q + 1, ql >= 2 ? ql - 2 : 0); /* without the quotes */
	free(q);
	const char *t = r->cfg->whatsapp_template_vars, *mark = strstr(t, "%t");
	char *out = mark ? xasprintf("%.*s%s%s", (int)(mark - t), t, esc, mark + 2) : xstrdup(t);
	free(esc);
	return out;
}

static bool router_window_open(const struct router *r, const struct conv_rec *c)
{
	uint64_t now = clock_wall_ms();
	return !c->last_in || now < c->last_in + (uint64_t)r->cfg->whatsapp_window_s * 1000u;
}

static int router_window_closed(struct router *r, MDB_txn *txn, const char *key,
				struct conv_rec *c, const char *why)
{
	struct log_ids ids = { .conv = key };
	bool first = !c->window_closed;
	c->window_closed = clock_wall_ms();
	log_emit(LOG_WARN, &ids, "WhatsApp window closed (%s): message not sent, conversation marked "
		 "window_closed for the operator", why);
	return first ? store_tl_add(&r->st, txn, key, c, "window_closed", why) : 0;
}

/* Queues text for the customer, split into WhatsApp-sized messages. Outside
 * the 24 h window it sends the configured template instead, or nothing. */
static int router_queue_send(struct router *r, MDB_txn *txn, const char *key,
			     struct conv_rec *c, const char *text, uint64_t hseq)
{
	const char *from = r->cfg->twilio_whatsapp_from[0] ? r->cfg->twilio_whatsapp_from : c->business;
	const char *p = text;
	if (!router_window_open(r, c)) {
		if (!r->cfg->whatsapp_template_sid[0])
			return router_window_closed(r, txn, key, c, "free-form message after 24 h");
		char *vars = router_template_vars(r, text);
		struct job_rec j = { .kind = JOB_SEND, .conv = (char *)key, .created = clock_wall_ms(),
				     .hseq = hseq, .to = c->customer, .from = (char *)from,
				     .body = (char *)text, .tmpl = r->cfg->whatsapp_template_sid,
				     .vars = vars };
		uint64_t id;
		int rc = router_job_add(r, txn, &j, &id);
		free(vars);
		return rc;
	}
	while (*p) {
		size_t n = router_cut(p, ROUTER_BODY_CHARS);
		char *part = xstrndup(p, n);
		struct job_rec j = { .kind = JOB_SEND, .conv = (char *)key, .created = clock_wall_ms(),
				     .hseq = hseq, .to = c->customer, .from = (char *)from,
				     .body = part };
		uint64_t id;
		int rc = router_job_add(r, txn, &j, &id);
		free(part);
		if (rc)
			return rc;
		p += n;
	}
	return 0;
}

/* Every mode change goes through here: the modes index feeds the timers. */
static int router_set_mode(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
			   enum conv_mode mode)
{
	c->mode = mode;
	return store_modes_sync(&r->st, txn, key, c);
}

/* Queues a customer turn for the agent's Flex conversation. It waits in the
 * conversation's flex lane behind the handoff, so it arrives after the
 * history and in order. */
static int router_forward(struct router *r, MDB_txn *txn, const char *key, uint64_t seq)
{
	struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = clock_wall_ms(),
			     .op = OP_FORWARD, .hseq = seq };
	uint64_t id;
	return router_job_add(r, txn, &j, &id);
}

/* The holding message, or outside business hours the closed message with
 * the hours in it. Caller frees. */
static char *router_holding_message(const struct router *r)
{
	if (hours_open(&r->hours, clock_wall_ms(), r->cfg->business_utc_offset_min))
		return xstrdup(r->cfg->handoff_holding_message);
	const char *t = r->cfg->handoff_closed_message, *mark = strstr(t, "%h");
	if (!mark)
		return xstrdup(t);
	return xasprintf("%.*s%s%s", (int)(mark - t), t, r->cfg->business_hours, mark + 2);
}

static uint64_t router_handoff_first(const struct router *r, uint64_t last)
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
static int router_escalate(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
			   const char *trigger, const char *reason, const char *summary)
{
	struct log_ids ids = { .conv = key };
	struct hist_rec h;
	int rc;

	if (c->mode != MODE_AI)
		return 0;
	while ((rc = store_pend_pop(&r->st, txn, key, c, &h)) == 0) {
		rc = store_hist_append(&r->st, txn, key, c, &h);
		hist_rec_release(&h);
		if (rc)
			return rc;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	uint64_t last = c->seq;
	struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = clock_wall_ms(),
			     .op = OP_HANDOFF, .hfrom = router_handoff_first(r, last), .upto = last,
			     .trigger = (char *)trigger, .reason = (char *)reason,
			     .summary = (char *)summary };
	if ((rc = router_job_add(r, txn, &j, &c->handoff_job)))
		return rc;
	char *hold = router_holding_message(r);
	if (*hold) {
		struct hist_rec hm = { .role = ROLE_AI, .text = hold, .ts = clock_wall_ms() };
		if ((rc = store_hist_append(&r->st, txn, key, c, &hm)) ||
		    (rc = router_queue_send(r, txn, key, c, hold, c->seq))) {
			free(hold);
			return rc;
		}
	}
	free(hold);
	char *detail = xasprintf("%s: %s", trigger, reason ? reason : "");
	rc = store_tl_add(&r->st, txn, key, c, "escalated", detail);
	free(detail);
	if (rc || (rc = router_set_mode(r, txn, key, c, MODE_ESCALATING)))
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
static int router_handback(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
			   const char *path, bool close_flex)
{
	struct log_ids ids = { .conv = key };
	char from[32], to[32];
	int rc;

	if (c->mode == MODE_AI)
		return 0;
	if (c->handoff_job) {
		/* Still escalating: the pipeline's result will find its job gone. */
		if ((rc = store_job_del(&r->st, txn, c->handoff_job)) && rc != MDB_NOTFOUND)
			return rc;
		fx_push(r, FX_DONE)->id = c->handoff_job;
		c->handoff_job = 0;
	}
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
	    (rc = router_set_mode(r, txn, key, c, MODE_AI)))
		return rc;
	if (close_flex && (c->flex_ch || c->flex_kd)) {
		struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = now,
				     .op = OP_CLOSE };
		uint64_t id;
		if ((rc = router_job_add(r, txn, &j, &id)))
			return rc;
	}
	log_emit(LOG_INFO, &ids, "handed back to the AI (%s)", path);
	return 0;
}

/* Nobody took the handoff in time (or the task was canceled). */
static int router_no_agent(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
			   const char *why)
{
	struct log_ids ids = { .conv = key };
	int rc;
	if (c->mode == MODE_AI || c->no_agent_done)
		return 0;
	c->no_agent_done = clock_wall_ms();
	if ((rc = store_tl_add(&r->st, txn, key, c, "no_agent", why)))
		return rc;
	bool back = !strcmp(r->cfg->handoff_no_agent_policy, "ai");
	const char *msg = back ? r->cfg->handoff_no_agent_ai_message : r->cfg->handoff_no_agent_message;
	log_emit(LOG_WARN, &ids, "no agent (%s): %s", why, back ? "back to the AI" : "telling the "
		 "customer, still waiting");
	if (*msg) {
		struct hist_rec h = { .role = ROLE_AI, .text = (char *)msg, .ts = clock_wall_ms() };
		if ((rc = store_hist_append(&r->st, txn, key, c, &h)) ||
		    (rc = router_queue_send(r, txn, key, c, msg, c->seq)))
			return rc;
	}
	return back ? router_handback(r, txn, key, c, "no_agent", true) : 0;
}

static bool router_is_reset(const char *text)
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
static int router_customer_turn(struct router *r, MDB_txn *txn, const char *key,
				struct conv_rec *c, const struct hist_rec *h, bool via_flex)
{
	const char *phrase = NULL;
	int rc;
	bool rule = c->mode == MODE_AI && rules_match(r->rules, h->text, &phrase);

	c->turns++;
	c->last_in = h->ts;
	c->updated = clock_wall_ms();
	if (c->window_closed)
		c->window_closed = 0; /* the customer wrote: the window is open again */
	if (c->mode == MODE_AI && c->ai_job) {
		/* A reply is being written: this message waits its turn. */
		if ((rc = store_pend_push(&r->st, txn, key, c, h)))
			return rc;
	} else if ((rc = store_hist_append(&r->st, txn, key, c, h))) {
		return rc;
	}
	if (c->mode != MODE_AI) {
		c->last_activity = c->updated;
		if (r->cfg->debug_reset_word && router_is_reset(h->text))
			return router_handback(r, txn, key, c, "reset", true);
		return via_flex ? 0 : router_forward(r, txn, key, c->seq);
	}
	if (rule) {
		char *why = xasprintf("customer wrote '%s'", phrase);
		rc = router_escalate(r, txn, key, c, "rule", why, NULL);
		free(why);
		return rc;
	}
	return c->ai_job ? 0 : router_start_ai(r, txn, key, c);
}

static int router_inbound(struct router *r, MDB_txn *txn, struct item *it)
{
	struct envelope *env = &it->env;
	struct log_ids ids = { .sid = env->sid };
	struct conv_rec c;
	char *key = NULL;
	int rc;

	if (strlen(env->sid) > ROUTER_SID_MAX || strlen(env->from) > ROUTER_ADDR_MAX ||
	    strlen(env->to) > ROUTER_ADDR_MAX) {
		log_emit(LOG_WARN, &ids, "refused inbound message: id or address too long");
		fx_ack(r, it, ST_FAILED);
		return 0;
	}
	rc = store_seen_get(&r->st, txn, env->sid);
	if (rc == 0) {
		log_emit(LOG_INFO, &ids, "duplicate delivery acknowledged, not processed again");
		r->stat_dups++;
		fx_ack(r, it, ST_DUPLICATE);
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return rc;

	key = store_conv_key(env->from, env->to);
	ids.conv = key;
	rc = store_conv_get(&r->st, txn, key, &c);
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
			      .sid = env->sid, .nmedia = env->nmedia };
	if ((rc = router_customer_turn(r, txn, key, &c, &h, false)))
		goto out;
	if ((rc = store_conv_put(&r->st, txn, key, &c)) ||
	    (rc = store_seen_put(&r->st, txn, env->sid, env->ts)))
		goto out;
	r->stat_msgs++;
	log_emit(LOG_INFO, &ids, "customer message stored (mode %s)", conv_mode_name(c.mode));
	fx_ack(r, it, ST_OK);
out:
	conv_rec_release(&c);
	free(key);
	return rc;
}

/* After an AI turn ends: the next waiting customer message gets its turn. */
static int router_next_turn(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c)
{
	struct hist_rec h;
	int rc = store_pend_pop(&r->st, txn, key, c, &h);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	rc = store_hist_append(&r->st, txn, key, c, &h);
	hist_rec_release(&h);
	if (rc == 0 && c->mode == MODE_AI)
		rc = router_start_ai(r, txn, key, c);
	return rc;
}

static int router_result_ai(struct router *r, MDB_txn *txn, struct item *it)
{
	struct envelope *env = &it->env;
	struct job_rec j;
	struct conv_rec c;
	struct log_ids ids = { .job = env->id };
	int rc = store_job_get(&r->st, txn, env->id, &j);

	if (rc == MDB_NOTFOUND || (rc == 0 && j.kind != JOB_AI)) {
		log_emit(LOG_INFO, &ids, "dropped a stale AI result (job already finished)");
		if (rc == 0)
			job_rec_release(&j);
		return 0;
	}
	if (rc)
		return rc;
	ids.conv = j.conv;
	if ((rc = store_conv_get(&r->st, txn, j.conv, &c))) {
		log_emit(LOG_ERROR, &ids, "AI job without conversation: %s", mdb_strerror(rc));
		job_rec_release(&j);
		return rc == MDB_NOTFOUND ? store_job_del(&r->st, txn, env->id) : rc;
	}
	if ((rc = store_job_del(&r->st, txn, env->id)))
		goto out;
	fx_push(r, FX_DONE)->id = env->id;
	if (c.ai_job == env->id)
		c.ai_job = 0;

	const char *text = env->text;
	bool failed_for_good = env->status == ST_RETRY || env->status == ST_FAILED;
	if (c.mode == MODE_AI && env->status == ST_OK && env->escalate) {
		log_emit(LOG_INFO, &ids, "model asked to escalate (%s, reason: %s)",
			 env->trigger ? env->trigger : "tag", env->reason ? env->reason : "none given");
		rc = router_escalate(r, txn, j.conv, &c, env->trigger ? env->trigger : "tag",
				     env->reason && *env->reason ? env->reason : "model asked for a human",
				     env->summary);
		if (rc)
			goto out;
		text = NULL; /* the holding message speaks for the handoff */
	} else if (c.mode == MODE_AI && failed_for_good &&
		   !strcmp(r->cfg->ai_on_failure, "escalate")) {
		log_emit(LOG_WARN, &ids, "AI unavailable (%s): escalating",
			 env->err ? env->err : "no detail");
		if ((rc = router_escalate(r, txn, j.conv, &c, "ai_failure", "ai_unavailable", NULL)))
			goto out;
		text = NULL;
	} else if (env->status != ST_OK) {
		log_emit(LOG_WARN, &ids, "AI failed (%s): sending the apology",
			 env->err ? env->err : "no detail");
		text = r->cfg->ai_apology;
	}
	if (c.mode != MODE_AI && text) {
		log_emit(LOG_INFO, &ids, "dropped AI reply: conversation is in %s mode",
			 conv_mode_name(c.mode));
	} else if (text && *text) {
		struct hist_rec h = { .role = ROLE_AI, .text = (char *)text, .ts = clock_wall_ms(),
				      .escalate = env->escalate };
		if ((rc = store_hist_append(&r->st, txn, j.conv, &c, &h)) ||
		    (rc = router_queue_send(r, txn, j.conv, &c, text, c.seq)))
			goto out;
		log_emit(LOG_INFO, &ids, "AI reply recorded and queued for sending");
	}
	if (c.mode == MODE_AI && (rc = router_next_turn(r, txn, j.conv, &c)))
		goto out;
	c.updated = clock_wall_ms();
	rc = store_conv_put(&r->st, txn, j.conv, &c);
out:
	conv_rec_release(&c);
	job_rec_release(&j);
	return rc;
}

static void router_set(char **dst, const char *v)
{
	if (v && *v) {
		free(*dst);
		*dst = xstrdup(v);
	}
}

/* A handoff attempt failed: retry the (idempotent) pipeline, or give up
 * after handoff.max_attempts and give the conversation back to the AI. */
static int router_handoff_failed(struct router *r, MDB_txn *txn, const struct envelope *env,
				 struct job_rec *j, struct conv_rec *c, const struct log_ids *ids)
{
	int rc;
	j->attempts++;
	if (j->attempts < r->cfg->handoff_max_attempts) {
		if ((rc = store_job_put(&r->st, txn, env->id, j)))
			return rc;
		uint64_t d = backoff_ms((unsigned)j->attempts, (uint64_t)r->cfg->handoff_retry_base_ms,
					ROUTER_FLEX_RETRY_CAP_MS, -1);
		struct effect *e = fx_push(r, FX_RETRY);
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
	fx_push(r, FX_DONE)->id = env->id;
	c->handoff_job = 0;
	c->handoff_failures++;
	c->err_code = env->code;
	router_set(&c->err, env->err ? env->err : "handoff failed");
	if ((rc = store_tl_add(&r->st, txn, j->conv, c, "handoff_failed", c->err)))
		return rc;
	if (c->mode == MODE_ESCALATING && (rc = router_set_mode(r, txn, j->conv, c, MODE_AI)))
		return rc;
	const char *msg = r->cfg->handoff_failure_message;
	if (*msg) {
		struct hist_rec h = { .role = ROLE_AI, .text = (char *)msg, .ts = clock_wall_ms() };
		if ((rc = store_hist_append(&r->st, txn, j->conv, c, &h)) ||
		    (rc = router_queue_send(r, txn, j->conv, c, msg, c->seq)))
			return rc;
	}
	return 0;
}

static int router_result_flex(struct router *r, MDB_txn *txn, struct item *it)
{
	struct envelope *env = &it->env;
	struct job_rec j;
	struct conv_rec c;
	struct log_ids ids = { .job = env->id };
	int rc = store_job_get(&r->st, txn, env->id, &j);

	if (rc == MDB_NOTFOUND || (rc == 0 && j.kind != JOB_FLEX)) {
		log_emit(LOG_INFO, &ids, "dropped a stale flex result (job already finished)");
		if (rc == 0)
			job_rec_release(&j);
		return 0;
	}
	if (rc)
		return rc;
	ids.conv = j.conv;
	if ((rc = store_conv_get(&r->st, txn, j.conv, &c))) {
		job_rec_release(&j);
		return rc == MDB_NOTFOUND ? store_job_del(&r->st, txn, env->id) : rc;
	}
	bool handoff = j.op && !strcmp(j.op, OP_HANDOFF);
	if (env->status == ST_PROGRESS) {
		/* The conversation exists: agent messages in it can be matched from
		 * now on, even before the pipeline's final result arrives. */
		if (handoff && c.handoff_job == env->id && env->ch) {
			router_set(&c.flex_ch, env->ch);
			rc = store_idx_put(&r->st, txn, "ch", env->ch, j.conv);
		}
	} else if (handoff && c.handoff_job != env->id) {
		/* Handed back while the pipeline ran: nothing to record. */
		log_emit(LOG_INFO, &ids, "late handoff result (conversation is %s): closing its Flex side",
			 conv_mode_name(c.mode));
		if ((rc = store_job_del(&r->st, txn, env->id)) == 0)
			fx_push(r, FX_DONE)->id = env->id;
		if (rc == 0 && env->status == ST_OK && env->ch) {
			router_set(&c.flex_ch, env->ch);
			router_set(&c.flex_kd, env->kd);
			router_set(&c.flex_uo, env->uo);
			router_set(&c.flex_wt, env->wt);
			struct job_rec cj = { .kind = JOB_FLEX, .conv = j.conv, .created = clock_wall_ms(),
					      .op = OP_CLOSE };
			uint64_t id;
			rc = router_job_add(r, txn, &cj, &id);
		}
	} else if (handoff && env->status != ST_OK) {
		rc = router_handoff_failed(r, txn, env, &j, &c, &ids);
	} else if (handoff) {
		router_set(&c.flex_ch, env->ch);
		router_set(&c.flex_mb, env->mb);
		router_set(&c.flex_kd, env->kd);
		router_set(&c.flex_uo, env->uo);
		router_set(&c.flex_wt, env->wt);
		c.handoff_job = 0;
		if (c.mode == MODE_ESCALATING)
			rc = router_set_mode(r, txn, j.conv, &c, MODE_HUMAN);
		if (rc == 0 && env->ch)
			rc = store_idx_put(&r->st, txn, "ch", env->ch, j.conv);
		if (rc == 0 && env->wt)
			rc = store_idx_put(&r->st, txn, "wt", env->wt, j.conv);
		if (rc == 0)
			rc = store_tl_add(&r->st, txn, j.conv, &c, "task_created",
					  env->wt ? env->wt : (env->kd ? env->kd : ""));
		if (rc == 0 && (rc = store_job_del(&r->st, txn, env->id)) == 0) {
			fx_push(r, FX_DONE)->id = env->id;
			log_emit(LOG_INFO, &ids, "handoff done: conversation %s, interaction %s, task %s; "
				 "mode human", env->ch ? env->ch : "?", env->kd ? env->kd : "?",
				 env->wt ? env->wt : "?");
		}
	} else if (env->status != ST_OK && ++j.attempts < r->cfg->handoff_max_attempts &&
		   env->status == ST_RETRY) {
		if ((rc = store_job_put(&r->st, txn, env->id, &j)) == 0) {
			struct effect *e = fx_push(r, FX_RETRY);
			e->id = env->id;
			e->not_before = clock_mono_ms() + backoff_ms((unsigned)j.attempts,
								     (uint64_t)r->cfg->handoff_retry_base_ms,
								     ROUTER_FLEX_RETRY_CAP_MS, -1);
		}
	} else {
		if (env->status != ST_OK)
			log_emit(LOG_ERROR, &ids, "could not forward a customer message to Flex "
				 "(Twilio %lld: %s)", (long long)env->code, env->err ? env->err : "");
		if ((rc = store_job_del(&r->st, txn, env->id)) == 0)
			fx_push(r, FX_DONE)->id = env->id;
	}
	if (rc == 0) {
		c.updated = clock_wall_ms();
		rc = store_conv_put(&r->st, txn, j.conv, &c);
	}
	conv_rec_release(&c);
	job_rec_release(&j);
	return rc;
}

static int router_result_send(struct router *r, MDB_txn *txn, struct item *it)
{
	struct envelope *env = &it->env;
	struct job_rec j;
	struct log_ids ids = { .job = env->id, .sid = env->sid };
	int rc = store_job_get(&r->st, txn, env->id, &j);

	if (rc == MDB_NOTFOUND || (rc == 0 && j.kind != JOB_SEND)) {
		log_emit(LOG_INFO, &ids, "dropped a stale send result (job already finished)");
		if (rc == 0)
			job_rec_release(&j);
		return 0;
	}
	if (rc)
		return rc;
	ids.conv = j.conv;
	if (env->status == ST_OK) {
		struct hist_rec h;
		rc = store_hist_get(&r->st, txn, j.conv, j.hseq, &h);
		if (rc == 0) {
			char *m = h.msid ? xasprintf("%s,%s", h.msid, env->sid ? env->sid : "")
					 : xstrdup(env->sid ? env->sid : "");
			free(h.msid);
			h.msid = m;
			rc = store_hist_put(&r->st, txn, j.conv, j.hseq, &h);
			hist_rec_release(&h);
		} else if (rc == MDB_NOTFOUND) {
			rc = 0;
		}
		if (rc == 0 && env->sid && *env->sid)
			rc = store_idx_put(&r->st, txn, "sm", env->sid, j.conv);
		if (rc == 0 && (rc = store_job_del(&r->st, txn, env->id)) == 0) {
			fx_push(r, FX_DONE)->id = env->id;
			log_emit(LOG_INFO, &ids, "message sent");
		}
	} else if (env->status == ST_RETRY) {
		j.attempts++;
		if ((rc = store_job_put(&r->st, txn, env->id, &j)) == 0) {
			uint64_t delay = backoff_ms((unsigned)j.attempts, ROUTER_RETRY_BASE_MS,
						    ROUTER_RETRY_CAP_MS, -1);
			struct effect *e = fx_push(r, FX_RETRY);
			e->id = env->id;
			e->not_before = clock_mono_ms() + delay;
			log_emit(LOG_WARN, &ids, "send failed for now (%s): retry %lld in %llu ms",
				 env->err ? env->err : "", (long long)j.attempts,
				 (unsigned long long)delay);
		}
	} else {
		struct conv_rec c;
		log_emit(LOG_ERROR, &ids, "send failed for good: Twilio error %lld: %s",
			 (long long)env->code, env->err ? env->err : "");
		rc = store_conv_get(&r->st, txn, j.conv, &c);
		if (rc == 0) {
			c.err_code = env->code;
			free(c.err);
			c.err = xstrdup(env->err ? env->err : "send failed");
			if (env->code == TWILIO_ERR_WINDOW)
				rc = router_window_closed(r, txn, j.conv, &c, "Twilio error 63016");
			if (rc == 0)
				rc = store_conv_put(&r->st, txn, j.conv, &c);
			conv_rec_release(&c);
		} else if (rc == MDB_NOTFOUND) {
			rc = 0;
		}
		if (rc == 0 && (rc = store_job_del(&r->st, txn, env->id)) == 0)
			fx_push(r, FX_DONE)->id = env->id;
	}
	job_rec_release(&j);
	return rc;
}

/* The conversation an event is about: by Flex conversation, task, sent
 * message, customer address, or (timers) its key. *key is malloc'd. */
static int router_event_conv(struct router *r, MDB_txn *txn, const struct item *it,
			     char **key)
{
	const struct envelope *env = &it->env;
	int rc = MDB_NOTFOUND;
	*key = NULL;
	if (it->synthetic) {
		*key = xstrdup(env->conv);
		return 0;
	}
	if (!strcmp(env->op, EV_ADMIN_HANDBACK) || !strcmp(env->op, EV_ADMIN_ESCALATE))
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
static int router_flex_message(struct router *r, MDB_txn *txn, const char *key,
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
		return router_customer_turn(r, txn, key, c, &h, true);
	}
	struct hist_rec h = { .role = ROLE_AGENT, .text = env->body, .ts = env->ts, .sid = env->sid,
			      .who = (char *)author };
	if ((rc = store_hist_append(&r->st, txn, key, c, &h)))
		return rc;
	router_set(&c->agent, author);
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
		}
		if ((rc = router_set_mode(r, txn, key, c, MODE_HUMAN)))
			return rc;
	}
	log_emit(LOG_INFO, &ids, "agent message recorded");
	return 0;
}

static bool router_is_current(const struct conv_rec *c, const struct envelope *env)
{
	return (env->wt && c->flex_wt && !strcmp(env->wt, c->flex_wt)) ||
	       (env->ch && c->flex_ch && !strcmp(env->ch, c->flex_ch));
}

/* Conversations/TaskRouter/status events, operator commands and timers. */
static int router_event(struct router *r, MDB_txn *txn, struct item *it)
{
	struct envelope *env = &it->env;
	struct conv_rec c;
	char *key = NULL;
	const char *op = env->op;
	struct log_ids ids = { .sid = env->sid };
	int rc;

	if (env->sid && !strcmp(op, EV_MESSAGE_ADDED)) {
		if ((rc = store_seen_get(&r->st, txn, env->sid)) == 0) {
			fx_ack(r, it, ST_DUPLICATE);
			return 0;
		}
		if (rc != MDB_NOTFOUND)
			return rc;
	}
	rc = router_event_conv(r, txn, it, &key);
	if (rc == 0)
		rc = store_conv_get(&r->st, txn, key, &c);
	if (rc == MDB_NOTFOUND) {
		log_emit(LOG_INFO, &ids, "%s for a conversation baton does not know: ignored", op);
		fx_ack(r, it, !strncmp(op, "admin_", 6) ? ST_FAILED : ST_OK);
		free(key);
		return 0;
	}
	if (rc) {
		free(key);
		return rc;
	}
	ids.conv = key;
	if (!strcmp(op, EV_MESSAGE_ADDED)) {
		if ((rc = router_flex_message(r, txn, key, &c, env)) == 0)
			rc = store_seen_put(&r->st, txn, env->sid, env->ts);
	} else if (!strcmp(op, EV_CONV_CLOSED)) {
		if (router_is_current(&c, env))
			rc = router_handback(r, txn, key, &c, "agent_closed", false);
	} else if (!strcmp(op, EV_TASK_DONE)) {
		if (router_is_current(&c, env))
			rc = router_handback(r, txn, key, &c, "task_completed", false);
	} else if (!strcmp(op, EV_TASK_CANCELED)) {
		if (router_is_current(&c, env))
			rc = router_no_agent(r, txn, key, &c, "task_canceled");
	} else if (!strcmp(op, EV_ACCEPTED)) {
		if (router_is_current(&c, env) && !c.accepted_at) {
			c.accepted_at = clock_wall_ms();
			router_set(&c.agent, env->name);
			rc = store_tl_add(&r->st, txn, key, &c, "accepted", env->name ? env->name : "");
		}
	} else if (!strcmp(op, EV_MESSAGE_FAILED)) {
		c.err_code = env->code;
		router_set(&c.err, env->reason ? env->reason : "message failed");
		if (env->code == TWILIO_ERR_WINDOW)
			rc = router_window_closed(r, txn, key, &c, "Twilio error 63016");
		log_emit(LOG_WARN, &ids, "Twilio reported message failure %lld", (long long)env->code);
	} else if (!strcmp(op, EV_ADMIN_HANDBACK)) {
		rc = router_handback(r, txn, key, &c, "operator", true);
	} else if (!strcmp(op, EV_ADMIN_ESCALATE)) {
		rc = router_escalate(r, txn, key, &c, "operator", env->reason, NULL);
	} else if (!strcmp(op, EV_TIMER_NO_AGENT)) {
		rc = router_no_agent(r, txn, key, &c, "accept_timeout");
	} else if (!strcmp(op, EV_TIMER_IDLE)) {
		rc = router_handback(r, txn, key, &c, "inactivity_timeout", true);
	} else {
		log_emit(LOG_WARN, &ids, "unknown event '%s' ignored", op);
	}
	if (rc == 0) {
		c.updated = clock_wall_ms();
		rc = store_conv_put(&r->st, txn, key, &c);
	}
	if (rc == 0)
		fx_ack(r, it, ST_OK);
	conv_rec_release(&c);
	free(key);
	return rc;
}

static int router_apply(struct router *r, MDB_txn *txn, struct item *it)
{
	switch (it->env.type) {
	case ENV_INBOUND:
		if (!it->from_ingress)
			break;
		return router_inbound(r, txn, it);
	case ENV_RESULT_AI:
		if (it->from_ingress)
			break;
		return router_result_ai(r, txn, it);
	case ENV_RESULT_SEND:
		if (it->from_ingress)
			break;
		return router_result_send(r, txn, it);
	case ENV_RESULT_FLEX:
		if (it->from_ingress)
			break;
		return router_result_flex(r, txn, it);
	case ENV_EVENT:
		if (!it->from_ingress && !it->synthetic)
			break;
		return router_event(r, txn, it);
	default:
		break;
	}
	log_warn("dropped a %s envelope on the %s socket", env_type_name(it->env.type),
		 it->from_ingress ? "ingress" : "work");
	return 0;
}

static void router_send_ack(struct router *r, const struct effect *e, int status)
{
	struct envelope a = { .type = ENV_ACK, .id = e->id, .ts = clock_wall_ms(), .status = status };
	if (zmqx_send_env(r->ingress, &e->peer, &a) < 0)
		log_warn("cannot acknowledge request %llu (ingress gone?): %s",
			 (unsigned long long)e->id, zmq_strerror(errno));
}

/* Carries out (committed) or unwinds (!committed) the batch's effects. */
static void router_effects(struct router *r, bool committed)
{
	uint64_t now = clock_mono_ms();
	for (size_t i = 0; i < r->nfx; i++) {
		struct effect *e = &r->fx[i];
		switch (e->type) {
		case FX_ACK:
			router_send_ack(r, e, committed ? e->status : ST_BUSY);
			break;
		case FX_ADD:
			if (committed)
				dispatch_add(r->disp, e->id, e->kind, e->conv, 0);
			break;
		case FX_DONE:
			if (committed)
				dispatch_done(r->disp, e->id);
			else
				dispatch_retry(r->disp, e->id, now + 1000);
			break;
		case FX_RETRY:
			dispatch_retry(r->disp, e->id, committed ? e->not_before : now + 1000);
			break;
		}
		free(e->conv);
	}
	r->nfx = 0;
}

static void router_apply_batch(struct router *r)
{
	MDB_txn *txn = NULL;
	int rc = mdb_txn_begin(r->st.env, NULL, 0, &txn);
	bool committed = false;

	for (size_t i = 0; rc == 0 && i < r->nitems; i++)
		rc = router_apply(r, txn, &r->items[i]);
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
		committed = rc == 0;
	}
	if (txn)
		mdb_txn_abort(txn);
	if (!committed)
		log_err("cannot commit a batch of %zu messages: %s (webhooks get 503, jobs retry)",
			r->nitems, mdb_strerror(rc));
	else
		r->stat_commits++;
	router_effects(r, committed);
	for (size_t i = 0; i < r->nitems; i++)
		env_release(&r->items[i].env);
	r->nitems = 0;
}

static void router_hello(struct router *r, const struct item *it)
{
	const char *k = it->env.kind;
	enum job_kind kind;
	if (!strcmp(k, "ai"))
		kind = JOB_AI;
	else if (!strcmp(k, "egress"))
		kind = JOB_SEND;
	else if (!strcmp(k, "flex"))
		kind = JOB_FLEX;
	else {
		log_warn("hello from a worker of unknown kind '%s'", k);
		return;
	}
	int cap = it->env.credit < 0 ? 0 : it->env.credit > 1000000 ? 1000000 : (int)it->env.credit;
	dispatch_hello(r->disp, &it->peer, kind, cap, clock_mono_ms());
}

/*
 * Timers of conversations not in ai mode (the modes index): no agent
 * accepted in time, or human mode idle too long. They become synthetic
 * events applied with the next batch, like any other input.
 */
static void router_cron(struct router *r)
{
	const struct config *cfg = r->cfg;
	uint64_t now = clock_wall_ms(), mono = clock_mono_ms();
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;

	if (mono < r->next_cron)
		return;
	r->next_cron = mono + ROUTER_CRON_MS;
	if (!cfg->handoff_accept_timeout_s && !cfg->handoff_human_timeout_s)
		return;
	if (mdb_txn_begin(r->st.env, NULL, MDB_RDONLY, &txn))
		return;
	if (mdb_cursor_open(txn, r->st.modes, &cur) == 0) {
		int rc;
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		     rc == 0 && r->nitems < (size_t)cfg->router_batch;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			char *key = xstrndup(k.mv_data, k.mv_size);
			struct conv_rec c;
			const char *op = NULL;
			if (store_conv_get(&r->st, txn, key, &c) == 0) {
				uint64_t accept = (uint64_t)cfg->handoff_accept_timeout_s * 1000u;
				uint64_t idle = (uint64_t)cfg->handoff_human_timeout_s * 1000u;
				if (accept && !c.no_agent_done && !c.accepted_at && !c.first_agent_at &&
				    c.esc_at && now >= c.esc_at + accept)
					op = EV_TIMER_NO_AGENT;
				else if (idle && c.mode == MODE_HUMAN && c.last_activity &&
					 now >= c.last_activity + idle)
					op = EV_TIMER_IDLE;
				conv_rec_release(&c);
			}
			if (op) {
				struct item *it = &r->items[r->nitems++];
				memset(it, 0, sizeof(*it));
				it->synthetic = true;
				it->env.type = ENV_EVENT;
				it->env.ts = now;
				it->env.op = xstrdup(op);
				it->env.conv = key;
				key = NULL;
			}
			free(key);
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
}

/* Reads what is waiting on both sockets, up to one batch. */
static void router_collect(struct router *r)
{
	size_t max = (size_t)r->cfg->router_batch;
	bool more = true;
	while (more && r->nitems < max) {
		more = false;
		void *socks[2] = { r->ingress, r->work };
		for (int s = 0; s < 2 && r->nitems < max; s++) {
			struct item *it = &r->items[r->nitems];
			int rc = zmqx_recv_env(socks[s], &it->peer, &it->env);
			if (rc == 0)
				continue;
			more = true;
			if (rc < 0)
				continue;
			it->from_ingress = s == 0;
			if (it->env.type == ENV_HELLO && !it->from_ingress) {
				router_hello(r, it);
				env_release(&it->env);
				continue;
			}
			r->nitems++;
		}
	}
}

/* History turns first..last of conv into env->turns. */
static void router_turns(struct router *r, MDB_txn *txn, const char *conv, uint64_t first,
			 uint64_t last, struct envelope *env)
{
	for (uint64_t s = first; s <= last; s++) {
		struct hist_rec h;
		if (store_hist_get(&r->st, txn, conv, s, &h))
			continue;
		if (h.nmedia > 0) {
			char *t = xasprintf("%s%s[sent %lld attachment(s)]", h.text ? h.text : "",
					    h.text && *h.text ? " " : "", (long long)h.nmedia);
			env_add_turn(env, h.role, t, h.ts);
			free(t);
		} else {
			env_add_turn(env, h.role, h.text ? h.text : "", h.ts);
		}
		hist_rec_release(&h);
	}
}

static void router_flex_env(struct router *r, MDB_txn *txn, const struct job_rec *j,
			    struct envelope *env)
{
	struct conv_rec c;
	env->type = ENV_JOB_FLEX;
	env->op = xstrdup(j->op ? j->op : OP_HANDOFF);
	if (store_conv_get(&r->st, txn, j->conv, &c) == 0) {
		env->from = xstrdup(c.customer);
		env->to = xstrdup(c.business);
		env->name = c.name ? xstrdup(c.name) : NULL;
		env->ch = c.flex_ch ? xstrdup(c.flex_ch) : NULL;
		if (!strcmp(env->op, OP_CLOSE)) {
			env->kd = c.flex_kd ? xstrdup(c.flex_kd) : NULL;
			env->uo = c.flex_uo ? xstrdup(c.flex_uo) : NULL;
		}
		conv_rec_release(&c);
	} else {
		env->from = xstrdup("");
		env->to = xstrdup("");
	}
	if (!strcmp(env->op, OP_HANDOFF)) {
		env->trigger = xstrdup(j->trigger ? j->trigger : "");
		env->reason = xstrdup(j->reason ? j->reason : "");
		env->summary = j->summary ? xstrdup(j->summary) : NULL;
		router_turns(r, txn, j->conv, j->hfrom, j->upto, env);
	} else if (!strcmp(env->op, OP_FORWARD)) {
		struct hist_rec h;
		env->seq = (int64_t)j->hseq;
		if (store_hist_get(&r->st, txn, j->conv, j->hseq, &h) == 0) {
			env->body = xstrdup(h.text ? h.text : "");
			hist_rec_release(&h);
		} else {
			env->body = xstrdup("");
		}
	}
}

/* Builds the job's envelope from LMDB. -1 when the job is gone. */
static int router_job_env(struct router *r, MDB_txn *txn, uint64_t id, struct envelope *env)
{
	struct job_rec j;
	memset(env, 0, sizeof(*env));
	if (store_job_get(&r->st, txn, id, &j))
		return -1;
	env->id = id;
	/* The job's creation time: stable across re-dispatches (flex-worker
	 * names its conversation after it, so a retry finds its own). */
	env->ts = j.created;
	env->conv = xstrdup(j.conv);
	if (j.kind == JOB_AI) {
		uint64_t n = (uint64_t)r->cfg->ai_history;
		env->type = ENV_JOB_AI;
		env->prompt = xstrdup(r->cfg->ai_system_prompt);
		router_turns(r, txn, j.conv, j.upto > n ? j.upto - n + 1 : 1, j.upto, env);
	} else if (j.kind == JOB_FLEX) {
		router_flex_env(r, txn, &j, env);
	} else {
		env->type = ENV_JOB_SEND;
		env->to = xstrdup(j.to);
		env->from = xstrdup(j.from);
		env->body = xstrdup(j.body);
		env->tmpl = j.tmpl ? xstrdup(j.tmpl) : NULL;
		env->vars = j.vars ? xstrdup(j.vars) : NULL;
	}
	job_rec_release(&j);
	return 0;
}

static void router_dispatch(struct router *r)
{
	MDB_txn *txn = NULL;
	uint64_t id, now = clock_mono_ms();
	struct zmqx_peer peer;

	while (dispatch_next(r->disp, now, &id, &peer)) {
		struct envelope env;
		struct log_ids ids = { .job = id };
		if (!txn && mdb_txn_begin(r->st.env, NULL, MDB_RDONLY, &txn)) {
			dispatch_retry(r->disp, id, now + 1000);
			break;
		}
		if (router_job_env(r, txn, id, &env) < 0) {
			log_emit(LOG_WARN, &ids, "job vanished from the store; forgetting it");
			dispatch_done(r->disp, id);
			continue;
		}
		ids.conv = env.conv;
		if (zmqx_send_env(r->work, &peer, &env) < 0) {
			log_emit(LOG_WARN, &ids, "cannot send %s to worker: %s", env_type_name(env.type),
				 zmq_strerror(errno));
			dispatch_worker_lost(r->disp, &peer);
		} else {
			log_emit(LOG_DEBUG, &ids, "dispatched %s", env_type_name(env.type));
		}
		env_release(&env);
	}
	if (txn)
		mdb_txn_abort(txn);
}

/* Puts every unfinished job of a previous run back into its lane. */
static int router_recover(struct router *r)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t n = 0;
	int rc = mdb_txn_begin(r->st.env, NULL, MDB_RDONLY, &txn);
	if (rc)
		goto fail;
	if ((rc = mdb_cursor_open(txn, r->st.jobs, &cur)))
		goto fail;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct job_rec j;
		uint64_t id = kv_from_be64(k.mv_data);
		if (k.mv_size != 8 || store_job_get(&r->st, txn, id, &j))
			continue;
		dispatch_add(r->disp, id, j.kind, j.conv, 0);
		job_rec_release(&j);
		n++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	log_info("recovered %zu unfinished jobs from the store", n);
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	return log_err("cannot read jobs: %s", mdb_strerror(rc));
}

static int router_timeout(struct router *r)
{
	uint64_t due = dispatch_next_due(r->disp), now = clock_mono_ms();
	int t = r->cfg->worker_heartbeat_ms < ROUTER_CRON_MS ? r->cfg->worker_heartbeat_ms
							      : ROUTER_CRON_MS;
	if (due && due > now && due - now < (uint64_t)t)
		t = (int)(due - now);
	else if (due && due <= now)
		t = 0;
	return t;
}

int router_run(const struct config *cfg, volatile sig_atomic_t *stop)
{
	struct router r = { .cfg = cfg };
	int rc = -1;

	const char *why = NULL;
	if (hours_parse(cfg->business_hours, &r.hours, &why) < 0) {
		fprintf(stderr, "baton-router: config error: business.hours: %s in '%s'\n", why,
			cfg->business_hours);
		return -2;
	}
	r.items = xcalloc((size_t)cfg->router_batch, sizeof(*r.items));
	r.rules = rules_new(cfg->escalation_phrases);
	r.disp = dispatch_new();
	if (store_open(&r.st, cfg->state_dir, cfg->lmdb_map_size_mb, cfg->lmdb_sync) < 0)
		goto fail;
	if (router_recover(&r) < 0)
		goto fail;
	if (!(r.zctx = zmq_ctx_new()))
		goto fail;
	if (!(r.ingress = zmqx_router_bind(r.zctx, cfg->router_ingress_endpoint)) ||
	    !(r.work = zmqx_router_bind(r.zctx, cfg->router_work_endpoint)))
		goto fail;
	log_info("ready: state in %s, ingress on %s, workers on %s (sync=%s)", cfg->state_dir,
		 cfg->router_ingress_endpoint, cfg->router_work_endpoint,
		 cfg->lmdb_sync ? "true" : "false");

	while (!*stop) {
		zmq_pollitem_t items[2] = {
			{ .socket = r.ingress, .events = ZMQ_POLLIN },
			{ .socket = r.work, .events = ZMQ_POLLIN },
		};
		if (zmq_poll(items, 2, router_timeout(&r)) < 0 && errno != EINTR) {
			log_err("zmq_poll: %s", zmq_strerror(errno));
			break;
		}
		router_collect(&r);
		router_cron(&r);
		if (r.nitems)
			router_apply_batch(&r);
		dispatch_expire(r.disp, clock_mono_ms(), (uint64_t)cfg->worker_timeout_ms);
		router_dispatch(&r);
	}
	log_info("stopping: %llu messages stored, %llu duplicates, %llu escalations, %llu commits; "
		 "unfinished jobs stay in the store",
		 (unsigned long long)r.stat_msgs, (unsigned long long)r.stat_dups,
		 (unsigned long long)r.stat_escalations, (unsigned long long)r.stat_commits);
	rc = 0;
fail:
	zmqx_close(&r.ingress, 0);
	zmqx_close(&r.work, 0);
	if (r.zctx)
		zmq_ctx_term(r.zctx);
	store_close(&r.st);
	dispatch_destroy(&r.disp);
	rules_destroy(&r.rules);
	free(r.items);
	free(r.fx);
	return rc;
}
