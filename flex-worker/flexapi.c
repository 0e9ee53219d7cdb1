/* flexapi — Conversations/Flex request and response shapes; see flexapi.h. */
#include "flexapi.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "form.h"
#include "xalloc.h"

/* Bounds on what we accept from a list page: Twilio pages hold at most 100. */
#define FLEXAPI_PAGE_MAX 1000

void flexapi_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static void flexapi_set(json_t *o, const char *k, const char *v)
{
	if (v && *v)
		json_object_set_new(o, k, json_string(v));
}

char *flexapi_interaction_form(const struct flex_interaction_req *r)
{
	json_t *channel = json_pack("{s:s, s:s, s:{s:s}}", "type", "whatsapp", "initiated_by",
				    "customer", "properties", "media_channel_sid", r->ch);
	json_t *attrs = json_object();
	flexapi_set(attrs, "customerName", r->name && *r->name ? r->name : r->customer);
	flexapi_set(attrs, "customerAddress", r->customer);
	flexapi_set(attrs, "from", r->customer);
	flexapi_set(attrs, "channelType", "whatsapp");
	flexapi_set(attrs, "escalationTrigger", r->trigger);
	flexapi_set(attrs, "handoffReason", r->reason);
	flexapi_set(attrs, "summary", r->summary);
	flexapi_set(attrs, "batonConversationKey", r->conv_key);
	flexapi_set(attrs, "businessAddress", r->business);
	flexapi_set(attrs, "language", r->language);
	json_object_set_new(attrs, "turns", json_integer((json_int_t)r->turns));
	json_t *props = json_object();
	flexapi_set(props, "workspace_sid", r->workspace);
	flexapi_set(props, "workflow_sid", r->workflow);
	flexapi_set(props, "task_channel_unique_name", r->task_channel);
	json_object_set_new(props, "attributes", attrs);
	json_t *routing = json_pack("{s:o}", "properties", props);

	char *cj = json_dumps(channel, JSON_COMPACT);
	char *rj = json_dumps(routing, JSON_COMPACT);
	char *form = NULL;
	form_append(&form, "Channel", cj);
	form_append(&form, "Routing", rj);
	free(cj);
	free(rj);
	json_decref(channel);
	json_decref(routing);
	return form;
}

static const char *flexapi_str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static char *flexapi_dup(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void flexapi_sids_release(struct flex_sids *s)
{
	free(s->kd);
	free(s->uo);
	free(s->wt);
	memset(s, 0, sizeof(*s));
}

int flexapi_parse_interaction(const char *body, size_t len, struct flex_sids *out)
{
	memset(out, 0, sizeof(*out));
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *kd = flexapi_str(root, "sid");
	const char *uo = flexapi_str(json_object_get(root, "channel"), "sid");
	json_t *props = json_object_get(json_object_get(root, "routing"), "properties");
	const char *wt = flexapi_str(props, "sid");
	int rc = -1;
	if (kd && uo) {
		out->kd = xstrdup(kd);
		out->uo = xstrdup(uo);
		out->wt = flexapi_dup(wt); /* creation is asynchronous: the task may come later */
		rc = 0;
	}
	json_decref(root);
	return rc;
}

static char *flexapi_next(json_t *root)
{
	const char *n = flexapi_str(json_object_get(root, "meta"), "next_page_url");
	return (n && *n) ? xstrdup(n) : NULL;
}

int flexapi_parse_participant_conversations(const char *body, size_t len, const char *own_unique,
					    char ***open, char **own, char **next)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *list = json_object_get(root, "conversations");
	*open = NULL;
	*next = NULL;
	if (!json_is_array(list) || json_array_size(list) > FLEXAPI_PAGE_MAX) {
		json_decref(root);
		return -1;
	}
	size_t n = 0, i;
	json_t *c;
	*open = xcalloc(json_array_size(list) + 1, sizeof(char *));
	json_array_foreach(list, i, c) {
		const char *sid = flexapi_str(c, "conversation_sid");
		const char *state = flexapi_str(c, "conversation_state");
		const char *uniq = flexapi_str(c, "conversation_unique_name");
		if (!sid || (state && !strcmp(state, "closed")))
			continue;
		if (own_unique && uniq && !strcmp(uniq, own_unique)) {
			if (own && !*own)
				*own = xstrdup(sid);
			continue;
		}
		(*open)[n++] = xstrdup(sid);
	}
	*next = flexapi_next(root);
	json_decref(root);
	return 0;
}

