/*
 * evtable — the router's event table: for each kind of event (evkind.h) the
 * fields it needs, whether it names its conversation or is found through
 * an index, and what it does. Conversations, TaskRouter and status
 * webhooks, operator commands and the router's timers all go through
 * evtable_apply(); see core.h.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "xalloc.h"

/* Fields an event needs; a frame without them is dropped, not followed. */
enum ev_need {
	NEED_CH = 1 << 0,
	NEED_SID = 1 << 1,
	NEED_FROM = 1 << 2,
	NEED_BODY = 1 << 3,
	NEED_WT = 1 << 4,
	NEED_ADDR = 1 << 5, /* an operator's address: bounded, it becomes an LMDB key */
	NEED_CONV = 1 << 6, /* a timer's conversation key */
};

typedef int ev_fn(struct batch *b, const char *key, struct conv_rec *c, const struct envelope *env);

static bool ev_current(const struct conv_rec *c, const struct envelope *env)
{
	return (env->wt && c->flex_wt && !strcmp(env->wt, c->flex_wt)) ||
	       (env->ch && c->flex_ch && !strcmp(env->ch, c->flex_ch));
}

static int ev_message_added(struct batch *b, const char *key, struct conv_rec *c,
			    const struct envelope *env)
{
	int rc = handoff_flex_message(b, key, c, env);
	return rc ? rc : store_seen_put(b->st, b->txn, env->sid, env->ts);
}

static int ev_conv_closed(struct batch *b, const char *key, struct conv_rec *c,
			  const struct envelope *env)
{
	return ev_current(c, env) ? handoff_back(b, key, c, "agent_closed", false) : 0;
}

static int ev_task_done(struct batch *b, const char *key, struct conv_rec *c,
			const struct envelope *env)
{
	return ev_current(c, env) ? handoff_back(b, key, c, "task_completed", false) : 0;
}

static int ev_task_canceled(struct batch *b, const char *key, struct conv_rec *c,
			    const struct envelope *env)
{
	return ev_current(c, env) ? handoff_no_agent(b, key, c, "task_canceled") : 0;
}

static int ev_accepted(struct batch *b, const char *key, struct conv_rec *c,
		       const struct envelope *env)
{
	if (!ev_current(c, env) || c->accepted_at)
		return 0;
	c->accepted_at = clock_wall_ms();
	rctx_set_str(&c->agent, env->name);
	return store_tl_add(b->st, b->txn, key, c, "accepted", env->name ? env->name : "");
}

static int ev_message_failed(struct batch *b, const char *key, struct conv_rec *c,
			     const struct envelope *env)
{
	struct log_ids ids = { .conv = key, .sid = env->sid };
	c->err_code = env->code;
	rctx_set_str(&c->err, env->reason ? env->reason : "message failed");
	log_emit(LOG_WARN, &ids, "Twilio reported message failure %lld", (long long)env->code);
	return env->code == TWILIO_ERR_WINDOW ? outbox_window_closed(b, key, c, "Twilio error 63016")
					      : 0;
}

static int ev_admin_handback(struct batch *b, const char *key, struct conv_rec *c,
			     const struct envelope *env)
{
	return handoff_back(b, key, c, "operator", true);
}

static int ev_admin_escalate(struct batch *b, const char *key, struct conv_rec *c,
			     const struct envelope *env)
{
	return handoff_escalate(b, key, c, "operator", env->reason, NULL);
}

static int ev_timer_no_agent(struct batch *b, const char *key, struct conv_rec *c,
			     const struct envelope *env)
{
	return handoff_no_agent(b, key, c, "accept_timeout");
}

static int ev_timer_idle(struct batch *b, const char *key, struct conv_rec *c,
			 const struct envelope *env)
{
	return handoff_back(b, key, c, "inactivity_timeout", true);
}

/* How an event finds its conversation. */
enum ev_find { FIND_FLEX, FIND_SENT, FIND_ADDRESS, FIND_KEY };

static const struct ev_row {
	const char *name;
	unsigned need;
	enum ev_find find;
	ev_fn *fn; /* NULL: the purge, which erases the record */
} ev_rows[EVK_COUNT] = {
	[EVK_MESSAGE_ADDED] = { EV_MESSAGE_ADDED, NEED_CH | NEED_SID | NEED_FROM | NEED_BODY,
				FIND_FLEX, ev_message_added },
	[EVK_CONV_CLOSED] = { EV_CONV_CLOSED, NEED_CH, FIND_FLEX, ev_conv_closed },
	[EVK_TASK_DONE] = { EV_TASK_DONE, NEED_WT, FIND_FLEX, ev_task_done },
	[EVK_TASK_CANCELED] = { EV_TASK_CANCELED, NEED_WT, FIND_FLEX, ev_task_canceled },
	[EVK_ACCEPTED] = { EV_ACCEPTED, NEED_WT, FIND_FLEX, ev_accepted },
	[EVK_MESSAGE_FAILED] = { EV_MESSAGE_FAILED, NEED_SID, FIND_SENT, ev_message_failed },
	[EVK_ADMIN_HANDBACK] = { EV_ADMIN_HANDBACK, NEED_ADDR, FIND_ADDRESS, ev_admin_handback },
	[EVK_ADMIN_ESCALATE] = { EV_ADMIN_ESCALATE, NEED_ADDR, FIND_ADDRESS, ev_admin_escalate },
	[EVK_ADMIN_PURGE] = { EV_ADMIN_PURGE, NEED_ADDR, FIND_ADDRESS, NULL },
	[EVK_TIMER_NO_AGENT] = { "timer_no_agent", NEED_CONV, FIND_KEY, ev_timer_no_agent },
	[EVK_TIMER_IDLE] = { "timer_idle", NEED_CONV, FIND_KEY, ev_timer_idle },
};

