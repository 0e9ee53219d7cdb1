/*
 * benchfake — fast fake upstream for `make bench`: the Anthropic Messages
 * API (and OpenAI chat completions) and the Twilio Messages API on one port.
 *
 * The Python fakes in tests/fakes check every detail but cannot sustain
 * thousands of requests a second; this one checks little and answers fast.
 *
 *   benchfake [--bind ADDR] [--port N] [--llm-delay-ms N] [--threads N] [--record FILE]
 *
 *   POST /v1/messages            Anthropic: one text block "echo: <last user message>",
 *                                stop_reason "end_turn" (no tool call, ever)
 *   POST /v1/chat/completions    OpenAI: the same echo; as {"reply",...} JSON when the
 *                                request asks for a json_schema response_format
 *   POST /2010-04-01/Accounts/{AccountSid}/Messages.json
 *                                201 with a Twilio message resource (sid SM + 32 hex)
 *   GET  /stats                  {"llm","messages","llm_inflight","llm_inflight_max","errors"}
 *   POST /reset                  zero the counters and the record buffer
 *   POST /flush                  write the record file now
 *
 * LLM answers are held --llm-delay-ms without a thread per request: the
 * connection is suspended and a timer thread keeps a min-heap of due times
 * and resumes each connection when due; libmicrohttpd then calls the
 * handler again, which queues the answer prepared beforehand.
 *
 * With --record FILE every Messages request is remembered (CLOCK_MONOTONIC ns
 * at receipt, Body) and written as "<ns> <Body, newlines as spaces>" lines on
 * SIGTERM/SIGINT (then exit 0) and on POST /flush. That buffer is the only
 * memory that grows with traffic.
 *
 * Prints "listening on PORT" on stdout once ready (--port 0 = any free port).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "form.h"
#include "log.h"
#include "xalloc.h"

/* Largest request body: an ai-worker request carries ai.history turns of
 * WhatsApp-sized text (a few hundred KB at the very most); Twilio sends are
 * under 2 KB. Larger is answered 413. */
#define BF_BODY_MAX (1u << 20)
/* Form parameters of one Messages request: egress sends 3-4. */
#define BF_FORM_PARAMS 64
/* Connections held at once: the bench keeps thousands of LLM calls waiting. */
#define BF_CONN_LIMIT 10000
/* Accept queue: bursts of new connections from wrk -c3000 (the kernel caps
 * it at net.core.somaxconn). */
#define BF_BACKLOG 4096
/* Idle keep-alive connections are dropped after this long (seconds);
 * suspended ones never time out. */
#define BF_CONN_TIMEOUT_S 60
/* Delays above this are a typo, not a benchmark. */
#define BF_DELAY_MAX_MS 600000
#define BF_THREADS_MAX 64
/* Due connections the timer resumes per lock acquisition: keeps the lock
 * short while a burst of thousands falls due at once. */
#define BF_RESUME_BATCH 256

#define BF_TWILIO_PREFIX "/2010-04-01/Accounts/"
#define BF_TWILIO_SUFFIX "/Messages.json"

enum bf_kind {
	BF_ANTHROPIC,
	BF_OPENAI,
	BF_TWILIO,
	BF_STATS,
	BF_RESET,
	BF_FLUSH,
	BF_UNKNOWN,
};

/* One request; lives from its first header callback to MHD's completion
 * notice, and is only ever touched by the MHD thread owning the connection. */
struct bf_req {
	enum bf_kind kind;
	uint64_t t_ns;         /* CLOCK_MONOTONIC at receipt */
	char *body;
	size_t len, cap;
	bool too_big;
	bool inflight;         /* counted in bf_llm_inflight */
	bool ready;            /* answer prepared, connection suspended until due */
	unsigned status;
	char *reply;           /* JSON, malloc'd (handed to MHD, which frees it) */
};

/* A suspended connection and when to resume it. */
struct bf_due {
	uint64_t due_ns;
	uint64_t seq;          /* ties broken in arrival order */
	struct MHD_Connection *conn;
};

