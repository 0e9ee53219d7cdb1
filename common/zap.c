/* zap — CURVE key allow-list for the router's tcp sockets; see zap.h. */
#include "zap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES 7
#define ZAP_LOG_MS 60000

struct zap {
	void *sock;
	uint8_t (*keys)[32];
	size_t nkeys;
	size_t refused;
	uint8_t last_key[32];
	uint64_t last_log; /* mono ms of the last refusal logged for last_key */
};

struct zap *zap_new(void *zctx, const char *allowed)
{
	struct zap *z = xcalloc(1, sizeof(*z));
	char key[41];
	for (const char *p = allowed; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		while (n && *p == ' ')
			p++, n--;
		while (n && p[n - 1] == ' ')
			n--;
		if (n) {
			z->keys = xrealloc(z->keys, (z->nkeys + 1) * sizeof(*z->keys));
			if (n != 40 || (memcpy(key, p, 40), key[40] = '\0',
					!zmq_z85_decode(z->keys[z->nkeys], key))) {
				log_err("zmq.allowed_keys: '%.*s' is not a 40-character Z85 key", (int)n, p);
				goto fail;
			}
			z->nkeys++;
		}
		p = comma ? comma + 1 : p + n;
	}
	if (!(z->sock = zmq_socket(zctx, ZMQ_REP)) || zmq_bind(z->sock, ZAP_ENDPOINT) != 0) {
		log_err("cannot start the ZAP handler: %s", zmq_strerror(errno));
		goto fail;
	}
	return z;
fail:
	zap_free(&z);
	return NULL;
}

void zap_free(struct zap **zp)
{
	if (!zp || !*zp)
		return;
	if ((*zp)->sock) {
		int linger = 0;
		zmq_setsockopt((*zp)->sock, ZMQ_LINGER, &linger, sizeof(linger));
		zmq_close((*zp)->sock);
	}
	free((*zp)->keys);
	free(*zp);
	*zp = NULL;
}

void *zap_socket(struct zap *z)
{
	return z->sock;
}

size_t zap_refused(const struct zap *z)
{
	return z->refused;
}

static bool zap_allowed(const struct zap *z, const zmq_msg_t *mech, const zmq_msg_t *cred)
{
	if (zmq_msg_size(mech) != 5 || memcmp(zmq_msg_data((zmq_msg_t *)mech), "CURVE", 5) ||
	    zmq_msg_size(cred) != 32)
		return false;
	for (size_t i = 0; i < z->nkeys; i++)
		if (!memcmp(z->keys[i], zmq_msg_data((zmq_msg_t *)cred), 32))
			return true;
	return false;
}

static void zap_log_refusal(struct zap *z, const zmq_msg_t *addr, const zmq_msg_t *cred)
{
	char key[41] = "(none)", where[64];
	uint64_t now = clock_mono_ms();
	size_t an = zmq_msg_size(addr) < sizeof(where) - 1 ? zmq_msg_size(addr) : sizeof(where) - 1;
	memcpy(where, zmq_msg_data((zmq_msg_t *)addr), an);
	where[an] = '\0';
	bool curve = zmq_msg_size(cred) == 32;
	if (curve)
		zmq_z85_encode(key, zmq_msg_data((zmq_msg_t *)cred), 32);
	if (curve && !memcmp(z->last_key, zmq_msg_data((zmq_msg_t *)cred), 32) &&
	    now < z->last_log + ZAP_LOG_MS)
		return;
	if (curve)
		memcpy(z->last_key, zmq_msg_data((zmq_msg_t *)cred), 32);
	z->last_log = now;
	log_warn("refused a ZeroMQ peer from %s: public key %s is not in zmq.allowed_keys", where,
		 key);
}

void zap_handle(struct zap *z)
{
	zmq_msg_t f[ZAP_FRAMES];
	for (;;) {
		int n = 0, more = 1;
		size_t ml = sizeof(more);
		while (more) {
			zmq_msg_t m;
			zmq_msg_init(&m);
			if (zmq_msg_recv(&m, z->sock, n ? 0 : ZMQ_DONTWAIT) < 0) {
				zmq_msg_close(&m);
				if (!n)
					return;
				break;
			}
			zmq_getsockopt(z->sock, ZMQ_RCVMORE, &more, &ml);
			if (n < ZAP_FRAMES)
				f[n++] = m;
			else
				zmq_msg_close(&m);
		}
		/* version, request id, domain, address, identity, mechanism, credentials */
		bool ok = n == ZAP_FRAMES && zap_allowed(z, &f[5], &f[6]);
		if (n == ZAP_FRAMES && !ok) {
			z->refused++;
			zap_log_refusal(z, &f[3], &f[6]);
		}
		const char *code = ok ? "200" : "400", *text = ok ? "OK" : "key not allowed";
		zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE);
		if (n >= 2)
			zmq_send(z->sock, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
		else
			zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
		zmq_send(z->sock, code, 3, ZMQ_SNDMORE);
		zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE);
		zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
		zmq_send(z->sock, "", 0, 0);
		for (int i = 0; i < n; i++)
			zmq_msg_close(&f[i]);
	}
}
