/*
 * pipeline — the handoff state machine; see pipeline.h for the steps.
 *
 * One struct fjob per job. fjob_next() issues the request of the current
 * step; fjob_done() classifies the answer, retries, or hands the body to
 * the step's handler, which moves to the next step.
 */
#include "pipeline.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "flexapi.h"
#include "flexmedia.h"
#include "form.h"
#include "log.h"
#include "media.h"
#include "metrics.h"
#include "xalloc.h"

#define FLEX_BACKOFF_BASE_MS 250
#define FLEX_BACKOFF_CAP_MS 8000
/* Pages followed per list: history is bounded, so more means a loop. */
#define FLEX_PAGES_MAX 50

enum fstep {
	FS_LIST,
	FS_CLOSE,
	FS_CREATE,
	FS_FETCH_OWN,
	FS_LIST_MESSAGES,
	FS_INJECT,
	FS_LIST_PARTICIPANTS,
	FS_ADD_PARTICIPANT,
	FS_CHECK_MARK,
	FS_FIND_TASK,
	FS_INTERACTION,
	FS_MARK,
	FS_FORWARD_CHECK,
	FS_FORWARD,
	FS_CLOSE_CHANNEL,
	FS_CLOSE_CONV,
	FS_FETCH_SERVICE,
	FS_CHECK_MEDIA,
};

static const char *const fstep_names[] = {
	"list conversations", "close conversation", "create conversation",
	"fetch conversation", "list messages", "inject history", "list participants",
	"add participant", "check interaction", "find task", "create interaction",
	"mark conversation",
	"check forward", "forward message", "close interaction channel", "close conversation",
	"fetch conversation service", "check media",
};

/* The note that stands for an item the agent cannot open. */
#define FLEX_MEDIA_FAILED "could not be attached"

/* The op of a flex job, read from the envelope's word once (fop_parse). */
enum fop { FOP_HANDOFF, FOP_FORWARD, FOP_CLOSE };

/* The envelope's words, by enum fop; NULL-terminated: also the op label's
 * initial values (M_FLEX_JOBS). */
static const char *const fop_names[] = { "handoff", "forward", "close", NULL };

struct fjob {
	struct flexwork *fw;
	struct worker *w;
	uint64_t job;
	enum fop op;
	char *conv, *customer, *business, *name, *trigger, *reason, *summary;
	int64_t seq;
	/* The history (handoff) or the one forwarded message (forward): text
	 * is the text-only view (media notes included), plain the text
	 * without the item notes, media what the turn carried. */
	struct env_turn *turns;
	char **plain;
	struct media_msg *media;
	size_t nturns;
	bool transcript;
	/* The messages to write, in order (handoff: injected history; forward:
	 * the message and its media): keys name them in Attributes, items[i]
	 * is the media item message i attaches (NULL: text only), src[i] the
	 * turn it comes from. */
	size_t ninject;
	struct flex_slot *keys;
	const struct media_item **items;
	size_t *src;
	bool *injected;
	/* The media of message mslot, once fetched and uploaded (mready):
	 * msid is its MediaSid, NULL when it failed. Kept across a retried
	 * post, so that a retry does not upload again. */
	size_t mslot;
	bool mready;
	char *msid;
	enum flexmedia_outcome moutcome; /* what is counted once the message is in */
	bool mtried; /* msid was posted with no clear answer: MCS says whether it went */
	long mrefused; /* Twilio's code when it refused that post (0: it did not) */
	char *is;             /* the conversation's chat service (MCS), once known */
	bool is_looked;       /* asked for it: NULL is then an answer */
	enum fstep after_is;  /* the step that asked for it */
	char *unique;
	char **close;
	size_t nclose, iclose;
	char *ch, *mb;
	struct flex_sids sids;
	char *page; /* next page URL of the list being read */
	unsigned pages;
	enum fstep step;
	uint64_t delay; /* before the next request (a step re-checked after a failure) */
	unsigned attempt;
	uint64_t deadline;
	/* the request in flight, kept for retries */
	const char *method;
	char *url;
	char *form;
};

static const char *const flex_headers[] = { "Accept: application/json", NULL };

static const char *const flex_outcomes[] = { "ok", "retry", "failed", NULL };

static const struct metric_def M_FLEX_SECONDS = {
	"baton_flex_twilio_request_duration_seconds", METRIC_HISTOGRAM,
	"Duration of each Twilio Conversations/Flex/TaskRouter call of the handoff pipeline.",
	{ NULL }, { NULL } };
static const struct metric_def M_FLEX_ERRORS = {
	"baton_flex_twilio_errors_total", METRIC_COUNTER,
	"Failed Twilio calls of the pipeline, retried and expected ones included, by Twilio error "
	"code (the HTTP status when Twilio gave none; transport: no HTTP answer).", { "code" },
	{ NULL } };
static const struct metric_def M_FLEX_JOBS = {
	"baton_flex_jobs_total", METRIC_COUNTER,
	"Flex jobs finished, by op (handoff, forward, close) and outcome (ok; retry: Twilio still "
	"failing; failed: refused).", { "op", "outcome" }, { fop_names, flex_outcomes } };
