/*
 * media — the description of a message's media, location and button:
 * from the webhook's form, to and from its JSON document, and as text for
 * readers that cannot take the media itself. See media.h.
 */
#include "media.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "utf8.h"
#include "xalloc.h"

/* Longest location or button field kept (WhatsApp's own limits are lower). */
#define MEDIA_FIELD_MAX 1024

bool media_empty(const struct media_msg *m)
{
	return m->nitems == 0 && !m->lat && !m->button_text && !m->button_payload;
}

void media_release(struct media_msg *m)
{
	free(m->type);
	for (size_t i = 0; i < m->nitems; i++) {
		free(m->items[i].url);
		free(m->items[i].ctype);
	}
	free(m->lat);
	free(m->lon);
	free(m->address);
	free(m->label);
	free(m->button_text);
	free(m->button_payload);
	memset(m, 0, sizeof(*m));
}

static bool media_field_ok(const char *v, size_t max)
{
	size_t n = strlen(v);
	return n <= max && utf8_valid(v, n);
}

/* A coordinate Twilio would send: a decimal number within ±limit. */
static bool media_coord_ok(const char *v, double limit)
{
	char *end;
	if (!v || !*v || strlen(v) > 32)
		return false;
	double d = strtod(v, &end);
	return *end == '\0' && isfinite(d) && d >= -limit && d <= limit;
}

/* An optional field into *dst: absent or empty leaves NULL; bad is an error. */
static int media_take(const struct form *f, const char *name, size_t max, char **dst)
{
	const char *v = form_get(f, name);
	if (!v || !*v)
		return 0;
	if (!media_field_ok(v, max))
		return -1;
	*dst = xstrdup(v);
	return 0;
}

int media_from_form(const struct form *f, long nmedia, struct media_msg *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	if (nmedia < 0 || nmedia > MEDIA_ITEMS_MAX) {
		*why = "bad NumMedia";
		return -1;
	}
	if (media_take(f, "MessageType", 32, &out->type))
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
		if (!media_field_ok(url, MEDIA_URL_MAX) || (ct && !media_field_ok(ct, 128)))
			goto bad;
		struct media_item *it = &out->items[out->nitems++];
		it->url = xstrdup(url);
		it->ctype = ct && *ct ? xstrdup(ct) : NULL;
	}
	const char *lat = form_get(f, "Latitude"), *lon = form_get(f, "Longitude");
	if (media_coord_ok(lat, 90) && media_coord_ok(lon, 180)) {
		out->lat = xstrdup(lat);
		out->lon = xstrdup(lon);
		if (media_take(f, "Address", MEDIA_FIELD_MAX, &out->address) ||
		    media_take(f, "Label", MEDIA_FIELD_MAX, &out->label))
			goto bad;
	}
	if (media_take(f, "ButtonText", MEDIA_FIELD_MAX, &out->button_text) ||
	    media_take(f, "ButtonPayload", MEDIA_FIELD_MAX, &out->button_payload))
		goto bad;
	return 0;
bad:
	*why = "media, location or button field is not valid UTF-8 or too long";
	media_release(out);
	return -1;
}

static void media_json_set(json_t *o, const char *key, const char *v)
{
	if (v)
		json_object_set_new(o, key, json_string(v));
}

char *media_to_json(const struct media_msg *m)
{
	if (media_empty(m))
		return NULL;
	json_t *o = json_object();
	media_json_set(o, "type", m->type);
	if (m->nitems) {
		json_t *items = json_array();
		for (size_t i = 0; i < m->nitems; i++) {
			json_t *it = json_object();
			media_json_set(it, "url", m->items[i].url);
			media_json_set(it, "ct", m->items[i].ctype);
			json_array_append_new(items, it);
		}
		json_object_set_new(o, "items", items);
	}
	if (m->lat) {
		json_t *loc = json_object();
		media_json_set(loc, "lat", m->lat);
		media_json_set(loc, "lon", m->lon);
		media_json_set(loc, "addr", m->address);
		media_json_set(loc, "label", m->label);
		json_object_set_new(o, "loc", loc);
	}
	if (m->button_text || m->button_payload) {
		json_t *btn = json_object();
		media_json_set(btn, "text", m->button_text);
		media_json_set(btn, "payload", m->button_payload);
		json_object_set_new(o, "btn", btn);
	}
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		abort(); /* only on out of memory, like xalloc */
	return s;
}

