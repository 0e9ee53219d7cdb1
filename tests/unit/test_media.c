/*
 * test_media — the webhook's media, location and button fields into a
 * description (webhook_media), its JSON round trip and the text a reader
 * without the media gets (media), magic-number checks and host and type
 * allow-lists (mediacheck).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "media.h"
#include "mediacheck.h"
#include "webhook.h"

static void parse_form(const char *body, struct form *f)
{
	assert_int_equal(form_parse(body, strlen(body), 256, f), FORM_EOK);
}

static void test_image_and_audio(void **state)
{
	(void)state;
	struct form f;
	struct media_msg m;
	const char *why = NULL;
	parse_form("MessageType=image&NumMedia=2"
		   "&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2FMedia%2FME1&MediaContentType0=image%2Fjpeg"
		   "&MediaUrl1=https%3A%2F%2Fapi.twilio.com%2FMedia%2FME2&MediaContentType1=audio%2Fogg",
		   &f);
	assert_int_equal(webhook_media(&f, 2, &m, &why), 0);
	assert_int_equal(m.nitems, 2);
	assert_string_equal(m.type, "image");
	assert_string_equal(m.items[0].url, "https://api.twilio.com/Media/ME1");
	assert_string_equal(m.items[1].ctype, "audio/ogg");
	assert_null(m.lat);
	assert_false(media_empty(&m));

	char *json = media_to_json(&m);
	assert_non_null(json);
	struct media_msg back;
	assert_int_equal(media_from_json(json, &back), 0);
	assert_int_equal(back.nitems, 2);
	assert_string_equal(back.items[1].url, "https://api.twilio.com/Media/ME2");
	assert_string_equal(back.items[0].ctype, "image/jpeg");
	char *again = media_to_json(&back);
	assert_string_equal(json, again);

	char *view = media_text_view("look", &back);
	assert_string_equal(view, "look\n[photo (image/jpeg)]\n[voice note (audio/ogg)]");
	free(view);
	free(again);
	free(json);
	media_release(&back);
	media_release(&m);
	form_release(&f);
}

static void test_missing_items_are_skipped(void **state)
{
	(void)state;
	struct form f;
	struct media_msg m;
	const char *why = NULL;
	/* NumMedia says 3, only MediaUrl1 came: one item, nothing refused. */
	parse_form("NumMedia=3&MediaUrl1=https%3A%2F%2Fapi.twilio.com%2Fa", &f);
	assert_int_equal(webhook_media(&f, 3, &m, &why), 0);
	assert_int_equal(m.nitems, 1);
	assert_null(m.items[0].ctype);
	media_release(&m);
	form_release(&f);
}

static void test_location_and_button(void **state)
{
	(void)state;
	struct form f;
	struct media_msg m;
	const char *why = NULL;
	parse_form("MessageType=location&Latitude=-23.5614&Longitude=-46.6559"
		   "&Address=Av.+Paulista+1000&Label=Cl%C3%ADnica+Sol",
		   &f);
	assert_int_equal(webhook_media(&f, 0, &m, &why), 0);
	char *t = media_text(&m);
	assert_string_equal(t, "shared a location: Clínica Sol, Av. Paulista 1000 (-23.5614, -46.6559)");
	free(t);
	media_release(&m);
	form_release(&f);

	parse_form("MessageType=button&ButtonText=Book+Tuesday&ButtonPayload=book_tue", &f);
	assert_int_equal(webhook_media(&f, 0, &m, &why), 0);
	t = media_text(&m);
	assert_string_equal(t, "tapped: Book Tuesday");
	char *json = media_to_json(&m);
	assert_non_null(strstr(json, "\"payload\":\"book_tue\""));
	free(json);
	free(t);
	media_release(&m);
	form_release(&f);

	/* Coordinates that are not numbers in range: no location, no refusal. */
	const char *bad[] = { "Latitude=91&Longitude=0", "Latitude=abc&Longitude=1",
			      "Latitude=1&Longitude=nan", "Latitude=1", "Latitude=1e400&Longitude=1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		parse_form(bad[i], &f);
		assert_int_equal(webhook_media(&f, 0, &m, &why), 0);
		assert_null(m.lat);
		assert_true(media_empty(&m));
		assert_null(media_to_json(&m));
		media_release(&m);
		form_release(&f);
	}
}

static void test_bad_fields_refused(void **state)
{
	(void)state;
	struct form f;
	struct media_msg m;
	const char *why = NULL;
	parse_form("ButtonText=%FF%FE", &f);
	assert_int_equal(webhook_media(&f, 0, &m, &why), -1);
	assert_non_null(why);
	form_release(&f);
	parse_form("NumMedia=1&MediaUrl0=https%3A%2F%2Fx%2F%C3%28", &f);
	assert_int_equal(webhook_media(&f, 1, &m, &why), -1);
	form_release(&f);
	parse_form("NumMedia=11", &f);
	assert_int_equal(webhook_media(&f, 11, &m, &why), -1);
	form_release(&f);
}

static void test_json_rejects(void **state)
{
	(void)state;
	struct media_msg m;
	const char *bad[] = { "[", "[]", "{\"items\":{}}", "{\"items\":[{\"ct\":\"x\"}]}",
			      "{\"loc\":{\"lat\":\"1\"}}", "{\"type\":1}", "{\"btn\":[]}",
			      "{\"items\":[1]}",
			      "{\"items\":[{\"url\":\"a\"},{\"url\":\"a\"},{\"url\":\"a\"},{\"url\":\"a\"},"
			      "{\"url\":\"a\"},{\"url\":\"a\"},{\"url\":\"a\"},{\"url\":\"a\"},"
			      "{\"url\":\"a\"},{\"url\":\"a\"},{\"url\":\"a\"}]}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (media_from_json(bad[i], &m) != -1)
			fail_msg("accepted %s", bad[i]);
	}
	assert_int_equal(media_from_json(NULL, &m), 0);
	assert_true(media_empty(&m));
	assert_int_equal(media_from_json("", &m), 0);
}

