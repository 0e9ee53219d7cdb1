/*
 * store — the router's LMDB schema and the records in it.
 *
 * Named databases (record format version STORE_VERSION, msgpack maps):
 *   conv   conversation key -> struct conv_rec
 *   hist   key \0 be64(seq) -> struct hist_rec   (seq dense from 1)
 *   pend   key \0 be64(n)   -> struct hist_rec   (customer turns waiting
 *          for the AI job in flight; moved to hist in arrival order)
 *   seen   MessageSid       -> be64(wall ms)     (webhook dedupe)
 *   jobs   be64(job id)     -> struct job_rec    (work not yet finished)
 *   meta   "next_job"       -> be64
 *
 * The conversation key is "<customer address>|<business address>".
 * Upgrade note: a decoder ignores unknown keys, so new optional fields
 * keep STORE_VERSION; anything else bumps it and needs a migration.
 *
 * Every function takes the caller's transaction and returns 0, or an
 * LMDB error code (MDB_NOTFOUND where documented, others are fatal for
 * the transaction). Records returned are owned by the caller (*_release).
 */
#ifndef BATON_STORE_H
#define BATON_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "envelope.h"

#define STORE_VERSION 1
/* LMDB keys are at most 511 bytes; addresses are far shorter. */
#define STORE_KEY_MAX 400

enum conv_mode { MODE_AI = 0, MODE_ESCALATING = 1, MODE_HUMAN = 2 };

struct conv_rec {
	enum conv_mode mode;
	uint64_t seq;      /* last hist seq */
	uint64_t pend_in;  /* last pend number written */
	uint64_t pend_out; /* last pend number moved to hist */
	uint64_t ai_job;   /* AI job in flight, 0 = none */
	uint64_t created, updated, last_in;
	uint64_t turns;    /* customer turns received */
	int64_t err_code;  /* last Twilio error code seen, 0 = none */
	char *customer, *business, *name, *err;
	/* escalation and Flex */
	uint64_t handoff_job;   /* Flex handoff job in flight, 0 = none */
	uint64_t escalations;   /* times escalated */
	uint64_t handoff_failures;
	uint64_t esc_at;        /* wall ms of the last escalation */
	char *esc_trigger, *esc_reason;
	char *flex_ch, *flex_mb, *flex_kd, *flex_uo, *flex_wt;
};

struct hist_rec {
	enum env_role role;
	char *text;
	uint64_t ts;
	char *sid;  /* inbound MessageSid (customer) */
	char *msid; /* outbound Message SIDs returned by Twilio (ai), comma-separated */
	int64_t nmedia;
	bool escalate;
};

enum job_kind { JOB_AI = 0, JOB_SEND = 1, JOB_FLEX = 2, JOB_KINDS = 3 };

struct job_rec {
	enum job_kind kind;
	char *conv;
	uint64_t created;
	uint64_t upto;   /* AI: hist seq of the customer turn to answer; FLEX handoff: last seq */
	uint64_t hfrom;  /* FLEX handoff: first hist seq the agent sees */
	uint64_t hseq;   /* SEND: hist seq of the turn this sends; FLEX forward: turn to forward */
	char *to, *from, *body; /* SEND */
	char *op;        /* FLEX: "handoff" or "forward" */
	char *trigger, *reason, *summary; /* FLEX handoff */
	int64_t attempts;
};

struct store {
	MDB_env *env;
	MDB_dbi conv, hist, pend, seen, jobs, meta;
};

/** Open the environment and databases under dir. 0 or -1 (logged). */
int store_open(struct store *st, const char *dir, long map_mb, bool sync);
void store_close(struct store *st);

const char *job_kind_name(enum job_kind k);
const char *conv_mode_name(enum conv_mode m);

void conv_rec_release(struct conv_rec *c);
void hist_rec_release(struct hist_rec *h);
void job_rec_release(struct job_rec *j);

/** Conversation key for customer and business address; caller frees. */
char *store_conv_key(const char *customer, const char *business);

/** MDB_NOTFOUND when absent. */
int store_conv_get(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *out);
int store_conv_put(struct store *st, MDB_txn *txn, const char *key, const struct conv_rec *c);

int store_hist_get(struct store *st, MDB_txn *txn, const char *key, uint64_t seq,
		   struct hist_rec *out);
int store_hist_put(struct store *st, MDB_txn *txn, const char *key, uint64_t seq,
		   const struct hist_rec *h);
/** Append h as seq = ++c->seq. */
int store_hist_append(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c,
		      const struct hist_rec *h);

/** Queue a customer turn behind the AI job in flight (c->pend_in advances). */
int store_pend_push(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c,
		    const struct hist_rec *h);
/** Take the oldest pending turn (c->pend_out advances). MDB_NOTFOUND when none. */
int store_pend_pop(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c,
		   struct hist_rec *out);

/** 0 when sid was seen before, MDB_NOTFOUND when new. */
int store_seen_get(struct store *st, MDB_txn *txn, const char *sid);
int store_seen_put(struct store *st, MDB_txn *txn, const char *sid, uint64_t ts);

/** Store j under a new id (*id). */
int store_job_add(struct store *st, MDB_txn *txn, const struct job_rec *j, uint64_t *id);
int store_job_put(struct store *st, MDB_txn *txn, uint64_t id, const struct job_rec *j);
int store_job_get(struct store *st, MDB_txn *txn, uint64_t id, struct job_rec *out);
int store_job_del(struct store *st, MDB_txn *txn, uint64_t id);

#endif
