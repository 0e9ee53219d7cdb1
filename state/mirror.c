/*
 * mirror — an LMDB cache of PostgreSQL's rows; see mirror.h.
 *
 * Changes are applied in LMDB transactions of a few thousand rows, each
 * ending at a whole revision with the cache's revision recorded in it, so
 * a cache stopped anywhere is at some revision and goes on from there. A
 * reload first marks the cache empty (revision 0), so one interrupted is
 * started over.
 */
#include "mirror.h"

#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "log.h"

#define MIRROR_REV "mirror_rev"
#define MIRROR_CLUSTER "mirror_cluster"
/* Rows per changes query and per LMDB transaction of a reload. */
#define MIRROR_BATCH 20000

static MDB_val mirror_key(const char *name)
{
	MDB_val k = { .mv_size = strlen(name), .mv_data = (void *)name };
	return k;
}

int mirror_state(struct store *st, MDB_txn *txn, struct mirror_state *out)
{
	MDB_val k = mirror_key(MIRROR_REV), v;
	memset(out, 0, sizeof(*out));
	if (!st->local)
		return 0;
	int rc = mdb_get(txn, st->local, &k, &v);
	if (rc == 0 && v.mv_size == 8)
		out->rev = kv_from_be64(v.mv_data);
	else if (rc && rc != MDB_NOTFOUND)
		return rc;
	k = mirror_key(MIRROR_CLUSTER);
	rc = mdb_get(txn, st->local, &k, &v);
	if (rc == 0 && v.mv_size < sizeof(out->cluster)) {
		memcpy(out->cluster, v.mv_data, v.mv_size);
		out->cluster[v.mv_size] = '\0';
	} else if (rc && rc != MDB_NOTFOUND) {
		return rc;
	}
	return 0;
}

int mirror_mark(struct store *st, MDB_txn *txn, uint64_t rev, const char *cluster)
{
	unsigned char b[8];
	MDB_val k = mirror_key(MIRROR_REV), v = { .mv_size = 8, .mv_data = b };
	kv_be64(b, rev);
	int rc = mdb_put(txn, st->local, &k, &v, 0);
	if (rc)
		return rc;
	k = mirror_key(MIRROR_CLUSTER);
	v.mv_size = strlen(cluster);
	v.mv_data = (void *)cluster;
	return mdb_put(txn, st->local, &k, &v, 0);
}

struct mirror_apply {
	struct store *st;
	MDB_txn *txn;
	bool reload; /* commit every MIRROR_BATCH rows: a reload's dirty pages stay bounded */
	int rc;
	size_t rows;
};

/* One row into the cache: a put, or a delete (absent already is fine). */
static int mirror_row(void *arg, uint8_t db, const void *key, size_t klen, const void *val,
		      size_t vlen, uint64_t rev)
{
	struct mirror_apply *a = arg;
	MDB_dbi dbi = db > 0 && db < STORE_DB_COUNT ? store_dbi(a->st, (enum store_db)db) : 0;
	(void)rev;
	if (!dbi) {
		log_warn("postgres: a row of unknown database %u ignored", (unsigned)db);
		return 0;
	}
	MDB_val k = { .mv_size = klen, .mv_data = (void *)key };
	if (val) {
		MDB_val v = { .mv_size = vlen, .mv_data = (void *)val };
		a->rc = mdb_put(a->txn, dbi, &k, &v, 0);
	} else {
		a->rc = mdb_del(a->txn, dbi, &k, NULL);
		if (a->rc == MDB_NOTFOUND)
			a->rc = 0;
	}
	a->rows++;
	if (a->rc == 0 && a->reload && a->rows % MIRROR_BATCH == 0) {
		if ((a->rc = mdb_txn_commit(a->txn)) == 0)
			a->rc = mdb_txn_begin(a->st->env, NULL, 0, &a->txn);
		else
			a->txn = NULL;
	}
	return a->rc != 0;
}

/* Everything again, from one snapshot. */
static int mirror_reload(struct store *st, struct pg *p, const char *cluster, uint64_t *rev)
{
	struct mirror_apply a = { .st = st, .reload = true };
	int rc = mdb_txn_begin(st->env, NULL, 0, &a.txn);
	for (int id = STORE_DB_CONV; rc == 0 && id < STORE_DB_COUNT; id++) {
		MDB_dbi dbi = store_dbi(st, (enum store_db)id);
		if (dbi)
			rc = mdb_drop(a.txn, dbi, 0);
	}
	if (rc == 0)
		rc = mirror_mark(st, a.txn, 0, "");
	if (rc == 0)
		rc = mdb_txn_commit(a.txn);
	else
		mdb_txn_abort(a.txn);
	a.txn = NULL;
	if (rc || (rc = mdb_txn_begin(st->env, NULL, 0, &a.txn)))
		goto fail;
	if (pg_snapshot(p, mirror_row, &a, rev) < 0) {
		rc = a.rc ? a.rc : -1;
		goto fail;
	}
	if (!a.txn)
		goto fail;
	if ((rc = mirror_mark(st, a.txn, *rev, cluster)) || (rc = mdb_txn_commit(a.txn))) {
		a.txn = NULL;
		goto fail;
	}
	log_notice("postgres: cache reloaded: %zu rows at revision %llu", a.rows,
		   (unsigned long long)*rev);
	return 0;
fail:
	if (a.txn)
		mdb_txn_abort(a.txn);
	log_warn("postgres: cache reload failed%s%s", rc > 0 || rc < -1 ? ": " : "",
		 rc > 0 || rc < -1 ? mdb_strerror(rc) : "");
	return -1;
}

int mirror_sync(struct store *st, struct pg *p, uint64_t *rev, bool *reloaded)
{
	struct pg_head h;
	struct mirror_state ms;
	MDB_txn *txn = NULL;
	int rc;

	*reloaded = false;
	if (pg_head(p, &h) < 0)
		return -1;
	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)) == 0) {
		rc = mirror_state(st, txn, &ms);
		mdb_txn_abort(txn);
	}
	if (rc) {
		log_warn("postgres: cannot read the cache's revision: %s", mdb_strerror(rc));
		return -1;
	}
	/* Never filled (a reload marks the cache with the database's id only when
	 * it is done; revision 0 is a database nobody wrote yet), another
	 * database, or older than what deletes are kept for. */
	if (!ms.cluster[0] || strcmp(ms.cluster, h.cluster) || ms.rev < h.pruned_rev ||
	    ms.rev > h.rev) {
		*reloaded = true;
		return mirror_reload(st, p, h.cluster, rev);
	}
	for (;;) {
		struct mirror_apply a = { .st = st };
		size_t n = 0;
		uint64_t last = ms.rev;
		if ((rc = mdb_txn_begin(st->env, NULL, 0, &a.txn)))
			break;
		if (pg_changes(p, ms.rev, MIRROR_BATCH, mirror_row, &a, &n, &last) < 0) {
			mdb_txn_abort(a.txn);
			return -1;
		}
		if (n == 0) {
			mdb_txn_abort(a.txn);
			break;
		}
		if ((rc = mirror_mark(st, a.txn, last, h.cluster)) || (rc = mdb_txn_commit(a.txn)))
			break;
		ms.rev = last;
	}
	if (rc) {
		log_warn("postgres: cannot update the cache: %s", mdb_strerror(rc));
		return -1;
	}
	*rev = ms.rev;
	return 0;
}
