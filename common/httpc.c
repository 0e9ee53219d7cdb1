/*
 * httpc — curl multi wrapper; see httpc.h.
 *
 * Each request becomes one struct httpc_xfer that owns its easy handle,
 * header list, body copy and response buffer. Delayed requests wait on a
 * list sorted by due time and are added to the multi handle when due.
 */
#include "httpc.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "log.h"
#include "xalloc.h"

struct httpc_xfer {
	struct httpc_xfer *next; /* in the delayed or the running list */
	struct httpc_xfer *prev; /* in the running list */
	CURL *easy;
	struct curl_slist *headers;
	curl_mime *mime;
	char *body;
	char *url;
	char *userpwd;
	char *buf;
	size_t len, cap, max;
	bool too_big;
	uint64_t due;
	bool (*may_start)(void *arg);
	httpc_done_fn *done;
	void *arg;
};

struct httpc {
	CURLM *multi;
	struct httpc_xfer *delayed; /* sorted by due */
	struct httpc_xfer *running; /* added to the multi handle */
	size_t active, waiting;
};

static bool httpc_global_done;

struct httpc *httpc_new(void)
{
	if (!httpc_global_done) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		httpc_global_done = true;
	}
	struct httpc *h = xcalloc(1, sizeof(*h));
	h->multi = curl_multi_init();
	if (!h->multi) {
		free(h);
		log_err("curl_multi_init failed");
		return NULL;
	}
	/* Reuse connections to one upstream; HTTP/1.1 keep-alive by default. */
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	return h;
}

static void httpc_xfer_free(struct httpc_xfer *x)
{
	if (!x)
		return;
	if (x->easy)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	curl_mime_free(x->mime);
	free(x->body);
	free(x->url);
	free(x->userpwd);
	free(x->buf);
	free(x);
}

void httpc_destroy(struct httpc **hp)
{
	if (!hp || !*hp)
		return;
	struct httpc *h = *hp;
	while (h->running) {
		struct httpc_xfer *x = h->running;
		h->running = x->next;
		curl_multi_remove_handle(h->multi, x->easy);
		httpc_xfer_free(x);
	}
	while (h->delayed) {
		struct httpc_xfer *x = h->delayed;
		h->delayed = x->next;
		httpc_xfer_free(x);
	}
	curl_multi_cleanup(h->multi);
	free(h);
	*hp = NULL;
}

