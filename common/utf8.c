/*
 * utf8 — UTF-8 checks and cuts, delegated to libunistring: u8_check
 * validates (RFC 3629: the ranges of Unicode's table 3-7), u8_mbtouc
 * steps one character at a time.
 */
#include "utf8.h"

#include <stdint.h>
#include <unistr.h>

bool utf8_valid(const char *s, size_t n)
{
	return u8_check((const uint8_t *)s, n) == NULL;
}

size_t utf8_prefix(const char *s, size_t n, size_t max)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t i = 0;
	for (size_t chars = 0; i < n && chars < max; chars++) {
		ucs4_t uc;
		/* At least 1 for n - i >= 1: well-formed or not, i moves on. */
		i += (size_t)u8_mbtouc(&uc, u + i, n - i);
	}
	return i;
}
