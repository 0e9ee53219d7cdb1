/*
 * test_dispatch — router/dispatch: lanes (one job at a time per kind and
 * conversation, in id order), parallel lanes up to worker credit, retry
 * with not_before, worker expiry/loss re-dispatching in-flight jobs,
 * choice of the worker with most free credit, kinds kept apart, and the
 * counters; and exactly once: attempt tokens, claims of a restarted
 * router's jobs, held results, uncertain attempts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "dispatch.h"
#include "log.h"

static struct zmqx_peer peer_of(const char *name)
{
	struct zmqx_peer p;
	memset(&p, 0, sizeof(p));
	p.len = strlen(name);
	memcpy(p.id, name, p.len);
	return p;
}

static void hello(struct dispatch *d, const char *name, enum job_kind kind, int cap, uint64_t now)
{
	struct zmqx_peer p = peer_of(name);
	dispatch_hello(d, &p, kind, name, cap, now);
}

/* dispatch_next must give job `want_id` to worker `want_peer`. */
static void expect_next(struct dispatch *d, uint64_t now, uint64_t want_id, const char *want_peer)
{
	uint64_t id = 0;
	struct zmqx_peer p;
	memset(&p, 0, sizeof(p));
	if (!dispatch_next(d, now, &id, &p))
		fail_msg("expected job %llu, got nothing", (unsigned long long)want_id);
	if (id != want_id)
		fail_msg("expected job %llu, got %llu", (unsigned long long)want_id,
			 (unsigned long long)id);
	if (want_peer) {
		assert_int_equal(p.len, strlen(want_peer));
		assert_memory_equal(p.id, want_peer, p.len);
	}
}

/* dispatch_next gives a job; returns its id and copies the peer name. */
static uint64_t next_any(struct dispatch *d, uint64_t now, char *peer, size_t plen)
{
	uint64_t id = 0;
	struct zmqx_peer p;
	assert_true(dispatch_next(d, now, &id, &p));
	assert_true(p.len < plen);
	memcpy(peer, p.id, p.len);
	peer[p.len] = '\0';
	return id;
}

static void expect_none(struct dispatch *d, uint64_t now)
{
	uint64_t id = 0;
	struct zmqx_peer p;
	if (dispatch_next(d, now, &id, &p))
		fail_msg("expected nothing, got job %llu", (unsigned long long)id);
}

static int setup(void **state)
{
	*state = dispatch_new();
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	struct dispatch *d = *state;
	dispatch_destroy(&d);
	return d == NULL ? 0 : -1;
}

static void test_no_worker(void **state)
{
	struct dispatch *d = *state;
	expect_none(d, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	expect_none(d, 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 1);
	assert_int_equal(dispatch_inflight(d), 0);
	assert_int_equal(dispatch_workers(d, JOB_AI), 0);
	assert_true(dispatch_known(d, 1));
	assert_false(dispatch_known(d, 2));
	/* a worker arriving later gets the waiting job */
	hello(d, "w1", JOB_AI, 2, 0);
	expect_next(d, 0, 1, "w1");
}

static void test_lane_order(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 2, 0);
	assert_int_equal(dispatch_workers(d, JOB_AI), 1);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "A", 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 2);
	expect_next(d, 0, 1, "w1");
	assert_int_equal(dispatch_inflight(d), 1);
	assert_int_equal(dispatch_queued(d, JOB_AI), 1);
	/* capacity is left, but job 2 waits for job 1 */
	expect_none(d, 0);
	dispatch_done(d, 1);
	assert_false(dispatch_known(d, 1));
	assert_int_equal(dispatch_inflight(d), 0);
	expect_next(d, 0, 2, "w1");
	dispatch_done(d, 2);
	expect_none(d, 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 0);
	assert_int_equal(dispatch_inflight(d), 0);
}

