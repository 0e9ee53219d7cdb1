/* fuzz_webhook — form parsing, signature checking and webhook/event conversion on arbitrary bodies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "form.h"
#include "twsig.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The first line is the signature header, the rest the body. */
	const char *p = (const char *)data;
	const char *nl = memchr(p, '\n', size);
	size_t hl = nl ? (size_t)(nl - p) : 0;
	char *sig = strndup(p, hl);
	const char *body = nl ? nl + 1 : p;
	size_t blen = nl ? size - hl - 1 : size;
	const char *why = NULL;
	struct envelope env;
	static const char *const numbers[] = { "whatsapp:+14155238886" };
	struct webhook_cfg on = { "tok", "https://bot.example.com/twilio/messages", true, 256,
				  "AC0123456789abcdef0123456789abcdef",
				  "WS0123456789abcdef0123456789abcdef", numbers, 1 };
	struct webhook_cfg off = { "tok", "https://bot.example.com/twilio/messages", false, 256,
				   NULL, NULL, NULL, 0 };

	if (webhook_inbound(&on, sig, body, blen, &env, &why) == 0)
		env_release(&env);
	if (webhook_inbound(&off, sig, body, blen, &env, &why) == 0)
		env_release(&env);
	struct form f;
	if (form_parse(body, blen, 256, &f) == FORM_EOK) {
		int (*conv[])(const struct webhook_cfg *, const struct form *, struct envelope *,
			      const char **) = { events_conversations, events_taskrouter, events_status };
		for (size_t i = 0; i < 3; i++) {
			if (conv[i](&on, &f, &env, &why) == EVENTS_FORWARD)
				env_release(&env);
			if (conv[i](&off, &f, &env, &why) == EVENTS_FORWARD)
				env_release(&env);
		}
		char *appended = NULL;
		for (size_t i = 0; i < f.n && i < 8; i++)
			form_append(&appended, f.params[i].name, f.params[i].value);
		free(appended);
		(void)twsig_valid("tok", "https://x/y", &f, sig);
		form_release(&f);
	}
	if (events_admin(EV_ADMIN_HANDBACK, body, blen, &env, &why) == EVENTS_FORWARD)
		env_release(&env);
	free(sig);
	return 0;
}
