/*
 * sender — egress's job handler: one Twilio Messages call per send job.
 *
 * 429, 5xx and network failures are retried with backoff (Retry-After
 * honoured) until egress.retry_deadline_ms, then handed back to the
 * router as ST_RETRY (the message stays in the outbox). Other 4xx are
 * final (ST_FAILED with Twilio's code). The router keeps at most one send
 * per conversation in flight, so retrying here keeps the order.
 */
#ifndef BATON_SENDER_H
#define BATON_SENDER_H

#include "config.h"
#include "worker.h"

struct sender {
	const struct config *cfg;
	char *url;
	unsigned long sent, retries, failures;
};

void sender_init(struct sender *s, const struct config *cfg);
void sender_release(struct sender *s);
/** worker_job_fn for ENV_JOB_SEND. */
void sender_job(struct worker *w, const struct envelope *job, void *arg);

#endif
