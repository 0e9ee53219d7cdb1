/* zmqx — ZeroMQ helpers carrying envelopes; see zmqx.h. */
#include "zmqx.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "xalloc.h"

/* Bounded queues: past this the sender sees EAGAIN and applies backpressure
 * instead of the process growing without limit. */
#define ZMQX_HWM 100000

static void zmqx_common_opts(void *s)
{
	int hwm = ZMQX_HWM, linger = 0;
	zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	/* A peer's frame larger than any envelope is cut off by libzmq itself. */
	int64_t maxmsg = (int64_t)ENV_FRAME_MAX + 1024;
	zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
}

int zmqx_loopback(const char *endpoint)
{
	if (strncmp(endpoint, "tcp://", 6))
		return 0;
	const char *h = endpoint + 6;
	return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6);
}

const struct zmqx_keys *zmqx_keys_for(const struct config *cfg, const char *endpoint,
				       struct zmqx_keys *buf)
{
	/* A list is CURVE as soon as one of its endpoints is tcp://. */
	bool tcp = !strncmp(endpoint, "tcp://", 6) || strstr(endpoint, ",tcp://") ||
		   strstr(endpoint, ", tcp://");
	if (!tcp || cfg->zmq_insecure_tcp)
		return NULL;
	buf->server_public = cfg->zmq_server_public_key;
	buf->server_secret = cfg->zmq_server_secret_key;
	buf->public = cfg->zmq_public_key;
	buf->secret = cfg->zmq_secret_key;
	return buf;
}

/* Z85 keys are 40 characters; setsockopt takes them as 41 bytes with the NUL. */
static int zmqx_key(void *s, int opt, const char *z85, const char *what)
{
	if (!z85 || strlen(z85) != 40 || zmq_setsockopt(s, opt, z85, 41) != 0)
		return log_err("cannot set the CURVE %s: %s", what,
			       z85 && strlen(z85) == 40 ? zmq_strerror(errno) : "not a 40-character key");
	return 0;
}

void *zmqx_router_bind(void *ctx, const char *endpoint, const struct zmqx_keys *keys)
{
	void *s = zmq_socket(ctx, ZMQ_ROUTER);
	if (!s) {
		log_err("cannot create ROUTER socket: %s", zmq_strerror(errno));
		return NULL;
	}
	zmqx_common_opts(s);
	int one = 1;
	zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
	if (keys) {
		if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
		    zmqx_key(s, ZMQ_CURVE_SECRETKEY, keys->server_secret, "server secret key") < 0 ||
		    zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "baton", 5) != 0) {
			log_err("cannot make %s a CURVE server", endpoint);
			zmq_close(s);
			return NULL;
		}
	}
	if (strncmp(endpoint, "ipc://", 6) == 0)
		unlink(endpoint + 6); /* a stale socket file from a killed router */
	if (zmq_bind(s, endpoint) != 0) {
		log_err("cannot bind %s: %s", endpoint, zmq_strerror(errno));
		zmq_close(s);
		return NULL;
	}
	/* On one host the socket file is the boundary: whoever can connect is
	 * a baton process (README "Security"), so only our user may, whatever
	 * the umask. */
	if (strncmp(endpoint, "ipc://", 6) == 0 && chmod(endpoint + 6, 0600) != 0) {
		log_err("cannot restrict %s to its owner: %s", endpoint, strerror(errno));
		zmq_close(s);
		return NULL;
	}
	return s;
}

void *zmqx_dealer_connect(void *ctx, const char *endpoint, const struct zmqx_keys *keys)
{
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	if (!s) {
		log_err("cannot create DEALER socket: %s", zmq_strerror(errno));
		return NULL;
	}
	zmqx_common_opts(s);
	if (keys && (zmqx_key(s, ZMQ_CURVE_SERVERKEY, keys->server_public, "server public key") < 0 ||
		     zmqx_key(s, ZMQ_CURVE_PUBLICKEY, keys->public, "public key") < 0 ||
		     zmqx_key(s, ZMQ_CURVE_SECRETKEY, keys->secret, "secret key") < 0)) {
		log_err("cannot make the connection to %s a CURVE client", endpoint);
		zmq_close(s);
		return NULL;
	}
	int ivl = 100, max = ZMQX_RECONNECT_MAX_MS;
	zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
	zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &max, sizeof(max));
	/* Several routers (one active, the others standing by without binding):
	 * messages go only to a completed connection, so never to a standby. */
	if (strchr(endpoint, ',')) {
		int one = 1;
		zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof(one));
	}
	char *list = xstrdup(endpoint), *save = NULL;
	for (char *ep = strtok_r(list, ", ", &save); ep; ep = strtok_r(NULL, ", ", &save)) {
		if (zmq_connect(s, ep) != 0) {
			log_err("cannot connect %s: %s", ep, zmq_strerror(errno));
			free(list);
			zmq_close(s);
			return NULL;
		}
	}
	free(list);
	return s;
}

void zmqx_close(void **sock, int linger_ms)
{
	if (!sock || !*sock)
		return;
	zmq_setsockopt(*sock, ZMQ_LINGER, &linger_ms, sizeof(linger_ms));
	zmq_close(*sock);
	*sock = NULL;
}

int zmqx_send_env(void *sock, const struct zmqx_peer *peer, const struct envelope *env)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = env_encode(env, &buf, &len);
	if (rc != ENV_EOK) {
		errno = EINVAL;
		return log_err("cannot encode %s envelope id=%llu: %s", env_type_name(env->type),
			       (unsigned long long)env->id, env_strerror(rc));
	}
	rc = zmqx_send_frame(sock, peer, buf, len);
	free(buf);
	return rc;
}

int zmqx_send_frame(void *sock, const struct zmqx_peer *peer, const void *frame, size_t len)
{
	if (peer && zmq_send(sock, peer->id, peer->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		return -1;
	return zmq_send(sock, frame, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

/* Drops whatever frames remain of a multipart message. */
static void zmqx_drain_more(void *sock)
{
	int more = 0;
	size_t ml = sizeof(more);
	while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml) == 0 && more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		zmq_msg_recv(&m, sock, ZMQ_DONTWAIT);
		zmq_msg_close(&m);
	}
}

int zmqx_recv_env(void *sock, struct zmqx_peer *peer, struct envelope *env)
{
	zmq_msg_t m;
	int more = 0;
	size_t ml = sizeof(more);

	memset(env, 0, sizeof(*env));
	if (peer) {
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			return 0;
		}
		peer->len = zmq_msg_size(&m);
		if (peer->len > sizeof(peer->id))
			peer->len = sizeof(peer->id);
		memcpy(peer->id, zmq_msg_data(&m), peer->len);
		zmq_msg_close(&m);
		zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
		if (!more) {
			log_warn("dropped a message without payload frame");
			return -1;
		}
	}
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&m);
		return peer ? -1 : 0;
	}
	int rc = env_decode(zmq_msg_data(&m), zmq_msg_size(&m), env);
	size_t sz = zmq_msg_size(&m);
	zmq_msg_close(&m);
	zmqx_drain_more(sock);
	if (rc != ENV_EOK) {
		log_warn("dropped a malformed envelope (%zu bytes): %s", sz, env_strerror(rc));
		return -1;
	}
	return 1;
}

int zmqx_readable(void *sock)
{
	int ev = 0;
	size_t len = sizeof(ev);
	if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len) != 0)
		return 0;
	return (ev & ZMQ_POLLIN) != 0;
}