static const struct metric_def M_FLEX_RETRIES = {
	"baton_flex_retries_total", METRIC_COUNTER, "Twilio calls of the pipeline retried.",
	{ NULL }, { NULL } };

void flexwork_init(struct flexwork *fw, const struct config *cfg)
{
	memset(fw, 0, sizeof(*fw));
	fw->cfg = cfg;
	flexmedia_config(cfg, &fw->media);
	static const struct metric_def *const defs[] = { &M_FLEX_SECONDS, &M_FLEX_JOBS,
							 &M_FLEX_RETRIES, NULL };
	metrics_register(defs);
	flexmedia_metrics_register();
}

static void fjob_free(struct fjob *f)
{
	free(f->conv);
	free(f->customer);
	free(f->business);
	free(f->name);
	free(f->trigger);
	free(f->reason);
	free(f->summary);
	for (size_t i = 0; i < f->nturns; i++) {
		free(f->turns[i].text);
		free(f->plain[i]);
		media_release(&f->media[i]);
	}
	free(f->turns);
	free(f->plain);
	free(f->media);
	free(f->keys);
	free(f->items);
	free(f->src);
	free(f->injected);
	free(f->msid);
	free(f->is);
	free(f->unique);
	for (size_t i = 0; i < f->nclose; i++)
		free(f->close[i]);
	free(f->close);
	free(f->ch);
	free(f->mb);
	flexapi_sids_release(&f->sids);
	free(f->page);
	free(f->url);
	free(f->form);
	free(f);
}

static void fjob_result(struct fjob *f, int status, long code, const char *err)
{
	struct envelope r = { .type = ENV_RESULT_FLEX, .id = f->job, .ts = clock_wall_ms(),
			      .conv = f->conv, .op = (char *)fop_names[f->op],
			      .status = status, .code = code, .err = (char *)err };
	if (status == ST_OK) {
		r.ch = f->ch;
		r.mb = f->mb;
		r.kd = f->sids.kd;
		r.uo = f->sids.uo;
		r.wt = f->sids.wt;
	}
	metrics_inc(&M_FLEX_JOBS, fop_names[f->op],
		    status == ST_OK ? "ok" : status == ST_RETRY ? "retry" : "failed");
	worker_reply(f->w, &r);
	fjob_free(f);
}

/* Tells the router the conversation exists, so that its webhooks can be
 * matched before the whole pipeline is done. */
static void fjob_progress(struct fjob *f)
{
	struct envelope r = { .type = ENV_RESULT_FLEX, .id = f->job, .ts = clock_wall_ms(),
			      .conv = f->conv, .op = (char *)fop_names[f->op],
			      .status = ST_PROGRESS, .ch = f->ch };
	worker_reply(f->w, &r);
}

static void fjob_fail(struct fjob *f, int status, long code, const char *err)
{
	struct log_ids ids = { .conv = f->conv, .job = f->job };
	log_emit(LOG_ERROR, &ids, "flex %s failed at '%s': Twilio %ld: %s", fop_names[f->op],
		 fstep_names[f->step], code, err);
	f->fw->failures++;
	fjob_result(f, status, code, err);
}

static void fjob_done(const struct httpc_resp *resp, void *arg);

static void fjob_send(struct fjob *f, uint64_t delay)
{
	const struct config *cfg = f->fw->cfg;
	struct httpc_req hr = { .method = f->method, .url = f->url, .body = f->form,
				.body_len = f->form ? strlen(f->form) : 0,
				.content_type = f->form ? "application/x-www-form-urlencoded" : NULL,
				.headers = flex_headers, .user = config_rest_user(cfg),
				.pass = config_rest_secret(cfg), .timeout_ms = cfg->flex_timeout_ms };
	if (httpc_start(worker_http(f->w), &hr, delay, fjob_done, f) < 0)
		fjob_fail(f, ST_RETRY, 0, "cannot start the call");
}

/* Issues a request for the current step (takes ownership of url and form). */
static void fjob_call(struct fjob *f, const char *method, char *url, char *form)
{
	free(f->url);
	free(f->form);
	f->method = method;
	f->url = url;
	f->form = form;
	uint64_t delay = f->delay;
	f->delay = 0;
	fjob_send(f, delay);
}

static char *fjob_conv_url(const struct fjob *f, const char *suffix)
{
	return xasprintf("%s/v1/Conversations/%s%s", f->fw->cfg->twilio_conversations_base, f->ch,
			 suffix);
}

static void fjob_step(struct fjob *f, enum fstep s);

static void fjob_finish(struct fjob *f)
{
	struct log_ids ids = { .conv = f->conv, .job = f->job };
	if (f->op == FOP_HANDOFF) {
		f->fw->handoffs++;
		log_emit(LOG_INFO, &ids, "handoff done: conversation %s, participant %s, interaction %s, "
			 "task %s", f->ch, f->mb ? f->mb : "?", f->sids.kd, f->sids.wt ? f->sids.wt : "?");
	} else if (f->op == FOP_FORWARD) {
		f->fw->forwards++;
		log_emit(LOG_INFO, &ids, "customer message forwarded to Flex conversation %s", f->ch);
	} else {
		log_emit(LOG_INFO, &ids, "Flex side closed (conversation %s)", f->ch ? f->ch : "-");
	}
	fjob_result(f, ST_OK, 0, NULL);
}

