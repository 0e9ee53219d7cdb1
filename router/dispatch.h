/*
 * dispatch — which job goes to which worker, and when. Memory only.
 *
 * Jobs live in LMDB; this module knows just their ids, kinds and
 * conversations. Jobs of one kind for one conversation form a lane and
 * leave it one at a time, in id order (DESIGN invariant 4); different
 * lanes run in parallel. Workers announce their kind and capacity
 * (HELLO, also their heartbeat); a job goes to the live worker of its
 * kind with the most free credit. A worker silent past the timeout, or
 * one a send to fails, is dropped and its jobs go back to the head of
 * their lanes.
 *
 * After a router restart the store's jobs are added back in id order:
 * lane order survives, and results of jobs dispatched by the previous
 * router are still accepted (matched by job id). Workers claim the jobs
 * they still hold in their HELLO (dispatch_claim), so those stay with
 * them instead of running twice.
 *
 * Each dispatch gets an attempt token, unique across router runs; a
 * result names the attempt it answers. A job whose attempt's outcome is
 * unknown (its worker died or went silent, or it was recovered after a
 * restart) is marked uncertain: a send job then reconciles with Twilio
 * before sending again. A job whose result the router holds but could
 * not commit yet is held: it goes to no worker until dispatch_done or
 * dispatch_retry.
 */
#ifndef BATON_DISPATCH_H
#define BATON_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "zmqx.h"

struct dispatch;

struct dispatch *dispatch_new(void);
void dispatch_destroy(struct dispatch **d);

/** A new job at the tail of its lane, not to start before not_before (mono ms, 0 = now). */
void dispatch_add(struct dispatch *d, uint64_t id, enum job_kind kind, const char *conv,
		  uint64_t not_before);
/** The job is finished (its result committed): forget it, free its lane. */
void dispatch_done(struct dispatch *d, uint64_t id);
/** Put an in-flight job back at the head of its lane, to retry after not_before;
 *  the attempt it was on is over (a later claim of it is ignored). */
void dispatch_retry(struct dispatch *d, uint64_t id, uint64_t not_before);
bool dispatch_known(const struct dispatch *d, uint64_t id);
/** The job's result waits for a commit: off its worker, its lane blocked. */
void dispatch_hold(struct dispatch *d, uint64_t id);
bool dispatch_is_held(const struct dispatch *d, uint64_t id);
/** An attempt's outcome is unknown since since_wall (wall ms); kept until done. */
void dispatch_set_uncertain(struct dispatch *d, uint64_t id, uint64_t since_wall);
/**
 * The job's latest attempt (0 = never dispatched) and uncertain_since (0 =
 * none); either pointer may be NULL. Returns whether it is in flight now.
 */
bool dispatch_attempt(const struct dispatch *d, uint64_t id, uint64_t *attempt,
		      uint64_t *uncertain_since);
/** A worker (HELLO) holds job id with this attempt: in flight on it, if the
 *  job waits at the head of its lane and that attempt's result has not
 *  come back already. Anything else is left as it is. */
void dispatch_claim(struct dispatch *d, const struct zmqx_peer *peer, uint64_t id,
		    uint64_t attempt);
/** Whether this attempt's result was applied already (its job put back for a
 *  retry): the same result sent again is stale. A held result is not. */
bool dispatch_answered(const struct dispatch *d, uint64_t id, uint64_t attempt);
/** Whether the job has been sent to a worker and not finished or put back. */
bool dispatch_in_flight(const struct dispatch *d, uint64_t id);

/** A worker said hello (or heartbeat); name is what it calls itself (for logs). */
void dispatch_hello(struct dispatch *d, const struct zmqx_peer *peer, enum job_kind kind,
		    const char *name, int capacity, uint64_t now);
/** Any message from a worker shows it alive, not only its heartbeat. */
void dispatch_touch(struct dispatch *d, const struct zmqx_peer *peer, uint64_t now);
/** Whether this peer said HELLO (and was not dropped since). */
bool dispatch_knows(const struct dispatch *d, const struct zmqx_peer *peer);
/** Drop a worker; its jobs go back to their lanes. */
void dispatch_worker_lost(struct dispatch *d, const struct zmqx_peer *peer);
/** Drop workers silent since before now - timeout_ms. Returns how many. */
int dispatch_expire(struct dispatch *d, uint64_t now, uint64_t timeout_ms);

/**
 * Pick the next job to send and its worker, and mark it in flight.
 * Returns true with *id and *peer set, false when nothing can go now.
 */
bool dispatch_next(struct dispatch *d, uint64_t now, uint64_t *id, struct zmqx_peer *peer);
/** Mono ms when a delayed job becomes ready, 0 if none waits. */
uint64_t dispatch_next_due(const struct dispatch *d);

/** Up to max ids of the jobs queued (not in flight) in one lane, oldest first. */
size_t dispatch_queued_ids(const struct dispatch *d, enum job_kind kind, const char *conv,
			   uint64_t *out, size_t max);
/** Counters for logs and tests. */
size_t dispatch_queued(const struct dispatch *d, enum job_kind kind);
size_t dispatch_inflight(const struct dispatch *d);
/** Jobs of one kind in flight (sent to a worker, not finished). */
size_t dispatch_inflight_kind(const struct dispatch *d, enum job_kind kind);
size_t dispatch_workers(const struct dispatch *d, enum job_kind kind);

#endif