static void test_parallel_lanes_and_capacity(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 2, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "B", 0);
	dispatch_add(d, 3, JOB_AI, "C", 0);
	expect_next(d, 0, 1, "w1");
	expect_next(d, 0, 2, "w1");
	assert_int_equal(dispatch_inflight(d), 2);
	/* capacity 2 reached */
	expect_none(d, 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 1);
	/* done frees one credit */
	dispatch_done(d, 2);
	expect_next(d, 0, 3, "w1");
	expect_none(d, 0);
	dispatch_done(d, 1);
	dispatch_done(d, 3);
	assert_int_equal(dispatch_inflight(d), 0);
}

static void test_retry_not_before(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 4, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "A", 0);
	assert_true(dispatch_next_due(d) == 0);
	expect_next(d, 100, 1, "w1");
	dispatch_retry(d, 1, 1000);
	assert_true(dispatch_known(d, 1));
	assert_int_equal(dispatch_inflight(d), 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 2);
	assert_true(dispatch_next_due(d) == 1000);
	/* too early: job 1 waits and job 2 stays behind it */
	expect_none(d, 500);
	expect_none(d, 999);
	expect_next(d, 1000, 1, "w1");
	assert_true(dispatch_next_due(d) == 0);
	dispatch_done(d, 1);
	expect_next(d, 1000, 2, "w1");
}

static void test_retry_goes_to_front(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 1, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "B", 0);
	expect_next(d, 0, 1, "w1");
	/* retried job's lane goes before lane B, which was waiting */
	dispatch_retry(d, 1, 0);
	expect_next(d, 0, 1, "w1");
	dispatch_done(d, 1);
	expect_next(d, 0, 2, "w1");
}

static void test_add_not_before(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 4, 0);
	dispatch_add(d, 5, JOB_AI, "A", 700);
	dispatch_add(d, 6, JOB_AI, "B", 300);
	assert_true(dispatch_next_due(d) == 300);
	expect_none(d, 200);
	/* a delayed lane does not block another ready lane */
	dispatch_add(d, 7, JOB_AI, "C", 0);
	expect_next(d, 200, 7, "w1");
	expect_next(d, 300, 6, "w1");
	assert_true(dispatch_next_due(d) == 700);
	expect_none(d, 699);
	expect_next(d, 700, 5, "w1");
}

/* Many delayed lanes, added out of order: they leave in deadline order,
 * and next_due is always the earliest left. */
static void test_many_delayed_lanes_in_deadline_order(void **state)
{
	struct dispatch *d = *state;
	enum { N = 2000 };
	char conv[32];
	hello(d, "w1", JOB_AI, N, 0);
	for (uint64_t i = 0; i < N; i++) {
		/* a permutation of 1..N deadlines */
		uint64_t due = 1 + (i * 7919) % N;
		snprintf(conv, sizeof(conv), "c%llu", (unsigned long long)i);
		dispatch_add(d, i + 1, JOB_AI, conv, 1000 + due);
	}
	expect_none(d, 1000);
	for (uint64_t t = 1; t <= N; t++) {
		assert_true(dispatch_next_due(d) == 1000 + t);
		uint64_t id = 0;
		struct zmqx_peer p;
		assert_true(dispatch_next(d, 1000 + t, &id, &p));
		assert_true(1 + ((id - 1) * 7919) % N == t);
	}
	assert_true(dispatch_next_due(d) == 0);
}

static void test_expire(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 2, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "A", 0);
	dispatch_add(d, 3, JOB_AI, "B", 0);
	expect_next(d, 0, 1, "w1");
	expect_next(d, 0, 3, "w1");
	hello(d, "w2", JOB_AI, 2, 2500);
	/* w2 has credit, but the heads of lanes A and B are in flight on w1 */
	expect_none(d, 2500);
	/* exactly at the timeout w1 is still alive */
	assert_int_equal(dispatch_expire(d, 3000, 3000), 0);
	assert_int_equal(dispatch_workers(d, JOB_AI), 2);
	assert_int_equal(dispatch_expire(d, 3001, 3000), 1);
	assert_int_equal(dispatch_workers(d, JOB_AI), 1);
	assert_int_equal(dispatch_inflight(d), 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 3);
	/* its jobs go to w2, heads of lanes first: 1 before 2 */
	char p1[16], p2[16];
	uint64_t a = next_any(d, 3001, p1, sizeof(p1));
	uint64_t b = next_any(d, 3001, p2, sizeof(p2));
	assert_string_equal(p1, "w2");
	assert_string_equal(p2, "w2");
	assert_true((a == 1 && b == 3) || (a == 3 && b == 1));
	expect_none(d, 3001);
	dispatch_done(d, 1);
	expect_next(d, 3001, 2, "w2");
	/* the heartbeat keeps w2 alive */
	hello(d, "w2", JOB_AI, 2, 6000);
	assert_int_equal(dispatch_expire(d, 8000, 3000), 0);
	assert_int_equal(dispatch_workers(d, JOB_AI), 1);
}

