/*
 * reply — how baton-console answers: JSON that is never cached, and the
 * headers every answer carries (a Content-Security-Policy that lets the
 * page load nothing from elsewhere, run no inline script and never be
 * framed; no sniffing, no referrer).
 */
#ifndef BATON_REPLY_H
#define BATON_REPLY_H

#include <jansson.h>
#include <microhttpd.h>

/** Add the security headers to r. */
void reply_secure(struct MHD_Response *r);
/** A JSON response built once from static text (the caller destroys it). */
struct MHD_Response *reply_fixed(const char *json);
/** Queue root (consumed) as a JSON answer with status. */
enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *root);
/** Queue {"error": why} with status. */
enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *why);
/** Queue 503 {"error": why} with "Retry-After: 1" (busy for a moment, not broken). */
enum MHD_Result reply_busy(struct MHD_Connection *c, const char *why);

#endif
