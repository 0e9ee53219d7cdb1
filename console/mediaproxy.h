/*
 * mediaproxy — the console's downloads of customer media from Twilio, for
 * request threads that wait for them.
 *
 * libmicrohttpd gives each connection a thread of its own; the fetches
 * themselves are mediafetch.h's (allow-lists, basic auth with the Twilio
 * credentials, media.timeout_ms, media.max_bytes, magic numbers), which
 * run on an httpc loop and count into the process's metrics, neither of
 * them thread-safe. So one thread of this module owns the loop and every
 * mediafetch call; a request thread hands it an item and sleeps until its
 * outcome is there. At most MEDIAPROXY_INFLIGHT fetches at once (each can
 * hold media.max_bytes): past that, mediaproxy_fetch says busy at once.
 */
#ifndef BATON_MEDIAPROXY_H
#define BATON_MEDIAPROXY_H

#include <stddef.h>

#include "config.h"
#include "media.h"
#include "mediafetch.h"

#define MEDIAPROXY_INFLIGHT 8

struct mediaproxy;

/** What a fetch gave; the strings and data are malloc'd (mediaproxy_result_release). */
struct mediaproxy_result {
	enum mediafetch_error err; /* MF_OK: data/len/ctype are the checked bytes */
	char *reason;              /* why not, for the operator (no URL, no secret) */
	char *ctype;
	char *data;
	size_t len;
};

/** Start the fetching thread: NULL when it cannot start (logged). */
struct mediaproxy *mediaproxy_new(void);
/**
 * Stop the thread: fetches still waited for end with MF_TRANSPORT ("the
 * console is stopping"), later ones are refused. Accepts NULL.
 */
void mediaproxy_stop(struct mediaproxy *mp);
/** Stop if not yet, and free; no mediaproxy_fetch may run any more. Accepts NULL. */
void mediaproxy_free(struct mediaproxy *mp);

/**
 * Fetch item with the settings of cfg (the business's: its Twilio
 * credentials and media.* limits; borrowed until the call returns) and
 * wait for the outcome. *out is zeroed first. 0 with *out filled
 * (whatever err says), or -1 when MEDIAPROXY_INFLIGHT fetches are already
 * running or the proxy is stopping.
 */
int mediaproxy_fetch(struct mediaproxy *mp, const struct config *cfg,
		     const struct media_item *item, struct mediaproxy_result *out);
void mediaproxy_result_release(struct mediaproxy_result *r);

#endif
