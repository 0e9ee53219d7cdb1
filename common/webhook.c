/*
 * webhook — validation of Twilio's inbound WhatsApp message webhook.
 *
 * Order matters: the form is parsed first (a body we cannot parse cannot
 * be signed either), then the signature is checked over every parameter
 * received, and only a signed request is looked at for its content.
 */
#include "webhook.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "form.h"
#include "media.h"
#include "twsig.h"
#include "utf8.h"
#include "xalloc.h"

/* Longest location or button field kept (WhatsApp's own limits are lower). */
#define WEBHOOK_MEDIA_FIELD_MAX 1024

/* A field (not NULL) in valid UTF-8, at most max bytes. */
static bool webhook_field_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	return n <= max && utf8_valid(s, n);
}

/* A coordinate Twilio would send: a decimal number within ±limit. */
static bool webhook_coord_ok(const char *v, double limit)
{
	char *end;
	if (!v || !*v || strlen(v) > 32)
		return false;
	double d = strtod(v, &end);
	return *end == '\0' && isfinite(d) && d >= -limit && d <= limit;
}

/* An optional field into *dst: absent or empty leaves NULL; bad is an error. */
static int webhook_media_take(const struct form *f, const char *name, size_t max, char **dst)
{
	const char *v = form_get(f, name);
	if (!v || !*v)
		return 0;
	if (!webhook_field_ok(v, max))
		return -1;
	*dst = xstrdup(v);
	return 0;
}

int webhook_media(const struct form *f, long nmedia, struct media_msg *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	if (nmedia < 0 || nmedia > MEDIA_ITEMS_MAX) {
		*why = "bad NumMedia";
		return -1;
	}
	if (webhook_media_take(f, "MessageType", 32, &out->type))
		goto bad;
	for (long i = 0; i < nmedia; i++) {
		char name[48]; /* room for any long, as gcc -O1 checks */
		snprintf(name, sizeof(name), "MediaUrl%ld", i);
		const char *url = form_get(f, name);
		snprintf(name, sizeof(name), "MediaContentType%ld", i);
		const char *ct = form_get(f, name);
		/* NumMedia promised it; a missing one is skipped, the rest kept. */
		if (!url || !*url)
			continue;
		if (!webhook_field_ok(url, MEDIA_URL_MAX) || (ct && !webhook_field_ok(ct, 128)))
			goto bad;
		struct media_item *it = &out->items[out->nitems++];
		it->url = xstrdup(url);
		it->ctype = ct && *ct ? xstrdup(ct) : NULL;
	}
	const char *lat = form_get(f, "Latitude"), *lon = form_get(f, "Longitude");
	if (webhook_coord_ok(lat, 90) && webhook_coord_ok(lon, 180)) {
		out->lat = xstrdup(lat);
		out->lon = xstrdup(lon);
		if (webhook_media_take(f, "Address", WEBHOOK_MEDIA_FIELD_MAX, &out->address) ||
		    webhook_media_take(f, "Label", WEBHOOK_MEDIA_FIELD_MAX, &out->label))
			goto bad;
	}
	if (webhook_media_take(f, "ButtonText", WEBHOOK_MEDIA_FIELD_MAX, &out->button_text) ||
	    webhook_media_take(f, "ButtonPayload", WEBHOOK_MEDIA_FIELD_MAX, &out->button_payload))
		goto bad;
	return 0;
bad:
	*why = "media, location or button field is not valid UTF-8 or too long";
	media_release(out);
	return -1;
}

bool webhook_sid(const char *v, const char *p1, const char *p2)
{
	if (!v || strlen(v) != 34 || (strncmp(v, p1, 2) && (!p2 || strncmp(v, p2, 2))))
		return false;
	for (const char *p = v + 2; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* whatsapp:+ then 7 to 15 digits, the first not 0. */
static bool webhook_whatsapp(const char *a)
{
	if (strncmp(a, "whatsapp:+", 10))
		return false;
	size_t n = strlen(a + 10);
	if (n < 7 || n > 15 || a[10] == '0')
		return false;
	for (const char *p = a + 10; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

int webhook_account(const struct webhook_cfg *cfg, const struct form *f, const char **why)
{
	const char *acct = form_get(f, "AccountSid");
	if (!cfg->account_sid || !*cfg->account_sid)
		return 0;
	if (!acct || strcmp(acct, cfg->account_sid)) {
		*why = "AccountSid is not this account's";
		return 403;
	}
	return 0;
}

/* The identity of an inbound message: see webhook.h. */
static int webhook_identity(const struct webhook_cfg *cfg, const struct form *f, const char **why)
{
	const char *sid = form_get(f, "MessageSid"), *to = form_get(f, "To");
	const char *from = form_get(f, "From");
	static const char *const same[] = { "SmsSid", "SmsMessageSid" };
	if (!webhook_sid(sid, "SM", "MM")) {
		*why = "MessageSid is not SM or MM and 32 hex digits";
		return 400;
	}
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		const char *v = form_get(f, same[i]);
		if (v && strcmp(v, sid)) {
			*why = "SmsSid or SmsMessageSid differs from MessageSid";
			return 400;
		}
	}
	if (!webhook_whatsapp(from)) {
		*why = "From is not a whatsapp:+E164 address";
		return 400;
	}
	if (!webhook_whatsapp(to)) {
		*why = "To is not a whatsapp:+E164 address";
		return 400;
	}
	bool ours = cfg->nnumbers == 0;
	for (size_t i = 0; i < cfg->nnumbers && !ours; i++)
		ours = !strcmp(cfg->numbers[i], to);
	if (!ours) {
		*why = "To is not one of our WhatsApp numbers";
		return 400;
	}
	return webhook_account(cfg, f, why);
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
	const char *const texts[] = { text, from, to, sid, name }; /* name is optional */
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		if (texts[i] && !webhook_field_ok(texts[i], SIZE_MAX)) {
			*why = "text is not valid UTF-8";
			goto fail;
		}
	}
	if ((status = webhook_identity(cfg, &f, why)) != 0)
		goto fail;
	status = 400;
	long media = 0;
	if (nmedia) {
		char *end;
		media = strtol(nmedia, &end, 10);
		/* Its range is webhook_media's to check. */
		if (end == nmedia || *end) {
			*why = "bad NumMedia";
			goto fail;
		}
	}

	struct media_msg mm;
	if (webhook_media(&f, media, &mm, why))
		goto fail;
	out->media = media_to_json(&mm);
	media_release(&mm);

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