struct bf_rec {
	uint64_t ns;
	char *body;
};

/* Settings: written by main before any thread starts, read-only after. */
static uint64_t bf_delay_ns;
static const char *bf_record_path;
static uint64_t bf_sid_prefix;

static atomic_uint_fast64_t bf_n_llm, bf_n_messages, bf_n_errors, bf_sid_seq;
static atomic_int_fast64_t bf_llm_inflight, bf_llm_inflight_max;

/* The timer's heap. Lock order: never held while calling into MHD. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	struct bf_due *heap;
	size_t n, cap;
	uint64_t seq;
	bool stopping;
} bf_timer = { .mu = PTHREAD_MUTEX_INITIALIZER };

static struct {
	pthread_mutex_t mu;
	struct bf_rec *v;
	size_t n, cap;
} bf_recs = { .mu = PTHREAD_MUTEX_INITIALIZER };

static uint64_t bf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void bf_lock(pthread_mutex_t *mu)
{
	int rc = pthread_mutex_lock(mu);
	if (rc != 0) {
		log_err("pthread_mutex_lock: %s", strerror(rc));
		abort();
	}
}

static void bf_unlock(pthread_mutex_t *mu)
{
	int rc = pthread_mutex_unlock(mu);
	if (rc != 0) {
		log_err("pthread_mutex_unlock: %s", strerror(rc));
		abort();
	}
}

/* ---- timer: min-heap of suspended LLM answers ---------------------------- */

static bool bf_due_before(const struct bf_due *a, const struct bf_due *b)
{
	return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void bf_heap_push(struct bf_due d)
{
	if (bf_timer.n == bf_timer.cap) {
		bf_timer.cap = bf_timer.cap ? bf_timer.cap * 2 : 1024;
		bf_timer.heap = xrealloc(bf_timer.heap, bf_timer.cap * sizeof(*bf_timer.heap));
	}
	size_t i = bf_timer.n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!bf_due_before(&d, &bf_timer.heap[p]))
			break;
		bf_timer.heap[i] = bf_timer.heap[p];
		i = p;
	}
	bf_timer.heap[i] = d;
}

static struct bf_due bf_heap_pop(void)
{
	struct bf_due top = bf_timer.heap[0], last = bf_timer.heap[--bf_timer.n];
	size_t i = 0, n = bf_timer.n;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && bf_due_before(&bf_timer.heap[c + 1], &bf_timer.heap[c]))
			c++;
		if (!bf_due_before(&bf_timer.heap[c], &last))
			break;
		bf_timer.heap[i] = bf_timer.heap[c];
		i = c;
	}
	if (n > 0)
		bf_timer.heap[i] = last;
	return top;
}

/*
 * Suspends conn (whose answer is ready) until the delay has passed. Called
 * from the access handler, the only place MHD allows a suspend. The suspend
 * comes before the push, so the timer can never resume a connection that is
 * not suspended yet; MHD copes with a resume arriving before the handler
 * has returned. MHD is called outside bf_timer.mu so that no lock of ours is
 * ever held inside one of MHD's.
 */
static void bf_delay(struct MHD_Connection *conn)
{
	bool stopping;

	MHD_suspend_connection(conn);
	bf_lock(&bf_timer.mu);
	stopping = bf_timer.stopping;
	if (!stopping) {
		struct bf_due d = { bf_now_ns() + bf_delay_ns, bf_timer.seq++, conn };
		bf_heap_push(d);
		/* Only a new earliest due time shortens the timer's sleep. */
		if (bf_timer.heap[0].seq == d.seq)
			pthread_cond_signal(&bf_timer.cv);
	}
	bf_unlock(&bf_timer.mu);
	if (stopping)
		MHD_resume_connection(conn); /* shutting down: answer at once */
}

