/*
 * confcheck — every process's start-up validation of the settings, in one
 * place, so that `--check-config` (which runs all of them) exits 0 exactly
 * when every process will start.
 *
 * Each process runs the checks of its role; --check-config runs every
 * role's. A check's message is the same whoever runs it: the setting, the
 * value where it is not a secret, and what to do.
 *
 * Outside sandbox mode a process refuses a secret it needs when it is
 * empty or a sandbox value, and a SID that is malformed or a placeholder
 * (32 times the same digit); sandbox mode accepts those and says so.
 */
#ifndef BATON_CONFCHECK_H
#define BATON_CONFCHECK_H

#include <stddef.h>

#include "config.h"

/* Which process validates (and reads) what. */
enum conf_role {
	CONF_INGRESS = 1u << 0,
	CONF_ROUTER = 1u << 1,
	CONF_AI = 1u << 2,
	CONF_EGRESS = 1u << 3,
	CONF_FLEX = 1u << 4,
	CONF_CTL = 1u << 5,
	CONF_REPLAY = 1u << 6,
	CONF_CONSOLE = 1u << 7,
	CONF_ALL = (1u << 8) - 1,
};

/** The checks of roles, in a fixed order: 0, or -1 with the first problem in err. */
int confcheck(const struct config *cfg, unsigned roles, char *err, size_t errlen);

/** The secrets the processes of roles use (NULL-terminated, static), for config_drop_secrets. */
const char *const *confcheck_secrets(unsigned roles);

/** Whether s is a Twilio SID: prefix then 32 lowercase hex digits. */
int confcheck_sid(const char *s, const char *prefix);

#endif
