/*
 * dispatch — lanes, workers and credit; see dispatch.h.
 *
 * A lane whose head job is not in flight is in one of its kind's two
 * lists: ready (the head may start now) or delayed (the head waits for
 * its not_before; kept in not_before order, so the earliest is first).
 * Both ends of the router's loop are O(1) however many lanes wait:
 * due delayed lanes move to ready from the front, and the next deadline
 * is the front's. Lists are utlist doubly-linked lists, indexes are
 * uthash tables.
 */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uthash.h>
#include <utlist.h>

#include "clock.h"
#include "log.h"
#include "xalloc.h"

struct lane;
struct worker;

struct djob {
	uint64_t id;
	struct lane *lane;
	struct worker *worker; /* set while in flight */
	uint64_t not_before;
	uint64_t attempt;        /* token of the latest dispatch (or claim), 0 = never */
	uint64_t uncertain_since; /* wall ms: an attempt's outcome is unknown since then, 0 = none */
	bool held;               /* its result is received, waiting for a commit */
	uint64_t answered;       /* the attempt whose result came back, 0 = none */
	UT_hash_handle hh;
	struct djob *prev, *next;   /* lane FIFO */
	struct djob *wprev, *wnext; /* worker's in-flight list */
};

enum lane_list { LANE_NONE, LANE_READY, LANE_DELAYED };

struct lane {
	char *key; /* kind digit + conversation key */
	enum job_kind kind;
	struct djob *jobs;
	enum lane_list list;
	UT_hash_handle hh;
	struct lane *rprev, *rnext; /* in ready[kind] or delayed[kind] */
};

struct worker {
	unsigned char id[ZMQX_PEER_MAX];
	size_t idlen;
	char name[64];  /* what it calls itself in HELLO: kind-host-pid */
	enum job_kind kind;
	int capacity;
	int inflight;
	uint64_t last_seen;
	struct djob *jobs;
	UT_hash_handle hh;
};

struct dispatch {
	struct djob *jobs;
	struct lane *lanes;
	struct lane *ready[JOB_KINDS];
	struct lane *delayed[JOB_KINDS];
	struct worker *workers;
	size_t queued[JOB_KINDS];
	size_t inflight;
	uint64_t boot; /* random, so attempts of two router runs never compare equal */
	uint64_t seq;
};

/* Workers are named by process kind, jobs by what they do. */
static const char *worker_kind_name(enum job_kind k)
{
	return k == JOB_SEND ? "egress" : job_kind_name(k);
}

struct dispatch *dispatch_new(void)
{
	struct dispatch *d = xcalloc(1, sizeof(struct dispatch));
	uint32_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (uint32_t)clock_wall_ms() ^ (uint32_t)clock_mono_ms();
	/* 30 bits of run, 32 of sequence: an attempt fits an int64 on the wire. */
	d->boot = (uint64_t)(r & 0x3fffffffu) << 32;
	return d;
}

static void lane_unlist(struct dispatch *d, struct lane *l)
{
	if (l->list == LANE_READY)
		DL_DELETE2(d->ready[l->kind], l, rprev, rnext);
	else if (l->list == LANE_DELAYED)
		DL_DELETE2(d->delayed[l->kind], l, rprev, rnext);
	l->list = LANE_NONE;
}

/* Into delayed[kind], after every lane due no later: from the back,
 * since deadlines mostly grow (a burst window or a backoff from now). */
static void lane_delay(struct dispatch *d, struct lane *l)
{
	struct lane **head = &d->delayed[l->kind];
	uint64_t due = l->jobs->not_before;
	struct lane *at = *head ? (*head)->rprev : NULL; /* utlist: head->prev is the tail */
	while (at && at->jobs->not_before > due)
		at = at == *head ? NULL : at->rprev;
	if (!at) {
		DL_PREPEND2(*head, l, rprev, rnext);
	} else if (!at->rnext) {
		DL_APPEND2(*head, l, rprev, rnext);
	} else {
		/* between at and at->rnext */
		l->rprev = at;
		l->rnext = at->rnext;
		at->rnext->rprev = l;
		at->rnext = l;
	}
	l->list = LANE_DELAYED;
}

static void lane_free(struct dispatch *d, struct lane *l)
{
	lane_unlist(d, l);
	HASH_DEL(d->lanes, l);
	free(l->key);
	free(l);
}