static void test_worker_lost(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 1, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "A", 0);
	expect_next(d, 0, 1, "w1");
	struct zmqx_peer p = peer_of("w1");
	dispatch_worker_lost(d, &p);
	assert_int_equal(dispatch_workers(d, JOB_AI), 0);
	assert_int_equal(dispatch_inflight(d), 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 2);
	expect_none(d, 0);
	/* losing an unknown worker is harmless */
	struct zmqx_peer q = peer_of("ghost");
	dispatch_worker_lost(d, &q);
	hello(d, "w2", JOB_AI, 1, 0);
	expect_next(d, 0, 1, "w2");
	expect_none(d, 0);
	/* a late result from the dead worker's job is still accepted by id */
	dispatch_done(d, 1);
	expect_next(d, 0, 2, "w2");
}

static void test_most_free_credit(void **state)
{
	struct dispatch *d = *state;
	hello(d, "small", JOB_AI, 1, 0);
	hello(d, "big", JOB_AI, 3, 0);
	for (uint64_t i = 1; i <= 5; i++) {
		char conv[8];
		conv[0] = (char)('A' + i);
		conv[1] = '\0';
		dispatch_add(d, i, JOB_AI, conv, 0);
	}
	/* big has 3 free, small 1: big, big (2 vs 1), then a tie, then the other */
	expect_next(d, 0, 1, "big");
	expect_next(d, 0, 2, "big");
	char p3[16], p4[16];
	next_any(d, 0, p3, sizeof(p3));
	next_any(d, 0, p4, sizeof(p4));
	assert_string_not_equal(p3, p4); /* one each */
	/* both are full now */
	expect_none(d, 0);
	assert_int_equal(dispatch_inflight(d), 4);
	dispatch_done(d, 1);
	expect_next(d, 0, 5, "big");
}

static void test_kinds_do_not_mix(void **state)
{
	struct dispatch *d = *state;
	hello(d, "ai1", JOB_AI, 4, 0);
	dispatch_add(d, 1, JOB_SEND, "A", 0);
	expect_none(d, 0);
	assert_int_equal(dispatch_queued(d, JOB_SEND), 1);
	assert_int_equal(dispatch_queued(d, JOB_AI), 0);
	assert_int_equal(dispatch_workers(d, JOB_SEND), 0);
	/* the same conversation's AI lane is separate from its send lane */
	dispatch_add(d, 2, JOB_AI, "A", 0);
	expect_next(d, 0, 2, "ai1");
	expect_none(d, 0);
	hello(d, "eg1", JOB_SEND, 4, 0);
	assert_int_equal(dispatch_workers(d, JOB_SEND), 1);
	assert_int_equal(dispatch_workers(d, JOB_AI), 1);
	expect_next(d, 0, 1, "eg1");
	assert_int_equal(dispatch_inflight(d), 2);
}

