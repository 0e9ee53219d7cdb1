/*
 * router — the loop: apply envelopes to LMDB in one transaction per batch,
 * then acknowledge and dispatch; see router.h and core.h.
 *
 * Effects that must wait for the commit (acks, new jobs for dispatch,
 * finished jobs) are collected in the batch (batch.h) while the
 * transaction runs and carried out after it commits — or turned into 503s
 * and held results when it does not. Only this file knows struct router.
 */
#include "router.h"
#include "core.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zmq.h>

#include "backoff.h"
#include "clock.h"
#include "kv.h"
#include "lead.h"
#include "lathist.h"
#include "log.h"
#include "room.h"
#include "xalloc.h"
#include "zap.h"

/* Synthetic events the router's own timers feed into the next batch. */
#define ROUTER_TIMER_NO_AGENT "timer_no_agent"
#define ROUTER_TIMER_IDLE "timer_idle"
/* How often the timers look at conversations not in ai mode. */
#define ROUTER_CRON_MS 500
/* MessageSid pruning: how often, and how many entries one tick looks at. */
#define ROUTER_PRUNE_MS 1000
#define ROUTER_PRUNE_MAX 5000

struct router {
	const struct config *cfg;
	struct rctx x;       /* what the modules read (ctx.h) */
	struct store st;
	struct batch batch;  /* this turn's transaction and effects */
	char *prune_key;     /* where the MessageSid pruning goes on */
	uint64_t next_prune; /* mono ms */
	uint64_t next_cron;
	void *zctx, *ingress, *work;
	struct zap *zap; /* CURVE allow-list, when an endpoint is tcp:// */
	struct item *items;
	size_t nitems;
	/* Worker results whose batch could not commit: kept here, never
	 * re-dispatched, and applied again with backoff (room.h). */
	struct item *held;
	size_t nheld, capheld;
	uint64_t held_at; /* mono ms of the next try */
	struct room room;
	bool fenced; /* a commit found the lease another router's: step down */
	/* Time spent applying one inbound message inside its transaction, and
	 * committing one batch (the fsync): the router's own cost, without
	 * queueing, for the bench and metrics. */
	struct lathist work_inbound, work_commit;
};

static const char *const rm_kinds[] = { "ai", "send", "flex", NULL };

static const struct metric_def RM_COMMITS = {
	"baton_router_commits_total", METRIC_COUNTER, "LMDB batch transactions committed.", { NULL },
	{ NULL } };
static const struct metric_def RM_COMMIT_FAILURES = {
	"baton_router_commit_failures_total", METRIC_COUNTER,
	"Batches that did not commit (their webhooks got 503, their jobs are retried).", { NULL },
	{ NULL } };
static const struct metric_def RM_QUEUED = {
	"baton_router_jobs_queued", METRIC_GAUGE,
	"Jobs waiting to be dispatched (not in flight), by kind.", { "kind" }, { rm_kinds } };
static const struct metric_def RM_INFLIGHT = {
	"baton_router_jobs_in_flight", METRIC_GAUGE,
	"Jobs sent to a worker and not finished, by kind.", { "kind" }, { rm_kinds } };
static const struct metric_def RM_WORKERS = {
	"baton_router_workers", METRIC_GAUGE, "Workers connected (said hello, not timed out), by kind.",
	{ "kind" }, { rm_kinds } };
static const struct metric_def RM_OUTBOX = {
	"baton_router_outbox_backlog", METRIC_GAUGE,
	"Messages to customers not yet accepted by Twilio (send jobs queued or in flight).",
	{ NULL }, { NULL } };
static const struct metric_def RM_CONVERSATIONS = {
	"baton_router_conversations", METRIC_GAUGE, "Conversations stored.", { NULL }, { NULL } };
static const struct metric_def RM_WITH_PERSON = {
	"baton_router_conversations_handed_off", METRIC_GAUGE,
	"Conversations in escalating or human mode.", { NULL }, { NULL } };
