/*
 * ctl — batonctl's commands.
 *
 * Reads go straight to LMDB in read-only transactions (safe while the
 * router runs: LMDB readers never block the writer). Changes never write
 * LMDB: they go through ingress's /admin endpoints to the router, with
 * the same effects as the automatic paths.
 *
 * Exit codes: 0 done, 1 failed (message on stderr), 2 usage or config
 * error, 3 no such conversation.
 */
#ifndef BATON_CTL_H
#define BATON_CTL_H

#include <stdbool.h>

#include "config.h"

#define CTL_OK 0
#define CTL_FAIL 1
#define CTL_USAGE 2
#define CTL_NOT_FOUND 3

/** Print mode, Flex SIDs, timeline and transcript of the customer's conversation. */
int ctl_show(const struct config *cfg, const char *address, bool json);
/** Ask the router (via ingress /admin) to hand back or escalate. */
int ctl_admin(const struct config *cfg, const char *what, const char *address,
	      const char *reason);

#endif
