/*
 * test_twsig — common/twsig: X-Twilio-Signature computation against known
 * vectors (ports, duplicate parameters, a WhatsApp webhook) and
 * twsig_valid's acceptance of port variants and rejection of everything
 * that does not match.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "twsig.h"

#define URL_PLAIN "https://mycompany.com/myapp.php?foo=1&bar=2"
#define URL_443 "https://mycompany.com:443/myapp.php?foo=1&bar=2"
#define URL_80 "http://mycompany.com:80/myapp.php?foo=1&bar=2"
#define URL_1234 "http://mycompany.com:1234/myapp.php?foo=1&bar=2"

#define SIG_PLAIN "RSOYDt4T1cUTdK1PDd93/VVr8B8="
#define SIG_443 "kvajT1Ptam85bY51eRf/AJRuM3w="

#define WA_URL "https://bot.example.com/twilio/whatsapp"

/* Builds a form from name/value pairs (copied; form_release frees). */
static void make_form(struct form *f, const char *const (*pairs)[2], size_t n)
{
	f->n = n;
	f->params = calloc(n ? n : 1, sizeof(*f->params));
	assert_non_null(f->params);
	for (size_t i = 0; i < n; i++) {
		f->params[i].name = strdup(pairs[i][0]);
		f->params[i].value = strdup(pairs[i][1]);
	}
}

static const char *const CALL_PARAMS[][2] = {
	{ "CallSid", "CA1234567890ABCDE" },
	{ "Caller", "+14158675309" },
	{ "Digits", "1234" },
	{ "From", "+14158675309" },
	{ "To", "+18005551212" },
};
#define N_CALL (sizeof(CALL_PARAMS) / sizeof(CALL_PARAMS[0]))

/* The same parameters in another order. */
static const char *const CALL_PARAMS_SHUFFLED[][2] = {
	{ "To", "+18005551212" },
	{ "Digits", "1234" },
	{ "From", "+14158675309" },
	{ "CallSid", "CA1234567890ABCDE" },
	{ "Caller", "+14158675309" },
};

static const char *const DUP_PARAMS[][2] = {
	{ "Sid", "CA123" },
	{ "SidAccount", "AC123" },
	{ "Digits", "5678" },
	{ "Digits", "1234" },
	{ "Digits", "1234" },
};

static const char *const WA_PARAMS[][2] = {
	{ "AccountSid", "AC00000000000000000000000000000000" },
	{ "ApiVersion", "2010-04-01" },
	{ "Body", "Hi there" },
	{ "From", "whatsapp:+14155550100" },
	{ "MessageSid", "SM00000000000000000000000000000001" },
	{ "NumMedia", "0" },
	{ "ProfileName", "Ana" },
	{ "To", "whatsapp:+14155238886" },
	{ "WaId", "14155550100" },
};

static void assert_sig(const char *token, const char *url, const struct form *f, const char *want)
{
	char out[TWSIG_LEN];
	memset(out, 'Z', sizeof(out));
	twsig_compute(token, url, f, out);
	assert_int_equal(strlen(out), TWSIG_LEN - 1);
	assert_string_equal(out, want);
}