static const struct metric_def RM_LMDB_FILE = {
	"baton_router_lmdb_file_bytes", METRIC_GAUGE, "Size of the LMDB data file (data.mdb).",
	{ NULL }, { NULL } };
static const struct metric_def RM_LMDB_USED = {
	"baton_router_lmdb_used_bytes", METRIC_GAUGE, "LMDB pages in use, in bytes.", { NULL },
	{ NULL } };
static const struct metric_def RM_LMDB_MAP = {
	"baton_router_lmdb_map_bytes", METRIC_GAUGE,
	"LMDB map size: the most the store can hold (lmdb.map_size_mb).", { NULL }, { NULL } };
static const struct metric_def RM_INBOUND_SECONDS = {
	"baton_router_inbound_work_seconds", METRIC_HISTOGRAM,
	"Time the router spends applying one inbound message inside its transaction (no queueing, "
	"no commit).", { NULL }, { NULL } };
static const struct metric_def RM_COMMIT_SECONDS = {
	"baton_router_commit_seconds", METRIC_HISTOGRAM,
	"Time one batch commit takes (the fsync with lmdb.sync).", { NULL }, { NULL } };

/* Gauges from the live state, before each render. */
static void router_collect_metrics(void *arg)
{
	struct router *r = arg;
	for (int k = 0; r->x.disp && k < JOB_KINDS; k++) {
		const char *kind = job_kind_name((enum job_kind)k);
		metrics_set(&RM_QUEUED, kind, NULL, (double)dispatch_queued(r->x.disp, (enum job_kind)k));
		metrics_set(&RM_INFLIGHT, kind, NULL,
			    (double)dispatch_inflight_kind(r->x.disp, (enum job_kind)k));
		metrics_set(&RM_WORKERS, kind, NULL, (double)dispatch_workers(r->x.disp, (enum job_kind)k));
	}
	if (r->x.disp)
		metrics_set(&RM_OUTBOX, NULL, NULL, (double)(dispatch_queued(r->x.disp, JOB_SEND) +
							     dispatch_inflight_kind(r->x.disp, JOB_SEND)));
	MDB_envinfo info;
	MDB_stat est, dst;
	if (mdb_env_info(r->st.env, &info) == 0 && mdb_env_stat(r->st.env, &est) == 0) {
		metrics_set(&RM_LMDB_MAP, NULL, NULL, (double)info.me_mapsize);
		metrics_set(&RM_LMDB_USED, NULL, NULL,
			    (double)(info.me_last_pgno + 1) * (double)est.ms_psize);
	}
	char *path = xasprintf("%s/data.mdb", config_router_store_dir(r->cfg));
	struct stat fst;
	if (stat(path, &fst) == 0)
		metrics_set(&RM_LMDB_FILE, NULL, NULL, (double)fst.st_size);
	free(path);
	MDB_txn *txn = NULL;
	if (mdb_txn_begin(r->st.env, NULL, MDB_RDONLY, &txn) == 0) {
		if (mdb_stat(txn, r->st.conv, &dst) == 0)
			metrics_set(&RM_CONVERSATIONS, NULL, NULL, (double)dst.ms_entries);
		if (mdb_stat(txn, r->st.modes, &dst) == 0)
			metrics_set(&RM_WITH_PERSON, NULL, NULL, (double)dst.ms_entries);
		mdb_txn_abort(txn);
	}
	metrics_set_lathist(&RM_INBOUND_SECONDS, NULL, NULL, &r->work_inbound);
	metrics_set_lathist(&RM_COMMIT_SECONDS, NULL, NULL, &r->work_commit);
}

static void router_metrics_start(struct router *r)
{
	static const struct metric_def *const defs[] = {
		&RM_COMMITS, &RM_COMMIT_FAILURES, &RM_QUEUED, &RM_INFLIGHT, &RM_WORKERS, &RM_OUTBOX,
		&RM_CONVERSATIONS, &RM_WITH_PERSON, &RM_LMDB_FILE, &RM_LMDB_USED, &RM_LMDB_MAP,
		&RM_INBOUND_SECONDS, &RM_COMMIT_SECONDS, NULL };
	stats_register();
	metrics_register(defs);
	metrics_collector_add(router_collect_metrics, r);
}

