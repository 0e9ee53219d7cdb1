/*
 * ctl — batonctl's commands.
 *
 * Reads go straight to LMDB in read-only transactions (safe while the
 * router runs: LMDB readers never block the writer, and a reader sees one
 * committed state from start to end). Changes never write LMDB: they go
 * through ingress's /admin endpoints to the router, with the same effects
 * as the automatic paths.
 *
 *   ctl.c     the shared reads and output helpers, addresses, keygen
 *   show.c    show          list.c    conversations
 *   stats.c   stats         export.c  export
 *   admin.c   handback, escalate, purge (through ingress)
 *   since.c   --since
 * Conversations print as state/convview.h's schema.
 *
 * Exit codes: 0 done, 1 failed (message on stderr), 2 usage or config
 * error, 3 no such conversation.
 */
#ifndef BATON_CTL_H
#define BATON_CTL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <stddef.h>

#include "config.h"
#include "store.h"

struct access;

#define CTL_OK 0
#define CTL_FAIL 1
#define CTL_USAGE 2
#define CTL_NOT_FOUND 3

/** Print mode, Flex SIDs, timeline and transcript of the customer's conversation. */
int ctl_show(const struct config *cfg, const char *address, bool json);
/** Ask the router (via ingress /admin) to hand back or escalate. */
int ctl_admin(const struct config *cfg, const char *what, const char *address,
	      const char *reason);
/**
 * Erase the conversation through the router (ingress /admin/purge). Without
 * yes it asks on a terminal and refuses (CTL_USAGE) without one.
 */
int ctl_purge(const struct config *cfg, const char *address, const char *reason, bool yes);

/* What `conversations` lists. */
struct ctl_list {
	int mode;        /* enum conv_mode, or -1 for all */
	uint64_t since;  /* wall ms: last activity at or after it; 0 = all */
	long limit;      /* 0 = all */
	bool json;
};

/** Conversations by last activity, newest first. */
int ctl_conversations(const struct config *cfg, const struct ctl_list *l);
/** Counts for the operator: modes, escalations, hand-backs, jobs, errors, LMDB. */
int ctl_stats(const struct config *cfg, bool json);
/** The whole conversation for an audit: record, transcript, timeline. */
int ctl_export(const struct config *cfg, const char *address, bool json);

/**
 * --since: a duration back from now ("90s", "30m", "1h", "2d", "1w", or
 * sums like "1h30m") or an ISO-8601 UTC time ("2026-05-01",
 * "2026-05-01T10:00", "2026-05-01 10:00:00Z", with an optional
 * +HH:MM/-HH:MM offset). *out is wall ms. 0, or -1 when s is neither.
 */
int ctl_parse_since(const char *s, uint64_t now_ms, uint64_t *out);

/* --- shared by the commands --- */

/** ISO-8601 UTC of ms ("-" for 0); full keeps the milliseconds, else seconds. */
void ctl_time(uint64_t ms, bool full, char *buf, size_t len);
/** ms as an ISO-8601 JSON string, null for 0. */
json_t *ctl_jtime(uint64_t ms);
/** Print root as indented JSON on stdout. */
void ctl_dump(json_t *root);

/** A read-only view of the state: one read transaction (access.h: LMDB, or
 *  the cache of PostgreSQL). */
struct ctl_read {
	struct access *acc;
	struct store *st; /* access_store(acc) */
	MDB_txn *txn;
};

/** Open the state read-only and begin the read. CTL_OK or CTL_FAIL (reported). */
int ctl_read_begin(const struct config *cfg, struct ctl_read *rd);
void ctl_read_end(struct ctl_read *rd);
/**
 * The conversation key of address ("customer" or "customer|business"):
 * CTL_OK with *key (malloc'd), CTL_NOT_FOUND or CTL_FAIL (both reported).
 */
int ctl_read_find(struct ctl_read *rd, const char *address, char **key);
/**
 * ctl_read_begin, ctl_read_find and the record into *c: CTL_OK with the read
 * open, *key (malloc'd) and *c (conv_rec_release) for the caller to end; else
 * nothing is left open (reported).
 */
int ctl_read_conv(const struct config *cfg, struct ctl_read *rd, const char *address, char **key,
		  struct conv_rec *c);

/** An address as typed (+5511..., 5511..., whatsapp:+5511..., each side of
 *  customer|business) as baton keys it: whatsapp:+5511... Caller frees. */
char *ctl_address(const char *in);
/** A ZeroMQ CURVE key pair (Z85) on stdout, as two lines or JSON. */
int ctl_keygen(bool json);

#endif
