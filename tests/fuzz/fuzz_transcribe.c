/* fuzz_transcribe — a transcription API's answer (ai-worker/transcribe.c), as a 200 and as an error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transcribe.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 400, 500, 0 };
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		char *text = NULL, *why = NULL;
		enum transcribe_outcome oc =
			transcribe_parse(statuses[i], (const char *)data, size, &text, &why);
		/* A transcript is non-empty UTF-8 within the router's bound; anything else says why. */
		if (oc == TR_OK && (!text || !*text || why || strlen(text) > 4 * TRANSCRIBE_CHARS_MAX ||
				    !utf8_valid(text, strlen(text))))
			abort();
		if (oc != TR_OK && (text || !why))
			abort();
		free(text);
		free(why);
	}
	return 0;
}
