/* aiwork — LLM calls for AI jobs; see aiwork.h. */
#include "aiwork.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimedia.h"
#include "backoff.h"
#include "clock.h"
#include "escalate.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

/* Backoff between LLM retries, as the Anthropic SDK does it: 0.5 s doubling to 8 s. */
#define AIWORK_BACKOFF_BASE_MS 500
#define AIWORK_BACKOFF_CAP_MS 8000

static const char *const ai_outcomes[] = { "ok", "escalate", "malformed", "refused", "gave_up",
					   NULL };

static const struct metric_def M_LLM_SECONDS = {
	"baton_ai_llm_request_duration_seconds", METRIC_HISTOGRAM,
	"Duration of each HTTP call to the LLM (retries are calls of their own).", { NULL },
	{ NULL } };
static const struct metric_def M_LLM_CALLS = {
	"baton_ai_llm_requests_total", METRIC_COUNTER,
	"HTTP calls to the LLM by response status (transport: no HTTP answer).", { "status" },
	{ NULL } };
static const struct metric_def M_AI_RESULTS = {
	"baton_ai_results_total", METRIC_COUNTER,
	"AI jobs finished, by outcome: ok, escalate (the model asked for a human), malformed, "
	"refused (a 4xx no retry fixes), gave_up (retries exhausted).", { "outcome" },
	{ ai_outcomes } };
static const struct metric_def M_LLM_RETRIES = {
	"baton_ai_llm_retries_total", METRIC_COUNTER, "LLM calls retried after a failure.", { NULL },
	{ NULL } };

struct aicall {
	struct aiwork *a;
	struct worker *w;
	uint64_t job;
	char *conv;
	unsigned attempt;
	uint64_t started;
	struct llm_request req;
	struct aimedia *media;    /* until the request is built */
	struct envelope *copy;    /* the job, kept while its media download */
	char *transcripts;        /* for the result, NULL = none */
};

static void aicall_free(struct aicall *c)
{
	llm_request_release(&c->req);
	aimedia_free(&c->media);
	if (c->copy) {
		env_release(c->copy);
		free(c->copy);
	}
	free(c->transcripts);
	free(c->conv);
	free(c);
}

void aiwork_init(struct aiwork *a, const struct config *cfg)
{
	memset(a, 0, sizeof(*a));
	a->cfg = cfg;
	/* llm.c knows API shapes, not settings: its own enums, from the config's. */
	a->llm.provider = cfg->llm_provider == CONFIG_LLM_OPENAI ? LLM_OPENAI : LLM_ANTHROPIC;
	a->llm.esc_mode = cfg->ai_escalation_mode == CONFIG_ESCALATION_TAG ? LLM_ESC_TAG
									   : LLM_ESC_STRUCTURED;
	a->llm.tag = cfg->ai_escalation_tag;
	a->llm.base_url = cfg->llm_base_url;
	a->llm.model = cfg->llm_model;
	a->llm.api_key = cfg->llm_api_key;
	a->llm.anthropic_version = cfg->llm_anthropic_version;
	a->llm.max_tokens = cfg->llm_max_tokens;
	aimedia_config(cfg, a->llm.provider, &a->media);
	static const struct metric_def *const defs[] = { &M_LLM_SECONDS, &M_AI_RESULTS,
							 &M_LLM_RETRIES, NULL };
	metrics_register(defs);
	aimedia_metrics_register();
}

static void aiwork_done(const struct httpc_resp *resp, void *arg);

static int aiwork_start(struct aicall *c, uint64_t delay)
{
	struct httpc_req hr = { .url = c->req.url, .body = c->req.body,
				.body_len = c->req.body_len,
				.content_type = "application/json",
				.headers = (const char *const *)c->req.headers,
				.timeout_ms = c->a->cfg->llm_timeout_ms };
	return httpc_start(worker_http(c->w), &hr, delay, aiwork_done, c);
}

