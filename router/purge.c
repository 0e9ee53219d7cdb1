/*
 * purge — the right to erasure: an operator's EV_ADMIN_PURGE (batonctl
 * purge, through ingress /admin/purge) erases a conversation in the batch
 * transaction, like every other change: the router stays the only writer.
 * See core.h.
 *
 * In one transaction: history, pending turns, timeline, index entries,
 * the modes entry, the record (store_conv_erase), and the conversation's
 * jobs, which dispatch forgets after the commit (FX_DONE), so nothing
 * queued runs on a purged conversation: a late result of a job already at
 * a worker finds no job and is dropped as stale (a send already at egress
 * cannot be recalled). An audit record keeps when, the masked address and
 * the counts, never the content.
 *
 * A conversation a person has (human mode): its Flex side is closed, as an
 * operator hand-back does, and then it is purged. An erasure request has a
 * legal deadline and the operator confirmed it; refusing would only add a
 * hand-back step, and purging without the close would leave the customer
 * bound to a Flex conversation nobody in baton knows about any more (their
 * next messages would go where no one answers). Close jobs are kept for
 * the same reason: they carry Twilio SIDs, not content, and end on their
 * own (jobs.c finds the addresses in the key once the record is gone).
 *
 * While a Flex handoff of it is still running (escalating, or its late
 * result after a hand-back), the purge is refused with ST_BUSY (503: try
 * again): the pipeline's result would find nothing and the conversation it
 * is creating would stay open with the customer bound to it. That lasts
 * the seconds the pipeline takes, or until handoff.max_attempts.
 *
 * What baton cannot erase: Twilio's own copies (message logs, the Flex
 * conversation and task). The operator erases those in Twilio.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kv.h"
#include "log.h"
#include "xalloc.h"

/* Jobs of one conversation (the jobs DB is the work not yet finished: small). */
struct purge_jobs {
	uint64_t *ids;
	bool *keep;
	size_t n;
	bool handoff; /* a Flex handoff is still running */
};

static int purge_find_jobs(struct batch *b, const char *key, struct purge_jobs *pj)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc = mdb_cursor_open(b->txn, b->st->jobs, &cur);
	if (rc)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct job_rec j;
		if (k.mv_size != 8 || store_job_decode(&v, &j))
			continue;
		if (j.conv && !strcmp(j.conv, key)) {
			bool flex = j.kind == JOB_FLEX;
			pj->ids = xrealloc(pj->ids, (pj->n + 1) * sizeof(*pj->ids));
			pj->keep = xrealloc(pj->keep, (pj->n + 1) * sizeof(*pj->keep));
			pj->ids[pj->n] = kv_from_be64(k.mv_data);
			pj->keep[pj->n] = flex && j.op && !strcmp(j.op, OP_CLOSE);
			pj->n++;
			if (flex && (!j.op || !strcmp(j.op, OP_HANDOFF)))
				pj->handoff = true;
		}
		job_rec_release(&j);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int purge_conversation(struct batch *b, struct item *it, const char *key,
		       const struct conv_rec *c)
{
	struct purge_jobs pj = { 0 };
	struct store_erased er;
	char masked[STORE_KEY_MAX + 1];
	uint64_t deleted = 0;
	bool closed = false;
	int rc;

	/* Never the address in clear, whatever log.mask_phone says: this line
	 * and the audit record outlive the data on purpose. */
	log_mask_address(key, masked, sizeof(masked));
	if ((rc = purge_find_jobs(b, key, &pj)))
		goto out;
	if (pj.handoff) {
		log_emit(LOG_WARN, NULL, "purge of %s refused for now: a Flex handoff of it is still "
			 "running (retry when it finishes)", masked);
		/* ingress answers 503: try again */
		batch_ack(b, it, ST_BUSY, "a Flex handoff of this conversation is in progress");
		goto out;
	}
	for (size_t i = 0; i < pj.n; i++) {
		if (pj.keep[i])
			continue;
		if ((rc = job_finish(b, pj.ids[i])))
			goto out;
		deleted++;
	}
	if (c->mode != MODE_AI && (c->flex_ch || c->flex_kd)) {
		/* As an operator hand-back does (handoff_back): the close carries its SIDs. */
		struct job_rec j = { .kind = JOB_FLEX, .conv = (char *)key, .created = clock_wall_ms(),
				     .op = OP_CLOSE, .ch = c->flex_ch, .kd = c->flex_kd,
				     .uo = c->flex_uo };
		uint64_t id;
		if ((rc = job_add(b, &j, &id, 0)))
			goto out;
		closed = true;
	}
	/* The MessageSid dedupe entries (`seen`) stay: a Twilio id and a time,
	 * no personal data, and a retried webhook must still be recognised. */
	if ((rc = store_conv_erase(b->st, b->txn, key, &er)))
		goto out;
	struct audit_rec a = { .ts = clock_wall_ms(), .conv = masked,
			       .mode = (char *)conv_mode_name(c->mode),
			       .reason = it->env.reason, .hist = er.hist, .pend = er.pend,
			       .tl = er.tl, .idx = er.idx, .jobs = deleted, .flex_closed = closed };
	if ((rc = store_audit_add(b->st, b->txn, &a)))
		goto out;
	log_emit(LOG_NOTICE, NULL, "purged conversation %s (%s mode, operator: '%s'): %llu messages, "
		 "%llu pending, %llu timeline entries, %llu index entries, %llu jobs deleted%s",
		 masked, conv_mode_name(c->mode), it->env.reason ? it->env.reason : "",
		 (unsigned long long)er.hist, (unsigned long long)er.pend, (unsigned long long)er.tl,
		 (unsigned long long)er.idx, (unsigned long long)deleted,
		 closed ? "; its Flex conversation is being closed" : "");
	batch_ack(b, it, ST_OK, NULL);
out:
	free(pj.ids);
	free(pj.keep);
	return rc;
}
