/* worker — shared worker loop; see worker.h. */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"
#include "zmqx.h"

/* A job this worker holds: running (frame NULL), or finished with its
 * result not yet acknowledged by the router (frame: the encoded result,
 * sent again every heartbeat until the ack). A re-dispatch of a held job
 * is never run a second time. */
struct held {
	uint64_t id;
	uint64_t attempt;
	char *frame;
	size_t len;
	bool failed;      /* frame is a failure: a new attempt of the job runs again */
	uint64_t sent_at; /* mono ms of the last send of frame */
	UT_hash_handle hh;
};

static const struct metric_def M_JOBS = {
	"baton_worker_jobs_total", METRIC_COUNTER, "Jobs this worker received from the router.",
	{ NULL }, { NULL } };
static const struct metric_def M_RUNNING = {
	"baton_worker_jobs_in_flight", METRIC_GAUGE,
	"Jobs this worker is running (received, result not sent yet).", { NULL }, { NULL } };
static const struct metric_def M_UNACKED = {
	"baton_worker_results_unacked", METRIC_GAUGE,
	"Results sent to the router and not yet acknowledged (sent again every heartbeat).",
	{ NULL }, { NULL } };
static const struct metric_def M_RESENT = {
	"baton_worker_results_resent_total", METRIC_COUNTER,
	"Results sent to the router again because no acknowledgement came (router restart, "
	"full store).", { NULL }, { NULL } };
static const struct metric_def M_PENDING = {
	"baton_worker_http_pending", METRIC_GAUGE,
	"HTTP calls in flight or waiting for their retry delay.", { NULL }, { NULL } };

struct worker {
	const struct config *cfg;
	struct held *held;
	size_t unacked;
	char *kind;
	char *name;
	int capacity;
	void *zctx, *sock;
	struct httpc *http;
	uint64_t next_hello;
	uint64_t last_hello; /* mono ms of the last HELLO sent */
	uint64_t stalled_at; /* mono ms a stall past worker.timeout_ms was seen, 0 = never */
	uint64_t jobs;
};

struct worker *worker_new(const struct config *cfg, const char *kind, int capacity)
{
	struct zmqx_keys keys;
	struct worker *w = xcalloc(1, sizeof(*w));
	char host[64] = "host";
	gethostname(host, sizeof(host) - 1);
	w->cfg = cfg;
	w->kind = xstrdup(kind);
	w->name = xasprintf("%s-%s-%d", kind, host, (int)getpid());
	w->capacity = capacity;
	if (!(w->zctx = zmq_ctx_new()) ||
	    !(w->sock = zmqx_dealer_connect(w->zctx, cfg->router_work_endpoint,
					    zmqx_keys_for(cfg, cfg->router_work_endpoint, &keys))) ||
	    !(w->http = httpc_new())) {
		worker_destroy(&w);
		return NULL;
	}
	return w;
}

void worker_destroy(struct worker **wp)
{
	if (!wp || !*wp)
		return;
	struct worker *w = *wp;
	httpc_destroy(&w->http);
	struct held *j, *tmp;
	HASH_ITER(hh, w->held, j, tmp) {
		HASH_DEL(w->held, j);
		free(j->frame);
		free(j);
	}
	/* Results just sent deserve a moment to leave. */
	zmqx_close(&w->sock, 1000);
	if (w->zctx)
		zmq_ctx_term(w->zctx);
	free(w->kind);
	free(w->name);
	free(w);
	*wp = NULL;
}

struct httpc *worker_http(struct worker *w)
{
	return w->http;
}

static struct held *worker_held(struct worker *w, uint64_t id)
{
	struct held *j = NULL;
	HASH_FIND(hh, w->held, &id, sizeof(id), j);
	return j;
}

static void worker_forget(struct worker *w, struct held *j)
{
	if (j->frame)
		w->unacked--;
	HASH_DEL(w->held, j);
	free(j->frame);
	free(j);
}

