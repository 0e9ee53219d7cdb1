/* convview — conversation records as JSON; see convview.h for the schema. */
#include "convview.h"
#include "media.h"

#include <stdlib.h>

#include "log.h"
#include "xalloc.h"

json_t *convview_str(const char *s)
{
	if (!s)
		return json_null();
	json_t *v = json_string(s);
	/* Stored text is UTF-8 checked on the way in; never fail a view on one that is not. */
	return v ? v : json_string("\xef\xbf\xbd");
}

json_t *convview_ms(uint64_t ms)
{
	return ms ? json_integer((json_int_t)ms) : json_null();
}

uint64_t convview_agent_since(const struct conv_rec *c)
{
	/* Both are reset by each escalation, so they are this stretch's; a
	 * takeover (the agent wrote first) has no acceptance. */
	if (c->accepted_at && c->first_agent_at)
		return c->accepted_at < c->first_agent_at ? c->accepted_at : c->first_agent_at;
	return c->accepted_at ? c->accepted_at : c->first_agent_at;
}

const char *convview_state(const struct conv_rec *c)
{
	if (c->mode == MODE_AI)
		return "ai";
	return convview_agent_since(c) ? "with_agent" : "waiting";
}

static json_t *convview_escalation(const struct conv_rec *c)
{
	if (!c->esc_at && !c->escalations)
		return json_null();
	uint64_t since = convview_agent_since(c);
	json_t *e = json_object();
	json_object_set_new(e, "trigger", convview_str(c->esc_trigger));
	json_object_set_new(e, "reason", convview_str(c->esc_reason));
	json_object_set_new(e, "at_ms", convview_ms(c->esc_at));
	json_object_set_new(e, "queued_until_ms", convview_ms(c->queued_until));
	json_object_set_new(e, "accepted_at_ms", convview_ms(c->accepted_at));
	json_object_set_new(e, "agent_since_ms", convview_ms(since));
	json_object_set_new(e, "waited_ms", since && c->esc_at && since >= c->esc_at
					      ? json_integer((json_int_t)(since - c->esc_at))
					      : json_null());
	json_object_set_new(e, "agent", convview_str(c->agent));
	return e;
}

static json_t *convview_flex(const struct conv_rec *c)
{
	if (!c->flex_ch && !c->flex_wt && !c->flex_kd)
		return json_null();
	json_t *f = json_object();
	json_object_set_new(f, "conversation", convview_str(c->flex_ch));
	json_object_set_new(f, "participant", convview_str(c->flex_mb));
	json_object_set_new(f, "interaction", convview_str(c->flex_kd));
	json_object_set_new(f, "channel", convview_str(c->flex_uo));
	json_object_set_new(f, "task", convview_str(c->flex_wt));
	return f;
}

json_t *convview_record(const char *key, const struct conv_rec *c, unsigned flags)
{
	char *cust, *biz;
	char masked[STORE_KEY_MAX + 1];
	store_conv_parties(key, c, &cust, &biz);
	if (!(flags & CONVVIEW_CLEAR))
		log_show_address(cust, masked, sizeof(masked));
	json_t *o = json_object();
	json_object_set_new(o, "key", convview_str(key));
	json_object_set_new(o, "customer", convview_str(flags & CONVVIEW_CLEAR ? cust : masked));
	json_object_set_new(o, "business", convview_str(biz));
	json_object_set_new(o, "name", convview_str(c->name && *c->name ? c->name : NULL));
	json_object_set_new(o, "mode", json_string(conv_mode_name(c->mode)));
	json_object_set_new(o, "state", json_string(convview_state(c)));
	json_object_set_new(o, "created_ms", convview_ms(c->created));
	json_object_set_new(o, "updated_ms", convview_ms(c->updated));
	json_object_set_new(o, "last_customer_message_ms", convview_ms(c->last_in));
	json_object_set_new(o, "last_activity_ms", convview_ms(conv_last_activity(c)));
	json_object_set_new(o, "customer_turns", json_integer((json_int_t)c->turns));
	json_object_set_new(o, "messages", json_integer((json_int_t)c->seq));
	json_object_set_new(o, "waiting_turns",
			    json_integer((json_int_t)(c->pend_in > c->pend_out ? c->pend_in - c->pend_out
										: 0)));
	json_object_set_new(o, "escalations", json_integer((json_int_t)c->escalations));
	json_object_set_new(o, "handoff_failures", json_integer((json_int_t)c->handoff_failures));
	json_object_set_new(o, "escalation", convview_escalation(c));
	json_object_set_new(o, "flex", convview_flex(c));
	json_object_set_new(o, "window_closed_ms", convview_ms(c->window_closed));
	json_object_set_new(o, "last_error",
			    c->err_code || c->err
				    ? json_pack("{s:I, s:o}", "code", (json_int_t)c->err_code, "message",
						convview_str(c->err))
				    : json_null());
	free(cust);
	free(biz);
	return o;
}

