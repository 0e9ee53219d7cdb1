/*
 * form — application/x-www-form-urlencoded bodies, as Twilio sends them.
 *
 * form_parse() decodes '+' and %XX strictly: a bad escape, an escaped NUL
 * or more than max_params parameters is an error, so that a malformed
 * webhook gets 400 instead of a best guess. Parameter order and repeated
 * names are kept (the signature covers all of them).
 */
#ifndef BATON_FORM_H
#define BATON_FORM_H

#include <stddef.h>

struct form_param {
	char *name;
	char *value;
};

struct form {
	struct form_param *params;
	size_t n;
};

enum form_error {
	FORM_EOK = 0,
	FORM_EENCODING = -1, /* bad %XX escape, escaped NUL, or empty name */
	FORM_ETOOMANY = -2,  /* more than max_params parameters */
};

/** Parse body into out (owned; form_release frees). Returns FORM_EOK or a form_error. */
int form_parse(const char *body, size_t len, size_t max_params, struct form *out);
void form_release(struct form *f);
/** First value of name, or NULL. Borrowed from f. */
const char *form_get(const struct form *f, const char *name);

/**
 * Append name=value (percent-encoded) to *buf, with '&' when not first.
 * *buf is malloc'd/realloc'd; caller frees. Used to build Twilio requests.
 * Defined in form_encode.c (curl's escaping), linked only where used.
 */
void form_append(char **buf, const char *name, const char *value);

#endif
