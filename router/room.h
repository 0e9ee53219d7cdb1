/*
 * room — how much more the router's store can take, and what the router
 * does when it can take no more.
 *
 * Running out of space is an ordinary state, not a crash loop:
 *   - MDB_MAP_FULL grows the map (doubling, up to lmdb.max_map_size_mb)
 *     between transactions, and the batch is tried again;
 *   - past a high-water mark (lmdb.high_water_pct of the largest map, but
 *     never less than ROOM_MIN_RESERVE_PAGES left; or less than
 *     lmdb.min_free_mb of room on the disk) new customer messages are
 *     refused with 503 before the store is full, so what is left stays
 *     for results, hand-backs, Flex steps and purges;
 *   - with three quarters of that reserve gone, worker results wait in
 *     memory too (never re-dispatched): the last room is for the
 *     operator's purges and hand-backs, which free space, so a full store
 *     always recovers;
 *   - a failing commit (ENOSPC, EIO, a full map at its largest) makes the
 *     store "failing" since that moment: new messages get 503 until the
 *     next retry, warnings are logged once a minute, not once a message.
 * The state is published as metrics and in STATE_DIR/router.health (a
 * small JSON file rewritten in place, so it needs no new disk space),
 * which batonctl stats reads.
 *
 * The caller owns struct room; room_release() closes its file. No
 * function here opens a transaction it leaves open; room_grow() needs
 * that none be open in the process.
 */
#ifndef BATON_ROUTER_ROOM_H
#define BATON_ROUTER_ROOM_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

/* The health file: one JSON object padded to this size. */
#define ROOM_HEALTH_BYTES 512
/* A tiny map still keeps this many pages for results and purges: one
 * transaction copies a path of pages in each database it touches, and the
 * pages the last one freed cannot be reused by the next. */
#define ROOM_MIN_RESERVE_PAGES 128
/* What one open job will still write when its result comes (an answer in
 * history, its send jobs, their SIDs and index entries, B-tree slack):
 * new messages are refused early enough that every job owed has room. */
#define ROOM_BYTES_PER_JOB 4096

/* Ordered: each state refuses what the one before it refused, and more. */
enum room_state {
	ROOM_OK = 0,         /* takes everything */
	ROOM_HIGH_WATER = 1, /* no new customer messages */
	ROOM_CRITICAL = 2,   /* no worker results either: purges and hand-backs only */
	ROOM_FAILING = 3,    /* commits fail: everything waits for the next retry */
};

struct room {
	const struct config *cfg;
	struct store *st;
	uint64_t map_bytes;       /* the map now */
	uint64_t max_bytes;       /* the largest it may grow to */
	uint64_t used_bytes;      /* pages in use (not on LMDB's free list), last measure */
	uint64_t owed_bytes;      /* what the open jobs will still write (estimate) */
	uint64_t disk_room_bytes; /* free disk plus LMDB's free pages, last measure */
	uint64_t next_measure;    /* mono ms */
	enum room_state state;
	enum room_state logged_state; /* worst state warned about in this episode */
	uint64_t episode;         /* wall ms the store became full or failing, 0 = healthy */
	uint64_t ok_since;        /* wall ms it last became ok */
	int last_err;             /* LMDB or errno code of the last failed commit */
	unsigned failures;        /* consecutive failed commits */
	uint64_t retry_at;        /* mono ms: when a failing store is tried with new messages */
	uint64_t next_warn;       /* mono ms */
	uint64_t unlogged;        /* failed commits not logged since the last warning */
	uint64_t refused;         /* new messages refused since start */
	uint64_t grown;           /* map growths since start */
	uint64_t health_written;  /* mono ms */
	int health_fd;
};

/** Measure the store once and open the health file. */
void room_init(struct room *rm, const struct config *cfg, struct store *st);
void room_release(struct room *rm);

/**
 * What the store takes now (measured at most every few ms, at every call
 * near the marks), counting jobs_open (queued, in flight or held) as
 * room already promised: ROOM_OK everything, ROOM_HIGH_WATER no new customer
 * messages, ROOM_CRITICAL and ROOM_FAILING (until its next retry) no
 * worker results either. A failing store past its retry time answers
 * ROOM_OK: the batch is its probe.
 */
enum room_state room_check(struct room *rm, uint64_t now_mono, size_t jobs_open);
/** Count one refused message (for the metric and the health file). */
void room_refused(struct room *rm);

/** After MDB_MAP_FULL: grow the map. 0 when it grew, -1 when it is at its largest (logged). */
int room_grow(struct room *rm);

/** A batch commit failed with rc (an LMDB or errno code) / committed. */
void room_commit_failed(struct room *rm, int rc, size_t items);
void room_commit_ok(struct room *rm);

/** Delay before the next try of a failing store (backoff), mono ms from now. */
uint64_t room_retry_delay(const struct room *rm);

const char *room_state_name(enum room_state s);

#endif
