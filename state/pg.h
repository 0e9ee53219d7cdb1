/*
 * pg — baton's state in PostgreSQL (state.backend = postgres): the schema
 * and its migrations, the active router's lease, a batch's writes, and the
 * rows changed since a revision, for the LMDB caches that read from it
 * (mirror.h). PostgreSQL is the only durable copy; each process's LMDB is
 * a cache of it.
 *
 * Schema (version PG_SCHEMA_VERSION; pg_migrate applies what is missing
 * under an advisory lock, so routers starting together migrate once):
 *   baton_schema  (version int)            the schema's version, one row
 *   baton_cluster (id text, pruned_rev bigint)
 *                 this database's id (a cache notices it was pointed at
 *                 another) and the revision below which deletes are gone
 *   baton_lease   (name text primary key, holder text, epoch bigint,
 *                  expires_at timestamptz, rev bigint)
 *                 the active router ("router"): who holds it, since which
 *                 epoch, until when (the database's clock), and the
 *                 revision of its last commit
 *   baton_kv      (db smallint, k bytea, v bytea, rev bigint,
 *                  primary key (db, k)), index on rev
 *                 every record of state/store.h: db is the store's
 *                 STORE_DB_* id, k and v the LMDB key and value (msgpack
 *                 records, store.h); v null is a delete, kept until pruned
 *                 so that caches see it
 *   baton_fence(holder, epoch, lease_ms, rev)
 *                 raises SQLSTATE BF001 unless holder still holds the lease
 *                 at epoch; renews it and records rev otherwise
 *
 * libpq is loaded (dlopen) when the first connection is made, so a process
 * that never connects never maps it; when it cannot be loaded every call
 * fails like an unreachable database, logged once with the reason.
 *
 * A connection is opened on first use and again after any error; every
 * function returns -1 (logged, with the server's message, never the
 * password) when the database cannot be reached or refuses. Not
 * thread-safe: one struct pg per thread.
 */
#ifndef BATON_PG_H
#define BATON_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"

#define PG_SCHEMA_VERSION 1
#define PG_CLUSTER_ID_MAX 64

struct pg;

/** A client of the database at dsn (libpq connection string; multi-host with
 *  target_session_attrs=read-write allowed); password NULL or "" leaves it to
 *  libpq (PGPASSFILE, ~/.pgpass). Copies its arguments. */
struct pg *pg_new(const char *dsn, const char *password, const char *app);
void pg_free(struct pg *p);
/** Connected now (connecting when needed): 0, or -1 (logged once per outage). */
int pg_ready(struct pg *p);
/** host:port of the connection, for logs ("" when not connected). */
const char *pg_where(const struct pg *p);

/** Create or upgrade the schema. 0 or -1. */
int pg_migrate(struct pg *p);

struct pg_head {
	char cluster[PG_CLUSTER_ID_MAX + 1];
	uint64_t rev;        /* the last committed revision */
	uint64_t pruned_rev; /* deletes below it are gone: older caches reload */
	uint64_t epoch;
	char holder[128];
	bool live;           /* the lease has not expired */
};
/** The database's id, revision and lease. 0 or -1. */
int pg_head(struct pg *p, struct pg_head *h);

/**
 * Take the router's lease when it is free or expired: 1 with *epoch (the new
 * epoch) and *rev (the last committed revision), 0 when another holds it
 * (h says who), -1 on error.
 */
int pg_lease_take(struct pg *p, const char *holder, uint64_t lease_ms, uint64_t *epoch,
		  uint64_t *rev, struct pg_head *h);
/** Extend the lease: 1 held, 0 lost (another epoch), -1 on error. */
int pg_lease_renew(struct pg *p, const char *holder, uint64_t epoch, uint64_t lease_ms);

enum pg_commit {
	PG_COMMITTED,
	PG_FENCED,   /* the lease is another's: nothing was written */
	PG_FAILED,   /* not written (the database refused, or could not be reached) */
	PG_UNKNOWN,  /* the connection broke at the commit: written or not */
};
/**
 * Write j (compacted) as revision rev in one transaction that first checks
 * and renews the lease (baton_fence): the rows and the lease's rev, or
 * nothing.
 */
enum pg_commit pg_commit(struct pg *p, const char *holder, uint64_t epoch, uint64_t lease_ms,
			 uint64_t rev, const struct journal *j);

/* One row for a cache: val NULL for a delete. Return 0 to go on, else stop. */
typedef int (*pg_row_fn)(void *arg, uint8_t db, const void *key, size_t klen, const void *val,
			 size_t vlen, uint64_t rev);
/**
 * The rows written after revision after, in revision order, at most limit
 * (whole revisions only, so a cache never stops inside one): 0 with *n rows
 * given to fn and *last the last revision given (after when none), or -1.
 */
int pg_changes(struct pg *p, uint64_t after, size_t limit, pg_row_fn fn, void *arg, size_t *n,
	       uint64_t *last);
/** Every live row, from one snapshot, and the revision it is at: 0 or -1. */
int pg_snapshot(struct pg *p, pg_row_fn fn, void *arg, uint64_t *rev);
/** Forget deletes older than revision below (the leader, now and then). 0 or -1. */
int pg_prune(struct pg *p, uint64_t below);

#endif