/* Next message to write, or ninject when all are in. */
static size_t fjob_next_inject(const struct fjob *f)
{
	size_t i = 0;
	while (i < f->ninject && f->injected[i])
		i++;
	return i;
}

static const char *fjob_author(const struct fjob *f, enum env_role role)
{
	switch (role) {
	case ROLE_CUSTOMER: return f->customer;
	case ROLE_AGENT: return "agent";
	case ROLE_SYSTEM: return "system";
	default: return f->fw->cfg->flex_bot_author;
	}
}

/* The Body of message i: the transcript; the turn's text (a turn without
 * media); or for a media message the turn's text on its first item only,
 * and the note of an item that could not be attached. Transcript mode's
 * media messages carry the item's note as a caption, which names it as
 * the transcript does. */
static char *fjob_body(const struct fjob *f, size_t i)
{
	const struct media_item *it = f->items[i];
	size_t t = f->src[i];
	if (f->transcript && !it) {
		char *label = flexapi_author_label(ROLE_CUSTOMER, f->name);
		char *body = flexapi_transcript(f->turns, f->nturns, label);
		free(label);
		return body;
	}
	if (!it)
		return xstrdup(f->turns[t].text);
	const char *reason = f->msid ? NULL : FLEX_MEDIA_FAILED;
	if (f->transcript)
		return media_item_note(it, reason);
	char *text = xstrdup(f->keys[i].item == 0 ? f->plain[t] : "");
	if (!reason)
		return text;
	char *note = media_item_note(it, reason);
	char *body = xasprintf("%s%s%s", text, *text ? "\n" : "", note);
	free(note);
	free(text);
	return body;
}

/* Posts message i (its media, if any, is in msid). */
static void fjob_post(struct fjob *f, size_t i)
{
	char *form = NULL;
	char *attrs = f->op == FOP_FORWARD
			      ? flexapi_forward_attributes((long long)f->seq, f->keys[i].item)
			      : flexapi_turn_attributes((unsigned long long)f->job, f->keys[i].turn,
							f->keys[i].item);
	char *body = fjob_body(f, i);
	const char *author = f->transcript && !f->items[i] ? f->fw->cfg->flex_bot_author
							    : fjob_author(f, f->turns[f->src[i]].role);
	form_append(&form, "Author", author);
	/* A media message may go without text; any other needs some. */
	if (*body || !f->msid)
		form_append(&form, "Body", *body ? body : "(empty message)");
	if (f->items[i] && f->msid) {
		form_append(&form, "MediaSid", f->msid);
		f->mtried = true;
	}
	form_append(&form, "Attributes", attrs);
	free(body);
	free(attrs);
	fjob_call(f, "POST", fjob_conv_url(f, "/Messages"), form);
}

static void fjob_media_done(const struct flexmedia_result *r, void *arg)
{
	struct fjob *f = arg;
	const struct media_item *it = f->items[f->mslot];
	f->mready = true;
	f->moutcome = r->outcome;
	free(f->msid);
	f->msid = r->outcome == FM_ATTACHED ? xstrdup(r->media_sid) : NULL;
	if (!f->msid) {
		struct log_ids ids = { .conv = f->conv, .job = f->job };
		log_emit(LOG_WARN, &ids, "%s (%s) of message %zu.%zu not attached to Flex "
			 "conversation %s (%s): %s; the agent sees a note instead",
			 media_kind_word(media_kind_of(it->ctype)), it->ctype ? it->ctype : "no type",
			 f->keys[f->mslot].turn, f->keys[f->mslot].item, f->ch,
			 flexmedia_outcome_name(r->outcome), r->reason ? r->reason : "?");
	}
	fjob_post(f, f->mslot);
}

static void fjob_written(struct fjob *f, size_t i);

/* The step's next message (FS_INJECT or FS_FORWARD): its media are
 * fetched and uploaded first, once; then it is posted. */
static void fjob_write_next(struct fjob *f)
{
	/* A list (after a lost answer) found the slot's message posted: the
	 * item is done, counted once, and its MediaSid forgotten, or a later
	 * refusal of another message would be taken for this one's. */
	if (f->mready && f->injected[f->mslot])
		fjob_written(f, f->mslot);
	size_t i = fjob_next_inject(f);
	if (i >= f->ninject) {
		if (f->step == FS_INJECT)
			fjob_step(f, FS_LIST_PARTICIPANTS);
		else
			fjob_finish(f);
		return;
	}
	if (f->items[i] && f->mready && f->mslot == i && f->msid && f->mtried) {
		/* A message list can lag behind a post: the Media resource
		 * names the message it went with as soon as it did. */
		fjob_step(f, FS_CHECK_MEDIA);
		return;
	}
	if (!f->items[i] || (f->mready && f->mslot == i)) {
		fjob_post(f, i);
		return;
	}
	if (!f->is && !f->is_looked) {
		f->after_is = f->step;
		fjob_step(f, FS_FETCH_SERVICE);
		return;
	}
	f->mslot = i;
	f->mready = false;
	flexmedia_start(worker_http(f->w), &f->fw->media, f->is, f->items[i], fjob_media_done, f);
}

