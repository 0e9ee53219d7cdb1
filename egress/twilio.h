/*
 * twilio — the Twilio REST calls egress makes, without I/O.
 *
 * twilio_message_form() builds the form of POST
 * {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json (To, From,
 * Body). twilio_parse() classifies the answer: 201 with a message SID is
 * success; 429 and 5xx are transient; other 4xx carry Twilio's error
 * code ({"code","message","more_info","status"}) and are final.
 */
#ifndef BATON_TWILIO_H
#define BATON_TWILIO_H

#include <stddef.h>

enum tw_outcome { TW_OK, TW_RETRY, TW_FAILED, TW_MALFORMED };

struct tw_result {
	char *sid;     /* created resource's SID on TW_OK */
	long code;     /* Twilio error code, or the HTTP status when none */
	char *message; /* error text for logs */
};

/** URL of the Messages resource; caller frees. */
char *twilio_messages_url(const char *api_base, const char *account_sid);
/** Form body To/From/Body; caller frees. */
char *twilio_message_form(const char *to, const char *from, const char *body);
/** Form body To/From/ContentSid/ContentVariables (a template: outside the 24 h window). */
char *twilio_template_form(const char *to, const char *from, const char *content_sid,
			   const char *variables);
/** Classify an HTTP outcome (status 0 = transfer failed). */
enum tw_outcome twilio_parse(long status, const char *body, size_t len, struct tw_result *out);
void tw_result_release(struct tw_result *r);

#endif
