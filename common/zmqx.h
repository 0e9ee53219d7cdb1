/*
 * zmqx — the few ZeroMQ patterns baton uses, with envelopes on the wire.
 *
 * Topology: the router binds two ROUTER sockets (ingress, work); ingress
 * and workers connect DEALER sockets. A ROUTER frame set is
 * [peer id][envelope]; a DEALER sees just [envelope].
 *
 * Sends never block: a full queue or an unknown peer is an error the
 * caller handles (503, re-dispatch). Receives are non-blocking after a
 * poll said the socket is readable.
 */
#ifndef BATON_ZMQX_H
#define BATON_ZMQX_H

#include <stddef.h>

#include "config.h"
#include "envelope.h"

/* A DEALER retries a lost connection after 100 ms, doubling up to this. */
#define ZMQX_RECONNECT_MAX_MS 1000

/* A ZeroMQ routing id is at most 255 bytes. */
#define ZMQX_PEER_MAX 256

struct zmqx_peer {
	unsigned char id[ZMQX_PEER_MAX];
	size_t len;
};

/*
 * CURVE keys (Z85 text, 40 characters each) for a tcp:// endpoint: the
 * router has the server pair, every other process the server's public key
 * and a pair of its own. A NULL struct means a plain socket: ipc:// (the
 * socket file's mode is the boundary) or zmq.insecure_tcp on loopback.
 */
struct zmqx_keys {
	const char *server_public, *server_secret; /* server_secret: the router only */
	const char *public, *secret;               /* clients */
};

/** The keys cfg gives for endpoint (filled into *buf), or NULL for a plain socket. */
const struct zmqx_keys *zmqx_keys_for(const struct config *cfg, const char *endpoint,
				       struct zmqx_keys *buf);
/** Whether endpoint is tcp:// on a loopback address (127.0.0.0/8, localhost, [::1]). */
int zmqx_loopback(const char *endpoint);

/** Bound ROUTER socket (mandatory routing, so a vanished peer is an error); with keys a
 *  CURVE server whose peers the ZAP handler (zap.h) vets. NULL on error (logged). */
void *zmqx_router_bind(void *ctx, const char *endpoint, const struct zmqx_keys *keys);
/** Connected DEALER socket; with keys a CURVE client. endpoint may list several
 *  (comma-separated: every router of an active/standby set); a message then
 *  goes only to one whose connection is complete. NULL on error (logged). */
void *zmqx_dealer_connect(void *ctx, const char *endpoint, const struct zmqx_keys *keys);
/** Close with a linger of linger_ms and set *sock to NULL. Accepts NULL. */
void zmqx_close(void **sock, int linger_ms);

/** Encode and send env (to peer when sock is a ROUTER, else peer is NULL). 0 or -1 (errno). */
int zmqx_send_env(void *sock, const struct zmqx_peer *peer, const struct envelope *env);

/** Send an envelope encoded earlier (env_encode) as it is. 0 or -1 (errno). */
int zmqx_send_frame(void *sock, const struct zmqx_peer *peer, const void *frame, size_t len);

/**
 * Receive one message without blocking. For a ROUTER, peer gets the
 * sender's id. Returns 1 with env filled (caller releases), 0 when no
 * message is waiting, or -1 when a frame was malformed: it is logged and
 * dropped, and the caller should just try again.
 */
int zmqx_recv_env(void *sock, struct zmqx_peer *peer, struct envelope *env);

/** Whether the socket has a message waiting (ZMQ_EVENTS), for edge-triggered ZMQ_FD users. */
int zmqx_readable(void *sock);

#endif