void dispatch_destroy(struct dispatch **dp)
{
	if (!dp || !*dp)
		return;
	struct dispatch *d = *dp;
	struct djob *j, *jt;
	HASH_ITER(hh, d->jobs, j, jt) {
		HASH_DEL(d->jobs, j);
		free(j);
	}
	struct lane *l, *lt;
	HASH_ITER(hh, d->lanes, l, lt)
		lane_free(d, l);
	struct worker *w, *wt;
	HASH_ITER(hh, d->workers, w, wt) {
		HASH_DEL(d->workers, w);
		free(w);
	}
	free(d);
	*dp = NULL;
}

/* Puts the lane in the list its head calls for: none (in flight or
 * empty), delayed (waits for not_before) or ready. */
static void lane_update(struct dispatch *d, struct lane *l, bool to_front)
{
	if (!l->jobs) {
		lane_free(d, l);
		return;
	}
	const struct djob *head = l->jobs;
	enum lane_list want = head->worker || head->held ? LANE_NONE :
		head->not_before ? LANE_DELAYED : LANE_READY;
	if (want == l->list && want != LANE_DELAYED)
		return;
	lane_unlist(d, l);
	if (want == LANE_DELAYED) {
		lane_delay(d, l);
	} else if (want == LANE_READY) {
		if (to_front)
			DL_PREPEND2(d->ready[l->kind], l, rprev, rnext);
		else
			DL_APPEND2(d->ready[l->kind], l, rprev, rnext);
		l->list = LANE_READY;
	}
}

/* Delayed lanes whose time has come join the ready list. */
static void dispatch_promote(struct dispatch *d, enum job_kind k, uint64_t now)
{
	struct lane *l;
	while ((l = d->delayed[k]) && l->jobs->not_before <= now) {
		DL_DELETE2(d->delayed[k], l, rprev, rnext);
		l->jobs->not_before = 0;
		DL_APPEND2(d->ready[k], l, rprev, rnext);
		l->list = LANE_READY;
	}
}

void dispatch_add(struct dispatch *d, uint64_t id, enum job_kind kind, const char *conv,
		  uint64_t not_before)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	if (j)
		return; /* already known: adding twice must not run it twice */
	char *key = xasprintf("%d%s", (int)kind, conv);
	struct lane *l = NULL;
	HASH_FIND_STR(d->lanes, key, l);
	if (!l) {
		l = xcalloc(1, sizeof(*l));
		l->key = key;
		l->kind = kind;
		HASH_ADD_KEYPTR(hh, d->lanes, l->key, strlen(l->key), l);
	} else {
		free(key);
	}
	j = xcalloc(1, sizeof(*j));
	j->id = id;
	j->lane = l;
	j->not_before = not_before;
	HASH_ADD(hh, d->jobs, id, sizeof(j->id), j);
	DL_APPEND(l->jobs, j);
	d->queued[kind]++;
	lane_update(d, l, false);
}

static void worker_unlink(struct dispatch *d, struct djob *j)
{
	struct worker *w = j->worker;
	if (!w)
		return;
	DL_DELETE2(w->jobs, j, wprev, wnext);
	w->inflight--;
	d->inflight--;
	j->worker = NULL;
}

void dispatch_done(struct dispatch *d, uint64_t id)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	if (!j)
		return;
	struct lane *l = j->lane;
	if (j->worker)
		worker_unlink(d, j);
	else if (!j->held)
		d->queued[l->kind]--;
	DL_DELETE(l->jobs, j);
	HASH_DEL(d->jobs, j);
	free(j);
	lane_update(d, l, false);
}

void dispatch_retry(struct dispatch *d, uint64_t id, uint64_t not_before)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	if (!j)
		return;
	if (j->worker || j->held) {
		/* Its attempt is over: the worker's HELLOs until the ack still
		 * name it, and a claim of it must not take the job back. */
		if (j->worker) {
			j->answered = j->attempt;
			worker_unlink(d, j);
		}
		j->held = false;
		d->queued[j->lane->kind]++;
	}
	j->not_before = not_before;
	lane_update(d, j->lane, true);
}

void dispatch_hold(struct dispatch *d, uint64_t id)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	if (!j || j->held)
		return;
	if (j->worker)
		worker_unlink(d, j);
	else
		d->queued[j->lane->kind]--;
	j->held = true;
	j->answered = j->attempt;
	lane_update(d, j->lane, false);
}