static size_t httpc_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct httpc_xfer *x = userdata;
	size_t n = size * nmemb;
	if (x->len + n > x->max) {
		x->too_big = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (x->len + n + 1 > x->cap) {
		x->cap = (x->len + n + 1) * 2;
		if (x->cap > x->max + 1)
			x->cap = x->max + 1;
		x->buf = xrealloc(x->buf, x->cap);
	}
	memcpy(x->buf + x->len, ptr, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return n;
}

static int httpc_run_xfer(struct httpc *h, struct httpc_xfer *x)
{
	CURLMcode mc = curl_multi_add_handle(h->multi, x->easy);
	if (mc != CURLM_OK)
		return log_err("curl_multi_add_handle: %s", curl_multi_strerror(mc));
	x->prev = NULL;
	x->next = h->running;
	if (h->running)
		h->running->prev = x;
	h->running = x;
	h->active++;
	return 0;
}

static void httpc_unlink_running(struct httpc *h, struct httpc_xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		h->running = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->next = x->prev = NULL;
	h->active--;
}

int httpc_start(struct httpc *h, const struct httpc_req *req, uint64_t delay_ms,
		httpc_done_fn *done, void *arg)
{
	struct httpc_xfer *x = xcalloc(1, sizeof(*x));
	x->easy = curl_easy_init();
	if (!x->easy) {
		free(x);
		return log_err("curl_easy_init failed");
	}
	x->done = done;
	x->arg = arg;
	x->may_start = req->may_start;
	x->max = req->max_response ? req->max_response : HTTPC_RESPONSE_MAX;
	x->url = xstrdup(req->url);
	CURL *e = x->easy;
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, httpc_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 30000L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (req->body) {
		/* A copy of body_len bytes: a media upload holds NULs. */
		x->body = xmalloc(req->body_len + 1);
		memcpy(x->body, req->body, req->body_len);
		x->body[req->body_len] = '\0';
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	} else if (req->nparts) {
		x->mime = curl_mime_init(e);
		for (size_t i = 0; i < req->nparts; i++) {
			const struct httpc_part *p = &req->parts[i];
			curl_mimepart *mp = curl_mime_addpart(x->mime);
			/* curl copies the data, names and types. */
			if (!mp || curl_mime_name(mp, p->name) != CURLE_OK ||
			    curl_mime_data(mp, p->data, p->len) != CURLE_OK ||
			    (p->filename && curl_mime_filename(mp, p->filename) != CURLE_OK) ||
			    (p->type && curl_mime_type(mp, p->type) != CURLE_OK)) {
				httpc_xfer_free(x);
				return log_err("cannot build the multipart body of %s", req->url);
			}
		}
		curl_easy_setopt(e, CURLOPT_MIMEPOST, x->mime);
	}
	if (req->method && strcmp(req->method, "GET") == 0)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (req->method && strcmp(req->method, "POST") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->content_type) {
		char *ct = xasprintf("Content-Type: %s", req->content_type);
		x->headers = curl_slist_append(x->headers, ct);
		free(ct);
	}
	/* curl would otherwise send "Expect: 100-continue" on larger bodies and wait. */
	x->headers = curl_slist_append(x->headers, "Expect:");
	for (const char *const *hd = req->headers; hd && *hd; hd++)
		x->headers = curl_slist_append(x->headers, *hd);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
	if (req->user) {
		x->userpwd = xasprintf("%s:%s", req->user, req->pass ? req->pass : "");
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(e, CURLOPT_USERPWD, x->userpwd);
	}

	if (delay_ms == 0) {
		if (httpc_run_xfer(h, x) < 0) {
			httpc_xfer_free(x);
			return -1;
		}
		return 0;
	}
	x->due = clock_mono_ms() + delay_ms;
	struct httpc_xfer **pp = &h->delayed;
	while (*pp && (*pp)->due <= x->due)
		pp = &(*pp)->next;
	x->next = *pp;
	*pp = x;
	h->waiting++;
	return 0;
}

static void httpc_start_due(struct httpc *h)
{
	uint64_t now = clock_mono_ms();
	while (h->delayed && h->delayed->due <= now) {
		struct httpc_xfer *x = h->delayed;
		h->delayed = x->next;
		h->waiting--;
		x->next = NULL;
		if (x->may_start && !x->may_start(x->arg)) {
			struct httpc_resp r = { .curl_code = CURLE_ABORTED_BY_CALLBACK,
						.error = "not started", .body = "",
						.retry_after_ms = -1, .not_started = true, .url = x->url };
			x->done(&r, x->arg);
			httpc_xfer_free(x);
			continue;
		}
		if (httpc_run_xfer(h, x) < 0) {
			struct httpc_resp r = { .curl_code = CURLE_FAILED_INIT,
						.error = "cannot start transfer", .body = "",
						.retry_after_ms = -1, .url = x->url };
			x->done(&r, x->arg);
			httpc_xfer_free(x);
		}
	}
}

/* Retry-After is seconds or an HTTP date; retry-after-ms (Anthropic) is ms. */
static long httpc_retry_after(CURL *e)
{
	struct curl_header *hd = NULL;
	if (curl_easy_header(e, "retry-after-ms", 0, CURLH_HEADER, -1, &hd) == CURLHE_OK) {
		char *end;
		double v = strtod(hd->value, &end);
		if (end != hd->value && v >= 0)
			return (long)v;
	}
	if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1, &hd) == CURLHE_OK) {
		char *end;
		long v = strtol(hd->value, &end, 10);
		if (end != hd->value && v >= 0)
			return v * 1000;
		time_t t = curl_getdate(hd->value, NULL);
		if (t > 0) {
			long d = (long)(t - (time_t)(clock_wall_ms() / 1000));
			return d > 0 ? d * 1000 : 0;
		}
	}
	return -1;
}

static void httpc_finish(struct httpc *h, CURL *e, CURLcode code)
{
	struct httpc_xfer *x = NULL;
	curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
	curl_multi_remove_handle(h->multi, e);
	httpc_unlink_running(h, x);

	struct httpc_resp r = { .curl_code = code, .retry_after_ms = -1, .url = x->url };
	curl_off_t us = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &us);
	r.total_ms = (double)us / 1000.0;
	r.too_big = x->too_big;
	if (code != CURLE_OK) {
		r.error = x->too_big ? "response too large" : curl_easy_strerror(code);
		r.status = x->too_big ? r.status : 0;
	}
	r.retry_after_ms = httpc_retry_after(e);
	char *ct = NULL;
	if (curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK)
		r.content_type = ct;
	char *loc = NULL;
	if (curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK)
		r.redirect_url = loc;
	r.body = x->buf ? x->buf : "";
	r.body_len = x->len;
	x->done(&r, x->arg);
	httpc_xfer_free(x);
}

int httpc_poll(struct httpc *h, int extra_fd, int timeout_ms)
{
	struct curl_waitfd wfd = { .fd = extra_fd, .events = CURL_WAIT_POLLIN };
	int running = 0, numfds = 0, msgs = 0;

	httpc_start_due(h);
	if (h->delayed) {
		uint64_t now = clock_mono_ms();
		long until = h->delayed->due > now ? (long)(h->delayed->due - now) : 0;
		if (until < timeout_ms)
			timeout_ms = (int)until;
	}
	CURLMcode mc = curl_multi_poll(h->multi, extra_fd >= 0 ? &wfd : NULL,
				       extra_fd >= 0 ? 1 : 0, timeout_ms, &numfds);
	if (mc != CURLM_OK)
		return log_err("curl_multi_poll: %s", curl_multi_strerror(mc));
	curl_multi_perform(h->multi, &running);
	CURLMsg *m;
	while ((m = curl_multi_info_read(h->multi, &msgs)))
		if (m->msg == CURLMSG_DONE)
			httpc_finish(h, m->easy_handle, m->data.result);
	httpc_start_due(h);
	return 0;
}

size_t httpc_pending(const struct httpc *h)
{
	return h->active + h->waiting;
}