int worker_reply(struct worker *w, const struct envelope *result)
{
	struct log_ids ids = { .conv = result->conv, .job = result->id };
	struct envelope r = *result;
	struct held *j = worker_held(w, result->id);
	char *frame = NULL;
	size_t len = 0;

	if (j && !r.attempt)
		r.attempt = (int64_t)j->attempt;
	int rc = env_encode(&r, &frame, &len);
	if (rc != ENV_EOK)
		return log_err_ids(&ids, "cannot encode result: %s", env_strerror(rc));
	if (result->status != ST_PROGRESS) {
		if (!j) {
			j = xcalloc(1, sizeof(*j));
			j->id = result->id;
			j->attempt = (uint64_t)r.attempt;
			HASH_ADD(hh, w->held, id, sizeof(j->id), j);
		}
		if (!j->frame)
			w->unacked++;
		free(j->frame);
		j->frame = frame;
		j->len = len;
		j->failed = r.status == ST_FAILED || r.status == ST_RETRY;
		j->sent_at = clock_mono_ms();
		frame = NULL;
		if (zmqx_send_frame(w->sock, NULL, j->frame, j->len) < 0)
			return log_err_ids(&ids, "cannot send result to router (kept, sent again "
					   "later): %s", zmq_strerror(errno));
		return 0;
	}
	rc = zmqx_send_frame(w->sock, NULL, frame, len);
	free(frame);
	if (rc < 0)
		return log_err_ids(&ids, "cannot send result to router: %s", zmq_strerror(errno));
	return 0;
}

/* Results the router has not acknowledged within a heartbeat go again. */
static void worker_resend(struct worker *w, uint64_t now)
{
	struct held *j, *tmp;
	uint64_t age = (uint64_t)w->cfg->worker_heartbeat_ms;
	HASH_ITER(hh, w->held, j, tmp) {
		if (!j->frame || now < j->sent_at + age)
			continue;
		struct log_ids ids = { .job = j->id };
		log_emit(LOG_DEBUG, &ids, "result not acknowledged yet: sending it again");
		metrics_inc(&M_RESENT, NULL, NULL);
		j->sent_at = now;
		if (zmqx_send_frame(w->sock, NULL, j->frame, j->len) < 0)
			break; /* the queue is full: the next heartbeat tries again */
	}
}

static void worker_hello(struct worker *w, int credit)
{
	struct envelope h = { .type = ENV_HELLO, .ts = clock_wall_ms(), .kind = w->kind,
			      .name = w->name, .credit = credit };
	size_t n = HASH_COUNT(w->held);
	if (n > ENV_CLAIMS_MAX)
		n = ENV_CLAIMS_MAX;
	if (n) {
		struct held *j, *tmp;
		h.claims = xcalloc(n, sizeof(*h.claims));
		HASH_ITER(hh, w->held, j, tmp) {
			if (h.nclaims == n)
				break;
			h.claims[h.nclaims].id = j->id;
			h.claims[h.nclaims++].attempt = j->attempt;
		}
	}
	uint64_t now = clock_mono_ms();
	if (w->last_hello && now > w->last_hello + (uint64_t)w->cfg->worker_timeout_ms) {
		/* Stopped or starved (SIGSTOP, a swapped-out host): the router has
		 * written this worker off and given its jobs to others. */
		w->stalled_at = now;
		log_warn("this worker was silent for %llu ms (past worker.timeout_ms): jobs it held "
			 "may run elsewhere now", (unsigned long long)(now - w->last_hello));
	}
	if (zmqx_send_env(w->sock, NULL, &h) < 0)
		log_warn("cannot say hello to router: %s", zmq_strerror(errno));
	free(h.claims);
	w->last_hello = now;
	w->next_hello = now + (uint64_t)w->cfg->worker_heartbeat_ms;
}

bool worker_written_off_since(const struct worker *w, uint64_t since)
{
	uint64_t now = clock_mono_ms();
	if (w->last_hello && now > w->last_hello + (uint64_t)w->cfg->worker_timeout_ms)
		return true; /* stalled right now, not noticed by the loop yet */
	return w->stalled_at >= since && w->stalled_at != 0;
}