bool dispatch_is_held(const struct dispatch *d, uint64_t id)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	return j && j->held;
}

void dispatch_set_uncertain(struct dispatch *d, uint64_t id, uint64_t since_wall)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	if (j && !j->uncertain_since)
		j->uncertain_since = since_wall ? since_wall : 1;
}

bool dispatch_attempt(const struct dispatch *d, uint64_t id, uint64_t *attempt,
		      uint64_t *uncertain_since)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	if (!j)
		return false;
	if (attempt)
		*attempt = j->attempt;
	if (uncertain_since)
		*uncertain_since = j->uncertain_since;
	return j->worker != NULL;
}

void dispatch_claim(struct dispatch *d, const struct zmqx_peer *peer, uint64_t id,
		    uint64_t attempt)
{
	struct worker *w = NULL;
	struct djob *j = NULL;
	HASH_FIND(hh, d->workers, peer->id, peer->len, w);
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	if (!w || !j || j->worker || j->held || w->kind != j->lane->kind)
		return;
	/* A worker claims a job until its result is acknowledged: a HELLO
	 * sent between the result and the ack claims an attempt that is
	 * over, and taking it would leave the job with a worker that has
	 * nothing to run (a failed handoff never retried). */
	if (attempt && attempt == j->answered)
		return;
	if (j != j->lane->jobs) {
		/* Not its lane's turn: a job behind it cannot have run. */
		struct log_ids ids = { .job = id };
		log_emit(LOG_WARN, &ids, "a %s worker claims a job that is not at the head of its "
			 "lane; left queued", worker_kind_name(w->kind));
		return;
	}
	struct lane *l = j->lane;
	lane_unlist(d, l);
	j->worker = w;
	j->attempt = attempt;
	j->not_before = 0;
	DL_APPEND2(w->jobs, j, wprev, wnext);
	w->inflight++;
	d->inflight++;
	d->queued[l->kind]--;
	struct log_ids ids = { .job = id };
	log_emit(LOG_DEBUG, &ids, "%s worker holds this job from before the restart",
		 worker_kind_name(w->kind));
}

bool dispatch_known(const struct dispatch *d, uint64_t id)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	return j != NULL;
}

bool dispatch_answered(const struct dispatch *d, uint64_t id, uint64_t attempt)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	return j && attempt && j->answered == attempt && !j->held;
}

bool dispatch_in_flight(const struct dispatch *d, uint64_t id)
{
	struct djob *j = NULL;
	HASH_FIND(hh, d->jobs, &id, sizeof(id), j);
	return j && j->worker;
}

void dispatch_hello(struct dispatch *d, const struct zmqx_peer *peer, enum job_kind kind,
		    const char *name, int capacity, uint64_t now)
{
	struct worker *w = NULL;
	HASH_FIND(hh, d->workers, peer->id, peer->len, w);
	if (!w) {
		w = xcalloc(1, sizeof(*w));
		memcpy(w->id, peer->id, peer->len);
		w->idlen = peer->len;
		w->kind = kind;
		snprintf(w->name, sizeof(w->name), "%s", name && *name ? name : "(unnamed)");
		HASH_ADD_KEYPTR(hh, d->workers, w->id, w->idlen, w);
		log_info("%s worker joined: %s, capacity %d", worker_kind_name(kind), w->name, capacity);
	} else if (capacity == 0 && w->capacity > 0) {
		log_info("%s worker %s is stopping: no new jobs for it", worker_kind_name(kind), w->name);
	}
	w->capacity = capacity;
	w->last_seen = now;
}

void dispatch_touch(struct dispatch *d, const struct zmqx_peer *peer, uint64_t now)
{
	struct worker *w = NULL;
	HASH_FIND(hh, d->workers, peer->id, peer->len, w);
	if (w)
		w->last_seen = now;
}

bool dispatch_knows(const struct dispatch *d, const struct zmqx_peer *peer)
{
	struct worker *w = NULL;
	HASH_FIND(hh, d->workers, peer->id, peer->len, w);
	return w != NULL;
}

static void worker_drop(struct dispatch *d, struct worker *w)
{
	struct djob *j, *jt;
	uint64_t wall = clock_wall_ms();
	DL_FOREACH_SAFE2(w->jobs, j, jt, wnext) {
		struct lane *l = j->lane;
		worker_unlink(d, j);
		/* Whatever the worker did with it is unknown: a send may have left. */
		if (!j->uncertain_since)
			j->uncertain_since = wall;
		d->queued[l->kind]++;
		lane_update(d, l, true);
	}
	HASH_DEL(d->workers, w);
	free(w);
}

