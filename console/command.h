/*
 * command — the console's hand-back and escalate: the same event ingress
 * makes of /admin/handback and /admin/escalate (events_admin), sent to
 * the router over the ingress endpoint and answered once the router has
 * committed it. Changes never happen in the console itself.
 *
 * Each command has a socket of its own (commands are rare, and each
 * request thread may send one); with a tcp:// endpoint it is a CURVE
 * client with this process's keys (zmqx_keys_for).
 */
#ifndef BATON_COMMAND_H
#define BATON_COMMAND_H

#include <stddef.h>

#include "config.h"

struct command;

/** NULL when ZeroMQ cannot start (logged). */
struct command *command_new(const struct config *cfg);
void command_free(struct command *c);

/**
 * Perform op (EV_ADMIN_HANDBACK or EV_ADMIN_ESCALATE) with the JSON body
 * {"address", "business"?, "reason"?}. Returns the HTTP status to answer:
 * 200 done, 400 bad body, 404 no such conversation, 503 router busy or
 * silent for http.ack_timeout_ms; *why (static text) says why when not 200.
 */
int command_run(struct command *c, const char *op, const char *body, size_t len,
		const char **why);

#endif
