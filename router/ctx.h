/*
 * ctx — what the router's modules read while they apply a batch: the
 * settings (and each business number's), the business hours, the
 * escalation rules, the store, the job dispatcher (for what is queued or
 * in flight), and the counters kept for the logs. The loop (router.c)
 * owns it; modules only borrow it through their batch (batch.h) and never
 * call back into the loop.
 */
#ifndef BATON_ROUTER_CTX_H
#define BATON_ROUTER_CTX_H

#include <stdint.h>

#include "config.h"
#include "dispatch.h"
#include "hours.h"
#include "rules.h"
#include "store.h"

struct lead;

struct rstats {
	uint64_t msgs, dups, commits, escalations;
};

struct rctx {
	const struct config *cfg;
	struct rules *rules;
	struct hours hours;          /* the base settings' */
	struct hours *number_hours;  /* parallel to cfg->numbers */
	struct store *st;
	struct dispatch *disp;
	struct lead *lead; /* state.backend = postgres: the lease and commits there; else NULL */
	struct rstats stats;
};

/** Parse the hours of the base and of every [number]: 0, or -1 with *why
 *  and the bad number's index in *which (-1: the base). */
int rctx_hours_parse(struct rctx *x, const char **why, long *which);
void rctx_release(struct rctx *x);
/** The settings of the conversation's business number (key "customer|business"). */
const struct config *rctx_cfg(const struct rctx *x, const char *key);
/** The business hours of the conversation's business number. */
const struct hours *rctx_hours(const struct rctx *x, const char *key);
/** Replace *dst with a copy of v when v is non-empty (a record's field). */
void rctx_set_str(char **dst, const char *v);

#endif
