/*
 * mediafetch — download one customer media item for a worker, on its
 * httpc loop, without trusting anything about it.
 *
 * Before the request: the URL's host must be in media.allow_hosts and the
 * declared content type in media.types. During it: the Twilio REST
 * credentials as basic auth (Twilio can require it for media URLs),
 * media.timeout_ms, at most media.max_bytes. Redirects (Twilio sends a
 * short-lived URL on mms.twiliocdn.com) are followed up to 5 hops, each
 * hop's host on media.allow_hosts or media.redirect_hosts (shared storage
 * hosts: never a first URL, which gets the credentials), sent no
 * credentials; each hop has its own timeout. After it: a 200, a Content-Type still allowed,
 * and bytes whose magic numbers match it for images, OGG and PDF (a
 * content type can lie).
 *
 * Every outcome is counted in baton_media_fetches_total{outcome}. The
 * result passed to done is borrowed for the callback only.
 */
#ifndef BATON_MEDIAFETCH_H
#define BATON_MEDIAFETCH_H

#include <stddef.h>

#include "config.h"
#include "httpc.h"
#include "media.h"

enum mediafetch_error {
	MF_OK = 0,
	MF_HOST,      /* URL not http(s) or its host not allowed: not fetched */
	MF_TYPE,      /* content type not allowed (declared or served) */
	MF_HTTP,      /* an answer other than 200 (404, 401, 5xx...) */
	MF_TIMEOUT,   /* media.timeout_ms passed */
	MF_TOO_BIG,   /* more than media.max_bytes */
	MF_TRANSPORT, /* connection failed */
	MF_MISMATCH,  /* the bytes are not what the content type says */
	MF_ERRORS
};

struct mediafetch_cfg {
	const char *user, *pass; /* basic auth; user NULL or "": none */
	const char *allow_hosts;
	const char *redirect_hosts; /* hops after the first only */
	const char *types;
	size_t max_bytes;
	long timeout_ms;
};

struct mediafetch_result {
	enum mediafetch_error err;
	const char *reason; /* for the note and the log: "not found (HTTP 404)"... */
	long status;
	const char *ctype;  /* what the bytes are (served type, else declared) */
	const char *data;   /* MF_OK only */
	size_t len;
};

typedef void mediafetch_done_fn(const struct mediafetch_result *r, void *arg);

/** The settings of cfg (credentials: config_rest_user/secret). Borrows cfg. */
void mediafetch_config(const struct config *cfg, struct mediafetch_cfg *out);
/** Register the metric family (once per process, before the first fetch). */
void mediafetch_metrics_register(void);

/**
 * Start fetching it. 0: started, done runs exactly once later. MF_HOST or
 * MF_TYPE: refused before any request (counted; done never runs). -1: the
 * request could not start (done never runs).
 */
int mediafetch_start(struct httpc *h, const struct mediafetch_cfg *cfg,
		     const struct media_item *it, mediafetch_done_fn *done, void *arg);

/** The metric label and a short description of err. */
const char *mediafetch_error_name(enum mediafetch_error err);
const char *mediafetch_error_text(enum mediafetch_error err);

#endif
