/*
 * router — the single writer of baton's state, and its message loop.
 *
 * Each loop turn takes up to router.batch envelopes from ingress and the
 * workers, applies them all in ONE LMDB write transaction (group commit),
 * commits, and only then acknowledges webhooks and hands new jobs to
 * workers. A failed commit acknowledges nothing (ingress answers 503 and
 * Twilio retries) and re-dispatches the jobs whose results were lost.
 */
#ifndef BATON_ROUTER_H
#define BATON_ROUTER_H

#include <signal.h>

#include "config.h"

/** Run until *stop is set. 0 on a clean stop, -1 on a startup error (logged),
 *  -2 on a configuration error only the router checks (business.hours). */
int router_run(const struct config *cfg, volatile sig_atomic_t *stop);

#endif
