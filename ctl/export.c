/*
 * export — batonctl export: the whole conversation for an audit or the
 * customer's access request: the record in clear (convview's schema with
 * CONVVIEW_CLEAR), the transcript, the customer turns still waiting for
 * the AI, and the timeline with what each entry meant (trigger and reason
 * of an escalation, path of a hand-back, the mode it left); see ctl.h.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "convview.h"
#include "xalloc.h"

/* The mode a timeline event leaves the conversation in, or NULL. */
static const char *export_event_mode(const char *ev)
{
	if (!strcmp(ev, "escalated"))
		return "escalating";
	if (!strcmp(ev, "task_created") || !strcmp(ev, "agent_takeover"))
		return "human";
	if (!strcmp(ev, "handed_back") || !strcmp(ev, "handoff_failed"))
		return "ai";
	return NULL;
}

/* What a timeline entry meant, beside convview's {at_ms, event, detail}. */
static void export_explain(json_t *e)
{
	const char *ev = json_string_value(json_object_get(e, "event"));
	const char *d = json_string_value(json_object_get(e, "detail"));
	ev = ev ? ev : "";
	d = d ? d : "";
	const char *sep = strstr(d, ": ");
	if (!strcmp(ev, "escalated")) {
		json_object_set_new(e, "trigger", sep ? json_stringn(d, (size_t)(sep - d)) : json_string(d));
		json_object_set_new(e, "reason", json_string(sep ? sep + 2 : ""));
	} else if (!strcmp(ev, "handed_back")) {
		json_object_set_new(e, "path", json_string(d));
	}
	const char *mode = export_event_mode(ev);
	if (mode)
		json_object_set_new(e, "mode", json_string(mode));
}

/* Text lines: continuation lines of a multi-line message keep the indent. */
static void export_text_line(const char *when, const char *who, const char *text)
{
	printf("  %-24s  %-20s ", when, who);
	for (const char *p = text; *p; p++) {
		fputc(*p, stdout);
		if (*p == '\n' && p[1])
			printf("  %-24s  %-20s ", "", "");
	}
	fputc('\n', stdout);
}

static void export_when(json_t *o, char *buf, size_t len)
{
	ctl_time((uint64_t)json_integer_value(json_object_get(o, "at_ms")), true, buf, len);
}

static void export_text(json_t *doc)
{
	json_t *c = json_object_get(doc, "conversation"), *e, *v;
	char when[40];
	size_t i;
	const char *key;
	ctl_time((uint64_t)json_integer_value(json_object_get(doc, "exported_at_ms")), true, when,
		 sizeof(when));
	printf("baton conversation export, %s\n\n", when);
	json_object_foreach(c, key, v) {
		if (json_is_null(v))
			continue;
		size_t kl = strlen(key);
		char *s;
		if (json_is_integer(v) && kl > 3 && !strcmp(key + kl - 3, "_ms") &&
		    strcmp(key, "waited_ms")) {
			ctl_time((uint64_t)json_integer_value(v), true, when, sizeof(when));
			s = xstrdup(when);
		} else {
			s = json_is_string(v) ? xstrdup(json_string_value(v))
					      : json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
		}
		printf("%-24s %s\n", key, s);
		free(s);
	}
	printf("\ntimeline\n");
	json_array_foreach(json_object_get(doc, "timeline"), i, e) {
		const char *mode = json_string_value(json_object_get(e, "mode"));
		char *d = xasprintf("%s%s%s", json_string_value(json_object_get(e, "detail")),
				    mode ? "  -> mode " : "", mode ? mode : "");
		export_when(e, when, sizeof(when));
		export_text_line(when, json_string_value(json_object_get(e, "event")), d);
		free(d);
	}
	const char *parts[] = { "history", "pending" };
	for (size_t p = 0; p < 2; p++) {
		json_t *arr = json_object_get(doc, parts[p]);
		if (p == 1 && !json_array_size(arr))
			break;
		printf("\n%s\n", p ? "pending (customer turns waiting for the AI)" : "transcript");
		json_array_foreach(arr, i, e) {
			const char *role = json_string_value(json_object_get(e, "role"));
			const char *agent = json_string_value(json_object_get(e, "agent"));
			char *who = agent ? xasprintf("%s (%s)", role, agent) : xstrdup(role);
			export_when(e, when, sizeof(when));
			export_text_line(when, who, json_string_value(json_object_get(e, "text")));
			free(who);
		}
	}
}

int ctl_export(const struct config *cfg, const char *address, bool json)
{
	struct ctl_read rd;
	struct conv_rec c;
	char *key;
	int ret;

	if ((ret = ctl_read_conv(cfg, &rd, address, &key, &c)) != CTL_OK)
		return ret;
	/* In clear: the export is the record itself (messages included), for an
	 * audit or the customer's access request, not a listing. */
	json_t *full = convview_document(rd.st, rd.txn, key, &c, CONVVIEW_CLEAR, 0, 0);
	json_t *doc = json_object(), *pend = json_array(), *e;
	json_object_set_new(doc, "exported_at_ms", json_integer((json_int_t)clock_wall_ms()));
	json_object_set_new(doc, "conversation", json_deep_copy(full));
	json_t *rec = json_object_get(doc, "conversation");
	json_object_del(rec, "history");
	json_object_del(rec, "timeline");
	json_object_del(rec, "history_total");
	json_object_del(rec, "timeline_total");
	json_object_set(doc, "history", json_object_get(full, "history"));
	/* Customer turns still waiting behind an AI job (not yet in history). */
	for (uint64_t i = c.pend_out + 1; i <= c.pend_in; i++) {
		struct hist_rec h;
		if (store_pend_get(rd.st, rd.txn, key, i, &h))
			continue;
		json_array_append_new(pend, convview_turn(i, &h));
		hist_rec_release(&h);
	}
	json_object_set_new(doc, "pending", pend);
	size_t i;
	json_array_foreach(json_object_get(full, "timeline"), i, e)
		export_explain(e);
	json_object_set(doc, "timeline", json_object_get(full, "timeline"));
	json_decref(full);
	if (json)
		ctl_dump(doc);
	else
		export_text(doc);
	json_decref(doc);
	conv_rec_release(&c);
	free(key);
	ctl_read_end(&rd);
	return CTL_OK;
}
