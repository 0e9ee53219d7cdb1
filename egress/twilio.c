/* twilio — Messages API request and response handling; see twilio.h. */
#include "twilio.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "form.h"
#include "xalloc.h"

/* Twilio error messages are short; a long one is cut for the log. */
#define TW_MESSAGE_MAX 300

char *twilio_messages_url(const char *api_base, const char *account_sid)
{
	return xasprintf("%s/2010-04-01/Accounts/%s/Messages.json", api_base, account_sid);
}

char *twilio_message_form(const char *to, const char *from, const char *body)
{
	char *f = NULL;
	form_append(&f, "To", to);
	form_append(&f, "From", from);
	form_append(&f, "Body", body);
	return f;
}

char *twilio_template_form(const char *to, const char *from, const char *content_sid,
			   const char *variables)
{
	char *f = NULL;
	form_append(&f, "To", to);
	form_append(&f, "From", from);
	form_append(&f, "ContentSid", content_sid);
	if (variables && *variables)
		form_append(&f, "ContentVariables", variables);
	return f;
}

void tw_result_release(struct tw_result *r)
{
	free(r->sid);
	free(r->message);
	memset(r, 0, sizeof(*r));
}

enum tw_outcome twilio_parse(long status, const char *body, size_t len, struct tw_result *out)
{
	memset(out, 0, sizeof(*out));
	if (status == 0) {
		out->message = xstrdup("no HTTP response");
		return TW_RETRY;
	}
	json_t *root = json_loadb(body, len, 0, NULL);
	if (status == 200 || status == 201) {
		const char *sid = json_string_value(json_object_get(root, "sid"));
		if (!sid || strlen(sid) < 2 || strlen(sid) > 64) {
			out->message = xstrdup("success response without a message sid");
			out->code = status;
			json_decref(root);
			return TW_MALFORMED;
		}
		out->sid = xstrdup(sid);
		json_decref(root);
		return TW_OK;
	}
	json_t *code = json_object_get(root, "code");
	const char *msg = json_string_value(json_object_get(root, "message"));
	out->code = json_is_integer(code) ? (long)json_integer_value(code) : status;
	out->message = msg ? xasprintf("%.*s", TW_MESSAGE_MAX, msg) : xasprintf("HTTP %ld", status);
	json_decref(root);
	if (status == 429 || status >= 500)
		return TW_RETRY;
	return TW_FAILED;
}

/* Clock skew allowed between Twilio's date_created and the router's clock
 * (the router's list of SIDs to exclude covers the same stretch). */
#define TW_SKEW_S 60

char *twilio_list_url(const char *api_base, const char *account_sid, const char *to,
		      const char *from, uint64_t created_ms, int page_size)
{
	char day[16], size[16];
	time_t t = (time_t)(created_ms / 1000) - 86400; /* DateSent is a day; be generous */
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	snprintf(size, sizeof(size), "%d", page_size);
	char *q = NULL;
	form_append(&q, "To", to);
	form_append(&q, "From", from);
	form_append(&q, "DateSent>", day);
	form_append(&q, "PageSize", size);
	char *url = xasprintf("%s/2010-04-01/Accounts/%s/Messages.json?%s", api_base, account_sid, q);
	free(q);
	return url;
}

long long twilio_rfc2822(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = s ? strptime(s, "%a, %d %b %Y %H:%M:%S %z", &tm) : NULL;
	if (!end || *end)
		return -1;
	long off = tm.tm_gmtoff;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	return (long long)t - off;
}

static bool tw_excluded(const char *list, const char *sid)
{
	size_t n = strlen(sid);
	for (const char *p = list; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && !memcmp(p, sid, n))
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

static bool tw_str_is(json_t *obj, const char *key, const char *want)
{
	const char *v = json_string_value(json_object_get(obj, key));
	return v && want && !strcmp(v, want);
}

enum tw_list twilio_list_find(long status, const char *body, size_t len, const char *api_base,
			      const struct tw_match *m, char **sid, char **next)
{
	*sid = *next = NULL;
	if (status != 200) {
		*next = xasprintf("list answered HTTP %ld", status);
		return TWL_ERROR;
	}
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *msgs = json_object_get(root, "messages");
	if (!json_is_array(msgs)) {
		json_decref(root);
		*next = xstrdup("list answer without a messages array");
		return TWL_ERROR;
	}
	long long oldest = (long long)(m->created_ms / 1000) - TW_SKEW_S;
	bool older_seen = false;
	size_t i;
	json_t *msg;
	json_array_foreach(msgs, i, msg) {
		const char *s = json_string_value(json_object_get(msg, "sid"));
		long long created = twilio_rfc2822(json_string_value(json_object_get(msg, "date_created")));
		if (created >= 0 && created < oldest) {
			older_seen = true; /* newest first: the rest is older still */
			break;
		}
		if (!s || strlen(s) < 2 || strlen(s) > 64 || tw_excluded(m->exclude, s))
			continue;
		if (tw_str_is(msg, "to", m->to) && tw_str_is(msg, "from", m->from) &&
		    tw_str_is(msg, "body", m->body)) {
			*sid = xstrdup(s);
			json_decref(root);
			return TWL_FOUND;
		}
	}
	const char *np = json_string_value(json_object_get(root, "next_page_uri"));
	if (!older_seen && np && *np == '/' && strlen(np) < 4096)
		*next = xasprintf("%s%s", api_base, np);
	json_decref(root);
	return TWL_NOT_FOUND;
}
