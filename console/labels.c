/* labels — baton's own turns and hand-backs told for people; see labels.h. */
#include "labels.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convview.h"
#include "xalloc.h"

/* A hand-back's system turn and its handed_back entry are written in one
 * transaction, each with its own clock reading: this far apart at most. */
#define LABELS_TURN_SLACK_MS 5000

static bool labels_is(const char *s, const char *want)
{
	return s && !strcmp(s, want);
}

static bool labels_placeholder(const char *p)
{
	return p[0] == '%' && (p[1] == 'h' || p[1] == 'n');
}

/*
 * Whether text is what the router's handoff_expand made of tmpl: each %h
 * and %n stands for any text (the hours, the next opening). A template of
 * placeholders only would match anything, so it matches nothing.
 */
static bool labels_template_match(const char *tmpl, const char *text)
{
	size_t fixed = 0;
	for (const char *p = tmpl; *p; p++) {
		if (labels_placeholder(p))
			p++;
		else
			fixed++;
	}
	if (!fixed)
		return false;
	/* Glob matching with one backtrack point, the last placeholder seen. */
	const char *t = tmpl, *s = text, *star_t = NULL, *star_s = NULL;
	while (*s) {
		if (labels_placeholder(t)) {
			t += 2;
			star_t = t;
			star_s = s;
		} else if (*t && *t == *s) {
			t++;
			s++;
		} else if (star_t) {
			t = star_t;
			s = ++star_s;
		} else {
			return false;
		}
	}
	while (labels_placeholder(t))
		t += 2;
	return *t == '\0';
}

/* The setting text comes from and its kind ("holding" or "notice"), or NULL
 * for the AI's own words. */
static const char *labels_own_message(const struct config *cfg, const char *text,
				      const char **kind)
{
	const struct {
		const char *setting, *kind, *text;
		bool tmpl;
	} own[] = {
		{ "handoff.holding_message", "holding", cfg->handoff_holding_message, false },
		{ "handoff.closed_message", "holding", cfg->handoff_closed_message, true },
		{ "handoff.no_agent_message", "notice", cfg->handoff_no_agent_message, false },
		{ "handoff.no_agent_ai_message", "notice", cfg->handoff_no_agent_ai_message, false },
		{ "handoff.failure_message", "notice", cfg->handoff_failure_message, false },
		{ "ai.apology", "notice", cfg->ai_apology, false },
	};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		const char *m = own[i].text;
		if (!m || !*m)
			continue;
		if (own[i].tmpl ? labels_template_match(m, text) : !strcmp(m, text)) {
			*kind = own[i].kind;
			return own[i].setting;
		}
	}
	return NULL;
}

/* "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
static void labels_duration(uint64_t ms, char *buf, size_t len)
{
	unsigned long long s = ms / 1000, m = s / 60, h = m / 60;
	if (s < 60)
		snprintf(buf, len, "%llu s", s);
	else if (m < 60)
		snprintf(buf, len, "%llu min", m);
	else if (h < 48 && m % 60)
		snprintf(buf, len, "%llu h %llu min", h, m % 60);
	else if (h < 48)
		snprintf(buf, len, "%llu h", h);
	else
		snprintf(buf, len, "%llu d %llu h", h / 24, h % 24);
}

/* How a hand-back path (the handed_back entry's detail) reads. */
static const char *labels_path_words(const char *path)
{
	static const struct {
		const char *path, *words;
	} words[] = {
		{ "agent_closed", "the agent closed the chat" },
		{ "task_completed", "task completed" },
		{ "operator", "by an operator" },
		{ "inactivity_timeout", "no messages for a while" },
		{ "no_agent", "no agent was available" },
		{ "reset", "the customer started over" },
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcmp(words[i].path, path))
			return words[i].words;
	return path;
}

/* One human stretch as the timeline tells it. */
struct labels_stretch {
	const char *path;  /* how it ended; NULL = its handed_back entry is not in the timeline */
	const char *agent; /* who had it last; NULL = nobody took it */
	uint64_t escalated, agent_since, ended;
};

static uint64_t labels_at(json_t *e)
{
	return (uint64_t)json_integer_value(json_object_get(e, "at_ms"));
}

