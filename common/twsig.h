/*
 * twsig — Twilio's X-Twilio-Signature (HMAC-SHA1 over URL + sorted params).
 *
 * The signed data is the full URL Twilio was configured with, followed by
 * name+value of every POST parameter sorted by name (byte order) and, for
 * a repeated name, by value with exact duplicates once. The signature is
 * base64(HMAC-SHA1(auth token, data)).
 */
#ifndef BATON_TWSIG_H
#define BATON_TWSIG_H

#include <stdbool.h>

#include "form.h"

/* base64 of a 20-byte SHA-1 MAC is 28 chars; plus NUL. */
#define TWSIG_LEN 29

/** Compute the signature of url + params into out. */
void twsig_compute(const char *token, const char *url, const struct form *params,
		   char out[TWSIG_LEN]);

/**
 * Check header against url + params, in constant time per candidate. Like
 * Twilio's own libraries, also accepts the URL with its port removed or
 * with the scheme's default port added (proxies rewrite one or the other).
 * A NULL or empty header is invalid.
 */
bool twsig_valid(const char *token, const char *url, const struct form *params,
		 const char *header);

#endif
