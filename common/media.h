/*
 * media — what a customer's WhatsApp message carried beyond its text.
 *
 * Twilio's webhook names up to ten media items (MediaUrlN with
 * MediaContentTypeN), a location (Latitude, Longitude, Address, Label), a
 * quick-reply button (ButtonText, ButtonPayload) and the MessageType. The
 * bytes stay at Twilio; baton keeps the description (read from the form
 * by webhook_media(), webhook.h) and the workers fetch what they need
 * (mediafetch.h, with the checks of mediacheck.h).
 *
 * One description travels everywhere (envelope field "media", history
 * records, job turns) as the compact JSON document written by
 * media_to_json():
 *   {"type":"image",                       MessageType, when sent
 *    "items":[{"url":"…","ct":"image/jpeg"}],
 *    "loc":{"lat":"…","lon":"…","addr":"…","label":"…"},
 *    "btn":{"text":"…","payload":"…"}}
 * Every key is optional; an empty description is no document at all.
 *
 * Ownership: a struct media_msg owns its strings (media_release). Returned
 * char * are malloc'd and the caller frees them. No I/O here.
 */
#ifndef BATON_MEDIA_H
#define BATON_MEDIA_H

#include <stdbool.h>
#include <stddef.h>

#define MEDIA_ITEMS_MAX 10 /* Twilio sends at most ten media per message */
#define MEDIA_URL_MAX 2048

enum media_kind { MEDIA_IMAGE, MEDIA_AUDIO, MEDIA_PDF, MEDIA_VIDEO, MEDIA_OTHER };

struct media_item {
	char *url;
	char *ctype; /* as Twilio declared it; may be NULL */
};

struct media_msg {
	char *type; /* Twilio MessageType (text, image, audio, document, location, button...) */
	struct media_item items[MEDIA_ITEMS_MAX];
	size_t nitems;
	char *lat, *lon, *address, *label; /* a location: lat and lon both set, or neither */
	char *button_text, *button_payload;
};

/** True when m describes nothing beyond the text (no items, location or button). */
bool media_empty(const struct media_msg *m);
void media_release(struct media_msg *m);

/** The JSON document above; NULL when m is empty. */
char *media_to_json(const struct media_msg *m);
/** Parse a media_to_json() document (NULL or "" gives an empty m). 0, or -1 when malformed. */
int media_from_json(const char *json, struct media_msg *out);

enum media_kind media_kind_of(const char *ctype);
/** A customer-facing word for a kind: "photo", "voice note", "PDF document", "video", "file". */
const char *media_kind_word(enum media_kind k);
/** ctype without parameters, lower case, into buf; false when empty or it does not fit. */
bool media_bare_type(const char *ctype, char *buf, size_t cap);

/**
 * Readable text for what is not an item: "shared a location: Label,
 * Address (lat, lon)", "tapped: ButtonText". NULL when there is none.
 */
char *media_text(const struct media_msg *m);

/**
 * The note that stands for item i when its content does not reach the
 * reader: "[photo (image/jpeg)]", or with a reason "[voice note (audio/ogg):
 * could not be transcribed]". reason may be NULL.
 */
char *media_item_note(const struct media_item *it, const char *reason);

/** body, then the text for the location/button and a note per item (the text-only view). */
char *media_text_view(const char *body, const struct media_msg *m);

#endif
