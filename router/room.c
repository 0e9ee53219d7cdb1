/* room — map growth, high-water mark and a failing store; see room.h. */
#include "room.h"

#include "lead.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

/* How often usage is measured: often enough that a flood cannot eat the
 * reserve between two looks, rarely enough to cost nothing per batch. */
#define ROOM_MEASURE_MS 50
/* A failing store is tried again with backoff up to this, and logged at
 * most once per ROOM_WARN_MS. */
#define ROOM_RETRY_BASE_MS 100
#define ROOM_RETRY_CAP_MS 5000
#define ROOM_WARN_MS 60000
#define ROOM_HEALTH_MIN_MS 1000
#define ROOM_EPISODE_MS 1000

static const struct metric_def RM_STORE_STATE = {
	"baton_router_store_state", METRIC_GAUGE,
	"0: the store takes everything; 1: above its high-water mark (new customer messages get "
	"503); 2: critical (worker results wait in memory too, purges and hand-backs go on); "
	"3: commits fail (full disk, I/O errors; 503 and retries).", { NULL }, { NULL } };
static const struct metric_def RM_STORE_SINCE = {
	"baton_router_store_full_since_seconds", METRIC_GAUGE,
	"Unix time the store became full or failing, 0 when it takes everything.", { NULL },
	{ NULL } };
static const struct metric_def RM_REFUSED = {
	"baton_router_inbound_refused_total", METRIC_COUNTER,
	"New customer messages refused (503) because the store is full or failing.", { NULL },
	{ NULL } };
static const struct metric_def RM_GROWN = {
	"baton_router_map_growths_total", METRIC_COUNTER,
	"Times the LMDB map grew at run time (lmdb.max_map_size_mb).", { NULL }, { NULL } };
static const struct metric_def RM_USED = {
	"baton_router_store_used_bytes", METRIC_GAUGE,
	"Bytes of the store in use (LMDB pages not on its free list).", { NULL }, { NULL } };

const char *room_state_name(enum room_state s)
{
	switch (s) {
	case ROOM_OK: return "ok";
	case ROOM_HIGH_WATER: return "high_water";
	case ROOM_CRITICAL: return "critical";
	case ROOM_FAILING: return "failing";
	}
	return "unknown";
}

static const char *room_strerror(int rc)
{
	if (rc == LEAD_FAILED || rc == LEAD_FENCED)
		return lead_strerror(rc);
	return rc > 0 && rc < MDB_KEYEXIST ? strerror(rc) : mdb_strerror(rc);
}

/* Since when the store is full or failing, 0 when it takes everything. */
static uint64_t room_since(const struct room *rm)
{
	return rm->state == ROOM_OK ? 0 : rm->episode;
}

