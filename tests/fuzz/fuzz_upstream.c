/* fuzz_upstream — every parser of an upstream answer: LLM (both APIs, both
 * escalation modes), Twilio Messages (a send, and the list a reconciling
 * egress reads), Conversations and Flex. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flexapi.h"
#include "llm.h"
#include "twilio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* First byte picks the HTTP status, the rest is the body. */
	static const long statuses[] = { 200, 201, 400, 401, 429, 500, 529, 0 };
	long status = statuses[data[0] % 8];
	const char *body = (const char *)data + 1;
	size_t len = size - 1;

	for (int prov = 0; prov < 2; prov++)
		for (int mode = 0; mode < 2; mode++) {
			struct llm_cfg cfg = { .provider = prov, .esc_mode = mode, .tag = "[ESCALAR]",
					       .api_key = "sk-secret-key" };
			struct llm_reply r;
			(void)llm_parse(&cfg, status, body, len, &r);
			if (r.error && strstr(r.error, "sk-secret-key"))
				abort(); /* a key must never reach a log line */
			llm_reply_release(&r);
		}
	struct tw_result tr;
	(void)twilio_parse(status, body, len, &tr);
	tw_result_release(&tr);
	struct tw_match m = { .to = "whatsapp:+5511988887777", .from = "whatsapp:+14155238886",
			      .body = "Hello", .exclude = "SMa,SMb", .created_ms = 1796212800000ull };
	char *lsid = NULL, *lnext = NULL;
	(void)twilio_list_find(status, body, len, "http://t", &m, &lsid, &lnext);
	free(lsid);
	free(lnext);

	struct flex_sids s;
	if (flexapi_parse_interaction(body, len, &s) == 0)
		flexapi_sids_release(&s);
	flexapi_sids_release(&s);
	if (flexapi_parse_marked(body, len, &s) == 0)
		flexapi_sids_release(&s);
	char **open = NULL, *own = NULL, *next = NULL, *sid = NULL, *state = NULL, *mb = NULL;
	(void)flexapi_parse_participant_conversations(body, len, "baton-1-1", &open, &own, &next);
	flexapi_strv_free(open);
	free(own);
	free(next);
	next = NULL;
	(void)flexapi_parse_sid(body, len, &sid, &state);
	free(sid);
	free(state);
	(void)flexapi_parse_participant(body, len, "whatsapp:+1555", &mb, &next);
	free(mb);
	free(next);
	next = NULL;
	bool done[8] = { false };
	const struct flex_slot slots[8] = { { 0, 0 }, { 1, 0 }, { 1, 1 }, { 1, 2 },
					    { 2, 0 }, { 3, 0 }, { 3, 1 }, { 4, 0 } };
	(void)flexapi_parse_injected(body, len, 7, slots, done, 8, &next);
	free(next);
	flexapi_parse_forwarded(body, len, 31, done, 8);
	char *is = NULL, *me = NULL;
	(void)flexapi_parse_service(body, len, &is);
	(void)flexapi_parse_media_sid(body, len, &me);
	(void)flexapi_parse_media_attached(body, len);
	free(is);
	free(me);
	return 0;
}