static void test_flex_kind(void **state)
{
	struct dispatch *d = *state;
	hello(d, "ai1", JOB_AI, 4, 0);
	hello(d, "eg1", JOB_SEND, 4, 0);
	dispatch_add(d, 1, JOB_FLEX, "A", 0);
	expect_none(d, 0);
	assert_int_equal(dispatch_queued(d, JOB_FLEX), 1);
	hello(d, "fx1", JOB_FLEX, 1, 0);
	assert_int_equal(dispatch_workers(d, JOB_FLEX), 1);
	dispatch_add(d, 2, JOB_SEND, "A", 0);
	dispatch_add(d, 3, JOB_FLEX, "B", 0);
	char p1[16], p2[16];
	uint64_t a = next_any(d, 0, p1, sizeof(p1));
	uint64_t b = next_any(d, 0, p2, sizeof(p2));
	/* one send to egress, one flex job to the flex worker (capacity 1) */
	if (a == 2) {
		assert_string_equal(p1, "eg1");
		assert_true(b == 1);
		assert_string_equal(p2, "fx1");
	} else {
		assert_true(a == 1);
		assert_string_equal(p1, "fx1");
		assert_true(b == 2);
		assert_string_equal(p2, "eg1");
	}
	expect_none(d, 0);
	dispatch_done(d, 1);
	expect_next(d, 0, 3, "fx1");
}

static void test_add_existing_ignored(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 4, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 1, JOB_AI, "B", 0);
	dispatch_add(d, 1, JOB_SEND, "A", 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 1);
	assert_int_equal(dispatch_queued(d, JOB_SEND), 0);
	expect_next(d, 0, 1, "w1");
	/* re-adding an in-flight job (e.g. after a restart) does not run it twice */
	dispatch_add(d, 1, JOB_AI, "A", 0);
	expect_none(d, 0);
	assert_int_equal(dispatch_inflight(d), 1);
	dispatch_done(d, 1);
	expect_none(d, 0);
	assert_int_equal(dispatch_inflight(d), 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 0);
}

static void test_done_queued_and_unknown(void **state)
{
	struct dispatch *d = *state;
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "A", 0);
	dispatch_add(d, 3, JOB_AI, "B", 0);
	/* finishing a job that was never dispatched removes it */
	dispatch_done(d, 2);
	assert_int_equal(dispatch_queued(d, JOB_AI), 2);
	assert_false(dispatch_known(d, 2));
	dispatch_done(d, 99);
	dispatch_retry(d, 99, 5);
	assert_int_equal(dispatch_queued(d, JOB_AI), 2);
	hello(d, "w1", JOB_AI, 4, 0);
	expect_next(d, 0, 1, "w1");
	expect_next(d, 0, 3, "w1");
	expect_none(d, 0);
}

static void test_hello_updates_capacity(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 1, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "B", 0);
	expect_next(d, 0, 1, "w1");
	expect_none(d, 0);
	hello(d, "w1", JOB_AI, 2, 10);
	assert_int_equal(dispatch_workers(d, JOB_AI), 1);
	expect_next(d, 10, 2, "w1");
	/* capacity 0 (draining): nothing more */
	dispatch_add(d, 3, JOB_AI, "C", 0);
	hello(d, "w1", JOB_AI, 0, 20);
	dispatch_done(d, 1);
	expect_none(d, 20);
}

static void test_destroy_with_work(void **state)
{
	(void)state;
	struct dispatch *d = dispatch_new();
	hello(d, "w1", JOB_AI, 2, 0);
	hello(d, "e1", JOB_SEND, 2, 0);
	for (uint64_t i = 1; i <= 10; i++)
		dispatch_add(d, i, i % 2 ? JOB_AI : JOB_SEND, i < 5 ? "A" : "B", 0);
	uint64_t id;
	struct zmqx_peer p;
	int n = 0;
	while (dispatch_next(d, 0, &id, &p))
		n++;
	assert_int_equal(n, 4);
	assert_int_equal(dispatch_inflight(d), 4);
	assert_int_equal(dispatch_queued(d, JOB_AI) + dispatch_queued(d, JOB_SEND), 6);
	dispatch_destroy(&d);
	assert_null(d);
	dispatch_destroy(&d); /* NULL is fine */
}

