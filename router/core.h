/*
 * core — the router's modules and what they share. Internal to the router
 * process (router.h is its public face).
 *
 * Layers, each calling only the ones below it:
 *   router.c   the loop: collect inputs, one batch per turn, commit, carry
 *              out the effects, timers, recovery (it alone owns struct router)
 *   evtable.c  the event table: webhooks' events, operator commands, timers
 *   turns.c    customer turns and AI/send results (ai mode, per-turn order)
 *   handoff.c  escalation, Flex results, hand-back, agent messages
 *   purge.c    the operator's erasure of a conversation (right to erasure)
 *   outbox.c   what may be sent to the customer (parts, 24 h window)
 *   voice.c    transcripts of voice notes into history
 *   jobs.c     job envelopes for workers, dispatch, recovery after a restart
 *   batch.c    a transaction and its effects; job_add/finish/retry pair a
 *              store write with the effect that must follow it
 *   ctx.c      what modules read: settings, hours, rules, store, dispatch
 *   stats.c    the metrics counted inside a batch
 * No module includes router.h or calls into the loop (`make check-layers`).
 * Every function taking a batch returns 0 or an LMDB error code that aborts
 * the whole batch (nothing half-done commits).
 */
#ifndef BATON_ROUTER_CORE_H
#define BATON_ROUTER_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "convkey.h"
#include "ctx.h"
#include "evkind.h"
#include "metrics.h"
#include "store.h"

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
/* Twilio: free-form WhatsApp message outside the 24 h window. */
#define TWILIO_ERR_WINDOW 63016

/* --- stats.c: metrics counted inside a batch (kept only when it commits) --- */
extern const struct metric_def RM_MESSAGES, RM_DUPLICATES, RM_ESCALATIONS, RM_HANDBACKS,
	RM_HANDOFFS_FAILED, RM_REPLIES_CUT;
/** Register them (once, at start). */
void stats_register(void);

/* --- evtable.c --- */
/** A Conversations/TaskRouter/status event, an operator command or a timer. */
int evtable_apply(struct batch *b, struct item *it, enum evkind kind);

/* --- turns.c --- */
/** A customer message (Messaging webhook, or seen in the Flex conversation when via_flex). */
int turns_customer(struct batch *b, const char *key, struct conv_rec *c,
		   const struct hist_rec *h, bool via_flex);
int turns_inbound(struct batch *b, struct item *it);
int turns_result_ai(struct batch *b, struct item *it);
int turns_result_send(struct batch *b, struct item *it);

/* --- handoff.c --- */
int handoff_forward(struct batch *b, const char *key, uint64_t seq);
int handoff_escalate(struct batch *b, const char *key, struct conv_rec *c,
		     const char *trigger, const char *reason, const char *summary);
int handoff_back(struct batch *b, const char *key, struct conv_rec *c, const char *path,
		 bool close_flex);
/** Nobody took the handoff in time (or the task was canceled). */
int handoff_no_agent(struct batch *b, const char *key, struct conv_rec *c, const char *why);
/** onMessageAdded in a Flex conversation baton knows (agent or customer). */
int handoff_flex_message(struct batch *b, const char *key, struct conv_rec *c,
			 const struct envelope *env);
int handoff_result(struct batch *b, struct item *it);

/* --- purge.c --- */
/**
 * EV_ADMIN_PURGE for conversation key (record *c): erase it in the batch and
 * acknowledge the item (ST_OK, or ST_BUSY while a Flex handoff of it is still
 * running: nothing is changed then). *c is not written back: the record is gone.
 */
int purge_conversation(struct batch *b, struct item *it, const char *key,
		       const struct conv_rec *c);

/* --- voice.c --- */
/** Store a worker's transcripts (envelope "trs" JSON; NULL = none) as their turns' text. */
int voice_store_transcripts(struct batch *b, const char *conv, const char *json);

/* --- outbox.c --- */
/** Record that the 24 h window blocked an outbound message. */
int outbox_window_closed(struct batch *b, const char *key, struct conv_rec *c, const char *why);
/** Queue text for the customer (split, or the template outside the window, or nothing).
 *  from_ai marks an AI answer: an escalation cancels those not yet sent.
 *  job: the job whose result this is, for the log (0 = none). */
int outbox_queue(struct batch *b, const char *key, struct conv_rec *c, const char *text,
		 uint64_t hseq, bool from_ai, uint64_t job);

/* --- jobs.c --- */
/** Send every job dispatch can give out now to its worker over sock. */
void jobs_dispatch(struct rctx *x, void *sock);
/** Put every unfinished job of a previous run back into dispatch. 0 or -1 (logged). */
int jobs_recover(struct rctx *x);
/** The same for the jobs in the store that dispatch does not know (a batch
 *  committed whose answer was lost). 0 or -1 (logged). */
int jobs_reconcile(struct rctx *x);

#endif
