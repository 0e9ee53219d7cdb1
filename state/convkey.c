/* convkey — building and splitting conversation keys; see convkey.h. */
#include "convkey.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

int convkey_split(const char *text, struct convkey *out)
{
	const char *bar = strchr(text, CONVKEY_SEP);
	size_t n = bar ? (size_t)(bar - text) : strlen(text);
	out->customer = out->business = NULL;
	if (n == 0 || (bar && !bar[1]))
		return -1;
	out->customer = xstrndup(text, n);
	out->business = bar ? xstrdup(bar + 1) : NULL;
	return 0;
}

void convkey_release(struct convkey *k)
{
	free(k->customer);
	free(k->business);
	k->customer = k->business = NULL;
}

char *convkey_join(const char *customer, const char *business)
{
	return xasprintf("%s%c%s", customer, CONVKEY_SEP, business);
}

const char *convkey_business(const char *key)
{
	const char *bar = key ? strchr(key, CONVKEY_SEP) : NULL;
	return bar ? bar + 1 : NULL;
}

size_t convkey_customer_len(const char *key)
{
	const char *bar = strchr(key, CONVKEY_SEP);
	return bar ? (size_t)(bar - key) : strlen(key);
}
