/* mediafetch — checked downloads of customer media; see mediafetch.h. */
#include "mediafetch.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mediacheck.h"
#include "metrics.h"
#include "xalloc.h"

/* NULL-terminated: also the metric's label values. */
static const char *const mf_names[MF_ERRORS + 1] = {
	[MF_OK] = "ok",		  [MF_HOST] = "host",	     [MF_TYPE] = "type",
	[MF_HTTP] = "http",	  [MF_TIMEOUT] = "timeout",  [MF_TOO_BIG] = "too_big",
	[MF_TRANSPORT] = "transport", [MF_MISMATCH] = "mismatch",
};

static const char *const mf_texts[MF_ERRORS] = {
	[MF_OK] = "fetched",
	[MF_HOST] = "its URL is not on an allowed host",
	[MF_TYPE] = "its type is not accepted",
	[MF_HTTP] = "it could not be downloaded",
	[MF_TIMEOUT] = "its download timed out",
	[MF_TOO_BIG] = "it is too large",
	[MF_TRANSPORT] = "it could not be downloaded",
	[MF_MISMATCH] = "its content is not what its type says",
};

static const struct metric_def M_FETCHES = {
	"baton_media_fetches_total", METRIC_COUNTER,
	"Customer media downloads, by outcome: ok, host (URL not on media.allow_hosts, or a "
	"redirect on neither host list), type (not on media.types), http (not 200), timeout, too_big, transport, mismatch (bytes "
	"not of the declared type).",
	{ "outcome" }, { mf_names } };

const char *mediafetch_error_name(enum mediafetch_error err)
{
	return (unsigned)err < MF_ERRORS ? mf_names[err] : "unknown";
}

const char *mediafetch_error_text(enum mediafetch_error err)
{
	return (unsigned)err < MF_ERRORS ? mf_texts[err] : "it could not be downloaded";
}

void mediafetch_metrics_register(void)
{
	static const struct metric_def *const defs[] = { &M_FETCHES, NULL };
	metrics_register(defs);
}

void mediafetch_config(const struct config *cfg, struct mediafetch_cfg *out)
{
	out->user = config_rest_user(cfg);
	out->pass = config_rest_secret(cfg);
	out->allow_hosts = cfg->media_allow_hosts;
	out->redirect_hosts = cfg->media_redirect_hosts;
	out->types = cfg->media_types;
	out->max_bytes = (size_t)cfg->media_max_bytes;
	out->timeout_ms = cfg->media_timeout_ms;
}

/* Redirects followed, each hop checked against the host list. */
#define MF_HOPS_MAX 5

struct mf_call {
	const struct mediafetch_cfg *cfg;
	struct httpc *h;
	unsigned hops;
	char *declared;
	mediafetch_done_fn *done;
	void *arg;
};

static void mf_finish(struct mf_call *c, struct mediafetch_result *r)
{
	metrics_inc(&M_FETCHES, mediafetch_error_name(r->err), NULL);
	if (!r->reason)
		r->reason = mediafetch_error_text(r->err);
	c->done(r, c->arg);
	free(c->declared);
	free(c);
}

static void mf_done(const struct httpc_resp *resp, void *arg);

/* One hop. Credentials go to the webhook's URL only: a redirect points at
 * a signed storage URL on another host, which must not see them. */
static int mf_request(struct mf_call *c, const char *url)
{
	const struct mediafetch_cfg *cfg = c->cfg;
	bool first = c->hops == 0;
	struct httpc_req req = { .method = "GET", .url = url,
				 .user = first && cfg->user && *cfg->user ? cfg->user : NULL,
				 .pass = cfg->pass, .timeout_ms = cfg->timeout_ms,
				 .max_response = cfg->max_bytes };
	return httpc_start(c->h, &req, 0, mf_done, c);
}

static void mf_done(const struct httpc_resp *resp, void *arg)
{
	struct mf_call *c = arg;
	struct mediafetch_result r = { .status = resp->status };
	char why[64];

	if (!resp->curl_code && resp->status >= 300 && resp->status < 400 && resp->redirect_url) {
		/* Every hop is on a list, or not fetched. */
		if (c->hops >= MF_HOPS_MAX) {
			r.err = MF_HTTP;
			r.reason = "it could not be downloaded (too many redirects)";
		} else if (!mediacheck_host_allowed(resp->redirect_url, c->cfg->allow_hosts) &&
			   !mediacheck_host_allowed(resp->redirect_url, c->cfg->redirect_hosts)) {
			r.err = MF_HOST;
			r.reason = "it redirects to a host that is not allowed";
		} else {
			c->hops++;
			if (mf_request(c, resp->redirect_url) == 0)
				return;
			r.err = MF_TRANSPORT;
		}
		mf_finish(c, &r);
		return;
	}

	/* The served type is what the bytes claim now; the webhook's is older. */
	r.ctype = resp->content_type && *resp->content_type ? resp->content_type : c->declared;
	if (resp->too_big) {
		r.err = MF_TOO_BIG;
	} else if (resp->curl_code == CURLE_OPERATION_TIMEDOUT) {
		r.err = MF_TIMEOUT;
	} else if (resp->curl_code) {
		r.err = MF_TRANSPORT;
	} else if (resp->status != 200) {
		r.err = MF_HTTP;
		snprintf(why, sizeof(why), "it could not be downloaded (HTTP %ld)", resp->status);
		r.reason = why;
	} else if (!r.ctype || !mediacheck_type_allowed(r.ctype, c->cfg->types)) {
		r.err = MF_TYPE;
	} else if (!mediacheck_bytes_match(r.ctype, resp->body, resp->body_len)) {
		r.err = MF_MISMATCH;
	} else {
		r.data = resp->body;
		r.len = resp->body_len;
	}
	mf_finish(c, &r);
}

int mediafetch_start(struct httpc *h, const struct mediafetch_cfg *cfg,
		     const struct media_item *it, mediafetch_done_fn *done, void *arg)
{
	enum mediafetch_error refused = MF_OK;
	if (!mediacheck_host_allowed(it->url, cfg->allow_hosts))
		refused = MF_HOST;
	else if (it->ctype && !mediacheck_type_allowed(it->ctype, cfg->types))
		refused = MF_TYPE;
	if (refused != MF_OK) {
		metrics_inc(&M_FETCHES, mediafetch_error_name(refused), NULL);
		return (int)refused;
	}
	struct mf_call *c = xcalloc(1, sizeof(*c));
	c->cfg = cfg;
	c->h = h;
	c->declared = it->ctype ? xstrdup(it->ctype) : NULL;
	c->done = done;
	c->arg = arg;
	if (mf_request(c, it->url) < 0) {
		free(c->declared);
		free(c);
		return -1;
	}
	return 0;
}