/* Every dispatch gets a new attempt; two routers' attempts never match. */
static void test_attempts(void **state)
{
	struct dispatch *d = *state, *other = dispatch_new();
	uint64_t a1 = 0, a2 = 0, b1 = 0;
	hello(d, "w1", JOB_AI, 1, 0);
	hello(other, "w1", JOB_AI, 1, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(other, 1, JOB_AI, "A", 0);
	assert_false(dispatch_attempt(d, 1, &a1, NULL));
	assert_true(a1 == 0);
	expect_next(d, 0, 1, "w1");
	expect_next(other, 0, 1, "w1");
	assert_true(dispatch_attempt(d, 1, &a1, NULL));
	assert_true(dispatch_attempt(other, 1, &b1, NULL));
	assert_true(a1 != 0 && a1 != b1);
	assert_true(a1 <= INT64_MAX); /* it travels as an int64 */
	dispatch_retry(d, 1, 0);
	expect_next(d, 0, 1, "w1");
	assert_true(dispatch_attempt(d, 1, &a2, NULL));
	assert_true(a2 != a1);
	dispatch_destroy(&other);
}

/* A restarted router leaves a job with the worker that claims it. */
static void test_claim(void **state)
{
	struct dispatch *d = *state;
	struct zmqx_peer w1 = peer_of("w1"), w2 = peer_of("w2"), stranger = peer_of("x");
	uint64_t att = 0;
	dispatch_add(d, 1, JOB_SEND, "A", 5000); /* recovered: waits for claims */
	dispatch_add(d, 2, JOB_SEND, "A", 5000);
	dispatch_add(d, 3, JOB_SEND, "B", 5000);
	hello(d, "w1", JOB_SEND, 4, 0);
	hello(d, "w2", JOB_AI, 4, 0);
	dispatch_claim(d, &stranger, 1, 77); /* never said hello */
	dispatch_claim(d, &w2, 1, 77);       /* the wrong kind */
	dispatch_claim(d, &w1, 2, 77);       /* not its lane's turn */
	assert_false(dispatch_in_flight(d, 1));
	assert_false(dispatch_in_flight(d, 2));
	dispatch_claim(d, &w1, 1, 77);
	assert_true(dispatch_attempt(d, 1, &att, NULL));
	assert_true(att == 77);
	assert_int_equal(dispatch_inflight(d), 1);
	assert_int_equal(dispatch_queued(d, JOB_SEND), 2);
	dispatch_claim(d, &w1, 1, 77); /* every heartbeat claims again: no change */
	assert_int_equal(dispatch_inflight(d), 1);
	expect_none(d, 1000);           /* job 3 waits out the grace */
	expect_next(d, 5000, 3, "w1");
	dispatch_done(d, 1);
	expect_next(d, 5000, 2, "w1");
	assert_int_equal(dispatch_queued(d, JOB_SEND), 0);
}

/* Flex job 1 of conversation A dispatched to worker w1: its attempt. */
static uint64_t flex_job_on_w1(struct dispatch *d)
{
	uint64_t att = 0;
	hello(d, "w1", JOB_FLEX, 4, 0);
	dispatch_add(d, 1, JOB_FLEX, "A", 0);
	expect_next(d, 0, 1, "w1");
	assert_true(dispatch_attempt(d, 1, &att, NULL));
	return att;
}

/* A HELLO sent after a result and before its ack claims an attempt that
 * is over: the retried job is not left with that worker. */
static void test_claim_after_result(void **state)
{
	struct dispatch *d = *state;
	struct zmqx_peer w1 = peer_of("w1");
	uint64_t att = flex_job_on_w1(d), again = 0;
	dispatch_hold(d, 1);     /* its failure came back */
	dispatch_retry(d, 1, 0); /* committed: to be retried */
	dispatch_claim(d, &w1, 1, att);
	assert_false(dispatch_in_flight(d, 1));
	expect_next(d, 0, 1, "w1");
	assert_true(dispatch_attempt(d, 1, &again, NULL));
	assert_true(again != att);
	/* The new attempt is its own: a worker written off while running it
	 * may claim it back. */
	dispatch_worker_lost(d, &w1);
	hello(d, "w1", JOB_FLEX, 4, 0);
	dispatch_claim(d, &w1, 1, again);
	assert_true(dispatch_in_flight(d, 1));
}

/* The usual path: the result is applied and committed in one batch (no
 * hold), the job retried with backoff, and the worker's next HELLO, sent
 * before the ack reached it, still names the attempt that failed. */
static void test_claim_after_retry_without_hold(void **state)
{
	struct dispatch *d = *state;
	struct zmqx_peer w1 = peer_of("w1");
	uint64_t att = flex_job_on_w1(d), again = 0;
	dispatch_retry(d, 1, 400); /* its failure committed: retry after the backoff */
	dispatch_claim(d, &w1, 1, att);
	assert_false(dispatch_in_flight(d, 1));
	uint64_t id = 0;
	struct zmqx_peer p;
	assert_false(dispatch_next(d, 399, &id, &p)); /* still backing off */
	expect_next(d, 400, 1, "w1");
	assert_true(dispatch_attempt(d, 1, &again, NULL));
	assert_true(again != att);
}

/* A held result keeps its job off every worker until done or retried. */
static void test_hold(void **state)
{
	struct dispatch *d = *state;
	hello(d, "w1", JOB_AI, 2, 0);
	dispatch_add(d, 1, JOB_AI, "A", 0);
	dispatch_add(d, 2, JOB_AI, "A", 0);
	expect_next(d, 0, 1, "w1");
	dispatch_hold(d, 1);
	assert_true(dispatch_is_held(d, 1));
	assert_false(dispatch_in_flight(d, 1));
	assert_int_equal(dispatch_inflight(d), 0);
	assert_int_equal(dispatch_queued(d, JOB_AI), 1);
	expect_none(d, 0); /* the lane waits for the held result */
	/* Its worker dying does not send it anywhere. */
	assert_int_equal(dispatch_expire(d, 10000, 1000), 1);
	hello(d, "w2", JOB_AI, 2, 10000);
	expect_none(d, 10000);
	dispatch_done(d, 1);
	expect_next(d, 10000, 2, "w2");
	dispatch_hold(d, 2);
	dispatch_retry(d, 2, 0); /* a held failure retried */
	assert_false(dispatch_is_held(d, 2));
	expect_next(d, 10000, 2, "w2");
	dispatch_done(d, 2);
	assert_int_equal(dispatch_queued(d, JOB_AI), 0);
	assert_int_equal(dispatch_inflight(d), 0);
}

/* A job whose worker vanished with it is uncertain from then on. */
static void test_uncertain(void **state)
{
	struct dispatch *d = *state;
	struct zmqx_peer w1 = peer_of("w1");
	uint64_t since = 0;
	hello(d, "w1", JOB_SEND, 2, 0);
	dispatch_add(d, 1, JOB_SEND, "A", 0);
	dispatch_add(d, 2, JOB_SEND, "B", 0);
	dispatch_set_uncertain(d, 2, 1234);
	dispatch_attempt(d, 2, NULL, &since);
	assert_true(since == 1234);
	expect_next(d, 0, 1, "w1");
	dispatch_attempt(d, 1, NULL, &since);
	assert_true(since == 0);
	dispatch_worker_lost(d, &w1);
	dispatch_attempt(d, 1, NULL, &since);
	assert_true(since > 0);
	dispatch_set_uncertain(d, 1, 99); /* the first doubt is kept */
	uint64_t again = 0;
	dispatch_attempt(d, 1, NULL, &again);
	assert_true(again == since);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_no_worker),
		T(test_lane_order),
		T(test_parallel_lanes_and_capacity),
		T(test_retry_not_before),
		T(test_retry_goes_to_front),
		T(test_add_not_before),
		T(test_many_delayed_lanes_in_deadline_order),
		T(test_expire),
		T(test_worker_lost),
		T(test_most_free_credit),
		T(test_kinds_do_not_mix),
		T(test_flex_kind),
		T(test_add_existing_ignored),
		T(test_done_queued_and_unknown),
		T(test_hello_updates_capacity),
		T(test_attempts),
		T(test_claim),
		T(test_claim_after_result),
		T(test_claim_after_retry_without_hold),
		T(test_hold),
		T(test_uncertain),
		cmocka_unit_test(test_destroy_with_work),
	};
	log_init("test_dispatch", LOG_ERROR, true); /* quiet: joins and losses are expected */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
