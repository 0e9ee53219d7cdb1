/*
 * reader — baton-console's read-only view of the state (access.h), shared
 * by every request thread.
 *
 * The state is opened the first time it exists (the router creates it);
 * each request reads in an LMDB transaction of its own (readers never
 * block the writer nor each other). When the router has grown the map,
 * the next read adopts the new size, which LMDB allows only while this
 * process has no transaction open; with PostgreSQL the cache catches up
 * with the database at most every READER_REFRESH_MS the same way: reads
 * hold a shared lock, the resize and the catching up an exclusive one.
 */
#ifndef BATON_READER_H
#define BATON_READER_H

#include <lmdb.h>

#include "config.h"
#include "store.h"

struct reader;

struct reader *reader_new(const struct config *cfg);
void reader_free(struct reader *rd);

/**
 * Begin a read: 0 with *txn and *st (valid until reader_end), or -1 when
 * the state is not there yet or cannot be read (logged once per cause).
 */
int reader_begin(struct reader *rd, MDB_txn **txn, struct store **st);
/** End the read begun by reader_begin (txn may be NULL after a failed begin). */
void reader_end(struct reader *rd, MDB_txn *txn);

#endif
