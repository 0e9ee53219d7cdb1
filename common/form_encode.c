/*
 * form_encode — urlencoded building (form_append, declared in form.h).
 * Apart from the parser so that a process that only reads forms (ingress)
 * does not link curl, whose escaping this uses.
 */
#include "form.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

void form_append(char **buf, const char *name, const char *value)
{
	char *n = curl_easy_escape(NULL, name, 0);
	char *v = curl_easy_escape(NULL, value, 0);
	size_t old = *buf ? strlen(*buf) : 0;
	size_t add = strlen(n) + strlen(v) + 2;

	*buf = xrealloc(*buf, old + add + 1);
	if (old)
		(*buf)[old++] = '&';
	strcpy(*buf + old, n);
	strcat(*buf + old, "=");
	strcat(*buf + old, v);
	curl_free(n);
	curl_free(v);
}
