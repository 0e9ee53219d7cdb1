/*
 * slow — a deadline for the request head, which libmicrohttpd lacks.
 *
 * MHD's connection timeout is an idle timeout: a client sending a header
 * line every few seconds keeps a connection for ever (slowloris). Every
 * connection here has http.head_timeout_s, from its opening or from the
 * end of its previous request, to deliver a complete head (when MHD calls
 * the request handler); past that its socket is shut down, which MHD sees
 * as the client going away.
 *
 * Wire slow_notify as MHD_OPTION_NOTIFY_CONNECTION (cls = the struct
 * slow), call slow_head_done at a request's first handler call and
 * slow_request_done when it completes, and slow_expire from the loop.
 * Memory: one small record per connection, owned here.
 */
#ifndef BATON_SLOW_H
#define BATON_SLOW_H

#include <stddef.h>
#include <stdint.h>
#include <microhttpd.h>

struct slow;

struct slow *slow_new(uint64_t head_ms);
void slow_free(struct slow **sp);
void slow_notify(void *cls, struct MHD_Connection *c, void **socket_context,
		 enum MHD_ConnectionNotificationCode toe);
void slow_head_done(struct slow *sl, struct MHD_Connection *c);
void slow_request_done(struct slow *sl, struct MHD_Connection *c);
/** Shut down connections whose head is late at now (mono ms); how many. */
size_t slow_expire(struct slow *sl, uint64_t now);
/** Mono ms of the next deadline, 0 when no head is awaited. */
uint64_t slow_next_due(const struct slow *sl);

#endif