static void *bf_timer_main(void *arg)
{
	struct bf_due batch[BF_RESUME_BATCH];

	bf_lock(&bf_timer.mu);
	while (!bf_timer.stopping) {
		if (bf_timer.n == 0) {
			int rc = pthread_cond_wait(&bf_timer.cv, &bf_timer.mu);
			if (rc != 0)
				log_warn("pthread_cond_wait: %s", strerror(rc));
			continue;
		}
		uint64_t now = bf_now_ns(), due = bf_timer.heap[0].due_ns;
		if (due > now) {
			struct timespec ts = { (time_t)(due / 1000000000u), (long)(due % 1000000000u) };
			int rc = pthread_cond_timedwait(&bf_timer.cv, &bf_timer.mu, &ts);
			if (rc != 0 && rc != ETIMEDOUT)
				log_warn("pthread_cond_timedwait: %s", strerror(rc));
			continue;
		}
		size_t n = 0;
		while (n < BF_RESUME_BATCH && bf_timer.n > 0 && bf_timer.heap[0].due_ns <= now)
			batch[n++] = bf_heap_pop();
		bf_unlock(&bf_timer.mu);
		for (size_t i = 0; i < n; i++)
			MHD_resume_connection(batch[i].conn);
		bf_lock(&bf_timer.mu);
	}
	bf_unlock(&bf_timer.mu);
	return arg;
}

static int bf_timer_start(pthread_t *th)
{
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);
	if (rc == 0)
		rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(&bf_timer.cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		return log_err("timer condition variable: %s", strerror(rc));
	rc = pthread_create(th, NULL, bf_timer_main, NULL);
	if (rc != 0)
		return log_err("timer thread: %s", strerror(rc));
	return 0;
}

/* Stops the timer and resumes every connection still waiting (their
 * handler answers at once), so that MHD can be stopped with none suspended. */
static void bf_timer_stop(pthread_t th)
{
	bf_lock(&bf_timer.mu);
	bf_timer.stopping = true;
	struct bf_due *left = bf_timer.heap;
	size_t n = bf_timer.n;
	bf_timer.heap = NULL;
	bf_timer.n = bf_timer.cap = 0;
	pthread_cond_signal(&bf_timer.cv);
	bf_unlock(&bf_timer.mu);
	int rc = pthread_join(th, NULL);
	if (rc != 0)
		log_err("timer thread join: %s", strerror(rc));
	for (size_t i = 0; i < n; i++)
		MHD_resume_connection(left[i].conn);
	free(left);
	pthread_cond_destroy(&bf_timer.cv);
}

/* ---- counters and the record buffer --------------------------------------- */

static void bf_inflight_add(void)
{
	int_fast64_t now = atomic_fetch_add(&bf_llm_inflight, 1) + 1;
	int_fast64_t max = atomic_load(&bf_llm_inflight_max);
	while (now > max && !atomic_compare_exchange_weak(&bf_llm_inflight_max, &max, now))
		;
}

