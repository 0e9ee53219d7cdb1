/* sender — Twilio sends for send jobs; see sender.h. */
#include "sender.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "twilio.h"
#include "xalloc.h"

#define SENDER_BACKOFF_BASE_MS 250
#define SENDER_BACKOFF_CAP_MS 10000

static const char *const send_outcomes[] = { "ok", "retry", "failed", "malformed", "reconciled",
					     NULL };
static const char *const reconcile_outcomes[] = { "found", "not_found", "failed", "skipped",
						  NULL };
/* Pages of Twilio's list a reconciliation reads at most (newest first). */
#define SENDER_LIST_PAGES 5
#define SENDER_LIST_PAGE_SIZE 50

static const struct metric_def M_TWILIO_SECONDS = {
	"baton_egress_twilio_request_duration_seconds", METRIC_HISTOGRAM,
	"Duration of each Twilio Messages API call (retries are calls of their own).", { NULL },
	{ NULL } };
static const struct metric_def M_SENDS = {
	"baton_egress_sends_total", METRIC_COUNTER,
	"Send jobs finished, by outcome: ok, retry (Twilio still failing: back to the outbox), "
	"failed (refused for good), malformed (unreadable answer).", { "outcome" },
	{ send_outcomes } };
static const struct metric_def M_TWILIO_ERRORS = {
	"baton_egress_twilio_errors_total", METRIC_COUNTER,
	"Failed Twilio Messages calls, retried ones included, by Twilio error code (the HTTP "
	"status when Twilio gave none; transport: no HTTP answer).", { "code" }, { NULL } };
static const struct metric_def M_RECONCILE = {
	"baton_egress_reconcile_total", METRIC_COUNTER,
	"Sends whose earlier attempt may have reached Twilio, by what the list of sent messages "
	"said: found (recorded, not sent again), not_found (sent), failed (the list could not be "
	"read: sent anyway), skipped (templates, or egress.reconcile off: sent).", { "outcome" },
	{ reconcile_outcomes } };
static const struct metric_def M_SEND_RETRIES = {
	"baton_egress_retries_total", METRIC_COUNTER, "Twilio Messages calls retried.", { NULL },
	{ NULL } };

struct sendcall {
	struct sender *s;
	struct worker *w;
	uint64_t job;
	char *conv;
	char *form;
	unsigned attempt;
	uint64_t deadline;
	/* Reconciliation: what the message looks like in Twilio's list. */
	char *to, *from, *body, *exclude;
	uint64_t created;   /* wall ms the job was created */
	uint64_t received;  /* mono ms this worker got it */
	bool doubt;         /* an attempt may have reached Twilio: list before sending */
	bool can_list;      /* the router sent what to exclude (a reconcile job) */
	uint64_t doubt_at;  /* wall ms since when */
	unsigned pages;     /* list pages read in this reconciliation */
	uint64_t look_deadline; /* mono ms: an unreadable list is read again until then */
};

static const char *const sender_headers[] = { "Accept: application/json", NULL };

void sender_init(struct sender *s, const struct config *cfg)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->url = twilio_messages_url(cfg->twilio_api_base, cfg->twilio_account_sid);
	static const struct metric_def *const defs[] = { &M_TWILIO_SECONDS, &M_SENDS,
							 &M_SEND_RETRIES, &M_RECONCILE, NULL };
	metrics_register(defs);
}

void sender_release(struct sender *s)
{
	free(s->url);
	s->url = NULL;
}

static void sendcall_free(struct sendcall *c)
{
	free(c->conv);
	free(c->form);
	free(c->to);
	free(c->from);
	free(c->body);
	free(c->exclude);
	free(c);
}

static void sender_done(const struct httpc_resp *resp, void *arg);

/* A send waiting for its retry is not made by a worker that was stopped
 * meanwhile past worker.timeout_ms: the router has given the job to
 * another egress, which may have sent it already. */
static bool sender_may_send(void *arg)
{
	struct sendcall *c = arg;
	return !worker_written_off_since(c->w, c->received);
}

