/*
 * replay — the replay engine; see replay.h.
 *
 * One thread, one loop: take the due records off a min-heap that merges
 * the files by record time, hand each to the backend (curl multi through
 * common/httpc, or a DEALER socket to the router), wait for answers,
 * expire router requests left unanswered, draw the progress bar. Requests
 * in flight live in slots allocated once up front, so stopping on a signal
 * with transfers still running leaks nothing.
 */
#include "replay.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "capture.h"
#include "envelope.h"
#include "events.h"
#include "form.h"
#include "httpc.h"
#include "lathist.h"
#include "log.h"
#include "twsig.h"
#include "webhook.h"
#include "xalloc.h"
#include "zmqx.h"

/* How often the loop wakes to redraw the bar when nothing else happens. */
#define REPLAY_TICK_NS 100000000ull
/* While the router's queue is full, try again this soon. */
#define REPLAY_STALL_RETRY_NS 5000000ull
/* Failures logged one by one; past this they are only counted. */
#define REPLAY_FAIL_LOG_MAX 10
/* Generous bound for parsing captured forms to re-sign them: ingress applies its own. */
#define REPLAY_PARAMS_MAX 100000
/* curl gives up this long after ingress would have answered 503 itself. */
#define REPLAY_HTTP_GRACE_MS 10000
#define REPLAY_BAR_WIDTH 30

struct replay;

/* One capture file and the record at its head. */
struct replay_src {
	struct capture_reader *r;
	struct capture_record head;
	size_t idx; /* position on the command line: breaks time ties */
};

/* One request in flight. */
struct replay_slot {
	struct replay *rp;
	bool busy;
	uint64_t id;       /* router mode: envelope id (slot = id % concurrency) */
	uint64_t sent_ns;
	int prev, next;    /* in-flight list, oldest first; -1 ends it */
	char path[48];     /* for failure log lines */
};

struct replay {
	const struct config *cfg;
	const struct replay_opts *o;
	struct replay_summary *sum;

	struct replay_src *srcs;
	size_t nsrc;
	struct replay_src **heap; /* sources that still have a record, min record time on top */
	size_t nheap;
	uint64_t t0;              /* time of the first record, wall ms */

	struct replay_slot *slots;
	int *free_slots;
	int nfree;
	int oldest, newest;
	int inflight;

	struct lathist lat;       /* latencies, us */

	struct httpc *http;
	char *base;
	void *zctx, *dealer;
	uint64_t seq;             /* router mode: requests sent so far */
	uint64_t timeout_ns;      /* router mode: no ACK by then is a failure */
	uint64_t stalled_ns;      /* router mode: since when the socket refuses, 0 = it does not */
	uint64_t answers;         /* router mode: ACKs received, of any status */
	bool dead;                /* router mode: nothing ever answered; stop sending */

	bool tty;
	uint64_t total;           /* records in the files, for the bar */
	uint64_t start_ns, first_ns, last_ns, drawn_ns;
	unsigned fail_logged;
};

static uint64_t replay_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --- command-line paths --- */

static int replay_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int replay_add_path(const char *path, char ***files, size_t *n)
{
	struct stat st;
	size_t first = *n;

	if (stat(path, &st) < 0)
		return log_err("cannot read '%s': %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode)) {
		*files = xrealloc(*files, (*n + 1) * sizeof(**files));
		(*files)[(*n)++] = xstrdup(path);
		return 0;
	}
	DIR *d = opendir(path);
	if (!d)
		return log_err("cannot list '%s': %s", path, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l <= 5 || strcmp(e->d_name + l - 5, ".bcap") != 0)
			continue;
		*files = xrealloc(*files, (*n + 1) * sizeof(**files));
		(*files)[(*n)++] = xasprintf("%s/%s", path, e->d_name);
	}
	closedir(d);
	/* Names carry the start time: sorted is oldest first. */
	if (*n == first)
		log_warn("no *.bcap files in '%s'", path);
	else
		qsort(*files + first, *n - first, sizeof(**files), replay_cmp_str);
	return 0;
}

void replay_free_paths(char **files, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(files[i]);
	free(files);
}

