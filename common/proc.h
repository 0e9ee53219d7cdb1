/*
 * proc — what every baton process does before its loop: options and
 * config (--config, --check-config, --help; exit 2 on a bad setting),
 * its role's start-up checks (confcheck.h), logging, and stop signals
 * that only set a flag the loop watches. Then it hardens itself: it keeps
 * only the secrets its role uses, cannot dump core (debug.core_dumps), and
 * raises its open-files limit to the hard limit.
 */
#ifndef BATON_PROC_H
#define BATON_PROC_H

#include <signal.h>

#include "config.h"

/** Set by SIGTERM/SIGINT; the process loop drains and returns when it is. */
extern volatile sig_atomic_t proc_stop;

/**
 * Load cfg from argv (exits 2 on a config error), init logging and metrics
 * (metrics_init) as log_name, install the signal handlers. Returns 1 when an informational option was
 * handled and the caller should exit 0, else 0.
 */
int proc_start(struct config *cfg, int argc, char **argv, const char *prog,
	       const char *log_name, unsigned roles, const char *usage);

/** Raise the soft open-files limit to the hard one; the limit in force (logged). */
long proc_raise_nofile(void);

#endif