static void aiwork_result(struct aicall *c, int status, const struct llm_reply *rep)
{
	struct envelope r = { .type = ENV_RESULT_AI, .id = c->job, .ts = clock_wall_ms(),
			      .conv = c->conv, .status = status, .transcripts = c->transcripts };
	char *text = NULL;
	if (status == ST_OK) {
		text = xstrdup(rep->text);
		/* The tag is stripped in every mode: a model may drift into it. */
		bool tagged = esc_strip(text, c->a->cfg->ai_escalation_tag);
		r.text = text;
		r.escalate = tagged || rep->tool_escalate;
		if (r.escalate)
			r.trigger = rep->tool_escalate ? (char *)"tool" : (char *)"tag";
		r.reason = rep->reason;
		r.summary = rep->summary;
	} else {
		r.err = rep->error;
	}
	metrics_inc(&M_AI_RESULTS, status == ST_OK ? (r.escalate ? "escalate" : "ok") :
				   status == ST_MALFORMED ? "malformed" :
				   status == ST_FAILED ? "refused" : "gave_up", NULL);
	worker_reply(c->w, &r);
	free(text);
}

static void aiwork_done(const struct httpc_resp *resp, void *arg)
{
	struct aicall *c = arg;
	struct aiwork *a = c->a;
	struct llm_reply rep;
	struct log_ids ids = { .conv = c->conv, .job = c->job };
	enum llm_outcome oc;
	char st[24] = "transport";

	if (resp->status > 0)
		snprintf(st, sizeof(st), "%ld", resp->status);
	metrics_inc(&M_LLM_CALLS, st, NULL);
	metrics_observe(&M_LLM_SECONDS, NULL, NULL, resp->total_ms / 1000.0);
	if (resp->too_big) {
		memset(&rep, 0, sizeof(rep));
		rep.error = xstrdup("response too large");
		oc = LLM_MALFORMED;
	} else if (resp->curl_code) {
		memset(&rep, 0, sizeof(rep));
		rep.error = xasprintf("transfer to %s failed: %s", resp->url, resp->error);
		oc = LLM_RETRY;
	} else {
		oc = llm_parse(&a->llm, resp->status, resp->body, resp->body_len, &rep);
	}

	uint64_t d = backoff_ms(c->attempt + 1, AIWORK_BACKOFF_BASE_MS, AIWORK_BACKOFF_CAP_MS,
				resp->retry_after_ms);
	bool in_time = clock_mono_ms() + d < c->started + (uint64_t)a->cfg->llm_retry_deadline_ms;
	if (oc == LLM_RETRY && c->attempt < (unsigned)a->cfg->llm_retries && in_time) {
		c->attempt++;
		a->retries++;
		metrics_inc(&M_LLM_RETRIES, NULL, NULL);
		log_emit(LOG_WARN, &ids, "LLM call failed (%s): retry %u in %llu ms", rep.error,
			 c->attempt, (unsigned long long)d);
		llm_reply_release(&rep);
		if (aiwork_start(c, d) == 0)
			return;
		memset(&rep, 0, sizeof(rep));
		rep.error = xstrdup("cannot restart the call");
		oc = LLM_RETRY;
	}

	int status = ST_OK;
	switch (oc) {
	case LLM_OK:
		log_emit(LOG_INFO, &ids, "LLM replied in %llu ms (%zu chars%s)",
			 (unsigned long long)(clock_mono_ms() - c->started), strlen(rep.text),
			 rep.tool_escalate ? ", escalation tool" : "");
		break;
	case LLM_MALFORMED:
		status = ST_MALFORMED;
		log_emit(LOG_ERROR, &ids, "malformed LLM response: %s", rep.error);
		break;
	case LLM_FATAL:
		status = ST_FAILED;
		log_emit(LOG_ERROR, &ids, "LLM call refused: %s", rep.error);
		break;
	case LLM_RETRY:
		status = ST_RETRY;
		log_emit(LOG_ERROR, &ids, "LLM call failed after %u attempts: %s", c->attempt + 1,
			 rep.error);
		break;
	}
	if (status != ST_OK)
		a->failures++;
	aiwork_result(c, status, &rep);
	llm_reply_release(&rep);
	aicall_free(c);
}

