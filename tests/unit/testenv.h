/*
 * testenv — what unit tests share about their environment. The tests run
 * under tests/run.py, which sets BATON_TEST_* variables; config_load()
 * refuses any BATON_* variable it does not know, so a test that loads a
 * configuration first clears them all.
 */
#ifndef BATON_TESTENV_H
#define BATON_TESTENV_H

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

extern char **environ;

/* Unsets every BATON_* variable (names collected first: unsetenv edits environ). */
static inline void testenv_clear_baton(void)
{
	char *names[512];
	size_t n = 0;
	for (char **e = environ; e && *e && n < 512; e++) {
		if (strncmp(*e, "BATON_", 6) != 0)
			continue;
		const char *eq = strchr(*e, '=');
		names[n++] = xstrndup(*e, eq ? (size_t)(eq - *e) : strlen(*e));
	}
	for (size_t i = 0; i < n; i++) {
		unsetenv(names[i]);
		free(names[i]);
	}
}

#endif
