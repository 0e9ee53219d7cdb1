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
#include "media.h"

struct webhook_cfg {
	const char *auth_token;
	const char *url;      /* public URL Twilio signs: public_url + path */
	bool check_signature;
	size_t max_params;
	/* Who may be named in a webhook (NULL or empty: not checked). */
	const char *account_sid;   /* AccountSid must be ours (else 403) */
	const char *workspace_sid; /* TaskRouter's WorkspaceSid must be ours (else 403) */
	const char *const *numbers; /* To must be one of these business numbers (none: any) */
	size_t nnumbers;
};

/*
 * Strict identity (a signature covers name+value pairs run together, so a
 * replayed webhook can move text across a boundary and stay signed): a
 * message's MessageSid is SM/MM + 32 hex digits and equals SmsSid and
 * SmsMessageSid when they are present, AccountSid is ours, To is one of
 * our numbers and From a whatsapp:+E164 address. Anything else is 400 (403
 * for another account), so a moved boundary can never pass as a new
 * message.
 */

/** Whether v is a Twilio SID with one of the two prefixes (p2 may be NULL). */
bool webhook_sid(const char *v, const char *p1, const char *p2);
/** 0 when the form's AccountSid is ours (or none is configured), else 403 with *why. */
int webhook_account(const struct webhook_cfg *cfg, const struct form *f, const char **why);

/**
 * A message webhook's media, location and button fields (media.h).
 * Fill *out from the form (nmedia = its NumMedia, already checked
 * to be 0..MEDIA_ITEMS_MAX). Returns 0, or -1 with *why (static text) when
 * a field is not valid UTF-8 or is too long: the webhook is then refused.
 * A location whose coordinates are not numbers in range is dropped, not
 * refused (the turn still has its text).
 */
int webhook_media(const struct form *f, long nmedia, struct media_msg *out, const char **why);

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