enum evkind evkind_of(const char *op)
{
	for (int k = 1; op && k < EVK_COUNT; k++)
		if (!strcmp(op, ev_rows[k].name))
			return (enum evkind)k;
	return EVK_UNKNOWN;
}

const char *evkind_name(enum evkind k)
{
	return k > EVK_UNKNOWN && k < EVK_COUNT ? ev_rows[k].name : "unknown";
}

static bool ev_complete(const struct ev_row *row, const struct envelope *e)
{
	unsigned n = row->need;
	if (((n & NEED_CH) && !e->ch) || ((n & NEED_SID) && !e->sid) ||
	    ((n & NEED_FROM) && !e->from) || ((n & NEED_BODY) && !e->body) ||
	    ((n & NEED_WT) && !e->wt) || ((n & NEED_CONV) && !e->conv))
		return false;
	/* Bounded: the address becomes an LMDB key, and a key over LMDB's
	 * limit would fail the whole batch. */
	if ((n & NEED_ADDR) && (!e->from || strlen(e->from) > ROUTER_ADDR_MAX ||
				(e->to && strlen(e->to) > ROUTER_ADDR_MAX)))
		return false;
	return true;
}

/* The conversation an event is about: by Flex conversation or task, by sent
 * message, by customer address, or (timers) its key. *key is malloc'd. */
static int ev_conv(struct batch *b, const struct ev_row *row, const struct envelope *env,
		   char **key)
{
	int rc = MDB_NOTFOUND;
	*key = NULL;
	switch (row->find) {
	case FIND_KEY:
		*key = xstrdup(env->conv);
		return 0;
	case FIND_ADDRESS:
		return store_conv_find(b->st, b->txn, env->from, env->to, key);
	case FIND_SENT:
		return store_idx_get(b->st, b->txn, "sm", env->sid, key);
	case FIND_FLEX:
		if (env->wt && (rc = store_idx_get(b->st, b->txn, "wt", env->wt, key)) == 0)
			return 0;
		if (env->ch && (rc = store_idx_get(b->st, b->txn, "ch", env->ch, key)) == 0)
			return 0;
		return rc;
	}
	return MDB_NOTFOUND;
}

int evtable_apply(struct batch *b, struct item *it, enum evkind kind)
{
	struct envelope *env = &it->env;
	const struct ev_row *row = kind > EVK_UNKNOWN && kind < EVK_COUNT ? &ev_rows[kind] : NULL;
	bool admin = row && row->find == FIND_ADDRESS;
	struct log_ids ids = { .sid = env->sid };
	struct conv_rec c;
	char *key = NULL;
	int rc;

	if (!row || (it->synthetic != (row->find == FIND_KEY))) {
		log_emit(LOG_WARN, &ids, "unknown event '%s' ignored", env->op ? env->op : "");
		batch_ack(b, it, ST_FAILED, "unknown event");
		return 0;
	}
	if (!ev_complete(row, env)) {
		log_emit(LOG_WARN, &ids, "dropped a '%s' event without the fields it needs", row->name);
		batch_ack(b, it, ST_FAILED, "event without the fields it needs");
		return 0;
	}
	if (kind == EVK_MESSAGE_ADDED) {
		if ((rc = store_seen_get(b->st, b->txn, env->sid)) == 0) {
			batch_ack(b, it, ST_DUPLICATE, NULL);
			return 0;
		}
		if (rc != MDB_NOTFOUND)
			return rc;
	}
	rc = ev_conv(b, row, env, &key);
	if (rc == 0)
		rc = store_conv_get(b->st, b->txn, key, &c);
	if (rc == MDB_NOTFOUND) {
		log_emit(LOG_INFO, &ids, "%s for a conversation baton does not know: ignored", row->name);
		batch_ack(b, it, admin ? ST_FAILED : ST_OK, "no such conversation");
		free(key);
		return 0;
	}
	if (rc) {
		free(key);
		return rc;
	}
	ids.conv = key;
	if (!row->fn) {
		/* The purge: the record is gone afterwards, nothing to write back. */
		rc = purge_conversation(b, it, key, &c);
	} else {
		if ((rc = row->fn(b, key, &c, env)) == 0) {
			c.updated = clock_wall_ms();
			rc = store_conv_put(b->st, b->txn, key, &c);
		}
		if (rc == 0)
			batch_ack(b, it, ST_OK, NULL);
	}
	conv_rec_release(&c);
	free(key);
	return rc;
}
