/* access — opening baton's state for reading, from either backend; see access.h. */
#include "access.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "mirror.h"
#include "pg.h"
#include "xalloc.h"

struct access {
	struct store st;
	struct pg *pg; /* postgres only */
};

struct access *access_open(const struct config *cfg, const char *who, const char **why)
{
	struct access *a = xcalloc(1, sizeof(*a));
	*why = NULL;
	if (cfg->state_backend != CONFIG_BACKEND_POSTGRES) {
		if (store_open_readonly(&a->st, cfg->state_dir) < 0) {
			*why = "the router's state is not there (yet): check state.dir";
			goto fail;
		}
		return a;
	}
	char *dir = xasprintf("%s/cache-%s", cfg->state_dir, who);
	if (mkdir(cfg->state_dir, 0700) < 0 && errno != EEXIST)
		log_warn("cannot create %s: %s", cfg->state_dir, strerror(errno));
	int rc = store_open(&a->st, dir, cfg->lmdb_map_size_mb, false);
	free(dir);
	if (rc < 0) {
		*why = "cannot open the local cache of the database under state.dir";
		goto fail;
	}
	a->pg = pg_new(cfg->postgres_dsn, cfg->postgres_password, who);
	if (access_refresh(a) < 0) {
		*why = "cannot read the state from PostgreSQL (postgres.dsn)";
		goto fail;
	}
	return a;
fail:
	access_close(a);
	return NULL;
}

struct store *access_store(struct access *a)
{
	return &a->st;
}

int access_refresh(struct access *a)
{
	uint64_t rev;
	bool reloaded;
	return a->pg ? mirror_sync(&a->st, a->pg, &rev, &reloaded) : 0;
}

void access_close(struct access *a)
{
	if (!a)
		return;
	store_close(&a->st);
	pg_free(a->pg);
	free(a);
}