/* --- the merge --- */

static bool replay_src_before(const struct replay_src *a, const struct replay_src *b)
{
	return a->head.t < b->head.t || (a->head.t == b->head.t && a->idx < b->idx);
}

static void replay_heap_down(struct replay *rp, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < rp->nheap && replay_src_before(rp->heap[l], rp->heap[m]))
			m = l;
		if (r < rp->nheap && replay_src_before(rp->heap[r], rp->heap[m]))
			m = r;
		if (m == i)
			return;
		struct replay_src *t = rp->heap[i];
		rp->heap[i] = rp->heap[m];
		rp->heap[m] = t;
		i = m;
	}
}

static void replay_heap_up(struct replay *rp, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!replay_src_before(rp->heap[i], rp->heap[p]))
			return;
		struct replay_src *t = rp->heap[i];
		rp->heap[i] = rp->heap[p];
		rp->heap[p] = t;
		i = p;
	}
}

/* Reads the next record of src into its head: 1, or 0 when the file is done. */
static int replay_src_next(struct replay *rp, struct replay_src *src)
{
	capture_record_release(&src->head);
	int rc = capture_read(src->r, &src->head);
	if (rc == 1) {
		rp->sum->records++;
		return 1;
	}
	if (rc < 0)
		rp->sum->damaged++; /* logged by the reader; the records before it were played */
	capture_reader_close(&src->r);
	return 0;
}

/* The top record was handled: move its file on and restore the heap. */
static void replay_heap_advance(struct replay *rp)
{
	struct replay_src *top = rp->heap[0];
	if (!replay_src_next(rp, top)) {
		rp->heap[0] = rp->heap[--rp->nheap];
	}
	if (rp->nheap)
		replay_heap_down(rp, 0);
}

static int replay_open_sources(struct replay *rp)
{
	const struct replay_opts *o = rp->o;
	rp->srcs = xcalloc(o->nfiles ? o->nfiles : 1, sizeof(*rp->srcs));
	rp->heap = xcalloc(o->nfiles ? o->nfiles : 1, sizeof(*rp->heap));
	for (size_t i = 0; i < o->nfiles; i++) {
		struct replay_src *s = &rp->srcs[rp->nsrc++];
		s->idx = i;
		if (!(s->r = capture_reader_open(o->files[i])))
			return -1;
		if (replay_src_next(rp, s)) {
			rp->heap[rp->nheap++] = s;
			replay_heap_up(rp, rp->nheap - 1);
		}
	}
	rp->t0 = rp->nheap ? rp->heap[0]->head.t : 0;
	return 0;
}

/* Records in the files, for the progress bar: one quick pass of its own. */
static uint64_t replay_count(const struct replay_opts *o)
{
	uint64_t n = 0;
	for (size_t i = 0; i < o->nfiles; i++) {
		struct capture_reader *r = capture_reader_open(o->files[i]);
		struct capture_record rec;
		while (r && capture_read(r, &rec) == 1) {
			n++;
			capture_record_release(&rec);
		}
		capture_reader_close(&r);
	}
	return n;
}

/* --- slots --- */

static int replay_slot_take(struct replay *rp)
{
	int i = rp->free_slots[--rp->nfree];
	struct replay_slot *s = &rp->slots[i];
	s->busy = true;
	s->sent_ns = replay_now_ns();
	s->next = -1;
	s->prev = rp->newest;
	if (rp->newest >= 0)
		rp->slots[rp->newest].next = i;
	else
		rp->oldest = i;
	rp->newest = i;
	rp->inflight++;
	return i;
}

static void replay_slot_put(struct replay *rp, int i)
{
	struct replay_slot *s = &rp->slots[i];
	if (s->prev >= 0)
		rp->slots[s->prev].next = s->next;
	else
		rp->oldest = s->next;
	if (s->next >= 0)
		rp->slots[s->next].prev = s->prev;
	else
		rp->newest = s->prev;
	s->busy = false;
	s->prev = s->next = -1;
	rp->free_slots[rp->nfree++] = i;
	rp->inflight--;
}

