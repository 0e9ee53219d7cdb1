/*
 * events — turns the webhooks that are not customer messages into ENV_EVENT
 * envelopes for the router: Conversations (agent and customer messages in
 * the Flex conversation, its closing), TaskRouter (task wrapped up,
 * completed, canceled; reservation accepted), message status callbacks
 * (WhatsApp errors such as 63016), and operator commands.
 *
 * Each converter returns EVENTS_FORWARD (send *out to the router),
 * EVENTS_IGNORE (acknowledge, nothing to do: an event type baton does not
 * use) or an HTTP status (400) with *why set. *out owns its strings.
 */
#ifndef BATON_EVENTS_H
#define BATON_EVENTS_H

#include <stddef.h>

#include "envelope.h"
#include "form.h"
#include "webhook.h"

#define EVENTS_FORWARD 0
#define EVENTS_IGNORE 1

/* Each checks the webhook's identity against cfg (webhook.h): our account,
 * our workspace, SIDs of the right shape; 403 or 400 otherwise. */
int events_conversations(const struct webhook_cfg *cfg, const struct form *f,
			 struct envelope *out, const char **why);
int events_taskrouter(const struct webhook_cfg *cfg, const struct form *f, struct envelope *out,
		      const char **why);
int events_status(const struct webhook_cfg *cfg, const struct form *f, struct envelope *out,
		  const char **why);
/** Operator command: JSON {"address", "business"?, "reason"?}; op is EV_ADMIN_*
 *  (handback, escalate, purge: the same body; purge keeps "reason" in its audit
 *  record, as the operator's reference for the erasure request). */
int events_admin(const char *op, const char *body, size_t len, struct envelope *out,
		 const char **why);

#endif
