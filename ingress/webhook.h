/*
 * webhook — turns one Twilio inbound-message webhook into an envelope.
 *
 * Pure logic, no I/O: the HTTP server hands in the signature header and
 * the raw body, and gets back either 0 (accepted: forward *out to the
 * router) or the HTTP status to answer with and a reason for the log.
 * The envelope's strings are owned by *out (env_release).
 */
#ifndef BATON_WEBHOOK_H
#define BATON_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "envelope.h"
#include "form.h"

struct webhook_cfg {
	const char *auth_token;
	const char *url;      /* public URL Twilio signs: public_url + path */
	bool check_signature;
	size_t max_params;
};

/** Validate and convert. Returns 0, or an HTTP status (400, 403) with *why set (static text). */
int webhook_inbound(const struct webhook_cfg *cfg, const char *signature, const char *body,
		    size_t len, struct envelope *out, const char **why);

/**
 * Parse a form webhook and check its signature (any Twilio webhook: the
 * Conversations, TaskRouter and status callbacks are signed the same way).
 * Returns 0 with *out filled (form_release), or 400/403 with *why set.
 */
int webhook_form(const struct webhook_cfg *cfg, const char *signature, const char *body,
		 size_t len, struct form *out, const char **why);

#endif
