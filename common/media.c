/*
 * media — the description of a message's media, location and button: to
 * and from its JSON document, and as text for readers that cannot take the
 * media itself. See media.h.
 */
#include "media.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

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

bool media_bare_type(const char *ctype, char *buf, size_t cap)
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
