/* reader — the console's shared read-only view of the state; see reader.h. */
#include "reader.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "access.h"
#include "clock.h"
#include "log.h"
#include "xalloc.h"

/* With PostgreSQL the cache catches up at most this often (the page polls every 2 s). */
#define READER_REFRESH_MS 500

struct reader {
	const struct config *cfg;
	pthread_rwlock_t lock; /* shared: a read; exclusive: open, resize, refresh */
	struct access *acc;
	uint64_t refreshed;    /* mono ms */
	bool failed_logged;
};

struct reader *reader_new(const struct config *cfg)
{
	struct reader *rd = xcalloc(1, sizeof(*rd));
	rd->cfg = cfg;
	pthread_rwlock_init(&rd->lock, NULL);
	return rd;
}

void reader_free(struct reader *rd)
{
	if (!rd)
		return;
	access_close(rd->acc);
	pthread_rwlock_destroy(&rd->lock);
	free(rd);
}

/* Under the exclusive lock: open the state if it exists, adopt a grown map,
 * or catch up with the database. */
static void reader_prepare(struct reader *rd, bool resized)
{
	const char *why = NULL;
	if (!rd->acc) {
		if (rd->cfg->state_backend == CONFIG_BACKEND_LMDB) {
			char *path = xasprintf("%s/data.mdb", rd->cfg->state_dir);
			bool exists = access(path, R_OK) == 0;
			free(path);
			if (!exists)
				return;
		}
		if (!(rd->acc = access_open(rd->cfg, "console", &why))) {
			if (!rd->failed_logged)
				log_warn("console: cannot open the state: %s", why);
			rd->failed_logged = true;
			return;
		}
		rd->failed_logged = false;
		rd->refreshed = clock_mono_ms();
	} else if (resized && mdb_env_set_mapsize(access_store(rd->acc)->env, 0) != 0) {
		log_warn("console: cannot adopt the router's larger map; reopening the state");
		access_close(rd->acc);
		rd->acc = NULL;
	} else if (!resized && rd->cfg->state_backend == CONFIG_BACKEND_POSTGRES) {
		access_refresh(rd->acc);
		rd->refreshed = clock_mono_ms();
	}
}

static bool reader_stale(const struct reader *rd)
{
	return rd->cfg->state_backend == CONFIG_BACKEND_POSTGRES &&
	       clock_mono_ms() - rd->refreshed >= READER_REFRESH_MS;
}

int reader_begin(struct reader *rd, MDB_txn **txn, struct store **st)
{
	bool resized = false;
	*txn = NULL;
	for (int attempt = 0; attempt < 3; attempt++) {
		pthread_rwlock_rdlock(&rd->lock);
		if (rd->acc && (attempt || !reader_stale(rd))) {
			struct store *s = access_store(rd->acc);
			int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
			if (rc == 0) {
				*st = s;
				return 0; /* the shared lock is held until reader_end */
			}
			*txn = NULL;
			resized = rc == MDB_MAP_RESIZED;
			if (!resized)
				log_warn("console: cannot read the state: %s", mdb_strerror(rc));
		}
		pthread_rwlock_unlock(&rd->lock);
		pthread_rwlock_wrlock(&rd->lock);
		/* Another thread may have done it meanwhile. */
		if (!rd->acc || resized || reader_stale(rd))
			reader_prepare(rd, resized);
		pthread_rwlock_unlock(&rd->lock);
		resized = false;
	}
	return -1;
}

void reader_end(struct reader *rd, MDB_txn *txn)
{
	if (!txn)
		return;
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&rd->lock);
}
