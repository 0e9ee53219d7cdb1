/* utf8 — validation of text that will reach JSON, LMDB and the LLM. */
#ifndef BATON_UTF8_H
#define BATON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/** True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const char *s, size_t n);

#endif