/* Business hours of the base and of every [number]: a bad one is a config error. */
static int router_parse_hours(struct router *r)
{
	const struct config *cfg = r->cfg;
	const char *why = NULL;
	long which = -1;
	if (rctx_hours_parse(&r->x, &why, &which) == 0)
		return 0;
	if (which < 0)
		fprintf(stderr, "baton-router: config error: business.hours: %s in '%s'\n", why,
			cfg->business_hours);
	else
		fprintf(stderr, "baton-router: config error: [number %s] business.hours: %s in '%s'\n",
			cfg->numbers[which].address, why, cfg->numbers[which].cfg.business_hours);
	return -1;
}

static void router_send_ack(struct router *r, const struct effect *e, int status)
{
	struct envelope a = { .type = ENV_ACK, .id = e->id, .ts = clock_wall_ms(), .status = status,
			      .err = (char *)e->err };
	if (zmqx_send_env(r->ingress, &e->peer, &a) < 0)
		log_warn("cannot acknowledge request %llu (ingress gone?): %s",
			 (unsigned long long)e->id, zmq_strerror(errno));
}

static bool router_is_result(const struct item *it)
{
	return !it->from_ingress && !it->synthetic &&
	       (it->env.type == ENV_RESULT_AI || it->env.type == ENV_RESULT_SEND ||
		it->env.type == ENV_RESULT_FLEX);
}

/* The worker may forget a result once the batch that applied it (or found
 * its job already finished) has committed. Progress is not acknowledged:
 * the worker does not keep it. */
static void router_ack_results(struct router *r)
{
	for (size_t i = 0; i < r->nitems; i++) {
		const struct item *it = &r->items[i];
		if (!router_is_result(it) || it->env.status == ST_PROGRESS)
			continue;
		struct envelope a = { .type = ENV_ACK, .id = it->env.id, .ts = clock_wall_ms(),
				      .status = ST_OK };
		/* A worker gone since (restarted, new routing id) sends the
		 * result again and gets its ack then. */
		zmqx_send_env(r->work, &it->peer, &a);
	}
}

/* Carries out the effects of a committed batch (router_unwind handles the rest). */
static void router_effects(struct router *r)
{
	struct batch *b = &r->batch;
	for (size_t i = 0; i < b->nfx; i++) {
		struct effect *e = &b->fx[i];
		switch (e->type) {
		case FX_ACK:
			router_send_ack(r, e, e->status);
			break;
		case FX_ADD:
			dispatch_add(r->x.disp, e->id, e->kind, e->conv, e->not_before);
			break;
		case FX_DONE:
			dispatch_done(r->x.disp, e->id);
			break;
		case FX_RETRY:
			dispatch_retry(r->x.disp, e->id, e->not_before);
			break;
		}
	}
	batch_clear(b);
}

static int router_apply(struct batch *b, struct item *it)
{
	switch (it->env.type) {
	case ENV_INBOUND:
		if (!it->from_ingress)
			break;
		return turns_inbound(b, it);
	case ENV_RESULT_AI:
		if (it->from_ingress)
			break;
		return turns_result_ai(b, it);
	case ENV_RESULT_SEND:
		if (it->from_ingress)
			break;
		return turns_result_send(b, it);
	case ENV_RESULT_FLEX:
		if (it->from_ingress)
			break;
		return handoff_result(b, it);
	case ENV_EVENT:
		if (!it->from_ingress && !it->synthetic)
			break;
		return evtable_apply(b, it, evkind_of(it->env.op));
	default:
		break;
	}
	log_warn("dropped a %s envelope on the %s socket", env_type_name(it->env.type),
		 it->from_ingress ? "ingress" : "work");
	return 0;
}

/* What grows the store with new content: a customer's message, from the
 * Messaging webhook or from the agent's Flex conversation. */
static bool router_is_new_message(const struct item *it)
{
	return it->from_ingress && !it->settled &&
	       (it->env.type == ENV_INBOUND ||
		(it->env.type == ENV_EVENT && it->env.op && !strcmp(it->env.op, EV_MESSAGE_ADDED)));
}