/*
 * A voice note the answer is for could not be heard and
 * escalation.on_voice says a person should: the job ends in an escalation
 * without asking the model (which would answer without knowing what was said).
 */
static void aiwork_escalate_voice(struct aicall *c)
{
	struct log_ids ids = { .conv = c->conv, .job = c->job };
	struct envelope r = { .type = ENV_RESULT_AI, .id = c->job, .ts = clock_wall_ms(),
			      .conv = c->conv, .status = ST_OK, .text = (char *)"",
			      .escalate = true, .trigger = (char *)"voice",
			      .reason = (char *)"customer sent a voice note that could not be "
						"transcribed",
			      .transcripts = c->transcripts };
	log_emit(LOG_INFO, &ids, "a voice note could not be transcribed: escalating "
		 "(escalation.on_voice=escalate)");
	metrics_inc(&M_AI_RESULTS, "escalate", NULL);
	worker_reply(c->w, &r);
}

/* The media are ready (or there were none to fetch): the LLM call. */
static void aiwork_call(struct aicall *c, const struct envelope *job)
{
	struct aiwork *a = c->a;
	struct log_ids ids = { .conv = c->conv, .job = c->job };

	c->transcripts = aimedia_transcripts(c->media);
	if (aimedia_voice_unheard(c->media) &&
	    a->cfg->escalation_on_voice == CONFIG_ON_VOICE_ESCALATE) {
		aiwork_escalate_voice(c);
		aicall_free(c);
		return;
	}
	llm_build(&a->llm, job, aimedia_views(c->media), &c->req);
	log_emit(LOG_DEBUG, &ids, "calling the LLM with %zu turns", job->nturns);
	/* The request holds its own copy of every byte: free the media and the
	 * job's copy now, not after the retries. */
	aimedia_free(&c->media);
	if (c->copy) {
		env_release(c->copy);
		free(c->copy);
		c->copy = NULL;
	}
	a->calls++;
	if (aiwork_start(c, 0) < 0) {
		struct llm_reply rep = { .error = (char *)"cannot start the call" };
		aiwork_result(c, ST_RETRY, &rep);
		aicall_free(c);
	}
}

static void aiwork_media_done(void *arg)
{
	struct aicall *c = arg;
	aiwork_call(c, c->copy);
}

/* A copy of the job that outlives the worker's callback (the encoded
 * frame decoded again: the envelope module's own deep copy). */
static struct envelope *aiwork_copy(const struct envelope *job)
{
	struct envelope *copy = xcalloc(1, sizeof(*copy));
	char *buf = NULL;
	size_t len = 0;
	int rc = env_encode(job, &buf, &len);
	if (rc == 0)
		rc = env_decode(buf, len, copy);
	free(buf);
	if (rc) {
		env_release(copy);
		free(copy);
		return NULL;
	}
	return copy;
}

void aiwork_job(struct worker *w, const struct envelope *job, void *arg)
{
	struct aiwork *a = arg;
	struct aicall *c = xcalloc(1, sizeof(*c));
	struct log_ids ids = { .conv = job->conv, .job = job->id };

	c->a = a;
	c->w = w;
	c->job = job->id;
	c->conv = xstrdup(job->conv);
	c->started = clock_mono_ms();
	c->media = aimedia_new(&a->media, job);
	if (!aimedia_wants(c->media)) {
		aiwork_call(c, job);
		return;
	}
	if (!(c->copy = aiwork_copy(job))) {
		struct llm_reply rep = { .error = (char *)"cannot keep the job while its media "
							  "download" };
		log_emit(LOG_ERROR, &ids, "%s", rep.error);
		aiwork_result(c, ST_RETRY, &rep);
		aicall_free(c);
		return;
	}
	log_emit(LOG_DEBUG, &ids, "fetching the media of the job's last turns first");
	if (!aimedia_start(c->media, worker_http(w), aiwork_media_done, c))
		aiwork_call(c, c->copy);
}
