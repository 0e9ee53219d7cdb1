/*
 * aimedia — downloads and transcriptions of one AI job's media, and the
 * view of each item for the model; see aimedia.h.
 *
 * Every planned item ends exactly once (fetched, refused, failed,
 * transcribed or not): the count of those in flight reaching zero is what
 * calls the job back, and that call is the last thing this module does
 * with the job's state.
 */
#include "aimedia.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "mediacheck.h"
#include "metrics.h"
#include "xalloc.h"

#define AIMEDIA_UNHEARD "could not be transcribed"

static const char *const am_tr_outcomes[] = { "ok",	   "off",	  "no_audio", "http",
					      "timeout", "transport", "malformed", "empty",
					      NULL };

static const struct metric_def M_TRANSCRIPTIONS = {
	"baton_ai_transcriptions_total", METRIC_COUNTER,
	"Voice notes the AI needed as text, by outcome: ok, off (no transcribe.base_url), "
	"no_audio (the download failed), http (not 200), timeout, transport, malformed (no "
	"text in the answer), empty (nothing heard).",
	{ "outcome" }, { am_tr_outcomes } };

struct am_item {
	struct aimedia *m;
	size_t turn, idx;
	uint64_t seq;
	struct media_item it; /* copies of the turn's */
	enum media_kind kind;
	char *bytes;          /* an image's or PDF's, while the view points at them */
	char *transcript;
};

struct aimedia {
	const struct aimedia_cfg *cfg;
	char *conv;
	uint64_t job;
	struct llm_turn_media *views;
	size_t nturns;
	struct am_item items[AIMEDIA_FETCH_MAX];
	size_t nitems;
	char **owned; /* view texts not tied to a fetched item */
	size_t nowned;
	size_t block_bytes;
	size_t pending;
	bool unheard;
	struct httpc *h;
	aimedia_done_fn *done;
	void *arg;
};

void aimedia_config(const struct config *cfg, enum llm_provider provider,
		    struct aimedia_cfg *out)
{
	mediafetch_config(cfg, &out->fetch);
	transcribe_config(cfg, &out->transcribe);
	out->provider = provider;
	out->images = cfg->ai_images;
	out->image_max_bytes = (size_t)cfg->ai_image_max_bytes;
	out->image_fallback = cfg->ai_image_fallback;
}

void aimedia_metrics_register(void)
{
	static const struct metric_def *const defs[] = { &M_TRANSCRIPTIONS, NULL };
	mediafetch_metrics_register();
	metrics_register(defs);
}

/* The view of item x. */
static struct llm_item *am_view(struct aimedia *m, size_t turn, size_t idx)
{
	return &m->views[turn].items[idx];
}

/* Item turn/idx reads text (taken: freed with m). */
static void am_text(struct aimedia *m, size_t turn, size_t idx, char *text)
{
	struct llm_item *v = am_view(m, turn, idx);
	m->owned = xrealloc(m->owned, (m->nowned + 1) * sizeof(*m->owned));
	m->owned[m->nowned++] = text;
	v->kind = LLM_ITEM_TEXT;
	v->text = text;
}

static void am_log(const struct aimedia *m, enum log_level lvl, const struct am_item *x,
		   const char *what, const char *why)
{
	struct log_ids ids = { .conv = m->conv, .job = m->job };
	log_emit(lvl, &ids, "%s (%s) of turn %llu: %s%s%s",
		 media_kind_word(x->kind), x->it.ctype ? x->it.ctype : "unknown type",
		 (unsigned long long)x->seq, what, why ? ": " : "", why ? why : "");
}

/* A voice note the model will not hear: the note says so; counted under
 * outcome unless the transcription's answer was counted already. */
static void am_unheard(struct aimedia *m, struct am_item *x, const char *why,
		       const char *outcome)
{
	if (outcome)
		metrics_inc(&M_TRANSCRIPTIONS, outcome, NULL);
	am_log(m, LOG_WARN, x, "not transcribed", why);
	am_text(m, x->turn, x->idx, media_item_note(&x->it, AIMEDIA_UNHEARD));
	m->unheard = true;
}

