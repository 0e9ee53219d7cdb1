/* command — operator commands to the router; see command.h. */
#include "command.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "capture.h"
#include "clock.h"
#include "envelope.h"
#include "events.h"
#include "log.h"
#include "xalloc.h"
#include "zmqx.h"

struct command {
	const struct config *cfg;
	void *zctx;
	atomic_uint_fast64_t next_id;
	/* capture.dir: commands the router committed, as the /admin requests
	 * they are, so a replay of the directory repeats them. */
	pthread_mutex_t capture_lock;
	struct capture_writer *capture;
	uint64_t capture_failed;
};

struct command *command_new(const struct config *cfg)
{
	struct command *c = xcalloc(1, sizeof(*c));
	c->cfg = cfg;
	atomic_init(&c->next_id, clock_wall_ms());
	pthread_mutex_init(&c->capture_lock, NULL);
	if (!(c->zctx = zmq_ctx_new())) {
		log_err("console: cannot start ZeroMQ: %s", zmq_strerror(errno));
		goto fail;
	}
	/* Asked for and impossible is a start-up error, not a silent no-capture. */
	if (cfg->capture_dir[0] &&
	    !(c->capture = capture_open(cfg->capture_dir, (size_t)cfg->capture_max_mb * 1024 * 1024)))
		goto fail;
	return c;
fail:
	command_free(c);
	return NULL;
}

void command_free(struct command *c)
{
	if (!c)
		return;
	if (c->zctx)
		zmq_ctx_term(c->zctx);
	capture_close(&c->capture);
	pthread_mutex_destroy(&c->capture_lock);
	free(c);
}

/* Records a committed command as the /admin request it stands for. */
static void command_capture(struct command *c, const char *op, const char *body, size_t len)
{
	const char *path = !strcmp(op, EV_ADMIN_HANDBACK) ? "/admin/handback" : "/admin/escalate";
	pthread_mutex_lock(&c->capture_lock);
	if (c->capture && capture_append(c->capture, clock_wall_ms(), path, body, len) < 0 &&
	    c->capture_failed++ == 0)
		log_warn("console: cannot capture %s (further failures are not logged)", path);
	pthread_mutex_unlock(&c->capture_lock);
}

/* Waits for the ACK of request id on sock until deadline (mono ms): its status, or -1. */
static int command_wait_ack(void *sock, uint64_t id, uint64_t deadline, const char **err)
{
	for (;;) {
		uint64_t now = clock_mono_ms();
		if (now >= deadline)
			return -1;
		zmq_pollitem_t pi = { .socket = sock, .events = ZMQ_POLLIN };
		int n = zmq_poll(&pi, 1, (long)(deadline - now));
		if (n < 0 && errno != EINTR)
			return -1;
		if (n <= 0)
			continue;
		struct envelope env;
		int rc;
		while ((rc = zmqx_recv_env(sock, NULL, &env)) != 0) {
			if (rc < 0)
				continue;
			bool ours = env.type == ENV_ACK && env.id == id;
			int status = (int)env.status;
			if (ours && status == ST_FAILED)
				*err = "no such conversation";
			env_release(&env);
			if (ours)
				return status;
		}
	}
}

int command_run(struct command *c, const char *op, const char *body, size_t len,
		const char **why)
{
	struct envelope env;
	struct zmqx_keys keys;
	void *sock = NULL;
	int http = 503;

	*why = NULL;
	if (events_admin(op, body, len, &env, why) != 0) {
		*why = *why ? *why : "bad body";
		return 400;
	}
	env.id = atomic_fetch_add(&c->next_id, 1);
	const struct zmqx_keys *k = zmqx_keys_for(c->cfg, c->cfg->router_ingress_endpoint, &keys);
	if (!(sock = zmqx_dealer_connect(c->zctx, c->cfg->router_ingress_endpoint, k))) {
		*why = "cannot reach the router";
		goto out;
	}
	if (zmqx_send_env(sock, NULL, &env) < 0) {
		log_warn("console: cannot send %s to the router: %s", op, zmq_strerror(errno));
		*why = "cannot reach the router";
		goto out;
	}
	const char *err = NULL;
	int status = command_wait_ack(sock, env.id,
				      clock_mono_ms() + (uint64_t)c->cfg->http_ack_timeout_ms, &err);
	switch (status) {
	case ST_OK:
		command_capture(c, op, body, len);
		http = 200;
		break;
	case ST_DUPLICATE:
		http = 200;
		break;
	case ST_FAILED:
		http = 404;
		*why = err;
		break;
	case -1:
		*why = "the router did not answer in time";
		break;
	default:
		*why = "the router is busy";
		break;
	}
out:
	zmqx_close(&sock, 0);
	env_release(&env);
	return http;
}
