/*
 * zap — who may connect to the router over tcp://: a ZeroMQ ZAP handler
 * (RFC 27) that accepts a CURVE client only when its public key is in
 * zmq.allowed_keys, and logs every refusal with the key and the address
 * (at most once a minute per key).
 *
 * zap_new() binds inproc://zeromq.zap.01 in the router's context; it must
 * exist before a CURVE socket is bound. The router polls zap_socket() and
 * calls zap_handle() when it is readable; requests are answered at once.
 */
#ifndef BATON_ZAP_H
#define BATON_ZAP_H

#include <stddef.h>

struct zap;

/** allowed: comma-separated Z85 public keys. NULL on error (logged: a bad key, or bind). */
struct zap *zap_new(void *zctx, const char *allowed);
void zap_free(struct zap **zp);
void *zap_socket(struct zap *z);
/** Answer every waiting request. */
void zap_handle(struct zap *z);
/** Requests refused so far. */
size_t zap_refused(const struct zap *z);

#endif
