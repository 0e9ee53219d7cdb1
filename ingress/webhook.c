/*
 * webhook — validation of Twilio's inbound WhatsApp message webhook.
 *
 * Order matters: the form is parsed first (a body we cannot parse cannot
 * be signed either), then the signature is checked over every parameter
 * received, and only a signed request is looked at for its content.
 */
#include "webhook.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "form.h"
#include "twsig.h"
#include "utf8.h"
#include "xalloc.h"

/* WhatsApp allows at most 10 media per message; more is not Twilio. */
#define WEBHOOK_MEDIA_MAX 10

static bool webhook_text_ok(const char *s)
{
	return s && utf8_valid(s, strlen(s));
}

int webhook_form(const struct webhook_cfg *cfg, const char *signature, const char *body,
		 size_t len, struct form *out, const char **why)
{
	int rc = form_parse(body, len, cfg->max_params, out);
	if (rc == FORM_ETOOMANY) {
		*why = "too many form parameters";
		return 400;
	}
	if (rc != FORM_EOK) {
		*why = "malformed form encoding";
		return 400;
	}
	if (cfg->check_signature && !twsig_valid(cfg->auth_token, cfg->url, out, signature)) {
		*why = (signature && *signature) ? "signature mismatch" : "missing signature";
		form_release(out);
		return 403;
	}
	return 0;
}

int webhook_inbound(const struct webhook_cfg *cfg, const char *signature, const char *body,
		    size_t len, struct envelope *out, const char **why)
{
	struct form f;
	int status = 400;

	memset(out, 0, sizeof(*out));
	int rc = webhook_form(cfg, signature, body, len, &f, why);
	if (rc)
		return rc;

	const char *sid = form_get(&f, "MessageSid");
	const char *from = form_get(&f, "From");
	const char *to = form_get(&f, "To");
	const char *text = form_get(&f, "Body");
	const char *name = form_get(&f, "ProfileName");
	const char *nmedia = form_get(&f, "NumMedia");
	if (!sid || !*sid || !from || !*from || !to || !*to) {
		*why = "missing MessageSid, From or To";
		goto fail;
	}
	if (!text) {
		*why = "missing Body";
		goto fail;
	}
	if (!webhook_text_ok(text) || !webhook_text_ok(from) || !webhook_text_ok(to) ||
	    (name && !webhook_text_ok(name)) || !webhook_text_ok(sid)) {
		*why = "text is not valid UTF-8";
		goto fail;
	}
	long media = 0;
	if (nmedia) {
		char *end;
		media = strtol(nmedia, &end, 10);
		if (end == nmedia || *end || media < 0 || media > WEBHOOK_MEDIA_MAX) {
			*why = "bad NumMedia";
			goto fail;
		}
	}

	out->type = ENV_INBOUND;
	out->version = ENV_VERSION;
	out->ts = clock_wall_ms();
	out->sid = xstrdup(sid);
	out->from = xstrdup(from);
	out->to = xstrdup(to);
	out->body = xstrdup(text);
	out->name = name ? xstrdup(name) : NULL;
	out->nmedia = media;
	form_release(&f);
	return 0;
fail:
	form_release(&f);
	return status;
}