static int sender_start(struct sendcall *c, uint64_t delay)
{
	const struct config *cfg = c->s->cfg;
	struct httpc_req hr = { .url = c->s->url, .body = c->form, .body_len = strlen(c->form),
				.content_type = "application/x-www-form-urlencoded",
				.headers = sender_headers, .user = config_rest_user(cfg),
				.pass = config_rest_secret(cfg), .timeout_ms = cfg->egress_timeout_ms,
				.may_start = sender_may_send };
	if (!delay && !sender_may_send(c))
		delay = 1; /* through httpc, which asks again and reports it not started */
	return httpc_start(worker_http(c->w), &hr, delay, sender_done, c);
}

/* outcome: the M_SENDS label (send_outcomes). */
static void sender_result(struct sendcall *c, int status, const char *outcome,
			  const struct tw_result *tr)
{
	metrics_inc(&M_SENDS, outcome, NULL);
	struct envelope r = { .type = ENV_RESULT_SEND, .id = c->job, .ts = clock_wall_ms(),
			      .conv = c->conv, .status = status, .sid = tr->sid,
			      .code = tr->code, .err = tr->message,
			      .reconcile = status == ST_RETRY && c->doubt };
	worker_reply(c->w, &r);
}

static void sender_listed(const struct httpc_resp *resp, void *arg);

/* GET one page of Twilio's list (url NULL: the first). */
static int sender_list(struct sendcall *c, const char *url, uint64_t delay)
{
	const struct config *cfg = c->s->cfg;
	char *first = url ? NULL : twilio_list_url(cfg->twilio_api_base, cfg->twilio_account_sid,
						    c->to, c->from, c->created,
						    SENDER_LIST_PAGE_SIZE);
	struct httpc_req hr = { .method = "GET", .url = url ? url : first,
				.headers = sender_headers, .user = config_rest_user(cfg),
				.pass = config_rest_secret(cfg), .timeout_ms = cfg->egress_timeout_ms };
	int rc = httpc_start(worker_http(c->w), &hr, delay, sender_listed, c);
	free(first);
	return rc;
}

/*
 * Starts a reconciliation: the list's first page in delay ms. A list Twilio
 * cannot serve for a moment is read again for egress.retry_deadline_ms from
 * that first look: the settle wait before it does not use up the time.
 */
static int sender_look(struct sendcall *c, uint64_t delay)
{
	c->pages = 0;
	c->look_deadline = clock_mono_ms() + delay + (uint64_t)c->s->cfg->egress_retry_deadline_ms;
	return sender_list(c, NULL, delay);
}

/*
 * Before sending again after a doubtful attempt: wait until Twilio lists
 * what it accepted (egress.reconcile_settle_ms after the doubt began),
 * then look for the message.
 */
static int sender_reconcile(struct sendcall *c)
{
	uint64_t now = clock_wall_ms(), ready = c->doubt_at + (uint64_t)c->s->cfg->egress_reconcile_settle_ms;
	return sender_look(c, ready > now ? ready - now : 0);
}

static void sender_send_now(struct sendcall *c)
{
	if (sender_start(c, 0) < 0) {
		struct tw_result tr = { .message = (char *)"cannot start the call" };
		sender_result(c, ST_RETRY, "retry", &tr);
		sendcall_free(c);
	}
}

