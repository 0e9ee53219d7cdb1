/*
 * test_flexapi — flex-worker/flexapi: the Interaction form (Channel and
 * Routing as JSON strings in a form), and parsing of Conversations/Flex
 * answers, including the markers that make a retried handoff resume.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "flexapi.h"
#include "form.h"

static void test_interaction_form(void **state)
{
	(void)state;
	struct flex_interaction_req r = {
		.ch = "CH5f0c00000000000000000000000000aa", .workspace = "WS1", .workflow = "WW2",
		.task_channel = "chat", .customer = "whatsapp:+5511988887777", .name = "Ana Souza",
		.conv_key = "whatsapp:+5511988887777|whatsapp:+14155238886", .trigger = "rule",
		.reason = "customer wrote 'humano'", .summary = NULL, .turns = 3 };
	char *body = flexapi_interaction_form(&r);
	struct form f;
	assert_int_equal(form_parse(body, strlen(body), 10, &f), FORM_EOK);
	assert_int_equal(f.n, 2);
	json_t *ch = json_loads(form_get(&f, "Channel"), 0, NULL);
	json_t *ro = json_loads(form_get(&f, "Routing"), 0, NULL);
	assert_non_null(ch);
	assert_non_null(ro);
	assert_string_equal(json_string_value(json_object_get(ch, "type")), "whatsapp");
	assert_string_equal(json_string_value(json_object_get(ch, "initiated_by")), "customer");
	assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "properties"),
							      "media_channel_sid")), r.ch);
	json_t *props = json_object_get(ro, "properties");
	assert_string_equal(json_string_value(json_object_get(props, "workspace_sid")), "WS1");
	assert_string_equal(json_string_value(json_object_get(props, "workflow_sid")), "WW2");
	assert_string_equal(json_string_value(json_object_get(props, "task_channel_unique_name")), "chat");
	json_t *a = json_object_get(props, "attributes");
	assert_string_equal(json_string_value(json_object_get(a, "customerName")), "Ana Souza");
	assert_string_equal(json_string_value(json_object_get(a, "escalationTrigger")), "rule");
	assert_int_equal(json_integer_value(json_object_get(a, "turns")), 3);
	assert_null(json_object_get(a, "summary")); /* absent, not null or "" */
	json_decref(ch);
	json_decref(ro);
	form_release(&f);
	free(body);
}

static void test_parse_interaction(void **state)
{
	(void)state;
	const char *ok = "{\"sid\":\"KD1\",\"channel\":{\"type\":\"whatsapp\",\"sid\":\"UO1\"},"
			 "\"routing\":{\"reservation\":null,\"properties\":{\"sid\":\"WT1\"}}}";
	struct flex_sids s;
	assert_int_equal(flexapi_parse_interaction(ok, strlen(ok), &s), 0);
	assert_string_equal(s.kd, "KD1");
	assert_string_equal(s.uo, "UO1");
	assert_string_equal(s.wt, "WT1");
	flexapi_sids_release(&s);
	const char *bad[] = { "{\"sid\":\"KD1\"}", "[]", "not json", "{\"sid\":1,\"channel\":{\"sid\":\"UO\"}}" };
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(flexapi_parse_interaction(bad[i], strlen(bad[i]), &s), -1);
		flexapi_sids_release(&s);
	}
}

static void test_parse_participant_conversations(void **state)
{
	(void)state;
	const char *body =
		"{\"conversations\":["
		"{\"conversation_sid\":\"CHa\",\"conversation_state\":\"active\",\"conversation_unique_name\":null},"
		"{\"conversation_sid\":\"CHb\",\"conversation_state\":\"closed\"},"
		"{\"conversation_sid\":\"CHc\",\"conversation_state\":\"inactive\",\"conversation_unique_name\":\"x\"},"
		"{\"conversation_sid\":\"CHown\",\"conversation_state\":\"active\",\"conversation_unique_name\":\"baton-7-1\"}],"
		"\"meta\":{\"next_page_url\":\"https://conversations.twilio.com/v1/ParticipantConversations?Page=1\"}}";
	char **open = NULL, *own = NULL, *next = NULL;
	assert_int_equal(flexapi_parse_participant_conversations(body, strlen(body), "baton-7-1",
								 &open, &own, &next), 0);
	assert_string_equal(open[0], "CHa");
	assert_string_equal(open[1], "CHc");
	assert_null(open[2]);
	assert_string_equal(own, "CHown");
	assert_non_null(strstr(next, "Page=1"));
	flexapi_strv_free(open);
	free(own);
	free(next);
	own = NULL;
	assert_int_equal(flexapi_parse_participant_conversations("{}", 2, "u", &open, &own, &next), -1);
	flexapi_strv_free(open);
}