static void bf_record(uint64_t ns, const char *body)
{
	if (!bf_record_path)
		return; /* nothing asked for: keep memory flat */
	char *b = xstrdup(body ? body : "");
	/* One line per message: the bench reads the file line by line. */
	for (char *p = b; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	bf_lock(&bf_recs.mu);
	if (bf_recs.n == bf_recs.cap) {
		bf_recs.cap = bf_recs.cap ? bf_recs.cap * 2 : 4096;
		bf_recs.v = xrealloc(bf_recs.v, bf_recs.cap * sizeof(*bf_recs.v));
	}
	bf_recs.v[bf_recs.n++] = (struct bf_rec){ ns, b };
	bf_unlock(&bf_recs.mu);
}

static void bf_records_clear_locked(void)
{
	for (size_t i = 0; i < bf_recs.n; i++)
		free(bf_recs.v[i].body);
	bf_recs.n = 0;
}

/* Writes the whole buffer to bf_record_path (through a temporary file and
 * rename, so a reader never sees half a file). 0 or -1. */
static int bf_records_write(void)
{
	if (!bf_record_path)
		return 0;
	char *tmp = xasprintf("%s.tmp", bf_record_path);
	int rc = 0;
	bf_lock(&bf_recs.mu);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		rc = log_err("cannot open '%s': %s", tmp, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < bf_recs.n && rc == 0; i++)
		if (fprintf(f, "%" PRIu64 " %s\n", bf_recs.v[i].ns, bf_recs.v[i].body) < 0)
			rc = log_err("cannot write '%s': %s", tmp, strerror(errno));
	if (fclose(f) != 0 && rc == 0)
		rc = log_err("cannot write '%s': %s", tmp, strerror(errno));
	if (rc == 0 && rename(tmp, bf_record_path) != 0)
		rc = log_err("cannot rename '%s' to '%s': %s", tmp, bf_record_path, strerror(errno));
out:
	bf_unlock(&bf_recs.mu);
	free(tmp);
	return rc;
}

/* ---- answers --------------------------------------------------------------- */

/* A JSON reply from a jansson value (stolen); NULL value gives a 500. */
static void bf_json(struct bf_req *r, unsigned status, json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
	json_decref(v);
	if (!s) {
		status = 500;
		s = xstrdup("{\"error\":\"cannot encode reply\"}");
	}
	r->status = status;
	r->reply = s;
	if (status >= 400)
		atomic_fetch_add(&bf_n_errors, 1);
}

static void bf_llm_error(struct bf_req *r, unsigned status, const char *msg)
{
	if (r->kind == BF_OPENAI)
		bf_json(r, status, json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", msg,
					     "type", "invalid_request_error", "param", "code"));
	else
		bf_json(r, status, json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
					     "invalid_request_error", "message", msg));
}

/* Text of a message's content: a string, or the text blocks of an array
 * (joined by newlines). Caller owns the result; NULL if there is none. */
static char *bf_content_text(json_t *content)
{
	if (json_is_string(content))
		return xstrdup(json_string_value(content));
	if (!json_is_array(content))
		return NULL;
	char *text = NULL;
	size_t i;
	json_t *block;
	json_array_foreach(content, i, block) {
		const char *type = json_string_value(json_object_get(block, "type"));
		const char *t = json_string_value(json_object_get(block, "text"));
		if (!type || strcmp(type, "text") || !t)
			continue;
		char *j = text ? xasprintf("%s\n%s", text, t) : xstrdup(t);
		free(text);
		text = j;
	}
	return text;
}

/* Content of the last "user" message of messages, or NULL. Caller owns it. */
static char *bf_last_user_text(json_t *messages)
{
	for (size_t i = json_array_size(messages); i > 0; i--) {
		json_t *m = json_array_get(messages, i - 1);
		const char *role = json_string_value(json_object_get(m, "role"));
		if (role && !strcmp(role, "user"))
			return bf_content_text(json_object_get(m, "content"));
	}
	return NULL;
}

