/* twsig — webhook signature computing and checking; see twsig.h. */
#include "twsig.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static int twsig_cmp_param(const void *a, const void *b)
{
	const struct form_param *const *x = a, *const *y = b;
	int c = strcmp((*x)->name, (*y)->name);
	return c ? c : strcmp((*x)->value, (*y)->value);
}

void twsig_compute(const char *token, const char *url, const struct form *params,
		   char out[TWSIG_LEN])
{
	size_t n = params ? params->n : 0, len = strlen(url), cap = len + 1;
	const struct form_param **sorted = xcalloc(n ? n : 1, sizeof(*sorted));

	for (size_t i = 0; i < n; i++) {
		sorted[i] = &params->params[i];
		cap += strlen(sorted[i]->name) + strlen(sorted[i]->value);
	}
	qsort(sorted, n, sizeof(*sorted), twsig_cmp_param);

	char *data = xmalloc(cap);
	memcpy(data, url, len);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && twsig_cmp_param(&sorted[i - 1], &sorted[i]) == 0)
			continue; /* the same name=value twice is signed once */
		size_t nl = strlen(sorted[i]->name), vl = strlen(sorted[i]->value);
		memcpy(data + len, sorted[i]->name, nl);
		len += nl;
		memcpy(data + len, sorted[i]->value, vl);
		len += vl;
	}

	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	HMAC(EVP_sha1(), token, (int)strlen(token), (const unsigned char *)data, len, mac, &maclen);
	EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
	free(data);
	free(sorted);
}

/* Writes the URL without its explicit port, or with the scheme's default
 * port added when it has none; returns false when neither applies. */
static bool twsig_port_variant(const char *url, char **out)
{
	const char *scheme_end = strstr(url, "://");
	if (!scheme_end)
		return false;
	const char *host = scheme_end + 3;
	const char *path = host + strcspn(host, "/?#");
	const char *colon = memchr(host, ':', (size_t)(path - host));
	if (colon) {
		*out = xasprintf("%.*s%s", (int)(colon - url), url, path);
		return true;
	}
	const char *port = strncmp(url, "https", 5) == 0 ? "443" : "80";
	*out = xasprintf("%.*s:%s%s", (int)(path - url), url, port, path);
	return true;
}

static bool twsig_matches(const char *token, const char *url, const struct form *params,
			  const char *header, size_t hlen)
{
	char sig[TWSIG_LEN];
	twsig_compute(token, url, params, sig);
	return hlen == strlen(sig) && CRYPTO_memcmp(sig, header, hlen) == 0;
}

bool twsig_valid(const char *token, const char *url, const struct form *params,
		 const char *header)
{
	char *alt = NULL;
	bool ok;

	if (!header || !*header)
		return false;
	size_t hlen = strlen(header);
	ok = twsig_matches(token, url, params, header, hlen);
	if (!ok && twsig_port_variant(url, &alt))
		ok = twsig_matches(token, alt, params, header, hlen);
	free(alt);
	return ok;
}