static void sender_listed(const struct httpc_resp *resp, void *arg)
{
	struct sendcall *c = arg;
	struct log_ids ids = { .conv = c->conv, .job = c->job };
	struct tw_match m = { .to = c->to, .from = c->from, .body = c->body,
			      .exclude = c->exclude, .created_ms = c->created };
	char *sid = NULL, *next = NULL;
	enum tw_list found;

	if (resp->curl_code || resp->too_big) {
		found = TWL_ERROR;
		next = xasprintf("list from %s failed: %s", resp->url,
				 resp->too_big ? "answer too large" : resp->error);
	} else {
		found = twilio_list_find(resp->status, resp->body, resp->body_len,
					 c->s->cfg->twilio_api_base, &m, &sid, &next);
	}
	c->pages++;
	/* Twilio busy for a moment: look again (from the first page) while the
	 * reconciliation's deadline allows, rather than risk a second copy. */
	bool transient = resp->curl_code || resp->status == 429 || resp->status >= 500;
	if (found == TWL_ERROR && transient) {
		uint64_t d = backoff_ms(++c->attempt, SENDER_BACKOFF_BASE_MS, SENDER_BACKOFF_CAP_MS,
					resp->retry_after_ms);
		if (clock_mono_ms() + d < c->look_deadline) {
			log_emit(LOG_WARN, &ids, "cannot read what Twilio sent (%s): looking again in "
				 "%llu ms", next ? next : "no detail", (unsigned long long)d);
			free(next);
			c->pages = 0;
			if (sender_list(c, NULL, d) == 0)
				return;
			next = xstrdup("cannot restart the call");
		}
	}
	if (found == TWL_NOT_FOUND && next && c->pages < SENDER_LIST_PAGES) {
		int rc = sender_list(c, next, 0);
		free(next);
		if (rc == 0)
			return;
		next = NULL;
		found = TWL_ERROR;
	}
	if (found == TWL_FOUND) {
		struct tw_result tr = { .sid = sid };
		ids.sid = sid;
		metrics_inc(&M_RECONCILE, "found", NULL);
		log_emit(LOG_NOTICE, &ids, "Twilio already has this message from an earlier attempt: "
			 "recorded, not sent again");
		c->s->reconciled++;
		c->doubt = false;
		sender_result(c, ST_OK, "reconciled", &tr);
		free(sid);
		free(next);
		sendcall_free(c);
		return;
	}
	if (found == TWL_ERROR) {
		metrics_inc(&M_RECONCILE, "failed", NULL);
		log_emit(LOG_WARN, &ids, "cannot read what Twilio sent (%s): sending anyway",
			 next ? next : "no detail");
	} else {
		metrics_inc(&M_RECONCILE, "not_found", NULL);
		log_emit(LOG_INFO, &ids, "Twilio has no earlier copy of this message: sending it");
	}
	free(next);
	sender_send_now(c);
}

/* Whether a failed send may still have been taken by Twilio: not when the
 * connection never opened, nor on 429 and 503 (refused before any work);
 * yes on a timeout, a cut connection, and other 5xx. */
static bool sender_in_doubt(const struct httpc_resp *resp)
{
	if (resp->curl_code)
		return resp->curl_code != 6 /* CURLE_COULDNT_RESOLVE_HOST */ &&
		       resp->curl_code != 7 /* CURLE_COULDNT_CONNECT */;
	return resp->status >= 500 && resp->status != 503;
}