/* Prepares the LLM answer in r; true if it is a success to be delayed. */
static bool bf_llm(struct bf_req *r)
{
	json_error_t jerr;
	json_t *req = json_loadb(r->body ? r->body : "", r->len, 0, &jerr);
	json_t *messages = json_object_get(req, "messages");
	const char *model = json_string_value(json_object_get(req, "model"));
	char *text = NULL, *echo = NULL;
	bool ok = false;

	if (!json_is_object(req)) {
		bf_llm_error(r, 400, "request body is not a JSON object");
		goto out;
	}
	if (!model || !json_is_array(messages) || json_array_size(messages) == 0) {
		bf_llm_error(r, 400, "model and a non-empty messages array are required");
		goto out;
	}
	if (!(text = bf_last_user_text(messages))) {
		bf_llm_error(r, 400, "no user message with text");
		goto out;
	}
	echo = xasprintf("echo: %s", text);
	int n_in = (int)(r->len / 4 + 1), n_out = (int)(strlen(echo) / 4 + 1);
	char id[40];
	snprintf(id, sizeof(id), "%016" PRIx64 "%08" PRIx64, bf_sid_prefix,
		 (uint64_t)atomic_fetch_add(&bf_sid_seq, 1));
	if (r->kind == BF_ANTHROPIC) {
		/* ai-worker's parser reads the content blocks only (stop_reason is
		 * not consulted); a text block is a plain answer. */
		bf_json(r, 200, json_pack("{s:s+, s:s, s:s, s:s, s:[{s:s, s:s}], s:s, s:n, s:{s:i, s:i}}",
					  "id", "msg_", id, "type", "message", "role", "assistant",
					  "model", model, "content", "type", "text", "text", echo,
					  "stop_reason", "end_turn", "stop_sequence", "usage",
					  "input_tokens", n_in, "output_tokens", n_out));
	} else {
		/* Structured mode asks for {reply, escalate, reason, summary}: answer
		 * in that shape, as a conforming model would. */
		json_t *fmt = json_object_get(req, "response_format");
		const char *ftype = json_string_value(json_object_get(fmt, "type"));
		char *content = NULL;
		if (ftype && !strcmp(ftype, "json_schema")) {
			json_t *js = json_pack("{s:s, s:b, s:s, s:s}", "reply", echo, "escalate", 0,
					       "reason", "", "summary", "");
			content = js ? json_dumps(js, JSON_COMPACT) : NULL;
			json_decref(js);
		}
		bf_json(r, 200, json_pack("{s:s+, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s}, s:s}], s:{s:i, s:i, s:i}}",
					  "id", "chatcmpl-", id, "object", "chat.completion",
					  "created", (json_int_t)time(NULL), "model", model, "choices",
					  "index", 0, "message", "role", "assistant", "content",
					  content ? content : echo, "finish_reason", "stop", "usage",
					  "prompt_tokens", n_in, "completion_tokens", n_out,
					  "total_tokens", n_in + n_out));
		free(content);
	}
	ok = r->status == 200;
	if (ok)
		atomic_fetch_add(&bf_n_llm, 1);
out:
	free(text);
	free(echo);
	json_decref(req);
	return ok;
}

static void bf_twilio_error(struct bf_req *r, unsigned status, int code, const char *msg)
{
	char *more = xasprintf("https://www.twilio.com/docs/errors/%d", code);
	bf_json(r, status, json_pack("{s:i, s:s, s:s, s:i}", "code", code, "message", msg,
				     "more_info", more, "status", (int)status));
	free(more);
}

/* Prepares the answer to a Messages.json POST for account acct. */
static void bf_twilio(struct bf_req *r, const char *acct)
{
	struct form f = { 0 };
	int rc = form_parse(r->body ? r->body : "", r->len, BF_FORM_PARAMS, &f);
	if (rc != FORM_EOK) {
		bf_twilio_error(r, 400, 20001, rc == FORM_ETOOMANY ? "too many parameters"
								   : "malformed form body");
		return;
	}
	const char *to = form_get(&f, "To"), *from = form_get(&f, "From");
	const char *body = form_get(&f, "Body"), *mg = form_get(&f, "MessagingServiceSid");
	if (!to || !*to) {
		bf_twilio_error(r, 400, 21604, "A 'To' phone number is required.");
		goto out;
	}
	if (!from && !mg) {
		bf_twilio_error(r, 400, 21603, "A 'From' phone number is required.");
		goto out;
	}
	if (!body && !form_get(&f, "ContentSid") && !form_get(&f, "MediaUrl")) {
		bf_twilio_error(r, 400, 21602, "Message body is required.");
		goto out;
	}
	bf_record(r->t_ns, body);

	char sid[40], date[64], *uri, *media;
	struct tm tm;
	time_t now = time(NULL);
	/* Unique per request and per run: a random prefix and a counter that
	 * /reset leaves alone. */
	snprintf(sid, sizeof(sid), "SM%016" PRIx64 "%016" PRIx64, bf_sid_prefix,
		 (uint64_t)atomic_fetch_add(&bf_sid_seq, 1));
	if (!gmtime_r(&now, &tm) || !strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm))
		snprintf(date, sizeof(date), "Thu, 01 Jan 1970 00:00:00 +0000");
	uri = xasprintf(BF_TWILIO_PREFIX "%s/Messages/%s.json", acct, sid);
	media = xasprintf(BF_TWILIO_PREFIX "%s/Messages/%s/Media.json", acct, sid);
	bf_json(r, 201, json_pack("{s:s, s:s, s:s?, s:s?, s:s, s:s?, s:s, s:s, s:s, s:s, s:n, s:n,"
				  " s:n, s:n, s:s, s:s, s:s, s:n, s:s, s:{s:s}}",
				  "sid", sid, "account_sid", acct, "messaging_service_sid", mg,
				  "from", from, "to", to, "body", body, "status", "queued",
				  "direction", "outbound-api", "num_segments", "1", "num_media", "0",
				  "price", "price_unit", "error_code", "error_message",
				  "api_version", "2010-04-01", "date_created", date, "date_updated", date,
				  "date_sent", "uri", uri, "subresource_uris", "media", media));
	if (r->status == 201)
		atomic_fetch_add(&bf_n_messages, 1);
	free(uri);
	free(media);
