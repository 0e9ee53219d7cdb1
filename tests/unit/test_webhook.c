/*
 * test_webhook — ingress/webhook: a Twilio inbound-message webhook becomes
 * an ENV_INBOUND envelope only when its form parses, its X-Twilio-Signature
 * matches (403 otherwise) and its content is sane (400 otherwise: missing
 * fields, bad UTF-8, bad NumMedia, too many parameters).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "form.h"
#include "twsig.h"
#include "webhook.h"

#define URL "https://bot.example.com/twilio/messages"
#define TOKEN "tok"
#define SID1 "SM0123456789abcdef0123456789abcdef"
#define SID9 "SM9999999999abcdef0123456789abcdef"
#define ACCT "AC0123456789abcdef0123456789abcdef"
#define FROM_Q "whatsapp%3A%2B14155550100"
#define TO_Q "whatsapp%3A%2B14155238886"

static const struct webhook_cfg CFG = {
	.auth_token = TOKEN,
	.url = URL,
	.check_signature = true,
	.max_params = 32,
};

/* A signed webhook: the raw body and its signature. */
struct signed_body {
	char *body;
	char sig[TWSIG_LEN];
};

/* Signs a raw urlencoded body as Twilio would (over its parsed params). */
static void sign_raw(struct signed_body *sb, const char *raw, const char *token, const char *url)
{
	struct form f;
	sb->body = strdup(raw);
	assert_non_null(sb->body);
	assert_int_equal(form_parse(raw, strlen(raw), 1000, &f), FORM_EOK);
	twsig_compute(token, url, &f, sb->sig);
	form_release(&f);
}

/* Builds a body from name/value pairs (NULL-terminated list) and signs it. */
static void sign_pairs(struct signed_body *sb, const char *const *kv)
{
	char *buf = NULL;
	for (size_t i = 0; kv[i]; i += 2)
		form_append(&buf, kv[i], kv[i + 1]);
	sign_raw(sb, buf ? buf : "", TOKEN, URL);
	free(buf);
}

static int call(const struct webhook_cfg *cfg, const char *sig, const char *body,
		struct envelope *env, const char **why)
{
	size_t n = strlen(body);
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, body, n);
	*why = NULL;
	int rc = webhook_inbound(cfg, sig, copy, n, env, why);
	free(copy);
	if (rc == 0)
		assert_null(*why);
	return rc;
}

/* The call must fail with status; env left empty, a reason given. */
static void expect_status(const struct webhook_cfg *cfg, const char *sig, const char *body,
			  int status)
{
	struct envelope env;
	const char *why;
	int rc = call(cfg, sig, body, &env, &why);
	if (rc != status)
		fail_msg("body '%s': got %d (%s), want %d", body, rc, why ? why : "", status);
	assert_non_null(why);
	assert_null(env.sid);
	assert_null(env.body);
	assert_int_equal(env.type, 0);
}

/* Signs kv and expects status. */
static void expect_signed_status(const char *const *kv, int status)
{
	struct signed_body sb;
	sign_pairs(&sb, kv);
	expect_status(&CFG, sb.sig, sb.body, status);
	free(sb.body);
}

#define BASE_FIELDS                                                                          \
	"AccountSid", "AC00000000000000000000000000000000", "MessageSid",                      \
		"SM00000000000000000000000000000001", "From", "whatsapp:+14155550100", "To", \
		"whatsapp:+14155238886"

static void test_accepted(void **state)
{
	(void)state;
	static const char *const kv[] = {
		BASE_FIELDS,
		"Body", "Ol\xc3\xa1, quero marcar uma consulta & saber o pre\xc3\xa7o = 50%?",
		"ProfileName", "Ana Mar\xc3\xad" "a",
		"NumMedia", "0",
		"WaId", "14155550100",
		"ApiVersion", "2010-04-01",
		NULL,
	};
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_pairs(&sb, kv);
	assert_int_equal(call(&CFG, sb.sig, sb.body, &env, &why), 0);
	assert_int_equal(env.type, ENV_INBOUND);
	assert_int_equal(env.version, ENV_VERSION);
	assert_true(env.ts > 1600000000000ull);
	assert_string_equal(env.sid, "SM00000000000000000000000000000001");
	assert_string_equal(env.from, "whatsapp:+14155550100");
	assert_string_equal(env.to, "whatsapp:+14155238886");
	assert_string_equal(env.body, "Ol\xc3\xa1, quero marcar uma consulta & saber o pre\xc3\xa7o = 50%?");
	assert_non_null(env.name);
	assert_string_equal(env.name, "Ana Mar\xc3\xad" "a");
	assert_int_equal(env.nmedia, 0);
	/* the envelope is complete enough to go on the wire */
	char *frame = NULL;
	size_t len = 0;
	assert_int_equal(env_encode(&env, &frame, &len), ENV_EOK);
	free(frame);
	env_release(&env);
	free(sb.body);
}

