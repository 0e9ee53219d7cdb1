/*
 * utf8 — UTF-8 checks and cuts of text that will reach JSON, LMDB, the LLM
 * and WhatsApp, on top of libunistring (this module decodes nothing by
 * hand).
 *
 * Lengths are in bytes and strings need no NUL: s[0..n) is looked at, an
 * embedded NUL is an ordinary (ASCII) character. Nothing is allocated;
 * every function borrows s for the call only.
 */
#ifndef BATON_UTF8_H
#define BATON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/** True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const char *s, size_t n);

/**
 * Byte length of the longest prefix of s[0..n) that holds at most max
 * characters (code points): a cut there never splits a well-formed
 * character. Returns n when s[0..n) holds max characters or fewer, 0 when
 * max is 0. An ill-formed sequence counts as one character per maximal
 * ill-formed part (U+FFFD each, as libunistring decodes it), so a cut
 * never loops on bad input either.
 */
size_t utf8_prefix(const char *s, size_t n, size_t max);

#endif