/* A string member copied to *dst; absent is fine, another type is not. */
static int media_json_get(const json_t *o, const char *key, char **dst)
{
	const json_t *v = json_object_get(o, key);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return -1;
	*dst = xstrdup(json_string_value(v));
	return 0;
}

int media_from_json(const char *s, struct media_msg *out)
{
	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return 0;
	json_error_t jerr;
	json_t *o = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o))
		goto fail;
	if (media_json_get(o, "type", &out->type))
		goto fail;
	const json_t *items = json_object_get(o, "items");
	if (items) {
		if (!json_is_array(items) || json_array_size(items) > MEDIA_ITEMS_MAX)
			goto fail;
		for (size_t i = 0; i < json_array_size(items); i++) {
			const json_t *it = json_array_get(items, i);
			struct media_item *mi = &out->items[out->nitems++];
			if (!json_is_object(it) || media_json_get(it, "url", &mi->url) ||
			    media_json_get(it, "ct", &mi->ctype) || !mi->url)
				goto fail;
		}
	}
	const json_t *loc = json_object_get(o, "loc");
	if (loc) {
		if (!json_is_object(loc) || media_json_get(loc, "lat", &out->lat) ||
		    media_json_get(loc, "lon", &out->lon) ||
		    media_json_get(loc, "addr", &out->address) ||
		    media_json_get(loc, "label", &out->label) || !out->lat || !out->lon)
			goto fail;
	}
	const json_t *btn = json_object_get(o, "btn");
	if (btn) {
		if (!json_is_object(btn) || media_json_get(btn, "text", &out->button_text) ||
		    media_json_get(btn, "payload", &out->button_payload))
			goto fail;
	}
	json_decref(o);
	return 0;
fail:
	json_decref(o);
	media_release(out);
	return -1;
}

/* ctype without parameters, lower case, into buf; false when it does not fit. */
static bool media_bare_type(const char *ctype, char *buf, size_t cap)
{
	size_t n = 0;
	if (!ctype)
		return false;
	while (ctype[n] == ' ')
		ctype++;
	while (ctype[n] && ctype[n] != ';' && ctype[n] != ' ' && n + 1 < cap) {
		char c = ctype[n];
		buf[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	if (ctype[n] && ctype[n] != ';' && ctype[n] != ' ')
		return false;
	buf[n] = '\0';
	return n > 0;
}

enum media_kind media_kind_of(const char *ctype)
{
	char t[128];
	if (!media_bare_type(ctype, t, sizeof(t)))
		return MEDIA_OTHER;
	if (!strncmp(t, "image/", 6))
		return MEDIA_IMAGE;
	if (!strncmp(t, "audio/", 6))
		return MEDIA_AUDIO;
	if (!strncmp(t, "video/", 6))
		return MEDIA_VIDEO;
	if (!strcmp(t, "application/pdf"))
		return MEDIA_PDF;
	return MEDIA_OTHER;
}

const char *media_kind_word(enum media_kind k)
{
	switch (k) {
	case MEDIA_IMAGE: return "photo";
	case MEDIA_AUDIO: return "voice note";
	case MEDIA_PDF: return "PDF document";
	case MEDIA_VIDEO: return "video";
	case MEDIA_OTHER: break;
	}
	return "file";
}

const char *media_sniff(const void *buf, size_t len)
{
	const unsigned char *b = buf;
	if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
		return "image/jpeg";
	if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
		return "image/png";
	if (len >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6)))
		return "image/gif";
	if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
		return "image/webp";
	if (len >= 4 && !memcmp(b, "OggS", 4))
		return "audio/ogg";
	if (len >= 5 && !memcmp(b, "%PDF-", 5))
		return "application/pdf";
	return NULL;
}