/* The first failures say why; a replay against a dead target must not
 * print a line per record. */
static void replay_fail_log(struct replay *rp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void replay_fail_log(struct replay *rp, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (rp->fail_logged >= REPLAY_FAIL_LOG_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rp->fail_logged++;
	log_warn("%s%s", msg,
		 rp->fail_logged == REPLAY_FAIL_LOG_MAX ? "; further failures are only counted" : "");
}

/* A request was answered (ok) or given up on. */
static void replay_slot_done(struct replay *rp, int i, bool ok)
{
	uint64_t now = replay_now_ns();
	struct replay_slot *s = &rp->slots[i];
	lathist_record(&rp->lat, (now - s->sent_ns) / 1000);
	if (ok)
		rp->sum->acked++;
	else
		rp->sum->failed++;
	rp->last_ns = now;
	replay_slot_put(rp, i);
}

static void replay_sent(struct replay *rp, int slot, const char *path, const char *sid)
{
	struct replay_slot *s = &rp->slots[slot];
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (!rp->first_ns)
		rp->first_ns = s->sent_ns;
	rp->sum->sent++;
	/* Checked once at the end (ferror/fclose in main): a full disk must
	 * not stop the replay half way. */
	if (rp->o->sent_log)
		fprintf(rp->o->sent_log, "%llu %s\n", (unsigned long long)s->sent_ns,
			sid && *sid ? sid : "-");
}

/* --- HTTP backend --- */

static void replay_http_done(const struct httpc_resp *resp, void *arg)
{
	struct replay_slot *s = arg;
	struct replay *rp = s->rp;
	bool ok = resp->status >= 200 && resp->status < 300;
	if (!ok)
		replay_fail_log(rp, "%s: %s (HTTP %ld)", s->path,
				resp->curl_code ? resp->error : "refused", resp->status);
	replay_slot_done(rp, (int)(s - rp->slots), ok);
}

/* 0 sent, -1 failed here (counted). */
static int replay_http_send(struct replay *rp, const struct capture_record *rec)
{
	const struct config *cfg = rp->cfg;
	bool twilio = strncmp(rec->path, "/twilio/", 8) == 0;
	bool admin = strncmp(rec->path, "/admin/", 7) == 0;
	struct form f = { 0 };
	char sig[TWSIG_LEN];
	char *url = NULL, *signed_url = NULL, *sighdr = NULL, *auth = NULL;
	const char *headers[3];
	const char *sid = NULL;
	size_t nh = 0;
	int rc = -1;

	/* Signed as Twilio would sign it for this deployment, so ingress keeps
	 * checking signatures. A body that is not a form goes unsigned (403). */
	if (twilio && form_parse(rec->body, rec->len, REPLAY_PARAMS_MAX, &f) == FORM_EOK) {
		signed_url = xasprintf("%s%s", cfg->public_url, rec->path);
		twsig_compute(cfg->twilio_auth_token, signed_url, &f, sig);
		sighdr = xasprintf("X-Twilio-Signature: %s", sig);
		headers[nh++] = sighdr;
		sid = form_get(&f, "MessageSid");
	}
	if (admin && cfg->admin_token[0]) {
		auth = xasprintf("Authorization: Bearer %s", cfg->admin_token);
		headers[nh++] = auth;
	}
	headers[nh] = NULL;
	url = xasprintf("%s%s", rp->base, rec->path);
	struct httpc_req req = {
		.method = "POST", .url = url, .body = rec->body, .body_len = rec->len,
		.content_type = admin ? "application/json" : "application/x-www-form-urlencoded",
		.headers = headers,
		.timeout_ms = (long)cfg->http_ack_timeout_ms + REPLAY_HTTP_GRACE_MS,
	};
	int slot = replay_slot_take(rp);
	replay_sent(rp, slot, rec->path, sid);
	if (httpc_start(rp->http, &req, 0, replay_http_done, &rp->slots[slot]) < 0) {
		/* Counted as sent and failed, without a latency: it never left. */
		replay_fail_log(rp, "%s: cannot start the request", rec->path);
		replay_slot_put(rp, slot);
		rp->sum->failed++;
		goto fail;
	}
	rc = 0;
fail:
	form_release(&f);
	free(url);
	free(signed_url);
	free(sighdr);
	free(auth);
	return rc;
}

/* --- router backend --- */

enum replay_kind { RK_MESSAGES, RK_CONVERSATIONS, RK_TASKROUTER, RK_STATUS };

/* ingress's Twilio routes (ingress/server.c), converted by the same functions. */
static const struct {
	const char *path;
	enum replay_kind kind;
} replay_routes[] = {
	{ "/twilio/messages", RK_MESSAGES },
	{ "/twilio/conversations", RK_CONVERSATIONS },
	{ "/twilio/taskrouter", RK_TASKROUTER },
	{ "/twilio/status", RK_STATUS },
};

/* Operator commands: /admin/<cmd> is the event "admin_<cmd>" (EV_ADMIN_*), all
 * with the same JSON body, so a command added to ingress replays unchanged. */
static int replay_convert_admin(const struct capture_record *rec, struct envelope *env,
				const char **why)
{
	const char *cmd = rec->path + 7;
	size_t n = strlen(cmd);
	if (n == 0 || n > 32 || strspn(cmd, "abcdefghijklmnopqrstuvwxyz_") != n) {
		*why = "not an operator command ingress serves";
		return 404;
	}
	char *op = xasprintf("admin_%s", cmd);
	int status = events_admin(op, rec->body, rec->len, env, why);
	free(op);
	return status;
}

/* Like ingress's server_convert without the signature: EVENTS_FORWARD (0),
 * EVENTS_IGNORE, or the HTTP status ingress would answer, with *why. */
static int replay_convert(struct replay *rp, const struct capture_record *rec,
			  struct envelope *env, const char **why)
{
	struct webhook_cfg wc = { .auth_token = rp->cfg->twilio_auth_token, .url = "",
				  .check_signature = false,
				  .max_params = (size_t)rp->cfg->http_max_params,
				  .account_sid = rp->cfg->twilio_account_sid,
				  .workspace_sid = rp->cfg->flex_workspace_sid };
	struct form f;
	int status = 404;

	memset(env, 0, sizeof(*env));
	*why = "not a path ingress serves";
	if (strncmp(rec->path, "/admin/", 7) == 0)
		return replay_convert_admin(rec, env, why);
	for (size_t i = 0; i < sizeof(replay_routes) / sizeof(replay_routes[0]); i++) {
		if (strcmp(rec->path, replay_routes[i].path) != 0)
			continue;
		switch (replay_routes[i].kind) {
		case RK_MESSAGES:
			return webhook_inbound(&wc, NULL, rec->body, rec->len, env, why);
		default:
			if ((status = webhook_form(&wc, NULL, rec->body, rec->len, &f, why)) != 0)
				return status;
			if (replay_routes[i].kind == RK_CONVERSATIONS)
				status = events_conversations(&wc, &f, env, why);
			else if (replay_routes[i].kind == RK_TASKROUTER)
				status = events_taskrouter(&wc, &f, env, why);
			else
				status = events_status(&wc, &f, env, why);
			form_release(&f);
			return status;
		}
	}
	return status;
}

/* 0 sent, 1 the router's queue is full (try the same record later), -1 failed or skipped here. */
static int replay_router_send(struct replay *rp, const struct capture_record *rec)
{
	struct envelope env;
	const char *why = NULL;
	int rc = -1;

	int status = replay_convert(rp, rec, &env, &why);
	if (status == EVENTS_IGNORE) {
		rp->sum->skipped++; /* ingress answers these itself; they never reach the router */
		goto done;
	}
	if (status) {
		rp->sum->failed++;
		replay_fail_log(rp, "%s: cannot convert: %s (ingress would answer %d)", rec->path,
				why ? why : "", status);
		goto done;
	}
	int slot = replay_slot_take(rp);
	struct replay_slot *s = &rp->slots[slot];
	/* The id names the slot, and the sequence tells a late ACK from the slot's next request. */
	s->id = env.id = (rp->seq + 1) * (uint64_t)rp->o->concurrency + (uint64_t)slot;
	if (zmqx_send_env(rp->dealer, NULL, &env) < 0) {
		int e = errno;
		/* Not sent: the slot goes back without counting a latency. */
		replay_slot_put(rp, slot);
		uint64_t now = replay_now_ns();
		if (e == EAGAIN && !rp->stalled_ns)
			rp->stalled_ns = now;
		if (e == EAGAIN && now - rp->stalled_ns < rp->timeout_ns) {
			rc = 1;
			goto done;
		}
		rp->sum->failed++;
		replay_fail_log(rp, "%s: the router did not take it: %s", rec->path, zmq_strerror(e));
		goto done;
	}
	rp->stalled_ns = 0;
	rp->seq++;
	replay_sent(rp, slot, rec->path, env.sid);
	rc = 0;
done:
	env_release(&env);
	return rc;
}

static void replay_router_drain(struct replay *rp)
{
	struct envelope env;
	int rc;
	while ((rc = zmqx_recv_env(rp->dealer, NULL, &env)) != 0) {
		if (rc < 0)
			continue;
		int c = rp->o->concurrency;
		int slot = (int)(env.id % (uint64_t)c);
		if (env.type != ENV_ACK) {
			log_warn("ignored a %s envelope from the router", env_type_name(env.type));
		} else if (!rp->slots[slot].busy || rp->slots[slot].id != env.id) {
			log_debug("ACK %llu for a request already given up on", (unsigned long long)env.id);
		} else {
			bool ok = env.status == ST_OK || env.status == ST_DUPLICATE;
			rp->answers++;
			if (!ok)
				replay_fail_log(rp, "%s: the router refused it: status %lld %s",
						rp->slots[slot].path, (long long)env.status,
						env.err ? env.err : "");
			replay_slot_done(rp, slot, ok);
		}
		env_release(&env);
	}
}

/* Requests without an ACK after the timeout fail, as ingress would answer 503.
 * A router that never answered at all is not there: the replay stops rather
 * than wait out the timeout for every record. */
static void replay_router_expire(struct replay *rp)
{
	uint64_t now = replay_now_ns();
	if (!rp->answers && !rp->dead && rp->oldest >= 0 &&
	    now - rp->slots[rp->oldest].sent_ns >= rp->timeout_ns) {
		rp->dead = true;
		log_err("no answer from the router at %s within %llu ms: stopping",
			rp->cfg->router_ingress_endpoint, (unsigned long long)(rp->timeout_ns / 1000000));
	}
	while (rp->oldest >= 0 && now - rp->slots[rp->oldest].sent_ns >= rp->timeout_ns) {
		int i = rp->oldest;
		replay_fail_log(rp, "%s: no ACK from the router within %llu ms", rp->slots[i].path,
				(unsigned long long)(rp->timeout_ns / 1000000));
		replay_slot_done(rp, i, false);
	}
}

/* --- the loop --- */

static int replay_setup(struct replay *rp)
{
	const struct config *cfg = rp->cfg;
	const struct replay_opts *o = rp->o;
	int c = o->concurrency;

	rp->slots = xcalloc((size_t)c, sizeof(*rp->slots));
	rp->free_slots = xcalloc((size_t)c, sizeof(*rp->free_slots));
	for (int i = 0; i < c; i++) {
		rp->slots[i].rp = rp;
		rp->slots[i].prev = rp->slots[i].next = -1;
		rp->free_slots[rp->nfree++] = c - 1 - i; /* slot 0 first */
	}
	rp->oldest = rp->newest = -1;
	rp->tty = isatty(STDERR_FILENO);
	rp->timeout_ns = (uint64_t)cfg->http_ack_timeout_ms * 1000000ull;

	if (o->to == REPLAY_HTTP) {
		if (o->url) {
			rp->base = xstrdup(o->url);
		} else {
			if (cfg->http_port == 0)
				return log_err("http.port is 0 (any free port): give --url");
			/* A wildcard bind is reached on loopback. */
			const char *host = strcmp(cfg->http_bind, "0.0.0.0") ? cfg->http_bind : "127.0.0.1";
			rp->base = xasprintf("http://%s:%d", host, cfg->http_port);
		}
		size_t l = strlen(rp->base);
		while (l > 0 && rp->base[l - 1] == '/')
			rp->base[--l] = '\0';
		if (!(rp->http = httpc_new()))
			return -1;
	} else {
		if (!(rp->zctx = zmq_ctx_new()))
			return log_err("cannot create ZeroMQ context: %s", zmq_strerror(errno));
		struct zmqx_keys keys;
		if (!(rp->dealer = zmqx_dealer_connect(rp->zctx, cfg->router_ingress_endpoint,
						       zmqx_keys_for(cfg, cfg->router_ingress_endpoint,
								     &keys))))
			return -1;
	}
	return replay_open_sources(rp);
}

static void replay_teardown(struct replay *rp)
{
	httpc_destroy(&rp->http);
	zmqx_close(&rp->dealer, 0);
	if (rp->zctx)
		zmq_ctx_term(rp->zctx);
	for (size_t i = 0; i < rp->nsrc; i++) {
		capture_record_release(&rp->srcs[i].head);
		capture_reader_close(&rp->srcs[i].r);
	}
	free(rp->srcs);
	free(rp->heap);
	free(rp->slots);
	free(rp->free_slots);
	free(rp->base);
}

static uint64_t replay_due_ns(const struct replay *rp, uint64_t t)
{
	if (rp->o->speed <= 0 || t <= rp->t0)
		return rp->start_ns;
	return rp->start_ns + (uint64_t)((double)(t - rp->t0) * 1e6 / rp->o->speed);
}

static void replay_progress(struct replay *rp, bool last)
{
	uint64_t now = replay_now_ns();
	const struct replay_summary *s = rp->sum;
	/* A bar redrawn in place on a terminal; a line a second elsewhere. */
	uint64_t every = rp->tty ? REPLAY_TICK_NS : 10 * REPLAY_TICK_NS;

	if (!rp->o->progress || (!last && now - rp->drawn_ns < every))
		return;
	rp->drawn_ns = now;
	uint64_t done = s->acked + s->failed + s->skipped;
	uint64_t total = rp->total > done ? rp->total : done;
	int fill = total ? (int)(done * REPLAY_BAR_WIDTH / total) : REPLAY_BAR_WIDTH;
	/* No rate over the first moments: one request in 1 ms is not 1000/s. */
	double el = rp->first_ns ? (double)(now - rp->first_ns) / 1e9 : 0;
	char bar[REPLAY_BAR_WIDTH + 1];
	for (int i = 0; i < REPLAY_BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[REPLAY_BAR_WIDTH] = '\0';
	fprintf(stderr, "%s[%s] %3d%% %llu/%llu sent %llu acked %llu failed %llu %.0f/s%s",
		rp->tty ? "\r" : "", bar, total ? (int)(done * 100 / total) : 100,
		(unsigned long long)done, (unsigned long long)total, (unsigned long long)s->sent,
		(unsigned long long)s->acked, (unsigned long long)s->failed,
		el >= 0.2 ? (double)s->sent / el : 0.0, rp->tty ? "\033[K" : "\n");
	if (last && rp->tty)
		fputc('\n', stderr);
	fflush(stderr);
}

static void replay_summarize(struct replay *rp)
{
	struct replay_summary *s = rp->sum;
	/* Requests still in flight when the loop gave up never got an answer. */
	s->failed += (uint64_t)rp->inflight;
	uint64_t end = rp->last_ns > rp->first_ns ? rp->last_ns : rp->first_ns;
	s->elapsed_s = rp->first_ns ? (double)(end - rp->first_ns) / 1e9 : 0;
	s->rate = s->elapsed_s > 0 ? (double)s->sent / s->elapsed_s : 0;
	s->p50_ms = (double)lathist_quantile(&rp->lat, 0.50) / 1e3;
	s->p90_ms = (double)lathist_quantile(&rp->lat, 0.90) / 1e3;
	s->p99_ms = (double)lathist_quantile(&rp->lat, 0.99) / 1e3;
	s->max_ms = (double)rp->lat.max_us / 1e3;
}

/* Waits up to wait_ns for answers and handles them. */
static int replay_wait(struct replay *rp, uint64_t wait_ns)
{
	int ms = (int)((wait_ns + 999999) / 1000000);
	if (rp->http)
		return httpc_poll(rp->http, -1, ms);
	zmq_pollitem_t it = { .socket = rp->dealer, .events = ZMQ_POLLIN };
	if (zmq_poll(&it, 1, ms) < 0 && errno != EINTR)
		return log_err("zmq_poll: %s", zmq_strerror(errno));
	replay_router_drain(rp);
	replay_router_expire(rp);
	return 0;
}

int replay_run(const struct config *cfg, const struct replay_opts *o, struct replay_summary *sum)
{
	struct replay rp = { .cfg = cfg, .o = o, .sum = sum };
	int rc = -1;

	memset(sum, 0, sizeof(*sum));
	if (o->concurrency < 1) {
		log_err("concurrency must be at least 1");
		goto fail;
	}
	if (o->progress)
		rp.total = replay_count(o);
	if (replay_setup(&rp) < 0)
		goto fail;
	rp.start_ns = replay_now_ns();
	for (;;) {
		bool stopping = (o->stop && *o->stop) || rp.dead;
		uint64_t now = replay_now_ns(), wait = REPLAY_TICK_NS;
		while (!stopping && rp.nheap && rp.inflight < o->concurrency) {
			const struct capture_record *rec = &rp.heap[0]->head;
			uint64_t due = replay_due_ns(&rp, rec->t);
			if (due > now) {
				if (due - now < wait)
					wait = due - now;
				break;
			}
			int r = rp.http ? replay_http_send(&rp, rec) : replay_router_send(&rp, rec);
			if (r == 1) {
				wait = REPLAY_STALL_RETRY_NS;
				break;
			}
			replay_heap_advance(&rp);
		}
		if (rp.inflight == 0 && (stopping || rp.nheap == 0))
			break;
		if (replay_wait(&rp, wait) < 0)
			break;
		replay_progress(&rp, false);
	}
	if (o->stop && *o->stop && rp.nheap) {
		sum->interrupted = true;
		log_warn("stopped by a signal before the end of the capture");
	}
	if (rp.dead)
		sum->interrupted = true;
	replay_progress(&rp, true);
	rc = 0;
fail:
	replay_summarize(&rp);
	replay_teardown(&rp);
	return rc;
}

void replay_print_summary(const struct replay_summary *s, bool json, FILE *out)
{
	if (!json) {
		fprintf(out,
			"replay: %llu records, %llu sent, %llu acknowledged, %llu failed "
			"(%llu skipped, %u damaged files%s)\n"
			"replay: %.3f s, %.1f/s; latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
			(unsigned long long)s->records, (unsigned long long)s->sent,
			(unsigned long long)s->acked, (unsigned long long)s->failed,
			(unsigned long long)s->skipped, s->damaged, s->interrupted ? ", interrupted" : "",
			s->elapsed_s, s->rate, s->p50_ms,
			s->p90_ms, s->p99_ms, s->max_ms);
		return;
	}
	json_t *lat = json_pack("{s:f, s:f, s:f, s:f}", "p50", s->p50_ms, "p90", s->p90_ms, "p99",
				s->p99_ms, "max", s->max_ms);
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:i, s:b, s:f, s:f, s:o}",
			      "records", (json_int_t)s->records, "sent", (json_int_t)s->sent,
			      "acknowledged", (json_int_t)s->acked, "failed", (json_int_t)s->failed,
			      "skipped", (json_int_t)s->skipped, "damaged_files", (int)s->damaged,
			      "interrupted", (int)s->interrupted, "elapsed_s", s->elapsed_s,
			      "rate_per_s", s->rate, "latency_ms", lat);
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	if (text)
		fprintf(out, "%s\n", text);
	else
		log_err("cannot format the summary as JSON");
	free(text);
	json_decref(o);
}