static void sender_done(const struct httpc_resp *resp, void *arg)
{
	bool hand_back = false;
	struct sendcall *c = arg;
	struct sender *s = c->s;
	struct tw_result tr;
	struct log_ids ids = { .conv = c->conv, .job = c->job };
	enum tw_outcome oc;

	if (resp->not_started) {
		/* Not sent, and not ours any more: the router drops this answer
		 * as an earlier attempt's, or retries the job if nobody has it. */
		struct tw_result nt = { .message = (char *)"not sent: this egress was stalled past "
					"worker.timeout_ms and its job given to another" };
		log_emit(LOG_WARN, &ids, "%s", nt.message);
		sender_result(c, ST_RETRY, "retry", &nt);
		sendcall_free(c);
		return;
	}
	if (resp->curl_code && !resp->too_big) {
		memset(&tr, 0, sizeof(tr));
		tr.message = xasprintf("transfer to %s failed: %s", resp->url, resp->error);
		oc = TW_RETRY;
	} else if (resp->too_big) {
		memset(&tr, 0, sizeof(tr));
		tr.message = xstrdup("response too large");
		oc = TW_MALFORMED;
	} else {
		oc = twilio_parse(resp->status, resp->body, resp->body_len, &tr);
	}
	metrics_observe(&M_TWILIO_SECONDS, NULL, NULL, resp->total_ms / 1000.0);
	if (oc != TW_OK) {
		char code[24] = "transport";
		if (resp->too_big)
			strcpy(code, "too_big");
		else if (!resp->curl_code)
			snprintf(code, sizeof(code), "%ld", tr.code);
		metrics_inc(&M_TWILIO_ERRORS, code, NULL);
	}

	/* Refused before it was taken (no connection, 429): certainly not
	 * sent. A timeout, a cut connection or a 5xx may have been sent. */
	if (oc == TW_RETRY && sender_in_doubt(resp)) {
		if (!c->doubt)
			c->doubt_at = clock_wall_ms();
		c->doubt = true;
	}
	/* Looking for the message needs the SIDs of the conversation's earlier
	 * replies, which only the router has: a doubtful failure of a plain
	 * job goes back to it, and comes back as a reconcile job. */
	if (oc == TW_RETRY && c->doubt && s->cfg->egress_reconcile && !c->can_list)
		hand_back = true;
	if (oc == TW_RETRY && !hand_back) {
		uint64_t d = backoff_ms(c->attempt + 1, SENDER_BACKOFF_BASE_MS, SENDER_BACKOFF_CAP_MS,
					resp->retry_after_ms);
		if (clock_mono_ms() + d < c->deadline) {
			c->attempt++;
			s->retries++;
			metrics_inc(&M_SEND_RETRIES, NULL, NULL);
			log_emit(LOG_WARN, &ids, "Twilio send failed (%ld %s): retry %u in %llu ms%s",
				 tr.code, tr.message, c->attempt, (unsigned long long)d,
				 c->doubt && s->cfg->egress_reconcile ? ", after looking for it" : "");
			tw_result_release(&tr);
			uint64_t settle = c->doubt_at + (uint64_t)s->cfg->egress_reconcile_settle_ms,
				 now = clock_wall_ms();
			if (settle > now && settle - now > d)
				d = settle - now;
			int rc = c->doubt && s->cfg->egress_reconcile ? sender_look(c, d)
								      : sender_start(c, d);
			if (rc == 0)
				return;
			tr.message = xstrdup("cannot restart the call");
		}
	}

	int status;
	const char *outcome;
	switch (oc) {
	case TW_OK:
		status = ST_OK;
		outcome = "ok";
		s->sent++;
		ids.sid = tr.sid;
		log_emit(LOG_INFO, &ids, "sent to Twilio in %.1f ms", resp->total_ms);
		break;
	case TW_RETRY:
		status = ST_RETRY;
		outcome = "retry";
		s->failures++;
		if (hand_back)
			log_emit(LOG_WARN, &ids, "Twilio send failed (%ld %s) and may have been taken: "
				 "back to the router, to look for it before sending again", tr.code,
				 tr.message);
		else
			log_emit(LOG_WARN, &ids, "Twilio still failing after %u attempts (%ld %s): back "
				 "to the outbox", c->attempt + 1, tr.code, tr.message);
		break;
	case TW_MALFORMED:
		/* Twilio may have sent it: retrying could double it, so this is final. */
		status = ST_FAILED;
		outcome = "malformed";
		s->failures++;
		log_emit(LOG_ERROR, &ids, "unreadable Twilio answer: %s", tr.message);
		break;
	default:
		status = ST_FAILED;
		outcome = "failed";
		s->failures++;
		log_emit(LOG_ERROR, &ids, "Twilio refused the message: error %ld: %s", tr.code,
			 tr.message);
		break;
	}
	sender_result(c, status, outcome, &tr);
	tw_result_release(&tr);
	sendcall_free(c);
}

void sender_job(struct worker *w, const struct envelope *job, void *arg)
{
	struct sender *s = arg;
	struct sendcall *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->w = w;
	c->job = job->id;
	c->conv = xstrdup(job->conv);
	c->form = job->tmpl && *job->tmpl
			  ? twilio_template_form(job->to, job->from, job->tmpl, job->vars)
			  : twilio_message_form(job->to, job->from, job->body);
	c->deadline = clock_mono_ms() + (uint64_t)s->cfg->egress_retry_deadline_ms;
	c->to = xstrdup(job->to);
	c->from = xstrdup(job->from);
	c->body = xstrdup(job->body);
	c->exclude = job->exclude ? xstrdup(job->exclude) : NULL;
	c->created = job->ts;
	c->received = clock_mono_ms();
	if (job->reconcile) {
		/* A template's body is rendered by Twilio: it cannot be matched. */
		bool can = s->cfg->egress_reconcile && !(job->tmpl && *job->tmpl);
		c->doubt = true;
		c->doubt_at = job->since > 0 ? (uint64_t)job->since : clock_wall_ms();
		c->can_list = can;
		if (can && sender_reconcile(c) == 0)
			return;
		if (!can)
			metrics_inc(&M_RECONCILE, "skipped", NULL);
	}
	sender_send_now(c);
}
