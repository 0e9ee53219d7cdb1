/*
 * metrics_http — ingress's GET /metrics and the figures of its own HTTP.
 *
 * GET (or HEAD) /metrics answers 200 with Content-Type
 * "text/plain; version=0.0.4": ingress's registry rendered now, merged
 * (metrics_merge_texts: each family's HELP and TYPE once) with every fresh
 * file the other processes write to <state.dir>/metrics
 * (metrics_merge_read_dir).
 * With metrics.token set the request needs "Authorization: Bearer
 * <token>" (compared in constant time), else 401; other methods get 405.
 *
 * Every request ingress answers is counted by path and status, and timed
 * from its headers to its completion (a webhook's includes the wait for the
 * router's commit): metrics_http_begin() at the access handler's entry,
 * metrics_http_completed() in MHD's completed callback, which reads the
 * status MHD sent. Paths are the known routes; anything else is "other",
 * so scanning bots cannot grow the label set.
 */
#ifndef BATON_METRICS_HTTP_H
#define BATON_METRICS_HTTP_H

#include <microhttpd.h>
#include <stdbool.h>

#include "config.h"

#define METRICS_HTTP_PATH "/metrics"

/** Whether url is /metrics. */
bool metrics_http_owns(const char *url);
/** Answer a GET/HEAD /metrics (first call of the access handler). */
enum MHD_Result metrics_http_handle(struct MHD_Connection *c, const char *method,
				    const struct config *cfg);

/** Every call of the access handler: the first one of a request starts its clock. */
void metrics_http_begin(struct MHD_Connection *c, const char *url);
/** MHD's completed callback: count and time the request. */
void metrics_http_completed(struct MHD_Connection *c);
/** A webhook refused for its X-Twilio-Signature. */
void metrics_http_signature_failure(const char *path);
/** n connections cut for a late request head (slow.h). */
void metrics_http_slow_cut(size_t n);
/** The path label of url: a known route or "other". */
const char *metrics_http_path(const char *url);

#endif
