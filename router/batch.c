/* batch — a transaction and its effects; see batch.h. */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "lead.h"
#include "log.h"
#include "xalloc.h"

int batch_begin(struct batch *b, struct rctx *x)
{
	b->x = x;
	b->st = x->st;
	batch_clear(b);
	journal_clear(&b->journal);
	/* The store tells the journal every write of this transaction. */
	b->st->journal = x->lead ? &b->journal : NULL;
	return mdb_txn_begin(b->st->env, NULL, 0, &b->txn);
}

int batch_commit(struct batch *b)
{
	int rc = b->x->lead ? lead_commit(b->x->lead, b->txn, &b->journal) : 0;
	b->st->journal = NULL;
	if (rc)
		return rc;
	rc = mdb_txn_commit(b->txn);
	b->txn = NULL;
	if (rc && b->x->lead) {
		/* PostgreSQL holds the batch: it happened. The cache reads it back
		 * before the next one (lead_catch_up). */
		log_warn("the cache's commit failed after PostgreSQL took the batch: %s",
			 mdb_strerror(rc));
		lead_cache_behind(b->x->lead);
		rc = 0;
	}
	return rc;
}

void batch_abort(struct batch *b)
{
	b->st->journal = NULL;
	if (b->txn)
		mdb_txn_abort(b->txn);
	b->txn = NULL;
}

void batch_clear(struct batch *b)
{
	for (size_t i = 0; i < b->nfx; i++)
		free(b->fx[i].conv);
	b->nfx = 0;
}

void batch_release(struct batch *b)
{
	if (b->st)
		batch_abort(b);
	journal_release(&b->journal);
	batch_clear(b);
	free(b->fx);
	b->fx = NULL;
	b->capfx = 0;
}

static struct effect *batch_fx(struct batch *b, enum fx_type type)
{
	if (b->nfx == b->capfx) {
		b->capfx = b->capfx ? b->capfx * 2 : 64;
		b->fx = xrealloc(b->fx, b->capfx * sizeof(*b->fx));
	}
	struct effect *e = &b->fx[b->nfx++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	return e;
}

void batch_ack(struct batch *b, const struct item *it, int status, const char *why)
{
	if (it->synthetic)
		return;
	struct effect *e = batch_fx(b, FX_ACK);
	e->peer = it->peer;
	e->id = it->env.id;
	e->status = status;
	e->err = why;
}

int job_add(struct batch *b, const struct job_rec *j, uint64_t *id, uint64_t not_before)
{
	int rc = store_job_add(b->st, b->txn, j, id);
	if (rc)
		return rc;
	struct effect *e = batch_fx(b, FX_ADD);
	e->id = *id;
	e->kind = j->kind;
	e->conv = xstrdup(j->conv);
	e->not_before = not_before;
	return 0;
}

int job_finish(struct batch *b, uint64_t id)
{
	int rc = store_job_del(b->st, b->txn, id);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	batch_fx(b, FX_DONE)->id = id;
	return 0;
}

int job_retry(struct batch *b, uint64_t id, struct job_rec *j, uint64_t base_ms, uint64_t cap_ms,
	      uint64_t *delay_ms)
{
	j->attempts++;
	int rc = store_job_put(b->st, b->txn, id, j);
	if (rc)
		return rc;
	uint64_t d = backoff_ms((unsigned)j->attempts, base_ms, cap_ms, -1);
	struct effect *e = batch_fx(b, FX_RETRY);
	e->id = id;
	e->not_before = clock_mono_ms() + d;
	if (delay_ms)
		*delay_ms = d;
	return 0;
}

int job_again(struct batch *b, uint64_t id, const struct job_rec *j)
{
	int rc = store_job_put(b->st, b->txn, id, j);
	if (rc == 0)
		batch_fx(b, FX_RETRY)->id = id;
	return rc;
}

/* Whether this batch already put the job back for a retry. */
static bool batch_retries(const struct batch *b, uint64_t id)
{
	for (size_t i = 0; i < b->nfx; i++)
		if (b->fx[i].type == FX_RETRY && b->fx[i].id == id)
			return true;
	return false;
}

int batch_job_of(struct batch *b, const struct envelope *env, enum job_kind kind,
		 struct job_rec *j)
{
	struct log_ids ids = { .job = env->id, .conv = env->conv };
	uint64_t attempt = 0;
	dispatch_attempt(b->x->disp, env->id, &attempt, NULL);
	int rc = store_job_get(b->st, b->txn, env->id, j);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	if (rc == MDB_NOTFOUND || j->kind != kind) {
		if (rc == 0)
			job_rec_release(j);
		log_emit(LOG_INFO, &ids, "dropped a stale %s result (job already finished)",
			 job_kind_name(kind));
		return BATCH_STALE;
	}
	/* A success is a fact whichever attempt it comes from (a message left,
	 * an answer was written); a failure counts once, and only from the
	 * latest attempt, or an old attempt's 503 would send the job round
	 * again beside the live one. A worker sends its result again each
	 * heartbeat until the ack: a commit slower than that (a loaded
	 * database) brings the same failure twice. */
	const char *why = NULL;
	if (env->status != ST_OK && env->status != ST_PROGRESS) {
		uint64_t sent = env->attempt > 0 ? (uint64_t)env->attempt : 0;
		if (sent && attempt && sent != attempt)
			why = "the failure of an earlier attempt";
		else if (dispatch_answered(b->x->disp, env->id, sent))
			why = "this attempt's failure is recorded already";
		else if (batch_retries(b, env->id))
			why = "a failure of this job is in this batch already";
	}
	if (why) {
		job_rec_release(j);
		log_emit(LOG_INFO, &ids, "dropped a stale %s result (%s)", job_kind_name(kind), why);
		return BATCH_STALE;
	}
	return 0;
}