int flexapi_parse_service(const char *body, size_t len, char **is)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *s = flexapi_str(root, "chat_service_sid");
	int rc = -1;
	*is = NULL;
	if (s && !strncmp(s, "IS", 2)) {
		*is = xstrdup(s);
		rc = 0;
	}
	json_decref(root);
	return rc;
}

int flexapi_parse_media_sid(const char *body, size_t len, char **me)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *s = flexapi_str(root, "sid");
	int rc = -1;
	*me = NULL;
	/* It goes into a form field the Conversations API checks against this pattern. */
	if (s && strlen(s) == 34 && !strncmp(s, "ME", 2) && strspn(s + 2, "0123456789abcdefABCDEF") == 32) {
		*me = xstrdup(s);
		rc = 0;
	}
	json_decref(root);
	return rc;
}

bool flexapi_parse_media_attached(const char *body, size_t len)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *m = flexapi_str(root, "message_sid");
	bool attached = m && *m;
	json_decref(root);
	return attached;
}

int flexapi_parse_sid(const char *body, size_t len, char **sid, char **state)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *s = flexapi_str(root, "sid");
	*sid = flexapi_dup(s);
	if (state)
		*state = flexapi_dup(flexapi_str(root, "state"));
	json_decref(root);
	return s ? 0 : -1;
}

int flexapi_parse_participant(const char *body, size_t len, const char *address, char **mb,
			      char **next)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *list = json_object_get(root, "participants");
	size_t i;
	json_t *p;
	*mb = NULL;
	*next = NULL;
	if (!json_is_array(list)) {
		json_decref(root);
		return -1;
	}
	json_array_foreach(list, i, p) {
		const char *a = flexapi_str(json_object_get(p, "messaging_binding"), "address");
		const char *sid = flexapi_str(p, "sid");
		if (a && sid && !strcmp(a, address)) {
			*mb = xstrdup(sid);
			break;
		}
	}
	*next = flexapi_next(root);
	json_decref(root);
	return 0;
}

/* "baton_item" of message Attributes: absent is item 0 (a message of one
 * turn, or the first of a turn with several media); -1 when not an index. */
static long long flexapi_item_of(json_t *a)
{
	json_t *k = json_object_get(a, "baton_item");
	if (!k)
		return 0;
	return json_is_integer(k) && json_integer_value(k) >= 0 ? json_integer_value(k) : -1;
}

int flexapi_parse_injected(const char *body, size_t len, unsigned long long job,
			   const struct flex_slot *slots, bool *done, size_t n, char **next)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *list = json_object_get(root, "messages");
	size_t i;
	json_t *m;
	*next = NULL;
	if (!json_is_array(list)) {
		json_decref(root);
		return -1;
	}
	json_array_foreach(list, i, m) {
		const char *attrs = flexapi_str(m, "attributes");
		json_t *a = attrs ? json_loads(attrs, 0, NULL) : NULL;
		json_t *j = json_object_get(a, "baton_job"), *t = json_object_get(a, "baton_turn");
		long long item = flexapi_item_of(a);
		if (json_is_integer(j) && json_is_integer(t) &&
		    (unsigned long long)json_integer_value(j) == job && json_integer_value(t) >= 0 &&
		    item >= 0) {
			for (size_t s = 0; s < n; s++)
				if (slots[s].turn == (size_t)json_integer_value(t) &&
				    slots[s].item == (size_t)item)
					done[s] = true;
		}
		json_decref(a);
	}
	*next = flexapi_next(root);
	json_decref(root);
	return 0;
}

int flexapi_parse_marked(const char *body, size_t len, struct flex_sids *out)
{
	memset(out, 0, sizeof(*out));
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *attrs = flexapi_str(root, "attributes");
	json_t *a = attrs ? json_loads(attrs, 0, NULL) : NULL;
	json_t *mark = json_object_get(a, "baton_interaction");
	int rc = -1;
	if (flexapi_str(mark, "kd") && flexapi_str(mark, "uo")) {
		out->kd = xstrdup(flexapi_str(mark, "kd"));
		out->uo = xstrdup(flexapi_str(mark, "uo"));
		out->wt = flexapi_dup(flexapi_str(mark, "wt"));
		rc = 0;
	}
	json_decref(a);
	json_decref(root);
	return rc;
}

