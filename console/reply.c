/* reply — baton-console's answers; see reply.h. */
#include "reply.h"

#include <string.h>

/* The page loads nothing from elsewhere, runs no inline script or style,
 * cannot be framed and submits no form anywhere (the login is JavaScript).
 * blob: for images and voice notes: the page fetches a customer's media
 * with its token (an <img src> could not send it) and shows the bytes
 * from a blob URL of its own. */
static const char REPLY_CSP[] = "default-src 'self'; img-src 'self' data: blob:; "
				"media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
				"form-action 'none'";

void reply_secure(struct MHD_Response *r)
{
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, REPLY_CSP);
	MHD_add_response_header(r, MHD_HTTP_HEADER_X_FRAME_OPTIONS, "DENY");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

struct MHD_Response *reply_fixed(const char *json)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), (void *)json,
								 MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	reply_secure(r);
	return r;
}

static enum MHD_Result reply_json_retry(struct MHD_Connection *c, unsigned status, json_t *root,
					const char *retry_after)
{
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		return MHD_NO;
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text,
								 MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (retry_after)
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
	reply_secure(r);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *root)
{
	return reply_json_retry(c, status, root, NULL);
}

enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *why)
{
	return reply_json(c, status, json_pack("{s:s}", "error", why));
}

enum MHD_Result reply_busy(struct MHD_Connection *c, const char *why)
{
	return reply_json_retry(c, 503, json_pack("{s:s}", "error", why), "1");
}
