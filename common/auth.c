/* auth — bearer and basic credentials, compared in constant time; see auth.h. */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool auth_secret_eq(const char *given, size_t glen, const char *want)
{
	unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
	unsigned int al = 0, bl = 0;
	if (!want || !*want || !given)
		return false;
	if (!EVP_Digest(given, glen, a, &al, EVP_sha256(), NULL) ||
	    !EVP_Digest(want, strlen(want), b, &bl, EVP_sha256(), NULL) || al != bl)
		return false;
	return CRYPTO_memcmp(a, b, al) == 0;
}

bool auth_scheme(struct MHD_Connection *c, const char *scheme)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	size_t n = strlen(scheme);
	return h && strncasecmp(h, scheme, n) == 0 && h[n] == ' ';
}

bool auth_bearer(struct MHD_Connection *c, const char *token)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	return auth_secret_eq(h, strlen(h), token);
}

bool auth_basic(struct MHD_Connection *c, const char *user, const char *password)
{
	char *pass = NULL;
	char *u = MHD_basic_auth_get_username_password(c, &pass);
	bool ok = false;
	if (u && pass) {
		/* Both compared, always: which one was wrong must not show in the time. */
		bool uo = auth_secret_eq(u, strlen(u), user);
		bool po = auth_secret_eq(pass, strlen(pass), password);
		ok = uo & po;
	}
	if (pass) {
		OPENSSL_cleanse(pass, strlen(pass));
		MHD_free(pass);
	}
	if (u)
		MHD_free(u);
	return ok;
}