static void test_sniff(void **state)
{
	(void)state;
	assert_string_equal(mediacheck_sniff("\xff\xd8\xff\xe0", 4), "image/jpeg");
	assert_string_equal(mediacheck_sniff("\x89PNG\r\n\x1a\n", 8), "image/png");
	assert_string_equal(mediacheck_sniff("GIF89a", 6), "image/gif");
	assert_string_equal(mediacheck_sniff("RIFF\0\0\0\0WEBPVP8 ", 16), "image/webp");
	assert_string_equal(mediacheck_sniff("OggS\0\2", 6), "audio/ogg");
	assert_string_equal(mediacheck_sniff("%PDF-1.4", 8), "application/pdf");
	assert_null(mediacheck_sniff("<html>", 6));
	assert_null(mediacheck_sniff("\xff\xd8", 2));
	assert_null(mediacheck_sniff("", 0));

	assert_true(mediacheck_bytes_match("image/jpeg", "\xff\xd8\xff\xdb", 4));
	assert_true(mediacheck_bytes_match("IMAGE/JPEG; q=1", "\xff\xd8\xff\xdb", 4));
	assert_false(mediacheck_bytes_match("image/jpeg", "<html>", 6));   /* a lie */
	assert_false(mediacheck_bytes_match("image/png", "\xff\xd8\xff\xdb", 4));
	assert_true(mediacheck_bytes_match("audio/ogg; codecs=opus", "OggS\0", 5));
	assert_false(mediacheck_bytes_match("audio/ogg", "garbage!", 8)); /* corrupt voice note */
	assert_false(mediacheck_bytes_match("application/pdf", "PK\3\4", 4));
	assert_true(mediacheck_bytes_match("audio/mpeg", "ID3", 3)); /* not checked: as declared */
	assert_false(mediacheck_bytes_match(NULL, "x", 1));
}

static void test_lists(void **state)
{
	(void)state;
	const char *hosts = "api.twilio.com, *.twiliocdn.com";
	assert_true(mediacheck_host_allowed("https://api.twilio.com/2010-04-01/x", hosts));
	assert_true(mediacheck_host_allowed("https://API.twilio.com/x", hosts));
	assert_true(mediacheck_host_allowed("https://media.twiliocdn.com/x", hosts));
	assert_false(mediacheck_host_allowed("https://twiliocdn.com/x", hosts));
	assert_false(mediacheck_host_allowed("https://eviltwiliocdn.com/x", hosts));
	assert_false(mediacheck_host_allowed("https://api.twilio.com.evil.com/x", hosts));
	assert_false(mediacheck_host_allowed("https://evil.com/api.twilio.com", hosts));
	assert_false(mediacheck_host_allowed("https://evil.com#@api.twilio.com/", hosts));
	assert_false(mediacheck_host_allowed("file:///etc/passwd", hosts));
	assert_false(mediacheck_host_allowed("ftp://api.twilio.com/x", hosts));
	assert_false(mediacheck_host_allowed("not a url", hosts));
	assert_false(mediacheck_host_allowed("https://api.twilio.com/x", ""));
	assert_true(mediacheck_host_allowed("http://127.0.0.1:8080/m", "127.0.0.1"));

	const char *types = "image/jpeg,audio/ogg, application/pdf";
	assert_true(mediacheck_type_allowed("image/jpeg", types));
	assert_true(mediacheck_type_allowed("audio/ogg; codecs=opus", types));
	assert_true(mediacheck_type_allowed("Application/PDF", types));
	assert_false(mediacheck_type_allowed("image/svg+xml", types));
	assert_false(mediacheck_type_allowed("image/jpe", types));
	assert_false(mediacheck_type_allowed(NULL, types));
	assert_false(mediacheck_type_allowed("", types));

	assert_int_equal(media_kind_of("image/webp"), MEDIA_IMAGE);
	assert_int_equal(media_kind_of("audio/ogg; codecs=opus"), MEDIA_AUDIO);
	assert_int_equal(media_kind_of("application/pdf"), MEDIA_PDF);
	assert_int_equal(media_kind_of("video/mp4"), MEDIA_VIDEO);
	assert_int_equal(media_kind_of("text/vcard"), MEDIA_OTHER);
	assert_int_equal(media_kind_of(NULL), MEDIA_OTHER);
}

static void test_notes(void **state)
{
	(void)state;
	struct media_item it = { .url = (char *)"u", .ctype = (char *)"audio/ogg" };
	char *n = media_item_note(&it, "could not be transcribed");
	assert_string_equal(n, "[voice note (audio/ogg): could not be transcribed]");
	free(n);
	it.ctype = NULL;
	n = media_item_note(&it, NULL);
	assert_string_equal(n, "[file (unknown type)]");
	free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_and_audio),
		cmocka_unit_test(test_missing_items_are_skipped),
		cmocka_unit_test(test_location_and_button),
		cmocka_unit_test(test_bad_fields_refused),
		cmocka_unit_test(test_json_rejects),
		cmocka_unit_test(test_sniff),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_notes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
