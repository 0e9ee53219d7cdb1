/*
 * zsend — test tool: connect a DEALER to a ZeroMQ endpoint and send raw
 * frames given in hex, to see that baton drops what it cannot read.
 *
 *   zsend ENDPOINT HEX [HEX...]     one message per argument
 *   zsend ENDPOINT -m HEX HEX       one multipart message
 *   zsend --curve SERVERPUB PUB SECRET ENDPOINT ...   as a CURVE client
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static size_t unhex(const char *h, unsigned char *out, size_t cap)
{
	size_t n = 0;
	while (h[0] && h[1] && n < cap) {
		unsigned v;
		if (sscanf(h, "%2x", &v) != 1)
			break;
		out[n++] = (unsigned char)v;
		h += 2;
	}
	return n;
}

int main(int argc, char **argv)
{
	static unsigned char buf[1 << 20];
	const char *curve[3] = { NULL, NULL, NULL };
	if (argc > 4 && !strcmp(argv[1], "--curve")) {
		curve[0] = argv[2];
		curve[1] = argv[3];
		curve[2] = argv[4];
		argv += 4;
		argc -= 4;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: zsend [--curve SERVERPUB PUB SECRET] ENDPOINT [-m] HEX...\n");
		return 2;
	}
	void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 2000, multi = !strcmp(argv[2], "-m"), sndtimeo = 1000;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	/* A peer that refuses us (CURVE) leaves no pipe: a send must not wait for ever. */
	zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof(sndtimeo));
	if (curve[0] && (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, curve[0], 41) ||
			 zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, curve[1], 41) ||
			 zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve[2], 41))) {
		fprintf(stderr, "zsend: curve keys: %s\n", zmq_strerror(zmq_errno()));
		return 1;
	}
	if (zmq_connect(s, argv[1]) != 0) {
		fprintf(stderr, "zsend: connect %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
		return 1;
	}
	usleep(200000); /* let the connection come up before sending */
	for (int i = multi ? 3 : 2; i < argc; i++) {
		size_t n = unhex(argv[i], buf, sizeof(buf));
		int more = multi && i + 1 < argc;
		if (zmq_send(s, buf, n, more ? ZMQ_SNDMORE : 0) < 0) {
			/* Refused or unreachable: what the caller looks for in the logs. */
			fprintf(stderr, "zsend: send: %s\n", zmq_strerror(zmq_errno()));
			break;
		}
	}
	zmq_close(s);
	zmq_ctx_term(ctx);
	return 0;
}
