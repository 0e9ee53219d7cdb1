/*
 * kv — thin helpers over LMDB for the router's state.
 *
 * Only the router opens the environment (single writer), and never
 * across fork(). Keys that hold numbers are big-endian so that LMDB's
 * byte order is numeric order.
 */
#ifndef BATON_KV_H
#define BATON_KV_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Open (creating dir and files if needed) an environment with up to maxdbs named databases.
 *  sync=false sets MDB_NOSYNC. Returns 0 or -1 (logged). */
int kv_open(MDB_env **env, const char *dir, size_t map_size_mb, bool sync, unsigned maxdbs);
void kv_close(MDB_env **env);
/** Open or create a named database inside txn. Returns an LMDB error code (0 = ok). */
int kv_dbi(MDB_txn *txn, const char *name, MDB_dbi *dbi);

void kv_be64(unsigned char out[8], uint64_t v);
uint64_t kv_from_be64(const void *p);

#endif
