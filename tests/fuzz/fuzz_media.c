/* fuzz_media — media descriptions (JSON), magic-number sniffing, host and type lists. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media.h"
#include "mediacheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = strndup((const char *)data, size);
	struct media_msg m;

	(void)mediacheck_sniff(data, size);
	(void)mediacheck_bytes_match("image/jpeg", data, size);
	(void)mediacheck_bytes_match(s, data, size);
	(void)media_kind_of(s);
	(void)mediacheck_type_allowed(s, "image/jpeg,audio/ogg, application/pdf");
	(void)mediacheck_type_allowed("image/png", s);
	(void)mediacheck_host_allowed(s, "api.twilio.com,*.twilio.com");
	(void)mediacheck_host_allowed("https://media.twiliocdn.com/x", s);
	if (media_from_json(s, &m) == 0) {
		/* What parsed writes back and parses the same. */
		char *again = media_to_json(&m);
		struct media_msg m2;
		if (again && media_from_json(again, &m2) == 0) {
			char *third = media_to_json(&m2);
			if (!third || strcmp(third, again))
				abort();
			free(third);
			media_release(&m2);
		} else if (again) {
			abort();
		}
		char *view = media_text_view(s, &m);
		free(view);
		for (size_t i = 0; i < m.nitems; i++)
			free(media_item_note(&m.items[i], "x"));
		free(again);
		media_release(&m);
	}
	free(s);
	return 0;
}
