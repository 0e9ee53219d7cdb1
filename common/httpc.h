/*
 * httpc — many HTTP requests in flight in one thread, on curl multi.
 *
 * A worker's loop calls httpc_poll() with its ZeroMQ socket's fd: it
 * sleeps until a transfer progresses, the fd wakes, a delayed request is
 * due or the timeout passes, then runs the completion callbacks of the
 * transfers that finished. Requests can start after a delay (retries
 * with backoff) without a timer of the caller's own.
 *
 * httpc_start() copies everything it needs from the request; the
 * response passed to the callback is borrowed for the callback only.
 * Secrets given as headers or basic-auth are never logged here.
 */
#ifndef BATON_HTTPC_H
#define BATON_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default bound on a response body: an LLM or Twilio answer larger than
 * this is an error, not something to buffer. */
#define HTTPC_RESPONSE_MAX (2u * 1024 * 1024)

/* One part of a multipart/form-data body (curl's MIME API builds it). */
struct httpc_part {
	const char *name;
	const char *data; /* may hold NUL bytes */
	size_t len;
	const char *filename; /* NULL: a plain field */
	const char *type;     /* NULL: curl's default */
};

struct httpc_req {
	const char *method;       /* "GET" or "POST" (default POST when body is set) */
	const char *url;
	const char *body;         /* may be NULL; binary is fine (body_len bytes) */
	size_t body_len;
	const char *content_type; /* e.g. "application/json" */
	const char *const *headers; /* NULL-terminated "Name: value" list, may be NULL */
	const char *user, *pass;  /* HTTP basic auth when user != NULL */
	long timeout_ms;
	size_t max_response;      /* 0 = HTTPC_RESPONSE_MAX */
	const struct httpc_part *parts; /* multipart/form-data instead of body (POST) */
	size_t nparts;
	/* A delayed request asks this (with the done callback's arg) when its
	 * time comes; false: it is not made, and done gets curl_code
	 * CURLE_ABORTED_BY_CALLBACK with not_started set. NULL = always. */
	bool (*may_start)(void *arg);
};

struct httpc_resp {
	long status;          /* HTTP status; 0 when the transfer failed */
	int curl_code;        /* CURLcode, 0 on a completed transfer */
	const char *error;    /* curl's description when curl_code != 0 */
	const char *body;     /* NUL-terminated; "" when empty */
	size_t body_len;
	long retry_after_ms;  /* Retry-After / retry-after-ms header, -1 when absent */
	double total_ms;
	bool too_big;         /* body exceeded max_response; transfer aborted */
	bool not_started;     /* may_start said no: nothing was sent */
	const char *url;      /* the request's URL (for logs: it holds no secret) */
	const char *content_type; /* the response's Content-Type, NULL when absent */
	/* Where a 3xx points, NULL otherwise: redirects are never followed
	 * here, so a caller can check each hop (mediafetch.h). */
	const char *redirect_url;
};

typedef void httpc_done_fn(const struct httpc_resp *resp, void *arg);

struct httpc;

struct httpc *httpc_new(void);
/** Abort every transfer without calling callbacks; *h = NULL. Accepts NULL. */
void httpc_destroy(struct httpc **h);
/** Queue req to start after delay_ms (0 = now). done(arg) runs exactly once. 0 or -1. */
int httpc_start(struct httpc *h, const struct httpc_req *req, uint64_t delay_ms,
		httpc_done_fn *done, void *arg);
/** Wait up to timeout_ms (or until extra_fd >= 0 is readable), progress transfers, run callbacks. */
int httpc_poll(struct httpc *h, int extra_fd, int timeout_ms);
/** Requests started or waiting to start. */
size_t httpc_pending(const struct httpc *h);

#endif
