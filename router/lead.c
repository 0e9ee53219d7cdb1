/*
 * lead — the active router's lease and its commits to PostgreSQL; see
 * lead.h.
 *
 * The lease is renewed every third of router.lease_ms (and by every
 * commit's fence); a standby tries to take it every tenth (50-500 ms),
 * following the database meanwhile so that taking over costs only the
 * last few revisions. Deletes older than LEAD_PRUNE_REVS revisions are pruned by
 * the active router now and then; a cache older than that reloads.
 */
#include "lead.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mirror.h"
#include "pg.h"
#include "xalloc.h"

#define LEAD_PRUNE_REVS 100000
#define LEAD_PRUNE_EVERY_MS 60000

struct lead {
	const struct config *cfg;
	struct store *st;
	struct pg *pg;
	char holder[128];
	char cluster[PG_CLUSTER_ID_MAX + 1];
	uint64_t epoch, rev;
	uint64_t lease_ms;
	uint64_t renewed;    /* mono ms of the last renewal (or fence) the database took */
	uint64_t next_renew; /* mono ms */
	uint64_t next_prune;
	bool behind;         /* the cache may miss a committed revision */
};

struct lead *lead_new(const struct config *cfg, struct store *st, volatile sig_atomic_t *stop)
{
	struct lead *l = xcalloc(1, sizeof(*l));
	char host[64] = "host";
	gethostname(host, sizeof(host) - 1);
	l->cfg = cfg;
	l->st = st;
	l->lease_ms = (uint64_t)cfg->router_lease_ms;
	/* Unique per process: a restarted router is a new holder. */
	snprintf(l->holder, sizeof(l->holder), "%s:%ld:%llx", host, (long)getpid(),
		 (unsigned long long)(clock_wall_ms() ^ ((uint64_t)getpid() << 32)));
	l->pg = pg_new(cfg->postgres_dsn, cfg->postgres_password, "baton-router");
	/* Routers starting together: one migrates, the others wait on its lock. */
	while (pg_migrate(l->pg) < 0) {
		if (*stop) {
			lead_free(l);
			return NULL;
		}
		usleep(1000 * 1000);
	}
	return l;
}

void lead_free(struct lead *l)
{
	if (!l)
		return;
	pg_free(l->pg);
	free(l);
}

uint64_t lead_epoch(const struct lead *l)
{
	return l->epoch;
}

/* The cache at the database's last revision: 0 or -1. */
static int lead_follow(struct lead *l, uint64_t *rev)
{
	bool reloaded = false;
	return mirror_sync(l->st, l->pg, rev, &reloaded);
}

int lead_acquire(struct lead *l, volatile sig_atomic_t *stop)
{
	struct pg_head h;
	char last_holder[128] = "";
	while (!*stop) {
		uint64_t rev = 0, epoch = 0, step = l->lease_ms / 3;
		/* A standby looks often (a tenth of the lease, 50-500 ms): the lease
		 * expiring and this router noticing it add up to the failover time. */
		uint64_t look = l->lease_ms / 10 < 50 ? 50 : l->lease_ms / 10 > 500 ? 500 : l->lease_ms / 10;
		/* Follow first: taking over then costs only the newest revisions. */
		if (lead_follow(l, &rev) == 0) {
			int got = pg_lease_take(l->pg, l->holder, l->lease_ms, &epoch, &rev, &h);
			if (got == 1) {
				struct pg_head now;
				uint64_t at = 0;
				/* Nobody commits once we hold it: this is the last revision. */
				if (lead_follow(l, &at) == 0 && pg_head(l->pg, &now) == 0 &&
				    at == now.rev) {
					l->epoch = epoch;
					l->rev = at;
					snprintf(l->cluster, sizeof(l->cluster), "%s", now.cluster);
					l->renewed = clock_mono_ms();
					l->next_renew = l->renewed + step;
					l->next_prune = l->renewed + LEAD_PRUNE_EVERY_MS;
					l->behind = false;
					log_notice("lease taken: epoch %llu, at revision %llu, database %s",
						   (unsigned long long)epoch, (unsigned long long)at,
						   pg_where(l->pg));
					return 1;
				}
				log_warn("lease taken but the cache could not catch up; letting it go");
			} else if (got == 0 && strcmp(last_holder, h.holder)) {
				snprintf(last_holder, sizeof(last_holder), "%s", h.holder);
				log_notice("standing by: the lease is held by %s (epoch %llu)", h.holder,
					   (unsigned long long)h.epoch);
			}
		}
		for (uint64_t t = 0; t < look && !*stop; t += 50)
			usleep(50 * 1000);
	}
	return 0;
}