/* An item that could not be had: its note with the reason. */
static void am_failed(struct aimedia *m, struct am_item *x, const char *reason)
{
	if (x->kind == MEDIA_AUDIO) {
		am_unheard(m, x, reason, "no_audio");
		return;
	}
	am_log(m, LOG_WARN, x, "not given to the model", reason);
	am_text(m, x->turn, x->idx, media_item_note(&x->it, reason));
}

/* One item ended; the last one calls the job back, as m's last act. */
static void am_end(struct aimedia *m)
{
	if (--m->pending == 0)
		m->done(m->arg);
}

static void am_transcribed(const struct transcribe_result *r, void *arg)
{
	struct am_item *x = arg;
	struct aimedia *m = x->m;

	metrics_inc(&M_TRANSCRIPTIONS, transcribe_outcome_name(r->oc), NULL);
	if (r->oc == TR_OK) {
		x->transcript = xstrdup(r->text);
		am_text(m, x->turn, x->idx, xasprintf("(voice note transcript) %s", r->text));
		am_log(m, LOG_INFO, x, "transcribed", NULL);
	} else {
		am_unheard(m, x, r->why, NULL);
	}
	am_end(m);
}

/* Bytes of an image or PDF: a block when the model may have them. */
static void am_block(struct aimedia *m, struct am_item *x, const char *data, size_t len,
		     const char *sniffed)
{
	const struct aimedia_cfg *cfg = m->cfg;
	if (!sniffed || media_kind_of(sniffed) != x->kind) {
		/* mediafetch checked the served type: it may differ from the declared one. */
		am_failed(m, x, "its content is not what its type says");
		return;
	}
	if (x->kind == MEDIA_IMAGE && len > cfg->image_max_bytes) {
		am_log(m, LOG_INFO, x, "larger than ai.image_max_bytes", "the fallback text instead");
		am_text(m, x->turn, x->idx, xstrdup(cfg->image_fallback));
		return;
	}
	if (m->block_bytes + len > AIMEDIA_BLOCK_BYTES) {
		am_failed(m, x, "not shown: the files of these messages are too large together");
		return;
	}
	m->block_bytes += len;
	x->bytes = xmalloc(len ? len : 1);
	memcpy(x->bytes, data, len);
	struct llm_item *v = am_view(m, x->turn, x->idx);
	v->kind = x->kind == MEDIA_PDF ? LLM_ITEM_PDF : LLM_ITEM_IMAGE;
	v->ctype = sniffed; /* mediacheck_sniff's static text: exact, without parameters */
	v->data = x->bytes;
	v->len = len;
}

static void am_fetched(const struct mediafetch_result *r, void *arg)
{
	struct am_item *x = arg;
	struct aimedia *m = x->m;

	if (r->err != MF_OK) {
		am_failed(m, x, r->reason);
	} else if (x->kind == MEDIA_AUDIO) {
		/* The transcription ends the item; its start failing ends it here. */
		if (transcribe_start(m->h, &m->cfg->transcribe, r->data, r->len, r->ctype,
				     am_transcribed, x) == 0)
			return;
		am_unheard(m, x, "the transcription could not start", "transport");
	} else {
		am_block(m, x, r->data, r->len, mediacheck_sniff(r->data, r->len));
	}
	am_end(m);
}

/* What item idx of turn t needs; a download is added to m's items. */
static void am_plan(struct aimedia *m, size_t turn, const struct env_turn *t, size_t idx,
		    const struct media_item *it)
{
	const struct aimedia_cfg *cfg = m->cfg;
	enum media_kind kind = media_kind_of(it->ctype);
	struct am_item probe = { .turn = turn, .idx = idx, .it = *it, .kind = kind, .seq = t->seq };

	switch (kind) {
	case MEDIA_IMAGE:
		if (!cfg->images) {
			am_text(m, turn, idx, xstrdup(cfg->image_fallback));
			return;
		}
		break;
	case MEDIA_PDF:
		if (cfg->provider != LLM_ANTHROPIC)
			return;
		break;
	case MEDIA_AUDIO:
		if (t->transcript)
			return; /* its text is the transcript already */
		if (!cfg->transcribe.base_url || !*cfg->transcribe.base_url) {
			am_unheard(m, &probe, "transcribe.base_url is not set", "off");
			return;
		}
		break;
	default:
		return;
	}
	if (m->nitems == AIMEDIA_FETCH_MAX) {
		am_failed(m, &probe, "not shown: too many files at once");
		return;
	}
	struct am_item *x = &m->items[m->nitems++];
	x->m = m;
	x->turn = turn;
	x->idx = idx;
	x->seq = t->seq;
	x->kind = kind;
	x->it.url = xstrdup(it->url);
	x->it.ctype = it->ctype ? xstrdup(it->ctype) : NULL;
}

