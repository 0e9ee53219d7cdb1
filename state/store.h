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
 *   meta   "next_job"       -> be64; "count_ai", "count_escalating",
 *          "count_human" -> be64 (conversations by mode, with the recent
 *          index); "recent_index" -> "1" once the index is built
 *   idx    "ch:CH..." / "wt:WT..." / "sm:SM..." -> conversation key (to find
 *          the conversation of a Flex conversation, task or sent message)
 *   tl     key \0 be64(n)   -> struct tl_rec     (lifecycle timeline)
 *   modes  key -> ""                              (conversations not in ai mode,
 *          for the timers: small even when conv is huge)
 *   audit  be64(wall ms) -> struct audit_rec      (one per purge: when, the masked
 *          address and how many records went; never the content)
 *   recent mode(1 byte) be64(last activity) key -> ""   (every conversation by
 *          mode and last activity, for pages newest first without a scan;
 *          the record keeps the entry it is under, so a write moves it)
 *
 * The conversation key is "<customer address>|<business address>" (convkey.h).
 * Upgrade note: a decoder ignores unknown keys and starts from a zeroed
 * record, so new optional fields keep STORE_VERSION; anything else bumps it
 * and needs a migration. A field at its zero value (0, false, NULL) is not
 * written: absent has always read as zero.
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

/* Each named database's id where another store holds a copy (pg.h): fixed,
 * part of the PostgreSQL schema. */
enum store_db {
	STORE_DB_CONV = 1, STORE_DB_HIST, STORE_DB_PEND, STORE_DB_SEEN, STORE_DB_JOBS,
	STORE_DB_META, STORE_DB_IDX, STORE_DB_TL, STORE_DB_MODES, STORE_DB_AUDIT,
	STORE_DB_RECENT, STORE_DB_COUNT
};

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
	uint64_t queued_until;  /* wall ms: the handoff waits for business hours until then */
	char *esc_trigger, *esc_reason;
	char *flex_ch, *flex_mb, *flex_kd, *flex_uo, *flex_wt;
	/* human stretch */
	uint64_t accepted_at;    /* reservation accepted (TaskRouter), 0 = not yet */
	uint64_t first_agent_at; /* first agent message of this stretch */
	uint64_t last_activity;  /* last message either way while not in ai mode */
	uint64_t no_agent_done;  /* no-agent policy applied for this handoff */
	uint64_t window_closed;  /* outbound blocked by the 24 h window (time), 0 = open */
	uint64_t tl_seq;         /* timeline entries */
	char *agent;             /* identity of the agent handling it */
	/* Where the record is in the recent index (stored with it): kept by
	 * store_conv_put, never set by callers. */
	bool ix_on;
	enum conv_mode ix_mode;
	uint64_t ix_at;
	bool ix_known; /* read from the store (a new record is not) */
};

struct tl_rec {
	uint64_t ts;
	char *event;  /* escalated, task_created, accepted, first_agent_reply, handed_back, ... */
	char *detail;
};

struct hist_rec {
	enum env_role role;
	char *text;
	uint64_t ts;
	char *sid;  /* inbound MessageSid (customer) */
	char *msid; /* outbound Message SIDs returned by Twilio (ai), comma-separated */
	int64_t nmedia;
	char *media; /* what the message carried beyond text: media.h's JSON, NULL = none */
	bool transcript; /* text is the transcript of the turn's voice note */
	bool escalate;
	char *who;  /* agent identity (agent turns) */
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
	char *tmpl, *vars;      /* SEND outside the 24 h window: template and its variables */
	char *ch, *kd, *uo;     /* FLEX close: what to close */
	char *op;        /* FLEX: "handoff" or "forward" */
	char *trigger, *reason, *summary; /* FLEX handoff */
	int64_t attempts;
	uint64_t not_before; /* wall ms: not to start before (a handoff queued until opening), 0 = now */
	char *exclude;   /* SEND: SIDs a reconciliation took for this message wrongly (comma-separated) */
};

/* What a purge erased (counts only): the audit trail of the right to erasure. */
struct audit_rec {
	uint64_t ts;
	char *conv;    /* masked conversation key: never the address in clear */
	char *mode;    /* mode the conversation was in */
	char *reason;  /* the operator's reference for the request */
	uint64_t hist, pend, tl, idx, jobs;
	bool flex_closed; /* a Flex close was queued for its live agent conversation */
};

/* Records store_conv_erase() deleted, by database. */
struct store_erased {
	uint64_t hist, pend, tl, idx, modes, conv;
};

struct journal;

struct store {
	MDB_env *env;
	MDB_dbi conv, hist, pend, seen, jobs, meta, idx, tl, modes;
	MDB_dbi audit;  /* 0 when a read-only open finds none (state of an older router) */
	MDB_dbi recent; /* 0 when a read-only open finds none (state of an older router) */
	/* This process's own bookkeeping when the store is a cache of PostgreSQL
	 * (mirror.h): never journaled, never copied. 0 when absent. */
	MDB_dbi local;
	/* While set, every write is also recorded here (journal.h). */
	struct journal *journal;
};

/** The database of id (STORE_DB_*), or 0 when there is none. */
MDB_dbi store_dbi(const struct store *st, enum store_db id);

/** Open the environment and databases under dir, building the recent index
 *  when the state comes from a router without it. 0 or -1 (logged). */
int store_open(struct store *st, const char *dir, long map_mb, bool sync);
/** Open an existing environment read-only (tools reading while the router runs). */
int store_open_readonly(struct store *st, const char *dir);
void store_close(struct store *st);

