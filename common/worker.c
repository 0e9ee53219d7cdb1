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

/* A job this worker is running: a re-dispatch of it (after a router
 * restart) is ignored rather than run twice at once. */
struct running {
	uint64_t id;
	UT_hash_handle hh;
};

static const struct metric_def M_JOBS = {
	"baton_worker_jobs_total", METRIC_COUNTER, "Jobs this worker received from the router.",
	{ NULL }, { NULL } };
static const struct metric_def M_RUNNING = {
	"baton_worker_jobs_in_flight", METRIC_GAUGE,
	"Jobs this worker is running (received, result not sent yet).", { NULL }, { NULL } };
static const struct metric_def M_PENDING = {
	"baton_worker_http_pending", METRIC_GAUGE,
	"HTTP calls in flight or waiting for their retry delay.", { NULL }, { NULL } };

struct worker {
	const struct config *cfg;
	struct running *running;
	char *kind;
	char *name;
	int capacity;
	void *zctx, *sock;
	struct httpc *http;
	uint64_t next_hello;
	uint64_t jobs;
};

struct worker *worker_new(const struct config *cfg, const char *kind, int capacity)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	char host[64] = "host";
	gethostname(host, sizeof(host) - 1);
	w->cfg = cfg;
	w->kind = xstrdup(kind);
	w->name = xasprintf("%s-%s-%d", kind, host, (int)getpid());
	w->capacity = capacity;
	if (!(w->zctx = zmq_ctx_new()) ||
	    !(w->sock = zmqx_dealer_connect(w->zctx, cfg->router_work_endpoint)) ||
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
	struct running *j, *tmp;
	HASH_ITER(hh, w->running, j, tmp) {
		HASH_DEL(w->running, j);
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

int worker_reply(struct worker *w, const struct envelope *result)
{
	if (result->status != ST_PROGRESS) {
		struct running *j = NULL;
		uint64_t id = result->id;
		HASH_FIND(hh, w->running, &id, sizeof(id), j);
		if (j) {
			HASH_DEL(w->running, j);
			free(j);
		}
	}
	if (zmqx_send_env(w->sock, NULL, result) < 0) {
		struct log_ids ids = { .conv = result->conv, .job = result->id };
		return log_err_ids(&ids, "cannot send result to router: %s", zmq_strerror(errno));
	}
	return 0;
}

static void worker_hello(struct worker *w, int credit)
{
	struct envelope h = { .type = ENV_HELLO, .ts = clock_wall_ms(), .kind = w->kind,
			      .name = w->name, .credit = credit };
	if (zmqx_send_env(w->sock, NULL, &h) < 0)
		log_warn("cannot say hello to router: %s", zmq_strerror(errno));
	w->next_hello = clock_mono_ms() + (uint64_t)w->cfg->worker_heartbeat_ms;
}

static void worker_drain(struct worker *w, int job_type, worker_job_fn *fn, void *arg)
{
	struct envelope env;
	int rc;
	while (zmqx_readable(w->sock) && (rc = zmqx_recv_env(w->sock, NULL, &env)) != 0) {
		if (rc < 0)
			continue;
		if ((int)env.type == job_type) {
			struct running *j = NULL;
			uint64_t id = env.id;
			HASH_FIND(hh, w->running, &id, sizeof(id), j);
			if (j) {
				struct log_ids ids = { .conv = env.conv, .job = env.id };
				log_emit(LOG_INFO, &ids, "job already running here: re-dispatch ignored");
			} else {
				j = xcalloc(1, sizeof(*j));
				j->id = id;
				HASH_ADD(hh, w->running, id, sizeof(j->id), j);
				w->jobs++;
				metrics_inc(&M_JOBS, NULL, NULL);
				fn(w, &env, arg);
			}
		} else {
			log_warn("ignored a %s envelope from the router", env_type_name(env.type));
		}
		env_release(&env);
	}
}

static void worker_collect(void *arg)
{
	struct worker *w = arg;
	metrics_set(&M_RUNNING, NULL, NULL, (double)HASH_COUNT(w->running));
	metrics_set(&M_PENDING, NULL, NULL, (double)httpc_pending(w->http));
}

int worker_run(struct worker *w, int job_type, worker_job_fn *fn, void *arg,
	       volatile sig_atomic_t *stop)
{
	static const struct metric_def *const defs[] = { &M_JOBS, &M_RUNNING, &M_PENDING, NULL };
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
		if (now >= w->next_hello)
			worker_hello(w, w->capacity);
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
	log_info("stopping: %zu calls in flight get up to %d ms", httpc_pending(w->http),
		 WORKER_GRACE_MS);
	while (httpc_pending(w->http) && clock_mono_ms() < until)
		httpc_poll(w->http, -1, 100);
	log_info("stopped after %llu jobs", (unsigned long long)w->jobs);
	return 0;
}