static void test_injected_and_marks(void **state)
{
	(void)state;
	char *a0 = flexapi_turn_attributes(42, 0, 0), *a2 = flexapi_turn_attributes(42, 2, 0);
	char *other = flexapi_turn_attributes(41, 1, 0);
	json_t *list = json_pack("{s:[{s:s},{s:s},{s:s},{s:s},{s:s}]}", "messages", "attributes", a0,
				 "attributes", a2, "attributes", other, "attributes", "{}",
				 "attributes", "not json");
	char *body = json_dumps(list, 0);
	bool done[3] = { false, false, false };
	const struct flex_slot slots[3] = { { 0, 0 }, { 1, 0 }, { 2, 0 } };
	char *next = NULL;
	assert_int_equal(flexapi_parse_injected(body, strlen(body), 42, slots, done, 3, &next), 0);
	assert_true(done[0]);
	assert_false(done[1]); /* turn 1 belongs to job 41 */
	assert_true(done[2]);
	assert_null(next);
	free(body);
	json_decref(list);
	free(a0);
	free(a2);
	free(other);

	struct flex_sids in = { .kd = "KD9", .uo = "UO9", .wt = "WT9" }, out;
	char *mark = flexapi_mark_attributes("k|b", 42, &in);
	json_t *conv = json_pack("{s:s, s:s}", "sid", "CH1", "attributes", mark);
	body = json_dumps(conv, 0);
	assert_int_equal(flexapi_parse_marked(body, strlen(body), &out), 0);
	assert_string_equal(out.kd, "KD9");
	assert_string_equal(out.uo, "UO9");
	assert_string_equal(out.wt, "WT9");
	flexapi_sids_release(&out);
	free(body);
	free(mark);
	json_decref(conv);
	const char *plain = "{\"sid\":\"CH1\",\"attributes\":\"{}\"}";
	assert_int_equal(flexapi_parse_marked(plain, strlen(plain), &out), -1);
}

/* A turn with several media items is several messages; each is found by
 * its turn and item, so a retry posts only the missing ones. */
static void test_injected_items(void **state)
{
	(void)state;
	char *t0 = flexapi_turn_attributes(7, 0, 0);
	char *t1i0 = flexapi_turn_attributes(7, 1, 0), *t1i2 = flexapi_turn_attributes(7, 1, 2);
	assert_string_equal(t0, "{\"baton_job\":7,\"baton_turn\":0}");
	assert_string_equal(t1i2, "{\"baton_job\":7,\"baton_turn\":1,\"baton_item\":2}");
	json_t *list = json_pack("{s:[{s:s},{s:s},{s:s},{s:s},{s:s}], s:{s:s}}", "messages",
				 "attributes", t0, "attributes", t1i0, "attributes", t1i2,
				 "attributes", "{\"baton_job\":7,\"baton_turn\":1,\"baton_item\":-1}",
				 "attributes", "{\"baton_job\":7,\"baton_turn\":1,\"baton_item\":\"1\"}",
				 "meta", "next_page_url", "https://conversations.twilio.com/v1/next");
	char *body = json_dumps(list, 0);
	/* turn 0 (no media), turn 1 items 0..2, turn 2 */
	const struct flex_slot slots[5] = { { 0, 0 }, { 1, 0 }, { 1, 1 }, { 1, 2 }, { 2, 0 } };
	bool done[5] = { false };
	char *next = NULL;
	assert_int_equal(flexapi_parse_injected(body, strlen(body), 7, slots, done, 5, &next), 0);
	assert_true(done[0]);
	assert_true(done[1]);
	assert_false(done[2]); /* item 1: a negative and a string index name nothing */
	assert_true(done[3]);
	assert_false(done[4]);
	assert_string_equal(next, "https://conversations.twilio.com/v1/next");
	free(next);
	free(body);
	json_decref(list);
	free(t0);
	free(t1i0);
	free(t1i2);
	assert_int_equal(flexapi_parse_injected("[]", 2, 7, slots, done, 5, &next), -1);
}

static void test_forwarded_items(void **state)
{
	(void)state;
	char *f0 = flexapi_forward_attributes(31, 0), *f2 = flexapi_forward_attributes(31, 2);
	char *other = flexapi_forward_attributes(30, 1);
	assert_string_equal(f0, "{\"baton_seq\":31}");
	assert_string_equal(f2, "{\"baton_seq\":31,\"baton_item\":2}");
	json_t *list = json_pack("{s:[{s:s},{s:s},{s:s},{s:s},{s:s}]}", "messages", "attributes", f2,
				 "attributes", other, "attributes", f0, "attributes", "{}",
				 "attributes", "{\"baton_seq\":31,\"baton_item\":9}");
	char *body = json_dumps(list, 0);
	bool done[3] = { false, false, false };
	flexapi_parse_forwarded(body, strlen(body), 31, done, 3);
	assert_true(done[0]);
	assert_false(done[1]); /* item 1 is seq 30's */
	assert_true(done[2]);  /* item 9 is beyond n: ignored, not written */
	bool none[1] = { false };
	flexapi_parse_forwarded("not json", 8, 31, none, 1);
	assert_false(none[0]);
	free(body);
	json_decref(list);
	free(f0);
	free(f2);
	free(other);
}

