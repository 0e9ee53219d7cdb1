/* twilio — Messages API request and response handling; see twilio.h. */
#include "twilio.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

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