out:
	form_release(&f);
}

static void bf_stats(struct bf_req *r)
{
	r->status = 200;
	r->reply = xasprintf("{\"llm\":%" PRIuFAST64 ",\"messages\":%" PRIuFAST64
			     ",\"llm_inflight\":%" PRIdFAST64 ",\"llm_inflight_max\":%" PRIdFAST64
			     ",\"errors\":%" PRIuFAST64 "}",
			     atomic_load(&bf_n_llm), atomic_load(&bf_n_messages),
			     atomic_load(&bf_llm_inflight), atomic_load(&bf_llm_inflight_max),
			     atomic_load(&bf_n_errors));
}

static void bf_reset(struct bf_req *r)
{
	atomic_store(&bf_n_llm, 0);
	atomic_store(&bf_n_messages, 0);
	atomic_store(&bf_n_errors, 0);
	/* In-flight is a gauge, not a counter: the new maximum starts from it. */
	atomic_store(&bf_llm_inflight_max, atomic_load(&bf_llm_inflight));
	bf_lock(&bf_recs.mu);
	bf_records_clear_locked();
	bf_unlock(&bf_recs.mu);
	r->status = 200;
	r->reply = xstrdup("{\"ok\":true}");
}

static void bf_flush(struct bf_req *r)
{
	if (bf_records_write() != 0) {
		bf_json(r, 500, json_pack("{s:s}", "error", "cannot write the record file"));
		return;
	}
	r->status = 200;
	r->reply = xstrdup("{\"ok\":true}");
}

/* ---- HTTP ------------------------------------------------------------------ */

/* AccountSid of a Messages.json path into acct (cap bytes); false if url is not one. */
static bool bf_twilio_path(const char *url, char *acct, size_t cap)
{
	size_t np = strlen(BF_TWILIO_PREFIX), ns = strlen(BF_TWILIO_SUFFIX), n = strlen(url);
	if (n <= np + ns || strncmp(url, BF_TWILIO_PREFIX, np) || strcmp(url + n - ns, BF_TWILIO_SUFFIX))
		return false;
	size_t len = n - np - ns;
	if (len >= cap || memchr(url + np, '/', len))
		return false;
	memcpy(acct, url + np, len);
	acct[len] = '\0';
	return true;
}