/* Message i is in the conversation: the next one starts from scratch. */
static void fjob_written(struct fjob *f, size_t i)
{
	f->injected[i] = true;
	if (f->mslot == i && f->mready)
		flexmedia_count(f->moutcome);
	if (f->mslot == i) {
		f->mready = false;
		f->mtried = false;
		free(f->msid);
		f->msid = NULL;
	}
}

static void fjob_step(struct fjob *f, enum fstep s)
{
	const struct config *cfg = f->fw->cfg;
	char *form = NULL;
	f->step = s;
	switch (s) {
	case FS_LIST: {
		char *addr = curl_easy_escape(NULL, f->customer, 0);
		char *url = xasprintf("%s/v1/ParticipantConversations?Address=%s&PageSize=50",
				      cfg->twilio_conversations_base, addr);
		curl_free(addr);
		fjob_call(f, "GET", url, NULL);
		return;
	}
	case FS_CLOSE:
		if (f->iclose >= f->nclose) {
			fjob_step(f, f->ch ? FS_LIST_MESSAGES : FS_CREATE);
			return;
		}
		form_append(&form, "State", "closed");
		fjob_call(f, "POST", xasprintf("%s/v1/Conversations/%s", cfg->twilio_conversations_base,
					       f->close[f->iclose]), form);
		return;
	case FS_CREATE: {
		char *friendly = xasprintf("WhatsApp %s%s%s%s", f->name ? f->name : "",
					   f->name ? " (" : "", f->customer, f->name ? ")" : "");
		json_t *a = json_pack("{s:s, s:I}", "baton_conversation", f->conv, "baton_job",
				      (json_int_t)f->job);
		char *attrs = json_dumps(a, JSON_COMPACT);
		json_decref(a);
		form_append(&form, "FriendlyName", friendly);
		form_append(&form, "UniqueName", f->unique);
		form_append(&form, "Attributes", attrs);
		free(friendly);
		free(attrs);
		fjob_call(f, "POST", xasprintf("%s/v1/Conversations", cfg->twilio_conversations_base),
			  form);
		return;
	}
	case FS_FETCH_OWN:
		fjob_call(f, "GET", xasprintf("%s/v1/Conversations/%s", cfg->twilio_conversations_base,
					      f->unique), NULL);
		return;
	case FS_LIST_MESSAGES:
		f->pages = 0;
		fjob_call(f, "GET", fjob_conv_url(f, "/Messages?PageSize=100"), NULL);
		return;
	case FS_INJECT:
	case FS_FORWARD:
		fjob_write_next(f);
		return;
	case FS_FETCH_SERVICE:
		fjob_call(f, "GET", fjob_conv_url(f, ""), NULL);
		return;
	case FS_CHECK_MEDIA:
		fjob_call(f, "GET", xasprintf("%s/v1/Services/%s/Media/%s", cfg->twilio_mcs_base, f->is,
					      f->msid), NULL);
		return;
	case FS_LIST_PARTICIPANTS:
		f->pages = 0;
		fjob_call(f, "GET", fjob_conv_url(f, "/Participants?PageSize=100"), NULL);
		return;
	case FS_ADD_PARTICIPANT:
		form_append(&form, "MessagingBinding.Address", f->customer);
		form_append(&form, "MessagingBinding.ProxyAddress", f->business);
		fjob_call(f, "POST", fjob_conv_url(f, "/Participants"), form);
		return;
	case FS_CHECK_MARK:
		fjob_call(f, "GET", fjob_conv_url(f, ""), NULL);
		return;
	case FS_FIND_TASK: {
		char *q = flexapi_task_query(f->ch);
		char *eq = curl_easy_escape(NULL, q, 0);
		char *url = xasprintf("%s/v1/Workspaces/%s/Tasks?EvaluateTaskAttributes=%s&PageSize=20",
				      cfg->twilio_taskrouter_base, cfg->flex_workspace_sid, eq);
		curl_free(eq);
		free(q);
		fjob_call(f, "GET", url, NULL);
		return;
	}
	case FS_INTERACTION: {
		/* The business number's own workflow, channel and language. */
		const struct config *ncfg = config_for(cfg, f->business);
		struct flex_interaction_req ir = {
			.ch = f->ch, .workspace = cfg->flex_workspace_sid,
			.workflow = ncfg->flex_workflow_sid, .task_channel = ncfg->flex_task_channel,
			.language = ncfg->ai_language, .business = f->business,
			.customer = f->customer, .name = f->name, .conv_key = f->conv,
			.trigger = f->trigger, .reason = f->reason, .summary = f->summary,
			.turns = f->nturns };
		fjob_call(f, "POST", xasprintf("%s/v1/Interactions", cfg->twilio_flex_base),
			  flexapi_interaction_form(&ir));
		return;
	}
	case FS_MARK: {
		char *attrs = flexapi_mark_attributes(f->conv, (unsigned long long)f->job, &f->sids);
		form_append(&form, "Attributes", attrs);
		free(attrs);
		fjob_call(f, "POST", fjob_conv_url(f, ""), form);
		return;
	}
	case FS_CLOSE_CHANNEL:
		if (!f->sids.kd || !f->sids.uo) {
			fjob_step(f, FS_CLOSE_CONV);
			return;
		}
		form_append(&form, "Status", "closed");
		form_append(&form, "Routing", "{\"status\":\"closed\"}");
		fjob_call(f, "POST", xasprintf("%s/v1/Interactions/%s/Channels/%s", cfg->twilio_flex_base,
					       f->sids.kd, f->sids.uo), form);
		return;
	case FS_CLOSE_CONV:
		if (!f->ch) {
			fjob_finish(f);
			return;
		}
		form_append(&form, "State", "closed");
		fjob_call(f, "POST", fjob_conv_url(f, ""), form);
		return;
	case FS_FORWARD_CHECK:
		/* A retried forward (after a crash or a timeout) may already be there. */
		fjob_call(f, "GET", fjob_conv_url(f, "/Messages?Order=desc&PageSize=50"), NULL);
		return;
	}
}

