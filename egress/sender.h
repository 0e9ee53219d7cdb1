/*
 * sender — egress's job handler: one Twilio Messages call per send job.
 *
 * 429, 5xx and network failures are retried with backoff (Retry-After
 * honoured) until egress.retry_deadline_ms, then handed back to the
 * router as ST_RETRY (the message stays in the outbox). Other 4xx are
 * final (ST_FAILED with Twilio's code). The router keeps at most one send
 * per conversation in flight, so retrying here keeps the order.
 *
 * Exactly once: a job marked reconcile (an earlier attempt died or lost
 * its result) and any retry after a failure that may have reached Twilio
 * (timeout, cut connection, 5xx) first list what Twilio already sent to
 * the customer (twilio.h) and report that message's SID instead of
 * sending again; when the list cannot be read it sends anyway (counted).
 * egress.reconcile = false turns this off.
 */
#ifndef BATON_SENDER_H
#define BATON_SENDER_H

#include "config.h"
#include "worker.h"

struct sender {
	const struct config *cfg;
	char *url;
	unsigned long sent, retries, failures, reconciled;
};

void sender_init(struct sender *s, const struct config *cfg);
void sender_release(struct sender *s);
/** worker_job_fn for ENV_JOB_SEND. */
void sender_job(struct worker *w, const struct envelope *job, void *arg);

#endif