/* Rewritten in place (pwrite at 0, same length), so a full disk cannot stop it. */
static void room_write_health(struct room *rm, uint64_t now_mono)
{
	char buf[ROOM_HEALTH_BYTES];
	if (rm->health_fd < 0)
		return;
	int n = snprintf(buf, sizeof(buf),
			 "{\"pid\":%d,\"store\":\"%s\",\"since\":%" PRIu64 ",\"error\":\"%s\","
			 "\"used_bytes\":%" PRIu64 ",\"max_bytes\":%" PRIu64 ",\"map_bytes\":%" PRIu64
			 ",\"disk_room_bytes\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"written\":%" PRIu64
			 "}",
			 (int)getpid(), room_state_name(rm->state), room_since(rm),
			 rm->state == ROOM_FAILING ? room_strerror(rm->last_err) : "", rm->used_bytes,
			 rm->max_bytes, rm->map_bytes, rm->disk_room_bytes, rm->refused,
			 clock_wall_ms());
	if (n < 0 || (size_t)n >= sizeof(buf) - 1)
		return;
	memset(buf + n, ' ', sizeof(buf) - 1 - (size_t)n);
	buf[sizeof(buf) - 1] = '\n';
	if (pwrite(rm->health_fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		return; /* best effort: the metrics say the same */
	rm->health_written = now_mono;
}

static void room_publish(struct room *rm)
{
	metrics_set(&RM_STORE_STATE, NULL, NULL, (double)rm->state);
	metrics_set(&RM_STORE_SINCE, NULL, NULL, (double)(room_since(rm) / 1000));
	metrics_set(&RM_USED, NULL, NULL, (double)rm->used_bytes);
	room_write_health(rm, clock_mono_ms());
}

/*
 * One episode runs from the first bad state to ROOM_EPISODE_MS of good
 * health: a store that recovers for a moment between two failed commits
 * (one reused a free page) is still the same episode, warned about once.
 */
static void room_set_state(struct room *rm, enum room_state s)
{
	if (s == rm->state)
		return;
	enum room_state was = rm->state;
	uint64_t now = clock_wall_ms();
	rm->state = s;
	if (s == ROOM_OK) {
		rm->ok_since = now;
		room_publish(rm);
		return;
	}
	if (was == ROOM_OK && (!rm->episode || now >= rm->ok_since + ROOM_EPISODE_MS)) {
		rm->episode = now;
		rm->logged_state = ROOM_OK;
	}
	if (s > rm->logged_state && s != ROOM_FAILING) {
		rm->logged_state = s;
		log_warn("store %s: %.2f of %.2f MiB used, %.1f MiB of room on disk; %s",
			 s == ROOM_HIGH_WATER ? "above its high-water mark" : "nearly full",
			 rm->used_bytes / 1048576.0, rm->max_bytes / 1048576.0,
			 rm->disk_room_bytes / 1048576.0,
			 s == ROOM_HIGH_WATER ? "new customer messages get 503, results, hand-backs "
						"and purges go on"
					      : "worker results wait in memory, purges and "
						"hand-backs go on");
	}
	room_publish(rm);
}

/* The episode is over once the store stayed healthy for a while. */
static void room_episode_end(struct room *rm)
{
	uint64_t now = clock_wall_ms();
	if (rm->state != ROOM_OK || !rm->episode || now < rm->ok_since + ROOM_EPISODE_MS)
		return;
	log_notice("store takes new messages again (full or failing since %llu)",
		   (unsigned long long)rm->episode);
	rm->episode = 0;
	rm->logged_state = ROOM_OK;
	room_publish(rm);
}

/* Pages on LMDB's free list (what mdb_stat -f counts): reused before the file grows. */
static uint64_t room_free_pages(MDB_txn *txn)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint64_t pages = 0;
	if (mdb_cursor_open(txn, 0, &cur))
		return 0;
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
		if (v.mv_size >= sizeof(size_t))
			pages += *(const size_t *)v.mv_data;
	mdb_cursor_close(cur);
	return pages;
}

static uint64_t room_psize(struct room *rm)
{
	MDB_stat est;
	return mdb_env_stat(rm->st->env, &est) == 0 ? est.ms_psize : 4096;
}

static void room_measure(struct room *rm)
{
	MDB_envinfo info;
	MDB_stat est;
	MDB_txn *txn = NULL;
	if (mdb_env_info(rm->st->env, &info) || mdb_env_stat(rm->st->env, &est))
		return;
	uint64_t psize = est.ms_psize, free_pages = 0;
	if (mdb_txn_begin(rm->st->env, NULL, MDB_RDONLY, &txn) == 0) {
		free_pages = room_free_pages(txn);
		mdb_txn_abort(txn);
	}
	uint64_t pages = (uint64_t)info.me_last_pgno + 1;
	rm->map_bytes = info.me_mapsize;
	if (rm->max_bytes < rm->map_bytes)
		rm->max_bytes = rm->map_bytes;
	rm->used_bytes = (pages > free_pages ? pages - free_pages : 0) * psize;
	struct statvfs vfs;
	if (statvfs(config_router_store_dir(rm->cfg), &vfs) == 0)
		rm->disk_room_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize + free_pages * psize;
	else
		rm->disk_room_bytes = UINT64_MAX;
	metrics_set(&RM_USED, NULL, NULL, (double)rm->used_bytes);
}

void room_init(struct room *rm, const struct config *cfg, struct store *st)
{
	static const struct metric_def *const defs[] = { &RM_STORE_STATE, &RM_STORE_SINCE,
							 &RM_REFUSED, &RM_GROWN, &RM_USED, NULL };
	memset(rm, 0, sizeof(*rm));
	rm->cfg = cfg;
	rm->st = st;
	rm->max_bytes = (uint64_t)cfg->lmdb_max_map_size_mb * 1024 * 1024;
	rm->health_fd = -1;
	metrics_register(defs);
	room_measure(rm);
	char *path = xasprintf("%s/router.health", config_router_store_dir(cfg));
	rm->health_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (rm->health_fd < 0)
		log_warn("cannot open %s: %s (batonctl stats will not show the store's state)", path,
			 strerror(errno));
	free(path);
	room_publish(rm);
}

void room_release(struct room *rm)
{
	if (rm->health_fd >= 0)
		close(rm->health_fd);
	rm->health_fd = -1;
}

/*
 * The state usage calls for (a failing store stays failing until a commit
 * works). New messages stop while the room left, less what the open jobs
 * will still write, is under the reserve; results stop only when the room
 * actually left is under a quarter of it (counting what they owe there
 * would keep them out for good).
 */
static enum room_state room_level(struct room *rm)
{
	uint64_t reserve = rm->max_bytes / 100 * (uint64_t)(100 - rm->cfg->lmdb_high_water_pct);
	uint64_t least = ROOM_MIN_RESERVE_PAGES * room_psize(rm);
	if (reserve < least)
		reserve = least;
	uint64_t floor = (uint64_t)rm->cfg->lmdb_min_free_mb * 1024 * 1024, owed = rm->owed_bytes;
	uint64_t left = rm->max_bytes > rm->used_bytes ? rm->max_bytes - rm->used_bytes : 0;
	uint64_t disk = rm->disk_room_bytes;
	uint64_t left_owed = left > owed ? left - owed : 0, disk_owed = disk > owed ? disk - owed : 0;
	bool critical = left < reserve / 4 || disk < floor / 4;
	bool high = left_owed < reserve || disk_owed < floor;
	/* Leaving a state takes a quarter more room than entering it, so a
	 * store at a mark does not flap with every batch. */
	if (rm->state >= ROOM_CRITICAL)
		critical = critical || left < reserve / 4 + reserve / 16 || disk < floor / 4 + floor / 16;
	if (rm->state >= ROOM_HIGH_WATER)
		high = high || left_owed < reserve + reserve / 4 || disk_owed < floor + floor / 4;
	return critical ? ROOM_CRITICAL : high ? ROOM_HIGH_WATER : ROOM_OK;
}

enum room_state room_check(struct room *rm, uint64_t now, size_t jobs_open)
{
	rm->owed_bytes = (uint64_t)jobs_open * ROOM_BYTES_PER_JOB;
	if (now >= rm->next_measure) {
		room_measure(rm);
		enum room_state lvl = room_level(rm);
		if (rm->state != ROOM_FAILING)
			room_set_state(rm, lvl);
		/* Near the marks every batch counts: measure every time. */
		rm->next_measure = now + (lvl == ROOM_OK && rm->state == ROOM_OK ? ROOM_MEASURE_MS : 0);
		room_episode_end(rm);
		if (rm->state != ROOM_OK && now >= rm->health_written + ROOM_HEALTH_MIN_MS)
			room_write_health(rm, now);
	}
	if (rm->state == ROOM_FAILING)
		return now < rm->retry_at ? ROOM_FAILING : ROOM_OK;
	return rm->state;
}

void room_refused(struct room *rm)
{
	rm->refused++;
	metrics_inc(&RM_REFUSED, NULL, NULL);
}

int room_grow(struct room *rm)
{
	MDB_envinfo info;
	if (mdb_env_info(rm->st->env, &info))
		return -1;
	uint64_t now = info.me_mapsize, want = now * 2;
	if (want > rm->max_bytes)
		want = rm->max_bytes;
	if (want <= now)
		return -1;
	int rc = mdb_env_set_mapsize(rm->st->env, (size_t)want);
	if (rc) {
		log_err("cannot grow the LMDB map from %.0f to %.0f MiB: %s", now / 1048576.0,
			want / 1048576.0, mdb_strerror(rc));
		return -1;
	}
	rm->map_bytes = want;
	rm->grown++;
	metrics_inc(&RM_GROWN, NULL, NULL);
	log_notice("LMDB map grown from %.0f to %.0f MiB (lmdb.max_map_size_mb = %ld)",
		   now / 1048576.0, want / 1048576.0, rm->cfg->lmdb_max_map_size_mb);
	return 0;
}

uint64_t room_retry_delay(const struct room *rm)
{
	unsigned n = rm->failures > 6 ? 6 : rm->failures;
	uint64_t d = (uint64_t)ROOM_RETRY_BASE_MS << n;
	return d > ROOM_RETRY_CAP_MS ? ROOM_RETRY_CAP_MS : d;
}

void room_commit_failed(struct room *rm, int rc, size_t items)
{
	uint64_t now = clock_mono_ms();
	rm->last_err = rc;
	rm->failures++;
	rm->retry_at = now + room_retry_delay(rm);
	room_measure(rm);
	room_set_state(rm, ROOM_FAILING);
	if (now >= rm->next_warn) {
		log_warn("cannot commit a batch of %zu items: %s (store failing since %llu; new "
			 "messages get 503, results are kept and retried; %llu more failures since the "
			 "last warning)", items, room_strerror(rc), (unsigned long long)rm->episode,
			 (unsigned long long)rm->unlogged);
		rm->next_warn = now + ROOM_WARN_MS;
		rm->unlogged = 0;
	} else {
		rm->unlogged++;
	}
}

void room_commit_ok(struct room *rm)
{
	if (rm->state != ROOM_FAILING)
		return;
	rm->failures = 0;
	rm->retry_at = 0;
	rm->next_measure = 0; /* measure now: a mark may still hold */
	room_measure(rm);
	room_set_state(rm, room_level(rm));
}