/* Follows meta.next_page_url of a list; returns true when a page was requested. */
static bool fjob_follow(struct fjob *f, char *next)
{
	if (!next)
		return false;
	if (++f->pages > FLEX_PAGES_MAX || strncmp(next, "http", 4) != 0) {
		free(next);
		return false;
	}
	fjob_call(f, "GET", next, NULL);
	return true;
}

/* Handles a 2xx answer of the current step. */
static void fjob_advance(struct fjob *f, const char *body, size_t len)
{
	char *next = NULL, *sid = NULL, *state = NULL;
	switch (f->step) {
	case FS_LIST: {
		char **open = NULL;
		if (flexapi_parse_participant_conversations(body, len, f->unique, &open, &f->ch,
							    &next) < 0) {
			fjob_fail(f, ST_FAILED, 0, "unreadable participant conversations list");
			return;
		}
		for (size_t i = 0; open[i]; i++) {
			f->close = xrealloc(f->close, (f->nclose + 1) * sizeof(char *));
			f->close[f->nclose++] = open[i];
		}
		free(open);
		if (fjob_follow(f, next))
			return;
		fjob_step(f, FS_CLOSE);
		return;
	}
	case FS_CLOSE:
		f->iclose++;
		fjob_step(f, FS_CLOSE);
		return;
	case FS_CREATE:
	case FS_FETCH_OWN:
		if (flexapi_parse_sid(body, len, &sid, &state) < 0) {
			fjob_fail(f, ST_FAILED, 0, "conversation answer without sid");
			free(state);
			return;
		}
		if (state && !strcmp(state, "closed")) {
			free(sid);
			free(state);
			fjob_fail(f, ST_FAILED, 0, "our conversation from an earlier attempt is closed");
			return;
		}
		free(state);
		free(f->ch);
		f->ch = sid;
		free(f->is);
		f->is_looked = flexapi_parse_service(body, len, &f->is) == 0;
		fjob_progress(f);
		fjob_step(f, FS_LIST_MESSAGES);
		return;
	case FS_LIST_MESSAGES:
		if (flexapi_parse_injected(body, len, (unsigned long long)f->job, f->keys,
					   f->injected, f->ninject, &next) < 0) {
			fjob_fail(f, ST_FAILED, 0, "unreadable message list");
			return;
		}
		if (fjob_follow(f, next))
			return;
		fjob_step(f, FS_INJECT);
		return;
	case FS_INJECT:
	case FS_FORWARD:
		fjob_written(f, fjob_next_inject(f));
		fjob_step(f, f->step);
		return;
	case FS_FETCH_SERVICE:
		/* Without a service the media cannot be uploaded: they become
		 * notes (flexmedia), the messages still go in. */
		if (flexapi_parse_service(body, len, &f->is) < 0) {
			struct log_ids ids = { .conv = f->conv, .job = f->job };
			log_emit(LOG_WARN, &ids, "conversation %s names no chat service: its media "
				 "cannot be uploaded", f->ch);
		}
		f->is_looked = true;
		fjob_step(f, f->after_is);
		return;
	case FS_CHECK_MEDIA: {
		enum fstep write = f->op == FOP_FORWARD ? FS_FORWARD : FS_INJECT;
		f->mtried = false;
		bool attached = flexapi_parse_media_attached(body, len);
		if (!attached && f->mrefused) {
			/* Refused for what it carries: the agent gets the note. */
			struct log_ids ids = { .conv = f->conv, .job = f->job };
			const struct media_item *it = f->items[f->mslot];
			log_emit(LOG_WARN, &ids, "Twilio %ld: conversation %s refused the message with "
				 "%s (%s) %s: the agent sees a note instead", f->mrefused, f->ch,
				 media_kind_word(media_kind_of(it->ctype)),
				 it->ctype ? it->ctype : "no type", f->msid);
			free(f->msid);
			f->msid = NULL;
			f->moutcome = FM_REFUSED;
		}
		f->mrefused = 0;
		if (attached) {
			struct log_ids ids = { .conv = f->conv, .job = f->job };
			log_emit(LOG_INFO, &ids, "media %s is already in conversation %s: not posted again",
				 f->msid, f->ch);
			fjob_written(f, f->mslot);
		}
		fjob_step(f, write);
		return;
	}
	case FS_LIST_PARTICIPANTS:
		if (flexapi_parse_participant(body, len, f->customer, &f->mb, &next) < 0) {
			fjob_fail(f, ST_FAILED, 0, "unreadable participant list");
			return;
		}
		if (f->mb) {
			free(next);
			fjob_step(f, FS_CHECK_MARK);
			return;
		}
		if (fjob_follow(f, next))
			return;
		fjob_step(f, FS_ADD_PARTICIPANT);
		return;
	case FS_ADD_PARTICIPANT:
		if (flexapi_parse_sid(body, len, &f->mb, NULL) < 0) {
			fjob_fail(f, ST_FAILED, 0, "participant answer without sid");
			return;
		}
		fjob_step(f, FS_CHECK_MARK);
		return;
	case FS_CHECK_MARK:
		if (flexapi_parse_marked(body, len, &f->sids) == 0) {
			fjob_finish(f); /* an earlier attempt created the interaction */
			return;
		}
		fjob_step(f, FS_FIND_TASK);
		return;
	case FS_FIND_TASK:
		/* An attempt that died after creating the Interaction but before
		 * marking the conversation: Flex's task names the Interaction. */
		if (flexapi_parse_tasks(body, len, f->ch, &f->sids) == 0) {
			struct log_ids ids = { .conv = f->conv, .job = f->job };
			log_emit(LOG_INFO, &ids, "interaction %s already exists (task %s): not creating "
				 "another", f->sids.kd, f->sids.wt);
			fjob_step(f, FS_MARK);
			return;
		}
		flexapi_sids_release(&f->sids);
		fjob_step(f, FS_INTERACTION);
		return;
	case FS_INTERACTION:
		if (flexapi_parse_interaction(body, len, &f->sids) < 0) {
			fjob_fail(f, ST_FAILED, 0, "interaction answer without sid/channel");
			return;
		}
		fjob_step(f, FS_MARK);
		return;
	case FS_FORWARD_CHECK:
		flexapi_parse_forwarded(body, len, (long long)f->seq, f->injected, f->ninject);
		fjob_step(f, FS_FORWARD);
		return;
	case FS_CLOSE_CHANNEL:
		fjob_step(f, FS_CLOSE_CONV);
		return;
	case FS_MARK:
	case FS_CLOSE_CONV:
		fjob_finish(f);
		return;
	}
}

