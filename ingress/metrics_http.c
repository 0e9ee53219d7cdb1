/* metrics_http — GET /metrics and ingress's request figures; see metrics_http.h. */
#include "metrics_http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>

#include "auth.h"
#include "clock.h"
#include "metrics.h"
#include "metrics_merge.h"
#include "xalloc.h"

/* Every path label ingress uses. */
static const char *const http_paths[] = {
	"/twilio/messages", "/twilio/conversations", "/twilio/taskrouter", "/twilio/status",
	"/admin/handback", "/admin/escalate", "/admin/purge", "/healthz", METRICS_HTTP_PATH,
	"other", NULL,
};
static const char *const webhook_paths[] = {
	"/twilio/messages", "/twilio/conversations", "/twilio/taskrouter", "/twilio/status", NULL,
};
static const char *const file_states[] = { "fresh", "stale", NULL };

static const struct metric_def M_REQUESTS = {
	"baton_ingress_requests_total", METRIC_COUNTER,
	"HTTP requests ingress answered, by path and status code (none: the client left first).",
	{ "path", "code" }, { NULL, NULL } };
static const struct metric_def M_DURATION = {
	"baton_ingress_request_duration_seconds", METRIC_HISTOGRAM,
	"Time from a request's headers to its answer, by path; a webhook's includes the router's "
	"commit.", { "path" }, { webhook_paths } };
static const struct metric_def M_SIGNATURE = {
	"baton_ingress_signature_failures_total", METRIC_COUNTER,
	"Webhooks refused (403) for a missing or wrong X-Twilio-Signature, by path.",
	{ "path" }, { webhook_paths } };
static const struct metric_def M_SLOW_CUT = {
	"baton_ingress_slow_connections_cut_total", METRIC_COUNTER,
	"Connections shut down for sending no complete request head within http.head_timeout_s.",
	{ NULL }, { NULL } };
static const struct metric_def M_INFLIGHT = {
	"baton_ingress_requests_in_flight", METRIC_GAUGE,
	"Requests received and not answered yet (webhooks waiting for the router included).",
	{ NULL }, { NULL } };
static const struct metric_def M_FILES = {
	"baton_ingress_metrics_files", METRIC_GAUGE,
	"Metrics files of the other baton processes at the last scrape: fresh ones are merged, "
	"stale ones (old, or their process is gone) left out.", { "state" }, { file_states } };

/* A request between its first access-handler call and its completion. */
struct live {
	struct MHD_Connection *c;
	const char *path;
	uint64_t t0_us;
	UT_hash_handle hh;
};

static struct live *lives;
static bool registered;

static void metrics_http_collect(void *arg)
{
	(void)arg;
	metrics_set(&M_INFLIGHT, NULL, NULL, (double)HASH_COUNT(lives));
}

static void metrics_http_register(void)
{
	static const struct metric_def *const defs[] = { &M_REQUESTS, &M_DURATION, &M_SIGNATURE,
							 &M_INFLIGHT, &M_SLOW_CUT, NULL };
	if (registered)
		return;
	registered = true;
	metrics_register(defs);
	metrics_collector_add(metrics_http_collect, NULL);
}

const char *metrics_http_path(const char *url)
{
	return metrics_label_in(url, http_paths);
}

bool metrics_http_owns(const char *url)
{
	return !strcmp(url, METRICS_HTTP_PATH);
}

void metrics_http_begin(struct MHD_Connection *c, const char *url)
{
	struct live *l = NULL;
	metrics_http_register();
	HASH_FIND_PTR(lives, &c, l);
	if (l)
		return;
	l = xcalloc(1, sizeof(*l));
	l->c = c;
	l->path = metrics_http_path(url);
	l->t0_us = clock_mono_us();
	HASH_ADD_PTR(lives, c, l);
}

void metrics_http_completed(struct MHD_Connection *c)
{
	struct live *l = NULL;
	HASH_FIND_PTR(lives, &c, l);
	if (!l)
		return;
	HASH_DEL(lives, l);
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
	char code[16] = "none";
	if (ci && ci->http_status) {
		snprintf(code, sizeof(code), "%u", ci->http_status);
		metrics_observe(&M_DURATION, l->path, NULL,
				(double)(clock_mono_us() - l->t0_us) / 1e6);
	}
	metrics_inc(&M_REQUESTS, l->path, code);
	free(l);
}

void metrics_http_signature_failure(const char *path)
{
	metrics_inc(&M_SIGNATURE, metrics_http_path(path), NULL);
}

void metrics_http_slow_cut(size_t n)
{
	metrics_add(&M_SLOW_CUT, NULL, NULL, (double)n);
}

static enum MHD_Result metrics_http_text(struct MHD_Connection *c, unsigned status,
					 const char *text, const char *hname, const char *hval)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
								 MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
	if (hname)
		MHD_add_response_header(r, hname, hval);
	enum MHD_Result rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}


enum MHD_Result metrics_http_handle(struct MHD_Connection *c, const char *method,
				    const struct config *cfg)
{
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return metrics_http_text(c, 405, "method not allowed\n", MHD_HTTP_HEADER_ALLOW,
					 "GET, HEAD");
	if (cfg->metrics_token[0] && !auth_bearer(c, cfg->metrics_token))
		return metrics_http_text(c, 401, "unauthorized\n", MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					 "Bearer realm=\"metrics\"");

	char *dir = metrics_dir(cfg->state_dir);
	char **files = NULL;
	size_t stale = 0;
	size_t n = metrics_merge_read_dir(dir, cfg->metrics_interval_ms, getpid(), &files, &stale);
	free(dir);
	metrics_set(&M_FILES, "fresh", NULL, (double)n);
	metrics_set(&M_FILES, "stale", NULL, (double)stale);

	/* Ours first: ingress's families lead, the others follow in file order. */
	const char **texts = xcalloc(n + 1, sizeof(*texts));
	char *own = metrics_render_string();
	texts[0] = own;
	for (size_t i = 0; i < n; i++)
		texts[i + 1] = files[i];
	char *body = metrics_merge_texts(texts, n + 1);
	free(own);
	for (size_t i = 0; i < n; i++)
		free(files[i]);
	free(files);
	free(texts);

	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body,
								 MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	enum MHD_Result rc = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return rc;
}