/* Answers 503 to the batch's new messages now (Twilio retries them); the
 * transaction goes on without them. Returns how many. */
static size_t router_refuse_new(struct router *r)
{
	size_t n = 0;
	for (size_t i = 0; i < r->nitems; i++) {
		struct item *it = &r->items[i];
		if (!router_is_new_message(it))
			continue;
		struct effect e = { .type = FX_ACK, .peer = it->peer, .id = it->env.id,
				    .err = "store full" };
		router_send_ack(r, &e, ST_BUSY);
		it->settled = true;
		room_refused(&r->room);
		n++;
	}
	return n;
}

/* Keeps a worker result in memory for a later batch; its job stays off
 * every worker (never re-dispatched) until then. */
static void router_hold(struct router *r, struct item *it)
{
	if (it->env.status != ST_PROGRESS)
		dispatch_hold(r->x.disp, it->env.id);
	if (r->nheld == r->capheld) {
		r->capheld = r->capheld ? r->capheld * 2 : 64;
		r->held = xrealloc(r->held, r->capheld * sizeof(*r->held));
	}
	r->held[r->nheld++] = *it;
	memset(&it->env, 0, sizeof(it->env)); /* moved */
	it->settled = true;
}

/* The store is nearly full: results wait, the room left is for purges. */
static void router_defer_results(struct router *r)
{
	size_t n = 0;
	for (size_t i = 0; i < r->nitems; i++) {
		struct item *it = &r->items[i];
		if (router_is_result(it) && !it->settled && dispatch_known(r->x.disp, it->env.id)) {
			router_hold(r, it);
			n++;
		}
	}
	if (n)
		r->held_at = clock_mono_ms() + room_retry_delay(&r->room);
}

/*
 * A batch that did not commit: the effects collected are void. Webhooks
 * get 503 (Twilio and operators retry). Worker results are kept in memory
 * and applied again with backoff: their effect happened (a message left,
 * an answer was paid for), so the job must not run again. Timer items are
 * made again by the next cron.
 */
static void router_unwind(struct router *r)
{
	batch_clear(&r->batch);
	for (size_t i = 0; i < r->nitems; i++) {
		struct item *it = &r->items[i];
		if (it->synthetic || it->settled)
			continue;
		if (it->from_ingress) {
			struct effect e = { .type = FX_ACK, .peer = it->peer, .id = it->env.id,
					    .err = "store unavailable" };
			router_send_ack(r, &e, ST_BUSY);
		} else if (router_is_result(it) && dispatch_known(r->x.disp, it->env.id)) {
			router_hold(r, it);
		}
	}
	r->held_at = clock_mono_ms() + room_retry_delay(&r->room);
}

/* Held results whose time has come go first into the batch. */
static void router_take_held(struct router *r)
{
	size_t max = (size_t)r->cfg->router_batch, n = 0;
	if (!r->nheld || clock_mono_ms() < r->held_at)
		return;
	while (n < r->nheld && r->nitems < max)
		r->items[r->nitems++] = r->held[n++];
	memmove(r->held, r->held + n, (r->nheld - n) * sizeof(*r->held));
	r->nheld -= n;
}

/* One try at the batch: every item not settled, in one transaction.
 * *applied counts them. */
static int router_txn(struct router *r, size_t *applied)
{
	struct batch *b = &r->batch;
	*applied = 0;
	metrics_stage_begin();
	int rc = batch_begin(b, &r->x);
	for (size_t i = 0; rc == 0 && i < r->nitems; i++) {
		struct item *it = &r->items[i];
		if (it->settled)
			continue;
		uint64_t t0 = clock_mono_us();
		rc = router_apply(b, it);
		(*applied)++;
		if (it->from_ingress && it->env.type == ENV_INBOUND)
			lathist_record(&r->work_inbound, clock_mono_us() - t0);
	}
	if (rc == 0) {
		uint64_t t0 = clock_mono_us();
		rc = batch_commit(b);
		lathist_record(&r->work_commit, clock_mono_us() - t0);
	}
	batch_abort(b);
	metrics_stage_end(rc == 0);
	return rc;
}

