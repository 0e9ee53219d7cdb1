/*
 * test_twilio — egress/twilio: the Messages resource URL, the urlencoded
 * To/From/Body form, and classification of Twilio's answers (201 with a
 * SID, missing SID, 4xx with Twilio error code, 429/5xx, no response),
 * and reconciliation: the list URL, finding a doubtful attempt's message
 * in a page of Twilio's list, and RFC 2822 dates.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "twilio.h"

/* Runs twilio_parse on a NUL-terminated body from an exactly sized heap copy. */
static enum tw_outcome parse(long status, const char *body, struct tw_result *r)
{
	size_t n = strlen(body);
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, body, n);
	enum tw_outcome oc = twilio_parse(status, copy, n, r);
	free(copy);
	return oc;
}

static void test_messages_url(void **state)
{
	(void)state;
	char *u = twilio_messages_url("https://api.twilio.com", "AC0123456789abcdef0123456789abcdef");
	assert_string_equal(u, "https://api.twilio.com/2010-04-01/Accounts/"
			       "AC0123456789abcdef0123456789abcdef/Messages.json");
	free(u);
	u = twilio_messages_url("http://127.0.0.1:18081", "AC1");
	assert_string_equal(u, "http://127.0.0.1:18081/2010-04-01/Accounts/AC1/Messages.json");
	free(u);
}

static void test_message_form(void **state)
{
	(void)state;
	static const char body[] = "Ol\xc3\xa1 Ana! 50% off & free=yes + more\nLine 2 \xf0\x9f\x98\x80";
	char *f = twilio_message_form("whatsapp:+14155550100", "whatsapp:+14155238886", body);
	assert_non_null(f);
	assert_null(strchr(f, ' '));
	assert_null(strchr(f, '\n'));
	struct form parsed;
	assert_int_equal(form_parse(f, strlen(f), 16, &parsed), FORM_EOK);
	assert_int_equal(parsed.n, 3);
	assert_string_equal(parsed.params[0].name, "To");
	assert_string_equal(parsed.params[0].value, "whatsapp:+14155550100");
	assert_string_equal(parsed.params[1].name, "From");
	assert_string_equal(parsed.params[1].value, "whatsapp:+14155238886");
	assert_string_equal(parsed.params[2].name, "Body");
	assert_string_equal(parsed.params[2].value, body);
	form_release(&parsed);
	free(f);

	/* an empty body is still a parameter */
	f = twilio_message_form("a", "b", "");
	assert_int_equal(form_parse(f, strlen(f), 16, &parsed), FORM_EOK);
	assert_int_equal(parsed.n, 3);
	assert_string_equal(form_get(&parsed, "Body"), "");
	form_release(&parsed);
	free(f);
}

static void test_parse_created(void **state)
{
	(void)state;
	struct tw_result r;
	assert_int_equal(parse(201,
			       "{\"account_sid\":\"AC1\",\"body\":\"hi\",\"sid\":"
			       "\"SM0123456789abcdef0123456789abcdef\",\"status\":\"queued\","
			       "\"error_code\":null}",
			       &r),
			 TW_OK);
	assert_non_null(r.sid);
	assert_string_equal(r.sid, "SM0123456789abcdef0123456789abcdef");
	assert_null(r.message);
	tw_result_release(&r);
	assert_null(r.sid);
	/* 200 is accepted as well */
	assert_int_equal(parse(200, "{\"sid\":\"SM1\"}", &r), TW_OK);
	assert_string_equal(r.sid, "SM1");
	tw_result_release(&r);
}

static void test_parse_created_without_sid(void **state)
{
	(void)state;
	static const char *const bodies[] = {
		"{\"status\":\"queued\"}",
		"{\"sid\":null}",
		"{\"sid\":12345}",
		"{\"sid\":\"\"}",
		"{\"sid\":\"S\"}",
		"not json",
		"",
		"[\"SM1\"]",
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct tw_result r;
		enum tw_outcome oc = parse(201, bodies[i], &r);
		if (oc != TW_MALFORMED)
			fail_msg("'%s': outcome %d", bodies[i], oc);
		assert_null(r.sid);
		assert_non_null(r.message);
		assert_int_equal(r.code, 201);
		tw_result_release(&r);
	}
	/* a SID longer than any Twilio SID is refused */
	char body[200];
	strcpy(body, "{\"sid\":\"SM");
	memset(body + strlen(body), 'a', 80);
	strcpy(body + 10 + 80, "\"}");
	struct tw_result r;
	assert_int_equal(parse(201, body, &r), TW_MALFORMED);
	tw_result_release(&r);
}

