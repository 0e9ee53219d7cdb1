/*
 * jobs — from a job in LMDB to the envelope a worker gets (history turns
 * for the AI and for Flex), dispatch by credit, and re-dispatch of every
 * unfinished job after a restart. See core.h.
 */
#include "core.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zmq.h>

#include "backoff.h"
#include "clock.h"
#include "kv.h"
#include "log.h"
#include "xalloc.h"

/* History turns first..last of conv into env->turns. */
static void jobs_turns(struct rctx *x, MDB_txn *txn, const char *conv, uint64_t first,
			 uint64_t last, struct envelope *env)
{
	for (uint64_t s = first; s <= last; s++) {
		struct hist_rec h;
		if (store_hist_get(x->st, txn, conv, s, &h))
			continue;
		/* The worker renders the media (blocks for the model, uploads
		 * for the agent, notes where it cannot). */
		struct env_turn *t = env_add_turn_seq(env, h.role, h.text ? h.text : "", h.ts, s,
						      h.media);
		t->transcript = h.transcript;
		hist_rec_release(&h);
	}
}

static void jobs_flex_env(struct rctx *x, MDB_txn *txn, const struct job_rec *j,
			    struct envelope *env)
{
	struct conv_rec c;
	env->type = ENV_JOB_FLEX;
	env->op = xstrdup(j->op ? j->op : OP_HANDOFF);
	bool close = !strcmp(env->op, OP_CLOSE);
	if (store_conv_get(x->st, txn, j->conv, &c) == 0) {
		env->from = xstrdup(c.customer);
		env->to = xstrdup(c.business);
		env->name = c.name ? xstrdup(c.name) : NULL;
		if (!close)
			env->ch = c.flex_ch ? xstrdup(c.flex_ch) : NULL;
		conv_rec_release(&c);
	} else {
		/* A close outlives a purged conversation (purge.c): the key,
		 * "customer|business", still names the addresses. */
		const char *bar = strchr(j->conv, '|');
		env->from = bar ? xstrndup(j->conv, (size_t)(bar - j->conv)) : xstrdup("");
		env->to = xstrdup(bar ? bar + 1 : "");
	}
	if (close) {
		/* What the close job recorded, not what the conversation has now. */
		env->ch = j->ch ? xstrdup(j->ch) : NULL;
		env->kd = j->kd ? xstrdup(j->kd) : NULL;
		env->uo = j->uo ? xstrdup(j->uo) : NULL;
	}
	if (!strcmp(env->op, OP_HANDOFF)) {
		env->trigger = xstrdup(j->trigger ? j->trigger : "");
		env->reason = xstrdup(j->reason ? j->reason : "");
		env->summary = j->summary ? xstrdup(j->summary) : NULL;
		jobs_turns(x, txn, j->conv, j->hfrom, j->upto, env);
	} else if (!strcmp(env->op, OP_FORWARD)) {
		struct hist_rec h;
		env->seq = (int64_t)j->hseq;
		if (store_hist_get(x->st, txn, j->conv, j->hseq, &h) == 0) {
			env->body = xstrdup(h.text ? h.text : "");
			env->media = h.media && *h.media ? xstrdup(h.media) : NULL;
			hist_rec_release(&h);
		} else {
			env->body = xstrdup("");
		}
	}
}

/*
 * SIDs already recorded for the conversation's turns up to hseq that are
 * recent enough for a reconciling egress to look at (comma-separated; NULL
 * when none): it must not take one of them for this job's message, as it
 * would an earlier reply with the same words. Egress looks at messages
 * created since the job, less JOBS_SKEW_MS of clock skew between us and
 * Twilio; turns older than that are not read (JOBS_EXCLUDE_TURNS at most).
 */
#define JOBS_SKEW_MS (120 * 1000)
#define JOBS_EXCLUDE_TURNS 500
static char *jobs_exclude(struct rctx *x, MDB_txn *txn, const char *conv, uint64_t hseq,
			  uint64_t created)
{
	char *out = NULL;
	uint64_t oldest = created > JOBS_SKEW_MS ? created - JOBS_SKEW_MS : 0;
	for (uint64_t s = hseq, n = 0; s > 0 && n < JOBS_EXCLUDE_TURNS; s--, n++) {
		struct hist_rec h;
		if (store_hist_get(x->st, txn, conv, s, &h))
			continue;
		bool older = h.ts && h.ts < oldest;
		if (h.msid && *h.msid) {
			char *next = out ? xasprintf("%s,%s", out, h.msid) : xstrdup(h.msid);
			free(out);
			out = next;
		}
		hist_rec_release(&h);
		if (older)
			break;
	}
	return out;
}