/* The step that finds out whether a creating POST already happened. */
static enum fstep fjob_check_step(enum fstep s)
{
	switch (s) {
	case FS_INJECT: return FS_LIST_MESSAGES;
	case FS_ADD_PARTICIPANT: return FS_LIST_PARTICIPANTS;
	case FS_INTERACTION: return FS_CHECK_MARK;
	case FS_FORWARD: return FS_FORWARD_CHECK;
	default: return s; /* reads, and writes that are idempotent by themselves */
	}
}

/* Twilio did not act on the request: throttled (429) or never reached. */
static bool fjob_surely_not_done(const struct httpc_resp *resp)
{
	return resp->status == 429 || resp->curl_code == CURLE_COULDNT_CONNECT ||
	       resp->curl_code == CURLE_COULDNT_RESOLVE_HOST;
}

static long fjob_twilio_code(const char *body, size_t len, long status)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *code = json_object_get(root, "code");
	long c = json_is_integer(code) ? (long)json_integer_value(code) : status;
	json_decref(root);
	return c;
}

static char *fjob_twilio_message(const char *body, size_t len, long status)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *m = json_string_value(json_object_get(root, "message"));
	char *out = m ? xasprintf("%.200s", m) : xasprintf("HTTP %ld", status);
	json_decref(root);
	return out;
}