bool lead_tick(struct lead *l)
{
	uint64_t now = clock_mono_ms();
	if (now >= l->next_renew) {
		int held = pg_lease_renew(l->pg, l->holder, l->epoch, l->lease_ms);
		if (held == 0) {
			log_warn("lease lost: another router holds it now (this one was at epoch %llu); "
				 "stepping down", (unsigned long long)l->epoch);
			return false;
		}
		if (held == 1)
			l->renewed = now;
		/* Not renewed: the next try soon, and no acting past the lease. */
		l->next_renew = now + (held == 1 ? l->lease_ms / 3 : 200);
		if (now - l->renewed >= l->lease_ms) {
			log_warn("lease not renewed for %llu ms (database unreachable): stepping down",
				 (unsigned long long)(now - l->renewed));
			return false;
		}
	}
	if (now >= l->next_prune) {
		l->next_prune = now + LEAD_PRUNE_EVERY_MS;
		if (l->rev > LEAD_PRUNE_REVS)
			pg_prune(l->pg, l->rev - LEAD_PRUNE_REVS);
	}
	return true;
}

int lead_timeout(const struct lead *l)
{
	uint64_t now = clock_mono_ms();
	return l->next_renew > now ? (int)(l->next_renew - now) : 0;
}

int lead_commit(struct lead *l, MDB_txn *txn, struct journal *j)
{
	uint64_t rev = l->rev + 1;
	journal_compact(j);
	if (j->n == 0)
		return 0; /* nothing changed: no revision */
	switch (pg_commit(l->pg, l->holder, l->epoch, l->lease_ms, rev, j)) {
	case PG_COMMITTED:
		break;
	case PG_FENCED:
		log_warn("commit refused: the lease is another router's now (this one was at epoch "
			 "%llu); stepping down", (unsigned long long)l->epoch);
		return LEAD_FENCED;
	case PG_UNKNOWN:
		l->behind = true;
		return LEAD_FAILED;
	case PG_FAILED:
		return LEAD_FAILED;
	}
	l->rev = rev;
	l->renewed = clock_mono_ms();
	int rc = mirror_mark(l->st, txn, rev, l->cluster);
	if (rc) {
		/* PostgreSQL has the batch: the cache will read it back. */
		log_warn("cannot record revision %llu in the cache: %s", (unsigned long long)rev,
			 mdb_strerror(rc));
		l->behind = true;
	}
	return 0;
}

void lead_cache_behind(struct lead *l)
{
	l->behind = true;
}

int lead_catch_up(struct lead *l)
{
	uint64_t rev = 0, before = l->rev;
	if (!l->behind)
		return 0;
	if (lead_follow(l, &rev) < 0)
		return -1;
	l->behind = false;
	l->rev = rev;
	if (rev != before)
		log_notice("cache caught up from revision %llu to %llu (a commit's answer was lost)",
			   (unsigned long long)before, (unsigned long long)rev);
	return rev != before;
}

const char *lead_strerror(int rc)
{
	if (rc == LEAD_FAILED)
		return "PostgreSQL did not take the batch";
	if (rc == LEAD_FENCED)
		return "the lease is another router's";
	return mdb_strerror(rc);
}