static void test_parse_failed_with_code(void **state)
{
	(void)state;
	struct tw_result r;
	assert_int_equal(parse(400,
			       "{\"code\":21211,\"message\":\"The 'To' number +1555 is not a valid phone "
			       "number.\",\"more_info\":\"https://www.twilio.com/docs/errors/21211\","
			       "\"status\":400}",
			       &r),
			 TW_FAILED);
	assert_int_equal(r.code, 21211);
	assert_non_null(r.message);
	assert_non_null(strstr(r.message, "is not a valid phone number"));
	assert_null(r.sid);
	tw_result_release(&r);

	/* outside the 24-hour window */
	assert_int_equal(parse(400, "{\"code\":63016,\"message\":\"Failed to send freeform message\"}", &r),
			 TW_FAILED);
	assert_int_equal(r.code, 63016);
	tw_result_release(&r);

	/* 401/404 without a JSON body: code is the HTTP status */
	assert_int_equal(parse(401, "Unauthorized", &r), TW_FAILED);
	assert_int_equal(r.code, 401);
	assert_non_null(strstr(r.message, "401"));
	tw_result_release(&r);
	assert_int_equal(parse(404, "{\"code\":\"x\"}", &r), TW_FAILED);
	assert_int_equal(r.code, 404);
	tw_result_release(&r);
}

static void test_parse_long_message_cut(void **state)
{
	(void)state;
	char body[2100];
	strcpy(body, "{\"code\":30007,\"message\":\"");
	size_t o = strlen(body);
	memset(body + o, 'x', 2000);
	strcpy(body + o + 2000, "\"}");
	struct tw_result r;
	assert_int_equal(parse(400, body, &r), TW_FAILED);
	assert_int_equal(r.code, 30007);
	assert_true(strlen(r.message) <= 300);
	tw_result_release(&r);
}

static void test_parse_retry(void **state)
{
	(void)state;
	struct tw_result r;
	assert_int_equal(parse(429, "{\"code\":20429,\"message\":\"Too Many Requests\",\"status\":429}",
			       &r),
			 TW_RETRY);
	assert_int_equal(r.code, 20429);
	assert_string_equal(r.message, "Too Many Requests");
	tw_result_release(&r);

	assert_int_equal(parse(503, "<html><body>Service Unavailable</body></html>", &r), TW_RETRY);
	assert_int_equal(r.code, 503);
	assert_non_null(r.message);
	tw_result_release(&r);

	assert_int_equal(parse(500, "", &r), TW_RETRY);
	assert_int_equal(r.code, 500);
	tw_result_release(&r);
	assert_int_equal(parse(502, "{}", &r), TW_RETRY);
	tw_result_release(&r);
}

static void test_parse_no_response(void **state)
{
	(void)state;
	struct tw_result r;
	assert_int_equal(twilio_parse(0, NULL, 0, &r), TW_RETRY);
	assert_non_null(r.message);
	assert_null(r.sid);
	tw_result_release(&r);
	assert_int_equal(parse(0, "{\"sid\":\"SM1\"}", &r), TW_RETRY);
	assert_null(r.sid);
	tw_result_release(&r);
}

static void test_list_url(void **state)
{
	(void)state;
	/* 2026-12-02T12:00:00Z: the list starts the day before. */
	char *u = twilio_list_url("https://api.twilio.com", "AC1", "whatsapp:+5511988887777",
				  "whatsapp:+14155238886", 1796212800000ull, 50);
	assert_string_equal(u, "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?"
			       "To=whatsapp%3A%2B5511988887777&From=whatsapp%3A%2B14155238886&"
			       "DateSent%3E=2026-12-01&PageSize=50");
	free(u);
}

static void test_rfc2822(void **state)
{
	(void)state;
	assert_true(twilio_rfc2822("Wed, 02 Dec 2026 12:00:00 +0000") == 1796212800LL);
	assert_true(twilio_rfc2822("Wed, 02 Dec 2026 14:00:00 +0200") == 1796212800LL);
	assert_true(twilio_rfc2822("2026-12-02T12:00:00Z") == -1);
	assert_true(twilio_rfc2822("Wed, 02 Dec 2026 12:00:00 +0000 trailing") == -1);
	assert_true(twilio_rfc2822(NULL) == -1);
}