/* LMDB marks its environment unusable after some write errors: open it again. */
static void router_reopen_store(struct router *r)
{
	store_close(&r->st);
	if (store_open(&r->st, config_router_store_dir(r->cfg), r->cfg->lmdb_map_size_mb, r->cfg->lmdb_sync) < 0)
		log_err("cannot reopen the store after a fatal LMDB error; will retry");
}

static void router_apply_batch(struct router *r)
{
	size_t applied = 0;
	int rc;

	size_t open = r->nheld;
	for (int k = 0; k < JOB_KINDS; k++)
		open += dispatch_queued(r->x.disp, (enum job_kind)k);
	enum room_state room = room_check(&r->room, clock_mono_ms(), open + dispatch_inflight(r->x.disp));
	if (room >= ROOM_HIGH_WATER)
		router_refuse_new(r);
	if (room >= ROOM_CRITICAL)
		router_defer_results(r);
	/* With PostgreSQL: a batch whose answer was lost may have been written;
	 * the cache reads it back first, and its jobs are dispatched. */
	int behind = r->x.lead ? lead_catch_up(r->x.lead) : 0;
	if (behind == 1)
		jobs_reconcile(&r->x);
	if (behind < 0)
		rc = LEAD_FAILED;
	else
		rc = r->st.env ? router_txn(r, &applied) : MDB_PANIC;
	while (rc == MDB_MAP_FULL && room_grow(&r->room) == 0)
		rc = router_txn(r, &applied);
	/* Still no room: what keeps the store going (results, hand-backs,
	 * purges) is tried without the new messages. (A database that did not
	 * take the batch would not take less either.) */
	if (rc && rc != MDB_PANIC && rc != LEAD_FAILED && rc != LEAD_FENCED && router_refuse_new(r))
		rc = router_txn(r, &applied);
	metrics_inc(rc == 0 ? &RM_COMMITS : &RM_COMMIT_FAILURES, NULL, NULL);
	if (rc) {
		room_commit_failed(&r->room, rc, r->nitems);
		router_unwind(r);
		if (rc == MDB_PANIC)
			router_reopen_store(r);
		if (rc == LEAD_FENCED)
			r->fenced = true;
	} else {
		r->x.stats.commits++;
		if (applied)
			room_commit_ok(&r->room);
		router_effects(r);
		router_ack_results(r);
	}
	for (size_t i = 0; i < r->nitems; i++)
		env_release(&r->items[i].env);
	r->nitems = 0;
}

static void router_hello(struct router *r, const struct item *it)
{
	const char *k = it->env.kind;
	enum job_kind kind;
	if (!strcmp(k, "ai"))
		kind = JOB_AI;
	else if (!strcmp(k, "egress"))
		kind = JOB_SEND;
	else if (!strcmp(k, "flex"))
		kind = JOB_FLEX;
	else {
		log_warn("hello from a worker of unknown kind '%s'", k);
		return;
	}
	int cap = it->env.credit < 0 ? 0 : it->env.credit > 1000000 ? 1000000 : (int)it->env.credit;
	dispatch_hello(r->x.disp, &it->peer, kind, it->env.name, cap, clock_mono_ms());
	for (size_t i = 0; i < it->env.nclaims; i++)
		dispatch_claim(r->x.disp, &it->peer, it->env.claims[i].id, it->env.claims[i].attempt);
}

/*
 * Timers of conversations not in ai mode (the modes index): no agent
 * accepted in time, or human mode idle too long. They become synthetic
 * events applied with the next batch, like any other input.
 */
