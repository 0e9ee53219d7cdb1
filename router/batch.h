/*
 * batch — the router's unit of work: one LMDB write transaction and the
 * effects that may happen only once it has committed (acknowledging a
 * webhook, handing a job to dispatch, forgetting a finished one, retrying
 * one later).
 *
 * A store write that has an effect is always paired with it here: a job is
 * added (job_add), finished (job_finish) or put back for a retry with
 * backoff (job_retry) by one call, so no module can delete a job and leave
 * dispatch believing in it. The loop (router.c) begins the batch, lets the
 * modules apply its items, commits, and carries the effects out (or, when
 * the commit fails, drops them: nothing happened).
 *
 * Every function that writes returns 0 or an LMDB error code that aborts
 * the whole batch.
 */
#ifndef BATON_ROUTER_BATCH_H
#define BATON_ROUTER_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "envelope.h"
#include "journal.h"
#include "store.h"
#include "zmqx.h"

enum fx_type { FX_ACK, FX_ADD, FX_DONE, FX_RETRY };

struct effect {
	enum fx_type type;
	struct zmqx_peer peer; /* FX_ACK */
	uint64_t id;           /* request id (ACK) or job id */
	int status;            /* FX_ACK */
	enum job_kind kind;    /* FX_ADD */
	char *conv;            /* FX_ADD, owned */
	uint64_t not_before;   /* FX_RETRY, FX_ADD: mono ms, 0 = now */
	const char *err;       /* FX_ACK: why, for the caller's log (static text) */
};

/* One input of a batch: a webhook from ingress, a worker's result, or an
 * event the router's timers made. */
struct item {
	bool from_ingress;
	bool synthetic; /* made by the router's timers: no peer, no ack */
	bool settled;   /* answered without the transaction (refused for room) */
	struct zmqx_peer peer;
	struct envelope env;
};

struct batch {
	struct rctx *x;
	struct store *st; /* x->st */
	MDB_txn *txn;
	struct effect *fx;
	size_t nfx, capfx;
	/* With state.backend = postgres: the writes, for lead_commit (lead.h). */
	struct journal journal;
};

/* batch_job_of() for a late or duplicate result (not an LMDB code). */
#define BATCH_STALE (-1)

/** Start a write transaction. 0 or an LMDB error. */
int batch_begin(struct batch *b, struct rctx *x);
/**
 * Commit (with PostgreSQL, there first: lead.h); the effects stay for the
 * caller to carry out (or batch_clear). 0, an LMDB error, or LEAD_FAILED /
 * LEAD_FENCED; on an error nothing was written and the caller aborts.
 */
int batch_commit(struct batch *b);
void batch_abort(struct batch *b);
/** Forget the collected effects. */
void batch_clear(struct batch *b);
void batch_release(struct batch *b);

/** Acknowledge the item's webhook after the commit (nothing for timer items);
 *  why (static text) is what ingress logs for a refusal. */
void batch_ack(struct batch *b, const struct item *it, int status, const char *why);

/** Store a new job (*id) and hand it to dispatch after the commit, not before
 *  not_before (mono ms, 0 = now). */
int job_add(struct batch *b, const struct job_rec *j, uint64_t *id, uint64_t not_before);
/** The job is done: deleted, and dispatch forgets it after the commit. */
int job_finish(struct batch *b, uint64_t id);
/**
 * The job failed for now: its attempts count goes up, it is stored, and
 * dispatch retries it after backoff (base_ms doubling, at most cap_ms, with
 * jitter) from the commit. *delay_ms gets the delay (may be NULL).
 */
int job_retry(struct batch *b, uint64_t id, struct job_rec *j, uint64_t base_ms, uint64_t cap_ms,
	      uint64_t *delay_ms);
/** Store the job as it is now and have it dispatched again at once. */
int job_again(struct batch *b, uint64_t id, const struct job_rec *j);

/**
 * The job a worker's result is for: 0 with *j filled (caller releases),
 * BATCH_STALE when the job is gone, of another kind, or the failure is of
 * an attempt that is not the latest, or was applied already (in an earlier
 * batch or this one) (logged, to be dropped), or an LMDB error.
 */
int batch_job_of(struct batch *b, const struct envelope *env, enum job_kind kind,
		 struct job_rec *j);

#endif
