/*
 * auth — credentials on baton's HTTP endpoints (ingress: admin, metrics; baton-console).
 *
 * Secrets are compared in constant time whatever their lengths (both
 * sides are hashed with SHA-256 first, then CRYPTO_memcmp). An empty
 * configured secret never matches. Basic credentials are parsed by
 * libmicrohttpd. No allocation survives a call.
 */
#ifndef BATON_AUTH_H
#define BATON_AUTH_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

/** Whether given (glen bytes) equals want, in constant time; false if want is empty. */
bool auth_secret_eq(const char *given, size_t glen, const char *want);
/** Whether the request says "Authorization: Bearer <token>". */
bool auth_bearer(struct MHD_Connection *c, const char *token);
/** Whether the request carries basic credentials user:password. */
bool auth_basic(struct MHD_Connection *c, const char *user, const char *password);
/** Whether the request has an Authorization header of this scheme ("Bearer", "Basic"). */
bool auth_scheme(struct MHD_Connection *c, const char *scheme);

#endif