bool media_bytes_match(const char *ctype, const void *buf, size_t len)
{
	char t[128];
	if (!media_bare_type(ctype, t, sizeof(t)))
		return false;
	bool checked = !strncmp(t, "image/", 6) || !strcmp(t, "audio/ogg") ||
		       !strcmp(t, "application/pdf");
	if (!checked)
		return true;
	const char *seen = media_sniff(buf, len);
	return seen && !strcmp(seen, t);
}

/* Calls fn on each trimmed, non-empty item of a comma-separated list until it says true. */
static bool media_list_any(const char *list, const char *want,
			   bool (*fn)(const char *item, size_t n, const char *want))
{
	const char *p = list;
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *s = p;
		while (n && (*s == ' ' || *s == '\t'))
			s++, n--;
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (n && fn(s, n, want))
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

static bool media_type_is(const char *item, size_t n, const char *want)
{
	return strlen(want) == n && !strncasecmp(item, want, n);
}

bool media_type_allowed(const char *ctype, const char *list)
{
	char t[128];
	return media_bare_type(ctype, t, sizeof(t)) && media_list_any(list, t, media_type_is);
}

static bool media_host_is(const char *item, size_t n, const char *host)
{
	size_t h = strlen(host);
	if (n > 2 && item[0] == '*' && item[1] == '.') {
		/* "*.twilio.com": a subdomain, so the host ends in ".twilio.com". */
		size_t suffix = n - 1;
		return h > suffix && !strncasecmp(host + h - suffix, item + 1, suffix);
	}
	return h == n && !strncasecmp(host, item, n);
}

bool media_host_allowed(const char *url, const char *list)
{
	bool ok = false;
	char *scheme = NULL, *host = NULL;
	CURLU *u = curl_url();
	if (!u || !url || !list)
		goto done;
	/* curl's parser, not ours: it is what will make the request. */
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		goto done;
	if (strcasecmp(scheme, "https") && strcasecmp(scheme, "http"))
		goto done;
	ok = media_list_any(list, host, media_host_is);
done:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

char *media_text(const struct media_msg *m)
{
	char *out = NULL;
	if (m->lat) {
		const char *label = m->label ? m->label : "";
		const char *addr = m->address ? m->address : "";
		out = xasprintf("shared a location: %s%s%s%s(%s, %s)", label, *label ? ", " : "",
				addr, *addr ? " " : "", m->lat, m->lon);
	}
	if (m->button_text || m->button_payload) {
		char *b = xasprintf("tapped: %s",
				    m->button_text ? m->button_text : m->button_payload);
		char *both = out ? xasprintf("%s\n%s", out, b) : b;
		if (out) {
			free(out);
			free(b);
		}
		out = both;
	}
	return out;
}

char *media_item_note(const struct media_item *it, const char *reason)
{
	const char *word = media_kind_word(media_kind_of(it->ctype));
	const char *ct = it->ctype ? it->ctype : "unknown type";
	if (reason && *reason)
		return xasprintf("[%s (%s): %s]", word, ct, reason);
	return xasprintf("[%s (%s)]", word, ct);
}

char *media_text_view(const char *body, const struct media_msg *m)
{
	char *out = xstrdup(body ? body : "");
	char *extra = media_text(m);
	for (size_t i = 0; i <= m->nitems; i++) {
		char *part = i < m->nitems ? media_item_note(&m->items[i], NULL) : extra;
		if (!part)
			break;
		char *next = xasprintf("%s%s%s", out, *out ? "\n" : "", part);
		free(out);
		free(part);
		out = next;
	}
	return out;
}
