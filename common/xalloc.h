/*
 * xalloc — allocation that never returns NULL.
 *
 * Every input baton takes is bounded, so running out of memory means the
 * host is in trouble; the process aborts and its supervisor restarts it.
 * Callers therefore never check these results.
 */
#ifndef BATON_XALLOC_H
#define BATON_XALLOC_H

#include <stddef.h>

/** malloc/calloc/realloc that abort on failure. Caller owns the result. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
/** Copy of s (NULL gives NULL). Caller owns the result. */
char *xstrdup(const char *s);
/** Copy of the first n bytes of s, NUL-terminated. Caller owns the result. */
char *xstrndup(const char *s, size_t n);
/** printf into a new string. Caller owns the result. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