static void test_accepted_raw_twilio_body(void **state)
{
	(void)state;
	/* exactly as Twilio posts it ('+' for spaces, %3A, %2B) */
	static const char raw[] =
		"SmsMessageSid=" SID1 "&NumMedia=0&ProfileName=Ana&SmsSid=" SID1 "&WaId=14155550100"
		"&SmsStatus=received&Body=Hi+there&To=whatsapp%3A%2B14155238886&NumSegments=1"
		"&MessageSid=" SID1 "&AccountSid=" ACCT "&From=whatsapp%3A%2B14155550100&ApiVersion=2010-04-01";
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_raw(&sb, raw, TOKEN, URL);
	assert_int_equal(call(&CFG, sb.sig, sb.body, &env, &why), 0);
	assert_string_equal(env.body, "Hi there");
	assert_string_equal(env.from, "whatsapp:+14155550100");
	assert_string_equal(env.to, "whatsapp:+14155238886");
	env_release(&env);
	free(sb.body);
}

static void test_signature_port_variant(void **state)
{
	(void)state;
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_raw(&sb, "MessageSid=" SID1 "&From=" FROM_Q "&To=" TO_Q "&Body=x", TOKEN,
		 "https://bot.example.com:443/twilio/messages");
	assert_int_equal(call(&CFG, sb.sig, sb.body, &env, &why), 0);
	env_release(&env);
	free(sb.body);
}

static void test_missing_signature(void **state)
{
	(void)state;
	static const char *const kv[] = { BASE_FIELDS, "Body", "hi", NULL };
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_pairs(&sb, kv);
	assert_int_equal(call(&CFG, NULL, sb.body, &env, &why), 403);
	assert_non_null(strstr(why, "missing"));
	assert_int_equal(call(&CFG, "", sb.body, &env, &why), 403);
	assert_null(env.sid);
	free(sb.body);
}