char *flexapi_turn_attributes(unsigned long long job, size_t turn, size_t item)
{
	if (!item)
		return xasprintf("{\"baton_job\":%llu,\"baton_turn\":%zu}", job, turn);
	return xasprintf("{\"baton_job\":%llu,\"baton_turn\":%zu,\"baton_item\":%zu}", job, turn,
			 item);
}

char *flexapi_mark_attributes(const char *conv_key, unsigned long long job,
			      const struct flex_sids *sids)
{
	json_t *mark = json_object();
	flexapi_set(mark, "kd", sids->kd);
	flexapi_set(mark, "uo", sids->uo);
	flexapi_set(mark, "wt", sids->wt);
	json_t *o = json_pack("{s:s, s:I, s:o}", "baton_conversation", conv_key, "baton_job",
			      (json_int_t)job, "baton_interaction", mark);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

char *flexapi_author_label(enum env_role role, const char *name)
{
	switch (role) {
	case ROLE_CUSTOMER:
		return name && *name ? xasprintf("Customer (%s)", name) : xstrdup("Customer");
	case ROLE_AI: return xstrdup("Assistant");
	case ROLE_AGENT: return xstrdup("Agent");
	case ROLE_SYSTEM: return xstrdup("Note");
	}
	return xstrdup("?");
}

char *flexapi_transcript(const struct env_turn *turns, size_t n, const char *customer_label)
{
	char *out = xasprintf("Conversation so far (%zu messages):", n);
	for (size_t i = 0; i < n; i++) {
		char when[8] = "--:--";
		time_t secs = (time_t)(turns[i].ts / 1000);
		struct tm tm;
		if (turns[i].ts && gmtime_r(&secs, &tm))
			strftime(when, sizeof(when), "%H:%M", &tm);
		char *who = turns[i].role == ROLE_CUSTOMER && customer_label
				    ? xstrdup(customer_label)
				    : flexapi_author_label(turns[i].role, NULL);
		char *next = xasprintf("%s\n[%s UTC] %s: %s", out, when, who, turns[i].text);
		free(who);
		free(out);
		out = next;
	}
	return out;
}

char *flexapi_task_query(const char *ch)
{
	return xasprintf("conversationSid == \"%s\"", ch);
}

int flexapi_parse_tasks(const char *body, size_t len, const char *ch, struct flex_sids *out)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *list = json_object_get(root, "tasks");
	size_t i;
	json_t *t;
	int rc = -1;
	memset(out, 0, sizeof(*out));
	json_array_foreach(list, i, t) {
		const char *attrs = flexapi_str(t, "attributes");
		const char *wt = flexapi_str(t, "sid");
		json_t *a = attrs ? json_loads(attrs, 0, NULL) : NULL;
		const char *c = flexapi_str(a, "conversationSid");
		const char *kd = flexapi_str(a, "flexInteractionSid");
		const char *uo = flexapi_str(a, "flexInteractionChannelSid");
		if (c && !strcmp(c, ch) && kd && uo && wt) {
			out->kd = xstrdup(kd);
			out->uo = xstrdup(uo);
			out->wt = xstrdup(wt);
			rc = 0;
		}
		json_decref(a);
		if (rc == 0)
			break;
	}
	json_decref(root);
	return rc;
}

char *flexapi_forward_attributes(long long seq, size_t item)
{
	if (!item)
		return xasprintf("{\"baton_seq\":%lld}", seq);
	return xasprintf("{\"baton_seq\":%lld,\"baton_item\":%zu}", seq, item);
}

void flexapi_parse_forwarded(const char *body, size_t len, long long seq, bool *done, size_t n)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *list = json_object_get(root, "messages");
	size_t i;
	json_t *m;
	json_array_foreach(list, i, m) {
		const char *attrs = flexapi_str(m, "attributes");
		json_t *a = attrs ? json_loads(attrs, 0, NULL) : NULL;
		json_t *s = json_object_get(a, "baton_seq");
		long long item = flexapi_item_of(a);
		if (json_is_integer(s) && json_integer_value(s) == seq && item >= 0 &&
		    (unsigned long long)item < n)
			done[item] = true;
		json_decref(a);
	}
	json_decref(root);
}
