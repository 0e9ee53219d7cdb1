/*
 * flexmedia — one customer media item made attachable to a Flex
 * conversation: fetched from Twilio (mediafetch.h: allow-lists, basic
 * auth, size, timeout, magic numbers), then uploaded to Twilio's Media
 * Content Service on the worker's httpc loop:
 *   POST {twilio.mcs_base}/v1/Services/{IS}/Media
 * with the raw bytes as the body, their Content-Type (the type the bytes
 * were checked to be), the REST credentials as basic auth and
 * media.timeout_ms. The answer's "sid" (ME + 32 hex) is the MediaSid a
 * Conversations message takes; {IS} is the conversation's
 * chat_service_sid (MCS keeps media per Conversations service).
 *
 * No retry here: an item that cannot be fetched or uploaded once is
 * reported failed, and the caller shows a note instead (a customer's
 * photo is not worth holding a handoff). The caller counts each item's
 * end in baton_flex_media_total{outcome} with flexmedia_count() once its
 * message is in the conversation: attached, fetch_failed, upload_failed,
 * or refused (uploaded, but Conversations would not take the message with
 * it). Logging is the caller's, who knows the job and conversation.
 */
#ifndef BATON_FLEXMEDIA_H
#define BATON_FLEXMEDIA_H

#include "config.h"
#include "httpc.h"
#include "media.h"
#include "mediafetch.h"

/* The upload uses the download's credentials and timeout (fetch.user,
 * fetch.pass, fetch.timeout_ms): the same account, as many bytes. */
struct flexmedia_cfg {
	struct mediafetch_cfg fetch;
	const char *mcs_base;
};

enum flexmedia_outcome { FM_ATTACHED, FM_FETCH_FAILED, FM_UPLOAD_FAILED, FM_REFUSED };

struct flexmedia_result {
	enum flexmedia_outcome outcome; /* FM_ATTACHED: uploaded, ready to attach */
	const char *media_sid; /* FM_ATTACHED only */
	const char *reason;    /* failures: why, for the log ("not found (HTTP 404)"...) */
};

/* The result is borrowed for the callback only. */
typedef void flexmedia_done_fn(const struct flexmedia_result *r, void *arg);

/** The settings of cfg. Borrows cfg, which must outlive every transfer. */
void flexmedia_config(const struct config *cfg, struct flexmedia_cfg *out);
/** Register the metric families (this one's and mediafetch's); once per process. */
void flexmedia_metrics_register(void);

/**
 * Fetch item it and upload it to service is. done runs exactly once:
 * later, or before this returns when the item is refused without a
 * request (host or type not allowed, is NULL: no service known) or a
 * transfer cannot start. cfg and h must outlive the call; it and is are
 * copied as needed.
 */
void flexmedia_start(struct httpc *h, const struct flexmedia_cfg *cfg, const char *is,
		     const struct media_item *it, flexmedia_done_fn *done, void *arg);

/** The metric label of an outcome. */
const char *flexmedia_outcome_name(enum flexmedia_outcome o);
/** Count one item's end in baton_flex_media_total. */
void flexmedia_count(enum flexmedia_outcome o);

#endif