static void test_wrong_signature(void **state)
{
	(void)state;
	static const char *const kv[] = { BASE_FIELDS, "Body", "hi", NULL };
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_pairs(&sb, kv);
	assert_int_equal(call(&CFG, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", sb.body, &env, &why), 403);
	assert_non_null(strstr(why, "mismatch"));
	/* one character changed */
	char bad[TWSIG_LEN];
	memcpy(bad, sb.sig, sizeof(bad));
	bad[3] = bad[3] == 'A' ? 'B' : 'A';
	assert_int_equal(call(&CFG, bad, sb.body, &env, &why), 403);
	/* signed with another token, or for another URL */
	struct signed_body other;
	sign_raw(&other, sb.body, "other-token", URL);
	assert_int_equal(call(&CFG, other.sig, sb.body, &env, &why), 403);
	free(other.body);
	sign_raw(&other, sb.body, TOKEN, "https://bot.example.com/twilio/other");
	assert_int_equal(call(&CFG, other.sig, sb.body, &env, &why), 403);
	free(other.body);
	free(sb.body);
}

static void test_altered_body(void **state)
{
	(void)state;
	static const char *const kv[] = { BASE_FIELDS, "Body", "pay 10", NULL };
	struct signed_body sb;
	sign_pairs(&sb, kv);
	char *p = strstr(sb.body, "pay%2010");
	assert_non_null(p);
	p[7] = '9'; /* "pay 19" */
	expect_status(&CFG, sb.sig, sb.body, 403);
	/* an appended parameter also breaks the signature */
	char *more = malloc(strlen(sb.body) + 32);
	assert_non_null(more);
	p[7] = '0';
	sprintf(more, "%s&Extra=1", sb.body);
	expect_status(&CFG, sb.sig, more, 403);
	free(more);
	free(sb.body);
}

static void test_signature_check_disabled(void **state)
{
	(void)state;
	struct webhook_cfg cfg = CFG;
	cfg.check_signature = false;
	struct envelope env;
	const char *why;
	assert_int_equal(call(&cfg, NULL, "MessageSid=" SID9 "&From=" FROM_Q "&To=" TO_Q "&Body=unsigned", &env, &why), 0);
	assert_string_equal(env.body, "unsigned");
	assert_string_equal(env.sid, SID9);
	assert_null(env.name);
	env_release(&env);
	/* content checks still apply */
	expect_status(&cfg, NULL, "MessageSid=" SID9 "&From=" FROM_Q "&To=" TO_Q "", 400);
}

static void test_missing_fields(void **state)
{
	(void)state;
	static const char *const no_body[] = { BASE_FIELDS, NULL };
	expect_signed_status(no_body, 400);
	static const char *const no_from[] = {
		"MessageSid", SID1, "To", "whatsapp:+1", "Body", "hi", NULL,
	};
	expect_signed_status(no_from, 400);
	static const char *const no_to[] = {
		"MessageSid", SID1, "From", "whatsapp:+1", "Body", "hi", NULL,
	};
	expect_signed_status(no_to, 400);
	static const char *const no_sid[] = {
		"From", "whatsapp:+1", "To", "whatsapp:+2", "Body", "hi", NULL,
	};
	expect_signed_status(no_sid, 400);
	static const char *const empty_from[] = {
		"MessageSid", SID1, "From", "", "To", "whatsapp:+2", "Body", "hi", NULL,
	};
	expect_signed_status(empty_from, 400);
}

static void test_media_only(void **state)
{
	(void)state;
	static const char *const kv[] = {
		BASE_FIELDS, "Body", "", "NumMedia", "1",
		"MediaUrl0", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
		"MediaContentType0", "image/jpeg", NULL,
	};
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_pairs(&sb, kv);
	assert_int_equal(call(&CFG, sb.sig, sb.body, &env, &why), 0);
	assert_string_equal(env.body, "");
	assert_int_equal(env.nmedia, 1);
	/* The item itself travels on, as media.h's description. */
	assert_non_null(env.media);
	assert_non_null(strstr(env.media, "\"ct\":\"image/jpeg\""));
	assert_non_null(strstr(env.media, "/Media/ME1"));
	env_release(&env);
	free(sb.body);
}

static void test_location_and_bad_button(void **state)
{
	(void)state;
	static const char *const loc[] = {
		BASE_FIELDS, "Body", "", "MessageType", "location", "Latitude", "-23.56",
		"Longitude", "-46.65", "Label", "Clinica Sol", NULL,
	};
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_pairs(&sb, loc);
	assert_int_equal(call(&CFG, sb.sig, sb.body, &env, &why), 0);
	assert_non_null(env.media);
	assert_non_null(strstr(env.media, "\"label\":\"Clinica Sol\""));
	env_release(&env);
	free(sb.body);

	static const char *const plain[] = { BASE_FIELDS, "Body", "hi", NULL };
	sign_pairs(&sb, plain);
	assert_int_equal(call(&CFG, sb.sig, sb.body, &env, &why), 0);
	assert_null(env.media); /* nothing beyond text: nothing stored */
	env_release(&env);
	free(sb.body);

	sign_raw(&sb, "MessageSid=" SID1 "&From=" FROM_Q "&To=" TO_Q "&Body=x&ButtonText=%FF", TOKEN,
		 URL);
	assert_int_equal(call(&CFG, sb.sig, sb.body, &env, &why), 400);
	free(sb.body);
}

static void test_not_utf8(void **state)
{
	(void)state;
	struct signed_body sb;
	sign_raw(&sb, "MessageSid=" SID1 "&From=" FROM_Q "&To=" TO_Q "&Body=caf%FF", TOKEN, URL);
	expect_status(&CFG, sb.sig, sb.body, 400);
	free(sb.body);
	sign_raw(&sb, "MessageSid=" SID1 "&From=" FROM_Q "&To=" TO_Q "&Body=ok&ProfileName=%C0%AF", TOKEN, URL);
	expect_status(&CFG, sb.sig, sb.body, 400);
	free(sb.body);
	sign_raw(&sb, "MessageSid=SM1&From=%ED%A0%80&To=b&Body=ok", TOKEN, URL);
	expect_status(&CFG, sb.sig, sb.body, 400);
	free(sb.body);
}

static void test_bad_encoding(void **state)
{
	(void)state;
	/* unparseable bodies are 400 before the signature is even looked at */
	expect_status(&CFG, "whatever", "MessageSid=" SID1 "&From=" FROM_Q "&To=" TO_Q "&Body=%G1", 400);
	expect_status(&CFG, NULL, "MessageSid=" SID1 "&From=" FROM_Q "&To=" TO_Q "&Body=100%", 400);
	expect_status(&CFG, NULL, "MessageSid=" SID1 "&From=" FROM_Q "&To=" TO_Q "&Body=a%00b", 400);
	expect_status(&CFG, NULL, "=x&MessageSid=" SID1, 400);
}

static void test_too_many_params(void **state)
{
	(void)state;
	struct webhook_cfg cfg = CFG;
	cfg.max_params = 16;
	char body[1024] = "MessageSid=" SID1 "&From=" FROM_Q "&To=" TO_Q "&Body=x";
	for (int i = 0; i < 12; i++) /* 4 + 12 = 16: the limit itself is fine */
		sprintf(body + strlen(body), "&P%d=%d", i, i);
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_raw(&sb, body, TOKEN, URL);
	assert_int_equal(call(&cfg, sb.sig, sb.body, &env, &why), 0);
	env_release(&env);
	free(sb.body);
	strcat(body, "&P12=12");
	sign_raw(&sb, body, TOKEN, URL);
	assert_int_equal(call(&cfg, sb.sig, sb.body, &env, &why), 400);
	assert_non_null(strstr(why, "too many"));
	free(sb.body);
}

static void test_num_media(void **state)
{
	(void)state;
	static const char *const bad[] = { "abc", "", "-1", "11", "1x", "0x1", "99999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *kv[] = { BASE_FIELDS, "Body", "hi", "NumMedia", bad[i], NULL };
		struct signed_body sb;
		struct envelope env;
		const char *why;
		sign_pairs(&sb, kv);
		int rc = call(&CFG, sb.sig, sb.body, &env, &why);
		if (rc != 400)
			fail_msg("NumMedia='%s': got %d", bad[i], rc);
		assert_non_null(strstr(why, "NumMedia"));
		free(sb.body);
	}
	const char *kv[] = { BASE_FIELDS, "Body", "", "NumMedia", "10", NULL };
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_pairs(&sb, kv);
	assert_int_equal(call(&CFG, sb.sig, sb.body, &env, &why), 0);
	assert_int_equal(env.nmedia, 10);
	env_release(&env);
	free(sb.body);
}

/* Identity: a strict MessageSid, our account, our number, a WhatsApp sender. */
static void test_identity(void **state)
{
	(void)state;
	static const char *const numbers[] = { "whatsapp:+14155238886" };
	struct webhook_cfg cfg = CFG;
	cfg.account_sid = ACCT;
	cfg.numbers = numbers;
	cfg.nnumbers = 1;
	struct { const char *const kv[14]; int status; } cases[] = {
		{ { "AccountSid", ACCT, "MessageSid", SID1, "SmsSid", SID1, "From", "whatsapp:+14155550100",
		    "To", "whatsapp:+14155238886", "Body", "hi", NULL }, 0 },
		{ { "AccountSid", ACCT, "MessageSid", "MM0123456789abcdef0123456789abcdef", "From",
		    "whatsapp:+14155550100", "To", "whatsapp:+14155238886", "Body", "hi", NULL }, 0 },
		/* another account's webhook, or none named */
		{ { "AccountSid", "AC1111111111abcdef0123456789abcdef", "MessageSid", SID1, "From",
		    "whatsapp:+14155550100", "To", "whatsapp:+14155238886", "Body", "hi", NULL }, 403 },
		{ { "MessageSid", SID1, "From", "whatsapp:+14155550100", "To", "whatsapp:+14155238886",
		    "Body", "hi", NULL }, 403 },
		/* a SID of the wrong shape, or two that disagree */
		{ { "AccountSid", ACCT, "MessageSid", "SM0123456789ABCDEF0123456789ABCDEF", "From",
		    "whatsapp:+14155550100", "To", "whatsapp:+14155238886", "Body", "hi", NULL }, 400 },
		{ { "AccountSid", ACCT, "MessageSid", SID1, "SmsSid", SID9, "From", "whatsapp:+14155550100",
		    "To", "whatsapp:+14155238886", "Body", "hi", NULL }, 400 },
		/* not our number; not WhatsApp */
		{ { "AccountSid", ACCT, "MessageSid", SID1, "From", "whatsapp:+14155550100", "To",
		    "whatsapp:+14155230000", "Body", "hi", NULL }, 400 },
		{ { "AccountSid", ACCT, "MessageSid", SID1, "From", "+14155550100", "To",
		    "whatsapp:+14155238886", "Body", "hi", NULL }, 400 },
		{ { "AccountSid", ACCT, "MessageSid", SID1, "From", "whatsapp:+1", "To",
		    "whatsapp:+14155238886", "Body", "hi", NULL }, 400 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct signed_body sb;
		struct envelope env;
		const char *why;
		sign_pairs(&sb, cases[i].kv);
		int rc = call(&cfg, sb.sig, sb.body, &env, &why);
		if (rc != cases[i].status)
			fail_msg("case %zu: %d, want %d (%s)", i, rc, cases[i].status, why ? why : "");
		env_release(&env);
		free(sb.body);
	}
}

/*
 * The signature covers name+value run together: moving text across a
 * boundary keeps it valid. Each moved variant of a signed webhook is
 * refused, so none becomes a second message.
 */
static void test_moved_boundaries_are_refused(void **state)
{
	(void)state;
	struct webhook_cfg cfg = CFG;
	cfg.account_sid = ACCT;
	static const char *const orig[] = { "AccountSid", ACCT, "Body", "hi", "From",
					    "whatsapp:+14155550100", "MessageSid", SID1,
					    "MessageType", "text", "NumMedia", "0", "SmsSid", SID1,
					    "To", "whatsapp:+14155238886", NULL };
	/* MessageType=text absorbed into MessageSid's value; then NumMedia too. */
	static const char *const moved1[] = { "AccountSid", ACCT, "Body", "hi", "From",
					      "whatsapp:+14155550100", "MessageSid",
					      SID1 "MessageTypetext", "NumMedia", "0", "SmsSid",
					      SID1, "To", "whatsapp:+14155238886", NULL };
	static const char *const moved2[] = { "AccountSid", ACCT, "Body", "hi", "From",
					      "whatsapp:+14155550100", "MessageSid",
					      SID1 "MessageTypetextNumMedia0", "SmsSid", SID1, "To",
					      "whatsapp:+14155238886", NULL };
	struct signed_body sb;
	struct envelope env;
	const char *why;
	sign_pairs(&sb, orig);
	assert_int_equal(call(&cfg, sb.sig, sb.body, &env, &why), 0);
	env_release(&env);
	char sig[TWSIG_LEN];
	memcpy(sig, sb.sig, sizeof(sig));
	free(sb.body);
	const char *const *moved[] = { moved1, moved2 };
	for (size_t i = 0; i < 2; i++) {
		char *body = NULL;
		for (size_t k = 0; moved[i][k]; k += 2)
			form_append(&body, moved[i][k], moved[i][k + 1]);
		/* Still signed: the attack is real... */
		struct form f;
		char again[TWSIG_LEN];
		assert_int_equal(form_parse(body, strlen(body), 100, &f), FORM_EOK);
		twsig_compute(TOKEN, URL, &f, again);
		form_release(&f);
		assert_string_equal(again, sig);
		/* ...and refused. */
		expect_status(&cfg, sig, body, 400);
		free(body);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepted),
		cmocka_unit_test(test_accepted_raw_twilio_body),
		cmocka_unit_test(test_signature_port_variant),
		cmocka_unit_test(test_missing_signature),
		cmocka_unit_test(test_wrong_signature),
		cmocka_unit_test(test_altered_body),
		cmocka_unit_test(test_signature_check_disabled),
		cmocka_unit_test(test_missing_fields),
		cmocka_unit_test(test_media_only),
		cmocka_unit_test(test_location_and_bad_button),
		cmocka_unit_test(test_not_utf8),
		cmocka_unit_test(test_bad_encoding),
		cmocka_unit_test(test_too_many_params),
		cmocka_unit_test(test_num_media),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_moved_boundaries_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
