/* flexmedia — fetch a customer's media item and upload it to MCS; see flexmedia.h. */
#include "flexmedia.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexapi.h"
#include "metrics.h"
#include "xalloc.h"

static const char *const fm_outcomes[] = { "attached", "fetch_failed", "upload_failed",
					   "refused", NULL };

static const struct metric_def M_FLEX_MEDIA = {
	"baton_flex_media_total", METRIC_COUNTER,
	"Customer media items written into a Flex conversation, by outcome: attached (uploaded "
	"to MCS, in a MediaSid message), fetch_failed (not downloaded from Twilio: see "
	"baton_media_fetches_total), upload_failed (MCS refused or did not answer), refused "
	"(Conversations refused the message with it); a failed item is shown to the agent as a "
	"note.", { "outcome" }, { fm_outcomes } };

static const char *const fm_headers[] = { "Accept: application/json", NULL };

const char *flexmedia_outcome_name(enum flexmedia_outcome o)
{
	return (unsigned)o < sizeof(fm_outcomes) / sizeof(fm_outcomes[0]) - 1 ? fm_outcomes[o]
									      : "unknown";
}

void flexmedia_count(enum flexmedia_outcome o)
{
	metrics_inc(&M_FLEX_MEDIA, flexmedia_outcome_name(o), NULL);
}

void flexmedia_metrics_register(void)
{
	static const struct metric_def *const defs[] = { &M_FLEX_MEDIA, NULL };
	metrics_register(defs);
	mediafetch_metrics_register();
}

void flexmedia_config(const struct config *cfg, struct flexmedia_cfg *out)
{
	mediafetch_config(cfg, &out->fetch);
	out->mcs_base = cfg->twilio_mcs_base;
}

struct fm_call {
	struct httpc *h;
	const struct flexmedia_cfg *cfg;
	char *is;
	flexmedia_done_fn *done;
	void *arg;
};

static void fm_finish(struct fm_call *c, const struct flexmedia_result *r)
{
	c->done(r, c->arg);
	free(c->is);
	free(c);
}

static void fm_fail(struct fm_call *c, enum flexmedia_outcome o, const char *reason)
{
	struct flexmedia_result r = { .outcome = o, .reason = reason };
	fm_finish(c, &r);
}

static void fm_uploaded(const struct httpc_resp *resp, void *arg)
{
	struct fm_call *c = arg;
	char why[160];
	char *sid = NULL;

	if (resp->curl_code) {
		snprintf(why, sizeof(why), "upload to the Media Content Service failed: %s",
			 resp->error ? resp->error : "transfer error");
		fm_fail(c, FM_UPLOAD_FAILED, why);
		return;
	}
	if (resp->status < 200 || resp->status >= 300) {
		snprintf(why, sizeof(why), "the Media Content Service answered HTTP %ld",
			 resp->status);
		fm_fail(c, FM_UPLOAD_FAILED, why);
		return;
	}
	if (flexapi_parse_media_sid(resp->body, resp->body_len, &sid) < 0) {
		fm_fail(c, FM_UPLOAD_FAILED, "the Media Content Service answered without a media SID");
		return;
	}
	struct flexmedia_result r = { .outcome = FM_ATTACHED, .media_sid = sid };
	fm_finish(c, &r);
	free(sid);
}

static void fm_fetched(const struct mediafetch_result *fr, void *arg)
{
	struct fm_call *c = arg;
	if (fr->err != MF_OK) {
		fm_fail(c, FM_FETCH_FAILED, fr->reason);
		return;
	}
	const struct mediafetch_cfg *fc = &c->cfg->fetch;
	char *url = xasprintf("%s/v1/Services/%s/Media", c->cfg->mcs_base, c->is);
	/* The type the bytes were checked against, not the webhook's older claim. */
	struct httpc_req req = { .method = "POST", .url = url, .body = fr->data,
				 .body_len = fr->len, .content_type = fr->ctype,
				 .headers = fm_headers, .user = fc->user && *fc->user ? fc->user : NULL,
				 .pass = fc->pass, .timeout_ms = fc->timeout_ms };
	int rc = httpc_start(c->h, &req, 0, fm_uploaded, c);
	free(url);
	if (rc < 0)
		fm_fail(c, FM_UPLOAD_FAILED, "the upload could not start");
}

void flexmedia_start(struct httpc *h, const struct flexmedia_cfg *cfg, const char *is,
		     const struct media_item *it, flexmedia_done_fn *done, void *arg)
{
	struct fm_call *c = xcalloc(1, sizeof(*c));
	c->h = h;
	c->cfg = cfg;
	c->is = is ? xstrdup(is) : NULL;
	c->done = done;
	c->arg = arg;
	if (!is) {
		fm_fail(c, FM_UPLOAD_FAILED, "the conversation names no chat service to upload to");
		return;
	}
	int rc = mediafetch_start(h, &cfg->fetch, it, fm_fetched, c);
	if (rc == 0)
		return;
	fm_fail(c, FM_FETCH_FAILED, rc > 0 ? mediafetch_error_text((enum mediafetch_error)rc)
					   : "the download could not start");
}
