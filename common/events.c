/* events — non-message webhooks and operator commands as envelopes; see events.h. */
#include "events.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "utf8.h"
#include "webhook.h"
#include "xalloc.h"

static const char *events_get(const struct form *f, const char *name)
{
	const char *v = form_get(f, name);
	return v && *v && utf8_valid(v, strlen(v)) ? v : NULL;
}

static void events_init(struct envelope *out, const char *op)
{
	memset(out, 0, sizeof(*out));
	out->type = ENV_EVENT;
	out->version = ENV_VERSION;
	out->ts = clock_wall_ms();
	out->op = xstrdup(op);
}

static char *events_dup(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

int events_conversations(const struct webhook_cfg *cfg, const struct form *f,
			 struct envelope *out, const char **why)
{
	const char *type = events_get(f, "EventType");
	const char *ch = events_get(f, "ConversationSid");
	int rc;
	memset(out, 0, sizeof(*out));
	if (!type || !ch) {
		*why = "missing EventType or ConversationSid";
		return 400;
	}
	if ((rc = webhook_account(cfg, f, why)))
		return rc;
	if (!webhook_sid(ch, "CH", NULL)) {
		*why = "ConversationSid is not CH and 32 hex digits";
		return 400;
	}
	if (!strcmp(type, "onMessageAdded")) {
		const char *sid = events_get(f, "MessageSid");
		const char *author = events_get(f, "Author");
		const char *body = form_get(f, "Body");
		if (!sid || !author) {
			*why = "onMessageAdded without MessageSid or Author";
			return 400;
		}
		if (!webhook_sid(sid, "IM", NULL)) {
			*why = "MessageSid is not IM and 32 hex digits";
			return 400;
		}
		if (body && !utf8_valid(body, strlen(body))) {
			*why = "Body is not valid UTF-8";
			return 400;
		}
		events_init(out, EV_MESSAGE_ADDED);
		out->ch = xstrdup(ch);
		out->sid = xstrdup(sid);
		out->from = xstrdup(author);
		out->body = xstrdup(body ? body : "");
		out->name = events_dup(events_get(f, "ClientIdentity"));
		return EVENTS_FORWARD;
	}
	if (!strcmp(type, "onConversationStateUpdated")) {
		const char *to = events_get(f, "StateTo");
		if (!to || strcmp(to, "closed") != 0)
			return EVENTS_IGNORE;
		events_init(out, EV_CONV_CLOSED);
		out->ch = xstrdup(ch);
		out->reason = events_dup(events_get(f, "Reason"));
		return EVENTS_FORWARD;
	}
	return EVENTS_IGNORE;
}

/* TaskAttributes is a JSON string; Flex puts the conversation there. */
static char *events_task_conversation(const struct form *f)
{
	const char *attrs = form_get(f, "TaskAttributes");
	json_t *a = attrs ? json_loads(attrs, 0, NULL) : NULL;
	const char *ch = json_string_value(json_object_get(a, "conversationSid"));
	char *out = ch ? xstrdup(ch) : NULL;
	json_decref(a);
	return out;
}

int events_taskrouter(const struct webhook_cfg *cfg, const struct form *f, struct envelope *out,
		      const char **why)
{
	const char *type = events_get(f, "EventType");
	const char *task = events_get(f, "TaskSid");
	const char *ws = form_get(f, "WorkspaceSid");
	const char *op = NULL;
	int rc;
	memset(out, 0, sizeof(*out));
	if (!type) {
		*why = "missing EventType";
		return 400;
	}
	if ((rc = webhook_account(cfg, f, why)))
		return rc;
	if (cfg->workspace_sid && *cfg->workspace_sid && (!ws || strcmp(ws, cfg->workspace_sid))) {
		*why = "WorkspaceSid is not our Flex workspace";
		return 403;
	}
	if (!strcmp(type, "task.wrapup") || !strcmp(type, "task.completed"))
		op = EV_TASK_DONE;
	else if (!strcmp(type, "task.canceled"))
		op = EV_TASK_CANCELED;
	else if (!strcmp(type, "reservation.accepted"))
		op = EV_ACCEPTED;
	else
		return EVENTS_IGNORE;
	if (!task || !webhook_sid(task, "WT", NULL)) {
		*why = "task event without a TaskSid (WT and 32 hex digits)";
		return 400;
	}
	events_init(out, op);
	out->wt = xstrdup(task);
	out->ch = events_task_conversation(f);
	out->name = events_dup(events_get(f, "WorkerName"));
	out->reason = events_dup(events_get(f, !strcmp(op, EV_TASK_CANCELED) ? "TaskCanceledReason"
									     : "TaskCompletedReason"));
	out->body = xstrdup(type);
	return EVENTS_FORWARD;
}

int events_status(const struct webhook_cfg *cfg, const struct form *f, struct envelope *out,
		  const char **why)
{
	const char *sid = events_get(f, "MessageSid");
	const char *status = events_get(f, "MessageStatus");
	const char *code = events_get(f, "ErrorCode");
	int rc;
	memset(out, 0, sizeof(*out));
	if (!sid || !status) {
		*why = "missing MessageSid or MessageStatus";
		return 400;
	}
	if ((rc = webhook_account(cfg, f, why)))
		return rc;
	if (!webhook_sid(sid, "SM", "MM")) {
		*why = "MessageSid is not SM or MM and 32 hex digits";
		return 400;
	}
	if (!code || (strcmp(status, "failed") && strcmp(status, "undelivered")))
		return EVENTS_IGNORE;
	events_init(out, EV_MESSAGE_FAILED);
	out->sid = xstrdup(sid);
	out->code = strtol(code, NULL, 10);
	out->body = xstrdup(status);
	out->reason = events_dup(events_get(f, "ErrorMessage"));
	return EVENTS_FORWARD;
}

int events_admin(const char *op, const char *body, size_t len, struct envelope *out,
		 const char **why)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *addr = json_string_value(json_object_get(root, "address"));
	const char *biz = json_string_value(json_object_get(root, "business"));
	const char *reason = json_string_value(json_object_get(root, "reason"));
	memset(out, 0, sizeof(*out));
	if (!json_is_object(root) || !addr || !*addr) {
		json_decref(root);
		*why = "expected JSON {\"address\": ..., \"business\"?, \"reason\"?}";
		return 400;
	}
	events_init(out, op);
	out->from = xstrdup(addr);
	out->to = biz && *biz ? xstrdup(biz) : NULL;
	out->reason = xstrdup(reason && *reason ? reason : "operator request");
	json_decref(root);
	return EVENTS_FORWARD;
}
