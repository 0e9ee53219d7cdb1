/* kv — LMDB environment helpers; see kv.h. */
#include "kv.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

int kv_open(MDB_env **out, const char *dir, size_t map_size_mb, bool sync, unsigned maxdbs)
{
	MDB_env *env = NULL;
	int rc;

	*out = NULL;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return log_err("cannot create state directory '%s': %s", dir, strerror(errno));
	/* Customer data and the ipc sockets live here: ours alone, whatever
	 * the umask or whoever made the directory. */
	struct stat st;
	if (stat(dir, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 077)) {
		if (chmod(dir, 0700) == 0)
			log_notice("state directory '%s' was open to others (mode %04o): now 0700", dir,
				   (unsigned)(st.st_mode & 07777));
		else
			log_warn("state directory '%s' is open to others (mode %04o): %s", dir,
				 (unsigned)(st.st_mode & 07777), strerror(errno));
	}
	if ((rc = mdb_env_create(&env)) != 0)
		goto fail;
	if ((rc = mdb_env_set_maxdbs(env, maxdbs)) != 0)
		goto fail;
	if ((rc = mdb_env_set_mapsize(env, map_size_mb * 1024 * 1024)) != 0)
		goto fail;
	/* NOTLS: read transactions are not tied to threads; NOSYNC only when asked. */
	unsigned flags = MDB_NOTLS | (sync ? 0 : MDB_NOSYNC);
	if ((rc = mdb_env_open(env, dir, flags, 0600)) != 0)
		goto fail;
	*out = env;
	return 0;
fail:
	if (env)
		mdb_env_close(env);
	return log_err("cannot open LMDB environment '%s': %s", dir, mdb_strerror(rc));
}

void kv_close(MDB_env **env)
{
	if (env && *env) {
		mdb_env_close(*env);
		*env = NULL;
	}
}

int kv_dbi(MDB_txn *txn, const char *name, MDB_dbi *dbi)
{
	return mdb_dbi_open(txn, name, MDB_CREATE, dbi);
}

void kv_be64(unsigned char out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

uint64_t kv_from_be64(const void *p)
{
	const unsigned char *b = p;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | b[i];
	return v;
}