json_t *convview_event(const struct tl_rec *t)
{
	json_t *o = json_object();
	json_object_set_new(o, "at_ms", json_integer((json_int_t)t->ts));
	json_object_set_new(o, "event", convview_str(t->event ? t->event : ""));
	json_object_set_new(o, "detail", convview_str(t->detail ? t->detail : ""));
	return o;
}

json_t *convview_turn(uint64_t seq, const struct hist_rec *h)
{
	json_t *o = json_object();
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	json_object_set_new(o, "at_ms", json_integer((json_int_t)h->ts));
	json_object_set_new(o, "role", json_string(env_role_name(h->role)));
	json_object_set_new(o, "text", convview_str(h->text ? h->text : ""));
	if (h->who)
		json_object_set_new(o, "agent", convview_str(h->who));
	if (h->nmedia)
		json_object_set_new(o, "media_count", json_integer((json_int_t)h->nmedia));
	struct media_msg mm;
	if (h->media && media_from_json(h->media, &mm) == 0 && !media_empty(&mm)) {
		json_object_set_new(o, "media", json_loads(h->media, 0, NULL));
		/* The one text rendering of it, for readers that show no media. */
		char *notes = media_text_view("", &mm);
		json_object_set_new(o, "media_text", convview_str(notes));
		free(notes);
		media_release(&mm);
	}
	if (h->transcript)
		json_object_set_new(o, "transcript", json_true());
	if (h->sid)
		json_object_set_new(o, "message_sid", convview_str(h->sid));
	if (h->msid)
		json_object_set_new(o, "sent_sids", convview_str(h->msid));
	if (h->escalate)
		json_object_set_new(o, "escalate", json_true());
	return o;
}

json_t *convview_document(struct store *st, MDB_txn *txn, const char *key,
			  const struct conv_rec *c, unsigned flags, size_t max_events,
			  size_t max_turns)
{
	json_t *root = convview_record(key, c, flags), *tl = json_array(), *hist = json_array();
	uint64_t from = max_events && c->tl_seq > max_events ? c->tl_seq - max_events + 1 : 1;
	for (uint64_t i = from; i <= c->tl_seq; i++) {
		struct tl_rec t;
		if (store_tl_get(st, txn, key, i, &t))
			continue;
		json_array_append_new(tl, convview_event(&t));
		tl_rec_release(&t);
	}
	from = max_turns && c->seq > max_turns ? c->seq - max_turns + 1 : 1;
	for (uint64_t i = from; i <= c->seq; i++) {
		struct hist_rec h;
		if (store_hist_get(st, txn, key, i, &h))
			continue;
		json_array_append_new(hist, convview_turn(i, &h));
		hist_rec_release(&h);
	}
	json_object_set_new(root, "timeline", tl);
	json_object_set_new(root, "timeline_total", json_integer((json_int_t)c->tl_seq));
	json_object_set_new(root, "history", hist);
	json_object_set_new(root, "history_total", json_integer((json_int_t)c->seq));
	return root;
}
