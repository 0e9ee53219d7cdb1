/*
 * twilio — the Twilio REST calls egress makes, without I/O.
 *
 * twilio_message_form() builds the form of POST
 * {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json (To, From,
 * Body). twilio_parse() classifies the answer: 201 with a message SID is
 * success; 429 and 5xx are transient; other 4xx carry Twilio's error
 * code ({"code","message","more_info","status"}) and are final.
 *
 * Reconciliation (egress.reconcile): twilio_list_url() builds GET
 * .../Messages.json?To&From&DateSent>=day&PageSize, and twilio_list_find()
 * looks through one page of the answer (newest first) for the message a
 * doubtful attempt may have created: same To, From and Body, created no
 * earlier than the job (less a minute of clock skew), and not one of the
 * SIDs already recorded for the conversation.
 */
#ifndef BATON_TWILIO_H
#define BATON_TWILIO_H

#include <stddef.h>
#include <stdint.h>

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

/* What a reconciling egress looks for in Twilio's list of messages. */
struct tw_match {
	const char *to, *from, *body;
	const char *exclude;     /* comma-separated SIDs that are not it, or NULL */
	uint64_t created_ms;     /* wall ms the job was created: the message is not older */
};

enum tw_list {
	TWL_FOUND,     /* *sid set (caller frees) */
	TWL_NOT_FOUND, /* *next set to the next page's URL when one may hold it (caller frees) */
	TWL_ERROR,     /* the list could not be read: *sid is NULL, the reason in *next */
};

/** URL of the first page of messages To/From sent since the day before created_ms. */
char *twilio_list_url(const char *api_base, const char *account_sid, const char *to,
		      const char *from, uint64_t created_ms, int page_size);
/** Look through one page (HTTP status, body). api_base prefixes next_page_uri. */
enum tw_list twilio_list_find(long status, const char *body, size_t len, const char *api_base,
			      const struct tw_match *m, char **sid, char **next);
/** Seconds since the epoch of an RFC 2822 date as Twilio writes it, -1 when unreadable. */
long long twilio_rfc2822(const char *s);

#endif
