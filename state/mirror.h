/*
 * mirror — an LMDB store kept equal to the rows in PostgreSQL (pg.h):
 * with state.backend = postgres every process's LMDB is such a cache. The
 * active router writes PostgreSQL first and its cache in the same step
 * (mirror_mark in its batch); a standby router, batonctl and the console
 * catch up with mirror_sync: the rows written since the revision the cache
 * is at, or everything again when the cache is too old (deletes pruned
 * since), was never filled, or came from another database.
 *
 * Where the cache is (revision, database id) lives in the store's local
 * database, which is never journaled nor copied.
 */
#ifndef BATON_MIRROR_H
#define BATON_MIRROR_H

#include <stdbool.h>
#include <stdint.h>

#include "pg.h"
#include "store.h"

struct mirror_state {
	uint64_t rev;                          /* 0: never filled */
	char cluster[PG_CLUSTER_ID_MAX + 1];   /* the database it is a copy of */
};

/** Where the cache is (zeroes for a new one). 0 or an LMDB error. */
int mirror_state(struct store *st, MDB_txn *txn, struct mirror_state *out);
/** Record in txn that the cache is at rev of cluster (the router, in its batch). */
int mirror_mark(struct store *st, MDB_txn *txn, uint64_t rev, const char *cluster);

/**
 * Bring the cache up to the database's last revision. 0 with *rev the
 * revision reached (and *reloaded when everything was read again), or -1
 * (logged): the cache is then as it was, or marked for a reload.
 */
int mirror_sync(struct store *st, struct pg *p, uint64_t *rev, bool *reloaded);

#endif
