/*
 * access — how the readers of baton's state (batonctl, baton-console) open
 * it, whatever the backend. With state.backend = lmdb: the router's LMDB
 * environment in state.dir, read-only. With postgres: a cache of the
 * database in state.dir/cache-WHO (mirror.h), brought up to date when
 * opened and by access_refresh; the readers then read it as they read
 * LMDB. Nothing here writes baton's state.
 */
#ifndef BATON_ACCESS_H
#define BATON_ACCESS_H

#include "config.h"
#include "store.h"

struct access;

/** Open the state for who ("batonctl", "console"): NULL when it is not there
 *  yet or cannot be read (logged; *why says it in a sentence). */
struct access *access_open(const struct config *cfg, const char *who, const char **why);
/** The store to read (valid until access_close). */
struct store *access_store(struct access *a);
/** With postgres: catch up with the database (no read transaction may be open
 *  in this process). 0, or -1 (logged; the cache stays as it was). */
int access_refresh(struct access *a);
void access_close(struct access *a);

#endif
