/*
 * mediacheck — what a media download must pass before its bytes are used:
 * the URL's host and the declared type against allow-lists, and the bytes'
 * magic numbers against the declared type.
 *
 * Pure functions, no I/O and no allocation the caller sees. Kept apart
 * from media.h (the description every process reads) because the host
 * check uses curl's URL parser: only the processes that download link it.
 */
#ifndef BATON_MEDIACHECK_H
#define BATON_MEDIACHECK_H

#include <stdbool.h>
#include <stddef.h>

/**
 * The content type the bytes' magic numbers say (image/jpeg, image/png,
 * image/gif, image/webp, audio/ogg, application/pdf), or NULL when they
 * match none of these.
 */
const char *mediacheck_sniff(const void *buf, size_t len);
/**
 * Whether bytes of declared type ctype look like it: images, OGG and PDF
 * are checked by their magic numbers; other types are taken as declared.
 */
bool mediacheck_bytes_match(const char *ctype, const void *buf, size_t len);

/** Whether ctype (parameters like "; codecs=opus" ignored) is in the comma-separated list. */
bool mediacheck_type_allowed(const char *ctype, const char *list);
/**
 * Whether url is http(s) and its host is in the comma-separated list
 * ("*.example.com" matches any subdomain of example.com, not itself).
 */
bool mediacheck_host_allowed(const char *url, const char *list);

#endif
