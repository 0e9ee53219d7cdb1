/*
 * worker — the loop every worker process shares (ai-worker, egress, flex-worker).
 *
 * A worker connects a DEALER socket to the router's work endpoint, says
 * HELLO (its kind and how many jobs it can hold) at start and then every
 * heartbeat, and runs jobs whose HTTP calls go through one httpc. The
 * job handler starts requests and later calls worker_reply() with the
 * result envelope; the loop never blocks on a single call.
 *
 * Results are delivered at least once and applied once: the router
 * acknowledges each final result after the transaction that records it
 * has committed (or when it finds the job already finished), and the
 * worker sends unacknowledged results again every heartbeat, so a result
 * lost in a router crash or held by a router that cannot commit arrives
 * in the end. Each HELLO also claims the jobs the worker holds (running,
 * or finished and unacknowledged) with their attempts, so a restarted
 * router leaves them with this worker instead of running them twice.
 * A job the router sends again while the worker still holds it is not
 * run again (its result is re-sent when it has one), except a new attempt
 * of a job whose result here is a failure: the router has recorded that
 * failure (its ack was lost) and retries, so the job runs again.
 *
 * Stop: when *stop is set the worker says HELLO with no credit (the
 * router sends nothing more), lets the calls in flight finish and their
 * results be acknowledged for up to the grace period, then returns. Jobs
 * it did not finish are re-dispatched by the router after
 * worker.timeout_ms.
 */
#ifndef BATON_WORKER_H
#define BATON_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "envelope.h"
#include "httpc.h"

/* How long a stopping worker waits for its calls in flight. */
#define WORKER_GRACE_MS 5000

struct worker;

/** Called for each job received; job is borrowed for the call. */
typedef void worker_job_fn(struct worker *w, const struct envelope *job, void *arg);

struct worker *worker_new(const struct config *cfg, const char *kind, int capacity);
void worker_destroy(struct worker **w);
struct httpc *worker_http(struct worker *w);
/** Send a result envelope to the router; the attempt of the job is filled
 *  in. A final result (not ST_PROGRESS) is kept until acknowledged.
 *  0 or -1 (logged; the result is still kept and sent again). */
int worker_reply(struct worker *w, const struct envelope *result);
/**
 * Whether the router has presumably written this worker off since mono
 * ms `since`: it was silent past worker.timeout_ms after it (or is right
 * now), so jobs it received before may have gone to another worker. An
 * effect that cannot be undone (a send) is not started then.
 */
bool worker_written_off_since(const struct worker *w, uint64_t since);
/** Run until *stop. 0 on a clean stop, -1 on error (logged). */
int worker_run(struct worker *w, int job_type, worker_job_fn *fn, void *arg,
	       volatile sig_atomic_t *stop);

#endif