#define MSG(sid, to, body, date) \
	"{\"sid\":\"" sid "\",\"to\":\"" to "\",\"from\":\"whatsapp:+14155238886\"," \
	"\"body\":\"" body "\",\"date_created\":\"" date "\"}"
#define ANA "whatsapp:+5511988887777"

static const struct tw_match MATCH = { .to = ANA, .from = "whatsapp:+14155238886",
				       .body = "Hello", .exclude = "SMold1,SMold2",
				       .created_ms = 1796212800000ull };

static enum tw_list find(long status, const char *body, char **sid, char **next)
{
	return twilio_list_find(status, body, strlen(body), "http://tw", &MATCH, sid, next);
}

static void test_list_find(void **state)
{
	(void)state;
	char *sid, *next;
	/* Newest first: another body, an excluded SID with the same body, then ours. */
	const char *page = "{\"messages\":[" MSG("SMx", ANA, "Other", "Wed, 02 Dec 2026 12:00:09 +0000") ","
			   MSG("SMold2", ANA, "Hello", "Wed, 02 Dec 2026 12:00:08 +0000") ","
			   MSG("SMours", ANA, "Hello", "Wed, 02 Dec 2026 12:00:07 +0000") "],"
			   "\"next_page_uri\":null}";
	assert_int_equal(find(200, page, &sid, &next), TWL_FOUND);
	assert_string_equal(sid, "SMours");
	assert_null(next);
	free(sid);

	/* Only excluded or other messages: not found, and the next page named. */
	const char *more = "{\"messages\":[" MSG("SMold1", ANA, "Hello", "Wed, 02 Dec 2026 12:00:01 +0000") ","
			   MSG("SMy", "whatsapp:+1999", "Hello", "Wed, 02 Dec 2026 12:00:01 +0000") "],"
			   "\"next_page_uri\":\"/2010-04-01/Accounts/AC1/Messages.json?Page=1\"}";
	assert_int_equal(find(200, more, &sid, &next), TWL_NOT_FOUND);
	assert_null(sid);
	assert_string_equal(next, "http://tw/2010-04-01/Accounts/AC1/Messages.json?Page=1");
	free(next);

	/* A message older than the job (past the skew) ends the search. */
	const char *old = "{\"messages\":[" MSG("SMz", ANA, "Hello", "Wed, 02 Dec 2026 11:58:00 +0000") "],"
			  "\"next_page_uri\":\"/next\"}";
	assert_int_equal(find(200, old, &sid, &next), TWL_NOT_FOUND);
	assert_null(sid);
	assert_null(next);
}

static void test_list_find_errors(void **state)
{
	(void)state;
	char *sid, *next;
	assert_int_equal(find(500, "{}", &sid, &next), TWL_ERROR);
	assert_null(sid);
	assert_non_null(strstr(next, "500"));
	free(next);
	assert_int_equal(find(200, "{\"messages\":{}}", &sid, &next), TWL_ERROR);
	free(next);
	assert_int_equal(find(200, "not json", &sid, &next), TWL_ERROR);
	free(next);
	/* Entries of the wrong shape are skipped, not trusted. */
	assert_int_equal(find(200, "{\"messages\":[1,\"x\",{\"sid\":5,\"body\":\"Hello\"}]}", &sid,
			      &next), TWL_NOT_FOUND);
	assert_null(sid);
	/* A next page that is not a path on the API is not followed. */
	assert_int_equal(find(200, "{\"messages\":[],\"next_page_uri\":\"http://evil/x\"}", &sid,
			      &next), TWL_NOT_FOUND);
	assert_null(next);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_messages_url),
		cmocka_unit_test(test_message_form),
		cmocka_unit_test(test_parse_created),
		cmocka_unit_test(test_parse_created_without_sid),
		cmocka_unit_test(test_parse_failed_with_code),
		cmocka_unit_test(test_parse_long_message_cut),
		cmocka_unit_test(test_parse_retry),
		cmocka_unit_test(test_parse_no_response),
		cmocka_unit_test(test_list_url),
		cmocka_unit_test(test_rfc2822),
		cmocka_unit_test(test_list_find),
		cmocka_unit_test(test_list_find_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
