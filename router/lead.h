/*
 * lead — which router is active when the state lives in PostgreSQL
 * (state.backend = postgres). Any number of routers may run; the one that
 * holds the lease (pg.h) is active, the others stand by: they bind
 * nothing, keep their LMDB cache following the database, and take the
 * lease when it expires. Every commit of the active router checks the
 * lease in the same transaction (the fence), so a router that was paused
 * or cut off and lost it can never commit again: it steps down instead.
 * A router that cannot renew for router.lease_ms steps down too.
 *
 * With state.backend = lmdb there is no lead: one router, always active.
 */
#ifndef BATON_LEAD_H
#define BATON_LEAD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "journal.h"
#include "store.h"

struct lead;

/** A lead for this router; waits for the database to take the schema (logged
 *  while it is unreachable). NULL when *stop was set first. */
struct lead *lead_new(const struct config *cfg, struct store *st, volatile sig_atomic_t *stop);
void lead_free(struct lead *l);

/**
 * Stand by until this router holds the lease, the cache at the database's
 * last revision: 1, or 0 when *stop was set first.
 */
int lead_acquire(struct lead *l, volatile sig_atomic_t *stop);
/** The lease's epoch, for logs. */
uint64_t lead_epoch(const struct lead *l);

/**
 * Call every loop turn: renews the lease when due. true while this router
 * may act; false once it has lost the lease or could not renew it for
 * router.lease_ms (it must step down).
 */
bool lead_tick(struct lead *l);
/** Milliseconds until lead_tick has work (for the loop's poll timeout). */
int lead_timeout(const struct lead *l);

/* lead_commit's answers beside 0 (values outside LMDB's error codes). */
#define LEAD_FAILED (-31000)  /* PostgreSQL did not take the batch: nothing was written */
#define LEAD_FENCED (-31001)  /* the lease is another router's: step down */

/**
 * Send the batch's writes (j, compacted here) to PostgreSQL as the next
 * revision and record it in the cache's transaction txn: 0 (commit txn
 * next), or LEAD_FAILED / LEAD_FENCED (abort txn). When the database's
 * answer was lost the batch may have been written: LEAD_FAILED, and the
 * cache catches up before the next batch (lead_catch_up).
 */
int lead_commit(struct lead *l, MDB_txn *txn, struct journal *j);
/** The cache's own commit failed after PostgreSQL took the batch. */
void lead_cache_behind(struct lead *l);
/**
 * Bring the cache up to the database when a commit left it behind: 0 when
 * nothing was needed, 1 when rows came in (the caller re-reads its jobs),
 * -1 when it could not (no batch may run).
 */
int lead_catch_up(struct lead *l);
/** Text for LEAD_* codes (and LMDB's for others). */
const char *lead_strerror(int rc);

#endif