static enum bf_kind bf_route(const char *method, const char *url)
{
	char acct[128];
	bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
	if (post && !strcmp(url, "/v1/messages"))
		return BF_ANTHROPIC;
	if (post && !strcmp(url, "/v1/chat/completions"))
		return BF_OPENAI;
	if (post && bf_twilio_path(url, acct, sizeof(acct)))
		return BF_TWILIO;
	if (!strcmp(method, MHD_HTTP_METHOD_GET) && !strcmp(url, "/stats"))
		return BF_STATS;
	if (post && !strcmp(url, "/reset"))
		return BF_RESET;
	if (post && !strcmp(url, "/flush"))
		return BF_FLUSH;
	return BF_UNKNOWN;
}

static enum MHD_Result bf_send(struct MHD_Connection *c, struct bf_req *r)
{
	char *reply = r->reply;
	r->reply = NULL;
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(reply), reply,
								    MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(reply);
		return MHD_NO;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	enum MHD_Result ret = MHD_queue_response(c, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result bf_handle(void *cls, struct MHD_Connection *c, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	struct bf_req *r = *con_cls;

	if (!r) {
		r = xcalloc(1, sizeof(*r));
		r->t_ns = bf_now_ns();
		r->kind = bf_route(method, url);
		if (r->kind == BF_ANTHROPIC || r->kind == BF_OPENAI) {
			r->inflight = true;
			bf_inflight_add();
		}
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_size) {
		if (r->len + *upload_size > BF_BODY_MAX) {
			r->too_big = true;
		} else if (!r->too_big) {
			if (r->len + *upload_size + 1 > r->cap) {
				r->cap = r->len + *upload_size + 1 > 2 * r->cap ? r->len + *upload_size + 1
										 : 2 * r->cap;
				r->body = xrealloc(r->body, r->cap);
			}
			memcpy(r->body + r->len, upload, *upload_size);
			r->len += *upload_size;
			r->body[r->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->ready) /* resumed: the delay is over */
		return bf_send(c, r);

	if (r->too_big) {
		bf_json(r, 413, json_pack("{s:s}", "error", "request body too large"));
		return bf_send(c, r);
	}
	switch (r->kind) {
	case BF_ANTHROPIC:
	case BF_OPENAI:
		if (bf_llm(r) && bf_delay_ns > 0) {
			r->ready = true;
			bf_delay(c);
			return MHD_YES;
		}
		break;
	case BF_TWILIO: {
		char acct[128];
		if (!bf_twilio_path(url, acct, sizeof(acct))) /* cannot happen: routed on it */
			bf_twilio_error(r, 404, 20404, "The requested resource was not found");
		else
			bf_twilio(r, acct);
		break;
	}
	case BF_STATS: bf_stats(r); break;
	case BF_RESET: bf_reset(r); break;
	case BF_FLUSH: bf_flush(r); break;
	default:
		bf_json(r, 404, json_pack("{s:i, s:s, s:i}", "code", 20404, "message",
					  "The requested resource was not found", "status", 404));
		break;
	}
	return bf_send(c, r);
}

static void bf_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct bf_req *r = *con_cls;
	if (!r)
		return;
	if (r->inflight)
		atomic_fetch_sub(&bf_llm_inflight, 1);
	free(r->body);
	free(r->reply);
	free(r);
	*con_cls = NULL;
}

/* ---- main ------------------------------------------------------------------ */

static void bf_usage(FILE *out)
{
	fprintf(out,
		"usage: benchfake [--bind ADDR] [--port N] [--llm-delay-ms N] [--threads N] [--record FILE]\n"
		"Fake Anthropic/OpenAI LLM (echo) and Twilio Messages API for benchmarks.\n"
		"  --bind ADDR        IPv4 address to listen on (default 127.0.0.1)\n"
		"  --port N           port (default 0 = any free port; printed as \"listening on PORT\")\n"
		"  --llm-delay-ms N   answer LLM calls after N ms (default 0)\n"
		"  --threads N        libmicrohttpd worker threads (default 2)\n"
		"  --record FILE      write \"<monotonic ns> <Body>\" per Twilio send to FILE on\n"
		"                     SIGTERM/SIGINT and POST /flush\n");
}

/* Parses a decimal in [lo, hi] into *out; false on anything else. */
static bool bf_num(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'p' },
		{ "llm-delay-ms", required_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 't' },
		{ "record", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *bind_addr = "127.0.0.1";
	long port = 0, delay_ms = 0, threads = 2;
	int c, sig = 0, rc;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct MHD_Daemon *d = NULL;
	pthread_t timer;
	sigset_t stop;

	log_init("benchfake", LOG_INFO, false);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': bind_addr = optarg; break;
		case 'p':
			if (!bf_num(optarg, 0, 65535, &port)) {
				log_err("--port: '%s' is not a port", optarg);
				return 2;
			}
			break;
		case 'd':
			if (!bf_num(optarg, 0, BF_DELAY_MAX_MS, &delay_ms)) {
				log_err("--llm-delay-ms: '%s' is not 0..%d", optarg, BF_DELAY_MAX_MS);
				return 2;
			}
			break;
		case 't':
			if (!bf_num(optarg, 1, BF_THREADS_MAX, &threads)) {
				log_err("--threads: '%s' is not 1..%d", optarg, BF_THREADS_MAX);
				return 2;
			}
			break;
		case 'r': bf_record_path = optarg; break;
		case 'h': bf_usage(stdout); return 0;
		default: bf_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		bf_usage(stderr);
		return 2;
	}
	if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
		log_err("--bind: '%s' is not an IPv4 address", bind_addr);
		return 2;
	}
	sa.sin_port = htons((uint16_t)port);
	bf_delay_ns = (uint64_t)delay_ms * 1000000u;
	if (getrandom(&bf_sid_prefix, sizeof(bf_sid_prefix), 0) != (ssize_t)sizeof(bf_sid_prefix))
		bf_sid_prefix = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();

	/* Block the stop signals before any thread exists, so every thread
	 * inherits the mask and only sigwait() below ever takes them. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	if ((rc = pthread_sigmask(SIG_BLOCK, &stop, NULL)) != 0) {
		log_err("pthread_sigmask: %s", strerror(rc));
		return 1;
	}
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		log_err("signal(SIGPIPE): %s", strerror(errno));
		return 1;
	}
	if (bf_timer_start(&timer) != 0)
		return 1;

	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
			 MHD_USE_TURBO | MHD_USE_ERROR_LOG;
	/* One thread serves everything when --threads 1: MHD wants no pool option then. */
	struct MHD_OptionItem pool[] = {
		{ threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL },
		{ MHD_OPTION_END, 0, NULL },
	};
	d = MHD_start_daemon(flags, 0, NULL, NULL, bf_handle, NULL,
			     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)BF_CONN_LIMIT,
			     MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)BF_BACKLOG,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)BF_CONN_TIMEOUT_S,
			     MHD_OPTION_NOTIFY_COMPLETED, bf_completed, NULL,
			     MHD_OPTION_ARRAY, pool,
			     MHD_OPTION_END);
	if (!d) {
		log_err("cannot listen on %s:%ld", bind_addr, port);
		bf_timer_stop(timer);
		return 1;
	}
	const union MHD_DaemonInfo *pi = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (!pi) {
		log_err("cannot read the bound port");
		bf_timer_stop(timer);
		MHD_stop_daemon(d);
		return 1;
	}
	if (printf("listening on %u\n", (unsigned)pi->port) < 0 || fflush(stdout) != 0)
		log_warn("cannot write the ready line: %s", strerror(errno));

	if ((rc = sigwait(&stop, &sig)) != 0)
		log_err("sigwait: %s", strerror(rc));
	/* Waiting connections are answered now; MHD must not be stopped with
	 * any still suspended. */
	bf_timer_stop(timer);
	MHD_stop_daemon(d);
	rc = bf_records_write();
	bf_lock(&bf_recs.mu);
	bf_records_clear_locked();
	free(bf_recs.v);
	bf_unlock(&bf_recs.mu);
	return rc == 0 ? 0 : 1;
}