static void test_vectors_ports(void **state)
{
	(void)state;
	struct form f;
	make_form(&f, CALL_PARAMS, N_CALL);
	assert_sig("12345", URL_PLAIN, &f, SIG_PLAIN);
	assert_sig("12345", URL_443, &f, SIG_443);
	assert_sig("12345", URL_80, &f, "0ZXoZLH/DfblKGATFgpif+LLRf4=");
	assert_sig("12345", URL_1234, &f, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
	form_release(&f);
}

static void test_param_order_irrelevant(void **state)
{
	(void)state;
	struct form f;
	make_form(&f, CALL_PARAMS_SHUFFLED, N_CALL);
	assert_sig("12345", URL_PLAIN, &f, SIG_PLAIN);
	form_release(&f);
}

static void test_vector_duplicates(void **state)
{
	(void)state;
	struct form f;
	make_form(&f, DUP_PARAMS, 5);
	assert_sig("12345", URL_PLAIN, &f, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
	assert_true(twsig_valid("12345", URL_PLAIN, &f, "IK+Dwps556ElfBT0I3Rgjkr1wJU="));
	form_release(&f);
}

static void test_vector_whatsapp(void **state)
{
	(void)state;
	struct form f;
	make_form(&f, WA_PARAMS, sizeof(WA_PARAMS) / sizeof(WA_PARAMS[0]));
	assert_sig("test_token", WA_URL, &f, "Y7egXjnHM/mbPQlX/fsBhh8hnbg=");
	form_release(&f);

	/* the same webhook as Twilio posts it, through form_parse */
	static const char body[] =
		"AccountSid=AC00000000000000000000000000000000&ApiVersion=2010-04-01"
		"&Body=Hi+there&From=whatsapp%3A%2B14155550100"
		"&MessageSid=SM00000000000000000000000000000001&NumMedia=0&ProfileName=Ana"
		"&To=whatsapp%3A%2B14155238886&WaId=14155550100";
	assert_int_equal(form_parse(body, strlen(body), 64, &f), FORM_EOK);
	assert_int_equal(f.n, 9);
	assert_sig("test_token", WA_URL, &f, "Y7egXjnHM/mbPQlX/fsBhh8hnbg=");
	assert_true(twsig_valid("test_token", WA_URL, &f, "Y7egXjnHM/mbPQlX/fsBhh8hnbg="));
	form_release(&f);

	/* an added empty-valued parameter is still signed (its name alone) */
	static const char more[] =
		"ToCountry=&AccountSid=AC00000000000000000000000000000000&ApiVersion=2010-04-01"
		"&Body=Hi+there&From=whatsapp%3A%2B14155550100"
		"&MessageSid=SM00000000000000000000000000000001&NumMedia=0&ProfileName=Ana"
		"&To=whatsapp%3A%2B14155238886&WaId=14155550100";
	assert_int_equal(form_parse(more, strlen(more), 64, &f), FORM_EOK);
	assert_int_equal(f.n, 10);
	assert_false(twsig_valid("test_token", WA_URL, &f, "Y7egXjnHM/mbPQlX/fsBhh8hnbg="));
	form_release(&f);
}

static void test_no_params(void **state)
{
	(void)state;
	struct form f = { NULL, 0 };
	assert_sig("12345", URL_PLAIN, NULL, "zYQTYrRWXE7LtzbG4PfP7/bkkGo=");
	assert_sig("12345", URL_PLAIN, &f, "zYQTYrRWXE7LtzbG4PfP7/bkkGo=");
}

static void test_utf8_value(void **state)
{
	(void)state;
	static const char *const p[][2] = { { "Body", "caf\xc3\xa9" } };
	struct form f;
	make_form(&f, p, 1);
	assert_sig("tok", "https://bot.example.com/twilio/messages", &f,
		   "phigUF7KW4pkpi1s9+AhqSiVIMY=");
	form_release(&f);
}

static void test_valid_exact(void **state)
{
	(void)state;
	struct form f;
	make_form(&f, CALL_PARAMS, N_CALL);
	assert_true(twsig_valid("12345", URL_PLAIN, &f, SIG_PLAIN));
	assert_true(twsig_valid("12345", URL_443, &f, SIG_443));
	assert_true(twsig_valid("12345", URL_1234, &f, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="));
	form_release(&f);
}

static void test_valid_port_variants(void **state)
{
	(void)state;
	struct form f;
	make_form(&f, CALL_PARAMS, N_CALL);
	/* configured without a port, Twilio signed with :443 */
	assert_true(twsig_valid("12345", URL_PLAIN, &f, SIG_443));
	/* configured with :443, Twilio signed without a port */
	assert_true(twsig_valid("12345", URL_443, &f, SIG_PLAIN));
	/* http: configured without a port, signed with :80 */
	assert_true(twsig_valid("12345", "http://mycompany.com/myapp.php?foo=1&bar=2", &f,
				"0ZXoZLH/DfblKGATFgpif+LLRf4="));
	/* a non-default port is not the same URL as :443 */
	assert_false(twsig_valid("12345", URL_1234, &f, SIG_443));
	/* https with :80 is not a variant either */
	assert_false(twsig_valid("12345", URL_PLAIN, &f, "0ZXoZLH/DfblKGATFgpif+LLRf4="));
	form_release(&f);
}

static void test_invalid(void **state)
{
	(void)state;
	struct form f;
	make_form(&f, CALL_PARAMS, N_CALL);
	assert_false(twsig_valid("12346", URL_PLAIN, &f, SIG_PLAIN));
	assert_false(twsig_valid("", URL_PLAIN, &f, SIG_PLAIN));
	assert_false(twsig_valid("12345", URL_PLAIN, &f, NULL));
	assert_false(twsig_valid("12345", URL_PLAIN, &f, ""));
	/* wrong length: truncated, extended, without padding */
	assert_false(twsig_valid("12345", URL_PLAIN, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8"));
	assert_false(twsig_valid("12345", URL_PLAIN, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8=="));
	assert_false(twsig_valid("12345", URL_PLAIN, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8= "));
	assert_false(twsig_valid("12345", URL_PLAIN, &f, "R"));
	/* same length, one character off, or case changed */
	assert_false(twsig_valid("12345", URL_PLAIN, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B9="));
	assert_false(twsig_valid("12345", URL_PLAIN, &f, "rsoydt4t1cutdk1pdd93/vvr8b8="));
	/* other URL */
	assert_false(twsig_valid("12345", "https://mycompany.com/myapp.php?foo=1&bar=3", &f,
				 SIG_PLAIN));
	assert_false(twsig_valid("12345", "http://mycompany.com/myapp.php?foo=1&bar=2", &f,
				 SIG_PLAIN));

	/* altered parameter value */
	free(f.params[2].value);
	f.params[2].value = strdup("1235");
	assert_false(twsig_valid("12345", URL_PLAIN, &f, SIG_PLAIN));
	form_release(&f);

	/* extra parameter */
	const char *extra[N_CALL + 1][2];
	memcpy(extra, CALL_PARAMS, sizeof(CALL_PARAMS));
	extra[N_CALL][0] = "Extra";
	extra[N_CALL][1] = "";
	make_form(&f, (const char *const(*)[2])extra, N_CALL + 1);
	assert_false(twsig_valid("12345", URL_PLAIN, &f, SIG_PLAIN));
	form_release(&f);

	/* missing parameter */
	make_form(&f, CALL_PARAMS, N_CALL - 1);
	assert_false(twsig_valid("12345", URL_PLAIN, &f, SIG_PLAIN));
	form_release(&f);

	/* a name/value boundary shift is a different parameter set but the same
	 * concatenation: documented weakness of Twilio's scheme, still valid */
	static const char *const a[][2] = { { "ab", "c" } };
	static const char *const b[][2] = { { "a", "bc" } };
	char sa[TWSIG_LEN], sb[TWSIG_LEN];
	make_form(&f, a, 1);
	twsig_compute("k", "https://x/", &f, sa);
	form_release(&f);
	make_form(&f, b, 1);
	twsig_compute("k", "https://x/", &f, sb);
	form_release(&f);
	assert_string_equal(sa, sb);
}

static void test_url_without_scheme(void **state)
{
	(void)state;
	struct form f;
	char sig[TWSIG_LEN];
	make_form(&f, CALL_PARAMS, N_CALL);
	twsig_compute("12345", "mycompany.com/x", &f, sig);
	assert_true(twsig_valid("12345", "mycompany.com/x", &f, sig));
	assert_false(twsig_valid("12345", "mycompany.com/x", &f, SIG_PLAIN));
	form_release(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_ports),
		cmocka_unit_test(test_param_order_irrelevant),
		cmocka_unit_test(test_vector_duplicates),
		cmocka_unit_test(test_vector_whatsapp),
		cmocka_unit_test(test_no_params),
		cmocka_unit_test(test_utf8_value),
		cmocka_unit_test(test_valid_exact),
		cmocka_unit_test(test_valid_port_variants),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_url_without_scheme),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