/* Builds the job's envelope from LMDB. -1 when the job is gone. */
static int jobs_envelope(struct rctx *x, MDB_txn *txn, uint64_t id, struct envelope *env)
{
	struct job_rec j;
	memset(env, 0, sizeof(*env));
	if (store_job_get(x->st, txn, id, &j))
		return -1;
	env->id = id;
	/* The job's creation time: stable across re-dispatches (flex-worker
	 * names its conversation after it, so a retry finds its own). */
	env->ts = j.created;
	env->conv = xstrdup(j.conv);
	if (j.kind == JOB_AI) {
		uint64_t n = (uint64_t)x->cfg->ai_history;
		env->type = ENV_JOB_AI;
		env->prompt = xstrdup(rctx_cfg(x, j.conv)->ai_system_prompt);
		jobs_turns(x, txn, j.conv, j.upto > n ? j.upto - n + 1 : 1, j.upto, env);
	} else if (j.kind == JOB_FLEX) {
		jobs_flex_env(x, txn, &j, env);
	} else {
		uint64_t since = 0;
		env->type = ENV_JOB_SEND;
		env->to = xstrdup(j.to);
		env->from = xstrdup(j.from);
		env->body = xstrdup(j.body);
		env->tmpl = j.tmpl ? xstrdup(j.tmpl) : NULL;
		env->vars = j.vars ? xstrdup(j.vars) : NULL;
		dispatch_attempt(x->disp, id, NULL, &since);
		if (since) {
			/* An earlier attempt may have reached Twilio. */
			env->reconcile = true;
			env->since = (int64_t)since;
			env->exclude = jobs_exclude(x, txn, j.conv, j.hseq, j.created);
			if (j.exclude) {
				char *all = env->exclude ? xasprintf("%s,%s", env->exclude, j.exclude)
							 : xstrdup(j.exclude);
				free(env->exclude);
				env->exclude = all;
			}
		}
	}
	uint64_t attempt = 0;
	dispatch_attempt(x->disp, id, &attempt, NULL);
	env->attempt = (int64_t)attempt;
	job_rec_release(&j);
	return 0;
}

void jobs_dispatch(struct rctx *x, void *sock)
{
	MDB_txn *txn = NULL;
	uint64_t id, now = clock_mono_ms();
	struct zmqx_peer peer;

	while (dispatch_next(x->disp, now, &id, &peer)) {
		struct envelope env;
		struct log_ids ids = { .job = id };
		if (!txn && mdb_txn_begin(x->st->env, NULL, MDB_RDONLY, &txn)) {
			dispatch_retry(x->disp, id, now + 1000);
			break;
		}
		if (jobs_envelope(x, txn, id, &env) < 0) {
			log_emit(LOG_WARN, &ids, "job vanished from the store; forgetting it");
			dispatch_done(x->disp, id);
			continue;
		}
		ids.conv = env.conv;
		if (zmqx_send_env(sock, &peer, &env) < 0) {
			log_emit(LOG_WARN, &ids, "cannot send %s to worker: %s", env_type_name(env.type),
				 zmq_strerror(errno));
			dispatch_worker_lost(x->disp, &peer);
		} else {
			log_emit(LOG_DEBUG, &ids, "dispatched %s", env_type_name(env.type));
		}
		env_release(&env);
	}
	if (txn)
		mdb_txn_abort(txn);
}

/*
 * Puts every unfinished job of the store that dispatch does not know into
 * its lane: all of them after a restart or a takeover, or the ones a batch
 * wrote when its commit's answer was lost (lead.h). None starts before the
 * workers have had time to reconnect and claim the jobs they still hold
 * (one heartbeat and ZeroMQ's longest reconnect wait), and every one is
 * uncertain: its last attempt may have had an effect.
 */
static int jobs_requeue(struct rctx *x, size_t *added)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	/* A job's not_before is wall time in the store, monotonic in dispatch. */
	const uint64_t wall = clock_wall_ms(), mono = clock_mono_ms();
	const uint64_t grace = mono + (uint64_t)x->cfg->worker_heartbeat_ms + ZMQX_RECONNECT_MAX_MS;
	int rc = mdb_txn_begin(x->st->env, NULL, MDB_RDONLY, &txn);
	*added = 0;
	if (rc)
		goto fail;
	if ((rc = mdb_cursor_open(txn, x->st->jobs, &cur)))
		goto fail;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct job_rec j;
		uint64_t id = kv_from_be64(k.mv_data);
		if (k.mv_size != 8 || dispatch_known(x->disp, id) || store_job_get(x->st, txn, id, &j))
			continue;
		uint64_t at = j.not_before > wall ? mono + (j.not_before - wall) : 0;
		dispatch_add(x->disp, id, j.kind, j.conv, at > grace ? at : grace);
		dispatch_set_uncertain(x->disp, id, wall);
		job_rec_release(&j);
		(*added)++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	return log_err("cannot read jobs: %s", mdb_strerror(rc));
}

int jobs_recover(struct rctx *x)
{
	size_t n = 0;
	if (jobs_requeue(x, &n) < 0)
		return -1;
	log_info("recovered %zu unfinished jobs from the store", n);
	return 0;
}

int jobs_reconcile(struct rctx *x)
{
	size_t n = 0;
	if (jobs_requeue(x, &n) < 0)
		return -1;
	if (n)
		log_notice("%zu jobs of a batch whose commit was not confirmed are dispatched", n);
	return 0;
}