static void fjob_done(const struct httpc_resp *resp, void *arg)
{
	struct fjob *f = arg;
	struct log_ids ids = { .conv = f->conv, .job = f->job };
	long st = resp->status;

	metrics_observe(&M_FLEX_SECONDS, NULL, NULL, resp->total_ms / 1000.0);
	if (!resp->curl_code && st >= 200 && st < 300) {
		f->attempt = 0;
		fjob_advance(f, resp->body, resp->body_len);
		return;
	}
	long code = resp->curl_code ? 0 : fjob_twilio_code(resp->body, resp->body_len, st);
	char *msg = resp->curl_code ? xasprintf("transfer to %s failed: %s", resp->url, resp->error)
				    : fjob_twilio_message(resp->body, resp->body_len, st);
	char code_label[24] = "transport";
	if (!resp->curl_code)
		snprintf(code_label, sizeof(code_label), "%ld", code);
	metrics_inc(&M_FLEX_ERRORS, code_label, NULL);
	if (resp->curl_code || st == 429 || st >= 500) {
		uint64_t d = backoff_ms(f->attempt + 1, FLEX_BACKOFF_BASE_MS, FLEX_BACKOFF_CAP_MS,
					resp->retry_after_ms);
		if (clock_mono_ms() + d < f->deadline) {
			f->attempt++;
			f->fw->retries++;
			metrics_inc(&M_FLEX_RETRIES, NULL, NULL);
			log_emit(LOG_WARN, &ids, "'%s' failed (%ld %s): retry %u in %llu ms",
				 fstep_names[f->step], code, msg, f->attempt, (unsigned long long)d);
			free(msg);
			enum fstep check = fjob_check_step(f->step);
			if (check != f->step && !fjob_surely_not_done(resp)) {
				/* A creating POST that may have worked: look before posting again. */
				f->delay = d;
				fjob_step(f, check);
			} else {
				fjob_send(f, d);
			}
			return;
		}
		fjob_fail(f, ST_RETRY, code, msg);
		free(msg);
		return;
	}
	if ((f->step == FS_INJECT || f->step == FS_FORWARD) && f->msid && f->mtried) {
		/* curl sends a POST again by itself when a reused connection
		 * dies before the answer: a refusal (the MediaSid is attached
		 * already) may then mean that the first one went. */
		log_emit(LOG_INFO, &ids, "'%s' refused (%ld %s): checking media %s", fstep_names[f->step],
			 code, msg, f->msid);
		free(msg);
		f->mrefused = code ? code : st;
		fjob_step(f, FS_CHECK_MEDIA);
		return;
	}
	/* 4xx that are expected on a resumed attempt. */
	if (f->step == FS_CREATE && (st == 409 || code == 50353)) {
		free(msg);
		fjob_step(f, FS_FETCH_OWN); /* created by an earlier attempt */
		return;
	}
	if (f->step == FS_CLOSE && st == 404) {
		free(msg);
		f->iclose++;
		fjob_step(f, FS_CLOSE);
		return;
	}
	if (f->step == FS_CHECK_MEDIA) {
		/* Nothing says the message went: post it (Twilio refuses a
		 * MediaSid attached twice, so this cannot double it); after a
		 * refusal, with the note instead, or it would be refused again. */
		log_emit(LOG_WARN, &ids, "cannot check media %s (%ld %s): posting %s", f->msid, code,
			 msg, f->mrefused ? "the note" : "it again");
		free(msg);
		f->mtried = false;
		if (f->mrefused) {
			free(f->msid);
			f->msid = NULL;
			f->moutcome = FM_REFUSED;
			f->mrefused = 0;
		}
		fjob_step(f, f->op == FOP_FORWARD ? FS_FORWARD : FS_INJECT);
		return;
	}
	if (f->step == FS_FIND_TASK) {
		/* Without TaskRouter access the pipeline still works, with the
		 * narrow duplicate window the README documents. */
		log_emit(LOG_WARN, &ids, "cannot search tasks (%ld %s): creating the interaction", code,
			 msg);
		free(msg);
		fjob_step(f, FS_INTERACTION);
		return;
	}
	if (f->step == FS_CLOSE_CHANNEL || f->step == FS_CLOSE_CONV) {
		/* Already closed (by the agent, or an earlier attempt): nothing left to do. */
		log_emit(LOG_INFO, &ids, "'%s': %ld %s (already closed?)", fstep_names[f->step], code, msg);
		free(msg);
		if (f->step == FS_CLOSE_CHANNEL)
			fjob_step(f, FS_CLOSE_CONV);
		else
			fjob_finish(f);
		return;
	}
	if (f->step == FS_MARK) {
		/* The interaction exists; only the resume hint is missing. */
		log_emit(LOG_WARN, &ids, "could not mark conversation %s (%ld %s)", f->ch, code, msg);
		free(msg);
		fjob_finish(f);
		return;
	}
	fjob_fail(f, ST_FAILED, code, msg);
	free(msg);
}

/* The enum of an envelope's op: 0, or -1 for a word the router never sends. */
static int fop_parse(const char *op, enum fop *out)
{
	for (size_t i = 0; op && fop_names[i]; i++)
		if (!strcmp(op, fop_names[i])) {
			*out = (enum fop)i;
			return 0;
		}
	return -1;
}

/* A job whose op we do not know fails at once: taking it for a handoff
 * would open a Flex conversation nobody asked for. */
static void flexwork_refuse(struct flexwork *fw, struct worker *w, const struct envelope *job)
{
	struct log_ids ids = { .conv = job->conv, .job = job->id };
	log_emit(LOG_ERROR, &ids, "flex job refused: unknown op '%s'", job->op ? job->op : "");
	fw->failures++;
	struct envelope r = { .type = ENV_RESULT_FLEX, .id = job->id, .ts = clock_wall_ms(),
			      .conv = job->conv, .op = job->op ? job->op : (char *)"",
			      .status = ST_FAILED, .err = (char *)"unknown op" };
	worker_reply(w, &r);
}

/* Adds a turn: its text-only view (what the customer typed, then the
 * location or button and a note per media item: media.h), the same
 * without the item notes, and its media. A description that does not
 * parse is left out: the text still goes. */