static const char *labels_field(json_t *e, const char *name)
{
	return json_string_value(json_object_get(e, name));
}

/* The stretch a hand-back's system turn at ts closed, from the timeline
 * entries (oldest first). */
static void labels_stretch_of(json_t *tl, uint64_t ts, struct labels_stretch *out)
{
	size_t n = json_array_size(tl), hb = n;
	uint64_t best = UINT64_MAX;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(tl, i);
		if (!labels_is(labels_field(e, "event"), "handed_back"))
			continue;
		uint64_t at = labels_at(e), d = at > ts ? at - ts : ts - at;
		if (d < best) {
			best = d;
			hb = i;
		}
	}
	if (hb == n || best > LABELS_TURN_SLACK_MS)
		return;
	json_t *end = json_array_get(tl, hb);
	out->path = labels_field(end, "detail") ? labels_field(end, "detail") : "";
	out->ended = labels_at(end);
	for (size_t i = hb; i-- > 0;) {
		json_t *e = json_array_get(tl, i);
		const char *ev = labels_field(e, "event"), *detail = labels_field(e, "detail");
		if (labels_is(ev, "handed_back"))
			break; /* the stretch before */
		bool took = labels_is(ev, "accepted") || labels_is(ev, "first_agent_reply") ||
			    labels_is(ev, "agent_takeover");
		if (took) {
			/* Walking back: the earliest of these is when a person
			 * took it, the latest named one who had it at the end. */
			out->agent_since = labels_at(e);
			if (!out->agent && detail && *detail)
				out->agent = detail;
		}
		if (labels_is(ev, "escalated") || labels_is(ev, "agent_takeover")) {
			out->escalated = labels_at(e);
			break;
		}
	}
}

/* "Handed back to the AI — task completed, after 12 min with Marta". Caller frees. */
static char *labels_handback_line(const struct labels_stretch *st)
{
	char dur[48];
	if (!st->path)
		return xstrdup("Handed back to the AI.");
	const char *why = labels_path_words(st->path);
	if (st->agent_since && st->ended >= st->agent_since) {
		labels_duration(st->ended - st->agent_since, dur, sizeof(dur));
		return xasprintf("Handed back to the AI \xe2\x80\x94 %s, after %s with %s", why, dur,
				 st->agent ? st->agent : "an agent");
	}
	if (st->escalated && st->ended >= st->escalated) {
		labels_duration(st->ended - st->escalated, dur, sizeof(dur));
		return xasprintf("Handed back to the AI \xe2\x80\x94 %s, after %s waiting for an agent",
				 why, dur);
	}
	return xasprintf("Handed back to the AI \xe2\x80\x94 %s", why);
}

static void labels_system_turn(json_t *turn, json_t *tl)
{
	struct labels_stretch st;
	labels_stretch_of(tl, labels_at(turn), &st);
	char *line = labels_handback_line(&st);
	json_object_set_new(turn, "kind", json_string(st.path ? "handback" : "note"));
	json_object_set_new(turn, "text", convview_str(line));
	free(line);
	if (st.path) {
		json_t *b = json_object();
		json_object_set_new(b, "path", convview_str(st.path));
		json_object_set_new(b, "agent", convview_str(st.agent));
		json_object_set_new(b, "escalated_ms", convview_ms(st.escalated));
		json_object_set_new(b, "agent_since_ms", convview_ms(st.agent_since));
		json_object_set_new(b, "at_ms", convview_ms(st.ended));
		json_object_set_new(turn, "handback", b);
	}
}

void labels_apply(const struct config *cfg, json_t *doc)
{
	json_t *hist = json_object_get(doc, "history"), *tl = json_object_get(doc, "timeline");
	size_t i;
	json_t *turn;
	json_array_foreach(hist, i, turn) {
		const char *role = labels_field(turn, "role");
		if (labels_is(role, "system")) {
			labels_system_turn(turn, tl);
			continue;
		}
		const char *kind = NULL, *setting = NULL, *text = labels_field(turn, "text");
		if (labels_is(role, "ai") && text)
			setting = labels_own_message(cfg, text, &kind);
		json_object_set_new(turn, "kind", json_string(kind ? kind : "message"));
		if (setting)
			json_object_set_new(turn, "setting", json_string(setting));
	}
}