static void worker_job(struct worker *w, const struct envelope *env, worker_job_fn *fn,
		       void *arg)
{
	struct log_ids ids = { .conv = env->conv, .job = env->id };
	struct held *j = worker_held(w, env->id);
	if (j && j->frame && j->failed && env->attempt > 0 && (uint64_t)env->attempt != j->attempt) {
		/* The router dispatches a new attempt only once this one is over: it
		 * recorded the failure and its ack was lost (a dropped connection).
		 * Sending the failure again would answer an attempt it no longer
		 * waits for, and leave the new one with a worker that never runs it. */
		log_emit(LOG_INFO, &ids, "a new attempt of a job that failed here: running it again");
		worker_forget(w, j);
		j = NULL;
	}
	if (j && j->frame) {
		log_emit(LOG_INFO, &ids, "job already finished here: sending its result again");
		j->sent_at = clock_mono_ms();
		zmqx_send_frame(w->sock, NULL, j->frame, j->len);
		return;
	}
	if (j) {
		log_emit(LOG_INFO, &ids, "job already running here: re-dispatch ignored");
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->id = env->id;
	j->attempt = (uint64_t)env->attempt;
	HASH_ADD(hh, w->held, id, sizeof(j->id), j);
	w->jobs++;
	metrics_inc(&M_JOBS, NULL, NULL);
	fn(w, env, arg);
}

static void worker_drain(struct worker *w, int job_type, worker_job_fn *fn, void *arg)
{
	struct envelope env;
	int rc;
	while (zmqx_readable(w->sock) && (rc = zmqx_recv_env(w->sock, NULL, &env)) != 0) {
		if (rc < 0)
			continue;
		if ((int)env.type == job_type) {
			worker_job(w, &env, fn, arg);
		} else if (env.type == ENV_ACK) {
			/* The router has recorded this job's result (or knew it done). */
			struct held *j = worker_held(w, env.id);
			if (j && j->frame)
				worker_forget(w, j);
		} else {
			log_warn("ignored a %s envelope from the router", env_type_name(env.type));
		}
		env_release(&env);
	}
}

/* While stopping: a job that arrives anyway is not started (the router
 * re-dispatches it when this worker's silence times out). */
static void worker_refuse_job(struct worker *w, const struct envelope *job, void *arg)
{
	struct log_ids ids = { .conv = job->conv, .job = job->id };
	struct held *j = worker_held(w, job->id);
	log_emit(LOG_INFO, &ids, "stopping: job not started");
	if (j && !j->frame)
		worker_forget(w, j);
}

static void worker_collect(void *arg)
{
	struct worker *w = arg;
	metrics_set(&M_RUNNING, NULL, NULL, (double)(HASH_COUNT(w->held) - w->unacked));
	metrics_set(&M_UNACKED, NULL, NULL, (double)w->unacked);
	metrics_set(&M_PENDING, NULL, NULL, (double)httpc_pending(w->http));
}

int worker_run(struct worker *w, int job_type, worker_job_fn *fn, void *arg,
	       volatile sig_atomic_t *stop)
{
	static const struct metric_def *const defs[] = { &M_JOBS, &M_RUNNING, &M_PENDING,
							 &M_UNACKED, &M_RESENT, NULL };
	int fd = -1;
	size_t fdlen = sizeof(fd);
	if (zmq_getsockopt(w->sock, ZMQ_FD, &fd, &fdlen) != 0)
		return log_err("cannot get the socket's fd: %s", zmq_strerror(errno));

	metrics_register(defs);
	metrics_collector_add(worker_collect, w);
	worker_hello(w, w->capacity);
	log_notice("ready: %s worker %s, capacity %d, router %s", w->kind, w->name, w->capacity,
		 w->cfg->router_work_endpoint);
	while (!*stop) {
		worker_drain(w, job_type, fn, arg);
		uint64_t now = clock_mono_ms();
		if (now >= w->next_hello) {
			worker_hello(w, w->capacity);
			worker_resend(w, now);
		}
		int timeout = (int)(w->next_hello > now ? w->next_hello - now : 0);
		int mt = metrics_tick();
		if (mt >= 0 && mt < timeout)
			timeout = mt;
		/* ZMQ_FD is edge-triggered: look at the socket again before sleeping. */
		if (zmqx_readable(w->sock))
			timeout = 0;
		if (httpc_poll(w->http, fd, timeout) < 0) {
			metrics_collector_remove(worker_collect, w);
			return -1;
		}
	}
	metrics_collector_remove(worker_collect, w);

	worker_hello(w, 0);
	uint64_t until = clock_mono_ms() + WORKER_GRACE_MS;
	log_info("stopping: %zu calls in flight and %zu results to acknowledge get up to %d ms",
		 httpc_pending(w->http), w->unacked, WORKER_GRACE_MS);
	/* Finish the calls in flight, then wait for the router to acknowledge
	 * every result (resending as usual), within the grace period. */
	while ((httpc_pending(w->http) || w->unacked) && clock_mono_ms() < until) {
		httpc_poll(w->http, fd, 100);
		worker_drain(w, job_type, worker_refuse_job, NULL);
		uint64_t now = clock_mono_ms();
		if (now >= w->next_hello) {
			worker_hello(w, 0);
			worker_resend(w, now);
		}
	}
	if (w->unacked)
		log_warn("stopped with %zu results unacknowledged: the router re-dispatches their "
			 "jobs", w->unacked);
	log_info("stopped after %llu jobs", (unsigned long long)w->jobs);
	return 0;
}