static void test_service_and_media_sid(void **state)
{
	(void)state;
	const char *conv = "{\"sid\":\"CH1\",\"chat_service_sid\":\"IS0123456789abcdef0123456789abcdef\"}";
	char *is = NULL;
	assert_int_equal(flexapi_parse_service(conv, strlen(conv), &is), 0);
	assert_string_equal(is, "IS0123456789abcdef0123456789abcdef");
	free(is);
	const char *noservice = "{\"sid\":\"CH1\",\"chat_service_sid\":null}";
	assert_int_equal(flexapi_parse_service(noservice, strlen(noservice), &is), -1);
	assert_null(is);

	const char *mcs = "{\"sid\":\"ME0123456789abcdef0123456789ABCDEF\",\"size\":12,"
			  "\"content_type\":\"image/jpeg\",\"links\":{}}";
	char *me = NULL;
	assert_int_equal(flexapi_parse_media_sid(mcs, strlen(mcs), &me), 0);
	assert_string_equal(me, "ME0123456789abcdef0123456789ABCDEF");
	free(me);
	/* Only an ME SID of the pattern MediaSid takes goes into a message. */
	const char *bad[] = { "{\"sid\":\"ME123\"}", "{\"sid\":\"IM0123456789abcdef0123456789abcdef\"}",
			      "{\"sid\":\"ME0123456789abcdef0123456789abcdeg\"}",
			      "{\"sid\":\"ME0123456789abcdef0123456789abcdef0\"}", "{\"sid\":7}",
			      "<html>" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(flexapi_parse_media_sid(bad[i], strlen(bad[i]), &me), -1);
		assert_null(me);
	}

	/* A Media resource names the message it went with, once it did. */
	const char *sent = "{\"sid\":\"ME1\",\"message_sid\":\"IM0123456789abcdef0123456789abcdef\","
			   "\"channel_sid\":\"CH1\"}";
	const char *unsent = "{\"sid\":\"ME1\",\"message_sid\":null,\"channel_sid\":null}";
	assert_true(flexapi_parse_media_attached(sent, strlen(sent)));
	assert_false(flexapi_parse_media_attached(unsent, strlen(unsent)));
	const char *empty = "{\"message_sid\":\"\"}";
	assert_false(flexapi_parse_media_attached(empty, strlen(empty)));
	assert_false(flexapi_parse_media_attached("oops", 4));
}

static void test_participant_lookup(void **state)
{
	(void)state;
	const char *body = "{\"participants\":[{\"sid\":\"MB1\",\"identity\":\"agent-7\",\"messaging_binding\":null},"
			   "{\"sid\":\"MB2\",\"messaging_binding\":{\"address\":\"whatsapp:+1555\"}}]}";
	char *mb = NULL, *next = NULL;
	assert_int_equal(flexapi_parse_participant(body, strlen(body), "whatsapp:+1555", &mb, &next), 0);
	assert_string_equal(mb, "MB2");
	free(mb);
	assert_int_equal(flexapi_parse_participant(body, strlen(body), "whatsapp:+1666", &mb, &next), 0);
	assert_null(mb);
}

static void test_transcript(void **state)
{
	(void)state;
	struct env_turn t[] = { { .role = ROLE_CUSTOMER, .text = "Where is the clinic?", .ts = 1714564800000ull },
				{ .role = ROLE_AI, .text = "Av. Paulista 1000.", .ts = 1714564860000ull },
				{ .role = ROLE_CUSTOMER, .text = "humano", .ts = 0 } };
	char *s = flexapi_transcript(t, 3, "Customer (Ana)");
	assert_string_equal(s, "Conversation so far (3 messages):\n"
			       "[12:00 UTC] Customer (Ana): Where is the clinic?\n"
			       "[12:01 UTC] Assistant: Av. Paulista 1000.\n"
			       "[--:-- UTC] Customer (Ana): humano");
	free(s);
	char *l = flexapi_author_label(ROLE_CUSTOMER, NULL);
	assert_string_equal(l, "Customer");
	free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_interaction_form),
		cmocka_unit_test(test_parse_interaction),
		cmocka_unit_test(test_parse_participant_conversations),
		cmocka_unit_test(test_injected_and_marks),
		cmocka_unit_test(test_injected_items),
		cmocka_unit_test(test_forwarded_items),
		cmocka_unit_test(test_service_and_media_sid),
		cmocka_unit_test(test_participant_lookup),
		cmocka_unit_test(test_transcript),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
