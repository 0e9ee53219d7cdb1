/*
 * mediaproxy — the console's media downloads on a thread of their own;
 * see mediaproxy.h. Here: the hand-over between request threads and the
 * fetching thread (a list under one lock, an eventfd that wakes the
 * loop), and the copy of each outcome for the thread that waits for it.
 */
#include "mediaproxy.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "httpc.h"
#include "log.h"
#include "xalloc.h"

/* The loop looks for a stop at least this often. */
#define MP_POLL_MS 200

/* One fetch, on the waiting thread's stack until done is set. */
struct mp_req {
	struct mp_req *next;
	struct mediafetch_cfg mcfg; /* borrowed: the caller's config */
	const struct media_item *item;
	struct mediaproxy_result *out;
	pthread_cond_t cond;
	bool started, done;
	struct mediaproxy *mp;
};

struct mediaproxy {
	pthread_t thread;
	pthread_mutex_t lock;
	int wake; /* eventfd: a request or the stop arrived */
	struct mp_req *reqs; /* every request not done, started or not */
	size_t n;
	bool stopping;
	struct httpc *h; /* the fetching thread's only */
};

static void mp_wake(struct mediaproxy *mp)
{
	uint64_t one = 1;
	/* EAGAIN: the counter is already set, the loop will wake anyway. */
	if (write(mp->wake, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("console: cannot wake the media thread: %s", strerror(errno));
}

/* Under the lock: the outcome is there; the waiter may free r once it is unlocked. */
static void mp_complete_locked(struct mediaproxy *mp, struct mp_req *r)
{
	for (struct mp_req **p = &mp->reqs; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	mp->n--;
	r->done = true;
	pthread_cond_signal(&r->cond);
}

static void mp_fail(struct mp_req *r, enum mediafetch_error err, const char *reason)
{
	struct mediaproxy *mp = r->mp;
	r->out->err = err;
	r->out->reason = xstrdup(reason);
	pthread_mutex_lock(&mp->lock);
	mp_complete_locked(mp, r);
	pthread_mutex_unlock(&mp->lock);
}

static void mp_done(const struct mediafetch_result *res, void *arg)
{
	struct mp_req *r = arg;
	struct mediaproxy_result *out = r->out;
	out->err = res->err;
	out->reason = xstrdup(res->reason);
	out->ctype = res->ctype ? xstrdup(res->ctype) : NULL;
	if (res->err == MF_OK) {
		/* +1: never a zero-byte malloc for an empty body. */
		out->data = xmalloc(res->len + 1);
		memcpy(out->data, res->data, res->len);
		out->len = res->len;
	}
	pthread_mutex_lock(&r->mp->lock);
	mp_complete_locked(r->mp, r);
	pthread_mutex_unlock(&r->mp->lock);
}

/* Start what arrived since the last round (the lock is not held while curl starts them). */
static void mp_start_new(struct mediaproxy *mp)
{
	struct mp_req *fresh[MEDIAPROXY_INFLIGHT];
	size_t nf = 0;
	pthread_mutex_lock(&mp->lock);
	for (struct mp_req *r = mp->reqs; r && nf < MEDIAPROXY_INFLIGHT; r = r->next) {
		if (!r->started) {
			r->started = true;
			fresh[nf++] = r;
		}
	}
	pthread_mutex_unlock(&mp->lock);
	for (size_t i = 0; i < nf; i++) {
		struct mp_req *r = fresh[i];
		int rc = mediafetch_start(mp->h, &r->mcfg, r->item, mp_done, r);
		if (rc > 0)
			mp_fail(r, (enum mediafetch_error)rc, mediafetch_error_text((enum mediafetch_error)rc));
		else if (rc < 0)
			mp_fail(r, MF_TRANSPORT, "the download could not start");
	}
}

static void *mp_main(void *arg)
{
	struct mediaproxy *mp = arg;
	for (;;) {
		pthread_mutex_lock(&mp->lock);
		bool stop = mp->stopping;
		pthread_mutex_unlock(&mp->lock);
		if (stop)
			break;
		mp_start_new(mp);
		if (httpc_poll(mp->h, mp->wake, MP_POLL_MS) < 0)
			usleep(MP_POLL_MS * 1000); /* logged; do not spin */
		uint64_t n;
		if (read(mp->wake, &n, sizeof(n)) < 0 && errno != EAGAIN)
			log_warn("console: cannot read the media thread's wake-up: %s", strerror(errno));
	}
	/* Whoever still waits is told now; their transfers die with the loop
	 * (httpc_destroy calls no callback, so none touches a request again;
	 * mediafetch's own record of each is lost with the process). */
	pthread_mutex_lock(&mp->lock);
	while (mp->reqs) {
		struct mp_req *r = mp->reqs;
		r->out->err = MF_TRANSPORT;
		r->out->reason = xstrdup("the console is stopping");
		mp_complete_locked(mp, r);
	}
	pthread_mutex_unlock(&mp->lock);
	httpc_destroy(&mp->h);
	return NULL;
}

struct mediaproxy *mediaproxy_new(void)
{
	struct mediaproxy *mp = xcalloc(1, sizeof(*mp));
	pthread_mutex_init(&mp->lock, NULL);
	mp->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mp->wake < 0) {
		log_err("console: cannot make the media thread's eventfd: %s", strerror(errno));
		goto fail;
	}
	mediafetch_metrics_register();
	if (!(mp->h = httpc_new())) {
		log_err("console: cannot start an HTTP client for media");
		goto fail;
	}
	int rc = pthread_create(&mp->thread, NULL, mp_main, mp);
	if (rc) {
		log_err("console: cannot start the media thread: %s", strerror(rc));
		goto fail;
	}
	return mp;
fail:
	httpc_destroy(&mp->h);
	if (mp->wake >= 0)
		close(mp->wake);
	pthread_mutex_destroy(&mp->lock);
	free(mp);
	return NULL;
}

void mediaproxy_stop(struct mediaproxy *mp)
{
	if (!mp)
		return;
	pthread_mutex_lock(&mp->lock);
	bool first = !mp->stopping;
	mp->stopping = true;
	pthread_mutex_unlock(&mp->lock);
	if (!first)
		return;
	mp_wake(mp);
	pthread_join(mp->thread, NULL);
}

void mediaproxy_free(struct mediaproxy *mp)
{
	if (!mp)
		return;
	mediaproxy_stop(mp);
	close(mp->wake);
	pthread_mutex_destroy(&mp->lock);
	free(mp);
}

int mediaproxy_fetch(struct mediaproxy *mp, const struct config *cfg,
		     const struct media_item *item, struct mediaproxy_result *out)
{
	struct mp_req r = { .item = item, .out = out, .mp = mp };
	mediafetch_config(cfg, &r.mcfg);
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&mp->lock);
	if (mp->stopping || mp->n >= MEDIAPROXY_INFLIGHT) {
		pthread_mutex_unlock(&mp->lock);
		return -1;
	}
	pthread_cond_init(&r.cond, NULL);
	r.next = mp->reqs;
	mp->reqs = &r;
	mp->n++;
	pthread_mutex_unlock(&mp->lock);
	mp_wake(mp);

	pthread_mutex_lock(&mp->lock);
	while (!r.done)
		pthread_cond_wait(&r.cond, &mp->lock);
	pthread_mutex_unlock(&mp->lock);
	pthread_cond_destroy(&r.cond);
	return 0;
}

void mediaproxy_result_release(struct mediaproxy_result *r)
{
	free(r->reason);
	free(r->ctype);
	free(r->data);
	memset(r, 0, sizeof(*r));
}