void dispatch_worker_lost(struct dispatch *d, const struct zmqx_peer *peer)
{
	struct worker *w = NULL;
	HASH_FIND(hh, d->workers, peer->id, peer->len, w);
	if (w) {
		log_warn("%s worker %s unreachable: re-dispatching its %d jobs",
			 worker_kind_name(w->kind), w->name, w->inflight);
		worker_drop(d, w);
	}
}

int dispatch_expire(struct dispatch *d, uint64_t now, uint64_t timeout_ms)
{
	struct worker *w, *wt;
	int n = 0;
	HASH_ITER(hh, d->workers, w, wt) {
		if (w->last_seen + timeout_ms < now) {
			/* A worker that said goodbye (credit 0) and held nothing left as
			 * planned (a scale-down, a restart): not worth a warning. */
			if (w->capacity == 0 && w->inflight == 0)
				log_info("%s worker %s left", worker_kind_name(w->kind), w->name);
			else
				log_warn("%s worker %s silent for %llu ms: re-dispatching its %d jobs",
					 worker_kind_name(w->kind), w->name,
					 (unsigned long long)(now - w->last_seen), w->inflight);
			worker_drop(d, w);
			n++;
		}
	}
	return n;
}

static struct worker *dispatch_pick_worker(struct dispatch *d, enum job_kind kind)
{
	struct worker *w, *wt, *best = NULL;
	HASH_ITER(hh, d->workers, w, wt) {
		if (w->kind != kind || w->inflight >= w->capacity)
			continue;
		if (!best || w->capacity - w->inflight > best->capacity - best->inflight)
			best = w;
	}
	return best;
}

bool dispatch_next(struct dispatch *d, uint64_t now, uint64_t *id, struct zmqx_peer *peer)
{
	for (int k = 0; k < JOB_KINDS; k++) {
		dispatch_promote(d, (enum job_kind)k, now);
		if (!d->ready[k])
			continue;
		struct worker *w = dispatch_pick_worker(d, (enum job_kind)k);
		if (!w)
			continue;
		struct lane *l = d->ready[k];
		{
			struct djob *j = l->jobs;
			DL_DELETE2(d->ready[k], l, rprev, rnext);
			l->list = LANE_NONE;
			j->worker = w;
			j->attempt = d->boot | (++d->seq & 0xffffffffu);
			DL_APPEND2(w->jobs, j, wprev, wnext);
			w->inflight++;
			d->inflight++;
			d->queued[k]--;
			*id = j->id;
			memcpy(peer->id, w->id, w->idlen);
			peer->len = w->idlen;
			return true;
		}
	}
	return false;
}

size_t dispatch_queued_ids(const struct dispatch *d, enum job_kind kind, const char *conv,
			   uint64_t *out, size_t max)
{
	char *key = xasprintf("%d%s", (int)kind, conv);
	struct lane *l = NULL;
	size_t n = 0;
	HASH_FIND_STR(d->lanes, key, l);
	free(key);
	if (!l)
		return 0;
	const struct djob *j;
	DL_FOREACH(l->jobs, j)
		if (!j->worker && n < max)
			out[n++] = j->id;
	return n;
}

uint64_t dispatch_next_due(const struct dispatch *d)
{
	uint64_t due = 0;
	for (int k = 0; k < JOB_KINDS; k++) {
		const struct lane *l = d->delayed[k];
		if (l && (!due || l->jobs->not_before < due))
			due = l->jobs->not_before;
	}
	return due;
}

size_t dispatch_queued(const struct dispatch *d, enum job_kind kind)
{
	return d->queued[kind];
}

size_t dispatch_inflight(const struct dispatch *d)
{
	return d->inflight;
}

size_t dispatch_inflight_kind(const struct dispatch *d, enum job_kind kind)
{
	size_t n = 0;
	struct worker *w, *wt;
	HASH_ITER(hh, d->workers, w, wt)
		if (w->kind == kind)
			n += (size_t)w->inflight;
	return n;
}

size_t dispatch_workers(const struct dispatch *d, enum job_kind kind)
{
	size_t n = 0;
	struct worker *w, *wt;
	HASH_ITER(hh, d->workers, w, wt)
		if (w->kind == kind)
			n++;
	return n;
}
