/*
 * core — what the router's modules share: the router's state, the effects
 * a transaction collects until it commits, and each module's entry points.
 * Internal to the router process (router.h is its public face).
 *
 * Modules, each applying its kind of input inside the batch transaction:
 *   router.c   the loop: collect, one transaction per batch, commit, effects
 *   turns.c    customer turns and AI/send results (ai mode, per-turn order)
 *   handoff.c  escalation, Flex results, hand-back, webhooks' events, timers
 *   outbox.c   what may be sent to the customer (1600-char parts, 24 h window)
 *   jobs.c     job envelopes for workers, dispatch, recovery after a restart
 *   purge.c    the operator's erasure of a conversation (right to erasure)
 * Every function taking a txn returns 0 or an LMDB error code that aborts
 * the whole batch (nothing half-done commits).
 */
#ifndef BATON_ROUTER_CORE_H
#define BATON_ROUTER_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "dispatch.h"
#include "envelope.h"
#include "hours.h"
#include "rules.h"
#include "lathist.h"
#include "metrics.h"
#include "room.h"
#include "store.h"
#include "zmqx.h"

/* WhatsApp via Twilio takes at most 1600 characters per message. */
#define ROUTER_BODY_CHARS 1600
/* Bounds on ids that become LMDB keys. */
#define ROUTER_SID_MAX 64
#define ROUTER_ADDR_MAX 128
/* Backoff of a send the egress gave up on (Twilio down): up to 1 min apart,
 * so replies leave within a minute of Twilio coming back. */
#define ROUTER_RETRY_BASE_MS 1000
#define ROUTER_RETRY_CAP_MS (60 * 1000)
/* Backoff cap between attempts of the Flex pipeline (the first delay is
 * handoff.retry_base_ms); the worker already retried 429/5xx inside each. */
#define ROUTER_FLEX_RETRY_CAP_MS 30000

#define OP_HANDOFF "handoff"
#define OP_FORWARD "forward"
#define OP_CLOSE "close"
/* The op of a send job that carries an AI answer. */
#define OP_AI_REPLY "ai"
/* Queued sends one escalation looks at: a conversation's outbox is short. */
#define HANDOFF_CANCEL_MAX 64
/* Synthetic events the router's own timers feed into the next batch. */
#define EV_TIMER_NO_AGENT "timer_no_agent"
#define EV_TIMER_IDLE "timer_idle"
/* Twilio: free-form WhatsApp message outside the 24 h window. */
#define TWILIO_ERR_WINDOW 63016
/* How often the timers look at conversations not in ai mode. */
#define ROUTER_CRON_MS 500
/* MessageSid pruning: how often, and how many entries one tick looks at. */
#define ROUTER_PRUNE_MS 1000
#define ROUTER_PRUNE_MAX 5000

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

struct item {
	bool from_ingress;
	bool synthetic; /* made by the router's timers: no peer, no ack */
	bool settled;   /* answered without the transaction (refused for room) */
	struct zmqx_peer peer;
	struct envelope env;
};

struct router {
	const struct config *cfg;
	struct rules *rules;
	struct hours hours;
	struct hours *number_hours; /* parallel to cfg->numbers */
	char *prune_key;            /* where the MessageSid pruning goes on */
	uint64_t next_prune;        /* mono ms */
	uint64_t next_cron;
	struct store st;
	struct dispatch *disp;
	void *zctx, *ingress, *work;
	struct zap *zap; /* CURVE allow-list, when an endpoint is tcp:// */
	struct item *items;
	size_t nitems;
	/* Worker results whose batch could not commit: kept here, never
	 * re-dispatched, and applied again with backoff (room.h). */
	struct item *held;
	size_t nheld, capheld;
	uint64_t held_at; /* mono ms of the next try */
	struct room room;
	struct effect *fx;
	size_t nfx, capfx;
	uint64_t stat_msgs, stat_dups, stat_commits, stat_escalations;
	/* Time spent applying one inbound message inside its transaction, and
	 * committing one batch (the fsync): the router's own cost, without
	 * queueing, for the bench and metrics. */
	struct lathist work_inbound, work_commit;
};

