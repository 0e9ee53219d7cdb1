/* reader — the console's shared read-only view of the state; see reader.h. */
#include "reader.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "xalloc.h"

struct reader {
	char *dir;
	pthread_rwlock_t lock; /* shared: a read; exclusive: open or resize */
	struct store st;
	bool open;
};

struct reader *reader_new(const char *state_dir)
{
	struct reader *rd = xcalloc(1, sizeof(*rd));
	rd->dir = xstrdup(state_dir);
	pthread_rwlock_init(&rd->lock, NULL);
	return rd;
}

void reader_free(struct reader *rd)
{
	if (!rd)
		return;
	if (rd->open)
		store_close(&rd->st);
	pthread_rwlock_destroy(&rd->lock);
	free(rd->dir);
	free(rd);
}

/* Under the exclusive lock: open the state if it exists, or adopt a grown map. */
static void reader_prepare(struct reader *rd, bool resized)
{
	if (!rd->open) {
		char *path = xasprintf("%s/data.mdb", rd->dir);
		bool exists = access(path, R_OK) == 0;
		free(path);
		rd->open = exists && store_open_readonly(&rd->st, rd->dir) == 0;
	} else if (resized && mdb_env_set_mapsize(rd->st.env, 0) != 0) {
		log_warn("console: cannot adopt the router's larger map; reopening the state");
		store_close(&rd->st);
		rd->open = store_open_readonly(&rd->st, rd->dir) == 0;
	}
}

int reader_begin(struct reader *rd, MDB_txn **txn, struct store **st)
{
	bool resized = false;
	*txn = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		pthread_rwlock_rdlock(&rd->lock);
		if (rd->open) {
			int rc = mdb_txn_begin(rd->st.env, NULL, MDB_RDONLY, txn);
			if (rc == 0) {
				*st = &rd->st;
				return 0; /* the shared lock is held until reader_end */
			}
			*txn = NULL;
			resized = rc == MDB_MAP_RESIZED;
			if (!resized)
				log_warn("console: cannot read the state: %s", mdb_strerror(rc));
		}
		pthread_rwlock_unlock(&rd->lock);
		pthread_rwlock_wrlock(&rd->lock);
		reader_prepare(rd, resized);
		pthread_rwlock_unlock(&rd->lock);
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
