/*
 * journal — the writes of one transaction, kept so that another store can
 * be given the same change: with state.backend = postgres the router's
 * LMDB is a cache and every batch's writes go to PostgreSQL before it
 * commits (pg.h). The store records every put and delete here while a
 * journal is attached (store.h); nothing else writes to it.
 *
 * Keys and values are copied. journal_compact keeps the last write of each
 * (database, key), so the journal says what the transaction changed, not
 * how. Memory is the journal's; journal_clear forgets the entries and keeps
 * the buffers for the next transaction.
 */
#ifndef BATON_JOURNAL_H
#define BATON_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal_entry {
	uint8_t db;      /* the store's database id (STORE_DB_*) */
	bool del;        /* a delete: no value */
	size_t seq;      /* order of the write in the transaction */
	unsigned char *key, *val;
	size_t klen, vlen;
};

struct journal {
	struct journal_entry *e;
	size_t n, cap;
};

void journal_put(struct journal *j, uint8_t db, const void *key, size_t klen, const void *val,
		 size_t vlen);
void journal_del(struct journal *j, uint8_t db, const void *key, size_t klen);
/** Keep the last write of each (db, key), ordered by db then key. */
void journal_compact(struct journal *j);
void journal_clear(struct journal *j);
void journal_release(struct journal *j);

#endif