static void router_cron(struct router *r)
{
	const struct config *cfg = r->cfg;
	uint64_t now = clock_wall_ms(), mono = clock_mono_ms();
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;

	if (mono < r->next_cron)
		return;
	r->next_cron = mono + ROUTER_CRON_MS;
	if (!cfg->handoff_accept_timeout_s && !cfg->handoff_human_timeout_s)
		return;
	if (mdb_txn_begin(r->st.env, NULL, MDB_RDONLY, &txn))
		return;
	if (mdb_cursor_open(txn, r->st.modes, &cur) == 0) {
		int rc;
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		     rc == 0 && r->nitems < (size_t)cfg->router_batch;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			char *key = xstrndup(k.mv_data, k.mv_size);
			struct conv_rec c;
			const char *op = NULL;
			if (store_conv_get(&r->st, txn, key, &c) == 0) {
				uint64_t accept = (uint64_t)cfg->handoff_accept_timeout_s * 1000u;
				uint64_t idle = (uint64_t)cfg->handoff_human_timeout_s * 1000u;
				/* A handoff queued for business hours waits from the opening. */
				uint64_t since = c.queued_until > c.esc_at ? c.queued_until : c.esc_at;
				if (accept && !c.no_agent_done && !c.accepted_at && !c.first_agent_at &&
				    since && now >= since + accept)
					op = ROUTER_TIMER_NO_AGENT;
				else if (idle && c.mode == MODE_HUMAN && c.last_activity &&
					 now >= c.last_activity + idle)
					op = ROUTER_TIMER_IDLE;
				conv_rec_release(&c);
			}
			if (op) {
				struct item *it = &r->items[r->nitems++];
				memset(it, 0, sizeof(*it));
				it->synthetic = true;
				it->env.type = ENV_EVENT;
				it->env.ts = now;
				it->env.op = xstrdup(op);
				it->env.conv = key;
				key = NULL;
			}
			free(key);
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
}

/* Reads what is waiting on both sockets, up to one batch. */
static void router_collect(struct router *r)
{
	size_t max = (size_t)r->cfg->router_batch;
	bool more = true;
	while (more && r->nitems < max) {
		more = false;
		void *socks[2] = { r->ingress, r->work };
		for (int s = 0; s < 2 && r->nitems < max; s++) {
			struct item *it = &r->items[r->nitems];
			int rc = zmqx_recv_env(socks[s], &it->peer, &it->env);
			if (rc == 0)
				continue;
			more = true;
			if (rc < 0)
				continue;
			it->from_ingress = s == 0;
			if (it->env.type == ENV_HELLO && !it->from_ingress) {
				router_hello(r, it);
				env_release(&it->env);
				continue;
			}
			/* Whoever reached the work socket is one of our workers: the
			 * socket is the boundary (README "Security"). A result is
			 * applied even from a peer that has not said hello yet, as
			 * after a router restart; the store decides whether its job
			 * is still open. A result the router holds already (its
			 * batch could not commit) is not taken twice. */
			if (!it->from_ingress) {
				dispatch_touch(r->x.disp, &it->peer, clock_mono_ms());
				if (dispatch_is_held(r->x.disp, it->env.id) &&
				    (it->env.type == ENV_RESULT_AI || it->env.type == ENV_RESULT_SEND ||
				     it->env.type == ENV_RESULT_FLEX)) {
					env_release(&it->env);
					continue;
				}
			}
			it->synthetic = it->settled = false;
			r->nitems++;
		}
	}
}

static int router_timeout(struct router *r)
{
	uint64_t due = dispatch_next_due(r->x.disp), now = clock_mono_ms();
	int t = r->cfg->worker_heartbeat_ms < ROUTER_CRON_MS ? r->cfg->worker_heartbeat_ms
							      : ROUTER_CRON_MS;
	if (due && due > now && due - now < (uint64_t)t)
		t = (int)(due - now);
	else if (due && due <= now)
		t = 0;
	if (r->x.lead && lead_timeout(r->x.lead) < t)
		t = lead_timeout(r->x.lead);
	return t;
}

/* A few hundred MessageSids past dedupe.keep_s go per tick, in a small
 * transaction of their own (committed only when something went). */
static void router_prune_seen(struct router *r)
{
	const uint64_t keep = (uint64_t)r->cfg->dedupe_keep_s * 1000u, now = clock_mono_ms();
	size_t deleted = 0;

	if (!keep || now < r->next_prune)
		return;
	r->next_prune = now + ROUTER_PRUNE_MS;
	uint64_t wall = clock_wall_ms();
	if (wall <= keep)
		return;
	/* A batch of its own: with PostgreSQL the deletes go there too. */
	struct batch *b = &r->batch;
	int rc = batch_begin(b, &r->x);
	if (rc == 0)
		rc = store_seen_prune(&r->st, b->txn, &r->prune_key, ROUTER_PRUNE_MAX, wall - keep,
				      &deleted);
	if (rc == 0 && deleted && (rc = batch_commit(b)) == 0)
		log_emit(LOG_DEBUG, NULL, "forgot %zu MessageSids older than %d s", deleted,
			 r->cfg->dedupe_keep_s);
	batch_abort(b);
	batch_clear(b);
	if (rc == LEAD_FENCED)
		r->fenced = true;
	if (rc)
		log_warn("cannot prune old MessageSids: %s (will retry)", lead_strerror(rc));
}

/* Active: a fresh dispatch with every unfinished job, the sockets bound. 0 or -1. */
static int router_activate(struct router *r)
{
	const struct config *cfg = r->cfg;
	struct zmqx_keys kin, kwork;
	const char *ib = cfg->router_ingress_bind[0] ? cfg->router_ingress_bind
						     : cfg->router_ingress_endpoint;
	const char *wb = cfg->router_work_bind[0] ? cfg->router_work_bind : cfg->router_work_endpoint;
	const struct zmqx_keys *ki = zmqx_keys_for(cfg, ib, &kin);
	const struct zmqx_keys *kw = zmqx_keys_for(cfg, wb, &kwork);

	r->fenced = false;
	r->x.disp = dispatch_new();
	if (jobs_recover(&r->x) < 0)
		return -1;
	/* The allow-list must answer before the first CURVE peer knocks. */
	if ((ki || kw) && !r->zap && !(r->zap = zap_new(r->zctx, cfg->zmq_allowed_keys)))
		return -1;
	if (!(r->ingress = zmqx_router_bind(r->zctx, ib, ki)) ||
	    !(r->work = zmqx_router_bind(r->zctx, wb, kw)))
		return -1;
	if (r->x.lead)
		log_notice("ready: active (lease epoch %llu), state in PostgreSQL with its cache in %s, "
			   "ingress on %s, workers on %s", (unsigned long long)lead_epoch(r->x.lead),
			   config_router_store_dir(cfg), ib, wb);
	else
		log_notice("ready: state in %s, ingress on %s, workers on %s (sync=%s)", cfg->state_dir,
			   ib, wb, cfg->lmdb_sync ? "true" : "false");
	return 0;
}

/* No longer active: nothing bound, nothing dispatched, nothing held (the
 * workers send their results again to whichever router is active). */
static void router_deactivate(struct router *r)
{
	zmqx_close(&r->ingress, 0);
	zmqx_close(&r->work, 0);
	for (size_t i = 0; i < r->nheld; i++)
		env_release(&r->held[i].env);
	if (r->nheld)
		log_warn("%zu results not committed: their workers send them again", r->nheld);
	r->nheld = 0;
	for (size_t i = 0; i < r->nitems; i++)
		env_release(&r->items[i].env);
	r->nitems = 0;
	batch_clear(&r->batch);
	dispatch_destroy(&r->x.disp);
}

/* The loop while active: until a stop, or (PostgreSQL) the lease is gone. */
static int router_serve(struct router *r, volatile sig_atomic_t *stop)
{
	const struct config *cfg = r->cfg;
	while (!*stop && !r->fenced) {
		zmq_pollitem_t items[3] = {
			{ .socket = r->ingress, .events = ZMQ_POLLIN },
			{ .socket = r->work, .events = ZMQ_POLLIN },
			{ .socket = r->zap ? zap_socket(r->zap) : NULL, .events = ZMQ_POLLIN },
		};
		if (zmq_poll(items, r->zap ? 3 : 2, router_timeout(r)) < 0 && errno != EINTR) {
			log_err("zmq_poll: %s", zmq_strerror(errno));
			return -1;
		}
		if (r->zap && (items[2].revents & ZMQ_POLLIN))
			zap_handle(r->zap);
		/* A router that may have lost the lease does nothing more. */
		if (r->x.lead && !lead_tick(r->x.lead))
			break;
		router_take_held(r);
		router_collect(r);
		/* Before the batch: a slow commit must not make live workers look dead. */
		dispatch_expire(r->x.disp, clock_mono_ms(), (uint64_t)cfg->worker_timeout_ms);
		router_cron(r);
		router_prune_seen(r);
		if (r->nitems)
			router_apply_batch(r);
		if (!r->fenced)
			jobs_dispatch(&r->x, r->work);
		metrics_tick();
	}
	return 0;
}

int router_run(const struct config *cfg, volatile sig_atomic_t *stop)
{
	struct router r = { .cfg = cfg, .x = { .cfg = cfg } };
	int rc = -1;

	r.x.st = &r.st;
	if (router_parse_hours(&r) < 0) {
		rctx_release(&r.x);
		return -2;
	}
	r.items = xcalloc((size_t)cfg->router_batch, sizeof(*r.items));
	r.x.rules = rules_new(cfg->escalation_phrases);
	if (store_open(&r.st, config_router_store_dir(cfg), cfg->lmdb_map_size_mb, cfg->lmdb_sync) < 0)
		goto fail;
	room_init(&r.room, cfg, &r.st);
	if (cfg->state_backend == CONFIG_BACKEND_POSTGRES && !(r.x.lead = lead_new(cfg, &r.st, stop)))
		goto fail;
	if (!(r.zctx = zmq_ctx_new()))
		goto fail;
	router_metrics_start(&r);
	if (r.x.lead)
		log_notice("ready: standing by until this router holds the lease (state in "
			   "PostgreSQL, cache in %s)", config_router_store_dir(cfg));
	while (!*stop) {
		if (r.x.lead && !lead_acquire(r.x.lead, stop))
			break;
		if (router_activate(&r) < 0 || router_serve(&r, stop) < 0) {
			router_deactivate(&r);
			goto fail;
		}
		router_deactivate(&r);
		if (!r.x.lead)
			break;
		if (!*stop)
			log_notice("standing by: this router no longer holds the lease");
	}
	log_notice("stopping: %llu messages stored, %llu duplicates, %llu escalations, %llu commits; "
		 "unfinished jobs stay in the store",
		 (unsigned long long)r.x.stats.msgs, (unsigned long long)r.x.stats.dups,
		 (unsigned long long)r.x.stats.escalations, (unsigned long long)r.x.stats.commits);
	log_notice("work per inbound message: n=%llu p50=%lluus p99=%lluus max=%lluus; "
		 "per commit: n=%llu p50=%lluus p99=%lluus",
		 (unsigned long long)r.work_inbound.count,
		 (unsigned long long)lathist_quantile(&r.work_inbound, 0.50),
		 (unsigned long long)lathist_quantile(&r.work_inbound, 0.99),
		 (unsigned long long)r.work_inbound.max_us,
		 (unsigned long long)r.work_commit.count,
		 (unsigned long long)lathist_quantile(&r.work_commit, 0.50),
		 (unsigned long long)lathist_quantile(&r.work_commit, 0.99));
	rc = 0;
fail:
	metrics_collector_remove(router_collect_metrics, &r);
	zmqx_close(&r.ingress, 0);
	zmqx_close(&r.work, 0);
	zap_free(&r.zap);
	if (r.zctx)
		zmq_ctx_term(r.zctx);
	free(r.held);
	lead_free(r.x.lead);
	room_release(&r.room);
	store_close(&r.st);
	dispatch_destroy(&r.x.disp);
	rules_destroy(&r.x.rules);
	batch_release(&r.batch);
	free(r.items);
	rctx_release(&r.x);
	free(r.prune_key);
	return rc;
}
