/*
 * api — the console's JSON API (reads; the commands are command.h's):
 *
 *   GET /console/api/conversations?mode=all|ai|escalating|human|queue&limit=N&after=T&q=TEXT
 *       {"now_ms", "mode", "q", "counts": {ai, escalating, human}, "total",
 *       "conversations": [convview records], "next", "partial"}: newest
 *       activity first, one page of limit (1..5000, default 200) read from
 *       the recent index (convlist.h); "next" is the token to pass as
 *       after= for the following page (null at the end). mode=queue is the
 *       escalation queue (escalating and human, longest waiting first, one
 *       page). q (at most 100 characters) keeps conversations whose
 *       WhatsApp name contains it (case and accents ignored) or, when q is
 *       a number ("+55 11 9888-1111"), whose customer's number contains its
 *       digits; a search looks at 50,000 conversations per page at most
 *       and then says "partial": true with a next token that goes on.
 *       total: how many the mode holds (null with q); counts are the whole
 *       store's.
 *   GET /console/api/conversation?address=CUSTOMER[|BUSINESS][&business=B]
 *       the convview document (the newest 500 turns and timeline entries)
 *       with the turns labelled (labels.h) and "now_ms"; 404 when baton
 *       does not know it.
 *   GET /console/api/reports?from_ms=&to_ms=
 *       reports.h's figures over a period (default the last 24 h; at most
 *       366 days).
 *   GET /console/api/conversations/KEY/media/SEQ/I
 *       the bytes of media item I (from 0) of history turn SEQ of the
 *       conversation KEY (its "key", URL-encoded), downloaded from Twilio
 *       by the console with the business's Twilio credentials
 *       (mediaproxy.h): the browser never sees Twilio's URL nor the
 *       credentials. 200 with the checked Content-Type, "Cache-Control:
 *       private", nosniff, a CSP that lets the bytes run nothing, and
 *       Content-Disposition attachment unless an image or audio; 404 no
 *       such turn or item; 502 {"error", "outcome", "reason"} when the
 *       download failed or was refused (mediafetch.h's outcome); 503 when
 *       MEDIAPROXY_INFLIGHT downloads are running (Retry-After: 1).
 * 503 while the router's state is not there yet.
 */
#ifndef BATON_API_H
#define BATON_API_H

#include <microhttpd.h>

#include "config.h"
#include "mediaproxy.h"
#include "reader.h"

enum MHD_Result api_conversations(const struct config *cfg, struct reader *rd,
				  struct MHD_Connection *c);
enum MHD_Result api_conversation(const struct config *cfg, struct reader *rd,
				 struct MHD_Connection *c);
enum MHD_Result api_reports(const struct config *cfg, struct reader *rd, struct MHD_Connection *c);
/** The media route; path is what follows "conversations/" in the URL (decoded). */
enum MHD_Result api_media(const struct config *cfg, struct reader *rd, struct mediaproxy *mp,
			  struct MHD_Connection *c, const char *path);

#endif