const char *job_kind_name(enum job_kind k);
const char *conv_mode_name(enum conv_mode m);

void conv_rec_release(struct conv_rec *c);
/** The latest of the conversation's times (created, updated, last message, activity). */
uint64_t conv_last_activity(const struct conv_rec *c);
void hist_rec_release(struct hist_rec *h);
void job_rec_release(struct job_rec *j);
void tl_rec_release(struct tl_rec *t);
void audit_rec_release(struct audit_rec *a);

/** Customer and business of conversation key (from c's fields, else split
 * from the key: records of old routers lack them); caller frees both. */
void store_conv_parties(const char *key, const struct conv_rec *c, char **customer,
			char **business);

/** MDB_NOTFOUND when absent. */
int store_conv_get(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *out);
/** Write c under key and move its recent index entry (c's ix_* follow). */
int store_conv_put(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c);

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

/** Read pending turn n without taking it (tools). MDB_NOTFOUND when absent. */
int store_pend_get(struct store *st, MDB_txn *txn, const char *key, uint64_t n,
		   struct hist_rec *out);

/** 0 when sid was seen before, MDB_NOTFOUND when new. */
int store_seen_get(struct store *st, MDB_txn *txn, const char *sid);
int store_seen_put(struct store *st, MDB_txn *txn, const char *sid, uint64_t ts);
/**
 * Forget MessageSids seen before `before` (wall ms), walking at most max
 * entries from *cursor_key (a malloc'd key, NULL = the start). *cursor_key
 * becomes where the next call goes on, NULL after the last entry. *deleted
 * counts what went. Twilio retries a webhook within minutes, so dedupe
 * entries need not live for ever.
 */
int store_seen_prune(struct store *st, MDB_txn *txn, char **cursor_key, size_t max,
		     uint64_t before, size_t *deleted);

/** Store j under a new id (*id). */
int store_job_add(struct store *st, MDB_txn *txn, const struct job_rec *j, uint64_t *id);
int store_job_put(struct store *st, MDB_txn *txn, uint64_t id, const struct job_rec *j);
int store_job_get(struct store *st, MDB_txn *txn, uint64_t id, struct job_rec *out);
int store_job_del(struct store *st, MDB_txn *txn, uint64_t id);

/** Index: kind is "ch", "wt" or "sm". MDB_NOTFOUND when absent; *key is the caller's. */
int store_idx_put(struct store *st, MDB_txn *txn, const char *kind, const char *id,
		  const char *key);
int store_idx_get(struct store *st, MDB_txn *txn, const char *kind, const char *id, char **key);

/** Append a timeline entry (c->tl_seq advances). */
int store_tl_add(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c,
		 const char *event, const char *detail);
int store_tl_get(struct store *st, MDB_txn *txn, const char *key, uint64_t n, struct tl_rec *out);

/** Keep the modes index in step with c->mode (call after changing it). */
int store_modes_sync(struct store *st, MDB_txn *txn, const char *key, const struct conv_rec *c);

/**
 * Erase everything of conversation key except its jobs (the caller's, who
 * knows which are in flight) and the MessageSid dedupe entries (`seen`:
 * a Twilio id and a time, no personal data): history, pending turns,
 * timeline, index entries pointing to it (sm: from the history's sent SIDs,
 * ch:/wt: by a scan of those prefixes, one entry per handoff), its modes
 * entry and the record. *out counts what went.
 */
int store_conv_erase(struct store *st, MDB_txn *txn, const char *key, struct store_erased *out);

/** Append an audit record under be64(a->ts), or the next free millisecond. */
int store_audit_add(struct store *st, MDB_txn *txn, const struct audit_rec *a);
/** Decode an audit record read with a cursor. 0 or MDB_CORRUPTED. */
int store_audit_decode(const MDB_val *val, struct audit_rec *out);

/*
 * The recent index, newest first within one mode. Open positions the walk
 * before (at, key) — strictly older, or the same time and a smaller key —
 * or at the newest entry when key is NULL; next gives one entry (key points
 * into LMDB's page: valid until the transaction ends) or MDB_NOTFOUND at
 * the end of the mode. EINVAL when the state has no recent index.
 */
struct store_recent {
	MDB_cursor *cur;
	enum conv_mode mode;
	MDB_val pending; /* the entry next returns, or mv_data NULL at the end */
};
int store_recent_open(struct store *st, MDB_txn *txn, enum conv_mode mode, uint64_t at,
		      const char *key, struct store_recent *it);
int store_recent_next(struct store_recent *it, uint64_t *at, const char **key, size_t *keylen);
void store_recent_close(struct store_recent *it);
/** Conversations by mode (out[MODE_AI..MODE_HUMAN]), kept with the recent index. */
int store_mode_counts(struct store *st, MDB_txn *txn, uint64_t out[3]);

/** Decode a conversation or job record read with a cursor. 0 or MDB_CORRUPTED. */
int store_conv_decode(const MDB_val *val, struct conv_rec *out);
int store_job_decode(const MDB_val *val, struct job_rec *out);
int store_tl_decode(const MDB_val *val, struct tl_rec *out);

/**
 * Find the conversation of a customer address: the key "address|business"
 * when business is given, else the first conversation of that address.
 * *key is malloc'd. MDB_NOTFOUND when none.
 */
int store_conv_find(struct store *st, MDB_txn *txn, const char *address, const char *business,
		    char **key);

#endif
