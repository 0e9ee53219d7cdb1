/*
 * evkind — the events the router applies, as an enum: the Conversations,
 * TaskRouter and status webhooks and the operator commands (their names
 * come from ingress in an envelope's "op" and become this enum when the
 * router reads them), and the router's own timers.
 */
#ifndef BATON_ROUTER_EVKIND_H
#define BATON_ROUTER_EVKIND_H

enum evkind {
	EVK_UNKNOWN = 0,
	EVK_MESSAGE_ADDED,   /* Conversations onMessageAdded */
	EVK_CONV_CLOSED,     /* Conversations closed */
	EVK_TASK_DONE,       /* task.wrapup / task.completed */
	EVK_TASK_CANCELED,
	EVK_ACCEPTED,        /* reservation.accepted */
	EVK_MESSAGE_FAILED,  /* status callback with an ErrorCode */
	EVK_ADMIN_HANDBACK,
	EVK_ADMIN_ESCALATE,
	EVK_ADMIN_PURGE,
	EVK_TIMER_NO_AGENT,  /* the router's timers (synthetic) */
	EVK_TIMER_IDLE,
	EVK_COUNT
};

/** The event named op (an envelope's "op"), or EVK_UNKNOWN. */
enum evkind evkind_of(const char *op);
const char *evkind_name(enum evkind k);

#endif