struct aimedia *aimedia_new(const struct aimedia_cfg *cfg, const struct envelope *job)
{
	struct aimedia *m = xcalloc(1, sizeof(*m));
	size_t from = 0;

	m->cfg = cfg;
	m->conv = xstrdup(job->conv ? job->conv : "");
	m->job = job->id;
	m->nturns = job->nturns;
	m->views = xcalloc(job->nturns ? job->nturns : 1, sizeof(*m->views));
	/* The answer is for the customer turns after the last one answered. */
	for (size_t i = 0; i < job->nturns; i++)
		if (job->turns[i].role == ROLE_AI || job->turns[i].role == ROLE_AGENT)
			from = i + 1;
	for (size_t i = from; i < job->nturns; i++) {
		const struct env_turn *t = &job->turns[i];
		struct media_msg mm;
		if (t->role != ROLE_CUSTOMER || !t->media || media_from_json(t->media, &mm))
			continue;
		for (size_t k = 0; k < mm.nitems; k++)
			am_plan(m, i, t, k, &mm.items[k]);
		media_release(&mm);
	}
	return m;
}

bool aimedia_wants(const struct aimedia *m)
{
	return m->nitems > 0;
}

bool aimedia_start(struct aimedia *m, struct httpc *h, aimedia_done_fn *done, void *arg)
{
	m->h = h;
	m->done = done;
	m->arg = arg;
	/* Counted before any can end: callbacks run from httpc_poll, never in a start. */
	m->pending = 0;
	for (size_t i = 0; i < m->nitems; i++) {
		struct am_item *x = &m->items[i];
		int rc = mediafetch_start(h, &m->cfg->fetch, &x->it, am_fetched, x);
		if (rc == 0)
			m->pending++;
		else
			am_failed(m, x, rc < 0 ? "it could not be downloaded"
					       : mediafetch_error_text((enum mediafetch_error)rc));
	}
	return m->pending > 0;
}

const struct llm_turn_media *aimedia_views(const struct aimedia *m)
{
	return m->views;
}

char *aimedia_transcripts(const struct aimedia *m)
{
	json_t *arr = json_array(), *last = NULL;
	uint64_t last_seq = 0;
	for (size_t i = 0; i < m->nitems; i++) {
		const struct am_item *x = &m->items[i];
		if (!x->transcript || !x->seq)
			continue;
		if (last && last_seq == x->seq) {
			/* Two voice notes in one turn: the router keeps one text per turn. */
			char *j = xasprintf("%s\n%s", json_string_value(json_object_get(last, "text")),
					    x->transcript);
			json_object_set_new(last, "text", json_string(j));
			free(j);
			continue;
		}
		last = json_pack("{s:I, s:s}", "seq", (json_int_t)x->seq, "text", x->transcript);
		last_seq = x->seq;
		json_array_append_new(arr, last);
	}
	char *out = json_array_size(arr) ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	return out;
}

bool aimedia_voice_unheard(const struct aimedia *m)
{
	return m->unheard;
}

void aimedia_free(struct aimedia **mp)
{
	struct aimedia *m = mp ? *mp : NULL;
	if (!m)
		return;
	for (size_t i = 0; i < m->nitems; i++) {
		free(m->items[i].it.url);
		free(m->items[i].it.ctype);
		free(m->items[i].bytes);
		free(m->items[i].transcript);
	}
	for (size_t i = 0; i < m->nowned; i++)
		free(m->owned[i]);
	free(m->owned);
	free(m->views);
	free(m->conv);
	free(m);
	*mp = NULL;
}
