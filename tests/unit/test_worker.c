/*
 * test_worker — common/worker: the loop every worker shares, against a
 * ROUTER socket this test holds in place of the router. A job the router
 * sends again while the worker still holds its result: a success is sent
 * again and not run twice; a failure whose ack was lost is run again when
 * a new attempt comes (the router has recorded it and retries). The worker
 * runs in a thread; its heartbeat is long, so every frame the test reads
 * is an answer to what the test sent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "config.h"
#include "envelope.h"
#include "log.h"
#include "testenv.h"
#include "worker.h"
#include "xalloc.h"
#include "zmqx.h"

#define CONV "whatsapp:+14155550100|whatsapp:+14155238886"

struct fixture {
	char dir[64];
	struct config cfg;
	struct worker *w;
	void *zctx, *router;
	struct zmqx_peer peer; /* the worker's routing id, from its HELLO */
	pthread_t thread;
	volatile sig_atomic_t stop;
	atomic_int runs;       /* jobs the handler was called for */
	atomic_int status;     /* what the handler answers */
};

/* The handler: answers at once with the status the test chose. */
static void job_answer(struct worker *w, const struct envelope *job, void *arg)
{
	struct fixture *f = arg;
	struct envelope r = { .type = ENV_RESULT_FLEX, .id = job->id, .conv = job->conv,
			      .op = job->op, .ts = 1, .status = atomic_load(&f->status),
			      .err = "Service Unavailable", .code = 503 };
	atomic_fetch_add(&f->runs, 1);
	worker_reply(w, &r);
}

static void *worker_thread(void *arg)
{
	struct fixture *f = arg;
	worker_run(f->w, ENV_JOB_FLEX, job_answer, f, &f->stop);
	return NULL;
}

/* The next envelope from the worker that is a HELLO (hello) or is not;
 * the others are dropped. Fails after 10 s without one. */
static void recv_env(struct fixture *f, bool hello, struct envelope *env)
{
	for (int waited = 0; waited < 10000;) {
		zmq_pollitem_t pi = { .socket = f->router, .events = ZMQ_POLLIN };
		if (zmq_poll(&pi, 1, 100) == 0) {
			waited += 100;
			continue;
		}
		if (zmqx_recv_env(f->router, &f->peer, env) <= 0)
			continue;
		if ((env->type == ENV_HELLO) == hello)
			return;
		env_release(env);
	}
	fail_msg("nothing from the worker in 10 s");
}

static void send_job(struct fixture *f, uint64_t id, uint64_t attempt)
{
	struct envelope job = { .type = ENV_JOB_FLEX, .id = id, .attempt = (int64_t)attempt,
				.conv = CONV, .op = "handoff", .ts = 1, .from = "whatsapp:+14155550100",
				.to = "whatsapp:+14155238886" };
	assert_int_equal(zmqx_send_env(f->router, &f->peer, &job), 0);
}

static void send_ack(struct fixture *f, uint64_t id)
{
	struct envelope ack = { .type = ENV_ACK, .id = id, .status = ST_OK, .ts = 1 };
	assert_int_equal(zmqx_send_env(f->router, &f->peer, &ack), 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char conf[96], err[512] = "";
	strcpy(f->dir, "/tmp/baton-test-worker-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(conf, sizeof(conf), "%s/baton.conf", f->dir);
	FILE *fp = fopen(conf, "w");
	if (!fp)
		return -1;
	fprintf(fp, "state.dir = %s\nrouter.work_endpoint = ipc://%s/work.ipc\n"
		    "worker.heartbeat_ms = 30000\nworker.timeout_ms = 60000\n", f->dir, f->dir);
	fclose(fp);
	if (config_load(&f->cfg, conf, err, sizeof(err)) < 0) {
		print_error("config: %s\n", err);
		free(f);
		return -1;
	}
	f->zctx = zmq_ctx_new();
	f->router = zmqx_router_bind(f->zctx, f->cfg.router_work_endpoint, NULL);
	f->w = worker_new(&f->cfg, "flex", 4);
	if (!f->router || !f->w)
		return -1;
	if (pthread_create(&f->thread, NULL, worker_thread, f))
		return -1;
	/* Its first HELLO names it: the jobs go to that routing id. */
	struct envelope hello;
	recv_env(f, true, &hello);
	env_release(&hello);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	f->stop = 1;
	send_ack(f, 0); /* wakes its loop */
	pthread_join(f->thread, NULL);
	worker_destroy(&f->w);
	zmqx_close(&f->router, 0);
	zmq_ctx_term(f->zctx);
	config_release(&f->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Sends job id with this attempt and expects the worker's result for it. */
static void job_and_result(struct fixture *f, uint64_t id, uint64_t attempt,
			   uint64_t want_attempt, int want_status)
{
	struct envelope r;
	send_job(f, id, attempt);
	recv_env(f, false, &r);
	assert_int_equal(r.type, ENV_RESULT_FLEX);
	assert_int_equal(r.id, id);
	assert_int_equal(r.attempt, want_attempt);
	assert_int_equal(r.status, want_status);
	env_release(&r);
}

/* A failure recorded by the router, its ack lost: the next attempt runs. */
static void test_failure_then_new_attempt_runs_again(void **state)
{
	struct fixture *f = *state;
	atomic_store(&f->status, ST_RETRY);
	job_and_result(f, 7, 11, 11, ST_RETRY);
	job_and_result(f, 7, 12, 12, ST_RETRY); /* no ack came for attempt 11 */
	assert_int_equal(atomic_load(&f->runs), 2);
	send_ack(f, 7);
}

/* A success is a fact: a new attempt gets it again, nothing runs twice. */
static void test_success_then_new_attempt_is_sent_again(void **state)
{
	struct fixture *f = *state;
	atomic_store(&f->status, ST_OK);
	job_and_result(f, 8, 21, 21, ST_OK);
	job_and_result(f, 8, 22, 21, ST_OK);
	assert_int_equal(atomic_load(&f->runs), 1);
	send_ack(f, 8);
}

/* The same attempt again (no attempt token: an older router) is not run twice. */
static void test_failure_then_same_attempt_is_sent_again(void **state)
{
	struct fixture *f = *state;
	atomic_store(&f->status, ST_FAILED);
	job_and_result(f, 9, 31, 31, ST_FAILED);
	job_and_result(f, 9, 0, 31, ST_FAILED);
	assert_int_equal(atomic_load(&f->runs), 1);
	send_ack(f, 9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_failure_then_new_attempt_runs_again, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_success_then_new_attempt_is_sent_again, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failure_then_same_attempt_is_sent_again, setup,
						teardown),
	};
	testenv_clear_baton();
	log_init("test_worker", getenv("WORKER_LOG") ? LOG_DEBUG : LOG_ERROR, true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