static void fjob_add_turn(struct fjob *f, enum env_role role, const char *text, uint64_t ts,
			  const char *media)
{
	size_t n = f->nturns;
	struct env_turn *t = &f->turns[n];
	struct media_msg *m = &f->media[n];
	t->role = role;
	t->ts = ts;
	if (media && media_from_json(media, m) < 0) {
		struct log_ids ids = { .conv = f->conv, .job = f->job };
		log_emit(LOG_WARN, &ids, "unreadable media description of turn %zu: left out", n);
		media_release(m);
	}
	t->text = media_text_view(text, m);
	struct media_msg bare = *m;
	bare.nitems = 0; /* a view of m: not released */
	f->plain[n] = media_text_view(text, &bare);
	f->nturns++;
}

static void fjob_add_slot(struct fjob *f, size_t turn, size_t item, size_t src,
			  const struct media_item *it)
{
	size_t i = f->ninject++;
	f->keys[i] = (struct flex_slot){ .turn = turn, .item = item };
	f->src[i] = src;
	f->items[i] = it;
}

/* The messages to write: a message per turn, one per media item of a
 * turn that has several; or the transcript, then one per media item of
 * the whole history (numbered from 1 as items of message 0). */
static void fjob_plan(struct fjob *f)
{
	size_t max = 1;
	for (size_t t = 0; t < f->nturns; t++)
		max += f->media[t].nitems ? f->media[t].nitems : 1;
	f->keys = xcalloc(max, sizeof(*f->keys));
	f->items = xcalloc(max, sizeof(*f->items));
	f->src = xcalloc(max, sizeof(*f->src));
	f->injected = xcalloc(max, sizeof(bool));
	if (f->transcript) {
		if (!f->nturns)
			return;
		fjob_add_slot(f, 0, 0, 0, NULL);
		for (size_t t = 0; t < f->nturns; t++)
			for (size_t k = 0; k < f->media[t].nitems; k++)
				fjob_add_slot(f, 0, f->ninject, t, &f->media[t].items[k]);
		return;
	}
	for (size_t t = 0; t < f->nturns; t++) {
		if (!f->media[t].nitems)
			fjob_add_slot(f, t, 0, t, NULL);
		for (size_t k = 0; k < f->media[t].nitems; k++)
			fjob_add_slot(f, t, k, t, &f->media[t].items[k]);
	}
}

static void fjob_alloc_turns(struct fjob *f, size_t n)
{
	n = n ? n : 1;
	f->turns = xcalloc(n, sizeof(*f->turns));
	f->plain = xcalloc(n, sizeof(*f->plain));
	f->media = xcalloc(n, sizeof(*f->media));
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void flexwork_job(struct worker *w, const struct envelope *job, void *arg)
{
	struct flexwork *fw = arg;
	enum fop op;
	if (fop_parse(job->op, &op) < 0) {
		flexwork_refuse(fw, w, job);
		return;
	}
	struct fjob *f = xcalloc(1, sizeof(*f));
	f->fw = fw;
	f->w = w;
	f->job = job->id;
	f->op = op;
	f->conv = xstrdup(job->conv);
	f->customer = xstrdup(job->from);
	f->business = xstrdup(job->to);
	f->name = job->name && *job->name ? xstrdup(job->name) : NULL;
	f->trigger = dup_or_null(job->trigger);
	f->reason = dup_or_null(job->reason);
	f->summary = job->summary && *job->summary ? xstrdup(job->summary) : NULL;
	f->ch = job->ch && *job->ch ? xstrdup(job->ch) : NULL;
	f->seq = job->seq;
	f->deadline = clock_mono_ms() + (uint64_t)fw->cfg->flex_retry_deadline_ms;
	if (!*f->customer || !*f->business) {
		fjob_fail(f, ST_FAILED, 0, "job without customer or business address");
		return;
	}
	if (f->op == FOP_CLOSE) {
		f->sids.kd = dup_or_null(job->kd);
		f->sids.uo = dup_or_null(job->uo);
		fjob_step(f, FS_CLOSE_CHANNEL);
		return;
	}
	if (f->op == FOP_FORWARD) {
		fjob_alloc_turns(f, 1);
		fjob_add_turn(f, ROLE_CUSTOMER, job->body ? job->body : "", job->ts, job->media);
		fjob_plan(f);
		if (!f->ch) {
			fjob_fail(f, ST_FAILED, 0, "no Flex conversation to forward to");
			return;
		}
		fjob_step(f, FS_FORWARD_CHECK);
		return;
	}
	/* The router may send an empty history (a brand-new conversation). */
	fjob_alloc_turns(f, job->nturns);
	for (size_t i = 0; i < job->nturns; i++)
		fjob_add_turn(f, job->turns[i].role, job->turns[i].text, job->turns[i].ts,
			      job->turns[i].media);
	f->transcript = fw->cfg->handoff_inject == CONFIG_INJECT_TRANSCRIPT;
	fjob_plan(f);
	f->unique = xasprintf("baton-%llu-%llu", (unsigned long long)job->id,
			      (unsigned long long)job->ts);
	struct log_ids ids = { .conv = f->conv, .job = f->job };
	log_emit(LOG_INFO, &ids, "handoff started (%s: %s), %zu history turns",
		 f->trigger ? f->trigger : "?", f->reason ? f->reason : "", f->nturns);
	/* A handoff always makes its own conversation, whatever the last one was. */
	free(f->ch);
	f->ch = NULL;
	fjob_step(f, FS_LIST);
}