/* --- router.c --- */
/* Metrics counted inside the batch transaction (kept only when it commits). */
extern const struct metric_def RM_MESSAGES, RM_DUPLICATES, RM_ESCALATIONS, RM_HANDBACKS,
	RM_HANDOFFS_FAILED, RM_REPLIES_CUT;
/** Collect an effect to carry out after the commit. */
struct effect *router_fx_push(struct router *r, enum fx_type type);
/** Acknowledge the item's webhook after the commit (nothing for timer items). */
void router_fx_ack(struct router *r, const struct item *it, int status);
/** The same with the reason ingress logs (static text), for a refusal. */
void router_fx_refuse(struct router *r, const struct item *it, int status, const char *why);
/** Store a job and have it dispatched after the commit. */
/** The settings of the conversation's business number (key "customer|business"). */
const struct config *router_cfg(const struct router *r, const char *key);
/** The business hours of the conversation's business number. */
const struct hours *router_hours(const struct router *r, const char *key);
int router_job_add(struct router *r, MDB_txn *txn, const struct job_rec *j, uint64_t *id);
/** router_job_add for a job that must not start before not_before (mono ms). */
int router_job_add_at(struct router *r, MDB_txn *txn, const struct job_rec *j, uint64_t *id,
		      uint64_t not_before);
/* router_result_job()'s answer for a late or duplicate result (not an LMDB code). */
#define ROUTER_STALE (-1)

/**
 * The job a worker's result is for: 0 with *j filled (caller releases),
 * ROUTER_STALE when the job is gone or of another kind (a late or
 * duplicate result: logged, to be dropped), or an LMDB error.
 */
int router_result_job(struct router *r, MDB_txn *txn, const struct envelope *env,
		      enum job_kind kind, struct job_rec *j);
/** Replace *dst with a copy of v when v is non-empty. */
void router_set_str(char **dst, const char *v);

/* --- turns.c --- */
/** A customer message (Messaging webhook, or seen in the Flex conversation when via_flex). */
int turns_customer(struct router *r, MDB_txn *txn, const char *key,
	struct conv_rec *c, const struct hist_rec *h, bool via_flex);
int turns_inbound(struct router *r, MDB_txn *txn, struct item *it);
int turns_result_ai(struct router *r, MDB_txn *txn, struct item *it);
int turns_result_send(struct router *r, MDB_txn *txn, struct item *it);

/* --- handoff.c --- */
int handoff_forward(struct router *r, MDB_txn *txn, const char *key, uint64_t seq);
int handoff_escalate(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
	const char *trigger, const char *reason, const char *summary);
int handoff_back(struct router *r, MDB_txn *txn, const char *key, struct conv_rec *c,
	const char *path, bool close_flex);
int handoff_result(struct router *r, MDB_txn *txn, struct item *it);
int handoff_event(struct router *r, MDB_txn *txn, struct item *it);

/* --- purge.c --- */
/**
 * EV_ADMIN_PURGE for conversation key (record *c): erase it in the caller's
 * transaction and acknowledge the item (ST_OK, or ST_BUSY while a Flex
 * handoff of it is still running: nothing is changed then). *c is not
 * written back: the record is gone.
 */
int purge_conversation(struct router *r, MDB_txn *txn, struct item *it, const char *key,
		       const struct conv_rec *c);

/* --- outbox.c --- */
/** Record that the 24 h window blocked an outbound message. */
int outbox_window_closed(struct router *r, MDB_txn *txn, const char *key,
	struct conv_rec *c, const char *why);
/** Queue text for the customer (split, or the template outside the window, or nothing).
 *  from_ai marks an AI answer: an escalation cancels those not yet sent.
 *  job: the job whose result this is, for the log (0 = none). */
int outbox_queue(struct router *r, MDB_txn *txn, const char *key,
	struct conv_rec *c, const char *text, uint64_t hseq, bool from_ai, uint64_t job);

/* --- jobs.c --- */
void jobs_dispatch(struct router *r);
int jobs_recover(struct router *r);

#endif
